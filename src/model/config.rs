//! The subset of a Hugging Face `config.json` that a Llama-architecture forward needs.
//!
//! Field names follow transformers so a real Llama 2/3/3.1 folder parses as it is; anything the
//! forward cannot honour (a different architecture, biases) is refused at load time.

use serde::{Deserialize, Serialize};

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

/// `rope_scaling` as Llama 3.1 writes it (`rope_type: llama3`). Older configs spell the key `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default = "one")]
    pub factor: f64,
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    #[serde(default = "default_original_max")]
    pub original_max_position_embeddings: usize,
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
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_eps() -> f64 {
    1e-6
}
fn default_max_positions() -> usize {
    4096
}

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
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
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
    #[serde(default, alias = "dtype")]
    pub torch_dtype: Option<String>,
    #[serde(default, rename = "_name_or_path")]
    pub name_or_path: Option<String>,
}

impl LlamaConfig {
    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    pub fn eos_ids(&self) -> Vec<u32> {
        self.eos_token_id
            .as_ref()
            .map(TokenIds::to_vec)
            .unwrap_or_default()
    }

    /// Checks the things the forward relies on; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(arch) = self.architectures.first()
            && arch != "LlamaForCausalLM"
        {
            return Err(format!(
                "architecture {arch} is not supported (only LlamaForCausalLM)"
            ));
        }
        if let Some(mt) = &self.model_type
            && mt != "llama"
        {
            return Err(format!("model_type {mt} is not supported (only llama)"));
        }
        if self.attention_bias || self.mlp_bias {
            return Err("attention_bias / mlp_bias are not supported".into());
        }
        if self.num_attention_heads == 0 || self.num_hidden_layers == 0 || self.hidden_size == 0 {
            return Err(
                "hidden_size, num_hidden_layers and num_attention_heads must be > 0".into(),
            );
        }
        if self.num_attention_heads % self.num_kv_heads() != 0 {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.num_kv_heads()
            ));
        }
        if self.head_dim() % 2 != 0 {
            return Err(format!(
                "head_dim {} must be even for RoPE",
                self.head_dim()
            ));
        }
        if let Some(rs) = &self.rope_scaling
            && rs.rope_type != "llama3"
            && rs.rope_type != "default"
        {
            return Err(format!(
                "rope_scaling type {} is not supported (llama3 or default)",
                rs.rope_type
            ));
        }
        Ok(())
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
