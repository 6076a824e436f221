//! The data plane's command-line settings: map sizes and the Maglev table, shared by every
//! node of a cluster (the table size and seed must match for nodes to agree on backends).

use clap::Args;
use skiff_ebpf_common::service::MAX_BACKENDS;

use super::{MapSizes, UplinkHook, maglev};

/// Data-plane flags of `skiff-agent`.
#[derive(Clone, Debug, Args)]
pub struct DataplaneArgs {
    /// Entries per Maglev table, one of the primes 251, 509, 1021, 2039, 4093, 8191, 16381,
    /// 32749, 65521, 131071; the same on every node.
    #[arg(long, default_value_t = maglev::DEFAULT_TABLE_SIZE)]
    pub maglev_table_size: u32,
    /// The Maglev hash seed; the same on every node, so that all nodes pick the same
    /// backend for a flow.
    #[arg(long, default_value_t = 0x736b_6966_665f_6d67)]
    pub maglev_seed: u64,
    /// Service addresses (address, port, protocol) the maps can hold.
    #[arg(long = "dataplane-max-services", default_value_t = 4096)]
    pub max_services: u32,
    /// Backends over all services (at most 16,777,215: a backend id's slot bits).
    #[arg(
        long = "dataplane-max-backends",
        default_value_t = 16384,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BACKENDS))
    )]
    pub max_backends: u32,
    /// Maglev tables (each service with backends holds one, plus one while it changes);
    /// memory is this times the table size times 4 bytes.
    #[arg(long = "dataplane-maglev-tables", default_value_t = 256)]
    pub maglev_tables: u32,
    /// Entries of the LRU flow maps (socket reverse NAT, affinity, conntrack).
    #[arg(long = "dataplane-max-flows", default_value_t = 65536)]
    pub max_flows: u32,
    /// Pods on this node whose NodePort and LoadBalancer traffic the uplink hands straight
    /// to their veth (beyond that, the node's stack forwards to the others).
    #[arg(long = "dataplane-max-local-pods", default_value_t = 1024)]
    pub max_local_pods: u32,
    /// Where the uplink's NodePort/LoadBalancer program runs: `xdp`, `tc` (ingress), or
    /// `auto` (TC on veth/tun devices, where native XDP costs more than it saves; XDP in
    /// the driver elsewhere, TC when that fails).
    #[arg(long, value_enum, default_value_t = UplinkHook::Auto)]
    pub uplink_hook: UplinkHook,
}

impl DataplaneArgs {
    /// The map capacities these flags ask for.
    pub fn sizes(&self) -> MapSizes {
        MapSizes {
            services: self.max_services,
            backends: self.max_backends,
            maglev_table_size: self.maglev_table_size,
            maglev_tables: self.maglev_tables,
            flows: self.max_flows,
            local_pods: self.max_local_pods,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        dataplane: DataplaneArgs,
    }

    #[test]
    fn max_backends_past_a_backend_ids_slot_bits_is_refused_naming_the_flag() {
        for wrong in ["0", "16777216"] {
            let error = Flags::try_parse_from(["skiff-agent", "--dataplane-max-backends", wrong])
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("--dataplane-max-backends") && error.contains(wrong),
                "{error}"
            );
        }
        let most =
            Flags::try_parse_from(["skiff-agent", "--dataplane-max-backends", "16777215"]).unwrap();
        assert_eq!(most.dataplane.sizes().backends, MAX_BACKENDS);
    }
}
