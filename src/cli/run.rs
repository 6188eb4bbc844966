//! `loracycle run` and `loracycle study`: specs executed with a progress bar on stderr.

use std::path::{Path, PathBuf};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use anyhow::bail;
use loracycle::engine::server::{Client, socket_path};
use loracycle::engine::{Command, Event, RunId, RunStore};
use loracycle::run::execute::RunEvent;
use loracycle::run::record::{CurvePoint, runs_dir};
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
        RunEvent::Coefficients(..) | RunEvent::Layout { .. } => {}
    }
}

/// Shows engine events for `run` on the bar until the run ends; returns that last event.
fn follow(
    bar: &ProgressBar,
    run: &RunId,
    mut next: impl FnMut() -> Option<Event>,
) -> Option<Event> {
    while let Some(e) = next() {
        if e.run() != Some(run) {
            continue;
        }
        match &e {
            Event::Stage { name, total, .. } => show(
                bar,
                &RunEvent::Stage {
                    name: name.clone(),
                    total: *total,
                },
            ),
            Event::Advance { done, .. } => show(bar, &RunEvent::Advance(*done)),
            Event::Progress {
                step,
                train_loss,
                val_loss,
                ..
            } => show(
                bar,
                &RunEvent::Curve(CurvePoint {
                    step: *step,
                    train_loss: *train_loss,
                    val_loss: *val_loss,
                }),
            ),
            Event::Log { line, .. } => bar.println(line),
            _ => {}
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
    let store = RunStore::open(&runs_dir(runs.as_deref()))?;
    let bar = bar();
    if attach {
        let mut client = Client::connect(&socket_path())?;
        client.send(&Command::Submit {
            spec: Box::new(spec.clone()),
        })?;
        let label = spec.label();
        let run = loop {
            match client.next_event() {
                Some(Event::Queued { run, label: l, .. }) if l == label => break run,
                Some(_) => continue,
                None => bail!("the server closed the connection"),
            }
        };
        bar.println(format!("queued on the server as {run}"));
        let end = follow(&bar, &run, || client.next_event());
        bar.finish_and_clear();
        // The server writes into its own runs directory.
        let server_store = store;
        return finish(end, &server_store, &run, json);
    }
    let engine = loracycle::engine::spawn(store.clone());
    engine.send(Command::Submit {
        spec: Box::new(spec),
    });
    let run = match engine.events.recv() {
        Ok(Event::Queued { run, .. }) => run,
        Ok(Event::Failed { error, .. }) => bail!("{error}"),
        other => bail!("unexpected engine answer: {other:?}"),
    };
    // Ctrl-C cancels after the step in flight; a second Ctrl-C exits at once.
    let commands = engine.commands.clone();
    let cancel_run = run.clone();
    let pressed = std::sync::atomic::AtomicBool::new(false);
    let _ = ctrlc::set_handler(move || {
        if pressed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ncancelling after the step in flight (Ctrl-C again to quit now)");
        let _ = commands.send(Command::Cancel {
            run: cancel_run.clone(),
        });
    });
    let end = follow(&bar, &run, || engine.events.recv().ok());
    bar.finish_and_clear();
    let result = finish(end, &store, &run, json);
    engine.shutdown();
    result
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
    collect: bool,
) -> Result<()> {
    if collect {
        let runs = runs_dir(runs.as_deref());
        let out = out.unwrap_or_else(|| runs.join("study"));
        let (report, missing) = loracycle::run::study::collect(&runs, &out, 0.0)?;
        println!("{}", markdown(&report));
        for m in &missing {
            println!("missing: {m}");
        }
        println!("written: {}/study.{{md,csv,json}}", out.display());
        return Ok(());
    }
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
