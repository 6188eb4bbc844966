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

fn median_ms(iters: usize, mut f: impl FnMut()) -> f64 {
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
    times[times.len() / 2]
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
    let fold_start = Instant::now();
    let folded = model.fold(&branches).unwrap();
    let fold_ms = fold_start.elapsed().as_secs_f64() * 1e3;

    println!(
        "forward: hidden 512, 8 layers, 8/2 heads, vocab 32000, batch 8 x 128, f32, cpu, {iters} iters (median)"
    );
    let cases: [(&str, &Llama, Option<&Branches>); 3] = [
        ("no adapters", &model, None),
        ("30 x rank-16 side branches", &model, Some(&branches)),
        ("30 x rank-16 folded into W", &folded, None),
    ];
    let mut base_ms = 0.0;
    for (name, m, br) in cases {
        let ms = median_ms(iters, || {
            m.forward(&batch, br)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
        });
        if br.is_none() && base_ms == 0.0 {
            base_ms = ms;
        }
        println!(
            "  {name:<28} {ms:8.1} ms  {:8.0} tokens/s  {:+6.1}% vs none",
            tokens as f64 / (ms / 1e3),
            (ms / base_ms - 1.0) * 100.0
        );
        println!(
            "{}",
            serde_json::json!({"case": name, "ms": ms, "tokens_per_s": tokens as f64 / (ms / 1e3)})
        );
    }
    println!("  folding 30 adapters into W once: {fold_ms:.1} ms");
    let hidden_ms = median_ms(iters, || {
        model
            .hidden(&batch, None)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
    });
    println!("  of which decoder layers (no LM head): {hidden_ms:.1} ms");
}
