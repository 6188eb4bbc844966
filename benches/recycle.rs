//! The recycling engine's hot loops on the forward benchmark's random Llama (hidden 512, 8 layers,
//! 8/2 heads, intermediate 1408, vocab 32000, f32, CPU):
//! - one step of the gradient recipe with k = 30 rank-16 adapters on all seven modules (batch 8 ×
//!   64 tokens, 16 answer tokens each), against a forward + backward of the base model alone on
//!   the same batch (every weight a variable, as in full fine-tuning; and, for reference, gradients
//!   to a single rank-16 LoRA only);
//! - a LoraHub generation of 16 candidates over k = 20 rank-16 adapters scored in batched forwards
//!   against 16 one-candidate evaluations, on 5 and on 80 examples of 32 tokens.
//!
//! With `--lab`, the same on the shipped lab (its base, 30 / 20 pool adapters, caesar-5 examples).
//!
//! Each LoraHub measurement also times the base model alone on the same rows, as 16 forwards and
//! as one batch: what batching saves before any adapter work, which bounds the batched cases.
//!
//! cargo bench --bench recycle -- [--iters N] [--lab] [--only recipe|lorahub] [--examples 5,80]
//!     [--case sequential|stacked|grouped|base] [--device cpu|cuda]
//! (`--device cuda` needs `--features cuda`.)
//!
//! The code is the library's (`loracycle::bench::recycle`), which `loracycle bench recycle` runs too.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // SAFETY: first thing in main; no other thread has started.
    unsafe { loracycle::process::prepare() };
    let args = loracycle::bench::BenchArgs::from_env();
    if let Err(e) = loracycle::bench::recycle::run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
