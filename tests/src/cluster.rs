//! A whole Skiff cluster on one machine for end-to-end tests: an etcd cluster, two
//! `skiff-control` instances behind an API load balancer, agent nodes in network namespaces
//! on a shared bridge, and a client namespace that plays the outside world.
//!
//! ```text
//!  test process (root netns)                 fabric netns (made by the test)
//!  ┌────────────────────────────┐            ┌──────────────────────────────────────┐
//!  │ etcd ×3      127.0.0.1:*   │            │ br0 10.252.0.1/24                    │
//!  │ skiff-control ×2 127.0.0.1 │◄── proxy ──┤ API proxy listens on 10.252.0.1:6443 │
//!  │ API proxy   127.0.0.1:*    │   threads  │  │        │        │          │      │
//!  └────────────────────────────┘            └──┼────────┼────────┼──────────┼──────┘
//!                                              eth0     eth0     eth0       eth0
//!                                          node-0 ns  node-1 ns  node-2 ns  client ns
//!                                          .11 agent  .12 agent  .13 agent  .200
//!                                          pods 10.244.1.0/24, .2.0/24, .3.0/24
//! ```
//!
//! Nothing is added to the machine's own network namespace: the API proxy's listener on
//! the bridge is a socket the test process opened inside the fabric namespace, and it
//! forwards to the controls' loopback ports. Each node has its own containerd, cgroup
//! subtree, bpffs directory and state directory; all of it goes on drop, also on panic.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use skiff_api::client::{Client, ClientConfig, ListParams};

use crate::{
    api_proxy::ApiProxy,
    containerd::{CgroupTree, Containerd},
    control::ControlPlane,
    etcd::EtcdCluster,
    netns::{Netns, disable_tx_checksum_offload},
    pins::PinDir,
    pod_node::write_test_image,
    process::{ChildGuard, spawn_guarded, workspace_binary},
    unique_name,
};

/// The bridge's address in the fabric namespace, where the API proxy listens.
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 252, 0, 1);
/// The client namespace's address on the bridge.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 252, 0, 200);
/// The API port on [`ROUTER_IP`].
pub const API_PORT: u16 = 6443;
const BRIDGE: &str = "br0";

/// Short leader election (a killed leader's Lease expires 6 s after its last renewal),
/// a 6 s node grace period and 2 s eviction tolerations, so failures show quickly.
const DEFAULT_CONTROL_ARGS: [&str; 10] = [
    "--leader-elect-lease-duration=6s",
    "--leader-elect-renew-deadline=4s",
    "--leader-elect-retry-period=1s",
    "--node-monitor-grace-period=6s",
    "--node-eviction-rate=10",
    "--default-unreachable-toleration-seconds=2",
    "--default-not-ready-toleration-seconds=2",
    "--cluster-cidr=10.244.0.0/16",
    "--service-cluster-ip-range=10.96.0.0/16",
    "--advertise-address=10.252.0.1",
];

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub nodes: usize,
    pub controls: usize,
    pub etcd_members: usize,
    /// Flags for every `skiff-control`, after the defaults (a later flag wins).
    pub control_args: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nodes: 3,
            controls: 2,
            etcd_members: 3,
            control_args: Vec::new(),
        }
    }
}

impl ClusterConfig {
    /// The same, with more `skiff-control` flags.
    #[must_use]
    pub fn with_control_args(mut self, args: &[&str]) -> Self {
        self.control_args
            .extend(args.iter().map(|a| (*a).to_string()));
        self
    }
}

/// One node: a network namespace on the bridge, its own containerd with the test image,
/// a cgroup subtree, a bpffs directory and a state directory; the agent runs on demand.
#[derive(Debug)]
pub struct ClusterNode {
    // Field order is drop order: the agent stops before containerd goes, the namespace last.
    agent: Option<ChildGuard>,
    pub containerd: Containerd,
    pub cgroup: CgroupTree,
    pub pins: PinDir,
    pub state: tempfile::TempDir,
    pub netns: Netns,
    /// The Node object's name.
    pub name: String,
    /// The containerd namespace its containers live in.
    pub namespace: String,
    /// Its address on the bridge (the Node's InternalIP; NodePorts answer here).
    pub ip: Ipv4Addr,
    pub pod_cidr: String,
    /// Its port on the bridge, in the fabric namespace.
    fabric_if: String,
}

impl ClusterNode {
    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("agent.log")).unwrap_or_default()
    }

    /// The containerd tasks (container ids) running on this node, with their pids.
    ///
    /// # Errors
    /// When `ctr` fails.
    pub fn running_tasks(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .containerd
            .ctr(&self.namespace, &["tasks", "ls"])?
            .lines()
            .skip(1)
            .filter_map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                (words.get(2) == Some(&"RUNNING"))
                    .then(|| (words[0].to_string(), words[1].to_string()))
            })
            .collect())
    }

    /// The containerd containers on this node (running or not).
    ///
    /// # Errors
    /// When `ctr` fails.
    pub fn containers(&self) -> Result<Vec<String>> {
        Ok(self
            .containerd
            .ctr(&self.namespace, &["containers", "ls", "-q"])?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// What one attempt of `container` of `pod` printed (the text of its CRI log lines).
    pub fn container_output(&self, pod: &Value, container: &str, attempt: u32) -> String {
        let dir = format!(
            "{}_{}_{}",
            pod["metadata"]["namespace"].as_str().unwrap_or(""),
            pod["metadata"]["name"].as_str().unwrap_or(""),
            pod["metadata"]["uid"].as_str().unwrap_or("")
        );
        let path = self
            .state
            .path()
            .join("logs")
            .join(dir)
            .join(container)
            .join(format!("{attempt}.log"));
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The uplink XDP program's load-balancing counters (`LB_STATS`, summed over CPUs, in
    /// `LbEvent` order: translated, no backend, affinity hit, stale backend, reverse
    /// translated, conntrack hit, no route), read with bpftool through the program's maps.
    pub fn lb_stats(&self) -> Result<Vec<u64>> {
        let bpftool = |args: &[&str]| -> Result<Value> {
            let out = Command::new("bpftool").arg("-j").args(args).output()?;
            Ok(serde_json::from_slice(&out.stdout)?)
        };
        // The uplink's ingress program, at TC or XDP, by the link the agent pinned.
        let links = self.pins.path().join("links");
        let prog = ["tc_uplink_ingress", "xdp_uplink"]
            .iter()
            .map(|name| links.join(name))
            .find(|path| path.exists())
            .context("no pinned uplink ingress link")?;
        let link = bpftool(&["link", "show", "pinned", &prog.to_string_lossy()])?;
        let prog = link["prog_id"]
            .as_u64()
            .context("the pinned uplink link has no program")?;
        let prog = bpftool(&["prog", "show", "id", &prog.to_string()])?;
        for id in prog["map_ids"].as_array().into_iter().flatten() {
            let id = id.to_string();
            if bpftool(&["map", "show", "id", &id])?["name"] != "LB_STATS" {
                continue;
            }
            let dump = bpftool(&["map", "dump", "id", &id])?;
            return Ok(dump
                .as_array()
                .into_iter()
                .flatten()
                .map(|entry| {
                    entry["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|v| le_bytes(&v["value"]))
                        .sum()
                })
                .collect());
        }
        bail!("the uplink program has no LB_STATS map")
    }

    /// True while the agent process runs.
    pub fn agent_running(&mut self) -> bool {
        self.agent.as_mut().is_some_and(|a| a.exited().is_none())
    }

    fn start_agent(&mut self, ca: &Path, bootstrap_token: &Path) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.path().join("agent.log"))?;
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/var/run/netns/{}", self.netns.name()))
            .arg("--")
            .arg(workspace_binary("skiff-agent"))
            .args(["--node-name", &self.name, "--uplink", "eth0"])
            .args(["--node-ip", &self.ip.to_string()])
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
            .args(["--server", &format!("https://{ROUTER_IP}:{API_PORT}")])
            .arg("--ca-file")
            .arg(ca)
            .arg("--bootstrap-token-file")
            .arg(bootstrap_token)
            .args(["--lease-renew-seconds", "1"])
            .env("RUST_LOG", "info,skiff_agent=debug")
            .env("RUST_LIB_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.agent = Some(spawn_guarded(command).context("spawn skiff-agent")?);
        Ok(())
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        // The agent first (so it recreates nothing), then the pod namespace mounts it left
        // in its state directory; containerd removes its containers as it drops.
        self.agent.take();
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

/// A running cluster; dropping it stops and removes everything it made.
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order: agents and their containers first, then the controls,
    // the API proxy, etcd, and the namespaces.
    pub nodes: Vec<ClusterNode>,
    /// The pass-everything XDP program on every bridge port (detached on drop).
    _bridge_xdp: skiff_agent::dataplane::Dataplane,
    controls: Vec<ControlPlane>,
    proxy: ApiProxy,
    pub etcd: EtcdCluster,
    /// The outside world: reaches node addresses on the bridge, not pod IPs.
    pub client_ns: Netns,
    fabric: Netns,
    /// The API proxy's address on loopback, for the test's own clients and skiffctl.
    api_loopback: SocketAddr,
    /// Holds `admin.yaml` pointing at the proxy.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts everything (pieces that do not depend on each other concurrently) and waits
    /// until every node is registered and Ready.
    ///
    /// # Errors
    /// When any piece does not start or a node is not Ready within the deadline.
    pub fn start(config: ClusterConfig) -> Result<Self> {
        crate::require_root();
        let started = std::time::Instant::now();
        let dir = tempfile::Builder::new().prefix("skcluster").tempdir()?;
        let archive = dir.path().join("busybox.tar");
        let (etcd, fabric_and_nodes) = std::thread::scope(|s| {
            let etcd = s.spawn(|| EtcdCluster::start(config.etcd_members));
            let network = s.spawn(|| -> Result<_> {
                write_test_image(&archive)?;
                let fabric = Netns::new("skfab")?;
                fabric.exec(&["ip", "link", "add", BRIDGE, "type", "bridge"])?;
                fabric.exec(&[
                    "ip",
                    "addr",
                    "add",
                    &format!("{ROUTER_IP}/24"),
                    "dev",
                    BRIDGE,
                ])?;
                fabric.exec(&["ip", "link", "set", BRIDGE, "up"])?;
                let nodes: Vec<Result<ClusterNode>> = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..config.nodes)
                        .map(|i| {
                            let (fabric, archive) = (&fabric, &archive);
                            s.spawn(move || make_node(fabric, i, archive))
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|_| bail!("making a node panicked")))
                        .collect()
                });
                let nodes = nodes.into_iter().collect::<Result<Vec<_>>>()?;
                let (client_ns, client_port) = attach(&fabric, "skcli", CLIENT_IP)?;
                Ok((fabric, nodes, client_ns, client_port))
            });
            (
                etcd.join()
                    .unwrap_or_else(|_| bail!("starting etcd panicked")),
                network
                    .join()
                    .unwrap_or_else(|_| bail!("making the network panicked")),
            )
        });
        let etcd = etcd?;
        let (fabric, nodes, client_ns, client_port) = fabric_and_nodes?;

        let args: Vec<String> = DEFAULT_CONTROL_ARGS
            .iter()
            .map(|a| (*a).to_string())
            .chain(config.control_args.iter().cloned())
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let urls = etcd.client_urls();
        let mut controls: Vec<ControlPlane> = Vec::new();
        let first = ControlPlane::start_on_etcd(&urls, None, &args)?;
        // The others join the first's cluster (a copy of its CA and tokens); they can start
        // together.
        let others: Vec<Result<ControlPlane>> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..config.controls)
                .map(|_| s.spawn(|| ControlPlane::start_on_etcd(&urls, Some(&first), &args)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| bail!("starting a control panicked"))
                })
                .collect()
        });
        controls.push(first);
        for control in others {
            controls.push(control?);
        }

        let backends: Vec<SocketAddr> = controls.iter().map(ControlPlane::address).collect();
        let on_bridge = fabric.run(|| TcpListener::bind((ROUTER_IP, API_PORT)))??;
        let on_loopback = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let api_loopback = on_loopback.local_addr()?;
        let proxy = ApiProxy::start(vec![on_bridge, on_loopback], backends)?;

        let mut admin = controls[0].admin_config()?;
        admin.server = format!("https://{api_loopback}");
        std::fs::write(
            dir.path().join("admin.yaml"),
            serde_yaml::to_string(&admin)?,
        )?;

        let bridge_xdp = attach_xdp_pass(
            &fabric,
            nodes
                .iter()
                .map(|n| n.fabric_if.as_str())
                .chain([client_port.as_str()]),
        )?;
        let mut cluster = Self {
            nodes,
            _bridge_xdp: bridge_xdp,
            controls,
            proxy,
            etcd,
            client_ns,
            fabric,
            api_loopback,
            dir,
        };
        for i in 0..cluster.nodes.len() {
            cluster.start_agent(i)?;
        }
        cluster.wait_nodes_ready(Duration::from_secs(60))?;
        eprintln!(
            "cluster up: {} etcd members, {} controls, {} Ready nodes in {:?}",
            cluster.etcd.size(),
            cluster.controls.len(),
            cluster.nodes.len(),
            started.elapsed()
        );
        Ok(cluster)
    }

    /// Blocks until every node's Ready condition is True.
    fn wait_nodes_ready(&self, timeout: Duration) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = self.client()?;
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let ready = runtime.block_on(async {
            crate::wait::eventually("every node to be Ready", timeout, || async {
                let nodes = client
                    .list("nodes", "", &ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .items;
                let not_ready: Vec<&String> = names
                    .iter()
                    .filter(|name| {
                        !nodes.iter().any(|n| {
                            n["metadata"]["name"] == name.as_str() && node_ready(n) == "True"
                        })
                    })
                    .collect();
                if not_ready.is_empty() {
                    Ok(())
                } else {
                    Err(format!("not Ready yet: {not_ready:?}"))
                }
            })
            .await
        });
        if let Err(error) = ready {
            let logs: String = self
                .nodes
                .iter()
                .map(|n| format!("--- agent {} ---\n{}\n", n.name, tail(&n.log(), 30)))
                .collect();
            bail!("{error:#}\n{logs}");
        }
        Ok(())
    }

    /// An administrator's client through the API proxy (any live control answers).
    ///
    /// # Errors
    /// When the config is unusable.
    pub fn client(&self) -> Result<Client> {
        Ok(Client::new(&self.admin_config()?)?)
    }

    /// The administrator's client config, pointing at the API proxy.
    ///
    /// # Errors
    /// When it cannot be read.
    pub fn admin_config(&self) -> Result<ClientConfig> {
        Ok(ClientConfig::load(&self.admin_config_path())?)
    }

    /// `admin.yaml` for `skiffctl --kubeconfig`-style use (through the API proxy).
    pub fn admin_config_path(&self) -> PathBuf {
        self.dir.path().join("admin.yaml")
    }

    /// The API proxy's loopback address.
    pub fn api_address(&self) -> SocketAddr {
        self.api_loopback
    }

    /// The proxy's addresses (bridge, loopback).
    pub fn proxy_addresses(&self) -> &[SocketAddr] {
        self.proxy.addresses()
    }

    /// Control instance `i`.
    pub fn control(&self, i: usize) -> &ControlPlane {
        &self.controls[i]
    }

    /// How many control instances the cluster has.
    pub fn control_count(&self) -> usize {
        self.controls.len()
    }

    /// SIGKILLs control `i`.
    pub fn kill_control(&mut self, i: usize) {
        self.controls[i].kill9();
    }

    /// Starts control `i` again on its data directory and port.
    ///
    /// # Errors
    /// When it does not serve again within its deadline.
    pub fn restart_control(&mut self, i: usize) -> Result<()> {
        self.controls[i].restart()
    }

    /// Which control holds the `skiff-control` leader Lease, by the identity each logs.
    pub async fn leading_control(&self, client: &Client) -> Option<usize> {
        let lease = client
            .get("leases", "kube-system", "skiff-control")
            .await
            .ok()?;
        let holder = lease["spec"]["holderIdentity"].as_str()?.to_string();
        self.controls
            .iter()
            .position(|c| c.log().contains(&format!("identity={holder}")))
    }

    /// Starts (or starts again) node `i`'s agent.
    ///
    /// # Errors
    /// When it cannot be spawned.
    pub fn start_agent(&mut self, i: usize) -> Result<()> {
        let pki = self.controls[0].data_dir().to_path_buf();
        self.nodes[i].start_agent(&pki.join("pki/ca.crt"), &pki.join("auth/bootstrap.token"))
    }

    /// SIGKILLs node `i`'s agent (its containers keep running, as when kubelet dies).
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut agent) = self.nodes[i].agent.take() {
            agent.kill();
        }
    }

    /// Kills node `i`'s agent and starts it again on the same state.
    ///
    /// # Errors
    /// When it cannot be spawned.
    pub fn restart_agent(&mut self, i: usize) -> Result<()> {
        self.kill_agent(i);
        self.start_agent(i)
    }

    /// SIGKILLs etcd member `i`.
    pub fn kill_etcd(&mut self, i: usize) {
        self.etcd.kill(i);
    }

    /// Starts etcd member `i` again on its data.
    ///
    /// # Errors
    /// When it cannot be spawned.
    pub fn restart_etcd(&mut self, i: usize) -> Result<()> {
        self.etcd.restart(i)
    }

    /// Cuts node `i` off the network (its bridge port goes down): it reaches neither the
    /// control plane nor other nodes, and nothing reaches it.
    ///
    /// # Errors
    /// When `ip` fails.
    pub fn cut_node(&self, i: usize) -> Result<()> {
        self.fabric
            .exec(&["ip", "link", "set", &self.nodes[i].fabric_if, "down"])?;
        Ok(())
    }

    /// Puts node `i` back on the network.
    ///
    /// # Errors
    /// When `ip` fails.
    pub fn heal_node(&self, i: usize) -> Result<()> {
        self.fabric
            .exec(&["ip", "link", "set", &self.nodes[i].fabric_if, "up"])?;
        Ok(())
    }

    /// The index of the node called `name`.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Runs `f` on a thread inside the client namespace (sockets it opens live there).
    ///
    /// # Errors
    /// When the namespace cannot be entered.
    pub fn in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        self.client_ns.run(f)
    }

    /// Routes `address` (a LoadBalancer or external IP) from the client namespace through
    /// node `i`, as a router in front of the cluster would; replaces an earlier route to it.
    /// Only the client namespace's routing table changes.
    ///
    /// # Errors
    /// When `ip` fails.
    pub fn route_from_client_via(&self, address: Ipv4Addr, i: usize) -> Result<()> {
        self.client_ns.exec(&[
            "ip",
            "route",
            "replace",
            &format!("{address}/32"),
            "via",
            &self.nodes[i].ip.to_string(),
        ])?;
        Ok(())
    }

    /// The last lines of every control's and agent's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, control) in self.controls.iter().enumerate() {
            out.push_str(&format!(
                "--- skiff-control {i} ---\n{}\n",
                tail(&control.log(), 40)
            ));
        }
        for node in &self.nodes {
            out.push_str(&format!(
                "--- agent {} ({}) ---\n{}\n",
                node.name,
                node.ip,
                tail(&node.log(), 40)
            ));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("SKIFF_TEST_CLUSTER_LOGS").is_some() {
            eprintln!("{}", self.logs());
        }
    }
}

/// The status of the Node's Ready condition ("" when it has none).
pub fn node_ready(node: &Value) -> String {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

/// A value bpftool prints as an array of hex bytes (`["0x2a", "0x00", ...]`), little endian.
fn le_bytes(value: &Value) -> u64 {
    value
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .filter_map(|b| u64::from_str_radix(b.as_str()?.trim_start_matches("0x"), 16).ok())
        .fold(0, |acc, b| (acc << 8) | b)
}

fn tail(text: &str, lines: usize) -> String {
    let last: Vec<&str> = text.lines().rev().take(lines).collect();
    last.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Attaches the pass-everything XDP program to the bridge `ports`: a frame a node's XDP
/// program sends back out of its uplink (XDP_TX, a NodePort to another node's pod) lands on
/// the uplink's peer, and a veth only takes such frames promptly with XDP of its own.
fn attach_xdp_pass<'a>(
    fabric: &Netns,
    ports: impl Iterator<Item = &'a str>,
) -> Result<skiff_agent::dataplane::Dataplane> {
    use skiff_agent::dataplane::{Dataplane, LoadOptions, MapSizes};
    let mut dataplane = Dataplane::load(&LoadOptions {
        pin_path: None,
        sizes: MapSizes {
            services: 16,
            backends: 16,
            maglev_table_size: 251,
            maglev_tables: 2,
            ..MapSizes::default()
        },
        node_addr: None,
    })?;
    for port in ports {
        let port = port.to_string();
        fabric.run(|| {
            dataplane
                .pass_program()?
                .attach(&port, aya::programs::XdpMode::Driver)
                .map(|_| ())
                .with_context(|| format!("attaching xdp_pass to {port}"))
        })??;
    }
    Ok(dataplane)
}

/// A new namespace with `eth0` on the fabric bridge at `ip`/24; returns it and the
/// bridge port's name in the fabric namespace.
fn attach(fabric: &Netns, prefix: &str, ip: Ipv4Addr) -> Result<(Netns, String)> {
    let ns = Netns::new(prefix)?;
    let port = unique_name("skp");
    let status = Command::new("ip")
        .args(["link", "add", &port, "netns", fabric.name()])
        .args(["type", "veth", "peer", "name", "eth0", "netns", ns.name()])
        .status()?;
    if !status.success() {
        bail!("creating the veth {port} for {} failed", ns.name());
    }
    fabric.exec(&["ip", "link", "set", &port, "master", BRIDGE])?;
    fabric.exec(&["ip", "link", "set", &port, "up"])?;
    ns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
    ns.exec(&["ip", "link", "set", "eth0", "up"])?;
    // Frames on a real wire carry complete checksums; a veth would leave TCP checksums
    // partial for the receiver to finish, which a node's XDP program, rewriting addresses
    // and sending the frame on (a NodePort to another node's pod), cannot do.
    ns.run(|| disable_tx_checksum_offload("eth0"))??;
    Ok((ns, port))
}

/// Node `i`: its namespace on the bridge at 10.252.0.(11 + i), its own containerd with
/// the test image imported (content only: the agent unpacks it), cgroup, pins and state.
fn make_node(fabric: &Netns, i: usize, archive: &Path) -> Result<ClusterNode> {
    let ip = Ipv4Addr::new(10, 252, 0, 11 + u8::try_from(i).context("too many nodes")?);
    let (netns, fabric_if) = attach(fabric, "sknode", ip)?;
    let containerd = Containerd::start()?;
    let namespace = unique_name("skns");
    containerd.import(&namespace, archive, false)?;
    Ok(ClusterNode {
        agent: None,
        containerd,
        cgroup: CgroupTree::new()?,
        pins: PinDir::new("skbpf")?,
        state: tempfile::Builder::new()
            .prefix("skstate")
            .tempdir_in("/tmp")?,
        netns,
        name: format!("node-{i}"),
        namespace,
        ip,
        pod_cidr: format!("10.244.{}.0/24", i + 1),
        fabric_if,
    })
}
