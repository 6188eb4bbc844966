//! Exact match without decoding: on the lab, the teacher-forced verdict (every answer position and
//! the end token are the argmax) equals greedy generation's verdict on every example — for the
//! base model and with adapters folded in, on tasks it solves, half-solves and fails.

use candle_core::{DType, Device};

use loracycle::adapter::{Adapter, branches_for};
use loracycle::eval::{answer_scores, is_exact_match, read_jsonl};
use loracycle::lab::dir as lab_dir;
use loracycle::model::{Llama, Template, TextCodec, generate};

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
            let greedy = is_exact_match(&codec.decode_answer(&ids), &e.answer);
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
