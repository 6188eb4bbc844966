//! The benchmarks, in the library so that one binary measures everything: `cargo bench --bench
//! NAME` (benches/NAME.rs) and `loracycle bench NAME` run the same code with the same flags and
//! print the same lines (each measurement also as one JSON line), so a release binary carried to
//! a GPU machine reproduces what `cargo bench` measures here.
//!
//! - `forward`: forward throughput of a random Llama (hidden 512), plain, with 30 rank-16 side
//!   branches, folded; `--device`, `--arch qwen3`, `--case`.
//! - `recycle`: a gradient-recipe step over 30 adapters and a LoraHub generation, batched against
//!   sequential; `--lab`, `--only recipe|lorahub`, `--examples`, `--case`, `--device`.
//! - `screen`: scoring the lab pool on a task, batched against one adapter at a time; `--device`.
//! - `llama8b`: Llama-3.1-8B's layer shapes with random weights and 30 rank-16 adapters:
//!   tokens/s, time per recipe step and peak memory, projected to 32 layers; `--layers`,
//!   `--device`.
//! - `arrow`: Arrow's routed forward against the same adapters folded and as side branches, for
//!   4 to 30 adapters; `--lab`, `--top-k`, `--adapters`, `--device`.
//! - `agree`: a device's per-example losses against the CPU's and PEFT's references (f32 and
//!   bf16) on the fixtures and the lab; fails when one is out of tolerance.

pub mod agree;
pub mod arrow;
pub mod forward;
pub mod llama8b;
pub mod recycle;
pub mod screen;
pub mod support;

/// The benchmarks by name, with what each measures.
pub const ALL: &[(&str, &str)] = &[
    (
        "forward",
        "forward throughput: plain, 30 side branches, folded",
    ),
    (
        "recycle",
        "gradient-recipe step and LoraHub generation, batched vs sequential",
    ),
    (
        "screen",
        "screening the lab pool, batched vs one adapter at a time",
    ),
    (
        "llama8b",
        "Llama-3.1-8B layer shapes: tokens/s, recipe step, peak memory",
    ),
    (
        "arrow",
        "Arrow's routed forward vs the same adapters folded, 4 to 30 adapters",
    ),
    (
        "agree",
        "a device's losses against the CPU's and PEFT's (fixtures, lab)",
    ),
];

pub use support::BenchArgs;

/// Runs benchmark `name` with flags `args`.
pub fn run(name: &str, args: &BenchArgs) -> Result<(), String> {
    match name {
        "forward" => forward::run(args),
        "recycle" => recycle::run(args),
        "screen" => screen::run(args),
        "llama8b" => llama8b::run(args),
        "arrow" => arrow::run(args),
        "agree" => agree::check(args),
        _ => Err(format!(
            "no benchmark {name:?}; they are: {}",
            ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        )),
    }
}
