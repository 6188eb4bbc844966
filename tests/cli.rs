//! The `inspect` and `eval` commands end to end on the committed fixtures.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

const MODEL: &str = "tests/fixtures/tiny";
const DATA: &str = "tests/fixtures/data.jsonl";

fn golden() -> Value {
    serde_json::from_str(&std::fs::read_to_string("tests/fixtures/golden.json").unwrap()).unwrap()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("loracycle")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn eval_json(extra: &[&str]) -> Value {
    let mut args = vec![
        "eval", "--model", MODEL, "--data", DATA, "--device", "cpu", "--json",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn assert_losses(report: &Value, want: &Value) {
    let want_mean = want["mean_loss"].as_f64().unwrap();
    let mean = report["mean_loss"].as_f64().unwrap();
    assert!(
        ((mean - want_mean) / want_mean).abs() < 1e-4,
        "{mean} vs {want_mean}"
    );
    let examples = report["examples"].as_array().unwrap();
    let want = want["losses"].as_array().unwrap();
    assert_eq!(examples.len(), want.len());
    for (e, w) in examples.iter().zip(want) {
        let (a, b) = (e["loss"].as_f64().unwrap(), w.as_f64().unwrap());
        assert!(((a - b) / b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn eval_reproduces_reference_losses() {
    let g = golden();
    assert_losses(
        &eval_json(&["--template", "raw"]),
        &g["losses"]["raw"]["base"],
    );
    assert_losses(
        &eval_json(&["--template", "llama3"]),
        &g["losses"]["llama3"]["base"],
    );
    // auto resolves to llama3 on a tokenizer that has its special tokens
    assert_losses(&eval_json(&[]), &g["losses"]["llama3"]["base"]);
}

#[test]
fn eval_with_weighted_adapters_reproduces_reference_losses() {
    let g = golden();
    let report = eval_json(&[
        "--template",
        "raw",
        "--adapter",
        "tests/fixtures/adapters/qv-r4",
        "--adapter",
        "tests/fixtures/adapters/all-r8-rslora",
        "--adapter",
        "tests/fixtures/adapters/mlp-r2",
        "--weights",
        "0.7,-0.4,1.3",
    ]);
    assert_losses(&report, &g["losses"]["raw"]["weighted"]);
    let single = eval_json(&[
        "--template",
        "llama3",
        "--adapter",
        "tests/fixtures/adapters/qv-r4",
    ]);
    assert_losses(&single, &g["losses"]["llama3"]["qv-r4"]);
}

#[test]
fn eval_exact_match_uses_greedy_generations() {
    let g = golden();
    let report = eval_json(&[
        "--template",
        "raw",
        "--metric",
        "exact-match",
        "--max-new-tokens",
        "6",
    ]);
    let want = g["generation"]["raw.base"].as_array().unwrap();
    let examples = report["examples"].as_array().unwrap();
    for (e, w) in examples.iter().zip(want) {
        assert_eq!(e["prediction"], w["text"]);
        assert_eq!(e["correct"], Value::Bool(false));
        assert!(e.get("loss").is_none());
    }
    assert_eq!(report["exact_match"].as_f64(), Some(0.0));
}

/// A copy of the fixture data whose answers are `answer(text)` of the model's golden
/// generation for each prompt (llama3 template, adapter qv-r4).
fn data_from_generations(dir: &Path, answer: impl Fn(&str) -> String) -> std::path::PathBuf {
    let g = golden();
    let data = dir.join("answers.jsonl");
    let prompts: Vec<Value> = std::fs::read_to_string(DATA)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines: Vec<String> = prompts
        .iter()
        .zip(g["generation"]["llama3.qv-r4"].as_array().unwrap())
        .map(|(p, w)| {
            serde_json::json!({"prompt": p["prompt"], "answer": answer(w["text"].as_str().unwrap())})
                .to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    data
}

#[test]
fn eval_counts_a_generation_equal_to_the_answer_as_exact() {
    // A dataset whose answers are what the model generates: every example must score 1.
    let tmp = tempfile::tempdir().unwrap();
    let data = data_from_generations(tmp.path(), |text| format!("  {text} "));
    let (code, out, err) = run(&[
        "eval",
        "--model",
        MODEL,
        "--data",
        data.to_str().unwrap(),
        "--template",
        "llama3",
        "--adapter",
        "tests/fixtures/adapters/qv-r4",
        "--metric",
        "both",
        "--max-new-tokens",
        "6",
        "--device",
        "cpu",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    // generations that hit the token limit without an end token are still compared as text
    assert_eq!(report["exact_match"].as_f64(), Some(1.0), "{out}");
    assert!(report["mean_loss"].as_f64().unwrap() > 0.0);
}

#[test]
fn eval_reports_a_malformed_row_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("bad.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"a\", \"answer\": \"b\"}\n\n{\"prompt\": \"c\"}\n",
    )
    .unwrap();
    let (code, _, err) = run(&["eval", "--model", MODEL, "--data", data.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "error: {}:3: missing field `answer` at line 1 column 15\n",
            data.display()
        )
    );
}

#[test]
fn eval_checks_weights_against_adapters() {
    let (code, _, err) = run(&[
        "eval",
        "--model",
        MODEL,
        "--data",
        DATA,
        "--adapter",
        "tests/fixtures/adapters/qv-r4",
        "--weights",
        "0.5,0.5",
    ]);
    assert_eq!(code, 1);
    assert_eq!(err, "error: --weights has 2 values for 1 adapters\n");
}

#[test]
fn eval_refuses_llama3_template_without_its_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(Path::new(MODEL).join(f), model.join(f)).unwrap();
    }
    // the same tokenizer without <|start_header_id|>
    let tok = std::fs::read_to_string(Path::new(MODEL).join("tokenizer.json")).unwrap();
    std::fs::write(
        model.join("tokenizer.json"),
        tok.replace("<|start_header_id|>", "<|start_hdr|>"),
    )
    .unwrap();
    let (code, _, err) = run(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        DATA,
        "--template",
        "llama3",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: template llama3: the tokenizer lacks the template's special tokens (<|begin_of_text|> <|start_header_id|> <|end_header_id|> <|eot_id|>)\n"
    );
}

#[test]
fn inspect_model_json() {
    let (code, out, err) = run(&["inspect", MODEL, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "model");
    assert_eq!(v["layers"], 2);
    assert_eq!(v["hidden"], 32);
    assert_eq!(v["heads"], 4);
    assert_eq!(v["kv_heads"], 2);
    assert_eq!(v["vocab"], 50);
    assert_eq!(v["dtype"], serde_json::json!(["F32"]));
    // embed 50×32 + lm_head 50×32 + norm 32 + 2 × (q 32×32 + k,v 16×32 + o 32×32 + 3 × 32×64 + 2 norms)
    assert_eq!(
        v["parameters"],
        50 * 32 * 2 + 32 + 2 * (1024 * 2 + 512 * 2 + 3 * 2048 + 64)
    );
    assert_eq!(v["rope_scaling"], "llama3");
    assert_eq!(v["eos_token_ids"], serde_json::json!([4, 1]));
}

#[test]
fn inspect_adapter_json() {
    let (code, out, err) = run(&["inspect", "tests/fixtures/adapters/all-r8-rslora", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "adapter");
    assert_eq!(v["rank"], 8);
    assert_eq!(v["use_rslora"], true);
    assert!((v["scale"].as_f64().unwrap() - 16.0 / 8f64.sqrt()).abs() < 1e-12);
    assert_eq!(v["modules"].as_array().unwrap().len(), 7);
    // 2 layers × (q,o: 8×32+32×8; k,v: 8×32+16×8; gate,up: 8×32+64×8; down: 8×64+32×8)
    assert_eq!(v["parameters"], 2 * (2 * 512 + 2 * 384 + 2 * 768 + 768));
    assert_eq!(v["storage_dtype"], "F32");
    let (_, out, _) = run(&["inspect", "tests/fixtures/adapters/mlp-r2", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["storage_dtype"], "BF16");
    assert_eq!(
        v["modules"],
        serde_json::json!(["gate_proj", "up_proj", "down_proj"])
    );
}

#[test]
fn inspect_refuses_a_folder_that_is_neither() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&["inspect", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "error: {}: neither a model folder (config.json) nor an adapter folder (adapter_config.json)\n",
            tmp.path().display()
        )
    );
    let gone = tmp.path().join("gone");
    let (code, _, err) = run(&["inspect", gone.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!("error: {}: no such file or folder\n", gone.display())
    );
}

#[test]
fn without_a_terminal_the_ui_explains_and_shows_the_subcommands() {
    let out = Command::cargo_bin("loracycle").unwrap().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("Commands:\n  pool"), "{stdout}");
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "\nthe terminal UI needs a terminal; the subcommands above work without one\n"
    );
}

#[test]
fn the_ui_refuses_a_model_that_is_not_there() {
    let out = Command::cargo_bin("loracycle")
        .unwrap()
        .args(["--model", "/no/such/model"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: --model: model \"/no/such/model\" not found; looked in /no/such/model (a folder with config.json)\n"
    );
}

#[test]
fn a_closed_pipe_ends_a_listing_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_loracycle"))
        .args(["pool", "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader hangs up before the listing is printed, as `| head -0` would.
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(
        status.signal(),
        Some(13),
        "ended by SIGPIPE, as `cat` would be"
    );
}

/// The help texts and README name every method kind of the one list (`run::method::MethodKind`),
/// so a kind added there cannot go undocumented.
#[test]
fn help_and_readme_name_every_method_kind() {
    use loracycle::run::method::MethodKind;
    let (_, merge_help, _) = run(&["merge", "--help"]);
    let (_, run_help, _) = run(&["run", "--help"]);
    let readme = std::fs::read_to_string("README.md").unwrap();
    for k in MethodKind::ALL {
        let name = k.name();
        assert!(run_help.contains(name), "run --help lacks {name}");
        assert!(
            readme.contains(&format!("`{name}`")),
            "README lacks `{name}`"
        );
        if k.is_merge() {
            assert!(merge_help.contains(name), "merge --help lacks {name}");
        }
    }
}

#[test]
fn eval_judges_the_papers_way_and_counts_long_prompts() {
    // Answers written as a chain of thought in upper case, ending in what the model generates:
    // the paper's judging (text after ####, spaces removed, lower case) counts every one.
    let tmp = tempfile::tempdir().unwrap();
    let data = data_from_generations(tmp.path(), |text| {
        format!("Steps.\n#### {}.", text.to_uppercase())
    });
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--model",
            MODEL,
            "--data",
            data.to_str().unwrap(),
            "--template",
            "llama3",
            "--adapter",
            "tests/fixtures/adapters/qv-r4",
            "--metric",
            "exact-match",
            "--max-new-tokens",
            "6",
            "--device",
            "cpu",
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    assert_eq!(eval(&[])["exact_match"].as_f64(), Some(0.0));
    let paper = eval(&["--normalize", "paper", "--extract", "####"]);
    assert_eq!(paper["exact_match"].as_f64(), Some(1.0), "{paper}");
    assert!(paper.get("dropped").is_none());
    // Without the extraction the reasoning stays in the answer.
    let whole = eval(&["--normalize", "paper"]);
    assert_eq!(whole["exact_match"].as_f64(), Some(0.0));
    // A prompt cap below every prompt: nothing judged, all counted.
    let capped = eval(&[
        "--normalize",
        "paper",
        "--extract",
        "####",
        "--max-prompt-tokens",
        "2",
    ]);
    assert_eq!(capped["dropped"], 6);
    assert!(capped.get("exact_match").is_none(), "{capped}");
    let (code, out, _) = run(&[
        "eval",
        "--model",
        MODEL,
        "--data",
        data.to_str().unwrap(),
        "--template",
        "llama3",
        "--metric",
        "exact-match",
        "--max-prompt-tokens",
        "2",
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("dropped (long prompt)"), "{out}");
    assert!(
        out.trim_end()
            .ends_with("6 of 6 left out of exact match (prompt of 2 tokens or more)"),
        "{out}"
    );
}

#[test]
fn eval_and_merge_take_the_lab_and_its_pool_by_name() {
    let run = |args: &[&str]| {
        let o = Command::cargo_bin("loracycle")
            .unwrap()
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["mean_loss"].as_f64().unwrap()
    };
    let data = "assets/lab/tasks/caesar-5/test.jsonl";
    let by_name = run(&[
        "eval",
        "--model",
        "lab",
        "--adapter",
        "caesar-11",
        "--data",
        data,
        "--json",
    ]);
    let by_path = run(&[
        "eval",
        "--model",
        "assets/lab/base",
        "--adapter",
        "assets/lab/pool/caesar-11",
        "--data",
        data,
        "--json",
    ]);
    assert_eq!(by_name, by_path);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let o = Command::cargo_bin("loracycle")
        .unwrap()
        .args([
            "merge",
            "--model",
            "lab",
            "--adapter",
            "caesar-11",
            "--adapter",
            "caesar-12",
        ])
        .args(["--method", "average", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("adapter_config.json").is_file());
    let o = Command::cargo_bin("loracycle")
        .unwrap()
        .args(["eval", "--model", "/nowhere", "--data", data])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with(
            "error: --model: model \"/nowhere\" not found; looked in /nowhere (a folder with config.json)"
        ),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `loracycle bench agree` on the CPU: PEFT's reference losses of the fixtures to 1e-4, and bf16
/// within its tolerance of f32 (on a GPU the same command compares the device with the CPU).
#[test]
fn bench_agree_checks_losses_against_peft_and_bf16_against_f32() {
    let (code, out, err) = run(&["bench", "agree", "--device", "cpu"]);
    assert_eq!(code, 0, "{err}");
    let verdicts: Vec<(String, String, bool)> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["case"].as_str().unwrap().to_string(),
                v["compare"].as_str().unwrap().to_string(),
                v["pass"].as_bool().unwrap(),
            )
        })
        .collect();
    let want = [
        ("fixture tiny llama, base (raw)", "cpu f32 vs PEFT"),
        ("fixture tiny llama, base (raw)", "cpu bf16 vs cpu f32"),
        (
            "fixture tiny llama, 3 adapters weighted (raw)",
            "cpu f32 vs PEFT",
        ),
        (
            "fixture tiny llama, 3 adapters weighted (raw)",
            "cpu bf16 vs cpu f32",
        ),
        (
            "lab base + 3 pool adapters, caesar-5",
            "cpu bf16 vs cpu f32",
        ),
    ];
    assert_eq!(
        verdicts,
        want.map(|(c, k)| (c.to_string(), k.to_string(), true))
    );
    let (code, _, err) = run(&["bench", "nope"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: no benchmark \"nope\"; they are: forward, recycle, screen, llama8b, arrow, agree\n"
    );
}
