//! The HF cache layout shared with the Python tools (`$HF_HOME/hub/models--{org}--{name}/{refs,
//! snapshots/<rev>,blobs}`), scanned offline, and loracycle's own metadata cache of rule verdicts
//! keyed by repo and revision.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::rules::Verdict;
use crate::atomic_write::write_atomic;

/// A ref file holds one commit hash and a newline.
pub const REF_BYTES: u64 = 4096;

/// `HF_HOME` (default `~/.cache/huggingface`, or `$XDG_CACHE_HOME/huggingface`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfHome {
    pub root: PathBuf,
}

impl HfHome {
    pub fn from_env() -> Self {
        let root = std::env::var_os("HF_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("huggingface"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface"))
            })
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface"));
        Self { root }
    }

    pub fn hub(&self) -> PathBuf {
        std::env::var_os("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("hub"))
    }

    /// The snapshot folder of a repo at a revision (a commit hash, or a ref resolved through
    /// `refs/`).
    pub fn snapshot(&self, repo: &str, revision: &str) -> PathBuf {
        snapshot_in(&self.hub().join(repo_folder(repo)), revision)
    }
}

/// The snapshot folder of the repo cached in `base` at `revision` (a commit, or a ref resolved
/// through `refs/`).
pub fn snapshot_in(base: &Path, revision: &str) -> PathBuf {
    let commit = crate::untrusted::read_text(&base.join("refs").join(revision), REF_BYTES)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| super::is_plain_name(s))
        .unwrap_or_else(|| revision.to_string());
    base.join("snapshots").join(commit)
}

/// `datasets--org--name` (or `datasets--name` for a dataset without an owner).
pub fn dataset_folder(dataset: &str) -> String {
    format!("datasets--{}", dataset.replace('/', "--"))
}

/// `models--org--name`.
pub fn repo_folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// A repo found in the cache: its id, the commit `refs/main` points to, and the snapshot folder.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedRepo {
    pub id: String,
    pub revision: String,
    pub dir: PathBuf,
}

/// Every cached model repo whose main snapshot holds an `adapter_config.json`.
pub fn scan_adapters(home: &HfHome) -> Vec<CachedRepo> {
    let Ok(rd) = std::fs::read_dir(home.hub()) else {
        return Vec::new();
    };
    let mut out: Vec<CachedRepo> = rd
        .filter_map(|e| e.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let (org, repo) = name.strip_prefix("models--")?.split_once("--")?;
            cached_adapter(home, &format!("{org}/{repo}"))
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// One cached repo, if its id is valid, `refs/main` names a commit and that snapshot holds an
/// `adapter_config.json`.
pub fn cached_adapter(home: &HfHome, id: &str) -> Option<CachedRepo> {
    if !super::hub::valid_repo_id(id) {
        return None;
    }
    let folder = home.hub().join(repo_folder(id));
    let rev = crate::untrusted::read_text(&folder.join("refs").join("main"), REF_BYTES).ok()?;
    let rev = rev.trim().to_string();
    if !super::is_plain_name(&rev) {
        return None;
    }
    let dir = folder.join("snapshots").join(&rev);
    dir.join("adapter_config.json")
        .is_file()
        .then(|| CachedRepo {
            id: id.to_string(),
            revision: rev,
            dir,
        })
}

/// loracycle's cache folder: `$LORACYCLE_CACHE_DIR`, else the platform cache folder
/// (`~/.cache/loracycle` on Linux).
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("LORACYCLE_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            directories::ProjectDirs::from("", "", "loracycle").map(|d| d.cache_dir().to_path_buf())
        })
}

/// What loracycle remembers about one adapter revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CachedMeta {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_verdicts: Vec<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<String>,
}

/// A cache kept as one JSON object in a file, rewritten atomically (temporary file + rename) on
/// save. Several processes may share the file (array tasks on a cluster with a shared home):
/// a save first reads what the others wrote and keeps their entries, so no process undoes
/// another's work, and a reader never sees half a file. A file that does not parse is ignored
/// (and replaced on the next save): it is only a cache.
#[derive(Debug)]
pub struct JsonCache<V> {
    path: Option<PathBuf>,
    entries: BTreeMap<String, V>,
    /// Keys this process put since its last save.
    changed: BTreeSet<String>,
}

impl<V> Default for JsonCache<V> {
    /// A cache in memory only (never saved).
    fn default() -> Self {
        Self {
            path: None,
            entries: BTreeMap::new(),
            changed: BTreeSet::new(),
        }
    }
}

impl<V: Serialize + DeserializeOwned + PartialEq> JsonCache<V> {
    /// `NAME` in loracycle's cache folder.
    pub fn open_named(name: &str) -> Self {
        match cache_dir() {
            Some(d) => Self::open(&d.join(name)),
            None => Self::default(),
        }
    }

    pub fn open(path: &Path) -> Self {
        Self {
            path: Some(path.to_path_buf()),
            entries: Self::read(path),
            changed: BTreeSet::new(),
        }
    }

    fn read(path: &Path) -> BTreeMap<String, V> {
        crate::untrusted::read_text(path, crate::untrusted::LARGE)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key)
    }

    pub fn put(&mut self, key: String, value: V) {
        if self.entries.get(&key) != Some(&value) {
            self.entries.insert(key.clone(), value);
            self.changed.insert(key);
        }
    }

    /// Writes the entries put since the last save, merged into what the file holds now.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if self.changed.is_empty() {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut merged = Self::read(path);
        for k in std::mem::take(&mut self.changed) {
            if let Some(v) = self.entries.remove(&k) {
                merged.insert(k, v);
            }
        }
        let text = serde_json::to_string(&merged).expect("cache entries serialise");
        let written = write_atomic(path, text.as_bytes());
        self.entries = merged;
        written
    }
}

/// The metadata cache, `pool-meta.json`: weight verdicts, norms and card excerpts per adapter
/// revision.
pub type MetaCache = JsonCache<CachedMeta>;

impl MetaCache {
    /// `pool-meta.json` in the cache folder (`$LORACYCLE_CACHE_DIR`, else the platform's).
    pub fn open_default() -> Self {
        Self::open_named("pool-meta.json")
    }

    pub fn key(source: &str, id: &str, revision: &str) -> String {
        format!("{source}:{id}@{revision}")
    }
}

/// The first lines of a model card after its YAML front matter (at most `max` characters).
pub fn card_excerpt(text: &str, max: usize) -> String {
    let body = match text.strip_prefix("---") {
        Some(rest) => rest.split_once("\n---").map_or(rest, |(_, b)| b),
        None => text,
    };
    let lines: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(3)
        .collect();
    let s = crate::untrusted::printable(&lines.join(" ")).into_owned();
    if s.chars().count() > max {
        s.chars()
            .take(max - 1)
            .chain(std::iter::once('…'))
            .collect()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_excerpt_skips_front_matter() {
        let card =
            "---\nlicense: mit\nbase_model: x\n---\n\n# caesar-3\n\nA LoRA that shifts letters.\n";
        assert_eq!(
            card_excerpt(card, 80),
            "# caesar-3 A LoRA that shifts letters."
        );
        assert_eq!(card_excerpt("plain text only", 6), "plain…");
    }

    #[test]
    fn snapshot_follows_refs_and_refuses_traversal() {
        let tmp = tempfile::tempdir().unwrap();
        let home = HfHome {
            root: tmp.path().to_path_buf(),
        };
        let repo = tmp.path().join("hub/models--org--name");
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123\n").unwrap();
        assert_eq!(
            home.snapshot("org/name", "main"),
            repo.join("snapshots/abc123")
        );
        std::fs::write(repo.join("refs/evil"), "../../etc").unwrap();
        assert_eq!(
            home.snapshot("org/name", "evil"),
            repo.join("snapshots/evil")
        );
    }

    #[test]
    fn cached_adapters_need_a_plain_main_ref_and_a_config() {
        let tmp = tempfile::tempdir().unwrap();
        let home = HfHome {
            root: tmp.path().to_path_buf(),
        };
        let repo = |id: &str, rev: &str, config: bool| {
            let dir = tmp.path().join("hub").join(repo_folder(id));
            std::fs::create_dir_all(dir.join("refs")).unwrap();
            std::fs::write(dir.join("refs/main"), format!("{rev}\n")).unwrap();
            let snap = dir.join("snapshots").join(rev);
            std::fs::create_dir_all(&snap).unwrap();
            if config {
                std::fs::write(snap.join("adapter_config.json"), "{}").unwrap();
            }
            snap
        };
        let good = repo("org/good", "abc123", true);
        repo("org/model", "def456", false);
        repo("org/escape", "..", true);
        let found = cached_adapter(&home, "org/good").unwrap();
        assert_eq!(
            found,
            CachedRepo {
                id: "org/good".into(),
                revision: "abc123".into(),
                dir: good,
            }
        );
        assert_eq!(cached_adapter(&home, "org/model"), None);
        assert_eq!(cached_adapter(&home, "org/escape"), None);
        assert_eq!(cached_adapter(&home, "org/absent"), None);
        assert_eq!(cached_adapter(&home, "../hub"), None);
        assert_eq!(scan_adapters(&home), vec![found]);
    }
}
