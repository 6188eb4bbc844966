//! Target tasks from Hugging Face datasets: definitions in the paper's `tasks.yaml` format,
//! imported into task folders (`train.jsonl`, `validation.jsonl`, `test.jsonl`, `task.toml`,
//! `indices.json`) that specs, the UI and the CLI find by name.

pub mod define;
pub mod import;
pub mod numpy;
pub mod parquet;
pub mod render;
pub mod source;
pub mod split;
pub mod value;

use std::path::{Path, PathBuf};

pub use define::TaskDef;
pub use import::{ImportOptions, Imported, Provenance, TaskToml};

/// Where imported tasks are kept: `LORACYCLE_TASKS_DIR`, else the platform data folder
/// (`~/.local/share/loracycle/tasks` on Linux).
pub fn tasks_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("LORACYCLE_TASKS_DIR") {
        return PathBuf::from(p);
    }
    directories::ProjectDirs::from("", "", "loracycle")
        .map(|d| d.data_dir().join("tasks"))
        .unwrap_or_else(|| PathBuf::from("loracycle-tasks"))
}

/// An imported task (a folder of the tasks dir holding the three split files).
#[derive(Debug, Clone)]
pub struct TaskEntry {
    pub name: String,
    pub dir: PathBuf,
    /// `task.toml`'s `[source]`, when the folder was made by `task import`.
    pub source: Option<Provenance>,
    pub settings: crate::eval::TaskSettings,
}

/// The task folder of imported task `name`, if there is one.
pub fn find(name: &str) -> Option<PathBuf> {
    find_in(&tasks_dir(), name)
}

/// The task folder of imported task `name` in the tasks folder `root`, if there is one.
pub fn find_in(root: &Path, name: &str) -> Option<PathBuf> {
    if !crate::pool::is_plain_name(name) {
        return None;
    }
    let dir = root.join(name);
    crate::run::spec::TaskSpec::missing_files(&dir)
        .is_empty()
        .then_some(dir)
}

/// Every imported task in `dir`, by name; folders without the three split files are skipped.
pub fn list(dir: &Path) -> Vec<TaskEntry> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<TaskEntry> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let dir = e.path();
            if name.starts_with('.')
                || !crate::pool::is_plain_name(&name)
                || !crate::run::spec::TaskSpec::missing_files(&dir).is_empty()
            {
                return None;
            }
            let source = read_source(&dir);
            let settings = crate::eval::TaskSettings::read(&dir).unwrap_or_default();
            Some(TaskEntry {
                name,
                dir,
                source,
                settings,
            })
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn read_source(dir: &Path) -> Option<Provenance> {
    let text = crate::untrusted::read_text(
        &dir.join(crate::eval::answer::TASK_FILE),
        crate::untrusted::SMALL,
    )
    .ok()?;
    let mut t: toml::Table = toml::from_str(&text).ok()?;
    t.remove("source")?.try_into().ok()
}
