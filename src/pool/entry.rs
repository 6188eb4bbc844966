//! Pool entries: what the browser and `pool list` show, built from metadata only (configs, file
//! lists, the Hub listing, cached verdicts). Weights are read only to run the weight rules, once
//! per revision, and only when they are already on disk.

use std::path::{Path, PathBuf};

use super::hub::valid_repo_id;
use crate::model::weights::{model_identity, read_config};

use serde::{Deserialize, Serialize};

use super::cache::{CachedMeta, HfHome, MetaCache, card_excerpt, scan_adapters};
use super::hub::{Hub, HubError, HubModel};
use super::rules::{self, Files, Outcome, Rule, Verdict};
use super::{Filter, PoolSource};
use crate::adapter::{Adapter, AdapterConfig};
use crate::model::LlamaConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum EntryStatus {
    Usable,
    Rejected { rule: Rule, reason: String },
    NotDownloaded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolEntry {
    pub id: String,
    pub source: String,
    pub revision: Option<String>,
    pub rank: Option<usize>,
    pub alpha: Option<f64>,
    pub rslora: bool,
    pub target_modules: Vec<String>,
    pub size_bytes: Option<u64>,
    pub base_model: Option<String>,
    pub downloads: Option<u64>,
    pub likes: Option<u64>,
    pub last_modified: Option<String>,
    pub tags: Vec<String>,
    /// The model card's first lines.
    pub card: Option<String>,
    pub status: EntryStatus,
    /// ‖ΣΔW‖ once the weights were checked.
    pub norm: Option<f64>,
    /// The local folder, when the adapter is on disk.
    pub path: Option<PathBuf>,
    #[serde(skip)]
    pub verdicts: Vec<Verdict>,
}

impl PoolEntry {
    fn from_config(
        id: String,
        source: &str,
        revision: Option<String>,
        cfg: Option<&AdapterConfig>,
    ) -> Self {
        let target_modules = cfg
            .and_then(|c| c.target_modules.as_ref())
            .map(|v| match v {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                serde_json::Value::String(s) => vec![s.clone()],
                _ => Vec::new(),
            })
            .unwrap_or_default();
        Self {
            id,
            source: source.into(),
            revision,
            rank: cfg.map(|c| c.r),
            alpha: cfg.map(|c| c.lora_alpha),
            rslora: cfg.is_some_and(|c| c.use_rslora),
            target_modules,
            size_bytes: None,
            base_model: cfg.and_then(|c| {
                let b = c.base_model_name_or_path.as_deref()?;
                Some(crate::untrusted::printable(b).into_owned())
            }),
            downloads: None,
            likes: None,
            last_modified: None,
            tags: Vec::new(),
            card: None,
            status: EntryStatus::NotDownloaded,
            norm: None,
            path: None,
            verdicts: Vec::new(),
        }
    }

    /// The config a filter sees.
    fn filter_config(&self) -> AdapterConfig {
        AdapterConfig {
            r: self.rank.unwrap_or(0),
            lora_alpha: self.alpha.unwrap_or(0.0),
            target_modules: Some(serde_json::json!(self.target_modules)),
            ..Default::default()
        }
    }

    pub fn matches(&self, filter: &Filter) -> bool {
        filter.matches_config(&self.id, &self.filter_config())
    }

    /// Status from the verdicts: the first failing rule rejects; no weights means not downloaded.
    fn settle(&mut self, weights_present: bool) {
        self.status = match self.verdicts.iter().find(|v| v.outcome == Outcome::Fail) {
            Some(v) => EntryStatus::Rejected {
                rule: v.rule,
                reason: v.detail.clone(),
            },
            None if weights_present => EntryStatus::Usable,
            None => EntryStatus::NotDownloaded,
        };
    }
}

/// How to order a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Downloads,
    Likes,
    Rank,
    Name,
    Norm,
}

impl std::str::FromStr for SortKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "downloads" => SortKey::Downloads,
            "likes" => SortKey::Likes,
            "rank" => SortKey::Rank,
            "name" => SortKey::Name,
            "norm" => SortKey::Norm,
            _ => {
                return Err(format!(
                    "unknown sort key {s:?} (use downloads, likes, rank, name or norm)"
                ));
            }
        })
    }
}

impl SortKey {
    /// The order the Pool screen's `s` cycles through.
    pub const ALL: [SortKey; 5] = [
        SortKey::Name,
        SortKey::Rank,
        SortKey::Norm,
        SortKey::Downloads,
        SortKey::Likes,
    ];

    /// The name `--sort` takes.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Downloads => "downloads",
            SortKey::Likes => "likes",
            SortKey::Rank => "rank",
            SortKey::Name => "name",
            SortKey::Norm => "norm",
        }
    }

    /// The column's heading, as the Pool screen shows it.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Norm => "‖ΔW‖",
            other => other.name(),
        }
    }

    /// The next key of [`SortKey::ALL`], round.
    pub fn next(self) -> Self {
        let i = Self::ALL.iter().position(|&k| k == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }
}

/// The order of a listing, for `pool list` and the Pool screen alike: counts and norms largest
/// first, names A→Z, ranks smallest first; missing values last whatever the direction; ties by id.
pub fn compare(a: &PoolEntry, b: &PoolEntry, key: SortKey) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn missing_last<T>(
        a: Option<T>,
        b: Option<T>,
        present: impl FnOnce(T, T) -> Ordering,
    ) -> Ordering {
        match (a, b) {
            (Some(x), Some(y)) => present(x, y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    let primary = match key {
        SortKey::Downloads => missing_last(a.downloads, b.downloads, |x, y| y.cmp(&x)),
        SortKey::Likes => missing_last(a.likes, b.likes, |x, y| y.cmp(&x)),
        SortKey::Norm => missing_last(a.norm, b.norm, |x, y| y.total_cmp(&x)),
        SortKey::Rank => missing_last(a.rank, b.rank, |x, y| x.cmp(&y)),
        SortKey::Name => Ordering::Equal,
    };
    primary.then_with(|| a.id.cmp(&b.id))
}

/// Sorts in place by [`compare`].
pub fn sort(entries: &mut [PoolEntry], key: SortKey) {
    entries.sort_by(|a, b| compare(a, b, key));
}

/// Errors of a listing.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--base is needed for the {0} source (the base model's Hub id)")]
    NoBase(&'static str),
    #[error(transparent)]
    Lab(#[from] crate::lab::LabError),
}

/// Options of a listing.
pub struct ListOptions<'a> {
    pub base: Option<&'a str>,
    /// The base model's config, for the weight rules' shape checks.
    pub base_config: Option<&'a LlamaConfig>,
    pub endpoint: Option<&'a str>,
    pub offline: bool,
    /// Parallel config downloads from the Hub.
    pub jobs: usize,
}

/// Config verdicts, file facts and card of an adapter folder.
fn local_entry(
    id: String,
    source: &str,
    revision: Option<String>,
    dir: &Path,
    opts: &ListOptions<'_>,
    meta: &mut MetaCache,
) -> PoolEntry {
    let text =
        crate::untrusted::read_text(&dir.join("adapter_config.json"), crate::untrusted::SMALL);
    let parsed: Result<AdapterConfig, String> = match &text {
        Ok(t) => {
            serde_json::from_str(t).map_err(|e| format!("adapter_config.json is not valid: {e}"))
        }
        Err(e) => Err(format!("cannot read adapter_config.json: {e}")),
    };
    let weights = dir.join("adapter_model.safetensors");
    let files = Files {
        safetensors: weights.is_file(),
        pickle: dir.join("adapter_model.bin").is_file(),
    };
    let mut entry =
        PoolEntry::from_config(id.clone(), source, revision.clone(), parsed.as_ref().ok());
    entry.path = Some(dir.to_path_buf());
    entry.size_bytes = std::fs::metadata(&weights).ok().map(|m| m.len());
    entry.verdicts = rules::check_config(parsed.as_ref().map_err(String::as_str), files, opts.base);
    if let Ok(card) = crate::untrusted::read_text(&dir.join("README.md"), crate::untrusted::SMALL) {
        entry.card = Some(card_excerpt(&card, 160));
    }
    let config_ok = entry.verdicts.iter().all(|v| v.outcome != Outcome::Fail);
    if config_ok && files.safetensors {
        let rev = revision.unwrap_or_else(|| {
            let m = std::fs::metadata(&weights).ok();
            let mtime = m
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            format!("{}-{mtime}", m.map_or(0, |m| m.len()))
        });
        // Verdicts hold for these bytes against this base: the key names both.
        let key = MetaCache::key(
            source,
            &dir.display().to_string(),
            &format!(
                "{rev}@{}+{}",
                content_key(&weights),
                opts.base_config.map_or("none".into(), base_key)
            ),
        );
        let (verdicts, norm) = match meta.get(&key).cloned() {
            Some(c) if !c.weight_verdicts.is_empty() => (c.weight_verdicts, c.norm),
            _ => {
                let (v, n) = rules::check_weights(dir, opts.base_config);
                meta.put(
                    key,
                    CachedMeta {
                        weight_verdicts: v.clone(),
                        norm: n,
                        card: None,
                    },
                );
                (v, n)
            }
        };
        entry.verdicts.extend(verdicts);
        entry.norm = norm;
    } else if config_ok {
        entry.verdicts.extend(rules::pending_weights());
    }
    entry.settle(files.safetensors);
    entry
}

/// A weights file's identity for the verdict cache: a SHA-256 of its safetensors header (every
/// name, dtype, shape and offset) with its size, inode and modification time in nanoseconds.
/// Hashing whole files would read gigabytes per listing; a rewrite changes the time or inode.
fn content_key(weights: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut h = Sha256::new();
    if let Ok((f, size)) = crate::untrusted::open(weights, u64::MAX) {
        if let Ok(m) = f.metadata() {
            h.update(format!("{size}:{}:{}.{}", m.ino(), m.mtime(), m.mtime_nsec()).as_bytes());
        }
        let mut head = Vec::new();
        let mut r = f.take(8);
        if r.read_to_end(&mut head).is_ok() && head.len() == 8 {
            let n = u64::from_le_bytes(head.clone().try_into().expect("8 bytes")).min(100 << 20);
            let mut header = Vec::new();
            let _ = r.into_inner().take(n).read_to_end(&mut header);
            h.update(&head);
            h.update(&header);
        }
    }
    format!("{:x}", h.finalize())[..16].to_string()
}

/// The base model's identity for the verdict cache: its shapes.
fn base_key(cfg: &LlamaConfig) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(format!("{cfg:?}").as_bytes());
    format!("{:x}", h.finalize())[..16].to_string()
}

/// Lists the entries of a source (no filter applied).
pub fn list_entries(
    source: &PoolSource,
    opts: &ListOptions<'_>,
    meta: &mut MetaCache,
    on_progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Vec<PoolEntry>, ListError> {
    match source {
        PoolSource::Lab | PoolSource::Dir(_) => {
            let name = if *source == PoolSource::Lab {
                "lab"
            } else {
                "dir"
            };
            let path = match source {
                PoolSource::Dir(p) => p.clone(),
                _ => crate::lab::dir()?.join("pool"),
            };
            let candidates = super::list(source).map_err(|e| ListError::Io { path, source: e })?;
            let n = candidates.len();
            Ok(candidates
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    on_progress("reading adapters", i + 1, n);
                    local_entry(c.name, name, None, &c.dir, opts, meta)
                })
                .collect())
        }
        PoolSource::Cache => {
            let home = HfHome::from_env();
            let repos = scan_adapters(&home);
            let n = repos.len();
            let mut out = Vec::new();
            for (i, r) in repos.into_iter().enumerate() {
                on_progress("reading the HF cache", i + 1, n);
                let e = local_entry(r.id, "cache", Some(r.revision), &r.dir, opts, meta);
                // The cache holds every kind of model: keep adapters of the base, when one is given.
                let of_base = match (opts.base, &e.base_model) {
                    (Some(b), Some(own)) => crate::adapter::same_base(own, b),
                    _ => true,
                };
                if of_base {
                    out.push(e);
                }
            }
            Ok(out)
        }
        PoolSource::Hub => {
            let base = opts.base.ok_or(ListError::NoBase("hub"))?;
            if opts.offline {
                return Err(HubError::Offline(
                    "the hub source needs the network; use --source cache to list what is downloaded".into(),
                )
                .into());
            }
            let hub = Hub::new(opts.endpoint, HfHome::from_env());
            let models = hub.list_adapters(base, &mut |n| on_progress("listing the Hub", n, 0))?;
            Ok(hub_entries(&hub, models, opts, meta, on_progress))
        }
    }
}

/// One downloaded repo's entry, read from the HF cache as the cache source lists it (after a
/// download, to refresh that entry alone); `None` when the cache holds no adapter for `id`.
pub fn cached_entry(
    home: &HfHome,
    id: &str,
    opts: &ListOptions<'_>,
    meta: &mut MetaCache,
) -> Option<PoolEntry> {
    let r = super::cache::cached_adapter(home, id)?;
    Some(local_entry(
        r.id,
        "cache",
        Some(r.revision),
        &r.dir,
        opts,
        meta,
    ))
}

/// A repo's config text (or why there is none) and its model card.
type Fetched = (Result<String, String>, Option<String>);

/// Builds entries from a Hub listing: configs and cards fetched (through the cache) by `jobs`
/// workers, weights checked where already downloaded.
fn hub_entries(
    hub: &Hub,
    models: Vec<HubModel>,
    opts: &ListOptions<'_>,
    meta: &mut MetaCache,
    on_progress: &mut dyn FnMut(&str, usize, usize),
) -> Vec<PoolEntry> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let n = models.len();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    // Per model: the config text (or why not), and the card text.
    let fetched: Mutex<Vec<Option<Fetched>>> = Mutex::new(vec![None; n]);
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, 16) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    let m = &models[i];
                    // Fetched at main, as Python tools do, so refs/main names the snapshot.
                    let rev = "main";
                    let config = if m.siblings.is_empty() || m.has_file("adapter_config.json") {
                        hub.fetch_text(&m.id, rev, "adapter_config.json")
                            .map_err(|e| e.to_string())
                    } else {
                        Err("the repo has no adapter_config.json".into())
                    };
                    let card = m
                        .has_file("README.md")
                        .then(|| hub.fetch_text(&m.id, rev, "README.md").ok())
                        .flatten();
                    fetched.lock().expect("no panics while holding")[i] = Some((config, card));
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        // Progress is reported from this thread; the workers only count.
        loop {
            let d = done.load(Ordering::SeqCst);
            on_progress("fetching configs", d, n);
            if d >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    let fetched = fetched.into_inner().expect("workers finished");
    let mut out = Vec::with_capacity(n);
    for (m, f) in models.into_iter().zip(fetched) {
        let (config, card) = f.unwrap_or((Err("not fetched".into()), None));
        let rev = m.sha.clone().unwrap_or_else(|| "main".into());
        let snapshot = hub.home.snapshot(&m.id, "main");
        let mut entry = if snapshot.join("adapter_model.safetensors").is_file() {
            local_entry(
                m.id.clone(),
                "hub",
                Some(rev.clone()),
                &snapshot,
                opts,
                meta,
            )
        } else {
            let parsed: Result<AdapterConfig, String> = config.and_then(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| format!("adapter_config.json is not valid: {e}"))
            });
            let mut e = PoolEntry::from_config(
                m.id.clone(),
                "hub",
                Some(rev.clone()),
                parsed.as_ref().ok(),
            );
            let files = Files {
                safetensors: m.has_file("adapter_model.safetensors"),
                pickle: m.has_file("adapter_model.bin"),
            };
            e.verdicts =
                rules::check_config(parsed.as_ref().map_err(String::as_str), files, opts.base);
            if e.verdicts.iter().all(|v| v.outcome != Outcome::Fail) {
                e.verdicts.extend(rules::pending_weights());
            }
            e.settle(false);
            e
        };
        entry.source = "hub".into();
        entry.downloads = m.downloads;
        entry.likes = m.likes;
        entry.last_modified = m.last_modified.clone();
        entry.tags = m
            .tags
            .iter()
            .map(|t| crate::untrusted::printable(t).into_owned())
            .collect();
        if let Some(c) = card {
            entry.card = Some(card_excerpt(&c, 160));
        }
        out.push(entry);
    }
    out
}

/// Loads an entry's adapter (usable entries only).
pub fn load_entry(entry: &PoolEntry, base: &LlamaConfig) -> Option<Adapter> {
    let dir = entry.path.as_ref()?;
    let mut ad = Adapter::load(dir, Some((base, None))).ok()?;
    ad.name = entry.id.clone();
    Some(ad)
}

/// The base model's id and config: `--model` folder, the lab's base for the lab source, or the
/// base's config.json from the HF cache when it is there.
pub fn base_of(
    source: &PoolSource,
    base: Option<&str>,
    model: Option<&Path>,
) -> (Option<String>, Option<LlamaConfig>) {
    if let Some(dir) = model {
        let cfg = read_config(dir).ok();
        let id = base
            .map(String::from)
            .or_else(|| cfg.as_ref().and_then(|c| model_identity(dir, c)));
        return (id, cfg);
    }
    if *source == PoolSource::Lab && base.is_none() {
        let Ok(dir) = crate::lab::dir().map(|d| d.join("base")) else {
            return (None, None);
        };
        let cfg = read_config(&dir).ok();
        let id = cfg.as_ref().and_then(|c| model_identity(&dir, c));
        return (id, cfg);
    }
    let cfg = base.filter(|b| valid_repo_id(b)).and_then(|b| {
        let snap = HfHome::from_env().snapshot(b, "main");
        read_config(&snap).ok()
    });
    (base.map(String::from), cfg)
}

/// Whether the Hub must not be contacted: `--offline` or `HF_HUB_OFFLINE` set to what
/// huggingface_hub reads as true (1, true, yes, on).
pub fn offline(flag: bool) -> bool {
    flag || std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// A byte count as a short size (`96K`, `1.2M`); `–` when unknown.
pub fn human_size(b: Option<u64>) -> String {
    match b {
        None => "–".into(),
        Some(b) if b >= 1 << 30 => format!("{:.1}G", b as f64 / (1u64 << 30) as f64),
        Some(b) if b >= 1 << 20 => format!("{:.1}M", b as f64 / (1u64 << 20) as f64),
        Some(b) => format!("{:.0}K", b as f64 / 1024.0),
    }
}

/// Target modules in a few letters: `all` for all seven, else `q+v` and so on.
pub fn short_modules(m: &[String]) -> String {
    if m.len() == 7 {
        return "all".into();
    }
    m.iter()
        .map(|s| s.trim_end_matches("_proj"))
        .collect::<Vec<_>>()
        .join("+")
}

/// One word for a status: usable, remote, or the rejecting rule.
pub fn status_word(s: &EntryStatus) -> String {
    match s {
        EntryStatus::Usable => "usable".into(),
        EntryStatus::NotDownloaded => "remote".into(),
        EntryStatus::Rejected { rule, .. } => format!("✗ {}", rule.name()),
    }
}

/// Downloads one Hub adapter at `main` into the HF cache after its config passes the pool rules,
/// then runs the weight rules when the base's config is known. Returns a line for a person.
pub fn pull_one(hub: &Hub, id: &str, cfg: Option<&LlamaConfig>) -> Result<String, String> {
    let info = hub.model_info(id).map_err(|e| e.to_string())?;
    let rev = info.sha.clone().unwrap_or_else(|| "main".into());
    // Downloaded at main, as Python tools do, so refs/main names the snapshot.
    let text = hub
        .fetch_text(id, "main", "adapter_config.json")
        .map_err(|e| e.to_string())?;
    let parsed: Result<AdapterConfig, String> =
        serde_json::from_str(&text).map_err(|e| format!("adapter_config.json is not valid: {e}"));
    let files = Files {
        safetensors: info.has_file("adapter_model.safetensors"),
        pickle: info.has_file("adapter_model.bin"),
    };
    let verdicts = rules::check_config(parsed.as_ref().map_err(String::as_str), files, None);
    if let Some(v) = verdicts.iter().find(|v| v.outcome == Outcome::Fail) {
        return Err(format!("rejected by rule {}: {}", v.rule.name(), v.detail));
    }
    let path = hub
        .fetch(id, "main", "adapter_model.safetensors")
        .map_err(|e| e.to_string())?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut line = format!(
        "downloaded {} at {}",
        human_size(Some(size)),
        rev.chars().take(12).collect::<String>()
    );
    if let Some(cfg) = cfg {
        let dir = path.parent().unwrap_or(Path::new("."));
        let (v, _) = rules::check_weights(dir, Some(cfg));
        match v.iter().find(|v| v.outcome == Outcome::Fail) {
            Some(f) => {
                return Err(format!(
                    "downloaded, but rejected by rule {}: {}",
                    f.rule.name(),
                    f.detail
                ));
            }
            None => line.push_str(", weights pass shapes/finite/norm"),
        }
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        id: &str,
        rank: Option<usize>,
        downloads: Option<u64>,
        norm: Option<f64>,
    ) -> PoolEntry {
        let mut e = PoolEntry::from_config(id.into(), "dir", None, None);
        e.rank = rank;
        e.downloads = downloads;
        e.norm = norm;
        e
    }

    fn ids(mut v: Vec<PoolEntry>, key: SortKey) -> Vec<String> {
        sort(&mut v, key);
        v.into_iter().map(|e| e.id).collect()
    }

    #[test]
    fn missing_values_sort_last_in_either_direction() {
        let pool = || {
            vec![
                entry("d", None, None, None),
                entry("c", Some(64), Some(5), Some(0.5)),
                entry("b", Some(8), Some(50), Some(2.0)),
                entry("a", Some(8), None, Some(1.0)),
            ]
        };
        // Ranks smallest first, ties by id, the unknown rank last.
        assert_eq!(ids(pool(), SortKey::Rank), ["a", "b", "c", "d"]);
        // Counts and norms largest first, unknowns last.
        assert_eq!(ids(pool(), SortKey::Downloads), ["b", "c", "a", "d"]);
        assert_eq!(ids(pool(), SortKey::Norm), ["b", "a", "c", "d"]);
        assert_eq!(ids(pool(), SortKey::Name), ["a", "b", "c", "d"]);
    }

    #[test]
    fn the_screen_cycles_through_every_key_once() {
        let mut k = SortKey::Name;
        let mut seen = vec![];
        for _ in 0..SortKey::ALL.len() {
            seen.push(k.name());
            k = k.next();
        }
        assert_eq!(k, SortKey::Name);
        assert_eq!(seen, ["name", "rank", "norm", "downloads", "likes"]);
        assert_eq!(SortKey::Norm.label(), "‖ΔW‖");
        for key in SortKey::ALL {
            assert_eq!(key.name().parse::<SortKey>(), Ok(key));
        }
    }
}
