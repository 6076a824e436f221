//! A node for pod tests and benchmarks: a network namespace linked to the host, a private
//! containerd with the busybox image imported (content only, so the agent unpacks it), a
//! cgroup subtree and a state directory; `skiff-agent` runs in the namespace on demand.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::{
    containerd::{CgroupTree, Containerd},
    control::ControlPlane,
    netns::{HostLink, Netns},
    oci,
    pins::PinDir,
    process::{ChildGuard, spawn_guarded, workspace_binary},
    unique_name,
};

/// The busybox image every pod node imports.
pub const IMAGE: &str = "skiff.test/busybox:1";

/// One node: a network namespace linked to the host, a private containerd, a cgroup
/// subtree and a state directory; the agent runs in the namespace.
#[derive(Debug)]
pub struct PodNode {
    // Field order is drop order: the agent stops before containerd goes.
    pub agent: Option<ChildGuard>,
    pub containerd: Containerd,
    pub cgroup: CgroupTree,
    /// The node's own bpffs directory for the data plane's pins.
    pub pins: PinDir,
    pub link: HostLink,
    pub netns: Netns,
    pub state: tempfile::TempDir,
    pub name: String,
    pub namespace: String,
    pub pod_cidr: String,
    /// The address the node reports (default: its end of the link to the host).
    pub node_ip: Option<std::net::Ipv4Addr>,
    /// More `skiff-agent` flags (e.g. `--plain-http-registry`).
    pub agent_args: Vec<String>,
}

/// Writes the test image [`IMAGE`] (busybox-static, and `/www/index.html` saying `pong`)
/// as an OCI archive at `archive`; one archive can be imported into any number of nodes.
///
/// # Errors
/// When busybox cannot be found or the archive cannot be written.
pub fn write_test_image(archive: &Path) -> anyhow::Result<()> {
    let mut entries = oci::busybox_entries(Path::new("/bin/busybox"))?;
    entries.push(oci::Entry::Dir { path: "www".into() });
    entries.push(oci::Entry::Contents {
        path: "www/index.html".into(),
        bytes: b"pong\n".to_vec(),
        mode: 0o644,
    });
    oci::write_archive(
        &oci::ImageSpec {
            name: IMAGE.into(),
            entries,
            entrypoint: vec![],
            cmd: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            exposed_ports: vec![],
        },
        archive,
    )?;
    Ok(())
}

impl PodNode {
    /// A node whose pod CIDR is 10.245.<index>.0/24.
    ///
    /// # Panics
    /// When any part cannot be made (this is test and benchmark setup).
    pub fn new(index: u8) -> PodNode {
        let netns = Netns::new("skpod").unwrap();
        let link = HostLink::new(&netns).unwrap();
        let containerd = Containerd::start().unwrap();
        let namespace = unique_name("skns");
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("busybox.tar");
        write_test_image(&archive).unwrap();
        // Content only: the agent unpacks the layers itself (through the Diff service), as
        // under `cargo xtask up`.
        containerd.import(&namespace, &archive, false).unwrap();
        PodNode {
            agent: None,
            containerd,
            cgroup: CgroupTree::new().unwrap(),
            pins: PinDir::new("skiffbpf").unwrap(),
            link,
            netns,
            state: tempfile::Builder::new()
                .prefix("skstate")
                .tempdir_in("/tmp")
                .unwrap(),
            name: unique_name("node"),
            namespace,
            pod_cidr: format!("10.245.{index}.0/24"),
            node_ip: None,
            agent_args: Vec::new(),
        }
    }

    /// Node `index` with `agent_args`, a control plane on the embedded store that listens
    /// on the node's link, the administrator's client, and the agent started.
    ///
    /// # Panics
    /// When any part cannot be started (this is test setup).
    pub async fn started(
        index: u8,
        agent_args: Vec<String>,
    ) -> (PodNode, ControlPlane, skiff_api::client::Client) {
        let mut node = PodNode::new(index);
        node.agent_args = agent_args;
        let (control, client) = node.start_with_control().await;
        (node, control, client)
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("agent.log")).unwrap_or_default()
    }

    /// Starts the agent in the node's network namespace, sharing the host's mount namespace
    /// (as containerd must see the pod namespaces it bind-mounts).
    pub fn start_agent(&mut self, control: &ControlPlane) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.path().join("agent.log"))
            .unwrap();
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/var/run/netns/{}", self.netns.name()))
            .arg("--")
            .arg(workspace_binary("skiff-agent"))
            .args(["--node-name", &self.name, "--uplink", &self.link.node_if])
            .args([
                "--node-ip",
                &self.node_ip.unwrap_or(self.link.node_ip).to_string(),
            ])
            .args(["--pod-cidr", &self.pod_cidr])
            .arg("--state-dir")
            .arg(self.state.path())
            .arg("--cgroup-root")
            .arg(self.cgroup.unified_path())
            .arg("--bpffs")
            .arg(self.pins.path())
            .arg("--containerd-socket")
            .arg(self.containerd.socket())
            .args(["--containerd-namespace", &self.namespace])
            .args(["--server", &control.url_at(self.link.host_ip)])
            .arg("--ca-file")
            .arg(control.data_dir().join("pki/ca.crt"))
            .arg("--bootstrap-token-file")
            .arg(control.data_dir().join("auth/bootstrap.token"))
            .args(["--lease-renew-seconds", "2"])
            .args(&self.agent_args)
            .env("RUST_LOG", "info,skiff_agent=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.agent = Some(spawn_guarded(command).expect("spawn skiff-agent"));
    }

    /// Starts a control plane on the embedded store reachable from this node's link, then
    /// the agent against it; returns the control and an admin client.
    ///
    /// # Panics
    /// When the control plane cannot start (this is test setup).
    pub async fn start_with_control(&mut self) -> (ControlPlane, skiff_api::client::Client) {
        let ips = vec![self.link.host_ip];
        let control = tokio::task::spawn_blocking(move || {
            ControlPlane::start_listening(crate::control::Backend::Embedded, &ips)
        })
        .await
        .unwrap()
        .unwrap();
        let client = control.admin_client().unwrap();
        self.start_agent(&control);
        (control, client)
    }

    /// One attempt's log file of a container of `pod`.
    pub fn pod_log(&self, pod: &Value, container: &str, attempt: u32) -> String {
        let dir = format!(
            "{}_{}_{}",
            pod["metadata"]["namespace"].as_str().unwrap(),
            pod["metadata"]["name"].as_str().unwrap(),
            pod["metadata"]["uid"].as_str().unwrap()
        );
        let path: PathBuf = self
            .state
            .path()
            .join("logs")
            .join(dir)
            .join(container)
            .join(format!("{attempt}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

impl Drop for PodNode {
    fn drop(&mut self) {
        // The agent first (so it does not recreate anything), then every pod namespace
        // mount it left in the state directory.
        self.agent.take();
        if std::env::var_os("SKIFF_TEST_AGENT_LOG").is_some() {
            eprintln!("agent log of {}:\n{}", self.name, self.log());
        }
        let prefix = self.state.path().to_string_lossy().into_owned();
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        for mount in mounts {
            if let Ok(c) = std::ffi::CString::new(mount) {
                // SAFETY: a NUL-terminated path; a failed unmount is harmless here.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}
