//! Arrow's routed forward against the plain forward with the same adapters folded into W (and as
//! summed side branches), for 4, 8, 16 and 30 rank-16 adapters on the forward benchmark's random
//! Llama (hidden 512, 8 layers, batch 8 × 128), or with `--lab` on the shipped lab.
//!
//! cargo bench --bench arrow -- [--iters N] [--lab] [--top-k K] [--adapters 4,8,16,30]
//!     [--device cpu|cuda]
//!
//! The code is the library's (`loracycle::bench::arrow`), which `loracycle bench arrow` runs too.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // SAFETY: first thing in main; no other thread has started.
    unsafe { loracycle::process::prepare() };
    let args = loracycle::bench::BenchArgs::from_env();
    if let Err(e) = loracycle::bench::arrow::run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
