//! Seeded mutations of adapters and model configs through every CLI entry point that reads them
//! (`inspect`, `eval`, `pool list --source dir:`, `pool check`): each ends with exit 0 or 1 and a
//! message, never a panic, a signal or a hang. The seed is fixed so a failure names its case; set
//! `LORACYCLE_FUZZ_SEED` to explore others.

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const GOOD: &str = "tests/fixtures/adapters/all-r8-rslora";
const MODEL: &str = "tests/fixtures/tiny";
const DATA: &str = "tests/fixtures/data.jsonl";

fn seed() -> u64 {
    std::env::var("LORACYCLE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261201)
}

/// Values that break parsers and allocators.
fn nasty(rng: &mut ChaCha8Rng) -> Value {
    let pick = [
        Value::from(0),
        Value::from(-1),
        Value::from(1u64 << 40),
        Value::from(u64::MAX),
        serde_json::json!(1e300),
        serde_json::json!(-1e-300),
        Value::from("nan"),
        Value::from(""),
        Value::Null,
        serde_json::json!([]),
        serde_json::json!({}),
        Value::from(true),
        Value::from("\u{1b}[2J"),
        Value::from("../../etc/passwd"),
    ];
    pick[rng.random_range(0..pick.len())].clone()
}

/// One mutation of a JSON object: a key's value replaced, a key removed, or the text cut or
/// flipped.
fn mutate_json(text: &str, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(text).unwrap();
    match rng.random_range(0..5) {
        0 | 1 => {
            let obj = v.as_object_mut().unwrap();
            let keys: Vec<String> = obj.keys().cloned().collect();
            let k = &keys[rng.random_range(0..keys.len())];
            obj.insert(k.clone(), nasty(rng));
            serde_json::to_vec(&v).unwrap()
        }
        2 => {
            let obj = v.as_object_mut().unwrap();
            let keys: Vec<String> = obj.keys().cloned().collect();
            obj.remove(&keys[rng.random_range(0..keys.len())]);
            serde_json::to_vec(&v).unwrap()
        }
        3 => {
            let b = text.as_bytes();
            b[..rng.random_range(0..b.len())].to_vec()
        }
        _ => {
            let mut b = text.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            b
        }
    }
}

/// One mutation of a safetensors file: bytes of the header or of the values flipped, the file
/// cut, or the header's length prefix changed.
fn mutate_safetensors(bytes: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    match rng.random_range(0..5) {
        0 => {
            for _ in 0..rng.random_range(1..6) {
                let i = 8 + rng.random_range(0..n);
                b[i] = rng.random();
            }
        }
        1 => {
            for _ in 0..rng.random_range(1..64) {
                let i = 8 + n + rng.random_range(0..b.len() - 8 - n);
                b[i] = rng.random();
            }
        }
        2 => b.truncate(rng.random_range(0..b.len())),
        3 => {
            let fake: u64 = match rng.random_range(0..3) {
                0 => u64::MAX,
                1 => (n as u64) + rng.random_range(1..1000),
                _ => rng.random_range(0..n as u64),
            };
            b[..8].copy_from_slice(&fake.to_le_bytes());
        }
        _ => {
            // Every dtype in the header turned into another one.
            let header = String::from_utf8_lossy(&b[8..8 + n]).into_owned();
            let to = ["U8", "I32", "U32", "F64", "BOOL", "F8_E4M3", "X"][rng.random_range(0..7)];
            let h = header.replace("\"F32\"", &format!("\"{to}\""));
            let mut out = (h.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(&b[8 + n..]);
            b = out;
        }
    }
    b
}

/// Runs loracycle; fails the test on a panic, a signal or a hang.
fn run(args: &[&str], case: &str) -> i32 {
    let out = Command::cargo_bin("loracycle")
        .unwrap()
        .env(
            "LORACYCLE_CACHE_DIR",
            std::env::temp_dir().join("loracycle-fuzz-meta"),
        )
        .env("HF_HUB_OFFLINE", "1")
        .args(args)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 1)) && !err.contains("panicked"),
        "{case}: {args:?} ended with {:?}: {err}",
        out.status
    );
    code.unwrap()
}

/// `eval` of `adapter` on `model` over the fixture data.
fn eval_args<'a>(model: &'a str, adapter: &'a str) -> [&'a str; 11] {
    [
        "eval",
        "--model",
        model,
        "--data",
        DATA,
        "--template",
        "raw",
        "--device",
        "cpu",
        "--adapter",
        adapter,
    ]
}

fn write_adapter(dir: &Path, config: &[u8], weights: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("adapter_config.json"), config).unwrap();
    std::fs::write(dir.join("adapter_model.safetensors"), weights).unwrap();
}

#[test]
fn mutated_adapters_end_in_a_message_on_every_entry_point() {
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    let tmp = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(Path::new(GOOD).join("adapter_config.json")).unwrap();
    let weights = std::fs::read(Path::new(GOOD).join("adapter_model.safetensors")).unwrap();
    let pool = tmp.path().join("pool");
    let mut dirs: Vec<PathBuf> = Vec::new();
    for i in 0..160 {
        let dir = pool.join(format!("m{i:03}"));
        let (c, w) = match i % 3 {
            0 => (mutate_json(&config, &mut rng), weights.clone()),
            1 => (
                config.clone().into_bytes(),
                mutate_safetensors(&weights, &mut rng),
            ),
            _ => (
                mutate_json(&config, &mut rng),
                mutate_safetensors(&weights, &mut rng),
            ),
        };
        write_adapter(&dir, &c, &w);
        dirs.push(dir);
    }
    let mut refused = 0;
    for (i, d) in dirs.iter().enumerate() {
        let d = d.to_str().unwrap();
        let case = format!("adapter m{i:03} (seed {})", seed());
        refused += run(&["inspect", d], &case);
        if i % 4 == 0 {
            run(&eval_args(MODEL, d), &case);
        }
        if i % 8 == 0 {
            run(&["pool", "check", d, "--model", MODEL], &case);
        }
    }
    // Most mutations break something; a fuzzer whose cases all pass tests nothing.
    assert!(refused > 80, "only {refused} of 160 mutations were refused");
    let source = format!("dir:{}", pool.display());
    run(&["pool", "list", "--source", &source], "pool list");
    run(
        &["pool", "list", "--source", &source, "--model", MODEL],
        "pool list --model",
    );
}

#[test]
fn mutated_model_configs_end_in_a_message_on_every_entry_point() {
    let mut rng = ChaCha8Rng::seed_from_u64(seed() ^ 0x5eed);
    let tmp = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(Path::new(MODEL).join("config.json")).unwrap();
    let mut refused = 0;
    // Every size that drives an allocation, at every extreme; then random mutations.
    let keys = [
        "num_hidden_layers",
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "vocab_size",
        "max_position_embeddings",
        "rope_theta",
        "rms_norm_eps",
    ];
    let extremes = [
        Value::from(0),
        Value::from(-1),
        Value::from(1u64 << 40),
        Value::from(u64::MAX),
        serde_json::json!(1e300),
        Value::from("nan"),
        Value::Null,
    ];
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for k in keys {
        for x in &extremes {
            let mut v: Value = serde_json::from_str(&config).unwrap();
            v[k] = x.clone();
            cases.push(serde_json::to_vec(&v).unwrap());
        }
    }
    for _ in 0..40 {
        cases.push(mutate_json(&config, &mut rng));
    }
    for (i, text) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("model{i:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["model.safetensors", "tokenizer.json"] {
            std::os::unix::fs::symlink(
                std::fs::canonicalize(Path::new(MODEL).join(f)).unwrap(),
                dir.join(f),
            )
            .unwrap();
        }
        std::fs::write(dir.join("config.json"), text).unwrap();
        let d = dir.to_str().unwrap();
        let case = format!("model config {i:03} (seed {})", seed());
        refused += run(&["inspect", d], &case);
        run(&eval_args(d, GOOD), &case);
    }
    assert!(
        refused > 60,
        "only {refused} of {} mutations were refused",
        cases.len()
    );
}
