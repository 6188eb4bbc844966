//! The background engine: one thread that owns the device, the model and the loaded adapters.
//! Commands come in over a channel, events go out over another; runs go through a queue one at a
//! time. The UI never waits on the engine: it sends a command and renders whatever events have
//! arrived.
//!
//! While a run is in flight the engine still reads commands between steps and answers each at
//! once: a submission is stored and announced (`Queued`, its folder made), a cancel of the run
//! or of a queued one takes effect, the queue is reordered, a finished run is deleted. Only the
//! work that needs the model the run holds (loading a pool, evaluating an adapter, exporting)
//! waits for the run to end.

pub use loracycle_data::engine::protocol;
pub mod server;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::Instant;

pub use protocol::{Command, Event, RunId};

use crate::run::execute::{RunError, Workbench};
use crate::run::lifecycle;
use crate::run::spec::{ControlKind, Parent, RunSpec};
use crate::run::store::{RunFolder, RunState, RunStore};

/// The UI's side of the engine.
pub struct EngineHandle {
    pub commands: Sender<Command>,
    pub events: Receiver<Event>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EngineHandle {
    pub fn send(&self, c: Command) {
        // A stopped engine has nothing to tell; its Stopped event said so.
        let _ = self.commands.send(c);
    }

    /// Asks the engine to stop after the run in flight and waits for its thread.
    pub fn shutdown(mut self) {
        self.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts an engine thread writing runs into `store`.
pub fn spawn(store: RunStore) -> EngineHandle {
    spawn_with(store, Vec::new())
}

/// Starts an engine thread whose queue begins with `queue`, runs whose folders are this
/// process's already (a server takes up what it kept at its last shutdown), before anything
/// submitted.
pub fn spawn_with(store: RunStore, queue: Vec<(RunSpec, RunFolder)>) -> EngineHandle {
    let (ctx, crx) = channel();
    let (etx, erx) = channel();
    let thread = std::thread::Builder::new()
        .name("loracycle-engine".into())
        .spawn(move || {
            let mut engine = Engine::new(store, crx, etx);
            for (spec, folder) in queue {
                engine.requeue(spec, folder);
            }
            engine.serve()
        })
        .expect("spawning the engine thread");
    EngineHandle {
        commands: ctx,
        events: erx,
        thread: Some(thread),
    }
}

struct Queued {
    id: RunId,
    spec: RunSpec,
    folder: RunFolder,
}

struct Engine {
    commands: Receiver<Command>,
    /// Everything a command may change while a run holds the model.
    state: State,
    bench: Option<Workbench>,
}

/// The engine's queue and store: what commands act on between the steps of a run.
struct State {
    store: RunStore,
    events: Sender<Event>,
    queue: VecDeque<Queued>,
    stopping: bool,
    /// The answer keys of finished runs read so far (a run's record does not change once
    /// written), by run id.
    answers: std::collections::HashMap<String, Option<RunSpec>>,
}

impl Engine {
    fn new(store: RunStore, commands: Receiver<Command>, events: Sender<Event>) -> Self {
        Self {
            commands,
            state: State {
                store,
                events,
                queue: VecDeque::new(),
                stopping: false,
                answers: Default::default(),
            },
            bench: None,
        }
    }

    fn emit(&self, e: Event) {
        self.state.emit(e);
    }

    fn requeue(&mut self, spec: RunSpec, folder: RunFolder) {
        self.state.requeue(spec, folder);
    }
}

impl State {
    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// Queues a run and the controls its spec asks for: each control is a run of its own whose
    /// spec names this one as its parent, unless an identical run (queued here, or finished in
    /// the store) already answers it; then the run's `controls.reused` names that run instead.
    fn submit(&mut self, mut spec: RunSpec, ticket: u64) {
        let mut todo = Vec::new();
        for (kind, c) in spec.queued_controls() {
            let reuse = (kind != ControlKind::RandomInit)
                .then(|| self.answered(&c))
                .flatten();
            match reuse {
                Some(id) => {
                    spec.controls.reused.insert(kind.name().into(), id);
                }
                None => todo.push((kind, c)),
            }
        }
        let Some(main) = self.enqueue(spec, ticket, None) else {
            return;
        };
        for (role, mut c) in todo {
            c.parent = Some(Parent {
                id: main.0.clone(),
                role,
            });
            self.enqueue(c, ticket, Some(main.clone()));
        }
    }

    fn enqueue(&mut self, spec: RunSpec, ticket: u64, parent: Option<RunId>) -> Option<RunId> {
        match self.store.create(&spec) {
            Ok(folder) => {
                let id = RunId(folder.id().to_string());
                let label = spec.label();
                self.queue.push_back(Queued {
                    id: id.clone(),
                    spec,
                    folder,
                });
                self.emit(Event::Queued {
                    run: id.clone(),
                    label,
                    position: self.queue.len() - 1,
                    ticket,
                    parent,
                    settings: self
                        .queue
                        .back()
                        .map(|q| q.spec.settings())
                        .unwrap_or_default(),
                });
                Some(id)
            }
            Err(e) => {
                self.emit(Event::Rejected {
                    ticket,
                    label: spec.label(),
                    error: e.to_string(),
                });
                None
            }
        }
    }

    /// Queues a run whose folder exists already, announcing it as a submission would.
    fn requeue(&mut self, spec: RunSpec, folder: RunFolder) {
        let id = RunId(folder.id().to_string());
        self.emit(Event::Queued {
            run: id.clone(),
            label: spec.label(),
            position: self.queue.len(),
            ticket: 0,
            parent: spec.parent.as_ref().map(|p| RunId(p.id.clone())),
            settings: spec.settings(),
        });
        self.queue.push_back(Queued { id, spec, folder });
    }

    /// A run that answers `spec` already: one queued here, or a finished one in the store (the
    /// newest).
    fn answered(&mut self, spec: &RunSpec) -> Option<String> {
        let key = spec.answer_key();
        if let Some(q) = self.queue.iter().find(|q| q.spec.answer_key() == key) {
            return Some(q.id.0.clone());
        }
        let finished: Vec<String> = self
            .store
            .list()
            .into_iter()
            .filter(|s| s.state == RunState::Finished)
            .map(|s| s.id)
            .collect();
        for id in finished.into_iter().rev() {
            if !self.answers.contains_key(&id) {
                let k = match self.store.read_record(&id) {
                    Ok(Some(r)) => Some(r.spec.answer_key()),
                    _ => None,
                };
                self.answers.insert(id.clone(), k);
            }
            if self.answers[&id].as_ref() == Some(&key) {
                return Some(id);
            }
        }
        None
    }

    /// Handles a command at once where it needs no model; gives back the ones that do
    /// (loading a pool, evaluating an adapter, exporting), which wait while a run holds it.
    /// `current` is the run in flight and its cancel flag, if any.
    fn handle_now(
        &mut self,
        c: Command,
        current: Option<(&RunId, &AtomicBool)>,
    ) -> Option<Command> {
        match c {
            // A run queued now would never start: the engine stops after the one in flight.
            Command::Submit { spec, ticket } if self.stopping => self.emit(Event::Rejected {
                ticket,
                label: spec.label(),
                error: "the engine is stopping after the run in flight; submit again once it is restarted".into(),
            }),
            Command::Submit { spec, ticket } => self.submit(*spec, ticket),
            Command::Cancel { run } => {
                if let Some((cur, flag)) = current
                    && *cur == run
                {
                    flag.store(true, Ordering::SeqCst);
                } else if let Some(i) = self.queue.iter().position(|q| q.id == run) {
                    let mut q = self.queue.remove(i).expect("index from position");
                    let _ = q.folder.set_state(RunState::Cancelled, None);
                    self.emit(Event::Cancelled { run });
                }
            }
            Command::Reprioritise { run, position } => {
                if let Some(i) = self.queue.iter().position(|q| q.id == run) {
                    let q = self.queue.remove(i).expect("index from position");
                    let at = position.min(self.queue.len());
                    self.queue.insert(at, q);
                    self.emit(Event::Queued {
                        run,
                        label: self.queue[at].spec.label(),
                        position: at,
                        ticket: 0,
                        parent: None,
                        settings: self.queue[at].spec.settings(),
                    });
                }
            }
            // The store refuses a queued or running run (its status says so), which covers
            // this engine's queue and its run in flight.
            Command::Delete { run } => self.emit(match self.store.remove(&run.0) {
                Ok(()) => Event::Deleted { run },
                Err(e) => Event::Log {
                    run: None,
                    line: e.to_string(),
                },
            }),
            // The run in flight finishes (`serve`'s promise that work outlives its clients);
            // a client that wants it stopped cancels it first.
            Command::Shutdown => self.stopping = true,
            c @ (Command::LoadPool { .. }
            | Command::EvaluateAdapter { .. }
            | Command::Export { .. }) => return Some(c),
        }
        None
    }
}

impl Engine {
    fn serve(mut self) {
        loop {
            if self.state.queue.is_empty() || self.state.stopping {
                if self.state.stopping {
                    break;
                }
                match self.commands.recv() {
                    Ok(c) => self.handle(c),
                    Err(_) => break,
                }
            }
            loop {
                match self.commands.try_recv() {
                    Ok(c) => self.handle(c),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.state.stopping = true;
                        break;
                    }
                }
            }
            if self.state.stopping {
                break;
            }
            if let Some(next) = self.state.queue.pop_front() {
                self.run(next);
            }
        }
        // Their folders stay queued, owned by this process: a server keeps the list for its
        // next start.
        if !self.state.queue.is_empty() {
            let runs = self.state.queue.drain(..).map(|q| q.id).collect();
            self.emit(Event::Kept { runs });
        }
        self.emit(Event::Stopped);
    }

    /// Handles a command between runs.
    fn handle(&mut self, c: Command) {
        let Some(c) = self.state.handle_now(c, None) else {
            return;
        };
        match c {
            Command::LoadPool { spec } => {
                if let Err(e) = self.ensure_bench(&spec) {
                    self.emit(Event::Log {
                        run: None,
                        line: format!("cannot load the model for the pool: {e}"),
                    });
                    return;
                }
                let bench = self.bench.as_mut().expect("ensured");
                match bench.pool(&spec.pool.source, &spec.pool.filter, &mut |_| {}) {
                    Ok(p) => {
                        let (usable, rejected) = (p.adapters.len(), p.rejected.len());
                        self.emit(Event::PoolLoaded {
                            source: spec.pool.source.to_string(),
                            usable,
                            rejected,
                        });
                    }
                    Err(e) => self.emit(Event::Log {
                        run: None,
                        line: format!("cannot load pool {}: {e}", spec.pool.source),
                    }),
                }
            }
            Command::EvaluateAdapter { spec, adapter } => {
                let outcome = self.ensure_bench(&spec).and_then(|()| {
                    self.bench
                        .as_mut()
                        .expect("ensured")
                        .evaluate_adapter(&spec, &adapter)
                });
                self.emit(match outcome {
                    Ok((task, em, loss)) => Event::Evaluated {
                        adapter,
                        task,
                        exact_match: Some(em),
                        loss: Some(loss),
                        error: None,
                    },
                    Err(e) => Event::Evaluated {
                        adapter,
                        task: spec.task.display_name(),
                        exact_match: None,
                        loss: None,
                        error: Some(e.to_string()),
                    },
                });
            }
            Command::Export { run, out, rank } => self.emit(self.export(run, out, rank)),
            _ => unreachable!("handle_now answers every other command"),
        }
    }

    /// Exports on the engine's thread, between runs: it loads adapters and truncates by SVD,
    /// work that must neither block the UI nor race a run for the device.
    fn export(&self, run: RunId, out: std::path::PathBuf, rank: usize) -> Event {
        let record = match self.state.store.read_record(&run.0) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Event::ExportFailed {
                    run,
                    error: "it has no record; only a finished run can be exported".into(),
                };
            }
            Err(e) => {
                return Event::ExportFailed {
                    run,
                    error: e.to_string(),
                };
            }
        };
        let dir = match self.state.store.run_dir(&run.0) {
            Ok(dir) => dir,
            Err(e) => {
                return Event::ExportFailed {
                    run,
                    error: e.to_string(),
                };
            }
        };
        // A relative folder goes into the run's own folder, where its record is.
        let out = if out.is_absolute() {
            out
        } else {
            dir.join(out)
        };
        match crate::run::export::export(&record, &dir, &out, rank) {
            Ok((rank, truncation_error)) => Event::Exported {
                run,
                out,
                rank,
                truncation_error,
            },
            Err(e) => Event::ExportFailed {
                run,
                error: e.to_string(),
            },
        }
    }

    fn ensure_bench(&mut self, spec: &RunSpec) -> Result<(), RunError> {
        if self.bench.as_ref().is_some_and(|b| b.serves(spec)) {
            return Ok(());
        }
        self.bench = None;
        self.bench = Some(Workbench::open(spec)?);
        Ok(())
    }

    fn run(&mut self, mut q: Queued) {
        let id = q.id.clone();
        self.emit(Event::Started {
            run: id.clone(),
            label: q.spec.label(),
        });
        let result = match self.ensure_bench(&q.spec) {
            Ok(()) => self.execute_with_commands(&mut q),
            Err(e) => lifecycle::end(&mut q.folder, Err(e)),
        };
        match result {
            Ok(record) => self.emit(Event::Finished {
                run: id,
                exact_match: record.metrics.exact_match.mean,
                loss: record.metrics.loss.mean,
            }),
            Err(RunError::Cancelled) => self.emit(Event::Cancelled { run: id }),
            Err(e) => self.emit(Event::Failed {
                run: id,
                error: e.to_string(),
            }),
        }
    }

    /// Executes a run, reading commands between steps and writing the curve as it grows.
    fn execute_with_commands(&mut self, q: &mut Queued) -> Result<crate::run::RunRecord, RunError> {
        let cancel = AtomicBool::new(false);
        let id = q.id.clone();
        let start = Instant::now();
        let mut bench = self.bench.take().expect("ensured before");
        let mut pending = Vec::new();
        let events = self.state.events.clone();
        let commands = &self.commands;
        let state = &mut self.state;
        let folder = &mut q.folder;
        let spec = q.spec.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lifecycle::run_in_folder(
                &mut bench,
                &spec,
                folder,
                &mut |e| {
                    let _ = events.send(Event::of_run(id.clone(), e, start.elapsed()));
                    // Commands that arrived meanwhile are answered now; those that need the
                    // model wait until the run ends.
                    while let Ok(c) = commands.try_recv() {
                        if let Some(c) = state.handle_now(c, Some((&id, &cancel))) {
                            pending.push(c);
                        }
                    }
                },
                Some(&cancel),
            )
        }));
        self.bench = Some(bench);
        for c in pending {
            self.handle(c);
        }
        match outcome {
            Ok(r) => r,
            Err(panic) => {
                // The model may be in any state after a panic: load it afresh next time.
                self.bench = None;
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown".into());
                // The folder still says running: end it as failed.
                lifecycle::end(
                    &mut q.folder,
                    Err(RunError::Other(format!(
                        "internal error (please report): {what}"
                    ))),
                )
            }
        }
    }
}
