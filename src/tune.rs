//! Training through candle autograd: the optimiser loop shared by LoRA training and the lab's base
//! pretraining, and training a new LoRA on a task's examples.

pub mod arrow;
pub mod cmaes;
pub mod coef;
pub mod lora;
pub mod lorahub;
pub mod optim;
pub mod pituning;
pub use loracycle_data::tune::settings;
pub mod tloop;

pub use lora::{LoraTrainSpec, TrainedLora, train_lora};
pub use optim::{Schedule, Trainer};
