//! Selection strategies as a run spec's `[selection]` table names them: plain data, so that the
//! spec parser and the UI know them without the scoring code (and candle).

use serde::{Deserialize, Serialize};

use crate::run::setting::{BadSetting, Fields, MAX_K};

/// What top-k ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreMetric {
    /// Exact match on the examples, ties broken by loss (the paper's choice).
    #[default]
    ExactMatch,
    /// Mean answer-token loss, lower first.
    Loss,
    /// Exact match of greedy generations under the task's scoring (the paper's metric), ties
    /// broken by loss. Teacher forcing decides the examples an adapter reproduces; only the rest
    /// are generated.
    #[serde(rename = "generated-exact-match")]
    Generated,
}

/// How `similar` measures the closeness of a candidate's update ΔW to the target's (the paper's
/// selection ablation; `select::closeness` has the formulas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Closeness {
    /// ⟨ΔW_c, ΔW_t⟩ over the norms.
    #[default]
    Cosine,
    /// Σ max(ΔW_c ⊙ ΔW_t, 0) over the norms.
    Clamp,
    /// Σ |ΔW_c ⊙ ΔW_t| over the norms.
    Abs,
    /// max(⟨ΔW_c, ΔW_t⟩, 0) per module, over the norms.
    ClampPerModule,
    /// The cosine of the element-wise squares, then a square root.
    QuasiFim,
    /// −ln(1 + Σ‖ΔW_c − ΔW_t‖²).
    L2,
}

impl Closeness {
    /// Whether the measure needs the dense ΔW (cosine works through r × r products).
    pub fn dense(self) -> bool {
        !matches!(self, Closeness::Cosine)
    }
}

/// How a closeness sums over (layer, module) pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregate {
    /// Σ products / √(Σ norms · Σ norms): the whole update's ratio.
    #[default]
    Macro,
    /// The mean over modules of each module's ratio.
    Micro,
}

/// `selection.to` naming the task's own adapter as the closeness reference.
pub const TASK_REFERENCE: &str = "task";

/// A selection strategy (the `[selection]` table of a run spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Selection {
    /// k adapters drawn uniformly (seeded; the run's seed when unset).
    Random {
        k: usize,
        #[serde(default)]
        seed: Option<u64>,
    },
    /// The k adapters that score best alone on the training examples.
    TopK {
        k: usize,
        #[serde(default)]
        by: ScoreMetric,
    },
    /// The k adapters whose ΔW is closest to that of adapter `to` (a pool name, an adapter
    /// folder, or `task`: the task's own adapter, `task.oracle_adapter` or a lab task's), by `measure` (cosine unless given) summed by `aggregate` (macro unless given).
    Similar {
        to: String,
        k: usize,
        #[serde(default)]
        measure: Closeness,
        #[serde(default)]
        aggregate: Aggregate,
    },
    /// The k adapters of highest PEFT rank r (the paper's `rank` baseline; ties in pool order).
    Rank { k: usize },
    /// Exactly these adapters, by pool name.
    Manual { adapters: Vec<String> },
    /// Every adapter of the pool.
    All,
}

impl Selection {
    pub fn name(&self) -> &'static str {
        match self {
            Selection::Random { .. } => "random",
            Selection::TopK { .. } => "top-k",
            Selection::Similar { .. } => "similar",
            Selection::Rank { .. } => "rank",
            Selection::Manual { .. } => "manual",
            Selection::All => "all",
        }
    }

    pub fn needs_scores(&self) -> bool {
        matches!(self, Selection::TopK { .. })
    }

    /// The strategies the New run form cycles through, in its order (k is the form's own field).
    pub fn form_choices() -> [Selection; 6] {
        [
            Selection::TopK {
                k: 0,
                by: ScoreMetric::ExactMatch,
            },
            Selection::TopK {
                k: 0,
                by: ScoreMetric::Generated,
            },
            Selection::TopK {
                k: 0,
                by: ScoreMetric::Loss,
            },
            Selection::Random { k: 0, seed: None },
            Selection::Manual {
                adapters: Vec::new(),
            },
            Selection::All,
        ]
    }

    /// The strategy as a person reads it.
    pub fn describe(&self) -> &'static str {
        match self {
            Selection::TopK {
                by: ScoreMetric::ExactMatch,
                ..
            } => "top-k by exact match",
            Selection::TopK {
                by: ScoreMetric::Generated,
                ..
            } => "top-k by generated exact match",
            Selection::TopK { .. } => "top-k by loss",
            Selection::Random { .. } => "random",
            Selection::Similar { .. } => "similar",
            Selection::Rank { .. } => "highest rank",
            Selection::Manual { .. } => "manual (pool selection)",
            Selection::All => "all",
        }
    }

    /// How many adapters it picks, for the strategies that pick a number.
    pub fn k(&self) -> Option<usize> {
        match self {
            Selection::TopK { k, .. }
            | Selection::Random { k, .. }
            | Selection::Similar { k, .. }
            | Selection::Rank { k } => Some(*k),
            Selection::Manual { .. } | Selection::All => None,
        }
    }

    /// Checks the settings as a spec's `[selection]` table gives them: k in range, a manual list
    /// that names adapters (whether the pool holds that many is known only once it is loaded).
    pub fn validate(&self) -> Result<(), BadSetting> {
        let f = Fields("selection.");
        if let Some(k) = self.k() {
            f.count("k", k, 1, MAX_K)?;
        }
        match self {
            Selection::Manual { adapters } => {
                f.non_empty("adapters", adapters)?;
                // A name twice would merge that adapter twice, doubling its weight unasked.
                match adapters
                    .iter()
                    .enumerate()
                    .find(|(i, a)| adapters[..*i].contains(a))
                {
                    Some((_, twice)) => Err(BadSetting {
                        field: "selection.adapters".into(),
                        rule: "a list naming each adapter once".into(),
                        got: format!("{twice:?} twice"),
                    }),
                    None => Ok(()),
                }
            }
            Selection::Similar { to, .. } if to.is_empty() => Err(BadSetting {
                field: "selection.to".into(),
                rule: "an adapter name or folder".into(),
                got: "\"\"".into(),
            }),
            _ => Ok(()),
        }
    }

    /// The same strategy picking `n` adapters (unchanged for those that pick no number).
    pub fn with_k(mut self, n: usize) -> Selection {
        if let Selection::TopK { k, .. }
        | Selection::Random { k, .. }
        | Selection::Similar { k, .. }
        | Selection::Rank { k } = &mut self
        {
            *k = n;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_selection_names_each_adapter_once() {
        let manual = |names: &[&str]| Selection::Manual {
            adapters: names.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(manual(&["a", "b"]).validate(), Ok(()));
        assert_eq!(
            manual(&["a", "b", "a"]).validate().unwrap_err().to_string(),
            "selection.adapters: must be a list naming each adapter once, got \"a\" twice"
        );
    }
}
