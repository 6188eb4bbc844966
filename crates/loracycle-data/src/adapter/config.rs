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

/// A field of `adapter_config.json` that PEFT would not have written: the config parses, but a
/// LoRA adapter cannot be built from it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} {detail}")]
pub struct BadField {
    pub field: &'static str,
    pub detail: String,
}

impl AdapterConfig {
    /// Checks the fields PEFT always writes for a LoRA adapter. Without this, a missing
    /// `peft_type` read as LoRA, a negative `lora_alpha` flipped every update's sign and a missing
    /// `target_modules` let any tensor through the per-module check.
    pub fn check(&self) -> Result<(), BadField> {
        let bad = |field, detail: String| Err(BadField { field, detail });
        if self.peft_type.is_none() {
            return bad(
                "peft_type",
                "is missing or null; a PEFT LoRA config says \"LORA\"".into(),
            );
        }
        if !(self.lora_alpha > 0.0 && self.lora_alpha.is_finite()) {
            return bad(
                "lora_alpha",
                format!(
                    "is {}; it must be a positive number (the update is scaled by lora_alpha / r)",
                    self.lora_alpha
                ),
            );
        }
        let modules_rule = "it must name the adapted modules: a list such as [\"q_proj\", \"v_proj\"], or a string";
        match &self.target_modules {
            None | Some(Value::Null) => bad(
                "target_modules",
                format!("is missing or null; {modules_rule}"),
            ),
            Some(Value::String(s)) if !s.is_empty() => Ok(()),
            Some(Value::Array(a))
                if !a.is_empty() && a.iter().all(|m| m.as_str().is_some_and(|s| !s.is_empty())) =>
            {
                Ok(())
            }
            Some(other) => bad(
                "target_modules",
                format!("is {}; {modules_rule}", compact(&Some(other.clone()))),
            ),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(json: &str) -> Result<(), String> {
        let cfg: AdapterConfig = serde_json::from_str(json).unwrap();
        cfg.check().map_err(|e| e.to_string())
    }

    #[test]
    fn fields_peft_always_writes_are_required() {
        let ok = r#""peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]"#;
        assert_eq!(checked(&format!("{{{ok}}}")), Ok(()));
        assert_eq!(
            checked(
                r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": "all-linear"}"#
            ),
            Ok(())
        );
        let peft = "peft_type is missing or null; a PEFT LoRA config says \"LORA\"";
        assert_eq!(
            checked(r#"{"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}"#),
            Err(peft.into())
        );
        assert_eq!(
            checked(
                r#"{"peft_type": null, "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}"#
            ),
            Err(peft.into())
        );
        for (alpha, shown) in [("-8", "-8"), ("0", "0"), ("-0.5", "-0.5")] {
            assert_eq!(
                checked(&format!(
                    r#"{{"peft_type": "LORA", "r": 4, "lora_alpha": {alpha}, "target_modules": ["q_proj"]}}"#
                )),
                Err(format!(
                    "lora_alpha is {shown}; it must be a positive number (the update is scaled by lora_alpha / r)"
                ))
            );
        }
        let rule = "it must name the adapted modules: a list such as [\"q_proj\", \"v_proj\"], or a string";
        for (modules, shown) in [
            ("", "is missing or null"),
            (r#", "target_modules": null"#, "is missing or null"),
            (r#", "target_modules": 3"#, "is 3"),
            (r#", "target_modules": []"#, "is []"),
            (r#", "target_modules": [1, "q_proj"]"#, "is [1,\"q_proj\"]"),
            (r#", "target_modules": {"q_proj": 1}"#, "is {\"q_proj\":1}"),
            (r#", "target_modules": """#, "is \"\""),
        ] {
            assert_eq!(
                checked(&format!(
                    r#"{{"peft_type": "LORA", "r": 4, "lora_alpha": 8{modules}}}"#
                )),
                Err(format!("target_modules {shown}; {rule}")),
                "{modules}"
            );
        }
    }
}
