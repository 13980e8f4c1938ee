//! Running as a Home Assistant add-on: options from `options.json`, the broker from a local
//! server that answers like the Supervisor, and a real Mosquitto with those credentials.

use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::http::{self, Response};
use crate::support::mosquitto;

const T: Duration = Duration::from_secs(30);

fn options(dir: &std::path::Path, extra_mqtt: &str) -> String {
    let path = dir.join("options.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"smtp": {{"username": "cam@example.com", "password": "abcd efgh ijkl mnop", "to": ["me@example.com"], "port": 587}},
                "frigate": {{"url": "http://127.0.0.1:9", "topic_prefix": "frigate"}},
                "rate_limit": {{"cooldown": "60s"}}, "homeassistant": {{"discovery": false}},
                "http": {{"listen": "127.0.0.1:0"}}, "log": {{"level": "info"}}{extra_mqtt}}}"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

async fn run_addon(
    answer: Response,
    extra_mqtt: &str,
) -> (Daemon, crate::support::http::HttpServer, tempfile::TempDir) {
    let supervisor = http::start(move |req: &crate::support::http::Request| {
        if req.path_only() == "/services/mqtt" {
            answer.clone()
        } else {
            Response::status(404, "not found")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), extra_mqtt);
    let url = supervisor.url();
    let outbox = dir.path().join("outbox").display().to_string();
    let d = Daemon::start(
        None,
        &[
            ("SUPERVISOR_TOKEN", "supervisor-token-123"),
            ("SNAPMAIL_ADDON_OPTIONS", opts.as_str()),
            ("SNAPMAIL_SUPERVISOR_URL", url.as_str()),
            ("SNAPMAIL__OUTBOX__DIR", outbox.as_str()),
            (
                "SNAPMAIL__MQTT__LISTEN",
                &format!("127.0.0.1:{}", crate::support::free_port()),
            ),
        ],
    );
    (d, supervisor, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisors_broker_and_credentials_are_used() {
    let broker = mosquitto::start_with_users(&[("addons", "Ohv9ieH1ahphee")]);
    // `port` as a string, as some Supervisor versions send it.
    let body = format!(
        r#"{{"result":"ok","data":{{"addon":"core_mosquitto","host":"127.0.0.1","port":"{}","ssl":false,"username":"addons","password":"Ohv9ieH1ahphee","protocol":"3.1.1"}}}}"#,
        broker.port
    );
    let (d, supervisor, _dir) = run_addon(Response::json(200, &body), "").await;
    d.wait_for_log("running as a Home Assistant add-on", T)
        .await;
    d.wait_for_log("using the MQTT broker from the Supervisor", T)
        .await;
    d.wait_for_log("mqtt: subscribed", T).await;
    let req = &supervisor.requests()[0];
    assert_eq!(
        req.header("authorization"),
        Some("Bearer supervisor-token-123")
    );
    assert!(
        !d.logs().contains("Ohv9ieH1ahphee"),
        "the broker password never appears in logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_options_beat_the_supervisor() {
    let broker = mosquitto::start();
    let extra = format!(r#", "mqtt": {{"url": "{}"}}"#, broker.url());
    let (d, supervisor, _dir) = run_addon(Response::status(500, "must not be asked"), &extra).await;
    d.wait_for_log("using mqtt.url from the options", T).await;
    d.wait_for_log("mqtt: subscribed", T).await;
    assert_eq!(supervisor.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_broker_installed_logs_the_fix() {
    let (d, _s, _dir) = run_addon(
        Response::json(400, r#"{"result":"error","message":"Service not enabled"}"#),
        "",
    )
    .await;
    d.wait_for_log("install the \"Mosquitto broker\" add-on", T)
        .await;
    let (d, _s, _dir) = run_addon(
        Response::json(403, r#"{"result":"error","message":"forbidden"}"#),
        "",
    )
    .await;
    d.wait_for_log("services: [mqtt:need]", T).await;
}
