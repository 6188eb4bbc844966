//! Scoring a model (with or without one adapter) on task examples: teacher-forced exact match
//! and answer loss, in batches.

use super::build::Result;
use crate::adapter::{self, Adapter};
use crate::eval::teacher_forced_exact;
use crate::model::template::EncodedExample;
use crate::model::{Llama, TextCodec};

pub fn encode(codec: &TextCodec, rows: &[(String, String)]) -> Result<Vec<EncodedExample>> {
    Ok(rows
        .iter()
        .map(|(p, a)| codec.encode_example(None, p, a))
        .collect::<std::result::Result<Vec<_>, _>>()?)
}

/// Teacher-forced exact match of `model` (+ adapter) on `rows`, in batches of 64.
pub fn accuracy(
    model: &Llama,
    codec: &TextCodec,
    rows: &[(String, String)],
    adapter: Option<&Adapter>,
) -> Result<f64> {
    Ok(score(model, codec, rows, adapter)?.0)
}

/// (teacher-forced exact match, mean answer loss) of `model` (+ adapter) on `rows`.
pub fn score(
    model: &Llama,
    codec: &TextCodec,
    rows: &[(String, String)],
    adapter: Option<&Adapter>,
) -> Result<(f64, f64)> {
    let branches = match adapter {
        Some(a) => Some(adapter::branches_for(
            &[(a, 1.0)],
            model.config(),
            model.dtype(),
            model.device(),
        )?),
        None => None,
    };
    let enc = encode(codec, rows)?;
    let mut hits = 0;
    let mut loss = 0.0;
    for chunk in enc.chunks(64) {
        hits += teacher_forced_exact(model, codec.pad_id(), chunk, branches.as_ref())?
            .iter()
            .filter(|&&e| e)
            .count();
        loss += crate::eval::answer_losses(model, codec.pad_id(), chunk, branches.as_ref())?
            .iter()
            .sum::<f64>();
    }
    let n = rows.len().max(1) as f64;
    Ok((hits as f64 / n, loss / n))
}
