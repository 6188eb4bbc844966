//! `loracycle lab build --quick`: a miniature lab, built twice with the same seed. Its adapters
//! must load through the ordinary PEFT loader and beat the base on their own tasks, and the two
//! builds — the second killed during pretraining and resumed — must be byte-identical.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

fn build(out: &Path) {
    let output = Command::cargo_bin("loracycle")
        .unwrap()
        .args(["lab", "build", "--quick", "--seed", "3", "--out"])
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("3 pool adapters (0 dropped), 2 oracle adapters, 2 held-out tasks"),
        "{stderr}"
    );
}

/// (path, sha256) lines of the MANIFEST.
fn manifest_files(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("MANIFEST")).unwrap();
    assert!(
        text.contains("command: loracycle lab build --seed 3 --out"),
        "{text}"
    );
    text.lines()
        .filter(|l| l.len() > 64 && l.as_bytes()[64] == b' ')
        .map(str::to_string)
        .collect()
}

#[test]
fn quick_lab_builds_deterministically_with_useful_adapters() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    build(&a);

    let card: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("lab.json")).unwrap()).unwrap();
    let pool = card["pool"].as_array().unwrap();
    assert_eq!(pool.len(), 3);
    for p in pool {
        let (loss, base) = (
            p["loss"].as_f64().unwrap(),
            p["base_loss"].as_f64().unwrap(),
        );
        assert!(
            loss < 0.75 * base,
            "{}: own-task loss {loss} vs base {base}",
            p["name"]
        );
        assert!(
            p["accuracy"].as_f64().unwrap() >= p["base_accuracy"].as_f64().unwrap(),
            "{p}"
        );
    }
    // every adapter is an ordinary PEFT folder the loader accepts against the lab base
    for dir in [
        "pool/contains-a",
        "pool/has-even-length",
        "pool/double",
        "oracle/caesar-5",
        "oracle/table-m",
    ] {
        let out = Command::cargo_bin("loracycle")
            .unwrap()
            .args(["inspect", "--json"])
            .arg(a.join(dir))
            .output()
            .unwrap();
        assert!(out.status.success(), "{dir}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["base_model"], "loracycle/lab-base", "{dir}");
        assert_eq!(v["storage_dtype"], "F16", "{dir}");
    }
    for split in ["train", "validation", "test"] {
        let n = std::fs::read_to_string(a.join("tasks/caesar-5").join(format!("{split}.jsonl")))
            .unwrap()
            .lines()
            .count();
        assert_eq!(
            n,
            [("train", 80), ("validation", 20), ("test", 100)]
                .iter()
                .find(|s| s.0 == split)
                .unwrap()
                .1
        );
    }
    // eval on a held-out task through the model folder the build wrote
    let out = Command::cargo_bin("loracycle")
        .unwrap()
        .args([
            "eval",
            "--json",
            "--metric",
            "both",
            "--max-new-tokens",
            "24",
            "--model",
        ])
        .arg(a.join("base"))
        .arg("--data")
        .arg(a.join("tasks/caesar-5/validation.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["examples"].as_array().unwrap().len(), 20);

    build(&b);
    assert_eq!(
        manifest_files(&a),
        manifest_files(&b),
        "same seed, same bytes"
    );
}
