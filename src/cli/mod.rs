//! Command-line interface: `snapmail [run]` and its sibling commands.

mod check;
mod doctor;
mod healthcheck;
mod logging;
mod run;
mod sample;
mod test_email;
mod thumbnail;

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
    /// Shrink one picture file with the daemon's image pipeline and limits.
    Thumbnail {
        /// JPEG, PNG or WebP input.
        input: PathBuf,
        /// Where to write the JPEG.
        #[arg(short, long)]
        output: PathBuf,
        /// Fit inside this width (default: snapshot.max_width, or unbounded with --height).
        #[arg(long)]
        width: Option<u32>,
        /// Fit inside this height (default: snapshot.max_height, or unbounded with --width).
        #[arg(long)]
        height: Option<u32>,
        /// JPEG quality 1-100 (default: snapshot.jpeg_quality).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
        quality: Option<u8>,
        /// Byte budget of the output, 0 for none (default: snapshot.max_image_bytes).
        #[arg(long)]
        max_bytes: Option<usize>,
    },
}

pub fn dispatch(args: Args) -> anyhow::Result<ExitCode> {
    match args.command.unwrap_or(Command::Run) {
        Command::Run => run::run(args.config.as_deref()),
        Command::Check => check::run(args.config.as_deref()),
        Command::TestEmail { to } => test_email::run(args.config.as_deref(), to),
        Command::Doctor(d) => doctor::run(args.config.as_deref(), d),
        Command::Healthcheck => healthcheck::run(args.config.as_deref()),
        Command::Thumbnail {
            input,
            output,
            width,
            height,
            quality,
            max_bytes,
        } => thumbnail::run(
            args.config.as_deref(),
            &input,
            &output,
            thumbnail::Options {
                width,
                height,
                quality,
                max_bytes,
            },
        ),
    }
}
