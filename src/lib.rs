// Every line the program prints may carry text from files, servers and sockets (run labels,
// adapter cards, template messages): these shadow the standard macros for the whole crate, so
// each passes through `untrusted::printable_text` and no control character reaches the terminal.
macro_rules! println {
    () => { ::std::println!() };
    ($($t:tt)*) => { ::std::println!("{}", $crate::untrusted::printable_text(&::std::format!($($t)*))) };
}
#[allow(unused_macros)]
macro_rules! print {
    ($($t:tt)*) => { ::std::print!("{}", $crate::untrusted::printable_text(&::std::format!($($t)*))) };
}
macro_rules! eprintln {
    () => { ::std::eprintln!() };
    ($($t:tt)*) => { ::std::eprintln!("{}", $crate::untrusted::printable_text(&::std::format!($($t)*))) };
}
#[allow(unused_macros)]
macro_rules! eprint {
    ($($t:tt)*) => { ::std::eprint!("{}", $crate::untrusted::printable_text(&::std::format!($($t)*))) };
}

pub mod adapter;
pub use loracycle_data::atomic_write;
pub mod bench;
pub mod budget;
pub mod engine;
pub mod eval;
pub mod lab;
pub mod merge;
pub mod model;
pub mod pool;
pub mod process;
pub mod run;
pub mod select;
pub use loracycle_data::slurm;
pub mod tasks;
pub mod tune;
pub mod ui;
pub use loracycle_data::untrusted;
