//! `snapmail check`: load and validate the configuration, then print every effective value
//! (secrets redacted) with where it came from.

use std::path::Path;
use std::process::ExitCode;

use snapmail::config::provenance;

pub fn run(config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    // The same plan `run` starts from: what passes here, starts there.
    let config = match snapmail::plan::Plan::load(config_path) {
        Ok(plan) => plan.config,
        Err(e) => {
            eprintln!("✘ {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let entries = match provenance::describe(&config, config_path, None) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("✘ {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match config_path {
        Some(p) => println!("✔ {} is valid; effective configuration:", p.display()),
        None => println!("✔ no config file (embedded defaults plus SNAPMAIL__ variables); effective configuration:"),
    }
    let width = entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
    for e in &entries {
        println!("  {:width$}  {:40}  ({})", e.key, e.value, e.origin);
    }
    if let Some(smtp) = &config.smtp {
        if smtp.security().name() == "starttls" && smtp.port.0 == 465
            || smtp.security().name() == "tls" && smtp.port.0 == 587
        {
            println!(
                "! smtp.security is {} on port {}: 465 needs tls, 587 needs starttls",
                smtp.security().name(),
                smtp.port.0
            );
        }
    } else {
        println!(
            "! no smtp section: preview mode, mails are written to {} as .eml files",
            config.outbox.preview_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
