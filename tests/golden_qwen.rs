//! Qwen3 and Qwen2 against transformers + peft: tiny random models saved by transformers 5 (their
//! own config spelling) with non-trivial norm weights and biases, two adapters with large values
//! (one on all seven modules, one on q and v). Made by tests/fixtures/make_qwen.py.

use std::path::Path;

use assert_cmd::Command;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use loracycle::eval;
use loracycle::model::{Batch, Llama, Template, TextCodec};

#[path = "support/logits.rs"]
mod logits;
use logits::logits_rel_err;

const TOL: f64 = 1e-4;
const ARCHES: [&str; 2] = ["qwen3", "qwen2"];

fn fixture(arch: &str) -> std::path::PathBuf {
    Path::new("tests/fixtures").join(arch)
}

fn golden(arch: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(arch).join("golden.json")).unwrap())
        .unwrap()
}

fn loracycle(args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("loracycle")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn eval_losses(arch: &str, extra: &[&str]) -> Vec<f64> {
    let model = fixture(arch).join("model");
    let mut args = vec![
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        "tests/fixtures/data.jsonl",
        "--template",
        "raw",
        "--device",
        "cpu",
        "--json",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = loracycle(&args);
    assert_eq!(code, 0, "{arch} {extra:?}: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["losses"]
        .as_array()
        .or(v["examples"].as_array())
        .unwrap()
        .iter()
        .map(|x| x.as_f64().or(x["loss"].as_f64()).unwrap())
        .collect()
}

fn assert_close(arch: &str, case: &str, ours: &[f64], reference: &Value) {
    let reference: Vec<f64> = reference
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(ours.len(), reference.len(), "{arch} {case}");
    for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
        assert!(
            (a - b).abs() / b.abs() < TOL,
            "{arch} {case} example {i}: {a} vs transformers {b}"
        );
    }
}

#[test]
fn eval_matches_transformers_alone_with_one_adapter_and_with_two_weighted() {
    for arch in ARCHES {
        let g = golden(arch);
        let adapter = |n: &str| fixture(arch).join("adapters").join(n);
        let (all, qv) = (adapter("all-r4"), adapter("qv-r8"));
        let (all, qv) = (all.to_str().unwrap(), qv.to_str().unwrap());
        assert_close(arch, "base", &eval_losses(arch, &[]), &g["losses"]["base"]);
        assert_close(
            arch,
            "all-r4",
            &eval_losses(arch, &["--adapter", all]),
            &g["losses"]["all-r4"],
        );
        assert_close(
            arch,
            "qv-r8",
            &eval_losses(arch, &["--adapter", qv]),
            &g["losses"]["qv-r8"],
        );
        assert_close(
            arch,
            "weighted",
            &eval_losses(
                arch,
                &["--adapter", all, "--adapter", qv, "--weights", "0.6,-0.8"],
            ),
            &g["losses"]["weighted"],
        );
    }
}

#[test]
fn logits_match_transformers_at_every_position() {
    for arch in ARCHES {
        let g = golden(arch);
        let dir = fixture(arch).join("model");
        let model = Llama::load(&dir, DType::F32, &Device::Cpu).unwrap();
        let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let codec = TextCodec::new(tok, Template::Raw, model.config()).unwrap();
        let row = &eval::read_jsonl(Path::new("tests/fixtures/data.jsonl")).unwrap()[0];
        let ex = codec
            .encode_example(None, &row.prompt, &row.answer)
            .unwrap();
        let batch = Batch::new(std::slice::from_ref(&ex.ids), 0, &Device::Cpu).unwrap();
        let ours = model.forward(&batch, None).unwrap();
        let reference: Vec<Vec<f32>> =
            serde_json::from_value(g["first_example_logits"]["base"].clone()).unwrap();
        let (t, v) = (reference.len(), reference[0].len());
        assert_eq!(t, ex.ids.len(), "{arch}");
        let reference = Tensor::from_vec(
            reference.into_iter().flatten().collect::<Vec<f32>>(),
            (1, t, v),
            &Device::Cpu,
        )
        .unwrap();
        let mask = Tensor::ones((1, t), DType::F32, &Device::Cpu).unwrap();
        let err = logits_rel_err(&ours, &reference, &mask);
        assert!(err < TOL, "{arch}: relative logit error {err}");
    }
}

#[test]
fn inspect_describes_qwen3_and_qwen2_folders() {
    let inspect = |arch: &str| -> Value {
        let dir = fixture(arch).join("model");
        let (code, out, err) = loracycle(&["inspect", dir.to_str().unwrap(), "--json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let q3 = inspect("qwen3");
    assert_eq!(q3["architecture"], "Qwen3ForCausalLM");
    assert_eq!(q3["qk_norm"], true);
    assert_eq!(q3["head_dim"], 16);
    assert_eq!(q3["heads"], 4);
    assert_eq!(q3["hidden"], 32);
    assert_eq!(q3["tied_embeddings"], true);
    assert_eq!(q3["rope_theta"], 1e6);
    assert_eq!(q3["biases"], serde_json::json!([]));
    let q2 = inspect("qwen2");
    assert_eq!(q2["architecture"], "Qwen2ForCausalLM");
    assert_eq!(q2["qk_norm"], false);
    assert_eq!(q2["tied_embeddings"], false);
    assert_eq!(
        q2["biases"],
        serde_json::json!(["q_proj", "k_proj", "v_proj"])
    );
}

#[test]
fn an_adapter_on_a_module_qwen3_lacks_is_refused_naming_the_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("norm-lora");
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("qwen3").join("adapters/qv-r8");
    std::fs::copy(
        src.join("adapter_config.json"),
        dir.join("adapter_config.json"),
    )
    .unwrap();
    let tensors =
        candle_core::safetensors::load(src.join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    let renamed: std::collections::HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, t)| {
            (
                k.replace("layers.0.self_attn.q_proj", "layers.0.self_attn.q_norm"),
                t,
            )
        })
        .collect();
    candle_core::safetensors::save(&renamed, dir.join("adapter_model.safetensors")).unwrap();
    let model = fixture("qwen3").join("model");
    let (code, _, err) = loracycle(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        "tests/fixtures/data.jsonl",
        "--template",
        "raw",
        "--adapter",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "error: adapter {}: tensor base_model.model.model.layers.0.self_attn.q_norm.lora_A.weight \
             adapts a module Qwen3ForCausalLM does not have or loracycle does not adapt (q_proj, \
             k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)\n",
            dir.display()
        )
    );
}

#[test]
fn a_run_with_a_qwen3_base_and_its_pool_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let task = tmp.path().join("task");
    std::fs::create_dir_all(&task).unwrap();
    for split in ["train", "validation", "test"] {
        std::fs::copy(
            "tests/fixtures/data.jsonl",
            task.join(format!("{split}.jsonl")),
        )
        .unwrap();
    }
    let root = std::fs::canonicalize("tests/fixtures/qwen3").unwrap();
    let spec = tmp.path().join("qwen.toml");
    std::fs::write(
        &spec,
        format!(
            r#"
seed = 1
[model]
base = "{model}"
template = "raw"
[pool]
source = "dir:{pool}"
[task]
train = "{task}/train.jsonl"
validation = "{task}/validation.jsonl"
test = "{task}/test.jsonl"
[selection]
strategy = "all"
[method]
kind = "gradient"
steps = 4
eval_every = 2
batch_size = 2
[eval]
bootstrap = 1
"#,
            model = root.join("model").display(),
            pool = root.join("adapters").display(),
            task = task.display(),
        ),
    )
    .unwrap();
    let runs = tmp.path().join("runs");
    let (code, out, err) = loracycle(&[
        "run",
        spec.to_str().unwrap(),
        "--json",
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let record: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let mut chosen: Vec<&str> = record["chosen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    chosen.sort();
    assert_eq!(chosen, ["all-r4", "qv-r8"], "{record}");
    assert_eq!(
        record["model"]["architecture"], "Qwen3ForCausalLM",
        "{record}"
    );
    let loss = record["metrics"]["loss"]["mean"].as_f64().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{record}");

    // Screening picks the adapter that does better alone (qv-r8 has the lower base-task loss),
    // a TIES merge of it runs, and the run exports as an adapter that evaluates as the run did.
    let text = std::fs::read_to_string(&spec).unwrap();
    let ties = text
        .replace(
            "strategy = \"all\"",
            "strategy = \"top-k\"\nk = 1\nby = \"loss\"",
        )
        .replace(
            "kind = \"gradient\"\nsteps = 4\neval_every = 2\nbatch_size = 2",
            "kind = \"ties\"",
        );
    let spec2 = tmp.path().join("ties.toml");
    std::fs::write(&spec2, ties).unwrap();
    let (code, out, err) = loracycle(&[
        "run",
        spec2.to_str().unwrap(),
        "--json",
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let record: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(record["chosen"].as_array().unwrap().len(), 1, "{record}");
    let name = record["chosen"][0]["name"].as_str().unwrap().to_string();
    let scores: Vec<f64> = ["all-r4", "qv-r8"]
        .iter()
        .map(|n| {
            let losses = eval_losses(
                "qwen3",
                &["--adapter", root.join("adapters").join(n).to_str().unwrap()],
            );
            losses.iter().sum::<f64>() / losses.len() as f64
        })
        .collect();
    let best = if scores[0] < scores[1] {
        "all-r4"
    } else {
        "qv-r8"
    };
    assert_eq!(name, best, "{scores:?}");
    let id = record["id"].as_str().unwrap().to_string();
    let export = tmp.path().join("export");
    let (code, _, err) = loracycle(&[
        "runs",
        "--runs-dir",
        runs.to_str().unwrap(),
        "export",
        &id,
        "--out",
        export.to_str().unwrap(),
        "--rank",
        "64",
    ]);
    assert_eq!(code, 0, "{err}");
    let losses = eval_losses("qwen3", &["--adapter", export.to_str().unwrap()]);
    let mean = losses.iter().sum::<f64>() / losses.len() as f64;
    let run_loss = record["metrics"]["loss"]["mean"].as_f64().unwrap();
    assert!(
        (mean - run_loss).abs() < 1e-3 * run_loss,
        "exported {mean} vs run {run_loss}"
    );
}

#[test]
fn a_llama_config_in_transformers_5_spelling_keeps_its_rope_scaling() {
    // The tiny Llama fixture's config with rope_theta and the llama3 scaling moved into
    // `rope_parameters`, as transformers 5 writes them: the losses must stay transformers'.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny-t5");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(Path::new("tests/fixtures/tiny").join(f), dir.join(f)).unwrap();
    }
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string("tests/fixtures/tiny/config.json").unwrap())
            .unwrap();
    let obj = cfg.as_object_mut().unwrap();
    let mut rope = obj.remove("rope_scaling").unwrap();
    rope["rope_theta"] = obj.remove("rope_theta").unwrap();
    obj.insert("rope_parameters".into(), rope);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string("tests/fixtures/golden.json").unwrap())
            .unwrap();
    let (code, out, err) = loracycle(&[
        "eval",
        "--model",
        dir.to_str().unwrap(),
        "--data",
        "tests/fixtures/data.jsonl",
        "--template",
        "raw",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let ours: Vec<f64> = v["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["loss"].as_f64().unwrap())
        .collect();
    assert_close(
        "llama (transformers 5 spelling)",
        "base",
        &ours,
        &golden["losses"]["raw"]["base"]["losses"],
    );
}

#[test]
fn auto_picks_chatml_for_a_tokenizer_with_its_tokens() {
    use tokenizers::models::wordlevel::WordLevel;
    let dir = fixture("qwen3").join("model");
    let words = ["<unk>", "user", "assistant", "big", "dog", "runs", "fast"];
    let vocab = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i as u32))
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token("<unk>".into())
        .build()
        .unwrap();
    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
    tok.add_special_tokens([
        tokenizers::AddedToken::from("<|im_start|>", true),
        tokenizers::AddedToken::from("<|im_end|>", true),
    ])
    .unwrap();
    let mut cfg = loracycle::model::weights::read_config(&dir).unwrap();
    cfg.vocab_size = 64;
    let codec = TextCodec::new(tok.clone(), Template::Auto, &cfg).unwrap();
    assert_eq!(codec.template(), Template::Chatml);
    let ex = codec.encode_example(None, "big dog", "runs fast").unwrap();
    let ids = |s: &str| tok.encode(s, false).unwrap().get_ids().to_vec();
    let prompt = ids("<|im_start|>user\nbig dog<|im_end|>\n<|im_start|>assistant\n");
    assert_eq!(&ex.ids[..ex.answer_start], &prompt[..]);
    assert_eq!(&ex.ids[ex.answer_start..], &ids("runs fast<|im_end|>")[..]);
    let end = tok.token_to_id("<|im_end|>").unwrap();
    assert!(codec.eos_ids().contains(&end));
}
