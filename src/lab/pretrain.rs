//! Pretraining the lab's base model from scratch on a curriculum of tasks.
//!
//! A uniform mix of tasks from scratch does not train at this size (DESIGN, lab figures); a
//! curriculum does: a new task every `introduce_every` steps, the newest taking half of each
//! batch, a uniform mix once all are in; then a shorter phase at a lower rate that samples tasks in
//! proportion to how badly the model still does on them.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::tasks::Task;
use crate::eval::{Result, teacher_forced_exact, token_nll};
use crate::model::template::EncodedExample;
use crate::model::{Llama, LlamaConfig, TextCodec};
use crate::tune::{Schedule, Trainer};

#[derive(Debug, Clone, PartialEq)]
pub struct PretrainSpec {
    pub batch_size: usize,
    pub introduce_every: usize,
    pub main_steps: usize,
    pub peak_lr: f64,
    pub warmup: usize,
    pub polish_steps: usize,
    pub polish_lr: f64,
    /// Re-measure per-task accuracy for the polish phase's weights every this many steps.
    pub measure_every: usize,
    pub seed: u64,
}

/// What happened during pretraining, for the progress display.
pub struct PretrainProgress {
    pub step: usize,
    pub total: usize,
    pub loss: f64,
    /// Per-task teacher-forced accuracy, when just measured.
    pub accuracy: Option<Vec<(String, f64)>>,
}

/// A freshly initialised model whose weights are variables: normal(0, 0.02) matrices, unit norms.
pub fn init_model(
    cfg: &LlamaConfig,
    seed: u64,
    dev: &Device,
) -> Result<(Llama, Vec<(String, Var)>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0f32, 0.02).expect("valid std");
    let varmap = VarMap::new();
    // Norms start at one, matrices at N(0, 0.02), drawn in the config's tensor order.
    let names: Vec<(String, Vec<usize>, bool)> = cfg
        .tensor_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let is_norm = shape.len() == 1;
            (name, shape, is_norm)
        })
        .collect();
    let mut vars = Vec::new();
    {
        let mut data = varmap.data().lock().expect("fresh var map");
        for (name, shape, is_norm) in names {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if is_norm {
                vec![1.0; n]
            } else {
                (0..n).map(|_| normal.sample(&mut rng)).collect()
            };
            let var = Var::from_tensor(&Tensor::from_vec(values, shape, dev)?)?;
            vars.push((name.clone(), var.clone()));
            data.insert(name, var);
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
    let mut model = Llama::from_var_builder(cfg.clone(), vb, DType::F32, dev)?;
    model.set_differentiable(true);
    Ok((model, vars))
}

fn encode_batch(
    codec: &TextCodec,
    tasks: &[&Task],
    pick: &mut dyn FnMut(&mut ChaCha8Rng) -> usize,
    n: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<EncodedExample>> {
    (0..n)
        .map(|_| {
            let t = tasks[pick(rng)];
            let (p, a) = t.example(rng);
            Ok(codec.encode_example(None, &p, &a)?)
        })
        .collect()
}

/// One optimiser step on a fresh batch whose tasks `pick` chooses; returns the loss.
#[allow(clippy::too_many_arguments)]
fn train_step(
    model: &Llama,
    codec: &TextCodec,
    tasks: &[&Task],
    pick: &mut dyn FnMut(&mut ChaCha8Rng) -> usize,
    batch_size: usize,
    rng: &mut ChaCha8Rng,
    trainer: &mut Trainer,
    lr: f64,
) -> Result<f64> {
    let batch = encode_batch(codec, tasks, pick, batch_size, rng)?;
    let (nll, _) = token_nll(model, codec.pad_id(), &batch, None)?;
    let loss = nll.mean_all()?;
    let l = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    trainer.step(&loss, lr)?;
    Ok(l)
}

/// Teacher-forced accuracy of the model on fresh examples of each task.
pub fn task_accuracy(
    model: &Llama,
    codec: &TextCodec,
    tasks: &[&Task],
    n: usize,
    seed: u64,
) -> Result<Vec<f64>> {
    tasks
        .iter()
        .map(|t| {
            let enc = t
                .examples(n, seed)
                .iter()
                .map(|(p, a)| codec.encode_example(None, p, a))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let exact = teacher_forced_exact(model, codec.pad_id(), &enc, None)?;
            Ok(exact.iter().filter(|&&e| e).count() as f64 / n as f64)
        })
        .collect()
}

/// Where and how often `pretrain` saves its state, and the recipe the state belongs to.
pub struct Checkpointing<'a> {
    pub path: &'a Path,
    pub every: usize,
    pub recipe: &'a str,
}

/// The batch generator of one step: its own stream, so a resumed run draws the same batches.
fn step_rng(seed: u64, step: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(
        seed ^ 0x5eed_0000_0000 ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

/// Runs the whole curriculum on the variables of `model`. With `checkpoint`, the weights and the
/// optimiser state are saved every `every` steps and a run resumes from a checkpoint of the same
/// recipe, so an interrupted pretraining loses at most `every` steps.
pub fn pretrain(
    model: &Llama,
    vars: &[(String, Var)],
    codec: &TextCodec,
    tasks: &[&Task],
    spec: &PretrainSpec,
    checkpoint: Option<&Checkpointing<'_>>,
    progress: &mut dyn FnMut(PretrainProgress),
) -> Result<()> {
    let total = spec.main_steps + spec.polish_steps;
    let schedule = Schedule {
        peak: spec.peak_lr,
        warmup: spec.warmup,
        total: spec.main_steps,
        final_frac: 0.1,
    };
    let plain: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let mut trainer = Trainer::new(plain, (0.9, 0.98), 0.01, Some(1.0))?;
    let start = match checkpoint {
        Some(c) => resume(c, vars, &mut trainer)?,
        None => 0,
    };
    let mut eval_model = model.clone();
    eval_model.set_differentiable(false);
    let mut weights = vec![1.0; tasks.len()];
    for step in start..total {
        let mut rng = step_rng(spec.seed, step);
        let mut accuracy = None;
        let l = if step < spec.main_steps {
            let introduced = (step / spec.introduce_every.max(1) + 1).min(tasks.len());
            let newest = introduced - 1;
            let all_in = step >= spec.introduce_every * tasks.len();
            let mut pick = |r: &mut ChaCha8Rng| {
                if !all_in && r.random_bool(0.5) {
                    newest
                } else {
                    r.random_range(0..introduced)
                }
            };
            let lr = schedule.lr(step);
            train_step(
                model,
                codec,
                tasks,
                &mut pick,
                spec.batch_size,
                &mut rng,
                &mut trainer,
                lr,
            )?
        } else {
            // Polish: a constant lower rate, tasks weighted toward the ones still failing.
            let polish_step = step - spec.main_steps;
            if polish_step.is_multiple_of(spec.measure_every.max(1)) {
                let acc = task_accuracy(
                    &eval_model,
                    codec,
                    tasks,
                    64,
                    spec.seed + polish_step as u64,
                )?;
                weights = acc.iter().map(|a| 0.1 + (1.0 - a)).collect();
                accuracy = Some(
                    tasks
                        .iter()
                        .zip(&acc)
                        .map(|(t, a)| (t.name.clone(), *a))
                        .collect(),
                );
            }
            let sum: f64 = weights.iter().sum();
            let w = &weights;
            let mut pick = |r: &mut ChaCha8Rng| {
                let mut x = r.random_range(0.0..sum);
                for (i, wi) in w.iter().enumerate() {
                    if x < *wi {
                        return i;
                    }
                    x -= wi;
                }
                w.len() - 1
            };
            let lr = spec.polish_lr;
            train_step(
                model,
                codec,
                tasks,
                &mut pick,
                spec.batch_size,
                &mut rng,
                &mut trainer,
                lr,
            )?
        };
        progress(PretrainProgress {
            step: step + 1,
            total,
            loss: l,
            accuracy,
        });
        if let Some(c) = checkpoint
            && (step + 1).is_multiple_of(c.every.max(1))
            && step + 1 < total
        {
            save_checkpoint(c, vars, &trainer, step + 1)?;
        }
    }
    Ok(())
}

fn save_checkpoint(
    c: &Checkpointing<'_>,
    vars: &[(String, Var)],
    trainer: &Trainer,
    step: usize,
) -> Result<()> {
    let mut tensors: HashMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (format!("w.{n}"), v.as_tensor().clone()))
        .collect();
    tensors.extend(trainer.state());
    let meta = HashMap::from([
        ("recipe".to_string(), c.recipe.to_string()),
        ("step".to_string(), step.to_string()),
    ]);
    let bytes = safetensors::serialize(&tensors, Some(meta))
        .map_err(|e| candle_core::Error::Msg(format!("checkpoint: {e}")))?;
    crate::atomic_write::write_atomic(c.path, &bytes)
        .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", c.path.display())))?;
    Ok(())
}

/// Loads a checkpoint of the same recipe into the variables and the optimiser; returns the step
/// to continue from (0 when there is none, or it belongs to another recipe).
fn resume(c: &Checkpointing<'_>, vars: &[(String, Var)], trainer: &mut Trainer) -> Result<usize> {
    let Ok(bytes) = std::fs::read(c.path) else {
        return Ok(0);
    };
    let Ok((_, meta)) = safetensors::SafeTensors::read_metadata(&bytes) else {
        return Ok(0);
    };
    let meta = meta.metadata().clone().unwrap_or_default();
    if meta.get("recipe").map(String::as_str) != Some(c.recipe) {
        return Ok(0);
    }
    let Some(step) = meta.get("step").and_then(|s| s.parse::<usize>().ok()) else {
        return Ok(0);
    };
    let dev = vars
        .first()
        .map(|(_, v)| v.device().clone())
        .unwrap_or(candle_core::Device::Cpu);
    let tensors = candle_core::safetensors::load_buffer(&bytes, &dev)?;
    for (name, var) in vars {
        let t = tensors
            .get(&format!("w.{name}"))
            .ok_or_else(|| candle_core::Error::Msg(format!("checkpoint lacks {name}")))?;
        var.set(t)?;
    }
    trainer.restore(&tensors, step)?;
    Ok(step)
}
