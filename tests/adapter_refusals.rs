//! Every adapter the loader must refuse, through the real binary: the exact message and exit code.
//! Each case starts from a copy of a valid fixture adapter and breaks one thing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

const MODEL: &str = "tests/fixtures/tiny";
const DATA: &str = "tests/fixtures/data.jsonl";
const GOOD: &str = "tests/fixtures/adapters/qv-r4";
const KEY_A0: &str = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";

fn copy_good(tmp: &Path) -> PathBuf {
    let dir = tmp.join("adapter");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(Path::new(GOOD).join(f), dir.join(f)).unwrap();
    }
    dir
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let p = dir.join("adapter_config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn edit_tensors(dir: &Path, f: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let p = dir.join("adapter_model.safetensors");
    let mut map: HashMap<String, Tensor> =
        candle_core::safetensors::load(&p, &Device::Cpu).unwrap();
    f(&mut map);
    candle_core::safetensors::save(&map, &p).unwrap();
}

/// Runs `loracycle eval` with the adapter and returns (exit code, stderr).
fn eval_with(dir: &Path) -> (i32, String) {
    let out = Command::cargo_bin("loracycle")
        .unwrap()
        .args([
            "eval",
            "--model",
            MODEL,
            "--data",
            DATA,
            "--template",
            "raw",
            "--device",
            "cpu",
        ])
        .arg("--adapter")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn assert_refused(dir: &Path, expected_tail: &str) {
    let (code, stderr) = eval_with(dir);
    let expected = format!("error: adapter {}: {expected_tail}\n", dir.display());
    assert_eq!(stderr, expected);
    assert_eq!(code, 1);
}

fn case(build: impl FnOnce(&Path), expected_tail: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_good(tmp.path());
    build(&dir);
    assert_refused(&dir, expected_tail);
}

#[test]
fn pickle_only_is_refused() {
    case(
        |d| {
            std::fs::remove_file(d.join("adapter_model.safetensors")).unwrap();
            std::fs::write(d.join("adapter_model.bin"), b"\x80\x04not really a pickle").unwrap();
        },
        "only adapter_model.bin (a pickle) is present; refused because loading a pickle can execute code — convert it to adapter_model.safetensors",
    );
}

#[test]
fn dora_is_refused() {
    case(
        |d| {
            edit_config(d, |c| {
                c.insert("use_dora".into(), true.into());
            })
        },
        "DoRA is not supported: use_dora is true",
    );
}

#[test]
fn modules_to_save_is_refused() {
    case(
        |d| {
            edit_config(d, |c| {
                c.insert("modules_to_save".into(), serde_json::json!(["lm_head"]));
            })
        },
        "modules_to_save is not supported: it trains full copies of [\"lm_head\"]",
    );
}

#[test]
fn bias_is_refused() {
    case(
        |d| {
            edit_config(d, |c| {
                c.insert("bias".into(), "lora_only".into());
            })
        },
        "bias is not supported: bias is \"lora_only\", only \"none\" is supported",
    );
}

#[test]
fn rank_pattern_is_refused() {
    case(
        |d| {
            edit_config(d, |c| {
                c.insert("rank_pattern".into(), serde_json::json!({"q_proj": 8}));
            })
        },
        "rank_pattern is not supported: {\"q_proj\":8}",
    );
}

#[test]
fn alpha_pattern_is_refused() {
    case(
        |d| {
            edit_config(d, |c| {
                c.insert("alpha_pattern".into(), serde_json::json!({"v_proj": 4}));
            })
        },
        "alpha_pattern is not supported: {\"v_proj\":4}",
    );
}

#[test]
fn layer_replication_is_refused() {
    case(
        |d| {
            edit_config(d, |c| {
                c.insert(
                    "layer_replication".into(),
                    serde_json::json!([[0, 2], [1, 2]]),
                );
            })
        },
        "layer_replication is not supported: [[0,2],[1,2]]",
    );
}

#[test]
fn config_that_is_not_json_is_refused() {
    case(
        |d| std::fs::write(d.join("adapter_config.json"), "r = 4\nlora_alpha = 8\n").unwrap(),
        "adapter_config.json is not valid: expected value at line 1 column 1",
    );
}

#[test]
fn missing_a_is_refused() {
    case(
        |d| {
            edit_tensors(d, |m| {
                m.remove(KEY_A0);
            })
        },
        "layer 0 q_proj has lora_B but no lora_A",
    );
}

#[test]
fn shape_that_does_not_fit_is_refused() {
    case(
        |d| {
            edit_tensors(d, |m| {
                m.insert(
                    KEY_A0.into(),
                    Tensor::zeros((4, 16), DType::F32, &Device::Cpu).unwrap(),
                );
            })
        },
        &format!(
            "tensor {KEY_A0} has shape [4, 16], expected [4, 32] for the base model at rank 4"
        ),
    );
}

#[test]
fn layer_beyond_the_base_model_is_refused() {
    case(
        |d| {
            edit_tensors(d, |m| {
                let a = m[KEY_A0].clone();
                m.insert(KEY_A0.replace("layers.0", "layers.7"), a);
            })
        },
        &format!(
            "tensor {} is for a layer the base model does not have (it has 2)",
            KEY_A0.replace("layers.0", "layers.7")
        ),
    );
}

#[test]
fn nan_weights_are_refused() {
    case(
        |d| {
            edit_tensors(d, |m| {
                let a = m[KEY_A0].to_dtype(DType::F32).unwrap();
                let mut v = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                v[3] = f32::NAN;
                v[7] = f32::INFINITY;
                m.insert(
                    KEY_A0.into(),
                    Tensor::from_vec(v, a.shape(), &Device::Cpu).unwrap(),
                );
            })
        },
        &format!("tensor {KEY_A0} holds 2 NaN/Inf values"),
    );
}

#[test]
fn truncated_safetensors_is_refused() {
    case(
        |d| {
            let p = d.join("adapter_model.safetensors");
            let bytes = std::fs::read(&p).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        },
        "adapter_model.safetensors is corrupt or truncated: incomplete metadata, file not fully covered",
    );
}

#[test]
fn different_base_model_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_good(tmp.path());
    edit_config(&dir, |c| {
        c.insert(
            "base_model_name_or_path".into(),
            "someone/other-model".into(),
        );
    });
    let (code, stderr) = eval_with(&dir);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "warning: adapter {} was trained on someone/other-model, not on loracycle-fixtures/tiny-llama\n",
            dir.display()
        )
    );
}

#[test]
fn integer_weights_are_refused() {
    case(
        |d| {
            edit_tensors(d, |m| {
                let t = m[KEY_A0].to_dtype(DType::U8).unwrap();
                m.insert(KEY_A0.into(), t);
            })
        },
        &format!("tensor {KEY_A0} is U8; LoRA weights are floating point (F16, BF16, F32 or F64)"),
    );
}

#[test]
fn tensors_of_modules_the_config_does_not_target_are_refused() {
    case(
        |d| edit_config(d, |c| c["target_modules"] = serde_json::json!(["v_proj"])),
        &format!(
            "tensor {KEY_A0} adapts q_proj, which adapter_config.json's target_modules does not name"
        ),
    );
}

#[test]
fn a_fifo_or_a_device_as_the_config_is_refused_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_good(tmp.path());
    let cfg = dir.join("adapter_config.json");
    std::fs::remove_file(&cfg).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&cfg)
            .status()
            .unwrap()
            .success()
    );
    assert_refused(
        &dir,
        &format!("cannot read {}: not a regular file (a FIFO)", cfg.display()),
    );
    std::fs::remove_file(&cfg).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &cfg).unwrap();
    assert_refused(
        &dir,
        &format!(
            "cannot read {}: not a regular file (a character device)",
            cfg.display()
        ),
    );
}
