//! Following a run store that other processes write (a study's Slurm array on a shared
//! filesystem, a `loracycle run` in another terminal, a `serve` engine): a helper thread polls
//! the store, reads each live run's event stream (`events.jsonl`: curve points, coefficients,
//! chosen adapters, log lines, in the engine protocol's form) from where it stopped, asks Slurm
//! for the state of the jobs behind the runs, and sends what changed to the UI, which reduces
//! those events as it reduces its own engine's. A run of an older version without an event
//! stream is followed by its `curves.jsonl`.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::engine::{Event, RunId};
use crate::run::record::{CurvePoint, RunRecord};
use crate::run::store::EVENTS_FILE;
use crate::run::store::{RunState, RunStore, RunSummary};
use crate::slurm::SlurmJob;

/// How often the store is polled, and Slurm asked.
pub const POLL: Duration = Duration::from_secs(1);
pub const SLURM_POLL: Duration = Duration::from_secs(5);

/// Asks Slurm for job states: query ids in, states by job key out (see [`crate::slurm::query`]).
pub type SlurmQuery = Box<dyn Fn(&[&str]) -> HashMap<String, String> + Send>;

/// What changed in one run since the last poll.
#[derive(Debug, Clone, PartialEq)]
pub struct RunUpdate {
    pub summary: RunSummary,
    /// The run's events appended since the last update (all of them the first time).
    pub events: Vec<Event>,
    /// Slurm's word on the run's job (`RUNNING`, `COMPLETED`, `TIMEOUT`, ...), when it has one.
    pub slurm_state: Option<String>,
    /// The record of a run seen finishing (read here, off the UI's thread).
    pub record: Option<Box<RunRecord>>,
}

/// A run the watcher has seen, and how far its curve was read.
#[derive(Debug, Default)]
struct Seen {
    /// The summary last sent.
    sent: Option<RunSummary>,
    slurm_sent: Option<String>,
    /// Bytes of the event stream (or of `curves.jsonl`) consumed (whole lines only).
    offset: u64,
    /// Curve points among them: the run's step count until its record says.
    lines: usize,
    /// Whether the run reached a final state and its folder need not be read again.
    done: bool,
}

/// Polls one run store; [`Watcher::poll`] returns the runs that changed.
pub struct Watcher {
    store: RunStore,
    seen: HashMap<String, Seen>,
    slurm: HashMap<String, String>,
    last_slurm: Option<Instant>,
    slurm_every: Duration,
    /// Asks Slurm for job states (query ids in, states by job key out).
    query: SlurmQuery,
}

impl Watcher {
    pub fn new(store: RunStore) -> Watcher {
        Self::with_query(store, Box::new(crate::slurm::query))
    }

    pub fn with_query(store: RunStore, query: SlurmQuery) -> Watcher {
        Watcher {
            store,
            seen: HashMap::new(),
            slurm: HashMap::new(),
            last_slurm: None,
            slurm_every: SLURM_POLL,
            query,
        }
    }

    /// Asks Slurm at most this often (default [`SLURM_POLL`]).
    pub fn slurm_every(mut self, every: Duration) -> Watcher {
        self.slurm_every = every;
        self
    }

    /// Reads the events appended to the run's stream since `seen.offset` and moves it (and the
    /// count of curve points) past them; a line still being written stays for the next poll.
    /// A folder without a stream (written by an older version) is read by its curve.
    fn read_new_events(id: &str, dir: &Path, seen: &mut Seen) -> Vec<Event> {
        let stream = dir.join(EVENTS_FILE);
        let (path, is_stream) = if std::fs::symlink_metadata(&stream).is_ok() {
            (stream, true)
        } else {
            (dir.join("curves.jsonl"), false)
        };
        // Regular files only, opened without blocking: a FIFO here would hang the screen.
        let Ok((mut f, len)) = crate::untrusted::open(&path, crate::run::store::MAX_RUN_FILE)
        else {
            return Vec::new();
        };
        // A file shorter than what was read was rewritten: start over.
        if len < seen.offset {
            seen.offset = 0;
            seen.lines = 0;
        }
        let mut bytes = Vec::new();
        if f.seek(SeekFrom::Start(seen.offset)).is_err() || f.read_to_end(&mut bytes).is_err() {
            return Vec::new();
        }
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(&bytes[..whole]);
        seen.offset += whole as u64;
        let events: Vec<Event> = if is_stream {
            text.lines()
                .filter_map(|l| serde_json::from_str::<Event>(l).ok())
                // A stream names its own run; a line about another is no part of it.
                .filter(|e| e.run().is_some_and(|r| r.0 == id))
                .collect()
        } else {
            text.lines()
                .filter_map(|l| serde_json::from_str::<CurvePoint>(l).ok())
                .map(|p| {
                    Event::of_run(
                        RunId(id.to_string()),
                        crate::run::event::RunEvent::Curve(p),
                        Duration::MAX,
                    )
                })
                .collect()
        };
        seen.lines += events
            .iter()
            .filter(|e| matches!(e, Event::Progress { .. }))
            .count();
        events
    }

    /// One look at the store: the runs that are new or changed since the last call.
    pub fn poll(&mut self) -> Vec<RunUpdate> {
        let mut summaries = Vec::new();
        for id in self.store.ids() {
            if self.seen.get(&id).is_some_and(|s| s.done) {
                continue;
            }
            // Steps are counted here, from the curve read below, not by reading it twice.
            if let Ok(s) = self.store.summary_and_record_uncounted(&id) {
                summaries.push(s);
            }
        }
        let runs: Vec<RunSummary> = summaries.iter().map(|(s, _)| s.clone()).collect();
        self.refresh_slurm(&runs);
        let mut out = Vec::new();
        for (mut summary, record) in summaries {
            let seen = self.seen.entry(summary.id.clone()).or_default();
            let slurm_state = summary
                .slurm
                .as_ref()
                .and_then(|j| self.slurm.get(&j.key()).cloned());
            // Slurm knows a job ended that the run's status still calls live: the job was killed
            // (time limit, cancel, node failure) before the run could say so.
            if summary.state.is_live()
                && slurm_state
                    .as_deref()
                    .is_some_and(crate::slurm::state_ended)
            {
                summary.state = RunState::Interrupted;
            }
            let dir = self.store.run_dir(&summary.id).ok();
            let events = match &dir {
                Some(dir) if summary.state.is_live() => {
                    Self::read_new_events(&summary.id, dir, seen)
                }
                _ => Vec::new(),
            };
            if record.is_none() {
                summary.steps = match &dir {
                    // A run that ended without a record (failed, cancelled, interrupted) is
                    // counted once, in full: it is not read again.
                    Some(dir) if !summary.state.is_live() => RunStore::curve_steps(dir),
                    _ => seen.lines,
                };
            }
            let finished_now = summary.state == RunState::Finished
                && seen.sent.as_ref().is_some_and(|s| s.state.is_live());
            // The record was read with the summary; it travels once, when the run finishes.
            let record = record.filter(|_| finished_now).map(Box::new);
            let changed = seen.sent.as_ref() != Some(&summary)
                || seen.slurm_sent != slurm_state
                || !events.is_empty();
            // A final run is read no more once Slurm has nothing left to say of it.
            seen.done = !summary.state.is_live()
                && (summary.slurm.is_none()
                    || slurm_state
                        .as_deref()
                        .is_some_and(crate::slurm::state_ended));
            if changed {
                seen.sent = Some(summary.clone());
                seen.slurm_sent = slurm_state.clone();
                out.push(RunUpdate {
                    summary,
                    events,
                    slurm_state,
                    record,
                });
            }
        }
        out.sort_by(|a, b| {
            (&a.summary.submitted, &a.summary.id).cmp(&(&b.summary.submitted, &b.summary.id))
        });
        out
    }

    /// Asks Slurm about the jobs of runs not yet final, at most every `slurm_every`.
    fn refresh_slurm(&mut self, summaries: &[RunSummary]) {
        if self
            .last_slurm
            .is_some_and(|t| t.elapsed() < self.slurm_every)
        {
            return;
        }
        let jobs: Vec<&SlurmJob> = summaries.iter().filter_map(|s| s.slurm.as_ref()).collect();
        if jobs.is_empty() {
            return;
        }
        self.last_slurm = Some(Instant::now());
        let ids: Vec<&str> = jobs.iter().map(|j| j.query_id()).collect();
        let states = (self.query)(&ids);
        // Jobs Slurm has forgotten keep the last state it gave.
        self.slurm.extend(states);
    }
}

/// Runs a watcher on its own thread, sending each poll's changes until the receiver is gone.
pub fn spawn(store: RunStore, send: impl Fn(Vec<RunUpdate>) -> bool + Send + 'static) {
    std::thread::Builder::new()
        .name("loracycle-watch".into())
        .spawn(move || {
            let mut w = Watcher::new(store);
            loop {
                let updates = w.poll();
                if !updates.is_empty() && !send(updates) {
                    return;
                }
                std::thread::sleep(POLL);
            }
        })
        .expect("spawning the store watcher");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The curve points among events, as (step, train loss, validation loss).
    fn points(events: &[Event]) -> Vec<(usize, f64, Option<f64>)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Progress {
                    step,
                    train_loss,
                    val_loss,
                    ..
                } => Some((*step, *train_loss, *val_loss)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn curve_lines_are_read_once_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, r#"{{"step":1,"train_loss":2.5}}"#).unwrap();
        write!(f, r#"{{"step":2,"train_lo"#).unwrap();
        f.flush().unwrap();
        let mut seen = Seen::default();
        let read = |seen: &mut Seen| points(&Watcher::read_new_events("r", dir.path(), seen));
        assert_eq!(read(&mut seen), [(1, 2.5, None)]);
        assert_eq!(seen.lines, 1);
        // The half-written line waits; once finished it is read, and only it.
        writeln!(f, r#"ss":2.25,"val_loss":2.0}}"#).unwrap();
        f.flush().unwrap();
        assert_eq!(read(&mut seen), [(2, 2.25, Some(2.0))]);
        assert_eq!(seen.offset, std::fs::metadata(&path).unwrap().len());
        assert_eq!(seen.lines, 2);
        assert!(read(&mut seen).is_empty());
        assert_eq!(seen.lines, 2);
        // A curve rewritten shorter is read again from its start.
        std::fs::write(&path, "{\"step\":1,\"train_loss\":3.0}\n").unwrap();
        assert_eq!((read(&mut seen), seen.lines), (vec![(1, 3.0, None)], 1));
    }

    #[test]
    fn a_run_s_event_stream_is_read_before_its_curve() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("curves.jsonl"),
            "{\"step\":9,\"train_loss\":9.0}\n",
        )
        .unwrap();
        let mut f = std::fs::File::create(dir.path().join(EVENTS_FILE)).unwrap();
        let run = || RunId("r".into());
        for e in [
            Event::Layout {
                run: run(),
                groups: vec!["L0.q_proj".into()],
                columns: vec!["a".into(), "b".into()],
            },
            Event::Progress {
                run: run(),
                step: 1,
                train_loss: 2.0,
                val_loss: Some(1.5),
                throughput: 4.0,
            },
            Event::Coefficients {
                run: run(),
                step: 1,
                values: vec![vec![0.25, -0.5]],
            },
            // Another run's line is no part of this stream.
            Event::Coefficients {
                run: RunId("other".into()),
                step: 1,
                values: vec![vec![9.0, 9.0]],
            },
        ] {
            writeln!(f, "{}", serde_json::to_string(&e).unwrap()).unwrap();
        }
        f.flush().unwrap();
        let mut seen = Seen::default();
        let events = Watcher::read_new_events("r", dir.path(), &mut seen);
        assert_eq!(events.len(), 3);
        assert_eq!(points(&events), [(1, 2.0, Some(1.5))]);
        assert_eq!(
            events[2],
            Event::Coefficients {
                run: run(),
                step: 1,
                values: vec![vec![0.25, -0.5]],
            }
        );
        assert_eq!(seen.lines, 1);
    }
}
