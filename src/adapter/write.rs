//! Writing PEFT adapters that `peft` loads: `adapter_config.json` + `adapter_model.safetensors`,
//! each written to a temporary file in the target folder and renamed into place.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::json;

use super::{Adapter, AdapterError, Result};
use crate::atomic_write::write_atomic;
use crate::model::{LlamaConfig, Module};

/// A and B per (layer, module), ready to be written.
pub type PairMap = BTreeMap<(usize, Module), (Tensor, Tensor)>;

/// The PEFT tensor name of one LoRA half.
pub fn peft_key(layer: usize, module: Module, is_a: bool) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{}.lora_{}.weight",
        module.block(),
        module.peft_name(),
        if is_a { "A" } else { "B" }
    )
}

/// Writes an adapter folder from per-(layer, module) A/B tensors with one rank and scale.
pub fn write_peft(
    out: &Path,
    pairs: &PairMap,
    r: usize,
    lora_alpha: f64,
    base_model: &str,
    dtype: DType,
) -> Result<()> {
    let name = out.display().to_string();
    let io_err = |source| AdapterError::Io {
        adapter: name.clone(),
        path: out.to_path_buf(),
        source,
    };
    let tensor_err = |source| AdapterError::Tensor {
        adapter: name.clone(),
        source,
    };
    std::fs::create_dir_all(out).map_err(io_err)?;
    let modules: BTreeSet<&str> = pairs.keys().map(|(_, m)| m.peft_name()).collect();
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": r,
        "lora_alpha": lora_alpha,
        "lora_dropout": 0.0,
        "target_modules": modules,
        "bias": "none",
        "use_rslora": false,
        "use_dora": false,
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null,
    });
    let mut tensors = BTreeMap::new();
    for (&(layer, module), (a, b)) in pairs {
        let a = a
            .to_dtype(dtype)
            .and_then(|t| t.contiguous())
            .map_err(tensor_err)?;
        let b = b
            .to_dtype(dtype)
            .and_then(|t| t.contiguous())
            .map_err(tensor_err)?;
        tensors.insert(peft_key(layer, module, true), a);
        tensors.insert(peft_key(layer, module, false), b);
    }
    let bytes = safetensors::serialize(&tensors, None).map_err(|e| AdapterError::Corrupt {
        adapter: name.clone(),
        reason: e.to_string(),
    })?;
    let cfg_text = serde_json::to_string_pretty(&config).expect("static JSON");
    write_atomic(&out.join("adapter_model.safetensors"), &bytes).map_err(io_err)?;
    write_atomic(&out.join("adapter_config.json"), cfg_text.as_bytes()).map_err(io_err)?;
    Ok(())
}

/// The exact weighted sum Σ wᵢ sᵢ Bᵢ Aᵢ as one adapter: the sources stacked along rank, each B
/// slice pre-multiplied by wᵢ sᵢ, alpha = r so the written scale is 1. A source that does not touch
/// a module contributes a zero slice there (PEFT needs one rank for every module).
pub fn concatenated(
    sources: &[(&Adapter, f64)],
    base: &LlamaConfig,
) -> candle_core::Result<(PairMap, usize)> {
    let modules: BTreeSet<Module> = sources.iter().flat_map(|(a, _)| a.modules()).collect();
    let rank: usize = sources.iter().map(|(a, _)| a.rank()).sum();
    let mut pairs = BTreeMap::new();
    for layer in 0..base.num_hidden_layers {
        for &m in &modules {
            let (i, o) = base.module_shape(m);
            let mut a_parts = Vec::new();
            let mut b_parts = Vec::new();
            for (ad, w) in sources {
                let r = ad.rank();
                match ad.pairs.get(&(layer, m)) {
                    Some(p) => {
                        a_parts.push(p.a.clone());
                        b_parts.push((&p.b * (w * ad.scale()))?);
                    }
                    None => {
                        a_parts.push(Tensor::zeros((r, i), DType::F32, &Device::Cpu)?);
                        b_parts.push(Tensor::zeros((o, r), DType::F32, &Device::Cpu)?);
                    }
                }
            }
            pairs.insert(
                (layer, m),
                (Tensor::cat(&a_parts, 0)?, Tensor::cat(&b_parts, 1)?),
            );
        }
    }
    Ok((pairs, rank))
}
