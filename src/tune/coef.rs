//! Gradient-based merging coefficients: the selected adapters stay frozen in a concatenated side
//! branch whose gates are f(c)·s, and only the coefficients c are trained (AdamW on answer-token
//! loss), keeping the checkpoint with the best validation loss.
//!
//! All granularities share one layout: a coefficient matrix C of shape (groups, columns). A group
//! is what one set of coefficients covers (everything, a layer, a sublayer, a module); a column is
//! an adapter, or one rank dimension of an adapter. Each (layer, module) branch reads its gate from
//! its group's row through an index of columns, so the gradient reaches C through `index_select`.

use std::sync::atomic::AtomicBool;

use candle_core::{D, DType, Device, IndexOp, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};
use serde::{Deserialize, Serialize};

use crate::adapter::Adapter;
use crate::eval::{Result, mean_token_loss, token_nll};
use crate::model::branch::Branch;
use crate::model::template::EncodedExample;
use crate::model::{Branches, Llama, Module};

pub use super::settings::{Activation, GradientSpec, Granularity, Init};

/// The coefficient layout of a set of adapters under a granularity.
pub struct Layout {
    pub granularity: Granularity,
    pub groups: usize,
    pub columns: usize,
    /// First column of each adapter (rank granularity) or the adapter index itself.
    offsets: Vec<usize>,
    num_layers: usize,
}

impl Layout {
    pub fn new(adapters: &[&Adapter], num_layers: usize, granularity: Granularity) -> Self {
        let groups = match granularity {
            Granularity::Lora => 1,
            Granularity::Layer => num_layers,
            Granularity::Sublayer => 2 * num_layers,
            Granularity::Module | Granularity::Rank => 7 * num_layers,
        };
        let mut offsets = Vec::with_capacity(adapters.len());
        let mut columns = 0;
        for ad in adapters {
            offsets.push(columns);
            columns += if granularity == Granularity::Rank {
                ad.rank()
            } else {
                1
            };
        }
        Self {
            granularity,
            groups,
            columns,
            offsets,
            num_layers,
        }
    }

    pub fn group(&self, layer: usize, module: Module) -> usize {
        match self.granularity {
            Granularity::Lora => 0,
            Granularity::Layer => layer,
            Granularity::Sublayer => 2 * layer + usize::from(module.block() == "mlp"),
            Granularity::Module | Granularity::Rank => 7 * layer + module.index(),
        }
    }

    /// The columns read by adapter `i`'s `rank` slice.
    fn columns_of(&self, i: usize, rank: usize) -> impl Iterator<Item = u32> + '_ {
        let rank_wise = self.granularity == Granularity::Rank;
        let start = self.offsets[i];
        (0..rank).map(move |j| (if rank_wise { start + j } else { start }) as u32)
    }

    pub fn num_layers(&self) -> usize {
        self.num_layers
    }

    /// How many columns adapter `i` owns: its rank under the rank granularity, else 1.
    fn rank_of(&self, i: usize) -> usize {
        let end = self.offsets.get(i + 1).copied().unwrap_or(self.columns);
        end - self.offsets[i]
    }
}

/// f(c), elementwise (or per group row for softmax), differentiable.
pub fn activate(c: &Tensor, f: Activation) -> candle_core::Result<Tensor> {
    match f {
        Activation::Identity => Ok(c.clone()),
        Activation::Squared => c.sqr(),
        Activation::Sigmoid => (c.neg()?.exp()? + 1.0)?.recip(),
        Activation::Softmax => candle_nn::ops::softmax(c, D::Minus1),
        Activation::LeakyRelu => c.gt(0.0)?.where_cond(c, &(c * 0.01)?),
    }
}

/// The frozen concatenated branch of one (layer, module) and how its gate reads C.
struct Slot {
    layer: usize,
    module: Module,
    a: Tensor,
    b: Tensor,
    group: usize,
    columns: Tensor,
    scales: Tensor,
}

/// The selected adapters as frozen branches whose gates are computed from a coefficient matrix.
pub struct CoefficientBranches {
    pub layout: Layout,
    slots: Vec<Slot>,
    activation: Activation,
    /// The task's own adapter among the chosen ones (what `init = "target"` starts at 1).
    pub target: Option<usize>,
}

impl CoefficientBranches {
    pub fn new(
        adapters: &[&Adapter],
        num_layers: usize,
        granularity: Granularity,
        activation: Activation,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let layout = Layout::new(adapters, num_layers, granularity);
        let mut slots = Vec::new();
        for l in 0..num_layers {
            for m in Module::ALL {
                let mut a = Vec::new();
                let mut b = Vec::new();
                let mut cols = Vec::new();
                let mut scales = Vec::new();
                for (i, ad) in adapters.iter().enumerate() {
                    if let Some(p) = ad.pairs.get(&(l, m)) {
                        let r = p.a.dim(0)?;
                        a.push(p.a.clone());
                        b.push(p.b.clone());
                        cols.extend(layout.columns_of(i, r));
                        scales.extend(std::iter::repeat_n(ad.scale() as f32, r));
                    }
                }
                if a.is_empty() {
                    continue;
                }
                let n = cols.len();
                slots.push(Slot {
                    layer: l,
                    module: m,
                    a: Tensor::cat(&a, 0)?.to_device(device)?.to_dtype(dtype)?,
                    b: Tensor::cat(&b, 1)?.to_device(device)?.to_dtype(dtype)?,
                    group: layout.group(l, m),
                    columns: Tensor::from_vec(cols, n, device)?,
                    scales: Tensor::from_vec(scales, n, device)?.to_dtype(dtype)?,
                });
            }
        }
        Ok(Self {
            layout,
            slots,
            activation,
            target: None,
        })
    }

    /// Branches with gates f(C)[group, column]·s; differentiable in `c` (groups × columns).
    pub fn branches(&self, c: &Tensor) -> candle_core::Result<Branches> {
        self.branches_from_activated(&activate(c, self.activation)?)
    }

    /// Branches from already activated coefficients f(c) (as a run record keeps them).
    pub fn branches_from_activated(&self, fc: &Tensor) -> candle_core::Result<Branches> {
        let mut out = Branches::empty(self.layout.num_layers());
        for s in &self.slots {
            let gate = fc
                .i(s.group)?
                .index_select(&s.columns, 0)?
                .to_dtype(s.scales.dtype())?
                .mul(&s.scales)?;
            out.set(
                s.layer,
                s.module,
                Some(Branch {
                    a: s.a.clone(),
                    b: s.b.clone(),
                    gate,
                }),
            );
        }
        Ok(out)
    }

    /// The initial coefficient matrix.
    pub fn init(
        &self,
        init: Init,
        k: usize,
        seed: u64,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let shape = (self.layout.groups, self.layout.columns);
        let n = shape.0 * shape.1;
        let bound = 1.0 / (k.max(1) as f64).sqrt();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let values: Vec<f32> = match init {
            Init::Zero => vec![0.0; n],
            Init::Equal => vec![bound as f32; n],
            Init::Uniform => {
                let u = Uniform::new(-bound, bound).expect("bound > 0");
                (0..n).map(|_| u.sample(&mut rng) as f32).collect()
            }
            Init::Normal => {
                let d = Normal::new(0.0, bound).expect("std > 0");
                (0..n).map(|_| d.sample(&mut rng) as f32).collect()
            }
            Init::Target => {
                let t = self.target.ok_or_else(|| {
                    candle_core::Error::Msg(
                        "init = \"target\" starts the task's own adapter at 1, and the selection \
                         holds none (set controls.oracle = true)"
                            .into(),
                    )
                })?;
                let cols = self.layout.columns_of(t, self.layout.rank_of(t));
                let cols: Vec<usize> = cols.map(|c| c as usize).collect();
                let mut v = vec![0f32; n];
                for g in 0..shape.0 {
                    for &c in &cols {
                        v[g * shape.1 + c] = 1.0;
                    }
                }
                v
            }
        };
        Tensor::from_vec(values, shape, device)
    }
}

/// One row of a tuning curve.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    pub step: usize,
    pub train_loss: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_loss: Option<f64>,
    /// f(c) at this step, (groups × columns), when a validation check happened.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub coefficients: Option<Vec<Vec<f32>>>,
}

/// The outcome: the best checkpoint's coefficients (raw and activated) and the curve.
#[derive(Debug, Clone)]
pub struct Tuned {
    pub raw: Tensor,
    pub activated: Vec<Vec<f32>>,
    pub best_step: usize,
    pub best_val_loss: f64,
    pub steps: usize,
    pub curve: Vec<StepReport>,
}

fn activated_rows(c: &Tensor, f: Activation) -> candle_core::Result<Vec<Vec<f32>>> {
    activate(c, f)?.to_dtype(DType::F32)?.to_vec2::<f32>()
}

/// Tunes the coefficients of `branches` on `train`, checking `val` every `eval_every` steps.
/// `progress` sees every step; a set `cancel` stops after the step in flight and keeps the best
/// checkpoint so far.
#[allow(clippy::too_many_arguments)]
pub fn tune_coefficients(
    model: &Llama,
    pad_id: u32,
    branches: &CoefficientBranches,
    k: usize,
    train: &[EncodedExample],
    val: &[EncodedExample],
    spec: &GradientSpec,
    seed: u64,
    progress: &mut dyn FnMut(&StepReport),
    cancel: Option<&AtomicBool>,
) -> Result<Tuned> {
    let dev = model.device().clone();
    let c0 = branches.init(spec.init, k, seed, &dev)?;
    let var = Var::from_tensor(&c0.to_dtype(DType::F32)?)?;
    let mut grad_model = model.clone();
    grad_model.set_differentiable(true);
    grad_model.set_dense_delta_grad(true);
    let plan = super::tloop::Plan {
        steps: spec.steps,
        batch_size: spec.batch_size,
        eval_every: spec.eval_every,
        lr: spec.lr,
        warmup_frac: spec.warmup_frac,
        salt: 0xc0ef,
    };
    let mut loss = |batch: &[EncodedExample]| -> Result<Tensor> {
        let br = branches.branches(var.as_tensor())?;
        let (nll, _) = token_nll(&grad_model, pad_id, batch, Some(&br))?;
        let mut loss = nll.mean_all()?.to_dtype(DType::F32)?;
        if spec.l1 > 0.0 {
            let fc = activate(var.as_tensor(), branches.activation)?;
            loss = (loss + (fc.abs()?.mean_all()? * spec.l1)?)?;
        }
        Ok(loss)
    };
    let mut check = || -> Result<super::tloop::Check<Tensor>> {
        // A copy: the Var is updated in place, and a detached view shares its storage, so the
        // best checkpoint would silently become the last.
        let snapshot = var.as_tensor().detach().copy()?;
        let br = branches.branches(&snapshot)?;
        Ok(super::tloop::Check {
            val_loss: mean_token_loss(model, pad_id, val, Some(&br), 32)?,
            coefficients: activated_rows(&snapshot, branches.activation)?,
            checkpoint: snapshot,
        })
    };
    let t = super::tloop::train(
        vec![var.clone()],
        plan,
        seed,
        train,
        &mut loss,
        &mut check,
        progress,
        cancel,
    )?;
    let (best_val_loss, best_step, raw) = (t.best.val_loss, t.best_step, t.best.checkpoint);
    let (done, curve) = (t.steps, t.curve);
    Ok(Tuned {
        activated: activated_rows(&raw, branches.activation)?,
        raw,
        best_step,
        best_val_loss,
        steps: done,
        curve,
    })
}
