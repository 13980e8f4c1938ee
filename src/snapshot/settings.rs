//! The snapshot stage's settings, resolved once from `snapshot.*`, `frigate.*` and each
//! camera's `max_width`/`max_height`. Everything the stage checks about its keys (the
//! Frigate version, say) is checked here, at start, not at the first event.

use std::collections::HashMap;

use super::frigate_api::{parse_version, FrigateSettings};
use super::http::HttpSettings;
use super::image::{Limits, ResizeSpec};
use crate::config::{Cameras, Config, ConfigError};

/// Everything the snapshot stage needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `snapshot.*`: size, quality and byte budget of the mailed picture.
    pub spec: ResizeSpec,
    pub limits: Limits,
    /// Each listed camera's picture size; cameras not listed get `default_size`.
    pub sizes: HashMap<String, (u32, u32)>,
    /// `defaults.max_width`/`max_height`, else `snapshot.*`.
    pub default_size: (u32, u32),
    /// Image worker threads (0: one per core) and snapshots that may wait for one.
    pub workers: usize,
    pub queue: usize,
    pub http: HttpSettings,
    pub frigate: FrigateSettings,
}

impl Settings {
    pub fn from_config(config: &Config, cameras: &Cameras) -> Result<Settings, ConfigError> {
        let s = &config.snapshot;
        let size = |c: &crate::config::CameraConfig| {
            (
                c.max_width.unwrap_or(s.max_width),
                c.max_height.unwrap_or(s.max_height),
            )
        };
        let f = &config.frigate;
        let version = match f.version.trim() {
            "auto" => None,
            v => Some(parse_version(v).ok_or_else(|| {
                ConfigError::invalid(format!(
                    "frigate.version: {v:?} is not a version; use auto, or e.g. 0.14 or 0.15"
                ))
            })?),
        };
        let login = match (&f.username, &f.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => None,
        };
        Ok(Settings {
            spec: ResizeSpec {
                max_width: s.max_width,
                max_height: s.max_height,
                jpeg_quality: s.jpeg_quality,
                max_image_bytes: Some(s.max_image_bytes),
            },
            limits: Limits {
                max_pixels: s.max_pixels,
                max_bytes: s.max_bytes,
            },
            sizes: cameras
                .listed
                .iter()
                .map(|(name, c)| (name.clone(), size(c)))
                .collect(),
            default_size: size(&cameras.defaults),
            workers: s.workers,
            queue: s.queue,
            http: HttpSettings {
                timeout: s.timeout.0,
                max_bytes: s.max_bytes,
            },
            frigate: FrigateSettings {
                base: f.url.trim_end_matches('/').to_owned(),
                login,
                version,
                bbox: s.bbox,
                crop: s.crop,
                timestamp: s.timestamp,
                height: s.max_height,
                retries_404: f.snapshot_retries,
                retry_delay: f.snapshot_retry_delay.0,
                insecure_tls: f.insecure_tls,
            },
        })
    }

    /// The picture size for `camera`.
    pub fn size_for(&self, camera: &str) -> (u32, u32) {
        self.sizes.get(camera).copied().unwrap_or(self.default_size)
    }
}
