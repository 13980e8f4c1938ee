//! Logging setup: `RUST_LOG` wins over `log.level`; `log.format` picks pretty or JSON.
//! Colours only on a terminal (not in `docker logs`, journald or a file) and never with
//! `NO_COLOR`. The embedded broker's own log is off: it reports every client that
//! disconnects as an error; `RUST_LOG=rumqttd=debug` shows it when it is wanted.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use snapmail::config::{LogConfig, LogFormat};

pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{},rumqttd=off", cfg.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    let _ = match cfg.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
