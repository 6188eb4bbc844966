//! The run's test stage: every test example's loss and verdict, one record row each.

use super::recorder::Recorder;
use super::{Result, RunError};
use crate::eval::{self, judge};
use crate::model::template::EncodedExample;
use crate::model::{Llama, TextCodec};
use crate::run::record::ExampleOutcome;
use crate::run::spec::RunSpec;
use crate::run::task::TaskData;

/// The test split judged under the task's scoring: answer loss and verdict per example, and the
/// number of examples dropped for a prompt at the scoring's token cap.
pub fn test_outcomes(
    model: &Llama,
    branches: Option<&crate::model::Branches>,
    codec: &TextCodec,
    task: &TaskData,
    spec: &RunSpec,
    rec: &mut Recorder<'_>,
) -> Result<(Vec<ExampleOutcome>, usize)> {
    let prompts =
        judge::prompts(codec, &task.test).map_err(|e| RunError::Task(format!("test {e}")))?;
    let kept: Vec<usize> = (0..task.test.len())
        .filter(|&i| !task.scoring.drops(prompts[i].len()))
        .collect();
    let dropped = task.test.len() - kept.len();
    if dropped > 0 {
        rec.log(format!(
            "{dropped} of {} test examples dropped: their prompt has {} tokens or more",
            task.test.len(),
            task.scoring.max_prompt_tokens.unwrap_or_default()
        ));
    }
    let examples: Vec<eval::Example> = kept.iter().map(|&i| task.test[i].clone()).collect();
    let prompts: Vec<Vec<u32>> = kept.iter().map(|&i| prompts[i].clone()).collect();
    if examples.is_empty() {
        return Err(RunError::Task(format!(
            "every test prompt of {} has {} tokens or more",
            task.name,
            task.scoring.max_prompt_tokens.unwrap_or_default()
        )));
    }
    rec.stage("evaluating on test", examples.len());
    let encoded: Vec<EncodedExample> = codec
        .encode_examples(
            examples
                .iter()
                .map(|e| (e.system.as_deref(), e.prompt.as_str(), e.answer.as_str())),
        )
        .map_err(|e| RunError::Task(format!("test {e}")))?;
    let cancel = rec.cancel();
    let judged = eval::judge(
        model,
        codec,
        &examples,
        &encoded,
        &prompts,
        &kept.iter().map(|&i| i + 1).collect::<Vec<_>>(),
        &task.scoring,
        branches,
        spec.eval.batch_size,
        true,
        &mut |n| rec.emit(crate::run::event::RunEvent::Advance(n)),
        cancel,
    )
    .map_err(|e| match e {
        eval::EvalError::NonFinite { what, value } => eval::EvalError::NonFinite {
            what: what.replacen("the loss", "the test loss", 1),
            value,
        },
        e => e,
    })?;
    let out = examples
        .into_iter()
        .zip(judged)
        .map(|(e, j)| ExampleOutcome {
            prompt: e.prompt,
            answer: e.answer,
            prediction: j.prediction,
            truncated: j.truncated,
            correct: j.correct,
            loss: j.loss,
        })
        .collect();
    Ok((out, dropped))
}
