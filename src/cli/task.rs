//! `loracycle task import|list|show`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use loracycle::pool::cache::HfHome;
use loracycle::pool::hub::Hub;
use loracycle::tasks::{self, ImportOptions, define, import, source::Fetch};

/// `loracycle task import`'s flags.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The tasks file (YAML): task name → path / json_file, split, instruction, user_input,
    /// assistant_output, task_type, answer_len.
    pub tasks_file: PathBuf,
    /// A task of the file to import; repeat for several.
    #[arg(long = "task", value_name = "NAME")]
    pub tasks: Vec<String>,
    /// Import every task of the file.
    #[arg(long, conflicts_with = "tasks")]
    pub all: bool,
    /// Where task folders go [default: $LORACYCLE_TASKS_DIR, else
    /// ~/.local/share/loracycle/tasks, where specs' `name = ...` and the UI find them].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Train + validation examples kept: a fifth (rounded down) validation, the rest train;
    /// 0 keeps every row. The test split is capped at 5,000 rows whatever the size.
    #[arg(long, default_value_t = 100)]
    pub data_size: usize,
    /// Seed of every shuffle and split (NumPy's generator, as `datasets` uses it: the same seed
    /// picks the same rows as the paper's code).
    #[arg(long, default_value_t = 123)]
    pub seed: u64,
    /// Hub endpoint [default: $HF_ENDPOINT, else https://huggingface.co].
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Use the HF cache only (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
    /// Print what was imported as one JSON array.
    #[arg(long)]
    pub json: bool,
}

pub fn import(args: ImportArgs) -> Result<()> {
    let path = &args.tasks_file;
    let text = loracycle::untrusted::read_text(path, define::MAX_TASKS_FILE)
        .map_err(|e| anyhow::anyhow!("{}", e))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let defs = define::parse(&text, dir).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let chosen: Vec<&tasks::TaskDef> = if args.all {
        defs.iter().collect()
    } else {
        if args.tasks.is_empty() {
            let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
            bail!(
                "name the tasks to import with --task NAME (repeatable), or --all; {} defines {}: {}",
                path.display(),
                names.len(),
                names.join(", ")
            );
        }
        let mut v = Vec::new();
        for t in &args.tasks {
            match defs.iter().find(|d| &d.name == t) {
                Some(d) => v.push(d),
                None => {
                    let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
                    bail!(
                        "{} has no task {t:?} (it has {})",
                        path.display(),
                        names.join(", ")
                    );
                }
            }
        }
        v
    };
    let out = args.out.clone().unwrap_or_else(tasks::tasks_dir);
    let home = HfHome::from_env();
    let offline = loracycle::pool::entry::offline(args.offline);
    let hub = (!offline).then(|| Hub::new(args.endpoint.as_deref(), home.clone()));
    let tasks_file = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
    let opts = ImportOptions {
        out: out.clone(),
        data_size: args.data_size,
        seed: args.seed,
        tasks_file: &tasks_file,
    };
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for def in chosen {
        for k in &def.ignored {
            eprintln!(
                "note: task {}: key {k:?} is not part of the format; ignored",
                def.name
            );
        }
        if let Some(m) = &def.metric {
            eprintln!(
                "note: task {}: the paper scores it by {m}; loracycle scores exact match",
                def.name
            );
        }
        eprintln!("importing {} from {}", def.name, def.source_name());
        let mut progress = |line: &str| eprintln!("  {line}");
        let mut fetch = Fetch {
            home: home.clone(),
            hub: hub.as_ref(),
            progress: &mut progress,
        };
        match import::build(def, &mut fetch, &opts).and_then(|b| import::write(def, &b, &out)) {
            Ok(imp) => {
                let r = &imp.source.rows;
                if !args.json {
                    println!(
                        "{}  {}  train {} · validation {} · test {}  (max_new_tokens {}, extract ####, normalize paper)",
                        imp.name,
                        imp.dir.display(),
                        r["train"],
                        r["validation"],
                        r["test"],
                        imp.settings.max_new_tokens.unwrap_or_default()
                    );
                    for n in &imp.source.notes {
                        println!("    {n}");
                    }
                }
                done.push(imp);
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed.push(def.name.clone());
            }
        }
    }
    if args.json {
        let v: Vec<serde_json::Value> = done
            .iter()
            .map(|i| {
                serde_json::json!({
                    "name": i.name,
                    "dir": i.dir,
                    "settings": i.settings,
                    "source": i.source,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&v)?);
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} task(s) not imported: {} (nothing was written for them)",
            failed.len(),
            failed.len() + done.len(),
            failed.join(", ")
        );
    }
    if !args.json && !done.is_empty() {
        eprintln!(
            "use them as [task] name = \"{}\" in a spec, or pick them in the New run form",
            done[0].name
        );
    }
    Ok(())
}

pub fn list(dir: Option<PathBuf>, json: bool) -> Result<()> {
    let dir = dir.unwrap_or_else(tasks::tasks_dir);
    let all = tasks::list(&dir);
    if json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|t| {
                let rows = |f: &str| count_lines(&t.dir.join(f));
                serde_json::json!({
                    "name": t.name,
                    "dir": t.dir,
                    "source": t.source,
                    "settings": t.settings,
                    "rows": {
                        "train": rows("train.jsonl"),
                        "validation": rows("validation.jsonl"),
                        "test": rows("test.jsonl"),
                    },
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    if all.is_empty() {
        println!(
            "no imported tasks in {} (loracycle task import TASKS.yaml --task NAME)",
            dir.display()
        );
        return Ok(());
    }
    println!(
        "{:<24} {:<40} {:>6} {:>6} {:>6}  settings",
        "name", "source", "train", "valid", "test"
    );
    for t in &all {
        let src = t
            .source
            .as_ref()
            .map(|s| match &s.config {
                Some(c) => format!("{} ({c})", s.dataset),
                None => s.dataset.clone(),
            })
            .unwrap_or_else(|| "(written by hand)".into());
        let src: String = src.chars().take(40).collect();
        let s = &t.settings;
        let mut set = Vec::new();
        if let Some(n) = s.max_new_tokens {
            set.push(format!("max_new_tokens {n}"));
        }
        if let Some(e) = s.extract {
            set.push(format!("extract {}", e.name()));
        }
        if let Some(n) = s.normalize {
            set.push(format!("normalize {}", n.name()));
        }
        println!(
            "{:<24} {:<40} {:>6} {:>6} {:>6}  {}",
            t.name,
            src,
            count_lines(&t.dir.join("train.jsonl")),
            count_lines(&t.dir.join("validation.jsonl")),
            count_lines(&t.dir.join("test.jsonl")),
            set.join(", ")
        );
    }
    Ok(())
}

fn count_lines(p: &Path) -> usize {
    loracycle::untrusted::read(p, loracycle::untrusted::LARGE)
        .map(|b| {
            b.split(|&c| c == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .count()
        })
        .unwrap_or(0)
}

/// `loracycle task show`'s flags.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The task's name.
    pub name: String,
    /// The tasks folder [default: $LORACYCLE_TASKS_DIR, else ~/.local/share/loracycle/tasks].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// train, validation or test.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// How many rows.
    #[arg(short = 'n', long, default_value_t = 3)]
    pub n: usize,
    /// Render with this model's template: `lab`, a model folder, or a Hub id in the HF cache.
    #[arg(long)]
    pub model: Option<String>,
}

pub fn show(args: ShowArgs) -> Result<()> {
    let root = args.dir.clone().unwrap_or_else(tasks::tasks_dir);
    let Some(dir) = tasks::find_in(&root, &args.name) else {
        let names: Vec<String> = tasks::list(&root).into_iter().map(|t| t.name).collect();
        bail!(
            "no imported task {:?} in {} (it has {})",
            args.name,
            root.display(),
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        );
    };
    let file = match args.split.as_str() {
        "train" | "validation" | "test" => dir.join(format!("{}.jsonl", args.split)),
        o => bail!("--split {o:?}: train, validation or test"),
    };
    let rows = loracycle::eval::read_jsonl(&file)?;
    let codec = match &args.model {
        Some(m) => {
            let model_dir = loracycle::run::execute::resolve_model(m)?;
            let cfg = loracycle::model::weights::read_config(&model_dir)?;
            Some(
                loracycle::model::TextCodec::load(
                    &model_dir,
                    loracycle::model::Template::Auto,
                    &cfg,
                )
                .with_context(|| format!("the tokenizer of {m}"))?,
            )
        }
        None => None,
    };
    let entry = tasks::list(&root).into_iter().find(|t| t.name == args.name);
    if let Some(src) = entry.as_ref().and_then(|e| e.source.as_ref()) {
        println!(
            "{}: {}{} · data_size {} · seed {} · {} rows in {}",
            args.name,
            src.dataset,
            src.config
                .as_ref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            src.data_size,
            src.seed,
            rows.len(),
            args.split
        );
    } else {
        println!("{}: {} rows in {}", args.name, rows.len(), args.split);
    }
    for (i, ex) in rows.iter().take(args.n).enumerate() {
        println!("\n── example {} of {} ──", i + 1, rows.len());
        match &codec {
            Some(c) => {
                let text = c.render_example(ex.system.as_deref(), &ex.prompt, &ex.answer)?;
                println!("{text}");
            }
            None => {
                if let Some(s) = &ex.system {
                    println!("[system]\n{}", s.trim_end());
                }
                println!("[user]\n{}", ex.prompt);
                println!("[assistant]\n{}", ex.answer);
            }
        }
    }
    Ok(())
}
