//! What the UI knows of one run: its state, stage, curve, coefficients, log and (once read)
//! its record, whether this UI's engine runs it or the store watcher follows it.

use std::collections::VecDeque;
use std::time::Instant;

use crate::engine::{Event, RunId};
use crate::process::host_name;
use crate::run::record::{CurvePoint, RunRecord};
use crate::run::store::{RunState, RunSummary};
use crate::slurm::SlurmJob;
use crate::ui::watch::RunUpdate;

/// The current stage of a run: name, units done, units in all, and when it began.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub done: usize,
    pub total: usize,
    pub began: Instant,
    pub last: Instant,
}

impl Stage {
    /// Seconds left at the pace so far.
    pub fn eta(&self) -> Option<f64> {
        if self.done == 0 {
            return None;
        }
        let per = self.last.duration_since(self.began).as_secs_f64() / self.done as f64;
        Some(per * self.total.saturating_sub(self.done) as f64)
    }
}

/// Everything the UI knows of one run.
#[derive(Debug, Clone)]
pub struct RunView {
    pub id: RunId,
    pub label: String,
    pub state: RunState,
    pub submitted: String,
    pub stage: Option<Stage>,
    pub curve: Vec<CurvePoint>,
    pub throughput: Option<f64>,
    pub groups: Vec<String>,
    pub columns: Vec<String>,
    pub coefficients: Vec<(usize, Vec<Vec<f32>>)>,
    pub log: VecDeque<String>,
    pub record: Option<Box<RunRecord>>,
    pub exact_match: Option<f64>,
    pub loss: Option<f64>,
    pub error: Option<String>,
    pub marked: bool,
    /// Whether the history (curve, record) was read from the store.
    pub loaded: bool,
    /// Whether this UI's own engine runs it (its events are the truth); other runs are followed
    /// through the store.
    pub local: bool,
    /// Steps in its curve as the store last said (for a run whose curve is not loaded).
    pub steps: usize,
    /// Where another process runs it: host, process id, Slurm job and Slurm's state of that job.
    pub host: String,
    pub pid: u32,
    pub slurm: Option<SlurmJob>,
    pub slurm_state: Option<String>,
    /// When its status last changed (RFC 3339).
    pub updated: String,
    /// The adapters its selection chose, with their screening scores.
    pub chosen: Vec<crate::run::record::ChosenAdapter>,
    /// Its settings as dotted keys (the config columns and the filter).
    pub settings: std::collections::BTreeMap<String, String>,
}

impl RunView {
    pub(super) fn new(id: RunId, label: String, state: RunState) -> Self {
        RunView {
            id,
            label,
            state,
            submitted: String::new(),
            stage: None,
            curve: Vec::new(),
            throughput: None,
            groups: Vec::new(),
            columns: Vec::new(),
            coefficients: Vec::new(),
            log: VecDeque::new(),
            record: None,
            exact_match: None,
            loss: None,
            error: None,
            marked: false,
            loaded: false,
            local: false,
            steps: 0,
            host: String::new(),
            pid: 0,
            slurm: None,
            slurm_state: None,
            updated: String::new(),
            settings: Default::default(),
            chosen: Vec::new(),
        }
    }

    /// Whether another host, or Slurm, runs it.
    pub fn remote(&self) -> bool {
        self.slurm.is_some() || (!self.host.is_empty() && self.host != host_name())
    }

    /// Where it runs, for the Runs table: `host · slurm 12_3 RUNNING`.
    pub fn place(&self) -> String {
        let mut s = self.host.clone();
        if let Some(j) = &self.slurm {
            if !s.is_empty() {
                s.push_str(" · ");
            }
            s.push_str(&format!("slurm {}", j.key()));
            if let Some(state) = &self.slurm_state {
                s.push(' ');
                s.push_str(state);
            }
        }
        s
    }

    pub fn from_summary(s: &RunSummary) -> Self {
        let mut v = RunView::new(RunId(s.id.clone()), s.label.clone(), s.state);
        v.submitted = s.submitted.clone();
        v.exact_match = s.exact_match;
        v.loss = s.loss;
        v.error = s.error.clone();
        v.steps = s.steps;
        v.host = s.host.clone();
        v.pid = s.pid;
        v.slurm = s.slurm.clone();
        v.updated = s.updated.clone();
        v.settings = s.settings.clone();
        v
    }

    /// Takes what the store says of a run another process writes.
    pub(super) fn follow(&mut self, u: RunUpdate, now: Instant) {
        let s = u.summary;
        let was_live = self.state.is_live();
        self.state = s.state;
        self.label = s.label;
        self.submitted = s.submitted;
        self.exact_match = s.exact_match.or(self.exact_match);
        self.loss = s.loss.or(self.loss);
        if self.error != s.error
            && let Some(e) = &s.error
        {
            self.push_log(format!("failed: {e}"));
        }
        self.error = s.error;
        self.steps = s.steps;
        self.host = s.host;
        self.pid = s.pid;
        self.slurm = s.slurm;
        self.updated = s.updated;
        if !s.settings.is_empty() {
            self.settings = s.settings;
        }
        if self.slurm_state != u.slurm_state
            && let Some(st) = &u.slurm_state
        {
            self.push_log(format!("slurm: {st}"));
        }
        self.slurm_state = u.slurm_state;
        self.stage = match (s.stage, self.stage.take()) {
            (Some(new), Some(mut old)) if old.name == new.name => {
                if new.done != old.done {
                    old.last = now;
                }
                old.done = new.done;
                old.total = new.total;
                Some(old)
            }
            (Some(new), _) => {
                self.push_log(format!("{} ({})", new.name, new.total));
                Some(Stage {
                    name: new.name,
                    done: new.done,
                    total: new.total,
                    began: now,
                    last: now,
                })
            }
            (None, _) => None,
        };
        for e in u.events {
            self.apply(e, now);
        }
        // A run that just ended has a record (curve, coefficients, examples).
        if was_live && !self.state.is_live() {
            self.loaded = false;
            self.push_log(self.state.name().to_string());
        }
        if let Some(r) = u.record {
            self.set_record(*r);
        }
    }

    /// Takes one event of the run, from this UI's engine or from the run's event stream in its
    /// folder (a run of another process): the one place a run's state is reduced. True for an
    /// event that starts or ends the run.
    pub fn apply(&mut self, e: Event, now: Instant) -> bool {
        let lifecycle = matches!(
            e,
            Event::Started { .. }
                | Event::Finished { .. }
                | Event::Failed { .. }
                | Event::Cancelled { .. }
        );
        match e {
            Event::Started { .. } => {
                self.state = RunState::Running;
                self.push_log("started".into());
            }
            Event::Stage { name, total, .. } => {
                self.push_log(format!("{name} ({total})"));
                self.stage = Some(Stage {
                    name,
                    done: 0,
                    total,
                    began: now,
                    last: now,
                });
            }
            Event::Advance { done, .. } => {
                if let Some(s) = &mut self.stage {
                    s.done = done;
                    s.last = now;
                }
            }
            Event::Progress {
                step,
                train_loss,
                val_loss,
                throughput,
                ..
            } => {
                if throughput > 0.0 {
                    self.throughput = Some(throughput);
                }
                if self.curve.last().is_some_and(|p| p.step >= step) {
                    self.curve.retain(|p| p.step < step);
                }
                self.curve.push(CurvePoint {
                    step,
                    train_loss,
                    val_loss,
                });
                if let Some(v) = val_loss {
                    self.push_log(format!("step {step} train {train_loss:.4} val {v:.4}"));
                }
            }
            Event::Layout {
                groups, columns, ..
            } => {
                self.groups = groups;
                self.columns = columns;
            }
            Event::Coefficients { step, values, .. } => {
                if self.coefficients.last().is_some_and(|(s, _)| *s >= step) {
                    self.coefficients.retain(|(s, _)| *s < step);
                }
                self.coefficients.push((step, values));
            }
            Event::Chosen { adapters, .. } => self.chosen = adapters,
            Event::Log { line, .. } => self.push_log(line),
            Event::Finished {
                exact_match, loss, ..
            } => {
                self.state = RunState::Finished;
                self.stage = None;
                self.exact_match = Some(exact_match);
                self.loss = Some(loss);
                self.push_log(format!(
                    "finished: exact match {exact_match:.3}, loss {loss:.4}"
                ));
            }
            Event::Failed { error, .. } => {
                self.state = RunState::Failed;
                self.stage = None;
                self.push_log(format!("failed: {error}"));
                self.error = Some(error);
            }
            Event::Cancelled { .. } => {
                self.state = RunState::Cancelled;
                self.stage = None;
                self.push_log("cancelled".into());
            }
            _ => {}
        }
        lifecycle
    }

    /// Takes a finished run's record: metrics, curve and coefficients.
    pub fn set_record(&mut self, r: RunRecord) {
        self.exact_match = Some(r.metrics.exact_match.mean);
        self.loss = Some(r.metrics.loss.mean);
        self.label = r.label.clone();
        self.settings = r.spec.settings();
        self.chosen = r.chosen.clone();
        if self.curve.len() < r.curve.len() {
            self.curve = r.curve.clone();
        }
        if let Some(c) = &r.coefficients {
            self.groups = c.groups.clone();
            self.columns = c.columns.clone();
        }
        if self.coefficients.len() < r.coefficient_curve.len() {
            self.coefficients = r
                .coefficient_curve
                .iter()
                .map(|s| (s.step, s.values.clone()))
                .collect();
        }
        self.record = Some(Box::new(r));
        self.loaded = true;
    }

    /// What the runs filter reads of it.
    pub fn fields(&self) -> crate::run::filter::RunFields<'_> {
        crate::run::filter::RunFields {
            id: &self.id.0,
            label: &self.label,
            state: self.state.name(),
            exact: self.exact_match,
            loss: self.loss,
            settings: &self.settings,
        }
    }

    pub(super) fn push_log(&mut self, line: String) {
        if self.log.len() == 200 {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }
}
