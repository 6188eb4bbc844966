//! Files a stranger made, through the real binary: `inspect` reads headers only, a pool folder's
//! adapters are judged by their headers and values even without a base model, the verdict cache
//! knows which base it judged against, and names with escape sequences are printed harmless.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

const GOOD: &str = "tests/fixtures/adapters/qv-r4";

fn copy_good(to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(Path::new(GOOD).join(f), to.join(f)).unwrap();
    }
    to.to_path_buf()
}

fn run(args: &[&str], cache: &Path) -> (i32, String, String) {
    let out = Command::cargo_bin("loracycle")
        .unwrap()
        .env("LORACYCLE_CACHE_DIR", cache)
        .args(args)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sets the bytes of every value of the weights file (after its header) to `byte`.
fn overwrite_values(weights: &Path, byte: u8) {
    let mut b = std::fs::read(weights).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    for x in &mut b[8 + n..] {
        *x = byte;
    }
    std::fs::write(weights, b).unwrap();
}

#[test]
fn inspect_reads_headers_only_and_norms_read_the_values() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_good(&tmp.path().join("a"));
    // 0xff bytes are NaNs: only a read of the values can see them.
    overwrite_values(&dir.join("adapter_model.safetensors"), 0xff);
    let d = dir.to_str().unwrap();
    let (code, out, err) = run(&["inspect", d, "--json"], tmp.path());
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rank"], 4);
    assert_eq!(v["parameters"], 2 * 2 * (4 * 32 + 32 * 4) - 2 * 16 * 4);
    assert!(v.get("delta_norms").is_none());
    let (code, _, err) = run(&["inspect", d, "--norms"], tmp.path());
    assert_eq!(code, 1);
    assert!(
        err.contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight holds 128 NaN/Inf values"),
        "{err}"
    );
}

#[test]
fn a_pool_folder_is_judged_by_headers_and_values_without_a_base_model() {
    let tmp = tempfile::tempdir().unwrap();
    let pool = tmp.path().join("pool");
    copy_good(&pool.join("good"));
    // Truncated in the middle of its values.
    let cut = copy_good(&pool.join("cut"));
    let w = cut.join("adapter_model.safetensors");
    let b = std::fs::read(&w).unwrap();
    std::fs::write(&w, &b[..b.len() - 100]).unwrap();
    // All-zero values: B = 0, an untrained adapter.
    let zero = copy_good(&pool.join("zero"));
    overwrite_values(&zero.join("adapter_model.safetensors"), 0);
    // A name that would clear the screen.
    copy_good(&pool.join("evil\u{1b}[2J"));
    let source = format!("dir:{}", pool.display());
    let (code, out, err) = run(
        &["pool", "list", "--source", &source, "--json"],
        &tmp.path().join("meta"),
    );
    assert_eq!(code, 0, "{err}");
    let entries: Vec<Value> = serde_json::from_str(&out).unwrap();
    let status = |id: &str| {
        let e = entries.iter().find(|e| e["id"] == id).unwrap();
        let s = &e["status"];
        match s["state"].as_str().unwrap() {
            "usable" => String::new(),
            _ => format!(
                "{}: {}",
                s["rule"].as_str().unwrap_or("?"),
                s["reason"].as_str().unwrap_or("?")
            ),
        }
    };
    assert_eq!(status("good"), "");
    assert!(
        status("cut").starts_with("safetensors: adapter "),
        "{}",
        status("cut")
    );
    assert!(
        status("cut").contains("corrupt or truncated"),
        "{}",
        status("cut")
    );
    assert_eq!(
        status("zero"),
        "norm: ΔW is zero (B is all zeros: an untrained adapter)"
    );
    let (code, out, _) = run(
        &["pool", "list", "--source", &source],
        &tmp.path().join("meta"),
    );
    assert_eq!(code, 0);
    assert!(out.contains("evil?[2J"), "{out}");
    assert!(!out.contains('\u{1b}'), "{out}");
    assert!(out.contains("4 entries: 2 usable, 2 rejected"), "{out}");
}

#[test]
fn the_verdict_cache_knows_the_base_it_judged_against() {
    let tmp = tempfile::tempdir().unwrap();
    let pool = tmp.path().join("pool");
    copy_good(&pool.join("qv"));
    let source = format!("dir:{}", pool.display());
    let meta = tmp.path().join("meta");
    // A base with another hidden size: the same adapter no longer fits.
    let other = tmp.path().join("other-base");
    std::fs::create_dir_all(&other).unwrap();
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string("tests/fixtures/tiny/config.json").unwrap())
            .unwrap();
    cfg["hidden_size"] = Value::from(48);
    std::fs::write(other.join("config.json"), cfg.to_string()).unwrap();
    let list = |model: &str| {
        let (code, out, err) = run(
            &[
                "pool", "list", "--source", &source, "--model", model, "--json",
            ],
            &meta,
        );
        assert_eq!(code, 0, "{err}");
        let v: Vec<Value> = serde_json::from_str(&out).unwrap();
        v[0]["status"]["state"].clone()
    };
    assert_eq!(list("tests/fixtures/tiny"), "usable");
    let judged = list(other.to_str().unwrap());
    assert_ne!(judged, "usable", "{judged}");
    assert_eq!(list("tests/fixtures/tiny"), "usable");
}
