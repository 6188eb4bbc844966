//! The Hugging Face Hub: the adapter listing over HTTP and file downloads into the shared HF cache.
//!
//! The endpoint comes from `--endpoint`, else `HF_ENDPOINT`, else huggingface.co, and is handed to
//! both clients explicitly. The token (from `HF_TOKEN` or the standard token file) is sent as a
//! bearer header and never printed, logged or stored. Everything the Hub returns is untrusted: a
//! listing must parse, pagination only follows links on the same origin, repo ids must be plain
//! `org/name` pairs, and a download must have the size the Hub announced or it is removed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::cache::{HfHome, repo_folder};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "{url}: the Hub answered 401 Unauthorized — a token is needed or was refused (set HF_TOKEN or log in with huggingface-cli)"
    )]
    Unauthorized { url: String },
    #[error("{url}: not found on the Hub (404)")]
    NotFound { url: String },
    #[error("{url}: the Hub answered {status}{hint}")]
    Status {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error("{url}: cannot reach the Hub: {reason}")]
    Network { url: String, reason: String },
    #[error("{url}: the Hub's answer is not what a model listing looks like: {reason}")]
    Malformed { url: String, reason: String },
    #[error(
        "{repo}/{file}: the download stopped after {got} of {expected} bytes; nothing was kept"
    )]
    CutShort {
        repo: String,
        file: String,
        expected: u64,
        got: u64,
    },
    #[error("{0:?} is not a Hub repo id (expected org/name)")]
    BadRepoId(String),
    #[error("offline: {0}")]
    Offline(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whether a string is a plain `org/name` repo id (no traversal, no URL syntax).
pub fn valid_repo_id(id: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(id.split_once('/'), Some((a, b)) if ok(a) && ok(b))
}

/// One model of the listing, as much as loracycle reads of it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HubModel {
    /// The repo id (the Hub sends it as `id` and, in older answers, also as `modelId`).
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    model_id: Option<String>,
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub downloads: Option<u64>,
    #[serde(default)]
    pub likes: Option<u64>,
    #[serde(default)]
    pub last_modified: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Sibling {
    pub rfilename: String,
}

impl HubModel {
    pub fn has_file(&self, name: &str) -> bool {
        self.siblings.iter().any(|s| s.rfilename == name)
    }
}

/// The token, from `HF_TOKEN`, else `HF_TOKEN_PATH`, else `$HF_HOME/token`.
fn find_token(home: &HfHome) -> Option<String> {
    let from_env = std::env::var("HF_TOKEN").ok();
    let from_file = || {
        let path = std::env::var_os("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.root.join("token"));
        std::fs::read_to_string(path).ok()
    };
    from_env
        .or_else(from_file)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// A Hub client. `Debug` leaves the token out.
pub struct Hub {
    pub endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
    pub home: HfHome,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

/// The `rel="next"` target of a Link header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| url.to_string())
    })
}

fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Hub {
    /// `endpoint`: the flag, else `HF_ENDPOINT`, else huggingface.co.
    pub fn new(endpoint: Option<&str>, home: HfHome) -> Self {
        let endpoint = endpoint
            .map(str::to_string)
            .or_else(|| std::env::var("HF_ENDPOINT").ok())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .user_agent(concat!("loracycle/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            token: find_token(&home),
            endpoint,
            agent,
            home,
        }
    }

    fn get(&self, url: &str) -> Result<(u16, Option<String>, String), HubError> {
        let mut req = self.agent.get(url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req.call().map_err(|e| HubError::Network {
            url: url.into(),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let link = resp
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| HubError::Network {
                url: url.into(),
                reason: e.to_string(),
            })?;
        Ok((status, link, body))
    }

    fn check_status(url: &str, status: u16) -> Result<(), HubError> {
        match status {
            200..=299 => Ok(()),
            401 | 403 => Err(HubError::Unauthorized { url: url.into() }),
            404 => Err(HubError::NotFound { url: url.into() }),
            429 => Err(HubError::Status {
                url: url.into(),
                status,
                hint: " (rate limited: wait and try again)",
            }),
            500..=599 => Err(HubError::Status {
                url: url.into(),
                status,
                hint: " (a server error on the Hub's side: try again later)",
            }),
            _ => Err(HubError::Status {
                url: url.into(),
                status,
                hint: "",
            }),
        }
    }

    /// Every adapter of `base`, following the listing's pages.
    pub fn list_adapters(
        &self,
        base: &str,
        on_page: &mut dyn FnMut(usize),
    ) -> Result<Vec<HubModel>, HubError> {
        let mut url = format!(
            "{}/api/models?filter={}&full=true&limit=1000",
            self.endpoint,
            encode_query(&format!("base_model:adapter:{base}"))
        );
        let home = origin(&self.endpoint).to_string();
        let mut out = Vec::new();
        let mut pages = 0;
        loop {
            let (status, link, body) = self.get(&url)?;
            Self::check_status(&url, status)?;
            let page: Vec<HubModel> =
                serde_json::from_str(&body).map_err(|e| HubError::Malformed {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
            for mut m in page {
                if m.id.is_empty() {
                    m.id = m.model_id.clone().unwrap_or_default();
                }
                if !valid_repo_id(&m.id) {
                    return Err(HubError::Malformed {
                        url: url.clone(),
                        reason: format!("model id {:?} is not org/name", m.id),
                    });
                }
                out.push(m);
            }
            pages += 1;
            on_page(out.len());
            match link.as_deref().and_then(next_link) {
                Some(next) if origin(&next) == home && pages < 10_000 => url = next,
                Some(next) if origin(&next) != home => {
                    return Err(HubError::Malformed {
                        url,
                        reason: format!("the next page points to another host: {next}"),
                    });
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// One model's listing entry (`/api/models/{id}`), with its file list.
    pub fn model_info(&self, id: &str) -> Result<HubModel, HubError> {
        if !valid_repo_id(id) {
            return Err(HubError::BadRepoId(id.into()));
        }
        let url = format!("{}/api/models/{id}", self.endpoint);
        let (status, _, body) = self.get(&url)?;
        Self::check_status(&url, status)?;
        let mut m: HubModel = serde_json::from_str(&body).map_err(|e| HubError::Malformed {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        if m.id.is_empty() {
            m.id = m.model_id.clone().unwrap_or_else(|| id.to_string());
        }
        if m.id != id {
            return Err(HubError::Malformed {
                url,
                reason: format!("asked for {id}, the answer is about {}", m.id),
            });
        }
        Ok(m)
    }

    fn api(&self) -> hf_hub::api::sync::Api {
        hf_hub::api::sync::ApiBuilder::new()
            .with_endpoint(self.endpoint.clone())
            .with_cache_dir(self.home.hub())
            .with_token(self.token.clone())
            .with_progress(false)
            .build()
            .expect("building the hf-hub client does no I/O")
    }

    /// Downloads `file` of `repo` at `revision` into the HF cache (or finds it there) and returns
    /// its snapshot path. A download that ends short of the announced size is deleted.
    pub fn fetch(&self, repo: &str, revision: &str, file: &str) -> Result<PathBuf, HubError> {
        if !valid_repo_id(repo) {
            return Err(HubError::BadRepoId(repo.into()));
        }
        let snapshot = self.home.snapshot(repo, revision).join(file);
        if snapshot.is_file() {
            return Ok(snapshot);
        }
        let api = self.api();
        let handle = api.repo(hf_hub::Repo::with_revision(
            repo.to_string(),
            hf_hub::RepoType::Model,
            revision.to_string(),
        ));
        let url = handle.url(file);
        let blobs = self.home.hub().join(repo_folder(repo)).join("blobs");
        let before = list_dir(&blobs);
        let result = (|| {
            let meta = api.metadata(&url).map_err(|e| map_api_error(&url, e))?;
            // The etag names the blob file and the commit the snapshot folder: both come from the
            // server, so both must be plain names before hf-hub joins them onto cache paths.
            let plain = |s: &str| {
                !s.is_empty()
                    && s.len() <= 128
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            };
            if !plain(meta.etag()) || !plain(meta.commit_hash()) {
                return Err(HubError::Malformed {
                    url: url.clone(),
                    reason: format!(
                        "etag {:?} / commit {:?} are not plain hex names",
                        meta.etag(),
                        meta.commit_hash()
                    ),
                });
            }
            let path = handle.download(file).map_err(|e| map_api_error(&url, e))?;
            let got = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if got != meta.size() as u64 {
                let blob = std::fs::canonicalize(&path).ok();
                let _ = std::fs::remove_file(&path);
                if let Some(b) = blob {
                    let _ = std::fs::remove_file(b);
                }
                return Err(HubError::CutShort {
                    repo: repo.into(),
                    file: file.into(),
                    expected: meta.size() as u64,
                    got,
                });
            }
            Ok(path)
        })();
        if result.is_err() {
            // hf-hub leaves `<etag>.sync.part` (and a lock) behind for a later resume; a failed
            // download here keeps nothing that was not in the cache before.
            for leftover in list_dir(&blobs).into_iter().filter(|p| !before.contains(p)) {
                let _ = std::fs::remove_file(leftover);
            }
        }
        result
    }

    /// The text of a small file (config, model card), through the cache.
    pub fn fetch_text(&self, repo: &str, revision: &str, file: &str) -> Result<String, HubError> {
        let path = self.fetch(repo, revision, file)?;
        std::fs::read_to_string(&path).map_err(|source| HubError::Io { path, source })
    }
}

fn list_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn map_api_error(url: &str, e: hf_hub::api::sync::ApiError) -> HubError {
    use hf_hub::api::sync::ApiError;
    match e {
        ApiError::RequestError(err) => match *err {
            ureq::Error::StatusCode(code) => match Hub::check_status(url, code) {
                Err(e) => e,
                Ok(()) => HubError::Network {
                    url: url.into(),
                    reason: format!("unexpected status {code}"),
                },
            },
            other => HubError::Network {
                url: url.into(),
                reason: other.to_string(),
            },
        },
        ApiError::IoError(source) => HubError::Io {
            path: PathBuf::from(url),
            source,
        },
        other => HubError::Network {
            url: url.into(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_and_repo_ids() {
        assert_eq!(
            next_link("<https://h.co/api/models?cursor=abc>; rel=\"next\"").as_deref(),
            Some("https://h.co/api/models?cursor=abc")
        );
        assert_eq!(next_link("<https://h.co/a>; rel=\"prev\""), None);
        assert_eq!(
            next_link("<https://h.co/p>; rel=\"prev\", <https://h.co/n>; rel=\"next\"").as_deref(),
            Some("https://h.co/n")
        );
        assert!(valid_repo_id("meta-llama/Llama-3.1-8B-Instruct"));
        for bad in ["../x", "a/../b", "a", "a/b/c", "a/", "/b", "a/b?c", "a b/c"] {
            assert!(!valid_repo_id(bad), "{bad}");
        }
        assert_eq!(
            origin("http://127.0.0.1:80/api/models?x"),
            "http://127.0.0.1:80"
        );
        assert_eq!(
            encode_query("base_model:adapter:meta-llama/Llama-3.1-8B"),
            "base_model%3Aadapter%3Ameta-llama/Llama-3.1-8B"
        );
    }
}
