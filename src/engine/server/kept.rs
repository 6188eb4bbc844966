//! The queue a server keeps across a restart. A `shutdown` leaves the runs still queued as they
//! are on disk (their status says queued, their spec is in their folder) and lists them, in queue
//! order, in the runs directory's [`FILE`]; the next `loracycle serve` there takes them up again
//! before anything new is submitted. Only listed runs are taken up: a queued run that an
//! in-process engine left behind (a TUI that quit) was never a server's to start.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ServerError, io};
use crate::atomic_write::write_atomic;
use crate::engine::protocol::RunId;
use crate::run::spec::RunSpec;
use crate::run::store::{RunFolder, RunState, RunStore};

/// The list of kept runs, beside the run folders.
pub const FILE: &str = "serve-queue.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeptQueue {
    runs: Vec<String>,
}

fn read(root: &Path) -> Result<KeptQueue, ServerError> {
    let path = root.join(FILE);
    let text = match crate::untrusted::read_text(&path, crate::untrusted::SMALL) {
        Ok(t) => t,
        Err(crate::untrusted::UntrustedError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(KeptQueue::default());
        }
        Err(e) => {
            return Err(ServerError::KeptList {
                path,
                reason: e.into_io().to_string(),
            });
        }
    };
    serde_json::from_str(&text).map_err(|e| ServerError::KeptList {
        path,
        reason: e.to_string(),
    })
}

fn write(root: &Path, list: &KeptQueue) -> Result<(), ServerError> {
    let path = root.join(FILE);
    if list.runs.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        };
    }
    let text = serde_json::to_string_pretty(list).expect("a list of ids serialises");
    write_atomic(&path, text.as_bytes()).map_err(io(&path))
}

/// Lists `runs` after those already kept there (by another server on the same runs directory
/// that stopped and has not started again); a list that cannot be read is replaced, since its
/// runs could not be taken up anyway.
pub fn keep(root: &Path, runs: &[RunId]) -> Result<(), ServerError> {
    let mut list = read(root).unwrap_or_default();
    for r in runs {
        if !list.runs.contains(&r.0) {
            list.runs.push(r.0.clone());
        }
    }
    write(root, &list)
}

/// What a starting server took up of the kept queue.
#[derive(Debug, Default)]
pub struct TakenUp {
    /// In queue order, each folder now owned by this process.
    pub queue: Vec<(RunSpec, RunFolder)>,
    /// Kept runs that could not be taken up, and why; they are left as they are.
    pub problems: Vec<ServerError>,
}

/// Takes up the kept runs whose status still says queued by a process that has ended, in the
/// order they were kept. A kept run removed since (`loracycle runs rm`) or ended is dropped from
/// the list; one still queued elsewhere (another host's server, which keeps its own) stays on it.
pub fn take_up(store: &RunStore) -> TakenUp {
    let mut taken = TakenUp::default();
    let list = match read(&store.root) {
        Ok(l) => l,
        Err(e) => {
            taken.problems.push(e);
            return taken;
        }
    };
    let mut left = KeptQueue::default();
    for id in list.runs {
        let Ok(dir) = store.run_dir(&id) else {
            continue;
        };
        let spec = match RunSpec::read(&dir.join("spec.toml")) {
            Ok(s) => s,
            Err(e) => {
                taken.problems.push(ServerError::KeptRun {
                    id,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        match RunFolder::adopt(dir.clone()) {
            Ok(Some(folder)) => taken.queue.push((spec, folder)),
            Ok(None) => {
                let elsewhere = RunStore::read_status(&dir)
                    .is_some_and(|s| RunStore::effective(&s) == RunState::Queued);
                if elsewhere {
                    left.runs.push(id);
                }
            }
            Err(e) => {
                taken.problems.push(ServerError::KeptRun {
                    id: id.clone(),
                    reason: e.to_string(),
                });
                // Its status could not be written: the next start may manage.
                left.runs.push(id);
            }
        }
    }
    if let Err(e) = write(&store.root, &left) {
        taken.problems.push(e);
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<RunId> {
        v.iter().map(|s| RunId(s.to_string())).collect()
    }

    #[test]
    fn a_second_list_goes_after_the_first_and_an_empty_one_removes_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        keep(tmp.path(), &ids(&["a", "b"])).unwrap();
        keep(tmp.path(), &ids(&["b", "c"])).unwrap();
        assert_eq!(read(tmp.path()).unwrap().runs, vec!["a", "b", "c"]);
        write(tmp.path(), &KeptQueue::default()).unwrap();
        assert!(!tmp.path().join(FILE).exists());
        // Nothing to take up where nothing was kept, and no file appears.
        let store = RunStore::open(tmp.path()).unwrap();
        let taken = take_up(&store);
        assert!(taken.queue.is_empty() && taken.problems.is_empty());
        assert!(!tmp.path().join(FILE).exists());
    }

    const BASE_RUN: &str =
        "name = \"base\"\n[task]\nlab = \"which-is-smaller\"\n[method]\nkind = \"base\"\n";

    /// A queued run whose owner has ended: its status names this process with another start
    /// time, which is how a reused pid is told apart.
    fn orphan(store: &RunStore) -> String {
        let spec = RunSpec::from_toml(BASE_RUN, Path::new("base.toml")).unwrap();
        let id = store.create(&spec).unwrap().id().to_string();
        let path = store.run_dir(&id).unwrap().join("status.json");
        let mut status: crate::run::store::StatusFile =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        status.pid_start = Some(crate::process::own_start_ticks().unwrap() + 1);
        std::fs::write(&path, serde_json::to_string(&status).unwrap()).unwrap();
        id
    }

    #[test]
    fn kept_runs_are_taken_up_in_order_and_the_rest_dropped_or_left() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RunStore::open(tmp.path()).unwrap();
        let (a, gone, b) = (orphan(&store), orphan(&store), orphan(&store));
        std::fs::remove_dir_all(store.run_dir(&gone).unwrap()).unwrap();
        // Queued by a live process (this one): not this server's to take.
        let spec = RunSpec::from_toml(BASE_RUN, Path::new("base.toml")).unwrap();
        let live = store.create(&spec).unwrap().id().to_string();
        keep(
            tmp.path(),
            &ids(&[b.as_str(), gone.as_str(), live.as_str(), a.as_str()]),
        )
        .unwrap();
        let taken = take_up(&store);
        assert!(taken.problems.is_empty(), "{:?}", taken.problems);
        let order: Vec<&str> = taken.queue.iter().map(|(_, f)| f.id()).collect();
        assert_eq!(order, vec![b.as_str(), a.as_str()]);
        assert_eq!(read(tmp.path()).unwrap().runs, vec![live.clone()]);
        // This process owns them now: they read as queued again.
        for id in [&a, &b] {
            assert_eq!(store.summary(id).unwrap().state, RunState::Queued);
        }
    }

    #[test]
    fn a_list_that_does_not_read_is_reported_and_replaced_by_the_next_keep() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(FILE), "not json").unwrap();
        let store = RunStore::open(tmp.path()).unwrap();
        let taken = take_up(&store);
        assert_eq!(
            taken
                .problems
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>(),
            vec![format!(
                "{}: not a list of kept runs (expected ident at line 1 column 2); none was taken up",
                tmp.path().join(FILE).display()
            )]
        );
        keep(tmp.path(), &ids(&["x"])).unwrap();
        assert_eq!(read(tmp.path()).unwrap().runs, vec!["x"]);
    }
}
