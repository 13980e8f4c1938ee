//! A real HTTP/1.1 server (hyper) on 127.0.0.1 (or another loopback address, for a second
//! "host") for snapshot and camera API tests.
#![allow(dead_code)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path with the query string, e.g. `/api/events/1.2-abc/snapshot.jpg?h=720`.
    pub path: String,
    /// Header names are lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// First header called `name`, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split_once('?').map_or(&self.path, |(p, _)| p)
    }

    /// First query parameter called `name`, percent-decoded (`+` is a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        let (_, query) = self.path.split_once('?')?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the handler wants sent back.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (slow camera).
    pub delay: Option<Duration>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            delay: None,
        }
    }

    /// 200 with `Content-Type: image/jpeg`.
    pub fn jpeg(bytes: Vec<u8>) -> Response {
        Response::new(200, "image/jpeg", bytes)
    }

    /// Any status with a `text/plain` body.
    pub fn status(code: u16, body: &str) -> Response {
        Response::new(code, "text/plain; charset=utf-8", body.as_bytes().to_vec())
    }

    pub fn json(code: u16, body: &str) -> Response {
        Response::new(code, "application/json", body.as_bytes().to_vec())
    }

    /// Adds a header, replacing one of the same name.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Response {
        self.delay = Some(delay);
        self
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync + 'static;

pub struct HttpServer {
    pub port: u16,
    ip: String,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
    accept_task: AbortHandle,
}

/// Serves `handler` on a free port of 127.0.0.1 until dropped.
pub async fn start<F>(handler: F) -> HttpServer
where
    F: Fn(&Request) -> Response + Send + Sync + 'static,
{
    start_on("127.0.0.1", handler).await
}

/// Serves `handler` on a free port of `ip` (a loopback address such as 127.0.0.2: on Linux
/// all of 127.0.0.0/8 is the loopback interface) until dropped.
pub async fn start_on<F>(ip: &str, handler: F) -> HttpServer
where
    F: Fn(&Request) -> Response + Send + Sync + 'static,
{
    let handler: Arc<Handler> = Arc::new(handler);
    let listener = TcpListener::bind((ip, 0))
        .await
        .expect("bind HTTP listener");
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = requests.clone();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let recorded = recorded.clone();
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let handler = handler.clone();
                let recorded = recorded.clone();
                async move { Ok::<_, Infallible>(answer(req, &*handler, &recorded).await) }
            });
            conns.spawn(async move {
                // Clients hanging up mid-response is not the server's problem.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
            while conns.try_join_next().is_some() {}
        }
    });
    HttpServer {
        port,
        ip: ip.to_owned(),
        requests,
        connections,
        accept_task: task.abort_handle(),
    }
}

async fn answer(
    req: hyper::Request<Incoming>,
    handler: &Handler,
    recorded: &Mutex<Vec<Request>>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let request = Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path_and_query().map_or_else(
            || parts.uri.path().to_string(),
            |pq| pq.as_str().to_string(),
        ),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    recorded.lock().unwrap().push(request.clone());
    let response = handler(&request);
    if let Some(delay) = response.delay {
        tokio::time::sleep(delay).await;
    }
    let mut builder = hyper::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(response.body)))
        .unwrap_or_else(|e| panic!("handler built an invalid response: {e}"))
}

impl HttpServer {
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.ip, self.port)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// TCP connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived and returns all of them.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let what = format!("{n} HTTP request(s) on port {}", self.port);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            if std::time::Instant::now() >= deadline {
                let seen: Vec<String> = got
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect();
                panic!("timed out after {timeout:?} waiting for {what}; got {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// Frigate's snapshot endpoint: `GET /api/events/<id>/snapshot.jpg` returns `snapshot`, any
/// other request gets Frigate's 404 JSON.
pub fn frigate(snapshot: Vec<u8>) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
    move |req: &Request| {
        let is_snapshot = req.method == "GET"
            && req
                .path_only()
                .strip_prefix("/api/events/")
                .and_then(|rest| rest.strip_suffix("/snapshot.jpg"))
                .is_some_and(|id| !id.is_empty() && !id.contains('/'));
        if is_snapshot {
            Response::jpeg(snapshot.clone())
        } else {
            Response::json(404, r#"{"success": false, "message": "Event not found"}"#)
        }
    }
}

/// Wraps `inner` behind HTTP Digest authentication (MD5, qop=auth) the way Hikvision cameras
/// do it: requests without valid credentials get 401 and a fresh challenge.
pub fn digest_protected<F>(
    user: &str,
    pass: &str,
    realm: &str,
    inner: F,
) -> impl Fn(&Request) -> Response + Send + Sync + 'static
where
    F: Fn(&Request) -> Response + Send + Sync + 'static,
{
    let user = user.to_string();
    let realm = realm.to_string();
    let ha1 = md5_hex(format!("{user}:{realm}:{pass}").as_bytes());
    let issued: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    let counter = AtomicU64::new(0);
    move |req: &Request| {
        let verdict = req
            .header("authorization")
            .ok_or("no Authorization header")
            .and_then(|h| check_digest(h, req, &user, &realm, &ha1, &issued.lock().unwrap()));
        match verdict {
            Ok(()) => inner(req),
            Err(why) => {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let nonce = md5_hex(format!("{n}:{nanos}:{realm}").as_bytes());
                issued.lock().unwrap().insert(nonce.clone());
                Response::status(401, &format!("401 Unauthorized: {why}")).with_header(
                    "WWW-Authenticate",
                    &format!(
                        r#"Digest realm="{realm}", qop="auth", nonce="{nonce}", algorithm=MD5"#
                    ),
                )
            }
        }
    }
}

fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `k=v, k="v, with comma"` pairs of a Digest header (after the scheme).
fn digest_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            value = quoted[..end].to_string();
            rest = quoted.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.push((key, value));
    }
    out
}

fn check_digest(
    header: &str,
    req: &Request,
    user: &str,
    realm: &str,
    ha1: &str,
    issued: &HashSet<String>,
) -> Result<(), &'static str> {
    let (scheme, rest) = header
        .trim()
        .split_once(' ')
        .ok_or("malformed Authorization")?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err("not Digest");
    }
    let params = digest_params(rest);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("username") != Some(user) {
        return Err("wrong username");
    }
    if get("realm") != Some(realm) {
        return Err("wrong realm");
    }
    let nonce = get("nonce").ok_or("no nonce")?;
    if !issued.contains(nonce) {
        return Err("unknown nonce");
    }
    if let Some(alg) = get("algorithm") {
        if !alg.eq_ignore_ascii_case("MD5") {
            return Err("unsupported algorithm");
        }
    }
    let uri = get("uri").ok_or("no uri")?;
    if uri != req.path {
        return Err("uri does not match the request");
    }
    let ha2 = md5_hex(format!("{}:{uri}", req.method).as_bytes());
    let expected = match get("qop") {
        Some("auth") => {
            let nc = get("nc").ok_or("no nc")?;
            let cnonce = get("cnonce").ok_or("no cnonce")?;
            md5_hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes())
        }
        Some(_) => return Err("unsupported qop"),
        None => md5_hex(format!("{ha1}:{nonce}:{ha2}").as_bytes()),
    };
    if get("response").map(str::to_ascii_lowercase).as_deref() != Some(expected.as_str()) {
        return Err("wrong response (bad password?)");
    }
    Ok(())
}
