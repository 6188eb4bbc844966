//! Pool screening on the lab: every pool adapter (119, ranks 4–16, all modules or q,v) scored
//! alone on one task's 100 train + validation examples — one adapter at a time (folded into the
//! weights, 64 rows per forward) against many adapters per forward (each adapter's rows through
//! its own side branch). Scores are checked equal before timing.
//!
//! `cargo bench --bench screen [-- --task caesar-5 --rows 256,512,1024 --iters 3]`
//! `cargo bench --bench screen --features cuda -- --device cuda [--dtype bf16]` on a GPU (f32 by
//! default, so the paths' scores can be compared exactly; in bf16 differing verdicts are counted).
//!
//! The code is the library's (`loracycle::bench::screen`), which `loracycle bench screen` runs too.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // SAFETY: first thing in main; no other thread has started.
    unsafe { loracycle::process::prepare() };
    let args = loracycle::bench::BenchArgs::from_env();
    if let Err(e) = loracycle::bench::screen::run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
