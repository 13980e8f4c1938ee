//! Running as a Home Assistant add-on: detection, the options file, and the MQTT broker the
//! Supervisor knows about.
//!
//! Inside an add-on container the Supervisor sets `SUPERVISOR_TOKEN`; the options from the
//! UI are in `/data/options.json`; and `GET http://supervisor/services/mqtt` names the broker
//! (the Mosquitto add-on) with its credentials. Explicit options always beat what is
//! discovered.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

/// Where the add-on environment is (paths and URL overridable for tests).
#[derive(Debug, Clone)]
pub struct Addon {
    pub options: PathBuf,
    pub supervisor: String,
    token: Secret,
}

impl Addon {
    /// `Some` when running under the Supervisor (`SUPERVISOR_TOKEN` is set).
    pub fn detect() -> Option<Addon> {
        let token = std::env::var("SUPERVISOR_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())?;
        Some(Addon {
            options: std::env::var_os("SNAPMAIL_ADDON_OPTIONS")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/data/options.json")),
            supervisor: std::env::var("SNAPMAIL_SUPERVISOR_URL")
                .unwrap_or_else(|_| "http://supervisor".into()),
            token: Secret::new(token.trim()),
        })
    }

    /// Ask the Supervisor for the MQTT service.
    pub async fn mqtt_service(&self) -> Result<MqttService, SupervisorError> {
        crate::tls::install_crypto_provider();
        let url = format!("{}/services/mqtt", self.supervisor.trim_end_matches('/'));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| SupervisorError::Request(e.to_string()))?;
        let resp = client
            .get(&url)
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| SupervisorError::Request(crate::errors::error_chain(&e)))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        match status.as_u16() {
            200 => {}
            400 => return Err(SupervisorError::NotEnabled),
            403 => return Err(SupervisorError::Forbidden),
            code => {
                return Err(SupervisorError::Status(
                    code,
                    body.chars().take(200).collect(),
                ))
            }
        }
        let reply: Reply =
            serde_json::from_str(&body).map_err(|e| SupervisorError::Parse(e.to_string()))?;
        if reply.result != "ok" {
            return Err(SupervisorError::Status(
                200,
                format!("result {:?}", reply.result),
            ));
        }
        let d = reply
            .data
            .ok_or_else(|| SupervisorError::Parse("no data".into()))?;
        let port = match d.port {
            PortValue::Number(n) => u16::try_from(n).ok(),
            PortValue::Text(s) => s.trim().parse().ok(),
        }
        .filter(|p| *p > 0)
        .ok_or_else(|| SupervisorError::Parse("port is not a port number".into()))?;
        Ok(MqttService {
            url: format!(
                "{}://{}:{port}",
                if d.ssl { "mqtts" } else { "mqtt" },
                d.host
            ),
            username: d.username.filter(|u| !u.is_empty()),
            password: d.password.filter(|p| !p.is_empty()).map(Secret::new),
        })
    }
}

/// The broker the Supervisor offers.
#[derive(Debug, Clone)]
pub struct MqttService {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// Why the Supervisor gave no broker.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("no MQTT broker is installed: install the \"Mosquitto broker\" add-on (Settings → Add-ons → Add-on store) and restart snapmail, or set mqtt.url in the add-on options")]
    NotEnabled,
    #[error("the Supervisor refused the MQTT service lookup (403): the add-on manifest must declare services: [mqtt:need]; or set mqtt.url in the add-on options")]
    Forbidden,
    #[error("the Supervisor answered {0}: {1}; set mqtt.url in the add-on options")]
    Status(u16, String),
    #[error("cannot reach the Supervisor: {0}; set mqtt.url in the add-on options")]
    Request(String),
    #[error("unexpected answer from the Supervisor: {0}; set mqtt.url in the add-on options")]
    Parse(String),
}

#[derive(Deserialize)]
struct Reply {
    result: String,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    host: String,
    port: PortValue,
    #[serde(default)]
    ssl: bool,
    username: Option<String>,
    password: Option<String>,
}

/// The Supervisor validates `port` as an integer but some versions send a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum PortValue {
    Number(u64),
    Text(String),
}

/// Fill the broker from the Supervisor when the options do not name one.
pub async fn apply_discovered_mqtt(addon: &Addon, mqtt: &mut crate::config::MqttConfig) {
    if mqtt.url.is_some() {
        tracing::info!("add-on: using mqtt.url from the options");
        return;
    }
    match addon.mqtt_service().await {
        Ok(svc) => {
            tracing::info!(broker = %svc.url, "add-on: using the MQTT broker from the Supervisor");
            mqtt.url = Some(svc.url);
            // Explicit credentials win over discovered ones.
            if mqtt.username.is_none() {
                mqtt.username = svc.username;
                if mqtt.password.is_none() {
                    mqtt.password = svc.password;
                }
            }
        }
        Err(e) => tracing::error!("add-on: {e}"),
    }
}
