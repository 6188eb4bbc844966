//! `loracycle lab build`: tokenizer, base model, held-out task data, the pool and the oracle
//! adapters, the measurements of the lab card and the MANIFEST — resumable, deterministic for a
//! given seed on a given machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::card::{AdapterScore, HeldOutScore, LabCard};
use super::pretrain::{self, PretrainProgress};
use super::recipe::{AdapterPlan, LabRecipe};
use super::score::{accuracy, encode, score};
use super::{tasks, tokenizer};
use crate::adapter::write::write_peft;
use crate::adapter::{Adapter, AdapterError};
use crate::atomic_write::write_atomic;
use crate::eval::EvalError;
use crate::model::{Llama, Template, TextCodec};
use crate::tune::train_lora;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    #[error("cannot serialise the base model: {0}")]
    Serialize(String),
    #[error("unknown lab task {0}")]
    UnknownTask(String),
}

impl From<candle_core::Error> for LabError {
    fn from(e: candle_core::Error) -> Self {
        LabError::Eval(e.into())
    }
}

impl From<crate::model::ModelError> for LabError {
    fn from(e: crate::model::ModelError) -> Self {
        LabError::Eval(e.into())
    }
}

pub type Result<T> = std::result::Result<T, LabError>;

/// Progress of a build, for a progress bar.
pub enum BuildEvent {
    Stage(String),
    Progress {
        done: usize,
        total: usize,
        message: String,
    },
    Note(String),
}

pub(super) fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|source| LabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(super) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        io(dir, std::fs::create_dir_all(dir))?;
    }
    io(path, write_atomic(path, bytes))
}

fn jsonl(rows: &[(String, String)]) -> String {
    rows.iter()
        .map(|(p, a)| serde_json::json!({"prompt": p, "answer": a}).to_string() + "\n")
        .collect()
}

fn task(name: &str) -> Result<tasks::Task> {
    tasks::find(name).ok_or_else(|| LabError::UnknownTask(name.into()))
}

/// Seed of the evaluation examples of a task: fixed, and far from every training seed.
fn eval_seed(recipe: &LabRecipe) -> u64 {
    recipe.seed ^ 0xE7A1_0000_0000
}

/// Builds (or completes) the lab in `out`.
/// `jobs` adapters train at the same time.
pub fn build(
    out: &Path,
    recipe: &LabRecipe,
    device: &Device,
    jobs: usize,
    on: &mut dyn FnMut(BuildEvent),
) -> Result<LabCard> {
    io(out, std::fs::create_dir_all(out))?;
    let tok = tokenizer::build().map_err(|e| LabError::Tokenizer(e.to_string()))?;
    let tok_json = tok
        .to_string(true)
        .map_err(|e| LabError::Tokenizer(e.to_string()))?;
    write_file(&out.join("tokenizer.json"), tok_json.as_bytes())?;

    // Base model.
    let base_dir = out.join("base");
    let cfg = recipe.model_config();
    let mut cfg_json = serde_json::to_value(&cfg).expect("config serialises");
    cfg_json["loracycle_recipe"] = recipe.base_hash().into();
    let cfg_text = serde_json::to_string_pretty(&cfg_json).expect("json");
    let built = std::fs::read_to_string(base_dir.join("config.json")).ok()
        == Some(cfg_text.clone())
        && base_dir.join("model.safetensors").is_file();
    let codec = TextCodec::new(tok.clone(), Template::Lab, &cfg)?;
    let base_tasks: Vec<tasks::Task> = recipe
        .base_tasks()
        .iter()
        .map(|n| task(n))
        .collect::<Result<_>>()?;
    if built {
        on(BuildEvent::Note(
            "base model already built with this recipe; reusing it".into(),
        ));
    } else {
        on(BuildEvent::Stage("pretraining the base model".into()));
        let (model, vars) = pretrain::init_model(&cfg, recipe.seed, device)?;
        let refs: Vec<&tasks::Task> = base_tasks.iter().collect();
        let ckpt_path = base_dir.join("checkpoint.safetensors");
        io(&base_dir, std::fs::create_dir_all(&base_dir))?;
        let base_hash = recipe.base_hash();
        let ckpt = pretrain::Checkpointing {
            path: &ckpt_path,
            every: recipe.pretrain_spec().measure_every,
            recipe: &base_hash,
        };
        pretrain::pretrain(
            &model,
            &vars,
            &codec,
            &refs,
            &recipe.pretrain_spec(),
            Some(&ckpt),
            &mut |p: PretrainProgress| {
                let mut message = format!("loss {:.3}", p.loss);
                if let Some(acc) = &p.accuracy {
                    let mean = acc.iter().map(|(_, a)| a).sum::<f64>() / acc.len().max(1) as f64;
                    message.push_str(&format!(" · mean task accuracy {mean:.2}"));
                }
                on(BuildEvent::Progress {
                    done: p.step,
                    total: p.total,
                    message,
                });
            },
        )?;
        let tensors: BTreeMap<String, candle_core::Tensor> = vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let bytes = safetensors::serialize(&tensors, None)
            .map_err(|e| LabError::Serialize(e.to_string()))?;
        write_file(&base_dir.join("model.safetensors"), &bytes)?;
        write_file(&base_dir.join("tokenizer.json"), tok_json.as_bytes())?;
        // the config last: it is the stamp that says the base is complete
        write_file(&base_dir.join("config.json"), cfg_text.as_bytes())?;
        let _ = std::fs::remove_file(&ckpt_path);
    }
    let model = Llama::load(&base_dir, DType::F32, device)?;

    // Held-out task data: 80 train / 20 validation, and a separate 100-example test split.
    on(BuildEvent::Stage("writing held-out task data".into()));
    for name in recipe.held_out() {
        let rows = task(name)?.examples(200, recipe.seed ^ 0xDA7A);
        let dir = out.join("tasks").join(name);
        write_file(&dir.join("train.jsonl"), jsonl(&rows[..80]).as_bytes())?;
        write_file(
            &dir.join("validation.jsonl"),
            jsonl(&rows[80..100]).as_bytes(),
        )?;
        write_file(&dir.join("test.jsonl"), jsonl(&rows[100..]).as_bytes())?;
    }

    let mut card = LabCard {
        seed: recipe.seed,
        quick: recipe.quick,
        ..Default::default()
    };
    let dropped_path = out.join("dropped.json");
    let mut dropped: BTreeMap<String, String> = std::fs::read_to_string(&dropped_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    for (kind, plans) in [
        ("pool", recipe.pool_plan()),
        ("oracle", recipe.oracle_plan()),
    ] {
        on(BuildEvent::Stage(format!(
            "training the {kind} adapters ({jobs} at a time)"
        )));
        let todo: Vec<&AdapterPlan> = plans
            .iter()
            .filter(|plan| {
                let dir = out.join(kind).join(&plan.name);
                let stamp = format!("recipe: {}", recipe.adapter_hash(plan));
                let card_text = std::fs::read_to_string(dir.join("README.md")).unwrap_or_default();
                !(card_text.contains(&stamp) || kind == "pool" && dropped.contains_key(&plan.name))
            })
            .collect();
        let total = plans.len();
        let mut done = total - todo.len();
        if done > 0 {
            on(BuildEvent::Note(format!(
                "{done} {kind} adapters already built with this recipe"
            )));
        }
        on(BuildEvent::Progress {
            done,
            total,
            message: String::new(),
        });
        // Independent adapters train side by side, one per worker (each worker single-threaded
        // is faster than one job spread over the cores at this model size).
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (tx, rx) = std::sync::mpsc::channel::<(String, Result<Option<String>>)>();
        std::thread::scope(|scope| {
            for _ in 0..jobs.max(1) {
                let tx = tx.clone();
                let (next, todo, model, codec) = (&next, &todo, &model, &codec);
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(plan) = todo.get(i) else { break };
                        let dir = out.join(kind).join(&plan.name);
                        let stamp = format!("recipe: {}", recipe.adapter_hash(plan));
                        let outcome = train_adapter(model, codec, recipe, plan, &dir, &stamp);
                        if tx.send((plan.name.clone(), outcome)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut first_error = None;
            for (name, outcome) in rx {
                done += 1;
                match outcome {
                    Ok(None) => {}
                    Ok(Some(reason)) => {
                        on(BuildEvent::Note(format!("dropped {name}: {reason}")));
                        let _ = std::fs::remove_dir_all(out.join(kind).join(&name));
                        if kind == "pool" {
                            dropped.insert(name.clone(), reason);
                            let text = serde_json::to_string_pretty(&dropped).expect("json");
                            if let Err(e) = write_file(&dropped_path, text.as_bytes()) {
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                    Err(e) => {
                        // Let the other workers finish their adapter; report the first failure.
                        next.store(usize::MAX / 2, std::sync::atomic::Ordering::SeqCst);
                        first_error.get_or_insert(e);
                    }
                }
                on(BuildEvent::Progress {
                    done,
                    total,
                    message: name,
                });
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })?;
    }

    // Measurements for the lab card, always taken from what is on disk.
    on(BuildEvent::Stage("measuring".into()));
    let es = eval_seed(recipe);
    for t in &base_tasks {
        card.base_tasks.push((
            t.name.clone(),
            accuracy(&model, &codec, &t.examples(200, es), None)?,
        ));
    }
    for (kind, plans) in [
        ("pool", recipe.pool_plan()),
        ("oracle", recipe.oracle_plan()),
    ] {
        for plan in plans {
            let dir = out.join(kind).join(&plan.name);
            if !dir.is_dir() {
                continue;
            }
            let ad = Adapter::load(&dir, Some((model.config(), Some("loracycle/lab-base"))))?;
            let t = task(&plan.task)?;
            let rows = t.examples(200, es);
            let (accuracy, loss) = score(&model, &codec, &rows, Some(&ad))?;
            let (base_accuracy, base_loss) = score(&model, &codec, &rows, None)?;
            let score = AdapterScore {
                name: plan.name.clone(),
                task: plan.task.clone(),
                family: t.family.clone(),
                rank: ad.rank(),
                alpha: ad.config.lora_alpha,
                modules: ad
                    .modules()
                    .iter()
                    .map(|m| m.peft_name().to_string())
                    .collect(),
                steps: steps_from_card(&dir),
                accuracy,
                base_accuracy,
                loss,
                base_loss,
            };
            if kind == "pool" {
                card.pool.push(score)
            } else {
                card.oracle.push(score)
            }
        }
    }
    for name in recipe.held_out() {
        let t = task(name)?;
        let test: Vec<(String, String)> = t.examples(200, recipe.seed ^ 0xDA7A)[100..].to_vec();
        let oracle = card
            .oracle
            .iter()
            .find(|o| o.task == name)
            .map(|o| o.name.clone());
        let oracle_acc = match oracle {
            Some(o) => {
                let ad = Adapter::load(&out.join("oracle").join(o), Some((model.config(), None)))?;
                Some(accuracy(&model, &codec, &test, Some(&ad))?)
            }
            None => None,
        };
        card.held_out.push(HeldOutScore {
            task: name.to_string(),
            family: t.family.clone(),
            relative_in_pool: tasks::relative_of(name).map(str::to_string),
            base_test_accuracy: accuracy(&model, &codec, &test, None)?,
            oracle_test_accuracy: oracle_acc,
        });
    }
    card.dropped = dropped.into_iter().collect();
    write_file(
        &out.join("lab.json"),
        serde_json::to_string_pretty(&card)
            .expect("json")
            .as_bytes(),
    )?;
    write_file(&out.join("LAB.md"), super::card::render(&card).as_bytes())?;
    Ok(card)
}

fn steps_from_card(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("README.md"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("- steps: ")
                    .and_then(|s| s.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Trains one adapter (retrying once, larger, when it does not clearly beat the base); returns
/// the reason when it is dropped.
fn train_adapter(
    model: &Llama,
    codec: &TextCodec,
    recipe: &LabRecipe,
    plan: &AdapterPlan,
    dir: &Path,
    stamp: &str,
) -> Result<Option<String>> {
    let t = task(&plan.task)?;
    let rows = t.examples(plan.train_examples + 100, plan.spec.seed);
    let (train_rows, check_rows) =
        rows.split_at(plan.train_examples.min(rows.len().saturating_sub(1)));
    let train = encode(codec, train_rows)?;
    let check = encode(codec, check_rows)?;
    let judge_rows = t.examples(200, eval_seed(recipe) ^ 0x1);
    let (base_acc, base_loss) = score(model, codec, &judge_rows, None)?;
    if base_acc >= 0.9 && !recipe.quick {
        return Ok(Some(format!(
            "the base already solves the task ({base_acc:.2}); an adapter cannot clearly beat it"
        )));
    }
    let mut spec = plan.spec.clone();
    let mut last = String::new();
    for attempt in 0..2 {
        let trained = train_lora(
            model,
            codec.pad_id(),
            &train,
            &[],
            &check,
            &spec,
            0.0,
            &mut |_, _, _| {},
            None,
        )?;
        write_peft(
            dir,
            &trained.pairs,
            trained.rank,
            trained.alpha,
            "loracycle/lab-base",
            DType::F16,
        )?;
        let ad = Adapter::load(dir, Some((model.config(), None)))?;
        let (acc, loss) = score(model, codec, &judge_rows, Some(&ad))?;
        // Clearly better: 10 points of exact match, or solving a task the base does not. The quick
        // lab's base is too weak after a minute of pretraining for exact match to move, so there
        // a quarter off the answer loss counts.
        let better = acc >= base_acc + 0.1
            || (acc >= 0.95 && base_acc < 0.95)
            || (recipe.quick && loss <= 0.75 * base_loss);
        if better {
            let card =
                super::card::model_card(&t, plan, &spec, trained.steps, acc, base_acc, stamp);
            write_file(&dir.join("README.md"), card.as_bytes())?;
            return Ok(None);
        }
        last = format!(
            "own-task accuracy {acc:.2} does not clearly beat the base's {base_acc:.2} (attempt {})",
            attempt + 1
        );
        // Second try: the most reliable shape, twice the steps, another seed.
        spec.rank = 8;
        spec.alpha = 16.0;
        spec.modules = super::recipe::ALL_LINEAR.to_vec();
        spec.lr = 3e-3;
        spec.steps *= 2;
        spec.seed = spec.seed.wrapping_add(0x9E37);
    }
    Ok(Some(last))
}
