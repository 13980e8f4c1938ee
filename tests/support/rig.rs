//! A complete test rig: Mosquitto, the Gmail-like SMTP server, a Frigate-like HTTP server,
//! and a base configuration that points snapmail at all three. Tests adjust the config
//! through `SNAPMAIL__…` environment variables, the way users override it.
#![allow(dead_code)]

use std::time::Duration;

use super::daemon::Daemon;
use super::http::{self, HttpServer};
use super::images;
use super::mosquitto::{self, Mosquitto};
use super::smtp::{self, SmtpServer};

pub const T: Duration = Duration::from_secs(30);
pub const NEW: &str = include_str!("../fixtures/frigate-events-new-0.14.json");

pub struct Rig {
    pub broker: Mosquitto,
    pub smtp: SmtpServer,
    pub frigate: HttpServer,
}

/// Start all three servers; Frigate serves a `width`×`height` camera-like JPEG.
pub async fn start(width: u32, height: u32) -> Rig {
    Rig {
        broker: mosquitto::start(),
        smtp: smtp::start().await,
        frigate: http::start(http::frigate(images::camera_jpeg(width, height, 85))).await,
    }
}

impl Rig {
    /// The base configuration: STARTTLS port, the right app password (with Google's spaces),
    /// fast retries, the spool in `./spool` of the daemon's directory.
    pub fn config(&self) -> String {
        format!(
            r#"mqtt:
  url: {mqtt}
  client_id: snapmail-test
smtp:
  host: localhost
  port: {port}
  security: starttls
  username: cam@example.com
  password: "abcd efgh ijkl mnop"
  from: "Cameras <cam@example.com>"
  to: [me@example.com]
  ca_file: {ca}
  timeout: 20s
frigate:
  url: {frigate}
rate_limit:
  cooldown: 60s
outbox:
  dir: ./spool
  retry_min: 1s
  retry_max: 2s
"#,
            mqtt = self.broker.url(),
            port = self.smtp.starttls_port,
            ca = self.smtp.ca_file.display(),
            frigate = self.frigate.url(),
        )
    }

    /// Start snapmail with the base config plus `envs`, and wait until it is subscribed.
    pub async fn daemon(&self, envs: &[(&str, &str)]) -> Daemon {
        let d = Daemon::start(Some(&self.config()), envs);
        d.wait_for_log("mqtt: subscribed", T).await;
        d
    }

    /// Publish a Frigate `new` event for `camera` with a unique event id.
    pub async fn frigate_event(&self, camera: &str, n: usize) {
        self.broker
            .publish("frigate/events", frigate_event(camera, n).as_bytes(), false)
            .await;
    }
}

/// A Frigate `new` event for `camera`; `n` makes the event id unique.
pub fn frigate_event(camera: &str, n: usize) -> String {
    let id = format!("1731254400.{n:06}-{camera}");
    NEW.replace("1731254400.123456-k3v9qz", &id)
        .replace("\"driveway\"", &format!("{camera:?}"))
}

/// Number of messages waiting in a spool directory.
pub fn spooled(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "mail"))
                .count()
        })
        .unwrap_or(0)
}
