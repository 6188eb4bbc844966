//! The run's test stage: every test example's loss and verdict, one record row each.

use super::recorder::Recorder;
use super::{Result, RunError};
use crate::eval::{self, answers_match};
use crate::model::template::EncodedExample;
use crate::model::{Llama, TextCodec, generate};
use crate::run::record::ExampleOutcome;
use crate::run::spec::RunSpec;
use crate::run::task::TaskData;

/// Exact match of greedy generations and answer loss on the test split, per example.
pub fn test_outcomes(
    model: &Llama,
    codec: &TextCodec,
    task: &TaskData,
    spec: &RunSpec,
    rec: &mut Recorder<'_>,
) -> Result<Vec<ExampleOutcome>> {
    let n = task.test.len();
    rec.stage("evaluating on test", n);
    let encoded: Vec<EncodedExample> = codec
        .encode_examples(
            task.test
                .iter()
                .map(|e| (e.system.as_deref(), e.prompt.as_str(), e.answer.as_str())),
        )
        .map_err(|e| RunError::Task(format!("test {e}")))?;
    let batch = spec.eval.batch_size.max(1);
    let mut out = Vec::with_capacity(n);
    // With exact matching and an end token, teacher forcing gives greedy decoding's verdict
    // (every answer position and the end token are the argmax) in the same forward as the loss.
    if task.exact && !codec.eos_ids().is_empty() {
        let mut examples = task.test.iter();
        for chunk in encoded.chunks(batch) {
            rec.check()?;
            for (o, e) in eval::answer_outcomes(model, codec.pad_id(), chunk, None)?
                .into_iter()
                .zip(examples.by_ref())
            {
                let row = out.len() + 1;
                let loss = eval::finite(o.loss, || format!("the test loss of example {row}"))?;
                out.push(ExampleOutcome {
                    prompt: e.prompt.clone(),
                    answer: e.answer.clone(),
                    prediction: codec.decode_answer(&o.greedy_prefix),
                    truncated: !o.exact,
                    correct: o.exact,
                    loss,
                });
            }
            rec.emit(crate::run::event::RunEvent::Advance(out.len()));
        }
        return Ok(out);
    }
    let mut losses = Vec::with_capacity(n);
    for chunk in encoded.chunks(batch) {
        losses.extend(eval::answer_losses(model, codec.pad_id(), chunk, None)?);
    }
    for (i, (e, loss)) in task.test.iter().zip(losses).enumerate() {
        rec.check()?;
        let loss = eval::finite(loss, || format!("the test loss of example {}", i + 1))?;
        let prompt = codec.encode_prompt(e.system.as_deref(), &e.prompt)?;
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
        rec.emit(crate::run::event::RunEvent::Advance(i + 1));
    }
    Ok(out)
}
