//! loracycle's run data: what a run is (its spec and settings), what it leaves (its record,
//! curve, events and status in the run store), the engine's protocol, and the small pieces of
//! the model, adapter, pool, evaluation and tuning vocabulary those name. Serde only: no tensor
//! code and no terminal code, so the UI, the `runs` commands and an engine client read runs
//! through it without linking candle or ratatui. The main crate re-exports each module where
//! it used to live (`loracycle::run::spec` is this crate's `run::spec`).
//!
//! The module tree mirrors the main crate's, so a path such as `crate::adapter::config` names
//! the same file in both.

// Every line printed may carry text from files, servers and sockets: these shadow the standard
// macros for the whole crate, so each passes through `untrusted::printable_text`.
#[allow(unused_macros)]
macro_rules! println {
    () => { ::std::println!() };
    ($($t:tt)*) => { ::std::println!("{}", $crate::untrusted::printable_text(&::std::format!($($t)*))) };
}
#[allow(unused_macros)]
macro_rules! eprintln {
    () => { ::std::eprintln!() };
    ($($t:tt)*) => { ::std::eprintln!("{}", $crate::untrusted::printable_text(&::std::format!($($t)*))) };
}

pub mod adapter {
    //! The serde halves of adapters: a PEFT `adapter_config.json`, and the random-init control's
    //! settings.
    pub mod config;
    pub mod random_init;
}
pub mod atomic_write;
pub mod engine {
    //! The engine's protocol: commands in, events out.
    pub mod protocol;
}
pub mod eval {
    //! How answers are judged, and bootstrap intervals.
    pub mod answer;
    pub mod bootstrap;
}
pub mod merge {
    //! The merge methods a spec can name.
    pub mod method;
}
pub mod model {
    //! What a spec says of the model: modules, device and dtype preferences, template kinds.
    pub mod module;
    pub mod pref;
    pub mod template {
        //! Which template a spec asks for.
        pub mod kind;
    }
}
pub mod pool {
    //! Where adapters come from and how a pool is filtered, as a spec names them.
    pub mod filter;
    pub mod source;
}
pub mod process;
pub mod run {
    //! A run: its spec, settings, events, record and store.
    pub mod event;
    pub mod method;
    pub mod protocol;
    pub mod record;
    pub mod setting;
    pub mod spec;
    pub mod store;
}
pub mod select {
    //! What a spec says of selection.
    pub mod selection;
}
pub mod slurm;
pub mod tune {
    //! Tuning settings as a spec names them.
    pub mod settings;
}
pub mod untrusted;
