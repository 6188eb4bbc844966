//! Forward throughput on a padded batch: a random Llama (hidden 512, 8 layers, 8/2 heads,
//! intermediate 1408, vocab 32000), batch 8 × 128 tokens (4 rows padded to 96 real tokens),
//! f32 on the CPU: no adapters, 30 rank-16 adapters on all seven modules as side branches, and the
//! same 30 folded into W. `benches/forward_torch.py` runs the same work in PyTorch + peft.
//!
//! cargo bench --bench forward -- [--iters N]

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use loracycle::model::branch::{Branches, Slice};
use loracycle::model::{Batch, Llama, LlamaConfig, Module};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn config() -> LlamaConfig {
    serde_json::from_value(serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 8,
        "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 32000,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
        "tie_word_embeddings": false
    }))
    .unwrap()
}

fn random_model(cfg: &LlamaConfig, dev: &Device) -> Llama {
    let mut t = HashMap::new();
    let (h, v) = (cfg.hidden_size, cfg.vocab_size);
    let rnd = |shape: &[usize]| Tensor::randn(0f32, 0.02, shape, dev).unwrap();
    t.insert("model.embed_tokens.weight".to_string(), rnd(&[v, h]));
    t.insert("lm_head.weight".to_string(), rnd(&[v, h]));
    t.insert(
        "model.norm.weight".to_string(),
        Tensor::ones(h, DType::F32, dev).unwrap(),
    );
    for l in 0..cfg.num_hidden_layers {
        for m in Module::ALL {
            let (i, o) = cfg.module_shape(m);
            t.insert(
                format!("model.layers.{l}.{}.{}.weight", m.block(), m.peft_name()),
                rnd(&[o, i]),
            );
        }
        for n in ["input_layernorm", "post_attention_layernorm"] {
            t.insert(
                format!("model.layers.{l}.{n}.weight"),
                Tensor::ones(h, DType::F32, dev).unwrap(),
            );
        }
    }
    let vb = VarBuilder::from_tensors(t, DType::F32, dev);
    Llama::from_var_builder(cfg.clone(), vb, DType::F32, dev).unwrap()
}

fn random_branches(cfg: &LlamaConfig, adapters: usize, rank: usize, dev: &Device) -> Branches {
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

/// (median, minimum) wall time in ms over `iters` runs after 3 warm-up runs.
fn time_ms(iters: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..3 {
        f();
    }
    let mut times: Vec<f64> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iters = args
        .iter()
        .position(|a| a == "--iters")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dev = Device::Cpu;
    let cfg = config();
    let model = random_model(&cfg, &dev);
    let rows: Vec<Vec<u32>> = (0..8)
        .map(|r| {
            let len = if r < 4 { 128 } else { 96 };
            (0..len)
                .map(|i| ((i * 7919 + r * 104729) % 32000) as u32)
                .collect()
        })
        .collect();
    let batch = Batch::new(&rows, 0, &dev).unwrap();
    let tokens = 8 * 128;
    let branches = random_branches(&cfg, 30, 16, &dev);
    let (fold_ms, _) = time_ms(3, || {
        model.fold(&branches).unwrap();
    });
    let folded = model.fold(&branches).unwrap();
    let mut grad_model = model.clone();
    grad_model.set_differentiable(true);

    println!(
        "forward: hidden 512, 8 layers, 8/2 heads, vocab 32000, batch 8 x 128, f32, cpu, {} threads, {iters} iters",
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
        let (ms, min) = time_ms(iters, || {
            m.forward(&batch, br)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
        });
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
}
