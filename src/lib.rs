pub mod adapter;
pub mod eval;
pub mod model;
