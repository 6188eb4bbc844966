//! The pool side of a run: load the pool, add the oracle, score and select, and swap in
//! random-init copies for the random-init control.

use std::path::Path;

use super::methods::Rows;
use super::recorder::Recorder;
use super::{Result, RunError};
use crate::adapter::Adapter;
use crate::adapter::random::{RandomInit, randomize};
use crate::model::template::EncodedExample;
use crate::run::record::{ChosenAdapter, PoolInfo, Rejected};
use crate::run::spec::RunSpec;
use crate::run::task::TaskData;
use crate::run::workbench::Workbench;
use crate::select::{self, ScoreMetric, SelectError, Selection};

/// The pool as a run found it: its usable adapters (the task's oracle last, when the run asks
/// for it) and what the record says of the pool.
pub struct Candidates {
    pub pool: std::sync::Arc<crate::pool::Pool>,
    pub oracle: Option<Adapter>,
    pub info: PoolInfo,
}

impl Candidates {
    pub fn all(&self) -> Vec<&Adapter> {
        self.pool
            .adapters
            .iter()
            .chain(self.oracle.as_ref())
            .collect()
    }
}

/// The adapters a pool method merges or tunes, and what the record says of each.
pub struct Chosen {
    pub adapters: Vec<Adapter>,
    pub info: Vec<ChosenAdapter>,
    /// What broke a tie at the top-k cut, when one did.
    pub ties: Option<String>,
}

/// Loads the spec's pool (cached on the workbench) and the task's oracle adapter.
pub fn candidates(
    bench: &mut Workbench,
    spec: &RunSpec,
    task: &TaskData,
    rec: &mut Recorder<'_>,
) -> Result<Candidates> {
    let pool = bench.pool(&spec.pool.source, &spec.pool.filter, rec.sink())?;
    rec.check()?;
    let info = PoolInfo {
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
        ties: None,
    };
    let oracle = if spec.controls.oracle {
        let dir = task.oracle.clone().ok_or_else(|| {
            RunError::Task(format!(
                "controls.oracle is set but task {} has no adapter of its own (set task.oracle_adapter)",
                task.name
            ))
        })?;
        let cfg = bench.model.config();
        let mut ad = Adapter::load(&dir, Some((cfg, bench.identity.as_deref())))?;
        ad.name = format!("oracle:{}", task.name);
        Some(ad)
    } else {
        None
    };
    let out = Candidates { pool, oracle, info };
    if out.all().is_empty() {
        return Err(RunError::Pool {
            origin: spec.pool.source.to_string(),
            reason: "no usable adapter passes the filter".into(),
        });
    }
    Ok(out)
}

fn is_oracle(a: &Adapter) -> bool {
    a.name.starts_with("oracle:")
}

/// Scores the candidates on the task's train + validation rows when the selection needs it,
/// selects, keeps the oracle in, and randomises every chosen adapter but the oracle for the
/// random-init control.
pub fn choose(
    bench: &mut Workbench,
    spec: &RunSpec,
    task: &TaskData,
    found: &Candidates,
    rows: &Rows<'_>,
    rec: &mut Recorder<'_>,
) -> Result<Chosen> {
    let candidates = found.all();
    let mut ties = None;
    let scores = if spec.selection.needs_scores() {
        // Each adapter is scored on the train and validation rows together (once when they are
        // one merged set).
        let both: Vec<EncodedExample> = if rows.combined {
            rows.train.to_vec()
        } else {
            rows.train.iter().chain(rows.val).cloned().collect()
        };
        let cancel = rec.cancel();
        let scores = match &spec.selection {
            // The generated scores come with their own teacher-forced pass.
            Selection::TopK {
                by: ScoreMetric::Generated,
                ..
            } => bench.generated_scores(
                &candidates,
                &if rows.combined {
                    task.train.clone()
                } else {
                    [task.train.as_slice(), &task.validation].concat()
                },
                &both,
                &task.scoring,
                spec.eval.batch_size,
                rec.sink(),
                cancel,
            )?,
            _ => bench.scores(&candidates, &both, rec.sink(), cancel)?,
        };
        if let Selection::TopK { k, by } = &spec.selection {
            ties = select::describe_ties(&scores, *k, *by);
        }
        rec.emit(crate::run::event::RunEvent::Screened {
            task: task.name.clone(),
            scores: candidates
                .iter()
                .zip(&scores)
                .map(|(a, s)| crate::run::record::ScreeningScore {
                    name: a.name.clone(),
                    exact_match: s.exact_match,
                    loss: s.loss,
                })
                .collect(),
        });
        Some(scores)
    } else {
        None
    };
    rec.check()?;
    if let Some(line) = &ties {
        rec.log(line.clone());
    }
    let reference = match &spec.selection {
        // The task's own adapter as the reference, whether or not the run adds it to the pool.
        Selection::Similar { to, .. } if to == select::TASK_REFERENCE => match &found.oracle {
            Some(o) => Some(o.clone()),
            None => {
                let dir = task.oracle.clone().ok_or_else(|| {
                    RunError::Task(format!(
                        "selection.to = \"task\" measures closeness to the task's own adapter, \
                         but task {} has none (set task.oracle_adapter)",
                        task.name
                    ))
                })?;
                let cfg = bench.model.config();
                let mut ad = Adapter::load(&dir, Some((cfg, bench.identity.as_deref())))?;
                ad.name = format!("oracle:{}", task.name);
                Some(ad)
            }
        },
        Selection::Similar { to, .. } => match candidates.iter().find(|a| &a.name == to) {
            Some(a) => Some((*a).clone()),
            None if Path::new(to).join("adapter_config.json").is_file() => Some(Adapter::load(
                Path::new(to),
                Some((bench.model.config(), None)),
            )?),
            None => return Err(SelectError::UnknownReference(to.clone()).into()),
        },
        _ => None,
    };
    // A manual selection names adapters by hand: one the pool refused is an error that says why,
    // not an unknown name (and never a pick that skips the pool's rules).
    if let Selection::Manual { adapters } = &spec.selection {
        for name in adapters {
            if candidates.iter().any(|a| &a.name == name) {
                continue;
            }
            if let Some((_, reason)) = found.pool.rejected.iter().find(|(n, _)| n == name) {
                return Err(SelectError::Rejected {
                    name: name.clone(),
                    reason: reason.clone(),
                }
                .into());
            }
        }
    }
    let mut picked = select::select(
        &spec.selection,
        &candidates,
        scores.as_deref(),
        reference.as_ref(),
        spec.seed,
    )?;
    if found.oracle.is_some() {
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
    let real: Vec<&Adapter> = picked.iter().map(|&i| candidates[i]).collect();
    let to_randomize: Vec<&Adapter> = real.iter().copied().filter(|a| !is_oracle(a)).collect();
    let random = spec.controls.random_init != RandomInit::Off;
    let mut randomized =
        randomize(&to_randomize, spec.controls.random_init, spec.seed)?.into_iter();
    let adapters: Vec<Adapter> = real
        .iter()
        .map(|a| {
            if is_oracle(a) {
                Ok((*a).clone())
            } else {
                randomized.next().ok_or_else(|| {
                    RunError::Other("random-init returned fewer adapters than it was given".into())
                })
            }
        })
        .collect::<Result<_>>()?;
    let info = picked
        .iter()
        .zip(&real)
        .map(|(&i, a)| ChosenAdapter {
            name: a.name.clone(),
            rank: a.rank(),
            exact_match: scores.as_ref().map(|s| s[i].exact_match),
            loss: scores.as_ref().map(|s| s[i].loss),
            oracle: is_oracle(a),
            random: random && !is_oracle(a),
        })
        .collect::<Vec<_>>();
    rec.emit(crate::run::event::RunEvent::Chosen(info.clone()));
    rec.log(format!(
        "selected {} adapters ({}){}",
        adapters.len(),
        spec.selection.name(),
        if random { ", random-init" } else { "" }
    ));
    Ok(Chosen {
        adapters,
        info,
        ties,
    })
}
