//! Evaluation on (prompt, answer) data: answer-token loss in batched forwards and exact match of
//! greedy generations.

pub mod bootstrap;
pub mod dataset;
pub mod loss;

pub use bootstrap::{Estimate, bootstrap_mean};
pub use dataset::{Example, read_jsonl};
pub use loss::{
    ForcedOutcome, answer_losses, answer_outcomes, answer_scores, mean_token_loss,
    teacher_forced_exact, token_nll,
};

use crate::model::{Branches, Llama, ModelError, TextCodec, generate};

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

#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_match: Option<f64>,
    pub examples: Vec<ExampleResult>,
}

/// Options of one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    pub metric: Metric,
    pub batch_size: usize,
    pub max_new_tokens: usize,
}

/// Exact match after trimming surrounding whitespace.
pub fn is_exact_match(prediction: &str, answer: &str) -> bool {
    answers_match(prediction, answer, true)
}

/// Whether a prediction answers: the trimmed strings equal when `exact`, else equal after
/// collapsing whitespace and lowercasing.
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

/// Evaluates `examples`; `progress` is called with the number of finished units of work
/// (batches for loss, examples for generation) out of the total.
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
    let batches = if want_loss {
        n.div_ceil(opts.batch_size.max(1))
    } else {
        0
    };
    let total = batches + if want_em { n } else { 0 };
    let mut done = 0;
    let mut results: Vec<ExampleResult> = (0..n)
        .map(|_| ExampleResult {
            loss: None,
            prediction: None,
            correct: None,
        })
        .collect();
    if want_loss {
        let encoded = codec.encode_examples(
            examples
                .iter()
                .map(|e| (e.system.as_deref(), e.prompt.as_str(), e.answer.as_str())),
        )?;
        let mut offset = 0;
        for chunk in encoded.chunks(opts.batch_size.max(1)) {
            let losses = answer_losses(model, codec.pad_id(), chunk, branches)?;
            for (i, l) in losses.into_iter().enumerate() {
                let row = offset + i + 1;
                results[offset + i].loss =
                    Some(finite(l, || format!("the loss of example {row}"))?);
            }
            offset += chunk.len();
            done += 1;
            progress(done, total);
        }
    }
    if want_em {
        for (i, e) in examples.iter().enumerate() {
            let prompt = codec.encode_prompt(e.system.as_deref(), &e.prompt)?;
            let ids = generate::greedy(
                model,
                &prompt,
                opts.max_new_tokens,
                codec.eos_ids(),
                branches,
            )?;
            let prediction = codec.decode_answer(&ids);
            results[i].correct = Some(is_exact_match(&prediction, &e.answer));
            results[i].prediction = Some(prediction);
            done += 1;
            progress(done, total);
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
        examples: results,
    })
}
