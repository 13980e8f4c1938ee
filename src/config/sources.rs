//! The `sources:` list: which MQTT topics snapmail listens to and how each one's messages
//! become events. Every entry names its `kind`; several entries (even of the same kind) may
//! run at once over the one MQTT connection. Without a `sources:` key snapmail runs one
//! `frigate_events` source, so configurations written before the list existed keep working.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::types::StringList;
use super::ConfigError;
use crate::secret::Secret;

/// One entry of `sources:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Frigate's `<prefix>/events` (one mail per tracked object).
    FrigateEvents(FrigateEventsSource),
    /// Frigate 0.14+ `<prefix>/reviews` (one mail per alert, optionally per detection).
    FrigateReviews(FrigateReviewsSource),
    /// Frigate's `<prefix>/<camera>/<label>/snapshot` (raw JPEG in the message).
    FrigateSnapshot(FrigateSnapshotSource),
    /// A Hikvision→MQTT bridge (toxuin/alarmserver, hikmqtt); the picture comes from the
    /// camera over ISAPI.
    HikvisionBridge(HikvisionSource),
    /// Any topic: ON/OFF switches, JSON from scripts, raw JPEGs.
    Mqtt(Box<GenericSource>),
}

impl SourceConfig {
    /// The `kind:` value, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::FrigateEvents(_) => "frigate_events",
            SourceConfig::FrigateReviews(_) => "frigate_reviews",
            SourceConfig::FrigateSnapshot(_) => "frigate_snapshot",
            SourceConfig::HikvisionBridge(_) => "hikvision_bridge",
            SourceConfig::Mqtt(_) => "mqtt",
        }
    }
}

/// One source kind as users and tools see it. [`KINDS`] lists every kind once: the
/// property tests and the fuzz target build their configuration and topics from it, and a
/// test holds the documentation and [`SourceConfig`] to it.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The `kind:` value.
    pub name: &'static str,
    /// What the kind listens to, in one line (the documentation's table).
    pub summary: &'static str,
    /// `sources:` entries (YAML list items) that switch on each of its decoding paths.
    pub example: &'static str,
    /// Topics the example entries listen to.
    pub topics: &'static [&'static str],
}

/// Every source kind, in the order the documentation lists them.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "frigate_events",
        summary: "Frigate's `<prefix>/events`: one mail per tracked object",
        example: "  - kind: frigate_events\n",
        topics: &["frigate/events"],
    },
    Kind {
        name: "frigate_reviews",
        summary: "Frigate 0.14+ `<prefix>/reviews`: one mail per alert (optionally per detection)",
        example: "  - kind: frigate_reviews\n    severity: [alert, detection]\n",
        topics: &["frigate/reviews"],
    },
    Kind {
        name: "frigate_snapshot",
        summary: "Frigate's `<prefix>/<camera>/<label>/snapshot`: the JPEG inside the message",
        example: "  - kind: frigate_snapshot\n",
        topics: &["frigate/driveway/person/snapshot"],
    },
    Kind {
        name: "hikvision_bridge",
        summary: "Hikvision through alarmserver (`camera-alerts/+/+`) or hikmqtt; the picture comes from the camera over ISAPI",
        example: "  - kind: hikvision_bridge\n    topic: camera-alerts/+/+\n    cameras:\n      driveway: {url: \"http://192.168.1.64\", username: admin, password: x}\n  - kind: hikvision_bridge\n    topic: BTRGB/hikalarm\n    cameras:\n      garden: {url: \"http://192.168.1.65\", dev_id: 1}\n",
        topics: &[
            "camera-alerts/driveway/VMD",
            "camera-alerts/alarmserver",
            "BTRGB/hikalarm",
        ],
    },
    Kind {
        name: "mqtt",
        summary: "Any topic: ON/OFF switches (Amcrest, Dahua, Blue Iris, Home Assistant), JSON from scripts, raw JPEGs",
        example: "  - kind: mqtt\n    topic: cameras/+/motion\n    snapshot:\n      url: \"http://nvr.lan/image/{camera}\"\n  - kind: mqtt\n    topic: scripts/#\n    json:\n      camera: /camera\n      label: /label\n      score: /score\n      id: /id\n      image_base64: /image\n      image_url: /url\n  - kind: mqtt\n    topic: amcrest2mqtt/+/event\n    json:\n      state: /action\n      label: /Code\n    on_values: [Start]\n    off_values: [Stop]\n",
        topics: &[
            "cameras/porch/motion",
            "scripts/alert",
            "amcrest2mqtt/AMC0458F1C2A9B7E31/event",
        ],
    },
];

/// A configuration with the example entries of every kind in [`KINDS`]: one source of each
/// kind, with the options that switch on each decoding path.
pub fn every_source_yaml() -> String {
    let mut yaml = String::from("frigate:\n  url: http://frigate.lan:5000\nsources:\n");
    for kind in KINDS {
        yaml.push_str(kind.example);
    }
    yaml
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrigateEventsSource {
    /// Overrides `frigate.topic_prefix` for this source.
    pub topic_prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrigateReviewsSource {
    pub topic_prefix: Option<String>,
    /// Which review severities mail: `alert` (default) and/or `detection`.
    pub severity: StringList,
}

impl Default for FrigateReviewsSource {
    fn default() -> Self {
        FrigateReviewsSource {
            topic_prefix: None,
            severity: StringList(vec!["alert".into()]),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrigateSnapshotSource {
    pub topic_prefix: Option<String>,
    /// Only these cameras (empty: all).
    pub cameras: StringList,
    /// Only these labels (empty: all).
    pub labels: StringList,
    /// Larger payloads are ignored.
    pub max_bytes: usize,
}

impl Default for FrigateSnapshotSource {
    fn default() -> Self {
        FrigateSnapshotSource {
            topic_prefix: None,
            cameras: StringList::default(),
            labels: StringList::default(),
            max_bytes: 8 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HikvisionSource {
    /// alarmserver's `camera-alerts/+/+` (camera, then event type), or hikmqtt's fixed topic.
    pub topic: String,
    /// Camera name for hikmqtt payloads that match no `cameras.<name>.dev_id`.
    pub camera: Option<String>,
    /// Event types that do not mail (alarmserver's `ftpUpload`, `videoloss`, …).
    pub ignore_events: StringList,
    /// Per camera: where and how to fetch its picture.
    pub cameras: BTreeMap<String, HikvisionCamera>,
}

impl Default for HikvisionSource {
    fn default() -> Self {
        HikvisionSource {
            topic: "camera-alerts/+/+".into(),
            camera: None,
            ignore_events: StringList(vec!["ftpUpload".into(), "videoloss".into()]),
            cameras: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HikvisionCamera {
    /// `http://192.168.1.64` (the camera or NVR).
    pub url: String,
    /// ISAPI streaming channel: 101 is channel 1's main stream, 102 its sub stream. Unset:
    /// the alert's channel N as N01 when the message names one, else 101.
    pub channel: Option<u32>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// hikmqtt's `devId` for this camera.
    pub dev_id: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenericSource {
    /// MQTT topic filter; a `+` segment names the camera unless `camera` is set.
    pub topic: String,
    /// A fixed camera name for every message of this source.
    pub camera: Option<String>,
    /// The label shown in the mail (default `motion`).
    pub label: Option<String>,
    /// Act on retained messages too (default: no — brokers replay them on every connect).
    pub retained: bool,
    /// JSON pointers (`/camera`, `/data/score`) into JSON payloads.
    pub json: JsonFields,
    /// Where the picture comes from when the message does not carry one.
    pub snapshot: GenericSnapshot,
    /// Hosts a snapshot URL taken from a payload may point at: `host:port`, or `host` for
    /// every port of it (default: the `host:port` of every URL in this configuration).
    pub allowed_hosts: Option<StringList>,
    /// Words (a whole payload, or `json.state`) that mean "on"; any case. Set together with
    /// `off_values`; they replace the defaults ([`DEFAULT_ON_VALUES`]).
    pub on_values: Option<StringList>,
    /// Words that mean "off" (default [`DEFAULT_OFF_VALUES`]).
    pub off_values: Option<StringList>,
}

/// What a switch says "on" with when `on_values` is not set.
pub const DEFAULT_ON_VALUES: &[&str] = &["on", "1", "true"];
/// What a switch says "off" with when `off_values` is not set.
pub const DEFAULT_OFF_VALUES: &[&str] = &["off", "0", "false"];

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonFields {
    /// On/off state (`/state`): when it holds one of `on_values`/`off_values`, only the
    /// rising edge mails.
    pub state: Option<String>,
    pub camera: Option<String>,
    pub label: Option<String>,
    /// 0..1, or a percentage.
    pub score: Option<String>,
    /// A stable id, so repeats of one happening mail once.
    pub id: Option<String>,
    pub image_url: Option<String>,
    pub image_base64: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenericSnapshot {
    /// URL template: `{camera}` is replaced, e.g. `http://nvr:81/image/{camera}`.
    pub url: Option<String>,
    /// Use Frigate's `/api/<camera>/latest.jpg` (at `frigate.url`).
    pub frigate_latest: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
}

/// The effective list: `sources:` as written, or the Frigate events source.
pub fn effective(list: &Option<Vec<SourceConfig>>) -> Vec<SourceConfig> {
    match list {
        Some(l) => l.clone(),
        None => vec![SourceConfig::FrigateEvents(FrigateEventsSource::default())],
    }
}

/// Fill every `password` from its `password_file`.
pub(super) fn resolve_secrets(
    list: &mut Option<Vec<SourceConfig>>,
    one: impl Fn(&str, &mut Option<Secret>, &Option<PathBuf>) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    for (i, s) in list.iter_mut().flatten().enumerate() {
        match s {
            SourceConfig::HikvisionBridge(h) => {
                for (name, cam) in h.cameras.iter_mut() {
                    one(
                        &format!("sources[{i}].cameras.{name}.password"),
                        &mut cam.password,
                        &cam.password_file,
                    )?;
                }
            }
            SourceConfig::Mqtt(g) => {
                one(
                    &format!("sources[{i}].snapshot.password"),
                    &mut g.snapshot.password,
                    &g.snapshot.password_file,
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn invalid(msg: String) -> ConfigError {
    ConfigError::Invalid(msg)
}

fn check_pointer(key: &str, p: &Option<String>) -> Result<(), ConfigError> {
    match p {
        Some(p) if !p.is_empty() && !p.starts_with('/') => Err(invalid(format!(
            "{key}: {p:?} is not a JSON pointer; write it as /field or /outer/inner"
        ))),
        _ => Ok(()),
    }
}

fn check_filter(key: &str, topic: &str) -> Result<(), ConfigError> {
    let t = topic.trim();
    if t.is_empty() {
        return Err(invalid(format!(
            "{key}: not set; give the MQTT topic to listen to, e.g. cameras/+/motion"
        )));
    }
    let segments: Vec<&str> = t.split('/').collect();
    for (n, seg) in segments.iter().enumerate() {
        let wild = seg.contains('+') || seg.contains('#');
        if wild && seg.len() != 1 {
            return Err(invalid(format!(
                "{key}: {topic:?}: a wildcard must be a whole topic level (cameras/+/motion)"
            )));
        }
        if *seg == "#" && n + 1 != segments.len() {
            return Err(invalid(format!(
                "{key}: {topic:?}: # may only be the last topic level"
            )));
        }
    }
    Ok(())
}

/// `on_values` and `off_values`: both or neither, neither empty (blank words are dropped
/// when the list is read), no word in both.
fn check_switch_words(at: &str, g: &GenericSource) -> Result<(), ConfigError> {
    let (on, off) = match (&g.on_values, &g.off_values) {
        (None, None) => return Ok(()),
        (Some(on), Some(off)) => (&on.0, &off.0),
        (Some(_), None) | (None, Some(_)) => {
            return Err(invalid(format!(
                "{at}: on_values and off_values go together (e.g. on_values: [Start] and off_values: [Stop]); set both or neither"
            )))
        }
    };
    for (key, words) in [("on_values", on), ("off_values", off)] {
        if words.is_empty() {
            return Err(invalid(format!(
                "{at}.{key}: empty; list the words that mean {}",
                if key == "on_values" { "on" } else { "off" }
            )));
        }
    }
    if let Some(both) = on
        .iter()
        .find(|w| off.iter().any(|o| o.trim().eq_ignore_ascii_case(w.trim())))
    {
        return Err(invalid(format!(
            "{at}: {both:?} is in both on_values and off_values; a word can mean only one of them"
        )));
    }
    Ok(())
}

/// `nvr.lan`, `nvr.lan:81`, `192.168.1.5:8080`, `[fd00::5]:80`: a host, maybe with a port,
/// never a URL.
fn check_allowed_host(key: &str, entry: &str) -> Result<(), ConfigError> {
    let e = entry.trim();
    let bad = |why: &str| {
        Err(invalid(format!(
            "{key}: {entry:?} {why}; write a host (nvr.lan, every port) or host:port (nvr.lan:81)"
        )))
    };
    if e.is_empty() {
        return bad("is empty");
    }
    if e.contains("://") || e.contains('/') || e.contains('@') {
        return bad("is not a host");
    }
    let port = if let Some(rest) = e.strip_prefix('[') {
        match rest.split_once(']') {
            Some((_, "")) => None,
            Some((_, p)) => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return bad("is not a host"),
            },
            None => return bad("is not a host"),
        }
    } else {
        match e.split_once(':') {
            Some((_, p)) if !p.contains(':') => Some(p),
            Some(_) => return bad("is an IPv6 address without brackets ([fd00::5]:80)"),
            None => None,
        }
    };
    match port.map(str::parse::<u16>) {
        Some(Ok(0)) | Some(Err(_)) => bad("has a port that is not a number from 1 to 65535"),
        _ => Ok(()),
    }
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let probe = url.replace("{camera}", "camera");
    match reqwest::Url::parse(&probe) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        _ => Err(invalid(format!(
            "{key}: {url:?} is not an http:// or https:// URL with a host"
        ))),
    }
}

/// Cross-field checks on the list; errors name `sources[N].key`.
pub(super) fn validate(list: &Option<Vec<SourceConfig>>) -> Result<(), ConfigError> {
    let Some(list) = list else { return Ok(()) };
    if list.is_empty() {
        return Err(invalid(
            "sources: the list is empty, so nothing would ever mail; remove the key to use \
             Frigate's events topic, or add a source"
                .into(),
        ));
    }
    for (i, s) in list.iter().enumerate() {
        let at = format!("sources[{i}]");
        match s {
            SourceConfig::FrigateReviews(r) => {
                if r.severity.0.is_empty() {
                    return Err(invalid(format!(
                        "{at}.severity: empty; use [alert], [detection] or [alert, detection]"
                    )));
                }
                for s in &r.severity.0 {
                    if !matches!(s.to_ascii_lowercase().as_str(), "alert" | "detection") {
                        return Err(invalid(format!(
                            "{at}.severity: {s:?} is not allowed; use alert and/or detection"
                        )));
                    }
                }
            }
            SourceConfig::FrigateSnapshot(f) => {
                if f.max_bytes == 0 {
                    return Err(invalid(format!("{at}.max_bytes: must be at least 1")));
                }
            }
            SourceConfig::HikvisionBridge(h) => {
                check_filter(&format!("{at}.topic"), &h.topic)?;
                for (name, cam) in &h.cameras {
                    check_url(&format!("{at}.cameras.{name}.url"), &cam.url)?;
                    if cam.channel == Some(0) {
                        return Err(invalid(format!(
                            "{at}.cameras.{name}.channel: 0 is not a channel; 101 is channel 1's main stream"
                        )));
                    }
                }
            }
            SourceConfig::Mqtt(g) => {
                check_filter(&format!("{at}.topic"), &g.topic)?;
                let j = &g.json;
                for (k, p) in [
                    ("state", &j.state),
                    ("camera", &j.camera),
                    ("label", &j.label),
                    ("score", &j.score),
                    ("id", &j.id),
                    ("image_url", &j.image_url),
                    ("image_base64", &j.image_base64),
                ] {
                    check_pointer(&format!("{at}.json.{k}"), p)?;
                }
                check_switch_words(&at, g)?;
                for h in g.allowed_hosts.iter().flat_map(|l| &l.0) {
                    check_allowed_host(&format!("{at}.allowed_hosts"), h)?;
                }
                if let Some(url) = &g.snapshot.url {
                    check_url(&format!("{at}.snapshot.url"), url)?;
                    if g.snapshot.frigate_latest {
                        return Err(invalid(format!(
                            "{at}.snapshot: url and frigate_latest are both set; keep one of them"
                        )));
                    }
                }
            }
            SourceConfig::FrigateEvents(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_from;
    use std::collections::HashMap;
    use std::io::Write;

    fn load(text: &str) -> Result<crate::config::Config, ConfigError> {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        load_from(Some(f.path()), Some(HashMap::new()))
    }

    #[test]
    fn every_kind_loads_with_secret_files() {
        let mut secret = tempfile::NamedTempFile::new().unwrap();
        writeln!(secret, "cam-pass").unwrap();
        let cfg = load(&format!(
            r#"
frigate:
  url: https://frigate.lan:8971
  username: mailer
  password: s3cret
  insecure_tls: true
  version: "0.14"
snapshot:
  bbox: true
  crop: false
sources:
  - kind: frigate_events
  - kind: frigate_reviews
    severity: [alert, detection]
  - kind: frigate_snapshot
    max_bytes: 1000000
  - kind: hikvision_bridge
    topic: camera-alerts/+/+
    cameras:
      FrontDoor:
        url: http://192.168.1.64
        channel: 102
        username: admin
        password_file: {}
  - kind: mqtt
    topic: cameras/+/motion
    json:
      image_base64: /image
    snapshot:
      url: "http://nvr:81/image/{{camera}}"
    allowed_hosts: [nvr]
"#,
            secret.path().display()
        ))
        .unwrap();
        let list = cfg.sources.as_ref().unwrap();
        assert_eq!(
            list.iter().map(SourceConfig::kind).collect::<Vec<_>>(),
            vec![
                "frigate_events",
                "frigate_reviews",
                "frigate_snapshot",
                "hikvision_bridge",
                "mqtt"
            ]
        );
        let SourceConfig::HikvisionBridge(h) = &list[3] else {
            panic!()
        };
        let (name, cam) = h.cameras.iter().next().unwrap();
        assert_eq!(name, "FrontDoor", "camera names keep their case");
        assert_eq!(cam.channel, Some(102));
        assert_eq!(cam.password.as_ref().unwrap().expose(), "cam-pass");
        assert_eq!(cfg.frigate.password.as_ref().unwrap().expose(), "s3cret");
        assert!(cfg.frigate.insecure_tls);
        assert_eq!(cfg.snapshot.bbox, Some(true));
        assert_eq!(cfg.snapshot.crop, Some(false));
        assert_eq!(cfg.snapshot.timestamp, None);
    }

    #[test]
    fn the_registry_names_every_kind_once_and_its_examples_load() {
        let cfg = load(&every_source_yaml()).unwrap();
        let mut kinds: Vec<&str> = cfg
            .sources
            .iter()
            .flatten()
            .map(SourceConfig::kind)
            .collect();
        kinds.dedup();
        let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        assert_eq!(
            kinds, names,
            "every KINDS example is of its own kind, in order"
        );
        // A variant added to SourceConfig but not to KINDS fails here: its name is unknown.
        for k in KINDS {
            let one = load(&format!("sources:\n{}", k.example)).unwrap();
            assert!(
                one.sources.unwrap().iter().all(|s| s.kind() == k.name),
                "{}",
                k.name
            );
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "each kind once");
    }

    #[test]
    fn the_documentation_lists_every_kind() {
        let doc = include_str!("../../docs/sources.md");
        for k in KINDS {
            let row = format!("| `{}` | {} |", k.name, k.summary);
            assert!(doc.contains(&row), "docs/sources.md lacks the row {row}");
            assert!(
                doc.contains(&format!("## `{}`", k.name)),
                "docs/sources.md lacks a section for {}",
                k.name
            );
        }
    }

    #[test]
    fn mistakes_name_the_key() {
        let e = load("sources:\n  - kind: frigate_reviewz\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("frigate_reviewz") && e.contains("frigate_reviews"),
            "{e}"
        );
        let e = load("sources:\n  - kind: mqtt\n").unwrap_err().to_string();
        assert!(e.contains("sources[0].topic: not set"), "{e}");
        let e = load("sources:\n  - kind: mqtt\n    topic: a/b+/c\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sources[0].topic") && e.contains("whole topic level"),
            "{e}"
        );
        let e = load("sources:\n  - kind: mqtt\n    topic: t\n    json:\n      camera: cam\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sources[0].json.camera") && e.contains("JSON pointer"),
            "{e}"
        );
        let e = load("sources:\n  - kind: frigate_reviews\n    severity: [alarm]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sources[0].severity"), "{e}");
        let e = load("sources:\n  - kind: mqtt\n    topic: t\n    tpoic: x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tpoic"), "{e}");
        let e = load("sources:\n  - kind: hikvision_bridge\n    cameras:\n      gate:\n        url: 192.168.1.9\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sources[0].cameras.gate.url"), "{e}");
        for (entry, why) in [
            ("http://nvr.lan", "is not a host"),
            ("nvr.lan:http", "not a number"),
            ("fd00::5", "without brackets"),
        ] {
            let e = load(&format!(
                "sources:\n  - kind: mqtt\n    topic: t\n    allowed_hosts: [\"{entry}\"]\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("sources[0].allowed_hosts") && e.contains(why),
                "{entry}: {e}"
            );
        }
        for entry in ["nvr.lan", "nvr.lan:81", "[fd00::5]:80", "[fd00::5]"] {
            load(&format!(
                "sources:\n  - kind: mqtt\n    topic: t\n    allowed_hosts: [\"{entry}\"]\n"
            ))
            .unwrap_or_else(|e| panic!("{entry}: {e}"));
        }
        let mqtt = |extra: &str| load(&format!("sources:\n  - kind: mqtt\n    topic: t\n{extra}"));
        for (extra, key) in [
            (
                "    on_values: [Start]\n",
                "sources[0]: on_values and off_values go together",
            ),
            (
                "    off_values: [Stop]\n",
                "sources[0]: on_values and off_values go together",
            ),
            (
                "    on_values: []\n    off_values: [Stop]\n",
                "sources[0].on_values: empty",
            ),
            (
                "    on_values: [Start]\n    off_values: [\" \"]\n",
                "sources[0].off_values: empty",
            ),
            (
                "    on_values: [Start, stop]\n    off_values: [Stop]\n",
                "\"stop\" is in both",
            ),
        ] {
            let e = mqtt(extra).unwrap_err().to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
        mqtt("    on_values: [Start, motion]\n    off_values: Stop\n").unwrap();
        let e = load("sources: []\n").unwrap_err().to_string();
        assert!(e.contains("sources: the list is empty"), "{e}");
        let e = load("frigate:\n  username: u\n").unwrap_err().to_string();
        assert!(e.contains("frigate.password: not set"), "{e}");
    }

    #[test]
    fn secrets_stay_out_of_errors() {
        let e = load(
            "sources:\n  - kind: hikvision_bridge\n    cameras:\n      gate:\n        url: nope\n        password: hunter2cam\n",
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("hunter2cam"), "{e}");
    }
}
