//! The subcommands of the binary, one file each.

pub mod eval;
pub mod inspect;
pub mod lab;
pub mod merge;
pub mod pool;
pub mod run;
pub mod runs;
