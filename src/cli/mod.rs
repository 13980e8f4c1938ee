//! Command-line interface: `snapmail [run]` and its sibling commands.

mod check;
mod doctor;
mod healthcheck;
mod logging;
mod run;
mod test_email;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "snapmail",
    version,
    about = "Mail camera snapshots from MQTT events through Gmail"
)]
pub struct Args {
    /// YAML configuration file. Without one, snapmail runs on embedded defaults.
    #[arg(long, short, global = true, env = "SNAPMAIL_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the configuration and print it (secrets redacted) with where each value came from.
    Check,
    /// Send one test mail through the configured SMTP path, with a camera snapshot if one answers.
    TestEmail {
        /// Recipient (default: smtp.to).
        #[arg(long)]
        to: Option<String>,
    },
    /// Check every step from config to inbox (DNS, ports, TLS, login, MQTT, snapshots) and name the fix.
    Doctor(doctor::DoctorArgs),
    /// Ask the running daemon whether it is healthy (exit 0) or not (exit 1).
    Healthcheck,
}

pub fn dispatch(args: Args) -> anyhow::Result<ExitCode> {
    match args.command.unwrap_or(Command::Run) {
        Command::Run => run::run(args.config.as_deref()),
        Command::Check => check::run(args.config.as_deref()),
        Command::TestEmail { to } => test_email::run(args.config.as_deref(), to),
        Command::Doctor(d) => doctor::run(args.config.as_deref(), d),
        Command::Healthcheck => healthcheck::run(args.config.as_deref()),
    }
}
