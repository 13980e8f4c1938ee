//! What `test-email` and `doctor --send` mail, and how `doctor` looks at a camera: the first
//! listed camera's latest snapshot fetched through the daemon's own fetch path (Frigate's
//! login, `insecure_tls`, the download limits) and shrunk by the daemon's image code, or a
//! generated test picture when no camera answers.

use std::sync::Arc;
use std::time::Instant;

use snapmail::config::SmtpConfig;
use snapmail::event::Event;
use snapmail::mail::{Composer, Mail};
use snapmail::plan::Plan;
use snapmail::snapshot::fetch::Fetcher;
use snapmail::snapshot::http::FetchError;
use snapmail::snapshot::image::{self, ImageError, Limits, ResizeSpec, Thumbnail};
use snapmail::snapshot::{Notification, PictureError};

/// The daemon's fetcher for this plan, with the download slots one image worker would have.
pub fn fetcher(plan: &Plan) -> Result<Fetcher, reqwest::Error> {
    snapmail::tls::install_crypto_provider();
    Fetcher::new(&plan.snapshot, Arc::new(tokio::sync::Semaphore::new(2)))
}

/// One camera's latest snapshot, fetched and decoded like a real event's.
pub struct Probe {
    /// The URL asked, without any login it may carry.
    pub url: String,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Frigate refused (or wanted) a login: the error names the keys to fix.
    pub login: bool,
    pub bytes: usize,
    pub fetch_ms: u128,
    pub decode_ms: u128,
    pub picture: Result<Thumbnail, String>,
}

/// Fetch `camera`'s latest frame from Frigate and shrink it as the daemon would.
pub async fn probe_camera(fetcher: &Fetcher, plan: &Plan, camera: &str) -> Probe {
    let t0 = Instant::now();
    let answer = fetcher.frigate().latest_answer(camera).await;
    let mut probe = Probe {
        url: format!("{}/api/{camera}/latest.jpg", plan.snapshot.frigate.base),
        status: None,
        login: false,
        bytes: 0,
        fetch_ms: t0.elapsed().as_millis(),
        decode_ms: 0,
        picture: Err(String::new()),
    };
    probe.url = snapmail::errors::redact_url(&probe.url);
    let body = match answer {
        Ok((answer, shown)) => {
            probe.url = shown;
            probe.status = Some(answer.status.as_u16());
            if !answer.status.is_success() {
                let text = String::from_utf8_lossy(&answer.body[..answer.body.len().min(120)]);
                probe.picture = Err(format!(
                    "answered {}: {}",
                    answer.status.as_u16(),
                    text.trim()
                ));
                return probe;
            }
            answer.body
        }
        Err(e) => {
            probe.login = matches!(e, FetchError::Login { .. });
            probe.picture = Err(e.to_string());
            return probe;
        }
    };
    probe.bytes = body.len();
    let spec = plan.snapshot.spec.clone();
    let limits = plan.snapshot.limits.clone();
    let t1 = Instant::now();
    probe.picture = tokio::task::spawn_blocking(move || {
        image::thumbnail(&body, &spec, &limits).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    probe.decode_ms = t1.elapsed().as_millis();
    probe
}

/// A notification for the test mail, and where its picture came from: the first configured
/// camera's latest snapshot if it answers, otherwise a generated test image.
pub async fn sample(plan: &Plan) -> (Notification, String) {
    let camera = plan.config.cameras.keys().next().cloned();
    let mut event = Event::new(
        "test",
        format!("test-{}", fastrand::u64(..)),
        camera.clone().unwrap_or_else(|| "snapmail".into()),
    );
    event.label = Some("test email".into());
    if let Some(camera) = camera {
        if let Ok(fetcher) = fetcher(plan) {
            let probe = probe_camera(&fetcher, plan, &camera).await;
            if let Ok(picture) = probe.picture {
                return (
                    Notification {
                        event,
                        picture: Ok(picture),
                    },
                    format!("latest snapshot of camera {camera} ({})", probe.url),
                );
            }
        }
    }
    let spec = plan.snapshot.spec.clone();
    let picture = tokio::task::spawn_blocking(move || generated(&spec))
        .await
        .map_err(|e| ImageError::Worker(e.to_string()))
        .and_then(|r| r)
        .map_err(PictureError::from);
    (
        Notification { event, picture },
        "a generated test image (no camera configured under cameras:, or it did not answer)".into(),
    )
}

/// The test mail: from the configured sender to `to` (or the configured recipients), with
/// times in `zone`.
pub fn test_mail(
    smtp: &SmtpConfig,
    to: Option<&str>,
    notification: &Notification,
    zone: &jiff::tz::TimeZone,
) -> Result<Mail, String> {
    let recipients = match to {
        Some(t) => vec![t.to_owned()],
        None => smtp.recipients(),
    };
    let composer = Composer::new(smtp.from_address(), &recipients)
        .map_err(|e| format!("--to / smtp.to: {e}"))?
        .with_time_zone(zone.clone());
    composer.compose(notification).map_err(|e| e.to_string())
}

/// A 640×360 colour test pattern, run through the same resize and encode as a snapshot.
fn generated(spec: &ResizeSpec) -> Result<Thumbnail, ImageError> {
    let img = ::image::RgbImage::from_fn(640, 360, |x, y| {
        let bar = (x / 80) as u8;
        ::image::Rgb([
            bar.wrapping_mul(37).wrapping_add((y / 2) as u8),
            (x / 3) as u8,
            255 - (y * 255 / 360) as u8,
        ])
    });
    let mut jpeg = Vec::new();
    let enc = ::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90);
    img.write_with_encoder(enc)
        .map_err(|e| ImageError::Encode(e.to_string()))?;
    image::thumbnail(&jpeg, spec, &Limits::default())
}
