//! The background engine on the lab: SIGKILL during a run (the record survives, the run reads as
//! interrupted), cancel in mid-run, a failing run followed by one that succeeds, detach and
//! reattach to a server receiving live events, `run --attach` reading the server's runs
//! directory, and a socket other users could reach refused.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

use loracycle::engine::server::{Client, ServerError, check_socket_file, peer_allowed};
use loracycle::engine::{Command, Event, spawn};
use loracycle::run::RunSpec;
use loracycle::run::store::RunStore;

fn spec(text: &str) -> RunSpec {
    RunSpec::from_toml(text, Path::new("test.toml")).unwrap()
}

/// A gradient run long enough to be interrupted: many small steps, validation every step.
const LONG: &str = r#"
name = "long"
[task]
lab = "caesar-5"
train_examples = 16
[selection]
strategy = "random"
k = 3
[method]
kind = "gradient"
steps = 400
batch_size = 2
eval_every = 50
[eval]
bootstrap = 1
"#;

const BASE_RUN: &str = "name = \"base\"\n[task]\nlab = \"which-is-smaller\"\n[method]\nkind = \"base\"\n[eval]\nbootstrap = 1\n";

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `loracycle serve` on `sock`, writing into `runs`, once its socket is there.
fn start_server(sock: &Path, runs: &Path) -> std::process::Child {
    let server = std::process::Command::cargo_bin("loracycle")
        .unwrap()
        .args(["serve", "--runs-dir", runs.to_str().unwrap()])
        .env("LORACYCLE_SOCKET", sock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the socket", Duration::from_secs(30), || sock.exists());
    server
}

fn next_event(events: &std::sync::mpsc::Receiver<Event>) -> Event {
    events
        .recv_timeout(Duration::from_secs(120))
        .expect("an event within 2 minutes")
}

#[test]
fn sigkill_leaves_an_interrupted_run_with_its_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let spec_path = tmp.path().join("long.toml");
    std::fs::write(&spec_path, LONG).unwrap();
    let runs = tmp.path().join("runs");
    let mut child = std::process::Command::cargo_bin("loracycle")
        .unwrap()
        .args([
            "run",
            spec_path.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let curve_lines = || -> usize {
        std::fs::read_dir(&runs)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("curves.jsonl")).ok())
            .map(|t| t.lines().count())
            .sum()
    };
    wait_for("three curve points", Duration::from_secs(120), || {
        curve_lines() >= 3
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let after_kill = curve_lines();
    let list = std::process::Command::cargo_bin("loracycle")
        .unwrap()
        .args([
            "runs",
            "list",
            "--json",
            "--runs-dir",
            runs.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(list.status.success());
    let all: Vec<Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["state"], "interrupted");
    assert_eq!(all[0]["label"], "long");
    assert_eq!(all[0]["steps"].as_u64().unwrap() as usize, after_kill);
    // The curve reads back point by point, steps 1, 2, 3, ...
    let store = RunStore::open(&runs).unwrap();
    let id = all[0]["id"].as_str().unwrap();
    let curve = RunStore::read_curve(&store.run_dir(id).unwrap());
    assert_eq!(curve.len(), after_kill);
    for (i, p) in curve.iter().enumerate() {
        assert_eq!(p.step, i + 1);
        assert!(p.train_loss.is_finite());
    }
    // The spec is there to run again; an interrupted run can be removed.
    assert_eq!(
        RunSpec::read(&store.run_dir(id).unwrap().join("spec.toml")).unwrap(),
        spec(LONG)
    );
    store.remove(id).unwrap();
    assert!(store.list().is_empty());
}

#[test]
fn cancel_stops_a_running_run_within_a_step_and_the_queue_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let store = RunStore::open(tmp.path()).unwrap();
    let engine = spawn(store.clone());
    // A run that fails, a long one to cancel, and one that succeeds, queued at once.
    engine.send(Command::Submit {
        spec: Box::new(spec(
            "name = \"broken\"\n[task]\nlab = \"no-such-task\"\n[method]\nkind = \"base\"\n",
        )),
        ticket: 0,
    });
    engine.send(Command::Submit {
        spec: Box::new(spec(LONG)),
        ticket: 0,
    });
    engine.send(Command::Submit {
        spec: Box::new(spec(BASE_RUN)),
        ticket: 0,
    });
    let mut ids = Vec::new();
    while ids.len() < 3 {
        if let Event::Queued { run, .. } = next_event(&engine.events) {
            ids.push(run);
        }
    }
    let (broken, long, base) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    // The broken run fails alone, with a message a person can act on.
    loop {
        match next_event(&engine.events) {
            Event::Failed { run, error } => {
                assert_eq!(run, broken);
                assert!(
                    error.starts_with("task: the lab has no held-out task \"no-such-task\""),
                    "{error}"
                );
                break;
            }
            e => assert!(e.run() == Some(&broken) || e.run().is_none(), "{e:?}"),
        }
    }
    // Cancel the long run after its second step; it stops within one more step.
    let mut cancelled_at = None;
    loop {
        match next_event(&engine.events) {
            Event::Progress { run, step, .. } if run == long => {
                if step == 2 {
                    engine.send(Command::Cancel { run: long.clone() });
                    cancelled_at = Some(step);
                } else if let Some(at) = cancelled_at {
                    assert!(step <= at + 1, "still stepping at {step}");
                }
            }
            Event::Cancelled { run } => {
                assert_eq!(run, long);
                break;
            }
            Event::Failed { run, error } => panic!("{run} failed: {error}"),
            _ => {}
        }
    }
    // The queue goes on: the base run finishes.
    loop {
        match next_event(&engine.events) {
            Event::Finished {
                run, exact_match, ..
            } => {
                assert_eq!(run, base);
                assert!((0.0..=1.0).contains(&exact_match));
                break;
            }
            Event::Failed { run, error } => panic!("{run} failed: {error}"),
            _ => {}
        }
    }
    // One adapter scored alone on a task, answered by an event; a wrong name says so.
    let task_spec = spec("[task]\nlab = \"caesar-5\"\n");
    engine.send(Command::EvaluateAdapter {
        spec: Box::new(task_spec.clone()),
        adapter: "caesar-4".into(),
    });
    engine.send(Command::EvaluateAdapter {
        spec: Box::new(task_spec),
        adapter: "nope".into(),
    });
    let mut answers = Vec::new();
    while answers.len() < 2 {
        if let e @ Event::Evaluated { .. } = next_event(&engine.events) {
            answers.push(e);
        }
    }
    match &answers[0] {
        Event::Evaluated {
            adapter,
            task,
            exact_match: Some(em),
            loss: Some(l),
            error: None,
        } => {
            assert_eq!((adapter.as_str(), task.as_str()), ("caesar-4", "caesar-5"));
            assert!((0.0..=1.0).contains(em) && l.is_finite());
        }
        e => panic!("{e:?}"),
    }
    match &answers[1] {
        Event::Evaluated { error: Some(e), .. } => {
            assert_eq!(e, "task: no adapter \"nope\" in pool lab")
        }
        e => panic!("{e:?}"),
    }
    let states: Vec<(String, String)> = store
        .list()
        .into_iter()
        .map(|s| (s.id, s.state.name().to_string()))
        .collect();
    assert!(states.contains(&(broken.0.clone(), "failed".into())));
    assert!(states.contains(&(long.0.clone(), "cancelled".into())));
    assert!(states.contains(&(base.0.clone(), "finished".into())));
    assert!(store.read_record(&base.0).unwrap().is_some());
    // Exports and deletes are the engine's: a base run has nothing to export; an ended run is
    // deleted, and a second delete says the run is gone.
    engine.send(Command::Export {
        run: base.clone(),
        out: tmp.path().join("export"),
        rank: 8,
    });
    match next_event(&engine.events) {
        Event::ExportFailed { run, error } => {
            assert_eq!(run, base);
            assert!(error.contains("there is no merged adapter"), "{error}");
        }
        e => panic!("unexpected {e:?}"),
    }
    assert!(!tmp.path().join("export").exists());
    for (run, answer) in [
        (base.clone(), "deleted"),
        (base.clone(), "no run"),
        (broken.clone(), "deleted"),
    ] {
        engine.send(Command::Delete { run: run.clone() });
        match (next_event(&engine.events), answer) {
            (Event::Deleted { run: r }, "deleted") => assert_eq!(r, run),
            (Event::Log { run: None, line }, "no run") => {
                assert!(line.contains(&run.0), "{line}")
            }
            (e, _) => panic!("expected {answer} for {run}, got {e:?}"),
        }
    }
    assert!(store.run_dir(&base.0).is_err());
    engine.shutdown();
}

#[test]
fn a_detached_server_keeps_running_and_a_new_client_sees_live_events() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("rt/engine.sock");
    let runs = tmp.path().join("runs");
    let mut server = start_server(&sock, &runs);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // First client: submit, watch two steps, hang up (as a dropped SSH session would).
    let mut first = Client::connect(&sock).unwrap();
    assert_eq!(
        first.next_event(),
        Some(Event::Hello {
            runs_dir: runs.clone()
        }),
        "a server first says where it writes its runs"
    );
    first
        .send(&Command::Submit {
            spec: Box::new(spec(LONG)),
            ticket: 0,
        })
        .unwrap();
    let mut run = None;
    let mut steps = 0;
    while steps < 2 {
        match first.next_event().expect("server alive") {
            Event::Queued { run: r, .. } => run = Some(r),
            Event::Progress { .. } => steps += 1,
            _ => {}
        }
    }
    let run = run.unwrap();
    drop(first);
    // A new client reattaches and sees the same run still making progress.
    let mut second = Client::connect(&sock).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        if let Event::Progress { run: r, step, .. } = second.next_event().expect("server alive") {
            assert_eq!(r, run);
            seen.push(step);
        }
    }
    assert!(seen.windows(2).all(|w| w[1] > w[0]), "{seen:?}");
    assert!(
        seen[0] > 2,
        "progress went on while no client was attached: {seen:?}"
    );
    // The run is in the server's runs directory, live.
    let store = RunStore::open(&runs).unwrap();
    assert_eq!(store.summary(&run.0).unwrap().state.name(), "running");
    second.send(&Command::Cancel { run: run.clone() }).unwrap();
    let mut cancelled = false;
    while !cancelled {
        cancelled =
            second.next_event().expect("server alive") == Event::Cancelled { run: run.clone() };
    }

    // `run --attach` whose own default runs directory is elsewhere reads the record from the
    // server's.
    let spec_path = tmp.path().join("base.toml");
    std::fs::write(&spec_path, BASE_RUN).unwrap();
    let out = std::process::Command::cargo_bin("loracycle")
        .unwrap()
        .args(["run", "--attach", spec_path.to_str().unwrap()])
        .env("LORACYCLE_SOCKET", &sock)
        .env("LORACYCLE_RUNS_DIR", tmp.path().join("elsewhere"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record_line = stdout
        .lines()
        .find(|l| l.starts_with("  record: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        record_line.starts_with(&format!("  record: {}/", runs.display())),
        "{record_line}"
    );
    assert!(!tmp.path().join("elsewhere").exists());

    second.send(&Command::Shutdown).unwrap();
    while let Some(e) = second.next_event() {
        if e == Event::Stopped {
            break;
        }
    }
    let status = server.wait().unwrap();
    assert!(status.success());
    assert!(!sock.exists(), "the server removes its socket");
    assert_eq!(store.summary(&run.0).unwrap().state.name(), "cancelled");
}

#[test]
fn a_socket_others_could_reach_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("engine.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = match Client::connect(&sock) {
        Err(e) => e,
        Ok(_) => panic!("a 0666 socket must be refused"),
    };
    assert!(matches!(err, ServerError::Unsafe { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "refusing {}: its mode is 0666; the engine socket must belong to you with mode 0600 (remove it and restart `loracycle serve`)",
            sock.display()
        )
    );
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).unwrap();
    check_socket_file(&sock).unwrap();
    // The server side's rule: only the same user id.
    assert!(peer_allowed(1000, 1000));
    assert!(!peer_allowed(1001, 1000));
    assert!(!peer_allowed(0, 1000));
}

/// Waits for the next event that `pick` accepts, counting the run's Progress events it passes.
fn await_event<T>(
    next: &mut dyn FnMut() -> Event,
    long: &loracycle::engine::RunId,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> (T, u32) {
    let mut steps = 0;
    loop {
        let e = next();
        if let Some(t) = pick(&e) {
            return (t, steps);
        }
        match e {
            Event::Progress { run, .. } if run == *long => steps += 1,
            Event::Finished { run, .. } if run == *long => {
                panic!("the long run finished before the answer came")
            }
            Event::Failed { run, error } => panic!("{run} failed: {error}"),
            _ => {}
        }
    }
}

/// Submits a short run while a long one trains, then cancels it while still queued: both are
/// answered within a step of the long run, and the long run goes on.
fn submit_and_cancel_during_a_run(
    send: &mut dyn FnMut(Command),
    next: &mut dyn FnMut() -> Event,
    store: &Path,
) {
    send(Command::Submit {
        spec: Box::new(spec(LONG)),
        ticket: 1,
    });
    let (long, _) = await_event(
        next,
        &loracycle::engine::RunId(String::new()),
        |e| match e {
            Event::Queued { run, ticket: 1, .. } => Some(run.clone()),
            _ => None,
        },
    );
    // Two steps in, submit another run.
    let ((), _) = await_event(next, &long, |e| match e {
        Event::Progress { run, step: 2, .. } if *run == long => Some(()),
        _ => None,
    });
    send(Command::Submit {
        spec: Box::new(spec(BASE_RUN)),
        ticket: 2,
    });
    let (queued, steps) = await_event(next, &long, |e| match e {
        Event::Queued {
            run,
            ticket: 2,
            position,
            ..
        } => Some((run.clone(), *position)),
        _ => None,
    });
    assert!(steps <= 1, "queued only after {steps} more steps");
    assert_eq!(queued.1, 0, "first in the queue behind the run in flight");
    let queued = queued.0;
    // Its folder exists and says queued.
    let status = RunStore::read_status(&store.join(&queued.0)).expect("its status is written");
    assert_eq!(status.state.name(), "queued");
    // Cancel it while the long run goes on.
    send(Command::Cancel {
        run: queued.clone(),
    });
    let (cancelled, steps) = await_event(next, &long, |e| match e {
        Event::Cancelled { run } => Some(run.clone()),
        _ => None,
    });
    assert_eq!(cancelled, queued);
    assert!(steps <= 1, "cancelled only after {steps} more steps");
    let status = RunStore::read_status(&store.join(&queued.0)).unwrap();
    assert_eq!(status.state.name(), "cancelled");
    // The long run is still training: it makes another step, then is cancelled too.
    let ((), _) = await_event(next, &long, |e| match e {
        Event::Progress { run, .. } if *run == long => Some(()),
        _ => None,
    });
    send(Command::Cancel { run: long.clone() });
    let (c, _) = await_event(next, &long, |e| match e {
        Event::Cancelled { run } => Some(run.clone()),
        _ => None,
    });
    assert_eq!(c, long);
}

#[test]
fn a_run_submitted_or_cancelled_during_another_is_answered_within_a_step() {
    let tmp = tempfile::tempdir().unwrap();
    let store = RunStore::open(tmp.path()).unwrap();
    let engine = spawn(store.clone());
    let commands = engine.commands.clone();
    submit_and_cancel_during_a_run(
        &mut |c| commands.send(c).unwrap(),
        &mut || next_event(&engine.events),
        tmp.path(),
    );
}

#[test]
fn over_the_socket_a_run_submitted_during_another_is_answered_within_a_step() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("rt/engine.sock");
    let runs = tmp.path().join("runs");
    let mut server = start_server(&sock, &runs);
    let client = std::cell::RefCell::new(Client::connect(&sock).unwrap());
    submit_and_cancel_during_a_run(
        &mut |c| client.borrow_mut().send(&c).unwrap(),
        &mut || client.borrow_mut().next_event().expect("server alive"),
        &runs,
    );
    client.borrow_mut().send(&Command::Shutdown).unwrap();
    let _ = server.wait();
}
