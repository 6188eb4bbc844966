//! The real binary in a pseudo-terminal: it opens on the Pool screen of the lab, a run is set up
//! and started from the keyboard, its progress moves on Live, Compare opens, and quitting (with
//! the run still going, so the confirmation is asked) leaves the terminal as it was: the
//! alternate screen left and the cursor shown.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

struct Screen {
    parser: Arc<Mutex<vt100::Parser>>,
}

impl Screen {
    fn text(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    /// Waits until `pred` holds for the screen text; panics with the screen after `secs`.
    fn wait(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let t = self.text();
            if pred(&t) {
                return t;
            }
            if Instant::now() > end {
                panic!("timed out waiting for {what}; the screen:\n{t}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The step the Live gauge shows (`tuning coefficients N/M`), if any.
fn tuning_step(text: &str) -> Option<usize> {
    let at = text.find("tuning coefficients ")?;
    let rest = &text[at + "tuning coefficients ".len()..];
    rest.split('/').next()?.trim().parse().ok()
}

#[test]
fn start_a_lab_run_watch_it_compare_and_quit() {
    let tmp = tempfile::tempdir().unwrap();
    let pty = native_pty_system();
    let pair = pty
        .openpty(PtySize {
            rows: 30,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_loracycle"));
    cmd.arg("--runs-dir");
    cmd.arg(tmp.path().join("runs"));
    cmd.env("TERM", "xterm-256color");
    cmd.env("LORACYCLE_CACHE_DIR", tmp.path().join("cache"));
    cmd.env("LORACYCLE_CONFIG", tmp.path().join("no-config.toml"));
    cmd.env_remove("NO_COLOR");
    cmd.cwd(tmp.path());
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let parser = Arc::new(Mutex::new(vt100::Parser::new(
        30.try_into().unwrap(),
        100.try_into().unwrap(),
        0,
    )));
    let mut reader = pair.master.try_clone_reader().unwrap();
    let mut writer = pair.master.take_writer().unwrap();
    {
        let parser = parser.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                parser.lock().unwrap().process(&buf[..n]);
            }
        });
    }
    let screen = Screen {
        parser: parser.clone(),
    };
    let mut keys = |s: &str| {
        writer.write_all(s.as_bytes()).unwrap();
        writer.flush().unwrap();
        std::thread::sleep(Duration::from_millis(200));
    };

    // The Pool screen on the lab's 119 adapters.
    screen.wait("the pool", 60, |t| t.contains("pool · 119 of 119"));
    assert!(parser.lock().unwrap().screen().alternate_screen());

    // New run: top-k by exact match, the gradient recipe cut to 30 steps so the test is short,
    // with its random-init twin and the base model beside it.
    keys("2");
    screen.wait("the form", 10, |t| t.contains("[ start ]"));
    keys("jjjj"); // to steps
    keys("\r");
    keys("\x7f\x7f\x7f30\r");
    let field = |t: &str, name: &str, value: &str| {
        t.lines().any(|l| {
            let words: Vec<&str> = l
                .trim_matches(|c| c == '│' || c == ' ')
                .split_whitespace()
                .collect();
            words.ends_with(&[name, value])
        })
    };
    let t = screen.wait("steps = 30", 10, |t| field(t, "steps", "30"));
    assert!(field(&t, "method", "gradient"), "{t}");
    keys("s");

    // Live follows the run: the tuning step moves.
    let t = screen.wait("tuning to start", 240, |t| {
        tuning_step(t).is_some_and(|s| s > 0)
    });
    let first = tuning_step(&t).unwrap();
    let t = screen.wait("tuning to move on", 120, |t| {
        tuning_step(t).is_some_and(|s| s > first) || t.contains("evaluating on test")
    });
    assert!(t.contains("caesar-5 / gradient"), "{t}");

    // Compare opens (it lists finished runs of the task once there are some).
    keys("5");
    screen.wait("Compare", 10, |t| t.contains("compare"));

    // Quit while runs are going: asked first, then the terminal is restored.
    keys("q");
    screen.wait("the quit question", 10, |t| t.contains("quit anyway? y/n"));
    keys("y");
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            child.kill().unwrap();
            panic!("loracycle did not exit after quitting:\n{}", screen.text());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status:?}");
    std::thread::sleep(Duration::from_millis(300));
    let p = parser.lock().unwrap();
    assert!(
        !p.screen().alternate_screen(),
        "still on the alternate screen"
    );
    assert!(!p.screen().hide_cursor(), "the cursor is still hidden");
    // The run's folder is in the runs directory, with its curve up to the last step.
    let runs: Vec<_> = std::fs::read_dir(tmp.path().join("runs"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 3, "the run and its two controls");
}
