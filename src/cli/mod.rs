//! Command-line interface: `snapmail [run]` and its sibling commands.

mod healthcheck;
mod logging;
mod run;

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
    /// Ask the running daemon whether it is healthy (exit 0) or not (exit 1).
    Healthcheck,
}

pub fn dispatch(args: Args) -> anyhow::Result<ExitCode> {
    match args.command.unwrap_or(Command::Run) {
        Command::Run => run::run(args.config.as_deref()),
        Command::Healthcheck => healthcheck::run(args.config.as_deref()),
    }
}
