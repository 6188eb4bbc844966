//! The subset of a Hugging Face `config.json` that a Llama-architecture forward needs.
//!
//! Field names follow transformers so a real Llama 2/3/3.1 folder parses as it is; anything the
//! forward cannot honour (a different architecture, biases) is refused at load time.

use serde::{Deserialize, Serialize};

use crate::model::Module;

/// One id or a list: Llama 3.1 lists several end tokens, older configs give one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// `rope_scaling` as Llama 3.1 writes it (`rope_type: llama3`; older configs spell the key `type`),
/// or transformers 5's `rope_parameters`, which also carries `rope_theta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type", default = "default_rope_type")]
    pub rope_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default = "one")]
    pub factor: f64,
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    #[serde(default = "default_original_max")]
    pub original_max_position_embeddings: usize,
}

fn default_rope_type() -> String {
    "default".into()
}
fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn default_original_max() -> usize {
    8192
}
fn default_eps() -> f64 {
    1e-6
}
fn default_max_positions() -> usize {
    4096
}

/// The longest sequence one forward takes, whatever `max_position_embeddings` says: the rotary
/// table is built for this many positions at most, and attention (and its mask) grows with the
/// square of the length.
pub const MAX_SEQUENCE: usize = 32_768;

/// Upper bounds on a config's sizes: far above any published Llama, low enough that a config
/// cannot make the loader reserve terabytes or overflow a size computation.
const SIZE_LIMITS: [(&str, usize); 8] = [
    ("hidden_size", 1 << 16),
    ("intermediate_size", 1 << 20),
    ("num_hidden_layers", 1 << 10),
    ("num_attention_heads", 1 << 10),
    ("num_key_value_heads", 1 << 10),
    ("head_dim", 1 << 12),
    ("vocab_size", 1 << 22),
    ("max_position_embeddings", 1 << 24),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LlamaConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub model_type: Option<String>,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default)]
    pub rope_parameters: Option<RopeScaling>,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub bos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub pad_token_id: Option<TokenIds>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    /// Mistral's and Qwen's sliding-window attention (refused when in use).
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default)]
    pub torch_dtype: Option<String>,
    #[serde(default)]
    pub dtype: Option<String>,
    #[serde(default, rename = "_name_or_path")]
    pub name_or_path: Option<String>,
}

/// The decoder families loracycle runs: one forward, their differences as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
}

impl Family {
    /// The architecture name a config gives (`architectures[0]`).
    pub fn architecture(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForCausalLM",
            Family::Mistral => "MistralForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Qwen3 => "Qwen3ForCausalLM",
        }
    }

    fn model_type(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
        }
    }

    const ALL: [Family; 4] = [Family::Llama, Family::Mistral, Family::Qwen2, Family::Qwen3];
}

impl LlamaConfig {
    /// The family, from `architectures` (else `model_type`, else Llama).
    pub fn family(&self) -> Result<Family, String> {
        let names = || {
            Family::ALL
                .iter()
                .map(|f| f.architecture())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(arch) = self.architectures.first() {
            return Family::ALL
                .into_iter()
                .find(|f| f.architecture() == arch)
                .ok_or_else(|| format!("architecture {arch} is not supported ({})", names()));
        }
        match &self.model_type {
            None => Ok(Family::Llama),
            Some(mt) => Family::ALL
                .into_iter()
                .find(|f| f.model_type() == mt)
                .ok_or_else(|| format!("model_type {mt} is not supported ({})", names())),
        }
    }

    /// The family's name for messages; `LlamaForCausalLM` when the config names none it runs.
    pub fn architecture(&self) -> &'static str {
        self.family().unwrap_or(Family::Llama).architecture()
    }

    /// Whether q and k get a per-head RMSNorm (`q_norm`, `k_norm`) before RoPE: Qwen3.
    pub fn qk_norm(&self) -> bool {
        self.family() == Ok(Family::Qwen3)
    }

    /// Whether a linear module has a bias: q, k and v always in Qwen2; q, k, v and o with
    /// `attention_bias`; gate, up and down with `mlp_bias`.
    pub fn has_bias(&self, m: Module) -> bool {
        match m {
            Module::Q | Module::K | Module::V => {
                self.attention_bias || self.family() == Ok(Family::Qwen2)
            }
            Module::O => self.attention_bias,
            Module::Gate | Module::Up | Module::Down => self.mlp_bias,
        }
    }

    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// The RoPE base: top-level `rope_theta`, else `rope_parameters.rope_theta`, else 10,000.
    pub fn rope_theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| self.rope_parameters.as_ref().and_then(|r| r.rope_theta))
            .unwrap_or(10_000.0)
    }

    /// The frequency scaling in force, if any (`rope_scaling`, else `rope_parameters`).
    pub fn rope_scaling(&self) -> Option<&RopeScaling> {
        self.rope_scaling
            .as_ref()
            .or(self.rope_parameters.as_ref())
            .filter(|r| r.rope_type != "default")
    }

    pub fn eos_ids(&self) -> Vec<u32> {
        self.eos_token_id
            .as_ref()
            .map(TokenIds::to_vec)
            .unwrap_or_default()
    }

    /// The longest sequence the model takes: its positions, at most [`MAX_SEQUENCE`].
    pub fn max_sequence(&self) -> usize {
        self.max_position_embeddings.min(MAX_SEQUENCE)
    }

    /// Every size a config gives, by field name (for the bounds check).
    fn sizes(&self) -> [(&'static str, usize); 8] {
        [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_kv_heads()),
            ("head_dim", self.head_dim.unwrap_or(0)),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ]
    }

    /// Checks the things the forward relies on; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let family = self.family()?;
        if let Some(mt) = &self.model_type
            && mt != family.model_type()
        {
            return Err(format!(
                "model_type {mt} does not go with architecture {}",
                family.architecture()
            ));
        }
        // Mistral uses its window whenever one is given; Qwen only with use_sliding_window.
        let window = match family {
            Family::Mistral => self.sliding_window,
            Family::Qwen2 | Family::Qwen3 if self.use_sliding_window => self.sliding_window,
            _ => None,
        };
        if let Some(w) = window {
            return Err(format!(
                "sliding-window attention (sliding_window {w}) is not supported"
            ));
        }
        for ((name, n), (_, max)) in self.sizes().into_iter().zip(SIZE_LIMITS) {
            if n > max {
                return Err(format!("{name} {n} is above the largest supported ({max})"));
            }
        }
        if self.vocab_size == 0 || self.max_position_embeddings == 0 {
            return Err("vocab_size and max_position_embeddings must be > 0".into());
        }
        let theta = self.rope_theta();
        if !(theta.is_finite() && theta > 0.0) {
            return Err(format!(
                "rope_theta must be a finite number > 0, got {theta}"
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0) {
            return Err(format!(
                "rms_norm_eps must be a finite number ≥ 0, got {}",
                self.rms_norm_eps
            ));
        }
        if self.num_attention_heads == 0
            || self.num_kv_heads() == 0
            || self.num_hidden_layers == 0
            || self.hidden_size == 0
        {
            return Err(
                "hidden_size, num_hidden_layers, num_attention_heads and num_key_value_heads must be > 0".into(),
            );
        }
        if !self.num_attention_heads.is_multiple_of(self.num_kv_heads()) {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.num_kv_heads()
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "head_dim {} must be even for RoPE",
                self.head_dim()
            ));
        }
        if let Some(rs) = self.rope_scaling()
            && rs.rope_type != "llama3"
        {
            return Err(format!(
                "rope type {} is not supported (llama3 or default)",
                rs.rope_type
            ));
        }
        if let Some(rs) = self.rope_scaling() {
            let positive = [
                ("factor", rs.factor),
                ("low_freq_factor", rs.low_freq_factor),
                ("high_freq_factor", rs.high_freq_factor),
            ];
            for (name, v) in positive {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!(
                        "rope_scaling.{name} must be a finite number > 0, got {v}"
                    ));
                }
            }
            if rs.high_freq_factor <= rs.low_freq_factor || rs.original_max_position_embeddings == 0
            {
                return Err(
                    "rope_scaling: high_freq_factor must exceed low_freq_factor and original_max_position_embeddings be > 0".into(),
                );
            }
        }
        Ok(())
    }

    /// Every tensor a model of this config has, by its Hugging Face name, with its shape: the
    /// embedding; per layer the seven linear weights (and their biases where the family has
    /// them), the q/k norms (Qwen3), the two RMSNorms; the final norm; the LM head when untied.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        use crate::model::Module;
        let (h, v) = (self.hidden_size, self.vocab_size);
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            for m in Module::ALL {
                let (i, o) = self.module_shape(m);
                let module = format!("{p}.{}.{}", m.block(), m.peft_name());
                out.push((format!("{module}.weight"), vec![o, i]));
                if self.has_bias(m) {
                    out.push((format!("{module}.bias"), vec![o]));
                }
            }
            if self.qk_norm() {
                for n in ["q_norm", "k_norm"] {
                    out.push((format!("{p}.self_attn.{n}.weight"), vec![self.head_dim()]));
                }
            }
            for n in ["input_layernorm", "post_attention_layernorm"] {
                out.push((format!("{p}.{n}.weight"), vec![h]));
            }
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![v, h]));
        }
        out
    }

    /// Input and output width of one of the seven linear modules.
    pub fn module_shape(&self, module: crate::model::Module) -> (usize, usize) {
        use crate::model::Module::*;
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let q = self.num_attention_heads * self.head_dim();
        let kv = self.num_kv_heads() * self.head_dim();
        match module {
            Q => (h, q),
            K | V => (h, kv),
            O => (q, h),
            Gate | Up => (h, i),
            Down => (i, h),
        }
    }

    /// Parameter count of the model as the config describes it.
    pub fn parameter_count(&self) -> usize {
        let per_layer: usize = crate::model::Module::ALL
            .iter()
            .map(|m| {
                let (i, o) = self.module_shape(*m);
                i * o
            })
            .sum::<usize>()
            + 2 * self.hidden_size;
        let embed = self.vocab_size * self.hidden_size;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + head + self.hidden_size + per_layer * self.num_hidden_layers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config.json of meta-llama/Llama-3.1-8B-Instruct, as published.
    const LLAMA_31_8B: &str = r#"{
      "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
      "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
      "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
      "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
      "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
      "pretraining_tp": 1, "rms_norm_eps": 1e-05,
      "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 8192, "rope_type": "llama3"},
      "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
      "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256
    }"#;

    #[test]
    fn parses_llama_31_8b() {
        let cfg: LlamaConfig = serde_json::from_str(LLAMA_31_8B).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.eos_ids(), vec![128001, 128008, 128009]);
        assert_eq!(cfg.num_kv_heads(), 8);
        assert_eq!(cfg.head_dim(), 128);
        assert_eq!(cfg.rope_theta(), 500000.0);
        assert_eq!(cfg.rope_scaling().unwrap().factor, 8.0);
        // 8,030,261,248 parameters is the published size of Llama 3.1 8B.
        assert_eq!(cfg.parameter_count(), 8_030_261_248);
        assert_eq!(cfg.module_shape(crate::model::Module::K), (4096, 1024));
        assert_eq!(cfg.module_shape(crate::model::Module::Down), (14336, 4096));
    }

    #[test]
    fn reads_transformers_5_rope_parameters_and_both_dtype_keys() {
        let text = r#"{"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
            "num_attention_heads": 4, "vocab_size": 10, "dtype": "bfloat16", "torch_dtype": "bfloat16",
            "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
              "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}"#;
        let cfg: LlamaConfig = serde_json::from_str(text).unwrap();
        assert_eq!(cfg.rope_theta(), 500000.0);
        assert_eq!(cfg.rope_scaling().unwrap().rope_type, "llama3");
        assert_eq!(cfg.eos_ids(), Vec::<u32>::new());
    }

    #[test]
    fn refuses_other_architectures_and_bad_head_counts() {
        let mut cfg: LlamaConfig = serde_json::from_str(LLAMA_31_8B).unwrap();
        cfg.architectures = vec!["GPT2LMHeadModel".into()];
        assert_eq!(
            cfg.validate().unwrap_err(),
            "architecture GPT2LMHeadModel is not supported (LlamaForCausalLM, MistralForCausalLM, \
             Qwen2ForCausalLM, Qwen3ForCausalLM)"
        );
        // Mistral runs on the Llama forward without a sliding window, and is refused with one.
        cfg.architectures = vec!["MistralForCausalLM".into()];
        cfg.model_type = Some("mistral".into());
        assert_eq!(cfg.validate(), Ok(()));
        cfg.sliding_window = Some(4096);
        assert_eq!(
            cfg.validate().unwrap_err(),
            "sliding-window attention (sliding_window 4096) is not supported"
        );
        cfg.architectures = vec!["Qwen2ForCausalLM".into()];
        cfg.model_type = Some("qwen2".into());
        assert_eq!(
            cfg.validate(),
            Ok(()),
            "Qwen uses the window only when asked"
        );
        assert!(cfg.has_bias(Module::V) && !cfg.has_bias(Module::O) && !cfg.qk_norm());
        cfg.use_sliding_window = true;
        assert!(cfg.validate().is_err());
        cfg.model_type = Some("llama".into());
        assert_eq!(
            cfg.validate().unwrap_err(),
            "model_type llama does not go with architecture Qwen2ForCausalLM"
        );
        let mut cfg: LlamaConfig = serde_json::from_str(LLAMA_31_8B).unwrap();
        cfg.num_key_value_heads = Some(5);
        assert_eq!(
            cfg.validate().unwrap_err(),
            "num_attention_heads 32 is not a multiple of num_key_value_heads 5"
        );
    }

    #[test]
    fn refuses_sizes_that_would_drive_huge_allocations() {
        let with = |key: &str, value: &str| -> String {
            let text = LLAMA_31_8B.replacen(
                &format!("\"{key}\": "),
                &format!("\"{key}\": {value}, \"_was\": "),
                1,
            );
            let cfg: LlamaConfig = serde_json::from_str(&text).unwrap();
            cfg.validate().unwrap_err()
        };
        assert_eq!(
            with("num_hidden_layers", "1000000000000000000"),
            "num_hidden_layers 1000000000000000000 is above the largest supported (1024)"
        );
        assert_eq!(
            with("max_position_embeddings", "1000000000000"),
            "max_position_embeddings 1000000000000 is above the largest supported (16777216)"
        );
        assert_eq!(
            with("vocab_size", "100000000000"),
            "vocab_size 100000000000 is above the largest supported (4194304)"
        );
        assert_eq!(
            with("rope_theta", "0"),
            "rope_theta must be a finite number > 0, got 0"
        );
        // Within the bounds, the rotary table still covers at most MAX_SEQUENCE positions.
        let cfg: LlamaConfig = serde_json::from_str(LLAMA_31_8B).unwrap();
        assert_eq!(cfg.max_sequence(), MAX_SEQUENCE);
    }
}
