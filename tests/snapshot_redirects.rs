//! Redirects and answers that are not pictures, against real HTTP servers on two loopback
//! "hosts" (127.0.0.1 and 127.0.0.2): a redirect never carries a fetch to another host or
//! port, Frigate's API is asked with none followed, and what a server sends instead of a
//! picture is quoted only as a short, cleaned excerpt.

use std::collections::HashMap;
use std::sync::Arc;

use crate::support::http::{self, HttpServer, Request, Response};
use crate::support::images;
use crate::support::rig::{self, T};
use crate::support::smtp::ReceivedMail;
use snapmail::event::SnapshotSource;
use snapmail::snapshot::fetch::Fetcher;
use snapmail::snapshot::http::FetchError;
use tokio::sync::Semaphore;

/// A file nobody should ever see quoted in full: many lines, the secret past the excerpt.
const FILE: &str =
    "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\nlast line\n";

fn fetcher(env: &[(&str, String)]) -> Fetcher {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let config = snapmail::config::load_from(None, Some(env)).expect("config");
    let settings = snapmail::snapshot::Settings::from_config(&config, &config.resolved_cameras())
        .expect("snapshot settings");
    Fetcher::new(&settings, Arc::new(Semaphore::new(4))).expect("http client")
}

fn payload_url(url: String) -> SnapshotSource {
    SnapshotSource::Url {
        url,
        key: "sources[0].allowed_hosts".into(),
    }
}

/// Answers `302 Location: <to>` for every path but `/picture.jpg`, which is a JPEG.
async fn redirecting_to(to: String) -> HttpServer {
    let jpeg = images::camera_jpeg(320, 240, 80);
    http::start(move |req: &Request| {
        if req.path_only() == "/picture.jpg" {
            Response::jpeg(jpeg.clone())
        } else {
            Response::status(302, "").with_header("Location", &to)
        }
    })
    .await
}

/// The "other host": any request here is a failure of the redirect policy.
async fn secret_host(ip: &str) -> HttpServer {
    http::start_on(ip, |_: &Request| {
        Response::new(200, "text/plain", FILE.as_bytes().to_vec())
    })
    .await
}

#[tokio::test]
async fn a_payload_url_redirected_to_another_host_or_port_is_refused() {
    let other_host = secret_host("127.0.0.2").await;
    let other_port = secret_host("127.0.0.1").await;
    let f = fetcher(&[]);
    for target in [
        format!("{}/latest/meta-data", other_host.url()),
        format!("{}/etc/passwd", other_port.url()),
    ] {
        let start = redirecting_to(target.clone()).await;
        let err = f
            .fetch(&payload_url(format!("{}/snap.jpg", start.url())))
            .await
            .expect_err("the redirect is refused");
        let text = err.to_string();
        assert!(matches!(err, FetchError::Redirect { .. }), "{text}");
        assert!(
            text.contains(&format!("redirected to {target}")) && text.contains("not followed"),
            "{text}"
        );
        assert!(text.contains("sources[0].allowed_hosts"), "{text}");
        assert_eq!(start.request_count(), 1);
    }
    assert_eq!(other_host.request_count(), 0, "nothing reached 127.0.0.2");
    assert_eq!(
        other_port.request_count(),
        0,
        "nothing reached the other port"
    );
}

#[tokio::test]
async fn a_redirect_on_the_same_host_and_port_is_followed_a_few_times() {
    // Relative and absolute Locations on the same origin.
    let start = http::start({
        let jpeg = images::camera_jpeg(320, 240, 80);
        move |req: &Request| match req.path_only() {
            "/a" => Response::status(302, "").with_header("Location", "/b"),
            "/b" => Response::status(301, "").with_header("Location", "picture.jpg"),
            "/picture.jpg" => Response::jpeg(jpeg.clone()),
            _ => Response::status(307, "").with_header("Location", req.path_only()),
        }
    })
    .await;
    let f = fetcher(&[]);
    let bytes = f
        .fetch(&payload_url(format!("{}/a", start.url())))
        .await
        .expect("followed to the picture");
    assert!(bytes.starts_with(&[0xFF, 0xD8]));
    let paths: Vec<String> = start.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/a", "/b", "/picture.jpg"]);

    // A loop on the same origin ends after a few hops.
    let err = f
        .fetch(&payload_url(format!("{}/loop", start.url())))
        .await
        .expect_err("a redirect loop ends");
    assert!(err.to_string().contains("more than 5 redirects"), "{err}");
    assert_eq!(start.request_count(), 3 + 6);
}

#[tokio::test]
async fn a_camera_redirected_elsewhere_is_refused_naming_its_url_key() {
    let other = secret_host("127.0.0.2").await;
    let camera = redirecting_to(format!("{}/picture.jpg", other.url())).await;
    let err = fetcher(&[])
        .fetch(&SnapshotSource::Camera {
            url: format!("{}/ISAPI/Streaming/channels/101/picture", camera.url()),
            credentials: None,
            key: "sources[0].cameras.gate".into(),
        })
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("not followed") && text.contains("set sources[0].cameras.gate.url"),
        "{text}"
    );
    assert_eq!(other.request_count(), 0);
}

#[tokio::test]
async fn frigate_redirects_are_never_followed_and_name_frigate_url() {
    // Even to the same host and port: Frigate's API does not redirect, and the login token
    // must not follow a redirect anywhere.
    let frigate = redirecting_to("/login?next=/api".into()).await;
    let f = fetcher(&[
        ("SNAPMAIL__FRIGATE__URL", frigate.url()),
        // No background version request to count.
        ("SNAPMAIL__FRIGATE__VERSION", "0.14".into()),
    ]);
    let err = f
        .fetch(&SnapshotSource::FrigateEvent {
            event_id: "1.2-abc".into(),
        })
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(matches!(err, FetchError::Redirect { .. }), "{text}");
    assert!(
        text.contains(&format!("redirected to {}/login?next=/api", frigate.url()))
            && text.contains("frigate.url"),
        "{text}"
    );
    assert_eq!(frigate.request_count(), 1, "asked once, not followed");
}

#[tokio::test]
async fn a_text_answer_is_quoted_short_and_clean_and_a_binary_one_not_at_all() {
    let server = http::start(|req: &Request| match req.path_only() {
        "/file" => Response::new(200, "text/plain", FILE.as_bytes().to_vec()),
        "/forged" => Response::new(
            200,
            "text/html",
            b"<p>\r\n2026-01-01T00:00:00Z  WARN forged\x1b[0m \xe2\x80\xaegpj.exe</p>".to_vec(),
        ),
        "/binary" => Response::new(200, "application/octet-stream", {
            let mut b = b"\x7fELF\x02\x01\x01\0".to_vec();
            b.extend_from_slice(FILE.as_bytes());
            b
        }),
        _ => Response::new(404, "text/plain", FILE.as_bytes().to_vec()),
    })
    .await;
    let f = fetcher(&[]);
    let get = |path: &str| {
        let source = payload_url(format!("{}{path}", server.url()));
        let f = &f;
        async move { f.fetch(&source).await }
    };

    let file = get("/file").await.unwrap_err().to_string();
    assert!(
        file.contains(&format!(
            "{} bytes of text/plain, beginning \"root:x:0:0:root:/root:/bin/bash daemon:x:1:1:",
            FILE.len()
        )) && file.contains("not a JPEG, PNG or WebP image"),
        "{file}"
    );
    assert!(
        !file.contains("aws_secret") && !file.contains('\n'),
        "{file}"
    );

    let missing = get("/missing").await.unwrap_err().to_string();
    assert!(
        missing.contains("404 Not Found: ") && missing.contains("root:x:0:0"),
        "{missing}"
    );
    assert!(
        !missing.contains("aws_secret") && !missing.contains('\n'),
        "{missing}"
    );

    let forged = get("/forged").await.unwrap_err().to_string();
    for bad in ['\r', '\n', '\x1b', '\u{202E}'] {
        assert!(!forged.contains(bad), "{bad:?} in {forged:?}");
    }

    let binary = get("/binary").await.unwrap_err().to_string();
    assert!(
        binary.contains(&format!(
            "answered {} bytes of application/octet-stream: not a JPEG",
            FILE.len() + 8
        )),
        "{binary}"
    );
    assert!(
        !binary.contains("ELF") && !binary.contains("root:"),
        "{binary}"
    );
}

fn mail_text(mail: &ReceivedMail) -> String {
    let msg = mail_parser::MessageParser::default()
        .parse(&mail.data)
        .expect("the mail parses as MIME");
    msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default()
}

/// End to end: a script publishes a picture URL on an allowed host; that host redirects to
/// 127.0.0.2, then serves a file instead of a picture. Both mails go without a picture and
/// say why, and neither the mails nor the log carry more of the file than the excerpt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_neither_follows_the_redirect_nor_quotes_the_file() {
    let r = rig::start(64, 64).await;
    let other = secret_host("127.0.0.2").await;
    let nvr = http::start({
        let to = format!("{}/latest/meta-data", other.url());
        move |req: &Request| match req.path_only() {
            "/file" => Response::new(200, "text/plain", FILE.as_bytes().to_vec()),
            _ => Response::status(302, "").with_header("Location", &to),
        }
    })
    .await;
    let config = format!(
        "{}sources:\n  - kind: mqtt\n    topic: scripts/+/alert\n    json: {{image_url: /url}}\n    allowed_hosts: [\"127.0.0.1:{}\"]\n",
        r.config(),
        nvr.port
    );
    let d = crate::support::daemon::Daemon::start(Some(&config), &[]);
    d.wait_for_log("mqtt: subscribed", T).await;

    let redirect = format!(r#"{{"url": "{}/snap.jpg"}}"#, nvr.url());
    r.broker
        .publish("scripts/gate/alert", redirect.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    let text = mail_text(&mails[0]);
    assert!(
        text.contains("not followed") && text.contains("sources[0].allowed_hosts"),
        "{text}"
    );
    d.wait_for_log("which is not followed", T).await;
    assert_eq!(other.request_count(), 0, "nothing reached 127.0.0.2");

    let file = format!(r#"{{"url": "{}/file"}}"#, nvr.url());
    r.broker
        .publish("scripts/porch/alert", file.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(2, T).await;
    let text = mail_text(&mails[1]);
    assert!(text.contains("beginning \"root:x:0:0"), "{text}");
    d.wait_for_log("not a JPEG, PNG or WebP image", T).await;
    let logs = d.logs();
    for leaked in ["aws_secret_access_key", "last line"] {
        assert!(!text.contains(leaked), "the mail quotes {leaked:?}: {text}");
        assert!(!logs.contains(leaked), "the log quotes {leaked:?}:\n{logs}");
    }
}
