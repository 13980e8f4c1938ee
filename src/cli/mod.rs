//! Command-line interface: `snapmail [run]` and its sibling commands.

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
}

pub fn dispatch(args: Args) -> anyhow::Result<ExitCode> {
    match args.command.unwrap_or(Command::Run) {
        Command::Run => run::run(args.config.as_deref()),
    }
}
