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
pub use loracycle_data::model::module;
pub use loracycle_data::model::pref;
pub mod rope;
pub mod route;
pub mod template;
pub mod weights;

use std::path::PathBuf;

pub use branch::{Branch, Branches};
pub use config::LlamaConfig;
pub use device::{OpenDevice, ResolveDtype};
pub use llama::{Batch, Llama};
pub use module::Module;
pub use pref::{DevicePref, DtypePref};
pub use template::{Template, TextCodec};

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
    /// A tensor of the weight files that the config does not account for, or of a dtype that
    /// is not a float.
    #[error("{dir}: weight {name} {reason}")]
    UnexpectedWeight {
        dir: PathBuf,
        name: String,
        reason: String,
    },
    #[error("{path}: cannot load tokenizer: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("template {template}: {reason}")]
    Template { template: String, reason: String },
    #[error("device: {0}")]
    Device(String),
    /// A sequence longer than the model's positions (or [`config::MAX_SEQUENCE`]).
    #[error("a sequence of {tokens} tokens is longer than the model takes ({max} positions)")]
    TooLong { tokens: usize, max: usize },
    /// A batch whose attention would need more than [`llama::MAX_ATTENTION`] entries.
    #[error(
        "a batch of {rows} rows of {tokens} tokens is too large for one forward (use fewer rows per batch)"
    )]
    BatchTooLarge { rows: usize, tokens: usize },
    #[error(
        "the tokenizer has {tokenizer} tokens but the model's vocab_size is {vocab}: ids past it have no embedding"
    )]
    VocabMismatch { tokenizer: usize, vocab: usize },
    /// One example of a list that failed to encode (1-based).
    #[error("row {row}: {source}")]
    Row { row: usize, source: Box<ModelError> },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, ModelError>;
