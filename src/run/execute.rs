//! Executing a run, as a pipeline: the task's rows → (pool methods) candidates and the chosen
//! adapters → one function per method, returning an [`Outcome`] → the test stage → the record.
//! Progress goes through one [`Recorder`]; the run's folder (status, curve, record) is kept by
//! [`super::lifecycle`].
//!
//! A [`Workbench`] keeps what several runs share — the loaded model, loaded pools and per-task
//! adapter scores — so a study or a queue of runs on one model loads and screens once.

mod choose;
mod evaluate;
mod methods;
pub use methods::LORA_DIR;
mod recorder;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

pub use super::task::{TaskData, load_task};
pub use super::workbench::Workbench;
pub use recorder::Recorder;

use super::event::RunEvent;
use super::record::*;
use super::spec::{MethodSpec, RunSpec};
use crate::adapter::AdapterError;
use crate::eval::{EvalError, bootstrap_mean};
use crate::model::{Llama, ModelError};
use crate::select::SelectError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("model {0}")]
    ModelNotFound(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Eval(EvalError),
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Spec(#[from] super::spec::SpecError),
    #[error("task: {0}")]
    Task(String),
    /// A problem of the study, export or engine around a run, already worded in full.
    #[error("{0}")]
    Other(String),
    #[error("pool {origin}: {reason}")]
    Pool { origin: String, reason: String },
    #[error("the run was cancelled")]
    Cancelled,
    #[error(transparent)]
    Lab(#[from] crate::lab::LabError),
    #[error(transparent)]
    Store(#[from] super::store::StoreError),
}

impl From<EvalError> for RunError {
    fn from(e: EvalError) -> Self {
        match e {
            EvalError::Cancelled => RunError::Cancelled,
            e => RunError::Eval(e),
        }
    }
}

impl From<candle_core::Error> for RunError {
    fn from(e: candle_core::Error) -> Self {
        RunError::Model(ModelError::Candle(e))
    }
}

pub type Result<T> = std::result::Result<T, RunError>;

/// Resolves `lab`, a folder, or a Hub id in the HF cache to a model folder.
pub fn resolve_model(base: &str) -> Result<PathBuf> {
    if base == "lab" {
        return Ok(crate::lab::dir()?.join("base"));
    }
    let p = Path::new(base);
    if p.join("config.json").is_file() {
        return Ok(p.to_path_buf());
    }
    let mut tried = vec![format!("{} (a folder with config.json)", p.display())];
    if crate::pool::hub::valid_repo_id(base) {
        // The cache the pool lists (HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, ~/.cache), read by its
        // one owner, so a model the pool finds is the model a run opens.
        let home = crate::pool::cache::HfHome::from_env();
        let snap = home.snapshot(base, "main");
        if snap.join("config.json").is_file() {
            return Ok(snap);
        }
        tried.push(format!(
            "{} (the HF cache)",
            home.hub()
                .join(crate::pool::cache::repo_folder(base))
                .display()
        ));
    }
    Err(RunError::ModelNotFound(format!(
        "{base:?} not found; looked in {}",
        tried.join(" and ")
    )))
}

/// What a method hands to the test stage.
pub struct Outcome {
    /// The model to evaluate, the merge or the best checkpoint folded in.
    pub model: Llama,
    pub val_loss: Option<f64>,
    pub best_step: Option<usize>,
    pub coefficients: Option<Coefficients>,
    /// Side branches the test stage runs the model with (Arrow's routers); `None` when the
    /// method's result is folded into `model`.
    pub branches: Option<crate::model::Branches>,
}

/// Seconds since the last lap.
struct Laps(Instant);

impl Laps {
    fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let s = now.duration_since(self.0).as_secs_f64();
        self.0 = now;
        s
    }
}

/// Runs `spec` on `bench`; the record is returned, not saved (its `id` is left for the run's
/// folder to give).
/// `artifacts` is the run's folder, where a new-LoRA run keeps the LoRA it trained.
pub fn execute(
    bench: &mut Workbench,
    spec: &RunSpec,
    on: &mut dyn FnMut(RunEvent),
    cancel: Option<&AtomicBool>,
    artifacts: Option<&std::path::Path>,
) -> Result<RunRecord> {
    let started = now_rfc3339();
    let t0 = Instant::now();
    let mut laps = Laps(t0);
    let mut timings = Timings::default();
    spec.validate()?;
    let task = load_task(spec)?;
    let train = bench.encode(&task.train, "train")?;
    let val = bench.encode(&task.validation, "validation")?;
    let rows = methods::Rows {
        train: &train,
        val: &val,
        combined: spec.task.combine,
    };
    let mut rec = Recorder::new(on, cancel);

    let (outcome, pool, chosen) = match &spec.method {
        MethodSpec::Base => {
            timings.load_s = laps.lap();
            let outcome = Outcome {
                model: bench.model.clone(),
                val_loss: None,
                best_step: None,
                coefficients: None,
                branches: None,
            };
            (outcome, None, Vec::new())
        }
        MethodSpec::NewLora(n) => {
            timings.load_s = laps.lap();
            let outcome = methods::new_lora(bench, spec, n, &rows, &mut rec, artifacts)?;
            timings.tune_s = laps.lap();
            (outcome, None, Vec::new())
        }
        method => {
            let found = choose::candidates(bench, spec, &task, &mut rec)?;
            timings.load_s = laps.lap();
            let chosen = choose::choose(bench, spec, &task, &found, &rows, &mut rec)?;
            timings.select_s = laps.lap();
            let refs: Vec<_> = chosen.adapters.iter().collect();
            let outcome = match method {
                MethodSpec::Merge(m) => methods::merge(bench, m, &refs, &rows, &mut rec)?,
                MethodSpec::Gradient(g) => {
                    methods::gradient(bench, spec, g, &refs, &rows, &mut rec)?
                }
                MethodSpec::Lorahub(h) => methods::lorahub(bench, spec, h, &refs, &rows, &mut rec)?,
                MethodSpec::Adamerging(a) => {
                    methods::gradient(bench, spec, &a.gradient(), &refs, &rows, &mut rec)?
                }
                MethodSpec::PiTuning(p) => {
                    methods::pi_tuning(bench, spec, p, &refs, &rows, &mut rec, artifacts)?
                }
                MethodSpec::Arrow(a) => methods::arrow(bench, spec, a, &refs, &rows, &mut rec)?,
                MethodSpec::Base | MethodSpec::NewLora(_) => unreachable!("matched above"),
            };
            timings.tune_s = laps.lap();
            let mut info = found.info;
            info.ties = chosen.ties;
            (outcome, Some(info), chosen.info)
        }
    };

    let (examples, dropped) = evaluate::test_outcomes(
        &outcome.model,
        outcome.branches.as_ref(),
        &bench.codec,
        &task,
        spec,
        &mut rec,
    )?;
    timings.eval_s = laps.lap();
    timings.total_s = t0.elapsed().as_secs_f64();
    let (curve, coefficient_curve) = rec.into_curves();
    let em: Vec<f64> = examples
        .iter()
        .map(|e| if e.correct { 1.0 } else { 0.0 })
        .collect();
    let loss: Vec<f64> = examples.iter().map(|e| e.loss).collect();
    let seed = spec.seed ^ 0xb007;
    Ok(RunRecord {
        id: String::new(),
        label: spec.label(),
        status: RunStatus::Finished,
        started,
        versions: Versions::default(),
        spec: spec.clone(),
        model: ModelInfo {
            path: bench.model_path.display().to_string(),
            identity: bench.identity.clone(),
            architecture: Some(bench.model.config().architecture().to_string()),
            device: bench.device_name.clone(),
            dtype: format!("{:?}", bench.model.dtype()).to_lowercase(),
        },
        task: TaskInfo {
            name: task.name.clone(),
            train: task.train.len(),
            validation: task.validation.len(),
            test: task.test.len(),
            matching: task.scoring.normalize.name().into(),
            scoring: Some(task.scoring),
            dropped,
        },
        pool,
        chosen,
        curve,
        coefficient_curve,
        coefficients: outcome.coefficients,
        best_step: outcome.best_step,
        metrics: Metrics {
            exact_match: bootstrap_mean(&em, spec.eval.bootstrap, seed),
            loss: bootstrap_mean(&loss, spec.eval.bootstrap, seed),
            val_loss: outcome.val_loss,
        },
        timings,
        examples,
        host: crate::process::host_name(),
        slurm: crate::slurm::SlurmJob::from_env(),
    })
}
