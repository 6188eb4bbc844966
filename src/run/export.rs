//! Exporting a finished run's merged adapter as a PEFT folder, rebuilt from its record: the chosen
//! adapters (random-init ones redrawn from the same seed), the method and the final coefficients.
//! Exact results are written as rank concatenations; dense ones (TIES, DARE) as rank-R
//! truncations, with the truncation error returned.

use std::path::Path;

/// The largest kept LoRA copied out (a rank-64 LoRA of an 8B model is ~170 MB).
const MAX_LORA: u64 = 8 << 30;

use candle_core::{DType, Device, Tensor};

use super::execute::{RunError, resolve_model};
use super::record::RunRecord;
use super::spec::MethodSpec;
use crate::adapter::Adapter;
use crate::adapter::random::{RandomInit, randomize};
use crate::adapter::write::write_peft;
use crate::merge::{Merged, Update, merge_adapters};
use crate::model::Branches;
use crate::model::weights::{model_identity, read_config};
use crate::pool;
use crate::tune::coef::{CoefficientBranches, Granularity};
use crate::tune::lorahub::StackedPool;

fn merged_from_branches(br: &Branches, layers: usize) -> candle_core::Result<Merged> {
    let mut m = Merged::default();
    for l in 0..layers {
        for module in crate::model::Module::ALL {
            if let Some(b) = br.get(l, module) {
                let gate = b
                    .gate
                    .flatten_all()?
                    .to_dtype(DType::F32)?
                    .to_device(&Device::Cpu)?;
                let bb =
                    b.b.to_dtype(DType::F32)?
                        .to_device(&Device::Cpu)?
                        .broadcast_mul(&gate.unsqueeze(0)?)?;
                let a = b.a.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
                m.updates.insert((l, module), Update::LowRank { a, b: bb });
            }
        }
    }
    Ok(m)
}

/// Copies the LoRA a new-LoRA run trained (kept in its folder `run_dir`) into `out`; its rank.
fn export_trained(record: &RunRecord, run_dir: &Path, out: &Path) -> Result<usize, RunError> {
    // Its own name for `out`: the files go in as they are.
    let from = run_dir.join(super::execute::LORA_DIR);
    let config = from.join("adapter_config.json");
    if !config.is_file() {
        return Err(RunError::Other(format!(
            "run {} kept no LoRA ({} is missing): runs of versions before 0.1 did not keep it; \
             retry the run to train it again",
            record.id,
            from.display()
        )));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| RunError::Other(format!("cannot make {}: {e}", out.display())))?;
    for name in ["adapter_config.json", "adapter_model.safetensors"] {
        let bytes = crate::untrusted::read(&from.join(name), MAX_LORA)
            .map_err(|e| RunError::Other(e.to_string()))?;
        crate::atomic_write::write_atomic(&out.join(name), &bytes)
            .map_err(|e| RunError::Other(format!("{}: {e}", out.join(name).display())))?;
    }
    let config = crate::untrusted::read_text(&config, crate::untrusted::SMALL)
        .map_err(|e| RunError::Other(e.to_string()))?;
    let rank = serde_json::from_str::<serde_json::Value>(&config)
        .ok()
        .and_then(|v| v["r"].as_u64())
        .unwrap_or_default() as usize;
    Ok(rank)
}

/// Writes the run's adapter into `out`: a merge's merged adapter (rebuilt from its record), or
/// the LoRA a new-LoRA run trained (copied from its folder `run_dir`). Returns (rank, relative
/// truncation error).
pub fn export(
    record: &RunRecord,
    run_dir: &Path,
    out: &Path,
    rank: usize,
) -> Result<(usize, f64), RunError> {
    crate::run::setting::Fields("")
        .count("rank", rank, 1, crate::run::setting::MAX_RANK)
        .map_err(super::spec::SpecError::from)?;
    let spec = &record.spec;
    if let MethodSpec::NewLora(_) | MethodSpec::PiTuning(_) = spec.method {
        return Ok((export_trained(record, run_dir, out)?, 0.0));
    }
    if let MethodSpec::Arrow(_) = spec.method {
        return Err(RunError::Other(format!(
            "run {} used Arrow, which routes every token to its own mix of adapters: there is \
             no single merged adapter to export",
            record.id
        )));
    }
    if !spec.method.uses_pool() {
        return Err(RunError::Other(format!(
            "run {} used method {}: there is no merged adapter to export",
            record.id,
            spec.method.name()
        )));
    }
    let model_dir = resolve_model(&spec.model.base)?;
    let cfg = read_config(&model_dir)?;
    let identity = model_identity(&model_dir, &cfg);
    // The chosen adapters, by name, from the same sources the run used.
    let candidates = pool::list(&spec.pool.source).map_err(|e| RunError::Pool {
        origin: spec.pool.source.to_string(),
        reason: e.to_string(),
    })?;
    let mut real = Vec::new();
    for c in &record.chosen {
        let dir = match c.name.strip_prefix("oracle:") {
            Some(task) => pool::lab_oracle(task)
                .or_else(|| spec.task.oracle_adapter.clone())
                .ok_or_else(|| RunError::Other(format!("the oracle adapter of {task} is gone")))?,
            None => candidates
                .iter()
                .find(|x| x.name == c.name)
                .map(|x| x.dir.clone())
                .ok_or_else(|| {
                    RunError::Other(format!("adapter {} is no longer in the pool", c.name))
                })?,
        };
        let mut ad = Adapter::load(&dir, Some((&cfg, identity.as_deref())))?;
        ad.name = c.name.clone();
        real.push(ad);
    }
    let oracle = |a: &Adapter| a.name.starts_with("oracle:");
    let to_randomize: Vec<&Adapter> = real.iter().filter(|a| !oracle(a)).collect();
    let mut fresh = randomize(&to_randomize, spec.controls.random_init, spec.seed)?.into_iter();
    let chosen: Vec<Adapter> = real
        .iter()
        .map(|a| {
            if oracle(a) || spec.controls.random_init == RandomInit::Off {
                a.clone()
            } else {
                fresh.next().expect("one per adapter")
            }
        })
        .collect();
    let refs: Vec<&Adapter> = chosen.iter().collect();
    let coefficients = || {
        record
            .coefficients
            .as_ref()
            .ok_or_else(|| RunError::Other(format!("run {} has no final coefficients", record.id)))
    };
    let merged = match &spec.method {
        MethodSpec::Merge(m) => {
            let sources: Vec<(&Adapter, f64)> = refs.iter().map(|a| (*a, 1.0)).collect();
            merge_adapters(&sources, m, &cfg)?
        }
        MethodSpec::Gradient(_) | MethodSpec::Adamerging(_) => {
            let g = match &spec.method {
                MethodSpec::Adamerging(a) => a.gradient(),
                MethodSpec::Gradient(g) => g.clone(),
                _ => unreachable!("matched above"),
            };
            let c = coefficients()?;
            let cb = CoefficientBranches::new(
                &refs,
                cfg.num_hidden_layers,
                g.granularity,
                g.activation,
                DType::F32,
                &Device::Cpu,
            )?;
            let rows = c.values.len();
            let cols = c.values.first().map_or(0, Vec::len);
            if rows != cb.layout.groups || cols != cb.layout.columns {
                return Err(RunError::Other(format!(
                    "run {}: its coefficients are {rows} × {cols}, the adapters need {} × {} ({:?})",
                    record.id,
                    cb.layout.groups,
                    cb.layout.columns,
                    Granularity::Module
                )));
            }
            let flat: Vec<f32> = c.values.iter().flatten().copied().collect();
            let fc = Tensor::from_vec(flat, (rows, cols), &Device::Cpu)?;
            merged_from_branches(&cb.branches_from_activated(&fc)?, cfg.num_hidden_layers)?
        }
        MethodSpec::Lorahub(_) => {
            let c = coefficients()?;
            let coefs: Vec<f64> = c
                .values
                .first()
                .map(|r| r.iter().map(|&v| v as f64).collect())
                .unwrap_or_default();
            let stacked = StackedPool::new(&refs, &cfg, DType::F32, &Device::Cpu)?;
            merged_from_branches(&stacked.single(&coefs)?, cfg.num_hidden_layers)?
        }
        MethodSpec::Base
        | MethodSpec::NewLora(_)
        | MethodSpec::PiTuning(_)
        | MethodSpec::Arrow(_) => {
            unreachable!("checked above")
        }
    };
    let (padded, r, error) = merged.to_padded_lora(rank)?;
    let base = identity.unwrap_or_else(|| model_dir.display().to_string());
    write_peft(out, &padded, r, r as f64, &base, DType::F32)?;
    Ok((r, error))
}
