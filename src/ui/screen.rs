//! Screens that own their state. Each takes the actions of its keymap scope and says where to
//! go next as a [`Nav`]; what must happen outside goes into the outbox through [`Ctx`]. The app
//! routes keys, events and replies to them.

pub mod compare;
pub mod help;
pub mod live;
pub mod new_run;
pub mod pool;
pub mod run_ops;
pub mod runs;

use super::keymap::Action;
use super::request::Request;
use crate::engine::{Command, RunId};
use crate::pool::PoolSource;
use crate::run::spec::RunSpec;

/// Where the UI runs: shown in the tab bar and used for new specs.
#[derive(Debug, Clone)]
pub struct Context {
    /// The base model as a spec writes it (`lab`, a folder or a Hub id).
    pub model: String,
    pub source: PoolSource,
    pub device: String,
}

/// A question waiting for y/n.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirm {
    Quit,
    Delete(RunId),
}

/// What a screen may touch beyond its own state.
pub struct Ctx<'a> {
    pub outbox: &'a mut Vec<Request>,
    pub message: &'a mut Option<String>,
    /// The last submission ticket handed out.
    pub tickets: &'a mut u64,
}

impl Ctx<'_> {
    pub fn say(&mut self, line: impl Into<String>) {
        *self.message = Some(line.into());
    }

    pub fn push(&mut self, r: Request) {
        self.outbox.push(r);
    }

    /// Asks the engine to queue `spec`; its answer (`Queued` or `Rejected`) carries the ticket
    /// returned here.
    pub fn submit(&mut self, spec: RunSpec) -> u64 {
        *self.tickets += 1;
        let ticket = *self.tickets;
        self.outbox.push(Request::Engine(Command::Submit {
            spec: Box::new(spec),
            ticket,
        }));
        ticket
    }
}

/// Where a screen sends the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Nav {
    /// The New run form, with these adapters picked by hand (none: as it was).
    NewRunWith(Vec<String>),
    /// Live, showing run `i` of the run list.
    Live(usize),
    /// Live, following the run submitted with this ticket once the engine queues it.
    Follow(u64),
    /// A y/n question; the answer goes to the app.
    Ask(Confirm),
}

/// Moves a cursor over `n` rows; `page` rows per page.
pub fn move_cursor(cursor: &mut usize, n: usize, a: Action, page: usize) -> bool {
    if n == 0 {
        return false;
    }
    let c = *cursor;
    *cursor = match a {
        Action::Up => c.saturating_sub(1),
        Action::Down => (c + 1).min(n - 1),
        Action::PageUp => c.saturating_sub(page),
        Action::PageDown => (c + page).min(n - 1),
        Action::Top => 0,
        Action::Bottom => n - 1,
        _ => return false,
    };
    true
}
