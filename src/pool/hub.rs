//! The Hugging Face Hub: the adapter listing over HTTP and file downloads into the shared HF cache.
//!
//! The endpoint comes from `--endpoint`, else `HF_ENDPOINT`, else huggingface.co. The token (from
//! `HF_TOKEN` or the standard token file) is sent as a bearer header to the endpoint's origin
//! only, and never printed, logged or stored. Everything the Hub returns is untrusted: a listing
//! must parse, pagination follows links on the same origin and never one page twice, repo ids
//! and commits must be plain names, and every wait is bounded (`http`); downloads go into the HF
//! cache only under names checked first, with the announced size and hash (`download`).
//!
//! loracycle speaks HTTP to the Hub itself, over `ureq`, instead of through `hf-hub`: hf-hub made
//! its own metadata request and joined that answer's ETag and commit onto cache paths unchecked
//! (a traversal in either wrote outside the cache), forwarded the token across redirects, had no
//! read timeout and panicked on a redirect without `Location`.

mod download;
pub mod http;
pub mod names;

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;

use super::cache::HfHome;
use http::{Http, origin};
pub use names::{valid_dataset_id, valid_repo_id};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A dataset's parquet listing: config → split → file URLs.
pub type ParquetListing =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>>;

/// The most files a parquet listing may name.
pub const MAX_LISTED_FILES: usize = 100_000;

fn shown_url(u: &str) -> String {
    crate::untrusted::printable(&u.chars().take(200).collect::<String>()).into_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "{url}: the Hub answered 401 Unauthorized — a token is needed or was refused (set HF_TOKEN or log in with huggingface-cli)"
    )]
    Unauthorized { url: String },
    #[error(
        "{url}: the Hub answered 403 Forbidden — the token was accepted but has no access to this repo (a gated or private repo: accept its terms on the Hub, or use a token with read access to it)"
    )]
    Forbidden { url: String },
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
    /// `what`: the kind of answer expected (`model listing`, `dataset listing`).
    #[error("{url}: the Hub's answer is not what a {what} looks like: {reason}")]
    Malformed {
        url: String,
        what: &'static str,
        reason: String,
    },
    #[error(
        "{repo}/{file}: the download stopped after {got} of {expected} bytes; nothing was kept"
    )]
    CutShort {
        repo: String,
        file: String,
        expected: u64,
        got: u64,
    },
    #[error(
        "{repo}/{file}: the download is not the announced file (SHA-256 {have}, the Hub's ETag says {want}); nothing was kept"
    )]
    Corrupt {
        repo: String,
        file: String,
        want: String,
        have: String,
    },
    #[error(
        "{repo}/{file}: the download is not a whole safetensors file ({reason}); nothing was kept"
    )]
    NotSafetensors {
        repo: String,
        file: String,
        reason: String,
    },
    #[error("{url}: refusing the Hub's answer: {reason}")]
    Refused { url: String, reason: String },
    #[error(
        "{url}: the Hub sent nothing for {secs} s; giving up (LORACYCLE_HUB_TIMEOUT sets the wait)"
    )]
    Stalled { url: String, secs: f64 },
    #[error("{url}: the Hub answered {status} and asks to wait {secs} s; try again later")]
    WaitAsked { url: String, status: u16, secs: u64 },
    #[error("{0:?} is not a Hub repo id (expected org/name)")]
    BadRepoId(String),
    #[error("{0:?} is not a plain revision and file name")]
    BadName(String),
    #[error("offline: {0}")]
    Offline(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
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

    /// Drops a `sha` that is not a 40-digit hex commit: it is shown and becomes a folder name.
    fn keep_plain_sha(&mut self) {
        if self.sha.as_deref().is_some_and(|s| !names::valid_commit(s)) {
            self.sha = None;
        }
    }
}

/// The token, from `HF_TOKEN`, else `HF_TOKEN_PATH`, else `$HF_HOME/token`.
fn find_token(home: &HfHome) -> Option<String> {
    let from_env = std::env::var("HF_TOKEN").ok();
    let from_file = || {
        let path = std::env::var_os("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.root.join("token"));
        crate::untrusted::read_text(&path, crate::untrusted::SMALL).ok()
    };
    from_env
        .or_else(from_file)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// A Hub client. `Debug` leaves the token out.
pub struct Hub {
    pub endpoint: String,
    /// The HTTP side, which holds the token.
    http: Http,
    pub home: HfHome,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("endpoint", &self.endpoint)
            .field("token", &self.http.has_token().then_some("<set>"))
            .finish()
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
        Self {
            http: Http::new(&endpoint, find_token(&home)),
            endpoint,
            home,
        }
    }

    /// A small JSON answer: status, `Link` header and body (at most 64 MiB).
    fn get(&self, url: &str) -> Result<(u16, Option<String>, String), HubError> {
        let (url, mut resp) = self.http.get(url, &[], &mut |_| Ok(()))?;
        let url = url.as_str();
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
            .map_err(|e| self.http.error(url, e))?;
        Ok((status, link, body))
    }

    fn check_status(url: &str, status: u16) -> Result<(), HubError> {
        match status {
            200..=299 => Ok(()),
            401 => Err(HubError::Unauthorized { url: url.into() }),
            403 => Err(HubError::Forbidden { url: url.into() }),
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
        let mut seen = HashSet::new();
        loop {
            if !seen.insert(url.clone()) {
                return Err(HubError::Malformed {
                    what: "model listing",
                    url,
                    reason: "the next page is one already read (a pagination loop)".into(),
                });
            }
            let (status, link, body) = self.get(&url)?;
            Self::check_status(&url, status)?;
            let page: Vec<HubModel> =
                serde_json::from_str(&body).map_err(|e| HubError::Malformed {
                    what: "model listing",
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
            for mut m in page {
                if m.id.is_empty() {
                    m.id = m.model_id.clone().unwrap_or_default();
                }
                if !valid_repo_id(&m.id) {
                    return Err(HubError::Malformed {
                        what: "model listing",
                        url: url.clone(),
                        reason: format!("model id {:?} is not org/name", m.id),
                    });
                }
                m.keep_plain_sha();
                out.push(m);
            }
            on_page(out.len());
            match link.as_deref().and_then(next_link) {
                Some(next) if origin(&next).eq_ignore_ascii_case(&home) => url = next,
                Some(next) => {
                    return Err(HubError::Malformed {
                        what: "model listing",
                        url,
                        reason: format!("the next page points to another host: {next}"),
                    });
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// A dataset's parquet files as the Hub lists them (`/api/datasets/{id}/parquet`): config →
    /// split → file URLs, each on the endpoint's origin.
    pub fn dataset_parquet(&self, dataset: &str) -> Result<ParquetListing, HubError> {
        if !valid_dataset_id(dataset) {
            return Err(HubError::BadRepoId(dataset.into()));
        }
        let url = format!("{}/api/datasets/{dataset}/parquet", self.endpoint);
        let (status, _, body) = self.get(&url)?;
        Self::check_status(&url, status)?;
        let listing: ParquetListing =
            serde_json::from_str(&body).map_err(|e| HubError::Malformed {
                what: "dataset listing",
                url: url.clone(),
                reason: format!("not a config → split → [url] mapping: {e}"),
            })?;
        let files: usize = listing
            .values()
            .flat_map(|s| s.values())
            .map(Vec::len)
            .sum();
        if files > MAX_LISTED_FILES {
            return Err(HubError::Malformed {
                what: "dataset listing",
                url,
                reason: format!("{files} files listed; at most {MAX_LISTED_FILES} are taken"),
            });
        }
        for u in listing.values().flat_map(|s| s.values()).flatten() {
            if !self.http.on_endpoint(u) {
                return Err(HubError::Malformed {
                    what: "dataset listing",
                    url,
                    reason: format!("a listed file is on another host: {}", shown_url(u)),
                });
            }
        }
        Ok(listing)
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
            what: "model listing",
            url: url.clone(),
            reason: e.to_string(),
        })?;
        if m.id.is_empty() {
            m.id = m.model_id.clone().unwrap_or_else(|| id.to_string());
        }
        if m.id != id {
            return Err(HubError::Malformed {
                what: "model listing",
                url,
                reason: format!("asked for {id}, the answer is about {:?}", m.id),
            });
        }
        m.keep_plain_sha();
        Ok(m)
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
        assert_eq!(
            encode_query("base_model:adapter:meta-llama/Llama-3.1-8B"),
            "base_model%3Aadapter%3Ameta-llama/Llama-3.1-8B"
        );
    }
}
