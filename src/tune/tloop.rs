//! The training loop the coefficient methods share (the gradient recipe and AdaMerging, trained
//! Arrow, π-Tuning): AdamW with linear warmup and decay over shuffled batches, a validation check
//! every `eval_every` steps and at the end, and the best check's checkpoint kept.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::coef::StepReport;
use super::optim::{Batcher, Schedule, Trainer};
use crate::eval::Result;
use crate::model::template::EncodedExample;

/// How long and how fast a loop trains.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub steps: usize,
    pub batch_size: usize,
    pub eval_every: usize,
    pub lr: f64,
    pub warmup_frac: f64,
    /// Mixed into the run's seed so that each method draws its own batch order.
    pub salt: u64,
}

/// One validation check: the loss, the coefficient view and what to keep if it is the best.
pub struct Check<S> {
    pub val_loss: f64,
    pub coefficients: Vec<Vec<f32>>,
    pub checkpoint: S,
}

/// The best check and the curve.
pub struct Trained<S> {
    pub best: Check<S>,
    pub best_step: usize,
    pub steps: usize,
    pub curve: Vec<StepReport>,
}

/// Trains `vars` for `plan.steps` steps on batches of `train`. `loss` gives a batch's training
/// loss (a scalar that reaches the vars); `check` measures the current values on validation.
/// `progress` sees every step; a set `cancel` stops after the step in flight, and when that
/// happens before the first check, the current values are checked once.
#[allow(clippy::too_many_arguments)]
pub fn train<S>(
    vars: Vec<Var>,
    plan: Plan,
    seed: u64,
    train: &[EncodedExample],
    loss: &mut dyn FnMut(&[EncodedExample]) -> Result<Tensor>,
    check: &mut dyn FnMut() -> Result<Check<S>>,
    progress: &mut dyn FnMut(&StepReport),
    cancel: Option<&AtomicBool>,
) -> Result<Trained<S>> {
    let schedule = Schedule {
        peak: plan.lr,
        warmup: ((plan.steps as f64 * plan.warmup_frac).round() as usize).max(1),
        total: plan.steps,
        final_frac: 0.0,
    };
    let mut trainer = Trainer::new(vars, (0.9, 0.999), 0.0, Some(1.0))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ plan.salt);
    let mut batcher = Batcher::default();
    let mut best: Option<(Check<S>, usize)> = None;
    let mut curve = Vec::with_capacity(plan.steps);
    let mut done = 0;
    let eval_every = plan.eval_every.max(1);
    for step in 0..plan.steps {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            break;
        }
        let batch = batcher.next(train, plan.batch_size, &mut rng);
        let l = loss(&batch)?.to_dtype(DType::F32)?;
        let train_loss = l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let train_loss = crate::eval::finite(train_loss, || {
            format!("the training loss at step {}", step + 1)
        })?;
        trainer.step(&l, schedule.lr(step))?;
        done = step + 1;
        let mut report = StepReport {
            step: done,
            train_loss,
            val_loss: None,
            coefficients: None,
        };
        if done % eval_every == 0 || done == plan.steps {
            let c = check()?;
            let v =
                crate::eval::finite(c.val_loss, || format!("the validation loss at step {done}"))?;
            report.val_loss = Some(v);
            report.coefficients = Some(c.coefficients.clone());
            if best.as_ref().is_none_or(|(b, _)| v < b.val_loss) {
                best = Some((c, done));
            }
        }
        progress(&report);
        curve.push(report);
    }
    let (best, best_step) = match best {
        Some(b) => b,
        None => {
            let c = check()?;
            crate::eval::finite(c.val_loss, || "the validation loss".into())?;
            (c, done)
        }
    };
    Ok(Trained {
        best,
        best_step,
        steps: done,
        curve,
    })
}
