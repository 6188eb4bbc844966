//! A Llama-architecture forward in candle with LoRA side branches.
//!
//! The model loads a Hugging Face folder (`config.json`, safetensors, `tokenizer.json`); the side
//! branches are passed to every forward call rather than stored in the model, so the engine can
//! swap, tune or fold them without reloading the base weights.

pub mod branch;
pub mod config;
pub mod device;
pub mod generate;
pub mod llama;
pub mod matmul;
pub mod rope;
pub mod template;
pub mod weights;

use std::fmt;
use std::path::PathBuf;

pub use branch::{Branch, Branches};
pub use config::LlamaConfig;
pub use device::{DevicePref, DtypePref};
pub use llama::{Batch, Llama};
pub use template::{Template, TextCodec};

/// The seven linear modules of a Llama decoder layer, in PEFT's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Module {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Module {
    pub const ALL: [Module; 7] = [
        Module::Q,
        Module::K,
        Module::V,
        Module::O,
        Module::Gate,
        Module::Up,
        Module::Down,
    ];

    /// The name PEFT and transformers use (`q_proj`, ...).
    pub fn peft_name(self) -> &'static str {
        match self {
            Module::Q => "q_proj",
            Module::K => "k_proj",
            Module::V => "v_proj",
            Module::O => "o_proj",
            Module::Gate => "gate_proj",
            Module::Up => "up_proj",
            Module::Down => "down_proj",
        }
    }

    pub fn from_peft_name(name: &str) -> Option<Module> {
        Module::ALL.into_iter().find(|m| m.peft_name() == name)
    }

    /// Where the module sits inside a layer (`self_attn` or `mlp`).
    pub fn block(self) -> &'static str {
        match self {
            Module::Q | Module::K | Module::V | Module::O => "self_attn",
            _ => "mlp",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.peft_name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid model config: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{dir}: no weights found (expected model.safetensors or model.safetensors.index.json)")]
    NoWeights { dir: PathBuf },
    #[error(
        "{dir}: only pickle weights (pytorch_model.bin) found; refused because loading a pickle can execute code — convert it to safetensors"
    )]
    PickleOnly { dir: PathBuf },
    #[error("{path}: bad shard index: {reason}")]
    ShardIndex { path: PathBuf, reason: String },
    #[error("{path}: corrupt safetensors file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("weight {name}: {reason}")]
    Weight { name: String, reason: String },
    #[error("{path}: cannot load tokenizer: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("template {template}: {reason}")]
    Template { template: String, reason: String },
    #[error("device: {0}")]
    Device(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, ModelError>;
