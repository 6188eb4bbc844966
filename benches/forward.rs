//! Forward throughput on a padded batch: a random Llama (hidden 512, 8 layers, 8/2 heads,
//! intermediate 1408, vocab 32000), batch 8 × 128 tokens (4 rows padded to 96 real tokens),
//! f32 on the CPU: no adapters, 30 rank-16 adapters on all seven modules as side branches, and the
//! same 30 folded into W. `benches/forward_torch.py` runs the same work in PyTorch + peft.
//!
//! cargo bench --bench forward -- [--iters N] [--case TEXT] [--arch qwen3]
//!
//! `--arch qwen3` runs the same sizes as a Qwen3 (q/k norms, head_dim 128, tied embeddings).
//! `--case` runs only the cases whose name contains TEXT (`--case "no adapters"` for profiling
//! the plain forward).
//!
//! The code is the library's (`loracycle::bench::forward`), which `loracycle bench forward` runs too.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // SAFETY: first thing in main; no other thread has started.
    unsafe { loracycle::process::prepare() };
    let args = loracycle::bench::BenchArgs::from_env();
    if let Err(e) = loracycle::bench::forward::run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
