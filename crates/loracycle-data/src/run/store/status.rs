//! What a run's `status.json` holds and what `runs list` shows of a run: its state, owner, stage
//! and heartbeat times.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::run::record::RunStatus;
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
    /// When that process started, in clock ticks since boot (Linux), so that another process
    /// that later gets the same pid is not taken for it; absent in older status files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
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
    /// The run's settings as dotted keys (`selection.k` = `12`), from its spec.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub settings: std::collections::BTreeMap<String, String>,
}

/// How long ago an RFC 3339 time was (None when it does not parse or lies ahead).
pub(super) fn age(stamp: &str) -> Option<Duration> {
    let t = humantime::parse_rfc3339_weak(stamp).ok()?;
    SystemTime::now().duration_since(t).ok()
}
