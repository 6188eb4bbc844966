//! A run's task: its train, validation and test rows, read from the lab or from JSONL files.

use std::path::PathBuf;

use super::execute::{Result, RunError};
use super::spec::RunSpec;
use crate::eval::{self, Example, Scoring, TaskSettings};
use crate::pool;

/// A task's data, encoded.
pub struct TaskData {
    pub name: String,
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub test: Vec<Example>,
    pub oracle: Option<PathBuf>,
    /// How generations are judged: the spec's `[eval]` over the task's `task.toml` over the
    /// protocol's defaults (lab tasks compare exact strings, others normalise whitespace and
    /// case, under the lab protocol).
    pub scoring: Scoring,
}

/// The task names this machine knows: the lab's held-out tasks and the imported ones (read
/// from the tasks folder), for [`crate::run::spec::TaskCatalogue::resolve`].
pub fn catalogue() -> crate::run::spec::TaskCatalogue {
    crate::run::spec::TaskCatalogue {
        lab: crate::lab::tasks::held_out()
            .into_iter()
            .map(String::from)
            .collect(),
        imported: crate::tasks::list(&crate::tasks::tasks_dir())
            .into_iter()
            .map(|e| (e.name, e.dir))
            .collect(),
    }
}

pub fn load_task(spec: &RunSpec) -> Result<TaskData> {
    let t = &spec.task;
    let (name, dir_files, oracle, lab_task) = match &t.lab {
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
        None if t.name.is_some() => {
            let name = t.name.clone().unwrap_or_default();
            let root = crate::tasks::tasks_dir();
            let Some(dir) = crate::tasks::find(&name) else {
                let known: Vec<String> = crate::tasks::list(&root)
                    .into_iter()
                    .map(|e| e.name)
                    .collect();
                return Err(RunError::Task(format!(
                    "no imported task {name:?} in {} ({}; import one with `loracycle task import TASKS.yaml --task NAME`)",
                    root.display(),
                    if known.is_empty() {
                        "it has none".to_string()
                    } else {
                        format!("it has {}", known.join(", "))
                    }
                )));
            };
            let spec = crate::run::spec::TaskSpec::folder(&dir);
            let need = |p: &Option<PathBuf>| p.clone().expect("a folder's files");
            (
                name,
                [need(&spec.train), need(&spec.validation), need(&spec.test)],
                t.oracle_adapter.clone(),
                false,
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
    let folder = dir_files[0].parent().unwrap_or(std::path::Path::new("."));
    let own = TaskSettings::read(folder).map_err(RunError::Task)?;
    let s = spec
        .eval
        .settings()
        .over(own)
        .over(spec.protocol.scoring(lab_task));
    let scoring = Scoring {
        max_new_tokens: s.max_new_tokens.expect("the protocol sets every default"),
        extract: s.extract.expect("the protocol sets every default"),
        normalize: s.normalize.expect("the protocol sets every default"),
        max_prompt_tokens: s.max_prompt_tokens,
    };
    let mut train = eval::read_jsonl(&dir_files[0])?;
    let mut validation = eval::read_jsonl(&dir_files[1])?;
    if let Some(n) = t.train_examples {
        train.truncate(n);
    }
    if let Some(n) = t.examples {
        validation.truncate(n / 5);
        train.truncate(n - validation.len());
    }
    if t.combine {
        train.extend(validation.iter().cloned());
        validation = train.clone();
    }
    Ok(TaskData {
        name,
        train,
        validation,
        test: eval::read_jsonl(&dir_files[2])?,
        oracle,
        scoring,
    })
}
