//! `loracycle eval`: loss and exact match of a model with optional weighted adapters.

use loracycle::model::{OpenDevice, ResolveDtype};
use std::path::PathBuf;

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use loracycle::adapter::{self, Adapter};
use loracycle::eval::{self, EvalOptions, Metric};
use loracycle::model::branch::RouteTrace;
use loracycle::model::weights::read_config;
use loracycle::model::{DevicePref, DtypePref, Llama, Template, TextCodec};
use loracycle::tune::arrow::ArrowBranches;

/// How `eval` combines its adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Route {
    /// ΔW = Σ wᵢ sᵢ Bᵢ Aᵢ folded into the base weights.
    Fold,
    /// Zero-step Arrow: per-token top-k routing over the adapters' prototypes.
    Arrow,
}

pub struct Eval {
    pub model: PathBuf,
    pub adapters: Vec<PathBuf>,
    pub weights: Vec<f64>,
    /// Arrow routing (top-k, temperature) instead of folding.
    pub route: Option<(usize, f64)>,
    pub data: PathBuf,
    pub template: Template,
    pub opts: EvalOptions,
    pub device: DevicePref,
    pub dtype: DtypePref,
    pub json: bool,
    pub dump_tokens: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// The model: `lab`, a model folder (config.json, model.safetensors or a sharded index,
    /// tokenizer.json), or a Hub id in the HF cache.
    #[arg(long)]
    pub model: String,
    /// PEFT adapter folder, or a lab pool adapter's name (`caesar-11`); repeat to combine.
    #[arg(long = "adapter")]
    pub adapters: Vec<PathBuf>,
    /// Comma-separated weight per adapter, in the order given.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, value_parser = super::finite_number)]
    pub weights: Vec<f64>,
    /// How the adapters combine: fold (ΔW = Σ wᵢ sᵢ Bᵢ Aᵢ folded into W) or arrow (routed per
    /// token by zero-step Arrow; --weights does not apply).
    #[arg(long, default_value = "fold")]
    pub route: Route,
    /// Arrow: candidates kept per token in each module (more than the adapters keeps all).
    #[arg(long, default_value_t = 4, value_parser = super::batch_size)]
    pub top_k: usize,
    /// Arrow: the softmax temperature over the kept scores (> 0).
    #[arg(long, default_value_t = 1.0, value_parser = super::positive_number)]
    pub temperature: f64,
    /// JSONL file of {"prompt", "answer"} rows.
    #[arg(long)]
    pub data: PathBuf,
    /// Prompt template: chat (the model's own Jinja chat template), raw, llama3, chatml (Qwen),
    /// lab, or auto (chat when the model has a chat template, else picked from the
    /// tokenizer's special tokens). Rows may carry a "system" field: the system turn.
    #[arg(long, default_value = "auto")]
    pub template: Template,
    /// loss, exact-match or both.
    #[arg(long, default_value = "loss")]
    pub metric: Metric,
    /// Generation length limit for exact match.
    #[arg(long, default_value_t = 64, value_parser = super::new_tokens)]
    pub max_new_tokens: usize,
    /// How a generation and its answer are made comparable: exact (trimmed), whitespace
    /// (whitespace runs collapsed, lower case) or paper (spaces removed, stripped of
    /// whitespace and full stops, lower case).
    #[arg(long, default_value = "exact")]
    pub normalize: loracycle::eval::Normalize,
    /// none, or #### to compare only the text after the last #### (chain of thought).
    #[arg(long, default_value = "none")]
    pub extract: loracycle::eval::Extract,
    /// Leave examples whose prompt has this many tokens or more out of exact match (the
    /// paper: 2048).
    #[arg(long, value_parser = super::batch_size)]
    pub max_prompt_tokens: Option<usize>,
    /// Examples per forward when computing loss.
    #[arg(long, default_value_t = 8, value_parser = super::batch_size)]
    pub batch_size: usize,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: DevicePref,
    /// Compute dtype: f32, f16, bf16 or auto (f32 on CPU, bf16 on CUDA).
    #[arg(long, default_value = "auto")]
    pub dtype: DtypePref,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the token ids of every example to FILE, one JSON line each:
    /// {"prompt_ids": [...], "answer_ids": [...]} (the scored tokens, end token included),
    /// to check a template against transformers' apply_chat_template.
    #[arg(long, value_name = "FILE")]
    pub dump_tokens: Option<PathBuf>,
}

pub fn run_eval(args: EvalArgs) -> Result<()> {
    run(args.resolve()?)
}

impl EvalArgs {
    /// The model and lab adapter names resolved, the scoring settings gathered.
    fn resolve(self) -> Result<Eval> {
        let (model, adapters) = super::model_and_adapters(&self.model, self.adapters)?;
        Ok(Eval {
            model,
            adapters,
            weights: self.weights,
            route: match self.route {
                Route::Fold => None,
                Route::Arrow => Some((self.top_k, self.temperature)),
            },
            data: self.data,
            template: self.template,
            opts: EvalOptions {
                metric: self.metric,
                batch_size: self.batch_size,
                scoring: loracycle::eval::Scoring {
                    max_new_tokens: self.max_new_tokens,
                    extract: self.extract,
                    normalize: self.normalize,
                    max_prompt_tokens: self.max_prompt_tokens,
                },
            },
            device: self.device,
            dtype: self.dtype,
            json: self.json,
            dump_tokens: self.dump_tokens,
        })
    }
}

fn run(args: Eval) -> Result<()> {
    if args.route.is_some() {
        if args.adapters.is_empty() {
            anyhow::bail!("--route arrow routes over adapters: give at least one --adapter");
        }
        if !args.weights.is_empty() {
            anyhow::bail!(
                "--weights does not apply with --route arrow: the router weighs each token"
            );
        }
    }
    let weights = super::adapter_weights(&args.weights, args.adapters.len())?;
    let examples = eval::read_jsonl(&args.data)?;
    let device = args.device.open()?;
    let dtype = args.dtype.resolve(&device);
    let cfg = read_config(&args.model)?;
    let base_name = loracycle::model::weights::model_identity(&args.model, &cfg);
    let adapters = args
        .adapters
        .iter()
        .map(|p| Adapter::load(p, Some((&cfg, base_name.as_deref()))))
        .collect::<Result<Vec<_>, _>>()?;
    for ad in &adapters {
        for w in &ad.warnings {
            eprintln!("warning: {w}");
        }
    }
    let codec = TextCodec::load(&args.model, args.template, &cfg)?;
    if let Some(path) = &args.dump_tokens {
        let encoded = codec.encode_examples(
            examples
                .iter()
                .map(|e| (e.system.as_deref(), e.prompt.as_str(), e.answer.as_str())),
        )?;
        let mut text = String::new();
        for e in &encoded {
            text.push_str(&serde_json::to_string(&serde_json::json!({
                "prompt_ids": &e.ids[..e.answer_start],
                "answer_ids": &e.ids[e.answer_start..],
            }))?);
            text.push('\n');
        }
        loracycle::atomic_write::write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut model = Llama::load(&args.model, dtype, &device)?;
    let mut routed = None;
    if let Some((top_k, temperature)) = args.route {
        let refs: Vec<&Adapter> = adapters.iter().collect();
        let arrow = ArrowBranches::new(
            &refs,
            model.config().num_hidden_layers,
            top_k,
            temperature,
            dtype,
            &device,
        )?;
        let protos = arrow.initial_prototypes(&refs)?;
        let mut branches = arrow.branches(&protos);
        let trace = Arc::new(Mutex::new(RouteTrace::default()));
        branches.trace = Some(trace.clone());
        routed = Some((arrow, branches, trace));
    } else if !adapters.is_empty() {
        let sources: Vec<(&Adapter, f64)> = adapters.iter().zip(weights.iter().copied()).collect();
        let branches = adapter::branches_for(&sources, model.config(), dtype, &device)?;
        // Fixed weights: fold once into W instead of paying for the branch at every token.
        model = model
            .fold(&branches)
            .context("folding adapters into the base weights")?;
    }
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed} ETA {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message("evaluating");
    let report = eval::evaluate(
        &model,
        &codec,
        &examples,
        routed.as_ref().map(|(_, b, _)| b),
        args.opts,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    // Mean routing weight per adapter over every routed token and module (padding left out).
    let routing: Option<Vec<f64>> = routed.as_ref().map(|(arrow, _, trace)| {
        let trace = trace.lock().unwrap_or_else(|e| e.into_inner());
        arrow.mean_weights(&trace)
    });
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(w), Some(obj)) = (&routing, v.as_object_mut()) {
            obj.insert(
                "routing".into(),
                serde_json::json!(
                    adapters
                        .iter()
                        .zip(w)
                        .map(|(a, w)| serde_json::json!({
                    "adapter": a.name, "mean_weight": w}))
                        .collect::<Vec<_>>()
                ),
            );
        }
        println!("{v}");
        return Ok(());
    }
    println!(
        "model {} · template {} · {} examples{}",
        args.model.display(),
        codec.template(),
        examples.len(),
        if adapters.is_empty() {
            String::new()
        } else if let Some((arrow, _, _)) = &routed {
            format!(
                " · Arrow top-{} T={} over {}",
                arrow.top_k,
                arrow.temperature,
                adapters
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!(
                " · adapters {}",
                adapters
                    .iter()
                    .zip(&weights)
                    .map(|(a, w)| format!("{} ×{w}", a.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    println!("{:>4}  {:>8}  {:<32} ok", "#", "loss", "prediction");
    let judged = !matches!(args.opts.metric, eval::Metric::Loss);
    for (i, r) in report.examples.iter().enumerate() {
        let loss = r
            .loss
            .map(|l| format!("{l:.4}"))
            .unwrap_or_else(|| "–".into());
        let pred = r.prediction.clone().unwrap_or_else(|| "–".into());
        let ok = match r.correct {
            Some(true) => "✓",
            Some(false) => "✗",
            None if judged => "dropped (long prompt)",
            None => "",
        };
        println!("{:>4}  {loss:>8}  {:<32} {ok}", i + 1, truncate(&pred, 32));
    }
    let mut summary = Vec::new();
    if let Some(l) = report.mean_loss {
        summary.push(format!("mean loss {l:.4}"));
    }
    if let Some(em) = report.exact_match {
        let hits = report
            .examples
            .iter()
            .filter(|r| r.correct == Some(true))
            .count();
        let scored = examples.len() - report.dropped;
        summary.push(format!("exact match {em:.3} ({hits}/{scored})"));
    }
    if report.dropped > 0 {
        summary.push(format!(
            "{} of {} left out of exact match (prompt of {} tokens or more)",
            report.dropped,
            examples.len(),
            args.opts.scoring.max_prompt_tokens.unwrap_or_default()
        ));
    }
    println!("{}", summary.join(" · "));
    if let Some(w) = routing {
        println!("mean routing weight per token and module:");
        for (a, w) in adapters.iter().zip(w) {
            println!("  {w:>6.3}  {}", a.name);
        }
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}
