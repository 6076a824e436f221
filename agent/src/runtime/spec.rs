//! The OCI runtime spec (config.json) for one container: process, the pod's shared network,
//! IPC and UTS namespaces joined by path, the standard mounts plus volumes, and the cgroup
//! (path and CPU/memory/pids limits) runc places the container in. Pure: a value in, JSON out.

use std::path::PathBuf;

use serde_json::{Value, json};

/// Resource limits for one container, already in the kernel's units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// cpu.shares (cgroup v1; runc converts to cpu.weight on v2).
    pub cpu_shares: u64,
    /// CFS quota in microseconds per `cpu_period`; none for unlimited.
    pub cpu_quota: Option<i64>,
    pub cpu_period: u64,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// Maximum number of processes.
    pub pids_limit: Option<i64>,
}

/// A bind mount into the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// Everything the spec is made from.
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub hostname: String,
    /// The pod's namespaces, joined by path (bind mounts the agent made).
    pub net_ns: PathBuf,
    pub ipc_ns: PathBuf,
    pub uts_ns: PathBuf,
    /// The cgroup path relative to each hierarchy's root, e.g.
    /// `/skiff/kubepods/burstable/pod<uid>/<container-id>`.
    pub cgroups_path: String,
    pub resources: Resources,
    pub mounts: Vec<BindMount>,
}

/// Capabilities a container gets by default (containerd's and Docker's default set).
const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Builds the OCI runtime spec.
pub fn build(spec: &ContainerSpec) -> Value {
    let caps = DEFAULT_CAPABILITIES.to_vec();
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    for mount in &spec.mounts {
        let mut options = vec!["rbind", "rprivate"];
        options.push(if mount.read_only { "ro" } else { "rw" });
        mounts.push(json!({
            "destination": mount.destination,
            "type": "bind",
            "source": mount.source,
            "options": options,
        }));
    }
    let mut cpu = json!({"shares": spec.resources.cpu_shares});
    if let Some(quota) = spec.resources.cpu_quota {
        cpu["quota"] = json!(quota);
        cpu["period"] = json!(spec.resources.cpu_period);
    }
    let mut resources = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "cpu": cpu,
    });
    if let Some(limit) = spec.resources.memory_limit {
        resources["memory"] = json!({"limit": limit});
    }
    if let Some(limit) = spec.resources.pids_limit {
        resources["pids"] = json!({"limit": limit});
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": spec.args,
            "env": spec.env,
            "cwd": if spec.cwd.is_empty() { "/" } else { spec.cwd.as_str() },
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": spec.cgroups_path,
            "resources": resources,
            "namespaces": [
                {"type": "pid"},
                {"type": "mount"},
                {"type": "network", "path": spec.net_ns},
                {"type": "ipc", "path": spec.ipc_ns},
                {"type": "uts", "path": spec.uts_ns},
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ContainerSpec {
        ContainerSpec {
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["A=1".into()],
            cwd: String::new(),
            hostname: "web-0".into(),
            net_ns: "/state/pods/u/ns/net".into(),
            ipc_ns: "/state/pods/u/ns/ipc".into(),
            uts_ns: "/state/pods/u/ns/uts".into(),
            cgroups_path: "/skiff/kubepods/burstable/podu/c".into(),
            resources: Resources {
                cpu_shares: 512,
                cpu_quota: Some(50_000),
                cpu_period: 100_000,
                memory_limit: Some(64 << 20),
                pids_limit: Some(1024),
            },
            mounts: vec![BindMount {
                source: "/state/pods/u/volumes/data".into(),
                destination: "/data".into(),
                read_only: true,
            }],
        }
    }

    #[test]
    fn the_spec_joins_the_pods_namespaces_by_path_and_makes_its_own_pid_and_mount() {
        let spec = build(&sample());
        let namespaces = spec["linux"]["namespaces"].as_array().unwrap();
        let path_of = |kind: &str| {
            namespaces
                .iter()
                .find(|n| n["type"] == kind)
                .map(|n| n.get("path").cloned())
        };
        assert_eq!(
            path_of("network"),
            Some(Some(json!("/state/pods/u/ns/net")))
        );
        assert_eq!(path_of("ipc"), Some(Some(json!("/state/pods/u/ns/ipc"))));
        assert_eq!(path_of("uts"), Some(Some(json!("/state/pods/u/ns/uts"))));
        assert_eq!(path_of("pid"), Some(None));
        assert_eq!(path_of("mount"), Some(None));
    }

    #[test]
    fn resources_and_cgroup_path_land_where_runc_reads_them() {
        let spec = build(&sample());
        let linux = &spec["linux"];
        assert_eq!(linux["cgroupsPath"], "/skiff/kubepods/burstable/podu/c");
        assert_eq!(linux["resources"]["cpu"]["shares"], 512);
        assert_eq!(linux["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(linux["resources"]["cpu"]["period"], 100_000);
        assert_eq!(linux["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(linux["resources"]["pids"]["limit"], 1024);
        assert_eq!(spec["process"]["cwd"], "/");
        assert_eq!(spec["process"]["args"][2], "echo hi");
        assert_eq!(spec["hostname"], "web-0");
    }

    #[test]
    fn unlimited_resources_leave_out_quota_and_memory() {
        let mut input = sample();
        input.resources = Resources {
            cpu_shares: 2,
            cpu_period: 100_000,
            ..Resources::default()
        };
        let spec = build(&input);
        let resources = &spec["linux"]["resources"];
        assert!(resources["cpu"].get("quota").is_none());
        assert!(resources.get("memory").is_none());
        assert!(resources.get("pids").is_none());
    }

    #[test]
    fn volumes_are_bind_mounted_with_their_read_only_flag() {
        let spec = build(&sample());
        let data = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/data")
            .unwrap();
        assert_eq!(data["type"], "bind");
        assert!(data["options"].as_array().unwrap().contains(&json!("ro")));
    }
}
