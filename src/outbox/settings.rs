//! The outbox's settings: a durable spool in front of SMTP (with the delivery loop's timing
//! from `outbox.*`), or, with no `smtp` section, a directory of `.eml` previews.

use std::path::PathBuf;

use super::delivery::DeliverySettings;
use crate::config::{Config, OutboxConfig, SmtpConfig};

/// Where composed mail goes.
#[derive(Debug, Clone)]
pub enum Settings {
    /// Into the spool, then out through the SMTP server.
    Spool(Box<SpoolSettings>),
    /// Preview mode: each mail becomes a file here, nothing is sent.
    Preview { dir: PathBuf },
}

/// The spool, its delivery loop's timing and the server it delivers to.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    pub spool: OutboxConfig,
    pub delivery: DeliverySettings,
    pub smtp: SmtpConfig,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        let o = &config.outbox;
        match &config.smtp {
            Some(smtp) => Settings::Spool(Box::new(SpoolSettings {
                spool: o.clone(),
                delivery: DeliverySettings {
                    max_age: o.max_age.0,
                    retry_min: o.retry_min.0,
                    retry_max: o.retry_max.0,
                    quota_pause: o.quota_pause.0,
                    credentials_pause: o.credentials_pause.0,
                    shutdown_timeout: config.shutdown_timeout.0,
                    max_in_flight: smtp.max_connections as usize,
                },
                smtp: smtp.clone(),
            })),
            None => Settings::Preview {
                dir: o.preview_dir.clone(),
            },
        }
    }
}
