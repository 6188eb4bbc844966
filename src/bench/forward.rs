//! Forward throughput on a padded batch: a random Llama (hidden 512, 8 layers, 8/2 heads,
//! intermediate 1408, vocab 32000), batch 8 × 128 tokens (4 rows padded to 96 real tokens),
//! f32 on the CPU (or `--device cuda`): no adapters, 30 rank-16 adapters on all seven modules as side branches, and the
//! same 30 folded into W. `benches/forward_torch.py` runs the same work in PyTorch + peft.
//!
//! cargo bench --bench forward -- [--iters N] [--case TEXT] [--arch qwen3]
//!
//! `--arch qwen3` runs the same sizes as a Qwen3 (q/k norms, head_dim 128, tied embeddings).
//! `--case` runs only the cases whose name contains TEXT (`--case "no adapters"` for profiling
//! the plain forward).

use candle_core::{DType, Device, Tensor};

use crate::model::branch::{Branches, Slice};
use crate::model::{Batch, Llama, LlamaConfig, Module};

use super::support::{BenchArgs, config, random_model, time_ms};
use crate::model::device::device_label;

pub(super) fn random_branches(
    cfg: &LlamaConfig,
    adapters: usize,
    rank: usize,
    dev: &Device,
) -> Branches {
    let mut out = Branches::empty(cfg.num_hidden_layers);
    for l in 0..cfg.num_hidden_layers {
        for m in Module::ALL {
            let (i, o) = cfg.module_shape(m);
            let pairs: Vec<(Tensor, Tensor)> = (0..adapters)
                .map(|_| {
                    (
                        Tensor::randn(0f32, 0.02, (rank, i), dev).unwrap(),
                        Tensor::randn(0f32, 0.02, (o, rank), dev).unwrap(),
                    )
                })
                .collect();
            let slices: Vec<Slice<'_>> = pairs
                .iter()
                .map(|(a, b)| Slice { a, b, gate: 2.0 })
                .collect();
            out.set(l, m, Branches::concat(&slices, DType::F32, dev).unwrap());
        }
    }
    out
}

/// Runs the benchmark with the flags on the command line; prints what `cargo bench` prints.
pub fn run(a: &BenchArgs) -> Result<(), String> {
    let iters = a.iters(10);
    let dev = a.device()?;
    let cfg = config(a);
    let model = random_model(&cfg, &dev, false);
    let rows = super::support::padded_rows();
    let batch = Batch::new(&rows, 0, &dev).unwrap();
    let tokens = 8 * 128;
    let branches = random_branches(&cfg, 30, 16, &dev);
    let (fold_ms, _) = time_ms(3, || {
        model.fold(&branches).unwrap();
    });
    let folded = model.fold(&branches).unwrap();
    let mut grad_model = model.clone();
    grad_model.set_differentiable(true);

    let only = a.case.clone();
    println!("{}", crate::process::machine_line());
    println!(
        "forward: {}, hidden 512, 8 layers, 8/2 heads (head dim {}), vocab 32000, batch 8 x 128, f32, {}, {} threads, {iters} iters",
        cfg.architecture(),
        cfg.head_dim(),
        device_label(&dev),
        candle_core::utils::get_num_threads()
    );
    // (name, model, branches, index of the case it is compared with)
    let cases: [(&str, &Llama, Option<&Branches>, usize); 5] = [
        ("no adapters", &model, None, 0),
        ("30 x r16 branches", &model, Some(&branches), 0),
        ("30 x r16 folded into W", &folded, None, 0),
        ("gradient path, no adapters", &grad_model, None, 3),
        ("gradient path, 30 x r16", &grad_model, Some(&branches), 3),
    ];
    let mut medians = Vec::new();
    for (name, m, br, reference) in cases {
        if only.as_deref().is_some_and(|c| !name.contains(c)) {
            medians.push(f64::NAN);
            continue;
        }
        let (ms, min) = super::support::time_forward(iters, m, &batch, br);
        medians.push(ms);
        println!(
            "  {name:<28} median {ms:7.1} ms (min {min:7.1})  {:6.0} tokens/s  {:+6.1}% vs {}",
            tokens as f64 / (ms / 1e3),
            (ms / medians[reference] - 1.0) * 100.0,
            cases[reference].0
        );
        println!(
            "{}",
            serde_json::json!({"case": name, "median_ms": ms, "min_ms": min, "tokens_per_s": tokens as f64 / (ms / 1e3)})
        );
    }
    println!("  folding 30 adapters into W once: {fold_ms:.1} ms");
    if only.is_some() {
        return Ok(());
    }
    let (hidden_ms, _) = time_ms(iters, || {
        model
            .hidden(&batch, None)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
    });
    println!("  decoder layers alone (no LM head): {hidden_ms:.1} ms");
    Ok(())
}
