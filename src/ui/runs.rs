//! The runs the UI knows, in the order it met them: the store's history, then what this UI's
//! engine queues and what the store watcher finds. Live, Runs and Compare read it; only the
//! methods here change it, and each change moves `version`, so a screen that derives something
//! from the runs (Compare's rows) knows when to derive it again.

mod view;

use std::time::Instant;

pub use view::{RunView, Stage};

use super::watch::RunUpdate;
use crate::engine::{Event, RunId};
use crate::process::host_name;
use crate::run::record::{CurvePoint, RunRecord};
use crate::run::store::{RunState, RunSummary};

#[derive(Debug, Clone, Default)]
pub struct RunList {
    runs: Vec<RunView>,
    version: u64,
}

/// Reading is open to all; changing goes through the methods below, which count versions.
impl std::ops::Deref for RunList {
    type Target = [RunView];

    fn deref(&self) -> &[RunView] {
        &self.runs
    }
}

impl RunList {
    /// Moves at every change of membership, state, mark or history.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn index_of(&self, id: &RunId) -> Option<usize> {
        self.runs.iter().position(|r| r.id == *id)
    }

    /// The run this UI's engine has in flight.
    pub fn running(&self) -> Option<&RunView> {
        self.runs
            .iter()
            .find(|r| r.local && r.state == RunState::Running)
    }

    /// Takes the store's history (the answer to a `ListRuns` request) ahead of the runs that
    /// engine events or the watcher brought in meanwhile.
    pub fn set_history(&mut self, summaries: Vec<RunSummary>) {
        let mut runs: Vec<RunView> = summaries
            .iter()
            .filter(|s| !self.runs.iter().any(|r| r.id.0 == s.id))
            .map(RunView::from_summary)
            .collect();
        runs.append(&mut self.runs);
        self.runs = runs;
        self.version += 1;
    }

    pub fn set_marked(&mut self, i: usize, marked: bool) {
        if let Some(r) = self.runs.get_mut(i) {
            r.marked = marked;
            self.version += 1;
        }
    }

    /// The id of run `i` if its history (record or curve) has yet to be asked for; it counts as
    /// asked from now on, so it is asked once.
    pub fn to_load(&mut self, i: usize) -> Option<RunId> {
        let run = self.runs.get_mut(i)?;
        if run.loaded || run.state.is_live() {
            return None;
        }
        run.loaded = true;
        Some(run.id.clone())
    }

    /// Takes an ended run's record, read for it by the worker.
    pub fn on_record(&mut self, id: &RunId, record: RunRecord) {
        if let Some(i) = self.index_of(id) {
            self.runs[i].set_record(record);
            self.version += 1;
        }
    }

    /// Takes the curve of a run that has no record.
    pub fn on_curve(&mut self, id: &RunId, curve: Vec<CurvePoint>) {
        if let Some(i) = self.index_of(id) {
            self.runs[i].curve = curve;
        }
    }

    /// Shows run `id` under its new name (or, with none, the label its spec gives).
    pub fn rename(&mut self, id: &RunId, label: String) {
        if let Some(i) = self.index_of(id) {
            self.runs[i].label = label.clone();
            if let Some(r) = &mut self.runs[i].record {
                r.label = label;
            }
            self.version += 1;
        }
    }

    /// Forgets a deleted run; whether it was there.
    pub fn remove(&mut self, id: &RunId) -> bool {
        let n = self.runs.len();
        self.runs.retain(|r| r.id != *id);
        self.version += 1;
        self.runs.len() != n
    }

    /// Takes the watcher's news of runs that other processes write; runs of this UI's own engine
    /// keep following its events.
    pub fn on_watch(&mut self, updates: Vec<RunUpdate>) {
        let now = Instant::now();
        for u in updates {
            match self.index_of(&RunId(u.summary.id.clone())) {
                Some(i) if self.runs[i].local => {}
                Some(i) => self.runs[i].follow(u, now),
                None => {
                    let mut v = RunView::from_summary(&u.summary);
                    v.follow(u, now);
                    v.loaded = false;
                    v.log.clear();
                    self.runs.push(v);
                }
            }
        }
        self.version += 1;
    }

    /// Takes an event of this UI's engine about a run, opening a row for a run it has not met;
    /// the row's index, or None for an event about no run.
    pub fn on_event(&mut self, e: Event, now: Instant) -> Option<usize> {
        let id = e.run()?.clone();
        let i = match self.index_of(&id) {
            Some(i) => i,
            None => {
                let label = match &e {
                    Event::Queued { label, .. } | Event::Started { label, .. } => label.clone(),
                    _ => id.0.clone(),
                };
                let mut v = RunView::new(id, label, RunState::Queued);
                if let Event::Queued { settings, .. } = &e {
                    v.settings = settings.clone();
                }
                v.host = host_name();
                self.runs.push(v);
                self.version += 1;
                self.runs.len() - 1
            }
        };
        let r = &mut self.runs[i];
        // The watcher may have seen the folder first; the engine's events are the truth.
        r.local = true;
        let lifecycle = r.apply(e, now);
        if lifecycle {
            self.version += 1;
        }
        Some(i)
    }
}
