//! A study handed to a real single-node Slurm cluster: `tests/slurm/up.sh` starts munged,
//! slurmctld and slurmd in a temporary folder (stopped by pid when the test ends, pass or fail);
//! `loracycle study --emit slurm` writes three lab cells and the array script, one cell is broken
//! on purpose, `loracycle study --submit` hands the array to sbatch; while the array runs, the
//! TUI's Runs view (fed by the store watcher, as in the UI) shows a run with Slurm's RUNNING beside
//! it; at the end `--collect` gives the two finished cells' table and lists the broken one with
//! its error and the tail of its log, and the Runs view lists all three runs with their states.
//!
//! Needs Debian's slurmctld, slurmd and munge and root (slurmd starts jobs as their user). Where
//! they are missing the test says so and passes, unless LORACYCLE_SLURM_REQUIRED is set (CI sets it
//! once it has installed the packages), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use loracycle::run::store::RunStore;
use loracycle::ui::app::Screen;
use loracycle::ui::keymap::Keymap;
use loracycle::ui::theme::Theme;
use loracycle::ui::watch::Watcher;
use loracycle::ui::{App, Context};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl Cluster {
    fn up(dir: &Path) -> Cluster {
        let out = Command::new("bash")
            .arg("tests/slurm/up.sh")
            .arg(dir)
            .output()
            .expect("running tests/slurm/up.sh");
        let cluster = Cluster {
            dir: dir.to_path_buf(),
            conf: dir.join("slurm.conf"),
        };
        assert!(
            out.status.success(),
            "Slurm did not start:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("tests/slurm/down.sh")
            .arg(&self.dir)
            .status();
    }
}

/// Why this machine cannot run the test, if it cannot.
fn missing() -> Option<String> {
    for tool in ["munged", "slurmctld", "slurmd", "sbatch", "squeue"] {
        let found = std::env::var_os("PATH").is_some_and(|p| {
            std::env::split_paths(&p).any(|d| d.join(tool).is_file())
                || Path::new("/usr/sbin").join(tool).is_file()
        });
        if !found {
            return Some(format!(
                "{tool} is not installed (Debian: apt-get install slurmctld slurmd munge slurm-client)"
            ));
        }
    }
    if !rustix::process::geteuid().is_root() {
        return Some("slurmd must run as root to start jobs".into());
    }
    None
}

fn loracycle(args: &[&str], env: &[(&str, &Path)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loracycle"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn runs_screen(app: &App) -> String {
    let mut term = Terminal::new(TestBackend::new(150, 12)).unwrap();
    term.draw(|f| loracycle::ui::draw(f, app)).unwrap();
    let buf = term.backend().buffer();
    let mut s = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

fn app_on(store: &RunStore) -> App {
    let mut app = App::new(
        Theme::built_in("dark").unwrap(),
        Keymap::default(),
        Context {
            model: "lab".into(),
            source: loracycle::pool::PoolSource::Lab,
            device: "cpu".into(),
        },
        vec!["caesar-5".into()],
    );
    app.outbox.push(loracycle::ui::Request::ListRuns);
    loracycle::ui::worker::settle(&mut app, store);
    app.screen = Screen::Runs;
    app
}

#[test]
fn a_study_runs_as_a_slurm_array_and_is_collected() {
    if let Some(why) = missing() {
        if std::env::var_os("LORACYCLE_SLURM_REQUIRED").is_some() {
            panic!("LORACYCLE_SLURM_REQUIRED is set but {why}");
        }
        eprintln!("skipping the Slurm test: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::up(&tmp.path().join("slurm"));
    let shared = tmp.path().join("shared runs");
    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let env = [
        ("SLURM_CONF", cluster.conf.as_path()),
        ("LORACYCLE_CACHE_DIR", cache.as_path()),
    ];
    // The query the watcher and collect use read SLURM_CONF from this process's environment.
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("SLURM_CONF", &cluster.conf) };

    let shared_s = shared.to_str().unwrap();
    let (ok, out, err) = loracycle(
        &[
            "study",
            "--tasks",
            "caesar-5",
            "--arms",
            "base,LoraHub,gradient",
            "--scale",
            "0.1",
            "--device",
            "cpu",
            "--emit",
            "slurm",
            "--runs-dir",
            shared_s,
        ],
        &env,
    );
    assert!(ok, "{err}");
    let study = shared.join("study");
    assert_eq!(
        out.lines().next().unwrap(),
        format!(
            "3 cells: {} (1 tasks × 1 seed(s) × 3 arms)",
            study.join("cells").display()
        )
    );
    let script = std::fs::read_to_string(study.join("study.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-2\n"), "{script}");
    // Cell 1 (LoraHub) names a task the lab does not have: its run fails.
    let cell1 = study.join("cells/0001.toml");
    let spec = std::fs::read_to_string(&cell1).unwrap();
    assert!(spec.contains("lab = \"caesar-5\""), "{spec}");
    std::fs::write(
        &cell1,
        spec.replace("lab = \"caesar-5\"", "lab = \"no-such-task\""),
    )
    .unwrap();

    let (ok, out, err) = loracycle(&["study", "--submit", "--runs-dir", shared_s], &env);
    assert!(ok, "{err}");
    let job: String = out
        .strip_prefix("submitted: job array ")
        .unwrap_or_else(|| panic!("{out}"))
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(study.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["jobs"][0]["job_id"], job.as_str());

    // Follow the store as the TUI does until Slurm says all three tasks ended.
    let store = RunStore::open(&shared).unwrap();
    let mut watcher = Watcher::new(store.clone());
    let mut app = app_on(&store);
    let mut seen_running = None;
    let t0 = Instant::now();
    loop {
        app.on_reply(loracycle::ui::Reply::Store(watcher.poll()));
        let screen = runs_screen(&app);
        if seen_running.is_none() && screen.contains("RUNNING") {
            seen_running = Some(screen);
        }
        let states = loracycle::slurm::query(&[job.as_str()]);
        let ended = (0..3).all(|t| {
            states
                .get(&format!("{job}_{t}"))
                .is_some_and(|s| loracycle::slurm::state_ended(s))
        });
        if ended {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "the array did not end in 10 minutes: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let running = seen_running.expect("a run was seen running under Slurm");
    assert!(
        running.contains(&format!("slurm {job}_")),
        "the Runs view names the array task:\n{running}"
    );

    // Each run keeps its array task.
    let mut by_arm = std::collections::BTreeMap::new();
    for s in store.list() {
        let j = s.slurm.clone().expect("a run started by Slurm has its job");
        assert_eq!(j.array_job_id.as_deref(), Some(job.as_str()));
        by_arm.insert(s.label.clone(), (s.state.name(), j.array_task_id));
    }
    assert_eq!(
        by_arm.into_iter().collect::<Vec<_>>(),
        vec![
            (
                "caesar-5 / LoraHub / seed 0".to_string(),
                ("failed", Some(1))
            ),
            (
                "caesar-5 / base / seed 0".to_string(),
                ("finished", Some(0))
            ),
            (
                "caesar-5 / gradient / seed 0".to_string(),
                ("finished", Some(2))
            ),
        ]
    );

    let (ok, out, err) = loracycle(&["study", "--collect", "--runs-dir", shared_s], &env);
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "| base | 0.000 [0.000, 0.000] | 0.000 [0.000, 0.000] | – | 10.271 [10.271, 10.271] |"
        ),
        "{out}"
    );
    assert!(out.contains("| LoraHub | – | – | – | – |"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let failed = lines
        .iter()
        .position(|l| {
            l.starts_with("failed: caesar-5 / LoraHub / seed 0 (cell 1, slurm FAILED) run ")
        })
        .unwrap_or_else(|| panic!("{out}"));
    let no_task = "task: the lab has no held-out task \"no-such-task\"";
    assert!(
        lines[failed + 1].starts_with(&format!("  error: {no_task}")),
        "{out}"
    );
    assert_eq!(
        lines[failed + 2],
        format!(
            "  log {}:",
            study.join(format!("logs/cell-0001.{job}.log")).display()
        )
    );
    assert!(
        lines[failed + 3].starts_with("  | loracycle: cell 0001 on "),
        "{out}"
    );
    assert!(
        lines[failed + 4].starts_with(&format!("  | error: {no_task}")),
        "{out}"
    );
    assert_eq!(
        lines.last().unwrap(),
        &format!(
            "2 of 3 cells finished; written: {}/study.{{md,csv,json}}",
            study.display()
        )
    );
    let csv = std::fs::read_to_string(study.join("study.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");

    // The Runs view of a fresh UI on the shared store lists the three runs and their Slurm end.
    let mut app = app_on(&store);
    app.on_reply(loracycle::ui::Reply::Store(
        Watcher::new(store.clone()).poll(),
    ));
    let screen = runs_screen(&app);
    for (label, state, task) in [
        ("caesar-5 / LoraHub / seed 0", "failed", "1 FAILED"),
        ("caesar-5 / base / seed 0", "finished", "0 COMPLETED"),
        ("caesar-5 / gradient / seed 0", "finished", "2 COMPLETED"),
    ] {
        let row = screen
            .lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("no row for {label}:\n{screen}"));
        assert!(row.contains(state), "{row}");
        assert!(row.contains(&format!("slurm {job}_{task}")), "{row}");
    }
    drop(cluster);
}
