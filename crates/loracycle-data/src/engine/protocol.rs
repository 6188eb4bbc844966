//! The engine's typed protocol: `Command` in, `Event` out. The same types travel as JSON lines
//! over the server's Unix socket, so the TUI and the CLI speak to an in-process engine and to a
//! detached one alike.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::run::event::RunEvent;
use crate::run::record::CurvePoint;
use crate::run::spec::RunSpec;

/// A run's id: the name of its folder in the runs directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub String);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// Queue a run. The engine answers `Queued` or `Rejected` with the same `ticket`, so a
    /// client knows which of its submissions an answer is about (labels repeat).
    Submit {
        spec: Box<RunSpec>,
        #[serde(default)]
        ticket: u64,
    },
    /// Cancel a queued run, or stop a running one after the step in flight.
    Cancel { run: RunId },
    /// Move a queued run to `position` in the queue (0 = next).
    Reprioritise { run: RunId, position: usize },
    /// Load (and keep) a pool on the engine's model, reporting what is usable.
    LoadPool { spec: Box<RunSpec> },
    /// Score one adapter (a pool name of the spec's pool, or an adapter folder) alone on the
    /// spec's task: exact match and answer loss on the test split.
    EvaluateAdapter { spec: Box<RunSpec>, adapter: String },
    /// Remove an ended run's folder; the engine refuses a run it has queued or in flight.
    Delete { run: RunId },
    /// Rebuild a finished run's merged adapter as a PEFT folder at `out`, truncated to `rank`.
    Export {
        run: RunId,
        out: std::path::PathBuf,
        rank: usize,
    },
    /// Finish the run in flight, then stop; queued runs stay queued on disk (see
    /// [`Event::Kept`]).
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The first event on every connection to a server: where it writes its runs (a client
    /// reads records from there, whatever its own default runs directory is).
    Hello {
        runs_dir: std::path::PathBuf,
    },
    Queued {
        run: RunId,
        label: String,
        position: usize,
        /// The submission's ticket (0 when the queue was only reordered).
        #[serde(default)]
        ticket: u64,
        /// For a control queued with a run (`controls.queue`): that run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<RunId>,
        /// The run's settings as dotted keys (the Runs screen's config columns and filter).
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        settings: std::collections::BTreeMap<String, String>,
    },
    /// A submission that could not be queued: no run exists for it.
    Rejected {
        ticket: u64,
        label: String,
        error: String,
    },
    Started {
        run: RunId,
        label: String,
    },
    /// A new stage of the run with this many units.
    Stage {
        run: RunId,
        name: String,
        total: usize,
    },
    /// Units of the current stage done.
    Advance {
        run: RunId,
        done: usize,
    },
    /// A tuning step (or LoraHub generation) finished.
    Progress {
        run: RunId,
        step: usize,
        train_loss: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        val_loss: Option<f64>,
        /// Steps per second over the run so far.
        throughput: f64,
    },
    /// Coefficients f(c) (groups × columns) at a validation check.
    Coefficients {
        run: RunId,
        step: usize,
        values: Vec<Vec<f32>>,
    },
    /// Names of the coefficient matrix's rows and columns, before the first `Coefficients`.
    Layout {
        run: RunId,
        groups: Vec<String>,
        columns: Vec<String>,
    },
    /// Every pool adapter's screening score on a run's task.
    Screened {
        run: RunId,
        task: String,
        scores: Vec<crate::run::record::ScreeningScore>,
    },
    /// The adapters a run's selection chose, with their screening scores.
    Chosen {
        run: RunId,
        adapters: Vec<crate::run::record::ChosenAdapter>,
    },
    Log {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<RunId>,
        line: String,
    },
    Finished {
        run: RunId,
        exact_match: f64,
        loss: f64,
    },
    Failed {
        run: RunId,
        error: String,
    },
    Cancelled {
        run: RunId,
    },
    PoolLoaded {
        source: String,
        usable: usize,
        rejected: usize,
    },
    /// The answer to `EvaluateAdapter` (or why it could not be scored).
    Evaluated {
        adapter: String,
        task: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exact_match: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loss: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A run's folder was removed (the answer to `Delete`).
    Deleted {
        run: RunId,
    },
    /// The answer to `Export`: the rank kept and the relative error of truncating to it.
    Exported {
        run: RunId,
        out: std::path::PathBuf,
        rank: usize,
        truncation_error: f64,
    },
    ExportFailed {
        run: RunId,
        error: String,
    },
    /// The runs still queued when the engine stopped, in queue order (sent only when there are
    /// some, just before `Stopped`). Their folders still say queued: a server lists them in its
    /// runs directory and takes them up again when it next starts there; an in-process engine
    /// leaves them, to be read as interrupted.
    Kept {
        runs: Vec<RunId>,
    },
    /// The engine stopped.
    Stopped,
}

impl Event {
    /// The run an event is about.
    pub fn run(&self) -> Option<&RunId> {
        match self {
            Event::Queued { run, .. }
            | Event::Started { run, .. }
            | Event::Stage { run, .. }
            | Event::Advance { run, .. }
            | Event::Progress { run, .. }
            | Event::Coefficients { run, .. }
            | Event::Layout { run, .. }
            | Event::Chosen { run, .. }
            | Event::Screened { run, .. }
            | Event::Finished { run, .. }
            | Event::Failed { run, .. }
            | Event::Cancelled { run } => Some(run),
            Event::Log { run, .. } => run.as_ref(),
            // These name a run but change nothing of its progress: a deleted or exported run is
            // not a new one to follow, and a rejected submission never became a run.
            Event::Hello { .. }
            | Event::Rejected { .. }
            | Event::Deleted { .. }
            | Event::Exported { .. }
            | Event::ExportFailed { .. }
            | Event::PoolLoaded { .. }
            | Event::Evaluated { .. }
            | Event::Kept { .. }
            | Event::Stopped => None,
        }
    }

    /// Run `run`'s event `e` as the engine sends it; `elapsed` is the time since the run started,
    /// from which a curve point's throughput is reckoned.
    pub fn of_run(run: RunId, e: RunEvent, elapsed: Duration) -> Event {
        match e {
            RunEvent::Stage { name, total } => Event::Stage { run, name, total },
            RunEvent::Advance(done) => Event::Advance { run, done },
            RunEvent::Curve(p) => Event::Progress {
                run,
                step: p.step,
                train_loss: p.train_loss,
                val_loss: p.val_loss,
                throughput: p.step as f64 / elapsed.as_secs_f64().max(1e-9),
            },
            RunEvent::Coefficients(step, values) => Event::Coefficients { run, step, values },
            RunEvent::Layout { groups, columns } => Event::Layout {
                run,
                groups,
                columns,
            },
            RunEvent::Chosen(adapters) => Event::Chosen { run, adapters },
            RunEvent::Screened { task, scores } => Event::Screened { run, task, scores },
            RunEvent::Log(line) => Event::Log {
                run: Some(run),
                line,
            },
        }
    }

    /// The run event this event carries (the inverse of [`Event::of_run`]), so that a client of
    /// the engine shows a run's progress as a local run shows it; None for lifecycle events.
    pub fn run_event(&self) -> Option<RunEvent> {
        Some(match self {
            Event::Stage { name, total, .. } => RunEvent::Stage {
                name: name.clone(),
                total: *total,
            },
            Event::Advance { done, .. } => RunEvent::Advance(*done),
            Event::Progress {
                step,
                train_loss,
                val_loss,
                ..
            } => RunEvent::Curve(CurvePoint {
                step: *step,
                train_loss: *train_loss,
                val_loss: *val_loss,
            }),
            Event::Coefficients { step, values, .. } => {
                RunEvent::Coefficients(*step, values.clone())
            }
            Event::Layout {
                groups, columns, ..
            } => RunEvent::Layout {
                groups: groups.clone(),
                columns: columns.clone(),
            },
            Event::Chosen { adapters, .. } => RunEvent::Chosen(adapters.clone()),
            Event::Screened { task, scores, .. } => RunEvent::Screened {
                task: task.clone(),
                scores: scores.clone(),
            },
            Event::Log { line, .. } => RunEvent::Log(line.clone()),
            Event::Hello { .. }
            | Event::Queued { .. }
            | Event::Rejected { .. }
            | Event::Started { .. }
            | Event::Finished { .. }
            | Event::Failed { .. }
            | Event::Cancelled { .. }
            | Event::Deleted { .. }
            | Event::Exported { .. }
            | Event::ExportFailed { .. }
            | Event::PoolLoaded { .. }
            | Event::Evaluated { .. }
            | Event::Kept { .. }
            | Event::Stopped => return None,
        })
    }

    /// Whether the event ends its run.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Event::Finished { .. } | Event::Failed { .. } | Event::Cancelled { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_events_survive_the_trip_through_the_protocol() {
        let run = RunId("r".into());
        let events = [
            RunEvent::Stage {
                name: "scoring adapters".into(),
                total: 119,
            },
            RunEvent::Advance(7),
            RunEvent::Curve(CurvePoint {
                step: 4,
                train_loss: 1.5,
                val_loss: Some(1.25),
            }),
            RunEvent::Coefficients(4, vec![vec![0.5, -0.25]]),
            RunEvent::Layout {
                groups: vec!["all".into()],
                columns: vec!["a".into(), "b".into()],
            },
            RunEvent::Chosen(vec![crate::run::record::ChosenAdapter {
                name: "a".into(),
                rank: 8,
                exact_match: Some(0.5),
                loss: Some(1.25),
                oracle: false,
                random: false,
            }]),
            RunEvent::Screened {
                task: "caesar-5".into(),
                scores: vec![crate::run::record::ScreeningScore {
                    name: "a".into(),
                    exact_match: 0.5,
                    loss: 1.25,
                }],
            },
            RunEvent::Log("selected 2 adapters".into()),
        ];
        for e in events {
            let sent = Event::of_run(run.clone(), e.clone(), Duration::from_secs(2));
            assert_eq!(sent.run(), Some(&run));
            assert_eq!(sent.run_event(), Some(e));
        }
        // Throughput is steps per second since the start.
        let p = Event::of_run(
            run.clone(),
            RunEvent::Curve(CurvePoint {
                step: 4,
                train_loss: 1.0,
                val_loss: None,
            }),
            Duration::from_secs(2),
        );
        assert!(matches!(p, Event::Progress { throughput, .. } if throughput == 2.0));
        // Lifecycle events carry no run event.
        assert_eq!(Event::Cancelled { run }.run_event(), None);
    }

    #[test]
    fn a_rejection_is_about_a_ticket_and_no_run() {
        // A client of an older engine sends no ticket and reads none; both default to 0.
        let queued: Event =
            serde_json::from_str(r#"{"event":"queued","run":"r","label":"l","position":0}"#)
                .unwrap();
        assert!(matches!(queued, Event::Queued { ticket: 0, .. }));
        let rejected = Event::Rejected {
            ticket: 7,
            label: "caesar-5 / base".into(),
            error: "no space left".into(),
        };
        let line = serde_json::to_string(&rejected).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), rejected);
        // None of these may make a client open a run row.
        let run = RunId("r".into());
        for e in [
            rejected,
            Event::Deleted { run: run.clone() },
            Event::ExportFailed {
                run,
                error: "no record".into(),
            },
        ] {
            assert_eq!(e.run(), None, "{e:?}");
        }
    }
}
