//! The HF cache layout shared with the Python tools (`$HF_HOME/hub/models--{org}--{name}/{refs,
//! snapshots/<rev>,blobs}`), scanned offline, and loracycle's own metadata cache of rule verdicts
//! keyed by repo and revision.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::rules::Verdict;
use crate::adapter::write::write_atomic;

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
        let base = self.hub().join(repo_folder(repo));
        let commit = std::fs::read_to_string(base.join("refs").join(revision))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| super::is_plain_name(s))
            .unwrap_or_else(|| revision.to_string());
        base.join("snapshots").join(commit)
    }
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
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(home.hub()) else {
        return out;
    };
    for entry in rd.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("models--") else {
            continue;
        };
        let Some((org, repo)) = rest.split_once("--") else {
            continue;
        };
        let id = format!("{org}/{repo}");
        if !super::hub::valid_repo_id(&id) {
            continue;
        }
        let Ok(rev) = std::fs::read_to_string(entry.path().join("refs").join("main")) else {
            continue;
        };
        let rev = rev.trim().to_string();
        if !super::is_plain_name(&rev) {
            continue;
        }
        let dir = entry.path().join("snapshots").join(&rev);
        if dir.join("adapter_config.json").is_file() {
            out.push(CachedRepo {
                id,
                revision: rev,
                dir,
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
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

/// The metadata cache: one JSON file, rewritten atomically.
#[derive(Debug, Default)]
pub struct MetaCache {
    path: Option<PathBuf>,
    pub entries: BTreeMap<String, CachedMeta>,
    dirty: bool,
}

impl MetaCache {
    /// `$LORACYCLE_CACHE_DIR/pool-meta.json`, else the platform cache folder. A file that does not
    /// parse is ignored (and replaced on the next save): it is only a cache.
    pub fn open_default() -> Self {
        match cache_dir() {
            Some(d) => Self::open(&d.join("pool-meta.json")),
            None => Self::default(),
        }
    }

    pub fn open(path: &Path) -> Self {
        let entries = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Self {
            path: Some(path.to_path_buf()),
            entries,
            dirty: false,
        }
    }

    pub fn key(source: &str, id: &str, revision: &str) -> String {
        format!("{source}:{id}@{revision}")
    }

    pub fn get(&self, key: &str) -> Option<&CachedMeta> {
        self.entries.get(key)
    }

    pub fn put(&mut self, key: String, meta: CachedMeta) {
        if self.entries.get(&key) != Some(&meta) {
            self.entries.insert(key, meta);
            self.dirty = true;
        }
    }

    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string(&self.entries).expect("metadata serialises");
        write_atomic(path, text.as_bytes())?;
        self.dirty = false;
        Ok(())
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
    let s = lines.join(" ");
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
}
