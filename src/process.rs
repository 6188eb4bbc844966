//! Facts about this process and its machine (`loracycle_data::process`: host name, whether a
//! process is alive) and the numeric half, which needs candle: thread count, allocator, the
//! processor's name and GEMM kernels.

pub mod numeric;

pub use loracycle_data::process::*;
pub use numeric::{cpu_model, gemm_isa, machine_line, prepare, set_threads, threads_set_by_user};
