//! `loracycle pool list|pull|check`: browse a pool's metadata, download adapters into the HF
//! cache, and show every pool rule's verdict for one adapter.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use loracycle::pool::cache::{HfHome, MetaCache};
use loracycle::pool::entry::{
    EntryStatus, ListOptions, PoolEntry, SortKey, base_of, human_size, list_entries, offline,
    pull_one, short_modules, sort, status_word,
};
use loracycle::pool::hub::{Hub, valid_repo_id};
use loracycle::pool::rules::{self, Files, Outcome};
use loracycle::pool::{Filter, PoolSource};

#[derive(clap::Args)]
pub struct ListArgs {
    /// hub, cache, lab or dir:PATH.
    #[arg(long, default_value = "lab")]
    pub source: PoolSource,
    /// The base model's Hub id (needed for hub; filters cache).
    #[arg(long)]
    pub base: Option<String>,
    /// The base model's folder, for the weight rules' shape checks.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Keep entries matching every condition, e.g. 'rank<=16,modules=all' (see below).
    #[arg(long, default_value = "")]
    pub filter: Filter,
    /// downloads, likes, rank, name or norm.
    #[arg(long, default_value = "name")]
    pub sort: SortKey,
    /// One JSON array of entries on stdout.
    #[arg(long)]
    pub json: bool,
    /// Hub endpoint [default: $HF_ENDPOINT, else https://huggingface.co].
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Use the HF cache only (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
    /// Parallel config downloads.
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
}

pub fn list(args: ListArgs) -> Result<()> {
    let (base, cfg) = base_of(&args.source, args.base.as_deref(), args.model.as_deref());
    let mut meta = MetaCache::open_default();
    let bar = indicatif::ProgressBar::new(0);
    let opts = ListOptions {
        base: base.as_deref(),
        base_config: cfg.as_ref(),
        endpoint: args.endpoint.as_deref(),
        offline: offline(args.offline),
        jobs: args.jobs,
    };
    let entries = list_entries(&args.source, &opts, &mut meta, &mut |what, done, total| {
        bar.set_message(loracycle::untrusted::printable(what).into_owned());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    if let Err(e) = meta.save() {
        eprintln!("warning: cannot save the pool metadata cache: {e}");
    }
    let mut entries: Vec<PoolEntry> = entries?
        .into_iter()
        .filter(|e| e.matches(&args.filter))
        .collect();
    sort(&mut entries, args.sort);
    if args.json {
        println!("{}", serde_json::to_string(&entries)?);
        return Ok(());
    }
    println!(
        "{:<10} {:<48} {:>4} {:>6} {:<14} {:>9} {:>6} {:>7} {:>8}",
        "status", "id", "r", "alpha", "modules", "downloads", "likes", "size", "‖ΔW‖"
    );
    for e in &entries {
        let shown = loracycle::untrusted::printable(&e.id);
        let id: String = if shown.chars().count() > 48 {
            shown.chars().take(47).chain(std::iter::once('…')).collect()
        } else {
            shown.into_owned()
        };
        println!(
            "{:<10} {:<48} {:>4} {:>6} {:<14} {:>9} {:>6} {:>7} {:>8}",
            status_word(&e.status),
            id,
            e.rank.map_or("–".into(), |r| r.to_string()),
            e.alpha.map_or("–".into(), |a| format!("{a}")),
            short_modules(&e.target_modules),
            e.downloads.map_or("–".into(), |d| d.to_string()),
            e.likes.map_or("–".into(), |d| d.to_string()),
            human_size(e.size_bytes),
            e.norm.map_or("–".into(), |n| format!("{n:.3}")),
        );
    }
    let usable = entries
        .iter()
        .filter(|e| e.status == EntryStatus::Usable)
        .count();
    let remote = entries
        .iter()
        .filter(|e| e.status == EntryStatus::NotDownloaded)
        .count();
    println!(
        "{} entries: {usable} usable, {} rejected, {remote} not downloaded{}",
        entries.len(),
        entries.len() - usable - remote,
        if args.filter.is_empty() {
            String::new()
        } else {
            format!(" (filter {})", args.filter.as_str())
        }
    );
    Ok(())
}

pub fn pull(
    ids: &[String],
    endpoint: Option<&str>,
    base: Option<&str>,
    jobs: usize,
    offline_flag: bool,
) -> Result<()> {
    if offline(offline_flag) {
        bail!("offline: pulling needs the network (unset HF_HUB_OFFLINE)");
    }
    for id in ids {
        if !valid_repo_id(id) {
            bail!("{id:?} is not a Hub repo id (expected org/name)");
        }
    }
    let hub = Hub::new(endpoint, HfHome::from_env());
    let (_, cfg) = base_of(&PoolSource::Hub, base, None);
    let failures = std::sync::atomic::AtomicUsize::new(0);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out = std::sync::Mutex::new(());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, 8) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(id) = ids.get(i) else { break };
                    let result = pull_one(&hub, id, cfg.as_ref()).map_err(anyhow::Error::msg);
                    let _guard = out.lock();
                    match result {
                        Ok(line) => println!("{id}: {line}"),
                        Err(e) => {
                            failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            eprintln!("{id}: {e}");
                        }
                    }
                }
            });
        }
    });
    let failed = failures.into_inner();
    if failed > 0 {
        bail!("{failed} of {} adapters could not be pulled", ids.len());
    }
    Ok(())
}

pub fn check(
    target: &str,
    base: Option<&str>,
    model: Option<&Path>,
    endpoint: Option<&str>,
    json: bool,
) -> Result<()> {
    let path = Path::new(target);
    let (verdicts, label) = if path.is_dir() {
        let (base_id, cfg) = base_of(&PoolSource::Dir(path.to_path_buf()), base, model);
        let mut meta = MetaCache::default();
        let opts = ListOptions {
            base: base_id.as_deref(),
            base_config: cfg.as_ref(),
            endpoint: None,
            offline: true,
            jobs: 1,
        };
        let entries = loracycle::pool::entry::list_entries(
            &PoolSource::Dir(path.parent().unwrap_or(Path::new(".")).to_path_buf()),
            &opts,
            &mut meta,
            &mut |_, _, _| {},
        )?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let e = entries
            .into_iter()
            .find(|e| e.id == name)
            .ok_or_else(|| anyhow::anyhow!("{target}: not an adapter folder"))?;
        (e.verdicts, target.to_string())
    } else if valid_repo_id(target) {
        let hub = Hub::new(endpoint, HfHome::from_env());
        let (base_id, cfg) = base_of(&PoolSource::Hub, base, model);
        let info = hub.model_info(target)?;
        let rev = info.sha.clone().unwrap_or_else(|| "main".into());
        let text = hub.fetch_text(target, "main", "adapter_config.json");
        let parsed: Result<loracycle::adapter::AdapterConfig, String> = match text {
            Ok(t) => serde_json::from_str(&t)
                .map_err(|e| format!("adapter_config.json is not valid: {e}")),
            Err(e) => Err(e.to_string()),
        };
        let files = Files {
            safetensors: info.has_file("adapter_model.safetensors"),
            pickle: info.has_file("adapter_model.bin"),
        };
        let mut v = rules::check_config(
            parsed.as_ref().map_err(String::as_str),
            files,
            base_id.as_deref(),
        );
        let snap = hub.home.snapshot(target, "main");
        if v.iter().any(|x| x.outcome == Outcome::Fail) {
        } else if snap.join("adapter_model.safetensors").is_file() {
            match &cfg {
                Some(c) => v.extend(rules::check_weights(&snap, Some(c)).0),
                None => v.extend(rules::pending_weights().into_iter().map(|mut x| {
                    x.outcome = Outcome::Skipped;
                    x.detail =
                        "the base model's config is not in the HF cache (give --model DIR)".into();
                    x
                })),
            }
        } else {
            v.extend(rules::pending_weights());
        }
        (
            v,
            format!("{target}@{}", rev.chars().take(12).collect::<String>()),
        )
    } else {
        bail!("{target}: neither an adapter folder nor a Hub repo id (org/name)");
    };
    if json {
        println!("{}", serde_json::to_string(&verdicts)?);
    } else {
        println!("{label}");
        for v in &verdicts {
            let mark = match v.outcome {
                Outcome::Pass => "pass",
                Outcome::Fail => "FAIL",
                Outcome::Pending => "pending",
                Outcome::Skipped => "skipped",
            };
            let detail = if v.detail.is_empty() {
                String::new()
            } else {
                format!("  {}", v.detail)
            };
            println!("  {:<12} {mark:<8}{detail}", v.rule.name());
        }
    }
    if verdicts.iter().any(|v| v.outcome == Outcome::Fail) {
        std::process::exit(1);
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ScreenArgs {
    /// A lab task name, an imported task's name (`task import`), or a folder with
    /// train.jsonl and validation.jsonl.
    #[arg(long)]
    pub task: String,
    /// lab, cache or dir:PATH (downloaded adapters only).
    #[arg(long, default_value = "lab")]
    pub source: PoolSource,
    /// `lab`, a model folder, or a Hub id in the HF cache.
    #[arg(long, default_value = "lab")]
    pub model: String,
    /// A pool filter, e.g. rank<=16,modules=all.
    #[arg(long, default_value = "")]
    pub filter: String,
    /// What the ranking sorts by.
    #[arg(long, default_value = "exact-match", value_parser = ["exact-match", "loss"])]
    pub metric: String,
    /// Batching: rows (adapter × example) per forward, many adapters in one batch; 0 scores
    /// one adapter at a time. Default: one at a time on a CPU (faster there), 256 rows on a
    /// GPU. (`--rows` is the old name.)
    #[arg(long = "rows-per-forward", alias = "rows", value_name = "ROWS")]
    pub rows: Option<usize>,
    /// Print the ranking as JSON on stdout (no streaming lines).
    #[arg(long)]
    pub json: bool,
}

/// `pool screen`: every usable adapter of the pool alone on the task, batched and cached.
pub fn screen(args: ScreenArgs) -> Result<()> {
    use loracycle::run::RunSpec;
    use loracycle::run::execute::{Workbench, load_task};
    use loracycle::select::screen::{ScreenProgress, open_cache, screen, task_hash};

    let task = loracycle::run::task::catalogue()
        .resolve_checked(&args.task)
        .map_err(anyhow::Error::msg)?;
    let mut spec = RunSpec::for_task(task.spec());
    spec.model.base = args.model.clone();
    spec.pool = loracycle::run::spec::PoolSpec {
        source: args.source.clone(),
        filter: args.filter.clone(),
    };
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg:<20} [{bar:30}] {pos}/{len} {elapsed} ETA {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message("loading the model");
    let mut bench = Workbench::open(&spec)?;
    let data = load_task(&spec)?;
    let pool = bench.pool(&args.source, &args.filter, &mut |e| {
        if let loracycle::run::event::RunEvent::Stage { name, total } = e {
            bar.set_message(loracycle::untrusted::printable(&name).into_owned());
            bar.set_length(total as u64);
        }
    })?;
    if pool.adapters.is_empty() {
        bail!(
            "no usable adapter in pool {} (filter {:?})",
            args.source,
            args.filter
        );
    }
    let examples = bench.codec.encode_examples(
        data.train
            .iter()
            .chain(&data.validation)
            .map(|e| (e.system.as_deref(), e.prompt.as_str(), e.answer.as_str())),
    )?;
    let identity = bench
        .identity
        .clone()
        .unwrap_or_else(|| bench.model_path.display().to_string());
    let hash = task_hash(&identity, &examples);
    let mut cache = open_cache();
    let refs: Vec<&loracycle::adapter::Adapter> = pool.adapters.iter().collect();
    let mut from_cache = vec![false; refs.len()];
    let t0 = std::time::Instant::now();
    bar.set_message("screening");
    if !args.json {
        // What the streamed lines are, before the first one.
        bar.suspend(|| {
            println!(
                "screening {} adapters on {} ({} train + validation examples): exact match (teacher-forced), answer loss, adapter",
                refs.len(),
                args.task,
                examples.len()
            );
            println!("{:>6} {:>8}  adapter", "exact", "loss");
        });
    }
    let scores = screen(
        &bench.model,
        bench.codec.pad_id(),
        &refs,
        &examples,
        &hash,
        &mut cache,
        match args.rows {
            Some(0) => loracycle::select::screen::Batching::OneAtATime,
            Some(n) => loracycle::select::screen::Batching::Rows(n),
            None => loracycle::select::screen::Batching::Auto,
        },
        &mut |p| match p {
            ScreenProgress::Start { total, cached } => {
                bar.set_length(total as u64);
                bar.set_position(0);
                bar.reset_eta();
                if cached > 0 {
                    bar.suspend(|| {
                        eprintln!("{cached} of {total} scores from the screening cache")
                    });
                }
            }
            ScreenProgress::Scored {
                index,
                score,
                cached,
                done,
                ..
            } => {
                from_cache[index] = cached;
                bar.set_position(done as u64);
                if !args.json {
                    bar.suspend(|| {
                        println!(
                            "{:>6.3} {:>8.4}  {}{}",
                            score.exact_match,
                            score.loss,
                            refs[index].name,
                            if cached { "  (cached)" } else { "" }
                        )
                    });
                }
            }
            ScreenProgress::CacheNotSaved(e) => {
                bar.suspend(|| eprintln!("warning: the screening cache was not saved: {e}"))
            }
        },
        None,
    )?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let rank = if args.metric == "loss" {
        loracycle::select::ScoreMetric::Loss
    } else {
        loracycle::select::ScoreMetric::ExactMatch
    };
    let names: Vec<&str> = refs.iter().map(|a| a.name.as_str()).collect();
    let order = loracycle::select::rank_by(&scores, &names, rank);
    if args.json {
        let rows: Vec<serde_json::Value> = order
            .iter()
            .map(|&i| {
                serde_json::json!({
                    "adapter": refs[i].name,
                    "exact_match": scores[i].exact_match,
                    "loss": scores[i].loss,
                    "cached": from_cache[i],
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    let fresh = from_cache.iter().filter(|c| !**c).count();
    println!(
        "\nranking by {} on {} ({} examples): {} adapters, {fresh} screened in {secs:.1} s{}",
        if args.metric == "loss" {
            "loss"
        } else {
            "exact match"
        },
        data.name,
        examples.len(),
        scores.len(),
        if fresh > 0 {
            format!(" ({:.1} adapters/s)", fresh as f64 / secs.max(1e-9))
        } else {
            String::new()
        }
    );
    println!("{:>4} {:>6} {:>8}  adapter", "rank", "exact", "loss");
    for (r, &i) in order.iter().enumerate().take(30) {
        println!(
            "{:>4} {:>6.3} {:>8.4}  {}",
            r + 1,
            scores[i].exact_match,
            scores[i].loss,
            refs[i].name
        );
    }
    if order.len() > 30 {
        println!("   … {} more (--json lists all)", order.len() - 30);
    }
    Ok(())
}
