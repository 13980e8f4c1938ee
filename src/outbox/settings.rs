//! The outbox's settings: a durable spool in front of SMTP (with the delivery loop's timing
//! from `outbox.*` and the TLS trust for the server, `smtp.ca_file` read once here), or,
//! with no `smtp` section, a directory of `.eml` previews.

use std::path::PathBuf;
use std::sync::Arc;

use super::delivery::DeliverySettings;
use crate::config::{Config, ConfigError, OutboxConfig, SmtpConfig};

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
    /// The public roots plus `smtp.ca_file`.
    pub tls: Arc<rustls::ClientConfig>,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings, ConfigError> {
        let o = &config.outbox;
        Ok(match &config.smtp {
            Some(smtp) => Settings::Spool(Box::new(SpoolSettings {
                tls: crate::mail::transport::tls_config(smtp).map_err(ConfigError::invalid)?,
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
        })
    }
}

impl Settings {
    /// The SMTP server mail goes out through and the TLS trust for it; `None` in preview
    /// mode.
    pub fn smtp(&self) -> Option<(&SmtpConfig, &Arc<rustls::ClientConfig>)> {
        match self {
            Settings::Spool(s) => Some((&s.smtp, &s.tls)),
            Settings::Preview { .. } => None,
        }
    }
}
