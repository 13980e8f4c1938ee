//! `snapmail test-email`: one real mail through the configured SMTP path, like an NVR's
//! "Send Test Email" button, with a real camera snapshot when one answers.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use snapmail::mail::Mailer;
use snapmail::plan::Plan;

use super::sample::{sample, test_mail};

pub fn run(config_path: Option<&Path>, to: Option<String>) -> anyhow::Result<ExitCode> {
    let plan = match Plan::load(config_path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("✘ {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    super::logging::init(&plan.config.log);
    let Some((smtp, tls)) = plan.outbox.smtp().map(|(s, t)| (s.clone(), t.clone())) else {
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
        let (notification, origin) = sample(&plan).await;
        println!("picture: {origin}");
        let mail = match test_mail(&smtp, to.as_deref(), &notification, plan.mail.time_zone()) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("✘ {e}");
                return ExitCode::FAILURE;
            }
        };
        let mailer = match Mailer::with_tls(&smtp, tls) {
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
