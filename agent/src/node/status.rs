//! What this node reports about itself: capacity and allocatable (CPU, memory, pods,
//! ephemeral storage), addresses, system info and conditions, read from the machine through
//! a small seam so that tests can supply their own.

use std::{collections::BTreeMap, net::Ipv4Addr, path::Path};

use serde_json::{Value, json};

/// How many pods a node runs by default (Kubernetes' `--max-pods`).
pub const DEFAULT_MAX_PODS: u32 = 110;

/// Facts read from the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineInfo {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
}

impl MachineInfo {
    /// Reads the facts of this machine; `storage` is the filesystem pods write to.
    pub fn read(storage: &Path) -> Self {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            memory_bytes: memory_kib * 1024,
            ephemeral_storage_bytes: filesystem_size(storage).unwrap_or(0),
            kernel_version: read("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
        }
    }

    /// The machine as a node in a cgroup subtree with a memory `limit` sees it: that much
    /// memory when it is less than the machine's (capacity, allocatable and eviction all
    /// count from it).
    pub fn with_memory_limit(mut self, limit: Option<u64>) -> Self {
        if let Some(limit) = limit {
            self.memory_bytes = self.memory_bytes.min(limit);
        }
        self
    }
}

fn filesystem_size(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to writable memory
    // of the right type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised `stat`.
    let stat = unsafe { stat.assume_init() };
    Some(stat.f_blocks * stat.f_frsize)
}

/// What the agent knows of itself beyond the machine.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    pub name: String,
    pub address: Option<Ipv4Addr>,
    pub pod_cidr: Option<String>,
    pub max_pods: u32,
    pub machine: MachineInfo,
    pub runtime_version: String,
    /// Memory held back from pods for the system (Kubernetes' eviction threshold and
    /// reservations), subtracted from capacity to give allocatable.
    pub reserved_memory_bytes: u64,
    /// The port the node API listens on (Node.status.daemonEndpoints.kubeletEndpoint).
    pub node_api_port: u16,
}

/// The Node object this agent registers: metadata and spec.
pub fn node_object(facts: &NodeFacts) -> Value {
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.io/hostname", facts.name.clone());
    labels.insert("kubernetes.io/os", "linux".into());
    labels.insert("kubernetes.io/arch", "amd64".into());
    let mut spec = json!({});
    if let Some(cidr) = &facts.pod_cidr {
        spec = json!({ "podCIDR": cidr, "podCIDRs": [cidr] });
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": facts.name, "labels": labels },
        "spec": spec,
    })
}

/// The NodeStatus this agent reports (without heartbeat times, so that two calls with the
/// same facts compare equal and an unchanged status is not rewritten); `memory_pressure`
/// comes from the eviction manager.
pub fn node_status(facts: &NodeFacts, memory_pressure: bool) -> Value {
    let machine = &facts.machine;
    let capacity = json!({
        "cpu": machine.cpus.to_string(),
        "memory": format!("{}Ki", machine.memory_bytes / 1024),
        "pods": facts.max_pods.to_string(),
        "ephemeral-storage": format!("{}Ki", machine.ephemeral_storage_bytes / 1024),
    });
    let allocatable = json!({
        "cpu": machine.cpus.to_string(),
        "memory": format!("{}Ki", machine.memory_bytes.saturating_sub(facts.reserved_memory_bytes) / 1024),
        "pods": facts.max_pods.to_string(),
        "ephemeral-storage": format!("{}Ki", machine.ephemeral_storage_bytes / 1024),
    });
    let mut addresses = vec![json!({"type": "Hostname", "address": facts.name})];
    if let Some(ip) = facts.address {
        addresses.insert(0, json!({"type": "InternalIP", "address": ip.to_string()}));
    }
    let condition = |kind: &str, status: &str, reason: &str, message: &str| json!({"type": kind, "status": status, "reason": reason, "message": message});
    let memory = if memory_pressure {
        condition(
            "MemoryPressure",
            "True",
            "KubeletHasInsufficientMemory",
            "skiff-agent has insufficient memory available",
        )
    } else {
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "skiff-agent has sufficient memory available",
        )
    };
    json!({
        "capacity": capacity,
        "allocatable": allocatable,
        "addresses": addresses,
        "conditions": [
            memory,
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "skiff-agent has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "skiff-agent has sufficient PID available"),
            condition("NetworkUnavailable", "False", "RouteCreated", "pod network routes are in place"),
            condition("Ready", "True", "KubeletReady", "skiff-agent is posting ready status"),
        ],
        "nodeInfo": {
            "machineID": machine.machine_id,
            "systemUUID": machine.machine_id,
            "bootID": machine.boot_id,
            "kernelVersion": machine.kernel_version,
            "osImage": machine.os_image,
            "containerRuntimeVersion": facts.runtime_version,
            "kubeletVersion": concat!("skiff-agent/", env!("CARGO_PKG_VERSION")),
            "kubeProxyVersion": concat!("skiff-agent/", env!("CARGO_PKG_VERSION")),
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
        "daemonEndpoints": { "kubeletEndpoint": { "Port": facts.node_api_port } },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> NodeFacts {
        NodeFacts {
            name: "node-1".into(),
            address: Some(Ipv4Addr::new(10, 250, 0, 11)),
            pod_cidr: Some("10.244.1.0/24".into()),
            max_pods: DEFAULT_MAX_PODS,
            machine: MachineInfo {
                cpus: 2,
                memory_bytes: 8 << 30,
                ephemeral_storage_bytes: 100 << 30,
                kernel_version: "6.18.0".into(),
                os_image: "Debian GNU/Linux 12 (bookworm)".into(),
                machine_id: "abc".into(),
                boot_id: "def".into(),
            },
            runtime_version: "containerd://1.6.20".into(),
            reserved_memory_bytes: 100 << 20,
            node_api_port: 11250,
        }
    }

    #[test]
    fn allocatable_memory_holds_back_the_reservation() {
        let status = node_status(&facts(), false);
        assert_eq!(status["capacity"]["memory"], "8388608Ki");
        assert_eq!(
            status["allocatable"]["memory"],
            format!("{}Ki", ((8u64 << 30) - (100 << 20)) / 1024)
        );
        assert_eq!(status["capacity"]["cpu"], "2");
        assert_eq!(status["capacity"]["pods"], "110");
    }

    #[test]
    fn the_internal_ip_comes_first_and_the_node_reports_ready() {
        let status = node_status(&facts(), false);
        assert_eq!(
            status["addresses"][0],
            json!({"type": "InternalIP", "address": "10.250.0.11"})
        );
        let ready = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(status["daemonEndpoints"]["kubeletEndpoint"]["Port"], 11250);
    }

    #[test]
    fn a_memory_limited_subtree_is_the_nodes_memory() {
        let mut facts = facts();
        facts.machine = facts.machine.with_memory_limit(Some(600 << 20));
        let status = node_status(&facts, false);
        assert_eq!(status["capacity"]["memory"], "614400Ki");
        assert_eq!(status["allocatable"]["memory"], "512000Ki");
        let roomy = self::facts().machine.with_memory_limit(Some(1 << 40));
        assert_eq!(roomy.memory_bytes, 8 << 30);
    }

    #[test]
    fn memory_pressure_reports_kubelets_reason() {
        let status = node_status(&facts(), true);
        let memory = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "MemoryPressure")
            .unwrap();
        assert_eq!(memory["status"], "True");
        assert_eq!(memory["reason"], "KubeletHasInsufficientMemory");
    }

    #[test]
    fn the_same_facts_give_the_same_status_so_nothing_is_rewritten() {
        assert_eq!(node_status(&facts(), false), node_status(&facts(), false));
    }

    #[test]
    fn the_node_object_carries_the_pod_cidr_and_hostname_label() {
        let node = node_object(&facts());
        assert_eq!(node["spec"]["podCIDR"], "10.244.1.0/24");
        assert_eq!(
            node["metadata"]["labels"]["kubernetes.io/hostname"],
            "node-1"
        );
    }
}
