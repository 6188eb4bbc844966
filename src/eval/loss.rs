//! Cross-entropy on answer tokens only. The LM head runs on the rows that predict an answer token,
//! not on every position: with a 128k vocabulary that is most of the memory of a forward.

use candle_core::{D, DType, Tensor};

use crate::model::template::EncodedExample;
use crate::model::{Batch, Branches, Llama};

use super::Result;

// A NaN loss is kept where it is computed (a candidate of a search may diverge alone); the
// callers that report a loss refuse it with `super::finite`.

/// Logits (n_tokens, vocab) in f32 at the positions that predict an answer token, the target of
/// each row, and the example each row belongs to.
fn answer_rows(
    model: &Llama,
    pad_id: u32,
    examples: &[EncodedExample],
    branches: Option<&Branches>,
) -> Result<(Tensor, Tensor, Vec<usize>)> {
    let rows: Vec<Vec<u32>> = examples.iter().map(|e| e.ids.clone()).collect();
    let batch = Batch::new(&rows, pad_id, model.device())?;
    let width = batch.width();
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    let mut owner = Vec::new();
    for (b, e) in examples.iter().enumerate() {
        // The token at j is predicted from position j - 1; an answer starting at 0 has no context.
        for j in e.answer_start.max(1)..e.ids.len() {
            positions.push((b * width + j - 1) as u32);
            targets.push(e.ids[j]);
            owner.push(b);
        }
    }
    let hidden = model.hidden(&batch, branches)?;
    let h = hidden.dim(D::Minus1)?;
    let device = model.device();
    let idx = Tensor::from_vec(positions, owner.len(), device)?;
    let rows = hidden.reshape(((), h))?.index_select(&idx, 0)?;
    let logits = model.logits(&rows)?;
    // Softmax in at least single precision (f64 stays f64, for gradient checks).
    let logits = match logits.dtype() {
        DType::F16 | DType::BF16 => logits.to_dtype(DType::F32)?,
        _ => logits,
    };
    let targets = Tensor::from_vec(targets, owner.len(), device)?;
    Ok((logits, targets, owner))
}

/// Negative log-likelihood of every answer token of a batch, (n_tokens), differentiable, plus the
/// example each token belongs to.
pub fn token_nll(
    model: &Llama,
    pad_id: u32,
    examples: &[EncodedExample],
    branches: Option<&Branches>,
) -> Result<(Tensor, Vec<usize>)> {
    let (logits, targets, owner) = answer_rows(model, pad_id, examples, branches)?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let nll = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
    Ok((nll, owner))
}

/// Token-mean answer loss over `examples` in batches (no gradients).
pub fn mean_token_loss(
    model: &Llama,
    pad_id: u32,
    examples: &[EncodedExample],
    branches: Option<&Branches>,
    batch_size: usize,
) -> Result<f64> {
    let (mut sum, mut count) = (0.0, 0usize);
    for chunk in examples.chunks(batch_size.max(1)) {
        let (nll, _) = token_nll(model, pad_id, chunk, branches)?;
        sum += nll.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        count += nll.dim(0)?;
    }
    if count == 0 {
        return Err(super::EvalError::NothingToScore {
            what: "mean answer loss",
        });
    }
    Ok(sum / count as f64)
}

/// Exact match without decoding: with teacher forcing, the greedy generation equals the answer
/// (and stops at its end token, when the template has one) iff the argmax at every answer
/// position equals the target. One forward instead of a token-by-token decode.
pub fn teacher_forced_exact(
    model: &Llama,
    pad_id: u32,
    examples: &[EncodedExample],
    branches: Option<&Branches>,
) -> Result<Vec<bool>> {
    let (logits, targets, owner) = answer_rows(model, pad_id, examples, branches)?;
    let hits = logits.argmax(D::Minus1)?.eq(&targets)?.to_vec1::<u8>()?;
    let mut exact = vec![true; examples.len()];
    for (hit, &o) in hits.iter().zip(&owner) {
        exact[o] &= *hit == 1;
    }
    Ok(exact)
}

/// Mean answer-token loss of every example.
pub fn answer_losses(
    model: &Llama,
    pad_id: u32,
    examples: &[EncodedExample],
    branches: Option<&Branches>,
) -> Result<Vec<f64>> {
    let (nll, owner) = token_nll(model, pad_id, examples, branches)?;
    let nll = nll.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let mut sum = vec![0f64; examples.len()];
    let mut count = vec![0usize; examples.len()];
    for (v, &o) in nll.iter().zip(&owner) {
        sum[o] += *v;
        count[o] += 1;
    }
    Ok(sum
        .into_iter()
        .zip(count)
        .map(|(s, c)| if c == 0 { f64::NAN } else { s / c as f64 })
        .collect())
}

/// Per-example outcome of a teacher-forced pass.
#[derive(Debug, Clone, PartialEq)]
pub struct ForcedOutcome {
    pub exact: bool,
    pub loss: f64,
    /// What greedy decoding produces up to and including its first wrong token: the answer's
    /// tokens before the first position whose argmax differs, then that argmax. Equal to the
    /// full answer (with its end token) when the example is an exact match.
    pub greedy_prefix: Vec<u32>,
}

/// Exact match (teacher-forced) and mean answer loss of every example from one forward.
pub fn answer_scores(
    model: &Llama,
    pad_id: u32,
    examples: &[EncodedExample],
    branches: Option<&Branches>,
) -> Result<(Vec<bool>, Vec<f64>)> {
    let out = answer_outcomes(model, pad_id, examples, branches)?;
    Ok(out.into_iter().map(|o| (o.exact, o.loss)).unzip())
}

/// Exact match, mean answer loss and greedy's output up to its first wrong token, per example,
/// from one forward.
pub fn answer_outcomes(
    model: &Llama,
    pad_id: u32,
    examples: &[EncodedExample],
    branches: Option<&Branches>,
) -> Result<Vec<ForcedOutcome>> {
    let (logits, targets, owner) = answer_rows(model, pad_id, examples, branches)?;
    let argmax = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let target_ids = targets.to_vec1::<u32>()?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let nll = logp
        .gather(&targets.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    let n = examples.len();
    let mut out: Vec<ForcedOutcome> = (0..n)
        .map(|_| ForcedOutcome {
            exact: true,
            loss: 0.0,
            greedy_prefix: Vec::new(),
        })
        .collect();
    let mut count = vec![0usize; n];
    for (((&pred, &target), v), &o) in argmax.iter().zip(&target_ids).zip(&nll).zip(&owner) {
        let e = &mut out[o];
        if e.exact {
            e.greedy_prefix.push(pred);
        }
        e.exact &= pred == target;
        e.loss += v;
        count[o] += 1;
    }
    for (e, c) in out.iter_mut().zip(count) {
        e.loss = if c == 0 { f64::NAN } else { e.loss / c as f64 };
    }
    Ok(out)
}
