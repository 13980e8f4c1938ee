//! `snapmail doctor`: walk the whole path from config to inbox step by step, measure each
//! step, and name the fix for whatever fails.
//!
//! Steps run in order and carry on past a failure wherever a later step can still tell
//! something (a broken SMTP login does not stop the MQTT check). Each step prints one line:
//! `✔` passed, `✘` failed (with the fix), `!` a warning, `-` skipped, `·` a detail. The exit
//! code is 0 only when no step failed; `--json` prints the steps as a JSON array instead.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use snapmail::config::ConfigError;
use snapmail::plan::Plan;

use report::Report;

mod args;
mod mqtt;
mod report;
mod smtp;
mod snapshot;
mod tls;

pub use args::DoctorArgs;

pub fn run(config_path: Option<&Path>, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut report = Report {
        json: args.json,
        steps: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Loading reads files: done before the runtime, not on it.
    let loaded = Plan::load(config_path);
    runtime.block_on(diagnose(config_path, loaded, &args, &mut report));
    // A hung DNS lookup must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.steps)?);
    } else if report.failed() {
        println!("✘ doctor: some steps failed; the first ✘ line is the one to fix first");
    } else {
        println!("✔ doctor: everything checked works");
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn diagnose(
    config_path: Option<&Path>,
    loaded: Result<Plan, ConfigError>,
    args: &DoctorArgs,
    report: &mut Report,
) {
    snapmail::tls::install_crypto_provider();
    let plan = match loaded {
        Ok(p) => p,
        Err(e) => {
            report.fail(
                "config",
                e.to_string(),
                "correct the key named above; `snapmail check` prints the effective configuration",
            );
            return;
        }
    };
    let shown = config_path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(no file: embedded defaults and SNAPMAIL__ variables)".into());
    report.ok("config", format!("{shown} is valid"));

    match plan.outbox.smtp() {
        Some((smtp, tls)) => smtp::smtp_steps(&plan, smtp, tls, args, report).await,
        None => report.warn(
            "smtp",
            "no smtp section: preview mode, mails are written as .eml files and nothing is sent",
            "add smtp.username and smtp.password (a Gmail app password)",
        ),
    }
    mqtt::mqtt_steps(&plan, args, report).await;
    snapshot::snapshot_steps(&plan, report).await;
}
