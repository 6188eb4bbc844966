//! A run's task: its train, validation and test rows, read from the lab or from JSONL files.

use std::path::PathBuf;

use super::execute::{Result, RunError};
use super::spec::RunSpec;
use crate::eval::{self, Example};
use crate::pool;

/// A task's data, encoded.
pub struct TaskData {
    pub name: String,
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub test: Vec<Example>,
    pub oracle: Option<PathBuf>,
    /// Lab tasks compare answers exactly; others after normalising whitespace and case.
    pub exact: bool,
}

pub fn load_task(spec: &RunSpec) -> Result<TaskData> {
    let t = &spec.task;
    let (name, dir_files, oracle, exact) = match &t.lab {
        Some(lab) => {
            if !pool::is_plain_name(lab) {
                return Err(RunError::Task(format!("{lab:?} is not a lab task name")));
            }
            let tasks = crate::lab::dir()?.join("tasks");
            let dir = tasks.join(lab);
            if !dir.is_dir() {
                let known = std::fs::read_dir(&tasks)
                    .map(|rd| {
                        let mut v: Vec<String> = rd
                            .filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect();
                        v.sort();
                        v.join(", ")
                    })
                    .unwrap_or_default();
                return Err(RunError::Task(format!(
                    "the lab has no held-out task {lab:?} (it has {known})"
                )));
            }
            (
                lab.clone(),
                [
                    dir.join("train.jsonl"),
                    dir.join("validation.jsonl"),
                    dir.join("test.jsonl"),
                ],
                pool::lab_oracle(lab),
                true,
            )
        }
        None => {
            let need = |p: &Option<PathBuf>| p.clone().expect("validated spec");
            (
                t.display_name(),
                [need(&t.train), need(&t.validation), need(&t.test)],
                t.oracle_adapter.clone(),
                false,
            )
        }
    };
    let mut train = eval::read_jsonl(&dir_files[0])?;
    if let Some(n) = t.train_examples {
        train.truncate(n);
    }
    Ok(TaskData {
        name,
        train,
        validation: eval::read_jsonl(&dir_files[1])?,
        test: eval::read_jsonl(&dir_files[2])?,
        oracle,
        exact,
    })
}
