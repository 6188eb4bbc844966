//! The `loracycle` command line. Each subcommand is a thin shell over the library.

// Every line the program prints may carry text from files, servers and sockets (run labels,
// adapter cards, template messages): these shadow the standard macros for the whole crate, so
// each passes through `untrusted::printable_text` and no control character reaches the terminal.
macro_rules! println {
    () => { ::std::println!() };
    ($($t:tt)*) => { ::std::println!("{}", ::loracycle::untrusted::printable_text(&::std::format!($($t)*))) };
}
#[allow(unused_macros)]
macro_rules! print {
    ($($t:tt)*) => { ::std::print!("{}", ::loracycle::untrusted::printable_text(&::std::format!($($t)*))) };
}
macro_rules! eprintln {
    () => { ::std::eprintln!() };
    ($($t:tt)*) => { ::std::eprintln!("{}", ::loracycle::untrusted::printable_text(&::std::format!($($t)*))) };
}
#[allow(unused_macros)]
macro_rules! eprint {
    ($($t:tt)*) => { ::std::eprint!("{}", ::loracycle::untrusted::printable_text(&::std::format!($($t)*))) };
}

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::eval::run_eval;
use cli::inspect::inspect;
use cli::lab::lab_build;
use loracycle::model::DevicePref;
use loracycle::pool::PoolSource;

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
    /// The terminal UI's base model: `lab`, a model folder, or a Hub id in the HF cache.
    #[arg(long, default_value = "lab")]
    model: String,
    /// The terminal UI's pool: lab, hub, cache or dir:PATH.
    #[arg(long, default_value = "lab")]
    pool: PoolSource,
    /// The terminal UI's runs directory [default: $LORACYCLE_RUNS_DIR, else
    /// ~/.local/share/loracycle/runs].
    #[arg(long = "runs-dir", id = "ui_runs_dir")]
    ui_runs_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Browse a pool of adapters, download them, check them against the pool rules.
    Pool {
        #[command(subcommand)]
        command: PoolCommand,
    },
    /// Run one spec (TOML): select adapters, merge or tune, evaluate on the test split, and save
    /// a run record.
    #[command(after_help = RUN_HELP)]
    Run {
        /// The run spec (TOML).
        spec: PathBuf,
        /// Print the run record as one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Where run folders go [default: $LORACYCLE_RUNS_DIR, else ~/.local/share/loracycle/runs].
        /// With --attach the server's runs directory is used; a --runs-dir naming another folder
        /// is refused.
        #[arg(long)]
        runs_dir: Option<PathBuf>,
        /// Queue the run on a running `loracycle serve` and follow it by its run id (it keeps
        /// running if this command is interrupted).
        #[arg(long)]
        attach: bool,
    },
    /// The runs directory: list, show, export and remove runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
        /// Where run folders are [default: $LORACYCLE_RUNS_DIR, else ~/.local/share/loracycle/runs].
        #[arg(long, global = true)]
        runs_dir: Option<PathBuf>,
    },
    /// Run the engine as its own process behind a Unix socket (mode 0600, in a folder of yours
    /// with mode 0700 in the runtime dir), so queued and running work outlives the terminal;
    /// `loracycle run --attach SPEC` queues on it and follows the run (its record is read from
    /// the server's runs directory), and a TUI started with the same --runs-dir follows the
    /// server's runs there. A `shutdown` command (`serve --stop`) lets the run in flight
    /// finish, then stops; runs still queued are kept, and the next `serve` on the same runs
    /// directory runs them first.
    Serve {
        /// Where run folders are [default: $LORACYCLE_RUNS_DIR, else ~/.local/share/loracycle/runs].
        #[arg(long)]
        runs_dir: Option<PathBuf>,
        /// Stop the server on the socket (after its run in flight) and say how many queued runs
        /// it kept for its next start.
        #[arg(long, conflicts_with = "runs_dir")]
        stop: bool,
    },
    /// The paper's comparison on the lab: base, new LoRA, average, TIES, LoraHub and the gradient
    /// recipe, each on the real and the random-init pool, with and without the oracle adapter;
    /// TSV, AdaMerging, Arrow and π-Tuning with their random-init twins; random and top-5/10/20
    /// selection ablations.
    /// Runs here one cell after another, or hands the cells to Slurm as a job array.
    #[command(
        after_help = "Writes study.md (means with bootstrap 95% intervals over task × seed), study.csv and study.json\n\
into --out, and every run (status, curve, record) into the runs directory.\n\n\
On a Slurm cluster, --emit slurm writes one RunSpec per cell and an sbatch job-array script into\n\
--out (one array task per cell, each a headless `loracycle run` into --runs-dir, which must be on a\n\
filesystem every node sees); --submit also calls sbatch. Watch the runs in the TUI\n\
(`loracycle --runs-dir SHARED`, screen 4) and rebuild the table with --collect, which lists the\n\
cells that have no finished run with their Slurm state and the tail of their log.\n\n\
Examples:\n  loracycle study --seeds 1 --tasks caesar-5,table-m\n  loracycle study --preset lab-paper --seeds 3 --out results/\n  \
loracycle study --seeds 3 --emit slurm --runs-dir /shared/runs --partition gpu --gpus-per-task 1 --time 01:00:00 --submit\n  \
loracycle study --collect --runs-dir /shared/runs"
    )]
    Study(cli::run::StudyArgs),
    /// Measure speed: the `cargo bench` cases from this binary, so a release build carried to a
    /// GPU machine measures what `cargo bench` measures here (each result also as a JSON line).
    #[command(after_help = "Benchmarks:
  forward   forward throughput of a random Llama (hidden 512): plain, 30 x r16 side branches,
            folded; --arch qwen3, --case TEXT
  recycle   gradient-recipe step over 30 adapters; LoraHub generation batched vs sequential;
            --lab (on the shipped lab), --only recipe|lorahub, --examples 5,80, --case TEXT
  screen    screening the lab pool on caesar-5, batched vs one adapter at a time
  llama8b   Llama-3.1-8B layer shapes, random weights, 30 x r16 adapters: tokens/s, recipe step,
            peak memory, projected to 32 layers; --layers N, --rows R, --len T
Every benchmark takes --iters N and --device cpu|cuda (cuda needs a build with --features cuda).

Examples:
  loracycle bench forward --iters 10
  loracycle bench recycle --only lorahub --examples 5 --device cuda
  loracycle bench llama8b --layers 4 --device cuda")]
    Bench {
        /// forward, recycle, screen or llama8b.
        name: String,
        #[command(flatten)]
        args: loracycle::bench::BenchArgs,
    },
    /// Merge adapters with a non-adaptive method and write the result as a PEFT adapter.
    #[command(
        after_help = "Exact methods (sum, average, task-arithmetic, svd, tsv, lorahub-sum) are written as rank\n\
concatenations; ties and dare give dense updates, written as rank-R truncations with the relative\n\
truncation error printed.\n\n\
Examples:\n  loracycle merge --model assets/lab/base --adapter assets/lab/pool/caesar-11 --adapter assets/lab/pool/caesar-12 --method average --out merged/\n  \
loracycle merge --model M --adapter A --adapter B --method ties --density 0.2 --rank 16 --out merged/"
    )]
    Merge(cli::merge::MergeArgs),
    /// Target tasks from Hugging Face datasets: import definitions in the paper's tasks.yaml
    /// format into task folders, list them, show their rows.
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// The embedded lab: a tiny model, synthetic tasks and a LoRA pool for CPU-only work.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// Describe a model folder or a PEFT adapter folder, reading headers only.
    #[command(
        after_help = "Examples:\n  loracycle inspect tests/fixtures/tiny\n  loracycle inspect tests/fixtures/adapters/qv-r4 --json\n  loracycle inspect tests/fixtures/adapters/qv-r4 --norms"
    )]
    Inspect {
        /// A model folder (config.json + safetensors) or an adapter folder (adapter_config.json).
        path: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// For an adapter, also read every weight and give ‖ΔW‖_F by module (and check that
        /// the values are finite).
        #[arg(long)]
        norms: bool,
    },
    /// Loss on answer tokens and exact match of greedy generations on a JSONL dataset.
    #[command(
        after_help = "Each JSONL row is {\"prompt\": ..., \"answer\": ...}; other fields are ignored.\n\
Several adapters are applied together as ΔW = Σ wᵢ sᵢ Bᵢ Aᵢ (weights default to 1).\n\
With --route arrow they are routed instead, token by token (zero-step Arrow, Ostapenko et al.\n\
2024): in each (layer, module) every adapter that has it is a candidate with prototype pᵢ, the top\n\
right singular vector of sᵢ Bᵢ Aᵢ; a token x keeps the --top-k candidates with the largest |x·pᵢ|,\n\
softmaxes those scores over --temperature and adds Σ wᵢ(x) sᵢ Bᵢ Aᵢ x. Ranks and module sets may\n\
differ (PEFT's create_arrow_model refuses that); the mean routing weights are printed per adapter.\n\n\
Examples:\n  loracycle eval --model tests/fixtures/tiny --data tests/fixtures/data.jsonl --template raw\n  \
loracycle eval --model M --adapter A1 --adapter A2 --weights 0.5,0.5 --data task.jsonl --metric both --json\n  \
loracycle eval --model lab --adapter caesar-4 --adapter caesar-6 --adapter caesar-11 --route arrow --top-k 2 --data D"
    )]
    Eval(cli::eval::EvalArgs),
}

const RUN_HELP: &str = "A spec names the model, the pool, the task, the selection, the method and the controls:

  protocol = \"lab\"        # lab or paper (the defaults of unset settings, README)
  seed = 0
  [model]
  base = \"lab\"            # lab, a model folder, or a Hub id in the HF cache
  [pool]
  source = \"lab\"          # lab or dir:PATH (a folder of adapter folders)
  filter = \"rank<=16\"     # KEY OP VALUE, comma-separated: name, rank, alpha, modules (q+v, all)
  [task]
  lab = \"caesar-5\"        # or name = \"banking77\" (from `loracycle task import`), or
                           # train/validation/test = JSONL files; train_examples = 10, or
                           # examples = 100 (train + validation, a fifth validation); combine = true
  [selection]
  strategy = \"top-k\"      # random (k, seed), top-k (k, by), similar (to, k, measure, aggregate),
                           # rank (k: highest PEFT r first), manual (adapters), all; similar's
                           # measure: cosine (default), clamp, abs, clamp-per-module, quasi-fim, l2;
                           # aggregate: macro (default: the whole update) or micro (mean over modules)
  k = 30                  # by = exact-match (teacher-forced), generated-exact-match or loss
  [method]
  kind = \"gradient\"       # base, new-lora, gradient, lorahub, adamerging, pi-tuning, arrow,
                           # sum, average, task-arithmetic, ties, dare, tsv, svd, lorahub-sum;
                           # settings as keys of this table. gradient: granularity, init (zero,
                           # equal, uniform, target: the task's own adapter at 1, the rest 0; needs
                           # controls.oracle), activation, lr, steps. adamerging: the recipe with
                           # identity activation, equal init, lr 5e-2, 100 steps. pi-tuning:
                           # softmax coefficients per module trained with every adapter's A and B
                           # plus a fresh LoRA slot (fresh = true, fresh_rank, fresh_alpha; it takes
                           # the task's own adapter's place when one is chosen), lr 1e-4, 100 steps.
                           # arrow: per-token top-k routing by prototypes (top_k = 4,
                           # temperature = 1.0); train = true tunes the prototypes (lr 1e-2, 400
                           # steps). selection.to = \"task\": closeness to the task's own adapter
  [controls]
  random_init = \"off\"     # off, pooled, per-adapter
  oracle = false
  queue = [\"random-init\", \"base\"]   # controls run with it, each naming it as parent
                           # (also \"new-lora\"); `runs compare` pairs them
  [eval]                  # over the task folder's task.toml, over the protocol's defaults:
  max_new_tokens = 48     # extract = \"####\" (text after the last ####), normalize = exact,
                           # whitespace or paper, max_prompt_tokens = 2048 (longer dropped)

Examples:
  loracycle run examples/lab-gradient.toml
  loracycle run spec.toml --json --runs-dir runs/";

// mimalloc, with the per-thread memory budgets that chat templates render under.
#[global_allocator]
static GLOBAL: loracycle::budget::Budgeted<mimalloc::MiMalloc> =
    loracycle::budget::Budgeted(mimalloc::MiMalloc);

#[derive(Subcommand)]
enum RunsCommand {
    /// Every run with its state (a run whose process died is shown as interrupted), and the
    /// settings in which the listed runs differ.
    #[command(
        after_help = "Filter: comma-separated conditions, all of which must hold:
  KEY OP VALUE   KEY is id, label, state, exact, loss, or a setting by its dotted key
                 (selection.k) or the end of one (k, lr, by); OP is = != < <= > >= ~ (contains)
                 !~; numbers compare as numbers
  TEXT           the id, label, state or a setting contains it (case aside)

Examples:
  loracycle runs list
  loracycle runs list --filter 'caesar-5, k>=10, state=finished'
  loracycle runs list --filter 'method.kind=gradient, by=loss' --json"
    )]
    List {
        /// Only the runs this filter keeps (see below).
        #[arg(long)]
        filter: Option<String>,
        /// One JSON array of run summaries on stdout (each with its settings).
        #[arg(long)]
        json: bool,
    },
    /// Give a run a name, shown in place of its label everywhere (an empty name clears it).
    /// The name is kept beside the run's files; its record stays as written.
    Rename {
        /// A run id, a prefix of one that names a single run, or a run's name.
        id: String,
        /// The name: one line, at most 120 characters.
        name: String,
    },
    /// One run: its record, or its status and curve so far.
    Show {
        /// A run id, a prefix of one that names a single run (e.g. its time stamp), or a run's name.
        id: String,
        /// The record (or status and curve so far) as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write a finished run's adapter as a PEFT folder: a merge's merged adapter (rebuilt from
    /// its record), or the LoRA a new-LoRA run trained.
    Export {
        /// A run id, a prefix of one that names a single run, or a run's name.
        id: String,
        /// The adapter folder to write.
        #[arg(long)]
        out: PathBuf,
        /// Rank of truncated results (TIES, DARE).
        #[arg(long, default_value_t = 16, value_parser = cli::rank)]
        rank: usize,
    },
    /// Each run with its own controls (the random-init twin, base model and new LoRA queued
    /// with it or reused for it): exact match and loss with 95% intervals, and Δ vs the twin and
    /// vs the base with paired bootstrap intervals over the same test examples.
    #[command(
        after_help = "Without IDs, every finished run (of --task). A control is shown under its run.
--json prints one object per run: id, label, task, role, group, exact_match, ci, loss, loss_ci,
twin, base, new_lora (run ids or null), delta_twin, delta_twin_ci, delta_base, delta_base_ci,
delta_loss_twin, delta_loss_twin_ci, delta_loss_base, delta_loss_base_ci, n.

Examples:
  loracycle runs compare
  loracycle runs compare --task caesar-5 --out results/
  loracycle runs compare 20261202T0312 --json"
    )]
    Compare {
        /// Run ids, or prefixes each naming a single run.
        ids: Vec<String>,
        /// Only runs on this task (by its name in the record).
        #[arg(long)]
        task: Option<String>,
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
        /// Also write compare.md and compare.csv into this folder.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Remove runs that are not queued or running.
    Rm {
        /// Run ids, or prefixes each naming a single run.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Subcommand)]
enum PoolCommand {
    /// List a pool's adapters from metadata (configs, the Hub listing, cached verdicts); weights
    /// are only read to check them, once per revision, when already downloaded.
    #[command(
        after_help = "Filter: comma-separated KEY OP VALUE with keys name, rank, alpha, modules;\n\
ops = != < <= > >= ~ (contains) !~; modules takes all or q+v style sets.\n\n\
Examples:\n  loracycle pool list\n  loracycle pool list --source hub --base meta-llama/Llama-3.1-8B-Instruct --filter 'rank<=16,modules=all' --sort downloads\n  \
loracycle pool list --source cache --base meta-llama/Llama-3.1-8B-Instruct --json"
    )]
    List(cli::pool::ListArgs),
    /// Download adapters (config first, then weights) into the standard HF cache.
    Pull {
        /// Hub repo ids (org/name).
        #[arg(required = true)]
        ids: Vec<String>,
        /// Hub endpoint [default: $HF_ENDPOINT, else https://huggingface.co].
        #[arg(long)]
        endpoint: Option<String>,
        /// The base model's Hub id, to check shapes when its config is in the HF cache.
        #[arg(long)]
        base: Option<String>,
        /// Downloads at a time.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// Refuse to download: report what the HF cache already holds (also HF_HUB_OFFLINE=1).
        #[arg(long)]
        offline: bool,
    },
    /// Every pool rule with its verdict for one adapter (a folder or a Hub repo id).
    Check {
        /// An adapter folder, or a Hub repo id (org/name) read from the HF cache or the Hub.
        target: String,
        /// The base model's Hub id the adapter must have been trained on.
        #[arg(long)]
        base: Option<String>,
        /// The base model's folder, for the shape checks.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Hub endpoint [default: $HF_ENDPOINT, else https://huggingface.co].
        #[arg(long)]
        endpoint: Option<String>,
        /// One JSON object with every rule's verdict.
        #[arg(long)]
        json: bool,
    },
    /// Score every usable adapter of a pool alone on a task's train + validation examples (exact
    /// match by teacher forcing, and answer loss), many adapters per forward, cached on disk.
    #[command(
        after_help = "Scores stream to stdout as they come, then the ranking. A second screen of the same pool and task reads the screening cache (screen-cache.json in $LORACYCLE_CACHE_DIR or ~/.cache/loracycle) and is instant; an interrupted one resumes where it stopped. The engine's top-k selection reads the same cache.\n\nExamples:\n  loracycle pool screen --task caesar-5\n  loracycle pool screen --task data/mytask --model ./llama --source cache --metric loss --json"
    )]
    Screen(cli::pool::ScreenArgs),
}

#[derive(Subcommand)]
enum TaskCommand {
    /// Build task folders from definitions in the paper's tasks.yaml format: rows from the HF
    /// cache (fetched from the Hub's parquet files when missing) or a local JSON file, split as
    /// the paper splits them, rendered as system / user / answer turns.
    #[command(after_help = TASK_IMPORT_HELP)]
    Import(cli::task::ImportArgs),
    /// Imported tasks: name, source, sizes and judging settings.
    List {
        /// The tasks folder [default: $LORACYCLE_TASKS_DIR, else ~/.local/share/loracycle/tasks].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// A few rows of an imported task, as turns or (with --model) as the model's template
    /// renders them.
    Show(cli::task::ShowArgs),
}

const TASK_IMPORT_HELP: &str = "A definition, in the paper's format:

  banking77:
      path: [\"legacy-datasets/banking77\"]   # [dataset id, config]; or json_file: data/x.json
      split: {train: train, test: test}      # optional: the paper's keys → the dataset's splits
      instruction: |                         # the system turn
          Classify the inquiry ...
      user_input: text                       # a column, or a mapping rendered `KEY - value`:
                                             #   QUESTION: question
                                             #   CHOICES: {key_name: choices, fields: [label, text],
                                             #             concat_symbol: \":\"}
      assistant_output: label                # the answer column (text or integer)
      answer_len: short                      # short: 30 new tokens, long: 500
      task_type: classification

Splits as the paper builds them: the test split (at most 5,000 rows, seeded shuffle), else 10% of
train; valid / dev / validation, else 20% of train; then --data-size examples, a fifth of them
validation (10 → 8 + 2). Each folder gets train.jsonl, validation.jsonl, test.jsonl, task.toml
(max_new_tokens, extract = \"####\", normalize = \"paper\", and a [source] record) and indices.json
(the chosen rows as the paper's example ids). An import that fails writes nothing.

Examples:
  loracycle task import tests/fixtures/tasks/paper-tasks.yaml --task banking77
  loracycle task import tasks.yaml --task topics --data-size 10 --offline
  loracycle task list
  loracycle task show banking77 --model meta-llama/Llama-3.1-8B-Instruct";

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
        /// Output folder [default: $LORACYCLE_LAB, which a checkout's cargo sets to its assets/lab].
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
    /// Print the lab folder in use and how it was found: LORACYCLE_LAB, a `lab` folder beside
    /// the binary (or ../share/loracycle/lab), or the lab this binary carries, unpacked once into
    /// the data folder (~/.local/share/loracycle/lab/<hash>).
    Where,
}

/// The lab's files, carried by the binary (listed by build.rs from assets/lab/MANIFEST).
mod embedded_lab {
    include!(concat!(env!("OUT_DIR"), "/lab_files.rs"));
}

fn main() -> ExitCode {
    // SAFETY: first thing in main; no other thread has started.
    unsafe { loracycle::process::prepare() };
    loracycle::lab::locate::register_embedded(embedded_lab::LAB_FILES);
    let cli = {
        use clap::{CommandFactory, FromArgMatches};
        // `--version` also names what the numbers will run on, for bug reports and benchmarks.
        let long = format!(
            "{}\n{}\ncuda: {}",
            env!("CARGO_PKG_VERSION"),
            loracycle::process::machine_line(),
            if cfg!(feature = "cuda") {
                "built in"
            } else {
                "not built (cargo build --features cuda)"
            }
        );
        // Built once per process; clap keeps a `&'static str`.
        let matches = Cli::command().long_version(&*long.leak()).get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    };
    // Commands that print for pipes end quietly when the reader goes away; the TUI, the engine
    // server and clients attached to it keep seeing closed sockets as errors.
    let socket_peer = matches!(
        &cli.command,
        None | Some(Command::Serve { .. }) | Some(Command::Run { attach: true, .. })
    );
    if !socket_peer {
        // SAFETY: no other thread has started yet.
        unsafe { loracycle::process::end_quietly_on_closed_pipe() };
    }
    let result = match cli.command {
        None => {
            // A model that is not there would leave every adapter rejected and every run
            // failing: say so before the screen opens.
            if let Err(e) = loracycle::run::execute::resolve_model(&cli.model) {
                eprintln!("error: --model: {e}");
                return ExitCode::FAILURE;
            }
            if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                use clap::CommandFactory;
                let _ = Cli::command().print_help();
                eprintln!(
                    "\nthe terminal UI needs a terminal; the subcommands above work without one"
                );
                return ExitCode::from(2);
            }
            loracycle::ui::run(loracycle::ui::UiOptions {
                model: cli.model,
                source: cli.pool,
                runs_dir: loracycle::run::record::runs_dir(cli.ui_runs_dir.as_deref()),
            })
        }
        Some(Command::Inspect { path, json, norms }) => inspect(&path, json, norms),
        Some(Command::Pool { command }) => match command {
            PoolCommand::List(args) => cli::pool::list(args),
            PoolCommand::Pull {
                ids,
                endpoint,
                base,
                jobs,
                offline,
            } => cli::pool::pull(&ids, endpoint.as_deref(), base.as_deref(), jobs, offline),
            PoolCommand::Screen(args) => cli::pool::screen(args),
            PoolCommand::Check {
                target,
                base,
                model,
                endpoint,
                json,
            } => cli::pool::check(
                &target,
                base.as_deref(),
                model.as_deref(),
                endpoint.as_deref(),
                json,
            ),
        },
        Some(Command::Run {
            spec,
            json,
            runs_dir,
            attach,
        }) => cli::run::run(&spec, json, runs_dir, attach),
        Some(Command::Runs { command, runs_dir }) => match command {
            RunsCommand::List { filter, json } => {
                cli::runs::list(runs_dir, filter.as_deref(), json)
            }
            RunsCommand::Rename { id, name } => cli::runs::rename(runs_dir, &id, &name),
            RunsCommand::Show { id, json } => cli::runs::show(runs_dir, &id, json),
            RunsCommand::Rm { ids } => cli::runs::rm(runs_dir, &ids),
            RunsCommand::Compare {
                ids,
                task,
                json,
                out,
            } => cli::runs::compare(runs_dir, &ids, task.as_deref(), json, out.as_deref()),
            RunsCommand::Export { id, out, rank } => cli::runs::export(runs_dir, &id, &out, rank),
        },
        Some(Command::Serve { runs_dir, stop }) => cli::runs::serve(runs_dir, stop),
        Some(Command::Task { command }) => match command {
            TaskCommand::Import(args) => cli::task::import(args),
            TaskCommand::List { dir, json } => cli::task::list(dir, json),
            TaskCommand::Show(args) => cli::task::show(args),
        },
        Some(Command::Study(args)) => cli::run::study(args),
        Some(Command::Bench { name, args }) => {
            loracycle::bench::run(&name, &args).map_err(anyhow::Error::msg)
        }
        Some(Command::Merge(args)) => cli::merge::merge(args),
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
        Some(Command::Lab {
            command: LabCommand::Where,
        }) => cli::lab::lab_where(),
        Some(Command::Eval(args)) => run_eval(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::error_text(&e));
            ExitCode::FAILURE
        }
    }
}
