//! π-Tuning: per-module softmax coefficients over the chosen adapters, trained jointly with every
//! adapter's A and B (and a fresh LoRA slot), keeping the best validation checkpoint.
//!
//! Each (layer, module) has one coefficient per column (an adapter, or the fresh slot); its gate
//! for adapter i is softmax(c over the adapters present in that module)_i · s_i, so an adapter
//! absent from a module takes no weight there.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use candle_core::{D, DType, Device, IndexOp, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::coef::StepReport;
use super::settings::PiTuningSpec;
use crate::adapter::Adapter;
use crate::eval::{Result, mean_token_loss, token_nll};
use crate::model::branch::Branch;
use crate::model::template::EncodedExample;
use crate::model::{Branches, Llama, Module};

/// One column's trainable halves in one module.
struct Member {
    column: usize,
    a: Var,
    b: Var,
    scale: f64,
}

struct Slot {
    layer: usize,
    module: Module,
    members: Vec<Member>,
    /// The members' columns, for `index_select` on the coefficient row.
    columns: Tensor,
}

/// The trainable state: coefficients (7·layers × columns) and every member's A and B.
pub struct PiBranches {
    slots: Vec<Slot>,
    num_layers: usize,
    /// The model's dtype, which the branches are cast to.
    dtype: DType,
    pub coefficients: Var,
    /// Column names: the chosen adapters, then `fresh` when a fresh slot was added.
    pub columns: Vec<String>,
}

/// Where the fresh slot goes and its shape.
pub struct Fresh {
    /// The chosen adapter it replaces (the task's own), if any.
    pub replaces: Option<usize>,
    pub rank: usize,
    pub alpha: f64,
}

impl PiBranches {
    /// `fresh`: the fresh slot (A ~ N(0, 0.01), B = 0, seeded). It covers the replaced adapter's
    /// modules, or, when it replaces none, every module some chosen adapter has.
    pub fn new(
        adapters: &[&Adapter],
        num_layers: usize,
        fresh: Option<Fresh>,
        shape_of: impl Fn(Module) -> (usize, usize),
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let mut columns: Vec<String> = adapters.iter().map(|a| a.name.clone()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9170);
        let normal = Normal::new(0.0, 0.01).expect("std > 0");
        let fresh_column = match &fresh {
            Some(f) => match f.replaces {
                Some(i) => {
                    columns[i] = format!("fresh (in place of {})", adapters[i].name);
                    Some(i)
                }
                None => {
                    columns.push("fresh".into());
                    Some(adapters.len())
                }
            },
            None => None,
        };
        // The halves train in f32 whatever the model's dtype (bf16 would lose small updates).
        let var = |t: Tensor| -> Result<Var> {
            Ok(Var::from_tensor(
                &t.to_device(device)?.to_dtype(DType::F32)?,
            )?)
        };
        let mut slots = Vec::new();
        for l in 0..num_layers {
            for m in Module::ALL {
                let mut members = Vec::new();
                for (i, ad) in adapters.iter().enumerate() {
                    let Some(p) = ad.pairs.get(&(l, m)) else {
                        continue;
                    };
                    if fresh_column == Some(i) {
                        continue;
                    }
                    members.push(Member {
                        column: i,
                        a: var(p.a.to_dtype(DType::F32)?)?,
                        b: var(p.b.to_dtype(DType::F32)?)?,
                        scale: ad.scale(),
                    });
                }
                if let (Some(f), Some(col)) = (&fresh, fresh_column) {
                    let covers = match f.replaces {
                        Some(i) => adapters[i].pairs.contains_key(&(l, m)),
                        None => adapters.iter().any(|a| a.pairs.contains_key(&(l, m))),
                    };
                    if covers {
                        let (rank, scale) = match f.replaces {
                            Some(i) => (adapters[i].pairs[&(l, m)].a.dim(0)?, adapters[i].scale()),
                            None => (f.rank, f.alpha / f.rank as f64),
                        };
                        let (inp, out) = shape_of(m);
                        let a: Vec<f32> = (0..rank * inp)
                            .map(|_| normal.sample(&mut rng) as f32)
                            .collect();
                        members.push(Member {
                            column: col,
                            a: var(Tensor::from_vec(a, (rank, inp), &Device::Cpu)?)?,
                            b: var(Tensor::zeros((out, rank), DType::F32, &Device::Cpu)?)?,
                            scale,
                        });
                    }
                }
                if members.is_empty() {
                    continue;
                }
                members.sort_by_key(|mb| mb.column);
                let cols: Vec<u32> = members.iter().map(|mb| mb.column as u32).collect();
                let n = cols.len();
                slots.push(Slot {
                    layer: l,
                    module: m,
                    members,
                    columns: Tensor::from_vec(cols, n, device)?,
                });
            }
        }
        // Equal init (the paper's 1/√N; any constant gives the same softmax).
        let n = columns.len();
        let c0 = Tensor::full(1.0 / (n.max(1) as f32).sqrt(), (7 * num_layers, n), device)?;
        Ok(Self {
            slots,
            num_layers,
            dtype,
            coefficients: Var::from_tensor(&c0)?,
            columns,
        })
    }

    /// Every trainable tensor: the coefficients first, then each member's A and B.
    pub fn vars(&self) -> Vec<Var> {
        let mut v = vec![self.coefficients.clone()];
        for s in &self.slots {
            for m in &s.members {
                v.push(m.a.clone());
                v.push(m.b.clone());
            }
        }
        v
    }

    /// The trainable A and B of `column` in one module, if that column is present there.
    pub fn halves(&self, layer: usize, module: Module, column: usize) -> Option<(Var, Var)> {
        let s = self
            .slots
            .iter()
            .find(|s| s.layer == layer && s.module == module)?;
        let m = s.members.iter().find(|m| m.column == column)?;
        Some((m.a.clone(), m.b.clone()))
    }

    /// The branches from the current values (differentiable in every var).
    pub fn branches(&self) -> Result<Branches> {
        let c = self.coefficients.as_tensor();
        let mut out = Branches::empty(self.num_layers);
        for s in &self.slots {
            let row = c.i(7 * s.layer + s.module.index())?;
            let w = candle_nn::ops::softmax(&row.index_select(&s.columns, 0)?, D::Minus1)?;
            let mut gates = Vec::with_capacity(s.members.len());
            for (j, m) in s.members.iter().enumerate() {
                let r = m.a.as_tensor().dim(0)?;
                gates.push((w.i(j)? * m.scale)?.broadcast_as(r)?);
            }
            let a: Vec<&Tensor> = s.members.iter().map(|m| m.a.as_tensor()).collect();
            let b: Vec<&Tensor> = s.members.iter().map(|m| m.b.as_tensor()).collect();
            out.set(
                s.layer,
                s.module,
                Some(Branch {
                    a: Tensor::cat(&a, 0)?.to_dtype(self.dtype)?,
                    b: Tensor::cat(&b, 1)?.to_dtype(self.dtype)?,
                    gate: Tensor::cat(&gates, 0)?.to_dtype(self.dtype)?,
                }),
            );
        }
        Ok(out)
    }

    /// The softmax weights per module, (7·layers × columns), 0 where a column is absent.
    pub fn weights(&self) -> Result<Vec<Vec<f32>>> {
        let c = self.coefficients.as_tensor().to_dtype(DType::F32)?;
        let mut rows = vec![vec![0f32; self.columns.len()]; 7 * self.num_layers];
        for s in &self.slots {
            let g = 7 * s.layer + s.module.index();
            let w = candle_nn::ops::softmax(&c.i(g)?.index_select(&s.columns, 0)?, D::Minus1)?
                .to_vec1::<f32>()?;
            for (m, v) in s.members.iter().zip(w) {
                rows[g][m.column] = v;
            }
        }
        Ok(rows)
    }

    fn snapshot(&self) -> Result<Vec<Tensor>> {
        Ok(self
            .vars()
            .iter()
            .map(|v| v.as_tensor().detach().copy())
            .collect::<candle_core::Result<_>>()?)
    }

    fn restore(&self, values: &[Tensor]) -> Result<()> {
        for (v, t) in self.vars().iter().zip(values) {
            v.set(t)?;
        }
        Ok(())
    }

    /// The tuned update of every module as low-rank halves: A stacked, B ⊙ gate stacked.
    pub fn updates(&self) -> Result<BTreeMap<(usize, Module), (Tensor, Tensor)>> {
        let br = self.branches()?;
        let mut out = BTreeMap::new();
        for s in &self.slots {
            if let Some(b) = br.get(s.layer, s.module) {
                let gate = b.gate.flatten_all()?.detach();
                let scaled = b.b.detach().broadcast_mul(&gate.unsqueeze(0)?)?;
                out.insert((s.layer, s.module), (b.a.detach(), scaled));
            }
        }
        Ok(out)
    }
}

/// What a π-Tuning run keeps: the best checkpoint (left in the vars), its weights and the curve.
pub struct TunedPi {
    pub weights: Vec<Vec<f32>>,
    pub best_step: usize,
    pub best_val_loss: f64,
    pub steps: usize,
    pub curve: Vec<StepReport>,
}

/// Trains coefficients, A and B together on `train`, validating every `eval_every` steps; the
/// vars are left at the best checkpoint.
#[allow(clippy::too_many_arguments)]
pub fn tune_pi(
    model: &Llama,
    pad_id: u32,
    pi: &PiBranches,
    train: &[EncodedExample],
    val: &[EncodedExample],
    spec: &PiTuningSpec,
    seed: u64,
    progress: &mut dyn FnMut(&StepReport),
    cancel: Option<&AtomicBool>,
) -> Result<TunedPi> {
    let mut grad_model = model.clone();
    grad_model.set_differentiable(true);
    let plan = super::tloop::Plan {
        steps: spec.steps,
        batch_size: spec.batch_size,
        eval_every: spec.eval_every,
        lr: spec.lr,
        warmup_frac: spec.warmup_frac,
        salt: 0x9177,
    };
    let mut loss = |batch: &[EncodedExample]| -> Result<Tensor> {
        let (nll, _) = token_nll(&grad_model, pad_id, batch, Some(&pi.branches()?))?;
        Ok(nll.mean_all()?)
    };
    let mut check = || -> Result<super::tloop::Check<Vec<Tensor>>> {
        Ok(super::tloop::Check {
            val_loss: mean_token_loss(model, pad_id, val, Some(&pi.branches()?), 32)?,
            coefficients: pi.weights()?,
            checkpoint: pi.snapshot()?,
        })
    };
    let t = super::tloop::train(
        pi.vars(),
        plan,
        seed,
        train,
        &mut loss,
        &mut check,
        progress,
        cancel,
    )?;
    pi.restore(&t.best.checkpoint)?;
    Ok(TunedPi {
        weights: t.best.coefficients,
        best_step: t.best_step,
        best_val_loss: t.best.val_loss,
        steps: t.steps,
        curve: t.curve,
    })
}
