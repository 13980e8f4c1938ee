//! The config loader on arbitrary file contents (YAML, or JSON when the first byte is odd):
//! any input is an error or a config, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, text)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let name = if kind & 1 == 1 {
        "config.json"
    } else {
        "config.yaml"
    };
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write config");
    let _ = snapmail::config::load_from(Some(&path), Some(Default::default()));
});
