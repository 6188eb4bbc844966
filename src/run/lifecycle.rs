//! A run's life in its folder, the same for the engine's queue and for a study: running →
//! execute, with every event written to the folder (status, curve) as it happens → finished with
//! its record, or cancelled, or failed with the reason.

use std::sync::atomic::AtomicBool;

use super::event::RunEvent;
use super::execute::{RunError, Workbench, execute};
use super::record::RunRecord;
use super::spec::RunSpec;
use super::store::{RunFolder, RunState};

/// Runs `spec` in `folder`. `on` sees every event after the folder has; a progress write that
/// fails is reported once, as a log line, and the run goes on (its record is what counts).
/// The folder ends finished, cancelled or failed, matching the result.
pub fn run_in_folder(
    bench: &mut Workbench,
    spec: &RunSpec,
    folder: &mut RunFolder,
    on: &mut dyn FnMut(RunEvent),
    cancel: Option<&AtomicBool>,
) -> Result<RunRecord, RunError> {
    folder.set_state(RunState::Running, None)?;
    let mut write_failed = false;
    let dir = folder.dir.clone();
    let result = execute(
        bench,
        spec,
        &mut |e| {
            if let Err(err) = folder.observe(&e)
                && !std::mem::replace(&mut write_failed, true)
            {
                on(RunEvent::Log(format!(
                    "cannot write the run's progress: {err}"
                )));
            }
            on(e)
        },
        cancel,
        Some(&dir),
    );
    end(folder, result)
}

/// Writes how a run ended into its folder.
pub fn end(
    folder: &mut RunFolder,
    result: Result<RunRecord, RunError>,
) -> Result<RunRecord, RunError> {
    match result {
        Ok(mut record) => {
            record.id = folder.id().to_string();
            if let Err(e) = folder.finish(&record) {
                let error = format!("the run finished but its record could not be saved: {e}");
                let _ = folder.set_state(RunState::Failed, Some(error.clone()));
                return Err(RunError::Other(error));
            }
            Ok(record)
        }
        Err(RunError::Cancelled) => {
            let _ = folder.set_state(RunState::Cancelled, None);
            Err(RunError::Cancelled)
        }
        Err(e) => {
            let _ = folder.set_state(RunState::Failed, Some(e.to_string()));
            Err(e)
        }
    }
}
