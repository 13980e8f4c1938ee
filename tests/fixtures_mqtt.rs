//! Every MQTT fixture in `tests/fixtures/`, published to a real Mosquitto and decoded by the
//! library's MQTT task with the decoders a `sources:` list builds: each message either
//! becomes the right event (camera, label, score, zones) or is deliberately ignored.
//!
//! A marker message goes last on each run; the pipeline keeps order, so "the events before
//! the marker" is exactly what the fixtures produced, and an ignored message is proven
//! ignored rather than merely late. Fixtures that are not MQTT (HTTP exchanges and event
//! streams: `frigate-http-login-exchange.txt`, `hikvision-alertstream-wire.txt`,
//! `dahua-eventmanager-wire.txt`, `hikvision-picture-error.xml`) are used by the HTTP tests.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use crate::support::mosquitto::{self, Mosquitto};
use crate::support::wait::wait_until;
use snapmail::event::{Event, SnapshotSource};
use snapmail::mqtt::{self, MqttLinks, MqttSettings};
use tokio::sync::{mpsc, watch};

const T: Duration = Duration::from_secs(20);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// `topic<TAB>payload[<TAB>…]` lines of a `.txt` fixture (comments dropped).
fn lines(name: &str) -> Vec<(String, String)> {
    String::from_utf8(fixture(name))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('\t'))
        .map(|l| {
            let mut cols = l.split('\t');
            let topic = cols.next().unwrap().trim().to_owned();
            let payload = cols.next().unwrap_or("").trim().to_owned();
            (topic, payload)
        })
        .collect()
}

struct Harness {
    broker: Mosquitto,
    rx: mpsc::Receiver<snapmail::event::Input>,
    _shutdown: watch::Sender<bool>,
}

/// Mosquitto plus the library's MQTT task running the decoders of `sources` (YAML list
/// items) and a marker source on `test/marker`.
async fn harness(sources: &str) -> Harness {
    snapmail::tls::install_crypto_provider();
    let broker = mosquitto::start();
    let client_id = format!("fixtures-{}", broker.port);
    let yaml = format!(
        "mqtt:\n  url: {}\n  client_id: {client_id}\nsources:\n{sources}\n  - kind: mqtt\n    topic: test/marker\n    camera: marker\n",
        broker.url()
    );
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    f.write_all(yaml.as_bytes()).unwrap();
    let cfg = snapmail::config::load_from(Some(f.path()), Some(HashMap::new()))
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let decoders = snapmail::sources::decoders(&cfg);
    let (tx, rx) = mpsc::channel(256);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (_publish_tx, publish_rx) = mpsc::channel(1);
    let (connections, _) = watch::channel(0);
    let settings = MqttSettings::from_config(&cfg.mqtt).unwrap();
    tokio::spawn(mqtt::run(
        settings,
        decoders,
        tx,
        MqttLinks {
            publish: publish_rx,
            connections,
        },
        shutdown_rx,
    ));
    let needle = format!("Sending SUBACK to {client_id}");
    wait_until("the decoders' subscription", T, || {
        broker.log().contains(&needle)
    })
    .await;
    Harness {
        broker,
        rx,
        _shutdown: shutdown,
    }
}

impl Harness {
    async fn publish(&self, topic: &str, payload: &[u8]) {
        self.broker.publish(topic, payload, false).await;
    }

    async fn publish_lines(&self, name: &str) {
        for (topic, payload) in lines(name) {
            self.publish(&topic, payload.as_bytes()).await;
        }
    }

    /// The events decoded before the marker.
    async fn events(&mut self) -> Vec<Event> {
        self.publish("test/marker", b"marker").await;
        let mut out = Vec::new();
        loop {
            let input = tokio::time::timeout(T, self.rx.recv())
                .await
                .expect("the marker event arrives")
                .expect("the MQTT task runs");
            let snapmail::event::Input::Event(ev) = input else {
                continue;
            };
            let ev = *ev;
            if ev.camera == "marker" {
                return out;
            }
            out.push(ev);
        }
    }
}

fn summary(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e.camera.clone(), e.summary()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frigate_events_fixtures_and_ignored_tracked_object_updates() {
    let mut h = harness("  - kind: frigate_events").await;
    h.publish("frigate/events", &fixture("frigate-events-new-0.14.json"))
        .await;
    h.publish(
        "frigate/events",
        &fixture("frigate-events-update-0.14-subLabel-face.json"),
    )
    .await;
    // 0.15+/0.16 tracked_object_update messages add descriptions and recognitions to an
    // event that was already reported: no source subscribes to them.
    for name in [
        "frigate-tracked-object-update-description-0.15.json",
        "frigate-tracked-object-update-face-0.16.json",
        "frigate-tracked-object-update-lpr-0.16.json",
    ] {
        h.publish("frigate/tracked_object_update", &fixture(name))
            .await;
    }
    h.publish("frigate/events", &fixture("frigate-events-end-0.15.json"))
        .await;
    let ev = h.events().await;
    assert_eq!(
        summary(&ev),
        pairs(&[
            ("driveway", "person (73%)"),
            ("driveway", "person Alice (86%)"),
            ("garden", "person (85%)"),
        ])
    );
    assert_eq!(ev[0].zones, vec!["driveway_entrance"]);
    assert_eq!(
        ev[1].id, ev[0].id,
        "the update repeats the id; the policy drops it"
    );
    assert_eq!(ev[2].zones, vec!["lawn"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frigate_review_fixtures() {
    let mut h = harness("  - kind: frigate_reviews").await;
    h.publish("frigate/reviews", &fixture("frigate-reviews-new.json"))
        .await;
    h.publish(
        "frigate/reviews",
        &fixture("frigate-reviews-update-detection-to-alert.json"),
    )
    .await;
    // The same review again: already reported.
    h.publish("frigate/reviews", &fixture("frigate-reviews-new.json"))
        .await;
    let ev = h.events().await;
    assert_eq!(
        summary(&ev),
        pairs(&[("driveway", "person"), ("garden", "person, cat")])
    );
    assert_eq!(ev[0].id, "1731254400.923611-r7tq2c");
    assert_eq!(ev[0].zones, vec!["driveway_entrance"]);
    assert_eq!(ev[1].severity.as_deref(), Some("alert"));
    assert_eq!(ev[1].zones, vec!["lawn"]);
    assert_eq!(
        ev[1].related_ids,
        vec!["1739871002.771935-p0d4wn", "1739870998.517302-c81kfa"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frigate_simple_topics_only_the_snapshot_topic_mails() {
    let mut h = harness(
        "  - kind: frigate_snapshot\n  - kind: mqtt\n    topic: frigate/+/motion\n    snapshot:\n      frigate_latest: true",
    )
    .await;
    let jpeg = crate::support::images::camera_jpeg(480, 270, 70);
    for (topic, payload) in lines("frigate-simple-topics.txt") {
        let bytes = if topic.ends_with("/snapshot") {
            jpeg.clone()
        } else {
            payload.into_bytes()
        };
        h.publish(&topic, &bytes).await;
    }
    let ev = h.events().await;
    // motion ON (rising edge) through the generic source, then the snapshot; OFF, counts,
    // availability, states and review_status are ignored or not subscribed.
    assert_eq!(
        summary(&ev),
        pairs(&[("driveway", "motion"), ("driveway", "person")])
    );
    assert_eq!(
        ev[0].snapshot,
        SnapshotSource::FrigateLatest {
            camera: "driveway".into()
        }
    );
    assert_eq!(ev[1].snapshot, SnapshotSource::Inline(jpeg.into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hikvision_bridge_fixtures() {
    let mut h = harness(
        r#"  - kind: hikvision_bridge
    topic: camera-alerts/+/+
    cameras:
      driveway: {url: "http://192.168.1.64", username: admin, password: pw}
  - kind: hikvision_bridge
    topic: BTRGB/hikalarm
    cameras:
      gate: {url: "http://192.168.1.70", dev_id: 1}
  - kind: hikvision_bridge
    topic: hik/alertstream
    cameras:
      driveway: {url: "http://192.168.1.64"}
  - kind: mqtt
    topic: hmd/device_automation/+/motion_detection/state
    label: doorbell motion"#,
    )
    .await;
    h.publish_lines("toxuin-alarmserver-mqtt.txt").await;
    h.publish("BTRGB/hikalarm", &fixture("hikmqtt-payload.json"))
        .await;
    for name in [
        "hikvision-alertstream-vmd.xml",
        "hikvision-alertstream-linedetection.xml",
        "hikvision-alertstream-fielddetection.xml",
        "hikvision-alertstream-nvr-psia.xml",
        "hikvision-alertstream-videoloss-heartbeat.xml",
    ] {
        h.publish("hik/alertstream", &fixture(name)).await;
    }
    h.publish_lines("hikvision-doorbell-addon-motion.txt").await;
    let ev = h.events().await;
    assert_eq!(
        summary(&ev),
        pairs(&[
            // alarmserver: its status messages and ftpUpload are ignored.
            ("driveway", "motion"),
            ("gate", "line crossing"),
            ("yard", "intrusion"),
            ("porch_dahua", "motion"),
            // hikmqtt, camera by devId.
            ("gate", "VCA rule alarm"),
            // alert stream XML: camera by IP, by channelName, or the default; the
            // videoloss/inactive heartbeat is ignored.
            ("driveway", "motion"),
            ("Gate", "line crossing (person)"),
            ("Yard", "intrusion (vehicle)"),
            ("hikvision", "intrusion"),
            // The doorbell add-on's motion trigger; call state is not subscribed.
            ("Front-door", "doorbell motion"),
        ]),
    );
    match &ev[0].snapshot {
        SnapshotSource::Camera { url, .. } => {
            assert_eq!(
                url,
                "http://192.168.1.64/ISAPI/Streaming/channels/101/picture"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_topic_fixtures_from_other_nvrs_and_home_assistant() {
    let mut h = harness(
        r#"  - kind: mqtt
    topic: amcrest2mqtt/+/motion
  - kind: mqtt
    topic: home/cameras/+/motion
  - kind: mqtt
    topic: aimotion/triggers/+
  - kind: mqtt
    topic: homeassistant/binary_sensor/+/state
  - kind: mqtt
    topic: BlueIris/+/Status
    json: {state: /trigger}
  - kind: mqtt
    topic: BlueIris/+/alert-image
    label: person
    json: {camera: /camera, score: /object, id: /id}
  - kind: mqtt
    topic: BlueIris/+/alert-image-b64
  - kind: mqtt
    topic: CameraEvents/VideoMotion/+
  - kind: mqtt
    topic: CameraEvents/+/Image
    json: {image_base64: /imagebase64}"#,
    )
    .await;
    for name in [
        "amcrest2mqtt.txt",
        "ha-mqtt-binary-sensor-motion.txt",
        "blueiris-mqtt.txt",
        "dahua-cameraevents-mqtt.txt",
    ] {
        h.publish_lines(name).await;
    }
    let ev = h.events().await;
    assert_eq!(
        summary(&ev),
        pairs(&[
            ("AMC0458F1C2A9B7E31", "motion"),
            ("driveway", "motion"),
            ("FrontDoor", "motion"),
            ("driveway_motion", "motion"),
            ("frontyard", "motion"),
            ("frontyard", "person (87%)"),
            ("frontyard", "motion"),
            ("NVR:3", "motion"),
            ("NVR:3", "motion"),
        ]),
        "OFF and off messages, status, config and other topics are ignored"
    );
    assert_eq!(ev[5].id, "mqtt:frontyard:@123456789");
    // The fixtures' base64 is cut short ("..."): the mail goes without a picture and says so.
    for e in [&ev[6], &ev[8]] {
        assert!(
            matches!(&e.snapshot, SnapshotSource::None { reason } if reason.contains("base64")),
            "{:?}",
            e.snapshot
        );
    }
}
