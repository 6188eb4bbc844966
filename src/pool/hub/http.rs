//! The one HTTP path to the Hub, over `ureq`: every wait bounded, redirects followed by hand, the
//! token only for the endpoint's own origin, and a bounded retry of what the server says is
//! temporary.
//!
//! - **Timeouts.** Connecting, waiting for an answer and each read of a body may each take at most
//!   `LORACYCLE_HUB_TIMEOUT` seconds (30 by default); a stalled server is an error that says so.
//! - **Redirects** are followed here, at most [`MAX_REDIRECTS`], so every hop is seen: one
//!   without a `Location` is an error, a relative one is resolved against the URL it came from,
//!   and only `http`/`https` targets are followed.
//! - **The token** is sent only to the endpoint's origin (scheme, host and port), the rule of
//!   huggingface_hub: a redirect to a CDN or anywhere else never receives it.
//! - **Retries.** 429, 502, 503, 504 and a refused or reset connection are tried again, at most
//!   [`ATTEMPTS`] times in all, after the server's `Retry-After` (seconds, at most
//!   [`MAX_RETRY_AFTER`]) or 1 s, 2 s, … A longer `Retry-After` is not waited for: the error says
//!   how long the Hub asked for.

use std::time::Duration;

use ureq::http::{HeaderMap, Response};

use super::HubError;

pub const MAX_REDIRECTS: usize = 10;
pub const ATTEMPTS: u32 = 4;
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// `scheme://host:port` of a URL (the port only when written).
pub fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find(['/', '?', '#']) {
        Some(i) => &url[..after + i],
        None => url,
    }
}

/// The wait, from `LORACYCLE_HUB_TIMEOUT` (seconds) or 30 s.
pub fn timeout() -> Duration {
    std::env::var("LORACYCLE_HUB_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(Duration::from_secs(30), |s| {
            Duration::from_secs_f64(s.min(86_400.0))
        })
}

/// One response of a chain of redirects, as the caller sees it go by.
pub struct Hop<'a> {
    pub url: &'a str,
    pub status: u16,
    pub headers: &'a HeaderMap,
    /// Whether it came from the endpoint's origin (only those answers are the Hub's word).
    pub from_endpoint: bool,
}

/// The HTTP side of a Hub client.
pub struct Http {
    agent: ureq::Agent,
    home: String,
    token: Option<String>,
    wait: Duration,
}

impl Http {
    pub fn new(endpoint: &str, token: Option<String>) -> Self {
        let wait = timeout();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(wait))
            .timeout_recv_response(Some(wait))
            .timeout_per_read(Some(wait))
            .user_agent(concat!("loracycle/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            agent,
            home: origin(endpoint).to_string(),
            token,
            wait,
        }
    }

    /// Whether a token is sent (to the endpoint's origin).
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `url` is on the endpoint's origin.
    pub fn on_endpoint(&self, url: &str) -> bool {
        origin(url).eq_ignore_ascii_case(&self.home)
    }

    /// GETs `url`, following redirects; `on_hop` sees every response of the chain, the last
    /// included. Returns the final URL and response (any status but a redirect).
    pub fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        on_hop: &mut dyn FnMut(&Hop) -> Result<(), HubError>,
    ) -> Result<(String, Response<ureq::Body>), HubError> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let resp = self.call(&url, headers)?;
            let status = resp.status().as_u16();
            on_hop(&Hop {
                url: &url,
                status,
                headers: resp.headers(),
                from_endpoint: self.on_endpoint(&url),
            })?;
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                return Ok((url, resp));
            }
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| HubError::Refused {
                    url: url.clone(),
                    reason: format!("a {status} redirect without a Location header"),
                })?;
            url = resolve(&url, location)?;
        }
        Err(HubError::Refused {
            url,
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// One request, tried again while the server says the failure is temporary.
    fn call(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response<ureq::Body>, HubError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= ATTEMPTS;
            let mut req = self.agent.get(url);
            if let Some(t) = &self.token
                && self.on_endpoint(url)
            {
                req = req.header("Authorization", &format!("Bearer {t}"));
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let backoff = Duration::from_secs(1 << (attempt - 1).min(5));
            match req.call() {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if !matches!(status, 429 | 502 | 503 | 504) || last {
                        return Ok(resp);
                    }
                    let wait = match retry_after(resp.headers()) {
                        Some(w) if w > MAX_RETRY_AFTER => {
                            return Err(HubError::WaitAsked {
                                url: url.into(),
                                status,
                                secs: w.as_secs(),
                            });
                        }
                        Some(w) => w,
                        None => backoff,
                    };
                    std::thread::sleep(wait);
                }
                Err(e) if !last && transient(&e) => std::thread::sleep(backoff),
                Err(e) => return Err(self.error(url, e)),
            }
        }
    }

    /// A ureq error as the Hub error a person reads.
    pub fn error(&self, url: &str, e: ureq::Error) -> HubError {
        match e {
            ureq::Error::Timeout(_) => self.stalled(url),
            ureq::Error::Io(io) if is_timeout(&io) => self.stalled(url),
            other => HubError::Network {
                url: url.into(),
                reason: other.to_string(),
            },
        }
    }

    /// The error of a server that sent nothing for the whole wait.
    pub fn stalled(&self, url: &str) -> HubError {
        HubError::Stalled {
            url: url.into(),
            secs: self.wait.as_secs_f64(),
        }
    }
}

/// Whether a read failed for want of bytes within the wait (the socket's own timeout, or
/// ureq's, which a body reader wraps in an I/O error).
pub fn is_timeout(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{TimedOut, WouldBlock};
    matches!(e.kind(), TimedOut | WouldBlock)
        || e.get_ref()
            .and_then(|x| x.downcast_ref::<ureq::Error>())
            .is_some_and(|u| match u {
                ureq::Error::Timeout(_) => true,
                ureq::Error::Io(io) => matches!(io.kind(), TimedOut | WouldBlock),
                _ => false,
            })
}

/// Whether a transport error may pass if tried again (a refused or reset connection).
fn transient(e: &ureq::Error) -> bool {
    use std::io::ErrorKind::*;
    match e {
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe
        ),
        ureq::Error::ConnectionFailed => true,
        _ => false,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not honoured: the default back-off applies).
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get("retry-after")?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// `location` resolved against `base`; only http(s) targets.
fn resolve(base: &str, location: &str) -> Result<String, HubError> {
    let bad = |reason: String| HubError::Refused {
        url: base.into(),
        reason,
    };
    let next = url::Url::parse(base)
        .and_then(|b| b.join(location))
        .map_err(|e| bad(format!("redirect to {location:?}: {e}")))?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(bad(format!(
            "redirect to {location:?}: only http and https are followed"
        )));
    }
    Ok(next.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_redirect_targets() {
        assert_eq!(
            origin("http://127.0.0.1:80/api/models?x"),
            "http://127.0.0.1:80"
        );
        assert_eq!(origin("https://h.co?x=1"), "https://h.co");
        assert_eq!(
            resolve("http://h.co/a/resolve/main/x", "/b/resolve/main/x").unwrap(),
            "http://h.co/b/resolve/main/x"
        );
        assert_eq!(
            resolve("http://h.co/a/b", "https://cdn.example/y").unwrap(),
            "https://cdn.example/y"
        );
        assert_eq!(
            resolve("http://h.co/a", "file:///etc/passwd")
                .unwrap_err()
                .to_string(),
            "http://h.co/a: refusing the Hub's answer: redirect to \"file:///etc/passwd\": \
             only http and https are followed"
        );
    }
}
