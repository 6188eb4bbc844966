//! The model's own chat template against transformers' `apply_chat_template`: a Llama 3.1-style
//! template in `chat_template.jinja` (system header with the date) and a ChatML template in
//! `tokenizer_config.json`, on rows with and without a system turn. The fixtures (made by
//! tests/fixtures/make_chat.py) also hold a Llama config in transformers 5's spelling (the llama3
//! rope scaling inside `rope_parameters`) and an adapter with large A and B.

use assert_cmd::Command;
use serde_json::Value;

const ROWS: &str = "tests/fixtures/chat/rows.jsonl";

fn golden(name: &str) -> Value {
    let p = format!("tests/fixtures/chat/{name}/golden.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// `loracycle eval --json --dump-tokens` on a fixture: (the report, the dumped lines).
fn eval(name: &str, template: &str, extra: &[&str]) -> (Value, Vec<Value>) {
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("ids.jsonl");
    let model = format!("tests/fixtures/chat/{name}");
    let out = Command::cargo_bin("loracycle")
        .unwrap()
        .env(
            "LORACYCLE_DATE_STRING",
            golden(name)["date_string"].as_str().unwrap(),
        )
        .args([
            "eval",
            "--model",
            &model,
            "--data",
            ROWS,
            "--template",
            template,
        ])
        .args(["--device", "cpu", "--json", "--dump-tokens"])
        .arg(&dump)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = serde_json::from_slice(&out.stdout).unwrap();
    let lines = std::fs::read_to_string(&dump)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (report, lines)
}

fn assert_losses(report: &Value, reference: &Value, what: &str) {
    let ours: Vec<f64> = report["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loss"].as_f64().unwrap())
        .collect();
    let theirs: Vec<f64> = reference
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(ours.len(), theirs.len());
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert!(
            (a - b).abs() / b < 1e-4,
            "{what} row {i}: {a} vs transformers {b}"
        );
    }
}

#[test]
fn dumped_ids_equal_apply_chat_template_for_both_templates() {
    for name in ["llama31", "chatml"] {
        let g = golden(name);
        for template in ["chat", "auto"] {
            let (report, lines) = eval(name, template, &[]);
            let rows = g["rows"].as_array().unwrap();
            assert_eq!(lines.len(), rows.len());
            for (i, (ours, theirs)) in lines.iter().zip(rows).enumerate() {
                assert_eq!(
                    ours["prompt_ids"], theirs["prompt_ids"],
                    "{name} {template} row {i}"
                );
                assert_eq!(
                    ours["answer_ids"], theirs["answer_ids"],
                    "{name} {template} row {i}"
                );
            }
            assert_losses(&report, &g["losses"]["base"], name);
        }
    }
}

#[test]
fn a_transformers_5_llama_with_a_large_adapter_matches() {
    let g = golden("llama31");
    let (report, _) = eval(
        "llama31",
        "chat",
        &["--adapter", "tests/fixtures/chat/llama31/adapter"],
    );
    assert_losses(&report, &g["losses"]["adapter"], "llama31 + adapter");
}

#[test]
fn chat_without_a_template_is_refused() {
    let out = Command::cargo_bin("loracycle")
        .unwrap()
        .args([
            "eval",
            "--model",
            "tests/fixtures/tiny",
            "--data",
            ROWS,
            "--template",
            "chat",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: template chat: the model has no chat template (chat_template.jinja, or chat_template in tokenizer_config.json)\n"
    );
}
