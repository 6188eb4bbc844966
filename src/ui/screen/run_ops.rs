//! What Live and Runs can do to a run of the list: read its history, cancel it, export it,
//! queue it again or queue a control twin of it. Each puts requests in the outbox and says what
//! it did on the status line.

use std::path::PathBuf;

use super::Ctx;
use crate::engine::{Command, RunId};
use crate::run::spec::{ControlKind, MethodSpec, Parent, RunSpec};
use crate::run::store::RunState;
use crate::ui::request::{Request, Resubmit};
use crate::ui::runs::RunList;

/// Asks for run `i`'s record or curve once, when a screen needs it (the list remembers that
/// it asked).
pub fn ensure_loaded(runs: &mut RunList, i: usize, cx: &mut Ctx) {
    if let Some(id) = runs.to_load(i) {
        cx.push(Request::LoadRun(id));
    }
}

/// Cancels run `i`: through the engine when this UI runs it, with `scancel` when Slurm does;
/// a run of another process outside Slurm is stopped where it runs.
pub fn cancel(runs: &RunList, i: usize, cx: &mut Ctx) {
    let Some(r) = runs.get(i) else { return };
    if r.state.is_live() && !r.local {
        let line = match &r.slurm {
            Some(j) => {
                cx.push(Request::Scancel(j.key()));
                format!("scancel {} ({})", j.key(), r.label)
            }
            None => format!(
                "{} runs in another process (pid {} on {}); stop it there",
                r.label, r.pid, r.host
            ),
        };
        cx.say(line);
    } else if r.state.is_live() {
        cx.push(Request::Engine(Command::Cancel { run: r.id.clone() }));
        cx.say(format!("cancelling {}", r.label));
    } else {
        cx.say(format!(
            "{} is {}; nothing to cancel",
            r.label,
            r.state.name()
        ));
    }
}

/// Asks the engine to export finished run `i` as a PEFT adapter (rank 64) into
/// `export-<id>` in the working directory.
pub fn export(runs: &RunList, i: usize, cx: &mut Ctx) {
    let Some(r) = runs.get(i) else { return };
    if r.state != RunState::Finished {
        cx.say("only a finished run can be exported");
        return;
    }
    // Into the run's folder (the engine resolves it there and reports the full path).
    let out = PathBuf::from("export");
    cx.say(format!("exporting {} into its run folder…", r.id.0));
    cx.push(Request::Engine(Command::Export {
        run: r.id.clone(),
        out,
        rank: 64,
    }));
}

/// Queues run `i` again, or a twin of it: from its record's spec when that is loaded, else
/// once the worker has read its spec file (the reply comes back to [`resubmit`]).
pub fn resubmit_run(runs: &RunList, i: usize, then: Resubmit, cx: &mut Ctx) {
    let Some(run) = runs.get(i) else { return };
    match &run.record {
        Some(r) => resubmit(then, &run.id, r.spec.clone(), cx),
        None => cx.push(Request::ReadSpec {
            run: run.id.clone(),
            then,
        }),
    }
}

/// Queues `spec` (of run `id`) again, its random-init twin or its base-model twin; a twin's
/// spec names run `id` as its parent, so Compare pairs them.
pub fn resubmit(then: Resubmit, id: &RunId, spec: RunSpec, cx: &mut Ctx) {
    let (mut spec, role) = match then {
        Resubmit::Retry => {
            cx.say(format!("queued {} again", spec.label()));
            cx.submit(spec);
            return;
        }
        Resubmit::RandomTwin => {
            if !spec.method.uses_pool() {
                cx.say("this run uses no pool; it has no random-init twin");
                return;
            }
            let Some(twin) = spec.random_init_twin() else {
                cx.say("this run is on the random-init pool already");
                return;
            };
            (twin, ControlKind::RandomInit)
        }
        Resubmit::BaseTwin => (spec.control_twin(MethodSpec::Base), ControlKind::Base),
    };
    spec.controls.queue.clear();
    spec.controls.reused.clear();
    spec.parent = Some(Parent {
        id: id.0.clone(),
        role,
    });
    cx.say(format!("queued {}", spec.label()));
    cx.submit(spec);
}
