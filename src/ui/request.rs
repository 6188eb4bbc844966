//! The UI's side effects as values. Screens put a `Request` in the app's outbox instead of doing
//! the work; the app loop hands engine commands to the engine and everything else to the
//! [`worker`](super::worker), whose answers come back as `Reply`s for [`App::on_reply`].
//!
//! [`App::on_reply`]: super::App::on_reply

use crate::engine::{Command, RunId};
use crate::pool::entry::PoolEntry;
use crate::run::record::RunRecord;

use super::watch::RunUpdate;

/// Something the app loop does on the UI's behalf.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Engine(Command),
    /// Download a Hub adapter into the HF cache.
    Download(String),
    /// Cancel a Slurm job (`scancel`), by its key (`12_3`).
    Scancel(String),
    /// Read a finished run's record from the store; it comes back as [`Reply::Record`].
    LoadRecord(RunId),
}

/// What the worker (and the pool listing and store watcher) tell the UI.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The pool listing's progress: what it reads, done, total.
    PoolProgress(String, usize, usize),
    Pool(Result<Vec<PoolEntry>, String>),
    /// A download's state line, and the entry re-read once it is on disk.
    Download {
        id: String,
        line: String,
        entry: Option<Box<PoolEntry>>,
    },
    /// A line for the status bar.
    Message(String),
    /// Runs that other processes write into the store.
    Store(Vec<RunUpdate>),
    Record(RunId, Box<RunRecord>),
}
