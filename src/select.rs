//! Selection strategies: which adapters of the pool go into a merge.
//!
//! Scores come from [`score_adapters`]: each adapter alone on the task's training examples, exact
//! match by teacher forcing (one forward, the same verdict as a greedy decode) plus the answer
//! loss, which breaks exact-match ties.

pub mod closeness;
pub mod screen;
pub use loracycle_data::select::selection;

use candle_core::DType;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::adapter::{Adapter, branches_for};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::eval::{EvalError, Result, answer_scores};
use crate::model::template::EncodedExample;
use crate::model::{Llama, Module};

pub use selection::{ScoreMetric, Selection, TASK_REFERENCE};

/// One adapter's score on the task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub exact_match: f64,
    pub loss: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SelectError {
    #[error("selection {strategy}: k = {k} but the pool holds {pool} usable adapters")]
    TooFew {
        strategy: &'static str,
        k: usize,
        pool: usize,
    },
    #[error("selection: k must be at least 1")]
    ZeroK,
    #[error("selection manual: no adapter named {0:?} in the pool")]
    Unknown(String),
    /// A manual selection naming an adapter the pool's rules refused.
    #[error("selection manual: adapter {name:?} is not usable: {reason}")]
    Rejected { name: String, reason: String },
    #[error("selection similar: reference adapter {0:?} is neither in the pool nor a folder")]
    UnknownReference(String),
}

/// `Err(Cancelled)` once `cancel` is set: checked between adapters (and batches of them).
fn check(cancel: Option<&AtomicBool>) -> Result<()> {
    if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
        Err(EvalError::Cancelled)
    } else {
        Ok(())
    }
}

/// Each adapter alone on `examples`; a set `cancel` stops before the next adapter.
pub fn score_adapters(
    model: &Llama,
    pad_id: u32,
    adapters: &[&Adapter],
    examples: &[EncodedExample],
    progress: &mut dyn FnMut(usize, usize),
    cancel: Option<&AtomicBool>,
) -> Result<Vec<Score>> {
    if examples.is_empty() {
        return Err(EvalError::NothingToScore {
            what: "adapter scores",
        });
    }
    let cfg = model.config();
    let mut out = Vec::with_capacity(adapters.len());
    for (i, ad) in adapters.iter().enumerate() {
        check(cancel)?;
        let br = branches_for(&[(*ad, 1.0)], cfg, model.dtype(), model.device())?;
        let folded = model.fold(&br)?;
        let (mut hits, mut loss) = (0usize, 0.0);
        for chunk in examples.chunks(64) {
            let (exact, losses) = answer_scores(&folded, pad_id, chunk, None)?;
            hits += exact.iter().filter(|&&e| e).count();
            loss += losses.iter().sum::<f64>();
        }
        let n = examples.len() as f64;
        out.push(Score {
            exact_match: hits as f64 / n,
            loss: loss / n,
        });
        progress(i + 1, adapters.len());
    }
    Ok(out)
}

/// One adapter's (A, s·B) per (layer, module), on the model's device.
type Halves =
    std::collections::HashMap<(usize, Module), (candle_core::Tensor, candle_core::Tensor)>;

/// Above this many elements in one module's stacked dense updates, screening uses low-rank
/// segments instead (large models, where a dense ΔW per adapter would not fit).
const DENSE_SCREEN_LIMIT: usize = 1 << 24;

/// Each adapter alone on `examples`, many adapters per forward: the rows of a batch are
/// (adapter, example) pairs in adapter order, and each adapter's run of rows goes through its own
/// side branch only ([`crate::model::branch::Segment`]). `rows_per_forward` bounds a batch.
/// `done(i, score)` is called as soon as adapter `i`'s last example is scored, in order. A set
/// `cancel` stops before the next forward.
pub fn screen_adapters(
    model: &Llama,
    pad_id: u32,
    adapters: &[&Adapter],
    examples: &[EncodedExample],
    rows_per_forward: usize,
    done: &mut dyn FnMut(usize, Score),
    cancel: Option<&AtomicBool>,
) -> Result<()> {
    use std::collections::HashMap;

    use crate::model::branch::{Branches, Segment};

    let m = examples.len();
    if m == 0 {
        return Err(EvalError::NothingToScore {
            what: "adapter scores",
        });
    }
    let cfg = model.config();
    let (dtype, device) = (model.dtype(), model.device());
    // Small models: whole adapters per forward, each group of rows through W + ΔW_g formed
    // densely (a batched matmul at the base model's arithmetic per token).
    let per = (rows_per_forward / m).max(1);
    let largest = Module::ALL
        .iter()
        .map(|&md| {
            let (i, o) = cfg.module_shape(md);
            i * o
        })
        .max()
        .unwrap_or(0);
    if per > 1 && per * largest <= DENSE_SCREEN_LIMIT {
        for (c, group) in adapters.chunks(per).enumerate() {
            check(cancel)?;
            let mut br = Branches::empty(cfg.num_hidden_layers);
            for l in 0..cfg.num_hidden_layers {
                for md in Module::ALL {
                    if !group.iter().any(|a| a.pairs.contains_key(&(l, md))) {
                        continue;
                    }
                    let (i, o) = cfg.module_shape(md);
                    let deltas = group
                        .iter()
                        .map(|a| match a.pairs.get(&(l, md)) {
                            Some(p) => (p.b.to_dtype(DType::F32)? * a.scale())?
                                .matmul(&p.a.to_dtype(DType::F32)?),
                            None => candle_core::Tensor::zeros(
                                (o, i),
                                DType::F32,
                                &candle_core::Device::Cpu,
                            ),
                        })
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    br.set_grouped(
                        l,
                        md,
                        candle_core::Tensor::stack(&deltas, 0)?
                            .to_device(device)?
                            .to_dtype(dtype)?,
                    );
                }
            }
            let batch: Vec<EncodedExample> = group
                .iter()
                .flat_map(|_| examples.iter().cloned())
                .collect();
            let outcomes = crate::eval::answer_outcomes(model, pad_id, &batch, Some(&br))?;
            for (j, chunk) in outcomes.chunks(m).enumerate() {
                let hits = chunk.iter().filter(|o| o.exact).count();
                let loss: f64 = chunk.iter().map(|o| o.loss).sum();
                done(
                    c * per + j,
                    Score {
                        exact_match: hits as f64 / m as f64,
                        loss: loss / m as f64,
                    },
                );
            }
        }
        return Ok(());
    }
    // Each adapter's halves on the model's device, B scaled; built when its rows first appear.
    let mut prepared: HashMap<usize, Halves> = HashMap::new();
    let mut hits = vec![0usize; adapters.len()];
    let mut loss = vec![0f64; adapters.len()];
    let mut seen = vec![0usize; adapters.len()];
    let rows: Vec<(usize, usize)> = (0..adapters.len())
        .flat_map(|g| (0..m).map(move |x| (g, x)))
        .collect();
    for chunk in rows.chunks(rows_per_forward.max(1)) {
        check(cancel)?;
        // Runs of equal adapters in the chunk: (adapter, rows).
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &(g, _) in chunk {
            match runs.last_mut() {
                Some((last, n)) if *last == g => *n += 1,
                _ => runs.push((g, 1)),
            }
        }
        for &(g, _) in &runs {
            if let std::collections::hash_map::Entry::Vacant(slot) = prepared.entry(g) {
                let ad = adapters[g];
                let mut halves = HashMap::new();
                for (key, p) in &ad.pairs {
                    let a = p.a.to_device(device)?.to_dtype(dtype)?;
                    let b = (p.b.to_dtype(DType::F32)? * ad.scale())?
                        .to_device(device)?
                        .to_dtype(dtype)?;
                    halves.insert(*key, (a, b));
                }
                slot.insert(halves);
            }
        }
        let mut br = Branches::empty(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            for module in crate::model::Module::ALL {
                if !runs
                    .iter()
                    .any(|(g, _)| prepared[g].contains_key(&(l, module)))
                {
                    continue;
                }
                let segments = runs
                    .iter()
                    .map(|&(g, n)| Segment {
                        rows: n,
                        ab: prepared[&g].get(&(l, module)).cloned(),
                    })
                    .collect();
                br.set_segments(l, module, segments);
            }
        }
        let batch: Vec<EncodedExample> = chunk.iter().map(|&(_, x)| examples[x].clone()).collect();
        let outcomes = crate::eval::answer_outcomes(model, pad_id, &batch, Some(&br))?;
        for (&(g, _), o) in chunk.iter().zip(outcomes) {
            hits[g] += usize::from(o.exact);
            loss[g] += o.loss;
            seen[g] += 1;
            if seen[g] == m {
                prepared.remove(&g);
                done(
                    g,
                    Score {
                        exact_match: hits[g] as f64 / m as f64,
                        loss: loss[g] / m as f64,
                    },
                );
            }
        }
    }
    Ok(())
}

/// ⟨ΔW_a, ΔW_b⟩ summed over every (layer, module) both touch, through r × r products:
/// ⟨sₐBₐAₐ, s_bB_bA_b⟩ = sₐs_b Σ (AₐA_bᵀ) ⊙ (BₐᵀB_b).
pub fn delta_dot(a: &Adapter, b: &Adapter) -> candle_core::Result<f64> {
    let mut dot = 0.0;
    for (key, pa) in &a.pairs {
        if let Some(pb) = b.pairs.get(key) {
            let aa = pa.a.matmul(&pb.a.t()?)?;
            let bb = pa.b.t()?.matmul(&pb.b)?;
            dot += (aa * bb)?
                .to_dtype(DType::F64)?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
    }
    Ok(dot * a.scale() * b.scale())
}

/// Cosine similarity of the adapters' whole updates.
pub fn delta_cosine(a: &Adapter, b: &Adapter) -> candle_core::Result<f64> {
    let na = delta_dot(a, a)?.sqrt();
    let nb = delta_dot(b, b)?.sqrt();
    if na == 0.0 || nb == 0.0 {
        return Ok(0.0);
    }
    Ok(delta_dot(a, b)? / (na * nb))
}

/// The chosen pool indices, in ranking order where the strategy ranks.
pub fn select(
    selection: &Selection,
    pool: &[&Adapter],
    scores: Option<&[Score]>,
    reference: Option<&Adapter>,
    run_seed: u64,
) -> std::result::Result<Vec<usize>, SelectError> {
    let check_k = |k: usize| {
        if k == 0 {
            Err(SelectError::ZeroK)
        } else if k > pool.len() {
            Err(SelectError::TooFew {
                strategy: selection.name(),
                k,
                pool: pool.len(),
            })
        } else {
            Ok(k)
        }
    };
    match selection {
        Selection::All => Ok((0..pool.len()).collect()),
        Selection::Random { k, seed } => {
            let k = check_k(*k)?;
            let mut idx: Vec<usize> = (0..pool.len()).collect();
            idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed.unwrap_or(run_seed)));
            idx.truncate(k);
            Ok(idx)
        }
        Selection::TopK { k, by } => {
            let k = check_k(*k)?;
            let scores = scores.expect("top-k is given scores");
            let names: Vec<&str> = pool.iter().map(|a| a.name.as_str()).collect();
            let mut idx = rank_by(scores, &names, *by);
            idx.truncate(k);
            Ok(idx)
        }
        Selection::Similar {
            to,
            k,
            measure,
            aggregate,
        } => {
            let k = check_k(*k)?;
            let reference = reference.ok_or_else(|| SelectError::UnknownReference(to.clone()))?;
            let scores = closeness::score_pool(reference, pool, *measure, *aggregate)
                .unwrap_or_else(|_| vec![f64::NEG_INFINITY; pool.len()]);
            let mut sims: Vec<(usize, f64)> = scores.into_iter().enumerate().collect();
            sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            Ok(sims.into_iter().take(k).map(|(i, _)| i).collect())
        }
        Selection::Rank { k } => {
            let k = check_k(*k)?;
            let mut idx = closeness::by_rank(pool);
            idx.truncate(k);
            Ok(idx)
        }
        Selection::Manual { adapters } => adapters
            .iter()
            .map(|name| {
                pool.iter()
                    .position(|a| &a.name == name)
                    .ok_or_else(|| SelectError::Unknown(name.clone()))
            })
            .collect(),
    }
}

/// Pool indices ranked best first by `by`; ties fall back to loss, then name.
pub fn rank_by(scores: &[Score], names: &[&str], by: ScoreMetric) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&i, &j| {
        let (a, b) = (scores[i], scores[j]);
        let primary = match by {
            ScoreMetric::ExactMatch | ScoreMetric::Generated => {
                b.exact_match.total_cmp(&a.exact_match)
            }
            ScoreMetric::Loss => std::cmp::Ordering::Equal,
        };
        primary
            .then(a.loss.total_cmp(&b.loss))
            .then(names[i].cmp(names[j]))
    });
    idx
}

/// What decided the last places of a top-k by exact match: `None` when exact match alone did,
/// else a sentence naming the tie (how many adapters share the score at the cut, how many of the
/// top k came from it by loss), marked a warning when most of the pool ties.
pub fn describe_ties(scores: &[Score], k: usize, by: ScoreMetric) -> Option<String> {
    if by == ScoreMetric::Loss || k == 0 || k >= scores.len() {
        return None;
    }
    // The k-th best score is the cut; the adapters above it are all in, those at it share what
    // is left.
    let mut ems: Vec<f64> = scores.iter().map(|s| s.exact_match).collect();
    ems.sort_by(|a, b| b.total_cmp(a));
    let cut = ems[k - 1];
    let tied = ems.iter().filter(|&&e| e == cut).count();
    let inside = k - ems.iter().filter(|&&e| e > cut).count();
    if tied == inside {
        return None;
    }
    let n = scores.len();
    let metric = if by == ScoreMetric::Generated {
        "generated exact match"
    } else {
        "exact match"
    };
    let mut line = format!(
        "{tied} of {n} adapters tie at {metric} {cut:.3}; the tie-break (answer loss, lower first) chose {inside} of the top {k} among them"
    );
    if tied * 2 > n {
        line = format!("warning: most of the pool ties — {line}");
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_at_the_cut_are_named_with_their_tie_break() {
        let s = |exact_match, loss| Score { exact_match, loss };
        // caesar-5 on the lab: one adapter solves some, the rest score 0.
        let mut scores = vec![s(0.4, 1.0)];
        scores.extend((0..118).map(|i| s(0.0, 2.0 + i as f64)));
        assert_eq!(
            describe_ties(&scores, 30, ScoreMetric::ExactMatch).as_deref(),
            Some(
                "warning: most of the pool ties — 118 of 119 adapters tie at exact match 0.000; the tie-break (answer loss, lower first) chose 29 of the top 30 among them"
            )
        );
        assert_eq!(
            describe_ties(&scores, 30, ScoreMetric::Generated).as_deref(),
            Some(
                "warning: most of the pool ties — 118 of 119 adapters tie at generated exact match 0.000; the tie-break (answer loss, lower first) chose 29 of the top 30 among them"
            )
        );
        // A tie wholly inside the top k, or ranking by loss: nothing to say.
        assert_eq!(describe_ties(&scores, 1, ScoreMetric::ExactMatch), None);
        assert_eq!(describe_ties(&scores, 30, ScoreMetric::Loss), None);
        let few = [s(0.9, 1.0), s(0.5, 1.0), s(0.5, 2.0), s(0.1, 0.0)];
        assert_eq!(
            describe_ties(&few, 2, ScoreMetric::ExactMatch).as_deref(),
            Some(
                "2 of 4 adapters tie at exact match 0.500; the tie-break (answer loss, lower first) chose 1 of the top 2 among them"
            )
        );
        assert_eq!(describe_ties(&few, 3, ScoreMetric::ExactMatch), None);
    }

    #[test]
    fn ranking_breaks_exact_match_ties_by_loss_then_name() {
        let s = |exact_match, loss| Score { exact_match, loss };
        let scores = [
            s(0.5, 1.0),
            s(0.9, 2.0),
            s(0.5, 0.5),
            s(0.0, 0.1),
            s(0.5, 0.5),
        ];
        let names = ["e", "d", "c", "b", "a"];
        assert_eq!(
            rank_by(&scores, &names, ScoreMetric::ExactMatch),
            vec![1, 4, 2, 0, 3]
        );
        assert_eq!(
            rank_by(&scores, &names, ScoreMetric::Loss),
            vec![3, 4, 2, 0, 1]
        );
    }
}
