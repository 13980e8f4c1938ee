//! Configuration: the user-facing contract of key names, their defaults, and loading.
//!
//! Sources, later ones winning: the YAML file (`--config PATH` or `SNAPMAIL_CONFIG`), then
//! environment variables `SNAPMAIL__SECTION__KEY`. Every secret may instead come from a file
//! named by the sibling `*_file` key (Docker secrets, Home Assistant). Loading either yields a
//! fully validated [`Config`] or a [`ConfigError`] that names the key path and the fix.

mod load;
mod oauth;
mod policy;
pub mod provenance;
pub mod sources;
mod types;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use load::{load, load_addon, load_addon_all, load_all, load_from, ConfigError, Loaded};
pub use oauth::{AuthMethod, OAuth2Config};
pub use policy::{
    CameraConfig, Cameras, ControlConfig, DigestConfig, PriorityRule, ScheduleConfig, ZonesMatch,
};
pub use types::{HumanDuration, Port, StringList};

use crate::secret::Secret;

/// The whole configuration, after defaults, environment overrides and secret files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mqtt: MqttConfig,
    /// `None` means preview mode: mails are written as `.eml` files instead of sent.
    pub smtp: Option<SmtpConfig>,
    pub frigate: FrigateConfig,
    pub snapshot: SnapshotConfig,
    pub rate_limit: RateLimitConfig,
    /// Settings every camera inherits; `cameras.<name>` overrides them field by field.
    pub defaults: CameraConfig,
    pub cameras: BTreeMap<String, CameraConfig>,
    /// Ignore events from cameras not listed under `cameras`.
    pub cameras_only: bool,
    /// Global budget of mails per rolling 24 hours (consumer Gmail allows about 500).
    pub daily_limit: u32,
    pub digest: DigestConfig,
    /// Rules whose matches skip the cooldown and token bucket.
    pub priority: Vec<PriorityRule>,
    /// Named time windows for `active` / `quiet` / `priority.during`.
    pub schedules: BTreeMap<String, ScheduleConfig>,
    /// IANA time zone for schedules and for the times mails show (default: `TZ`, then the
    /// system's). Read it through [`Config::time_zone`].
    pub timezone: Option<String>,
    pub control: ControlConfig,
    pub outbox: OutboxConfig,
    pub log: LogConfig,
    /// On SIGTERM, how long in-flight sends may take before the daemon exits anyway.
    pub shutdown_timeout: HumanDuration,
    /// Camera sources; unset means Frigate's events topic (see [`sources::effective`]).
    pub sources: Option<Vec<sources::SourceConfig>>,
    pub http: HttpConfig,
    pub homeassistant: HomeAssistantConfig,
    /// Names this snapmail among others on the same broker: Home Assistant's device and
    /// entity ids, and the default `control.topic_prefix`. Unset: `mqtt.client_id`.
    pub instance_id: Option<String>,
}

/// Home Assistant integration over MQTT.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeAssistantConfig {
    /// Announce a device with a switch per camera and mail counters (MQTT discovery).
    pub discovery: bool,
    /// Home Assistant's discovery prefix.
    pub prefix: String,
    /// How often the counters (`<control.topic_prefix>/stats`) are published.
    pub stats_interval: HumanDuration,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        HomeAssistantConfig {
            discovery: false,
            prefix: "homeassistant".into(),
            stats_interval: HumanDuration::secs(30),
        }
    }
}

/// The health/metrics listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub enabled: bool,
    /// Loopback by default; `0.0.0.0:9464` to let Prometheus on another host scrape.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `mqtt://host:1883` or `mqtts://host:8883`. Unset: run the embedded broker.
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub client_id: String,
    /// Where the embedded broker listens when `url` is unset.
    pub listen: SocketAddr,
    /// Subscription QoS (0 or 1).
    pub qos: u8,
    /// `false` keeps a persistent session on the broker across reconnects.
    pub clean_session: bool,
    pub keep_alive: HumanDuration,
    /// Largest MQTT packet accepted (rumqttc's default of 10 KiB is far too small for snapshots).
    pub max_packet_bytes: usize,
    /// PEM certificates to trust for `mqtts://` besides the public CAs: a private CA, or the
    /// broker's own self-signed certificate.
    pub ca_file: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: None,
            username: None,
            password: None,
            password_file: None,
            client_id: "snapmail".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            qos: 1,
            clean_session: true,
            keep_alive: HumanDuration::secs(30),
            max_packet_bytes: 16 * 1024 * 1024,
            ca_file: None,
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain connect, then `STARTTLS` (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl<'de> Deserialize<'de> for Security {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        types::choice(
            d,
            &[("starttls", Security::Starttls), ("tls", Security::Tls)],
            "use starttls (port 587) or tls (port 465)",
        )
    }
}

impl Serialize for Security {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Security {
    pub fn name(self) -> &'static str {
        match self {
            Security::Starttls => "starttls",
            Security::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    pub port: Port,
    /// Unset: `tls` on port 465, `starttls` otherwise. Read it through [`SmtpConfig::security`].
    #[serde(rename = "security")]
    pub security_setting: Option<Security>,
    pub username: String,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub from: Option<String>,
    pub to: StringList,
    /// Extra trusted root certificate (PEM), e.g. for a self-hosted relay.
    pub ca_file: Option<PathBuf>,
    /// Upper bound on one whole send: connect, TLS, AUTH and the reply to DATA.
    pub timeout: HumanDuration,
    /// At most this many sends at once.
    pub max_connections: u32,
    /// `password` (app password, the default) or `oauth2` (XOAUTH2 with `oauth2.*`).
    pub auth: AuthMethod,
    /// The OAuth client for `auth: oauth2`.
    pub oauth2: OAuth2Config,
    /// Largest formatted message sent; a bigger one has its picture re-encoded smaller.
    /// Gmail refuses more than 35,882,577 bytes on the wire (25 MB of attachments).
    pub max_message_bytes: usize,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: "smtp.gmail.com".into(),
            port: Port(587),
            security_setting: None,
            username: String::new(),
            password: None,
            password_file: None,
            from: None,
            to: StringList::default(),
            ca_file: None,
            timeout: HumanDuration::secs(60),
            max_connections: 2,
            auth: AuthMethod::Password,
            oauth2: OAuth2Config::default(),
            max_message_bytes: 25_000_000,
        }
    }
}

impl SmtpConfig {
    /// The effective security mode: explicit, or derived from the port.
    pub fn security(&self) -> Security {
        self.security_setting.unwrap_or(if self.port.0 == 465 {
            Security::Tls
        } else {
            Security::Starttls
        })
    }

    /// The `From:` mailbox: `smtp.from`, or the login name.
    pub fn from_address(&self) -> &str {
        self.from.as_deref().unwrap_or(&self.username)
    }

    /// Recipients: `smtp.to`, or the login name (mail yourself).
    pub fn recipients(&self) -> Vec<String> {
        if self.to.0.is_empty() {
            vec![self.username.clone()]
        } else {
            self.to.0.clone()
        }
    }

    /// The app password with the spaces Google shows removed.
    pub fn app_password(&self) -> Secret {
        let raw = self.password.as_ref().map(Secret::expose).unwrap_or("");
        Secret::new(
            raw.chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>(),
        )
    }

    /// What `smtp.password` looks like, against a Gmail app password's 16 letters.
    pub fn app_password_shape(&self) -> PasswordShape {
        let p = self.app_password();
        let p = p.expose();
        let letters = p.chars().filter(char::is_ascii_alphabetic).count();
        let total = p.chars().count();
        if letters == total {
            if total == 16 {
                PasswordShape::AppPassword
            } else {
                PasswordShape::Letters(total)
            }
        } else {
            PasswordShape::Other {
                chars: total,
                digits: p.chars().any(|c| c.is_ascii_digit()),
                symbols: p.chars().any(|c| !c.is_alphanumeric()),
            }
        }
    }
}

/// The shape of `smtp.password`, never its characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordShape {
    /// 16 letters: what Google's app passwords are.
    AppPassword,
    /// Only letters, but not 16 of them: an app password that lost or gained a letter.
    Letters(usize),
    /// Digits, symbols or other characters: not an app password (an account password?).
    Other {
        chars: usize,
        digits: bool,
        symbols: bool,
    },
}

impl PasswordShape {
    /// What is wrong with it as a Gmail app password, and the fix; `None` when nothing is.
    pub fn problem(self) -> Option<String> {
        const CREATE: &str = "create an app password at https://myaccount.google.com/apppasswords (needs 2-Step Verification)";
        match self {
            PasswordShape::AppPassword => None,
            PasswordShape::Letters(0) => Some(format!("empty; {CREATE}")),
            PasswordShape::Letters(n) => Some(format!(
                "{n} letters, but a Gmail app password has exactly 16 (Google shows them as 4 groups of 4): \
                 a letter was {} when copying — copy it again, or {CREATE}",
                if n < 16 { "lost" } else { "added" }
            )),
            PasswordShape::Other { .. } => Some(format!(
                "not a Gmail app password (those are 16 letters, shown as 4 groups of 4); your \
                 Google account password does not work for SMTP (Gmail answers 534 5.7.9): {CREATE}"
            )),
        }
    }
}

/// Whether `host` is Google's mail server (Gmail or Workspace).
pub fn is_gmail(host: &str) -> bool {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    h.ends_with("gmail.com") || h.ends_with("googlemail.com") || h.ends_with("google.com")
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrigateConfig {
    /// Base URL of Frigate's HTTP API.
    pub url: String,
    /// Base URL of Frigate's UI as the mail's reader reaches it (e.g. from a phone), for the
    /// "Open in Frigate" links. Read it through [`FrigateConfig::link_base`].
    pub public_url: Option<String>,
    pub topic_prefix: String,
    /// How often a 404 snapshot is asked for again while the event is in progress.
    pub snapshot_retries: u32,
    pub snapshot_retry_delay: HumanDuration,
    /// `auto` (ask `/api/version`) or e.g. `0.14` / `0.15`: picks `h` vs `height` in
    /// snapshot requests.
    pub version: String,
    /// Login for the authenticated port (8971, Frigate 0.14+).
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// Accept Frigate's self-signed certificate (port 8971's default).
    pub insecure_tls: bool,
}

impl Default for FrigateConfig {
    fn default() -> Self {
        FrigateConfig {
            url: "http://127.0.0.1:5000".into(),
            public_url: None,
            topic_prefix: "frigate".into(),
            snapshot_retries: 3,
            snapshot_retry_delay: HumanDuration::secs(1),
            version: "auto".into(),
            username: None,
            password: None,
            password_file: None,
            insecure_tls: false,
        }
    }
}

impl FrigateConfig {
    /// Where "Open in Frigate" links point: `public_url`, else `url`.
    pub fn link_base(&self) -> &str {
        self.public_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .unwrap_or(&self.url)
    }

    /// Checks `public_url`: an absolute http(s) URL a mail reader can open.
    pub fn check_public_url(&self) -> Result<(), ConfigError> {
        let Some(u) = self
            .public_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        else {
            return Ok(());
        };
        match reqwest::Url::parse(u) {
            Ok(p) if matches!(p.scheme(), "http" | "https") && p.host_str().is_some() => Ok(()),
            _ => Err(ConfigError::invalid(format!(
                "frigate.public_url: {u:?} is not an http(s) URL; give the address your phone opens \
                 Frigate at, e.g. https://frigate.example.com (or remove the key to link to frigate.url)"
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    pub max_width: u32,
    pub max_height: u32,
    pub jpeg_quality: u8,
    /// Step quality, then size, down until the encoded JPEG fits.
    pub max_image_bytes: usize,
    /// Refuse inputs with more pixels than this.
    pub max_pixels: u64,
    /// Refuse downloads larger than this.
    pub max_bytes: usize,
    /// Whole-request timeout for a snapshot download.
    pub timeout: HumanDuration,
    /// Threads for image work; 0 means one per core.
    pub workers: usize,
    /// Frigate snapshot options (`bbox`, `crop`, `timestamp`); unset: Frigate's default.
    pub bbox: Option<bool>,
    pub crop: Option<bool>,
    pub timestamp: Option<bool>,
    /// Snapshots that may wait for an image worker; more are dropped (logged and counted).
    pub queue: usize,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            max_width: 1280,
            max_height: 1280,
            jpeg_quality: 80,
            max_image_bytes: 400_000,
            max_pixels: 50_000_000,
            max_bytes: 20 * 1024 * 1024,
            timeout: HumanDuration::secs(10),
            workers: 0,
            bbox: None,
            crop: None,
            timestamp: None,
            queue: 16,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Per camera: at most one mail per cooldown.
    pub cooldown: HumanDuration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            cooldown: HumanDuration::secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// The durable spool: every mail is written here before it is sent.
    pub dir: PathBuf,
    /// Preview mode (no `smtp` section): finished mails are written here as `.eml` files.
    pub preview_dir: PathBuf,
    /// Give up on a message (move it to `dir/dead/`) after retrying this long.
    pub max_age: HumanDuration,
    /// First retry delay after a temporary failure; doubles per attempt.
    pub retry_min: HumanDuration,
    /// Longest delay between retries.
    pub retry_max: HumanDuration,
    /// After `550 5.4.5` (daily quota), wait this long before trying again.
    pub quota_pause: HumanDuration,
    /// After `534`/`535` (bad login), try at most this often.
    pub credentials_pause: HumanDuration,
    /// Refuse new mail while this many messages wait.
    pub max_messages: usize,
    /// Refuse new mail while the spool holds this many bytes.
    pub max_bytes: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            dir: PathBuf::from("./data/outbox"),
            preview_dir: PathBuf::from("./outbox"),
            max_age: HumanDuration::secs(24 * 3600),
            retry_min: HumanDuration::secs(5),
            retry_max: HumanDuration::secs(600),
            quota_pause: HumanDuration::secs(3600),
            credentials_pause: HumanDuration::secs(900),
            max_messages: 10_000,
            max_bytes: 1024 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        types::choice(
            d,
            &[("pretty", LogFormat::Pretty), ("json", LogFormat::Json)],
            "use pretty or json",
        )
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `snapmail=debug`; `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Pretty,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mqtt: MqttConfig::default(),
            smtp: None,
            frigate: FrigateConfig::default(),
            snapshot: SnapshotConfig::default(),
            rate_limit: RateLimitConfig::default(),
            defaults: CameraConfig::default(),
            cameras: BTreeMap::new(),
            cameras_only: false,
            daily_limit: 400,
            digest: DigestConfig::default(),
            priority: Vec::new(),
            schedules: BTreeMap::new(),
            timezone: None,
            control: ControlConfig::default(),
            outbox: OutboxConfig::default(),
            log: LogConfig::default(),
            shutdown_timeout: HumanDuration::secs(10),
            http: HttpConfig::default(),
            homeassistant: HomeAssistantConfig::default(),
            instance_id: None,
            sources: None,
        }
    }
}

/// The zone named `name` (`timezone`), else `TZ`, else the system's.
pub fn time_zone(name: Option<&str>) -> Result<jiff::tz::TimeZone, ConfigError> {
    match name.map(str::trim).filter(|s| !s.is_empty()) {
        Some(n) => jiff::tz::TimeZone::get(n).map_err(|e| {
            ConfigError::invalid(format!(
                "timezone: {n:?} is not a known time zone ({e}); use an IANA name such as Europe/Berlin"
            ))
        }),
        None => Ok(jiff::tz::TimeZone::system()),
    }
}

impl Config {
    /// The zone schedules are read in and mails show times in: `timezone`, else `TZ`, else
    /// the system's.
    pub fn time_zone(&self) -> Result<jiff::tz::TimeZone, ConfigError> {
        time_zone(self.timezone.as_deref())
    }

    /// The cooldown that applies to `camera`.
    pub fn cooldown_for(&self, camera: &str) -> Duration {
        self.camera(camera)
            .cooldown
            .unwrap_or(self.rate_limit.cooldown)
            .0
    }

    /// `camera`'s settings with unset fields taken from `defaults`.
    pub fn camera(&self, camera: &str) -> CameraConfig {
        match self.cameras.get(camera) {
            Some(c) => c.merged_over(&self.defaults),
            None => self.defaults.clone(),
        }
    }

    /// Every listed camera's merged settings, plus `defaults:` for the others.
    pub fn resolved_cameras(&self) -> Cameras {
        Cameras {
            defaults: self.defaults.clone(),
            listed: self
                .cameras
                .keys()
                .map(|name| (name.clone(), self.camera(name)))
                .collect(),
        }
    }

    /// The name of this snapmail on the broker: `instance_id`, else `mqtt.client_id` (which
    /// the broker already requires to be unique), so a default install stays `snapmail`.
    pub fn instance_id(&self) -> &str {
        self.instance_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(self.mqtt.client_id.trim())
    }

    /// The prefix of snapmail's own topics: `control.topic_prefix`, else the instance id.
    pub fn control_topic_prefix(&self) -> &str {
        self.control
            .topic_prefix
            .as_deref()
            .unwrap_or_else(|| self.instance_id())
            .trim()
            .trim_end_matches('/')
    }

    /// Where arm/snooze state and the daily budget are kept across restarts.
    pub fn state_file(&self) -> PathBuf {
        match &self.control.state_file {
            Some(p) => p.clone(),
            None => self
                .outbox
                .dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."))
                .join("state.json"),
        }
    }
}
