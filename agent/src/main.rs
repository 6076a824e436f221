//! `skiff-agent`: the node agent. Loads the eBPF data plane onto the node's uplink and runs
//! until SIGTERM or Ctrl-C, reporting what the data plane sees.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use skiff_agent::{
    config::Config,
    dataplane::{Dataplane, LoadOptions},
};
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Config::parse();
    info!(node = %config.node_name, uplink = %config.uplink, "starting skiff-agent");

    let mut dataplane =
        Dataplane::load(&LoadOptions::default()).context("loading the eBPF data plane")?;
    let mode = dataplane
        .attach_uplink(&config.uplink)
        .with_context(|| format!("attaching to the uplink {}", config.uplink))?;
    info!(interface = %config.uplink, ?mode, "uplink XDP program attached");

    let mut terminate = signal(SignalKind::terminate())?;
    let mut report = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = report.tick() => {
                let stats = dataplane.uplink_stats()?;
                let summary: Vec<String> = stats
                    .iter()
                    .map(|(class, c)| format!("{}={}", class.name(), c.packets))
                    .collect();
                info!(packets = %summary.join(" "), "uplink");
            }
        }
    }
    info!("stopping: the uplink program is detached with the agent");
    Ok(())
}
