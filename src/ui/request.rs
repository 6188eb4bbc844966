//! The UI's side effects as values. Screens put a `Request` in the app's outbox instead of doing
//! the work; the app loop hands engine commands to the engine and everything else to the
//! [`worker`](super::worker), whose answers come back as `Reply`s for [`App::on_reply`].
//!
//! [`App::on_reply`]: super::App::on_reply

use std::path::PathBuf;

use crate::engine::{Command, RunId};
use crate::pool::entry::PoolEntry;
use crate::run::record::{CurvePoint, RunRecord};
use crate::run::spec::RunSpec;
use crate::run::store::RunSummary;

use super::watch::RunUpdate;

/// Something the app loop does on the UI's behalf.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Engine(Command),
    /// Download a Hub adapter into the HF cache.
    Download(String),
    /// Cancel a Slurm job (`scancel`), by its key (`12_3`).
    Scancel(String),
    /// Read an ended run's history: its record ([`Reply::Record`]), or the curve of a run
    /// that has none ([`Reply::Curve`]).
    LoadRun(RunId),
    /// List the store's runs ([`Reply::Runs`]).
    ListRuns,
    /// Read a run's spec to queue it again or its twin ([`Reply::Spec`]).
    ReadSpec {
        run: RunId,
        then: Resubmit,
    },
    /// Write a spec file ([`Reply::Message`]).
    SaveSpec {
        path: PathBuf,
        text: String,
    },
    /// Read a spec file into the form ([`Reply::SpecFile`]).
    LoadSpec {
        path: PathBuf,
    },
    /// Look in a folder typed as the form's task for the task files ([`Reply::TaskChecked`]).
    CheckTask(PathBuf),
    /// Give a run a name; an empty one clears it ([`Reply::Renamed`]).
    Rename {
        run: RunId,
        name: String,
    },
    /// Write Compare's table as `compare.md` and `compare.csv` in the working directory.
    WriteTable {
        md: String,
        csv: String,
    },
}

/// What to queue from a run's spec once it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resubmit {
    Retry,
    RandomTwin,
    BaseTwin,
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
    /// The curve of a run without a record (cancelled, failed, interrupted).
    Curve(RunId, Vec<CurvePoint>),
    Runs(Vec<RunSummary>),
    Spec {
        run: RunId,
        then: Resubmit,
        spec: Result<Box<RunSpec>, String>,
    },
    SpecFile {
        path: PathBuf,
        spec: Result<Box<RunSpec>, String>,
    },
    /// A run's label after a rename, or why the rename failed.
    Renamed {
        run: RunId,
        label: Result<String, String>,
    },
    /// The task files (`train.jsonl`, …) that `folder` lacks.
    TaskChecked {
        folder: String,
        missing: Vec<String>,
    },
}
