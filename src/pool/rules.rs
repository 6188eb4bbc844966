//! The pool rules: what makes an adapter usable, each a named check with a verdict.
//!
//! Config rules need only `adapter_config.json` and the file list; weight rules (shapes, finite
//! values, ΔW norm bounds) run once `adapter_model.safetensors` is present.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::adapter::{Adapter, AdapterConfig, AdapterError, same_base};
use crate::model::LlamaConfig;

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
        Ok(c) => {
            out.push(Verdict::new(Rule::Config, Outcome::Pass, ""));
            c
        }
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

/// The weight rules for a folder holding the weights, against the base model's shapes.
/// Returns the verdicts and ‖ΣΔW‖ (the Frobenius norm over every module) when computed.
/// Without the base's config the weights are still read whole: the header, dtypes, A/B pairs and
/// ranks must agree with each other and the values be finite; only the shapes against the base
/// are left unchecked (the shapes verdict says so).
pub fn check_weights(dir: &Path, base: Option<&LlamaConfig>) -> (Vec<Verdict>, Option<f64>) {
    let fail = |rule: Rule, e: &AdapterError| {
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
    let adapter = match Adapter::load(dir, base.map(|b| (b, None))) {
        Ok(a) => a,
        Err(e) => {
            let rule = match &e {
                AdapterError::NonFinite { .. } => Rule::Finite,
                AdapterError::Corrupt { .. } | AdapterError::Io { .. } => {
                    return (
                        vec![Verdict::new(
                            Rule::Safetensors,
                            Outcome::Fail,
                            e.to_string(),
                        )],
                        None,
                    );
                }
                _ => Rule::Shapes,
            };
            return (fail(rule, &e), None);
        }
    };
    let shapes = match base {
        Some(_) => Verdict::new(Rule::Shapes, Outcome::Pass, ""),
        None => Verdict::new(
            Rule::Shapes,
            Outcome::Skipped,
            "consistent with each other; the base model's config is not available to check them against",
        ),
    };
    let mut verdicts = vec![shapes, Verdict::new(Rule::Finite, Outcome::Pass, "")];
    let mut sq = 0.0;
    let mut elems = 0usize;
    for &(l, m) in adapter.pairs.keys() {
        let n = adapter.delta_norm(l, m).unwrap_or(f64::NAN);
        sq += n * n;
        let pair = &adapter.pairs[&(l, m)];
        let (i, o) = match base {
            Some(b) => b.module_shape(m),
            None => (pair.a.dims()[1], pair.b.dims()[0]),
        };
        elems += i * o;
    }
    let norm = sq.sqrt();
    let rms = norm / (elems.max(1) as f64).sqrt();
    verdicts.push(if !norm.is_finite() {
        Verdict::new(Rule::Norm, Outcome::Fail, "‖ΔW‖ is not finite")
    } else if norm == 0.0 {
        Verdict::new(Rule::Norm, Outcome::Fail, "ΔW is zero (B is all zeros: an untrained adapter)")
    } else if rms > MAX_DELTA_RMS {
        Verdict::new(
            Rule::Norm,
            Outcome::Fail,
            format!("ΔW's RMS entry is {rms:.3}, above {MAX_DELTA_RMS}: it would overwhelm the base weights"),
        )
    } else {
        Verdict::new(Rule::Norm, Outcome::Pass, format!("‖ΔW‖ = {norm:.4}"))
    });
    (verdicts, Some(norm))
}

/// Weight rules marked pending (weights not present).
pub fn pending_weights() -> Vec<Verdict> {
    [Rule::Shapes, Rule::Finite, Rule::Norm]
        .into_iter()
        .map(|r| Verdict::new(r, Outcome::Pending, "weights not downloaded"))
        .collect()
}
