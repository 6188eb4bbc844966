//! The UI's state and its router. Keys become actions through the keymap and go to the screen
//! in view; engine events and the worker's replies go to the models they change. Screens own
//! their state (`screen::*`) and put what must happen outside (a command to the engine, a file
//! to read or write, a download) in `outbox` as a [`Request`] for the app loop. Nothing here
//! blocks, touches the disk or computes with tensors, so all of it is tested without a terminal
//! or an engine.

use std::time::Instant;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind};

use super::form::Form;
use super::keymap::{Action, Key, Keymap, Scope};
use super::request::{Reply, Request};
use super::runs::{RunList, RunView};
use super::screen::compare::CompareScreen;
use super::screen::help::HelpScreen;
use super::screen::live::LiveScreen;
use super::screen::pool::PoolScreen;
use super::screen::runs::RunsScreen;
use super::screen::{Ctx, Nav, run_ops};
use super::theme::Theme;
use crate::engine::Event;
use crate::pool::entry::PoolEntry;
use crate::select::Selection;

pub use super::screen::{Confirm, Context};

/// The outbox, the status line and the tickets of an `App`, lent to a screen; a macro rather
/// than a method so the screens' own fields stay borrowable beside it.
macro_rules! ctx {
    ($app:expr) => {
        Ctx {
            outbox: &mut $app.outbox,
            message: &mut $app.message,
            tickets: &mut $app.tickets,
        }
    };
}

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

pub struct App {
    pub screen: Screen,
    pub theme: Theme,
    pub keymap: Keymap,
    pub context: Context,
    /// Every run this UI knows, with what has been read of each.
    pub runs: RunList,
    pub pool: PoolScreen,
    pub form: Form,
    pub live: LiveScreen,
    pub runs_screen: RunsScreen,
    pub compare: CompareScreen,
    pub help: HelpScreen,
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
            theme,
            keymap,
            context,
            runs: RunList::default(),
            pool: PoolScreen::new(),
            form: Form::new(tasks),
            live: LiveScreen::default(),
            runs_screen: RunsScreen::default(),
            compare: CompareScreen::default(),
            help: HelpScreen::new(),
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
        self.runs.get(self.live.run)
    }

    /// The runs on Compare, as of the last update.
    pub fn compared(&self) -> &[usize] {
        self.compare.rows()
    }

    /// The pair of compared runs whose examples are diffed.
    pub fn diff_pair(&self) -> Option<(usize, usize)> {
        self.compare.diff_pair()
    }

    /// Asks for run `i`'s record or curve once, when a screen needs it.
    pub fn ensure_loaded(&mut self, i: usize) {
        let mut cx = ctx!(self);
        run_ops::ensure_loaded(&mut self.runs, i, &mut cx);
    }

    /// What every update ends with, so that drawing derives nothing and touches no file:
    /// Compare's rows brought up to date, and a task folder typed into the form sent to the
    /// worker to be checked.
    fn settle(&mut self) {
        self.compare.refresh(&self.runs, self.runs_screen.cursor);
        self.runs_screen.refresh(&self.runs);
        if let Some(folder) = self.form.wants_check() {
            self.outbox.push(Request::CheckTask(folder));
        }
    }

    // ---- replies: the worker, the pool listing, the store watcher ----

    pub fn on_reply(&mut self, r: Reply) {
        self.reply(r);
        self.settle();
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
                let last = self.runs.len().saturating_sub(1);
                self.live.run = last;
                self.runs_screen.cursor = last;
            }
            Reply::Spec { then, spec, run } => match spec {
                Ok(spec) => run_ops::resubmit(then, &run, *spec, &mut ctx!(self)),
                Err(e) => self.message = Some(format!("no spec for this run: {e}")),
            },
            Reply::SpecFile { path, spec } => match spec {
                Ok(spec) => {
                    self.form.load_spec(&spec);
                    self.message = Some(format!("loaded {}", path.display()));
                }
                Err(e) => self.message = Some(format!("cannot load: {e}")),
            },
            Reply::Renamed { run, label } => match label {
                Ok(label) => {
                    self.message = Some(format!("{run} is shown as {label:?}"));
                    self.runs.rename(&run, label);
                }
                Err(e) => self.message = Some(format!("cannot rename {run}: {e}")),
            },
            Reply::TaskChecked { folder, missing } => self.form.on_task_checked(folder, missing),
        }
    }

    // ---- engine events ----

    pub fn on_engine(&mut self, e: Event) {
        self.engine_event(e);
        self.settle();
    }

    fn engine_event(&mut self, e: Event) {
        let line = match e {
            Event::Rejected {
                ticket,
                label,
                error,
            } => {
                if self.pending == Some(ticket) {
                    self.pending = None;
                }
                format!("cannot queue {label}: {error}")
            }
            Event::Deleted { run } => {
                self.runs.remove(&run);
                self.runs_screen.clamp(self.runs.len());
                self.live.clamp(self.runs.len());
                format!("deleted {run}")
            }
            Event::Exported {
                run,
                out,
                rank,
                truncation_error,
            } => format!(
                "exported {run} to {} (rank {rank}, relative truncation error \
                 {truncation_error:.2e})",
                out.display()
            ),
            Event::ExportFailed { run, error } => format!("cannot export {run}: {error}"),
            Event::Log { run: None, line } => line,
            Event::PoolLoaded {
                source,
                usable,
                rejected,
            } => format!("pool {source}: {usable} usable, {rejected} rejected"),
            Event::Evaluated {
                adapter,
                task,
                exact_match,
                loss,
                error,
            } => match (exact_match, loss, error) {
                (_, _, Some(e)) => format!("{adapter} on {task}: {e}"),
                (Some(em), Some(l), None) => {
                    format!("{adapter} on {task}: exact match {em:.3}, loss {l:.4}")
                }
                _ => format!("{adapter} on {task}: no score"),
            },
            // Only a server greets; the TUI's engine runs in its own process.
            Event::Hello { .. } => return,
            Event::Stopped => {
                self.engine_stopped = true;
                "the engine stopped".into()
            }
            e => return self.run_event(e),
        };
        self.message = Some(line);
    }

    /// An event of one run: the run list takes it; Live follows the run the form just queued;
    /// a run that just ended has a record (examples, coefficients) to read.
    fn run_event(&mut self, e: Event) {
        let ticket = match &e {
            Event::Queued { ticket, .. } => Some(*ticket),
            _ => None,
        };
        let finished = matches!(e, Event::Finished { .. });
        if let Event::Screened { task, scores, .. } = &e {
            self.pool.set_scores(task.clone(), scores);
        }
        let Some(i) = self.runs.on_event(e, Instant::now()) else {
            return;
        };
        if ticket.is_some_and(|t| t != 0) && ticket == self.pending {
            self.pending = None;
            self.live.run = i;
            self.runs_screen.cursor = i;
        }
        if finished {
            self.outbox.push(Request::LoadRun(self.runs[i].id.clone()));
        }
    }

    // ---- keys ----

    pub fn on_key(&mut self, e: KeyEvent) {
        self.key(e);
        self.settle();
    }

    fn key(&mut self, e: KeyEvent) {
        if e.kind != KeyEventKind::Press {
            return;
        }
        // A pending question takes the next key.
        if let Some(c) = self.confirm.take() {
            return self.answer(c, matches!(e.code, KeyCode::Char('y' | 'Y')));
        }
        if self.screen == Screen::Help {
            if let Some(back) = self.help.key(e) {
                self.screen = back;
            }
            return;
        }
        // Text entry takes every key but enter and esc.
        if self.pool.text_key(e)
            || self.form.text_key(e)
            || self
                .runs_screen
                .text_key(e, &mut self.runs, &mut ctx!(self))
        {
            return;
        }
        let Some(action) = self.keymap.action(self.screen.scope(), Key::from_event(&e)) else {
            return;
        };
        self.message = None;
        self.act(action);
    }

    fn answer(&mut self, c: Confirm, yes: bool) {
        if !yes {
            self.message = Some("kept".into());
            return;
        }
        match c {
            Confirm::Quit => self.quit = true,
            // The engine removes the folder and answers `Deleted` (or why not, as a log line).
            Confirm::Delete(id) => {
                self.message = Some(format!("deleting {id}…"));
                self.outbox
                    .push(Request::Engine(crate::engine::Command::Delete { run: id }));
            }
        }
    }

    fn go(&mut self, s: Screen) {
        self.screen = s;
        match s {
            Screen::Live => self.ensure_loaded(self.live.run),
            Screen::Compare => {
                self.settle();
                for i in self.compared().to_vec() {
                    self.ensure_loaded(i);
                }
            }
            _ => {}
        }
    }

    fn navigate(&mut self, nav: Nav) {
        match nav {
            Nav::NewRunWith(picks) => {
                if !picks.is_empty() {
                    self.form.manual = picks;
                    self.form.selection = Selection::Manual {
                        adapters: Vec::new(),
                    };
                }
                self.go(Screen::NewRun);
            }
            Nav::Live(i) => {
                self.live.run = i;
                self.go(Screen::Live);
            }
            Nav::Follow(ticket) => {
                self.pending = Some(ticket);
                self.go(Screen::Live);
            }
            Nav::Ask(c) => self.confirm = Some(c),
        }
    }

    /// Actions every screen shares: quit, help and moving between screens.
    fn global(&mut self, a: Action) -> bool {
        let to = match a {
            Action::Quit => {
                // Runs of other processes go on without this UI.
                if self.runs.iter().any(|r| r.local && r.state.is_live()) {
                    self.confirm = Some(Confirm::Quit);
                } else {
                    self.quit = true;
                }
                return true;
            }
            Action::Help => {
                self.help.open(self.screen);
                self.screen = Screen::Help;
                return true;
            }
            Action::NextScreen | Action::PrevScreen => {
                let i = TABS.iter().position(|(s, _)| *s == self.screen);
                let (i, n) = (i.unwrap_or(0), TABS.len());
                let j = if a == Action::NextScreen {
                    (i + 1) % n
                } else {
                    (i + n - 1) % n
                };
                TABS[j].0
            }
            Action::ScreenPool => Screen::Pool,
            Action::ScreenNewRun => Screen::NewRun,
            Action::ScreenLive => Screen::Live,
            Action::ScreenRuns => Screen::Runs,
            Action::ScreenCompare => Screen::Compare,
            _ => return false,
        };
        self.go(to);
        true
    }

    fn act(&mut self, a: Action) {
        if self.global(a) {
            return;
        }
        let mut cx = ctx!(self);
        let nav = match self.screen {
            Screen::Pool => self.pool.on_action(a, &mut cx),
            Screen::NewRun => self.form.on_action(a, &self.context, &mut cx),
            Screen::Live => {
                self.live.on_action(a, &mut self.runs, &mut cx);
                None
            }
            Screen::Runs => self.runs_screen.on_action(a, &mut self.runs, &mut cx),
            Screen::Compare => self.compare.on_action(a, &self.runs, &mut cx),
            Screen::Help => None,
        };
        if let Some(nav) = nav {
            self.navigate(nav);
        }
    }

    /// Submits the form's runs and follows the main one on Live.
    pub fn start(&mut self) {
        let mut cx = ctx!(self);
        if let Some(nav) = self.form.start(&self.context, &mut cx) {
            self.navigate(nav);
        }
        self.settle();
    }
}
