//! Every payload decoder on arbitrary bytes: the first byte picks the topic (one per
//! source kind, plus garbage), the second the retained flag, the rest is the payload.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use snapmail::config::Config;
use snapmail::mqtt::Message;
use snapmail::sources::decoders;

/// One source of every kind (shared with `tests/properties.rs`).
const EVERY_SOURCE: &str = include_str!("../../tests/fixtures/every-source.yaml");

const TOPICS: &[&str] = &[
    "frigate/events",
    "frigate/reviews",
    "frigate/driveway/person/snapshot",
    "camera-alerts/driveway/VMD",
    "camera-alerts/alarmserver",
    "BTRGB/hikalarm",
    "cameras/porch/motion",
    "scripts/alert",
    "",
    "/",
];

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, EVERY_SOURCE).expect("write config");
        snapmail::config::load_from(Some(&path), Some(Default::default()))
            .expect("the config with every source loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let (Some(&t), Some(&r)) = (data.first(), data.get(1)) else {
        return;
    };
    let topic = TOPICS[usize::from(t) % TOPICS.len()];
    let payload = &data[2..];
    for d in decoders(config()).iter_mut() {
        let _ = d.decode(Message {
            topic,
            payload,
            retained: r & 1 == 1,
        });
    }
});
