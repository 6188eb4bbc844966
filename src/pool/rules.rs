//! The pool rules: what makes an adapter usable, each a named check with a verdict.
//!
//! Config rules need only `adapter_config.json` and the file list; weight rules (shapes, finite
//! values, ΔW norm bounds) run once `adapter_model.safetensors` is present.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::adapter::{Adapter, AdapterConfig, AdapterError, LoraPair, same_base};
use crate::model::{LlamaConfig, Module};

/// Root-mean-square ΔW entry above which an adapter is not a plausible fine-tune: it would
/// overwhelm any base weight (Llama weights have an RMS of about 0.02).
pub const MAX_DELTA_RMS: f64 = 1.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// adapter_config.json present and valid JSON.
    Config,
    /// peft_type is LORA.
    PeftType,
    /// task_type is CAUSAL_LM.
    TaskType,
    /// adapter_model.safetensors present (a pickle-only adapter is refused).
    Safetensors,
    /// No DoRA, modules_to_save, bias, rank/alpha patterns, layer replication, fan-in-fan-out.
    Features,
    /// base_model_name_or_path names the pool's base model.
    BaseModel,
    /// Every A and B present with shapes that fit the base model.
    Shapes,
    /// No NaN or Inf.
    Finite,
    /// ΔW neither zero nor absurdly large.
    Norm,
}

impl Rule {
    pub const ALL: [Rule; 9] = [
        Rule::Config,
        Rule::PeftType,
        Rule::TaskType,
        Rule::Safetensors,
        Rule::Features,
        Rule::BaseModel,
        Rule::Shapes,
        Rule::Finite,
        Rule::Norm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::Config => "config",
            Rule::PeftType => "peft-type",
            Rule::TaskType => "task-type",
            Rule::Safetensors => "safetensors",
            Rule::Features => "features",
            Rule::BaseModel => "base-model",
            Rule::Shapes => "shapes",
            Rule::Finite => "finite",
            Rule::Norm => "norm",
        }
    }

    pub fn needs_weights(self) -> bool {
        matches!(self, Rule::Shapes | Rule::Finite | Rule::Norm)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Pass,
    Fail,
    /// Needs the weights, which are not downloaded yet.
    Pending,
    /// Not checkable here (e.g. no base model given).
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub rule: Rule,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Verdict {
    fn new(rule: Rule, outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            rule,
            outcome,
            detail: crate::untrusted::printable(&detail.into()).into_owned(),
        }
    }
}

/// What is known about an adapter's files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Files {
    pub safetensors: bool,
    pub pickle: bool,
}

/// The config rules, from the parsed config (or why it could not be parsed).
pub fn check_config(
    config: Result<&AdapterConfig, &str>,
    files: Files,
    base: Option<&str>,
) -> Vec<Verdict> {
    let mut out = Vec::new();
    let cfg = match config {
        Ok(c) => match c.check() {
            Ok(()) => {
                out.push(Verdict::new(Rule::Config, Outcome::Pass, ""));
                c
            }
            Err(e) => {
                out.push(Verdict::new(
                    Rule::Config,
                    Outcome::Fail,
                    format!("adapter_config.json is not valid: {e}"),
                ));
                return out;
            }
        },
        Err(reason) => {
            out.push(Verdict::new(Rule::Config, Outcome::Fail, reason));
            return out;
        }
    };
    let peft = cfg.peft_type.as_deref().unwrap_or("LORA");
    out.push(if peft == "LORA" {
        Verdict::new(Rule::PeftType, Outcome::Pass, "")
    } else {
        Verdict::new(
            Rule::PeftType,
            Outcome::Fail,
            format!("peft_type is {peft}, only LORA is supported"),
        )
    });
    let task = cfg.task_type.as_deref().unwrap_or("CAUSAL_LM");
    out.push(if task == "CAUSAL_LM" {
        Verdict::new(Rule::TaskType, Outcome::Pass, "")
    } else {
        Verdict::new(
            Rule::TaskType,
            Outcome::Fail,
            format!("task_type is {task}, only CAUSAL_LM is supported"),
        )
    });
    out.push(match (files.safetensors, files.pickle) {
        (true, _) => Verdict::new(Rule::Safetensors, Outcome::Pass, ""),
        (false, true) => Verdict::new(
            Rule::Safetensors,
            Outcome::Fail,
            "only adapter_model.bin (a pickle) is published; refused because loading a pickle can execute code",
        ),
        (false, false) => Verdict::new(Rule::Safetensors, Outcome::Fail, "no adapter_model.safetensors"),
    });
    out.push(match cfg.unsupported() {
        Some((feature, detail)) if feature != "peft_type" && feature != "task_type" => {
            Verdict::new(
                Rule::Features,
                Outcome::Fail,
                format!("{feature}: {detail}"),
            )
        }
        _ => Verdict::new(Rule::Features, Outcome::Pass, ""),
    });
    out.push(match (base, cfg.base_model_name_or_path.as_deref()) {
        (None, _) => Verdict::new(Rule::BaseModel, Outcome::Skipped, "no base model given"),
        (Some(_), None) => Verdict::new(
            Rule::BaseModel,
            Outcome::Pass,
            "the adapter names no base model",
        ),
        (Some(want), Some(own)) if same_base(own, want) => {
            Verdict::new(Rule::BaseModel, Outcome::Pass, "")
        }
        (Some(want), Some(own)) => Verdict::new(
            Rule::BaseModel,
            Outcome::Fail,
            format!("trained on {own}, not on {want}"),
        ),
    });
    out
}

/// The most bytes of weights a check reads without the base model's config: beyond it a listing
/// judges the header alone. A listing without a base must stay a metadata browse, and one 2 GB
/// adapter read whole took half a minute and gigabytes of memory.
pub const MAX_VALUES_WITHOUT_BASE: u64 = 64 << 20;

/// The weight rules for a folder holding the weights, against the base model's shapes.
/// Returns the verdicts and ‖ΣΔW‖ (the Frobenius norm over every module) when computed.
/// The header is always checked: dtypes, A/B pairs and ranks must agree with each other (and with
/// the base's shapes when its config is given). The values (finite, ΔW norm) are read one pair at
/// a time, and without the base's config only up to [`MAX_VALUES_WITHOUT_BASE`] bytes of file;
/// the verdicts say what was left unchecked.
pub fn check_weights(dir: &Path, base: Option<&LlamaConfig>) -> (Vec<Verdict>, Option<f64>) {
    let refused = |e: AdapterError| {
        let rule = match &e {
            AdapterError::NonFinite { .. } => Rule::Finite,
            AdapterError::Corrupt { .. } | AdapterError::Io { .. } => {
                return vec![Verdict::new(
                    Rule::Safetensors,
                    Outcome::Fail,
                    e.to_string(),
                )];
            }
            _ => Rule::Shapes,
        };
        let mut v: Vec<Verdict> = Vec::new();
        for r in [Rule::Shapes, Rule::Finite, Rule::Norm] {
            if r == rule {
                v.push(Verdict::new(r, Outcome::Fail, e.to_string()));
                break;
            }
            v.push(Verdict::new(r, Outcome::Pass, ""));
        }
        v
    };
    let head = match Adapter::header(dir, base.map(|b| (b, None))) {
        Ok(h) => h,
        Err(e) => return (refused(e), None),
    };
    let shapes = match base {
        Some(_) => Verdict::new(Rule::Shapes, Outcome::Pass, ""),
        None => Verdict::new(
            Rule::Shapes,
            Outcome::Skipped,
            "consistent with each other; the base model's config is not available to check them against",
        ),
    };
    if base.is_none() && head.file_size > MAX_VALUES_WITHOUT_BASE {
        let why = format!(
            "values not read: the weights are {} bytes, more than the {} a check reads without the base model (give --model to read them)",
            head.file_size, MAX_VALUES_WITHOUT_BASE
        );
        return (
            vec![
                shapes,
                Verdict::new(Rule::Finite, Outcome::Skipped, why.clone()),
                Verdict::new(Rule::Norm, Outcome::Skipped, why),
            ],
            None,
        );
    }
    let scale = head.config.scale();
    let mut size = DeltaSize::default();
    let read = Adapter::read_pairs(dir, &head, &mut |(_, m), pair| {
        size.add(m, &pair, scale, base);
        Ok(())
    });
    if let Err(e) = read {
        return (refused(e), None);
    }
    let (norm_verdict, norm) = size.verdict();
    (
        vec![
            shapes,
            Verdict::new(Rule::Finite, Outcome::Pass, ""),
            norm_verdict,
        ],
        Some(norm),
    )
}

/// The norm rule on a loaded adapter (what a run's pool applies after loading, so that a run
/// refuses what a listing rejects), with ‖ΣΔW‖.
pub fn check_norm(adapter: &Adapter, base: Option<&LlamaConfig>) -> (Verdict, f64) {
    let mut size = DeltaSize::default();
    for (&(_, m), pair) in &adapter.pairs {
        size.add(m, pair, adapter.scale(), base);
    }
    size.verdict()
}

/// ‖ΣΔW‖² and the number of entries of the modules it covers, summed pair by pair.
#[derive(Default)]
struct DeltaSize {
    sq: f64,
    elems: usize,
}

impl DeltaSize {
    fn add(&mut self, m: Module, pair: &LoraPair, scale: f64, base: Option<&LlamaConfig>) {
        let n = pair.delta_norm(scale).unwrap_or(f64::NAN);
        self.sq += n * n;
        let (i, o) = match base {
            Some(b) => b.module_shape(m),
            None => (pair.a.dims()[1], pair.b.dims()[0]),
        };
        self.elems += i * o;
    }

    fn verdict(&self) -> (Verdict, f64) {
        let norm = self.sq.sqrt();
        let rms = norm / (self.elems.max(1) as f64).sqrt();
        let v = if !norm.is_finite() {
            Verdict::new(Rule::Norm, Outcome::Fail, "‖ΔW‖ is not finite")
        } else if norm == 0.0 {
            Verdict::new(
                Rule::Norm,
                Outcome::Fail,
                "ΔW is zero (B is all zeros: an untrained adapter)",
            )
        } else if rms > MAX_DELTA_RMS {
            Verdict::new(
                Rule::Norm,
                Outcome::Fail,
                format!(
                    "ΔW's RMS entry is {rms:.3}, above {MAX_DELTA_RMS}: it would overwhelm the base weights"
                ),
            )
        } else {
            Verdict::new(Rule::Norm, Outcome::Pass, format!("‖ΔW‖ = {norm:.4}"))
        };
        (v, norm)
    }
}

/// Weight rules marked pending (weights not present).
pub fn pending_weights() -> Vec<Verdict> {
    [Rule::Shapes, Rule::Finite, Rule::Norm]
        .into_iter()
        .map(|r| Verdict::new(r, Outcome::Pending, "weights not downloaded"))
        .collect()
}
