//! The snapshot step: each listed camera's latest picture, fetched and shrunk through the
//! daemon's own fetch path (Frigate login, `insecure_tls` and all).

use super::report::Report;
use crate::cli::sample::{fetcher, probe_camera};
use snapmail::plan::Plan;

pub(super) async fn snapshot_steps(plan: &Plan, report: &mut Report) {
    if plan.config.cameras.is_empty() {
        report.skip(
            "snapshots",
            "no cameras under cameras: in the config, so no snapshot was fetched (add cameras.<name>: {} to check one)",
        );
        return;
    }
    let fetcher = match fetcher(plan) {
        Ok(f) => f,
        Err(e) => {
            report.fail(
                "snapshots",
                format!("cannot set up the HTTP client: {e}"),
                "report this as a bug",
            );
            return;
        }
    };
    for camera in plan.config.cameras.keys() {
        let step = format!("snapshot {camera}");
        let p = probe_camera(&fetcher, plan, camera).await;
        match (&p.picture, p.status) {
            (Err(e), None) if p.login => report.fail(&step, e.clone(), "correct the keys named above"),
            (Ok(t), _) => report.ok(
                &step,
                format!(
                    "GET {} → {}, {} bytes, {}×{} {} in {} ms; decoded and resized to {}×{} ({} bytes) in {} ms",
                    p.url,
                    p.status.unwrap_or(0),
                    p.bytes,
                    t.source_width,
                    t.source_height,
                    t.source_format,
                    p.fetch_ms,
                    t.width,
                    t.height,
                    t.jpeg.len(),
                    p.decode_ms
                ),
            ),
            (Err(e), None) => report.fail(
                &step,
                format!("GET {}: {e}", p.url),
                "check frigate.url and that Frigate is reachable from this machine",
            ),
            (Err(e), Some(200..=299)) => report.fail(
                &step,
                format!("GET {} → {} bytes that are not a usable picture: {e}", p.url, p.bytes),
                "check frigate.url points at Frigate's API (port 5000, or 8971 behind its login)",
            ),
            (Err(e), Some(_)) => report.fail(
                &step,
                format!("GET {} {e}", p.url),
                format!("the camera name under cameras: must be Frigate's name for it ({camera:?}); check frigate.url"),
            ),
        }
    }
}
