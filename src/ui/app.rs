//! The UI's state and its update functions. Keys become actions through the keymap; actions and
//! engine events change the state; what must happen outside (a command to the engine, a
//! download, an export) is put in `outbox` as a [`Request`] for the app loop. Nothing here blocks or computes
//! with tensors, so every function can be tested without a terminal or an engine.

use std::path::PathBuf;
use std::time::Instant;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::form::{FieldId, Form};
use super::keymap::{Action, Key, Keymap, Scope};
use super::request::{Reply, Request, Resubmit};
use super::runs::{RunList, RunView};
use super::screen::compare::CompareScreen;
use super::screen::help::HelpScreen;
use super::screen::pool::PoolScreen;
use super::screen::{Ctx, Nav, move_cursor};
use super::theme::Theme;
use crate::engine::{Command, Event, RunId};
use crate::pool::PoolSource;
use crate::pool::entry::PoolEntry;
use crate::run::spec::RunSpec;
use crate::run::store::RunState;
use crate::select::Selection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Pool,
    NewRun,
    Live,
    Runs,
    Compare,
    Help,
}

pub const TABS: [(Screen, &str); 5] = [
    (Screen::Pool, "Pool"),
    (Screen::NewRun, "New run"),
    (Screen::Live, "Live"),
    (Screen::Runs, "Runs"),
    (Screen::Compare, "Compare"),
];

impl Screen {
    pub fn scope(self) -> Scope {
        match self {
            Screen::Pool => Scope::Pool,
            Screen::NewRun => Scope::NewRun,
            Screen::Live => Scope::Live,
            Screen::Runs => Scope::Runs,
            Screen::Compare => Scope::Compare,
            Screen::Help => Scope::Global,
        }
    }
}

/// A question waiting for y/n.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirm {
    Quit,
    Delete(RunId),
}

/// Where the UI runs: shown in the tab bar and used for new specs.
#[derive(Debug, Clone)]
pub struct Context {
    /// The base model as a spec writes it (`lab`, a folder or a Hub id).
    pub model: String,
    pub source: PoolSource,
    pub device: String,
}

pub struct App {
    pub screen: Screen,
    pub help: HelpScreen,
    pub theme: Theme,
    pub keymap: Keymap,
    pub context: Context,
    pub pool: PoolScreen,
    pub form: Form,
    pub runs: RunList,
    pub runs_cursor: usize,
    /// The run shown on Live.
    pub live: usize,
    pub compare: CompareScreen,
    pub message: Option<String>,
    pub confirm: Option<Confirm>,
    pub quit: bool,
    pub engine_stopped: bool,
    pub outbox: Vec<Request>,
    /// The ticket of the run just submitted from the form; Live follows it once queued.
    pending: Option<u64>,
    /// The last submission ticket handed out.
    tickets: u64,
}

impl App {
    pub fn new(theme: Theme, keymap: Keymap, context: Context, tasks: Vec<String>) -> App {
        App {
            screen: Screen::Pool,
            help: HelpScreen::new(),
            theme,
            keymap,
            context,
            pool: PoolScreen::new(),
            form: Form::new(tasks),
            runs: RunList::default(),
            runs_cursor: 0,
            live: 0,
            compare: CompareScreen::default(),
            message: None,
            confirm: None,
            quit: false,
            engine_stopped: false,
            outbox: Vec::new(),
            pending: None,
            tickets: 0,
        }
    }

    pub fn set_pool(&mut self, entries: Vec<PoolEntry>) {
        self.pool.set_entries(entries);
        self.form.pool_size = Some(self.pool.usable());
    }

    /// The screen the help was opened from.
    pub fn help_from(&self) -> Screen {
        self.help.from
    }

    /// The run this UI's engine has in flight.
    pub fn running(&self) -> Option<&RunView> {
        self.runs.running()
    }

    pub fn live_run(&self) -> Option<&RunView> {
        self.runs.get(self.live)
    }

    /// Takes what the worker, the pool listing or the store watcher tell the UI.
    pub fn on_reply(&mut self, r: Reply) {
        self.reply(r);
        self.refresh_compare();
    }

    fn reply(&mut self, r: Reply) {
        match r {
            Reply::PoolProgress(what, d, n) => self.pool.loading = Some((what, d, n)),
            Reply::Pool(Ok(entries)) => self.set_pool(entries),
            Reply::Pool(Err(e)) => {
                self.pool.loading = None;
                self.pool.error = Some(format!("cannot list the pool: {e}"));
            }
            Reply::Download { id, line, entry } => {
                self.message = Some(self.pool.on_download(&id, line, entry.map(|e| *e)));
                self.form.pool_size = Some(self.pool.usable());
            }
            Reply::Message(line) => self.message = Some(line),
            Reply::Store(updates) => self.runs.on_watch(updates),
            Reply::Record(id, record) => self.runs.on_record(&id, *record),
            Reply::Curve(id, curve) => self.runs.on_curve(&id, curve),
            Reply::Runs(summaries) => {
                self.runs.set_history(summaries);
                self.live = self.runs.len().saturating_sub(1);
                self.runs_cursor = self.live;
            }
            Reply::Spec { then, spec, .. } => match spec {
                Ok(spec) => self.resubmit(then, *spec),
                Err(e) => self.message = Some(format!("no spec for this run: {e}")),
            },
            Reply::SpecFile { path, spec } => match spec {
                Ok(spec) => {
                    self.form.load_spec(&spec);
                    self.message = Some(format!("loaded {}", path.display()));
                }
                Err(e) => self.message = Some(format!("cannot load: {e}")),
            },
        }
    }

    /// Asks for a run's record or curve once, when a screen needs it; `loaded` is set at once
    /// so it is asked only once.
    pub fn ensure_loaded(&mut self, i: usize) {
        if let Some(id) = self.runs.to_load(i) {
            self.outbox.push(Request::LoadRun(id));
        }
    }

    /// Queues run `i` again, or a twin of it: from its record's spec when that is loaded, else
    /// once the worker has read its spec file.
    fn resubmit_run(&mut self, i: usize, then: Resubmit) {
        let Some(run) = self.runs.get(i) else { return };
        match &run.record {
            Some(r) => self.resubmit(then, r.spec.clone()),
            None => self.outbox.push(Request::ReadSpec {
                run: run.id.clone(),
                then,
            }),
        }
    }

    fn resubmit(&mut self, then: Resubmit, spec: RunSpec) {
        let spec = match then {
            Resubmit::Retry => {
                self.message = Some(format!("queued {} again", spec.label()));
                self.submit(spec);
                return;
            }
            Resubmit::RandomTwin => {
                if !spec.method.uses_pool() {
                    self.message = Some("this run uses no pool; it has no random-init twin".into());
                    return;
                }
                let Some(twin) = spec.random_init_twin() else {
                    self.message = Some("this run is on the random-init pool already".into());
                    return;
                };
                twin
            }
            Resubmit::BaseTwin => spec.control_twin(crate::run::spec::MethodSpec::Base),
        };
        self.message = Some(format!("queued {}", spec.label()));
        self.submit(spec);
    }

    /// Asks the engine to queue `spec`; its answer carries the ticket returned here.
    fn submit(&mut self, spec: RunSpec) -> u64 {
        self.tickets += 1;
        self.outbox.push(Request::Engine(Command::Submit {
            spec: Box::new(spec),
            ticket: self.tickets,
        }));
        self.tickets
    }

    // ---- engine events ----

    pub fn on_engine(&mut self, e: Event) {
        self.engine_event(e);
        self.refresh_compare();
    }

    fn engine_event(&mut self, e: Event) {
        match e {
            Event::Rejected {
                ticket,
                label,
                error,
            } => {
                if self.pending == Some(ticket) {
                    self.pending = None;
                }
                self.message = Some(format!("cannot queue {label}: {error}"));
            }
            Event::Deleted { run } => {
                self.runs.remove(&run);
                self.runs_cursor = self.runs_cursor.min(self.runs.len().saturating_sub(1));
                self.live = self.live.min(self.runs.len().saturating_sub(1));
                self.message = Some(format!("deleted {run}"));
            }
            Event::Exported {
                run,
                out,
                rank,
                truncation_error,
            } => {
                self.message = Some(format!(
                    "exported {run} to {} (rank {rank}, relative truncation error \
                     {truncation_error:.2e})",
                    out.display()
                ))
            }
            Event::ExportFailed { run, error } => {
                self.message = Some(format!("cannot export {run}: {error}"))
            }
            Event::Log { run: None, line } => self.message = Some(line),
            Event::PoolLoaded {
                source,
                usable,
                rejected,
            } => {
                self.message = Some(format!(
                    "pool {source}: {usable} usable, {rejected} rejected"
                ))
            }
            Event::Evaluated {
                adapter,
                task,
                exact_match,
                loss,
                error,
            } => {
                self.message = Some(match (exact_match, loss, error) {
                    (_, _, Some(e)) => format!("{adapter} on {task}: {e}"),
                    (Some(em), Some(l), None) => {
                        format!("{adapter} on {task}: exact match {em:.3}, loss {l:.4}")
                    }
                    _ => format!("{adapter} on {task}: no score"),
                })
            }
            // Only a server greets; the TUI's engine runs in its own process.
            Event::Hello { .. } => {}
            Event::Stopped => {
                self.engine_stopped = true;
                self.message = Some("the engine stopped".into());
            }
            e => {
                let ticket = match &e {
                    Event::Queued { ticket, .. } => Some(*ticket),
                    _ => None,
                };
                let finished = matches!(e, Event::Finished { .. });
                let Some(i) = self.runs.on_event(e, Instant::now()) else {
                    return;
                };
                if ticket.is_some_and(|t| t != 0) && ticket == self.pending {
                    self.pending = None;
                    self.live = i;
                    self.runs_cursor = i;
                }
                // A run that just ended has a record (examples, coefficients) to read.
                if finished {
                    self.outbox.push(Request::LoadRun(self.runs[i].id.clone()));
                }
            }
        }
    }

    // ---- keys ----

    pub fn on_key(&mut self, e: KeyEvent) {
        self.key(e);
        self.refresh_compare();
    }

    fn key(&mut self, e: KeyEvent) {
        if e.kind != ratatui::crossterm::event::KeyEventKind::Press {
            return;
        }
        // A pending question takes the next key.
        if let Some(c) = self.confirm.take() {
            if matches!(e.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
                match c {
                    Confirm::Quit => self.quit = true,
                    Confirm::Delete(id) => self.delete(&id),
                }
            } else {
                self.message = Some("kept".into());
            }
            return;
        }
        if self.screen == Screen::Help {
            if let Some(back) = self.help.key(e) {
                self.screen = back;
            }
            return;
        }
        // Text entry takes every key but enter and esc.
        if self.pool.text_key(e) {
            return;
        }
        if self.form.editing.is_some() {
            self.edit_key(e);
            return;
        }
        let key = Key::from_event(&e);
        let Some(action) = self.keymap.action(self.screen.scope(), key) else {
            return;
        };
        self.message = None;
        self.act(action);
    }

    fn edit_key(&mut self, e: KeyEvent) {
        let text = self.form.editing.as_mut().expect("editing");
        match e.code {
            KeyCode::Enter => {
                let t = self.form.editing.take().expect("editing");
                let f = self.form.field();
                self.form.set_text(f, t.trim().to_string());
            }
            KeyCode::Esc => self.form.editing = None,
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if !e.modifiers.contains(KeyModifiers::CONTROL) => text.push(c),
            _ => {}
        }
    }

    fn go(&mut self, s: Screen) {
        self.screen = s;
        match s {
            Screen::Live => self.ensure_loaded(self.live),
            Screen::Compare => {
                self.refresh_compare();
                for i in self.compared().to_vec() {
                    self.ensure_loaded(i);
                }
            }
            _ => {}
        }
    }

    fn act(&mut self, a: Action) {
        match a {
            Action::Quit => {
                // Runs of other processes go on without this UI.
                if self.runs.iter().any(|r| r.local && r.state.is_live()) {
                    self.confirm = Some(Confirm::Quit);
                } else {
                    self.quit = true;
                }
                return;
            }
            Action::Help => {
                self.help.open(self.screen);
                self.screen = Screen::Help;
                return;
            }
            Action::NextScreen | Action::PrevScreen => {
                let i = TABS
                    .iter()
                    .position(|(s, _)| *s == self.screen)
                    .unwrap_or(0);
                let n = TABS.len();
                let j = if a == Action::NextScreen {
                    (i + 1) % n
                } else {
                    (i + n - 1) % n
                };
                self.go(TABS[j].0);
                return;
            }
            Action::ScreenPool => return self.go(Screen::Pool),
            Action::ScreenNewRun => return self.go(Screen::NewRun),
            Action::ScreenLive => return self.go(Screen::Live),
            Action::ScreenRuns => return self.go(Screen::Runs),
            Action::ScreenCompare => return self.go(Screen::Compare),
            _ => {}
        }
        match self.screen {
            Screen::Pool => {
                let mut cx = Ctx {
                    outbox: &mut self.outbox,
                    message: &mut self.message,
                };
                if let Some(Nav::NewRunWith(picks)) = self.pool.on_action(a, &mut cx) {
                    if !picks.is_empty() {
                        self.form.manual = picks;
                        self.form.selection = Selection::Manual {
                            adapters: Vec::new(),
                        };
                    }
                    self.go(Screen::NewRun);
                }
            }
            Screen::NewRun => self.form_action(a),
            Screen::Live => self.live_action(a),
            Screen::Runs => self.runs_action(a),
            Screen::Compare => self.compare_action(a),
            Screen::Help => {}
        }
    }

    fn form_action(&mut self, a: Action) {
        let n = super::form::FIELDS.len();
        if move_cursor(&mut self.form.cursor, n, a, 5) {
            return;
        }
        match a {
            Action::Left => self.form.cycle(false),
            Action::Right => self.form.cycle(true),
            Action::Enter => {
                let f = self.form.field();
                if f == FieldId::Start {
                    self.start();
                } else if Form::is_text(f) {
                    self.form.editing = Some(self.form.value(f));
                } else {
                    self.form.cycle(true);
                }
            }
            Action::StartRun => self.start(),
            Action::SaveSpec => self.save_spec(),
            Action::LoadSpec => self.load_spec(),
            _ => {}
        }
    }

    /// Submits the form's runs and follows the main one on Live.
    pub fn start(&mut self) {
        match self.form.specs(&self.context.model, &self.context.source) {
            Ok(specs) => {
                let n = specs.len();
                let tickets: Vec<u64> = specs.into_iter().map(|s| self.submit(s)).collect();
                self.pending = tickets.first().copied();
                self.message = Some(if n == 1 {
                    "run queued".into()
                } else {
                    format!("run queued with {} controls", n - 1)
                });
                self.go(Screen::Live);
            }
            Err(e) => self.message = Some(format!("cannot start: {e}")),
        }
    }

    fn save_spec(&mut self) {
        match self.form.specs(&self.context.model, &self.context.source) {
            Ok(specs) => self.outbox.push(Request::SaveSpec {
                path: PathBuf::from(&self.form.spec_file),
                text: specs[0].to_toml(),
            }),
            Err(e) => self.message = Some(format!("cannot save: {e}")),
        }
    }

    fn load_spec(&mut self) {
        self.outbox.push(Request::LoadSpec {
            path: PathBuf::from(&self.form.spec_file),
        });
    }

    fn live_action(&mut self, a: Action) {
        let n = self.runs.len();
        match a {
            Action::Left | Action::Up => {
                self.live = self.live.saturating_sub(1);
                self.ensure_loaded(self.live);
            }
            Action::Right | Action::Down => {
                self.live = (self.live + 1).min(n.saturating_sub(1));
                self.ensure_loaded(self.live);
            }
            Action::Cancel => self.cancel(self.live),
            Action::RandomTwin => self.resubmit_run(self.live, Resubmit::RandomTwin),
            Action::BaseTwin => self.resubmit_run(self.live, Resubmit::BaseTwin),
            Action::Export => self.export(self.live),
            _ => {}
        }
    }

    fn cancel(&mut self, i: usize) {
        if let Some(r) = self.runs.get(i) {
            if r.state.is_live() && !r.local {
                self.message = Some(match &r.slurm {
                    Some(j) => {
                        self.outbox.push(Request::Scancel(j.key()));
                        format!("scancel {} ({})", j.key(), r.label)
                    }
                    None => format!(
                        "{} runs in another process (pid {} on {}); stop it there",
                        r.label, r.pid, r.host
                    ),
                });
            } else if r.state.is_live() {
                self.outbox
                    .push(Request::Engine(Command::Cancel { run: r.id.clone() }));
                self.message = Some(format!("cancelling {}", r.label));
            } else {
                self.message = Some(format!(
                    "{} is {}; nothing to cancel",
                    r.label,
                    r.state.name()
                ));
            }
        }
    }

    fn export(&mut self, i: usize) {
        let Some(r) = self.runs.get(i) else { return };
        if r.state != RunState::Finished {
            self.message = Some("only a finished run can be exported".into());
            return;
        }
        let out = PathBuf::from(format!("export-{}", r.id.0));
        self.message = Some(format!("exporting to {}…", out.display()));
        self.outbox.push(Request::Engine(Command::Export {
            run: r.id.clone(),
            out,
            rank: 64,
        }));
    }

    /// The engine removes the folder and answers `Deleted` (or why not, as a log line).
    fn delete(&mut self, id: &RunId) {
        self.outbox
            .push(Request::Engine(Command::Delete { run: id.clone() }));
        self.message = Some(format!("deleting {id}…"));
    }

    fn runs_action(&mut self, a: Action) {
        let n = self.runs.len();
        if move_cursor(&mut self.runs_cursor, n, a, 10) {
            return;
        }
        let i = self.runs_cursor;
        let Some(run) = self.runs.get(i) else { return };
        match a {
            Action::Enter => {
                self.live = i;
                self.go(Screen::Live);
            }
            Action::Select => {
                self.runs.set_marked(i, !self.runs[i].marked);
                move_cursor(&mut self.runs_cursor, n, Action::Down, 1);
            }
            Action::Cancel => self.cancel(i),
            Action::Retry => self.resubmit_run(i, Resubmit::Retry),
            Action::Delete => {
                if run.state.is_live() {
                    self.message = Some(format!(
                        "{} is {}; cancel it first",
                        run.label,
                        run.state.name()
                    ));
                } else {
                    self.message = Some(format!("delete {} and its folder? y/n", run.id));
                    self.confirm = Some(Confirm::Delete(run.id.clone()));
                }
            }
            Action::Export => self.export(i),
            _ => {}
        }
    }

    /// The runs on Compare, as of the last update.
    pub fn compared(&self) -> &[usize] {
        self.compare.rows()
    }

    /// The pair of compared runs whose examples are diffed.
    pub fn diff_pair(&self) -> Option<(usize, usize)> {
        self.compare.diff_pair()
    }

    /// Brings Compare's rows up to date with the runs; after every update, so drawing never
    /// derives them.
    fn refresh_compare(&mut self) {
        self.compare.refresh(&self.runs, self.runs_cursor);
    }

    fn compare_action(&mut self, a: Action) {
        let rows = self.compared().to_vec();
        if move_cursor(&mut self.compare.cursor, rows.len(), a, 5) {
            return;
        }
        match a {
            Action::SwitchPair => self.compare.pair += 1,
            Action::Enter => {
                if let Some(&i) = rows.get(self.compare.cursor) {
                    self.live = i;
                    self.go(Screen::Live);
                }
            }
            Action::ExportTable => self.export_table(&rows),
            _ => {}
        }
    }

    fn export_table(&mut self, rows: &[usize]) {
        let (md, csv) = super::render::compare::table_text(self, rows);
        self.outbox.push(Request::WriteTable { md, csv });
    }
}
