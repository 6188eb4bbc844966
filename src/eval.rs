//! Evaluation on (prompt, answer) data: answer-token loss in batched forwards and exact match of
//! greedy generations.

pub use loracycle_data::eval::answer;
pub use loracycle_data::eval::bootstrap;
pub mod dataset;
pub mod judge;
pub mod loss;

pub use answer::{Extract, Normalize, Scoring, TaskSettings};
pub use bootstrap::{Estimate, bootstrap_mean, paired_delta};
pub use dataset::{Example, read_jsonl};
pub use judge::{Judged, judge};
pub use loss::{
    ForcedOutcome, answer_losses, answer_outcomes, answer_scores, mean_token_loss,
    teacher_forced_exact, token_nll,
};

use crate::model::{Branches, Llama, ModelError, TextCodec};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Row {
        path: std::path::PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: no examples")]
    Empty { path: std::path::PathBuf },
    /// A loss that is NaN or infinite: a setting or a weight that is not finite, or a divergence.
    #[error("{what} is {value}, not a finite number")]
    NonFinite { what: String, value: f64 },
    /// A loss asked of examples that have no answer token to score.
    #[error("{what}: no answer tokens to score (an empty set of examples)")]
    NothingToScore { what: &'static str },
    #[error("the run was cancelled")]
    Cancelled,
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl From<candle_core::Error> for EvalError {
    fn from(e: candle_core::Error) -> Self {
        EvalError::Model(ModelError::Candle(e))
    }
}

pub type Result<T> = std::result::Result<T, EvalError>;

/// `value` if it is finite, else [`EvalError::NonFinite`] naming `what` it is.
pub fn finite(value: f64, what: impl FnOnce() -> String) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(EvalError::NonFinite {
            what: what(),
            value,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Loss,
    ExactMatch,
    Both,
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "loss" => Ok(Metric::Loss),
            "exact-match" | "em" => Ok(Metric::ExactMatch),
            "both" => Ok(Metric::Both),
            _ => Err(format!(
                "unknown metric {s:?} (use loss, exact-match or both)"
            )),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExampleResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_match: Option<f64>,
    /// Examples left out of exact match: their prompt reached the scoring's token cap.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped: usize,
    pub examples: Vec<ExampleResult>,
}

/// Options of one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    pub metric: Metric,
    pub batch_size: usize,
    /// How generations are judged (exact match).
    pub scoring: Scoring,
}

/// Evaluates `examples`; `progress` is called with the number of finished units of work
/// (batches for loss alone, examples with exact match) out of the total. Examples whose prompt
/// the scoring drops are left out of exact match (their loss is still measured); the report
/// counts them.
pub fn evaluate(
    model: &Llama,
    codec: &TextCodec,
    examples: &[Example],
    branches: Option<&Branches>,
    opts: EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport> {
    let n = examples.len();
    let want_loss = matches!(opts.metric, Metric::Loss | Metric::Both);
    let want_em = matches!(opts.metric, Metric::ExactMatch | Metric::Both);
    let batch = opts.batch_size.max(1);
    // Rows are encoded as they are needed, each error naming its row in the file.
    let encode = |rows: &[usize]| -> Result<Vec<_>> {
        rows.iter()
            .map(|&i| {
                let e = &examples[i];
                codec
                    .encode_example(e.system.as_deref(), &e.prompt, &e.answer)
                    .map_err(|err| {
                        EvalError::Model(ModelError::Row {
                            row: i + 1,
                            source: Box::new(err),
                        })
                    })
            })
            .collect()
    };
    let mut results: Vec<ExampleResult> = (0..n)
        .map(|_| ExampleResult {
            loss: None,
            prediction: None,
            correct: None,
        })
        .collect();
    let mut dropped = 0;
    if want_em {
        let prompts = judge::prompts(codec, examples)?;
        let kept: Vec<usize> = (0..n)
            .filter(|&i| !opts.scoring.drops(prompts[i].len()))
            .collect();
        dropped = n - kept.len();
        let numbers: Vec<usize> = kept.iter().map(|&i| i + 1).collect();
        let total = kept.len();
        let judged = judge(
            model,
            codec,
            &kept
                .iter()
                .map(|&i| examples[i].clone())
                .collect::<Vec<_>>(),
            &encode(&kept)?,
            &kept.iter().map(|&i| prompts[i].clone()).collect::<Vec<_>>(),
            &numbers,
            &opts.scoring,
            branches,
            batch,
            false,
            &mut |done| progress(done, total),
            None,
        )?;
        for (&i, j) in kept.iter().zip(judged) {
            results[i].loss = want_loss.then_some(j.loss);
            results[i].correct = Some(j.correct);
            results[i].prediction = Some(j.prediction);
        }
    }
    if want_loss {
        let todo: Vec<usize> = (0..n).filter(|&i| results[i].loss.is_none()).collect();
        let batches = todo.len().div_ceil(batch);
        for (b, chunk) in todo.chunks(batch).enumerate() {
            let rows = encode(chunk)?;
            let losses = answer_losses(model, codec.pad_id(), &rows, branches)?;
            for (&i, l) in chunk.iter().zip(losses) {
                let row = i + 1;
                results[i].loss = Some(finite(l, || format!("the loss of example {row}"))?);
            }
            if !want_em {
                progress(b + 1, batches);
            }
        }
    }
    let mean = |xs: Vec<f64>| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
    Ok(EvalReport {
        mean_loss: mean(results.iter().filter_map(|r| r.loss).collect()),
        exact_match: mean(
            results
                .iter()
                .filter_map(|r| r.correct.map(|c| if c { 1.0 } else { 0.0 }))
                .collect(),
        ),
        dropped,
        examples: results,
    })
}
