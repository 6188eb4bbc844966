//! Executing a run: resolve the model, task and pool, select, merge or tune, evaluate, record.
//!
//! A [`Workbench`] keeps what several runs share — the loaded model, loaded pools and per-task
//! adapter scores — so a study or a queue of runs on one model loads and screens once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Device;

use super::event::RunEvent;
use super::record::*;
use super::spec::{MethodSpec, RunSpec};
use crate::adapter::random::{RandomInit, randomize};
use crate::adapter::{Adapter, AdapterError};
use crate::eval::{self, EvalError, Example, bootstrap_mean};
use crate::merge::{Merged, Update, merge_adapters};
use crate::model::template::EncodedExample;
use crate::model::weights::{model_identity, read_config};
use crate::model::{Llama, ModelError, Module, TextCodec, generate};
use crate::pool::{self, Filter, PoolSource};
use crate::select::{self, Score, SelectError, Selection};
use crate::tune::coef::{CoefficientBranches, tune_coefficients};
use crate::tune::lorahub::{StackedPool, tune_lorahub};
use crate::tune::{LoraTrainSpec, train_lora};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("model {0}")]
    ModelNotFound(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Eval(#[from] EvalError),
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

/// A task's data, encoded.
pub struct TaskData {
    pub name: String,
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub test: Vec<Example>,
    pub oracle: Option<PathBuf>,
    /// Lab tasks compare answers exactly; others after normalising whitespace and case.
    pub exact: bool,
}

pub fn load_task(spec: &RunSpec) -> Result<TaskData> {
    let t = &spec.task;
    let (name, dir_files, oracle, exact) = match &t.lab {
        Some(lab) => {
            if !pool::is_plain_name(lab) {
                return Err(RunError::Task(format!("{lab:?} is not a lab task name")));
            }
            let tasks = crate::lab::dir()?.join("tasks");
            let dir = tasks.join(lab);
            if !dir.is_dir() {
                let known = std::fs::read_dir(&tasks)
                    .map(|rd| {
                        let mut v: Vec<String> = rd
                            .filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect();
                        v.sort();
                        v.join(", ")
                    })
                    .unwrap_or_default();
                return Err(RunError::Task(format!(
                    "the lab has no held-out task {lab:?} (it has {known})"
                )));
            }
            (
                lab.clone(),
                [
                    dir.join("train.jsonl"),
                    dir.join("validation.jsonl"),
                    dir.join("test.jsonl"),
                ],
                pool::lab_oracle(lab),
                true,
            )
        }
        None => {
            let need = |p: &Option<PathBuf>| p.clone().expect("validated spec");
            (
                t.display_name(),
                [need(&t.train), need(&t.validation), need(&t.test)],
                t.oracle_adapter.clone(),
                false,
            )
        }
    };
    let mut train = eval::read_jsonl(&dir_files[0])?;
    if let Some(n) = t.train_examples {
        train.truncate(n);
    }
    Ok(TaskData {
        name,
        train,
        validation: eval::read_jsonl(&dir_files[1])?,
        test: eval::read_jsonl(&dir_files[2])?,
        oracle,
        exact,
    })
}

/// What several runs on one model share.
pub struct Workbench {
    pub model_path: PathBuf,
    pub model: Llama,
    pub codec: TextCodec,
    pub identity: Option<String>,
    device_name: String,
    pools: HashMap<(String, String), std::sync::Arc<pool::Pool>>,
    screen_cache: select::screen::ScreenCache,
}

impl Workbench {
    pub fn open(spec: &RunSpec) -> Result<Self> {
        let path = resolve_model(&spec.model.base)?;
        let device = spec.device_pref()?.open()?;
        let dtype = spec.dtype_pref()?.resolve(&device);
        let cfg = read_config(&path)?;
        let identity = model_identity(&path, &cfg);
        let codec = TextCodec::load(&path, spec.model.template.0, &cfg)?;
        let model = Llama::load(&path, dtype, &device)?;
        Ok(Self {
            device_name: match &device {
                Device::Cpu => "cpu".into(),
                d => format!("{d:?}"),
            },
            model_path: path,
            model,
            codec,
            identity,
            pools: HashMap::new(),
            screen_cache: select::screen::open_cache(),
        })
    }

    /// Whether `spec` runs on this workbench's model as loaded.
    pub fn serves(&self, spec: &RunSpec) -> bool {
        resolve_model(&spec.model.base).is_ok_and(|p| p == self.model_path)
            && spec.model.template.0 == self.codec_template()
    }

    fn codec_template(&self) -> crate::model::Template {
        self.codec.template()
    }

    pub fn pool(
        &mut self,
        source: &PoolSource,
        filter: &str,
        on: &mut dyn FnMut(RunEvent),
    ) -> Result<std::sync::Arc<pool::Pool>> {
        let key = (source.to_string(), filter.to_string());
        if let Some(p) = self.pools.get(&key) {
            return Ok(p.clone());
        }
        let f: Filter = filter
            .parse()
            .map_err(|e: pool::FilterError| RunError::Pool {
                origin: source.to_string(),
                reason: e.to_string(),
            })?;
        let candidates = pool::list(source).map_err(|e| RunError::Pool {
            origin: source.to_string(),
            reason: e.to_string(),
        })?;
        on(RunEvent::Stage {
            name: "loading pool".into(),
            total: candidates.len(),
        });
        let loaded = pool::load(
            &candidates,
            &f,
            self.model.config(),
            self.identity.as_deref(),
            &mut |i, _| on(RunEvent::Advance(i)),
        );
        let loaded = std::sync::Arc::new(loaded);
        self.pools.insert(key, loaded.clone());
        Ok(loaded)
    }

    /// One adapter alone on the spec's task test split: (exact match, mean answer loss).
    pub fn evaluate_adapter(
        &mut self,
        spec: &RunSpec,
        adapter: &str,
    ) -> Result<(String, f64, f64)> {
        let task = load_task(spec)?;
        let cfg = self.model.config().clone();
        let dir = if Path::new(adapter).join("adapter_config.json").is_file() {
            PathBuf::from(adapter)
        } else {
            pool::list(&spec.pool.source)
                .map_err(|e| RunError::Pool {
                    origin: spec.pool.source.to_string(),
                    reason: e.to_string(),
                })?
                .into_iter()
                .find(|c| c.name == adapter)
                .map(|c| c.dir)
                .ok_or_else(|| {
                    RunError::Task(format!(
                        "no adapter {adapter:?} in pool {}",
                        spec.pool.source
                    ))
                })?
        };
        let ad = Adapter::load(&dir, Some((&cfg, self.identity.as_deref())))?;
        let br = crate::adapter::branches_for(
            &[(&ad, 1.0)],
            &cfg,
            self.model.dtype(),
            self.model.device(),
        )?;
        let folded = self.model.fold(&br)?;
        let test = self.encode(&task.test)?;
        let (mut hits, mut loss) = (0usize, 0.0);
        for chunk in test.chunks(32) {
            let (exact, l) = eval::answer_scores(&folded, self.codec.pad_id(), chunk, None)?;
            hits += exact.iter().filter(|&&e| e).count();
            loss += l.iter().sum::<f64>();
        }
        let n = test.len().max(1) as f64;
        Ok((task.name, hits as f64 / n, loss / n))
    }

    fn encode(&self, rows: &[Example]) -> Result<Vec<EncodedExample>> {
        Ok(rows
            .iter()
            .map(|e| self.codec.encode_example(&e.prompt, &e.answer))
            .collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// Scores of `adapters` on a task: screened many adapters per forward, kept in the screening
    /// cache on disk by (adapter revision, task data hash).
    fn scores(
        &mut self,
        adapters: &[&Adapter],
        examples: &[EncodedExample],
        on: &mut dyn FnMut(RunEvent),
    ) -> Result<Vec<Score>> {
        let identity = self
            .identity
            .clone()
            .unwrap_or_else(|| self.model_path.display().to_string());
        let task = select::screen::task_hash(&identity, examples);
        let mut cache = std::mem::take(&mut self.screen_cache);
        let result = select::screen::screen(
            &self.model,
            self.codec.pad_id(),
            adapters,
            examples,
            &task,
            &mut cache,
            select::screen::Batching::Auto,
            &mut |p| match p {
                select::screen::ScreenProgress::Start { total, cached } => {
                    if cached > 0 {
                        on(RunEvent::Log(format!(
                            "{cached} of {total} adapter scores from the screening cache"
                        )));
                    }
                    on(RunEvent::Stage {
                        name: "scoring adapters".into(),
                        total,
                    })
                }
                select::screen::ScreenProgress::Scored { done, .. } => on(RunEvent::Advance(done)),
                select::screen::ScreenProgress::CacheNotSaved(e) => on(RunEvent::Log(format!(
                    "the screening cache was not saved (scores will be computed again next time): {e}"
                ))),
            },
        );
        self.screen_cache = cache;
        Ok(result?)
    }
}

/// Normalises whitespace (and case, unless `exact`) before comparing.
pub fn answers_match(prediction: &str, answer: &str, exact: bool) -> bool {
    if exact {
        return prediction.trim() == answer.trim();
    }
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    norm(prediction) == norm(answer)
}

fn check_cancel(cancel: Option<&AtomicBool>) -> Result<()> {
    if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
        Err(RunError::Cancelled)
    } else {
        Ok(())
    }
}

/// Runs `spec` on `bench`; the record is returned, not saved.
pub fn execute(
    bench: &mut Workbench,
    spec: &RunSpec,
    on: &mut dyn FnMut(RunEvent),
    cancel: Option<&AtomicBool>,
) -> Result<RunRecord> {
    let started = now_rfc3339();
    let t0 = Instant::now();
    let mut timings = Timings::default();
    spec.validate()?;
    let task = load_task(spec)?;
    let train = bench.encode(&task.train)?;
    let val = bench.encode(&task.validation)?;
    let pad = bench.codec.pad_id();
    let cfg = bench.model.config().clone();
    let dtype = bench.model.dtype();
    let device = bench.model.device().clone();

    let mut pool_info = None;
    let mut chosen_info = Vec::new();
    let mut curve = Vec::new();
    let mut coefficient_curve = Vec::new();
    let mut coefficients = None;
    let mut best_step = None;
    let mut val_loss = None;

    let tuned_model: Llama = match &spec.method {
        MethodSpec::Base => {
            timings.load_s = t0.elapsed().as_secs_f64();
            bench.model.clone()
        }
        MethodSpec::NewLora(n) => {
            timings.load_s = t0.elapsed().as_secs_f64();
            let t = Instant::now();
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
                weight_decay: 0.0,
                seed: spec.seed,
                early_stop: None,
                check_every: 0,
            };
            on(RunEvent::Stage {
                name: "training a new LoRA".into(),
                total: n.steps,
            });
            let trained = train_lora(
                &bench.model,
                pad,
                &train,
                &[],
                &lspec,
                n.dropout,
                &mut |step, loss| {
                    on(RunEvent::Advance(step));
                    let p = CurvePoint {
                        step,
                        train_loss: loss,
                        val_loss: None,
                    };
                    on(RunEvent::Curve(p.clone()));
                    curve.push(p);
                },
                cancel,
            )?;
            check_cancel(cancel)?;
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
            let m = merged.apply(&bench.model)?;
            let v = crate::tune::coef::mean_token_loss(&m, pad, &val, None, 32)?;
            val_loss = Some(v);
            timings.tune_s = t.elapsed().as_secs_f64();
            m
        }
        method => {
            // Pool methods: load the pool, add the oracle, select, randomise, merge or tune.
            let pool = bench.pool(&spec.pool.source, &spec.pool.filter, on)?;
            check_cancel(cancel)?;
            pool_info = Some(PoolInfo {
                source: spec.pool.source.to_string(),
                filter: spec.pool.filter.clone(),
                usable: pool.adapters.len(),
                rejected: pool
                    .rejected
                    .iter()
                    .map(|(name, reason)| Rejected {
                        name: name.clone(),
                        reason: reason.clone(),
                    })
                    .collect(),
            });
            let oracle = if spec.controls.oracle {
                let dir = task.oracle.clone().ok_or_else(|| {
                    RunError::Task(format!(
                        "controls.oracle is set but task {} has no adapter of its own (set task.oracle_adapter)",
                        task.name
                    ))
                })?;
                let mut ad = Adapter::load(&dir, Some((&cfg, bench.identity.as_deref())))?;
                ad.name = format!("oracle:{}", task.name);
                Some(ad)
            } else {
                None
            };
            let mut candidates: Vec<&Adapter> = pool.adapters.iter().collect();
            if let Some(o) = &oracle {
                candidates.push(o);
            }
            if candidates.is_empty() {
                return Err(RunError::Pool {
                    origin: spec.pool.source.to_string(),
                    reason: "no usable adapter passes the filter".into(),
                });
            }
            timings.load_s = t0.elapsed().as_secs_f64();
            let t = Instant::now();
            let scores = if spec.selection.needs_scores() {
                let mut both = train.clone();
                both.extend(val.iter().cloned());
                Some(bench.scores(&candidates, &both, on)?)
            } else {
                None
            };
            check_cancel(cancel)?;
            let reference = match &spec.selection {
                Selection::Similar { to, .. } => match candidates.iter().find(|a| &a.name == to) {
                    Some(a) => Some((*a).clone()),
                    None if Path::new(to).join("adapter_config.json").is_file() => {
                        Some(Adapter::load(Path::new(to), Some((&cfg, None)))?)
                    }
                    None => return Err(SelectError::UnknownReference(to.clone()).into()),
                },
                _ => None,
            };
            let mut picked = select::select(
                &spec.selection,
                &candidates,
                scores.as_deref(),
                reference.as_ref(),
                spec.seed,
            )?;
            if oracle.is_some() {
                let oi = candidates.len() - 1;
                if !picked.contains(&oi) {
                    match &spec.selection {
                        Selection::Manual { .. } | Selection::All => picked.push(oi),
                        _ => {
                            picked.pop();
                            picked.push(oi);
                        }
                    }
                }
            }
            // Random-init replaces every chosen adapter but the oracle.
            let real: Vec<&Adapter> = picked.iter().map(|&i| candidates[i]).collect();
            let is_oracle = |a: &Adapter| a.name.starts_with("oracle:");
            let to_randomize: Vec<&Adapter> =
                real.iter().copied().filter(|a| !is_oracle(a)).collect();
            let randomized = randomize(&to_randomize, spec.controls.random_init, spec.seed)?;
            let mut it = randomized.into_iter();
            let chosen: Vec<Adapter> = real
                .iter()
                .map(|a| {
                    if is_oracle(a) {
                        (*a).clone()
                    } else {
                        it.next().expect("one per adapter")
                    }
                })
                .collect();
            for (&i, a) in picked.iter().zip(&real) {
                chosen_info.push(ChosenAdapter {
                    name: a.name.clone(),
                    rank: a.rank(),
                    exact_match: scores.as_ref().map(|s| s[i].exact_match),
                    loss: scores.as_ref().map(|s| s[i].loss),
                    oracle: is_oracle(a),
                    random: spec.controls.random_init != RandomInit::Off && !is_oracle(a),
                });
            }
            on(RunEvent::Log(format!(
                "selected {} adapters ({}){}",
                chosen.len(),
                spec.selection.name(),
                if spec.controls.random_init != RandomInit::Off {
                    ", random-init"
                } else {
                    ""
                }
            )));
            timings.select_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let refs: Vec<&Adapter> = chosen.iter().collect();
            let out = match method {
                MethodSpec::Merge(m) => {
                    on(RunEvent::Stage {
                        name: format!("merging ({})", m.name()),
                        total: 1,
                    });
                    let sources: Vec<(&Adapter, f64)> = refs.iter().map(|a| (*a, 1.0)).collect();
                    let merged = merge_adapters(&sources, m, &cfg)?;
                    let model = merged.apply(&bench.model)?;
                    val_loss = Some(crate::tune::coef::mean_token_loss(
                        &model, pad, &val, None, 32,
                    )?);
                    model
                }
                MethodSpec::Gradient(g) => {
                    let cb = CoefficientBranches::new(
                        &refs,
                        cfg.num_hidden_layers,
                        g.granularity,
                        g.activation,
                        dtype,
                        &device,
                    )?;
                    on(RunEvent::Layout {
                        groups: group_names(&cb, cfg.num_hidden_layers),
                        columns: column_names(
                            &refs,
                            g.granularity == crate::tune::coef::Granularity::Rank,
                        ),
                    });
                    on(RunEvent::Stage {
                        name: "tuning coefficients".into(),
                        total: g.steps,
                    });
                    let tuned = tune_coefficients(
                        &bench.model,
                        pad,
                        &cb,
                        refs.len(),
                        &train,
                        &val,
                        g,
                        spec.seed,
                        &mut |r| {
                            on(RunEvent::Advance(r.step));
                            let p = CurvePoint {
                                step: r.step,
                                train_loss: r.train_loss,
                                val_loss: r.val_loss,
                            };
                            on(RunEvent::Curve(p.clone()));
                            curve.push(p);
                            if let Some(c) = &r.coefficients {
                                on(RunEvent::Coefficients(r.step, c.clone()));
                                coefficient_curve.push(CoefficientSnapshot {
                                    step: r.step,
                                    values: c.clone(),
                                });
                            }
                        },
                        cancel,
                    )?;
                    check_cancel(cancel)?;
                    best_step = Some(tuned.best_step);
                    val_loss = Some(tuned.best_val_loss);
                    coefficients = Some(Coefficients {
                        granularity: format!("{:?}", g.granularity).to_lowercase(),
                        groups: group_names(&cb, cfg.num_hidden_layers),
                        columns: column_names(
                            &refs,
                            g.granularity == crate::tune::coef::Granularity::Rank,
                        ),
                        values: tuned.activated.clone(),
                    });
                    bench.model.fold(&cb.branches(&tuned.raw)?)?
                }
                MethodSpec::Lorahub(h) => {
                    let stacked = StackedPool::new(&refs, &cfg, dtype, &device)?;
                    let gens = h.budget.saturating_sub(1) / h.population.max(2);
                    on(RunEvent::Stage {
                        name: "LoraHub search".into(),
                        total: gens,
                    });
                    let result = tune_lorahub(
                        &bench.model,
                        pad,
                        &stacked,
                        &train,
                        h,
                        spec.seed,
                        &mut |g| {
                            on(RunEvent::Advance(g.generation));
                            let p = CurvePoint {
                                step: g.generation,
                                train_loss: g.best_loss,
                                val_loss: None,
                            };
                            on(RunEvent::Curve(p.clone()));
                            curve.push(p);
                        },
                        cancel,
                    )?;
                    check_cancel(cancel)?;
                    coefficients = Some(Coefficients {
                        granularity: "lora".into(),
                        groups: vec!["all".into()],
                        columns: column_names(&refs, false),
                        values: vec![result.coefficients.iter().map(|&c| c as f32).collect()],
                    });
                    let model = bench.model.fold(&stacked.single(&result.coefficients)?)?;
                    val_loss = Some(crate::tune::coef::mean_token_loss(
                        &model, pad, &val, None, 32,
                    )?);
                    model
                }
                MethodSpec::Base | MethodSpec::NewLora(_) => unreachable!("handled above"),
            };
            timings.tune_s = t.elapsed().as_secs_f64();
            out
        }
    };

    let t = Instant::now();
    let examples = evaluate_test(&tuned_model, &bench.codec, &task, spec, on, cancel)?;
    let em: Vec<f64> = examples
        .iter()
        .map(|e| if e.correct { 1.0 } else { 0.0 })
        .collect();
    let loss: Vec<f64> = examples.iter().map(|e| e.loss).collect();
    timings.eval_s = t.elapsed().as_secs_f64();
    timings.total_s = t0.elapsed().as_secs_f64();
    let seed = spec.seed ^ 0xb007;
    let label = spec.label();
    Ok(RunRecord {
        id: new_run_id(&label),
        label,
        status: RunStatus::Finished,
        started,
        versions: Versions::default(),
        spec: spec.clone(),
        model: ModelInfo {
            path: bench.model_path.display().to_string(),
            identity: bench.identity.clone(),
            device: bench.device_name.clone(),
            dtype: format!("{:?}", dtype).to_lowercase(),
        },
        task: TaskInfo {
            name: task.name.clone(),
            train: task.train.len(),
            validation: task.validation.len(),
            test: task.test.len(),
            matching: if task.exact { "exact" } else { "normalized" }.into(),
        },
        pool: pool_info,
        chosen: chosen_info,
        curve,
        coefficient_curve,
        coefficients,
        best_step,
        metrics: Metrics {
            exact_match: bootstrap_mean(&em, spec.eval.bootstrap, seed),
            loss: bootstrap_mean(&loss, spec.eval.bootstrap, seed),
            val_loss,
        },
        timings,
        examples,
        host: crate::process::host_name(),
        slurm: crate::slurm::SlurmJob::from_env(),
    })
}

fn group_names(cb: &CoefficientBranches, layers: usize) -> Vec<String> {
    use crate::tune::coef::Granularity as G;
    match cb.layout.granularity {
        G::Lora => vec!["all".into()],
        G::Layer => (0..layers).map(|l| format!("layer {l}")).collect(),
        G::Sublayer => (0..layers)
            .flat_map(|l| [format!("layer {l} attn"), format!("layer {l} mlp")])
            .collect(),
        G::Module | G::Rank => (0..layers)
            .flat_map(|l| Module::ALL.map(|m| format!("layer {l} {}", m.peft_name())))
            .collect(),
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

/// Exact match of greedy generations and answer loss on the test split, per example.
fn evaluate_test(
    model: &Llama,
    codec: &TextCodec,
    task: &TaskData,
    spec: &RunSpec,
    on: &mut dyn FnMut(RunEvent),
    cancel: Option<&AtomicBool>,
) -> Result<Vec<ExampleOutcome>> {
    let n = task.test.len();
    on(RunEvent::Stage {
        name: "evaluating on test".into(),
        total: n,
    });
    let encoded: Vec<EncodedExample> = task
        .test
        .iter()
        .map(|e| codec.encode_example(&e.prompt, &e.answer))
        .collect::<std::result::Result<_, _>>()?;
    let mut out = Vec::with_capacity(n);
    // With exact matching and an end token, teacher forcing gives greedy decoding's verdict
    // (every answer position and the end token are the argmax) in the same forward as the loss.
    if task.exact && !codec.eos_ids().is_empty() {
        let mut examples = task.test.iter();
        for chunk in encoded.chunks(spec.eval.batch_size.max(1)) {
            check_cancel(cancel)?;
            for o in eval::answer_outcomes(model, codec.pad_id(), chunk, None)? {
                let e = examples.next().expect("one outcome per example");
                out.push(ExampleOutcome {
                    prompt: e.prompt.clone(),
                    answer: e.answer.clone(),
                    prediction: codec.decode_answer(&o.greedy_prefix),
                    truncated: !o.exact,
                    correct: o.exact,
                    loss: o.loss,
                });
            }
            on(RunEvent::Advance(out.len()));
        }
        return Ok(out);
    }
    let mut losses = Vec::with_capacity(n);
    for chunk in encoded.chunks(spec.eval.batch_size.max(1)) {
        losses.extend(eval::answer_losses(model, codec.pad_id(), chunk, None)?);
    }
    for (i, (e, loss)) in task.test.iter().zip(losses).enumerate() {
        check_cancel(cancel)?;
        let prompt = codec.encode_prompt(&e.prompt)?;
        let ids = generate::greedy(
            model,
            &prompt,
            spec.eval.max_new_tokens,
            codec.eos_ids(),
            None,
        )?;
        let prediction = codec.decode_answer(&ids);
        out.push(ExampleOutcome {
            prompt: e.prompt.clone(),
            answer: e.answer.clone(),
            correct: answers_match(&prediction, &e.answer, task.exact),
            prediction,
            truncated: false,
            loss,
        });
        on(RunEvent::Advance(i + 1));
    }
    Ok(out)
}
