//! A run's protocol: the lab's own settings, or the paper's (`protocol = "paper"`), for every
//! setting a spec leaves unset. Plain data, so the spec parser knows it without candle.
//!
//! The paper's protocol (r-three/realistic-adaptive-merging): 100 train + validation examples of
//! the task (20 of them validation), or the low-data setting's N merged into one set; top-k
//! selection by generated exact match on those examples; greedy generation of 30 new tokens (a
//! task's `task.toml` gives 500 for chain-of-thought tasks), the text after `####`, the paper's
//! normalisation, test prompts of 2,048 tokens or more dropped; a new LoRA keeps its best
//! checkpoint by validation loss (every 10 steps) on a cosine schedule to 0; LoraHub searches
//! 100 candidates on all the train + validation examples.

use serde::{Deserialize, Serialize};

use super::spec::{MethodSpec, RunSpec, TaskSpec};
use crate::eval::answer::{Extract, Normalize, TaskSettings};
use crate::select::selection::{ScoreMetric, Selection};
use crate::tune::settings::Objective;

/// Which defaults a spec's unset settings take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// The lab's settings (DESIGN.md), tuned for small tasks on a CPU.
    #[default]
    Lab,
    /// The paper's settings, for numbers comparable with its tables.
    Paper,
}

/// The examples the paper takes of a task (train + validation, a fifth of them validation).
pub const PAPER_EXAMPLES: usize = 100;
/// The paper's cap on a prompt's tokens (prompts this long or longer are dropped).
pub const PAPER_MAX_PROMPT: usize = 2048;
/// New tokens the paper generates for a short answer.
pub const PAPER_SHORT_ANSWER: usize = 30;
/// New tokens the lab generates.
pub const LAB_MAX_NEW: usize = 48;

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Lab => "lab",
            Protocol::Paper => "paper",
        }
    }

    /// Every scoring setting's default; `lab_task`: a lab task, whose answers are exact strings.
    pub fn scoring(self, lab_task: bool) -> TaskSettings {
        match self {
            Protocol::Lab => TaskSettings {
                max_new_tokens: Some(LAB_MAX_NEW),
                extract: Some(Extract::Whole),
                normalize: Some(if lab_task {
                    Normalize::Exact
                } else {
                    Normalize::Whitespace
                }),
                max_prompt_tokens: None,
            },
            Protocol::Paper => TaskSettings {
                max_new_tokens: Some(PAPER_SHORT_ANSWER),
                extract: Some(Extract::AfterMarker),
                normalize: Some(Normalize::Paper),
                max_prompt_tokens: Some(PAPER_MAX_PROMPT),
            },
        }
    }

    /// Gives `spec`'s settings that `doc` (the TOML it was read from) leaves unset this
    /// protocol's values. The lab's are the serde defaults already; the paper's are set here, so a
    /// record's spec names every value the run used.
    pub fn fill(self, spec: &mut RunSpec, doc: &toml::Table) {
        let given = |table: &str| {
            let t = doc.get(table).and_then(|v| v.as_table());
            move |key: &str| t.is_some_and(|t| t.contains_key(key))
        };
        if self == Protocol::Paper {
            if doc.get("selection").is_none() {
                spec.selection = Selection::TopK {
                    k: 30,
                    by: ScoreMetric::Generated,
                };
            } else if let Selection::TopK { by, .. } = &mut spec.selection
                && !given("selection")("by")
            {
                *by = ScoreMetric::Generated;
            }
        }
        self.fill_method(&mut spec.method, given("method"));
        self.fill_task(&mut spec.task, given("task"));
    }

    /// The method settings `given` does not name take this protocol's values.
    pub fn fill_method(self, method: &mut MethodSpec, given: impl Fn(&str) -> bool) {
        if self == Protocol::Lab {
            return;
        }
        match method {
            MethodSpec::NewLora(n) => {
                if !given("checkpoint_every") {
                    n.checkpoint_every = 10;
                }
                if !given("final_lr_frac") {
                    n.final_lr_frac = 0.0;
                }
            }
            MethodSpec::Lorahub(h) => {
                if !given("budget") {
                    h.budget = 100;
                }
                if !given("objective") {
                    h.objective = Objective::TrainValidation;
                }
            }
            _ => {}
        }
    }

    /// The task's example counts, unless `given` names `examples`: the paper's 100, or its
    /// low-data setting for `train_examples = N`.
    pub fn fill_task(self, t: &mut TaskSpec, given: impl Fn(&str) -> bool) {
        if self == Protocol::Lab || given("examples") {
            return;
        }
        match t.train_examples.take() {
            // 0 stays where it was given, to be refused by name.
            Some(0) => t.train_examples = Some(0),
            // The low-data setting: N examples of train + validation, merged.
            Some(n) => {
                t.examples = Some(n);
                if !given("combine") {
                    t.combine = true;
                }
            }
            None => t.examples = Some(PAPER_EXAMPLES),
        }
    }
}
