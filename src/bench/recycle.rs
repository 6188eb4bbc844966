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

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};

use crate::adapter::{Adapter, AdapterConfig, LoraPair};
use crate::eval::token_nll;
use crate::model::branch::Branch;
use crate::model::device::device_label;
use crate::model::template::EncodedExample;
use crate::model::{Branches, Llama, LlamaConfig, Module};
use crate::tune::coef::{Activation, CoefficientBranches, Granularity};
use crate::tune::lorahub::{StackedPool, score_batched, score_grouped, score_sequential};

use super::support::{BenchArgs, config, random_model, time_ms};

pub(super) fn random_adapter(cfg: &LlamaConfig, rank: usize, i: usize) -> Adapter {
    let dev = Device::Cpu;
    let mut pairs = BTreeMap::new();
    for l in 0..cfg.num_hidden_layers {
        for m in Module::ALL {
            let (inp, out) = cfg.module_shape(m);
            pairs.insert(
                (l, m),
                LoraPair {
                    a: Tensor::randn(0f32, 0.02, (rank, inp), &dev).unwrap(),
                    b: Tensor::randn(0f32, 0.02, (out, rank), &dev).unwrap(),
                },
            );
        }
    }
    Adapter {
        name: format!("random-{i}"),
        dir: PathBuf::new(),
        config: AdapterConfig {
            r: rank,
            lora_alpha: 2.0 * rank as f64,
            ..Default::default()
        },
        pairs,
        storage_dtype: "F32".into(),
        file_size: 0,
        warnings: Vec::new(),
    }
}

pub(super) fn examples(n: usize, len: usize, answer: usize, salt: usize) -> Vec<EncodedExample> {
    (0..n)
        .map(|r| EncodedExample {
            ids: (0..len)
                .map(|i| ((i * 7919 + (r + salt) * 104_729) % 32000) as u32)
                .collect(),
            answer_start: len - answer,
        })
        .collect()
}

/// One step of the gradient recipe (per-module coefficients, leaky-ReLU, all at 0.01) over
/// `adapters`, with ΔW formed per step and with side branches: (case, median ms, min ms).
pub(super) fn recipe_steps(
    model: &Llama,
    adapters: &[&Adapter],
    pad: u32,
    batch: &[EncodedExample],
    iters: usize,
) -> Vec<(&'static str, f64, f64)> {
    let dev = model.device().clone();
    let cfg = model.config();
    let cb = CoefficientBranches::new(
        adapters,
        cfg.num_hidden_layers,
        Granularity::Module,
        Activation::LeakyRelu,
        DType::F32,
        &dev,
    )
    .unwrap();
    let c = Var::from_tensor(
        &Tensor::full(0.01f32, (cb.layout.groups, cb.layout.columns), &dev).unwrap(),
    )
    .unwrap();
    [
        (true, "recipe step, k=30 (dense dW path)"),
        (false, "recipe step, k=30 (branch path)"),
    ]
    .into_iter()
    .map(|(dense, name)| {
        let mut m = model.clone();
        m.set_differentiable(true);
        m.set_dense_delta_grad(dense);
        let (ms, min) = time_ms(iters, || {
            let br = cb.branches(c.as_tensor()).unwrap();
            let (nll, _) = token_nll(&m, pad, batch, Some(&br)).unwrap();
            let loss = nll.mean_all().unwrap();
            loss.backward().unwrap();
            sync(&loss);
        });
        (name, ms, min)
    })
    .collect()
}

/// A LoraHub generation of 16 fixed candidates over `adapters` scored one candidate at a time,
/// in stacked-branch batches and in grouped-ΔW batches of `rows` rows: (case, median, min ms).
fn lorahub_generation(
    a: &BenchArgs,
    model: &Llama,
    adapters: &[&Adapter],
    pad: u32,
    examples: &[EncodedExample],
    rows: usize,
    iters: usize,
) -> Vec<(&'static str, f64, f64)> {
    let k = adapters.len();
    let stacked = StackedPool::new(adapters, model.config(), DType::F32, model.device()).unwrap();
    let candidates: Vec<Vec<f64>> = (0..16)
        .map(|p| {
            (0..k)
                .map(|i| (((p * k + i) % 7) as f64 - 3.0) / 4.0)
                .collect()
        })
        .collect();
    // The base model alone on the same rows, as 16 forwards and as one: what batching saves
    // before any adapter work (the bound on every batched case's speed-up).
    let repeated: Vec<EncodedExample> = (0..16).flat_map(|_| examples.iter().cloned()).collect();
    let base_loss = |rows: &[EncodedExample]| {
        let (nll, _) = token_nll(model, pad, rows, None).unwrap();
        nll.sum_all().unwrap().to_scalar::<f32>().unwrap();
    };
    let mut out = Vec::new();
    for name in [
        "sequential",
        "batched, stacked branch",
        "batched, grouped dW",
        "base alone, 16 forwards",
        "base alone, one batch",
    ] {
        if !a.case_wanted(name) {
            continue;
        }
        let (ms, min) = time_ms(iters, || match name {
            "sequential" => {
                score_sequential(model, pad, &stacked, examples, &candidates).unwrap();
            }
            "batched, stacked branch" => {
                score_batched(model, pad, &stacked, examples, &candidates, rows).unwrap();
            }
            "batched, grouped dW" => {
                score_grouped(model, pad, &stacked, examples, &candidates, rows).unwrap();
            }
            "base alone, 16 forwards" => (0..16).for_each(|_| base_loss(examples)),
            _ => base_loss(&repeated),
        });
        out.push((name, ms, min));
    }
    out
}

/// Waits for a device's queued work (a read-back follows everything queued before it).
pub(super) fn sync(t: &Tensor) {
    t.flatten_all()
        .unwrap()
        .get(0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
}

/// The same measurements on the shipped lab: its base model, its pool adapters and a held-out
/// task's examples (prompts and answers through the lab template).
fn lab(a: &BenchArgs, iters: usize) -> Result<(), String> {
    let dev = a.device()?;
    let super::support::LabBench {
        base,
        cfg,
        model,
        examples: enc,
        pad,
        pool,
    } = super::support::lab_bench(&dev, 30);
    println!(
        "recycle (lab): hidden 128, 4 layers, caesar-5 examples, {}, {iters} iters",
        device_label(&dev)
    );
    let refs: Vec<&Adapter> = pool.iter().collect();
    if wanted(a, "recipe") {
        let batch = &enc[..8];
        // Base fwd+bwd with every weight a variable: a copy of the model whose weights are Vars.
        let mut tensors = std::collections::HashMap::new();
        for (name, t) in
            candle_core::safetensors::load(base.join("model.safetensors"), &dev).unwrap()
        {
            tensors.insert(name, Var::from_tensor(&t).unwrap().as_tensor().clone());
        }
        let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &dev);
        let mut grad_base = Llama::from_var_builder(cfg.clone(), vb, DType::F32, &dev).unwrap();
        grad_base.set_differentiable(true);
        let (base_ms, min) = time_ms(iters, || {
            let (nll, _) = token_nll(&grad_base, pad, batch, None).unwrap();
            let loss = nll.mean_all().unwrap();
            loss.backward().unwrap();
            sync(&loss);
        });
        println!(
            "  base fwd+bwd (all weight gradients)          median {base_ms:8.2} ms (min {min:8.2})"
        );
        let json = |case: &str, ms: f64, min: f64| {
            println!(
                "{}",
                serde_json::json!({"case": case, "median_ms": ms, "min_ms": min, "lab": true})
            );
        };
        json("base fwd+bwd (all weight gradients)", base_ms, min);
        for (name, ms, min) in recipe_steps(&model, &refs, pad, batch, iters) {
            println!(
                "  {name:<44} median {ms:8.2} ms (min {min:8.2})  {:5.2}x base",
                ms / base_ms
            );
            json(name, ms, min);
        }
    }
    if wanted(a, "lorahub") {
        for n in example_counts(a) {
            let cases = lorahub_generation(a, &model, &refs[..20], pad, &enc[..n], 2048, iters);
            let seq_ms = sequential_ms(&cases);
            for (name, ms, min) in cases {
                let vs = seq_ms
                    .map(|s| format!("  {:5.2}x faster", s / ms))
                    .unwrap_or_default();
                println!(
                    "  LoraHub generation, {n:>2} examples, {name:<24} median {ms:8.2} ms (min {min:8.2}){vs}"
                );
                println!(
                    "{}",
                    serde_json::json!({"case": format!("LoraHub generation, {n} examples, {name}"),
                        "median_ms": ms, "min_ms": min, "lab": true})
                );
            }
        }
    }
    Ok(())
}

/// `--only recipe|lorahub`: whether `part` runs.
fn wanted(a: &BenchArgs, part: &str) -> bool {
    a.only.as_deref().is_none_or(|v| v == part)
}

/// The sequential case's median among `cases`, when it was run.
fn sequential_ms(cases: &[(&str, f64, f64)]) -> Option<f64> {
    cases.iter().find(|c| c.0 == "sequential").map(|c| c.1)
}

/// `--examples 5,80`: the LoraHub example counts to measure.
fn example_counts(a: &BenchArgs) -> Vec<usize> {
    if a.examples.is_empty() {
        vec![5, 80]
    } else {
        a.examples.clone()
    }
}

/// Runs the benchmark with the flags on the command line; prints what `cargo bench` prints.
pub fn run(a: &BenchArgs) -> Result<(), String> {
    println!("{}", crate::process::machine_line());
    let iters = a.iters(10);
    if a.lab {
        return lab(a, iters);
    }
    let dev = a.device()?;
    let cfg = config(a);
    let model = random_model(&cfg, &dev, false);
    let mut grad_base = random_model(&cfg, &dev, true);
    grad_base.set_differentiable(true);
    let batch = examples(8, 64, 16, 0);
    println!(
        "recycle: hidden 512, 8 layers, vocab 32000, f32, {}, {} CPU threads, {iters} iters",
        device_label(&dev),
        candle_core::utils::get_num_threads()
    );
    let report = |name: &str, ms: f64, min: f64, base: Option<(f64, &str)>| {
        let vs = base
            .map(|(b, n)| format!("  {:5.2}x {n}", ms / b))
            .unwrap_or_default();
        println!("  {name:<56} median {ms:8.1} ms (min {min:8.1}){vs}");
        println!(
            "{}",
            serde_json::json!({"case": name, "median_ms": ms, "min_ms": min})
        );
    };

    if wanted(a, "recipe") {
        // Forward + backward of the base model alone, every weight a variable.
        let (base_ms, min) = time_ms(iters, || {
            let (nll, _) = token_nll(&grad_base, 0, &batch, None).unwrap();
            let loss = nll.mean_all().unwrap();
            loss.backward().unwrap();
            sync(&loss);
        });
        report("base fwd+bwd (all weight gradients)", base_ms, min, None);

        // Forward + backward with gradients only for one rank-16 LoRA (no weight gradients).
        let mut grad_model = model.clone();
        grad_model.set_differentiable(true);
        let lora = random_adapter(&cfg, 16, 999);
        let mut vars = Vec::new();
        let mut lora_br = Branches::empty(cfg.num_hidden_layers);
        for (&(l, m), p) in &lora.pairs {
            let a = Var::from_tensor(&p.a.to_device(&dev).unwrap()).unwrap();
            let b = Var::from_tensor(&p.b.to_device(&dev).unwrap()).unwrap();
            lora_br.set(
                l,
                m,
                Some(Branch {
                    a: a.as_tensor().clone(),
                    b: b.as_tensor().clone(),
                    gate: Tensor::full(2f32, 16, &dev).unwrap(),
                }),
            );
            vars.push((a, b));
        }
        let (lora_ms, min) = time_ms(iters, || {
            let (nll, _) = token_nll(&grad_model, 0, &batch, Some(&lora_br)).unwrap();
            let loss = nll.mean_all().unwrap();
            loss.backward().unwrap();
            sync(&loss);
        });
        report(
            "base fwd+bwd (one r16 LoRA's gradients)",
            lora_ms,
            min,
            Some((base_ms, "base")),
        );

        // One step of the gradient recipe with k = 30.
        let pool: Vec<Adapter> = (0..30).map(|i| random_adapter(&cfg, 16, i)).collect();
        let refs: Vec<&Adapter> = pool.iter().collect();
        for (name, ms, min) in recipe_steps(&model, &refs, 0, &batch, iters) {
            report(name, ms, min, Some((base_ms, "base")));
        }
    }

    if wanted(a, "lorahub") {
        // A LoraHub generation: 16 candidates over 20 adapters.
        let hub: Vec<Adapter> = (0..20).map(|i| random_adapter(&cfg, 16, 100 + i)).collect();
        let hub_refs: Vec<&Adapter> = hub.iter().collect();
        for n in example_counts(a) {
            let ex = examples(n, 32, 8, 1);
            let cases = lorahub_generation(a, &model, &hub_refs, 0, &ex, 512, iters);
            let seq_ms = sequential_ms(&cases);
            for (name, ms, min) in cases {
                let vs = seq_ms
                    .filter(|_| name != "sequential")
                    .map(|s| (s, "sequential time"));
                report(
                    &format!("LoraHub generation, {n} examples, {name}"),
                    ms,
                    min,
                    vs,
                );
            }
        }
    }
    Ok(())
}
