//! The terminal UI. `App` holds the state and turns keys and engine events into changes;
//! `render` draws it; `run` owns the terminal and the loop: drain every pending input and engine
//! event, then draw once (at most ~60 frames a second), so input is never behind the engine.
//!
//! Work that takes time runs elsewhere: tensor work on the engine's thread, pool listing,
//! downloads and exports on helper threads that answer through a channel.

pub mod app;
pub mod config;
pub mod form;
pub mod keymap;
pub mod render;
pub mod theme;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event as TermEvent};

pub use app::{App, Context, Request, Screen};
pub use render::draw;

use crate::engine::Command;
use crate::pool::PoolSource;
use crate::pool::cache::{HfHome, MetaCache};
use crate::pool::entry::{ListOptions, PoolEntry, base_of, list_entries, offline};
use crate::pool::hub::Hub;
use crate::run::store::RunStore;

/// What the UI is opened on.
#[derive(Debug, Clone)]
pub struct UiOptions {
    /// The base model as a spec names it: `lab`, a folder or a Hub id.
    pub model: String,
    pub source: PoolSource,
    pub runs_dir: PathBuf,
}

/// Messages from helper threads.
enum Helper {
    PoolProgress(String, usize, usize),
    Pool(Result<Vec<PoolEntry>, String>),
    Download {
        id: String,
        line: String,
        entry: Option<Box<PoolEntry>>,
    },
    Message(String),
    Store(Vec<watch::RunUpdate>),
    Record(crate::engine::RunId, Box<crate::run::RunRecord>),
}

/// The lab's held-out tasks (then the rest of its tasks), offered on the New run form.
pub fn lab_tasks() -> Vec<String> {
    let Ok(dir) = crate::lab::dir().map(|d| d.join("tasks")) else {
        return Vec::new();
    };
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("test.jsonl").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn base_id(opts: &UiOptions) -> (Option<String>, Option<PathBuf>) {
    match opts.model.as_str() {
        "lab" => (None, None),
        m if std::path::Path::new(m).join("config.json").is_file() => {
            (None, Some(PathBuf::from(m)))
        }
        m => (Some(m.to_string()), None),
    }
}

fn spawn_pool_listing(opts: &UiOptions, tx: Sender<Helper>) {
    let opts = opts.clone();
    std::thread::spawn(move || {
        let (base, model) = base_id(&opts);
        let (base, cfg) = base_of(&opts.source, base.as_deref(), model.as_deref());
        let mut meta = MetaCache::open_default();
        let list_opts = ListOptions {
            base: base.as_deref(),
            base_config: cfg.as_ref(),
            endpoint: None,
            offline: offline(false),
            jobs: 8,
        };
        let mut last = Instant::now();
        let result = list_entries(&opts.source, &list_opts, &mut meta, &mut |what, d, n| {
            if last.elapsed() > Duration::from_millis(50) || d == n {
                last = Instant::now();
                let _ = tx.send(Helper::PoolProgress(what.to_string(), d, n));
            }
        });
        let _ = meta.save();
        let _ = tx.send(Helper::Pool(result.map_err(|e| e.to_string())));
    });
}

fn spawn_download(opts: &UiOptions, id: String, tx: Sender<Helper>) {
    let opts = opts.clone();
    std::thread::spawn(move || {
        let _ = tx.send(Helper::Download {
            id: id.clone(),
            line: "downloading…".into(),
            entry: None,
        });
        let (base, model) = base_id(&opts);
        let (base, cfg) = base_of(&PoolSource::Hub, base.as_deref(), model.as_deref());
        let hub = Hub::new(None, HfHome::from_env());
        let (line, entry) = match crate::pool::entry::pull_one(&hub, &id, cfg.as_ref()) {
            Ok(line) => {
                // Re-read the entry from the cache so its status and norm are current.
                let mut meta = MetaCache::open_default();
                let list_opts = ListOptions {
                    base: base.as_deref(),
                    base_config: cfg.as_ref(),
                    endpoint: None,
                    offline: true,
                    jobs: 1,
                };
                let entry = crate::pool::entry::cached_entry(&hub.home, &id, &list_opts, &mut meta)
                    .map(|mut e| {
                        e.source = "hub".into();
                        e
                    });
                let _ = meta.save();
                (line, entry)
            }
            Err(e) => (format!("failed: {e}"), None),
        };
        let _ = tx.send(Helper::Download {
            id,
            line,
            entry: entry.map(Box::new),
        });
    });
}

fn spawn_export(store: RunStore, run: String, out: PathBuf, tx: Sender<Helper>) {
    std::thread::spawn(move || {
        let line = match store.read_record(&run) {
            Ok(Some(record)) => match crate::run::export::export(&record, &out, 64) {
                Ok((rank, err)) => format!(
                    "exported {run} to {} (rank {rank}, relative truncation error {err:.2e})",
                    out.display()
                ),
                Err(e) => format!("cannot export {run}: {e}"),
            },
            Ok(None) => format!("{run} has no record to export"),
            Err(e) => format!("cannot export {run}: {e}"),
        };
        let _ = tx.send(Helper::Message(line));
    });
}

/// Cancels a Slurm job on a helper thread; the store watcher then sees its state change.
fn spawn_scancel(job: String, tx: Sender<Helper>) {
    std::thread::spawn(move || {
        let line = match std::process::Command::new("scancel").arg(&job).output() {
            Ok(o) if o.status.success() => format!("scancel {job}: done"),
            Ok(o) => format!(
                "scancel {job} failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("cannot run scancel: {e}"),
        };
        let _ = tx.send(Helper::Message(line));
    });
}

/// Opens the terminal UI and runs it until the user quits or a signal arrives. The terminal is
/// restored on every way out: quit, error, panic (ratatui's hook), SIGINT, SIGTERM and SIGHUP.
pub fn run(opts: UiOptions) -> anyhow::Result<()> {
    let (theme, keymap) = config::load_default().map_err(anyhow::Error::msg)?;
    let store = RunStore::open(&opts.runs_dir)?;
    let context = Context {
        model: opts.model.clone(),
        source: opts.source.clone(),
        device: if cfg!(feature = "cuda") {
            "cuda if present".into()
        } else {
            "cpu".into()
        },
    };
    let mut app = App::new(theme, keymap, context, lab_tasks());
    app.open_store(store.clone());

    // In raw mode Ctrl-C is a key; the handler catches SIGTERM and SIGHUP (and SIGINT sent by
    // `kill`), so the loop can leave through the same door as `q`.
    let signalled = Arc::new(AtomicBool::new(false));
    {
        let s = signalled.clone();
        let _ = ctrlc::set_handler(move || {
            s.store(true, Ordering::SeqCst);
            // The loop sees the flag within a frame and leaves. A loop stuck reading a terminal
            // that is gone (the SIGHUP of a dropped SSH session: the tty then reads as endless
            // EOF, which crossterm retries) cannot, so the process ends by itself shortly after;
            // runs in flight are then reported interrupted with their curves, as after a crash.
            std::thread::sleep(Duration::from_secs(2));
            ratatui::restore();
            std::process::exit(129);
        });
    }
    let engine = crate::engine::spawn(store.clone());
    let (htx, hrx) = channel();
    spawn_pool_listing(&opts, htx.clone());
    // Runs that other processes or hosts write into the store (a Slurm array, another terminal).
    let wtx = htx.clone();
    watch::spawn(store.clone(), move |u| wtx.send(Helper::Store(u)).is_ok());

    let mut terminal = ratatui::try_init()?;
    let result = event_loop(
        &mut terminal,
        &mut app,
        &engine.events,
        &hrx,
        &htx,
        &opts,
        &store,
        &signalled,
        |c| engine.send(c),
    );
    ratatui::restore();
    // Runs in flight stop after their step; queued ones stay queued in the store.
    engine.send(Command::Shutdown);
    result
}

#[allow(clippy::too_many_arguments)]
fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    events: &Receiver<crate::engine::Event>,
    helpers: &Receiver<Helper>,
    helper_tx: &Sender<Helper>,
    opts: &UiOptions,
    store: &RunStore,
    signalled: &AtomicBool,
    send: impl Fn(Command),
) -> anyhow::Result<()> {
    let frame = Duration::from_millis(16);
    let mut dirty = true;
    let mut last_draw = Instant::now() - frame;
    let mut last_tick = Instant::now();
    loop {
        if dirty && last_draw.elapsed() >= frame {
            terminal.draw(|f| draw(f, app))?;
            last_draw = Instant::now();
            dirty = false;
        }
        // Wait for input until the next frame is due (or a second, when idle).
        let wait = if dirty {
            frame.saturating_sub(last_draw.elapsed())
        } else {
            Duration::from_millis(50)
        };
        if event::poll(wait)? {
            loop {
                match event::read()? {
                    TermEvent::Key(k) => app.on_key(k),
                    TermEvent::Resize(..) => {}
                    _ => {}
                }
                dirty = true;
                if !event::poll(Duration::ZERO)? {
                    break;
                }
            }
        }
        while let Ok(e) = events.try_recv() {
            app.on_engine(e);
            dirty = true;
        }
        while let Ok(h) = helpers.try_recv() {
            match h {
                Helper::PoolProgress(what, d, n) => app.pool.loading = Some((what, d, n)),
                Helper::Pool(Ok(entries)) => app.set_pool(entries),
                Helper::Pool(Err(e)) => {
                    app.pool.loading = None;
                    app.pool.error = Some(format!("cannot list the pool: {e}"));
                }
                Helper::Download { id, line, entry } => {
                    app.on_download(&id, line, entry.map(|e| *e))
                }
                Helper::Message(line) => app.message = Some(line),
                Helper::Store(updates) => app.on_watch(updates),
                Helper::Record(id, record) => app.on_record(&id, *record),
            }
            dirty = true;
        }
        for r in app.outbox.drain(..) {
            match r {
                Request::Engine(c) => send(c),
                Request::Download(id) => spawn_download(opts, id, helper_tx.clone()),
                Request::Export { run, out } => {
                    spawn_export(store.clone(), run.0, out, helper_tx.clone())
                }
                Request::Scancel(job) => spawn_scancel(job, helper_tx.clone()),
                Request::LoadRecord(run) => {
                    let (store, tx) = (store.clone(), helper_tx.clone());
                    std::thread::spawn(move || {
                        if let Ok(Some(r)) = store.read_record(&run.0) {
                            let _ = tx.send(Helper::Record(run, Box::new(r)));
                        }
                    });
                }
            }
        }
        // The ETA and elapsed times move even without events.
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            dirty |= app
                .runs
                .iter()
                .any(|r| r.state == crate::run::store::RunState::Running);
        }
        if app.quit || signalled.load(Ordering::SeqCst) {
            return Ok(());
        }
    }
}
