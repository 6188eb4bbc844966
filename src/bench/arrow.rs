//! Arrow's routed forward against the plain forward with the same adapters folded into W and
//! against the same adapters as summed side branches, for 4, 8, 16 and 30 adapters (rank 16, all
//! seven modules): how routing's cost grows with the number of adapters. Also the zero-step
//! setup (stacking the adapters and computing every prototype by SVD).
//!
//! Shapes: the forward benchmark's random Llama (hidden 512, 8 layers, batch 8 × 128 tokens, 4
//! rows padded to 96), or with `--lab` the shipped lab (its base, pool adapters in name order,
//! caesar-5's first 8 training examples through the lab template).
//!
//! cargo bench --bench arrow -- [--iters N] [--lab] [--top-k K] [--adapters 4,8,16,30]
//!     [--device cpu|cuda]

use candle_core::DType;

use crate::adapter::{Adapter, branches_for};
use crate::model::device::device_label;
use crate::model::{Batch, Branches, Llama};
use crate::tune::arrow::ArrowBranches;

use super::recycle::random_adapter;
use super::support::{
    BenchArgs, config, lab_bench, padded_rows, random_model, time_forward, time_ms,
};

/// Runs the benchmark with the flags on the command line; prints what `cargo bench` prints.
pub fn run(a: &BenchArgs) -> Result<(), String> {
    println!("{}", crate::process::machine_line());
    let iters = a.iters(10);
    let dev = a.device()?;
    let top_k: usize = a.top_k.unwrap_or(4).max(1);
    let counts = if a.adapters.is_empty() {
        vec![4, 8, 16, 30]
    } else {
        a.adapters.clone()
    };
    let most = counts.iter().copied().max().unwrap_or(0);
    let is_lab = a.lab;
    let (model, pool, batch, tokens, shape) = if is_lab {
        // caesar-5's first 8 training examples as one padded batch.
        let lab = lab_bench(&dev, most);
        let ids: Vec<Vec<u32>> = lab.examples.into_iter().take(8).map(|e| e.ids).collect();
        let tokens: usize = ids.iter().map(Vec::len).sum();
        let batch = Batch::new(&ids, lab.pad, &dev).unwrap();
        let shape = format!(
            "lab: hidden {}, {} layers, pool adapters (rank {}), caesar-5 batch of 8 ({tokens} real tokens)",
            lab.cfg.hidden_size,
            lab.cfg.num_hidden_layers,
            lab.pool.first().map_or(0, |a| a.config.r)
        );
        (lab.model, lab.pool, batch, tokens, shape)
    } else {
        let cfg = config(a);
        let model = random_model(&cfg, &dev, false);
        let pool: Vec<Adapter> = (0..most).map(|i| random_adapter(&cfg, 16, i)).collect();
        let rows = padded_rows();
        let tokens: usize = rows.iter().map(Vec::len).sum();
        let batch = Batch::new(&rows, 0, &dev).unwrap();
        let shape = format!(
            "{}, hidden 512, 8 layers, rank-16 adapters on all seven modules, batch 8 x 128 ({tokens} real tokens)",
            cfg.architecture()
        );
        (model, pool, batch, tokens, shape)
    };
    println!(
        "arrow: {shape}, top-{top_k}, T 1, f32, {}, {} threads, {iters} iters",
        device_label(&dev),
        candle_core::utils::get_num_threads()
    );
    let layers = model.config().num_hidden_layers;
    let forward = |m: &Llama, br: Option<&Branches>| time_forward(iters, m, &batch, br);
    let report = |name: &str, n: usize, ms: f64, min: f64, vs: Option<(f64, &str)>| {
        let vs = vs
            .map(|(b, what)| format!("  {:5.2}x {what}", ms / b))
            .unwrap_or_default();
        println!(
            "  {name:<34} median {ms:8.2} ms (min {min:8.2})  {:7.0} tokens/s{vs}",
            tokens as f64 / (ms / 1e3)
        );
        println!(
            "{}",
            serde_json::json!({"case": name, "adapters": n, "median_ms": ms, "min_ms": min,
                "tokens_per_s": tokens as f64 / (ms / 1e3), "lab": is_lab})
        );
    };
    let (plain_ms, min) = forward(&model, None);
    report("no adapters", 0, plain_ms, min, None);
    for n in counts {
        let refs: Vec<&Adapter> = pool.iter().take(n).collect();
        let ones: Vec<(&Adapter, f64)> = refs.iter().map(|a| (*a, 1.0)).collect();
        let side = branches_for(&ones, model.config(), DType::F32, &dev).unwrap();
        let folded = model.fold(&side).unwrap();
        let (setup_ms, _) = time_ms(3, || {
            let ab = ArrowBranches::new(&refs, layers, top_k, 1.0, DType::F32, &dev).unwrap();
            ab.initial_prototypes(&refs).unwrap();
        });
        let ab = ArrowBranches::new(&refs, layers, top_k, 1.0, DType::F32, &dev).unwrap();
        let routed = ab.branches(&ab.initial_prototypes(&refs).unwrap());
        let (fold_ms, min) = forward(&folded, None);
        let name = format!("{n} folded into W");
        report(&name, n, fold_ms, min, Some((plain_ms, "no adapters")));
        for (name, br) in [
            (format!("{n} summed side branches"), &side),
            (format!("{n} routed (Arrow top-{top_k})"), &routed),
        ] {
            let (ms, min) = forward(&model, Some(br));
            report(&name, n, ms, min, Some((fold_ms, "folded")));
        }
        println!("  zero-step setup for {n} (stack + every prototype by SVD): {setup_ms:.1} ms");
    }
    Ok(())
}
