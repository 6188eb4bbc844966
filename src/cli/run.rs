//! `loracycle run` and `loracycle study`: specs executed with a progress bar on stderr.

use std::path::{Path, PathBuf};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use anyhow::bail;
use loracycle::engine::server::{Client, socket_path};
use loracycle::engine::{Command, Event, RunId};
use loracycle::run::event::RunEvent;
use loracycle::run::record::runs_dir;
use loracycle::run::store::RunStore;
use loracycle::run::study::{
    CellProblem, Plan, SCRIPT_FILE, StudyOptions, Submission, emit_slurm, markdown, run_study,
};
use loracycle::run::{RunRecord, RunSpec};
use loracycle::slurm::BatchOptions;

/// A run's progress on stderr: a bar on a terminal; anywhere else (a log file, a Slurm job's
/// output) a plain line when a stage starts and at every tenth of it, so a log shows where a
/// run got to.
struct Progress {
    bar: ProgressBar,
    plain: bool,
    prefix: String,
    stage: String,
    total: usize,
    tenths: usize,
}

impl Progress {
    fn new() -> Self {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = if terminal {
            let bar = ProgressBar::new(0).with_style(
                ProgressStyle::with_template(
                    "{prefix}{msg:<28} [{bar:30}] {pos}/{len} {elapsed} ETA {eta}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_message("starting");
            bar.enable_steady_tick(std::time::Duration::from_millis(250));
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress {
            bar,
            plain: !terminal,
            prefix: String::new(),
            stage: String::new(),
            total: 0,
            tenths: 0,
        }
    }

    fn println(&self, line: impl AsRef<str>) {
        if self.plain {
            eprintln!("{}", line.as_ref());
        } else {
            // indicatif writes past the sanitising print macros: clean the line here.
            self.bar
                .println(loracycle::untrusted::printable_text(line.as_ref()));
        }
    }

    fn set_prefix(&mut self, prefix: String) {
        self.bar.set_prefix(prefix.clone());
        self.prefix = prefix;
    }

    /// Applies a run event.
    fn show(&mut self, e: &RunEvent) {
        match e {
            RunEvent::Stage { name, total } => {
                // Position first: a frame drawn in between must not pair the last stage's count
                // with this one's length.
                self.bar.set_position(0);
                self.bar.reset_eta();
                self.bar.set_length(*total as u64);
                self.bar
                    .set_message(loracycle::untrusted::printable(name).into_owned());
                (self.stage, self.total, self.tenths) = (name.clone(), *total, 0);
                if self.plain {
                    eprintln!("{}{name}: 0/{total}", self.prefix);
                }
            }
            RunEvent::Advance(n) => {
                self.bar.set_position(*n as u64);
                let tenths = (n * 10).checked_div(self.total).unwrap_or(0);
                if self.plain && tenths > self.tenths {
                    self.tenths = tenths;
                    eprintln!("{}{}: {n}/{}", self.prefix, self.stage, self.total);
                }
            }
            RunEvent::Curve(p) => {
                let v = p
                    .val_loss
                    .map(|v| format!(" val {v:.4}"))
                    .unwrap_or_default();
                self.bar.set_message(format!("loss {:.4}{v}", p.train_loss));
            }
            RunEvent::Log(line) => self.println(line),
            RunEvent::Coefficients(..)
            | RunEvent::Layout { .. }
            | RunEvent::Chosen(_)
            | RunEvent::Screened { .. } => {}
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Shows engine events for `run` on the bar until the run ends; returns that last event.
fn follow(
    bar: &mut Progress,
    run: &RunId,
    mut next: impl FnMut() -> Option<Event>,
) -> Option<Event> {
    while let Some(e) = next() {
        if e.run() != Some(run) {
            continue;
        }
        if let Some(r) = e.run_event() {
            bar.show(&r);
        }
        if e.is_terminal() {
            return Some(e);
        }
    }
    None
}

fn finish(e: Option<Event>, store: &RunStore, run: &RunId, json: bool) -> Result<()> {
    match e {
        Some(Event::Finished { .. }) => {
            let record = store
                .read_record(&run.0)?
                .ok_or_else(|| anyhow::anyhow!("run {run} finished but has no record"))?;
            let folder = store.run_dir(&run.0)?;
            if json {
                println!("{}", serde_json::to_string(&record)?);
            } else {
                print_summary(&record, &folder);
            }
            Ok(())
        }
        Some(Event::Failed { error, .. }) => bail!("{error}"),
        Some(Event::Cancelled { .. }) => bail!("run {run} was cancelled"),
        _ => bail!("the engine stopped before run {run} ended"),
    }
}

pub fn run(spec_path: &Path, json: bool, runs: Option<PathBuf>, attach: bool) -> Result<()> {
    let spec = RunSpec::read(spec_path)?;
    let mut bar = Progress::new();
    if attach {
        let mut client = Client::connect(&socket_path())?;
        // The server writes into its own runs directory and says which first.
        let server_dir = match client.next_event() {
            Some(Event::Hello { runs_dir }) => runs_dir,
            Some(e) => bail!("the server did not greet first (it sent {e:?})"),
            None => bail!("the server closed the connection"),
        };
        // The run goes where the server writes, whatever this client asks: a --runs-dir that
        // names another folder (a relative one resolves against this client's directory) is
        // refused rather than quietly ignored.
        if let Some(mine) = &runs {
            let asked = std::path::absolute(mine)?;
            let same = match (
                std::fs::canonicalize(&asked),
                std::fs::canonicalize(&server_dir),
            ) {
                (Ok(a), Ok(b)) => a == b,
                _ => asked == server_dir,
            };
            if !same {
                bail!(
                    "--runs-dir {} is {}, but the server writes its runs to {}; leave --runs-dir out, or restart the server with `loracycle serve --runs-dir {}`",
                    mine.display(),
                    asked.display(),
                    server_dir.display(),
                    asked.display()
                );
            }
        }
        let server_store = RunStore::open(&server_dir)?;
        // Other clients of the server submit too, with their own tickets: a random one is ours
        // alone, where a label may be anyone's.
        let ticket = rand::random::<u64>().max(1);
        client.send(&Command::Submit {
            spec: Box::new(spec),
            ticket,
        })?;
        let run = loop {
            match client.next_event() {
                Some(Event::Queued { run, ticket: t, .. }) if t == ticket => break run,
                Some(Event::Rejected {
                    ticket: t, error, ..
                }) if t == ticket => bail!("{error}"),
                Some(_) => continue,
                None => bail!("the server closed the connection"),
            }
        };
        bar.println(loracycle::untrusted::printable_text(&format!(
            "queued on the server as {run}"
        )));
        let ends = follow_with_controls(&mut bar, &run, ticket, || client.next_event());
        bar.finish();
        return finish_all(ends, &server_store, json);
    }
    let store = RunStore::open(&runs_dir(runs.as_deref()))?;
    let engine = loracycle::engine::spawn(store.clone());
    engine.send(Command::Submit {
        spec: Box::new(spec),
        ticket: 0,
    });
    let run = match engine.events.recv() {
        Ok(Event::Queued { run, .. }) => run,
        Ok(Event::Rejected { error, .. }) => bail!("{error}"),
        other => bail!("unexpected engine answer: {other:?}"),
    };
    // Ctrl-C cancels the run and its controls after the step in flight; a second Ctrl-C exits
    // at once.
    let commands = engine.commands.clone();
    let ours = std::sync::Arc::new(std::sync::Mutex::new(vec![run.clone()]));
    let to_cancel = ours.clone();
    let pressed = std::sync::atomic::AtomicBool::new(false);
    let _ = ctrlc::set_handler(move || {
        if pressed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ncancelling after the step in flight (Ctrl-C again to quit now)");
        for r in to_cancel.lock().map(|v| v.clone()).unwrap_or_default() {
            let _ = commands.send(Command::Cancel { run: r });
        }
    });
    let ends = follow_with_controls(&mut bar, &run, 0, || {
        let e = engine.events.recv().ok();
        if let Some(Event::Queued {
            run: r,
            parent: Some(_),
            ..
        }) = &e
            && let Ok(mut v) = ours.lock()
        {
            v.push(r.clone());
        }
        e
    });
    bar.finish();
    let result = finish_all(ends, &store, json);
    engine.shutdown();
    result
}

/// Follows `run` and then each control queued with it (their `Queued` events come right after
/// the run's, before anything starts); returns each run with its last event.
fn follow_with_controls(
    bar: &mut Progress,
    run: &RunId,
    ticket: u64,
    mut next: impl FnMut() -> Option<Event>,
) -> Vec<(RunId, Option<Event>)> {
    let mut order = vec![run.clone()];
    let mut early: std::collections::VecDeque<Event> = Default::default();
    let mut ends = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let current = order[i].clone();
        if order.len() > 1 {
            bar.set_prefix(format!("[{}/{}] ", i + 1, order.len()));
        }
        let end = follow(bar, &current, || {
            let e = early.pop_front().or_else(&mut next)?;
            if let Event::Queued {
                run: r,
                parent: Some(p),
                ticket: t,
                ..
            } = &e
                && *p == order[0]
                && *t == ticket
                && !order.contains(r)
            {
                order.push(r.clone());
            }
            Some(e)
        });
        ends.push((current, end));
        i += 1;
    }
    ends
}

/// Reports every run followed: the records (the first run's as JSON with --json), then the run
/// against its controls.
fn finish_all(ends: Vec<(RunId, Option<Event>)>, store: &RunStore, json: bool) -> Result<()> {
    let mut first_err = None;
    let n = ends.len();
    for (i, (run, end)) in ends.iter().enumerate() {
        let quiet = json && i > 0;
        let r = if quiet {
            match end {
                Some(Event::Finished { .. }) => Ok(()),
                Some(Event::Failed { error, .. }) => Err(anyhow::anyhow!("{error}")),
                _ => Err(anyhow::anyhow!("run {run} did not finish")),
            }
        } else {
            finish(end.clone(), store, run, json)
        };
        if let Err(e) = r {
            if i > 0 {
                eprintln!("error: control {run}: {e}");
            }
            first_err.get_or_insert(e);
        }
    }
    if n > 1
        && !json
        && let Ok(Some(main)) = store.read_record(&ends[0].0.0)
    {
        // The run, the controls followed with it and those it reused: no other record is read.
        let mut ids: Vec<String> = ends[1..].iter().map(|(r, _)| r.0.clone()).collect();
        ids.extend(main.spec.controls.reused.values().cloned());
        let controls: Vec<RunRecord> = ids
            .iter()
            .filter_map(|id| store.read_record(id).ok().flatten())
            .collect();
        let all: Vec<&RunRecord> = std::iter::once(&main).chain(&controls).collect();
        let rows = loracycle::run::compare::rows(&all, &[0]);
        println!("\n{}", loracycle::run::compare::text(&rows));
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn print_summary(r: &RunRecord, folder: &Path) {
    println!("{}", r.label);
    if !r.chosen.is_empty() {
        let names: Vec<String> = r
            .chosen
            .iter()
            .map(|c| {
                let mut n = c.name.clone();
                if let Some(em) = c.exact_match {
                    n.push_str(&format!(" ({em:.2})"));
                }
                n
            })
            .collect();
        println!("  adapters ({}): {}", names.len(), names.join(", "));
    }
    if let Some(step) = r.best_step {
        println!("  best checkpoint: step {step}");
    }
    if let Some(c) = &r.coefficients {
        print!("{}", c.weight_table(10));
    }
    println!(
        "  test exact match {} · test loss {} · {} examples",
        r.metrics.exact_match.display(3),
        r.metrics.loss.display(4),
        r.metrics.exact_match.n
    );
    if let Some(v) = r.metrics.val_loss {
        println!("  validation loss {v:.4}");
    }
    println!(
        "  {:.1} s (load {:.1}, select {:.1}, tune {:.1}, eval {:.1})",
        r.timings.total_s, r.timings.load_s, r.timings.select_s, r.timings.tune_s, r.timings.eval_s
    );
    println!("  record: {}", folder.join("record.json").display());
}

/// `loracycle study`'s flags.
#[derive(Debug, clap::Args)]
pub struct StudyArgs {
    /// The comparison to run: lab-paper (the paper's arms at the lab's scale and settings, on lab
    /// tasks) or paper (the paper's arms and protocol: top 30 by generated exact match, the
    /// paper's evaluation and baselines, TSV, AdaMerging, Arrow, π-Tuning; on any model, pool and
    /// task folders; π-Tuning selects by quasi-FIM closeness to the task's own adapter, which a
    /// task folder holds in adapter/, and is left out where it has none).
    #[arg(long, default_value = "lab-paper")]
    pub preset: loracycle::run::study::Preset,
    /// The base model of every run (preset paper): lab, a model folder, or a Hub id in the HF
    /// cache.
    #[arg(long, default_value = "lab")]
    pub model: String,
    /// The pool of every run (preset paper): lab, cache (LoRAs in the HF cache for the model),
    /// hub or dir:PATH.
    #[arg(long, default_value = "lab")]
    pub pool: String,
    /// Seeds per task.
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// Comma-separated lab tasks, or (preset paper) imported tasks by name (`task import`) or
    /// task folders with train.jsonl, validation.jsonl and test.jsonl [default: all held-out
    /// lab tasks].
    #[arg(long, value_delimiter = ',')]
    pub tasks: Vec<String>,
    /// Comma-separated arms to keep, by label (`base`, `gradient`, `average/random-init`,
    /// `TIES/+oracle`, `arrow`, `pi-tuning`, `adamerging`, `tsv`, `average/random-30`,
    /// `gradient/top-5`, ...; case and punctuation do not matter) [default: every arm].
    #[arg(long, value_delimiter = ',')]
    pub arms: Vec<String>,
    /// Output folder for study.md/csv/json, and for the cells, script and logs of --emit
    /// [default: RUNS_DIR/study].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where run folders go (with --emit: a folder every node sees) [default:
    /// $LORACYCLE_RUNS_DIR, else ~/.local/share/loracycle/runs].
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
    /// Scale tuning steps and search budgets (e.g. 0.1 for a quick look); 1 is the preset.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// The device of every run: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Rebuild the table from the run records already in the runs directory (and list the
    /// cells that have none) instead of running.
    #[arg(long, conflicts_with = "emit")]
    pub collect: bool,
    /// Instead of running, write the cells and a job-array script for this scheduler.
    #[arg(long, value_parser = ["slurm"])]
    pub emit: Option<String>,
    /// Slurm partition of the array (--emit).
    #[arg(long, requires = "emit")]
    pub partition: Option<String>,
    /// GPUs for each array task (--emit).
    #[arg(long, requires = "emit")]
    pub gpus_per_task: Option<u32>,
    /// CPUs for each array task (--emit).
    #[arg(long, requires = "emit")]
    pub cpus_per_task: Option<u32>,
    /// Time limit of each array task, in Slurm's format (HH:MM:SS, D-HH:MM, ...) (--emit).
    #[arg(long, requires = "emit")]
    pub time: Option<String>,
    /// At most this many array tasks at once (--emit).
    #[arg(long, requires = "emit")]
    pub max_parallel: Option<u32>,
    /// The loracycle binary the array tasks run [default: this one].
    #[arg(long, requires = "emit")]
    pub exe: Option<PathBuf>,
    /// Submit the script with sbatch and store the job id with the study; without --emit,
    /// submits the study already emitted into --out (after a look at its script, say).
    #[arg(long, conflicts_with = "collect")]
    pub submit: bool,
}

/// Submits an emitted study's script and stores the job id in its plan.
fn submit_plan(mut plan: Plan, study: &Path) -> Result<()> {
    let job = loracycle::slurm::submit(&study.join(SCRIPT_FILE))?;
    plan.jobs.push(Submission {
        job_id: job.clone(),
        submitted: loracycle::run::record::now_rfc3339(),
    });
    plan.write(study)?;
    let runs = plan.runs_dir.display();
    println!(
        "submitted: job array {job} ({} tasks); watch with `loracycle --runs-dir {runs}`, then `loracycle study --collect --runs-dir {runs}`",
        plan.cells.len(),
    );
    Ok(())
}

fn print_problems(problems: &[CellProblem]) {
    for p in problems {
        let mut line = format!("{}: {}", p.state, p.cell);
        if let Some(i) = p.index {
            line.push_str(&format!(" (cell {i}"));
            if let Some(s) = &p.slurm {
                line.push_str(&format!(", slurm {s}"));
            }
            line.push(')');
        } else if let Some(s) = &p.slurm {
            line.push_str(&format!(" (slurm {s})"));
        }
        if let Some(id) = &p.run_id {
            line.push_str(&format!(" run {id}"));
        }
        println!("{line}");
        if let Some(e) = &p.error {
            println!("  error: {e}");
        }
        if let Some(log) = &p.log {
            println!("  log {}:", log.display());
            for l in &p.log_tail {
                println!("  | {l}");
            }
        }
    }
}

pub fn study(a: StudyArgs) -> Result<()> {
    let runs = runs_dir(a.runs_dir.as_deref());
    let out = a.out.clone().unwrap_or_else(|| runs.join("study"));
    if a.collect {
        let (report, problems) =
            loracycle::run::study::collect(&runs, &out, &|ids| loracycle::slurm::query(ids))?;
        println!("{}", markdown(&report));
        print_problems(&problems);
        let cells = report.rows.len() + problems.len();
        println!(
            "{} of {cells} cells finished; written: {}/study.{{md,csv,json}}",
            report.rows.len(),
            out.display()
        );
        return Ok(());
    }
    let tasks = if a.tasks.is_empty() {
        loracycle::lab::tasks::held_out()
            .into_iter()
            .map(String::from)
            .collect()
    } else {
        a.tasks.clone()
    };
    if a.preset == loracycle::run::study::Preset::LabPaper && (a.model != "lab" || a.pool != "lab")
    {
        bail!("--model and --pool go with --preset paper; the lab-paper preset runs on the lab");
    }
    let opts = StudyOptions {
        preset: a.preset,
        model: a.model.clone(),
        pool: a.pool.clone(),
        tasks,
        seeds: a.seeds,
        arms: a.arms.clone(),
        scale: a.scale,
        device: a.device.clone(),
    };
    for line in loracycle::run::study::left_out(&opts) {
        eprintln!("{line}");
    }
    if a.submit && a.emit.is_none() {
        let Some(plan) = Plan::read(&out) else {
            bail!(
                "no emitted study in {} (run `loracycle study --emit slurm --runs-dir SHARED ...` first)",
                out.display()
            );
        };
        return submit_plan(plan, &out);
    }
    if a.emit.is_some() {
        if a.runs_dir.is_none() {
            bail!(
                "--emit slurm needs --runs-dir: a folder on a filesystem that every node of the cluster sees"
            );
        }
        let exe = match a.exe.clone() {
            Some(e) => e,
            None => std::env::current_exe()?,
        };
        let batch = BatchOptions {
            job_name: "loracycle-study".into(),
            partition: a.partition.clone(),
            gpus_per_task: a.gpus_per_task,
            cpus_per_task: a.cpus_per_task,
            time: a.time.clone(),
            max_parallel: a.max_parallel,
        };
        let emitted = emit_slurm(&opts, &runs, &out, &batch, &exe).map_err(anyhow::Error::msg)?;
        let arms: std::collections::BTreeSet<&str> =
            emitted.plan.cells.iter().map(|c| c.arm.as_str()).collect();
        println!(
            "{} cells: {} ({} tasks × {} seed(s) × {} arms)",
            emitted.plan.cells.len(),
            emitted.cells_dir.display(),
            opts.tasks.len(),
            opts.seeds,
            arms.len()
        );
        println!("script: {}", emitted.script.display());
        println!("logs:   {}", emitted.logs_dir.display());
        if !a.submit {
            println!("submit: sbatch {}", emitted.script.display());
            return Ok(());
        }
        return submit_plan(emitted.plan, &out);
    }
    let mut bar = Progress::new();
    let report = run_study(&opts, &runs, &out, &mut |i, n, label, event| match event {
        None => {
            bar.set_prefix(format!("run {i}/{n} "));
            bar.println(format!("[{i}/{n}] {label}"));
        }
        Some(e) => bar.show(e),
    });
    bar.finish();
    let report = report?;
    println!("{}", markdown(&report));
    println!("written: {}/study.{{md,csv,json}}", out.display());
    Ok(())
}
