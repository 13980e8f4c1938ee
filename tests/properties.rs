//! Property tests on stable Rust: every payload decoder, the config loader and the image
//! entry point take arbitrary input without panicking, and a Frigate event decodes to the
//! fields it was made from. (`fuzz/` runs the same entry points under cargo-fuzz.)

use std::collections::HashMap;
use std::time::SystemTime;

use proptest::prelude::*;
use snapmail::config::Config;
use snapmail::event::SnapshotSource;
use snapmail::mqtt::{Decoded, Message};
use snapmail::snapshot::image::{thumbnail, Limits, ResizeSpec};
use snapmail::sources::decoders;

fn load(yaml: &str) -> Result<Config, snapmail::config::ConfigError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).expect("write config");
    snapmail::config::load_from(Some(&path), Some(HashMap::new()))
}

/// One source of every kind in the registry, with the options that switch on each
/// decoding path.
fn every_source() -> Config {
    load(&snapmail::config::sources::every_source_yaml())
        .expect("the config with every source loads")
}

/// Topics every decoder listens to (from the registry of source kinds), the same with one
/// level replaced (other cameras and event types, near misses), and anything at all.
fn topic() -> impl Strategy<Value = String> {
    let known: Vec<String> = snapmail::config::sources::KINDS
        .iter()
        .flat_map(|k| k.topics.iter().map(|t| t.to_string()))
        .collect();
    let varied = (
        proptest::sample::select(known.clone()),
        any::<proptest::sample::Index>(),
        "[^/]{0,12}",
    )
        .prop_map(|(topic, at, level)| {
            let mut levels: Vec<&str> = topic.split('/').collect();
            let i = at.index(levels.len());
            levels[i] = &level;
            levels.join("/")
        });
    prop_oneof![proptest::sample::select(known), varied, ".{0,30}"]
}

/// Payloads: arbitrary bytes, JSON-looking text, XML, switch words, JPEG-looking bytes.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        "\\{.{0,200}\\}".prop_map(String::into_bytes),
        any::<serde_json_value::Json>().prop_map(|j| j.0.into_bytes()),
        "<EventNotificationAlert>.{0,200}".prop_map(String::into_bytes),
        // Valid Frigate messages with any number as a time: start_time comes off the wire.
        (any::<f64>(), prop_oneof![Just("events"), Just("reviews")]).prop_map(|(t, kind)| {
            let after = if kind == "events" {
                format!(r#""id":"a","camera":"c","has_snapshot":true,"start_time":{t:e}"#)
            } else {
                format!(r#""id":"r","camera":"c","severity":"alert","start_time":{t:e},"data":{{"detections":["a"],"objects":["person"]}}"#)
            };
            format!(r#"{{"type":"new","before":{{{after}}},"after":{{{after}}}}}"#).into_bytes()
        }),
        prop_oneof![Just("ON"), Just("OFF"), Just("1"), Just("0"), Just("")]
            .prop_map(|s| s.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..256).prop_map(|mut v| {
            v.splice(0..0, [0xFF, 0xD8, 0xFF]);
            v
        }),
    ]
}

/// Random JSON documents shaped a little like the sources' messages.
mod serde_json_value {
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    pub struct Json(pub String);

    fn value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 8, |inner| {
            let keys = prop_oneof![
                Just("type".to_string()),
                Just("before".to_string()),
                Just("after".to_string()),
                Just("id".to_string()),
                Just("camera".to_string()),
                Just("label".to_string()),
                Just("sub_label".to_string()),
                Just("top_score".to_string()),
                Just("score".to_string()),
                Just("start_time".to_string()),
                Just("has_snapshot".to_string()),
                Just("severity".to_string()),
                Just("data".to_string()),
                Just("detections".to_string()),
                Just("image".to_string()),
                Just("url".to_string()),
                "[a-z]{1,6}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(keys, inner, 0..8)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    impl Arbitrary for Json {
        type Parameters = ();
        type Strategy = BoxedStrategy<Json>;
        fn arbitrary_with(_: ()) -> Self::Strategy {
            value().prop_map(|v| Json(v.to_string())).boxed()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic(
        messages in proptest::collection::vec((topic(), payload(), any::<bool>()), 1..8)
    ) {
        // One set of decoders for the whole sequence: their state (edges, reviews seen)
        // is exercised too.
        let mut all = decoders(&every_source());
        for (topic, payload, retained) in &messages {
            for d in all.iter_mut() {
                let _ = d.decode(Message { topic, payload, retained: *retained });
            }
        }
    }

    #[test]
    fn the_config_loader_never_panics(text in prop_oneof![
        ".{0,300}",
        "(mqtt|smtp|frigate|sources|cameras|outbox|snapshot|defaults|schedules)\
         :\n  [a-z_]{1,12}: .{0,20}\n( +[a-z_-]{1,10}: .{0,20}\n){0,6}",
        "sources:\n  - kind: (mqtt|frigate_events|frigate_reviews|frigate_snapshot|hikvision_bridge)\n\
         (    [a-z_]{1,12}: .{0,20}\n){0,5}",
    ]) {
        let _ = load(&text);
    }

    #[test]
    fn thumbnail_never_panics(bytes in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        // Valid magic numbers in front, so the decoders get past format detection.
        (prop_oneof![
            Just(b"\xFF\xD8\xFF\xE0".to_vec()),
            Just(b"\x89PNG\r\n\x1a\n".to_vec()),
            Just(b"RIFF\0\0\0\0WEBPVP8 ".to_vec()),
        ], proptest::collection::vec(any::<u8>(), 0..2048))
            .prop_map(|(mut head, tail)| { head.extend(tail); head }),
    ]) {
        let spec = ResizeSpec { max_width: 64, max_height: 64, jpeg_quality: 80, max_image_bytes: None };
        let _ = thumbnail(&bytes, &spec, &Limits::default());
    }

    #[test]
    fn frigate_events_round_trip(
        id in "[0-9]{10}\\.[0-9]{6}-[a-z0-9]{6}",
        camera in "\\PC{1,20}",
        label in "[a-z_]{1,12}",
        sub_label in proptest::option::of("\\PC{1,16}"),
        score in 0.01f32..1.0,
        zones in proptest::collection::vec("[a-z_]{1,10}", 0..4),
        start in 0.0f64..4_000_000_000.0,
        stationary in any::<bool>(),
        kind in prop_oneof![Just("new"), Just("update"), Just("end")],
    ) {
        let payload = serde_json::json!({
            "type": kind,
            "before": {"id": id, "camera": camera},
            "after": {
                "id": id, "camera": camera, "label": label,
                "sub_label": sub_label.as_ref().map(|s| serde_json::json!([s, 0.9])),
                "top_score": score, "score": 0.5,
                "false_positive": false, "has_snapshot": true,
                "entered_zones": zones, "current_zones": [],
                "start_time": start, "stationary": stationary,
            },
        })
        .to_string();
        let mut all = decoders(&Config::default());
        let decoded = all[0].decode(Message {
            topic: "frigate/events",
            payload: payload.as_bytes(),
            retained: false,
        });
        let Decoded::Event(ev) = decoded else {
            panic!("not an event: {decoded:?}");
        };
        prop_assert_eq!(&ev.id, &id);
        // Names lose invisible characters (U+180F, U+202E ...) at the source; the rest
        // arrives as sent.
        prop_assert_eq!(&ev.camera, &snapmail::text::clean(&camera));
        prop_assert_eq!(ev.label.as_deref(), Some(label.as_str()));
        prop_assert_eq!(ev.sub_label.as_deref(), sub_label.as_deref());
        prop_assert_eq!(ev.score, Some(score));
        prop_assert_eq!(&ev.zones, &zones);
        prop_assert_eq!(ev.stationary, stationary);
        let secs = ev.time.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
        prop_assert!((secs - start).abs() < 1e-3, "{} vs {}", secs, start);
        prop_assert!(
            matches!(&ev.snapshot, SnapshotSource::FrigateEvent { event_id } if *event_id == id),
            "{:?}", ev.snapshot
        );
    }
}

/// Frigate's `start_time` is a float from the wire: `1e300` used to panic in
/// `Duration::from_secs_f64` (found while writing these properties).
#[test]
fn absurd_frigate_start_times_do_not_panic() {
    let mut all = decoders(&Config::default());
    for start in ["1e300", "-1", "1.8e19", "0"] {
        let payload = format!(
            r#"{{"type":"new","after":{{"id":"a","camera":"c","has_snapshot":true,"start_time":{start}}}}}"#
        );
        let decoded = all[0].decode(Message {
            topic: "frigate/events",
            payload: payload.as_bytes(),
            retained: false,
        });
        assert!(matches!(decoded, Decoded::Event(_)), "{start}: {decoded:?}");
    }
}
