//! Judging generations under a task's [`Scoring`]: one teacher-forced pass per batch gives every
//! example's loss and whether greedy decoding reproduces the answer token for token; only the
//! examples where it does not are generated, since a reproduced answer matches under any
//! extraction and normalisation (both sides are the same text).

use std::sync::atomic::{AtomicBool, Ordering};

use super::answer::Scoring;
use super::{EvalError, Example, Result, answer_outcomes, finite};
use crate::model::template::EncodedExample;
use crate::model::{Branches, Llama, TextCodec, generate};

/// One example's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// Mean answer-token loss.
    pub loss: f64,
    /// The generation (decoded, end token dropped); for a strict scoring's misses, greedy's
    /// output up to its first wrong token.
    pub prediction: String,
    pub correct: bool,
    /// The prediction is a prefix cut at the first wrong token, not a full generation.
    pub truncated: bool,
    /// The example was generated (teacher forcing did not decide it).
    pub generated: bool,
}

/// The prompt ids generation starts from, per example (the template's generation prompt).
pub fn prompts(codec: &TextCodec, examples: &[Example]) -> Result<Vec<Vec<u32>>> {
    examples
        .iter()
        .map(|e| Ok(codec.encode_prompt(e.system.as_deref(), &e.prompt)?))
        .collect()
}

/// Judges `examples` (`encoded` are the same rows encoded, `prompts` their generation prompts,
/// `numbers` their 1-based row numbers in the caller's file, for messages) in batches of `batch`; `done(n)` after each batch with the examples judged so far. Examples
/// teacher forcing misses are generated, unless `forced_misses` and the scoring is strict (exact
/// strings, no extraction): then its verdict stands for them too, which is greedy decoding's
/// except for a generation cut at the token limit that happens to spell the answer. A set
/// `cancel` stops between examples.
#[allow(clippy::too_many_arguments)]
pub fn judge(
    model: &Llama,
    codec: &TextCodec,
    examples: &[Example],
    encoded: &[EncodedExample],
    prompts: &[Vec<u32>],
    numbers: &[usize],
    scoring: &Scoring,
    branches: Option<&Branches>,
    batch: usize,
    forced_misses: bool,
    done: &mut dyn FnMut(usize),
    cancel: Option<&AtomicBool>,
) -> Result<Vec<Judged>> {
    let stop = || cancel.is_some_and(|c| c.load(Ordering::Relaxed));
    let mut out = Vec::with_capacity(examples.len());
    let ends = |enc: &EncodedExample| {
        enc.ids.len() > enc.answer_start
            && enc
                .ids
                .last()
                .is_some_and(|id| codec.eos_ids().contains(id))
    };
    for (c, chunk) in encoded.chunks(batch.max(1)).enumerate() {
        if stop() {
            return Err(EvalError::Cancelled);
        }
        let forced = answer_outcomes(model, codec.pad_id(), chunk, branches)?;
        for (j, (o, enc)) in forced.into_iter().zip(chunk).enumerate() {
            let i = c * batch.max(1) + j;
            let e = &examples[i];
            let row = numbers.get(i).copied().unwrap_or(i + 1);
            let loss = finite(o.loss, || format!("the loss of example {row}"))?;
            // Greedy decoding makes exactly the scored answer tokens when each is the argmax after
            // the ones before and the answer ends with an end token (else greedy would run on past
            // it); a limit one short of the end token still gives the same text.
            let answer_tokens = enc.ids.len() - enc.answer_start;
            let ends = ends(enc);
            let reproduced = o.exact && ends && answer_tokens <= scoring.max_new_tokens + 1;
            let judged = if reproduced || (forced_misses && scoring.strict() && ends) {
                // Reproduced: the generation is the answer's tokens; a template may render the
                // answer differently from the row's text, so the decoded tokens are compared.
                let prediction = codec.decode_answer(&o.greedy_prefix);
                Judged {
                    loss,
                    correct: reproduced && scoring.matches(&prediction, &e.answer),
                    prediction,
                    truncated: !reproduced,
                    generated: false,
                }
            } else {
                if stop() {
                    return Err(EvalError::Cancelled);
                }
                let ids = generate::greedy(
                    model,
                    &prompts[i],
                    scoring.max_new_tokens,
                    codec.eos_ids(),
                    branches,
                )?;
                let prediction = codec.decode_answer(&ids);
                Judged {
                    loss,
                    correct: scoring.matches(&prediction, &e.answer),
                    prediction,
                    truncated: false,
                    generated: true,
                }
            };
            out.push(judged);
        }
        done(out.len());
    }
    Ok(out)
}
