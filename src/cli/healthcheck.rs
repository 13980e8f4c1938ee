//! `snapmail healthcheck`: ask the running daemon's `/healthz` (for Docker's HEALTHCHECK,
//! which has no curl in a scratch image). Exit 0 when healthy, 1 otherwise.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

pub fn run(config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = snapmail::config::load(config_path)?;
    anyhow::ensure!(
        config.http.enabled,
        "http.enabled is false: there is no /healthz to ask"
    );
    let mut addr: SocketAddr = config.http.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    snapmail::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let url = format!("http://{addr}/healthz");
        let resp = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        print!("{body}");
        Ok(if status.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}
