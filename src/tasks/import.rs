//! `loracycle task import`: a task definition's splits built as the paper builds them, its rows
//! rendered, and a task folder written in one step (a temporary folder renamed into place, so a
//! failed or interrupted import leaves the old folder, or none, and never half of one).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::define::{Source, TaskDef};
use super::render::{Rendered, Row, render};
use super::source::{Fetch, Located, Part, locate};
use super::split::{Pick, plan};
use crate::eval::{Extract, Normalize, TaskSettings};

/// The file listing the rows chosen for each split, in the paper's `subset_idx_*.json` form:
/// `{"train": ["train_12", …], "valid": […], "test": […]}`.
pub const INDICES_FILE: &str = "indices.json";

/// The most rows a task's splits may hold together (OpenMathInstruct-2, the paper's largest, has
/// 14M).
pub const MAX_ROWS: usize = 1 << 24;

/// Where an imported task came from and how it was built: `task.toml`'s `[source]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Provenance {
    /// The dataset id, or the JSON file read.
    pub dataset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// The snapshot commit(s) read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<String>,
    /// The tasks file and the task's name in it.
    pub tasks_file: String,
    pub task: String,
    pub data_size: usize,
    pub seed: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task_type: String,
    pub answer_len: String,
    /// The paper's metric for the task, when it is not exact match (loracycle scores exact
    /// match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The dataset split each of train, validation and test was drawn from.
    pub splits: BTreeMap<String, String>,
    /// Rows in each.
    pub rows: BTreeMap<String, usize>,
    /// How the splits came about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub imported: String,
}

/// `task.toml` as `task import` writes it: the judging settings, then `[source]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskToml {
    #[serde(flatten)]
    pub settings: TaskSettings,
    pub source: Provenance,
}

/// What one import made.
#[derive(Debug, Clone)]
pub struct Imported {
    pub name: String,
    pub dir: PathBuf,
    pub source: Provenance,
    pub settings: TaskSettings,
}

/// Import options.
pub struct ImportOptions<'a> {
    pub out: PathBuf,
    pub data_size: usize,
    pub seed: u64,
    pub tasks_file: &'a Path,
}

/// The rows the plan chose, rendered, per split.
pub struct Built {
    pub train: Vec<Rendered>,
    pub validation: Vec<Rendered>,
    pub test: Vec<Rendered>,
    pub source: Provenance,
}

/// Builds one task's rows in memory (nothing is written).
pub fn build(
    def: &TaskDef,
    fetch: &mut Fetch<'_>,
    opts: &ImportOptions<'_>,
) -> Result<Built, String> {
    let located = locate(def, fetch)?;
    check_columns(def, &located)?;
    let sizes: Vec<(String, usize)> = located
        .splits
        .iter()
        .map(|s| (s.key.clone(), s.rows()))
        .collect();
    // The plan holds a pick per row: a dataset that claims more rows than any task dataset has
    // is refused before that memory is asked for.
    let total: usize = sizes.iter().map(|(_, n)| *n).sum();
    if total > MAX_ROWS {
        return Err(format!(
            "task {}: the dataset's splits claim {total} rows; at most {MAX_ROWS} are imported",
            def.name
        ));
    }
    let p =
        plan(&sizes, opts.data_size, opts.seed).map_err(|e| format!("task {}: {e}", def.name))?;
    let mut rows = fetch_rows(def, &located, [&p.train, &p.validation, &p.test])?;
    let mut take = |picks: &[Pick]| -> Result<Vec<Rendered>, String> {
        picks
            .iter()
            .map(|(key, i)| {
                let row = rows
                    .remove(&(key.clone(), *i))
                    .ok_or_else(|| format!("task {}: row {key}_{i} was not read", def.name))?;
                render(def, &format!("{key}_{i}"), &row)
            })
            .collect()
    };
    // Each row is taken once: train, validation and test never share one.
    let train = take(&p.train)?;
    let validation = take(&p.validation)?;
    let test = take(&p.test)?;
    for (name, v) in [
        ("train", &train),
        ("validation", &validation),
        ("test", &test),
    ] {
        if v.is_empty() {
            return Err(format!(
                "task {}: the {name} split is empty (data_size {} leaves none)",
                def.name, opts.data_size
            ));
        }
    }
    let source_of = |want: &[&str]| -> String {
        located
            .splits
            .iter()
            .find(|s| want.contains(&s.key.as_str()))
            .map(|s| s.source.clone())
            .unwrap_or_else(|| {
                located
                    .splits
                    .iter()
                    .find(|s| s.key == "train")
                    .map(|s| s.source.clone())
                    .unwrap_or_default()
            })
    };
    let (dataset, config) = match &def.source {
        Source::Hub {
            dataset,
            config,
            subsets,
        } => (
            dataset.clone(),
            if subsets.is_empty() {
                Some(config.clone().unwrap_or_else(|| "default".into()))
            } else {
                Some(subsets.join("+"))
            },
        ),
        Source::Json(p) => (p.display().to_string(), None),
    };
    let source = Provenance {
        dataset,
        config,
        revisions: located.revisions.clone(),
        tasks_file: opts.tasks_file.display().to_string(),
        task: def.name.clone(),
        data_size: opts.data_size,
        seed: opts.seed,
        task_type: def.task_type.clone(),
        answer_len: def.answer_len.name().into(),
        metric: def.metric.clone(),
        splits: BTreeMap::from([
            ("train".into(), source_of(&["train"])),
            (
                "validation".into(),
                source_of(&["valid", "dev", "validation"]),
            ),
            ("test".into(), source_of(&["test"])),
        ]),
        rows: BTreeMap::from([
            ("train".into(), train.len()),
            ("validation".into(), validation.len()),
            ("test".into(), test.len()),
        ]),
        notes: p.notes.clone(),
        imported: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    Ok(Built {
        train,
        validation,
        test,
        source,
    })
}

/// Every column the definition names is in every part of every split.
fn check_columns(def: &TaskDef, located: &Located) -> Result<(), String> {
    use super::define::{Part as P, UserInput};
    let mut named: Vec<(String, String)> = Vec::new();
    match &def.user_input {
        UserInput::Column(c) => named.push(("user_input".into(), c.clone())),
        UserInput::Fields(parts) => {
            for (k, p) in parts {
                let c = match p {
                    P::Column(c) | P::Choices { column: c, .. } => c,
                };
                named.push((format!("user_input.{k}"), c.clone()));
            }
        }
    }
    named.push(("assistant_output".into(), def.assistant_output.clone()));
    for s in &located.splits {
        for part in &s.parts {
            let have = part.columns();
            for (field, c) in &named {
                if !have.contains(c) {
                    return Err(format!(
                        "task {}: {field} names column {c:?}, which the {} split does not have (its columns: {})",
                        def.name,
                        s.source,
                        have.join(", ")
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Reads the picked rows: (split key, index) → row.
fn fetch_rows(
    def: &TaskDef,
    located: &Located,
    picks: [&Vec<Pick>; 3],
) -> Result<BTreeMap<(String, usize), Row>, String> {
    let columns = def.columns();
    let mut wanted: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for p in picks {
        for (k, i) in p.iter() {
            wanted.entry(k.as_str()).or_default().push(*i);
        }
    }
    let mut out = BTreeMap::new();
    for split in &located.splits {
        let Some(idx) = wanted.get(split.key.as_str()) else {
            continue;
        };
        let mut start = 0usize;
        for part in &split.parts {
            let n = part.rows();
            let local: Vec<usize> = idx
                .iter()
                .filter(|&&i| i >= start && i < start + n)
                .map(|&i| i - start)
                .collect();
            if !local.is_empty() {
                match part {
                    Part::Parquet { file, category } => {
                        let rows = super::parquet::read(file, &columns, &local)
                            .map_err(|e| format!("task {}: {e}", def.name))?;
                        for (i, mut row) in rows {
                            if let Some(c) = category {
                                row.insert("category".into(), super::value::Value::Str(c.clone()));
                            }
                            out.insert((split.key.clone(), start + i), row);
                        }
                    }
                    Part::Rows(rows) => {
                        for i in local {
                            out.insert((split.key.clone(), start + i), rows[i].clone());
                        }
                    }
                }
            }
            start += n;
        }
    }
    Ok(out)
}

/// The judging settings a definition implies: the paper's generation budget for its answer
/// length, the text after the last `####`, and its normalisation.
pub fn settings(def: &TaskDef) -> TaskSettings {
    TaskSettings {
        max_new_tokens: Some(def.answer_len.max_new_tokens()),
        extract: Some(Extract::AfterMarker),
        normalize: Some(Normalize::Paper),
        max_prompt_tokens: None,
    }
}

/// Writes a built task as `opts.out/<name>/`, replacing an older import of it in one rename.
pub fn write(def: &TaskDef, built: &Built, out: &Path) -> Result<Imported, String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let dir = out.join(&def.name);
    // Checked before anything is staged, and again just before the swap.
    let replaces = replaceable(&dir)?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", def.name))
        .suffix(".importing")
        .tempdir_in(out)
        .map_err(|e| io(out, e))?;
    let jsonl = |rows: &[Rendered]| -> Vec<u8> {
        let mut b = Vec::new();
        for r in rows {
            serde_json::to_writer(&mut b, r).expect("rows serialise");
            b.push(b'\n');
        }
        b
    };
    let settings = settings(def);
    let toml_text = format!(
        "# Written by `loracycle task import` from {} (task {}).\n# The judging settings below \
         override the protocol's defaults; [source] records how the splits were built.\n{}",
        built.source.tasks_file,
        def.name,
        toml::to_string(&TaskToml {
            settings,
            source: built.source.clone(),
        })
        .map_err(|e| e.to_string())?
    );
    let ids = |rows: &[Rendered]| rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    let indices = serde_json::json!({
        "train": ids(&built.train),
        "valid": ids(&built.validation),
        "test": ids(&built.test),
    });
    let files: [(&str, Vec<u8>); 5] = [
        ("train.jsonl", jsonl(&built.train)),
        ("validation.jsonl", jsonl(&built.validation)),
        ("test.jsonl", jsonl(&built.test)),
        (crate::eval::answer::TASK_FILE, toml_text.into_bytes()),
        (INDICES_FILE, {
            let mut b = serde_json::to_vec(&indices).expect("ids serialise");
            b.push(b'\n');
            b
        }),
    ];
    for (name, bytes) in &files {
        let p = tmp.path().join(name);
        let mut f = std::fs::File::create(&p).map_err(|e| io(&p, e))?;
        f.write_all(bytes).map_err(|e| io(&p, e))?;
        f.sync_all().map_err(|e| io(&p, e))?;
    }
    if replaceable(&dir)? != replaces {
        return Err(format!(
            "{}: appeared or changed while the task was imported; nothing was replaced",
            dir.display()
        ));
    }
    let staged = tmp.keep();
    let swap = if replaces {
        // Both names stay valid throughout: the new folder and the old one trade places.
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &staged,
            rustix::fs::CWD,
            &dir,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| io(&dir, e.into()))
        .map(|()| true)
    } else {
        // NOREPLACE: `rename` would quietly replace an empty folder made in the meantime.
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &staged,
            rustix::fs::CWD,
            &dir,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(|e| io(&dir, e.into()))
        .map(|()| false)
    };
    match swap {
        Ok(true) => {
            let _ = std::fs::remove_dir_all(&staged);
        }
        Ok(false) => {}
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(e);
        }
    }
    if let Ok(d) = std::fs::File::open(out) {
        let _ = d.sync_all();
    }
    Ok(Imported {
        name: def.name.clone(),
        dir,
        source: built.source.clone(),
        settings,
    })
}

/// The files `task import` writes into a task folder; a folder holding anything else is not
/// one of its own.
const WRITTEN: [&str; 5] = [
    "train.jsonl",
    "validation.jsonl",
    "test.jsonl",
    crate::eval::answer::TASK_FILE,
    INDICES_FILE,
];

/// Whether `dir` is an earlier import that may be replaced (true), or absent (false). Anything
/// else there (a folder of the user's, a file, a link) is a refusal naming it: an import
/// replaces only a folder it made itself, which it knows by its `task.toml` with a `[source]`
/// table and by holding nothing but the files an import writes.
fn replaceable(dir: &Path) -> Result<bool, String> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let refuse = |why: String| {
        Err(format!(
            "{}: {why}; `task import` replaces only a task folder it made itself. Move it away \
             or import with another --out",
            dir.display()
        ))
    };
    if meta.file_type().is_symlink() {
        return refuse("is a symbolic link".into());
    }
    if !meta.is_dir() {
        return refuse("exists and is not a folder".into());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name();
        let ours = name.to_str().is_some_and(|n| WRITTEN.contains(&n));
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        if !ours || !regular {
            return refuse(format!(
                "holds {}, which `task import` did not write",
                crate::untrusted::printable(&name.to_string_lossy())
            ));
        }
    }
    let toml_path = dir.join(crate::eval::answer::TASK_FILE);
    let made = crate::untrusted::read_text(&toml_path, crate::untrusted::SMALL)
        .ok()
        .and_then(|t| toml::from_str::<TaskToml>(&t).ok());
    match made {
        Some(_) => Ok(true),
        None => refuse(format!(
            "has no {} with a [source] table written by `task import`",
            crate::eval::answer::TASK_FILE
        )),
    }
}
