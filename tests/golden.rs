//! Golden numerics: logits, losses and greedy generations against transformers + peft.
//! The fixtures and the script that made them are in tests/fixtures (see its README).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use serde_json::Value;

use loracycle::adapter::{self, Adapter};
use loracycle::eval::{self, answer_losses};
use loracycle::model::weights::{model_identity, read_config};
use loracycle::model::{Batch, Branches, Llama, Template, TextCodec, generate};

#[path = "support/logits.rs"]
mod logits;
use logits::logits_rel_err;

const FIX: &str = "tests/fixtures";
const CASES: [&str; 5] = ["base", "qv-r4", "all-r8-rslora", "mlp-r2", "weighted"];
const TOL: f64 = 1e-4;

struct Golden {
    tensors: HashMap<String, Tensor>,
    json: Value,
}

fn golden() -> Golden {
    Golden {
        tensors: candle_core::safetensors::load(
            Path::new(FIX).join("golden.safetensors"),
            &Device::Cpu,
        )
        .unwrap(),
        json: serde_json::from_str(
            &std::fs::read_to_string(Path::new(FIX).join("golden.json")).unwrap(),
        )
        .unwrap(),
    }
}

fn load_adapters(cfg: &loracycle::model::LlamaConfig) -> Vec<Adapter> {
    ["qv-r4", "all-r8-rslora", "mlp-r2"]
        .iter()
        .map(|n| {
            Adapter::load(
                &Path::new(FIX).join("adapters").join(n),
                Some((cfg, Some("loracycle-fixtures/tiny-llama"))),
            )
            .unwrap()
        })
        .collect()
}

/// The side branches of one golden case.
fn branches_for_case(case: &str, model: &Llama, adapters: &[Adapter]) -> Option<Branches> {
    let sources: Vec<(&Adapter, f64)> = match case {
        "base" => return None,
        "qv-r4" => vec![(&adapters[0], 1.0)],
        "all-r8-rslora" => vec![(&adapters[1], 1.0)],
        "mlp-r2" => vec![(&adapters[2], 1.0)],
        "weighted" => vec![
            (&adapters[0], 0.7),
            (&adapters[1], -0.4),
            (&adapters[2], 1.3),
        ],
        _ => unreachable!(),
    };
    Some(adapter::branches_for(&sources, model.config(), DType::F32, &Device::Cpu).unwrap())
}

fn examples() -> Vec<eval::Example> {
    eval::read_jsonl(&Path::new(FIX).join("data.jsonl")).unwrap()
}

fn encoded(codec: &TextCodec) -> Vec<loracycle::model::template::EncodedExample> {
    examples()
        .iter()
        .map(|e| {
            codec
                .encode_example(e.system.as_deref(), &e.prompt, &e.answer)
                .unwrap()
        })
        .collect()
}

fn tiny(template: Template) -> (Llama, TextCodec) {
    let dir = Path::new(FIX).join("tiny");
    let cfg = read_config(&dir).unwrap();
    let codec = TextCodec::load(&dir, template, &cfg).unwrap();
    (Llama::load(&dir, DType::F32, &Device::Cpu).unwrap(), codec)
}

#[test]
fn templates_tokenize_like_the_reference() {
    let g = golden();
    for (name, template) in [("raw", Template::Raw), ("llama3", Template::Llama3)] {
        let (_, codec) = tiny(template);
        let ids = g.tensors[&format!("input_ids.{name}")]
            .to_dtype(DType::I64)
            .unwrap();
        let answer = g.tensors[&format!("answer_mask.{name}")]
            .to_dtype(DType::I64)
            .unwrap();
        for (i, e) in encoded(&codec).iter().enumerate() {
            let row: Vec<i64> = ids.i(i).unwrap().to_vec1().unwrap();
            let ans: Vec<i64> = answer.i(i).unwrap().to_vec1().unwrap();
            let ours: Vec<i64> = e.ids.iter().map(|&x| x as i64).collect();
            assert_eq!(&row[..ours.len()], &ours[..], "{name} row {i}");
            let first_answer = ans.iter().position(|&a| a == 1).unwrap();
            assert_eq!(first_answer, e.answer_start, "{name} row {i} answer start");
            assert_eq!(
                ans.iter().filter(|&&a| a == 1).count(),
                ours.len() - e.answer_start
            );
        }
    }
    // auto picks llama3 because the fixture tokenizer has its special tokens.
    assert_eq!(tiny(Template::Auto).1.template(), Template::Llama3);
}

#[test]
fn logits_and_losses_match_peft_for_every_case() {
    let g = golden();
    for (name, template) in [("raw", Template::Raw), ("llama3", Template::Llama3)] {
        let (model, codec) = tiny(template);
        let adapters = load_adapters(model.config());
        let enc = encoded(&codec);
        let rows: Vec<Vec<u32>> = enc.iter().map(|e| e.ids.clone()).collect();
        let batch = Batch::new(&rows, codec.pad_id(), &Device::Cpu).unwrap();
        let mask = &g.tensors[&format!("attention_mask.{name}")];
        for case in CASES {
            let branches = branches_for_case(case, &model, &adapters);
            let logits = model.forward(&batch, branches.as_ref()).unwrap();
            let reference = &g.tensors[&format!("logits.{name}.{case}")];
            let err = logits_rel_err(&logits, reference, mask);
            assert!(err <= TOL, "{name}/{case}: logits relative error {err:.3e}");

            let losses = answer_losses(&model, codec.pad_id(), &enc, branches.as_ref()).unwrap();
            let want: Vec<f64> =
                serde_json::from_value(g.json["losses"][name][case]["losses"].clone()).unwrap();
            for (i, (a, b)) in losses.iter().zip(&want).enumerate() {
                assert!(
                    ((a - b) / b).abs() <= TOL,
                    "{name}/{case} example {i}: loss {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn folding_branches_into_w_gives_the_same_logits() {
    let g = golden();
    let (model, codec) = tiny(Template::Raw);
    let adapters = load_adapters(model.config());
    let branches = branches_for_case("weighted", &model, &adapters).unwrap();
    let folded = model.fold(&branches).unwrap();
    let rows: Vec<Vec<u32>> = encoded(&codec).iter().map(|e| e.ids.clone()).collect();
    let batch = Batch::new(&rows, codec.pad_id(), &Device::Cpu).unwrap();
    let logits = folded.forward(&batch, None).unwrap();
    let err = logits_rel_err(
        &logits,
        &g.tensors["logits.raw.weighted"],
        &g.tensors["attention_mask.raw"],
    );
    assert!(err <= TOL, "folded: {err:.3e}");
}

#[test]
fn differentiable_ops_give_the_same_logits() {
    // Tuning uses composed ops (candle's fused kernels drop gradients); they must agree.
    let g = golden();
    let (mut model, codec) = tiny(Template::Llama3);
    model.set_differentiable(true);
    let adapters = load_adapters(model.config());
    let branches = branches_for_case("weighted", &model, &adapters).unwrap();
    let rows: Vec<Vec<u32>> = encoded(&codec).iter().map(|e| e.ids.clone()).collect();
    let batch = Batch::new(&rows, codec.pad_id(), &Device::Cpu).unwrap();
    let logits = model.forward(&batch, Some(&branches)).unwrap();
    let err = logits_rel_err(
        &logits,
        &g.tensors["logits.llama3.weighted"],
        &g.tensors["attention_mask.llama3"],
    );
    assert!(err <= TOL, "differentiable: {err:.3e}");
}

#[test]
fn tied_sharded_f16_model_matches() {
    let g = golden();
    let dir = Path::new(FIX).join("tiny-tied");
    let cfg = read_config(&dir).unwrap();
    assert!(cfg.tie_word_embeddings);
    let codec = TextCodec::load(&dir, Template::Raw, &cfg).unwrap();
    let model = Llama::load(&dir, DType::F32, &Device::Cpu).unwrap();
    let rows: Vec<Vec<u32>> = encoded(&codec).iter().map(|e| e.ids.clone()).collect();
    let batch = Batch::new(&rows, codec.pad_id(), &Device::Cpu).unwrap();
    let logits = model.forward(&batch, None).unwrap();
    let err = logits_rel_err(
        &logits,
        &g.tensors["logits.raw.tied-base"],
        &g.tensors["attention_mask.raw"],
    );
    assert!(err <= TOL, "tied: {err:.3e}");
}

#[test]
fn greedy_generation_matches_transformers() {
    let g = golden();
    let gen_cfg = &g.json["generation"];
    let max_new = gen_cfg["max_new_tokens"].as_u64().unwrap() as usize;
    for (key, template, case) in [
        ("raw.base", Template::Raw, "base"),
        ("llama3.qv-r4", Template::Llama3, "qv-r4"),
    ] {
        let (model, codec) = tiny(template);
        let adapters = load_adapters(model.config());
        let branches = branches_for_case(case, &model, &adapters);
        let eos: Vec<u32> = serde_json::from_value(gen_cfg["eos_token_id"].clone()).unwrap();
        for (i, want) in gen_cfg[key].as_array().unwrap().iter().enumerate() {
            let prompt: Vec<u32> = serde_json::from_value(want["prompt_ids"].clone()).unwrap();
            let expected: Vec<u32> = serde_json::from_value(want["new_token_ids"].clone()).unwrap();
            let ours = generate::greedy(&model, &prompt, max_new, &eos, branches.as_ref()).unwrap();
            assert_eq!(ours, expected, "{key} example {i}");
            let text = codec.decode_answer(&ours);
            assert_eq!(
                text,
                want["text"].as_str().unwrap(),
                "{key} example {i} text"
            );
        }
    }
}

#[test]
fn fixture_model_identity_comes_from_its_config() {
    let dir = Path::new(FIX).join("tiny");
    let cfg = read_config(&dir).unwrap();
    assert_eq!(
        model_identity(&dir, &cfg).as_deref(),
        Some("loracycle-fixtures/tiny-llama")
    );
}
