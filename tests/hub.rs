//! The pool against a fake Hub on 127.0.0.1: a paginated listing, configs, safetensors and model
//! cards, and the bad cases (401, 404, 500, a download cut short, malformed JSON, a pickle-only
//! repo, shapes that do not fit the base, NaN weights). Each has its message; nothing panics;
//! nothing partial stays in the cache.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use assert_cmd::Command;
use candle_core::{Device, Tensor};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BASE: &str = "meta-llama/Llama-3.1-8B-Instruct";
const TINY_BASE: &str = "loracycle-fixtures/tiny-llama";
const TOKEN: &str = "hf_fake_secret_token_123";

struct Repo {
    id: String,
    sha: String,
    files: Vec<(String, Vec<u8>)>,
    /// Serve only half of each weights download.
    cut: bool,
    downloads: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Listing {
    Pages(usize),
    Status(u16),
    Malformed,
}

struct FakeHub {
    url: String,
}

fn sha_of(s: &str) -> String {
    let mut h = Sha256::new();
    h.update(s.as_bytes());
    format!("{:x}", h.finalize())[..40].to_string()
}

fn model_json(r: &Repo) -> Value {
    json!({
        "id": r.id, "modelId": r.id, "sha": r.sha, "downloads": r.downloads, "likes": r.downloads / 10,
        "lastModified": "2026-10-01T12:00:00.000Z", "tags": ["peft", "safetensors", "lora"],
        "siblings": r.files.iter().map(|(f, _)| json!({"rfilename": f})).collect::<Vec<_>>(),
    })
}

fn query_param(url: &str, key: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(String::from))
}

fn start(repos: Vec<Repo>, listing: Listing, auth: bool) -> FakeHub {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let base_url = url.clone();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let path = req.url().to_string();
            let header = |name: &'static str| {
                req.headers()
                    .iter()
                    .find(|h| h.field.equiv(name))
                    .map(|h| h.value.as_str().to_string())
            };
            let authorized = !auth || header("Authorization") == Some(format!("Bearer {TOKEN}"));
            let h = |k: &str, v: &str| {
                tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap()
            };
            let respond = |status: u16, body: Vec<u8>, headers: Vec<tiny_http::Header>| {
                let len = body.len();
                tiny_http::Response::new(status.into(), headers, Cursor::new(body), Some(len), None)
            };
            let resp = if !authorized {
                respond(401, b"{\"error\":\"Invalid credentials\"}".to_vec(), vec![])
            } else if path.starts_with("/api/models?") {
                match listing {
                    Listing::Status(code) => {
                        respond(code, b"{\"error\":\"boom\"}".to_vec(), vec![])
                    }
                    Listing::Malformed => respond(200, b"[{\"id\": \"a/b\", ".to_vec(), vec![]),
                    Listing::Pages(size) => {
                        let cursor: usize = query_param(&path, "cursor")
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(0);
                        let page: Vec<Value> = repos
                            .iter()
                            .skip(cursor)
                            .take(size)
                            .map(model_json)
                            .collect();
                        let mut headers = vec![h("Content-Type", "application/json")];
                        if cursor + size < repos.len() {
                            let filter = query_param(&path, "filter").unwrap_or_default();
                            headers.push(h(
                                "Link",
                                &format!("<{base_url}/api/models?filter={filter}&full=true&cursor={}>; rel=\"next\"", cursor + size),
                            ));
                        }
                        respond(200, serde_json::to_vec(&page).unwrap(), headers)
                    }
                }
            } else if let Some(id) = path.strip_prefix("/api/models/") {
                match repos.iter().find(|r| r.id == id) {
                    Some(r) => respond(200, serde_json::to_vec(&model_json(r)).unwrap(), vec![]),
                    None => respond(
                        404,
                        b"{\"error\":\"Repository not found\"}".to_vec(),
                        vec![],
                    ),
                }
            } else if let Some((id, rest)) = path
                .trim_start_matches('/')
                .split_once("/resolve/")
                .map(|(a, b)| (a.to_string(), b.to_string()))
            {
                let file = rest
                    .split_once('/')
                    .map(|(_, f)| f.to_string())
                    .unwrap_or_default();
                match repos.iter().find(|r| r.id == id).and_then(|r| {
                    r.files
                        .iter()
                        .find(|(f, _)| *f == file)
                        .map(|(_, b)| (r, b))
                }) {
                    None => respond(404, b"Entry not found".to_vec(), vec![]),
                    Some((r, bytes)) => {
                        let total = bytes.len();
                        let start = header("Range")
                            .and_then(|v| v.strip_prefix("bytes=").map(String::from))
                            .and_then(|v| v.split('-').next().and_then(|s| s.parse::<usize>().ok()))
                            .unwrap_or(0);
                        let single = header("Range").as_deref() == Some("bytes=0-0");
                        let mut body = if single {
                            bytes[..1].to_vec()
                        } else {
                            bytes[start.min(total)..].to_vec()
                        };
                        if r.cut && !single && file.ends_with(".safetensors") {
                            body.truncate(body.len() / 2);
                        }
                        let end = if single { 0 } else { total.saturating_sub(1) };
                        let etag = {
                            let mut hh = Sha256::new();
                            hh.update(bytes);
                            format!("{:x}", hh.finalize())
                        };
                        respond(
                            206,
                            body,
                            vec![
                                h("ETag", &format!("\"{etag}\"")),
                                h("X-Repo-Commit", &r.sha),
                                h("Content-Range", &format!("bytes {start}-{end}/{total}")),
                            ],
                        )
                    }
                }
            } else {
                respond(404, b"no route".to_vec(), vec![])
            };
            let _ = req.respond(resp);
        }
    });
    FakeHub { url }
}

fn config(base: &str, r: usize, modules: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base,
        "r": r, "lora_alpha": 2 * r, "target_modules": modules, "lora_dropout": 0.05, "bias": "none",
    }))
    .unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new("tests/fixtures/adapters")
            .join(name)
            .join("adapter_model.safetensors"),
    )
    .unwrap()
}

/// The qv-r4 fixture's tensors, changed by `f`, as safetensors bytes.
fn altered(f: impl Fn(&str, Tensor) -> Tensor) -> Vec<u8> {
    let path = Path::new("tests/fixtures/adapters/qv-r4/adapter_model.safetensors");
    let tensors = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let changed: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, t)| (k.clone(), f(&k, t)))
        .collect();
    let tmp = tempfile::NamedTempFile::new().unwrap();
    candle_core::safetensors::save(&changed, tmp.path()).unwrap();
    std::fs::read(tmp.path()).unwrap()
}

fn repo(id: &str, files: Vec<(&str, Vec<u8>)>, downloads: u64) -> Repo {
    Repo {
        id: id.into(),
        sha: sha_of(id),
        files: files.into_iter().map(|(n, b)| (n.to_string(), b)).collect(),
        cut: false,
        downloads,
    }
}

fn good(i: usize) -> Repo {
    repo(
        &format!("user{i}/lora-{i}"),
        vec![
            (
                "adapter_config.json",
                config(BASE, 4 << (i % 3), &["q_proj", "v_proj"]),
            ),
            ("adapter_model.safetensors", fixture("qv-r4")),
            (
                "README.md",
                format!("---\nlicense: mit\n---\n# lora-{i}\n\nAn adapter for task {i}.\n")
                    .into_bytes(),
            ),
        ],
        1000 - i as u64,
    )
}

/// Fresh HF_HOME and metadata cache, with the tiny fixture model as a cached "base".
struct Env {
    _dir: tempfile::TempDir,
    hf_home: PathBuf,
    meta: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let hf_home = dir.path().join("hf");
    let snap = hf_home.join("hub/models--loracycle-fixtures--tiny-llama/snapshots/0000");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(hf_home.join("hub/models--loracycle-fixtures--tiny-llama/refs"))
        .unwrap();
    std::fs::write(
        hf_home.join("hub/models--loracycle-fixtures--tiny-llama/refs/main"),
        "0000",
    )
    .unwrap();
    std::fs::copy("tests/fixtures/tiny/config.json", snap.join("config.json")).unwrap();
    Env {
        meta: dir.path().join("meta"),
        hf_home,
        _dir: dir,
    }
}

fn run(e: &Env, args: &[&str], token: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::cargo_bin("loracycle").unwrap();
    cmd.env("HF_HOME", &e.hf_home)
        .env("LORACYCLE_CACHE_DIR", &e.meta)
        .env_remove("HF_TOKEN")
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_CACHE");
    if let Some(t) = token {
        cmd.env("HF_TOKEN", t);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Every file under the cache's repo folder (blobs, snapshots), for "nothing partial stays".
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn list_follows_every_page_and_reports_each_entry() {
    let mut repos: Vec<Repo> = (0..23).map(good).collect();
    repos.push(repo(
        "bad/pickle-only",
        vec![
            ("adapter_config.json", config(BASE, 8, &["q_proj"])),
            ("adapter_model.bin", vec![0x80, 2]),
        ],
        5,
    ));
    repos.push(repo(
        "bad/malformed-config",
        vec![
            ("adapter_config.json", b"{\"r\": 8,".to_vec()),
            ("adapter_model.safetensors", fixture("qv-r4")),
        ],
        4,
    ));
    repos.push(repo(
        "bad/other-base",
        vec![
            (
                "adapter_config.json",
                config("mistralai/Mistral-7B", 8, &["q_proj"]),
            ),
            ("adapter_model.safetensors", fixture("qv-r4")),
        ],
        3,
    ));
    let hub = start(repos, Listing::Pages(10), false);
    let e = env();
    let (code, out, err) = run(
        &e,
        &[
            "pool",
            "list",
            "--source",
            "hub",
            "--endpoint",
            &hub.url,
            "--base",
            BASE,
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let entries: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(entries.len(), 26, "three pages of 10, 10 and 6");
    let by_id = |id: &str| {
        entries
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing"))
    };
    let e0 = by_id("user0/lora-0");
    assert_eq!(e0["source"], "hub");
    assert_eq!(e0["revision"], sha_of("user0/lora-0"));
    assert_eq!(e0["rank"], 4);
    assert_eq!(e0["alpha"], 8.0);
    assert_eq!(e0["rslora"], false);
    assert_eq!(e0["target_modules"], json!(["q_proj", "v_proj"]));
    assert_eq!(e0["base_model"], BASE);
    assert_eq!(e0["downloads"], 1000);
    assert_eq!(e0["likes"], 100);
    assert_eq!(e0["last_modified"], "2026-10-01T12:00:00.000Z");
    assert_eq!(e0["tags"], json!(["peft", "safetensors", "lora"]));
    assert_eq!(e0["card"], "# lora-0 An adapter for task 0.");
    assert_eq!(e0["status"], json!({"state": "not-downloaded"}));
    assert_eq!(by_id("user2/lora-2")["rank"], 16);
    assert_eq!(
        by_id("bad/pickle-only")["status"],
        json!({"state": "rejected", "rule": "safetensors", "reason": "only adapter_model.bin (a pickle) is published; refused because loading a pickle can execute code"})
    );
    let mal = &by_id("bad/malformed-config")["status"];
    assert_eq!(mal["rule"], "config");
    assert!(
        mal["reason"]
            .as_str()
            .unwrap()
            .starts_with("adapter_config.json is not valid: EOF while parsing"),
        "{mal}"
    );
    assert_eq!(
        by_id("bad/other-base")["status"],
        json!({"state": "rejected", "rule": "base-model", "reason": format!("trained on mistralai/Mistral-7B, not on {BASE}")})
    );
    // Filter and sort run on the metadata: rank 8 only, most downloaded first.
    let (code, out, err) = run(
        &e,
        &[
            "pool",
            "list",
            "--source",
            "hub",
            "--endpoint",
            &hub.url,
            "--base",
            BASE,
            "--filter",
            "rank=8",
            "--sort",
            "downloads",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let ids: Vec<String> = serde_json::from_str::<Vec<Value>>(&out)
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids[..3], ["user1/lora-1", "user4/lora-4", "user7/lora-7"]);
    assert!(ids.contains(&"bad/pickle-only".to_string()));
}

#[test]
fn errors_of_the_listing_have_messages() {
    let e = env();
    let cases = [
        (
            Listing::Status(500),
            false,
            None,
            "/api/models?filter=base_model%3Aadapter%3Ameta-llama/Llama-3.1-8B-Instruct&full=true&limit=1000: the Hub answered 500 (a server error on the Hub's side: try again later)",
        ),
        (
            Listing::Malformed,
            false,
            None,
            "the Hub's answer is not what a model listing looks like: EOF while parsing",
        ),
        (
            Listing::Pages(10),
            true,
            None,
            "the Hub answered 401 Unauthorized — a token is needed or was refused (set HF_TOKEN or log in with huggingface-cli)",
        ),
        (
            Listing::Pages(10),
            true,
            Some("hf_wrong"),
            "the Hub answered 401 Unauthorized",
        ),
    ];
    for (listing, auth, token, want) in cases {
        let hub = start((0..3).map(good).collect(), listing, auth);
        let (code, out, err) = run(
            &e,
            &[
                "pool",
                "list",
                "--source",
                "hub",
                "--endpoint",
                &hub.url,
                "--base",
                BASE,
            ],
            token,
        );
        assert_eq!(code, 1, "{want}");
        assert!(out.is_empty());
        assert!(err.starts_with("error: http://127.0.0.1:"), "{err}");
        assert!(err.contains(want), "stderr {err:?} lacks {want:?}");
        assert!(!err.contains("panicked"));
    }
    // With the right token the listing works, and the token is never printed.
    let hub = start((0..3).map(good).collect(), Listing::Pages(10), true);
    let (code, out, err) = run(
        &e,
        &[
            "pool",
            "list",
            "--source",
            "hub",
            "--endpoint",
            &hub.url,
            "--base",
            BASE,
        ],
        Some(TOKEN),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("user0/lora-0")
            && out.contains("3 entries: 0 usable, 0 rejected, 3 not downloaded"),
        "{out}"
    );
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN));
    // Offline, the hub source says what to do instead.
    let (code, _, err) = run(
        &e,
        &[
            "pool",
            "list",
            "--source",
            "hub",
            "--endpoint",
            &hub.url,
            "--base",
            BASE,
            "--offline",
        ],
        Some(TOKEN),
    );
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "error: offline: the hub source needs the network; use --source cache to list what is downloaded"
    );
}

#[test]
fn pull_downloads_into_the_hf_cache_and_refuses_bad_adapters() {
    let mut cut = repo(
        "bad/cut",
        vec![
            (
                "adapter_config.json",
                config(TINY_BASE, 4, &["q_proj", "v_proj"]),
            ),
            ("adapter_model.safetensors", fixture("qv-r4")),
        ],
        1,
    );
    cut.cut = true;
    let wrong_shape = altered(|k, t| {
        if k.contains("lora_A") {
            Tensor::zeros((4, 7), t.dtype(), &Device::Cpu).unwrap()
        } else {
            t
        }
    });
    let nan = altered(|k, t| {
        if k.contains("layers.1.self_attn.v_proj.lora_B") {
            let mut v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            v[3] = f32::NAN;
            Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap()
        } else {
            t
        }
    });
    let repos = vec![
        repo(
            "good/qv",
            vec![
                (
                    "adapter_config.json",
                    config(TINY_BASE, 4, &["q_proj", "v_proj"]),
                ),
                ("adapter_model.safetensors", fixture("qv-r4")),
            ],
            9,
        ),
        cut,
        repo(
            "bad/pickle-only",
            vec![
                ("adapter_config.json", config(TINY_BASE, 4, &["q_proj"])),
                ("adapter_model.bin", vec![0x80, 2]),
            ],
            5,
        ),
        repo(
            "bad/wrong-shape",
            vec![
                (
                    "adapter_config.json",
                    config(TINY_BASE, 4, &["q_proj", "v_proj"]),
                ),
                ("adapter_model.safetensors", wrong_shape),
            ],
            2,
        ),
        repo(
            "bad/nan",
            vec![
                (
                    "adapter_config.json",
                    config(TINY_BASE, 4, &["q_proj", "v_proj"]),
                ),
                ("adapter_model.safetensors", nan),
            ],
            2,
        ),
    ];
    let hub = start(repos, Listing::Pages(10), false);
    let e = env();
    let pull = |id: &str| {
        run(
            &e,
            &[
                "pool",
                "pull",
                id,
                "--endpoint",
                &hub.url,
                "--base",
                TINY_BASE,
            ],
            None,
        )
    };

    let (code, out, err) = pull("good/qv");
    assert_eq!(code, 0, "{err}");
    let line = out.trim();
    assert!(
        line.starts_with("good/qv: downloaded ")
            && line.ends_with(&format!(
                "K at {}, weights pass shapes/finite/norm",
                &sha_of("good/qv")[..12]
            )),
        "{line}"
    );
    let snap = e
        .hf_home
        .join("hub/models--good--qv/snapshots")
        .join(sha_of("good/qv"));
    assert_eq!(
        std::fs::read(snap.join("adapter_model.safetensors")).unwrap(),
        fixture("qv-r4")
    );
    assert_eq!(
        std::fs::read_to_string(e.hf_home.join("hub/models--good--qv/refs/main"))
            .unwrap()
            .trim(),
        sha_of("good/qv")
    );

    let (code, _, err) = pull("bad/cut");
    assert_eq!(code, 1);
    assert!(
        err.contains("bad/cut/adapter_model.safetensors: the download stopped after"),
        "{err}"
    );
    let left = files_under(&e.hf_home.join("hub/models--bad--cut"));
    assert!(
        left.iter()
            .all(|f| !f.contains("safetensors") && !f.ends_with(".part")),
        "partial files left: {left:?}"
    );
    assert!(
        left.iter().all(|f| !f.starts_with("blobs/")
            || f.ends_with(".lock")
            || std::fs::read(e.hf_home.join("hub/models--bad--cut").join(f))
                .unwrap()
                .starts_with(b"{")),
        "{left:?}"
    );

    let (code, _, err) = pull("bad/pickle-only");
    assert_eq!(code, 1);
    assert!(err.contains("bad/pickle-only: rejected by rule safetensors: only adapter_model.bin (a pickle) is published"), "{err}");
    assert!(
        !e.hf_home
            .join("hub/models--bad--pickle-only/snapshots")
            .join(sha_of("bad/pickle-only"))
            .join("adapter_model.bin")
            .exists()
    );

    let (code, _, err) = pull("bad/wrong-shape");
    assert_eq!(code, 1);
    assert!(
        err.contains("bad/wrong-shape: downloaded, but rejected by rule shapes:"),
        "{err}"
    );
    assert!(
        err.contains("has shape [4, 7], expected [4, 32] for the base model at rank 4"),
        "{err}"
    );

    let (code, _, err) = pull("bad/nan");
    assert_eq!(code, 1);
    assert!(
        err.contains("bad/nan: downloaded, but rejected by rule finite:"),
        "{err}"
    );
    assert!(
        err.contains("layers.1.self_attn.v_proj.lora_B.weight holds 1 NaN/Inf values"),
        "{err}"
    );

    let (code, _, err) = run(
        &e,
        &["pool", "check", "nobody/nothing", "--endpoint", &hub.url],
        None,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("/api/models/nobody/nothing: not found on the Hub (404)"),
        "{err}"
    );
    assert!(!err.contains("panicked"));

    // Every rule for the downloaded good adapter, and the cache source sees it offline.
    let (code, out, err) = run(
        &e,
        &[
            "pool",
            "check",
            "good/qv",
            "--endpoint",
            &hub.url,
            "--base",
            TINY_BASE,
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    for rule in [
        "config",
        "peft-type",
        "task-type",
        "safetensors",
        "features",
        "base-model",
        "shapes",
        "finite",
        "norm",
    ] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(rule) && l.contains("pass")),
            "{rule} in {out}"
        );
    }
    let (code, out, err) = run(
        &e,
        &[
            "pool",
            "list",
            "--source",
            "cache",
            "--base",
            TINY_BASE,
            "--json",
            "--offline",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let entries: Vec<Value> = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"good/qv"), "{ids:?}");
    let good_entry = entries.iter().find(|e| e["id"] == "good/qv").unwrap();
    assert_eq!(good_entry["status"], json!({"state": "usable"}));
    assert!(good_entry["norm"].as_f64().unwrap() > 0.0);

    // The UI refreshes one entry after a download from the cache alone: the same entry.
    let base_cfg = loracycle::model::weights::read_config(
        &e.hf_home
            .join("hub/models--loracycle-fixtures--tiny-llama/snapshots/0000"),
    )
    .unwrap();
    let home = loracycle::pool::cache::HfHome {
        root: e.hf_home.clone(),
    };
    let opts = loracycle::pool::entry::ListOptions {
        base: Some(TINY_BASE),
        base_config: Some(&base_cfg),
        endpoint: None,
        offline: true,
        jobs: 1,
    };
    let mut meta = loracycle::pool::cache::MetaCache::open(&e.meta.join("in-process.json"));
    let one = loracycle::pool::entry::cached_entry(&home, "good/qv", &opts, &mut meta).unwrap();
    assert_eq!(&serde_json::to_value(&one).unwrap(), good_entry);
    assert!(
        loracycle::pool::entry::cached_entry(&home, "nobody/nothing", &opts, &mut meta).is_none()
    );
}

#[test]
fn a_qwen3_pool_lists_and_pulls_as_a_llama_one_does() {
    const QWEN: &str = "Qwen/Qwen3-4B-Instruct-2507";
    let qwen_adapter = |name: &str| -> Vec<(&'static str, Vec<u8>)> {
        let dir = Path::new("tests/fixtures/qwen3/adapters").join(name);
        let mut cfg: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        cfg["base_model_name_or_path"] = json!(QWEN);
        vec![
            ("adapter_config.json", serde_json::to_vec(&cfg).unwrap()),
            (
                "adapter_model.safetensors",
                std::fs::read(dir.join("adapter_model.safetensors")).unwrap(),
            ),
        ]
    };
    let repos = vec![
        repo("qwen/all", qwen_adapter("all-r4"), 7),
        repo("qwen/qv", qwen_adapter("qv-r8"), 5),
        // A Llama-shaped LoRA that claims the Qwen base: its q_proj B has 32 rows, Qwen3's 64.
        repo(
            "llama/qv",
            vec![
                (
                    "adapter_config.json",
                    config(QWEN, 4, &["q_proj", "v_proj"]),
                ),
                ("adapter_model.safetensors", fixture("qv-r4")),
            ],
            3,
        ),
    ];
    let hub = start(repos, Listing::Pages(2), false);
    let e = env();
    // The base's config in the HF cache, as a download of the real model would leave it.
    let base = e.hf_home.join("hub/models--Qwen--Qwen3-4B-Instruct-2507");
    std::fs::create_dir_all(base.join("snapshots/0000")).unwrap();
    std::fs::create_dir_all(base.join("refs")).unwrap();
    std::fs::write(base.join("refs/main"), "0000").unwrap();
    std::fs::copy(
        "tests/fixtures/qwen3/model/config.json",
        base.join("snapshots/0000/config.json"),
    )
    .unwrap();
    let (code, out, err) = run(
        &e,
        &[
            "pool",
            "list",
            "--source",
            "hub",
            "--base",
            QWEN,
            "--endpoint",
            &hub.url,
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let entries: Vec<Value> = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["llama/qv", "qwen/all", "qwen/qv"]);
    assert!(
        entries
            .iter()
            .all(|e| e["status"] == json!({"state": "not-downloaded"})),
        "{out}"
    );
    let pull = |id: &str| {
        run(
            &e,
            &["pool", "pull", id, "--endpoint", &hub.url, "--base", QWEN],
            None,
        )
    };
    let (code, out, err) = pull("qwen/all");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.trim().ends_with("weights pass shapes/finite/norm"),
        "{out}"
    );
    let (code, _, err) = pull("llama/qv");
    assert_eq!(code, 1);
    assert!(
        err.contains("llama/qv: downloaded, but rejected by rule shapes:")
            && err.contains("expected [64, 4] for the base model at rank 4"),
        "{err}"
    );
}
