//! `snapmail doctor`'s flags, and how durations are shown in its lines.

use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Also send one test mail, proving the whole path to the inbox.
    #[arg(long)]
    pub send: bool,
    /// Recipient of the test mail (default: smtp.to).
    #[arg(long, requires = "send")]
    pub to: Option<String>,
    /// How long to listen to the MQTT topics, e.g. 10s or 1m.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub listen: Duration,
    /// Time limit of each network probe (DNS, TCP connect, greeting, TLS handshake).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The alternative SMTP port to try when the configured one is blocked
    /// (default: 465 for 587 and 587 for anything else).
    #[arg(long)]
    pub other_port: Option<u16>,
    /// Print the steps as a JSON array (for scripts).
    #[arg(long)]
    pub json: bool,
}

pub(super) fn secs(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
