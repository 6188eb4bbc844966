//! What the benchmarks share: a random Llama of a fixed shape and a timer.

use crate::model::OpenDevice;
use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;

use crate::model::{Llama, LlamaConfig};

/// The benchmarks' model shape; with `--arch qwen3` the same sizes as a Qwen3: per-head q/k
/// norms, head_dim 128 (not hidden/heads = 64, as Qwen3-4B's 128 is not 2560/32), tied
/// embeddings.
pub fn config(a: &BenchArgs) -> LlamaConfig {
    if a.arch == Some(Arch::Qwen3) {
        return serde_json::from_value(serde_json::json!({
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
            "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 8,
            "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 128,
            "vocab_size": 32000, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "max_position_embeddings": 256, "tie_word_embeddings": true
        }))
        .unwrap();
    }
    serde_json::from_value(serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 8,
        "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 32000,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
        "tie_word_embeddings": false
    }))
    .unwrap()
}

/// Weights N(0, 0.02), norms 1; with `as_vars` every weight is a variable (full gradients).
pub fn random_model(cfg: &LlamaConfig, dev: &Device, as_vars: bool) -> Llama {
    let mut t = HashMap::new();
    let (h, v) = (cfg.hidden_size, cfg.vocab_size);
    let rnd = |shape: &[usize]| {
        let t = Tensor::randn(0f32, 0.02, shape, dev).unwrap();
        if as_vars {
            Var::from_tensor(&t).unwrap().as_tensor().clone()
        } else {
            t
        }
    };
    // Norms are ones; every matrix (and the LM head, tied or not) is random.
    for (name, shape) in cfg.tensor_shapes() {
        let tensor = if shape.len() == 1 {
            Tensor::ones(shape, DType::F32, dev).unwrap()
        } else {
            rnd(&shape)
        };
        t.insert(name, tensor);
    }
    t.insert("lm_head.weight".to_string(), rnd(&[v, h]));
    let vb = VarBuilder::from_tensors(t, DType::F32, dev);
    Llama::from_var_builder(cfg.clone(), vb, DType::F32, dev).unwrap()
}

/// (median, minimum) wall time in ms over `iters` runs after 3 warm-up runs.
pub fn time_ms(iters: usize, mut f: impl FnMut()) -> (f64, f64) {
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

/// The architecture `--arch` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    Llama,
    Qwen3,
}

/// Every benchmark's flags, parsed by clap: `loracycle bench NAME [FLAGS]` and `cargo bench
/// --bench NAME -- [FLAGS]` read the same ones. Each benchmark reads those it has a use for.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BenchArgs {
    /// Timed repetitions (each benchmark has its own default).
    #[arg(long)]
    pub iters: Option<usize>,
    /// cpu, cuda, cuda:N or auto (cuda needs a build with --features cuda) [default: cpu].
    #[arg(long)]
    pub device: Option<crate::model::DevicePref>,
    /// forward, recycle: only the cases whose name contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub case: Option<String>,
    /// forward, recycle: the random model's architecture (the same sizes).
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// recycle: only the recipe step or only the LoraHub generation.
    #[arg(long, value_parser = ["recipe", "lorahub"])]
    pub only: Option<String>,
    /// recycle: the LoraHub example counts [default: 5,80].
    #[arg(long, value_delimiter = ',', num_args = 1)]
    pub examples: Vec<usize>,
    /// recycle, arrow: on the shipped lab instead of a random model.
    #[arg(long)]
    pub lab: bool,
    /// screen: the lab task [default: caesar-5].
    #[arg(long)]
    pub task: Option<String>,
    /// screen: rows per forward [default: 256,512,1024]; llama8b: rows in the batch.
    #[arg(long, value_delimiter = ',', num_args = 1)]
    pub rows: Vec<usize>,
    /// screen: the compute dtype (f32, f16, bf16, auto) [default: f32].
    #[arg(long)]
    pub dtype: Option<crate::model::DtypePref>,
    /// arrow: adapters routed to per token [default: 4].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// arrow: the adapter counts [default: 4,8,16,30].
    #[arg(long, value_delimiter = ',', num_args = 1)]
    pub adapters: Vec<usize>,
    /// llama8b: decoder layers built [default: 2].
    #[arg(long)]
    pub layers: Option<usize>,
    /// llama8b: tokens per row.
    #[arg(long)]
    pub len: Option<usize>,
    /// The `--bench` that `cargo bench` passes to every benchmark binary.
    #[arg(long, hide = true)]
    pub bench: bool,
}

/// A benchmark binary's command line (`cargo bench --bench NAME -- FLAGS`).
#[derive(Debug, clap::Parser)]
#[command(about = "A loracycle benchmark; `loracycle bench --help` lists them all")]
struct BenchCli {
    #[command(flatten)]
    args: BenchArgs,
}

impl BenchArgs {
    /// The flags of this process's command line; a bad one prints clap's message and exits.
    pub fn from_env() -> BenchArgs {
        <BenchCli as clap::Parser>::parse().args
    }

    /// `--iters`, else `default`.
    pub fn iters(&self, default: usize) -> usize {
        self.iters.unwrap_or(default).max(1)
    }

    /// The device `--device` names (the CPU when absent).
    pub fn device(&self) -> Result<Device, String> {
        let pref = self.device.unwrap_or(crate::model::DevicePref::Cpu);
        pref.open().map_err(|e| format!("--device: {e}"))
    }

    /// Whether `--case` lets case `name` run.
    pub fn case_wanted(&self, name: &str) -> bool {
        self.case.as_deref().is_none_or(|w| name.contains(w))
    }
}

/// The forward benchmarks' batch: 8 rows of token ids, rows 0-3 of 128 tokens and rows 4-7 of 96
/// (padded to 128 in a batch).
pub fn padded_rows() -> Vec<Vec<u32>> {
    (0..8)
        .map(|r| {
            let len = if r < 4 { 128 } else { 96 };
            (0..len)
                .map(|i| ((i * 7919 + r * 104_729) % 32000) as u32)
                .collect()
        })
        .collect()
}

/// (median, min) ms of `iters` forwards of `model` over `batch` (the logits summed and read
/// back, so the work is done).
pub fn time_forward(
    iters: usize,
    model: &Llama,
    batch: &crate::model::Batch,
    branches: Option<&crate::model::Branches>,
) -> (f64, f64) {
    time_ms(iters, || {
        model
            .forward(batch, branches)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
    })
}

/// The shipped lab as the benchmarks use it: its base model, caesar-5's training examples
/// through the lab template, and the first `adapters` pool adapters in name order.
pub struct LabBench {
    pub base: std::path::PathBuf,
    pub cfg: LlamaConfig,
    pub model: Llama,
    pub examples: Vec<crate::model::template::EncodedExample>,
    pub pad: u32,
    pub pool: Vec<crate::adapter::Adapter>,
}

pub fn lab_bench(dev: &Device, adapters: usize) -> LabBench {
    use crate::adapter::Adapter;
    use crate::eval::read_jsonl;
    use crate::model::TextCodec;
    let dir = crate::lab::dir().unwrap();
    let base = dir.join("base");
    let cfg = crate::model::weights::read_config(&base).unwrap();
    let codec = TextCodec::load(&base, crate::model::Template::Lab, &cfg).unwrap();
    let model = Llama::load(&base, DType::F32, dev).unwrap();
    let rows = read_jsonl(&dir.join("tasks/caesar-5/train.jsonl")).unwrap();
    let examples = codec
        .encode_examples(
            rows.iter()
                .map(|e| (e.system.as_deref(), e.prompt.as_str(), e.answer.as_str())),
        )
        .unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.join("pool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let pool = names
        .iter()
        .take(adapters)
        .map(|n| Adapter::load(&dir.join("pool").join(n), Some((&cfg, None))).unwrap())
        .collect();
    LabBench {
        base,
        cfg,
        model,
        examples,
        pad: codec.pad_id(),
        pool,
    }
}
