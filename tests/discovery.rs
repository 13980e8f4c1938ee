//! Home Assistant MQTT discovery end to end: the retained device message, the switch that
//! disarms a camera, the test-email button, availability and the counters.

use crate::support::rig::{self, T};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

/// Read the retained message on `topic` (or the next one published there).
async fn read_retained(port: u16, topic: &str, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut opts = MqttOptions::new(
        format!("reader-{}", crate::support::free_port()),
        "127.0.0.1",
        port,
    );
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, 10);
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    let got = tokio::time::timeout(T, async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = el.poll().await {
                if p.topic == topic && want(&p.payload) {
                    return p.payload.to_vec();
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no message on {topic}"));
    let _ = client.try_disconnect();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_switch_disarms_and_button_sends_a_test_mail() {
    let r = rig::start(320, 180).await;
    let d = r
        .daemon(&[
            ("SNAPMAIL__HOMEASSISTANT__DISCOVERY", "true"),
            ("SNAPMAIL__CAMERAS__DRIVEWAY__COOLDOWN", "1s"),
            ("SNAPMAIL__HOMEASSISTANT__STATS_INTERVAL", "1s"),
        ])
        .await;
    let port = r.broker.port;
    let config = read_retained(port, "homeassistant/device/snapmail/config", |_| true).await;
    let v: Value = serde_json::from_slice(&config).expect("valid JSON");
    assert_eq!(v["device"]["identifiers"][0], "snapmail");
    assert_eq!(v["availability_topic"], "snapmail/availability");
    let switch = &v["components"]["snapmail_driveway_notifications"];
    assert_eq!(switch["p"], "switch");
    let online = read_retained(port, "snapmail/availability", |p| p == b"online").await;
    assert_eq!(online, b"online");

    // Home Assistant turns the switch off: the camera is disarmed and its events mail nothing.
    let command = switch["command_topic"].as_str().unwrap();
    r.broker.publish(command, b"OFF", false).await;
    let state_topic = switch["state_topic"].as_str().unwrap().to_owned();
    read_retained(port, &state_topic, |p| {
        serde_json::from_slice::<Value>(p).is_ok_and(|s| s["armed"] == false)
    })
    .await;
    r.frigate_event("driveway", 1).await;
    d.wait_for_log("the camera is disarmed", T).await;

    // The button sends a test mail.
    r.broker
        .publish("snapmail/test_email", b"PRESS", false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("snapmail: test email")
    );
    assert_eq!(mails.len(), 1, "the disarmed camera's event did not mail");

    // The counters follow.
    read_retained(port, "snapmail/stats", |p| {
        serde_json::from_slice::<Value>(p)
            .is_ok_and(|s| s["sent_today"] == 1 && s["last_mail"].is_string())
    })
    .await;
}
