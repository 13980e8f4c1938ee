//! Every payload decoder on arbitrary bytes: the first byte picks the topic (those of the
//! registry of source kinds, plus garbage), the second the retained flag, the rest is the
//! payload.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use snapmail::config::Config;
use snapmail::mqtt::Message;
use snapmail::sources::decoders;

use snapmail::config::sources::{every_source_yaml, KINDS};

/// The registry's topics, then two that match nothing.
fn topics() -> &'static [&'static str] {
    static TOPICS: OnceLock<Vec<&'static str>> = OnceLock::new();
    TOPICS.get_or_init(|| {
        let mut t: Vec<&str> = KINDS.iter().flat_map(|k| k.topics.iter().copied()).collect();
        t.extend(["", "/"]);
        t
    })
}

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, every_source_yaml()).expect("write config");
        snapmail::config::load_from(Some(&path), Some(Default::default()))
            .expect("the config with every source loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let (Some(&t), Some(&r)) = (data.first(), data.get(1)) else {
        return;
    };
    let topics = topics();
    let topic = topics[usize::from(t) % topics.len()];
    let payload = &data[2..];
    for d in decoders(config()).iter_mut() {
        let _ = d.decode(Message {
            topic,
            payload,
            retained: r & 1 == 1,
        });
    }
});
