//! PEFT LoRA adapters: read, validate and write `adapter_config.json` + `adapter_model.safetensors`.
//!
//! Every refusal is a typed error naming the adapter and the cause. Tensor names follow PEFT
//! (`base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}[.{name}].weight`); they
//! appear only here, never past loading.

pub use loracycle_data::adapter::config;
pub mod random;
pub use loracycle_data::adapter::random_init;
pub mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;

pub use config::AdapterConfig;

use crate::model::{LlamaConfig, Module};

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("adapter {adapter}: cannot read {path}: {source}")]
    Io {
        adapter: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("adapter {adapter}: no adapter_config.json (is this a PEFT adapter folder?)")]
    MissingConfig { adapter: String },
    #[error("adapter {adapter}: adapter_config.json is not valid: {reason}")]
    BadConfig { adapter: String, reason: String },
    #[error(
        "adapter {adapter}: only adapter_model.bin (a pickle) is present; refused because loading a pickle can execute code — convert it to adapter_model.safetensors"
    )]
    PickleOnly { adapter: String },
    #[error("adapter {adapter}: no adapter_model.safetensors")]
    NoWeights { adapter: String },
    #[error("adapter {adapter}: {feature} is not supported: {detail}")]
    Unsupported {
        adapter: String,
        feature: &'static str,
        detail: String,
    },
    #[error("adapter {adapter}: adapter_model.safetensors is corrupt or truncated: {reason}")]
    Corrupt { adapter: String, reason: String },
    #[error(
        "adapter {adapter}: tensor {tensor} is not a LoRA A/B weight of a q,k,v,o,gate,up,down projection"
    )]
    UnknownTensor { adapter: String, tensor: String },
    #[error(
        "adapter {adapter}: tensor {tensor} adapts a module {architecture} does not have or loracycle does not adapt (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"
    )]
    NotInModel {
        adapter: String,
        tensor: String,
        architecture: &'static str,
    },
    #[error("adapter {adapter}: layer {layer} {module} has {present} but no {missing}")]
    MissingTensor {
        adapter: String,
        layer: usize,
        module: Module,
        present: &'static str,
        missing: &'static str,
    },
    #[error(
        "adapter {adapter}: tensor {tensor} has shape {found:?}, expected {expected:?}{context}"
    )]
    ShapeMismatch {
        adapter: String,
        tensor: String,
        expected: Box<[usize]>,
        found: Box<[usize]>,
        context: String,
    },
    #[error(
        "adapter {adapter}: tensor {tensor} is for a layer the base model does not have (it has {layers})"
    )]
    LayerOutOfRange {
        adapter: String,
        tensor: String,
        layers: usize,
    },
    #[error(
        "adapter {adapter}: tensor {tensor} is {dtype}; LoRA weights are floating point (F16, BF16, F32 or F64)"
    )]
    NotFloat {
        adapter: String,
        tensor: String,
        dtype: String,
    },
    #[error(
        "adapter {adapter}: tensor {tensor} adapts {module}, which adapter_config.json's target_modules does not name"
    )]
    Untargeted {
        adapter: String,
        tensor: String,
        module: &'static str,
    },
    #[error("adapter {adapter}: tensor {tensor} holds {count} NaN/Inf values")]
    NonFinite {
        adapter: String,
        tensor: String,
        count: usize,
    },
    #[error("adapter {adapter}: holds no LoRA tensors")]
    Empty { adapter: String },
    #[error("adapter {adapter}: {source}")]
    Tensor {
        adapter: String,
        #[source]
        source: candle_core::Error,
    },
}

pub type Result<T> = std::result::Result<T, AdapterError>;

/// The A and B of one (layer, module), in f32 on the CPU: A (r, in), B (out, r).
#[derive(Debug, Clone)]
pub struct LoraPair {
    pub a: Tensor,
    pub b: Tensor,
}

impl LoraPair {
    /// ‖scale · B A‖_F, computed through the r × r Gram matrices.
    pub fn delta_norm(&self, scale: f64) -> candle_core::Result<f64> {
        let ata = self.a.matmul(&self.a.t()?)?; // (r, r) = A Aᵀ
        let btb = self.b.t()?.matmul(&self.b)?; // (r, r) = Bᵀ B
        let sq = (ata * btb)?.sum_all()?.to_scalar::<f32>()? as f64;
        Ok(scale.abs() * sq.max(0.0).sqrt())
    }
}

/// A validated LoRA adapter.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// How the user named it (the path given), used in every message.
    pub name: String,
    pub dir: PathBuf,
    pub config: AdapterConfig,
    pub pairs: BTreeMap<(usize, Module), LoraPair>,
    /// Storage dtype of the weights file (e.g. "BF16").
    pub storage_dtype: String,
    pub file_size: u64,
    /// Things worth telling the user that do not stop loading (e.g. a different base model).
    pub warnings: Vec<String>,
}

/// One tensor of a safetensors header: its name and shape.
#[derive(Debug, Clone)]
pub struct TensorHead {
    pub key: String,
    pub shape: Vec<usize>,
}

/// What an adapter folder's config and safetensors header say, checked, without its values.
#[derive(Debug, Clone)]
pub struct AdapterHeader {
    pub name: String,
    pub config: AdapterConfig,
    /// (layer, module) → (A, B).
    pub pairs: BTreeMap<(usize, Module), (TensorHead, TensorHead)>,
    pub storage_dtype: String,
    pub file_size: u64,
    pub warnings: Vec<String>,
}

impl AdapterHeader {
    pub fn modules(&self) -> BTreeSet<Module> {
        self.pairs.keys().map(|(_, m)| *m).collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.pairs
            .values()
            .map(|(a, b)| a.shape.iter().product::<usize>() + b.shape.iter().product::<usize>())
            .sum()
    }
}

struct Key {
    layer: usize,
    module: Module,
    is_a: bool,
}

/// Parses a PEFT tensor name; `None` when it is not a LoRA A/B of a linear module.
fn parse_key(key: &str) -> Option<Key> {
    let parts: Vec<&str> = key.split('.').collect();
    let pos = parts
        .iter()
        .position(|p| *p == "lora_A" || *p == "lora_B")?;
    let tail = &parts[pos + 1..];
    let tail_ok = tail == ["weight"] || (tail.len() == 2 && tail[1] == "weight");
    if !tail_ok || pos < 2 {
        return None;
    }
    let module = Module::from_peft_name(parts[pos - 1])?;
    if parts[pos - 2] != module.block() {
        return None;
    }
    let l = parts.iter().position(|p| *p == "layers")?;
    let layer = parts.get(l + 1)?.parse().ok()?;
    Some(Key {
        layer,
        module,
        is_a: parts[pos] == "lora_A",
    })
}

impl Adapter {
    /// Reads only the config, with every support rule applied.
    pub fn read_config(dir: &Path, name: &str) -> Result<AdapterConfig> {
        let path = dir.join("adapter_config.json");
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(AdapterError::MissingConfig {
                adapter: name.into(),
            });
        }
        let text = crate::untrusted::read_text(&path, crate::untrusted::SMALL).map_err(|e| {
            AdapterError::Io {
                adapter: name.into(),
                path: path.clone(),
                source: e.into_io(),
            }
        })?;
        let cfg: AdapterConfig =
            serde_json::from_str(&text).map_err(|e| AdapterError::BadConfig {
                adapter: name.into(),
                reason: e.to_string(),
            })?;
        cfg.check().map_err(|e| AdapterError::BadConfig {
            adapter: name.into(),
            reason: e.to_string(),
        })?;
        if let Some((feature, detail)) = cfg.unsupported() {
            return Err(AdapterError::Unsupported {
                adapter: name.into(),
                feature,
                detail,
            });
        }
        Ok(cfg)
    }

    /// Reads and validates an adapter folder's config and safetensors header, not its values:
    /// every tensor a LoRA A or B of a targeted module, floating point, paired, of the config's
    /// rank and, with `base`, of the base model's shapes. What `inspect` reads; `load` reads this
    /// first.
    pub fn header(dir: &Path, base: Option<(&LlamaConfig, Option<&str>)>) -> Result<AdapterHeader> {
        let name = dir.display().to_string();
        let err_name = || name.clone();
        let config = Self::read_config(dir, &name)?;
        let weights = dir.join("adapter_model.safetensors");
        if std::fs::symlink_metadata(&weights).is_err() {
            if dir.join("adapter_model.bin").exists() {
                return Err(AdapterError::PickleOnly { adapter: name });
            }
            return Err(AdapterError::NoWeights { adapter: name });
        }
        let (file, file_size) =
            crate::untrusted::open(&weights, u64::MAX).map_err(|e| AdapterError::Io {
                adapter: err_name(),
                path: weights.clone(),
                source: e.into_io(),
            })?;
        // SAFETY: read-only map; the bytes are validated by safetensors before use.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| AdapterError::Io {
            adapter: err_name(),
            path: weights.clone(),
            source,
        })?;
        let st = SafeTensors::deserialize(&mmap).map_err(|e| AdapterError::Corrupt {
            adapter: err_name(),
            reason: e.to_string(),
        })?;
        let mut halves: BTreeMap<(usize, Module), (Option<TensorHead>, Option<TensorHead>)> =
            BTreeMap::new();
        let mut dtypes = BTreeSet::new();
        let r = config.r;
        // In name order, so the first problem reported is the same every time.
        let mut tensors = st.tensors();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, view) in tensors {
            let Some(k) = parse_key(&key) else {
                // A LoRA weight of another module (q_norm, an embedding, a fused c_attn): with
                // the base known, the message names its architecture.
                let lora = key.contains(".lora_A.") || key.contains(".lora_B.");
                return Err(match base {
                    Some((cfg, _)) if lora => AdapterError::NotInModel {
                        adapter: name,
                        tensor: key,
                        architecture: cfg.architecture(),
                    },
                    _ => AdapterError::UnknownTensor {
                        adapter: name,
                        tensor: key,
                    },
                });
            };
            let dtype = view.dtype();
            if !matches!(
                dtype,
                safetensors::Dtype::F16
                    | safetensors::Dtype::BF16
                    | safetensors::Dtype::F32
                    | safetensors::Dtype::F64
            ) {
                return Err(AdapterError::NotFloat {
                    adapter: name,
                    tensor: key,
                    dtype: format!("{dtype:?}"),
                });
            }
            if !config.targets(k.module, &key) {
                return Err(AdapterError::Untargeted {
                    adapter: name,
                    tensor: key,
                    module: k.module.peft_name(),
                });
            }
            dtypes.insert(format!("{dtype:?}"));
            let found = view.shape().to_vec();
            let expected = match base {
                Some((cfg, _)) => {
                    if k.layer >= cfg.num_hidden_layers {
                        return Err(AdapterError::LayerOutOfRange {
                            adapter: name,
                            tensor: key,
                            layers: cfg.num_hidden_layers,
                        });
                    }
                    let (i, o) = cfg.module_shape(k.module);
                    if k.is_a { vec![r, i] } else { vec![o, r] }
                }
                None => {
                    let free = found.get(if k.is_a { 1 } else { 0 }).copied().unwrap_or(0);
                    if k.is_a { vec![r, free] } else { vec![free, r] }
                }
            };
            if found != expected {
                let context = if base.is_some() {
                    format!(" for the base model at rank {r}")
                } else {
                    format!(" at rank {r}")
                };
                return Err(AdapterError::ShapeMismatch {
                    adapter: name,
                    tensor: key,
                    expected: expected.into(),
                    found: found.into(),
                    context,
                });
            }
            let t = TensorHead { key, shape: found };
            let slot = halves.entry((k.layer, k.module)).or_default();
            if k.is_a {
                slot.0 = Some(t);
            } else {
                slot.1 = Some(t);
            }
        }
        let mut pairs = BTreeMap::new();
        for ((layer, module), (a, b)) in halves {
            match (a, b) {
                (Some(a), Some(b)) => {
                    pairs.insert((layer, module), (a, b));
                }
                (a, _) => {
                    let (present, missing) = if a.is_some() {
                        ("lora_A", "lora_B")
                    } else {
                        ("lora_B", "lora_A")
                    };
                    return Err(AdapterError::MissingTensor {
                        adapter: name,
                        layer,
                        module,
                        present,
                        missing,
                    });
                }
            }
        }
        if pairs.is_empty() {
            return Err(AdapterError::Empty { adapter: name });
        }
        let mut warnings = Vec::new();
        if let (Some((_, Some(base_name))), Some(own)) = (base, &config.base_model_name_or_path)
            && !same_base(own, base_name)
        {
            warnings.push(format!(
                "adapter {name} was trained on {own}, not on {base_name}"
            ));
        }
        Ok(AdapterHeader {
            name,
            config,
            pairs,
            storage_dtype: dtypes.into_iter().collect::<Vec<_>>().join(","),
            file_size,
            warnings,
        })
    }

    /// Loads and validates an adapter folder: its header (see [`Adapter::header`]), then every
    /// value, which must be finite. With `base`, every shape is checked against the base model
    /// and, when the base's identity is known, a different `base_model_name_or_path` becomes a
    /// warning.
    pub fn load(dir: &Path, base: Option<(&LlamaConfig, Option<&str>)>) -> Result<Self> {
        let head = Self::header(dir, base)?;
        let mut pairs = BTreeMap::new();
        Self::read_pairs(dir, &head, &mut |at, pair| {
            pairs.insert(at, pair);
            Ok(())
        })?;
        Ok(Self {
            name: head.name,
            dir: dir.to_path_buf(),
            config: head.config,
            pairs,
            storage_dtype: head.storage_dtype,
            file_size: head.file_size,
            warnings: head.warnings,
        })
    }

    /// Reads the values of `head`'s pairs (from the folder it was read from) one pair at a time,
    /// in f32 and checked finite, and hands each to `each`. A caller that drops them (the pool
    /// rules) holds one pair at a time, however large the file.
    pub fn read_pairs(
        dir: &Path,
        head: &AdapterHeader,
        each: &mut dyn FnMut((usize, Module), LoraPair) -> Result<()>,
    ) -> Result<()> {
        let name = head.name.clone();
        let weights = dir.join("adapter_model.safetensors");
        let io = |source| AdapterError::Io {
            adapter: name.clone(),
            path: weights.clone(),
            source,
        };
        let (file, _) = crate::untrusted::open(&weights, u64::MAX).map_err(|e| io(e.into_io()))?;
        // SAFETY: read-only map; the bytes are validated by safetensors before use.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let st = SafeTensors::deserialize(&mmap).map_err(|e| AdapterError::Corrupt {
            adapter: name.clone(),
            reason: e.to_string(),
        })?;
        let read = |t: &TensorHead| -> Result<Tensor> {
            let tensor_err = |source| AdapterError::Tensor {
                adapter: name.clone(),
                source,
            };
            let view = st.tensor(&t.key).map_err(|e| AdapterError::Corrupt {
                adapter: name.clone(),
                reason: e.to_string(),
            })?;
            let v = view
                .load(&Device::Cpu)
                .and_then(|v| v.to_dtype(DType::F32))
                .map_err(tensor_err)?;
            let bad = non_finite(&v).map_err(tensor_err)?;
            if bad > 0 {
                return Err(AdapterError::NonFinite {
                    adapter: name.clone(),
                    tensor: t.key.clone(),
                    count: bad,
                });
            }
            Ok(v)
        };
        for (&at, (a, b)) in &head.pairs {
            each(
                at,
                LoraPair {
                    a: read(a)?,
                    b: read(b)?,
                },
            )?;
        }
        Ok(())
    }

    pub fn rank(&self) -> usize {
        self.config.r
    }

    pub fn scale(&self) -> f64 {
        self.config.scale()
    }

    pub fn modules(&self) -> BTreeSet<Module> {
        self.pairs.keys().map(|(_, m)| *m).collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.pairs
            .values()
            .map(|p| p.a.elem_count() + p.b.elem_count())
            .sum()
    }

    /// ‖s B A‖_F for one (layer, module), computed through the r × r Gram matrices.
    pub fn delta_norm(&self, layer: usize, module: Module) -> candle_core::Result<f64> {
        match self.pairs.get(&(layer, module)) {
            Some(p) => p.delta_norm(self.scale()),
            None => Ok(0.0),
        }
    }

    /// ‖ΔW‖_F per module, pooled over layers: sqrt(Σ_layers ‖ΔW_l‖²).
    pub fn delta_norms_by_module(&self) -> candle_core::Result<BTreeMap<Module, f64>> {
        let mut sums: BTreeMap<Module, f64> = BTreeMap::new();
        for &(layer, module) in self.pairs.keys() {
            let n = self.delta_norm(layer, module)?;
            *sums.entry(module).or_default() += n * n;
        }
        Ok(sums.into_iter().map(|(m, s)| (m, s.sqrt())).collect())
    }
}

fn non_finite(t: &Tensor) -> candle_core::Result<usize> {
    let v = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(v.iter().filter(|x| !x.is_finite()).count())
}

/// Base names match when equal or when one is a path ending in the other's repo id.
pub fn same_base(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim_end_matches('/').to_string();
    let (a, b) = (norm(a), norm(b));
    a == b || a.ends_with(&format!("/{b}")) || b.ends_with(&format!("/{a}"))
}

/// Builds the side branches for `sources` (adapter, weight) on a base model: every adapter's slice
/// gets gate weight × scale.
pub fn branches_for(
    sources: &[(&Adapter, f64)],
    cfg: &LlamaConfig,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<crate::model::Branches> {
    use crate::model::branch::{Branches, Slice};
    let mut out = Branches::empty(cfg.num_hidden_layers);
    for l in 0..cfg.num_hidden_layers {
        for m in Module::ALL {
            let slices: Vec<Slice<'_>> = sources
                .iter()
                .filter_map(|(ad, w)| {
                    ad.pairs.get(&(l, m)).map(|p| Slice {
                        a: &p.a,
                        b: &p.b,
                        gate: w * ad.scale(),
                    })
                })
                .collect();
            out.set(l, m, Branches::concat(&slices, dtype, device)?);
        }
    }
    Ok(out)
}
