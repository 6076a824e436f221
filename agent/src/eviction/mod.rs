//! Eviction under memory pressure (kubelet's eviction manager, hard thresholds only).
//!
//! Data flows: every `--eviction-monitoring-interval`, [`manager`] observes
//! memory.available = the node's memory capacity (the machine's, or its cgroup subtree's
//! limit when smaller) minus the working set of the node's cgroup subtree, and checks it
//! against the [`threshold`]s of `--eviction-hard`. While a threshold is met (and for
//! `--eviction-pressure-transition-period` after) the node reports MemoryPressure=True;
//! each pass that finds the threshold met evicts one pod, the first by [`ranking`], through
//! the pod manager (containers killed at once, phase Failed, reason Evicted) and records an
//! `Evicted` Event.

pub mod manager;
pub mod ranking;
pub mod threshold;

use std::time::Duration;

use clap::Args;

pub use manager::EvictionManager;
pub use threshold::{Threshold, Thresholds, parse_thresholds};

/// Eviction flags of `skiff-agent` (kubelet's names).
#[derive(Clone, Debug, Args)]
pub struct EvictionArgs {
    /// Hard eviction thresholds: `memory.available<100Mi`, or a share of the node's memory
    /// such as `memory.available<5%`; comma-separated; empty for no eviction.
    #[arg(long, default_value = "memory.available<100Mi", value_parser = parse_eviction_hard)]
    pub eviction_hard: Thresholds,
    /// How long the node keeps MemoryPressure=True after the last time a threshold was met,
    /// like 5m or 30s.
    #[arg(long, default_value = "5m", value_parser = skiff_api::duration::parse_duration)]
    pub eviction_pressure_transition_period: Duration,
    /// How often memory is observed against the thresholds (kubelet's housekeeping), like
    /// 10s or 500ms; between 100ms and 10m.
    #[arg(long, default_value = "10s", value_parser = crate::metrics::parse_interval)]
    pub eviction_monitoring_interval: Duration,
}

fn parse_eviction_hard(text: &str) -> Result<Thresholds, String> {
    parse_thresholds(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        eviction: EvictionArgs,
    }

    #[test]
    fn the_defaults_are_kubelets() {
        let flags = Flags::try_parse_from(["agent"]).unwrap().eviction;
        assert_eq!(
            flags.eviction_hard,
            parse_thresholds("memory.available<100Mi").unwrap()
        );
        assert_eq!(
            flags.eviction_pressure_transition_period,
            Duration::from_secs(300)
        );
        assert_eq!(flags.eviction_monitoring_interval, Duration::from_secs(10));
    }

    #[test]
    fn a_bad_flag_value_names_the_flag_and_the_bad_part() {
        let error = Flags::try_parse_from([
            "agent",
            "--eviction-hard",
            "memory.available<1Gi,memory.free<5%",
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("--eviction-hard"), "{error}");
        assert!(error.contains("\"memory.free<5%\""), "{error}");
        let error = Flags::try_parse_from(["agent", "--eviction-monitoring-interval", "10ms"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--eviction-monitoring-interval"), "{error}");
        let error = Flags::try_parse_from(["agent", "--eviction-pressure-transition-period", "5x"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--eviction-pressure-transition-period") && error.contains("\"x\""),
            "{error}"
        );
    }
}
