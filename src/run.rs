//! Runs: a [`RunSpec`] in, a [`RunRecord`] out. The engine (and the CLI's `run` and `study`)
//! execute specs on a [`Workbench`] that keeps the model, pools and adapter scores loaded.

pub mod event;
pub mod execute;
pub mod export;
pub mod record;
pub mod spec;
pub mod store;
pub mod study;

pub use event::RunEvent;
pub use execute::{RunError, Workbench, execute};
pub use record::{RunRecord, RunStatus};
pub use spec::{MethodSpec, RunSpec};
