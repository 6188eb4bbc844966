//! The run store: one folder per run under the runs directory.
//!
//! - `spec.toml`   the spec as submitted (written once, atomically)
//! - `status.json` state, owner process, timestamps, error (rewritten atomically on every change)
//! - `curves.jsonl` one line per step, appended and flushed as the run goes
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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::atomic_write::write_atomic;
use crate::process::{host_name, process_alive};
use crate::run::event::RunEvent;
use crate::run::record::{CurvePoint, RunRecord, RunStatus, new_run_id, now_rfc3339};
use crate::run::spec::RunSpec;
use crate::slurm::SlurmJob;

/// How long a running run on another host may stay silent before it counts as interrupted.
pub const STALE_AFTER: Duration = Duration::from_secs(600);
/// How often a running run rewrites its status at most (stage changes are written at once).
pub const HEARTBEAT: Duration = Duration::from_secs(3);

/// The stage a running run is in, as its status file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageStatus {
    pub name: String,
    pub done: usize,
    pub total: usize,
}

/// A run's state as the store knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Queued,
    Running,
    Finished,
    Failed,
    Cancelled,
    Interrupted,
}

impl RunState {
    pub fn is_live(self) -> bool {
        matches!(self, RunState::Queued | RunState::Running)
    }

    pub fn name(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Interrupted => "interrupted",
        }
    }
}

impl From<RunStatus> for RunState {
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Finished => RunState::Finished,
            RunStatus::Cancelled => RunState::Cancelled,
            RunStatus::Failed => RunState::Failed,
            RunStatus::Interrupted => RunState::Interrupted,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusFile {
    pub id: String,
    pub label: String,
    pub state: RunState,
    /// The process that owns the run while it is queued or running, and its host.
    pub pid: u32,
    #[serde(default)]
    pub host: String,
    /// The Slurm job the owner runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmJob>,
    pub submitted: String,
    pub updated: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<StageStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `runs list` shows of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    pub label: String,
    pub state: RunState,
    pub submitted: String,
    pub steps: usize,
    /// The host, process id and Slurm job of the process that ran it (pid 0 when unknown).
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmJob>,
    /// When its status last changed (its heartbeat while running).
    #[serde(default)]
    pub updated: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<StageStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_match: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

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
    #[error("the runs directory {0} is a file, not a folder")]
    NotAFolder(PathBuf),
    #[error("run {0:?} is still {1}; cancel it first")]
    Live(String, &'static str),
    #[error("no free run id in {0} after 32 tries")]
    NoFreeId(PathBuf),
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

/// One run's folder, open for writing by its owner.
#[derive(Debug)]
pub struct RunFolder {
    pub dir: PathBuf,
    status: StatusFile,
    curves: Option<std::fs::File>,
    last_write: Instant,
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
        if !crate::pool::is_plain_name(id) || id.starts_with('.') {
            return Err(StoreError::NoRun(id.into()));
        }
        let dir = self.root.join(id);
        if dir.join("status.json").is_file() || dir.join("record.json").is_file() {
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
        let mut folder = RunFolder {
            dir,
            status: StatusFile {
                id,
                label,
                state: RunState::Queued,
                pid: std::process::id(),
                host: host_name(),
                slurm: SlurmJob::from_env(),
                submitted: now.clone(),
                updated: now,
                stage: None,
                error: None,
            },
            curves: None,
            last_write: Instant::now(),
        };
        folder.write_status()?;
        Ok(folder)
    }

    pub fn read_status(dir: &Path) -> Option<StatusFile> {
        let text = std::fs::read_to_string(dir.join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The curve written so far; a torn last line (a crash mid-write) is skipped.
    pub fn read_curve(dir: &Path) -> Vec<CurvePoint> {
        std::fs::read_to_string(dir.join("curves.jsonl"))
            .map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The number of whole lines in the curve (one per step), counted without parsing them: the
    /// watcher asks for it every second for every live run, whose curve may be long.
    pub fn curve_steps(dir: &Path) -> usize {
        std::fs::read(dir.join("curves.jsonl"))
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0)
    }

    pub fn read_record(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let path = self.dir_of(id)?.join("record.json");
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(serde_json::from_str(&t).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The state, with live runs of dead processes reported as interrupted: on this host by their
    /// pid, on another by a running run's heartbeat older than [`STALE_AFTER`].
    pub fn effective(status: &StatusFile) -> RunState {
        if !status.state.is_live() {
            return status.state;
        }
        if status.host.is_empty() || status.host == host_name() {
            if !process_alive(status.pid) {
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
        let record = self.read_record(id)?;
        let status = Self::read_status(&dir);
        let (label, state, submitted, error) = match (&status, &record) {
            (Some(s), _) => (
                s.label.clone(),
                Self::effective(s),
                s.submitted.clone(),
                s.error.clone(),
            ),
            (None, Some(r)) => (r.label.clone(), r.status.into(), r.started.clone(), None),
            (None, None) => return Err(StoreError::NoRun(id.into())),
        };
        let status = status.unwrap_or_else(|| StatusFile {
            id: id.into(),
            label: label.clone(),
            state,
            pid: 0,
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
        };
        Ok((summary, record))
    }

    /// The names of the store's folders (run ids and anything else kept beside them), sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
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

    /// Removes a finished, failed, cancelled or interrupted run.
    /// The run named by `id`, or by a prefix of exactly one run's id (its time stamp, say).
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
            0 => Err(StoreError::NoRun(id.into())),
            n => {
                let mut some = matches[..n.min(4)].join(", ");
                if n > 4 {
                    some.push_str(", …");
                }
                Err(StoreError::Ambiguous(id.into(), n, some))
            }
        }
    }

    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let s = self.summary(id)?;
        if s.state.is_live() {
            return Err(StoreError::Live(id.into(), s.state.name()));
        }
        let dir = self.dir_of(id)?;
        std::fs::remove_dir_all(&dir).map_err(io(&dir))
    }

    pub fn run_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        self.dir_of(id)
    }
}

/// How long ago an RFC 3339 time was (None when it does not parse or lies ahead).
fn age(stamp: &str) -> Option<Duration> {
    let t = humantime::parse_rfc3339_weak(stamp).ok()?;
    SystemTime::now().duration_since(t).ok()
}

impl RunFolder {
    fn write_status(&mut self) -> Result<(), StoreError> {
        self.status.updated = now_rfc3339();
        self.last_write = Instant::now();
        let path = self.dir.join("status.json");
        let text = serde_json::to_string_pretty(&self.status).expect("status serialises");
        write_atomic(&path, text.as_bytes()).map_err(io(&path))
    }

    pub fn set_state(&mut self, state: RunState, error: Option<String>) -> Result<(), StoreError> {
        self.status.state = state;
        self.status.error = error;
        if !state.is_live() {
            self.status.stage = None;
        }
        self.write_status()
    }

    /// Records the stage in flight: written at once when the stage changes, else at most every
    /// [`HEARTBEAT`] (which is also what tells other hosts the run is alive).
    pub fn progress(&mut self, stage: StageStatus) -> Result<(), StoreError> {
        let changed = self.status.stage.as_ref().map(|s| &s.name) != Some(&stage.name);
        self.status.stage = Some(stage);
        if changed || self.last_write.elapsed() >= HEARTBEAT {
            self.write_status()?;
        }
        Ok(())
    }

    /// Rewrites the status if the last write is older than [`HEARTBEAT`].
    pub fn heartbeat(&mut self) -> Result<(), StoreError> {
        if self.last_write.elapsed() >= HEARTBEAT {
            self.write_status()?;
        }
        Ok(())
    }

    /// Writes what a run event leaves in the store: a curve point, the stage and the heartbeat.
    pub fn observe(&mut self, e: &RunEvent) -> Result<(), StoreError> {
        match e {
            RunEvent::Stage { name, total } => self.progress(StageStatus {
                name: name.clone(),
                done: 0,
                total: *total,
            }),
            RunEvent::Advance(done) => {
                let mut s = self.status.stage.clone().unwrap_or(StageStatus {
                    name: String::new(),
                    done: 0,
                    total: 0,
                });
                s.done = *done;
                self.progress(s)
            }
            RunEvent::Curve(p) => {
                self.append_curve(p)?;
                self.heartbeat()
            }
            _ => self.heartbeat(),
        }
    }

    pub fn slurm(&self) -> Option<&SlurmJob> {
        self.status.slurm.as_ref()
    }

    /// Appends one curve point and flushes it to the file.
    pub fn append_curve(&mut self, p: &CurvePoint) -> Result<(), StoreError> {
        let path = self.dir.join("curves.jsonl");
        if self.curves.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            self.curves = Some(f);
        }
        let f = self.curves.as_mut().expect("opened above");
        let mut line = serde_json::to_string(p).expect("point serialises");
        line.push('\n');
        f.write_all(line.as_bytes()).map_err(io(&path))?;
        f.flush().map_err(io(&path))
    }

    /// Writes the final record and the matching state.
    pub fn finish(&mut self, record: &RunRecord) -> Result<(), StoreError> {
        let path = self.dir.join("record.json");
        let json = serde_json::to_string_pretty(record).expect("record serialises");
        write_atomic(&path, json.as_bytes()).map_err(io(&path))?;
        self.set_state(record.status.into(), None)
    }

    pub fn id(&self) -> &str {
        &self.status.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> RunSpec {
        RunSpec::from_toml(
            &format!("name = {name:?}\n[task]\nlab = \"caesar-5\"\n"),
            Path::new("t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn concurrent_writers_get_their_own_folders() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path()).unwrap();
        // Eight writers create 25 runs each, all with the same label in the same second.
        let ids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..25)
                            .map(|_| {
                                let mut f = store.create(&spec("same cell")).unwrap();
                                f.set_state(RunState::Running, None).unwrap();
                                f.append_curve(&CurvePoint {
                                    step: 1,
                                    train_loss: 1.0,
                                    val_loss: None,
                                })
                                .unwrap();
                                f.id().to_string()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!((ids.len(), unique.len()), (200, 200));
        let listed = store.list();
        assert_eq!(listed.len(), 200);
        assert!(
            listed
                .iter()
                .all(|s| s.steps == 1 && s.label == "same cell")
        );
        // Nothing but run folders: no lock or temporary files left beside them.
        let stray: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| !e.path().is_dir())
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }

    fn status(host: &str, state: RunState, updated_ago: u64) -> StatusFile {
        let t = SystemTime::now() - Duration::from_secs(updated_ago);
        StatusFile {
            id: "r".into(),
            label: "r".into(),
            state,
            pid: u32::MAX - 1,
            host: host.into(),
            slurm: None,
            submitted: now_rfc3339(),
            updated: humantime::format_rfc3339_seconds(t).to_string(),
            stage: None,
            error: None,
        }
    }

    #[test]
    fn liveness_by_pid_here_and_by_heartbeat_elsewhere() {
        let here = host_name();
        // A pid that does not exist on this host: interrupted at once.
        assert_eq!(
            RunStore::effective(&status(&here, RunState::Running, 0)),
            RunState::Interrupted
        );
        // Another host's pid means nothing here; its heartbeat does.
        let other = format!("{here}-other");
        assert_eq!(
            RunStore::effective(&status(&other, RunState::Running, 30)),
            RunState::Running
        );
        assert_eq!(
            RunStore::effective(&status(&other, RunState::Running, 601)),
            RunState::Interrupted
        );
        // Queued runs wait without a heartbeat; final states stay.
        assert_eq!(
            RunStore::effective(&status(&other, RunState::Queued, 9999)),
            RunState::Queued
        );
        assert_eq!(
            RunStore::effective(&status(&other, RunState::Finished, 9999)),
            RunState::Finished
        );
    }

    #[test]
    fn status_records_stage_and_heartbeat() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path()).unwrap();
        let mut f = store.create(&spec("x")).unwrap();
        f.set_state(RunState::Running, None).unwrap();
        f.observe(&RunEvent::Stage {
            name: "scoring adapters".into(),
            total: 119,
        })
        .unwrap();
        // Within the heartbeat the count waits; a new stage is written at once.
        f.observe(&RunEvent::Advance(7)).unwrap();
        let s = store.summary(f.id()).unwrap();
        assert_eq!(
            s.stage,
            Some(StageStatus {
                name: "scoring adapters".into(),
                done: 0,
                total: 119
            })
        );
        assert_eq!(s.host, host_name());
        f.observe(&RunEvent::Stage {
            name: "tuning coefficients".into(),
            total: 100,
        })
        .unwrap();
        let s = store.summary(f.id()).unwrap();
        assert_eq!(s.stage.unwrap().name, "tuning coefficients");
        f.set_state(RunState::Failed, Some("boom".into())).unwrap();
        let s = store.summary(f.id()).unwrap();
        assert_eq!(
            (s.state, s.stage, s.error),
            (RunState::Failed, None, Some("boom".into()))
        );
    }

    #[test]
    fn a_prefix_names_a_run_when_it_names_one() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RunStore::open(tmp.path()).unwrap();
        let ids: Vec<String> = (1..=6)
            .map(|i| format!("20261129T120000Z-caesar-5-base-000{i}"))
            .collect();
        for id in &ids {
            std::fs::create_dir(tmp.path().join(id)).unwrap();
            std::fs::write(tmp.path().join(id).join("status.json"), "{}").unwrap();
        }
        // A folder that is not a run does not count.
        std::fs::create_dir(tmp.path().join("20261130T000000Z-notes")).unwrap();
        assert_eq!(store.resolve(&ids[0]).unwrap(), ids[0]);
        assert_eq!(
            store
                .resolve("20261129T120000Z-caesar-5-base-0003")
                .unwrap(),
            ids[2]
        );
        assert_eq!(
            store.resolve("20261129T12").unwrap_err().to_string(),
            format!(
                "\"20261129T12\" begins 6 run ids ({}, …); give more of the id",
                ids[..4].join(", ")
            )
        );
        for missing in ["20261130", "", "2001"] {
            assert_eq!(
                store.resolve(missing).unwrap_err().to_string(),
                format!("no run {missing:?} in the runs directory")
            );
        }
    }

    #[test]
    fn a_runs_directory_that_is_a_file_is_named_as_such() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("runs");
        std::fs::write(&file, "").unwrap();
        let Err(e) = RunStore::open(&file) else {
            panic!("a file is no runs directory");
        };
        assert_eq!(
            e.to_string(),
            format!(
                "the runs directory {} is a file, not a folder",
                file.display()
            )
        );
    }

    #[test]
    fn curve_steps_counts_whole_lines_only() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(RunStore::curve_steps(tmp.path()), 0);
        std::fs::write(
            tmp.path().join("curves.jsonl"),
            "{\"step\":1,\"train_loss\":2.0}\n{\"step\":2,\"train_loss\":1.5}\n{\"step\":3,\"tr",
        )
        .unwrap();
        assert_eq!(RunStore::curve_steps(tmp.path()), 2);
        assert_eq!(RunStore::read_curve(tmp.path()).len(), 2);
    }
}
