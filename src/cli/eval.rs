//! `loracycle eval`: loss and exact match of a model with optional weighted adapters.

use loracycle::model::{OpenDevice, ResolveDtype};
use std::path::PathBuf;

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use loracycle::adapter::{self, Adapter};
use loracycle::eval::{self, EvalOptions};
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

pub struct EvalArgs {
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

pub fn run_eval(args: EvalArgs) -> Result<()> {
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
