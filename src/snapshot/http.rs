//! HTTP with the snapshot limits, shared by every way of fetching a picture: a whole-request
//! timeout (`snapshot.timeout`), a body read chunk by chunk within `snapshot.max_bytes` (a
//! huge body is cut off, not buffered), and download slots ([`Slots`]): a picture's body is
//! read only with a slot, which it keeps until its last byte is dropped, after the image
//! worker is done with it. Requests still go out at once, so an unreachable camera waits on
//! its own connect timeout, never on another camera's slot.
//!
//! Redirects ([`Redirects`]) are decided per client: Frigate's API is asked with none
//! followed, cameras and picture URLs with redirects on their own host and port only, so a
//! `302` can never carry a fetch past `allowed_hosts` or onto another service of the same
//! machine. What an answer that is not a picture says is quoted only as a short, cleaned
//! excerpt ([`super::excerpt`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION};
use reqwest::redirect::{Attempt, Policy};
use reqwest::{RequestBuilder, StatusCode, Url};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::excerpt;
use crate::errors::{error_chain, redact_url};

/// Limits of every snapshot download (from `snapshot.*`).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Whole-request timeout (`snapshot.timeout`).
    pub timeout: Duration,
    /// Largest body read (`snapshot.max_bytes`).
    pub max_bytes: usize,
}

/// Why the snapshot bytes could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url} answered {status}{body}")]
    Status {
        url: String,
        status: StatusCode,
        /// `": "` and a short excerpt of the answer, or nothing.
        body: String,
    },
    /// A redirect that is not followed; `fix` says which setting decides and what to do.
    #[error("{url} redirected to {to}, which is not followed: {fix}")]
    Redirect {
        url: String,
        to: String,
        fix: String,
    },
    /// A 2xx answer that is not a JPEG, PNG or WebP picture.
    #[error("GET {url} answered {what}: not a JPEG, PNG or WebP image; open the URL in a browser to see what the server sends")]
    NotAPicture { url: String, what: String },
    #[error("GET {url} timed out after {secs}s (snapshot.timeout)")]
    Timeout { url: String, secs: u64 },
    #[error("GET {url} failed: {reason}")]
    Connect { url: String, reason: String },
    #[error("GET {url}: the body is larger than snapshot.max_bytes ({limit} bytes)")]
    TooLarge { url: String, limit: usize },
    #[error("{0}")]
    NoSource(String),
    #[error("bad snapshot URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// A login was refused or is missing; `fix` names the config keys.
    #[error("{url}: {what}; {fix}")]
    Login {
        url: String,
        what: String,
        fix: String,
    },
    /// The camera answered 200 with something that is not a picture.
    #[error("GET {url}: the camera answered with an error instead of a picture: {message} (check {key})")]
    Camera {
        url: String,
        message: String,
        key: String,
    },
}

/// Successful bodies in memory at once, from their first byte until the image worker has
/// finished with them. In a motion storm on fifty cameras every picture is asked for at
/// once; without this bound each finished download (a 1080p frame is ~0.5 MB) would sit
/// in memory until one of the few image workers got to it.
pub type Slots = Arc<Semaphore>;

/// A body and the download slot it holds until the bytes are dropped.
struct Held {
    body: Vec<u8>,
    _slot: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

/// One HTTP answer, its body read within `snapshot.max_bytes`.
pub struct Answer {
    /// The URL that answered (after any redirect followed).
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body of a 2xx answer, or a [`FetchError::Status`] with a short excerpt of it.
    pub fn into_body(self, shown: &str) -> Result<Bytes, FetchError> {
        if self.status.is_success() {
            return Ok(self.body);
        }
        Err(FetchError::Status {
            url: shown.to_owned(),
            status: self.status,
            body: if self.body.is_empty() {
                String::new()
            } else {
                format!(": {}", self.describe())
            },
        })
    }

    /// The body of a 2xx answer that is a picture (JPEG, PNG or WebP by its first bytes);
    /// anything else is described, never quoted at length.
    pub fn into_picture(self, shown: &str) -> Result<Bytes, FetchError> {
        if self.status.is_success() && !is_picture(&self.body) {
            return Err(FetchError::NotAPicture {
                url: shown.to_owned(),
                what: self.describe(),
            });
        }
        self.into_body(shown)
    }

    /// The `Content-Type` the server named, if it is readable.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())
    }

    /// Size, type and a short cleaned excerpt of the body ([`excerpt::describe`]).
    pub fn describe(&self) -> String {
        excerpt::describe(&self.body, self.content_type())
    }

    /// Where a 3xx answer points, cleaned for messages (no credentials, no controls).
    pub fn location(&self) -> String {
        let location = self.headers.get(LOCATION).and_then(|v| v.to_str().ok());
        match location.map(|l| self.url.join(l)) {
            Some(Ok(to)) => excerpt::excerpt(&redact_url(to.as_str())),
            Some(Err(_)) => "(an unreadable Location header)".into(),
            None => "(no Location header)".into(),
        }
    }
}

/// JPEG, PNG or WebP by the first bytes: what the image stage can decode.
pub fn is_picture(body: &[u8]) -> bool {
    body.starts_with(&[0xFF, 0xD8])
        || body.starts_with(b"\x89PNG\r\n\x1a\n")
        || (body.len() >= 12 && &body[..4] == b"RIFF" && &body[8..12] == b"WEBP")
}

/// Which redirects a client follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    /// None: a 3xx answer comes back as it is. For Frigate's API, which answers its own
    /// endpoints and never redirects; a 3xx there means `frigate.url` points at a proxy or
    /// a login page in front of Frigate.
    Never,
    /// Only to the scheme, host and port of the first request, at most [`MAX_REDIRECTS`]
    /// times. For cameras and picture URLs: an NVR may move a picture within itself, but
    /// the host and port are what the configuration (or `allowed_hosts`) vouched for, and a
    /// redirect elsewhere — another machine, the cloud's metadata address, another service
    /// on the same machine — is refused.
    SameOrigin,
}

/// Redirects followed on one host and port before giving up.
pub const MAX_REDIRECTS: usize = 5;

/// Why the same-origin policy stopped a redirect (the source of reqwest's redirect error).
#[derive(Debug)]
enum Refused {
    OtherOrigin { to: String },
    TooMany,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::OtherOrigin { to } => write!(f, "redirect to another host or port ({to})"),
            Refused::TooMany => write!(f, "more than {MAX_REDIRECTS} redirects"),
        }
    }
}

impl std::error::Error for Refused {}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

fn policy(redirects: Redirects) -> Policy {
    match redirects {
        Redirects::Never => Policy::none(),
        Redirects::SameOrigin => Policy::custom(|attempt: Attempt| {
            // `previous` starts with the first request's URL.
            let Some(first) = attempt.previous().first().cloned() else {
                return attempt.stop();
            };
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(Refused::TooMany);
            }
            if same_origin(&first, attempt.url()) {
                attempt.follow()
            } else {
                let to = excerpt::excerpt(&redact_url(attempt.url().as_str()));
                attempt.error(Refused::OtherOrigin { to })
            }
        }),
    }
}

impl FetchError {
    /// A refused redirect's advice, for the caller that knows which setting decides.
    pub fn redirect_fix(self, fix: impl FnOnce() -> String) -> FetchError {
        match self {
            FetchError::Redirect { url, to, .. } => FetchError::Redirect {
                url,
                to,
                fix: fix(),
            },
            other => other,
        }
    }
}

/// An HTTP client with the snapshot limits: whole-request timeout, bounded body.
#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    max_bytes: usize,
    timeout: Duration,
    slots: Slots,
}

impl Http {
    /// `insecure` accepts any server certificate (only for Frigate's self-signed one);
    /// `redirects` says which redirects are followed.
    pub fn new(
        settings: &HttpSettings,
        insecure: bool,
        redirects: Redirects,
        slots: Slots,
    ) -> Result<Http, reqwest::Error> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("snapmail/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(insecure)
            .redirect(policy(redirects))
            // No idle connections are kept. A kept connection holds on to hyper's read
            // buffer, which has grown to ~400 KB while it read a picture, and a burst runs up
            // to 16 connections at once: ~7 MB that stayed for as long as events kept coming
            // (the storm bench's peak RSS, 46 → 38 MB). A fresh connection costs a TCP
            // connect (a TLS handshake for https), small beside decoding the picture.
            .pool_max_idle_per_host(0)
            .build()?;
        Ok(Http {
            client,
            max_bytes: settings.max_bytes,
            timeout: settings.timeout,
            slots,
        })
    }

    /// Send `req` and read the answer, whatever its status. `shown` is the URL for messages.
    pub async fn send(&self, req: RequestBuilder, shown: &str) -> Result<Answer, FetchError> {
        let map_err = |e: reqwest::Error| {
            let refused = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<Refused>());
            if let Some(Refused::OtherOrigin { to }) = refused {
                return FetchError::Redirect {
                    url: format!("GET {shown}"),
                    to: to.clone(),
                    fix: "redirects are followed only on the same host and port".into(),
                };
            }
            if e.is_timeout() {
                FetchError::Timeout {
                    url: shown.to_owned(),
                    secs: self.timeout.as_secs(),
                }
            } else {
                FetchError::Connect {
                    url: shown.to_owned(),
                    reason: error_chain(&e),
                }
            }
        };
        let mut resp = req.send().await.map_err(map_err)?;
        let url = resp.url().clone();
        let status = resp.status();
        let announced = resp.content_length().unwrap_or(0);
        if announced > self.max_bytes as u64 {
            return Err(FetchError::TooLarge {
                url: shown.to_owned(),
                limit: self.max_bytes,
            });
        }
        let headers = resp.headers().clone();
        // Error answers are small and never reach an image worker: no slot for them (a
        // camera's 401 challenge must not hold one while its retry waits for another).
        let slot = if status.is_success() {
            Some(
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("download slots are never closed"),
            )
        } else {
            None
        };
        // Sized once from Content-Length (already bounded above) rather than grown by
        // doubling: a 500 KB snapshot then holds 500 KB, not a 1 MB buffer and its copies.
        let mut body = Vec::with_capacity(announced as usize);
        while let Some(chunk) = resp.chunk().await.map_err(map_err)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge {
                    url: shown.to_owned(),
                    limit: self.max_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        let body = match slot {
            Some(slot) => Bytes::from_owner(Held { body, _slot: slot }),
            None => Bytes::from(body),
        };
        Ok(Answer {
            url,
            status,
            headers,
            body,
        })
    }
}

/// Parse `url` for a request, keeping a printable form without credentials.
pub fn parse_url(url: &str) -> Result<(Url, String), FetchError> {
    let parsed = Url::parse(url).map_err(|e| FetchError::BadUrl {
        url: redact_url(url),
        reason: e.to_string(),
    })?;
    Ok((parsed, redact_url(url)))
}
