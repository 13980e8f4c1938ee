//! Getting snapshot bytes: from Frigate's HTTP API ([`super::frigate_api`]), a camera
//! ([`super::camera`]), a URL, or the message itself. The limits every download keeps are
//! [`super::http`]'s.
//!
//! Two clients: Frigate's API is asked with no redirect followed, cameras and picture URLs
//! with redirects on their own host and port only ([`Redirects`]).

use bytes::Bytes;
use tracing::debug;

use super::camera;
use super::frigate_api::FrigateApi;
use super::http::{parse_url, FetchError, Http, Redirects, Slots};
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
        let http = Http::new(&settings.http, false, Redirects::SameOrigin, slots.clone())?;
        let frigate_http = Http::new(
            &settings.http,
            settings.frigate.insecure_tls,
            Redirects::Never,
            slots,
        )?;
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
            SnapshotSource::Url { url, key } => {
                let (parsed, shown) = parse_url(url)?;
                debug!(url = %shown, "fetching snapshot");
                self.http
                    .send(self.http.client.get(parsed), &shown)
                    .await
                    .map_err(|e| {
                        e.redirect_fix(|| {
                            format!(
                                "a picture URL from a message is fetched only from the host and port {key} let through; publish the URL the server redirects to, if that host is yours"
                            )
                        })
                    })?
                    .into_picture(&shown)
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
