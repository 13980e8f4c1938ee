//! The `snapmail` command: argument parsing, logging and signals — the binary's edge.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("snapmail: {e:#}");
            ExitCode::FAILURE
        }
    }
}
