//! The embedded lab: a synthetic task suite, a character tokenizer, a tiny Llama pretrained on a
//! subset of the tasks and a pool of LoRAs trained one task each — everything the recycling
//! question needs, small enough to run on a laptop CPU.

pub mod build;
pub mod card;
pub mod locate;
pub mod manifest;
pub mod pretrain;
pub mod recipe;
pub mod score;
pub mod tasks;
pub mod tokenizer;

pub use locate::{LabError, dir};
