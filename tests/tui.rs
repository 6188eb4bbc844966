//! The terminal UI without a terminal: every screen rendered on ratatui's `TestBackend` at 80x24
//! and 160x48 and compared with insta snapshots, and `update` tests that drive `App` with keys
//! and engine events and check the state and the commands it sends.
//!
//! The runs on Compare are three real run records of the lab (caesar-5: the gradient recipe, its
//! random-init twin and the base model) kept under tests/fixtures/ui/runs.

use std::path::Path;

use loracycle::engine::{Command, Event, RunId};
use loracycle::pool::PoolSource;
use loracycle::pool::entry::{EntryStatus, PoolEntry};
use loracycle::pool::rules::Rule;
use loracycle::run::spec::{MethodSpec, RunSpec};
use loracycle::run::store::{RunState, RunStore};
use loracycle::ui::Request;
use loracycle::ui::app::{Confirm, Screen};
use loracycle::ui::keymap::Keymap;
use loracycle::ui::theme::Theme;
use loracycle::ui::worker;
use loracycle::ui::{App, Context, draw};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

fn entry(i: usize) -> PoolEntry {
    let families = ["caesar", "rotate", "table", "next", "add-mod"];
    let id = format!("{}-{}", families[i % 5], i / 5 + 1);
    PoolEntry {
        id: id.clone(),
        source: "lab".into(),
        revision: None,
        rank: Some([4, 8, 16][i % 3]),
        alpha: Some([8.0, 16.0, 16.0][i % 3]),
        rslora: false,
        target_modules: if i.is_multiple_of(2) {
            [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ]
            .map(String::from)
            .to_vec()
        } else {
            vec!["q_proj".into(), "v_proj".into()]
        },
        size_bytes: Some(30_000 + 1000 * i as u64),
        base_model: Some("loracycle/lab-base".into()),
        downloads: None,
        likes: None,
        last_modified: None,
        tags: Vec::new(),
        card: Some(format!(
            "# {id} A LoRA of the loracycle lab, trained on one task."
        )),
        status: EntryStatus::Usable,
        norm: Some(10.0 + i as f64 / 4.0),
        path: None,
        verdicts: Vec::new(),
    }
}

fn pool(n: usize) -> Vec<PoolEntry> {
    let mut v: Vec<PoolEntry> = (0..n).map(entry).collect();
    v.push(PoolEntry {
        id: "acme/llama31-sql-lora".into(),
        source: "hub".into(),
        rank: Some(16),
        alpha: Some(32.0),
        status: EntryStatus::NotDownloaded,
        norm: None,
        size_bytes: None,
        downloads: Some(1520),
        likes: Some(12),
        card: None,
        ..entry(0)
    });
    v.push(PoolEntry {
        id: "bob/lora-bin".into(),
        source: "hub".into(),
        status: EntryStatus::Rejected {
            rule: Rule::Safetensors,
            reason: "only a pickle checkpoint (adapter_model.bin); pickles are never loaded".into(),
        },
        norm: None,
        card: None,
        ..entry(1)
    });
    v
}

fn app() -> App {
    let mut app = App::new(
        Theme::built_in("dark").unwrap(),
        Keymap::default(),
        Context {
            model: "lab".into(),
            source: PoolSource::Lab,
            device: "cpu".into(),
        },
        vec!["caesar-5".into(), "table-m".into()],
    );
    app.set_pool(pool(40));
    app
}

/// A copy of the fixture run store in a temporary folder.
fn fixture_store() -> (tempfile::TempDir, RunStore) {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ui/runs");
    for run in std::fs::read_dir(&src).unwrap() {
        let run = run.unwrap().path();
        let to = tmp.path().join(run.file_name().unwrap());
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(&run).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    let store = RunStore::open(tmp.path()).unwrap();
    (tmp, store)
}

/// Does the app's outbox as the worker would, on this thread (engine commands stay).
fn settle(app: &mut App, store: &RunStore) {
    worker::settle(app, store);
}

/// Opens the app on a store: asks for its history and takes the answer.
fn open(app: &mut App, store: &RunStore) {
    app.outbox.push(Request::ListRuns);
    settle(app, store);
}

/// What a test keeps alive beside its app: nothing, or the folder of its store, whose
/// requests are then settled after the keys.
trait Keep {
    fn settle(&self, app: &mut App);
}

impl Keep for () {
    fn settle(&self, _: &mut App) {}
}

impl Keep for tempfile::TempDir {
    fn settle(&self, app: &mut App) {
        settle(app, &RunStore::open(self.path()).unwrap());
    }
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn press(app: &mut App, keys: &str) {
    for c in keys.chars() {
        app.on_key(if c == '\n' {
            code(KeyCode::Enter)
        } else {
            key(c)
        });
    }
}

fn render(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, app)).unwrap();
    t.backend().to_string()
}

/// A run in flight, as the engine's events describe it: 60 of 100 steps, coefficients at each
/// validation check.
fn live_app() -> App {
    let mut app = app();
    let run = RunId("20261129T120000Z-caesar-5-gradient-0001".into());
    let twin = RunId("20261129T120000Z-caesar-5-gradient-random-init-0002".into());
    let ev = |e: Event, app: &mut App| app.on_engine(e);
    ev(
        Event::Queued {
            run: run.clone(),
            label: "caesar-5 / gradient".into(),
            position: 0,
            ticket: 0,
            parent: None,
            settings: Default::default(),
        },
        &mut app,
    );
    ev(
        Event::Queued {
            run: twin.clone(),
            label: "caesar-5 / gradient / random-init".into(),
            position: 1,
            ticket: 0,
            parent: None,
            settings: Default::default(),
        },
        &mut app,
    );
    ev(
        Event::Started {
            run: run.clone(),
            label: "caesar-5 / gradient".into(),
        },
        &mut app,
    );
    let columns: Vec<String> = [
        "caesar-4", "caesar-6", "rotate-1", "next-5", "table-k", "copy-2",
    ]
    .map(String::from)
    .to_vec();
    let groups: Vec<String> = (0..4)
        .flat_map(|l| ["q_proj", "v_proj"].map(|m| format!("layer {l} {m}")))
        .collect();
    ev(
        Event::Layout {
            run: run.clone(),
            groups: groups.clone(),
            columns: columns.clone(),
        },
        &mut app,
    );
    ev(
        Event::Stage {
            run: run.clone(),
            name: "tuning coefficients".into(),
            total: 100,
        },
        &mut app,
    );
    for step in 1..=60 {
        let s = step as f64;
        ev(
            Event::Advance {
                run: run.clone(),
                done: step,
            },
            &mut app,
        );
        ev(
            Event::Progress {
                run: run.clone(),
                step,
                train_loss: 2.0 / (1.0 + s / 8.0),
                val_loss: (step.is_multiple_of(10)).then(|| 2.2 / (1.0 + s / 9.0)),
                throughput: 3.1,
            },
            &mut app,
        );
        if step.is_multiple_of(10) {
            let values: Vec<Vec<f32>> = (0..groups.len())
                .map(|g| {
                    (0..columns.len())
                        .map(|j| {
                            (s as f32 / 60.0) * (0.9 - 0.15 * j as f32) * (1.0 + 0.1 * g as f32)
                        })
                        .collect()
                })
                .collect();
            ev(
                Event::Coefficients {
                    run: run.clone(),
                    step,
                    values,
                },
                &mut app,
            );
        }
    }
    app.live.run = 0;
    app
}

fn finished_app() -> (tempfile::TempDir, App) {
    let (tmp, store) = fixture_store();
    let mut app = app();
    open(&mut app, &store);
    (tmp, app)
}

macro_rules! screens {
    ($name:ident, $make:expr, $keys:expr) => {
        #[test]
        fn $name() {
            #[allow(unused_mut)]
            let (keep, mut app) = $make;
            press(&mut app, $keys);
            Keep::settle(&keep, &mut app);
            insta::assert_snapshot!(concat!(stringify!($name), "_80x24"), render(&app, 80, 24));
            insta::assert_snapshot!(concat!(stringify!($name), "_160x48"), render(&app, 160, 48));
        }
    };
}

screens!(pool_screen, ((), app()), "jj ");
screens!(pool_search, ((), app()), "/rot\n");
screens!(new_run_screen, ((), app()), "2");
screens!(live_screen, ((), live_app()), "3");
screens!(runs_screen, finished_app(), "4");
screens!(compare_screen, finished_app(), "5");
screens!(help_screen, ((), app()), "?");

#[test]
fn live_heat_map_spans_the_width_at_200x60() {
    let mut app = live_app();
    press(&mut app, "3");
    let screen = render(&app, 200, 60);
    insta::assert_snapshot!("live_screen_200x60", screen);
    // The heat map's rows reach the right border, with each adapter's Σ|f(c)| at the end.
    let row = screen
        .lines()
        .find(|l| l.starts_with("\"│caesar-4 "))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(
        row.trim_end_matches('"')
            .trim_end_matches('│')
            .ends_with("9.720"),
        "{row}"
    );
    assert!(
        screen.contains("loss · ─ train · • val · best val"),
        "{screen}"
    );
}

#[test]
fn compare_groups_each_run_with_its_controls_at_200x60() {
    let (keep, mut app) = finished_app();
    press(&mut app, "5");
    Keep::settle(&keep, &mut app);
    let screen = render(&app, 200, 60);
    insta::assert_snapshot!("compare_screen_200x60", screen);
    // The gradient run leads; its twin and base sit under it; the diff is the run vs its twin.
    let lines: Vec<&str> = screen.lines().collect();
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap();
    assert!(at("│gradient ") < at("│  ↳ random-init") && at("│  ↳ random-init") < at("│  ↳ base"));
    assert!(
        screen.contains("examples where A = gradient and B = gradient · random-init differ"),
        "{screen}"
    );
}

#[test]
fn help_scrolls_no_further_than_its_last_line() {
    let mut app = app();
    press(&mut app, "?");
    let full = render(&app, 80, 24);
    press(&mut app, &"j".repeat(300));
    let end = render(&app, 80, 24);
    // The pane stays full: its last page, not an empty box.
    let filled = |s: &str| {
        s.lines()
            .filter(|l| {
                l.starts_with("\"│")
                    && !l
                        .trim_matches(|c| c == '"' || c == '│' || c == ' ')
                        .is_empty()
            })
            .count()
    };
    assert_eq!(filled(&end), filled(&full), "{end}");
    assert_ne!(end, full, "it scrolled");
}
screens!(empty_live, ((), app()), "3");

#[test]
fn pool_search_filter_sort_and_selection() {
    let mut app = app();
    assert_eq!(app.pool.visible.len(), 42);
    press(&mut app, "/caesar\n");
    assert_eq!(app.pool.visible.len(), 8);
    assert!(
        app.pool
            .visible
            .iter()
            .all(|&i| app.pool.entries[i].id.starts_with("caesar"))
    );
    app.on_key(code(KeyCode::Esc));
    assert_eq!(app.pool.visible.len(), 42);
    press(&mut app, "f");
    assert_eq!(app.pool.status.name(), "usable");
    assert_eq!(app.pool.visible.len(), 40);
    press(&mut app, "fff");
    press(&mut app, "sg");
    assert_eq!(app.pool.sort.name(), "rank");
    assert_eq!(app.pool.current().unwrap().rank, Some(4));
    press(&mut app, "G");
    assert_eq!(app.pool.current().unwrap().rank, Some(16));
    press(&mut app, "g  ");
    assert_eq!(app.pool.selected.len(), 2);
    press(&mut app, "n");
    assert_eq!(app.screen, Screen::NewRun);
    assert!(matches!(
        app.form.selection,
        loracycle::select::Selection::Manual { .. }
    ));
    assert_eq!(app.form.manual.len(), 2);
}

#[test]
fn a_search_with_an_operator_is_a_filter_expression() {
    let mut app = app();
    press(&mut app, "/rank<=4,modules=all\n");
    let ids: Vec<&str> = app
        .pool
        .visible
        .iter()
        .map(|&i| app.pool.entries[i].id.as_str())
        .collect();
    assert_eq!(ids.len(), 7, "{ids:?}");
    assert!(app.pool.visible.iter().all(|&i| {
        let e = &app.pool.entries[i];
        e.rank == Some(4) && e.target_modules.len() == 7
    }));
    press(&mut app, "/");
    app.on_key(code(KeyCode::Backspace));
    press(&mut app, "x\n");
    assert_eq!(
        app.pool.search_error.as_deref(),
        Some(
            "filter condition \"modules=alx\": unknown module \"alx\" (use q, k, v, o, gate, up, down or all)"
        )
    );
    assert!(app.pool.visible.is_empty());
}

#[test]
fn rejected_entries_cannot_be_selected() {
    let mut app = app();
    press(&mut app, "/bob\n ");
    assert!(app.pool.selected.is_empty());
    assert_eq!(
        app.message.as_deref(),
        Some("bob/lora-bin is not usable; it cannot be selected")
    );
}

#[test]
fn starting_from_the_form_queues_the_run_and_its_controls() {
    let mut app = app();
    press(&mut app, "2s");
    // One submission: the run, carrying its controls for the engine to queue (or reuse).
    let specs: Vec<&RunSpec> = app
        .outbox
        .iter()
        .map(|r| match r {
            Request::Engine(Command::Submit { spec, .. }) => &**spec,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].label(), "caesar-5 / gradient");
    let queued: Vec<String> = specs[0]
        .queued_controls()
        .into_iter()
        .map(|(k, s)| format!("{}: {}", k.name(), s.label()))
        .collect();
    assert_eq!(
        queued,
        [
            "random-init: caesar-5 / gradient / random-init",
            "base: caesar-5 / base"
        ]
    );
    assert_eq!(app.screen, Screen::Live);
    assert_eq!(app.message.as_deref(), Some("run queued with 2 controls"));
}

#[test]
fn the_form_edits_text_and_refuses_bad_values() {
    let mut app = app();
    press(&mut app, "2jj");
    app.on_key(code(KeyCode::Enter));
    for _ in 0..2 {
        app.on_key(code(KeyCode::Backspace));
    }
    // Digits go to the field while editing, not to the screen keys.
    press(&mut app, "500");
    app.on_key(code(KeyCode::Enter));
    assert_eq!(app.form.k, "500");
    assert_eq!(app.screen, Screen::NewRun);
    press(&mut app, "s");
    assert!(app.outbox.is_empty());
    assert_eq!(
        app.message.as_deref(),
        Some("cannot start: k: the pool has 40 usable adapters")
    );
    // ← on the method field goes to base, which needs no pool and no k.
    press(&mut app, "jh");
    assert_eq!(app.form.method_name(), "base");
    press(&mut app, "s");
    assert_eq!(app.outbox.len(), 1);
}

#[test]
fn live_follows_engine_events() {
    let app = live_app();
    let r = &app.runs[0];
    assert_eq!(r.state, RunState::Running);
    assert_eq!(r.curve.len(), 60);
    assert_eq!(r.coefficients.len(), 6);
    assert_eq!(r.stage.as_ref().unwrap().done, 60);
    assert_eq!(r.log.back().unwrap(), "step 60 train 0.2353 val 0.2870");
    assert_eq!(app.running().unwrap().label, "caesar-5 / gradient");
}

#[test]
fn cancel_twin_and_quit_confirmation() {
    let mut app = live_app();
    press(&mut app, "3c");
    assert_eq!(
        app.outbox,
        [Request::Engine(Command::Cancel {
            run: app.runs[0].id.clone()
        })]
    );
    // A long message keeps its words; the engine summary before it gives way.
    app.message = Some("run queued with 2 controls: caesar-5 / gradient / random-init".into());
    let screen = render(&app, 80, 24);
    // (TestBackend quotes each line.)
    let last = screen.lines().last().unwrap();
    assert_eq!(
        last,
        "\" running caesar… │ run queued with 2 controls: caesar-5 / gradient / random-init\""
    );
    press(&mut app, "q");
    assert_eq!(app.confirm, Some(Confirm::Quit));
    // The question takes the whole status line: nothing of the line under it shows.
    let screen = render(&app, 120, 24);
    assert_eq!(
        screen.lines().last().unwrap(),
        format!(
            "\"{:<120}\"",
            "  runs are going and stop when loracycle quits: quit anyway? y/n"
        )
    );
    press(&mut app, "n");
    assert!(!app.quit);
    press(&mut app, "qy");
    assert!(app.quit);
}

#[test]
fn runs_retry_twin_delete_and_compare_marks() {
    let (tmp, mut app) = finished_app();
    assert_eq!(app.runs.len(), 3);
    press(&mut app, "4g");
    let first = app.runs[0].label.clone();
    assert_eq!(first, "caesar-5 / base");
    press(&mut app, "R");
    // The base run's record is not loaded: its spec file is read first.
    assert!(matches!(&app.outbox[..], [Request::ReadSpec { .. }]));
    tmp.settle(&mut app);
    match &app.outbox[..] {
        [Request::Engine(Command::Submit { spec, .. })] => {
            assert_eq!(spec.method, MethodSpec::Base)
        }
        other => panic!("unexpected {other:?}"),
    }
    app.outbox.clear();
    // The base run has no pool: no random-init twin.
    app.on_key(code(KeyCode::Enter));
    tmp.settle(&mut app);
    assert_eq!(app.screen, Screen::Live);
    // Nor steps or coefficients, and Live says so rather than that they are coming.
    let live = render(&app, 120, 36);
    assert!(
        live.contains("no steps: this method trains nothing"),
        "{live}"
    );
    assert!(live.contains("this method has no coefficients"), "{live}");
    press(&mut app, "r");
    assert_eq!(
        app.message.as_deref(),
        Some("this run uses no pool; it has no random-init twin")
    );
    press(&mut app, "lr");
    tmp.settle(&mut app);
    match &app.outbox[..] {
        [Request::Engine(Command::Submit { spec, .. })] => {
            assert_eq!(spec.label(), "caesar-5 / gradient / random-init")
        }
        other => panic!("unexpected {other:?}"),
    }
    // Compare shows the three finished runs of the task; marks narrow it.
    press(&mut app, "5");
    assert_eq!(app.compared().len(), 3);
    press(&mut app, "4g  ");
    // The gradient run leads, its base (a control queued with it) under it.
    assert_eq!(app.compared(), vec![1, 0]);
    // Delete asks, then the engine removes the folder; the row goes when it says so.
    press(&mut app, "gD");
    assert!(matches!(app.confirm, Some(Confirm::Delete(_))));
    app.outbox.clear();
    press(&mut app, "y");
    let id = app.runs[0].id.clone();
    assert_eq!(
        app.outbox,
        [Request::Engine(Command::Delete { run: id.clone() })]
    );
    assert_eq!(app.runs.len(), 3);
    let engine = loracycle::engine::spawn(RunStore::open(tmp.path()).unwrap());
    for r in app.outbox.drain(..) {
        if let Request::Engine(c) = r {
            engine.send(c);
        }
    }
    let answer = engine
        .events
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    assert_eq!(answer, Event::Deleted { run: id.clone() });
    app.on_engine(answer);
    assert_eq!(app.runs.len(), 2);
    assert_eq!(app.message, Some(format!("deleted {id}")));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
    engine.shutdown();
}

#[test]
fn a_rejected_submission_says_why_and_opens_no_run() {
    let mut app = app();
    press(&mut app, "2");
    app.start();
    let tickets: Vec<u64> = app
        .outbox
        .iter()
        .filter_map(|r| match r {
            Request::Engine(Command::Submit { ticket, .. }) => Some(*ticket),
            _ => None,
        })
        .collect();
    assert!(!tickets.is_empty() && !tickets.contains(&0), "{tickets:?}");
    app.on_engine(Event::Rejected {
        ticket: tickets[0],
        label: "caesar-5 / gradient".into(),
        error: "cannot create the run folder: disk full".into(),
    });
    assert!(app.runs.is_empty());
    assert_eq!(
        app.message.as_deref(),
        Some("cannot queue caesar-5 / gradient: cannot create the run folder: disk full")
    );
    // Live follows its own submission by its ticket; a run of the same label that someone else
    // queued first is not it.
    app.outbox.clear();
    app.start();
    let mine = match &app.outbox[0] {
        Request::Engine(Command::Submit { ticket, .. }) => *ticket,
        other => panic!("unexpected {other:?}"),
    };
    assert!(!tickets.contains(&mine));
    for (run, ticket) in [("someone-else", 0), ("mine", mine)] {
        app.on_engine(Event::Queued {
            run: RunId(run.into()),
            label: "caesar-5 / gradient".into(),
            position: 0,
            ticket,
            parent: None,
            settings: Default::default(),
        });
    }
    assert_eq!(app.live_run().map(|r| r.id.0.as_str()), Some("mine"));
}

#[test]
fn compare_pairs_examples_of_one_task_only() {
    let (tmp, store) = fixture_store();
    // The random-init run's record, moved to another task with its own test prompts.
    let dir = tmp
        .path()
        .join("20261129T035014Z-caesar-5-gradient-random-init-107e");
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("record.json")).unwrap()).unwrap();
    record["task"]["name"] = "rotate-1".into();
    for e in record["examples"].as_array_mut().unwrap() {
        e["prompt"] = format!("rot {}", e["prompt"].as_str().unwrap()).into();
    }
    std::fs::write(dir.join("record.json"), record.to_string()).unwrap();
    let mut app = app();
    open(&mut app, &store);
    let at = |app: &App, label: &str| app.runs.iter().position(|r| r.label == label).unwrap();
    let (base, other) = (
        at(&app, "caesar-5 / base"),
        at(&app, "caesar-5 / gradient / random-init"),
    );
    for i in [base, other] {
        app.runs.set_marked(i, true);
        app.ensure_loaded(i);
    }
    settle(&mut app, &store);
    press(&mut app, "5");
    assert_eq!(app.diff_pair(), None);
    let screen = render(&app, 120, 30);
    assert!(
        screen.contains("these runs answer different test examples (other tasks or splits);"),
        "{screen}"
    );
    // With a run of the same task marked too, only that pair is diffed.
    let gradient = at(&app, "caesar-5 / gradient");
    app.runs.set_marked(gradient, true);
    app.ensure_loaded(gradient);
    settle(&mut app, &store);
    for pair in 0..3 {
        app.compare.pair = pair;
        let (a, b) = app.diff_pair().unwrap();
        assert_eq!(
            (a.min(b), a.max(b)),
            (base.min(gradient), base.max(gradient))
        );
    }
}

#[test]
fn compare_exports_markdown_and_csv() {
    let (tmp, mut app) = finished_app();
    let rows = app.compared().to_vec();
    for &i in &rows {
        app.ensure_loaded(i);
    }
    tmp.settle(&mut app);
    press(&mut app, "5");
    let (md, csv) = loracycle::ui::screen::compare::table_text(app.compare.table());
    insta::assert_snapshot!("compare_table_md", md);
    assert_eq!(csv.lines().count(), 4);
    assert!(csv.starts_with("id,label,task,role,group,exact_match,ci_low,ci_high,loss,"));
    // `e` writes them into the runs directory (not the working directory) and says where.
    press(&mut app, "e");
    tmp.settle(&mut app);
    let dir = tmp.path().join("compare");
    assert_eq!(
        app.message.as_deref(),
        Some(
            format!(
                "wrote {} and {}",
                dir.join("compare.md").display(),
                dir.join("compare.csv").display()
            )
            .as_str()
        )
    );
    assert_eq!(std::fs::read_to_string(dir.join("compare.md")).unwrap(), md);
    // A spec file named without a folder is saved under the runs directory's specs/.
    press(&mut app, "2w");
    tmp.settle(&mut app);
    let saved = tmp.path().join("specs/run.toml");
    assert_eq!(
        app.message.as_deref(),
        Some(format!("saved {}", saved.display()).as_str())
    );
    assert!(saved.is_file());
}

/// A run of a study's Slurm array, written into the store by another host: spec, a status with
/// its stage and job, and the first points of its curve.
fn remote_run(store: &RunStore, done: usize, steps: &[usize]) -> std::path::PathBuf {
    let dir = store
        .root
        .join("20261129T120500Z-caesar-5-gradient-seed-0-5e1f0a2b");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("spec.toml"),
        "name = \"caesar-5 / gradient / seed 0\"\n[task]\nlab = \"caesar-5\"\n",
    )
    .unwrap();
    let status = loracycle::run::store::StatusFile {
        id: "20261129T120500Z-caesar-5-gradient-seed-0-5e1f0a2b".into(),
        label: "caesar-5 / gradient / seed 0".into(),
        state: RunState::Running,
        pid: 4242,
        pid_start: None,
        host: "gpu-node-7".into(),
        slurm: Some(loracycle::slurm::SlurmJob {
            job_id: "44".into(),
            array_job_id: Some("41".into()),
            array_task_id: Some(3),
        }),
        submitted: "2026-11-29T12:05:00Z".into(),
        updated: loracycle::run::record::now_rfc3339(),
        stage: Some(loracycle::run::store::StageStatus {
            name: "tuning coefficients".into(),
            done,
            total: 100,
        }),
        error: None,
    };
    std::fs::write(
        dir.join("status.json"),
        serde_json::to_string(&status).unwrap(),
    )
    .unwrap();
    let curve: String = steps
        .iter()
        .map(|s| {
            format!(
                "{{\"step\":{s},\"train_loss\":{},\"val_loss\":{}}}\n",
                10.0 / *s as f64,
                11.0 / *s as f64
            )
        })
        .collect();
    std::fs::write(dir.join("curves.jsonl"), curve).unwrap();
    dir
}

#[test]
fn runs_written_by_other_hosts_are_followed() {
    let (_tmp, store) = fixture_store();
    remote_run(&store, 40, &[10, 20]);
    let slurm = std::sync::Arc::new(std::sync::Mutex::new("RUNNING"));
    let s2 = slurm.clone();
    let mut watcher = loracycle::ui::watch::Watcher::with_query(
        store.clone(),
        Box::new(move |ids| {
            assert_eq!(ids, ["41"]);
            [("41_3".to_string(), s2.lock().unwrap().to_string())]
                .into_iter()
                .collect()
        }),
    )
    .slurm_every(std::time::Duration::ZERO);
    let mut app = app();
    open(&mut app, &store);
    let remote_steps = |ups: &[loracycle::ui::watch::RunUpdate]| {
        ups.iter()
            .find(|u| u.summary.label == "caesar-5 / gradient / seed 0")
            .map(|u| u.summary.steps)
    };
    let ups = watcher.poll();
    assert_eq!(remote_steps(&ups), Some(2), "steps: the curve's lines");
    app.on_reply(loracycle::ui::Reply::Store(ups));
    let i = app
        .runs
        .iter()
        .position(|r| r.label == "caesar-5 / gradient / seed 0")
        .unwrap();
    assert_eq!(i, 3, "listed after the fixture runs, by submission time");
    let r = &app.runs[i];
    assert!(!r.local && r.remote());
    assert_eq!(r.place(), "gpu-node-7 · slurm 41_3 RUNNING");
    assert_eq!(r.curve.iter().map(|p| p.step).collect::<Vec<_>>(), [10, 20]);
    press(&mut app, "4");
    app.runs_screen.cursor = i;
    let updated = app.runs[i].updated.clone();
    insta::assert_snapshot!(
        "runs_remote_120x12",
        render(&app, 120, 12).replace(&updated, "<heartbeat>   ")
    );
    app.live.run = i;
    press(&mut app, "3");
    let live = render(&app, 120, 30);
    assert!(
        live.contains("running  on gpu-node-7 · slurm 41_3 RUNNING"),
        "{live}"
    );
    assert!(live.contains("tuning coefficients 40/100"), "{live}");
    // An older run's folder has no event stream: its coefficients come with its record.
    assert!(
        live.contains("coefficients appear at the first validation check"),
        "{live}"
    );
    // The status line counts it as running elsewhere, and quitting needs no confirmation.
    assert!(
        live.contains(" idle · 1 running elsewhere · pool 42 │"),
        "{live}"
    );

    // The curve and the stage grow as the other host writes them.
    remote_run(&store, 60, &[10, 20, 30]);
    let ups = watcher.poll();
    assert_eq!(remote_steps(&ups), Some(3));
    app.on_reply(loracycle::ui::Reply::Store(ups));
    let r = &app.runs[i];
    assert_eq!(
        r.curve.iter().map(|p| p.step).collect::<Vec<_>>(),
        [10, 20, 30]
    );
    assert_eq!(r.stage.as_ref().map(|s| s.done), Some(60));
    assert!(watcher.poll().is_empty(), "nothing changed since");

    // Cancel asks Slurm.
    press(&mut app, "4");
    press(&mut app, "c");
    assert_eq!(app.outbox.last(), Some(&Request::Scancel("41_3".into())));
    assert_eq!(
        app.message.as_deref(),
        Some("scancel 41_3 (caesar-5 / gradient / seed 0)")
    );

    // Slurm kills it at its time limit before it can say so: interrupted, with Slurm's reason.
    *slurm.lock().unwrap() = "TIMEOUT";
    app.on_reply(loracycle::ui::Reply::Store(watcher.poll()));
    let r = &app.runs[i];
    assert_eq!(r.state, RunState::Interrupted);
    assert_eq!(r.place(), "gpu-node-7 · slurm 41_3 TIMEOUT");
    assert_eq!(r.log.back().map(String::as_str), Some("interrupted"));
    app.confirm = None;
    press(&mut app, "q");
    assert!(app.quit);
}

#[test]
fn a_run_of_another_process_outside_slurm_says_where_to_stop_it() {
    let (_tmp, store) = fixture_store();
    let dir = remote_run(&store, 40, &[10]);
    let path = dir.join("status.json");
    let mut status: loracycle::run::store::StatusFile =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    status.slurm = None;
    std::fs::write(&path, serde_json::to_string(&status).unwrap()).unwrap();
    let mut watcher = loracycle::ui::watch::Watcher::with_query(
        store.clone(),
        Box::new(|_| std::collections::HashMap::new()),
    );
    let mut app = app();
    open(&mut app, &store);
    app.on_reply(loracycle::ui::Reply::Store(watcher.poll()));
    let i = app
        .runs
        .iter()
        .position(|r| r.label == "caesar-5 / gradient / seed 0")
        .unwrap();
    // What the store said is kept with the run: cancelling reads no file on the UI's thread.
    std::fs::remove_file(&path).unwrap();
    press(&mut app, "4");
    app.runs_screen.cursor = i;
    app.outbox.clear();
    press(&mut app, "c");
    assert!(app.outbox.is_empty(), "{:?}", app.outbox);
    assert_eq!(
        app.message.as_deref(),
        Some(
            "caesar-5 / gradient / seed 0 runs in another process (pid 4242 on gpu-node-7); \
             stop it there"
        )
    );
}

#[test]
fn a_finished_run_gets_its_record_from_a_helper() {
    let (_tmp, store) = fixture_store();
    let mut app = app();
    open(&mut app, &store);
    let id = RunId("20261129T035014Z-caesar-5-gradient-b7cf".into());
    app.on_engine(Event::Started {
        run: id.clone(),
        label: "caesar-5 / gradient".into(),
    });
    app.outbox.clear();
    app.on_engine(Event::Finished {
        run: id.clone(),
        exact_match: 0.79,
        loss: 0.1169,
    });
    // The UI thread does not read the record; it asks for it.
    assert_eq!(app.outbox, [Request::LoadRun(id.clone())]);
    let i = app.runs.iter().position(|r| r.id == id).unwrap();
    assert!(app.runs[i].record.is_none());
    settle(&mut app, &store);
    assert!(app.outbox.is_empty());
    let r = &app.runs[i];
    assert_eq!(r.record.as_ref().map(|r| r.examples.len()), Some(40));
    assert_eq!(
        r.coefficients.len(),
        r.record.as_ref().unwrap().coefficient_curve.len()
    );
}

#[test]
fn the_form_saves_and_loads_its_spec_off_the_ui_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let store = RunStore::open(&tmp.path().join("runs")).unwrap();
    let mut app = app();
    press(&mut app, "2");
    let path = tmp.path().join("run.toml");
    app.form.spec_file = path.display().to_string();
    let k = app.form.k.clone();
    press(&mut app, "w");
    assert!(matches!(&app.outbox[..], [Request::SaveSpec { .. }]));
    assert!(!path.exists(), "the UI thread wrote the file");
    settle(&mut app, &store);
    assert_eq!(app.message, Some(format!("saved {}", path.display())));
    assert!(path.is_file());
    app.form.k = "7".into();
    press(&mut app, "o");
    assert_eq!(app.form.k, "7");
    settle(&mut app, &store);
    assert_eq!(app.form.k, k);
    assert_eq!(app.message, Some(format!("loaded {}", path.display())));
}

#[test]
fn the_run_list_counts_changes_that_compare_reads() {
    let mut app = live_app();
    let v = app.runs.version();
    let run = app.runs[0].id.clone();
    // Progress moves curves, not what Compare is made of.
    app.on_engine(Event::Progress {
        run: run.clone(),
        step: 61,
        train_loss: 0.3,
        val_loss: None,
        throughput: 3.0,
    });
    assert_eq!(app.runs.version(), v);
    app.on_engine(Event::Finished {
        run: run.clone(),
        exact_match: 0.8,
        loss: 0.1,
    });
    assert!(app.runs.version() > v);
    assert_eq!(app.outbox.last(), Some(&Request::LoadRun(run)));
    let v = app.runs.version();
    app.runs.set_marked(0, true);
    assert!(app.runs.version() > v);
}

#[test]
fn compare_derives_its_rows_once_per_change_and_never_while_drawing() {
    let (tmp, mut app) = finished_app();
    press(&mut app, "5");
    tmp.settle(&mut app);
    assert_eq!(app.compared().len(), 3);
    let n = app.compare.derivations();
    for _ in 0..3 {
        render(&app, 120, 36);
    }
    // Keys that change neither the runs nor the Runs cursor derive nothing either.
    press(&mut app, "jjp");
    assert_eq!(app.compare.derivations(), n);
    // A mark does.
    press(&mut app, "4 ");
    assert_eq!(app.compare.derivations(), n + 1);
    assert_eq!(app.compared().len(), 1);
}

#[test]
fn a_task_folder_is_checked_by_the_worker_never_while_drawing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = RunStore::open(&tmp.path().join("runs")).unwrap();
    let task = tmp.path().join("mytask");
    std::fs::create_dir_all(&task).unwrap();
    std::fs::write(task.join("train.jsonl"), "").unwrap();
    let mut app = app();
    // Type the folder into the task field (the first field).
    press(&mut app, "2\n");
    for _ in 0..app.form.task.len() {
        app.on_key(code(KeyCode::Backspace));
    }
    press(&mut app, &format!("{}\n", task.display()));
    assert_eq!(app.outbox, vec![Request::CheckTask(task.clone())]);
    let screen = render(&app, 100, 30);
    assert!(
        screen.contains("looking for the folder's task files"),
        "{screen}"
    );
    settle(&mut app, &store);
    press(&mut app, "s");
    assert_eq!(
        app.message.as_deref(),
        Some(
            "cannot start: task: not a lab or imported task, nor a folder with validation.jsonl, test.jsonl"
        )
    );
    // A refused start looks again, so files made since are found.
    assert_eq!(app.outbox, vec![Request::CheckTask(task.clone())]);
    std::fs::write(task.join("validation.jsonl"), "").unwrap();
    std::fs::write(task.join("test.jsonl"), "").unwrap();
    settle(&mut app, &store);
    press(&mut app, "s");
    assert_eq!(app.message.as_deref(), Some("run queued with 2 controls"));
}

/// Types `text` into the line being edited, after `back` backspaces.
fn type_line(app: &mut App, back: usize, text: &str) {
    for _ in 0..back {
        app.on_key(code(KeyCode::Backspace));
    }
    press(app, text);
}

#[test]
fn runs_are_filtered_renamed_and_shown_by_the_settings_they_differ_in() {
    let (tmp, mut app) = finished_app();
    press(&mut app, "4");
    // The settings that differ, as columns: what varies among runs that have it first.
    let screen = render(&app, 160, 12);
    let header = screen.lines().nth(2).unwrap();
    assert!(
        header.contains("loss    random_init kind     activation"),
        "{screen}"
    );
    // A filter by a setting's last key part keeps the runs that match, as it is typed.
    press(&mut app, "/kind=gradient");
    assert_eq!(app.runs_screen.visible(&app.runs), [1, 2]);
    press(&mut app, "\n");
    let screen = render(&app, 120, 12);
    insta::assert_snapshot!("runs_filtered_120x12", screen);
    assert!(screen.contains("runs · 2 of 3"), "{screen}");
    // Conditions combine; a key no run has keeps none.
    press(&mut app, "/");
    type_line(&mut app, 0, ",random_init=pooled\n");
    assert_eq!(app.runs_screen.visible(&app.runs), [2]);
    assert_eq!(app.runs_screen.cursor, 2);
    // esc clears the filter.
    app.on_key(code(KeyCode::Esc));
    assert_eq!(app.runs_screen.visible(&app.runs).len(), 3);
    // n names the run under the cursor: the label shown everywhere, kept beside its files.
    let id = app.runs[2].id.clone();
    press(&mut app, "n");
    let old = app.runs[2].label.chars().count();
    type_line(&mut app, old, "twin of the k=30 run\n");
    tmp.settle(&mut app);
    assert_eq!(app.runs[2].label, "twin of the k=30 run");
    assert_eq!(
        app.message.as_deref(),
        Some(format!("{id} is shown as \"twin of the k=30 run\"").as_str())
    );
    let store = RunStore::open(tmp.path()).unwrap();
    assert_eq!(store.summary(&id.0).unwrap().label, "twin of the k=30 run");
    let record = store.read_record(&id.0).unwrap().unwrap();
    assert_eq!(record.label, "twin of the k=30 run");
    // Its record stays as written, and so does its parent link.
    let on_disk = std::fs::read_to_string(tmp.path().join(&id.0).join("record.json")).unwrap();
    assert!(on_disk.contains("\"label\": \"caesar-5 / gradient / random-init\""));
    assert!(record.spec.parent.is_some());
    // Compare still groups it with its run, by its new name.
    press(&mut app, "5");
    tmp.settle(&mut app);
    assert_eq!(app.compared().len(), 3);
    // An empty name gives the label back.
    press(&mut app, "4n");
    type_line(&mut app, 40, "\n");
    tmp.settle(&mut app);
    assert_eq!(app.runs[2].label, "caesar-5 / gradient / random-init");
}

#[test]
fn live_lists_the_chosen_adapters_with_their_screening_scores() {
    let (tmp, mut app) = finished_app();
    press(&mut app, "4gj\n");
    tmp.settle(&mut app);
    assert_eq!(app.screen, Screen::Live);
    assert_eq!(app.live_run().unwrap().chosen.len(), 30);
    let screen = render(&app, 200, 60);
    // Every chosen adapter with its rank and screening scores; 15 rows in view, pgdn for more.
    assert!(
        screen.contains("adapters 1–15 of 30 (pgup/pgdn) · by Σ|f(c)|"),
        "{screen}"
    );
    // Sorted by the screening score, the best-screened adapter leads.
    press(&mut app, "s");
    assert_eq!(
        app.message.as_deref(),
        Some("adapters sorted by screening score")
    );
    let screen = render(&app, 200, 60);
    let first = screen
        .lines()
        .find(|l| l.starts_with("\"│") && l.contains("  0.0"))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(first.starts_with("\"│next-5-v2 "), "{first}");
    assert!(first.contains(" 16  0.01  4.771 "), "{first}");
    // Modules apart: one column per layer and module.
    press(&mut app, "m");
    assert_eq!(app.message.as_deref(), Some("heat map: modules apart"));
    app.on_key(code(KeyCode::PageDown));
    let screen = render(&app, 200, 60);
    insta::assert_snapshot!("live_chosen_sorted_modules_apart_200x60", screen);
    assert!(
        screen.contains("adapters 6–20 of 30 (pgup/pgdn) · by screening score"),
        "{screen}"
    );
    assert!(screen.contains("· modules apart "), "{screen}");
    // Then each module alone, then together again.
    press(&mut app, "m");
    assert_eq!(app.message.as_deref(), Some("heat map: q_proj alone"));
}

#[test]
fn the_pool_shows_the_screening_scores_of_a_run() {
    let mut app = app();
    let scores = ["caesar-1", "rotate-1", "table-1"]
        .iter()
        .zip([(0.25, 2.5), (0.75, 0.5), (0.25, 1.5)])
        .map(|(n, (em, loss))| loracycle::run::record::ScreeningScore {
            name: n.to_string(),
            exact_match: em,
            loss,
        })
        .collect();
    app.on_engine(Event::Screened {
        run: RunId("r".into()),
        task: "caesar-5".into(),
        scores,
    });
    // The sort cycles on to the score once there are scores: the best first, then by loss.
    press(&mut app, "sssssg");
    assert_eq!(app.pool.sort_label(), "score on caesar-5");
    let first: Vec<&str> = app.pool.visible[..3]
        .iter()
        .map(|&i| app.pool.entries[i].id.as_str())
        .collect();
    assert_eq!(first, ["rotate-1", "table-1", "caesar-1"]);
    let screen = render(&app, 160, 24);
    insta::assert_snapshot!("pool_scores_160x24", screen);
    assert!(screen.contains("scores on caesar-5"), "{screen}");
    assert!(
        screen.contains("#1 of 3 on caesar-5: exact match 0.750, loss 0.5000"),
        "{screen}"
    );
    press(&mut app, "s");
    assert_eq!(app.pool.sort_label(), "name");
}

#[test]
fn control_characters_from_runs_and_adapters_never_reach_the_terminal() {
    let mut app = app();
    let evil = "evil\u{1b}]0;PWNED\u{7}\u{1b}[2J";
    app.on_engine(Event::Queued {
        run: RunId("20261201T000000Z-evil-0001".into()),
        label: evil.into(),
        position: 0,
        ticket: 0,
        parent: None,
        settings: Default::default(),
    });
    for screen in ['1', '3', '4'] {
        press(&mut app, &screen.to_string());
        let mut t = Terminal::new(TestBackend::new(120, 30)).unwrap();
        t.draw(|f| draw(f, &app)).unwrap();
        let buf = t.backend().buffer();
        for cell in buf.content() {
            assert!(
                !cell.symbol().chars().any(char::is_control),
                "screen {screen}: {:?} in {}",
                cell.symbol(),
                t.backend()
            );
        }
        if screen == '4' {
            // ratatui drops zero-width characters; the draw pass replaces any that get through.
            assert!(
                t.backend().to_string().contains("evil]0;PWNED[2J"),
                "{}",
                t.backend()
            );
        }
    }
}

#[test]
fn a_run_of_another_process_shows_its_coefficients_while_it_trains() {
    let (_tmp, store) = fixture_store();
    let dir = remote_run(&store, 40, &[10, 20]);
    let id = dir.file_name().unwrap().to_str().unwrap().to_string();
    let run = || RunId(id.clone());
    // What the other process's RunFolder appends as it works: the same lines a serve client
    // reads from the socket.
    let lines: String = [
        Event::Layout {
            run: run(),
            groups: vec!["L0.q_proj".into(), "L0.v_proj".into()],
            columns: vec!["caesar-1".into(), "rotate-2".into()],
        },
        Event::Coefficients {
            run: run(),
            step: 10,
            values: vec![vec![0.1, 0.2], vec![0.3, 0.4]],
        },
        Event::Coefficients {
            run: run(),
            step: 20,
            values: vec![vec![0.5, -0.25], vec![0.75, 0.125]],
        },
        Event::Progress {
            run: run(),
            step: 20,
            train_loss: 0.5,
            val_loss: Some(0.55),
            throughput: 2.0,
        },
    ]
    .iter()
    .map(|e| serde_json::to_string(e).unwrap() + "\n")
    .collect();
    std::fs::write(dir.join("events.jsonl"), lines).unwrap();
    let mut watcher =
        loracycle::ui::watch::Watcher::with_query(store.clone(), Box::new(|_| Default::default()));
    let mut app = app();
    open(&mut app, &store);
    app.on_reply(loracycle::ui::Reply::Store(watcher.poll()));
    let i = app.runs.iter().position(|r| r.id == run()).unwrap();
    let r = &app.runs[i];
    assert!(!r.local && r.state.is_live());
    assert_eq!(r.columns, ["caesar-1", "rotate-2"]);
    assert_eq!(
        r.coefficients,
        [
            (10, vec![vec![0.1, 0.2], vec![0.3, 0.4]]),
            (20, vec![vec![0.5, -0.25], vec![0.75, 0.125]])
        ]
    );
    assert_eq!(r.curve.iter().map(|p| p.step).collect::<Vec<_>>(), [20]);
    assert_eq!(r.throughput, Some(2.0));
    app.live.run = i;
    press(&mut app, "3");
    let live = render(&app, 160, 48);
    assert!(live.contains("coefficients · top"), "{live}");
    assert!(!live.contains("coefficients appear at"), "{live}");

    // `runs show --json` of the running run carries its newest coefficients and their step.
    let out = assert_cmd::Command::cargo_bin("loracycle")
        .unwrap()
        .args(["runs", "show", &id, "--json", "--runs-dir"])
        .arg(&store.root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["coefficients"],
        serde_json::json!({
            "step": 20,
            "groups": ["L0.q_proj", "L0.v_proj"],
            "columns": ["caesar-1", "rotate-2"],
            "values": [[0.5, -0.25], [0.75, 0.125]],
        })
    );
}
