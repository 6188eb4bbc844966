//! Runs: a [`RunSpec`] in, a [`RunRecord`] out.
//!
//! The data layer is the spec, the record, the events a run sends and the run store: serde data
//! and files that the UI, the CLI's `runs` commands and the engine's protocol use, with no tensor
//! code down to the settings types they name (tests/layers.rs follows the imports). The executor
//! (`execute`, `export`, `study`) runs specs on a `Workbench` that keeps the model, pools and
//! adapter scores loaded; it is reached by its module path, so this root re-exports data only.

pub mod compare;
pub use loracycle_data::run::event;
pub mod execute;
pub mod export;
pub mod filter;
pub mod lifecycle;
pub use loracycle_data::run::method;
pub use loracycle_data::run::protocol;
pub use loracycle_data::run::record;
pub use loracycle_data::run::setting;
pub use loracycle_data::run::spec;
pub use loracycle_data::run::store;
pub mod study;
pub mod task;
pub mod workbench;

pub use event::RunEvent;
pub use record::{RunRecord, RunStatus};
pub use spec::{MethodSpec, RunSpec};
pub use store::{RunFolder, RunState, RunStore, RunSummary, StageStatus, StoreError};
