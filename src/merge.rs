//! Non-adaptive merges of LoRA adapters, one (layer, module) at a time.
//!
//! Each adapter i contributes its task vector τᵢ = wᵢ·sᵢ·Bᵢ·Aᵢ (wᵢ a user weight, 1 by default).
//! Methods whose result is low rank (sum, average, task arithmetic, TSV, SVD, the LoraHub-style
//! A/B sum) never form a dense (out × in) matrix; TIES and DARE work on dense task vectors but
//! stream over adapters, so at most three dense matrices of one module are alive at a time.

pub mod linalg;
pub use loracycle_data::merge::method;
mod ties;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};

use crate::adapter::Adapter;
use crate::model::{Llama, LlamaConfig, Module};

pub use method::{Divisor, MergeMethod, SignElection, Weights};

type Result<T> = candle_core::Result<T>;

/// One adapter's LoRA halves on one module, with its scale and merge weight.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    /// (r, in)
    pub a: &'a Tensor,
    /// (out, r)
    pub b: &'a Tensor,
    /// alpha / r (or alpha / √r)
    pub scale: f64,
    pub weight: f64,
}

impl Part<'_> {
    /// τ = w·s·B·A, dense, f32.
    pub fn dense(&self) -> Result<Tensor> {
        (self.b.matmul(self.a)? * (self.weight * self.scale))?.to_dtype(DType::F32)
    }
}

/// The merged update of one module: ΔW = B·A (low rank) or a dense matrix.
#[derive(Debug, Clone)]
pub enum Update {
    LowRank { a: Tensor, b: Tensor },
    Dense(Tensor),
}

impl Update {
    pub fn dense(&self) -> Result<Tensor> {
        match self {
            Update::LowRank { a, b } => b.matmul(a),
            Update::Dense(d) => Ok(d.clone()),
        }
    }

    pub fn rank(&self) -> Option<usize> {
        match self {
            Update::LowRank { a, .. } => a.dim(0).ok(),
            Update::Dense(_) => None,
        }
    }
}

/// Merges the parts of one module of shape (out, in); `selected` is the number N of adapters
/// merged (the parts are those of them that touch this module); `salt` varies DARE's masks per
/// module.
pub fn merge_module(
    parts: &[Part<'_>],
    method: &MergeMethod,
    shape: (usize, usize),
    selected: usize,
    salt: u64,
) -> Result<Update> {
    let (out, inp) = shape;
    if parts.is_empty() {
        return Ok(Update::LowRank {
            a: Tensor::zeros((0, inp), DType::F32, &Device::Cpu)?,
            b: Tensor::zeros((out, 0), DType::F32, &Device::Cpu)?,
        });
    }
    let k = parts.len() as f64;
    let merged = selected.max(parts.len());
    let n = merged as f64;
    let scaled = |factor: f64| -> Vec<Part<'_>> {
        parts
            .iter()
            .map(|p| Part {
                weight: p.weight * factor,
                ..*p
            })
            .collect()
    };
    match method {
        MergeMethod::Sum => concat(parts),
        MergeMethod::Average { over } => concat(&scaled(match over {
            Divisor::Selected => 1.0 / n,
            Divisor::Touching => 1.0 / k,
        })),
        MergeMethod::TaskArithmetic { lambda } => concat(&scaled(*lambda)),
        MergeMethod::Svd { rank } => {
            let Update::LowRank { a, b } = concat(parts)? else {
                unreachable!("concat is low rank")
            };
            let (a, b) = linalg::lowrank_svd(&b, &a)?.truncate(*rank)?.into_lora()?;
            Ok(Update::LowRank { a, b })
        }
        MergeMethod::Tsv { m, lambda, weights } => {
            tsv(&scaled(weights.uniform(merged)), *m, *lambda)
        }
        MergeMethod::LorahubSum => lorahub_sum(parts, shape),
        MergeMethod::Ties {
            density,
            sign,
            lambda,
            weights,
        } => Ok(Update::Dense(
            (ties::ties(&scaled(weights.uniform(merged)), *density, *sign, shape)? * *lambda)?,
        )),
        MergeMethod::Dare {
            density,
            seed,
            consensus,
            lambda,
        } => Ok(Update::Dense(
            (ties::dare(parts, *density, *consensus, seed ^ salt, shape)? * *lambda)?,
        )),
    }
}

/// Σ τᵢ as the rank concatenation A = [A₁; …], B = [w₁s₁B₁ …].
fn concat(parts: &[Part<'_>]) -> Result<Update> {
    let a: Vec<Tensor> = parts.iter().map(|p| p.a.clone()).collect();
    let b = parts
        .iter()
        .map(|p| p.b * (p.weight * p.scale))
        .collect::<Result<Vec<_>>>()?;
    Ok(Update::LowRank {
        a: Tensor::cat(&a, 0)?.to_dtype(DType::F32)?,
        b: Tensor::cat(&b, 1)?.to_dtype(DType::F32)?,
    })
}

fn tsv(parts: &[Part<'_>], m: usize, lambda: f64) -> Result<Update> {
    let mut us = Vec::new();
    let mut vs = Vec::new();
    let mut sigma = Vec::new();
    for p in parts {
        let b = (p.b * (p.weight * p.scale))?;
        let svd = linalg::lowrank_svd(&b, p.a)?.truncate(m)?;
        us.push(svd.u);
        vs.push(svd.v);
        sigma.extend(svd.s);
    }
    let u = linalg::polar(&Tensor::cat(&us, 1)?)?;
    let v = linalg::polar(&Tensor::cat(&vs, 1)?)?;
    let n = sigma.len();
    let s = Tensor::from_vec(sigma, n, u.device())?;
    let b = (u.broadcast_mul(&s.unsqueeze(0)?)? * lambda)?;
    Ok(Update::LowRank {
        a: v.t()?.to_dtype(DType::F32)?.contiguous()?,
        b: b.to_dtype(DType::F32)?,
    })
}

fn lorahub_sum(parts: &[Part<'_>], (out, inp): (usize, usize)) -> Result<Update> {
    let r = parts
        .iter()
        .map(|p| p.a.dim(0).unwrap_or(0))
        .max()
        .unwrap_or(0);
    let mut a = Tensor::zeros((r, inp), DType::F32, &Device::Cpu)?;
    let mut b = Tensor::zeros((out, r), DType::F32, &Device::Cpu)?;
    for p in parts {
        let ri = p.a.dim(0)?;
        let pa = (p.a.to_dtype(DType::F32)? * p.weight)?;
        let pb = (p.b.to_dtype(DType::F32)? * (p.weight * p.scale))?;
        let (pa, pb) = if ri < r {
            (
                Tensor::cat(
                    &[pa, Tensor::zeros((r - ri, inp), DType::F32, &Device::Cpu)?],
                    0,
                )?,
                Tensor::cat(
                    &[pb, Tensor::zeros((out, r - ri), DType::F32, &Device::Cpu)?],
                    1,
                )?,
            )
        } else {
            (pa, pb)
        };
        a = (a + pa)?;
        b = (b + pb)?;
    }
    Ok(Update::LowRank { a, b })
}

/// The merged update of every (layer, module) some adapter touches.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    pub updates: BTreeMap<(usize, Module), Update>,
}

impl Merged {
    /// A copy of `model` with every update added to its base weight, for evaluation.
    pub fn apply(&self, model: &Llama) -> Result<Llama> {
        let mut out = model.clone();
        for (&(l, m), u) in &self.updates {
            if u.rank() == Some(0) {
                continue;
            }
            out.add_to_weight(l, m, &u.dense()?)?;
        }
        Ok(out)
    }

    /// Every update as a rank-≤`rank` LoRA pair (A, B) for export, with the relative Frobenius
    /// truncation error ‖ΔW − B·A‖ / ‖ΔW‖ pooled over modules (0 for exact low-rank results).
    pub fn to_lora(&self, rank: usize) -> Result<(crate::adapter::write::PairMap, f64)> {
        let mut pairs = BTreeMap::new();
        let (mut err2, mut total2) = (0.0, 0.0);
        for (&key, u) in &self.updates {
            let (a, b) = match u {
                Update::LowRank { a, b } => (a.clone(), b.clone()),
                Update::Dense(d) => {
                    let (a, b) = linalg::dense_svd(d, rank)?.into_lora()?;
                    let full = linalg::frobenius(d)?;
                    let diff = linalg::frobenius(&(d - b.matmul(&a)?)?)?;
                    err2 += diff * diff;
                    total2 += full * full;
                    (a, b)
                }
            };
            pairs.insert(key, (a, b));
        }
        let rel = if total2 > 0.0 {
            (err2 / total2).sqrt()
        } else {
            0.0
        };
        Ok((pairs, rel))
    }
}

impl Merged {
    /// As PEFT needs it, one rank for every module: each pair of [`Merged::to_lora`] zero-padded
    /// to the largest rank. Returns the pairs, that rank, and the relative truncation error.
    pub fn to_padded_lora(
        &self,
        rank: usize,
    ) -> Result<(crate::adapter::write::PairMap, usize, f64)> {
        let (pairs, error) = self.to_lora(rank)?;
        let r = pairs
            .values()
            .map(|(a, _)| a.dim(0).unwrap_or(0))
            .max()
            .unwrap_or(0);
        let mut padded = BTreeMap::new();
        for (key, (a, b)) in pairs {
            let ri = a.dim(0)?;
            let (inp, out) = (a.dim(1)?, b.dim(0)?);
            let a = Tensor::cat(
                &[a, Tensor::zeros((r - ri, inp), DType::F32, &Device::Cpu)?],
                0,
            )?;
            let b = Tensor::cat(
                &[b, Tensor::zeros((out, r - ri), DType::F32, &Device::Cpu)?],
                1,
            )?;
            padded.insert(key, (a, b));
        }
        Ok((padded, r, error))
    }
}

/// Merges whole adapters with per-adapter weights: every (layer, module) any of them touches.
pub fn merge_adapters(
    sources: &[(&Adapter, f64)],
    method: &MergeMethod,
    cfg: &LlamaConfig,
) -> Result<Merged> {
    let listed = method.listed_weights();
    if let Some(ws) = listed
        && ws.len() != sources.len()
    {
        candle_core::bail!(
            "method.weights lists {} weights for {} adapters merged",
            ws.len(),
            sources.len()
        );
    }
    let mut merged = Merged::default();
    for l in 0..cfg.num_hidden_layers {
        for m in Module::ALL {
            let parts: Vec<Part<'_>> = sources
                .iter()
                .enumerate()
                .filter_map(|(i, (ad, w))| {
                    ad.pairs.get(&(l, m)).map(|p| Part {
                        a: &p.a,
                        b: &p.b,
                        scale: ad.scale(),
                        weight: *w * listed.map_or(1.0, |ws| ws[i]),
                    })
                })
                .collect();
            if parts.is_empty() {
                continue;
            }
            let (inp, out) = cfg.module_shape(m);
            let salt = (l as u64) << 8 | m.index() as u64;
            merged.updates.insert(
                (l, m),
                merge_module(&parts, method, (out, inp), sources.len(), salt)?,
            );
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests;
