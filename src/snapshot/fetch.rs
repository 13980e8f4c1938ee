//! Getting snapshot bytes: from Frigate's HTTP API ([`super::frigate_api`]), a camera
//! ([`super::camera`]), a URL, or the message itself. The limits every download keeps are
//! [`super::http`]'s.

use bytes::Bytes;
use tracing::debug;

use super::camera;
use super::frigate_api::FrigateApi;
use super::http::{parse_url, FetchError, Http, Slots};
use super::settings::Settings;
use crate::event::SnapshotSource;

/// Downloads snapshots; one per process, sharing connection pools.
#[derive(Clone)]
pub struct Fetcher {
    http: Http,
    frigate: FrigateApi,
}

impl Fetcher {
    pub fn new(settings: &Settings, slots: Slots) -> Result<Fetcher, reqwest::Error> {
        let http = Http::new(&settings.http, false, slots.clone())?;
        let frigate_http = if settings.frigate.insecure_tls {
            Http::new(&settings.http, true, slots)?
        } else {
            http.clone()
        };
        Ok(Fetcher {
            http,
            frigate: FrigateApi::new(&settings.frigate, frigate_http),
        })
    }

    /// The Frigate client (`doctor` asks it directly, to report status codes).
    pub fn frigate(&self) -> &FrigateApi {
        &self.frigate
    }

    /// The bytes of the picture `source` names.
    pub async fn fetch(&self, source: &SnapshotSource) -> Result<Bytes, FetchError> {
        match source {
            SnapshotSource::Inline(bytes) => Ok(bytes.clone()),
            SnapshotSource::None { reason } => Err(FetchError::NoSource(reason.clone())),
            SnapshotSource::Url(url) => {
                let (parsed, shown) = parse_url(url)?;
                debug!(url = %shown, "fetching snapshot");
                self.http
                    .send(self.http.client.get(parsed), &shown)
                    .await?
                    .into_body(&shown)
            }
            SnapshotSource::FrigateEvent { event_id } => {
                self.frigate.event_snapshot(event_id).await
            }
            SnapshotSource::FrigateLatest { camera } => self.frigate.latest(camera).await,
            SnapshotSource::Camera {
                url,
                credentials,
                key,
            } => camera::fetch(&self.http, url, credentials.as_ref(), key).await,
        }
    }
}
