//! Where a task's rows are: parquet files of a Hugging Face dataset in the HF cache the Python
//! tools share (`$HF_HOME/hub/datasets--org--name/snapshots/<commit>/`), fetched from the Hub's
//! parquet listing when missing, or a local JSON / JSONL file.
//!
//! In a snapshot, a config's splits are found as the Hub's parquet conversion lays them out
//! (`<config>/<split>/0000.parquet`, `<config>/partial-<split>/…`) or as `push_to_hub` does
//! (`<config>/<split>-00000-of-00001.parquet`, and `data/<split>-…` for the default config).
//! The conversion branch (`refs/convert/parquet`) is looked in first, then `main`, then any
//! other snapshot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::define::{Source, TaskDef};
use super::parquet::{self, FileInfo};
use super::render::Row;
use super::value::Value;
use crate::pool::cache::{HfHome, dataset_folder};
use crate::pool::hub::Hub;

/// The most a JSON task file may be: it is parsed whole, and a parsed value takes up to ~16
/// times its text (the paper's JSON tasks are a few megabytes).
pub const MAX_JSON: u64 = 128 << 20;
/// The revision the Hub's parquet conversion is kept on.
pub const CONVERT_REF: &str = "refs/convert/parquet";

/// Rows of one split: parquet files (each row tagged with a config for combined subsets) or
/// rows read whole from JSON.
#[derive(Debug, Clone)]
pub enum Part {
    Parquet {
        file: FileInfo,
        category: Option<String>,
    },
    Rows(Vec<Row>),
}

impl Part {
    pub fn rows(&self) -> usize {
        match self {
            Part::Parquet { file, .. } => file.rows(),
            Part::Rows(r) => r.len(),
        }
    }
    /// The columns its rows have.
    pub fn columns(&self) -> Vec<String> {
        match self {
            Part::Parquet { file, category } => {
                let mut c = file.columns.clone();
                if category.is_some() {
                    c.push("category".into());
                }
                c
            }
            Part::Rows(rows) => {
                let mut c: Vec<String> = rows.iter().flat_map(|r| r.keys().cloned()).collect();
                c.sort();
                c.dedup();
                c
            }
        }
    }
}

/// A split by the paper's key (the split map's key, or the dataset's own name).
#[derive(Debug, Clone)]
pub struct Split {
    pub key: String,
    /// The dataset's name for it.
    pub source: String,
    pub parts: Vec<Part>,
}

impl Split {
    pub fn rows(&self) -> usize {
        self.parts.iter().map(Part::rows).sum()
    }
}

/// A task's splits and where they were read from.
#[derive(Debug, Clone)]
pub struct Located {
    pub splits: Vec<Split>,
    /// The snapshot commit(s) read, one per config.
    pub revisions: Vec<String>,
}

/// How to reach the Hub: `None` is offline (the HF cache only).
pub struct Fetch<'a> {
    pub home: HfHome,
    pub hub: Option<&'a Hub>,
    pub progress: &'a mut dyn FnMut(&str),
}

/// Finds (or fetches) every split of `def`.
pub fn locate(def: &TaskDef, fetch: &mut Fetch<'_>) -> Result<Located, String> {
    let task = &def.name;
    let (by_name, revisions) = match &def.source {
        Source::Json(path) => (
            BTreeMap::from([("train".to_string(), vec![Part::Rows(read_json(path)?)])]),
            Vec::new(),
        ),
        Source::Hub {
            dataset,
            config,
            subsets,
        } => {
            let configs: Vec<(String, bool)> = if subsets.is_empty() {
                vec![(config.clone().unwrap_or_else(|| "default".into()), false)]
            } else {
                subsets.iter().map(|s| (s.clone(), true)).collect()
            };
            let mut by_name: BTreeMap<String, Vec<Part>> = BTreeMap::new();
            let mut revisions = Vec::new();
            for (c, tag) in configs {
                let (commit, splits) =
                    config_splits(dataset, &c, fetch).map_err(|e| format!("task {task}: {e}"))?;
                revisions.push(commit);
                for (split, files) in splits {
                    for f in files {
                        let file = parquet::info(&f).map_err(|e| format!("task {task}: {e}"))?;
                        by_name
                            .entry(split.clone())
                            .or_default()
                            .push(Part::Parquet {
                                file,
                                category: tag.then(|| c.clone()),
                            });
                    }
                }
            }
            (by_name, revisions)
        }
    };
    let splits = match &def.split {
        None => by_name
            .into_iter()
            .map(|(name, parts)| Split {
                key: name.clone(),
                source: name,
                parts,
            })
            .collect(),
        Some(map) => {
            let have: Vec<String> = by_name.keys().cloned().collect();
            let mut out = Vec::new();
            for (key, name) in map {
                let parts = match by_name.get(name) {
                    Some(p) => p.clone(),
                    None => {
                        return Err(format!(
                            "task {task}: split: {key}: the dataset has no split {name:?} (it has {})",
                            have.join(", ")
                        ));
                    }
                };
                out.push(Split {
                    key: key.clone(),
                    source: name.clone(),
                    parts,
                });
            }
            out
        }
    };
    for s in &splits {
        if s.rows() == 0 {
            return Err(format!(
                "task {task}: the {} split ({}) is empty",
                s.key, s.source
            ));
        }
    }
    Ok(Located { splits, revisions })
}

/// A config's splits: the commit read and each split's parquet files, in order.
fn config_splits(
    dataset: &str,
    config: &str,
    fetch: &mut Fetch<'_>,
) -> Result<(String, BTreeMap<String, Vec<PathBuf>>), String> {
    let folder = fetch.home.hub().join(dataset_folder(dataset));
    let cached = in_cache(&folder, config);
    let hub = match (cached, fetch.hub) {
        // Files `datasets` or `huggingface_hub` put on main are taken as they are.
        (Some((commit, splits, false)), _) | (Some((commit, splits, _)), None) => {
            return Ok((commit, splits));
        }
        (None, None) => {
            return Err(format!(
                "dataset {dataset} (config {config}) is not in the HF cache ({}) and --offline forbids downloading it",
                folder.display()
            ));
        }
        // The conversion branch is checked against the listing, so that an earlier download
        // cut short (train there, test not) is completed rather than read as a dataset
        // without a test split.
        (Some((commit, splits, true)), Some(hub)) => match hub.dataset_parquet(dataset) {
            Ok(listing) => {
                download(hub, dataset, config, &listing, fetch.progress)?;
                return in_cache(&folder, config)
                    .map(|(c, s, _)| (c, s))
                    .ok_or_else(|| {
                        format!("dataset {dataset} (config {config}): the cache lost its files")
                    });
            }
            Err(e) => {
                (fetch.progress)(&format!(
                    "cannot check {dataset} against the Hub ({e}); reading the HF cache as it is"
                ));
                return Ok((commit, splits));
            }
        },
        (None, Some(hub)) => hub,
    };
    let listing = hub.dataset_parquet(dataset).map_err(|e| e.to_string())?;
    download(hub, dataset, config, &listing, fetch.progress)?;
    in_cache(&folder, config)
        .map(|(c, s, _)| (c, s))
        .ok_or_else(|| {
            format!("dataset {dataset} (config {config}): the Hub lists no parquet files for it")
        })
}

/// Fetches every file the listing names for `config` (a cached one is not fetched again).
fn download(
    hub: &Hub,
    dataset: &str,
    config: &str,
    listing: &crate::pool::hub::ParquetListing,
    progress: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let Some(splits) = listing.get(config) else {
        let have: Vec<&str> = listing.keys().map(String::as_str).collect();
        return Err(format!(
            "dataset {dataset} has no config {config:?} (its configs: {})",
            if have.is_empty() {
                "none listed".into()
            } else {
                have.join(", ")
            }
        ));
    };
    for (split, urls) in splits {
        if !super::define::word(split) {
            return Err(format!(
                "the parquet listing of {dataset} names a split {:?}, not a plain name",
                crate::untrusted::printable(split)
            ));
        }
        for (n, url) in urls.iter().enumerate() {
            let (revision, file) = target(dataset, config, split, n, url);
            if hub.cached_dataset_file(dataset, &revision, &file).is_some() {
                continue;
            }
            progress(&format!(
                "downloading {dataset} {file} ({} of {} for {split})",
                n + 1,
                urls.len()
            ));
            hub.fetch_dataset_file(dataset, url, &revision, &file, parquet::MAX_FILE)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Where a listed URL's file goes in the cache: a `…/resolve/<rev>/<path>` URL names both; the
/// listing's own `…/parquet/<config>/<split>/<n>.parquet` URLs are the conversion branch's
/// `<config>/<split>/<nnnn>.parquet`.
fn target(dataset: &str, config: &str, split: &str, n: usize, url: &str) -> (String, String) {
    let marker = format!("/datasets/{dataset}/resolve/");
    if let Some(at) = url.find(&marker) {
        let rest = &url[at + marker.len()..];
        let rest = rest.split(['?', '#']).next().unwrap_or(rest);
        if let Some((rev, path)) = rest.split_once('/') {
            let rev = percent_decode(rev);
            let path = percent_decode(path);
            return (rev, path);
        }
    }
    (
        CONVERT_REF.to_string(),
        format!("{config}/{split}/{n:04}.parquet"),
    )
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A config's splits in the cached snapshots, first found first.
/// The flag says whether they are the conversion branch's.
fn in_cache(folder: &Path, config: &str) -> Option<(String, BTreeMap<String, Vec<PathBuf>>, bool)> {
    let read_ref = |r: &str| {
        crate::untrusted::read_text(&folder.join("refs").join(r), crate::pool::cache::REF_BYTES)
            .ok()
            .map(|c| c.trim().to_string())
            .filter(|c| crate::pool::is_plain_name(c))
    };
    let convert = read_ref(CONVERT_REF).map(|c| folder.join("snapshots").join(c));
    let mut snaps: Vec<PathBuf> = Vec::new();
    for r in [CONVERT_REF, "main"] {
        if let Some(c) = read_ref(r) {
            snaps.push(folder.join("snapshots").join(c));
        }
    }
    if let Ok(rd) = std::fs::read_dir(folder.join("snapshots")) {
        let mut rest: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        rest.sort();
        snaps.extend(rest);
    }
    let mut seen = std::collections::HashSet::new();
    for snap in snaps {
        if !seen.insert(snap.clone()) || !snap.is_dir() {
            continue;
        }
        let mut dirs = vec![snap.join(config)];
        if config == "default" {
            dirs.push(snap.join("data"));
            dirs.push(snap.clone());
        }
        for d in dirs {
            let splits = splits_in(&d);
            if !splits.is_empty() {
                let commit = snap
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                return Some((commit, splits, convert.as_ref() == Some(&snap)));
            }
        }
    }
    None
}

/// Splits in one folder: sub-folders of parquet files (`train/0000.parquet`, `partial-train/…`)
/// or files named by split (`train-00000-of-00002.parquet`, `train.parquet`).
fn splits_in(dir: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let Some(name) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            let files = parquet_files(&p);
            if !files.is_empty() {
                let split = name.strip_prefix("partial-").unwrap_or(&name).to_string();
                out.entry(split).or_default().extend(files);
            }
        } else if let Some(stem) = name.strip_suffix(".parquet") {
            let split = shard_split(stem).unwrap_or(stem).to_string();
            if super::define::word(&split) {
                out.entry(split).or_default().push(p);
            }
        }
    }
    out
}

/// `train` of `train-00000-of-00002`.
fn shard_split(stem: &str) -> Option<&str> {
    let (head, total) = stem.rsplit_once("-of-")?;
    let (split, shard) = head.rsplit_once('-')?;
    (shard.bytes().all(|b| b.is_ascii_digit()) && total.bytes().all(|b| b.is_ascii_digit()))
        .then_some(split)
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A JSON file's records: a list of objects, an object of equal-length columns, or JSON Lines.
pub fn read_json(path: &Path) -> Result<Vec<Row>, String> {
    let text = crate::untrusted::read_text(path, MAX_JSON)
        .map_err(|e| format!("{}: {}", path.display(), e.into_io()))?;
    let record = |v: Value, at: &dyn Fn() -> String| -> Result<Row, String> {
        match v {
            Value::Map(m) => Ok(m.into_iter().collect()),
            o => Err(format!(
                "{}: {} is {}, not an object",
                path.display(),
                at(),
                o.kind()
            )),
        }
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::List(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| record(v, &|| format!("record {i}")))
            .collect(),
        Ok(Value::Map(cols)) => {
            let n = match cols.first() {
                Some((_, Value::List(l))) => l.len(),
                _ => usize::MAX,
            };
            if cols
                .iter()
                .any(|(_, v)| !matches!(v, Value::List(l) if l.len() == n))
            {
                return Err(format!(
                    "{}: one JSON object that is not columns of equal length; give a list of records or JSON Lines",
                    path.display()
                ));
            }
            let mut rows: Vec<Row> = (0..n).map(|_| Row::new()).collect();
            for (k, v) in cols {
                let Value::List(items) = v else {
                    unreachable!()
                };
                for (r, x) in rows.iter_mut().zip(items) {
                    r.insert(k.clone(), x);
                }
            }
            Ok(rows)
        }
        Ok(o) => Err(format!(
            "{}: the JSON is {}, not records",
            path.display(),
            o.kind()
        )),
        Err(_) => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let v: Value = serde_json::from_str(l)
                    .map_err(|e| format!("{}: line {}: not JSON: {e}", path.display(), i + 1))?;
                record(v, &|| format!("line {}", i + 1))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_give_their_split() {
        assert_eq!(shard_split("train-00000-of-00002"), Some("train"));
        assert_eq!(shard_split("dev_r1-00003-of-00010"), Some("dev_r1"));
        assert_eq!(shard_split("train"), None);
    }

    #[test]
    fn listed_urls_map_to_cache_files() {
        assert_eq!(
            target(
                "org/ds",
                "c",
                "train",
                3,
                "https://huggingface.co/api/datasets/org/ds/parquet/c/train/3.parquet"
            ),
            ("refs/convert/parquet".into(), "c/train/0003.parquet".into())
        );
        assert_eq!(
            target(
                "org/ds",
                "c",
                "train",
                0,
                "https://h/datasets/org/ds/resolve/refs%2Fconvert%2Fparquet/c/partial-train/0000.parquet"
            ),
            (
                "refs/convert/parquet".into(),
                "c/partial-train/0000.parquet".into()
            )
        );
    }
}
