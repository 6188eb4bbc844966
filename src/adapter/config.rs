//! `adapter_config.json` as PEFT writes it, read permissively so an unsupported feature can be
//! named in the refusal rather than failing the parse.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AdapterConfig {
    #[serde(default)]
    pub peft_type: Option<String>,
    #[serde(default)]
    pub task_type: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub target_modules: Option<Value>,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub modules_to_save: Option<Value>,
    #[serde(default)]
    pub bias: Option<String>,
    #[serde(default)]
    pub rank_pattern: Option<Value>,
    #[serde(default)]
    pub alpha_pattern: Option<Value>,
    #[serde(default)]
    pub layer_replication: Option<Value>,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub lora_bias: bool,
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
}

/// True for JSON null, an empty object or an empty list (PEFT writes `{}` for "no pattern").
pub fn is_empty(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

impl AdapterConfig {
    /// Whether `target_modules` covers `module` (tensor `key`): a list names it (`q_proj`, or a
    /// path ending in `.q_proj`); a string (`all-linear`, a regex) or no value is not checked.
    pub fn targets(&self, module: crate::model::module::Module, key: &str) -> bool {
        let Some(Value::Array(list)) = &self.target_modules else {
            return true;
        };
        let name = module.peft_name();
        list.iter().filter_map(Value::as_str).any(|t| {
            t == name || (t.ends_with(&format!(".{name}")) && key.contains(&format!("{t}.")))
        })
    }

    /// alpha / r, or alpha / sqrt(r) with rsLoRA.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// The first feature of this config that loracycle cannot apply, as (feature, detail).
    pub fn unsupported(&self) -> Option<(&'static str, String)> {
        if let Some(t) = &self.peft_type
            && t != "LORA"
        {
            return Some(("peft_type", format!("{t}, only LORA is supported")));
        }
        if let Some(t) = &self.task_type
            && t != "CAUSAL_LM"
        {
            return Some(("task_type", format!("{t}, only CAUSAL_LM is supported")));
        }
        if self.use_dora {
            return Some(("DoRA", "use_dora is true".into()));
        }
        if !is_empty(&self.modules_to_save) {
            return Some((
                "modules_to_save",
                format!(
                    "it trains full copies of {}",
                    compact(&self.modules_to_save)
                ),
            ));
        }
        if let Some(b) = &self.bias
            && b != "none"
        {
            return Some(("bias", format!("bias is {b:?}, only \"none\" is supported")));
        }
        if self.lora_bias {
            return Some(("lora_bias", "lora_bias is true".into()));
        }
        if !is_empty(&self.rank_pattern) {
            return Some(("rank_pattern", compact(&self.rank_pattern)));
        }
        if !is_empty(&self.alpha_pattern) {
            return Some(("alpha_pattern", compact(&self.alpha_pattern)));
        }
        if !is_empty(&self.layer_replication) {
            return Some(("layer_replication", compact(&self.layer_replication)));
        }
        if self.fan_in_fan_out {
            return Some(("fan_in_fan_out", "weights stored transposed".into()));
        }
        if self.r == 0 {
            return Some(("r", "rank 0".into()));
        }
        None
    }
}

fn compact(v: &Option<Value>) -> String {
    let s = v.as_ref().map(Value::to_string).unwrap_or_default();
    if s.len() > 80 {
        format!("{}…", &s[..s.floor_char_boundary(80)])
    } else {
        s
    }
}
