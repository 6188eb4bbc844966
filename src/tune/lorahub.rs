//! LoraHub: gradient-free coefficients for the A/B sum A = Σ cᵢAᵢ, B = Σ cᵢsᵢBᵢ, found by CMA-ES
//! on loss + 0.05·mean|c| with c in [-1.5, 1.5].
//!
//! A generation of P candidates is scored in one batched forward: each candidate's merged (A, B)
//! is stacked along rank into one branch, and each row of the batch (candidate p, example e) gets
//! a per-example gate that is one on candidate p's slice and zero elsewhere.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::cmaes::CmaEs;
use crate::adapter::Adapter;
use crate::eval::{Result, token_nll};
use crate::model::branch::Branch;
use crate::model::template::EncodedExample;
use crate::model::{Branches, Llama, LlamaConfig, Module};

pub use super::settings::LorahubSpec;

/// Every selected adapter's halves per (layer, module), zero-padded to one rank, B pre-scaled,
/// laid out so that one (P × k) by (k × …) product merges P candidates at once.
pub struct StackedPool {
    rank: usize,
    k: usize,
    num_layers: usize,
    /// (layer, module, A by adapter (k × r·in), B by adapter (k × out·r))
    modules: Vec<(usize, Module, Tensor, Tensor)>,
    device: Device,
    dtype: DType,
}

/// One module's merged halves for P candidates: A (P, r, in) and B (P, out, r).
type Merged = (usize, Module, Tensor, Tensor);

impl StackedPool {
    pub fn new(
        adapters: &[&Adapter],
        cfg: &LlamaConfig,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let rank = adapters.iter().map(|a| a.rank()).max().unwrap_or(0);
        let k = adapters.len();
        let mut modules = Vec::new();
        for l in 0..cfg.num_hidden_layers {
            for m in Module::ALL {
                if !adapters.iter().any(|a| a.pairs.contains_key(&(l, m))) {
                    continue;
                }
                let (inp, out) = cfg.module_shape(m);
                let mut a_parts = Vec::new();
                let mut b_parts = Vec::new();
                for ad in adapters {
                    let (a, b) = match ad.pairs.get(&(l, m)) {
                        Some(p) => (p.a.clone(), (&p.b * ad.scale())?),
                        None => (
                            Tensor::zeros((0, inp), DType::F32, &Device::Cpu)?,
                            Tensor::zeros((out, 0), DType::F32, &Device::Cpu)?,
                        ),
                    };
                    let r = a.dim(0)?;
                    a_parts.push(Tensor::cat(
                        &[a, Tensor::zeros((rank - r, inp), DType::F32, &Device::Cpu)?],
                        0,
                    )?);
                    // B transposed to (r, out) so adapter i's block is one contiguous row.
                    b_parts.push(
                        Tensor::cat(
                            &[b, Tensor::zeros((out, rank - r), DType::F32, &Device::Cpu)?],
                            1,
                        )?
                        .t()?,
                    );
                }
                let a = Tensor::cat(&a_parts, 0)?.reshape((k, rank * inp))?;
                let b = Tensor::stack(&b_parts, 0)?.reshape((k, rank * out))?;
                modules.push((
                    l,
                    m,
                    a.to_device(device)?.to_dtype(dtype)?,
                    b.to_device(device)?.to_dtype(dtype)?,
                ));
            }
        }
        Ok(Self {
            rank,
            k,
            num_layers: cfg.num_hidden_layers,
            modules,
            device: device.clone(),
            dtype,
        })
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Every candidate's A = Σ cᵢAᵢ and B = Σ cᵢsᵢBᵢ per module: one (P × k) product per half.
    fn merged(&self, candidates: &[Vec<f64>]) -> candle_core::Result<Vec<Merged>> {
        let (p, k, r) = (candidates.len(), self.k, self.rank);
        let c: Vec<f32> = candidates
            .iter()
            .flat_map(|c| c.iter().map(|&w| w as f32))
            .collect();
        if c.len() != p * k {
            candle_core::bail!("candidates need {k} coefficients each");
        }
        let c = Tensor::from_vec(c, (p, k), &self.device)?.to_dtype(self.dtype)?;
        self.modules
            .iter()
            .map(|(l, m, a, b)| {
                let inp = a.dim(1)? / r.max(1);
                let out = b.dim(1)? / r.max(1);
                let a = c.matmul(a)?.reshape((p, r, inp))?;
                let b = c
                    .matmul(b)?
                    .reshape((p, r, out))?
                    .transpose(1, 2)?
                    .contiguous()?;
                Ok((*l, *m, a, b))
            })
            .collect()
    }

    /// One branch per module holding every candidate's merged (A, B) stacked along rank,
    /// (P·r, in) and (out, P·r), with the gate left to the caller.
    fn stacked(
        &self,
        candidates: &[Vec<f64>],
    ) -> candle_core::Result<Vec<(usize, Module, Tensor, Tensor)>> {
        let (p, r) = (candidates.len(), self.rank);
        self.merged(candidates)?
            .into_iter()
            .map(|(l, m, a, b)| {
                let (_, out, _) = b.dims3()?;
                let a = a.reshape((p * r, ()))?;
                let b = b.transpose(0, 1)?.contiguous()?.reshape((out, p * r))?;
                Ok((l, m, a, b))
            })
            .collect()
    }

    /// Branches for one candidate alone (shared gate), as a sequential evaluation would build.
    pub fn single(&self, c: &[f64]) -> candle_core::Result<Branches> {
        let mut out = Branches::empty(self.num_layers);
        for (l, m, a, b) in self.stacked(&[c.to_vec()])? {
            out.set(
                l,
                m,
                Some(Branch {
                    gate: Tensor::ones(a.dim(0)?, self.dtype, &self.device)?,
                    a,
                    b,
                }),
            );
        }
        Ok(out)
    }
}

impl StackedPool {
    /// Every candidate's ΔW_p = B_p A_p per module, (P, out, in), as grouped updates.
    fn grouped(&self, candidates: &[Vec<f64>]) -> candle_core::Result<Branches> {
        let mut out = Branches::empty(self.num_layers);
        for (l, m, a, b) in self.merged(candidates)? {
            out.set_grouped(l, m, b.matmul(&a)?);
        }
        Ok(out)
    }

    /// Elements of all candidates' dense updates for the largest module.
    fn grouped_elements(&self, candidates: usize) -> usize {
        self.modules
            .iter()
            .map(|(_, _, a, b)| {
                let r2 = (self.rank * self.rank).max(1);
                candidates * a.dim(1).unwrap_or(0) * b.dim(1).unwrap_or(0) / r2
            })
            .max()
            .unwrap_or(0)
    }
}

/// Each candidate's token-mean loss with its own ΔW in one forward per group of candidates: the
/// base model's arithmetic per token, one forward instead of one per candidate.
pub fn score_grouped(
    model: &Llama,
    pad_id: u32,
    pool: &StackedPool,
    examples: &[EncodedExample],
    candidates: &[Vec<f64>],
    rows_per_forward: usize,
) -> Result<Vec<f64>> {
    let e = examples.len().max(1);
    let per = (rows_per_forward / e).max(1);
    let mut out = Vec::with_capacity(candidates.len());
    for group in candidates.chunks(per) {
        let br = pool.grouped(group)?;
        let batch: Vec<EncodedExample> = group
            .iter()
            .flat_map(|_| examples.iter().cloned())
            .collect();
        let (nll, owner) = token_nll(model, pad_id, &batch, Some(&br))?;
        let nll = nll.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let mut sum = vec![0f64; group.len()];
        let mut count = vec![0usize; group.len()];
        for (v, o) in nll.iter().zip(owner) {
            sum[o / e] += v;
            count[o / e] += 1;
        }
        out.extend(
            sum.iter()
                .zip(&count)
                .map(|(s, &n)| if n == 0 { f64::NAN } else { s / n as f64 }),
        );
    }
    Ok(out)
}

/// Token-mean answer loss of each candidate on `examples`, all candidates in batched forwards
/// of at most `rows_per_forward` rows.
pub fn score_batched(
    model: &Llama,
    pad_id: u32,
    pool: &StackedPool,
    examples: &[EncodedExample],
    candidates: &[Vec<f64>],
    rows_per_forward: usize,
) -> Result<Vec<f64>> {
    let (p, e, r) = (candidates.len(), examples.len(), pool.rank);
    let stacked = pool.stacked(candidates)?;
    let rows: Vec<(usize, usize)> = (0..p).flat_map(|c| (0..e).map(move |x| (c, x))).collect();
    let mut sum = vec![0f64; p];
    let mut count = vec![0usize; p];
    for chunk in rows.chunks(rows_per_forward.max(1)) {
        let mut gate = vec![0f32; chunk.len() * p * r];
        for (row, &(c, _)) in chunk.iter().enumerate() {
            gate[row * p * r + c * r..row * p * r + (c + 1) * r].fill(1.0);
        }
        let gate =
            Tensor::from_vec(gate, (chunk.len(), 1, p * r), &pool.device)?.to_dtype(pool.dtype)?;
        let mut br = Branches::empty(pool.num_layers);
        for (l, m, a, b) in &stacked {
            br.set(
                *l,
                *m,
                Some(Branch {
                    a: a.clone(),
                    b: b.clone(),
                    gate: gate.clone(),
                }),
            );
        }
        let batch: Vec<EncodedExample> = chunk.iter().map(|&(_, x)| examples[x].clone()).collect();
        let (nll, owner) = token_nll(model, pad_id, &batch, Some(&br))?;
        let nll = nll.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        for (v, o) in nll.iter().zip(owner) {
            let c = chunk[o].0;
            sum[c] += v;
            count[c] += 1;
        }
    }
    Ok(sum
        .iter()
        .zip(&count)
        .map(|(s, &n)| if n == 0 { f64::NAN } else { s / n as f64 })
        .collect())
}

/// The same scores, one candidate at a time (the baseline the batched path is measured against).
pub fn score_sequential(
    model: &Llama,
    pad_id: u32,
    pool: &StackedPool,
    examples: &[EncodedExample],
    candidates: &[Vec<f64>],
) -> Result<Vec<f64>> {
    candidates
        .iter()
        .map(|c| {
            let br = pool.single(c)?;
            crate::eval::mean_token_loss(model, pad_id, examples, Some(&br), examples.len())
        })
        .collect()
}

/// Most elements of per-candidate dense updates of one module held at once (64 M floats).
const GROUPED_LIMIT: usize = 1 << 26;

/// Scores a generation in batched forwards: grouped dense updates where they fit, else the
/// stacked branch with per-example gates.
fn score(
    model: &Llama,
    pad_id: u32,
    pool: &StackedPool,
    examples: &[EncodedExample],
    candidates: &[Vec<f64>],
    rows_per_forward: usize,
) -> Result<Vec<f64>> {
    // Grouped dense updates while all candidates' ΔW of a module stay small (lab-sized models);
    // on large models the stacked branch adds little per token.
    if pool.grouped_elements(candidates.len()) <= GROUPED_LIMIT {
        return score_grouped(model, pad_id, pool, examples, candidates, rows_per_forward);
    }
    score_batched(model, pad_id, pool, examples, candidates, rows_per_forward)
}

/// One generation of the search.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenerationReport {
    pub generation: usize,
    pub evaluations: usize,
    /// Best objective (loss + l1·mean|c|) so far.
    pub best_objective: f64,
    /// Loss of the best candidate so far.
    pub best_loss: f64,
    pub mean_objective: f64,
    pub sigma: f64,
}

#[derive(Debug, Clone)]
pub struct LorahubResult {
    pub coefficients: Vec<f64>,
    pub objective: f64,
    pub loss: f64,
    pub evaluations: usize,
    pub curve: Vec<GenerationReport>,
}

/// Searches coefficients for `pool` on `examples`.
#[allow(clippy::too_many_arguments)]
pub fn tune_lorahub(
    model: &Llama,
    pad_id: u32,
    pool: &StackedPool,
    examples: &[EncodedExample],
    spec: &LorahubSpec,
    seed: u64,
    progress: &mut dyn FnMut(&GenerationReport),
    cancel: Option<&AtomicBool>,
) -> Result<LorahubResult> {
    let k = pool.k();
    let examples = match spec.examples {
        Some(n) => &examples[..n.min(examples.len())],
        None => examples,
    };
    let mut es = CmaEs::new(
        vec![0.0; k],
        spec.sigma,
        spec.population,
        Some((-spec.bound, spec.bound)),
        seed,
    );
    let objective = |loss: f64, c: &[f64]| {
        loss + spec.l1 * c.iter().map(|v| v.abs()).sum::<f64>() / c.len().max(1) as f64
    };
    // The starting point (the base model, c = 0) is the first incumbent.
    let zero = vec![0.0; k];
    let l0 = score(
        model,
        pad_id,
        pool,
        examples,
        std::slice::from_ref(&zero),
        spec.rows_per_forward,
    )?[0];
    let l0 = crate::eval::finite(l0, || "the training loss of the base model (c = 0)".into())?;
    let mut best = (objective(l0, &zero), l0, zero);
    let mut evaluations = 1;
    let mut curve = Vec::new();
    let mut generation = 0;
    while evaluations + es.lambda() <= spec.budget {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            break;
        }
        let candidates = es.ask();
        let losses = score(
            model,
            pad_id,
            pool,
            examples,
            &candidates,
            spec.rows_per_forward,
        )?;
        let values: Vec<f64> = candidates
            .iter()
            .zip(&losses)
            .map(|(c, &l)| {
                if l.is_finite() {
                    objective(l, c)
                } else {
                    f64::INFINITY
                }
            })
            .collect();
        for ((c, &v), &l) in candidates.iter().zip(&values).zip(&losses) {
            if v < best.0 {
                best = (v, l, c.clone());
            }
        }
        es.tell(&candidates, &values);
        evaluations += candidates.len();
        generation += 1;
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let report = GenerationReport {
            generation,
            evaluations,
            best_objective: best.0,
            best_loss: best.1,
            mean_objective: finite.iter().sum::<f64>() / finite.len().max(1) as f64,
            sigma: es.sigma(),
        };
        progress(&report);
        curve.push(report);
    }
    Ok(LorahubResult {
        coefficients: best.2,
        objective: best.0,
        loss: best.1,
        evaluations,
        curve,
    })
}
