//! One run's folder while its owner writes it: the status (stage, heartbeat, final state), the
//! curve as it grows, the run's event stream and the final record.
//!
//! `events.jsonl` is what a UI following the run from another process reads as it grows: the
//! run's events (curve points, the coefficient layout and every coefficient snapshot, the chosen
//! adapters, log lines) as JSON lines in the engine protocol's own form, the lines a `serve`
//! client reads from the socket. One reducer (`RunView::apply`) reads both.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use super::status::{HEARTBEAT, RunState, StageStatus, StatusFile};
use super::{StoreError, io};
use crate::atomic_write::write_atomic;
use crate::engine::protocol::{Event, RunId};
use crate::run::event::RunEvent;
use crate::run::record::{CurvePoint, RunRecord, now_rfc3339};
use crate::slurm::SlurmJob;

/// The screening scores of a run that screened its pool: `{task, scores: [{name, exact_match, loss}]}`.
pub const SCREENING_FILE: &str = "screening.json";
/// The run's events as it works, one protocol event a line (see the module's note).
pub const EVENTS_FILE: &str = "events.jsonl";

/// One run's folder, open for writing by its owner.
#[derive(Debug)]
pub struct RunFolder {
    pub dir: PathBuf,
    status: StatusFile,
    curves: Option<std::fs::File>,
    events: Option<std::fs::File>,
    last_write: Instant,
    /// When the run started running in this process (throughput in the event stream counts from
    /// here).
    began: Instant,
}

impl RunFolder {
    /// The folder of a run just created by `RunStore::create`, with its first status written.
    pub(super) fn start(dir: PathBuf, status: StatusFile) -> Result<Self, StoreError> {
        let mut folder = RunFolder {
            dir,
            status,
            curves: None,
            events: None,
            last_write: Instant::now(),
            began: Instant::now(),
        };
        folder.write_status()?;
        Ok(folder)
    }

    /// Takes over run folder `dir` whose status still says queued by a process on this host
    /// that has ended (a server that stopped with the run in its queue): this process becomes
    /// its owner. None for any other run, which is not this process's to run: one that ended,
    /// or one queued or running in a live process or on another host.
    pub fn adopt(dir: PathBuf) -> Result<Option<Self>, StoreError> {
        let Some(mut status) = super::RunStore::read_status(&dir) else {
            return Ok(None);
        };
        let orphan = status.state == RunState::Queued
            && super::RunStore::effective(&status) == RunState::Interrupted
            && std::fs::symlink_metadata(dir.join("record.json")).is_err();
        if !orphan {
            return Ok(None);
        }
        status.pid = std::process::id();
        status.pid_start = crate::process::own_start_ticks();
        status.host = crate::process::host_name();
        status.slurm = SlurmJob::from_env();
        Self::start(dir, status).map(Some)
    }

    fn write_status(&mut self) -> Result<(), StoreError> {
        self.status.updated = now_rfc3339();
        self.last_write = Instant::now();
        let path = self.dir.join("status.json");
        let text = serde_json::to_string_pretty(&self.status).expect("status serialises");
        write_atomic(&path, text.as_bytes()).map_err(io(&path))
    }

    pub fn set_state(&mut self, state: RunState, error: Option<String>) -> Result<(), StoreError> {
        if state == RunState::Running && self.status.state != RunState::Running {
            // Throughput counts from the start of the work, not from the submission.
            self.began = Instant::now();
        }
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
        // Stages and their progress live in the status (rewritten, not appended); the screening
        // scores in their own file.
        if !matches!(
            e,
            RunEvent::Stage { .. } | RunEvent::Advance(_) | RunEvent::Screened { .. }
        ) {
            let event = Event::of_run(
                RunId(self.status.id.clone()),
                e.clone(),
                self.began.elapsed(),
            );
            self.append_event(&event)?;
        }
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
            // Every adapter's score, so that why top-k chose what it chose can be read later.
            RunEvent::Screened { task, scores } => {
                let path = self.dir.join(SCREENING_FILE);
                let json = serde_json::json!({ "task": task, "scores": scores });
                write_atomic(&path, json.to_string().as_bytes()).map_err(|source| {
                    StoreError::Io {
                        path: path.clone(),
                        source,
                    }
                })?;
                self.heartbeat()
            }
            _ => self.heartbeat(),
        }
    }

    pub fn slurm(&self) -> Option<&SlurmJob> {
        self.status.slurm.as_ref()
    }

    /// Appends one event to the event stream and flushes it.
    fn append_event(&mut self, e: &Event) -> Result<(), StoreError> {
        let path = self.dir.join(EVENTS_FILE);
        if self.events.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            self.events = Some(f);
        }
        let f = self.events.as_mut().expect("opened above");
        let mut line = serde_json::to_string(e).expect("events serialise");
        line.push('\n');
        f.write_all(line.as_bytes()).map_err(io(&path))?;
        f.flush().map_err(io(&path))
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
        // JSON has no NaN: serde writes a non-finite number as null, which no reader takes back.
        // A record is written only if it reads back as itself.
        if let Err(e) = serde_json::from_str::<RunRecord>(&json) {
            return Err(StoreError::UnreadableRecord {
                id: self.status.id.clone(),
                reason: e.to_string(),
            });
        }
        write_atomic(&path, json.as_bytes()).map_err(io(&path))?;
        self.set_state(record.status.into(), None)
    }

    pub fn id(&self) -> &str {
        &self.status.id
    }
}
