//! `loracycle serve` under hostile or careless clients: one that never reads is dropped while
//! the others go on, bad and over-long lines get an error reply and the connection reads on, a
//! socket folder others can write to is refused, shutdown lets the run in flight finish, and
//! concurrent `run --attach` clients with one spec each follow their own run. Clients that hang
//! up leave nothing behind, one over the cap is told the server is full, `serve --stop` stops it,
//! and the runs still queued at a shutdown run after a restart.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;
use std::time::Instant;

use assert_cmd::cargo::CommandCargoExt;

use loracycle::engine::server::{Client, ServerError, check_socket_dir};
use loracycle::engine::{Command, Event, RunId};
use loracycle::run::RunSpec;
use loracycle::run::store::RunStore;

/// Hang guard only: on a loaded machine a read may wait long, but never this long.
const HANG: Duration = Duration::from_secs(300);

const BASE_RUN: &str = "name = \"base\"\n[task]\nlab = \"which-is-smaller\"\n[method]\nkind = \"base\"\n[eval]\nbootstrap = 1\n";

/// A gradient run with steps enough that a command sent at its first step arrives while it runs
/// (the test stage alone follows the last step).
const SHORT_GRADIENT: &str = r#"
name = "short"
[task]
lab = "caesar-5"
train_examples = 16
[selection]
strategy = "random"
k = 2
[method]
kind = "gradient"
steps = 20
batch_size = 2
eval_every = 5
[eval]
bootstrap = 1
"#;

struct Server {
    child: Child,
    sock: PathBuf,
    log: PathBuf,
}

impl Server {
    fn start(tmp: &Path, runs: &Path) -> Server {
        let sock = tmp.join("rt/engine.sock");
        let log = tmp.join("serve.log");
        let child = std::process::Command::cargo_bin("loracycle")
            .unwrap()
            .args(["serve", "--runs-dir", runs.to_str().unwrap()])
            .env("LORACYCLE_SOCKET", &sock)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let t = std::time::Instant::now();
        while !sock.exists() {
            assert!(t.elapsed() < HANG, "the server never made its socket");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, sock, log }
    }

    fn client(&self) -> Client {
        let mut c = Client::connect(&self.sock).unwrap();
        c.set_read_timeout(Some(HANG)).unwrap();
        assert!(matches!(c.next_event(), Some(Event::Hello { .. })));
        c
    }

    /// Shuts the server down through `c` and waits for it to exit.
    fn stop(mut self, c: &mut Client) -> Vec<Event> {
        c.send(&Command::Shutdown).unwrap();
        let mut seen = Vec::new();
        loop {
            let e = c.next_event().expect("Stopped before the connection ends");
            if e == Event::Stopped {
                break;
            }
            seen.push(e);
        }
        assert!(self.child.wait().unwrap().success());
        assert!(!self.sock.exists(), "the server removes its socket");
        seen
    }
}

fn no_run(id: &str) -> Event {
    Event::Log {
        run: None,
        line: format!("no run {id:?} in the runs directory"),
    }
}

#[test]
fn a_client_that_never_reads_is_dropped_and_the_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &tmp.path().join("runs"));
    // Connects first (client 1), then never reads a byte.
    let mut lazy = UnixStream::connect(&server.sock).unwrap();
    let mut active = server.client();
    // Far more answers than the lazy client's queue and socket buffer hold, asked for in
    // batches so that the active client is never far behind.
    let delete = Command::Delete {
        run: RunId("no-such-run".into()),
    };
    for _ in 0..100 {
        for _ in 0..200 {
            active.send(&delete).unwrap();
        }
        for _ in 0..200 {
            assert_eq!(active.next_event(), Some(no_run("no-such-run")));
        }
    }
    // The lazy client was cut off: what it gets is its hello, some answers, then the end.
    lazy.set_read_timeout(Some(HANG)).unwrap();
    let mut got = String::new();
    lazy.read_to_string(&mut got).expect("the server closes it");
    let lines: Vec<&str> = got.lines().collect();
    assert!(lines[0].starts_with("{\"event\":\"hello\""), "{}", lines[0]);
    assert!(lines.len() < 20_001, "{} lines", lines.len());
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        log.contains(&format!(
            "loracycle serve: disconnected client 1 (pid {}): it left 1024 events unread",
            std::process::id()
        )),
        "{log}"
    );
    assert_eq!(server.stop(&mut active), vec![]);
}

#[test]
fn bad_lines_get_an_error_and_the_connection_reads_on() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &tmp.path().join("runs"));
    let mut c = server.client();
    c.send_raw(b"\xff\xfe garbage\n").unwrap();
    assert_eq!(
        c.next_event(),
        Some(Event::Log {
            run: None,
            line: "ignored a line that is not a command: expected value at line 1 column 1".into()
        })
    );
    // Two mebibytes without a newline, then one: skipped, not kept.
    c.send_raw(&vec![b'x'; 2 << 20]).unwrap();
    c.send_raw(b"\n").unwrap();
    assert_eq!(
        c.next_event(),
        Some(Event::Log {
            run: None,
            line: "ignored a line of 2097152 bytes: a command line is at most 1048576 bytes".into()
        })
    );
    // A submission the server cannot read is rejected under its ticket.
    let bad = r#"{"command":"submit","ticket":9,"spec":{"name":"broken","task":17}}"#;
    let why = serde_json::from_str::<Command>(bad).unwrap_err();
    c.send_raw(format!("{bad}\n").as_bytes()).unwrap();
    assert_eq!(
        c.next_event(),
        Some(Event::Rejected {
            ticket: 9,
            label: "broken".into(),
            error: format!("the server cannot read this submission: {why}"),
        })
    );
    // Later valid lines are answered.
    c.send(&Command::Delete {
        run: RunId("after-garbage".into()),
    })
    .unwrap();
    assert_eq!(c.next_event(), Some(no_run("after-garbage")));
    assert_eq!(server.stop(&mut c), vec![]);
}

#[test]
fn shutdown_lets_the_run_in_flight_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let server = Server::start(tmp.path(), &runs);
    let mut c = server.client();
    c.send(&Command::Submit {
        spec: Box::new(RunSpec::from_toml(SHORT_GRADIENT, Path::new("short.toml")).unwrap()),
        ticket: 1,
    })
    .unwrap();
    let mut run = None;
    loop {
        match c.next_event().expect("server alive") {
            Event::Queued { run: r, ticket, .. } => {
                assert_eq!(ticket, 1);
                run = Some(r);
            }
            Event::Progress { .. } => break,
            Event::Failed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    let run = run.expect("queued before it progressed");
    c.send(&Command::Shutdown).unwrap();
    // Too late for another: it would never start.
    c.send(&Command::Submit {
        spec: Box::new(RunSpec::from_toml(BASE_RUN, Path::new("base.toml")).unwrap()),
        ticket: 2,
    })
    .unwrap();
    let mut ends = Vec::new();
    loop {
        let e = c.next_event().expect("Stopped before the connection ends");
        match &e {
            Event::Stopped => break,
            Event::Finished { run: r, .. } => ends.push(format!("finished {r}")),
            Event::Cancelled { run: r } => ends.push(format!("cancelled {r}")),
            Event::Rejected { ticket, error, .. } => {
                ends.push(format!("rejected {ticket}: {error}"))
            }
            _ => {}
        }
    }
    ends.sort();
    assert_eq!(
        ends,
        vec![
            format!("finished {run}"),
            "rejected 2: the engine is stopping after the run in flight; submit again once it is restarted".to_string(),
        ]
    );
    let mut server = server;
    assert!(server.child.wait().unwrap().success());
    let store = RunStore::open(&runs).unwrap();
    assert_eq!(store.summary(&run.0).unwrap().state.name(), "finished");
    assert!(store.read_record(&run.0).unwrap().is_some());
    assert_eq!(store.ids(), vec![run.0.clone()]);
}

#[test]
fn a_socket_folder_others_can_write_to_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = std::process::Command::cargo_bin("loracycle")
        .unwrap()
        .args([
            "serve",
            "--runs-dir",
            tmp.path().join("runs").to_str().unwrap(),
        ])
        .env("LORACYCLE_SOCKET", open.join("engine.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: refusing the socket folder {}: its mode is 0777; it must belong to you with mode 0700 (remove it, or `chmod 700` it if it is yours, or set LORACYCLE_SOCKET to a path in a folder of your own)\n",
            open.display()
        )
    );
    assert!(!open.join("engine.sock").exists());
    // Another user's folder, whatever its mode (this test may run as root, who owns all it makes).
    let err = check_socket_dir(&open, 1001, 0o40777, 1000).unwrap_err();
    assert!(matches!(err, ServerError::UnsafeDir { .. }));
    assert!(
        err.to_string().starts_with(&format!(
            "refusing the socket folder {}: it belongs to user 1001, not to you (1000), with mode 0777; ",
            open.display()
        )),
        "{err}"
    );
    assert!(check_socket_dir(&open, 1000, 0o40700, 1000).is_ok());
    assert!(check_socket_dir(&open, 1000, 0o40750, 1000).is_err());
}

/// A run's id from `run --attach`'s output: the one it was queued as (stderr) and the one whose
/// record it printed (stdout).
fn ids_of(out: &std::process::Output, runs: &Path) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let queued = stderr
        .lines()
        .find_map(|l| l.strip_prefix("queued on the server as "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let record = stdout
        .lines()
        .find_map(|l| l.strip_prefix("  record: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let printed = record
        .strip_prefix(&format!("{}/", runs.display()))
        .and_then(|r| r.strip_suffix("/record.json"))
        .unwrap_or_else(|| panic!("{record}"));
    (queued.to_string(), printed.to_string())
}

#[test]
fn concurrent_attaches_of_one_spec_each_follow_their_own_run() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let server = Server::start(tmp.path(), &runs);
    std::fs::write(tmp.path().join("base.toml"), BASE_RUN).unwrap();
    // Six clients, one spec, one label; each names the server's runs directory relative to its
    // own working directory, which is the same folder.
    let clients: Vec<Child> = (0..6)
        .map(|_| {
            std::process::Command::cargo_bin("loracycle")
                .unwrap()
                .args(["run", "--attach", "base.toml", "--runs-dir", "runs"])
                .current_dir(tmp.path())
                .env("LORACYCLE_SOCKET", &server.sock)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids: Vec<String> = clients
        .into_iter()
        .map(|c| {
            let (queued, printed) = ids_of(&c.wait_with_output().unwrap(), &runs);
            assert_eq!(queued, printed, "a client printed another run's record");
            queued
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "{ids:?}");
    let store = RunStore::open(&runs).unwrap();
    assert_eq!(store.ids(), ids);
    for id in &ids {
        assert_eq!(store.summary(id).unwrap().state.name(), "finished");
    }

    // From another directory, the same relative --runs-dir names another folder: refused.
    let sub = tmp.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let out = std::process::Command::cargo_bin("loracycle")
        .unwrap()
        .args(["run", "--attach", "../base.toml", "--runs-dir", "runs"])
        .current_dir(&sub)
        .env("LORACYCLE_SOCKET", &server.sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let asked = sub.join("runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: --runs-dir runs is {}, but the server writes its runs to {}; leave --runs-dir out, or restart the server with `loracycle serve --runs-dir {}`\n",
            asked.display(),
            runs.display(),
            asked.display()
        )
    );
    assert!(!asked.exists());
    assert_eq!(store.ids(), ids, "nothing was queued");
    let mut c = server.client();
    assert_eq!(server.stop(&mut c), vec![]);
}

/// Threads and open descriptors of process `pid`.
fn threads_and_fds(pid: u32) -> (usize, usize) {
    let count = |d: &str| {
        std::fs::read_dir(format!("/proc/{pid}/{d}"))
            .unwrap()
            .count()
    };
    (count("task"), count("fd"))
}

/// A client greeted by the server on `sock`, once there is room for one (clients that have
/// hung up leave a moment later).
fn greeted(sock: &Path) -> Client {
    let t = Instant::now();
    loop {
        let mut c = Client::connect(sock).unwrap();
        c.set_read_timeout(Some(HANG)).unwrap();
        match c.next_event() {
            Some(Event::Hello { .. }) => return c,
            e => assert!(t.elapsed() < Duration::from_secs(5), "still refused: {e:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to `limit` for `pid`'s threads and descriptors to be back to `baseline`.
fn settles_to(pid: u32, baseline: (usize, usize), limit: Duration) -> (usize, usize) {
    let t = Instant::now();
    loop {
        let now = threads_and_fds(pid);
        if (now.0 <= baseline.0 && now.1 <= baseline.1) || t.elapsed() > limit {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn clients_that_hang_up_leave_no_threads_or_descriptors_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &tmp.path().join("runs"));
    let mut c = server.client();
    let pid = server.child.id();
    let baseline = threads_and_fds(pid);
    for _ in 0..200 {
        drop(UnixStream::connect(&server.sock).unwrap());
    }
    // The server accepts in order: once a later client is greeted, all 200 have been accepted.
    drop(greeted(&server.sock));
    let after = settles_to(pid, baseline, Duration::from_secs(3));
    assert!(
        after.0 <= baseline.0 && after.1 <= baseline.1,
        "threads and descriptors {after:?}, {baseline:?} before 200 clients came and went"
    );
    // The one that stayed is served as before.
    c.send(&Command::Delete {
        run: RunId("still-here".into()),
    })
    .unwrap();
    assert_eq!(c.next_event(), Some(no_run("still-here")));
    assert_eq!(server.stop(&mut c), vec![]);
}

#[test]
fn a_client_over_the_cap_is_told_the_server_is_full() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &tmp.path().join("runs"));
    let mut c = server.client();
    let others: Vec<UnixStream> = (1..64)
        .map(|_| UnixStream::connect(&server.sock).unwrap())
        .collect();
    // The 65th hears why and is closed.
    let mut late = UnixStream::connect(&server.sock).unwrap();
    late.set_read_timeout(Some(HANG)).unwrap();
    let mut got = String::new();
    late.read_to_string(&mut got).expect("the server closes it");
    assert_eq!(
        got,
        "{\"event\":\"log\",\"line\":\"refused: the server is full (64 clients); try again once one has disconnected\"}\n"
    );
    // Once the others have gone, there is room again.
    drop(others);
    let mut next = greeted(&server.sock);
    next.send(&Command::Delete {
        run: RunId("room".into()),
    })
    .unwrap();
    assert_eq!(next.next_event(), Some(no_run("room")));
    // Answers go to every client.
    assert_eq!(c.next_event(), Some(no_run("room")));
    assert_eq!(server.stop(&mut c), vec![]);
}

/// `loracycle serve --stop` on socket `sock`.
fn serve_stop(sock: &Path) -> std::process::Output {
    std::process::Command::cargo_bin("loracycle")
        .unwrap()
        .args(["serve", "--stop"])
        .env("LORACYCLE_SOCKET", sock)
        .output()
        .unwrap()
}

#[test]
fn serve_stop_stops_the_server_and_fails_without_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &tmp.path().join("runs"));
    let out = serve_stop(&server.sock);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "loracycle serve on {}: stopped (no queued runs)\n",
            server.sock.display()
        )
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(out.status.success());
    assert!(server.child.wait().unwrap().success());
    assert!(!server.sock.exists(), "the server removes its socket");
    // Nothing listens any more.
    let out = serve_stop(&server.sock);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: no loracycle server on {} (start one with `loracycle serve`)\n",
            server.sock.display()
        )
    );
}

#[test]
fn runs_queued_at_a_shutdown_run_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let server = Server::start(tmp.path(), &runs);
    let mut c = server.client();
    let spec = |text, name| Box::new(RunSpec::from_toml(text, Path::new(name)).unwrap());
    c.send(&Command::Submit {
        spec: spec(SHORT_GRADIENT, "short.toml"),
        ticket: 1,
    })
    .unwrap();
    for ticket in 2..=4 {
        c.send(&Command::Submit {
            spec: spec(BASE_RUN, "base.toml"),
            ticket,
        })
        .unwrap();
    }
    // Stopped while the first runs: the other three are still queued.
    let mut queued = std::collections::BTreeMap::new();
    loop {
        match c.next_event().expect("server alive") {
            Event::Queued { run, ticket, .. } => {
                queued.insert(ticket, run);
            }
            Event::Progress { .. } => break,
            Event::Failed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    let stop = std::process::Command::cargo_bin("loracycle")
        .unwrap()
        .args(["serve", "--stop"])
        .env("LORACYCLE_SOCKET", &server.sock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut kept = None;
    let mut finished = Vec::new();
    loop {
        match c.next_event().expect("Stopped before the connection ends") {
            Event::Stopped => break,
            Event::Queued { run, ticket, .. } => {
                queued.insert(ticket, run);
            }
            Event::Kept { runs } => kept = Some(runs),
            Event::Finished { run, .. } => finished.push(run),
            _ => {}
        }
    }
    let out = stop.wait_with_output().unwrap();
    assert!(out.status.success());
    let first = queued[&1].clone();
    let rest: Vec<RunId> = (2..=4).map(|t| queued[&t].clone()).collect();
    assert_eq!(finished, vec![first.clone()]);
    assert_eq!(kept.as_ref(), Some(&rest));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "loracycle serve on {}: waiting for run {first}, in flight, to finish\n",
            server.sock.display()
        )
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "loracycle serve on {}: stopped (3 queued runs kept for the next start)\n",
            server.sock.display()
        )
    );
    let mut server = server;
    assert!(server.child.wait().unwrap().success());
    let list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join("serve-queue.json")).unwrap())
            .unwrap();
    assert_eq!(list, serde_json::json!({ "runs": rest }));

    // The next server on the same runs directory runs them, in their order, before anything new.
    let server = Server::start(tmp.path(), &runs);
    let store = RunStore::open(&runs).unwrap();
    let t = Instant::now();
    while !rest
        .iter()
        .all(|r| store.summary(&r.0).unwrap().state.name() == "finished")
    {
        assert!(t.elapsed() < HANG, "the kept runs never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    let started: Vec<String> = rest
        .iter()
        .map(|r| store.read_record(&r.0).unwrap().unwrap().started)
        .collect();
    assert!(started.is_sorted(), "{started:?}");
    assert!(!runs.join("serve-queue.json").exists());
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        log.contains(&format!(
            "loracycle engine listening on {} (runs in {}; 3 queued runs taken up from the last shutdown)",
            server.sock.display(),
            runs.display()
        )),
        "{log}"
    );
    let mut ids = rest.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
    ids.push(first.0);
    ids.sort();
    assert_eq!(store.ids(), ids);
    let mut c = server.client();
    assert_eq!(server.stop(&mut c), vec![]);
}
