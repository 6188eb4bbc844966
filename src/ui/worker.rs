//! The UI's hands: the work behind [`Request`]s that must not run on the UI thread (reading the
//! store, downloads, `scancel`) and the pool listing at start-up; exports are the engine's.
//! `handle` does one request synchronously, so tests can settle an outbox without threads;
//! `Worker` runs file work in order on one thread (a save is read back by a later load) and
//! gives each slow job (a download, `scancel`) a thread of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

use super::request::{Reply, Request};
use super::{App, UiOptions};
use crate::atomic_write::write_atomic;
use crate::pool::PoolSource;
use crate::pool::cache::{HfHome, MetaCache};
use crate::pool::entry::{ListOptions, base_of, cached_entry, list_entries, offline, pull_one};
use crate::pool::hub::Hub;
use crate::run::spec::RunSpec;
use crate::run::store::RunStore;

/// What the worker's jobs read and write.
#[derive(Debug, Clone)]
pub struct WorkerCtx {
    pub store: RunStore,
    pub opts: UiOptions,
}

/// Does `req`'s work on this thread, handing each reply to `reply` as it comes (a download says
/// it began before it ends). Engine commands are not the worker's; the app loop sends them.
pub fn handle(req: Request, cx: &WorkerCtx, reply: &mut dyn FnMut(Reply)) {
    match req {
        Request::Engine(_) => {}
        Request::Download(id) => download(&cx.opts, id, reply),
        Request::Scancel(job) => reply(Reply::Message(scancel(&job))),
        Request::LoadRun(run) => match cx.store.read_record(&run.0) {
            Ok(Some(r)) => reply(Reply::Record(run, Box::new(r))),
            _ => {
                if let Ok(dir) = cx.store.run_dir(&run.0) {
                    reply(Reply::Curve(run, RunStore::read_curve(&dir)));
                }
            }
        },
        Request::ListRuns => reply(Reply::Runs(cx.store.list())),
        Request::ReadSpec { run, then } => {
            let spec = cx
                .store
                .run_dir(&run.0)
                .map_err(|e| e.to_string())
                .and_then(|d| RunSpec::read(&d.join("spec.toml")).map_err(|e| e.to_string()));
            reply(Reply::Spec {
                run,
                then,
                spec: spec.map(Box::new),
            });
        }
        Request::SaveSpec { path, text } => {
            let path = under(&cx.store.root, "specs", &path);
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| write_atomic(&path, text.as_bytes()));
            reply(Reply::Message(match written {
                Ok(()) => format!("saved {}", path.display()),
                Err(e) => format!("cannot save {}: {e}", path.display()),
            }))
        }
        Request::LoadSpec { path } => {
            let path = under(&cx.store.root, "specs", &path);
            let spec = RunSpec::read(&path).map_err(|e| e.to_string());
            reply(Reply::SpecFile {
                path,
                spec: spec.map(Box::new),
            });
        }
        Request::CheckTask(folder) => reply(Reply::TaskChecked {
            missing: missing_task_files(&folder),
            folder: folder.display().to_string(),
        }),
        Request::Rename { run, name } => reply(Reply::Renamed {
            label: cx
                .store
                .rename(&run.0, &name)
                .and_then(|_| cx.store.summary(&run.0))
                .map(|s| s.label)
                .map_err(|e| e.to_string()),
            run,
        }),
        Request::WriteTable { md, csv } => reply(Reply::Message(write_table(
            &cx.store.root.join("compare"),
            &md,
            &csv,
        ))),
    }
}

/// Does every request in the app's outbox but the engine's at once, on this thread, and hands
/// the replies back, until no more come: the app loop and the worker in one call, for tests
/// and tools that drive an [`App`] without threads. Engine commands stay in the outbox.
pub fn settle(app: &mut App, store: &RunStore) {
    let cx = WorkerCtx {
        store: store.clone(),
        opts: UiOptions {
            model: app.context.model.clone(),
            source: app.context.source.clone(),
            runs_dir: store.root.clone(),
        },
    };
    while app.outbox.iter().any(|r| !matches!(r, Request::Engine(_))) {
        let (engine, work): (Vec<_>, Vec<_>) = app
            .outbox
            .drain(..)
            .partition(|r| matches!(r, Request::Engine(_)));
        app.outbox = engine;
        let mut replies = Vec::new();
        for r in work {
            handle(r, &cx, &mut |reply| replies.push(reply));
        }
        for reply in replies {
            app.on_reply(reply);
        }
    }
}

/// The task files that `folder` does not hold.
pub fn missing_task_files(folder: &Path) -> Vec<String> {
    crate::run::spec::TaskSpec::missing_files(folder)
}

/// Where a file the UI writes goes: a path typed as absolute as it is, a relative one in the
/// runs directory's `sub` folder (never the working directory the UI was started in).
pub fn under(root: &Path, sub: &str, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(sub).join(path)
    }
}

fn write_table(dir: &Path, md: &str, csv: &str) -> String {
    let (mdp, csvp) = (dir.join("compare.md"), dir.join("compare.csv"));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| write_atomic(&mdp, md.as_bytes()))
        .and_then(|()| write_atomic(&csvp, csv.as_bytes()));
    match written {
        Ok(()) => format!("wrote {} and {}", mdp.display(), csvp.display()),
        Err(e) => format!("cannot write the table in {}: {e}", dir.display()),
    }
}

/// The worker threads' front door.
pub struct Worker {
    files: Sender<Request>,
    cx: Arc<WorkerCtx>,
    replies: Sender<Reply>,
}

impl Worker {
    /// Starts the file thread; replies go to `replies`.
    pub fn spawn(cx: WorkerCtx, replies: Sender<Reply>) -> Worker {
        let cx = Arc::new(cx);
        let (files, rx) = channel::<Request>();
        let (fcx, tx) = (cx.clone(), replies.clone());
        std::thread::Builder::new()
            .name("loracycle-ui-files".into())
            .spawn(move || {
                for req in rx {
                    handle(req, &fcx, &mut |r| {
                        let _ = tx.send(r);
                    });
                }
            })
            .expect("spawning the UI's file thread");
        Worker { files, cx, replies }
    }

    pub fn send(&self, req: Request) {
        match req {
            // Slow jobs must not hold up the file thread's quick reads.
            Request::Download(_) | Request::Scancel(_) => {
                let (cx, tx) = (self.cx.clone(), self.replies.clone());
                std::thread::spawn(move || {
                    handle(req, &cx, &mut |r| {
                        let _ = tx.send(r);
                    })
                });
            }
            req => {
                let _ = self.files.send(req);
            }
        }
    }
}

fn base_id(opts: &UiOptions) -> (Option<String>, Option<PathBuf>) {
    match opts.model.as_str() {
        "lab" => (None, None),
        m if std::path::Path::new(m).join("config.json").is_file() => {
            (None, Some(PathBuf::from(m)))
        }
        m => (Some(m.to_string()), None),
    }
}

/// Lists the pool on a thread of its own, reporting progress at most every 50 ms.
pub fn spawn_pool_listing(opts: &UiOptions, tx: Sender<Reply>) {
    let opts = opts.clone();
    std::thread::spawn(move || {
        let (base, model) = base_id(&opts);
        let (base, cfg) = base_of(&opts.source, base.as_deref(), model.as_deref());
        let mut meta = MetaCache::open_default();
        let list_opts = ListOptions {
            base: base.as_deref(),
            base_config: cfg.as_ref(),
            endpoint: None,
            offline: offline(false),
            jobs: 8,
        };
        let mut last = Instant::now();
        let result = list_entries(&opts.source, &list_opts, &mut meta, &mut |what, d, n| {
            if last.elapsed() > Duration::from_millis(50) || d == n {
                last = Instant::now();
                let _ = tx.send(Reply::PoolProgress(what.to_string(), d, n));
            }
        });
        let _ = meta.save();
        let _ = tx.send(Reply::Pool(result.map_err(|e| e.to_string())));
    });
}

fn download(opts: &UiOptions, id: String, reply: &mut dyn FnMut(Reply)) {
    reply(Reply::Download {
        id: id.clone(),
        line: "downloading…".into(),
        entry: None,
    });
    let (base, model) = base_id(opts);
    let (base, cfg) = base_of(&PoolSource::Hub, base.as_deref(), model.as_deref());
    let hub = Hub::new(None, HfHome::from_env());
    let (line, entry) = match pull_one(&hub, &id, cfg.as_ref()) {
        Ok(line) => {
            // Re-read the entry from the cache so its status and norm are current.
            let mut meta = MetaCache::open_default();
            let list_opts = ListOptions {
                base: base.as_deref(),
                base_config: cfg.as_ref(),
                endpoint: None,
                offline: true,
                jobs: 1,
            };
            let entry = cached_entry(&hub.home, &id, &list_opts, &mut meta).map(|mut e| {
                e.source = "hub".into();
                e
            });
            let _ = meta.save();
            (line, entry)
        }
        Err(e) => (format!("failed: {e}"), None),
    };
    reply(Reply::Download {
        id,
        line,
        entry: entry.map(Box::new),
    });
}

/// Cancels a Slurm job; the store watcher then sees its state change.
fn scancel(job: &str) -> String {
    match std::process::Command::new("scancel").arg(job).output() {
        Ok(o) if o.status.success() => format!("scancel {job}: done"),
        Ok(o) => format!(
            "scancel {job} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("cannot run scancel: {e}"),
    }
}
