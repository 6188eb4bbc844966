//! `loracycle runs list|show|rename|rm|export|compare` and `loracycle serve`.

use std::path::PathBuf;

use anyhow::{Result, bail};

use loracycle::engine::server::{Client, serve as serve_engine, socket_path};
use loracycle::run::record::runs_dir;
use loracycle::run::store::RunStore;

pub fn list(runs: Option<PathBuf>, filter: Option<&str>, json: bool) -> Result<()> {
    use loracycle::run::compare::{differing_settings, setting_heading};
    use loracycle::run::filter::{RunFields, RunFilter};
    let store = RunStore::open(&runs_dir(runs.as_deref()))?;
    let filter: RunFilter = match filter {
        Some(f) => f.parse().map_err(anyhow::Error::msg)?,
        None => RunFilter::default(),
    };
    let all: Vec<_> = store
        .list()
        .into_iter()
        .filter(|r| {
            filter.matches(&RunFields {
                id: &r.id,
                label: &r.label,
                state: r.state.name(),
                exact: r.exact_match,
                loss: r.loss,
                settings: &r.settings,
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string(&all)?);
        return Ok(());
    }
    if all.is_empty() {
        let which = if filter.is_empty() {
            ""
        } else {
            " that match the filter"
        };
        println!("no runs{which} in {}", store.root.display());
        return Ok(());
    }
    // The settings in which the listed runs differ, as `key=value` after the id.
    let settings: Vec<_> = all.iter().map(|r| &r.settings).collect();
    let differ = differing_settings(&settings);
    println!(
        "{:<12} {:<6} {:>8} {:>8}  {:<44} id{}",
        "state",
        "steps",
        "exact",
        "loss",
        "label",
        if differ.is_empty() {
            ""
        } else {
            "  (settings that differ)"
        }
    );
    for r in &all {
        let label: String = r.label.chars().take(44).collect();
        println!(
            "{:<12} {:<6} {:>8} {:>8}  {:<44} {}",
            r.state.name(),
            r.steps,
            r.exact_match.map_or("–".into(), |v| format!("{v:.3}")),
            r.loss.map_or("–".into(), |v| format!("{v:.4}")),
            label,
            r.id
        );
        if !differ.is_empty() {
            let line: Vec<String> = differ
                .iter()
                .map(|k| {
                    let v = r.settings.get(k).map_or("–", String::as_str);
                    format!("{}={v}", setting_heading(k, &differ))
                })
                .collect();
            println!("{:<12} {}", "", line.join(" "));
        }
        if let Some(e) = &r.error {
            println!("{:<12} {e}", "");
        }
        let here = loracycle::process::host_name();
        if r.slurm.is_some() || (!r.host.is_empty() && r.host != here) {
            let job = r
                .slurm
                .as_ref()
                .map(|j| format!(" · slurm job {}", j.key()))
                .unwrap_or_default();
            println!("{:<12} on {}{job}", "", r.host);
        }
    }
    Ok(())
}

pub fn show(runs: Option<PathBuf>, id: &str, json: bool) -> Result<()> {
    let store = RunStore::open(&runs_dir(runs.as_deref()))?;
    let id = &store.resolve(id)?;
    let summary = store.summary(id)?;
    let record = store.read_record(id)?;
    if json {
        let v = match &record {
            Some(r) => serde_json::to_value(r)?,
            // A run in flight: its curve and its newest coefficients, with their step.
            None => {
                let dir = store.run_dir(id)?;
                serde_json::json!({
                    "summary": summary,
                    "curve": RunStore::read_curve(&dir),
                    "coefficients": RunStore::latest_coefficients(&dir),
                })
            }
        };
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} · {} · {}",
        summary.label,
        summary.state.name(),
        summary.id
    );
    if let Some(e) = &summary.error {
        println!("  error: {e}");
    }
    match record {
        Some(r) => {
            println!(
                "  adapters: {}",
                r.chosen
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!(
                "  test exact match {} · test loss {}",
                r.metrics.exact_match.display(3),
                r.metrics.loss.display(4)
            );
            if let Some(s) = r.best_step {
                println!("  best checkpoint at step {s} of {}", r.curve.len());
            }
            if let Some(c) = &r.coefficients {
                print!("{}", c.weight_table(usize::MAX));
            }
            if let Some(p) = &r.spec.parent {
                println!("  a {} control of run {}", p.role.name(), p.id);
            }
            for (role, id) in &r.spec.controls.reused {
                println!("  {role} control: run {id} (reused)");
            }
        }
        None => {
            println!("  {} curve points so far", summary.steps);
            if let Some(c) = RunStore::latest_coefficients(&store.run_dir(id)?) {
                println!(
                    "  coefficients at step {}: {} groups × {} adapters",
                    c.step,
                    c.groups.len(),
                    c.columns.len()
                );
            }
        }
    }
    Ok(())
}

/// `runs rename`: a name for the run, shown wherever its label is (an empty one clears it).
pub fn rename(runs: Option<PathBuf>, id: &str, name: &str) -> Result<()> {
    let store = RunStore::open(&runs_dir(runs.as_deref()))?;
    let id = &store.resolve(id)?;
    match store.rename(id, name)? {
        Some(n) => println!("renamed {id} to {n:?}"),
        None => println!(
            "{id} has no name now; it is shown as {:?}",
            store.summary(id)?.label
        ),
    }
    Ok(())
}

pub fn rm(runs: Option<PathBuf>, ids: &[String]) -> Result<()> {
    let store = RunStore::open(&runs_dir(runs.as_deref()))?;
    let mut failed = 0;
    for id in ids {
        match store
            .resolve(id)
            .and_then(|id| store.remove(&id).map(|()| id))
        {
            Ok(id) => println!("removed {id}"),
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} runs not removed", ids.len());
    }
    Ok(())
}

pub fn serve(runs: Option<PathBuf>, stop: bool) -> Result<()> {
    if stop {
        return stop_server();
    }
    // Absolute, for the clients: they read records from the folder the server names, from
    // wherever they run.
    let store = RunStore::open(&std::path::absolute(runs_dir(runs.as_deref()))?)?;
    let root = store.root.clone();
    serve_engine(&socket_path(), store, &mut |p, resumed| {
        let resumed = match resumed {
            0 => String::new(),
            1 => "; 1 queued run taken up from the last shutdown".into(),
            n => format!("; {n} queued runs taken up from the last shutdown"),
        };
        eprintln!(
            "loracycle engine listening on {} (runs in {}{resumed})",
            p.display(),
            root.display()
        );
    })?;
    Ok(())
}

/// `serve --stop`: shuts the server down as a client and waits until it has stopped.
fn stop_server() -> Result<()> {
    let path = socket_path();
    let kept = Client::connect(&path)?.stop(&mut |run| {
        eprintln!(
            "loracycle serve on {}: waiting for run {run}, in flight, to finish",
            path.display()
        );
    })?;
    let kept = match kept.len() {
        0 => "no queued runs".to_string(),
        1 => "1 queued run kept for the next start".into(),
        n => format!("{n} queued runs kept for the next start"),
    };
    println!("loracycle serve on {}: stopped ({kept})", path.display());
    Ok(())
}

pub fn export(runs: Option<PathBuf>, id: &str, out: &std::path::Path, rank: usize) -> Result<()> {
    let store = RunStore::open(&runs_dir(runs.as_deref()))?;
    let id = &store.resolve(id)?;
    let Some(record) = store.read_record(id)? else {
        bail!("run {id} has no record yet (it has not finished)");
    };
    let (r, error) = loracycle::run::export::export(&record, &store.run_dir(id)?, out, rank)?;
    let how = if matches!(record.spec.method, loracycle::run::MethodSpec::NewLora(_)) {
        "the LoRA it trained".to_string()
    } else if error > 0.0 {
        format!("rank-{rank} truncation, relative error {error:.4}")
    } else {
        "exact".into()
    };
    println!("exported run {id} to {} (rank {r}, {how})", out.display());
    Ok(())
}

/// `runs compare`: runs with their own controls and the paired Δs.
pub fn compare(
    runs: Option<PathBuf>,
    ids: &[String],
    task: Option<&str>,
    json: bool,
    out: Option<&std::path::Path>,
) -> Result<()> {
    use loracycle::run::compare;
    use loracycle::run::store::RunState;
    let store = RunStore::open(&runs_dir(runs.as_deref()))?;
    let mut all = Vec::new();
    for s in store.list() {
        if s.state == RunState::Finished
            && let Ok(Some(r)) = store.read_record(&s.id)
        {
            all.push(r);
        }
    }
    let chosen: Vec<usize> = if ids.is_empty() {
        (0..all.len())
            .filter(|&i| task.is_none_or(|t| all[i].task.name == t))
            .collect()
    } else {
        let mut v = Vec::new();
        for id in ids {
            let id = store.resolve(id)?;
            match all.iter().position(|r| r.id == id) {
                Some(i) => v.push(i),
                None => bail!("run {id} has no record (it has not finished)"),
            }
        }
        v
    };
    let refs: Vec<&loracycle::run::RunRecord> = all.iter().collect();
    let rows = compare::rows(&refs, &chosen);
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)?;
        for (name, text) in [
            ("compare.md", compare::markdown(&rows)),
            ("compare.csv", compare::csv(&rows)),
        ] {
            let p = dir.join(name);
            loracycle::atomic_write::write_atomic(&p, text.as_bytes())?;
            eprintln!("wrote {}", p.display());
        }
    }
    if json {
        println!("{}", serde_json::to_string(&rows)?);
    } else if rows.is_empty() {
        println!(
            "no finished runs{} in {}",
            task.map(|t| format!(" on {t}")).unwrap_or_default(),
            store.root.display()
        );
    } else {
        print!("{}", compare::text(&rows));
    }
    Ok(())
}
