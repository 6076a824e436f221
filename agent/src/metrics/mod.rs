//! Container metrics (cAdvisor's role, inside the agent): what each pod and container uses,
//! read from cgroupfs and from the cgroup_skb traffic counters, served at `/metrics`.
//!
//! Data flows: the pods bound here -> [`targets`] (their cgroups and cAdvisor labels) ->
//! [`collector`] housekeeping pass every `--housekeeping-interval` ([`cgroupfs`] stats, the
//! eBPF counters by cgroup id = the v2 directory's inode, data-plane maps) -> a snapshot ->
//! [`exposition`] renders it with the prometheus crate on each scrape of `--metrics-listen`,
//! and [`usage`] keeps the last two passes' CPU and memory for the node API's `Summary`
//! (the rates behind metrics.k8s.io and `skiffctl top`).

pub mod cgroupfs;
pub mod collector;
pub mod exposition;
pub mod targets;
pub mod usage;

use std::{net::SocketAddr, time::Duration};

use clap::Args;

pub use collector::{DataplaneStats, Housekeeping, KernelStats, Snapshot};
pub use exposition::{AgentMetrics, MachineFacts};
pub use usage::UsageHistory;

/// Metrics flags of `skiff-agent`.
#[derive(Clone, Debug, Args)]
pub struct MetricsArgs {
    /// Where `/metrics` is served over plain HTTP (Prometheus text format), e.g.
    /// 0.0.0.0:10255 (kubelet's read-only port); `none` to serve no metrics.
    #[arg(long, default_value = "0.0.0.0:10255", value_parser = parse_listen)]
    pub metrics_listen: MetricsListen,
    /// How often cgroups and data-plane counters are read (cAdvisor's housekeeping), like
    /// 10s or 500ms; between 100ms and 10m.
    #[arg(long, default_value = "10s", value_parser = parse_interval)]
    pub housekeeping_interval: Duration,
}

/// `--metrics-listen`: an address, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsListen(pub Option<SocketAddr>);

fn parse_listen(text: &str) -> Result<MetricsListen, String> {
    if text == "none" {
        return Ok(MetricsListen(None));
    }
    text.parse()
        .map(|a| MetricsListen(Some(a)))
        .map_err(|_| format!("{text:?} is not an address such as 0.0.0.0:10255, or none"))
}

/// A duration like `10s`, `500ms` or `1m`, within housekeeping's sensible range
/// (100ms..10m); also the eviction manager's.
///
/// # Errors
/// A message naming the text and what is wrong with it.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = skiff_api::duration::parse_duration(text)?;
    if !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&interval) {
        return Err(format!("{:?} is outside 100ms..10m", text.trim()));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_with_units_and_stay_in_range() {
        assert_eq!(parse_interval("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_interval("10ms").is_err());
        assert!(parse_interval("1h").is_err());
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn none_disables_the_listener() {
        assert_eq!(parse_listen("none"), Ok(MetricsListen(None)));
        assert_eq!(
            parse_listen("10.0.0.1:10255"),
            Ok(MetricsListen(Some("10.0.0.1:10255".parse().unwrap())))
        );
        assert!(parse_listen("localhost").is_err());
    }
}
