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

    /// Checks every tensor against `cfg`: a name the model has and a floating-point dtype.
    /// The loader only asks for the names it needs, so weights for a layer past
    /// `num_hidden_layers` were silently dropped (a model cut short, where transformers reports
    /// unexpected keys), and integer weights were cast to floats.
    pub fn check_against(&self, cfg: &LlamaConfig, dir: &Path) -> Result<()> {
        let names: BTreeSet<String> = cfg.tensor_shapes().into_iter().map(|(n, _)| n).collect();
        for (name, info) in &self.tensors {
            let bad = |reason: String| ModelError::UnexpectedWeight {
                dir: dir.to_path_buf(),
                name: crate::untrusted::printable(name).into_owned(),
                reason,
            };
            // Older checkpoints store RoPE's frequencies; transformers skips them too.
            let known = names.contains(name.as_str())
                || name.ends_with(".rotary_emb.inv_freq")
                || (cfg.tie_word_embeddings && name == "lm_head.weight");
            if !known {
                let layer = name
                    .strip_prefix("model.layers.")
                    .and_then(|r| r.split('.').next())
                    .and_then(|l| l.parse::<usize>().ok());
                return Err(bad(match layer {
                    Some(l) if l >= cfg.num_hidden_layers => format!(
                        "is for layer {l}, but config.json's num_hidden_layers is {}: the weights and the config describe different models",
                        cfg.num_hidden_layers
                    ),
                    _ => format!(
                        "has no place in a {} with this config.json",
                        cfg.architecture()
                    ),
                }));
            }
            if !matches!(
                info.dtype,
                safetensors::Dtype::F16
                    | safetensors::Dtype::BF16
                    | safetensors::Dtype::F32
                    | safetensors::Dtype::F64
            ) {
                return Err(bad(format!(
                    "is {:?}; model weights are floating point (F16, BF16, F32 or F64)",
                    info.dtype
                )));
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (LlamaConfig, WeightFiles, &'static Path) {
        let dir = Path::new("tests/fixtures/tiny");
        (
            read_config(dir).unwrap(),
            WeightFiles::open(dir).unwrap(),
            dir,
        )
    }

    #[test]
    fn weights_the_config_does_not_account_for_are_refused() {
        let (mut cfg, mut files, dir) = tiny();
        files.check_against(&cfg, dir).unwrap();
        // The config says one layer; the weights hold two.
        cfg.num_hidden_layers = 1;
        assert_eq!(
            files.check_against(&cfg, dir).unwrap_err().to_string(),
            "tests/fixtures/tiny: weight model.layers.1.input_layernorm.weight is for layer 1, \
             but config.json's num_hidden_layers is 1: the weights and the config describe \
             different models"
        );
        cfg.num_hidden_layers = 2;
        let info = files.tensors["model.norm.weight"].clone();
        files.tensors.insert("model.extra.weight".into(), info);
        assert_eq!(
            files.check_against(&cfg, dir).unwrap_err().to_string(),
            "tests/fixtures/tiny: weight model.extra.weight has no place in a LlamaForCausalLM \
             with this config.json"
        );
        files.tensors.remove("model.extra.weight");
        files
            .tensors
            .get_mut("model.layers.0.mlp.up_proj.weight")
            .unwrap()
            .dtype = safetensors::Dtype::I32;
        assert_eq!(
            files.check_against(&cfg, dir).unwrap_err().to_string(),
            "tests/fixtures/tiny: weight model.layers.0.mlp.up_proj.weight is I32; model weights \
             are floating point (F16, BF16, F32 or F64)"
        );
    }
}
