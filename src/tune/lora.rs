//! Training a new LoRA on a task's examples: A and B as variables in the side branch, everything
//! else frozen, AdamW on answer-token loss. Initialised as PEFT does (A uniform in ±1/√in, B zero),
//! from a seeded generator so a run is reproducible.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::optim::{Batcher, Schedule, Trainer};
use crate::adapter::write::PairMap;
use crate::eval::{Result, teacher_forced_exact, token_nll};
use crate::model::branch::Branch;
use crate::model::template::EncodedExample;
use crate::model::{Branches, Llama, Module};

#[derive(Debug, Clone, PartialEq)]
pub struct LoraTrainSpec {
    pub rank: usize,
    pub alpha: f64,
    pub modules: Vec<Module>,
    pub lr: f64,
    pub steps: usize,
    pub batch_size: usize,
    /// Fraction of `steps` spent warming up; the rest decays on a cosine to `final_lr_frac`.
    pub warmup_frac: f64,
    /// The learning rate at the end, as a fraction of `lr`.
    pub final_lr_frac: f64,
    /// Measure the validation loss every this many steps (and at the last) and keep the best
    /// checkpoint; 0 keeps the last step.
    pub best_every: usize,
    pub weight_decay: f64,
    pub seed: u64,
    /// Stop when teacher-forced exact match on the check examples reaches this.
    pub early_stop: Option<f64>,
    pub check_every: usize,
}

#[derive(Debug, Clone)]
pub struct TrainedLora {
    /// (A, B) per (layer, module), f32 on the CPU.
    pub pairs: PairMap,
    pub rank: usize,
    pub alpha: f64,
    pub steps: usize,
    pub final_loss: f64,
    /// Exact match on the check examples at the last check.
    pub check_accuracy: Option<f64>,
    /// The kept checkpoint's step and validation loss, when checkpoints were compared.
    pub best: Option<(usize, f64)>,
}

/// Uniform values in ±bound from `rng`, as a tensor.
pub fn seeded_uniform(
    rng: &mut ChaCha8Rng,
    shape: (usize, usize),
    bound: f64,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    use rand::Rng;
    let v: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect();
    Tensor::from_vec(v, shape, dev)
}

/// Trains a LoRA; `progress(step, loss, validation loss)` after every step (the validation loss
/// on the steps it is measured, `val` every `best_every` steps). Stops early when `cancel` is
/// set. `dropout` > 0 applies LoRA dropout to the branch inputs during training steps.
#[allow(clippy::too_many_arguments)]
pub fn train_lora(
    model: &Llama,
    pad_id: u32,
    train: &[EncodedExample],
    val: &[EncodedExample],
    check: &[EncodedExample],
    spec: &LoraTrainSpec,
    dropout: f64,
    progress: &mut dyn FnMut(usize, f64, Option<f64>),
    cancel: Option<&AtomicBool>,
) -> Result<TrainedLora> {
    let cfg = model.config().clone();
    let dev = model.device().clone();
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut vars: BTreeMap<(usize, Module), (Var, Var)> = BTreeMap::new();
    for l in 0..cfg.num_hidden_layers {
        for &m in &spec.modules {
            let (i, o) = cfg.module_shape(m);
            let a = seeded_uniform(&mut rng, (spec.rank, i), 1.0 / (i as f64).sqrt(), &dev)?;
            let b = Tensor::zeros((o, spec.rank), DType::F32, &dev)?;
            vars.insert((l, m), (Var::from_tensor(&a)?, Var::from_tensor(&b)?));
        }
    }
    let scale = spec.alpha / spec.rank as f64;
    let gate = Tensor::full(scale as f32, spec.rank, &dev)?;
    let branches = |vars: &BTreeMap<(usize, Module), (Var, Var)>| {
        let mut br = Branches::empty(cfg.num_hidden_layers);
        for (&(l, m), (a, b)) in vars {
            br.set(
                l,
                m,
                Some(Branch {
                    a: a.as_tensor().clone(),
                    b: b.as_tensor().clone(),
                    gate: gate.clone(),
                }),
            );
        }
        br
    };
    let mut grad_model = model.clone();
    grad_model.set_differentiable(true);
    let all_vars: Vec<Var> = vars
        .values()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    let schedule = Schedule {
        peak: spec.lr,
        warmup: ((spec.steps as f64 * spec.warmup_frac) as usize).max(1),
        total: spec.steps,
        final_frac: spec.final_lr_frac,
    };
    let mut trainer = Trainer::new(all_vars, (0.9, 0.999), spec.weight_decay, Some(1.0))?;

    let mut batcher = Batcher::default();
    let mut final_loss = f64::NAN;
    let mut check_accuracy = None;
    let mut steps = 0;
    // (step, validation loss, a copy of every (A, B) then)
    type Checkpoint = (usize, f64, Vec<(Tensor, Tensor)>);
    let mut best: Option<Checkpoint> = None;
    let compare = spec.best_every > 0 && !val.is_empty();
    for step in 0..spec.steps {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            break;
        }
        let batch = batcher.next(train, spec.batch_size, &mut rng);
        let mut br = branches(&vars);
        if dropout > 0.0 {
            br.dropout = Some(crate::model::branch::Dropout {
                p: dropout,
                seed: spec.seed.wrapping_mul(1_000_003).wrapping_add(step as u64),
            });
        }
        let (nll, _) = token_nll(&grad_model, pad_id, &batch, Some(&br))?;
        let loss = nll.mean_all()?;
        final_loss = crate::eval::finite(loss.to_dtype(DType::F64)?.to_scalar::<f64>()?, || {
            format!("the training loss at step {}", step + 1)
        })?;
        trainer.step(&loss, schedule.lr(step))?;
        steps = step + 1;
        let last = steps == spec.steps;
        let mut val_loss = None;
        if compare && (steps % spec.best_every == 0 || last) {
            let br = branches(&vars);
            let v = crate::eval::mean_token_loss(model, pad_id, val, Some(&br), 32)?;
            let v = crate::eval::finite(v, || format!("the validation loss at step {steps}"))?;
            val_loss = Some(v);
            if best.as_ref().is_none_or(|(_, b, _)| v < *b) {
                // Copies: a Var is updated in place, and a detached view shares its storage.
                let snapshot = vars
                    .values()
                    .map(|(a, b)| {
                        Ok((
                            a.as_tensor().detach().copy()?,
                            b.as_tensor().detach().copy()?,
                        ))
                    })
                    .collect::<candle_core::Result<_>>()?;
                best = Some((steps, v, snapshot));
            }
        }
        progress(steps, final_loss, val_loss);
        if !check.is_empty() && spec.check_every > 0 && (steps % spec.check_every == 0 || last) {
            let br = branches(&vars);
            let exact = teacher_forced_exact(model, pad_id, check, Some(&br))?;
            let acc = exact.iter().filter(|&&e| e).count() as f64 / exact.len() as f64;
            check_accuracy = Some(acc);
            if spec.early_stop.is_some_and(|target| acc >= target) {
                break;
            }
        }
    }
    let kept: Vec<(Tensor, Tensor)> = match &best {
        Some((_, _, snapshot)) => snapshot.clone(),
        None => vars
            .values()
            .map(|(a, b)| (a.as_tensor().clone(), b.as_tensor().clone()))
            .collect(),
    };
    let mut pairs = PairMap::new();
    for (&(l, m), (a, b)) in vars.keys().zip(kept) {
        pairs.insert(
            (l, m),
            (a.to_device(&Device::Cpu)?, b.to_device(&Device::Cpu)?),
        );
    }
    Ok(TrainedLora {
        pairs,
        rank: spec.rank,
        alpha: spec.alpha,
        steps,
        final_loss,
        check_accuracy,
        best: best.map(|(step, v, _)| (step, v)),
    })
}
