//! What a new user sees on a first start with the embedded defaults, as `docker logs` or a
//! file shows it (stderr is not a terminal): one line per thing that happened, no colour
//! codes, no warning about snapmail's own embedded broker, one `subscribed` per connection,
//! and no errors from the embedded broker when short-lived clients publish and leave.

use std::process::{Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, PublishOptions, QoS};

use crate::support::rig::{NEW, T};
use crate::support::wait::wait_until;

/// Connect, publish one message with QoS 1, wait for its PUBACK, disconnect — what
/// `mosquitto_pub` does.
async fn publish_once(port: u16, payload: &[u8]) {
    let opts = MqttOptions::new(format!("pub-{}", fastrand::u32(..)), ("127.0.0.1", port));
    let (client, mut events) = AsyncClient::builder(opts).capacity(4).build();
    let mut published = false;
    tokio::time::timeout(T, async {
        loop {
            match events.poll().await.expect("the embedded broker answers") {
                Event::Incoming(Packet::ConnAck(_)) if !published => {
                    client
                        .publish(
                            "frigate/events",
                            payload.to_vec(),
                            PublishOptions::new(QoS::AtLeastOnce),
                        )
                        .await
                        .unwrap();
                    published = true;
                }
                Event::Incoming(Packet::PubAck(_)) => break,
                _ => {}
            }
        }
    })
    .await
    .expect("published in time");
    client.disconnect().await.unwrap();
    // Let the DISCONNECT go out before the socket closes.
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_logs_plainly_and_only_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let log = dir.path().join("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_snapmail"));
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("SNAPMAIL") || k == "RUST_LOG" || k == "NO_COLOR" {
            cmd.env_remove(&key);
        }
    }
    let mut child = cmd
        .current_dir(dir.path())
        .env("SNAPMAIL__MQTT__LISTEN", format!("127.0.0.1:{port}"))
        .env("SNAPMAIL__HTTP__LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("subscribed", T, || text().contains("mqtt: subscribed")).await;

    publish_once(port, NEW.as_bytes()).await;
    publish_once(port, b"hello").await;
    wait_until("the preview mail and the unreadable message", T, || {
        let t = text();
        t.contains("preview: mail written") && t.contains("unreadable message ignored")
    })
    .await;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");

    let out = text();
    assert!(
        !out.contains('\u{1b}'),
        "no colour codes off a terminal:\n{out}"
    );
    assert_eq!(out.matches("mqtt: subscribed").count(), 1, "{out}");
    assert!(
        !out.contains("mqtt: connection to"),
        "no warning about the embedded broker:\n{out}"
    );
    assert!(!out.contains("ERROR"), "no errors:\n{out}");
    assert!(!out.contains("already gone"), "{out}");
}
