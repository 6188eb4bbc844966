//! The run store: one folder per run under the runs directory.
//!
//! - `spec.toml`   the spec as submitted (written once, atomically)
//! - `status.json` state, owner process, timestamps, error (rewritten atomically on every change)
//! - `curves.jsonl` one line per step, appended and flushed as the run goes
//! - `events.jsonl` the run's events (curve, coefficients, chosen adapters, log) as the engine
//!   protocol's JSON lines, appended as they come: what another process follows the run by
//! - `record.json` the final record (atomically, when the run finishes)
//!
//! A crash loses at most the step in flight: a half-written last curve line is skipped when read.
//! A run whose status says queued or running but whose owner process is gone is reported as
//! `interrupted`, with its curve up to the last completed step.
//!
//! Many processes on many hosts may write one store (a study's Slurm array on a shared
//! filesystem): each run has its own folder, created with an exclusive `mkdir` under an id with
//! random digits (a clash draws again), and every file but the curve is replaced by an atomic
//! rename of a uniquely named temporary file. There are no lock files. A running run rewrites its
//! status every few seconds with its stage (a heartbeat): a run on another host whose status has
//! not changed for [`STALE_AFTER`] is reported as interrupted, unless Slurm says more.

pub mod annotations;
mod folder;
mod status;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use annotations::Annotations;
pub use folder::{EVENTS_FILE, RunFolder};
pub use status::{HEARTBEAT, RunState, RunSummary, STALE_AFTER, StageStatus, StatusFile};

use crate::atomic_write::write_atomic;
use crate::pool::source::is_plain_name;
use crate::process::{host_name, own_start_ticks, process_alive};
use crate::run::record::{CurvePoint, RunRecord, new_run_id, now_rfc3339};
use crate::run::spec::RunSpec;
use crate::slurm::SlurmJob;
use crate::untrusted;
use status::age;

/// The coefficients of a run at its newest validation check: groups × columns f(c) values.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LiveCoefficients {
    pub step: usize,
    pub groups: Vec<String>,
    pub columns: Vec<String>,
    pub values: Vec<Vec<f32>>,
}

/// The largest record or curve read back (a record with every test example's answer is a few
/// megabytes).
pub const MAX_RUN_FILE: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no run {0:?} in the runs directory")]
    NoRun(String),
    #[error("{0:?} begins {1} run ids ({2}); give more of the id")]
    Ambiguous(String, usize, String),
    #[error("{0:?} is the name of {1} runs ({2}); give one's id")]
    AmbiguousName(String, usize, String),
    #[error("the runs directory {0} is a file, not a folder")]
    NotAFolder(PathBuf),
    #[error("run {0:?} is still {1}; cancel it first")]
    Live(String, &'static str),
    #[error("no free run id in {0} after 32 tries")]
    NoFreeId(PathBuf),
    #[error("{0}")]
    BadName(String),
    #[error("{path}: the record cannot be read: {reason}")]
    BadRecord { path: PathBuf, reason: String },
    #[error("the record of run {id} would not read back ({reason}); it was not written")]
    UnreadableRecord { id: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct RunStore {
    pub root: PathBuf,
}

impl RunStore {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        if root.exists() && !root.is_dir() {
            return Err(StoreError::NotAFolder(root.to_path_buf()));
        }
        std::fs::create_dir_all(root).map_err(io(root))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// A run id that names a plain folder of this store.
    fn dir_of(&self, id: &str) -> Result<PathBuf, StoreError> {
        if !is_plain_name(id) || id.starts_with('.') {
            return Err(StoreError::NoRun(id.into()));
        }
        let dir = self.root.join(id);
        // A run folder is a real folder, never a link to one elsewhere (nothing is written or
        // removed through it). Its files need only exist: one that is not a regular file is
        // reported as unreadable when read, which lists the run rather than hiding it.
        let real_dir = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
        let has = |name: &str| std::fs::symlink_metadata(dir.join(name)).is_ok();
        if real_dir && (has("status.json") || has("record.json")) {
            Ok(dir)
        } else {
            Err(StoreError::NoRun(id.into()))
        }
    }

    /// Creates the folder of a newly submitted run under a fresh id (state queued, owned by this
    /// process, with the Slurm job it runs in). The folder is made with an exclusive `mkdir`, so
    /// two writers never share one, whatever host they run on.
    pub fn create(&self, spec: &RunSpec) -> Result<RunFolder, StoreError> {
        let label = spec.label();
        let mut made = None;
        for _ in 0..32 {
            let id = new_run_id(&label);
            let dir = self.root.join(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    made = Some((id, dir));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(&dir)(e)),
            }
        }
        let (id, dir) = made.ok_or_else(|| StoreError::NoFreeId(self.root.clone()))?;
        let spec_path = dir.join("spec.toml");
        write_atomic(&spec_path, spec.to_toml().as_bytes()).map_err(io(&spec_path))?;
        let now = now_rfc3339();
        let submitted = crate::run::record::now_rfc3339_millis();
        RunFolder::start(
            dir,
            StatusFile {
                id,
                label,
                state: RunState::Queued,
                pid: std::process::id(),
                pid_start: own_start_ticks(),
                host: host_name(),
                slurm: SlurmJob::from_env(),
                submitted,
                updated: now,
                stage: None,
                error: None,
            },
        )
    }

    pub fn read_status(dir: &Path) -> Option<StatusFile> {
        Self::status_or_why(dir).ok().flatten()
    }

    /// The status file: None where there is none, the reason where it cannot be read (not a
    /// regular file, too large, not a status).
    fn status_or_why(dir: &Path) -> Result<Option<StatusFile>, String> {
        let path = dir.join("status.json");
        match untrusted::read_text(&path, untrusted::SMALL) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{}: not a run status: {e}", path.display())),
            Err(untrusted::UntrustedError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// The curve written so far; a torn last line (a crash mid-write) is skipped.
    pub fn read_curve(dir: &Path) -> Vec<CurvePoint> {
        untrusted::read(&dir.join("curves.jsonl"), MAX_RUN_FILE)
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The run's event stream (`events.jsonl`) so far; a torn last line is skipped.
    pub fn read_events(dir: &Path) -> Vec<crate::engine::protocol::Event> {
        untrusted::read(&dir.join(EVENTS_FILE), MAX_RUN_FILE)
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The newest coefficient snapshot in a run's event stream, with the layout it reads by:
    /// what a run still in flight has to show of its coefficients.
    pub fn latest_coefficients(dir: &Path) -> Option<LiveCoefficients> {
        use crate::engine::protocol::Event;
        let mut layout = (Vec::new(), Vec::new());
        let mut latest = None;
        for e in Self::read_events(dir) {
            match e {
                Event::Layout {
                    groups, columns, ..
                } => layout = (groups, columns),
                Event::Coefficients { step, values, .. } => latest = Some((step, values)),
                _ => {}
            }
        }
        latest.map(|(step, values)| LiveCoefficients {
            step,
            groups: layout.0,
            columns: layout.1,
            values,
        })
    }

    /// The number of whole lines in the curve (one per step), counted without parsing them: the
    /// watcher asks for it every second for every live run, whose curve may be long.
    pub fn curve_steps(dir: &Path) -> usize {
        untrusted::read(&dir.join("curves.jsonl"), MAX_RUN_FILE)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0)
    }

    pub fn read_record(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let path = self.dir_of(id)?.join("record.json");
        match untrusted::read_text(&path, MAX_RUN_FILE) {
            Ok(t) => {
                let mut record: RunRecord =
                    serde_json::from_str(&t).map_err(|e| StoreError::BadRecord {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                Annotations::read(&self.dir_of(id)?).apply(&mut record);
                Ok(Some(record))
            }
            Err(untrusted::UntrustedError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            // A FIFO, a device, a huge or binary file: the run is listed with this as its error.
            Err(e) => Err(StoreError::BadRecord {
                path: path.clone(),
                reason: e.into_io().to_string(),
            }),
        }
    }

    /// The state, with live runs of dead processes reported as interrupted: on this host by their
    /// pid and its start time (a reused pid is another process), on another by a running run's heartbeat older than [`STALE_AFTER`].
    pub fn effective(status: &StatusFile) -> RunState {
        if !status.state.is_live() {
            return status.state;
        }
        if status.host.is_empty() || status.host == host_name() {
            if !process_alive(status.pid, status.pid_start) {
                return RunState::Interrupted;
            }
        } else if status.state == RunState::Running
            && age(&status.updated).is_some_and(|a| a > STALE_AFTER)
        {
            return RunState::Interrupted;
        }
        status.state
    }

    pub fn summary(&self, id: &str) -> Result<RunSummary, StoreError> {
        self.summary_and_record(id).map(|(s, _)| s)
    }

    /// The summary and, for a run that has one, its record — read once for both.
    pub fn summary_and_record(
        &self,
        id: &str,
    ) -> Result<(RunSummary, Option<RunRecord>), StoreError> {
        self.summary_with(id, true)
    }

    /// As [`RunStore::summary_and_record`], but a run without a record gets `steps` 0 instead of
    /// a count of its curve's lines: for a caller that reads the curve itself (the TUI's
    /// watcher follows it by offset) or has no use for the count.
    pub fn summary_and_record_uncounted(
        &self,
        id: &str,
    ) -> Result<(RunSummary, Option<RunRecord>), StoreError> {
        self.summary_with(id, false)
    }

    fn summary_with(
        &self,
        id: &str,
        count_steps: bool,
    ) -> Result<(RunSummary, Option<RunRecord>), StoreError> {
        let dir = self.dir_of(id)?;
        // A record that does not parse leaves the run listed, with the reason as its error.
        let (record, unreadable) = match self.read_record(id) {
            Ok(r) => (r, None),
            Err(e @ StoreError::BadRecord { .. }) => (None, Some(e.to_string())),
            Err(e) => return Err(e),
        };
        let (status, unreadable) = match Self::status_or_why(&dir) {
            Ok(s) => (s, unreadable),
            Err(why) => (None, unreadable.or(Some(why))),
        };
        let (label, state, submitted, error) = match (&status, &record) {
            (Some(s), _) => (
                s.label.clone(),
                Self::effective(s),
                s.submitted.clone(),
                s.error.clone(),
            ),
            (None, Some(r)) => (r.label.clone(), r.status.into(), r.started.clone(), None),
            (None, None) if unreadable.is_none() => return Err(StoreError::NoRun(id.into())),
            (None, None) => (id.into(), RunState::Failed, String::new(), None),
        };
        let error = unreadable.or(error);
        let notes = Annotations::read(&dir);
        let label = notes.name.clone().unwrap_or(label);
        // The settings from the record's spec, else from the spec as submitted.
        let settings = match &record {
            Some(r) => r.spec.settings(),
            None => RunSpec::read(&dir.join("spec.toml"))
                .map(|s| s.settings())
                .unwrap_or_default(),
        };
        let status = status.unwrap_or_else(|| StatusFile {
            id: id.into(),
            label: label.clone(),
            state,
            pid: 0,
            pid_start: None,
            host: String::new(),
            slurm: None,
            submitted: submitted.clone(),
            updated: submitted.clone(),
            stage: None,
            error: None,
        });
        let steps = match &record {
            Some(r) => r.curve.len(),
            None if count_steps => Self::curve_steps(&dir),
            None => 0,
        };
        let summary = RunSummary {
            id: id.into(),
            label,
            state,
            submitted,
            steps,
            host: status.host,
            pid: status.pid,
            slurm: status.slurm,
            updated: status.updated,
            stage: status.stage.filter(|_| state == RunState::Running),
            exact_match: record.as_ref().map(|r| r.metrics.exact_match.mean),
            loss: record.as_ref().map(|r| r.metrics.loss.mean),
            error,
            settings,
        };
        Ok((summary, record))
    }

    /// The names of the store's folders (run ids and anything else kept beside them), sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    // The entry's own type: a link to a folder elsewhere is not a run.
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Every run, oldest first.
    pub fn list(&self) -> Vec<RunSummary> {
        let ids = self.ids();
        let mut out: Vec<RunSummary> = ids.iter().filter_map(|id| self.summary(id).ok()).collect();
        out.sort_by(|a, b| a.submitted.cmp(&b.submitted).then(a.id.cmp(&b.id)));
        out
    }

    /// The run named by `id`: its id, a prefix of exactly one run's id (its time stamp, say), or
    /// the name (or label) of exactly one run, as `runs list` shows it.
    pub fn resolve(&self, id: &str) -> Result<String, StoreError> {
        if self.dir_of(id).is_ok() {
            return Ok(id.to_string());
        }
        if id.is_empty() {
            return Err(StoreError::NoRun(id.into()));
        }
        let matches: Vec<String> = self
            .ids()
            .into_iter()
            .filter(|i| i.starts_with(id) && self.dir_of(i).is_ok())
            .collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().expect("one")),
            0 => self.by_name(id),
            n => {
                let mut some = matches[..n.min(4)].join(", ");
                if n > 4 {
                    some.push_str(", …");
                }
                Err(StoreError::Ambiguous(id.into(), n, some))
            }
        }
    }

    /// The one run whose name (or label) is `name`.
    fn by_name(&self, name: &str) -> Result<String, StoreError> {
        let named: Vec<String> = self
            .list()
            .into_iter()
            .filter(|s| s.label == name)
            .map(|s| s.id)
            .collect();
        match named.len() {
            0 => Err(StoreError::NoRun(name.into())),
            1 => Ok(named.into_iter().next().expect("one")),
            n => {
                let mut some = named[..n.min(4)].join(", ");
                if n > 4 {
                    some.push_str(", …");
                }
                Err(StoreError::AmbiguousName(name.into(), n, some))
            }
        }
    }

    /// Removes a finished, failed, cancelled or interrupted run.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let s = self.summary(id)?;
        if s.state.is_live() {
            return Err(StoreError::Live(id.into(), s.state.name()));
        }
        let dir = self.dir_of(id)?;
        std::fs::remove_dir_all(&dir).map_err(io(&dir))
    }

    /// Gives run `id` a name (an empty one takes the name away, back to the label its spec
    /// gives); the name it has now. Queued and running runs can be renamed too: the name is kept
    /// apart from the files the run writes.
    pub fn rename(&self, id: &str, name: &str) -> Result<Option<String>, StoreError> {
        let name = annotations::check_name(name).map_err(StoreError::BadName)?;
        self.annotate(id, |a| a.name = name.clone())?;
        Ok(name)
    }

    /// Changes run `id`'s annotations with `f` and writes them back atomically.
    pub fn annotate(
        &self,
        id: &str,
        f: impl FnOnce(&mut Annotations),
    ) -> Result<Annotations, StoreError> {
        let dir = self.dir_of(id)?;
        let mut notes = Annotations::read(&dir);
        f(&mut notes);
        notes
            .write(&dir)
            .map_err(io(&dir.join(annotations::FILE)))?;
        Ok(notes)
    }

    pub fn run_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        self.dir_of(id)
    }
}
