//! Frigate's HTTP API for pictures: event snapshots and a camera's latest frame, the query
//! options (`bbox`, `crop`, `timestamp`, and the height parameter, `h` up to 0.14 and
//! `height` from 0.15), and the login of the authenticated port (8971, 0.14+).
//!
//! Login: `POST /api/login` with `{"user", "password"}`; the JWT comes back in the
//! `frigate_token` cookie and is sent as `Authorization: Bearer`. Frigate refreshes only
//! cookie tokens, so an expired Bearer token shows as a 401: we log in again once and retry.
//!
//! Version: `frigate.version`, or `auto`, where `GET /api/version` is asked in the background
//! after the first snapshot, so the first mail never waits for it. Until the version is known
//! no height parameter is sent (Frigate then answers full size, which works on every version).
//!
//! Redirects: none are followed. Frigate answers its API endpoints itself; a 3xx means
//! `frigate.url` points at something in front of it (a login page, a proxy, http on the
//! https port), and following it would send the login token along.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, SET_COOKIE};
use reqwest::StatusCode;
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use super::excerpt;
use super::http::{parse_url, Answer, FetchError, Http};
use crate::secret::Secret;

/// A Frigate `major.minor` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32);

impl Version {
    /// The query parameter that resizes a snapshot: FastAPI in 0.15 renamed `h` to `height`.
    pub fn height_param(self) -> &'static str {
        if self <= Version(0, 14) {
            "h"
        } else {
            "height"
        }
    }
}

/// `0.14.1-f4f3cfa`, `"0.15.2"`, `0.14` → the major and minor numbers.
pub fn parse_version(text: &str) -> Option<Version> {
    let t = text.trim().trim_matches('"').trim_start_matches('v');
    let mut parts = t.split(['.', '-', '+']);
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts.next()?.trim().parse().ok()?;
    Some(Version(major, minor))
}

/// How to ask Frigate for pictures (`frigate.*` and the Frigate options of `snapshot.*`).
#[derive(Debug, Clone)]
pub struct FrigateSettings {
    /// `frigate.url` without a trailing slash.
    pub base: String,
    pub login: Option<(String, Secret)>,
    /// `frigate.version`; `None` means auto-detect.
    pub version: Option<Version>,
    pub bbox: Option<bool>,
    pub crop: Option<bool>,
    pub timestamp: Option<bool>,
    /// The height Frigate is asked to scale to (`snapshot.max_height`).
    pub height: u32,
    pub retries_404: u32,
    pub retry_delay: Duration,
    /// Accept Frigate's self-signed certificate.
    pub insecure_tls: bool,
}

/// The client for one Frigate instance (`frigate.url`).
#[derive(Clone)]
pub struct FrigateApi {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    base: String,
    login: Option<(String, Secret)>,
    token: Mutex<Option<String>>,
    /// From `frigate.version`; `None` means auto-detect.
    configured: Option<Version>,
    detected: OnceLock<Version>,
    detecting: AtomicBool,
    bbox: Option<bool>,
    crop: Option<bool>,
    timestamp: Option<bool>,
    height: u32,
    retries_404: u32,
    retry_delay: Duration,
}

impl FrigateApi {
    pub fn new(f: &FrigateSettings, http: Http) -> FrigateApi {
        FrigateApi {
            inner: Arc::new(Inner {
                http,
                base: f.base.clone(),
                login: f.login.clone(),
                token: Mutex::new(None),
                configured: f.version,
                detected: OnceLock::new(),
                detecting: AtomicBool::new(false),
                bbox: f.bbox,
                crop: f.crop,
                timestamp: f.timestamp,
                height: f.height,
                retries_404: f.retries_404,
                retry_delay: f.retry_delay,
            }),
        }
    }

    /// The version in use for query parameters, if known yet.
    pub fn version(&self) -> Option<Version> {
        self.inner
            .configured
            .or_else(|| self.inner.detected.get().copied())
    }

    /// `GET /api/events/<id>/snapshot.jpg`; a 404 (snapshot not written yet) is asked again.
    pub async fn event_snapshot(&self, event_id: &str) -> Result<Bytes, FetchError> {
        let path = format!("/api/events/{event_id}/snapshot.jpg{}", self.query(true));
        let mut attempt = 0;
        let result = loop {
            match self.get_picture(&path).await {
                Err(FetchError::Status { status, .. })
                    if status == StatusCode::NOT_FOUND && attempt < self.inner.retries_404 =>
                {
                    attempt += 1;
                    debug!(
                        event_id,
                        attempt, "snapshot not there yet (404); asking again"
                    );
                    tokio::time::sleep(self.inner.retry_delay).await;
                }
                other => break other,
            }
        };
        self.detect_version_later();
        result
    }

    /// `GET /api/<camera>/latest.jpg`: the camera's current frame.
    pub async fn latest(&self, camera: &str) -> Result<Bytes, FetchError> {
        let (answer, shown) = self.latest_answer(camera).await?;
        answer.into_picture(&shown)
    }

    /// [`FrigateApi::latest`]'s answer whatever its status, and its URL as shown to users
    /// (`doctor` reports both).
    pub async fn latest_answer(&self, camera: &str) -> Result<(Answer, String), FetchError> {
        let path = format!("/api/{camera}/latest.jpg{}", self.query(false));
        let result = self.get_answer(&path).await;
        self.detect_version_later();
        result
    }

    /// `?bbox=1&h=720`-style options; `crop` only applies to event snapshots.
    fn query(&self, event: bool) -> String {
        let mut q: Vec<String> = Vec::new();
        let flag = |v: bool| if v { "1" } else { "0" };
        if let Some(b) = self.inner.bbox {
            q.push(format!("bbox={}", flag(b)));
        }
        if event {
            if let Some(c) = self.inner.crop {
                q.push(format!("crop={}", flag(c)));
            }
        }
        if let Some(t) = self.inner.timestamp {
            q.push(format!("timestamp={}", flag(t)));
        }
        if let Some(v) = self.version() {
            q.push(format!("{}={}", v.height_param(), self.inner.height));
        }
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    }

    /// Ask `/api/version` once, in the background (auto mode only).
    fn detect_version_later(&self) {
        if self.version().is_some() || self.inner.detecting.swap(true, Ordering::SeqCst) {
            return;
        }
        let api = self.clone();
        tokio::spawn(async move {
            match api.get("/api/version").await {
                Ok(body) => match parse_version(&String::from_utf8_lossy(&body)) {
                    Some(v) => {
                        let _ = api.inner.detected.set(v);
                        info!(
                            "frigate: version {}.{} detected; snapshots are resized with `{}`",
                            v.0,
                            v.1,
                            v.height_param()
                        );
                    }
                    None => warn!(
                        "frigate: /api/version answered {}, not a version; set frigate.version (e.g. 0.15) to let Frigate resize snapshots",
                        excerpt::describe(&body, None)
                    ),
                },
                Err(e) => warn!(
                    "frigate: cannot detect the version ({e}); snapshots are fetched full size. Set frigate.version (e.g. 0.14 or 0.15) to skip detection"
                ),
            }
        });
    }

    /// GET `path` (with query) from Frigate, logging in first if configured and once more
    /// when the token has expired.
    pub async fn get(&self, path: &str) -> Result<Bytes, FetchError> {
        let (answer, shown) = self.get_answer(path).await?;
        answer.into_body(&shown)
    }

    /// GET `path` from Frigate: a picture, or an error that describes what came instead.
    async fn get_picture(&self, path: &str) -> Result<Bytes, FetchError> {
        let (answer, shown) = self.get_answer(path).await?;
        answer.into_picture(&shown)
    }

    /// [`FrigateApi::get`] without turning an error status into an error: the answer and the
    /// URL as shown to users. A refused login or a redirect is still an error.
    async fn get_answer(&self, path: &str) -> Result<(Answer, String), FetchError> {
        let url = format!("{}{path}", self.inner.base);
        let (parsed, shown) = parse_url(&url)?;
        let token = match &self.inner.login {
            Some(_) => Some(self.token(None).await?),
            None => None,
        };
        let answer = self
            .send_get(parsed.clone(), &shown, token.as_deref())
            .await
            .map_err(certificate_hint)?;
        let answer = match (answer.status, token) {
            (StatusCode::UNAUTHORIZED, Some(stale)) => {
                info!("frigate: the login token was refused (expired?); logging in again");
                let fresh = self.token(Some(&stale)).await?;
                self.send_get(parsed, &shown, Some(&fresh)).await?
            }
            (_, _) => answer,
        };
        refuse_redirect(&answer, &format!("GET {shown}"))?;
        if answer.status == StatusCode::UNAUTHORIZED {
            let fix = if self.inner.login.is_some() {
                "check frigate.username and frigate.password"
            } else {
                "set frigate.username and frigate.password (the authenticated port 8971 needs a login), or use Frigate's internal port 5000"
            };
            return Err(FetchError::Login {
                url: shown,
                what: "Frigate answered 401 Unauthorized".into(),
                fix: fix.into(),
            });
        }
        Ok((answer, shown))
    }

    async fn send_get(
        &self,
        url: reqwest::Url,
        shown: &str,
        token: Option<&str>,
    ) -> Result<Answer, FetchError> {
        let mut req = self.inner.http.client.get(url);
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        self.inner.http.send(req, shown).await
    }

    /// A valid-looking token: the cached one, or a fresh login. `stale` is a token Frigate
    /// just refused; another task may already have replaced it.
    async fn token(&self, stale: Option<&str>) -> Result<String, FetchError> {
        let mut cached = self.inner.token.lock().await;
        match (cached.as_deref(), stale) {
            (Some(t), None) => return Ok(t.to_owned()),
            (Some(t), Some(s)) if t != s => return Ok(t.to_owned()),
            _ => {}
        }
        let fresh = self.login().await?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    async fn login(&self) -> Result<String, FetchError> {
        let (user, password) = self
            .inner
            .login
            .as_ref()
            .expect("login is only called with credentials");
        let url = format!("{}/api/login", self.inner.base);
        let (parsed, shown) = parse_url(&url)?;
        let body = serde_json::json!({ "user": user, "password": password.expose() });
        let req = self
            .inner
            .http
            .client
            .post(parsed)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let answer = self
            .inner
            .http
            .send(req, &shown)
            .await
            .map_err(certificate_hint)?;
        refuse_redirect(&answer, &format!("POST {shown}"))?;
        if matches!(
            answer.status,
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(FetchError::Login {
                url: format!("POST {shown}"),
                what: format!("Frigate refused the login ({})", answer.status),
                fix: "check frigate.username and frigate.password".into(),
            });
        }
        let cookie = answer
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(frigate_token);
        let status = answer.status;
        let _ = answer.into_body(&format!("POST {shown}"))?;
        match cookie {
            Some(t) => {
                debug!("frigate: logged in");
                Ok(t)
            }
            None => Err(FetchError::Login {
                url: format!("POST {shown}"),
                what: format!("Frigate answered the login with {status} but no frigate_token cookie"),
                fix: "frigate.url must be Frigate itself (port 8971 for the login), not a proxy in front of it".into(),
            }),
        }
    }
}

/// A 3xx from Frigate is an error naming `frigate.url`: Frigate's API never redirects.
fn refuse_redirect(answer: &Answer, shown: &str) -> Result<(), FetchError> {
    if !answer.status.is_redirection() {
        return Ok(());
    }
    Err(FetchError::Redirect {
        url: shown.to_owned(),
        to: answer.location(),
        fix: "Frigate's API does not redirect, so frigate.url points at something in front of Frigate (a login page, a proxy, or http:// on the https port 8971); set frigate.url to Frigate itself, e.g. http://frigate:5000".into(),
    })
}

/// Frigate's port 8971 has a self-signed certificate by default: say which key accepts it.
fn certificate_hint(e: FetchError) -> FetchError {
    match e {
        FetchError::Connect { url, reason } if reason.to_ascii_lowercase().contains("certificate") => {
            FetchError::Login {
                url,
                what: format!("the TLS certificate is not trusted ({reason})"),
                fix: "Frigate's port 8971 uses a self-signed certificate by default: set frigate.insecure_tls: true (or give Frigate a trusted certificate)".into(),
            }
        }
        other => other,
    }
}

/// The JWT in `Set-Cookie: frigate_token=<jwt>; Path=/; …`.
fn frigate_token(set_cookie: &str) -> Option<String> {
    let first = set_cookie.split(';').next()?.trim();
    let value = first.strip_prefix("frigate_token=")?.trim_matches('"');
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("0.14.1-f4f3cfa"), Some(Version(0, 14)));
        assert_eq!(parse_version("\"0.15.2\"\n"), Some(Version(0, 15)));
        assert_eq!(parse_version("0.13"), Some(Version(0, 13)));
        assert_eq!(parse_version("auto"), None);
        assert_eq!(Version(0, 14).height_param(), "h");
        assert_eq!(Version(0, 13).height_param(), "h");
        assert_eq!(Version(0, 15).height_param(), "height");
        assert_eq!(Version(1, 0).height_param(), "height");
    }

    #[test]
    fn token_from_the_login_cookie() {
        let fixture = include_str!("../../tests/fixtures/frigate-http-login-exchange.txt");
        let line = fixture
            .lines()
            .find_map(|l| l.strip_prefix("Set-Cookie: "))
            .unwrap();
        let t = frigate_token(line).unwrap();
        assert!(
            t.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."),
            "{t}"
        );
        assert!(!t.contains(';'));
        assert_eq!(frigate_token("other=1; Path=/"), None);
    }
}
