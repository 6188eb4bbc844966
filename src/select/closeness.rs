//! Closeness of a candidate adapter's update to a target's, the measures of the paper's
//! selection ablation (its `scripts/model_closeness_metrics.py`), module by module.
//!
//! For every (layer, module) that either adapter touches, with ΔW = s·B·A (s the PEFT scale):
//! - `cosine`: ⟨ΔW_c, ΔW_t⟩, through r × r products (no dense ΔW);
//! - `clamp`: Σ max(ΔW_c ⊙ ΔW_t, 0); `abs`: Σ |ΔW_c ⊙ ΔW_t|;
//! - `clamp-per-module`: max(⟨ΔW_c, ΔW_t⟩, 0);
//! - `quasi-fim`: ⟨ΔW_c², ΔW_t²⟩ (element-wise squares), whose norms are ‖ΔW²‖²;
//!
//! each over the norms ‖ΔW_c‖², ‖ΔW_t‖² (of the squares for quasi-FIM). `macro` aggregation is
//! Σ products / √(Σ‖ΔW_c‖² · Σ‖ΔW_t‖² + ε); `micro` is the mean over modules of product /
//! √(‖ΔW_c‖² ‖ΔW_t‖² + ε), a module only one adapter touches counting 0. Quasi-FIM's result is
//! then square-rooted. `l2` is −ln(1 + Σ‖ΔW_c − ΔW_t‖²), a module one side lacks counting that
//! side's ‖ΔW‖². ε = 1e-6, as the paper's code has it. Higher is closer for every measure.
//!
//! Where this differs from the paper's code: ΔW includes the PEFT scale (lora_alpha / r, or
//! / √r for rsLoRA), as the model applies it; the paper's code compares B·A unscaled, which ranks
//! adapters of different alpha/r by a factor the model never sees (cosine under `micro` is the only
//! measure unaffected). Its code also caches each adapter's norm in the state dict it was given,
//! so a second measure on the same states reuses the first measure's norm; here nothing is kept.
//!
//! Scoring a pool against one target goes module by module ([`score_pool`]): the target's ΔW of a
//! module is formed once, each candidate's in turn and dropped, so no more than two dense ΔW are
//! held at a time, whatever the pool's size.

use std::collections::BTreeSet;

use candle_core::{DType, Tensor};

use crate::adapter::{Adapter, LoraPair};
use crate::model::Module;

const EPSILON: f64 = 1e-6;

pub use super::selection::{Aggregate, Closeness as Measure};

/// What one module adds: the product, the candidate's and the target's norms (squared), and for
/// `l2` the squared distance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Terms {
    prod: f64,
    norm_c: f64,
    norm_t: f64,
    distance: f64,
}

fn scalar(t: &Tensor) -> candle_core::Result<f64> {
    t.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()
}

/// s·B·A as a dense (out, in) matrix in f32.
fn dense(p: &LoraPair, scale: f64) -> candle_core::Result<Tensor> {
    let b = p.b.to_dtype(DType::F32)?;
    let a = p.a.to_dtype(DType::F32)?;
    (b * scale)?.matmul(&a)
}

/// ⟨s₁B₁A₁, s₂B₂A₂⟩ through r × r products.
fn lowrank_dot(p: &LoraPair, s: f64, q: &LoraPair, t: f64) -> candle_core::Result<f64> {
    let aa =
        p.a.to_dtype(DType::F32)?
            .matmul(&q.a.to_dtype(DType::F32)?.t()?)?;
    let bb =
        p.b.to_dtype(DType::F32)?
            .t()?
            .matmul(&q.b.to_dtype(DType::F32)?)?;
    Ok(scalar(&(aa * bb)?)? * s * t)
}

/// A module's terms. `dense_t` is the target's ΔW (or its square for quasi-FIM), formed by the
/// caller once for every candidate.
fn module_terms(
    measure: Measure,
    cand: Option<(&LoraPair, f64)>,
    target: Option<(&LoraPair, f64)>,
    dense_t: Option<&Tensor>,
) -> candle_core::Result<Terms> {
    let mut t = Terms::default();
    let square = |m: &Tensor| -> candle_core::Result<Tensor> {
        if measure == Measure::QuasiFim {
            m.sqr()
        } else {
            Ok(m.clone())
        }
    };
    let dense_c = match cand {
        Some((p, s)) if measure.dense() => Some(square(&dense(p, s)?)?),
        _ => None,
    };
    // The norms.
    match (cand, &dense_c) {
        (Some((p, s)), None) => t.norm_c = lowrank_dot(p, s, p, s)?,
        (_, Some(c)) => t.norm_c = scalar(&c.sqr()?)?,
        (None, None) => {}
    }
    match (target, dense_t) {
        (Some((p, s)), None) => t.norm_t = lowrank_dot(p, s, p, s)?,
        (_, Some(d)) => t.norm_t = scalar(&d.sqr()?)?,
        (None, None) => {}
    }
    if measure == Measure::L2 {
        t.distance = match (&dense_c, dense_t) {
            (Some(c), Some(d)) => scalar(&(c - d)?.sqr()?)?,
            _ => t.norm_c + t.norm_t,
        };
        return Ok(t);
    }
    let (Some((p, s)), Some((q, u))) = (cand, target) else {
        return Ok(t);
    };
    t.prod = match (measure, &dense_c, dense_t) {
        (Measure::Cosine, _, _) => lowrank_dot(p, s, q, u)?,
        (_, Some(c), Some(d)) => {
            let prod = (c * d)?;
            match measure {
                Measure::Clamp => scalar(&prod.relu()?)?,
                Measure::Abs => scalar(&prod.abs()?)?,
                Measure::ClampPerModule => scalar(&prod)?.max(0.0),
                _ => scalar(&prod)?,
            }
        }
        _ => 0.0,
    };
    Ok(t)
}

/// One candidate's sums over the modules, turned into its closeness by [`Accumulator::finish`].
#[derive(Debug, Clone, Default)]
struct Accumulator {
    micro: Vec<f64>,
    prod: f64,
    norm_c: f64,
    norm_t: f64,
    distance: f64,
}

impl Accumulator {
    fn add(&mut self, t: Terms) {
        self.micro
            .push(t.prod / (t.norm_c * t.norm_t + EPSILON).sqrt());
        self.prod += t.prod;
        self.norm_c += t.norm_c;
        self.norm_t += t.norm_t;
        self.distance += t.distance;
    }

    fn finish(&self, measure: Measure, aggregate: Aggregate) -> f64 {
        if measure == Measure::L2 {
            return -(self.distance + 1.0).ln();
        }
        let v = match aggregate {
            Aggregate::Micro if self.micro.is_empty() => 0.0,
            Aggregate::Micro => self.micro.iter().sum::<f64>() / self.micro.len() as f64,
            Aggregate::Macro => self.prod / (self.norm_c * self.norm_t + EPSILON).sqrt(),
        };
        if measure == Measure::QuasiFim {
            // A negative sum cannot come from squares; the root keeps the sign of zero.
            v.max(0.0).sqrt()
        } else {
            v
        }
    }
}

/// Every candidate's closeness to `target`, module by module (see the module docs).
pub fn score_pool(
    target: &Adapter,
    candidates: &[&Adapter],
    measure: Measure,
    aggregate: Aggregate,
) -> candle_core::Result<Vec<f64>> {
    let mut keys: BTreeSet<(usize, Module)> = target.pairs.keys().copied().collect();
    for c in candidates {
        keys.extend(c.pairs.keys().copied());
    }
    let mut acc = vec![Accumulator::default(); candidates.len()];
    for key in keys {
        let tp = target.pairs.get(&key).map(|p| (p, target.scale()));
        let dense_t = match tp {
            Some((p, s)) if measure.dense() => {
                let d = dense(p, s)?;
                Some(if measure == Measure::QuasiFim {
                    d.sqr()?
                } else {
                    d
                })
            }
            _ => None,
        };
        for (c, a) in candidates.iter().zip(acc.iter_mut()) {
            let cp = c.pairs.get(&key).map(|p| (p, c.scale()));
            if cp.is_none() && tp.is_none() {
                continue;
            }
            a.add(module_terms(measure, cp, tp, dense_t.as_ref())?);
        }
    }
    Ok(acc.iter().map(|a| a.finish(measure, aggregate)).collect())
}

/// One candidate's closeness to `target`.
pub fn closeness(
    candidate: &Adapter,
    target: &Adapter,
    measure: Measure,
    aggregate: Aggregate,
) -> candle_core::Result<f64> {
    Ok(score_pool(target, &[candidate], measure, aggregate)?[0])
}

/// Pool indices by PEFT rank, highest first (ties by pool order): the paper's `rank` baseline.
pub fn by_rank(pool: &[&Adapter]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..pool.len()).collect();
    idx.sort_by(|&i, &j| pool[j].config.r.cmp(&pool[i].config.r).then(i.cmp(&j)));
    idx
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use candle_core::Device;

    use super::*;
    use crate::adapter::AdapterConfig;

    /// An adapter whose ΔW of each listed module is exactly `m` (rank = in, A = I, alpha = r).
    fn adapter(r: usize, modules: &[(Module, &[&[f32]])]) -> Adapter {
        let mut pairs = BTreeMap::new();
        for (module, rows) in modules {
            let (o, i) = (rows.len(), rows[0].len());
            assert_eq!(i, r);
            let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
            let b = Tensor::from_vec(flat, (o, i), &Device::Cpu).unwrap();
            let a = Tensor::eye(i, DType::F32, &Device::Cpu).unwrap();
            pairs.insert((0, *module), LoraPair { a, b });
        }
        Adapter {
            name: "t".into(),
            dir: Default::default(),
            config: AdapterConfig {
                r,
                lora_alpha: r as f64,
                ..Default::default()
            },
            pairs,
            storage_dtype: "F32".into(),
            file_size: 0,
            warnings: Vec::new(),
        }
    }

    const C1: &[&[f32]] = &[&[1.0, -2.0], &[3.0, 0.0]];
    const T1: &[&[f32]] = &[&[2.0, 1.0], &[-1.0, 4.0]];
    // 3 × 2: out 3, in 2.
    const C2: &[&[f32]] = &[&[1.0, 0.0], &[0.0, 1.0], &[1.0, 1.0]];
    const T2: &[&[f32]] = &[&[1.0, 1.0], &[0.0, 0.0], &[2.0, 0.0]];

    fn close(got: f64, want: f64) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn each_measure_equals_its_formula_on_one_2x2_module() {
        let c = adapter(2, &[(Module::Q, C1)]);
        let t = adapter(2, &[(Module::Q, T1)]);
        let m = |measure| closeness(&c, &t, measure, Aggregate::Macro).unwrap();
        // ΔW_c ⊙ ΔW_t = [[2, −2], [−3, 0]]; ‖ΔW_c‖² = 14, ‖ΔW_t‖² = 22.
        let n = (14.0f64 * 22.0 + EPSILON).sqrt();
        close(m(Measure::Cosine), -3.0 / n);
        close(m(Measure::Clamp), 2.0 / n);
        close(m(Measure::Abs), 7.0 / n);
        close(m(Measure::ClampPerModule), 0.0);
        // Squares: [[1, 4], [9, 0]] and [[4, 1], [1, 16]]: product 17, norms 98 and 274.
        close(
            m(Measure::QuasiFim),
            (17.0 / (98.0f64 * 274.0 + EPSILON).sqrt()).sqrt(),
        );
        // ‖ΔW_c − ΔW_t‖² = 1 + 9 + 16 + 16 = 42.
        close(m(Measure::L2), -(43.0f64).ln());
        // One module: micro is macro.
        close(
            closeness(&c, &t, Measure::Clamp, Aggregate::Micro).unwrap(),
            2.0 / n,
        );
    }

    #[test]
    fn macro_and_micro_aggregate_a_2x2_and_a_3x2_module() {
        let c = adapter(2, &[(Module::Q, C1), (Module::Up, C2)]);
        let t = adapter(2, &[(Module::Q, T1), (Module::Up, T2)]);
        // Module 2: product 3, norms 4 and 6.
        let micro =
            (-3.0 / (14.0f64 * 22.0 + EPSILON).sqrt() + 3.0 / (24.0f64 + EPSILON).sqrt()) / 2.0;
        close(
            closeness(&c, &t, Measure::Cosine, Aggregate::Micro).unwrap(),
            micro,
        );
        // Σ products 0: macro cosine is 0 however the modules differ.
        close(
            closeness(&c, &t, Measure::Cosine, Aggregate::Macro).unwrap(),
            0.0,
        );
        let macro_clamp = (2.0 + 3.0) / (18.0f64 * 28.0 + EPSILON).sqrt();
        close(
            closeness(&c, &t, Measure::Clamp, Aggregate::Macro).unwrap(),
            macro_clamp,
        );
        // The existing whole-update cosine is the macro cosine.
        close(crate::select::delta_cosine(&c, &t).unwrap(), 0.0);
    }

    #[test]
    fn a_module_one_side_lacks_counts_zero_and_its_norm() {
        let c = adapter(2, &[(Module::Q, C1)]);
        let t = adapter(2, &[(Module::Q, T1), (Module::Up, T2)]);
        let n1 = (14.0f64 * 22.0 + EPSILON).sqrt();
        // Micro: the missing module adds 0 to the mean of two.
        close(
            closeness(&c, &t, Measure::Abs, Aggregate::Micro).unwrap(),
            (7.0 / n1 + 0.0) / 2.0,
        );
        // Macro: its norm enters the target's sum.
        close(
            closeness(&c, &t, Measure::Abs, Aggregate::Macro).unwrap(),
            7.0 / (14.0f64 * 28.0 + EPSILON).sqrt(),
        );
        // L2: the target's ‖ΔW‖² of the module the candidate lacks.
        close(
            closeness(&c, &t, Measure::L2, Aggregate::Macro).unwrap(),
            -(42.0f64 + 6.0 + 1.0).ln(),
        );
    }

    /// What the paper's `cosine_closeness` and `l2_closeness` give on these matrices (A = I,
    /// so its unscaled B·A is ΔW here too; torch 2.15, float32): both modules on both sides,
    /// and the candidate without the 3 × 2 module.
    #[test]
    fn the_papers_code_gives_the_same_values() {
        let both = adapter(2, &[(Module::Q, C1), (Module::Up, C2)]);
        let one = adapter(2, &[(Module::Q, C1)]);
        let t = adapter(2, &[(Module::Q, T1), (Module::Up, T2)]);
        let paper = [
            (Measure::Cosine, Aggregate::Macro, 0.0, -0.15152287483215332),
            (
                Measure::Cosine,
                Aggregate::Micro,
                0.22071576118469238,
                -0.08547043055295944,
            ),
            (
                Measure::Clamp,
                Aggregate::Macro,
                0.22271770238876343,
                0.10101525485515594,
            ),
            (
                Measure::Clamp,
                Aggregate::Micro,
                0.363166481256485,
                0.05698028951883316,
            ),
            (
                Measure::Abs,
                Aggregate::Macro,
                0.44543540477752686,
                0.3535533845424652,
            ),
            (
                Measure::Abs,
                Aggregate::Micro,
                0.5056172013282776,
                0.19943101704120636,
            ),
            (
                Measure::ClampPerModule,
                Aggregate::Macro,
                0.13363061845302582,
                0.0,
            ),
            (
                Measure::ClampPerModule,
                Aggregate::Micro,
                0.3061861991882324,
                0.0,
            ),
            (
                Measure::QuasiFim,
                Aggregate::Macro,
                0.3570389151573181,
                0.31700944900512695,
            ),
            (
                Measure::QuasiFim,
                Aggregate::Micro,
                0.5886421203613281,
                0.22775360941886902,
            ),
            (
                Measure::L2,
                Aggregate::Macro,
                -3.8501474857330322,
                -3.891820192337036,
            ),
        ];
        for (measure, aggregate, with_both, with_one) in paper {
            let got = closeness(&both, &t, measure, aggregate).unwrap();
            assert!(
                (got - with_both).abs() < 1e-6,
                "{measure:?} {aggregate:?}: {got} vs {with_both}"
            );
            let got = closeness(&one, &t, measure, aggregate).unwrap();
            assert!(
                (got - with_one).abs() < 1e-6,
                "{measure:?} {aggregate:?}: {got} vs {with_one}"
            );
        }
    }

    #[test]
    fn the_scale_enters_the_update_and_a_pool_scores_in_one_pass() {
        // alpha = 2r doubles ΔW_c: cosine is unchanged, L2 is not.
        let mut c = adapter(2, &[(Module::Q, C1)]);
        c.config.lora_alpha = 4.0;
        let t = adapter(2, &[(Module::Q, T1)]);
        let n = (14.0f64 * 22.0 + EPSILON).sqrt();
        close(
            closeness(&c, &t, Measure::Cosine, Aggregate::Micro).unwrap(),
            -3.0 / n,
        );
        // 2ΔW_c − ΔW_t = [[0, −5], [7, −4]]: 0 + 25 + 49 + 16 = 90.
        close(
            closeness(&c, &t, Measure::L2, Aggregate::Macro).unwrap(),
            -(91.0f64).ln(),
        );
        let plain = adapter(2, &[(Module::Q, C1)]);
        let scores = score_pool(&t, &[&plain, &c, &t], Measure::Clamp, Aggregate::Macro).unwrap();
        close(scores[0], 2.0 / n);
        close(scores[1], 2.0 / n);
        close(scores[2], 1.0);
        // Rank: the highest r first.
        let r4 = adapter(4, &[(Module::Q, &[&[1.0, 0.0, 0.0, 0.0]])]);
        assert_eq!(by_rank(&[&plain, &r4, &c]), [1, 0, 2]);
    }
}
