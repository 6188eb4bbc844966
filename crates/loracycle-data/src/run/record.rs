//! The run record (`record.json`) and the runs directory: one folder per run holding the spec as
//! given (`spec.toml`) and the record, each written atomically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::RunSpec;
use crate::eval::bootstrap::Estimate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Finished,
    Cancelled,
    Failed,
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub path: String,
    pub identity: Option<String>,
    /// `LlamaForCausalLM`, `Qwen3ForCausalLM`, … (absent in records older than Qwen support).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    pub device: String,
    pub dtype: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub name: String,
    pub train: usize,
    pub validation: usize,
    pub test: usize,
    /// How predictions are compared with answers: `exact`, `whitespace` (runs of whitespace and
    /// case) or `paper` (the paper's normalisation); records before protocols say `normalized`
    /// for `whitespace`.
    pub matching: String,
    /// Every setting the test stage judged generations with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoring: Option<crate::eval::answer::Scoring>,
    /// Test examples dropped because their prompt reached the scoring's token cap.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolInfo {
    pub source: String,
    pub filter: String,
    pub usable: usize,
    pub rejected: Vec<Rejected>,
    /// What broke a tie at the top-k cut, when one did (e.g. most of the pool scoring 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ties: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChosenAdapter {
    pub name: String,
    pub rank: usize,
    /// Exact match / loss alone on the train+validation examples, when scored.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exact_match: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub loss: Option<f64>,
    pub oracle: bool,
    /// Replaced by a random-init counterpart of the same shapes.
    pub random: bool,
}

/// One pool adapter's screening score on a run's task (train and validation rows), as top-k
/// selection saw it; a run's folder keeps them all in `screening.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScreeningScore {
    pub name: String,
    pub exact_match: f64,
    pub loss: f64,
}

/// One point of a tuning curve: a step of gradient tuning or LoRA training, or a generation of
/// LoraHub's search (train_loss is then the best candidate's loss so far).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub step: usize,
    pub train_loss: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_loss: Option<f64>,
}

/// Coefficients f(c): one row per group, one column per adapter (or rank dimension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coefficients {
    pub granularity: String,
    pub groups: Vec<String>,
    pub columns: Vec<String>,
    pub values: Vec<Vec<f32>>,
}

impl Coefficients {
    /// Σ|f(c)| of each adapter (column) over every group, largest first: which adapters carried
    /// the merge.
    pub fn weight_by_adapter(&self) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = self
            .columns
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let s: f64 = self
                    .values
                    .iter()
                    .filter_map(|row| row.get(c))
                    .map(|x| x.abs() as f64)
                    .sum();
                (name.clone(), s)
            })
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// The table `loracycle run` and `runs show` print: Σ|f(c)| per adapter, its share of the
    /// total, at most `most` lines.
    pub fn weight_table(&self, most: usize) -> String {
        let w = self.weight_by_adapter();
        let total: f64 = w.iter().map(|(_, s)| s).sum();
        let mut out = format!(
            "  Σ|f(c)| by adapter over {} {} group(s):\n",
            self.groups.len(),
            self.granularity
        );
        for (name, s) in w.iter().take(most) {
            out.push_str(&format!(
                "    {:<40} {:>9.3}  {:>5.1}%\n",
                name,
                s,
                if total > 0.0 { 100.0 * s / total } else { 0.0 }
            ));
        }
        if w.len() > most {
            out.push_str(&format!("    … {} more\n", w.len() - most));
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoefficientSnapshot {
    pub step: usize,
    pub values: Vec<Vec<f32>>,
}

/// One test example as the evaluated model answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleOutcome {
    pub prompt: String,
    pub answer: String,
    /// Greedy decoding's output; with `truncated`, only up to and including its first wrong
    /// token (what the one-pass, teacher-forced evaluation can tell without decoding).
    pub prediction: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    pub correct: bool,
    pub loss: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub exact_match: Estimate,
    pub loss: Estimate,
    /// Validation loss of the kept checkpoint (tuned methods).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_loss: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Timings {
    pub load_s: f64,
    pub select_s: f64,
    pub tune_s: f64,
    pub eval_s: f64,
    pub total_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    pub loracycle: String,
    pub candle: String,
}

impl Default for Versions {
    fn default() -> Self {
        Self {
            loracycle: env!("CARGO_PKG_VERSION").into(),
            candle: "0.11.1".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub label: String,
    pub status: RunStatus,
    pub started: String,
    pub versions: Versions,
    pub spec: RunSpec,
    pub model: ModelInfo,
    pub task: TaskInfo,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pool: Option<PoolInfo>,
    pub chosen: Vec<ChosenAdapter>,
    pub curve: Vec<CurvePoint>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub coefficient_curve: Vec<CoefficientSnapshot>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub coefficients: Option<Coefficients>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub best_step: Option<usize>,
    pub metrics: Metrics,
    pub timings: Timings,
    /// Every test example with its prediction (absent in records of older versions).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub examples: Vec<ExampleOutcome>,
    /// The host that ran it, and the Slurm job it ran in (when Slurm started it).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub slurm: Option<crate::slurm::SlurmJob>,
}

/// Where runs are kept: `--runs-dir`, else `LORACYCLE_RUNS_DIR`, else the platform data folder
/// (`~/.local/share/loracycle/runs` on Linux).
pub fn runs_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("LORACYCLE_RUNS_DIR") {
        return PathBuf::from(p);
    }
    directories::ProjectDirs::from("", "", "loracycle")
        .map(|d| d.data_dir().join("runs"))
        .unwrap_or_else(|| PathBuf::from("loracycle-runs"))
}

/// A run id: UTC time, a slug of the label, and eight random hex digits.
pub fn new_run_id(label: &str) -> String {
    let now = std::time::SystemTime::now();
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut slug: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while slug.contains("--") {
        slug = slug.replace("--", "-");
    }
    let slug: String = slug.trim_matches('-').chars().take(40).collect();
    // 32 random bits: folders are made with an exclusive mkdir, so a clash only draws again.
    format!("{stamp}-{slug}-{:08x}", rand::random::<u32>())
}

/// Now, to the millisecond: a run's submission time, which orders the runs of a store (two
/// runs submitted within one second keep the order they were submitted in).
pub fn now_rfc3339_millis() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
