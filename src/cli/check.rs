//! `snapmail check`: load and validate the configuration, then print every effective value
//! (secrets redacted) with where it came from.

use std::path::Path;
use std::process::ExitCode;

use snapmail::config::{provenance, ConfigError};

pub fn run(config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    // The same plan `run` starts from: what passes here, starts there.
    let config = match snapmail::plan::Plan::load(config_path) {
        Ok(plan) => plan.config,
        Err(e) => {
            report(&e);
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

/// Every problem on its own line; missing secret files marked as such, since a configuration
/// whose only problems they are is otherwise ready (the shipped examples are).
fn report(e: &ConfigError) {
    let problems = e.problems();
    let missing = problems
        .iter()
        .filter(|p| p.is_missing_secret_file())
        .count();
    if problems.len() == 1 {
        eprintln!("✘ {e}");
    } else {
        eprintln!("✘ {} problems in the configuration:", problems.len());
        for p in &problems {
            let tag = if p.is_missing_secret_file() {
                " (missing secret file)"
            } else {
                ""
            };
            eprintln!("  ✘ {p}{tag}");
        }
    }
    if missing == 1 && problems.len() == 1 {
        eprintln!(
            "! only a missing secret file: create it and the rest of the configuration is valid"
        );
    } else if missing > 0 && missing == problems.len() {
        eprintln!("! only missing secret files: create them (each holds one secret) and the rest of the configuration is valid");
    } else if missing > 0 {
        eprintln!("! {missing} of these are missing secret files; the others need fixing too");
    }
}
