//! The agent's command line: who this node is and where its resources live.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
};

use clap::Parser;

/// `skiff-agent`: Skiff's node agent (kubelet, kube-proxy and cAdvisor in one).
///
/// Several agents can run on one machine as separate nodes, each in its own network
/// namespace, with its own name, state directory, cgroup subtree, bpffs directory and
/// containerd namespace.
#[derive(Clone, Debug, Parser)]
#[command(name = "skiff-agent", version)]
pub struct Config {
    /// This node's name (the Node object's metadata.name).
    #[arg(long, env = "SKIFF_NODE_NAME")]
    pub node_name: String,
    /// The interface traffic from outside the node arrives on; the XDP program attaches
    /// here. On a real host, the machine's uplink (e.g. eth0 or bond0).
    #[arg(long, default_value = "eth0")]
    pub uplink: String,
    /// This node's address, as other nodes and clients reach it.
    #[arg(long)]
    pub node_ip: Option<Ipv4Addr>,
    /// The pod CIDR to use until the control plane assigns one.
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// Where the agent keeps its state (IPAM, pod records, logs).
    #[arg(long, default_value = "/var/lib/skiff/agent")]
    pub state_dir: PathBuf,
    /// The cgroup v2 directory this node's pods live under; socket and metrics programs
    /// attach here. On a real host, a dedicated subtree such as
    /// /sys/fs/cgroup/unified/skiff, never the root cgroup.
    #[arg(long, default_value = "/sys/fs/cgroup/unified/skiff")]
    pub cgroup_root: PathBuf,
    /// The bpffs directory this node's maps are pinned under.
    #[arg(long, default_value = "/sys/fs/bpf/skiff")]
    pub bpffs: PathBuf,
    /// The containerd namespace this node's containers and images live in.
    #[arg(long, default_value = "skiff")]
    pub containerd_namespace: String,
    /// containerd's socket.
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    pub containerd_socket: PathBuf,
    /// The control plane's API address.
    #[arg(long, default_value = "https://127.0.0.1:6443")]
    pub server: String,
    /// The cluster CA's certificate (PEM), which the API server's certificate must chain to.
    #[arg(long, default_value = "/var/lib/skiff/control/pki/ca.crt")]
    pub ca_file: PathBuf,
    /// A file holding the bootstrap token, exchanged at first start for this node's own
    /// credential (kept in the state directory afterwards).
    #[arg(long)]
    pub bootstrap_token_file: Option<PathBuf>,
    /// How often the node's Lease is renewed, in seconds (its duration is 40 s).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=30))]
    pub lease_renew_seconds: u64,
    /// Memory held back from pods for the system, in MiB (allocatable = capacity - this).
    #[arg(long, default_value_t = 100)]
    pub reserved_memory_mib: u64,
    /// Data-plane map sizes and the Maglev table.
    #[command(flatten)]
    pub dataplane: crate::dataplane::options::DataplaneArgs,
    /// The most processes one container may run (pids.max); 0 for no limit.
    #[arg(long, default_value_t = 4096)]
    pub pod_pids_limit: i64,
    /// The log driver containerd's shim runs per container (writes CRI-format files);
    /// default: `skiff-logger` beside this binary. Without one, raw output is appended.
    #[arg(long)]
    pub log_driver: Option<PathBuf>,
    /// `/metrics` and housekeeping.
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
    /// Eviction under memory pressure (kubelet's hard eviction thresholds).
    #[command(flatten)]
    pub eviction: crate::eviction::EvictionArgs,
    /// Container log files rotate past this many MiB.
    #[arg(long, default_value_t = 10)]
    pub container_log_max_mib: u64,
    /// Where the node API (logs, exec, image import for the control plane; mutual TLS)
    /// listens; its port is reported in the Node's daemonEndpoints.
    #[arg(long, default_value = "0.0.0.0:10250")]
    pub node_api_listen: SocketAddr,
    /// A directory of image archives (OCI layout or docker save `.tar`) the agent imports
    /// at start and whenever one is added, like k3s's agent/images [default:
    /// <state-dir>/images]
    #[arg(long)]
    pub images_dir: Option<PathBuf>,
    /// A registry (`host:port`) images are pulled from over plain HTTP, like containerd's
    /// insecure registries (repeatable). Others need HTTPS, which is not supported yet.
    #[arg(long, value_name = "HOST:PORT")]
    pub plain_http_registry: Vec<String>,
}

impl Config {
    /// The node's cgroup relative to each hierarchy's root (what runc's cgroupsPath is
    /// relative to): `--cgroup-root` without the cgroup mount prefix.
    pub fn cgroup_parent(&self) -> String {
        cgroup_parent(&self.cgroup_root)
    }

    /// The images directory: the flag, else `<state-dir>/images`.
    pub fn images_dir(&self) -> PathBuf {
        self.images_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("images"))
    }

    /// The log driver to use: the flag, else `skiff-logger` beside this binary if present.
    pub fn log_driver(&self) -> Option<PathBuf> {
        self.log_driver.clone().or_else(|| {
            let sibling = std::env::current_exe().ok()?.parent()?.join("skiff-logger");
            sibling.is_file().then_some(sibling)
        })
    }
}

/// `/sys/fs/cgroup/unified/skiff/node-1` -> `/skiff/node-1`.
pub fn cgroup_parent(root: &std::path::Path) -> String {
    let text = root.to_string_lossy();
    let relative = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))
        .unwrap_or(&text);
    format!("/{}", relative.trim_matches('/'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cgroup_parent_drops_the_mount_prefix() {
        use std::path::Path;
        assert_eq!(
            super::cgroup_parent(Path::new("/sys/fs/cgroup/unified/skiff/node-1")),
            "/skiff/node-1"
        );
        assert_eq!(
            super::cgroup_parent(Path::new("/sys/fs/cgroup/skiff")),
            "/skiff"
        );
    }
}
