//! `loracycle run` and `loracycle study`: specs executed with a progress bar on stderr.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use loracycle::run::execute::{RunEvent, Workbench, execute};
use loracycle::run::record::{runs_dir, save};
use loracycle::run::study::{StudyOptions, markdown, run_study};
use loracycle::run::{RunRecord, RunSpec};

fn bar() -> ProgressBar {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{prefix}{msg:<28} [{bar:30}] {pos}/{len} {elapsed} ETA {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(250));
    bar
}

/// Applies a run event to the bar; returns a line to print above it, if any.
fn show(bar: &ProgressBar, e: &RunEvent) {
    match e {
        RunEvent::Stage { name, total } => {
            bar.set_message(name.clone());
            bar.set_length(*total as u64);
            bar.set_position(0);
            bar.reset_eta();
        }
        RunEvent::Advance(n) => bar.set_position(*n as u64),
        RunEvent::Curve(p) => {
            let v = p
                .val_loss
                .map(|v| format!(" val {v:.4}"))
                .unwrap_or_default();
            bar.set_message(format!("loss {:.4}{v}", p.train_loss));
        }
        RunEvent::Log(line) => bar.println(line),
    }
}

/// Ctrl-C sets the flag once (the run stops after the step in flight); a second Ctrl-C exits.
fn cancel_on_ctrl_c() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ncancelling after the step in flight (Ctrl-C again to quit now)");
    });
    flag
}

pub fn run(spec_path: &Path, json: bool, runs: Option<PathBuf>) -> Result<()> {
    let spec = RunSpec::read(spec_path)?;
    let bar = bar();
    bar.set_message("loading model");
    let mut bench = Workbench::open(&spec)?;
    let cancel = cancel_on_ctrl_c();
    let record = execute(&mut bench, &spec, &mut |e| show(&bar, &e), Some(&cancel));
    bar.finish_and_clear();
    let record = record?;
    let dir = runs_dir(runs.as_deref());
    let folder = save(&dir, &record)
        .with_context(|| format!("saving the run record in {}", dir.display()))?;
    if json {
        println!("{}", serde_json::to_string(&record)?);
    } else {
        print_summary(&record, &folder);
    }
    Ok(())
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

pub fn study(
    tasks: Vec<String>,
    seeds: usize,
    out: Option<PathBuf>,
    runs: Option<PathBuf>,
    scale: f64,
) -> Result<()> {
    let tasks = if tasks.is_empty() {
        loracycle::lab::tasks::held_out()
            .into_iter()
            .map(String::from)
            .collect()
    } else {
        tasks
    };
    let out = out.unwrap_or_else(|| runs_dir(runs.as_deref()).join("study"));
    let bar = bar();
    let opts = StudyOptions {
        tasks,
        seeds,
        out: &out,
        runs: runs.as_deref(),
        scale,
    };
    let report = run_study(&opts, &mut |i, n, label, event| match event {
        None => {
            bar.set_prefix(format!("run {i}/{n} "));
            bar.println(format!("[{i}/{n}] {label}"));
        }
        Some(e) => show(&bar, e),
    });
    bar.finish_and_clear();
    let report = report?;
    println!("{}", markdown(&report));
    println!("written: {}/study.{{md,csv,json}}", out.display());
    Ok(())
}
