//! Llama-3.1-8B's shapes with random weights: hidden 4096, intermediate 14336, 32/8 heads, vocab
//! 128256, as many decoder layers as `--layers` asks (default 2), f32, with 30 rank-16 adapters on
//! all seven modules. It reports the forward's tokens/s (plain, and with the 30 adapters as side
//! branches: what screening and evaluation run), the time of one gradient-recipe step over the
//! 30 (forward and backward to the coefficients), the peak memory, and each projected to the
//! model's 32 layers from the time the decoder layers take alone.
//!
//! loracycle bench llama8b [--layers N] [--rows R] [--len T] [--iters N] [--device cpu|cuda]
//!
//! Defaults: 8 rows × 128 tokens on a GPU, 2 × 64 on the CPU (where one layer of this size takes
//! seconds); 3 iterations.

use candle_core::Device;

use super::forward::random_branches;
use super::recycle::{examples, random_adapter, recipe_steps, sync};
use super::support::{BenchArgs, random_model, time_ms};
use crate::eval::token_nll;
use crate::model::device::device_label;
use crate::model::{Batch, LlamaConfig};

/// Llama-3.1-8B-Instruct's config with `layers` decoder layers.
pub fn config(layers: usize) -> LlamaConfig {
    serde_json::from_value(serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": layers,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 4096,
        "tie_word_embeddings": false
    }))
    .expect("a fixed config parses")
}

/// The most memory this process has held: on a GPU the device's (sampled: total less the least
/// free seen), else the resident set's high-water mark. In bytes.
struct Peak {
    least_free: Option<u64>,
    total: Option<u64>,
}

impl Peak {
    fn new() -> Self {
        Peak {
            least_free: None,
            total: None,
        }
    }

    fn sample(&mut self, dev: &Device) {
        #[cfg(feature = "cuda")]
        if dev.is_cuda()
            && let Ok((free, total)) =
                candle_core::cuda_backend::cudarc::driver::result::mem_get_info()
        {
            self.least_free = Some(self.least_free.map_or(free as u64, |f| f.min(free as u64)));
            self.total = Some(total as u64);
        }
        let _ = dev;
    }

    fn bytes(&self) -> u64 {
        match (self.least_free, self.total) {
            (Some(free), Some(total)) => total - free,
            _ => resident_peak().unwrap_or(0),
        }
    }
}

/// VmHWM from /proc/self/status, in bytes.
fn resident_peak() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// Runs the benchmark with the flags on the command line.
pub fn run(a: &BenchArgs) -> Result<(), String> {
    println!("{}", crate::process::machine_line());
    let dev = a.device()?;
    let gpu = !dev.is_cpu();
    let layers = a.layers.unwrap_or(2).max(1);
    let rows = a
        .rows
        .first()
        .copied()
        .unwrap_or(if gpu { 8 } else { 2 })
        .max(1);
    let len = a.len.unwrap_or(if gpu { 128 } else { 64 }).max(17);
    let iters = a.iters(3);
    let cfg = config(layers);
    let mut peak = Peak::new();
    println!(
        "llama8b: Llama-3.1-8B shapes (hidden 4096, intermediate 14336, 32/8 heads, vocab 128256), \
         {layers} of 32 layers, f32, {}, batch {rows} x {len}, 30 x r16 adapters, {iters} iters",
        device_label(&dev)
    );
    let model = random_model(&cfg, &dev, false);
    peak.sample(&dev);
    let batch_rows: Vec<Vec<u32>> = (0..rows)
        .map(|r| {
            (0..len)
                .map(|i| ((i * 7919 + r * 104_729) % 128_256) as u32)
                .collect()
        })
        .collect();
    let batch = Batch::new(&batch_rows, 0, &dev).expect("a batch of fixed rows");
    let branches = random_branches(&cfg, 30, 16, &dev);
    peak.sample(&dev);
    let tokens = (rows * len) as f64;
    let forward = |br| {
        time_ms(iters, || {
            let out = model.forward(&batch, br).expect("forward");
            sync(&out);
        })
    };
    let (plain_ms, _) = forward(None);
    peak.sample(&dev);
    let (branch_ms, _) = forward(Some(&branches));
    peak.sample(&dev);
    let (layers_ms, _) = time_ms(iters, || {
        let out = model.hidden(&batch, None).expect("decoder layers");
        sync(&out);
    });
    // Embedding and LM head are paid once; the decoder layers 32/layers times over.
    let per_layer = layers_ms / layers as f64;
    let fixed = (plain_ms - layers_ms).max(0.0);
    let scale = (fixed + 32.0 * per_layer) / (fixed + layers as f64 * per_layer);
    let line = |name: &str, ms: f64, projected: f64| {
        println!(
            "  {name:<40} median {ms:9.1} ms  {:8.0} tokens/s   at 32 layers {projected:9.1} ms  {:8.0} tokens/s",
            tokens / (ms / 1e3),
            tokens / (projected / 1e3)
        );
        println!(
            "{}",
            serde_json::json!({"case": name, "median_ms": ms, "tokens_per_s": tokens / (ms / 1e3),
                "projected_32_layers_ms": projected, "layers": layers})
        );
    };
    line("forward, no adapters", plain_ms, plain_ms * scale);
    line("forward, 30 x r16 branches", branch_ms, branch_ms * scale);
    drop(branches);
    // One step of the gradient recipe over 30 adapters (its answer tokens: the last 16).
    let adapters: Vec<_> = (0..30).map(|i| random_adapter(&cfg, 16, i)).collect();
    let refs: Vec<_> = adapters.iter().collect();
    let step_rows = examples(rows, len, 16, 0);
    for (name, ms, _) in recipe_steps(&model, &refs, 0, &step_rows, iters) {
        peak.sample(&dev);
        line(name, ms, ms * scale);
    }
    // The base model's own loss on the same rows, for scale.
    let (nll_ms, _) = time_ms(iters, || {
        let (nll, _) = token_nll(&model, 0, &step_rows, None).expect("loss");
        sync(&nll);
    });
    line("loss of the base alone", nll_ms, nll_ms * scale);
    peak.sample(&dev);
    let bytes = peak.bytes();
    // Weights grow with the layers; the embedding and LM head do not.
    let per_layer_bytes = 4 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336) as u64;
    let projected = bytes + (32 - layers.min(32)) as u64 * per_layer_bytes;
    println!(
        "  peak memory {:.2} GiB ({}); at 32 layers about {:.2} GiB (+{:.2} GiB of f32 weights per layer)",
        gib(bytes),
        if gpu { "device, sampled" } else { "resident" },
        gib(projected),
        gib(per_layer_bytes)
    );
    println!(
        "{}",
        serde_json::json!({"case": "peak memory", "bytes": bytes, "projected_32_layers_bytes": projected})
    );
    Ok(())
}
