//! The Hub client against a hostile server on 127.0.0.1: ETags and commits that are paths, a
//! redirect without `Location`, a redirect to another origin (which must not see the token),
//! stalls before the answer and in the middle of a body, a listing that links to itself, 429 with
//! `Retry-After`, a `sha` that is not hex, and a body that is not the announced file. Each ends
//! in its own message, within the timeout, with nothing written outside the cache and nothing
//! partial left in it.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::json;
use sha2::{Digest, Sha256};

const TOKEN: &str = "hf_fake_secret_token_456";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const CONFIG_ETAG: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// What the server does with one request.
enum Answer {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Headers and the first `sent` bytes of a body of `len`, then nothing for a minute.
    Stall { sent: usize, len: usize },
    /// No answer for a minute.
    Silent,
}

fn full(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    Answer::Full {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

/// A request as the server saw it: its path and its Authorization header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct Server {
    url: String,
    seen: Seen,
}

/// A body that sends `sent` bytes and then stalls.
struct Dribble {
    left: usize,
}

impl Read for Dribble {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            std::thread::sleep(Duration::from_secs(60));
            return Ok(0);
        }
        let n = self.left.min(buf.len());
        buf[..n].fill(7);
        self.left -= n;
        Ok(n)
    }
}

fn serve(route: impl Fn(&str, &str) -> Answer + Send + Sync + 'static) -> Server {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!(
        "http://127.0.0.1:{}",
        server.server_addr().to_ip().unwrap().port()
    );
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let route = Arc::new(route);
    let base = url.clone();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let (route, log, base) = (route.clone(), log.clone(), base.clone());
            std::thread::spawn(move || {
                let path = req.url().to_string();
                let auth = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.as_str().to_string());
                log.lock().unwrap().push((path.clone(), auth));
                match route(&base, &path) {
                    Answer::Full {
                        status,
                        headers,
                        body,
                    } => {
                        let headers = headers
                            .iter()
                            .map(|(k, v)| {
                                tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap()
                            })
                            .collect();
                        let len = body.len();
                        let _ = req.respond(tiny_http::Response::new(
                            status.into(),
                            headers,
                            Cursor::new(body),
                            Some(len),
                            None,
                        ));
                    }
                    Answer::Stall { sent, len } => {
                        let _ = req.respond(tiny_http::Response::new(
                            200.into(),
                            vec![],
                            Dribble { left: sent },
                            Some(len),
                            None,
                        ));
                    }
                    Answer::Silent => {
                        std::thread::sleep(Duration::from_secs(60));
                        drop(req);
                    }
                }
            });
        }
    });
    Server { url, seen }
}

fn sha256(b: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b);
    format!("{:x}", h.finalize())
}

fn config() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "peft_type": "LORA", "task_type": "CAUSAL_LM",
        "base_model_name_or_path": "meta-llama/Llama-3.1-8B-Instruct",
        "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"],
    }))
    .unwrap()
}

fn weights() -> Vec<u8> {
    std::fs::read("tests/fixtures/adapters/qv-r4/adapter_model.safetensors").unwrap()
}

/// `/api/models/u/a` and `adapter_config.json` as the Hub answers them; everything else 404.
fn hub_basics(path: &str, sha: &str) -> Option<Answer> {
    if path == "/api/models/u/a" {
        let info = json!({"id": "u/a", "sha": sha, "siblings": [
            {"rfilename": "adapter_config.json"}, {"rfilename": "adapter_model.safetensors"}]});
        return Some(full(200, &[], &serde_json::to_vec(&info).unwrap()));
    }
    if path == "/u/a/resolve/main/adapter_config.json" {
        return Some(full(
            200,
            &[
                ("ETag", &format!("\"{CONFIG_ETAG}\"")),
                ("X-Repo-Commit", COMMIT),
            ],
            &config(),
        ));
    }
    None
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn hf_home(&self) -> PathBuf {
        self.dir.path().join("hf")
    }

    /// Runs loracycle against `url` with a 1 s Hub timeout and the token set.
    fn run(&self, args: &[&str], url: &str) -> (i32, String, String, Duration) {
        let t = Instant::now();
        let out = Command::cargo_bin("loracycle")
            .unwrap()
            .env("HF_HOME", self.hf_home())
            .env("LORACYCLE_CACHE_DIR", self.dir.path().join("meta"))
            .env("HF_TOKEN", TOKEN)
            .env("LORACYCLE_HUB_TIMEOUT", "1")
            .env_remove("HF_ENDPOINT")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("HF_HUB_CACHE")
            .args(args)
            .arg("--endpoint")
            .arg(url)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            t.elapsed(),
        )
    }

    fn pull(&self, url: &str) -> (i32, String, String, Duration) {
        self.run(&["pool", "pull", "u/a"], url)
    }

    /// Every file under the temporary folder, links included, as relative paths.
    fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let ft = e.file_type().unwrap();
                if ft.is_dir() {
                    stack.push(p.clone());
                } else {
                    out.push(
                        p.strip_prefix(self.dir.path())
                            .unwrap()
                            .display()
                            .to_string(),
                    );
                }
            }
        }
        out.sort();
        out
    }

    /// The files of repo u/a in the cache: only its config's blob and snapshot link.
    fn assert_only_the_config_is_cached(&self) {
        let files: Vec<String> = self
            .files()
            .into_iter()
            .filter(|f| f.starts_with("hf/"))
            .collect();
        assert_eq!(
            files,
            [
                format!("hf/hub/models--u--a/blobs/{CONFIG_ETAG}"),
                "hf/hub/models--u--a/refs/main".to_string(),
                format!("hf/hub/models--u--a/snapshots/{COMMIT}/adapter_config.json"),
            ],
        );
    }
}

fn weights_answer(headers: &[(&str, &str)], body: &[u8]) -> Answer {
    full(200, headers, body)
}

#[test]
fn etags_and_commits_that_are_paths_are_refused_before_any_file_is_written() {
    let w = weights();
    let sha = sha256(&w);
    for (etag, commit, why) in [
        (
            "\"../../../../../../escaped\"".to_string(),
            COMMIT.to_string(),
            "ETag \"\\\"../../../../../../escaped\\\"\" is not a plain blob name".to_string(),
        ),
        (
            "/tmp/escaped".into(),
            COMMIT.into(),
            "ETag \"/tmp/escaped\" is not a plain blob name".into(),
        ),
        (
            format!("\"{sha}\""),
            "../../../../escaped".into(),
            "X-Repo-Commit \"../../../../escaped\" is not a 40-digit hex commit".into(),
        ),
    ] {
        let e = Env::new();
        let body = w.clone();
        let (etag2, commit2) = (etag.clone(), commit.clone());
        let hub = serve(move |_, path| {
            hub_basics(path, COMMIT).unwrap_or_else(|| {
                weights_answer(&[("ETag", &etag2), ("X-Repo-Commit", &commit2)], &body)
            })
        });
        let (code, _, err, _) = e.pull(&hub.url);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&format!(
                "/u/a/resolve/main/adapter_model.safetensors: refusing the Hub's answer: {why}"
            )),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        e.assert_only_the_config_is_cached();
        let blobs = e.hf_home().join("hub/models--u--a/blobs");
        assert!(!blobs.join("../../../../../../escaped").exists());
        assert!(!blobs.join("../snapshots/../../../../escaped").exists());
    }
}

#[test]
fn redirects_without_location_and_to_other_origins() {
    // No Location: an error, no panic.
    let e = Env::new();
    let hub = serve(|_, path| hub_basics(path, COMMIT).unwrap_or_else(|| full(302, &[], b"")));
    let (code, _, err, _) = e.pull(&hub.url);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "/u/a/resolve/main/adapter_model.safetensors: refusing the Hub's answer: a 302 \
             redirect without a Location header"
        ),
        "{err}"
    );
    e.assert_only_the_config_is_cached();

    // A CDN on another port: the file comes from there, the token does not go there, and the
    // commit, ETag and size are the Hub's (the CDN's own ETag is ignored).
    let w = weights();
    let sha = sha256(&w);
    let body = w.clone();
    let cdn = serve(move |_, _| full(200, &[("ETag", "\"cdn-etag\"")], &body));
    let cdn_url = cdn.url.clone();
    let (sha2, len) = (sha.clone(), w.len().to_string());
    let hub = serve(move |_, path| {
        hub_basics(path, COMMIT).unwrap_or_else(|| {
            full(
                302,
                &[
                    ("Location", &format!("{cdn_url}/blob/xyz?sig=1")),
                    ("X-Linked-Etag", &format!("\"{sha2}\"")),
                    ("X-Linked-Size", &len),
                    ("X-Repo-Commit", COMMIT),
                ],
                b"",
            )
        })
    });
    let e = Env::new();
    let (code, out, err, _) = e.pull(&hub.url);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("u/a: downloaded"), "{out}");
    let snap = e
        .hf_home()
        .join(format!("hub/models--u--a/snapshots/{COMMIT}"));
    assert_eq!(
        std::fs::read(snap.join("adapter_model.safetensors")).unwrap(),
        w
    );
    assert_eq!(
        std::fs::read_link(snap.join("adapter_model.safetensors")).unwrap(),
        Path::new("../../blobs").join(&sha)
    );
    let seen = cdn.seen.lock().unwrap().clone();
    assert_eq!(seen, [("/blob/xyz?sig=1".to_string(), None)]);
    let hub_seen = hub.seen.lock().unwrap().clone();
    assert!(
        hub_seen
            .iter()
            .all(|(_, auth)| auth.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "{hub_seen:?}"
    );
}

#[test]
fn stalls_end_in_an_error_within_the_timeout_and_leave_nothing_partial() {
    // The metadata request is never answered.
    let e = Env::new();
    let hub = serve(|_, _| Answer::Silent);
    let (code, _, err, took) = e.pull(&hub.url);
    assert_eq!(code, 1);
    assert!(
        err.contains("/api/models/u/a: the Hub sent nothing for 1 s; giving up"),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");

    // The download stops after 1,000 bytes.
    let w = weights();
    let (sha, len) = (sha256(&w), w.len());
    let hub = serve(move |_, path| {
        hub_basics(path, COMMIT).unwrap_or(if path.contains("safetensors") {
            Answer::Stall { sent: 1000, len }
        } else {
            full(404, &[], b"")
        })
    });
    // The ETag and commit ride on a redirect to the stalling file.
    let stall_url = hub.url.clone();
    let front = serve(move |_, path| {
        hub_basics(path, COMMIT).unwrap_or_else(|| {
            full(
                302,
                &[
                    ("Location", &format!("{stall_url}/u/a/slow.safetensors")),
                    ("X-Linked-Etag", &format!("\"{sha}\"")),
                    ("X-Linked-Size", &len.to_string()),
                    ("X-Repo-Commit", COMMIT),
                ],
                b"",
            )
        })
    });
    let e = Env::new();
    let (code, _, err, took) = e.pull(&front.url);
    assert_eq!(code, 1);
    assert!(
        err.contains("/u/a/slow.safetensors: the Hub sent nothing for 1 s; giving up"),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    e.assert_only_the_config_is_cached();
}

#[test]
fn a_listing_that_links_to_itself_is_read_once() {
    let e = Env::new();
    let hub = serve(|base, path| {
        if path.starts_with("/api/models?") {
            let link = format!("<{base}{path}>; rel=\"next\"");
            full(200, &[("Link", &link)], b"[]")
        } else {
            full(404, &[], b"")
        }
    });
    let (code, _, err, _) = e.run(
        &[
            "pool",
            "list",
            "--source",
            "hub",
            "--base",
            "meta-llama/Llama-3.1-8B-Instruct",
        ],
        &hub.url,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("the next page is one already read (a pagination loop)"),
        "{err}"
    );
    assert_eq!(hub.seen.lock().unwrap().len(), 1);
}

#[test]
fn rate_limits_are_waited_for_when_short_and_reported_when_long() {
    let e = Env::new();
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let hub = serve(move |_, path| {
        if path == "/api/models/u/a" {
            let mut n = c.lock().unwrap();
            *n += 1;
            if *n == 1 {
                return full(429, &[("Retry-After", "1")], b"slow down");
            }
        }
        hub_basics(path, COMMIT).unwrap_or_else(|| {
            let w = weights();
            let sha = sha256(&w);
            weights_answer(
                &[("ETag", &format!("\"{sha}\"")), ("X-Repo-Commit", COMMIT)],
                &w,
            )
        })
    });
    let (code, _, err, took) = e.pull(&hub.url);
    assert_eq!(code, 0, "{err}");
    assert_eq!(*calls.lock().unwrap(), 2);
    assert!(took >= Duration::from_secs(1), "{took:?}");

    let hub = serve(|_, _| full(429, &[("Retry-After", "3600")], b""));
    let (code, _, err, took) = Env::new().pull(&hub.url);
    assert_eq!(code, 1);
    assert!(
        err.contains("/api/models/u/a: the Hub answered 429 and asks to wait 3600 s"),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn a_body_that_is_not_the_announced_file_is_not_kept() {
    let w = weights();
    let sha = sha256(&w);
    let zeros = vec![0u8; w.len()];
    let e = Env::new();
    let hub = serve(move |_, path| {
        hub_basics(path, COMMIT).unwrap_or_else(|| {
            weights_answer(
                &[("ETag", &format!("\"{sha}\"")), ("X-Repo-Commit", COMMIT)],
                &zeros,
            )
        })
    });
    let (code, _, err, _) = e.pull(&hub.url);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "u/a/adapter_model.safetensors: the download is not the announced file (SHA-256"
        ),
        "{err}"
    );
    e.assert_only_the_config_is_cached();
}

#[test]
fn a_sha_that_is_not_hex_is_dropped_not_sliced() {
    let e = Env::new();
    let w = weights();
    let sha = sha256(&w);
    let hub = serve(move |_, path| {
        hub_basics(path, "ééééééééééééééééé").unwrap_or_else(|| {
            weights_answer(
                &[("ETag", &format!("\"{sha}\"")), ("X-Repo-Commit", COMMIT)],
                &w,
            )
        })
    });
    let (code, out, err, _) = e.pull(&hub.url);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().ends_with(" at main"), "{out}");
}
