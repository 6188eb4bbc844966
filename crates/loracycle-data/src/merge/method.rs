//! The merge methods and their settings as a run spec's `[method]` table names them: plain data,
//! so that the spec parser and the UI know them without the merging code (and candle).

use serde::{Deserialize, Serialize};

use crate::run::setting::{BadSetting, Fields, MAX_RANK};

fn one() -> f64 {
    1.0
}
fn ties_density() -> f64 {
    0.2
}
fn dare_density() -> f64 {
    0.5
}
fn tsv_m() -> usize {
    8
}
fn svd_rank() -> usize {
    16
}

/// How TIES elects the sign of each entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SignElection {
    /// The sign of the sum of the trimmed values (the paper's setting).
    #[default]
    Total,
    /// The sign held by more adapters.
    Count,
}

/// What an average divides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Divisor {
    /// The number N of adapters merged, on every module (the paper's simple average): a module
    /// few adapters touch gets a small update, as in the full-model average.
    #[default]
    Selected,
    /// The number of merged adapters that touch the module (loracycle's earlier average), which
    /// weighs a module one adapter adapts as fully as one all of them adapt.
    Touching,
}

/// The weight each task vector gets before TIES or TSV combines them (the paper's
/// `weight_init`): written `"equal"` (1/N each), `"one"` (1 each), a number (that weight each) or
/// a list (one per selected adapter, in the selection's order).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Weights {
    /// 1/N each, N the number of adapters merged (the paper's TSV).
    #[default]
    Equal,
    /// 1 each (the paper's TIES; loracycle's earlier TSV).
    One,
    /// This weight each.
    Each(f64),
    /// One weight per selected adapter, in order.
    List(Vec<f64>),
}

impl Weights {
    /// The factor every task vector of a module gets, `n` adapters merged (a list's weights are
    /// per adapter and applied before: factor 1).
    pub fn uniform(&self, n: usize) -> f64 {
        match self {
            Weights::Equal => 1.0 / n.max(1) as f64,
            Weights::One | Weights::List(_) => 1.0,
            Weights::Each(w) => *w,
        }
    }

    /// The per-adapter weights of a list.
    pub fn list(&self) -> Option<&[f64]> {
        match self {
            Weights::List(w) => Some(w),
            _ => None,
        }
    }

    fn check(&self, f: Fields<'_>) -> Result<(), BadSetting> {
        match self {
            Weights::Each(w) => f.finite("weights", *w),
            Weights::List(ws) => {
                f.non_empty("weights", ws)?;
                ws.iter().try_for_each(|w| f.finite("weights", *w))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum WeightsRepr {
    Name(String),
    Each(f64),
    List(Vec<f64>),
}

impl Serialize for Weights {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Weights::Equal => WeightsRepr::Name("equal".into()),
            Weights::One => WeightsRepr::Name("one".into()),
            Weights::Each(w) => WeightsRepr::Each(*w),
            Weights::List(ws) => WeightsRepr::List(ws.clone()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Weights {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = || {
            serde::de::Error::custom(
                "weights must be \"equal\", \"one\", a number or a list of numbers",
            )
        };
        match WeightsRepr::deserialize(d).map_err(|_: D::Error| bad())? {
            WeightsRepr::Name(n) if n == "equal" => Ok(Weights::Equal),
            WeightsRepr::Name(n) if n == "one" => Ok(Weights::One),
            WeightsRepr::Name(_) => Err(bad()),
            WeightsRepr::Each(w) => Ok(Weights::Each(w)),
            WeightsRepr::List(ws) => Ok(Weights::List(ws)),
        }
    }
}

fn one_each() -> Weights {
    Weights::One
}

/// A non-adaptive merge method with its settings (the `[method]` table of a run spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum MergeMethod {
    /// Σ τᵢ, kept exactly as a rank concatenation.
    Sum,
    /// (1/N) Σ τᵢ, N the number of adapters merged (`over = "touching"`: those on the module).
    Average {
        #[serde(default)]
        over: Divisor,
    },
    /// λ Σ τᵢ.
    TaskArithmetic {
        #[serde(default = "one")]
        lambda: f64,
    },
    /// Trim each τᵢ to its top-`density` magnitudes, elect a sign per entry, average the entries
    /// that agree with it; times λ.
    Ties {
        #[serde(default = "ties_density")]
        density: f64,
        #[serde(default)]
        sign: SignElection,
        #[serde(default = "one")]
        lambda: f64,
        /// Each task vector's weight (default 1 each, the paper's `equal_int`).
        #[serde(default = "one_each")]
        weights: Weights,
    },
    /// Keep each entry of τᵢ with probability `density`, rescale by 1/density, then sum (or TIES
    /// sign consensus); times λ.
    Dare {
        #[serde(default = "dare_density")]
        density: f64,
        #[serde(default)]
        seed: u64,
        #[serde(default)]
        consensus: bool,
        #[serde(default = "one")]
        lambda: f64,
    },
    /// Task singular vectors: each τᵢ's top-m triplets, the stacked U and V orthogonalised,
    /// recombined with the singular values; times λ.
    Tsv {
        #[serde(default = "tsv_m")]
        m: usize,
        #[serde(default = "one")]
        lambda: f64,
        /// Each task vector's weight (default 1/N each, the paper's `equal_frac`).
        #[serde(default)]
        weights: Weights,
    },
    /// Σ τᵢ truncated to rank R.
    Svd {
        #[serde(default = "svd_rank")]
        rank: usize,
    },
    /// LoraHub-style: A = Σ wᵢ Aᵢ, B = Σ wᵢ sᵢ Bᵢ, summed separately (cross terms included).
    /// Ranks differing between adapters are zero-padded to the largest.
    LorahubSum,
}

impl MergeMethod {
    /// The merge of kind `kind` with every setting at its default; None for a kind that is not
    /// a merge.
    pub fn default_of(kind: crate::run::method::MethodKind) -> Option<MergeMethod> {
        use crate::run::method::MethodKind as K;
        Some(match kind {
            K::Sum => MergeMethod::Sum,
            K::Average => MergeMethod::Average {
                over: Divisor::default(),
            },
            K::TaskArithmetic => MergeMethod::TaskArithmetic { lambda: one() },
            K::Ties => MergeMethod::Ties {
                density: ties_density(),
                sign: SignElection::default(),
                lambda: one(),
                weights: one_each(),
            },
            K::Dare => MergeMethod::Dare {
                density: dare_density(),
                seed: 0,
                consensus: false,
                lambda: one(),
            },
            K::Tsv => MergeMethod::Tsv {
                m: tsv_m(),
                lambda: one(),
                weights: Weights::default(),
            },
            K::Svd => MergeMethod::Svd { rank: svd_rank() },
            K::LorahubSum => MergeMethod::LorahubSum,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        // The names are `run::method::MethodKind`'s, the one list of them.
        self.kind().name()
    }

    /// Whether the result is exactly low rank (exported without truncation).
    pub fn is_exact_low_rank(&self) -> bool {
        !matches!(self, MergeMethod::Ties { .. } | MergeMethod::Dare { .. })
    }

    /// The per-adapter weights the settings list, if they list them.
    pub fn listed_weights(&self) -> Option<&[f64]> {
        match self {
            MergeMethod::Ties { weights, .. } | MergeMethod::Tsv { weights, .. } => weights.list(),
            _ => None,
        }
    }

    /// Checks the settings as a spec's `[method]` table gives them.
    pub fn validate(&self) -> Result<(), BadSetting> {
        self.check(Fields("method."))
    }

    /// Checks the settings, each named with `f`'s prefix.
    pub fn check(&self, f: Fields<'_>) -> Result<(), BadSetting> {
        match self {
            MergeMethod::Sum | MergeMethod::Average { .. } | MergeMethod::LorahubSum => Ok(()),
            MergeMethod::TaskArithmetic { lambda } => f.finite("lambda", *lambda),
            MergeMethod::Ties {
                density,
                lambda,
                weights,
                ..
            } => {
                f.fraction("density", *density)?;
                f.finite("lambda", *lambda)?;
                weights.check(f)
            }
            MergeMethod::Dare {
                density, lambda, ..
            } => {
                f.fraction("density", *density)?;
                f.finite("lambda", *lambda)
            }
            MergeMethod::Tsv { m, lambda, weights } => {
                f.count("m", *m, 1, MAX_RANK)?;
                f.finite("lambda", *lambda)?;
                weights.check(f)
            }
            MergeMethod::Svd { rank } => f.count("rank", *rank, 1, MAX_RANK),
        }
    }
}
