//! One function per method: each takes what the pipeline prepared and returns an [`Outcome`]
//! — the model to evaluate, its validation loss, the best step and the coefficients.

use super::recorder::Recorder;
use super::{Outcome, Result};
use crate::adapter::Adapter;
use crate::eval::mean_token_loss;
use crate::merge::{MergeMethod, Merged, Update, merge_adapters};
use crate::model::Module;
use crate::model::template::EncodedExample;
use crate::run::record::Coefficients;
use crate::run::spec::{NewLoraSpec, RunSpec};
use crate::run::workbench::Workbench;
use crate::tune::arrow::{self, ArrowBranches};
use crate::tune::coef::{CoefficientBranches, GradientSpec, Granularity, tune_coefficients};
use crate::tune::lorahub::{LorahubSpec, StackedPool, tune_lorahub};
use crate::tune::pituning::{Fresh, PiBranches, tune_pi};
use crate::tune::settings::Objective;
use crate::tune::settings::{ArrowSpec, PiTuningSpec};
use crate::tune::{LoraTrainSpec, train_lora};

/// The rows a method trains and validates on.
pub struct Rows<'a> {
    pub train: &'a [EncodedExample],
    pub val: &'a [EncodedExample],
    /// Train and validation are one merged set (`task.combine`).
    pub combined: bool,
}

fn val_loss(bench: &Workbench, model: &crate::model::Llama, rows: &Rows<'_>) -> Result<f64> {
    let v = mean_token_loss(model, bench.codec.pad_id(), rows.val, None, 32)?;
    Ok(crate::eval::finite(v, || "the validation loss".into())?)
}

/// A model with fixed weights (nothing tuned), its validation loss measured.
fn fixed(bench: &Workbench, model: crate::model::Llama, rows: &Rows<'_>) -> Result<Outcome> {
    Ok(Outcome {
        val_loss: Some(val_loss(bench, &model, rows)?),
        model,
        best_step: None,
        coefficients: None,
        branches: None,
    })
}

/// Where in its run's folder a new-LoRA run keeps the LoRA it trained (a PEFT folder), which
/// `runs export` copies out.
pub const LORA_DIR: &str = "lora";

/// Writes the trained LoRA (the kept checkpoint) as a PEFT folder `dir/lora`, whole or not at
/// all: it is written beside and renamed into place.
fn save_lora(
    bench: &Workbench,
    pairs: &crate::adapter::write::PairMap,
    (rank, alpha): (usize, f64),
    dir: &std::path::Path,
) -> Result<()> {
    let partial = dir.join(format!("{LORA_DIR}.partial"));
    let done = dir.join(LORA_DIR);
    let _ = std::fs::remove_dir_all(&partial);
    let base = bench
        .identity
        .clone()
        .unwrap_or_else(|| bench.model_path.display().to_string());
    crate::adapter::write::write_peft(
        &partial,
        pairs,
        rank,
        alpha,
        &base,
        candle_core::DType::F32,
    )?;
    let _ = std::fs::remove_dir_all(&done);
    std::fs::rename(&partial, &done).map_err(|e| {
        super::RunError::Other(format!(
            "cannot keep the new LoRA in {}: {e}",
            done.display()
        ))
    })?;
    Ok(())
}

/// A fresh LoRA trained on the train rows (the new-LoRA baseline).
pub fn new_lora(
    bench: &Workbench,
    spec: &RunSpec,
    n: &NewLoraSpec,
    rows: &Rows<'_>,
    rec: &mut Recorder<'_>,
    artifacts: Option<&std::path::Path>,
) -> Result<Outcome> {
    let lspec = LoraTrainSpec {
        rank: n.rank,
        alpha: n.alpha,
        modules: n
            .modules
            .iter()
            .filter_map(|m| Module::from_peft_name(m))
            .collect(),
        lr: n.lr,
        steps: n.steps,
        batch_size: n.batch_size,
        warmup_frac: n.warmup_frac,
        final_lr_frac: n.final_lr_frac,
        best_every: n.checkpoint_every,
        weight_decay: 0.0,
        seed: spec.seed,
        early_stop: None,
        check_every: 0,
    };
    rec.stage("training a new LoRA", n.steps);
    let cancel = rec.cancel();
    let trained = train_lora(
        &bench.model,
        bench.codec.pad_id(),
        rows.train,
        rows.val,
        &[],
        &lspec,
        n.dropout,
        &mut |step, loss, val| rec.point(step, loss, val),
        cancel,
    )?;
    rec.check()?;
    if let Some(dir) = artifacts {
        save_lora(bench, &trained.pairs, (trained.rank, trained.alpha), dir)?;
        rec.log(format!(
            "saved the new LoRA in {}",
            dir.join(LORA_DIR).display()
        ));
    }
    let scale = n.alpha / n.rank as f64;
    let mut merged = Merged::default();
    for (key, (a, b)) in &trained.pairs {
        merged.updates.insert(
            *key,
            Update::LowRank {
                a: a.clone(),
                b: (b * scale)?,
            },
        );
    }
    let model = merged.apply(&bench.model)?;
    match trained.best {
        Some((step, v)) => {
            rec.log(format!(
                "kept the checkpoint of step {step} (validation loss {v:.4})"
            ));
            Ok(Outcome {
                model,
                val_loss: Some(v),
                best_step: Some(step),
                coefficients: None,
                branches: None,
            })
        }
        None => fixed(bench, model, rows),
    }
}

/// A non-adaptive merge of the chosen adapters, each at weight 1.
pub fn merge(
    bench: &Workbench,
    m: &MergeMethod,
    chosen: &[&Adapter],
    rows: &Rows<'_>,
    rec: &mut Recorder<'_>,
) -> Result<Outcome> {
    if let Some(ws) = m.listed_weights()
        && ws.len() != chosen.len()
    {
        return Err(super::RunError::Other(format!(
            "method.weights lists {} weights but the selection chose {} adapters",
            ws.len(),
            chosen.len()
        )));
    }
    rec.stage(format!("merging ({})", m.name()), 1);
    let sources: Vec<(&Adapter, f64)> = chosen.iter().map(|a| (*a, 1.0)).collect();
    let merged = merge_adapters(&sources, m, bench.model.config())?;
    let model = merged.apply(&bench.model)?;
    fixed(bench, model, rows)
}

/// Gradient-tuned coefficients over the chosen adapters; the best checkpoint by validation loss.
pub fn gradient(
    bench: &Workbench,
    spec: &RunSpec,
    g: &GradientSpec,
    chosen: &[&Adapter],
    rows: &Rows<'_>,
    rec: &mut Recorder<'_>,
) -> Result<Outcome> {
    let layers = bench.model.config().num_hidden_layers;
    let mut cb = CoefficientBranches::new(
        chosen,
        layers,
        g.granularity,
        g.activation,
        bench.model.dtype(),
        bench.model.device(),
    )?;
    cb.target = chosen.iter().position(|a| is_oracle(a));
    let groups = group_names(&cb, layers);
    let columns = column_names(chosen, g.granularity == Granularity::Rank);
    rec.emit(crate::run::event::RunEvent::Layout {
        groups: groups.clone(),
        columns: columns.clone(),
    });
    rec.stage("tuning coefficients", g.steps);
    let cancel = rec.cancel();
    let tuned = tune_coefficients(
        &bench.model,
        bench.codec.pad_id(),
        &cb,
        chosen.len(),
        rows.train,
        rows.val,
        g,
        spec.seed,
        &mut |r| report_step(rec, r),
        cancel,
    )?;
    rec.check()?;
    Ok(Outcome {
        model: bench.model.fold(&cb.branches(&tuned.raw)?)?,
        branches: None,
        val_loss: Some(tuned.best_val_loss),
        best_step: Some(tuned.best_step),
        coefficients: Some(Coefficients {
            granularity: format!("{:?}", g.granularity).to_lowercase(),
            groups,
            columns,
            values: tuned.activated.clone(),
        }),
    })
}

/// LoraHub's gradient-free search over one coefficient per adapter (A and B summed).
pub fn lorahub(
    bench: &Workbench,
    spec: &RunSpec,
    h: &LorahubSpec,
    chosen: &[&Adapter],
    rows: &Rows<'_>,
    rec: &mut Recorder<'_>,
) -> Result<Outcome> {
    let model = &bench.model;
    let stacked = StackedPool::new(chosen, model.config(), model.dtype(), model.device())?;
    let gens = h.budget.saturating_sub(1) / h.population.max(2);
    rec.stage("LoraHub search", gens);
    let cancel = rec.cancel();
    let both: Vec<EncodedExample>;
    let objective = match h.objective {
        Objective::Train => rows.train,
        Objective::TrainValidation if rows.combined => rows.train,
        Objective::TrainValidation => {
            both = rows.train.iter().chain(rows.val).cloned().collect();
            &both
        }
    };
    let result = tune_lorahub(
        model,
        bench.codec.pad_id(),
        &stacked,
        objective,
        h,
        spec.seed,
        &mut |g| rec.point(g.generation, g.best_loss, None),
        cancel,
    )?;
    rec.check()?;
    let folded = model.fold(&stacked.single(&result.coefficients)?)?;
    Ok(Outcome {
        val_loss: Some(val_loss(bench, &folded, rows)?),
        model: folded,
        best_step: None,
        coefficients: Some(Coefficients {
            granularity: "lora".into(),
            groups: vec!["all".into()],
            columns: column_names(chosen, false),
            values: vec![result.coefficients.iter().map(|&c| c as f32).collect()],
        }),
        branches: None,
    })
}

/// Whether a chosen adapter is the task's own (the oracle control adds it under this name).
fn is_oracle(a: &Adapter) -> bool {
    a.name.starts_with("oracle:")
}

/// Arrow over the chosen adapters: zero-step (the prototypes as computed) or trained. The test
/// stage routes token by token, so nothing is folded; the coefficient view shows each adapter's
/// mean routing weight per module over validation tokens.
pub fn arrow(
    bench: &Workbench,
    spec: &RunSpec,
    a: &ArrowSpec,
    chosen: &[&Adapter],
    rows: &Rows<'_>,
    rec: &mut Recorder<'_>,
) -> Result<Outcome> {
    let model = &bench.model;
    let layers = model.config().num_hidden_layers;
    let ab = ArrowBranches::new(
        chosen,
        layers,
        a.top_k,
        a.temperature,
        model.dtype(),
        model.device(),
    )?;
    let groups = module_groups(layers);
    let columns = column_names(chosen, false);
    rec.emit(crate::run::event::RunEvent::Layout {
        groups: groups.clone(),
        columns: columns.clone(),
    });
    let start = ab.initial_prototypes(chosen)?;
    let profile_rows = &rows.val[..rows.val.len().min(arrow::PROFILE_EXAMPLES)];
    let (prototypes, profile, val, best_step) = if a.train {
        rec.stage("training Arrow's prototypes", a.steps);
        let cancel = rec.cancel();
        let t = arrow::tune_prototypes(
            model,
            bench.codec.pad_id(),
            &ab,
            &start,
            rows.train,
            rows.val,
            a,
            spec.seed,
            &mut |r| report_step(rec, r),
            cancel,
        )?;
        rec.check()?;
        (t.prototypes, t.profile, t.best_val_loss, Some(t.best_step))
    } else {
        rec.stage("routing (zero-step Arrow)", 1);
        let br = ab.branches(&start);
        let v = mean_token_loss(model, bench.codec.pad_id(), rows.val, Some(&br), 32)?;
        let v = crate::eval::finite(v, || "the validation loss".into())?;
        let profile = ab.profile(model, &start, profile_rows)?;
        rec.coefficients(0, &profile);
        (start, profile, v, None)
    };
    Ok(Outcome {
        model: model.clone(),
        val_loss: Some(val),
        best_step,
        coefficients: Some(Coefficients {
            granularity: "routing".into(),
            groups,
            columns,
            values: profile,
        }),
        branches: Some(ab.branches(&prototypes)),
    })
}

/// π-Tuning: softmax coefficients trained with every chosen adapter's A and B and a fresh LoRA
/// slot; the tuned LoRA (rank-stacked, gates folded into B) is kept in the run's folder.
pub fn pi_tuning(
    bench: &Workbench,
    spec: &RunSpec,
    p: &PiTuningSpec,
    chosen: &[&Adapter],
    rows: &Rows<'_>,
    rec: &mut Recorder<'_>,
    artifacts: Option<&std::path::Path>,
) -> Result<Outcome> {
    let model = &bench.model;
    let cfg = model.config().clone();
    let layers = cfg.num_hidden_layers;
    let fresh = p.fresh.then(|| Fresh {
        replaces: chosen.iter().position(|a| is_oracle(a)),
        rank: p.fresh_rank,
        alpha: p.fresh_alpha,
    });
    if let Some(Fresh {
        replaces: Some(i), ..
    }) = &fresh
    {
        rec.log(format!(
            "a fresh LoRA slot takes the place of the task's own adapter {}",
            chosen[*i].name
        ));
    }
    let pi = PiBranches::new(
        chosen,
        layers,
        fresh,
        |m| cfg.module_shape(m),
        spec.seed,
        model.dtype(),
        model.device(),
    )?;
    let groups = module_groups(layers);
    rec.emit(crate::run::event::RunEvent::Layout {
        groups: groups.clone(),
        columns: pi.columns.clone(),
    });
    rec.stage("π-Tuning (coefficients, A and B)", p.steps);
    let cancel = rec.cancel();
    let tuned = tune_pi(
        model,
        bench.codec.pad_id(),
        &pi,
        rows.train,
        rows.val,
        p,
        spec.seed,
        &mut |r| report_step(rec, r),
        cancel,
    )?;
    rec.check()?;
    let mut merged = Merged::default();
    for (key, (a, b)) in pi.updates()? {
        merged.updates.insert(
            key,
            Update::LowRank {
                a: a.to_dtype(candle_core::DType::F32)?
                    .to_device(&candle_core::Device::Cpu)?,
                b: b.to_dtype(candle_core::DType::F32)?
                    .to_device(&candle_core::Device::Cpu)?,
            },
        );
    }
    if let Some(dir) = artifacts {
        let (pairs, r, _) = merged.to_padded_lora(crate::run::setting::MAX_RANK)?;
        save_lora(bench, &pairs, (r, r as f64), dir)?;
        rec.log(format!(
            "saved the tuned LoRA in {}",
            dir.join(LORA_DIR).display()
        ));
    }
    rec.log(format!(
        "kept the checkpoint of step {} (validation loss {:.4})",
        tuned.best_step, tuned.best_val_loss
    ));
    Ok(Outcome {
        model: bench.model.fold(&pi.branches()?)?,
        val_loss: Some(tuned.best_val_loss),
        best_step: Some(tuned.best_step),
        coefficients: Some(Coefficients {
            granularity: "module".into(),
            groups,
            columns: pi.columns.clone(),
            values: tuned.weights,
        }),
        branches: None,
    })
}

/// One coefficient-view group per (layer, module), in layer-major order.
fn module_groups(layers: usize) -> Vec<String> {
    (0..layers)
        .flat_map(|l| Module::ALL.map(|m| format!("layer {l} {}", m.peft_name())))
        .collect()
}

/// A training step as the run's curve and coefficient view show it.
fn report_step(rec: &mut Recorder<'_>, r: &crate::tune::coef::StepReport) {
    rec.point(r.step, r.train_loss, r.val_loss);
    if let Some(c) = &r.coefficients {
        rec.coefficients(r.step, c);
    }
}

fn group_names(cb: &CoefficientBranches, layers: usize) -> Vec<String> {
    use crate::tune::coef::Granularity as G;
    match cb.layout.granularity {
        G::Lora => vec!["all".into()],
        G::Layer => (0..layers).map(|l| format!("layer {l}")).collect(),
        G::Sublayer => (0..layers)
            .flat_map(|l| [format!("layer {l} attn"), format!("layer {l} mlp")])
            .collect(),
        G::Module | G::Rank => module_groups(layers),
    }
}

fn column_names(adapters: &[&Adapter], rank_wise: bool) -> Vec<String> {
    adapters
        .iter()
        .flat_map(|a| {
            if rank_wise {
                (0..a.rank())
                    .map(|j| format!("{}#{j}", a.name))
                    .collect::<Vec<_>>()
            } else {
                vec![a.name.clone()]
            }
        })
        .collect()
}
