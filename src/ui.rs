//! The terminal UI. `App` holds the state and turns keys and engine events into changes;
//! `render` draws it; `run` owns the terminal and the loop: drain every pending input and engine
//! event, then draw once (at most ~60 frames a second), so input is never behind the engine.
//!
//! Work that takes time runs elsewhere: tensor work on the engine's thread; reading the store,
//! pool listing, downloads and exports on the [`worker`]'s threads, which answer with
//! [`Reply`]s through a channel.

pub mod app;
pub mod config;
pub mod form;
pub mod keymap;
pub mod render;
pub mod request;
pub mod runs;
pub mod screen;
pub mod theme;
pub mod watch;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event as TermEvent};

pub use app::{App, Context, Screen};
pub use render::draw;
pub use request::{Reply, Request};

use crate::engine::Command;
use crate::pool::PoolSource;
use crate::run::store::RunStore;
use worker::{Worker, WorkerCtx};

/// What the UI is opened on.
#[derive(Debug, Clone)]
pub struct UiOptions {
    /// The base model as a spec names it: `lab`, a folder or a Hub id.
    pub model: String,
    pub source: PoolSource,
    pub runs_dir: PathBuf,
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
    app.form.add_imported(
        crate::tasks::list(&crate::tasks::tasks_dir())
            .into_iter()
            .map(|t| t.name)
            .collect(),
    );
    // The history is read off the UI thread; the Runs screen fills in when it comes.
    app.outbox.push(Request::ListRuns);

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
    worker::spawn_pool_listing(&opts, htx.clone());
    // Runs that other processes or hosts write into the store (a Slurm array, another terminal).
    let wtx = htx.clone();
    watch::spawn(store.clone(), move |u| wtx.send(Reply::Store(u)).is_ok());
    let worker = Worker::spawn(
        WorkerCtx {
            store: store.clone(),
            opts: opts.clone(),
        },
        htx,
    );

    let mut terminal = ratatui::try_init()?;
    let result = event_loop(
        &mut terminal,
        &mut app,
        &engine.events,
        &hrx,
        &worker,
        &signalled,
        |c| engine.send(c),
    );
    ratatui::restore();
    // The engine thread ends with this process: a run in flight reads as interrupted, with its
    // curve; queued runs stay in the store.
    engine.send(Command::Shutdown);
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    events: &Receiver<crate::engine::Event>,
    replies: &Receiver<Reply>,
    worker: &Worker,
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
        while let Ok(r) = replies.try_recv() {
            app.on_reply(r);
            dirty = true;
        }
        for r in app.outbox.drain(..) {
            match r {
                Request::Engine(c) => send(c),
                r => worker.send(r),
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
