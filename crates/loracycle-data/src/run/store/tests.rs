//! The store under concurrent writers, liveness here and on other hosts, the status a run
//! leaves, and run ids given by prefix.

use std::time::{Duration, SystemTime};

use super::*;
use crate::run::event::RunEvent;

fn spec(name: &str) -> RunSpec {
    RunSpec::from_toml(
        &format!("name = {name:?}\n[task]\nlab = \"caesar-5\"\n"),
        Path::new("t.toml"),
    )
    .unwrap()
}

#[test]
fn concurrent_writers_get_their_own_folders() {
    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(dir.path()).unwrap();
    // Eight writers create 25 runs each, all with the same label in the same second.
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..25)
                        .map(|_| {
                            let mut f = store.create(&spec("same cell")).unwrap();
                            f.set_state(RunState::Running, None).unwrap();
                            f.append_curve(&CurvePoint {
                                step: 1,
                                train_loss: 1.0,
                                val_loss: None,
                            })
                            .unwrap();
                            f.id().to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (200, 200));
    let listed = store.list();
    assert_eq!(listed.len(), 200);
    assert!(
        listed
            .iter()
            .all(|s| s.steps == 1 && s.label == "same cell")
    );
    // Nothing but run folders: no lock or temporary files left beside them.
    let stray: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| !e.path().is_dir())
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

fn status(host: &str, state: RunState, updated_ago: u64) -> StatusFile {
    let t = SystemTime::now() - Duration::from_secs(updated_ago);
    StatusFile {
        id: "r".into(),
        label: "r".into(),
        state,
        pid: u32::MAX - 1,
        pid_start: None,
        host: host.into(),
        slurm: None,
        submitted: now_rfc3339(),
        updated: humantime::format_rfc3339_seconds(t).to_string(),
        stage: None,
        error: None,
    }
}

#[test]
fn liveness_by_pid_here_and_by_heartbeat_elsewhere() {
    let here = host_name();
    // A pid that does not exist on this host: interrupted at once.
    assert_eq!(
        RunStore::effective(&status(&here, RunState::Running, 0)),
        RunState::Interrupted
    );
    // Another host's pid means nothing here; its heartbeat does.
    let other = format!("{here}-other");
    assert_eq!(
        RunStore::effective(&status(&other, RunState::Running, 30)),
        RunState::Running
    );
    assert_eq!(
        RunStore::effective(&status(&other, RunState::Running, 601)),
        RunState::Interrupted
    );
    // Queued runs wait without a heartbeat; final states stay.
    assert_eq!(
        RunStore::effective(&status(&other, RunState::Queued, 9999)),
        RunState::Queued
    );
    assert_eq!(
        RunStore::effective(&status(&other, RunState::Finished, 9999)),
        RunState::Finished
    );
}

#[test]
fn a_reused_pid_is_not_the_run_s_owner() {
    // A status file naming this very process, as a dead run's would once the kernel hands its
    // pid to a new process: only the start time tells the two apart.
    let started = crate::process::own_start_ticks().expect("/proc/self/stat reads on Linux");
    let mut s = status(&host_name(), RunState::Running, 0);
    s.pid = std::process::id();
    s.pid_start = Some(started + 1);
    assert_eq!(RunStore::effective(&s), RunState::Interrupted);
    s.pid_start = Some(started);
    assert_eq!(RunStore::effective(&s), RunState::Running);
    // A status file from before start times were recorded goes by the pid alone.
    s.pid_start = None;
    assert_eq!(RunStore::effective(&s), RunState::Running);
    // And it reads back: the field is optional.
    let mut old = serde_json::to_value(&s).unwrap();
    assert!(old.get("pid_start").is_none(), "{old}");
    old["pid_start"] = serde_json::json!(started);
    let read: StatusFile = serde_json::from_value(old).unwrap();
    assert_eq!(read.pid_start, Some(started));
}

#[test]
fn a_new_run_records_its_owner_s_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(dir.path()).unwrap();
    let f = store.create(&spec("x")).unwrap();
    let s = RunStore::read_status(&dir.path().join(f.id())).unwrap();
    assert_eq!(
        (s.pid, s.pid_start),
        (std::process::id(), crate::process::own_start_ticks())
    );
    assert!(s.pid_start.is_some());
}

#[test]
fn status_records_stage_and_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(dir.path()).unwrap();
    let mut f = store.create(&spec("x")).unwrap();
    f.set_state(RunState::Running, None).unwrap();
    f.observe(&RunEvent::Stage {
        name: "scoring adapters".into(),
        total: 119,
    })
    .unwrap();
    // Within the heartbeat the count waits; a new stage is written at once.
    f.observe(&RunEvent::Advance(7)).unwrap();
    let s = store.summary(f.id()).unwrap();
    assert_eq!(
        s.stage,
        Some(StageStatus {
            name: "scoring adapters".into(),
            done: 0,
            total: 119
        })
    );
    assert_eq!(s.host, host_name());
    f.observe(&RunEvent::Stage {
        name: "tuning coefficients".into(),
        total: 100,
    })
    .unwrap();
    let s = store.summary(f.id()).unwrap();
    assert_eq!(s.stage.unwrap().name, "tuning coefficients");
    f.set_state(RunState::Failed, Some("boom".into())).unwrap();
    let s = store.summary(f.id()).unwrap();
    assert_eq!(
        (s.state, s.stage, s.error),
        (RunState::Failed, None, Some("boom".into()))
    );
}

#[test]
fn a_prefix_names_a_run_when_it_names_one() {
    let tmp = tempfile::tempdir().unwrap();
    let store = RunStore::open(tmp.path()).unwrap();
    let ids: Vec<String> = (1..=6)
        .map(|i| format!("20261129T120000Z-caesar-5-base-000{i}"))
        .collect();
    for id in &ids {
        std::fs::create_dir(tmp.path().join(id)).unwrap();
        std::fs::write(tmp.path().join(id).join("status.json"), "{}").unwrap();
    }
    // A folder that is not a run does not count.
    std::fs::create_dir(tmp.path().join("20261130T000000Z-notes")).unwrap();
    assert_eq!(store.resolve(&ids[0]).unwrap(), ids[0]);
    assert_eq!(
        store
            .resolve("20261129T120000Z-caesar-5-base-0003")
            .unwrap(),
        ids[2]
    );
    assert_eq!(
        store.resolve("20261129T12").unwrap_err().to_string(),
        format!(
            "\"20261129T12\" begins 6 run ids ({}, …); give more of the id",
            ids[..4].join(", ")
        )
    );
    for missing in ["20261130", "", "2001"] {
        assert_eq!(
            store.resolve(missing).unwrap_err().to_string(),
            format!("no run {missing:?} in the runs directory")
        );
    }
}

#[test]
fn a_runs_directory_that_is_a_file_is_named_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("runs");
    std::fs::write(&file, "").unwrap();
    let Err(e) = RunStore::open(&file) else {
        panic!("a file is no runs directory");
    };
    assert_eq!(
        e.to_string(),
        format!(
            "the runs directory {} is a file, not a folder",
            file.display()
        )
    );
}

#[test]
fn curve_steps_counts_whole_lines_only() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(RunStore::curve_steps(tmp.path()), 0);
    std::fs::write(
        tmp.path().join("curves.jsonl"),
        "{\"step\":1,\"train_loss\":2.0}\n{\"step\":2,\"train_loss\":1.5}\n{\"step\":3,\"tr",
    )
    .unwrap();
    assert_eq!(RunStore::curve_steps(tmp.path()), 2);
    assert_eq!(RunStore::read_curve(tmp.path()).len(), 2);
}

/// A finished record, as JSON: every field a reader needs.
fn record_json(id: &str) -> serde_json::Value {
    let est = serde_json::json!({"mean": 0.5, "lo": 0.25, "hi": 0.75, "n": 4});
    serde_json::json!({
        "id": id, "label": "x", "status": "finished", "started": now_rfc3339(),
        "versions": {"loracycle": "0", "candle": "0"},
        "spec": serde_json::to_value(spec("x")).unwrap(),
        "model": {"path": "m", "identity": null, "device": "cpu", "dtype": "f32"},
        "task": {"name": "t", "train": 1, "validation": 1, "test": 4, "matching": "exact"},
        "chosen": [], "curve": [],
        "metrics": {"exact_match": est, "loss": est},
        "timings": {"load_s": 0.0, "select_s": 0.0, "tune_s": 0.0, "eval_s": 0.0, "total_s": 0.0},
    })
}

#[test]
fn a_record_that_would_not_read_back_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(dir.path()).unwrap();
    let mut f = store.create(&spec("nan")).unwrap();
    let mut record: RunRecord = serde_json::from_value(record_json(f.id())).unwrap();
    record.metrics.loss.mean = f64::NAN;
    let err = f.finish(&record).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the record of run {} would not read back (invalid type: null, expected f64 at line 75 column 18); it was not written",
            f.id()
        )
    );
    assert!(!f.dir.join("record.json").exists());
    // A finite record is written and reads back as itself.
    record.metrics.loss.mean = 0.5;
    f.finish(&record).unwrap();
    assert_eq!(store.read_record(f.id()).unwrap(), Some(record));
}

#[test]
fn an_unreadable_record_is_reported_not_taken_for_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(dir.path()).unwrap();
    let mut f = store.create(&spec("old")).unwrap();
    f.set_state(RunState::Finished, None).unwrap();
    let mut json = record_json(f.id());
    json["metrics"]["loss"]["mean"] = serde_json::Value::Null;
    let path = f.dir.join("record.json");
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    let want = format!(
        "{}: the record cannot be read: invalid type: null, expected f64 at line 1 column {}",
        path.display(),
        // The 1-based column of null's last letter.
        serde_json::to_string(&json)
            .unwrap()
            .find("\"mean\":null")
            .unwrap()
            + 11
    );
    assert_eq!(store.read_record(f.id()).unwrap_err().to_string(), want);
    // The run stays listed, finished, with the reason as its error.
    let listed = store.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, RunState::Finished);
    assert_eq!(listed[0].error.as_deref(), Some(want.as_str()));
}

#[test]
fn a_run_s_events_are_appended_to_its_stream_as_protocol_lines() {
    use crate::engine::protocol::Event;
    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(dir.path()).unwrap();
    let mut f = store.create(&spec("streamed")).unwrap();
    let run_dir = f.dir.clone();
    assert_eq!(RunStore::latest_coefficients(&run_dir), None);
    for e in [
        RunEvent::Stage {
            name: "tuning".into(),
            total: 10,
        },
        RunEvent::Advance(1),
        RunEvent::Layout {
            groups: vec!["g".into()],
            columns: vec!["a".into(), "b".into()],
        },
        RunEvent::Curve(CurvePoint {
            step: 1,
            train_loss: 2.0,
            val_loss: None,
        }),
        RunEvent::Coefficients(1, vec![vec![0.5, 0.25]]),
        RunEvent::Coefficients(2, vec![vec![0.75, -1.0]]),
        RunEvent::Log("a line".into()),
    ] {
        f.observe(&e).unwrap();
    }
    // Stages live in the status; everything else is in the stream, in order, naming the run.
    let events = RunStore::read_events(&run_dir);
    assert_eq!(events.len(), 5);
    assert!(
        events
            .iter()
            .all(|e| e.run().map(|r| r.0.as_str()) == Some(f.id()))
    );
    assert!(matches!(events[0], Event::Layout { .. }));
    assert!(matches!(events[1], Event::Progress { step: 1, .. }));
    assert!(matches!(events[4], Event::Log { .. }));
    assert_eq!(
        RunStore::latest_coefficients(&run_dir),
        Some(LiveCoefficients {
            step: 2,
            groups: vec!["g".into()],
            columns: vec!["a".into(), "b".into()],
            values: vec![vec![0.75, -1.0]],
        })
    );
    // The curve file is still written for the record's readers.
    assert_eq!(RunStore::read_curve(&run_dir).len(), 1);
}

#[test]
fn a_run_s_name_or_label_names_it_where_an_id_would() {
    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(dir.path()).unwrap();
    let a = store.create(&spec("rot4 grad 800 steps")).unwrap();
    let b = store.create(&spec("twice")).unwrap();
    let c = store.create(&spec("twice")).unwrap();
    assert_eq!(store.resolve("rot4 grad 800 steps").unwrap(), a.id());
    // A name given with `runs rename` counts as well.
    store.rename(b.id(), "mine").unwrap();
    assert_eq!(store.resolve("mine").unwrap(), b.id());
    assert_eq!(store.resolve("twice").unwrap(), c.id());
    store.rename(b.id(), "").unwrap();
    // Listed in the order they were submitted.
    let both = [b.id().to_string(), c.id().to_string()];
    assert_eq!(
        store.resolve("twice").unwrap_err().to_string(),
        format!(
            "\"twice\" is the name of 2 runs ({}); give one's id",
            both.join(", ")
        )
    );
    assert_eq!(
        store.resolve("nobody").unwrap_err().to_string(),
        "no run \"nobody\" in the runs directory"
    );
}
