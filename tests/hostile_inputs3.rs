//! Hostile inputs, third round, through the real binary: a pull killed mid-download, weights that
//! are not a whole safetensors file, a listing that must not read a big adapter's values, adapter
//! configs and models that were accepted though broken, a manual selection naming an adapter twice
//! or one the pool refuses, `bootstrap = 0`, `--max-parallel 0`, and the Hub's 403 and dataset
//! listing messages. Each ends in its own message naming the file or field; nothing is kept.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use candle_core::{Device, Tensor};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const CONFIG_ETAG: &str = "89abcdef0123456789abcdef0123456789abcdef";
/// A git blob id: an ETag that is no SHA-256, so nothing checks the bytes against a hash.
const GIT_ETAG: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";
const GOOD: &str = "tests/fixtures/adapters/qv-r4";
const MODEL: &str = "tests/fixtures/tiny";
const DATA: &str = "tests/fixtures/data.jsonl";

// ---------------------------------------------------------------------------------------------
// A fake Hub on 127.0.0.1.

enum Answer {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Headers announcing `len` bytes, the bytes of `sent`, then nothing for a minute.
    Stall {
        headers: Vec<(String, String)>,
        sent: Vec<u8>,
        len: usize,
    },
}

fn headers(h: &[(&str, &str)]) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn full(status: u16, h: &[(&str, &str)], body: &[u8]) -> Answer {
    Answer::Full {
        status,
        headers: headers(h),
        body: body.to_vec(),
    }
}

struct Dribble(Cursor<Vec<u8>>);

impl Read for Dribble {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        if n == 0 {
            std::thread::sleep(Duration::from_secs(60));
        }
        Ok(n)
    }
}

/// Serves `route(path)` on a free port; returns the endpoint.
fn serve(route: impl Fn(&str) -> Answer + Send + Sync + 'static) -> String {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!(
        "http://127.0.0.1:{}",
        server.server_addr().to_ip().unwrap().port()
    );
    let route = Arc::new(route);
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let route = route.clone();
            std::thread::spawn(move || {
                let to_headers = |h: Vec<(String, String)>| -> Vec<tiny_http::Header> {
                    h.iter()
                        .map(|(k, v)| {
                            tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap()
                        })
                        .collect()
                };
                match route(req.url()) {
                    Answer::Full {
                        status,
                        headers,
                        body,
                    } => {
                        let len = body.len();
                        let _ = req.respond(tiny_http::Response::new(
                            status.into(),
                            to_headers(headers),
                            Cursor::new(body),
                            Some(len),
                            None,
                        ));
                    }
                    Answer::Stall { headers, sent, len } => {
                        let _ = req.respond(tiny_http::Response::new(
                            200.into(),
                            to_headers(headers),
                            Dribble(Cursor::new(sent)),
                            Some(len),
                            None,
                        ));
                    }
                }
            });
        }
    });
    url
}

fn sha256(b: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b);
    format!("{:x}", h.finalize())
}

fn weights() -> Vec<u8> {
    std::fs::read(Path::new(GOOD).join("adapter_model.safetensors")).unwrap()
}

/// `/api/models/u/a` and its `adapter_config.json`, as the Hub answers them.
fn hub_basics(path: &str) -> Option<Answer> {
    if path == "/api/models/u/a" {
        let info = json!({"id": "u/a", "sha": COMMIT, "siblings": [
            {"rfilename": "adapter_config.json"}, {"rfilename": "adapter_model.safetensors"}]});
        return Some(full(200, &[], &serde_json::to_vec(&info).unwrap()));
    }
    if path == "/u/a/resolve/main/adapter_config.json" {
        let config = std::fs::read(Path::new(GOOD).join("adapter_config.json")).unwrap();
        return Some(full(
            200,
            &[
                ("ETag", &format!("\"{CONFIG_ETAG}\"")),
                ("X-Repo-Commit", COMMIT),
            ],
            &config,
        ));
    }
    None
}

/// A temporary HF cache and loracycle's own cache.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, timeout_s: &str) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_loracycle"));
        c.env("HF_HOME", self.dir.path().join("hf"))
            .env("LORACYCLE_CACHE_DIR", self.dir.path().join("meta"))
            .env("LORACYCLE_HUB_TIMEOUT", timeout_s)
            .env_remove("HF_TOKEN")
            .env_remove("HF_ENDPOINT")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("HF_HUB_CACHE");
        c
    }

    fn pull(&self, url: &str) -> (i32, String, String) {
        let out = Command::from_std(self.command("5"))
            .args(["pool", "pull", "u/a", "--endpoint", url])
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("hf/hub/models--u--a")
    }

    /// The files of repo u/a in the cache, as paths relative to its folder.
    fn cached(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.repo()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(self.repo()).unwrap().to_owned();
                    out.push(rel.display().to_string());
                }
            }
        }
        out.sort();
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Item 1: a pull killed by SIGKILL.

#[test]
fn a_partial_download_left_by_a_killed_pull_is_removed_by_the_next_pull() {
    let w = weights();
    let sha = sha256(&w);
    let stall = Arc::new(AtomicBool::new(true));
    let (stalling, body, etag) = (stall.clone(), w.clone(), format!("\"{sha}\""));
    let url = serve(move |path| {
        hub_basics(path).unwrap_or_else(|| {
            let h = headers(&[("ETag", &etag), ("X-Repo-Commit", COMMIT)]);
            if stalling.load(Ordering::SeqCst) {
                Answer::Stall {
                    headers: h,
                    sent: body[..2000].to_vec(),
                    len: body.len(),
                }
            } else {
                Answer::Full {
                    status: 200,
                    headers: h,
                    body: body.clone(),
                }
            }
        })
    });
    let e = Env::new();
    let mut child = e
        .command("120")
        .args(["pool", "pull", "u/a", "--endpoint", &url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first 2,000 bytes to be on disk, then kill the pull as the OOM killer would.
    let blobs = e.repo().join("blobs");
    let t = Instant::now();
    let partial = loop {
        let found = std::fs::read_dir(&blobs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.to_string_lossy().ends_with(".incomplete")
                    && std::fs::metadata(p).is_ok_and(|m| m.len() >= 2000)
            });
        if let Some(p) = found {
            break p;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no partial download");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(partial.exists(), "SIGKILL leaves the partial file behind");

    stall.store(false, Ordering::SeqCst);
    let (code, out, err) = e.pull(&url);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("u/a: downloaded"), "{out}");
    assert!(!partial.exists(), "{partial:?} is still there");
    assert_eq!(
        e.cached(),
        [
            format!("blobs/{CONFIG_ETAG}"),
            format!("blobs/{sha}"),
            "refs/main".to_string(),
            format!("snapshots/{COMMIT}/adapter_config.json"),
            format!("snapshots/{COMMIT}/adapter_model.safetensors"),
        ]
    );
    assert_eq!(
        std::fs::read(
            e.repo()
                .join(format!("snapshots/{COMMIT}/adapter_model.safetensors"))
        )
        .unwrap(),
        w
    );
}

// ---------------------------------------------------------------------------------------------
// Item 2: weights that are not a whole safetensors file, with no hash to catch them.

#[test]
fn weights_that_are_not_a_whole_safetensors_file_are_refused_and_not_kept() {
    let w = weights();
    let mut longer = w.clone();
    longer.extend([0u8; 64]);
    let cases = [
        (
            w[..w.len() - 100].to_vec(),
            "incomplete metadata, file not fully covered",
        ),
        (
            vec![0u8; w.len()],
            "invalid JSON in header: EOF while parsing a value at line 1 column 0",
        ),
        (longer, "incomplete metadata, file not fully covered"),
        (b"1234567".to_vec(), "header too small"),
    ];
    for (body, why) in cases {
        let url = serve(move |path| {
            hub_basics(path).unwrap_or_else(|| {
                full(
                    200,
                    &[
                        ("ETag", &format!("\"{GIT_ETAG}\"")),
                        ("X-Repo-Commit", COMMIT),
                    ],
                    &body,
                )
            })
        });
        let e = Env::new();
        let (code, out, err) = e.pull(&url);
        assert_eq!(code, 1, "{why}: {out}");
        assert_eq!(
            err,
            format!(
                "u/a: u/a/adapter_model.safetensors: the download is not a whole safetensors file \
                 ({why}); nothing was kept\nerror: 1 of 1 adapters could not be pulled\n"
            )
        );
        assert_eq!(
            e.cached(),
            [
                format!("blobs/{CONFIG_ETAG}"),
                "refs/main".to_string(),
                format!("snapshots/{COMMIT}/adapter_config.json"),
            ],
            "{why}"
        );
    }
}

#[test]
fn a_broken_weights_file_already_in_the_cache_is_fetched_again() {
    let w = weights();
    let body = w.clone();
    let url = serve(move |path| {
        hub_basics(path).unwrap_or_else(|| {
            full(
                200,
                &[
                    ("ETag", &format!("\"{GIT_ETAG}\"")),
                    ("X-Repo-Commit", COMMIT),
                ],
                &body,
            )
        })
    });
    let e = Env::new();
    // What an older loracycle kept: a truncated blob behind the snapshot link.
    let blobs = e.repo().join("blobs");
    let snap = e.repo().join(format!("snapshots/{COMMIT}"));
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(e.repo().join("refs")).unwrap();
    std::fs::write(e.repo().join("refs/main"), COMMIT).unwrap();
    std::fs::write(blobs.join(GIT_ETAG), &w[..w.len() / 2]).unwrap();
    std::os::unix::fs::symlink(
        format!("../../blobs/{GIT_ETAG}"),
        snap.join("adapter_model.safetensors"),
    )
    .unwrap();
    let (code, out, err) = e.pull(&url);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("u/a: downloaded"), "{out}");
    assert_eq!(
        std::fs::read(snap.join("adapter_model.safetensors")).unwrap(),
        w
    );
}

// ---------------------------------------------------------------------------------------------
// Item 3: a listing without a model reads headers, not a big adapter's values.

/// An adapter folder whose weights are one q_proj pair of `n` columns, all zeros (a sparse file):
/// a valid header over `32 n` bytes of values.
fn big_zero_adapter(dir: &Path, n: usize) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(
        Path::new(GOOD).join("adapter_config.json"),
        dir.join("adapter_config.json"),
    )
    .unwrap();
    let key =
        |half: &str| format!("base_model.model.model.layers.0.self_attn.q_proj.lora_{half}.weight");
    let header = json!({
        key("A"): {"dtype": "F32", "shape": [4, n], "data_offsets": [0, 16 * n]},
        key("B"): {"dtype": "F32", "shape": [n, 4], "data_offsets": [16 * n, 32 * n]},
    })
    .to_string();
    let mut head = (header.len() as u64).to_le_bytes().to_vec();
    head.extend(header.as_bytes());
    let path = dir.join("adapter_model.safetensors");
    std::fs::write(&path, &head).unwrap();
    let len = head.len() as u64 + 32 * n as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len)
        .unwrap();
    len
}

fn loracycle(args: &[&str], cache: &Path) -> (i32, String, String) {
    let out = Command::cargo_bin("loracycle")
        .unwrap()
        .env("LORACYCLE_CACHE_DIR", cache)
        .env_remove("HF_HUB_OFFLINE")
        .args(args)
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_listing_without_a_model_reads_a_big_adapters_header_not_its_values() {
    let tmp = tempfile::tempdir().unwrap();
    let pool = tmp.path().join("pool");
    let big = pool.join("big");
    // 70 MB of values, past the 64 MiB a check reads without a base model.
    let len = big_zero_adapter(&big, 2_200_000);
    let meta = tmp.path().join("meta");
    let source = format!("dir:{}", pool.display());
    let t = Instant::now();
    let (code, out, err) = loracycle(&["pool", "list", "--source", &source, "--json"], &meta);
    assert_eq!(code, 0, "{err}");
    let entries: Vec<Value> = serde_json::from_str(&out).unwrap();
    // Its values (all zeros) were not read, so the norm rule could not reject it.
    assert_eq!(entries[0]["status"], json!({"state": "usable"}));
    assert_eq!(entries[0]["norm"], Value::Null);
    assert_eq!(entries[0]["size_bytes"], json!(len));
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    // `pool check` says what was left unchecked, and why.
    let (code, out, err) = loracycle(&["pool", "check", big.to_str().unwrap()], &meta);
    assert_eq!(code, 0, "{err}");
    let why = format!(
        "values not read: the weights are {len} bytes, more than the 67108864 a check reads \
         without the base model (give --model to read them)"
    );
    assert!(
        out.contains(&format!("  finite       skipped   {why}\n"))
            && out.contains(&format!("  norm         skipped   {why}\n")),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 4: adapter configs that were read as valid.

fn copy_good(to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(Path::new(GOOD).join(f), to.join(f)).unwrap();
    }
    to.to_path_buf()
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let p = dir.join("adapter_config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn configs_without_peft_type_with_a_non_positive_alpha_or_no_target_modules_are_refused() {
    let peft = "peft_type is missing or null; a PEFT LoRA config says \"LORA\"";
    let alpha = |a: &str| {
        format!(
            "lora_alpha is {a}; it must be a positive number (the update is scaled by lora_alpha / r)"
        )
    };
    let modules = |what: &str| {
        format!(
            "target_modules {what}; it must name the adapted modules: a list such as \
             [\"q_proj\", \"v_proj\"], or a string"
        )
    };
    type Edit = Box<dyn Fn(&mut serde_json::Map<String, Value>)>;
    let cases: Vec<(Edit, String)> = vec![
        (
            Box::new(|c| {
                c.remove("peft_type");
            }),
            peft.into(),
        ),
        (Box::new(|c| c["peft_type"] = Value::Null), peft.into()),
        (Box::new(|c| c["lora_alpha"] = json!(-8)), alpha("-8")),
        (Box::new(|c| c["lora_alpha"] = json!(0)), alpha("0")),
        (
            Box::new(|c| {
                c.remove("target_modules");
            }),
            modules("is missing or null"),
        ),
        (
            Box::new(|c| c["target_modules"] = Value::Null),
            modules("is missing or null"),
        ),
        (
            Box::new(|c| c["target_modules"] = json!(3)),
            modules("is 3"),
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let meta = tmp.path().join("meta");
    for (i, (edit, why)) in cases.iter().enumerate() {
        let pool = tmp.path().join(format!("pool{i}"));
        let dir = copy_good(&pool.join("a"));
        edit_config(&dir, edit);
        // Loading it (eval, a run's pool) is an error naming the adapter, the file and the field.
        let (code, _, err) = loracycle(
            &[
                "eval",
                "--model",
                MODEL,
                "--data",
                DATA,
                "--template",
                "raw",
                "--device",
                "cpu",
                "--adapter",
                dir.to_str().unwrap(),
            ],
            &meta,
        );
        assert_eq!(
            (code, err),
            (
                1,
                format!(
                    "error: adapter {}: adapter_config.json is not valid: {why}\n",
                    dir.display()
                )
            )
        );
        // A listing rejects it by the config rule, with the same words.
        let source = format!("dir:{}", pool.display());
        let (code, out, err) = loracycle(&["pool", "list", "--source", &source, "--json"], &meta);
        assert_eq!(code, 0, "{err}");
        let entries: Vec<Value> = serde_json::from_str(&out).unwrap();
        assert_eq!(
            entries[0]["status"],
            json!({"state": "rejected", "rule": "config", "reason": format!("adapter_config.json is not valid: {why}")})
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Item 4: models whose weights the config does not account for.

fn copy_model(to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(Path::new(MODEL).join(f), to.join(f)).unwrap();
    }
    to.to_path_buf()
}

/// Rewrites the safetensors header of `path` with `f`, which is given the data's length and
/// returns bytes to append to the data.
fn edit_header(path: &Path, f: impl FnOnce(&mut serde_json::Map<String, Value>, usize) -> Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let more = f(header.as_object_mut().unwrap(), bytes.len() - 8 - n);
    let text = header.to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text.as_bytes());
    out.extend(&bytes[8 + n..]);
    out.extend(more);
    std::fs::write(path, out).unwrap();
}

fn eval_model(model: &Path) -> (i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, err) = loracycle(
        &[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            DATA,
            "--template",
            "raw",
            "--device",
            "cpu",
        ],
        tmp.path(),
    );
    (code, err)
}

#[test]
fn a_model_with_more_layers_than_its_config_or_integer_weights_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // config.json says one layer; the weights hold two.
    let short = copy_model(&tmp.path().join("short"));
    let cfg = short.join("config.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    c["num_hidden_layers"] = json!(1);
    std::fs::write(&cfg, c.to_string()).unwrap();
    assert_eq!(
        eval_model(&short),
        (
            1,
            format!(
                "error: {}: weight model.layers.1.input_layernorm.weight is for layer 1, but \
                 config.json's num_hidden_layers is 1: the weights and the config describe \
                 different models\n",
                short.display()
            )
        )
    );
    // A float weight stored as I32 (same width, so the file is otherwise valid).
    let ints = copy_model(&tmp.path().join("ints"));
    edit_header(&ints.join("model.safetensors"), |h, _| {
        h["model.layers.0.mlp.up_proj.weight"]["dtype"] = json!("I32");
        Vec::new()
    });
    assert_eq!(
        eval_model(&ints),
        (
            1,
            format!(
                "error: {}: weight model.layers.0.mlp.up_proj.weight is I32; model weights are \
                 floating point (F16, BF16, F32 or F64)\n",
                ints.display()
            )
        )
    );
    // A tensor no module of the config has.
    let extra = copy_model(&tmp.path().join("extra"));
    edit_header(&extra.join("model.safetensors"), |h, end| {
        h.insert(
            "model.layers.0.self_attn.q_proj.bias".into(),
            json!({"dtype": "F32", "shape": [32], "data_offsets": [end, end + 128]}),
        );
        vec![0u8; 128]
    });
    let (code, err) = eval_model(&extra);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "error: {}: weight model.layers.0.self_attn.q_proj.bias has no place in a \
             LlamaForCausalLM with this config.json\n",
            extra.display()
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Item 4: run specs: a manual selection naming an adapter twice or one the pool refuses,
// `bootstrap = 0`, and `--max-parallel 0` for Slurm.

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn run_spec(dir: &Path, text: &str) -> (i32, String) {
    let spec = write(dir, "spec.toml", text);
    let runs = dir.join("runs");
    let (code, _, err) = loracycle(
        &["run", &spec, "--runs-dir", runs.to_str().unwrap()],
        &dir.join("meta"),
    );
    (code, err)
}

#[test]
fn a_manual_selection_naming_an_adapter_twice_and_bootstrap_0_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let head = "[task]\nlab = \"caesar-5\"\ntrain_examples = 8\n[method]\nkind = \"sum\"\n";
    assert_eq!(
        run_spec(
            tmp.path(),
            &format!(
                "{head}[selection]\nstrategy = \"manual\"\nadapters = [\"caesar-4\", \"caesar-11\", \"caesar-4\"]\n"
            )
        ),
        (
            1,
            "error: selection.adapters: must be a list naming each adapter once, got \"caesar-4\" twice\n"
                .into()
        )
    );
    assert_eq!(
        run_spec(tmp.path(), &format!("{head}[eval]\nbootstrap = 0\n")),
        (
            1,
            "error: eval.bootstrap: must be between 1 and 1000000, got 0\n".into()
        )
    );
    let store = loracycle::run::store::RunStore::open(&tmp.path().join("runs")).unwrap();
    assert!(store.list().is_empty(), "no run was created");
}

#[test]
fn a_manual_selection_of_an_adapter_the_pool_rejects_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let lab_pool = Path::new("assets/lab/pool");
    let pool = tmp.path().join("pool");
    for (name, from) in [("caesar-4", "caesar-4"), ("zero", "caesar-11")] {
        let dir = pool.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            std::fs::copy(lab_pool.join(from).join(f), dir.join(f)).unwrap();
        }
    }
    // Every B zero: ΔW = 0, an untrained adapter the pool rules reject.
    let w = pool.join("zero/adapter_model.safetensors");
    let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&w, &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| {
            let t = if k.contains(".lora_B.") {
                t.zeros_like().unwrap()
            } else {
                t
            };
            (k, t)
        })
        .collect();
    candle_core::safetensors::save(&tensors, &w).unwrap();
    let (code, err) = run_spec(
        tmp.path(),
        &format!(
            "[task]\nlab = \"caesar-5\"\ntrain_examples = 8\n[pool]\nsource = \"dir:{}\"\n\
             [selection]\nstrategy = \"manual\"\nadapters = [\"caesar-4\", \"zero\"]\n\
             [method]\nkind = \"sum\"\n[eval]\nbootstrap = 10\n",
            pool.display()
        ),
    );
    assert_eq!(code, 1, "{err}");
    let want = format!(
        "\nerror: selection manual: adapter \"zero\" is not usable: adapter {}: rejected by rule \
         norm: ΔW is zero (B is all zeros: an untrained adapter)\n",
        pool.join("zero").display()
    );
    assert!(err.ends_with(&want), "{err}");
}

#[test]
fn slurm_emission_refuses_a_max_parallel_of_0() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let out = tmp.path().join("study");
    let (code, stdout, err) = loracycle(
        &[
            "study",
            "--emit",
            "slurm",
            "--runs-dir",
            runs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--max-parallel",
            "0",
        ],
        &tmp.path().join("meta"),
    );
    assert_eq!(
        (code, stdout.as_str(), err.as_str()),
        (1, "", "error: --max-parallel must be at least 1, got 0\n")
    );
    assert!(!out.join("study.sbatch").exists());
}

// ---------------------------------------------------------------------------------------------
// Item 5: the Hub's 403, and the dataset listing's own name.

#[test]
fn a_403_from_the_hub_is_reported_as_forbidden() {
    let url = serve(|_| {
        full(
            403,
            &[],
            b"{\"error\":\"Access to model u/a is restricted\"}",
        )
    });
    let e = Env::new();
    let (code, _, err) = e.pull(&url);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "u/a: {url}/api/models/u/a: the Hub answered 403 Forbidden — the token was accepted \
             but has no access to this repo (a gated or private repo: accept its terms on the \
             Hub, or use a token with read access to it)\nerror: 1 of 1 adapters could not be \
             pulled\n"
        )
    );
}

#[test]
fn a_malformed_dataset_listing_is_called_a_dataset_listing() {
    let url = serve(|path| {
        if path == "/api/datasets/lab/quiz/parquet" {
            full(200, &[], b"[1,")
        } else {
            full(404, &[], b"")
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let hub = loracycle::pool::hub::Hub::new(
        Some(&url),
        loracycle::pool::cache::HfHome {
            root: tmp.path().to_path_buf(),
        },
    );
    let err = hub.dataset_parquet("lab/quiz").unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{url}/api/datasets/lab/quiz/parquet: the Hub's answer is not what a dataset listing \
             looks like: not a config → split → [url] mapping: "
        )),
        "{err}"
    );
}
