//! The `loracycle` command line. Each subcommand is a thin shell over the library.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::eval::{EvalArgs, run_eval};
use cli::inspect::inspect;
use cli::lab::lab_build;
use loracycle::eval::{EvalOptions, Metric};
use loracycle::model::{DevicePref, DtypePref, Template};

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
