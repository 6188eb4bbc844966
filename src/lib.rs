pub mod adapter;
pub mod eval;
pub mod lab;
pub mod model;
pub mod tune;
