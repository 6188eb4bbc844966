//! Where adapters come from, and the pool filter.
//!
//! Sources: the Hub (listing over HTTP, files into the shared HF cache), the HF cache scanned
//! offline, a folder of adapter folders, and the embedded lab's pool. Browsing works on
//! [`entry::PoolEntry`] metadata; a run loads the usable adapters of a source into a [`Pool`],
//! keeping a reason for each one refused.

pub mod cache;
pub mod entry;
pub use loracycle_data::pool::filter;
pub mod hub;
pub mod rules;
pub use loracycle_data::pool::source;

use std::path::PathBuf;

pub use filter::{Filter, FilterError};
pub use source::{PoolSource, is_plain_name};

use crate::adapter::Adapter;
use crate::model::LlamaConfig;

/// An adapter folder of a pool, not yet loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub dir: PathBuf,
}

/// The adapter folders of a source on disk, sorted by name. Entries that are not folders are
/// skipped. For `hub` and `cache` these are the downloaded adapters in the HF cache (a run never
/// downloads; `loracycle pool pull` does).
pub fn list(source: &PoolSource) -> std::io::Result<Vec<Candidate>> {
    let root = match source {
        PoolSource::Lab => crate::lab::dir()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, e))?
            .join("pool"),
        PoolSource::Dir(p) => p.clone(),
        PoolSource::Hub | PoolSource::Cache => {
            return Ok(cache::scan_adapters(&cache::HfHome::from_env())
                .into_iter()
                .filter(|r| r.dir.join("adapter_model.safetensors").is_file())
                .map(|r| Candidate {
                    name: r.id,
                    dir: r.dir,
                })
                .collect());
        }
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(Candidate {
                name: entry.file_name().to_string_lossy().into_owned(),
                dir: entry.path(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A loaded pool: usable adapters and the refused ones with their reasons.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    pub adapters: Vec<Adapter>,
    pub rejected: Vec<(String, String)>,
}

/// Loads every candidate that passes `filter`, checking it against the base model.
pub fn load(
    candidates: &[Candidate],
    filter: &Filter,
    base: &LlamaConfig,
    base_name: Option<&str>,
    progress: &mut dyn FnMut(usize, usize),
) -> Pool {
    let mut pool = Pool::default();
    for (i, c) in candidates.iter().enumerate() {
        progress(i, candidates.len());
        let config = match Adapter::read_config(&c.dir, &c.name) {
            Ok(cfg) => cfg,
            Err(e) => {
                pool.rejected.push((c.name.clone(), e.to_string()));
                continue;
            }
        };
        if !filter.matches_config(&c.name, &config) {
            continue;
        }
        match Adapter::load(&c.dir, Some((base, base_name))) {
            Ok(mut ad) => {
                ad.name = c.name.clone();
                if !filter.matches(&ad) {
                    continue;
                }
                // The norm rule as a listing applies it: an untrained (zero) or absurdly large
                // update is refused here too, with the listing's reason.
                let (norm, _) = rules::check_norm(&ad, Some(base));
                if norm.outcome == rules::Outcome::Fail {
                    pool.rejected.push((
                        c.name.clone(),
                        format!(
                            "adapter {}: rejected by rule {}: {}",
                            c.dir.display(),
                            norm.rule.name(),
                            norm.detail
                        ),
                    ));
                    continue;
                }
                pool.adapters.push(ad);
            }
            Err(e) => pool.rejected.push((c.name.clone(), e.to_string())),
        }
    }
    progress(candidates.len(), candidates.len());
    pool
}

/// The lab's oracle adapter for a held-out task, when the lab has one.
pub fn lab_oracle(task: &str) -> Option<PathBuf> {
    let dir = crate::lab::dir().ok()?.join("oracle").join(task);
    dir.join("adapter_config.json").is_file().then_some(dir)
}

// Beside the loader rather than in filter.rs: it reads a loaded adapter, and the filter's parser
// stays free of the adapter code so that a spec can parse a filter without candle.
/// A filter's decision on a loaded adapter (modules from its tensors).
pub trait FilterAdapter {
    fn matches(&self, ad: &Adapter) -> bool;
}

impl FilterAdapter for Filter {
    fn matches(&self, ad: &Adapter) -> bool {
        self.check(
            &ad.name,
            ad.rank(),
            ad.config.lora_alpha,
            Some(&ad.modules()),
        )
    }
}
