//! Exact match without decoding: on the lab, the teacher-forced verdict (every answer position and
//! the end token are the argmax) equals greedy generation's verdict on every example — for the
//! base model and with adapters folded in, on tasks it solves, half-solves and fails.

use candle_core::{DType, Device};

use loracycle::adapter::{Adapter, branches_for};
use loracycle::eval::{Extract, Normalize, Scoring, answer_scores, judge, read_jsonl};
use loracycle::lab::dir as lab_dir;
use loracycle::model::{Llama, Template, TextCodec, generate};

const EXACT: Scoring = Scoring {
    max_new_tokens: 48,
    extract: Extract::Whole,
    normalize: Normalize::Exact,
    max_prompt_tokens: None,
};

#[test]
fn teacher_forced_exact_match_equals_greedy_generation() {
    let dir = lab_dir().unwrap();
    let base = dir.join("base");
    let cfg = loracycle::model::weights::read_config(&base).unwrap();
    let codec = TextCodec::load(&base, Template::Lab, &cfg).unwrap();
    let model = Llama::load(&base, DType::F32, &Device::Cpu).unwrap();
    let (mut hits, mut misses) = (0, 0);
    for (task, adapter) in [
        ("caesar-5", None),
        ("caesar-5", Some("oracle/caesar-5")),
        ("which-is-smaller", Some("pool/which-is-shorter")),
        ("run-length", Some("oracle/run-length")),
        ("add-mod-9", Some("pool/add-mod-8")),
    ] {
        let m = match adapter {
            None => model.clone(),
            Some(a) => {
                let ad = Adapter::load(&dir.join(a), Some((&cfg, None))).unwrap();
                let br = branches_for(&[(&ad, 1.0)], &cfg, DType::F32, &Device::Cpu).unwrap();
                model.fold(&br).unwrap()
            }
        };
        let rows = read_jsonl(&dir.join("tasks").join(task).join("test.jsonl")).unwrap();
        let enc: Vec<_> = rows
            .iter()
            .map(|e| {
                codec
                    .encode_example(e.system.as_deref(), &e.prompt, &e.answer)
                    .unwrap()
            })
            .collect();
        let (forced, _) = answer_scores(&m, codec.pad_id(), &enc, None).unwrap();
        for (i, e) in rows.iter().enumerate() {
            let prompt = codec.encode_prompt(e.system.as_deref(), &e.prompt).unwrap();
            let ids = generate::greedy(&m, &prompt, 48, codec.eos_ids(), None).unwrap();
            let greedy = EXACT.matches(&codec.decode_answer(&ids), &e.answer);
            assert_eq!(
                forced[i], greedy,
                "{task} with {adapter:?}, example {i}: {:?}",
                e.prompt
            );
            if greedy {
                hits += 1;
            } else {
                misses += 1;
            }
        }
    }
    assert!(
        hits > 100 && misses > 100,
        "both verdicts are exercised: {hits} hits, {misses} misses"
    );
}

/// Under a loose scoring (the paper's: spaces removed, lower case, text after `####`), judging
/// generates only where teacher forcing misses; its verdicts equal generating every example.
#[test]
fn judging_generates_only_the_misses_and_agrees_with_generating_all() {
    let dir = lab_dir().unwrap();
    let base = dir.join("base");
    let cfg = loracycle::model::weights::read_config(&base).unwrap();
    let codec = TextCodec::load(&base, Template::Lab, &cfg).unwrap();
    let model = Llama::load(&base, DType::F32, &Device::Cpu).unwrap();
    let ad = Adapter::load(&dir.join("oracle/run-length"), Some((&cfg, None))).unwrap();
    let br = branches_for(&[(&ad, 1.0)], &cfg, DType::F32, &Device::Cpu).unwrap();
    let m = model.fold(&br).unwrap();
    let mut rows = read_jsonl(&dir.join("tasks/run-length/test.jsonl")).unwrap();
    rows.truncate(40);
    let originals = rows.clone();
    // Upper-case answers: a generation in lower case is a paper match but not a strict one.
    for r in rows.iter_mut().skip(20) {
        r.answer = format!("WORK #### {}", r.answer.to_uppercase());
    }
    let paper = Scoring {
        max_new_tokens: 48,
        extract: Extract::AfterMarker,
        normalize: Normalize::Paper,
        max_prompt_tokens: None,
    };
    let enc = codec
        .encode_examples(
            rows.iter()
                .map(|e| (None, e.prompt.as_str(), e.answer.as_str())),
        )
        .unwrap();
    let prompts = loracycle::eval::judge::prompts(&codec, &rows).unwrap();
    let mut batches = Vec::new();
    let judged = judge(
        &m,
        &codec,
        &rows,
        &enc,
        &prompts,
        &(1..=rows.len()).collect::<Vec<_>>(),
        &paper,
        None,
        16,
        false,
        &mut |n| batches.push(n),
        None,
    )
    .unwrap();
    assert_eq!(batches, [16, 32, 40]);
    let mut generated = 0;
    for (i, (e, j)) in rows.iter().zip(&judged).enumerate() {
        let ids = generate::greedy(&m, &prompts[i], 48, codec.eos_ids(), None).unwrap();
        let text = codec.decode_answer(&ids);
        assert_eq!(
            j.correct,
            paper.matches(&text, &e.answer),
            "example {i}: {text:?}"
        );
        if j.generated {
            generated += 1;
            assert_eq!(j.prediction, text);
        } else {
            assert!(j.correct, "only reproduced answers skip generation");
        }
    }
    // The rewritten rows match exactly where the generation is the original (lower-case) answer.
    let strict_hits = (20..40)
        .filter(|&i| {
            let ids = generate::greedy(&m, &prompts[i], 48, codec.eos_ids(), None).unwrap();
            codec.decode_answer(&ids) == originals[i].answer
        })
        .count();
    let hits = judged[20..].iter().filter(|j| j.correct).count();
    assert!(
        generated >= 20,
        "the rewritten answers are generated: {generated}"
    );
    assert!(strict_hits > 0, "the adapter solves some of them");
    assert_eq!(
        hits, strict_hits,
        "lower-case generations match upper-case answers after the marker"
    );
}
