//! What several runs on one model share — the loaded model and codec, loaded pools and the
//! screening cache — so a study or a queue of runs on one model loads and screens once.

use crate::model::{OpenDevice, ResolveDtype};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;

use super::event::RunEvent;
use super::execute::{Result, RunError, resolve_model};
use super::spec::RunSpec;
use super::task::load_task;
use crate::adapter::Adapter;
use crate::eval::{self, Example};
use crate::model::template::EncodedExample;
use crate::model::weights::{model_identity, read_config};
use crate::model::{Llama, TextCodec};
use crate::pool::{self, Filter, PoolSource};
use crate::select::{self, Score};

/// What several runs on one model share.
pub struct Workbench {
    pub model_path: PathBuf,
    pub model: Llama,
    pub codec: TextCodec,
    pub identity: Option<String>,
    pub(super) device_name: String,
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
        let test = self.encode(&task.test, "test")?;
        let (mut hits, mut loss) = (0usize, 0.0);
        for chunk in test.chunks(32) {
            let (exact, l) = eval::answer_scores(&folded, self.codec.pad_id(), chunk, None)?;
            hits += exact.iter().filter(|&&e| e).count();
            loss += l.iter().sum::<f64>();
        }
        let n = test.len().max(1) as f64;
        let loss = eval::finite(loss / n, || format!("the test loss of {adapter}"))?;
        Ok((task.name, hits as f64 / n, loss))
    }

    /// A split's rows as the model sees them; an error names the split and the row.
    pub(super) fn encode(&self, rows: &[Example], split: &str) -> Result<Vec<EncodedExample>> {
        self.codec
            .encode_examples(
                rows.iter()
                    .map(|e| (e.system.as_deref(), e.prompt.as_str(), e.answer.as_str())),
            )
            .map_err(|e| RunError::Task(format!("{split} {e}")))
    }

    /// Scores of `adapters` on a task: screened many adapters per forward, kept in the screening
    /// cache on disk by (adapter revision, task data hash). A set `cancel` stops between adapters.
    pub(super) fn scores(
        &mut self,
        adapters: &[&Adapter],
        examples: &[EncodedExample],
        on: &mut dyn FnMut(RunEvent),
        cancel: Option<&std::sync::atomic::AtomicBool>,
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
            cancel,
        );
        self.screen_cache = cache;
        Ok(result?)
    }

    /// Each adapter's exact match of greedy generations on `examples` under `scoring` (the
    /// paper's selection metric), with its answer loss: teacher forcing decides the examples an
    /// adapter reproduces, the rest are generated. Examples whose prompt the scoring drops are
    /// left out. Kept in the screening cache beside the teacher-forced scores, keyed by the
    /// scoring too.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn generated_scores(
        &mut self,
        adapters: &[&Adapter],
        examples: &[Example],
        encoded: &[EncodedExample],
        scoring: &eval::Scoring,
        batch: usize,
        on: &mut dyn FnMut(RunEvent),
        cancel: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<Vec<Score>> {
        let prompts = eval::judge::prompts(&self.codec, examples)?;
        let kept: Vec<usize> = (0..examples.len())
            .filter(|&i| !scoring.drops(prompts[i].len()))
            .collect();
        if kept.is_empty() {
            return Err(RunError::Task(format!(
                "every train and validation prompt has {} tokens or more: nothing to select by",
                scoring.max_prompt_tokens.unwrap_or_default()
            )));
        }
        let examples: Vec<Example> = kept.iter().map(|&i| examples[i].clone()).collect();
        let encoded: Vec<EncodedExample> = kept.iter().map(|&i| encoded[i].clone()).collect();
        let prompts: Vec<Vec<u32>> = kept.iter().map(|&i| prompts[i].clone()).collect();
        let numbers: Vec<usize> = kept.iter().map(|&i| i + 1).collect();
        let identity = self
            .identity
            .clone()
            .unwrap_or_else(|| self.model_path.display().to_string());
        let task = select::screen::task_hash(&identity, &encoded);
        // Versioned: a change to how verdicts are reached must not reuse older ones.
        let how = format!(
            "generated/2|{:?}|{}|{}|{}|{}",
            self.model.dtype(),
            scoring.max_new_tokens,
            scoring.extract.name(),
            scoring.normalize.name(),
            scoring.max_prompt_tokens.unwrap_or(0)
        );
        let keys: Vec<String> = adapters
            .iter()
            .map(|a| format!("{how}|{task}|{}", select::screen::adapter_revision(a)))
            .collect();
        let mut out: Vec<Option<Score>> = keys
            .iter()
            .map(|k| self.screen_cache.get(k).copied())
            .collect();
        let cached = out.iter().filter(|s| s.is_some()).count();
        if cached > 0 {
            on(RunEvent::Log(format!(
                "{cached} of {} generated scores from the screening cache",
                adapters.len()
            )));
        }
        on(RunEvent::Stage {
            name: "generating answers to select by".into(),
            total: adapters.len(),
        });
        let cfg = self.model.config().clone();
        let mut done = cached;
        on(RunEvent::Advance(done));
        let mut result = Ok(());
        let mut generated = 0;
        for (i, ad) in adapters.iter().enumerate() {
            if out[i].is_some() {
                continue;
            }
            let scored = (|| -> Result<Score> {
                let br = crate::adapter::branches_for(
                    &[(*ad, 1.0)],
                    &cfg,
                    self.model.dtype(),
                    self.model.device(),
                )?;
                let folded = self.model.fold(&br)?;
                let judged = eval::judge(
                    &folded,
                    &self.codec,
                    &examples,
                    &encoded,
                    &prompts,
                    &numbers,
                    scoring,
                    None,
                    batch,
                    true,
                    &mut |_| {},
                    cancel,
                )?;
                let n = judged.len() as f64;
                generated += judged.iter().filter(|j| j.generated).count();
                Ok(Score {
                    exact_match: judged.iter().filter(|j| j.correct).count() as f64 / n,
                    loss: judged.iter().map(|j| j.loss).sum::<f64>() / n,
                })
            })();
            match scored {
                Ok(score) => {
                    self.screen_cache.put(keys[i].clone(), score);
                    out[i] = Some(score);
                    done += 1;
                    on(RunEvent::Advance(done));
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // What was scored before a cancel (or an error) is kept for the next selection.
        if let Err(e) = self.screen_cache.save() {
            on(RunEvent::Log(format!(
                "the screening cache was not saved (scores will be computed again next time): {e}"
            )));
        }
        result?;
        let scored = adapters.len() - cached;
        if scored > 0 {
            on(RunEvent::Log(format!(
                "generated {generated} of {} answers ({scored} adapters × {} examples); teacher forcing decided the rest",
                scored * examples.len(),
                examples.len()
            )));
        }
        Ok(out
            .into_iter()
            .map(|s| s.expect("every adapter scored"))
            .collect())
    }
}
