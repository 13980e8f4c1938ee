//! `snapmail run`: start the pipeline and stop it cleanly on SIGTERM / Ctrl-C.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tokio::sync::watch;
use tracing::info;

pub fn run(config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let addon = snapmail::addon::Addon::detect();
    let mut config = match &addon {
        Some(a) => snapmail::config::load_addon(config_path, &a.options, None)?,
        None => snapmail::config::load(config_path)?,
    };
    super::logging::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("snapmail")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        if let Some(a) = &addon {
            info!(options = %a.options.display(), "running as a Home Assistant add-on");
            snapmail::addon::apply_discovered_mqtt(a, &mut config.mqtt).await;
        }
        let plan = snapmail::plan::Plan::from_config(config)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let running = snapmail::pipeline::start(plan, stop_rx).await?;
        info!(version = env!("CARGO_PKG_VERSION"), "snapmail: running");
        wait_for_signal().await;
        info!("snapmail: shutting down");
        let _ = stop_tx.send(true);
        running.join().await;
        info!("snapmail: stopped");
        Ok(ExitCode::SUCCESS)
    });
    // Do not wait for stuck blocking work (a hung DNS lookup, say) past this point.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
