//! `snapmail test-email`: one real mail through the configured SMTP path, like an NVR's
//! "Send Test Email" button, with a real camera snapshot when one answers.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use snapmail::config::{Config, SmtpConfig};
use snapmail::event::Event;
use snapmail::mail::{Composer, Mail, Mailer};
use snapmail::snapshot::image::{self, Limits, ResizeSpec, Thumbnail};
use snapmail::snapshot::Notification;

pub fn run(config_path: Option<&Path>, to: Option<String>) -> anyhow::Result<ExitCode> {
    let config = match snapmail::config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("✘ {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    super::logging::init(&config.log);
    let Some(smtp) = config.smtp.clone() else {
        eprintln!(
            "✘ smtp: no smtp section, so snapmail is in preview mode and sends nothing; \
             add smtp.username and smtp.password (see README, \"Gmail and Frigate\")"
        );
        return Ok(ExitCode::FAILURE);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(async move {
        let (notification, origin) = sample(&config).await;
        println!("picture: {origin}");
        let mail = match test_mail(&smtp, to.as_deref(), &notification) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("✘ {e}");
                return ExitCode::FAILURE;
            }
        };
        let mailer = match Mailer::new(&smtp) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("✘ {e}");
                return ExitCode::FAILURE;
            }
        };
        let rcpts = mail.recipients();
        println!(
            "sending to {} through {}:{} ({}) …",
            rcpts.join(", "),
            smtp.host,
            smtp.port.0,
            smtp.security().name()
        );
        match mailer
            .send_raw(mail.message.envelope(), &mail.message.formatted())
            .await
        {
            Ok(accepted) => {
                println!(
                    "✔ sent; the server answered: {} {}",
                    accepted.code, accepted.text
                );
                ExitCode::SUCCESS
            }
            Err(failure) => {
                println!("✘ not sent: {failure}");
                println!("  run `snapmail doctor` to find out which step fails");
                ExitCode::FAILURE
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(code)
}

/// The test mail: from the configured sender to `to` (or the configured recipients).
pub(super) fn test_mail(
    smtp: &SmtpConfig,
    to: Option<&str>,
    notification: &Notification,
) -> Result<Mail, String> {
    let recipients = match to {
        Some(t) => vec![t.to_owned()],
        None => smtp.recipients(),
    };
    let composer = Composer::new(smtp.from_address(), &recipients)
        .map_err(|e| format!("--to / smtp.to: {e}"))?;
    composer.compose(notification).map_err(|e| e.to_string())
}

/// A notification for the test mail, and where its picture came from: the first configured
/// camera's latest snapshot if it answers, otherwise a generated test image.
pub(super) async fn sample(config: &Config) -> (Notification, String) {
    let camera = config.cameras.keys().next().cloned();
    let mut event = Event::new(
        "test",
        format!("test-{}", fastrand::u64(..)),
        camera.clone().unwrap_or_else(|| "snapmail".into()),
    );
    event.label = Some("test email".into());
    let spec = spec(config);
    if let Some(camera) = camera {
        if let Ok(client) = super::doctor::http_client(config) {
            let probe = super::doctor::probe_camera(&client, config, &camera).await;
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
    let picture = tokio::task::spawn_blocking(move || generated(&spec))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    (
        Notification { event, picture },
        "a generated test image (no camera configured under cameras:, or it did not answer)".into(),
    )
}

pub(super) fn spec(config: &Config) -> ResizeSpec {
    ResizeSpec {
        max_width: config.snapshot.max_width,
        max_height: config.snapshot.max_height,
        jpeg_quality: config.snapshot.jpeg_quality,
        max_image_bytes: Some(config.snapshot.max_image_bytes),
    }
}

/// A 640×360 colour test pattern, run through the same resize and encode as a snapshot.
fn generated(spec: &ResizeSpec) -> Result<Thumbnail, String> {
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
    img.write_with_encoder(enc).map_err(|e| e.to_string())?;
    image::thumbnail(&jpeg, spec, &Limits::default()).map_err(|e| e.to_string())
}
