//! Finding and validating a model folder's files: `config.json`, one `model.safetensors` or a
//! sharded `model.safetensors.index.json`. Headers are read without touching the weights, so
//! `inspect` is instant even on an 8B model; shard names are checked before any file is opened.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use serde::Deserialize;

use super::config::LlamaConfig;
use super::{ModelError, Result};

pub fn read_config(dir: &Path) -> Result<LlamaConfig> {
    let path = dir.join("config.json");
    let text = crate::untrusted::read_text(&path, crate::untrusted::SMALL).map_err(|e| {
        ModelError::Io {
            path: path.clone(),
            source: e.into_io(),
        }
    })?;
    let cfg: LlamaConfig = serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    cfg.validate()
        .map_err(|reason| ModelError::Config { path, reason })?;
    Ok(cfg)
}

/// A tensor's entry in a safetensors header.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub dtype: safetensors::Dtype,
    pub shape: Vec<usize>,
}

/// The safetensors files of a model with their validated headers.
#[derive(Debug)]
pub struct WeightFiles {
    pub paths: Vec<PathBuf>,
    pub tensors: BTreeMap<String, TensorInfo>,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

impl WeightFiles {
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let paths = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            shard_paths(dir, &index)?
        } else if dir.join("pytorch_model.bin").exists()
            || dir.join("pytorch_model.bin.index.json").exists()
        {
            return Err(ModelError::PickleOnly {
                dir: dir.to_path_buf(),
            });
        } else {
            return Err(ModelError::NoWeights {
                dir: dir.to_path_buf(),
            });
        };
        let mut tensors = BTreeMap::new();
        for path in &paths {
            for (name, info) in read_header(path)? {
                tensors.insert(name, info);
            }
        }
        Ok(Self { paths, tensors })
    }

    /// Storage dtypes present, e.g. `["BF16"]`.
    pub fn dtypes(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .tensors
            .values()
            .map(|t| format!("{:?}", t.dtype))
            .collect();
        set.into_iter().collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.tensors
            .values()
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }
}

fn shard_paths(dir: &Path, index: &Path) -> Result<Vec<PathBuf>> {
    let text = crate::untrusted::read_text(index, crate::untrusted::SMALL).map_err(|e| {
        ModelError::Io {
            path: index.to_path_buf(),
            source: e.into_io(),
        }
    })?;
    let idx: ShardIndex = serde_json::from_str(&text).map_err(|e| ModelError::ShardIndex {
        path: index.to_path_buf(),
        reason: e.to_string(),
    })?;
    let names: BTreeSet<&String> = idx.weight_map.values().collect();
    if names.is_empty() {
        return Err(ModelError::ShardIndex {
            path: index.to_path_buf(),
            reason: "weight_map is empty".into(),
        });
    }
    let mut paths = Vec::new();
    for name in names {
        // A shard name comes from an untrusted file: it must be a plain file name in this folder.
        let plain = Path::new(name)
            .file_name()
            .is_some_and(|f| f == name.as_str())
            && name.ends_with(".safetensors");
        if !plain {
            return Err(ModelError::ShardIndex {
                path: index.to_path_buf(),
                reason: format!("shard name {name:?} is not a plain .safetensors file name"),
            });
        }
        let p = dir.join(name);
        if !p.is_file() {
            return Err(ModelError::ShardIndex {
                path: index.to_path_buf(),
                reason: format!("shard {name} is missing"),
            });
        }
        paths.push(p);
    }
    Ok(paths)
}

/// Reads and validates one safetensors header (and checks the data section's length).
pub fn read_header(path: &Path) -> Result<Vec<(String, TensorInfo)>> {
    let file = File::open(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: read-only map of a file we just opened; see `Llama::load`.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let st = SafeTensors::deserialize(&mmap).map_err(|e| ModelError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                TensorInfo {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                },
            )
        })
        .collect())
}

/// What the model is called on the Hub, when that can be known: the config's `_name_or_path`, or
/// the repo id of a Hugging Face cache snapshot (`models--org--name/snapshots/<rev>`).
pub fn model_identity(dir: &Path, cfg: &LlamaConfig) -> Option<String> {
    if let Some(n) = cfg.name_or_path.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let canonical = dir.canonicalize().ok()?;
    canonical.ancestors().find_map(|p| {
        let name = p.file_name()?.to_str()?;
        let rest = name.strip_prefix("models--")?;
        Some(rest.replacen("--", "/", 1))
    })
}
