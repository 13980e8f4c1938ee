//! Sources: camera formats. Each turns one kind of MQTT message into normalized
//! [`Event`](crate::event::Event)s through the [`Decoder`] seam of [`crate::mqtt`].
//!
//! The decoders come from the `sources:` list ([`crate::config::sources`]): [`frigate`]
//! (events), [`frigate_reviews`], [`frigate_snapshot`], [`hikvision`] (bridges) and
//! [`generic`] (any topic). Decoders keep only the state their format needs (rising edges,
//! reviews already reported); de-duplication across sources is the policy's job.

mod frigate;
mod frigate_reviews;
mod frigate_snapshot;
mod generic;
mod hikvision;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::sources::{self as source_config, SourceConfig};
use crate::config::Config;

use crate::mqtt::Decoder;

/// The decoders for every configured source (`sources:`, or Frigate's events topic).
pub fn decoders(config: &Config) -> Vec<Box<dyn Decoder>> {
    let hosts = config_hosts(config);
    let prefix = |p: &Option<String>| {
        p.clone()
            .unwrap_or_else(|| config.frigate.topic_prefix.clone())
    };
    source_config::effective(&config.sources)
        .iter()
        .enumerate()
        .map(|(i, s)| -> Box<dyn Decoder> {
            match s {
                SourceConfig::FrigateEvents(f) => Box::new(frigate::FrigateEvents::new(
                    &prefix(&f.topic_prefix),
                    config.frigate.link_base(),
                )),
                SourceConfig::FrigateReviews(f) => Box::new(frigate_reviews::FrigateReviews::new(
                    &prefix(&f.topic_prefix),
                    config.frigate.link_base(),
                    &f.severity.0,
                )),
                SourceConfig::FrigateSnapshot(f) => Box::new(
                    frigate_snapshot::FrigateSnapshot::new(i, &prefix(&f.topic_prefix), f),
                ),
                SourceConfig::HikvisionBridge(h) => Box::new(hikvision::HikvisionBridge::new(i, h)),
                SourceConfig::Mqtt(g) => Box::new(generic::Generic::new(i, g, &hosts)),
            }
        })
        .collect()
}

/// The `host:port` of every URL named in the configuration (`frigate.url`, camera URLs,
/// `snapshot.url` templates): the default `allowed_hosts` for snapshot URLs that arrive in
/// payloads. With the port: naming Frigate's API must not let a payload reach every other
/// service on Frigate's machine. The MQTT broker is not among them: it serves MQTT, not
/// pictures.
pub fn config_hosts(config: &Config) -> Vec<String> {
    let mut urls = vec![config.frigate.url.clone()];
    for s in config.sources.iter().flatten() {
        match s {
            SourceConfig::HikvisionBridge(h) => {
                urls.extend(h.cameras.values().map(|c| c.url.clone()))
            }
            SourceConfig::Mqtt(g) => urls.extend(g.snapshot.url.clone()),
            _ => {}
        }
    }
    let mut hosts: Vec<String> = urls
        .iter()
        .filter_map(|u| generic::host_and_port(&u.replace("{camera}", "camera")))
        .map(|(_, host_port)| host_port)
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The topic levels that `filter`'s `+` wildcards matched in `topic` (and `#` as one
/// string), or `None` when the topic does not match.
pub fn wildcards<'t>(filter: &str, topic: &'t str) -> Option<Vec<&'t str>> {
    let mut out = Vec::new();
    let mut levels = topic.split('/');
    let mut rest_start = 0;
    for f in filter.split('/') {
        if f == "#" {
            out.push(&topic[rest_start.min(topic.len())..]);
            return Some(out);
        }
        let level = levels.next()?;
        rest_start += level.len() + 1;
        if f == "+" {
            out.push(level);
        } else if f != level {
            return None;
        }
    }
    levels.next().is_none().then_some(out)
}

/// A Unix timestamp from a payload (Frigate's `start_time`) as a time, if it is one a mail
/// can show: finite, not negative, before the year 10000. Absurd values would otherwise
/// panic in `Duration::from_secs_f64` or later when the mail's date is written.
pub fn unix_time(secs: f64) -> Option<SystemTime> {
    const YEAR_10000: f64 = 253_402_300_800.0;
    if !(0.0..YEAR_10000).contains(&secs) {
        return None;
    }
    let since = std::time::Duration::try_from_secs_f64(secs).ok()?;
    UNIX_EPOCH.checked_add(since)
}

/// A process-unique event id for sources whose messages carry none.
pub fn unique_id(kind: &str, camera: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "{kind}:{camera}:{now}-{}",
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_levels() {
        assert_eq!(
            wildcards("cameras/+/motion", "cameras/driveway/motion"),
            Some(vec!["driveway"])
        );
        assert_eq!(
            wildcards("cameras/+/motion", "cameras/driveway/state"),
            None
        );
        assert_eq!(wildcards("cameras/+", "cameras/a/b"), None);
        assert_eq!(wildcards("a/#", "a/b/c"), Some(vec!["b/c"]));
        assert_eq!(wildcards("a/b", "a/b"), Some(vec![]));
    }

    #[test]
    fn every_kind_in_the_registry_builds_its_decoder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, source_config::every_source_yaml()).unwrap();
        let cfg = crate::config::load_from(Some(&path), Some(Default::default())).unwrap();
        let mut kinds: Vec<&str> = decoders(&cfg).iter().map(|d| d.kind()).collect();
        kinds.dedup();
        let names: Vec<&str> = source_config::KINDS.iter().map(|k| k.name).collect();
        assert_eq!(kinds, names);
    }

    #[test]
    fn default_allowed_hosts_carry_the_port_and_not_the_broker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "frigate:\n  url: http://Frigate.lan:5000\nmqtt:\n  url: mqtt://broker.lan:1883\nsources:\n  - kind: hikvision_bridge\n    cameras:\n      gate: {url: \"http://192.168.1.64\"}\n      yard: {url: \"https://192.168.1.65\"}\n  - kind: mqtt\n    topic: t\n    snapshot: {url: \"http://nvr.lan:81/image/{camera}\"}\n",
        )
        .unwrap();
        let cfg = crate::config::load_from(Some(&path), Some(Default::default())).unwrap();
        assert_eq!(
            config_hosts(&cfg),
            vec![
                "192.168.1.64:80",
                "192.168.1.65:443",
                "frigate.lan:5000",
                "nvr.lan:81"
            ]
        );
    }

    #[test]
    fn without_sources_the_frigate_events_topic_is_used() {
        let d = decoders(&Config::default());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].kind(), "frigate_events");
        assert_eq!(d[0].topics(), vec!["frigate/events".to_string()]);
    }
}

#[cfg(test)]
mod example_tests {
    use crate::config::load_from;
    use std::collections::HashMap;
    use std::io::Write;

    /// The shipped examples load (secret files swapped for inline values) and build the
    /// decoders they describe.
    #[test]
    fn source_examples_load() {
        for (name, kinds) in [
            ("frigate-reviews.yaml", vec!["frigate_reviews"]),
            ("frigate-snapshot.yaml", vec!["frigate_snapshot"]),
            (
                "hikvision.yaml",
                vec!["hikvision_bridge", "hikvision_bridge"],
            ),
            ("scripts.yaml", vec!["mqtt", "mqtt", "mqtt", "mqtt"]),
        ] {
            let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
            let text: String = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|l| match l.split_once("password_file:") {
                    Some((indent, _)) => format!("{indent}password: \"abcd efgh ijkl mnop\"\n"),
                    None => format!("{l}\n"),
                })
                .collect();
            let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
            f.write_all(text.as_bytes()).unwrap();
            let cfg = load_from(Some(f.path()), Some(HashMap::new()))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let got: Vec<&str> = super::decoders(&cfg).iter().map(|d| d.kind()).collect();
            assert_eq!(got, kinds, "{name}");
        }
    }
}
