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

/// The weights TSV gives each task vector before its singular vectors are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TsvWeights {
    /// 1/N each (the paper's setting).
    #[default]
    Equal,
    /// 1 each: the task vectors' singular components summed (loracycle's earlier TSV).
    One,
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
        #[serde(default)]
        weights: TsvWeights,
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
    pub fn name(&self) -> &'static str {
        // The names are `run::method::MethodKind`'s, the one list of them.
        self.kind().name()
    }

    /// Whether the result is exactly low rank (exported without truncation).
    pub fn is_exact_low_rank(&self) -> bool {
        !matches!(self, MergeMethod::Ties { .. } | MergeMethod::Dare { .. })
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
                density, lambda, ..
            }
            | MergeMethod::Dare {
                density, lambda, ..
            } => {
                f.fraction("density", *density)?;
                f.finite("lambda", *lambda)
            }
            MergeMethod::Tsv { m, lambda, .. } => {
                f.count("m", *m, 1, MAX_RANK)?;
                f.finite("lambda", *lambda)
            }
            MergeMethod::Svd { rank } => f.count("rank", *rank, 1, MAX_RANK),
        }
    }
}
