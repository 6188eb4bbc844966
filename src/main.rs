//! The `loracycle` command line. Each subcommand is a thin shell over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::json;

use loracycle::adapter::{self, Adapter};
use loracycle::eval::{self, EvalOptions, Metric};
use loracycle::model::weights::{WeightFiles, read_config};
use loracycle::model::{DevicePref, DtypePref, Llama, Module, Template, TextCodec};

#[derive(Parser)]
#[command(
    name = "loracycle",
    version,
    about = "A terminal lab for recycling LoRA adapters by adaptive merging",
    long_about = "A terminal lab for recycling LoRA adapters by adaptive merging.\n\n\
Load a Llama-architecture model from a Hugging Face folder, attach PEFT LoRA adapters as side \
branches, and measure answer-token loss and exact match on (prompt, answer) JSONL data."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The embedded lab: a tiny model, synthetic tasks and a LoRA pool for CPU-only work.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// Describe a model folder or a PEFT adapter folder, reading headers only.
    #[command(
        after_help = "Examples:\n  loracycle inspect tests/fixtures/tiny\n  loracycle inspect tests/fixtures/adapters/qv-r4 --json"
    )]
    Inspect {
        /// A model folder (config.json + safetensors) or an adapter folder (adapter_config.json).
        path: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Loss on answer tokens and exact match of greedy generations on a JSONL dataset.
    #[command(
        after_help = "Each JSONL row is {\"prompt\": ..., \"answer\": ...}; other fields are ignored.\n\
Several adapters are applied together as ΔW = Σ wᵢ sᵢ Bᵢ Aᵢ (weights default to 1).\n\n\
Examples:\n  loracycle eval --model tests/fixtures/tiny --data tests/fixtures/data.jsonl --template raw\n  \
loracycle eval --model M --adapter A1 --adapter A2 --weights 0.5,0.5 --data task.jsonl --metric both --json"
    )]
    Eval {
        /// Model folder (config.json, model.safetensors or a sharded index, tokenizer.json).
        #[arg(long)]
        model: PathBuf,
        /// PEFT adapter folder; repeat to combine several.
        #[arg(long = "adapter")]
        adapters: Vec<PathBuf>,
        /// Comma-separated weight per adapter, in the order given.
        #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
        weights: Vec<f64>,
        /// JSONL file of {"prompt", "answer"} rows.
        #[arg(long)]
        data: PathBuf,
        /// Prompt template: raw, llama3, lab or auto (picked from the tokenizer's special tokens).
        #[arg(long, default_value = "auto")]
        template: Template,
        /// loss, exact-match or both.
        #[arg(long, default_value = "loss")]
        metric: Metric,
        /// Generation length limit for exact match.
        #[arg(long, default_value_t = 64)]
        max_new_tokens: usize,
        /// Examples per forward when computing loss.
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        /// cpu, cuda, cuda:N or auto.
        #[arg(long, default_value = "auto")]
        device: DevicePref,
        /// Compute dtype: f32, f16, bf16 or auto (f32 on CPU, bf16 on CUDA).
        #[arg(long, default_value = "auto")]
        dtype: DtypePref,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Subcommand)]
enum LabCommand {
    /// Rebuild the lab: tokenizer, pretrained base model, held-out task data, pool and oracle
    /// LoRAs, the lab card (LAB.md) and the MANIFEST. Resumable: artefacts already built with the
    /// same recipe are kept.
    #[command(
        after_help = "Examples:\n  loracycle lab build --quick --out /tmp/lab   # a miniature lab in about a minute\n  loracycle lab build                          # the shipped assets/lab (about an hour on 2 cores)"
    )]
    Build {
        /// A miniature lab (3 base tasks, 3 pool LoRAs, 2 held-out tasks) for tests and demos.
        #[arg(long)]
        quick: bool,
        /// Output folder [default: assets/lab of this checkout].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seed of every random choice; the same seed on the same machine gives the same bytes.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// cpu, cuda, cuda:N or auto.
        #[arg(long, default_value = "cpu")]
        device: DevicePref,
        /// Adapters trained at the same time [default: one per core on the CPU, 1 on a GPU].
        #[arg(long)]
        jobs: Option<usize>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            Ok(())
        }
        Some(Command::Inspect { path, json }) => inspect(&path, json),
        Some(Command::Lab {
            command:
                LabCommand::Build {
                    quick,
                    out,
                    seed,
                    device,
                    jobs,
                },
        }) => lab_build(quick, out, seed, device, jobs),
        Some(Command::Eval {
            model,
            adapters,
            weights,
            data,
            template,
            metric,
            max_new_tokens,
            batch_size,
            device,
            dtype,
            json,
        }) => run_eval(EvalArgs {
            model,
            adapters,
            weights,
            data,
            template,
            opts: EvalOptions {
                metric,
                batch_size,
                max_new_tokens,
            },
            device,
            dtype,
            json,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn module_list(modules: impl IntoIterator<Item = Module>) -> Vec<&'static str> {
    modules.into_iter().map(Module::peft_name).collect()
}

fn inspect(path: &Path, as_json: bool) -> Result<()> {
    if path.join("adapter_config.json").is_file() || path.join("adapter_model.bin").is_file() {
        return inspect_adapter(path, as_json);
    }
    if !path.join("config.json").is_file() {
        bail!(
            "{}: neither a model folder (config.json) nor an adapter folder (adapter_config.json)",
            path.display()
        );
    }
    let cfg = read_config(path)?;
    let files = WeightFiles::open(path)?;
    let report = json!({
        "kind": "model",
        "path": path.display().to_string(),
        "architecture": cfg.architectures.first().cloned().unwrap_or_else(|| "LlamaForCausalLM".into()),
        "layers": cfg.num_hidden_layers,
        "hidden": cfg.hidden_size,
        "intermediate": cfg.intermediate_size,
        "heads": cfg.num_attention_heads,
        "kv_heads": cfg.num_kv_heads(),
        "head_dim": cfg.head_dim(),
        "vocab": cfg.vocab_size,
        "dtype": files.dtypes(),
        "parameters": files.parameter_count(),
        "tied_embeddings": cfg.tie_word_embeddings,
        "rope_theta": cfg.rope_theta(),
        "rope_scaling": cfg.rope_scaling().map(|r| r.rope_type.clone()),
        "max_position_embeddings": cfg.max_position_embeddings,
        "eos_token_ids": cfg.eos_ids(),
        "weight_files": files.paths.len(),
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("model {}", path.display());
    println!(
        "  architecture   {}",
        report["architecture"].as_str().unwrap_or("")
    );
    println!("  layers         {}", cfg.num_hidden_layers);
    println!(
        "  hidden         {} (intermediate {})",
        cfg.hidden_size, cfg.intermediate_size
    );
    println!(
        "  heads          {} query / {} key-value (head dim {})",
        cfg.num_attention_heads,
        cfg.num_kv_heads(),
        cfg.head_dim()
    );
    println!("  vocab          {}", cfg.vocab_size);
    println!("  dtype          {}", files.dtypes().join(", "));
    println!("  parameters     {}", files.parameter_count());
    println!(
        "  rope           theta {}{}",
        cfg.rope_theta(),
        cfg.rope_scaling()
            .map(|r| format!(", scaling {} ×{}", r.rope_type, r.factor))
            .unwrap_or_default()
    );
    println!(
        "  embeddings     {}",
        if cfg.tie_word_embeddings {
            "tied"
        } else {
            "untied"
        }
    );
    println!("  eos ids        {:?}", cfg.eos_ids());
    println!("  weight files   {}", files.paths.len());
    Ok(())
}

fn inspect_adapter(path: &Path, as_json: bool) -> Result<()> {
    let ad = Adapter::load(path, None)?;
    let norms = ad.delta_norms_by_module()?;
    let layers: std::collections::BTreeSet<usize> = ad.pairs.keys().map(|(l, _)| *l).collect();
    if as_json {
        let norms: serde_json::Map<String, serde_json::Value> = norms
            .iter()
            .map(|(m, n)| (m.peft_name().to_string(), json!(n)))
            .collect();
        let report = json!({
            "kind": "adapter",
            "path": path.display().to_string(),
            "rank": ad.rank(),
            "alpha": ad.config.lora_alpha,
            "use_rslora": ad.config.use_rslora,
            "scale": ad.scale(),
            "modules": module_list(ad.modules()),
            "layers": layers.len(),
            "parameters": ad.parameter_count(),
            "base_model": ad.config.base_model_name_or_path,
            "storage_dtype": ad.storage_dtype,
            "delta_norms": norms,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("adapter {}", path.display());
    println!("  rank           {}", ad.rank());
    println!(
        "  alpha          {} (scale {:.4}{})",
        ad.config.lora_alpha,
        ad.scale(),
        if ad.config.use_rslora {
            ", rsLoRA: alpha/sqrt(r)"
        } else {
            ""
        }
    );
    println!("  modules        {}", module_list(ad.modules()).join(", "));
    println!("  layers         {}", layers.len());
    println!("  parameters     {}", ad.parameter_count());
    println!(
        "  base model     {}",
        ad.config
            .base_model_name_or_path
            .as_deref()
            .unwrap_or("(not given)")
    );
    println!("  storage dtype  {}", ad.storage_dtype);
    println!("  ‖ΔW‖_F by module (pooled over layers):");
    for (m, n) in norms {
        println!("    {:<10} {n:.4}", m.peft_name());
    }
    Ok(())
}

struct EvalArgs {
    model: PathBuf,
    adapters: Vec<PathBuf>,
    weights: Vec<f64>,
    data: PathBuf,
    template: Template,
    opts: EvalOptions,
    device: DevicePref,
    dtype: DtypePref,
    json: bool,
}

fn run_eval(args: EvalArgs) -> Result<()> {
    let weights = if args.weights.is_empty() {
        vec![1.0; args.adapters.len()]
    } else if args.weights.len() != args.adapters.len() {
        bail!(
            "--weights has {} values for {} adapters",
            args.weights.len(),
            args.adapters.len()
        );
    } else {
        args.weights.clone()
    };
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
    let mut model = Llama::load(&args.model, dtype, &device)?;
    if !adapters.is_empty() {
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
        None,
        args.opts,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "model {} · template {} · {} examples{}",
        args.model.display(),
        codec.template(),
        examples.len(),
        if adapters.is_empty() {
            String::new()
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
    for (i, r) in report.examples.iter().enumerate() {
        let loss = r
            .loss
            .map(|l| format!("{l:.4}"))
            .unwrap_or_else(|| "–".into());
        let pred = r.prediction.clone().unwrap_or_else(|| "–".into());
        let ok = match r.correct {
            Some(true) => "✓",
            Some(false) => "✗",
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
        summary.push(format!("exact match {em:.3} ({hits}/{})", examples.len()));
    }
    println!("{}", summary.join(" · "));
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}

fn lab_build(
    quick: bool,
    out: Option<PathBuf>,
    seed: u64,
    device: DevicePref,
    jobs: Option<usize>,
) -> Result<()> {
    use loracycle::lab::build::{BuildEvent, Stopwatch, build, write_manifest};
    use loracycle::lab::recipe::LabRecipe;
    let out = out.unwrap_or_else(loracycle::lab::default_dir);
    let device = device.open()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = jobs.unwrap_or(if device.is_cpu() { cores } else { 1 });
    if jobs > 1 && device.is_cpu() && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // One thread per job: the lab's matrices are too small for candle to gain from splitting
        // an op over cores, and the spinning workers would steal time from the other jobs.
        // SAFETY: no other thread has started yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    let watch = Stopwatch::start();
    let style = indicatif::ProgressStyle::with_template(
        "  [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta_precise} {msg}",
    )
    .expect("static template")
    .progress_chars("=> ");
    let mut bar = indicatif::ProgressBar::hidden();
    let recipe = LabRecipe { quick, seed };
    let card = build(&out, &recipe, &device, jobs, &mut |ev| match ev {
        BuildEvent::Stage(name) => {
            bar.finish_and_clear();
            eprintln!("{name}");
            bar = indicatif::ProgressBar::new(0).with_style(style.clone());
        }
        BuildEvent::Progress {
            done,
            total,
            message,
        } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(message);
        }
        BuildEvent::Note(text) => bar.println(format!("  {text}")),
    })?;
    bar.finish_and_clear();
    let mut command = format!("loracycle lab build --seed {seed} --out {}", out.display());
    if quick {
        command.push_str(" --quick");
    }
    write_manifest(&out, &command, watch.seconds())?;
    eprintln!(
        "lab built in {:.0} s: {} pool adapters ({} dropped), {} oracle adapters, {} held-out tasks → {}",
        watch.seconds(),
        card.pool.len(),
        card.dropped.len(),
        card.oracle.len(),
        card.held_out.len(),
        out.display()
    );
    Ok(())
}
