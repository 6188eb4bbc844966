//! Arrow routing over the chosen adapters: the routers of every (layer, module) built from the
//! adapters' prototypes, evaluated as computed (zero-step) or with the prototypes tuned on the
//! training split (trained Arrow: AdamW on answer-token loss, best validation checkpoint).
//!
//! A module's candidates are the adapters that have it, whatever their ranks; an adapter absent
//! from a module takes no routing weight there.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor, Var};

use super::coef::StepReport;
use super::settings::ArrowSpec;
use crate::adapter::Adapter;
use crate::eval::{Result, mean_token_loss, token_nll};
use crate::model::branch::RouteTrace;
use crate::model::route::Router;
use crate::model::template::EncodedExample;
use crate::model::{Batch, Branches, Llama, Module};

/// The stacked candidates of one (layer, module).
struct Slot {
    layer: usize,
    module: Module,
    a: Tensor,
    b: Tensor,
    /// (N, R) one-hot: the candidate each rank row belongs to.
    owner: Tensor,
    /// The chosen adapter behind each candidate.
    experts: Vec<usize>,
}

/// The chosen adapters as per-module routers; the prototypes are kept apart so that trained
/// Arrow can tune them.
pub struct ArrowBranches {
    slots: Vec<Slot>,
    num_layers: usize,
    adapters: usize,
    pub top_k: usize,
    pub temperature: f64,
}

/// The top right singular vector of s·B·A (the sign is arbitrary; routing uses |x·p|).
pub fn prototype(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let svd =
        crate::merge::linalg::lowrank_svd(&b.to_dtype(DType::F64)?, &a.to_dtype(DType::F64)?)?;
    if svd.s.is_empty() {
        return Tensor::zeros(a.dim(1)?, DType::F32, a.device());
    }
    svd.v.narrow(1, 0, 1)?.squeeze(1)?.to_dtype(DType::F32)
}

impl ArrowBranches {
    pub fn new(
        adapters: &[&Adapter],
        num_layers: usize,
        top_k: usize,
        temperature: f64,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let mut slots = Vec::new();
        for l in 0..num_layers {
            for m in Module::ALL {
                let (mut a, mut b, mut owner, mut experts) = (vec![], vec![], vec![], vec![]);
                for (i, ad) in adapters.iter().enumerate() {
                    if let Some(p) = ad.pairs.get(&(l, m)) {
                        let r = p.a.dim(0)?;
                        owner.extend(std::iter::repeat_n(experts.len() as u32, r));
                        experts.push(i);
                        a.push(p.a.to_dtype(DType::F32)?);
                        b.push((p.b.to_dtype(DType::F32)? * ad.scale())?);
                    }
                }
                if experts.is_empty() {
                    continue;
                }
                slots.push(Slot {
                    layer: l,
                    module: m,
                    a: Tensor::cat(&a, 0)?.to_device(device)?.to_dtype(dtype)?,
                    b: Tensor::cat(&b, 1)?.to_device(device)?.to_dtype(dtype)?,
                    owner: Router::ownership(&owner, experts.len(), dtype, device)?,
                    experts,
                });
            }
        }
        Ok(Self {
            slots,
            num_layers,
            adapters: adapters.len(),
            top_k,
            temperature,
        })
    }

    /// The prototypes as computed (zero-step Arrow): one (N, in) f32 matrix per routed module.
    pub fn initial_prototypes(&self, adapters: &[&Adapter]) -> candle_core::Result<Vec<Tensor>> {
        self.slots
            .iter()
            .map(|s| {
                let rows = s
                    .experts
                    .iter()
                    .map(|&i| {
                        let p = &adapters[i].pairs[&(s.layer, s.module)];
                        prototype(&p.a, &p.b)
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::stack(&rows, 0)?.to_device(s.a.device())
            })
            .collect()
    }

    /// Branches that route with `prototypes` (one per module, as [`Self::initial_prototypes`]).
    pub fn branches(&self, prototypes: &[Tensor]) -> Branches {
        let mut out = Branches::empty(self.num_layers);
        for (s, p) in self.slots.iter().zip(prototypes) {
            out.set_router(
                s.layer,
                s.module,
                Router {
                    a: s.a.clone(),
                    b: s.b.clone(),
                    prototypes: p.clone(),
                    owner: s.owner.clone(),
                    top_k: self.top_k,
                    temperature: self.temperature,
                },
            );
        }
        out
    }

    /// The mean routing weight of every adapter in every module over the tokens of `examples`
    /// (each forwarded alone, so no padding is counted): (7·layers) rows of one column per
    /// adapter, 0 where an adapter is absent, in the coefficient view's layout.
    pub fn profile(
        &self,
        model: &Llama,
        prototypes: &[Tensor],
        examples: &[EncodedExample],
    ) -> Result<Vec<Vec<f32>>> {
        let trace = Arc::new(Mutex::new(RouteTrace::default()));
        let mut br = self.branches(prototypes);
        br.trace = Some(trace.clone());
        for ex in examples {
            let batch = Batch::new(std::slice::from_ref(&ex.ids), 0, model.device())?;
            model.hidden(&batch, Some(&br))?;
        }
        let trace = trace.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows = vec![vec![0f32; self.adapters]; 7 * self.num_layers];
        for s in &self.slots {
            if let Some((sums, n)) = trace.sums.get(&(s.layer, s.module)) {
                let row = &mut rows[7 * s.layer + s.module.index()];
                for (&i, v) in s.experts.iter().zip(sums) {
                    row[i] = (*v / (*n).max(1) as f64) as f32;
                }
            }
        }
        Ok(rows)
    }
}

impl ArrowBranches {
    /// The mean routing weight of every adapter over all routed tokens and modules of `trace`
    /// (an adapter absent from a module counts 0 there).
    pub fn mean_weights(&self, trace: &RouteTrace) -> Vec<f64> {
        let mut total = vec![0.0; self.adapters];
        let mut tokens = 0usize;
        for s in &self.slots {
            if let Some((sums, n)) = trace.sums.get(&(s.layer, s.module)) {
                for (&i, v) in s.experts.iter().zip(sums) {
                    total[i] += v;
                }
                tokens += n;
            }
        }
        total.iter().map(|t| t / tokens.max(1) as f64).collect()
    }
}

/// How many validation examples the routing profile is measured on.
pub const PROFILE_EXAMPLES: usize = 32;

/// What trained Arrow keeps: the best checkpoint's prototypes and routing profile, and the curve.
pub struct TrainedArrow {
    pub prototypes: Vec<Tensor>,
    pub profile: Vec<Vec<f32>>,
    pub best_step: usize,
    pub best_val_loss: f64,
    pub steps: usize,
    pub curve: Vec<StepReport>,
}

/// Trained Arrow: the prototypes tuned on `train`, validated every `eval_every` steps; the best
/// checkpoint's prototypes are returned with the curve. `progress` sees every step (with the
/// routing profile at each check); a set `cancel` stops after the step in flight.
#[allow(clippy::too_many_arguments)]
pub fn tune_prototypes(
    model: &Llama,
    pad_id: u32,
    arrow: &ArrowBranches,
    start: &[Tensor],
    train: &[EncodedExample],
    val: &[EncodedExample],
    spec: &ArrowSpec,
    seed: u64,
    progress: &mut dyn FnMut(&StepReport),
    cancel: Option<&AtomicBool>,
) -> Result<TrainedArrow> {
    let vars = start
        .iter()
        .map(|p| Var::from_tensor(&p.to_dtype(DType::F32)?))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let mut grad_model = model.clone();
    grad_model.set_differentiable(true);
    let plan = super::tloop::Plan {
        steps: spec.steps,
        batch_size: spec.batch_size,
        eval_every: spec.eval_every,
        lr: spec.lr,
        warmup_frac: spec.warmup_frac,
        salt: 0xa77e,
    };
    let profile_rows = &val[..val.len().min(PROFILE_EXAMPLES)];
    let mut loss = |batch: &[EncodedExample]| -> Result<Tensor> {
        let protos: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let (nll, _) = token_nll(&grad_model, pad_id, batch, Some(&arrow.branches(&protos)))?;
        Ok(nll.mean_all()?)
    };
    let mut check = || -> Result<super::tloop::Check<Vec<Tensor>>> {
        // Copies: the vars are updated in place.
        let now = vars
            .iter()
            .map(|v| v.as_tensor().detach().copy())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(super::tloop::Check {
            val_loss: mean_token_loss(model, pad_id, val, Some(&arrow.branches(&now)), 32)?,
            coefficients: arrow.profile(model, &now, profile_rows)?,
            checkpoint: now,
        })
    };
    let t = super::tloop::train(
        vars.clone(),
        plan,
        seed,
        train,
        &mut loss,
        &mut check,
        progress,
        cancel,
    )?;
    Ok(TrainedArrow {
        profile: t.best.coefficients,
        prototypes: t.best.checkpoint,
        best_step: t.best_step,
        best_val_loss: t.best.val_loss,
        steps: t.steps,
        curve: t.curve,
    })
}
