//! Home Assistant MQTT discovery end to end: the retained device message, the switch that
//! disarms a camera, the snooze number and sensor, the test-email button, availability,
//! the counters and their persistence, two instances on one broker, and the removal of a
//! camera dropped from the configuration.

use crate::support::daemon::{self, Daemon};
use crate::support::rig::{self, Rig, T};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

/// Read the retained message on `topic` (or the next one published there).
async fn read_retained(port: u16, topic: &str, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut opts = MqttOptions::new(
        format!("reader-{}", crate::support::free_port()),
        ("127.0.0.1", port),
    );
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::builder(opts).capacity(10).build();
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
            DEFAULT_INSTANCE,
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

/// The rig's `mqtt.client_id` is `snapmail-test`; with the default one the instance id, and
/// so the device, ids and topics, are the defaults `snapmail` (those of earlier versions).
const DEFAULT_INSTANCE: (&str, &str) = ("SNAPMAIL__MQTT__CLIENT_ID", "snapmail");

fn json(p: &[u8]) -> Value {
    serde_json::from_slice(p).unwrap_or(Value::Null)
}

/// Stop a daemon with SIGTERM and wait until it has exited (its state files are written).
async fn stop(d: &mut Daemon) {
    d.terminate();
    assert_eq!(d.wait_exit(T).await, Some(0), "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_broker_are_two_devices() {
    let r = rig::start(320, 180).await;
    let port = r.broker.port;
    let common = [
        ("SNAPMAIL__HOMEASSISTANT__DISCOVERY", "true"),
        ("SNAPMAIL__HOMEASSISTANT__STATS_INTERVAL", "1s"),
        ("SNAPMAIL__CAMERAS__DRIVEWAY__COOLDOWN", "1s"),
    ];
    let with = |client_id: &'static str| {
        let mut envs = common.to_vec();
        envs.push(("SNAPMAIL__MQTT__CLIENT_ID", client_id));
        envs
    };
    // The default client id keeps the default names; the second instance gets its own.
    let _a = r.daemon(&with("snapmail")).await;
    let _b = r.daemon(&with("snapmail-garage")).await;
    let a = json(&read_retained(port, "homeassistant/device/snapmail/config", |_| true).await);
    let b = json(
        &read_retained(port, "homeassistant/device/snapmail_garage/config", |_| {
            true
        })
        .await,
    );
    assert_ne!(a["device"]["identifiers"], b["device"]["identifiers"]);
    let ids = |v: &Value| -> std::collections::BTreeSet<String> {
        v["components"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| c["unique_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        ids(&a).is_disjoint(&ids(&b)),
        "{:?} / {:?}",
        ids(&a),
        ids(&b)
    );
    assert_eq!(a["availability_topic"], "snapmail/availability");
    assert_eq!(b["availability_topic"], "snapmail-garage/availability");
    for topic in ["snapmail/availability", "snapmail-garage/availability"] {
        read_retained(port, topic, |p| p == b"online").await;
    }

    // Turning off A's driveway switch disarms A's camera only.
    let a_switch = &a["components"]["snapmail_driveway_notifications"];
    let b_switch = &b["components"]["snapmail_garage_driveway_notifications"];
    assert_ne!(a_switch["command_topic"], b_switch["command_topic"]);
    r.broker
        .publish(a_switch["command_topic"].as_str().unwrap(), b"OFF", false)
        .await;
    read_retained(port, a_switch["state_topic"].as_str().unwrap(), |p| {
        json(p)["armed"] == false
    })
    .await;
    read_retained(port, b_switch["state_topic"].as_str().unwrap(), |p| {
        json(p)["armed"] == true
    })
    .await;
    r.frigate_event("driveway", 1).await;
    _a.wait_for_log("the camera is disarmed", T).await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert_eq!(mails.len(), 1, "only the armed instance mailed");

    // Each instance counts its own mails on its own stats topic.
    read_retained(port, "snapmail-garage/stats", |p| {
        json(p)["sent_today"] == 1
    })
    .await;
    read_retained(port, "snapmail/stats", |p| json(p)["sent_today"] == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_a_restart() {
    let r = rig::start(320, 180).await;
    let port = r.broker.port;
    let envs = [
        DEFAULT_INSTANCE,
        ("SNAPMAIL__HOMEASSISTANT__DISCOVERY", "true"),
        ("SNAPMAIL__HOMEASSISTANT__STATS_INTERVAL", "1s"),
    ];
    let mut first = r.daemon(&envs).await;
    // The rig's cooldown is 60 s: the first event mails, the second is suppressed.
    r.frigate_event("driveway", 1).await;
    r.smtp.wait_for_messages(1, T).await;
    r.frigate_event("driveway", 2).await;
    first.wait_for_log("suppressed by cooldown", T).await;
    read_retained(port, "snapmail/stats", |p| {
        let s = json(p);
        s["sent_today"] == 1 && s["suppressed_today"] == 1
    })
    .await;
    stop(&mut first).await;

    let second = daemon::start_in(first.dir(), Some(&r.config()), &envs);
    second.wait_for_log("mqtt: subscribed", T).await;
    r.frigate_event("driveway", 3).await;
    r.smtp.wait_for_messages(2, T).await;
    r.frigate_event("driveway", 4).await;
    second.wait_for_log("suppressed by cooldown", T).await;
    read_retained(port, "snapmail/stats", |p| {
        let s = json(p);
        s["sent_today"] == 2 && s["suppressed_today"] == 2 && s["last_mail"].is_string()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_mails_count_as_sent() {
    let r = rig::start(320, 180).await;
    let port = r.broker.port;
    // No smtp section: preview mode.
    let config = format!(
        "mqtt:\n  url: {}\nfrigate:\n  url: {}\noutbox:\n  dir: ./spool\nhomeassistant:\n  discovery: true\n  stats_interval: 1s\n",
        r.broker.url(),
        r.frigate.url()
    );
    let d = Daemon::start(Some(&config), &[]);
    d.wait_for_log("mqtt: subscribed", T).await;
    r.frigate_event("driveway", 1).await;
    d.wait_for_log("preview: mail written", T).await;
    read_retained(port, "snapmail/stats", |p| {
        let s = json(p);
        s["sent_today"] == 1 && s["last_mail"].is_string()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_dropped_from_the_config_is_removed_from_home_assistant() {
    let r = rig::start(320, 180).await;
    let port = r.broker.port;
    let topic = "homeassistant/device/snapmail/config";
    let base = [
        DEFAULT_INSTANCE,
        ("SNAPMAIL__HOMEASSISTANT__DISCOVERY", "true"),
    ];
    let both = [
        base[0],
        base[1],
        ("SNAPMAIL__CAMERAS__A__COOLDOWN", "1s"),
        ("SNAPMAIL__CAMERAS__B__COOLDOWN", "1s"),
    ];
    let mut first = r.daemon(&both).await;
    read_retained(port, topic, |p| {
        json(p)["components"]["snapmail_b_notifications"]["p"] == "switch"
            && json(p)["components"]["snapmail_b_notifications"]["command_topic"].is_string()
    })
    .await;
    first
        .wait_for_log("homeassistant: publishing discovery", T)
        .await;
    stop(&mut first).await;

    let only_a = [base[0], base[1], ("SNAPMAIL__CAMERAS__A__COOLDOWN", "1s")];
    let second = daemon::start_in(first.dir(), Some(&r.config()), &only_a);
    second.wait_for_log("mqtt: subscribed", T).await;
    // The retained device message marks b's entities for removal: the platform alone.
    let v = json(
        &read_retained(port, topic, |p| {
            json(p)["components"]["snapmail_b_notifications"] == serde_json::json!({"p": "switch"})
        })
        .await,
    );
    let cmps = &v["components"];
    assert_eq!(
        cmps["snapmail_b_snooze"],
        serde_json::json!({"p": "number"})
    );
    assert_eq!(
        cmps["snapmail_b_snoozed_until"],
        serde_json::json!({"p": "sensor"})
    );
    assert_eq!(cmps["snapmail_a_notifications"]["p"], "switch");
    assert!(cmps["snapmail_a_notifications"]["unique_id"].is_string());
    second
        .wait_for_log("removing 3 entit(ies) no longer configured", T)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snooze_is_shown_and_set_from_home_assistant() {
    let r: Rig = rig::start(320, 180).await;
    let port = r.broker.port;
    let d = r
        .daemon(&[
            DEFAULT_INSTANCE,
            ("SNAPMAIL__HOMEASSISTANT__DISCOVERY", "true"),
            ("SNAPMAIL__CAMERAS__DRIVEWAY__COOLDOWN", "1s"),
        ])
        .await;
    let v = json(&read_retained(port, "homeassistant/device/snapmail/config", |_| true).await);
    let number = &v["components"]["snapmail_driveway_snooze"];
    let sensor = &v["components"]["snapmail_driveway_snoozed_until"];
    assert_eq!(number["p"], "number");
    assert_eq!(sensor["p"], "sensor");
    assert_eq!(sensor["device_class"], "timestamp");
    let state_topic = sensor["state_topic"].as_str().unwrap().to_owned();
    assert_eq!(number["state_topic"], state_topic.as_str());

    // Home Assistant's number sends the minutes (as its command template renders them).
    r.broker
        .publish(number["command_topic"].as_str().unwrap(), b"15", false)
        .await;
    let s = json(&read_retained(port, &state_topic, |p| json(p)["state"] == "snoozed").await);
    assert!(s["snoozed_until"].is_string(), "{s}");
    assert_eq!(s["snooze_minutes"], 15);
    r.frigate_event("driveway", 1).await;
    d.wait_for_log("filtered by snoozed", T).await;

    // 0 cancels: the sensor's value goes back to none, the number to 0.
    r.broker
        .publish(number["command_topic"].as_str().unwrap(), b"0", false)
        .await;
    let s = json(&read_retained(port, &state_topic, |p| json(p)["state"] == "armed").await);
    assert!(s["snoozed_until"].is_null());
    assert_eq!(s["snooze_minutes"], 0);
}
