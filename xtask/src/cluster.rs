//! `cargo xtask up` and `down`: a local cluster on this machine, the way kind and minikube
//! give one. Each node is a network namespace with a veth on a host bridge, its own cgroup
//! subtree, bpffs directory and containerd namespace; the machine's own interfaces and root
//! cgroup are never touched.
//!
//! Everything `up` starts is recorded under the state directory (pid files, logs), so that
//! running `up` again is harmless and `down` stops exactly what was started.

use std::{
    fs,
    net::{Ipv4Addr, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{
    Workspace, oci, setup,
    shell::{self, step},
};

/// The host bridge every node's veth is attached to.
const BRIDGE: &str = "skiff0";
/// The bridge's (the host's) address on the node network.
const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
const NODE_PREFIX_LEN: u8 = 24;
/// The API server's port on loopback.
pub const API_PORT: u16 = 6443;
/// The demo image `up` imports into every node (used by `examples/hello.yaml`).
pub const DEMO_IMAGE: &str = "skiff.local/demo:1.0";
const CGROUP2_ROOT: &str = "/sys/fs/cgroup/unified";

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of nodes (each a network namespace running one skiff-agent).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=50))]
    nodes: u8,
    /// Where the cluster keeps its data, logs and pid files.
    #[arg(long, default_value = "/var/lib/skiff/local")]
    state_dir: PathBuf,
    /// Build and run release binaries (slower to build, faster to run).
    #[arg(long)]
    release: bool,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// The state directory `up` used.
    #[arg(long, default_value = "/var/lib/skiff/local")]
    state_dir: PathBuf,
    /// Also delete the cluster's data and the images imported into its nodes.
    #[arg(long)]
    purge: bool,
}

/// One node of the local cluster.
#[derive(Debug)]
struct Node {
    index: u8,
}

impl Node {
    fn name(&self) -> String {
        format!("node-{}", self.index)
    }
    fn netns(&self) -> String {
        format!("skiff-{}", self.name())
    }
    fn host_veth(&self) -> String {
        format!("skiff-n{}", self.index)
    }
    fn address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 250, 0, 10 + self.index)
    }
    /// The node's pod CIDR until the control plane assigns one.
    fn pod_cidr(&self) -> String {
        format!("10.244.{}.0/24", self.index)
    }
    fn containerd_namespace(&self) -> String {
        format!("skiff-{}", self.name())
    }
    fn cgroup(&self) -> PathBuf {
        Path::new(CGROUP2_ROOT).join("skiff").join(self.name())
    }
    fn bpffs(&self) -> PathBuf {
        Path::new("/sys/fs/bpf/skiff").join(self.name())
    }
}

/// Paths under the state directory.
#[derive(Debug)]
struct State {
    dir: PathBuf,
}

impl State {
    fn pid_file(&self, name: &str) -> PathBuf {
        self.dir.join("pids").join(format!("{name}.pid"))
    }
    fn log_file(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }
    /// The pid recorded for `name`, if that process is still alive and still `binary`.
    fn running(&self, name: &str, binary: &str) -> Option<u32> {
        let pid: u32 = fs::read_to_string(self.pid_file(name))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains(binary)
            .then_some(pid)
    }
}

pub fn up(workspace: &Workspace, args: &UpArgs) -> Result<()> {
    if !shell::is_root() {
        bail!("`cargo xtask up` makes network namespaces and starts containerd: run it as root");
    }
    setup::run()?;
    let state = State {
        dir: args.state_dir.clone(),
    };
    for sub in ["pids", "logs", "images", "control", "nodes"] {
        fs::create_dir_all(state.dir.join(sub))
            .with_context(|| format!("creating {}", state.dir.join(sub).display()))?;
    }

    step("building skiff-control, skiff-agent and skiffctl");
    let mut build = vec![
        "build",
        "-p",
        "skiff-control",
        "-p",
        "skiff-agent",
        "-p",
        "skiffctl",
    ];
    if args.release {
        build.push("--release");
    }
    shell::run("cargo", &build)?;

    ensure_containerd(&state)?;
    ensure_bridge()?;
    let nodes: Vec<Node> = (1..=args.nodes).map(|index| Node { index }).collect();
    for node in &nodes {
        ensure_node_network(node)?;
    }
    ensure_control(workspace, &state, args.release)?;
    let image = state.dir.join("images/demo.tar");
    build_demo_image(&image)?;
    for node in &nodes {
        import_image(node, &image)?;
        ensure_agent(workspace, &state, node, args.release)?;
    }

    println!();
    println!(
        "Skiff is up: {} node(s), state in {}",
        nodes.len(),
        state.dir.display()
    );
    for node in &nodes {
        println!(
            "  {}  address {}  netns {}  log {}",
            node.name(),
            node.address(),
            node.netns(),
            state.log_file(&node.name()).display()
        );
    }
    println!(
        "  control plane log {}",
        state.log_file("control").display()
    );
    println!();
    println!(
        "Try next (skiffctl is in {}):",
        workspace.binary("", args.release).display()
    );
    println!("  skiffctl get nodes");
    println!("  skiffctl apply -f examples/hello.yaml");
    println!("  skiffctl get deploy,svc -o wide");
    println!("  cargo xtask down          (stop; --purge also deletes the data)");
    Ok(())
}

pub fn down(args: &DownArgs) -> Result<()> {
    if !shell::is_root() {
        bail!("`cargo xtask down` removes network namespaces: run it as root");
    }
    let state = State {
        dir: args.state_dir.clone(),
    };
    let nodes = existing_nodes();
    for node in &nodes {
        stop(&state, &node.name(), "skiff-agent")?;
    }
    stop(&state, "control", "skiff-control")?;
    for node in &nodes {
        remove_pods(&state, node);
    }
    if args.purge {
        for node in &nodes {
            purge_images(node);
        }
    }
    stop(&state, "containerd", "containerd")?;
    for node in &nodes {
        step(format!("removing {}", node.netns()));
        let _ = shell::output("ip", &["netns", "del", &node.netns()]);
        remove_cgroups(node);
        let _ = fs::remove_dir_all(node.bpffs());
    }
    if shell::succeeds("ip", &["link", "show", BRIDGE]) {
        shell::output("ip", &["link", "del", BRIDGE])?;
    }
    if args.purge && state.dir.exists() {
        step(format!("deleting {}", state.dir.display()));
        fs::remove_dir_all(&state.dir)?;
    }
    step("down");
    Ok(())
}

/// Nodes whose network namespaces exist (named `skiff-node-N`).
fn existing_nodes() -> Vec<Node> {
    let list = shell::output("ip", &["netns", "list"]).unwrap_or_default();
    list.lines()
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .strip_prefix("skiff-node-")?
                .parse()
                .ok()
        })
        .map(|index| Node { index })
        .collect()
}

fn ensure_containerd(state: &State) -> Result<()> {
    if shell::succeeds("ctr", &["version"]) {
        step("containerd: already running");
        return Ok(());
    }
    step("starting containerd");
    let pid = spawn_logged(state, "containerd", Command::new("containerd"))?;
    wait_until(
        Duration::from_secs(30),
        "containerd to answer on its socket",
        || shell::succeeds("ctr", &["version"]),
    )?;
    step(format!("containerd running (pid {pid})"));
    Ok(())
}

fn ensure_bridge() -> Result<()> {
    if !shell::succeeds("ip", &["link", "show", BRIDGE]) {
        step(format!(
            "creating bridge {BRIDGE} ({HOST_ADDR}/{NODE_PREFIX_LEN})"
        ));
        shell::output("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        shell::output(
            "ip",
            &[
                "addr",
                "add",
                &format!("{HOST_ADDR}/{NODE_PREFIX_LEN}"),
                "dev",
                BRIDGE,
            ],
        )?;
    }
    shell::output("ip", &["link", "set", BRIDGE, "up"])?;
    Ok(())
}

fn ensure_node_network(node: &Node) -> Result<()> {
    let ns = node.netns();
    let exists = shell::output("ip", &["netns", "list"])?
        .lines()
        .any(|l| l.split_whitespace().next() == Some(ns.as_str()));
    if !exists {
        step(format!(
            "creating {} (netns {ns}, {})",
            node.name(),
            node.address()
        ));
        shell::output("ip", &["netns", "add", &ns])?;
        let veth = node.host_veth();
        shell::output(
            "ip",
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        shell::output("ip", &["link", "set", &veth, "master", BRIDGE, "up"])?;
        let addr = format!("{}/{NODE_PREFIX_LEN}", node.address());
        for cmd in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "addr", "add", &addr, "dev", "eth0"],
            vec!["ip", "link", "set", "eth0", "up"],
            vec!["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
        ] {
            let mut args = vec!["netns", "exec", &ns];
            args.extend(cmd);
            shell::output("ip", &args)?;
        }
    }
    // The host reaches the node's pods through the node (direct routing, no overlay).
    shell::output(
        "ip",
        &[
            "route",
            "replace",
            &node.pod_cidr(),
            "via",
            &node.address().to_string(),
            "dev",
            BRIDGE,
        ],
    )?;
    fs::create_dir_all(node.cgroup())
        .with_context(|| format!("creating cgroup {}", node.cgroup().display()))?;
    fs::create_dir_all(node.bpffs())
        .with_context(|| format!("creating {}", node.bpffs().display()))?;
    Ok(())
}

fn ensure_control(workspace: &Workspace, state: &State, release: bool) -> Result<()> {
    if let Some(pid) = state.running("control", "skiff-control") {
        step(format!("skiff-control: already running (pid {pid})"));
        return install_cli_config(state);
    }
    step("starting skiff-control");
    let mut cmd = Command::new(workspace.binary("skiff-control", release));
    cmd.arg("--data-dir")
        .arg(state.dir.join("control"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{API_PORT},{HOST_ADDR}:{API_PORT}"));
    let pid = spawn_logged(state, "control", cmd)?;
    wait_until(Duration::from_secs(30), "skiff-control to listen", || {
        TcpStream::connect(("127.0.0.1", API_PORT)).is_ok()
    })
    .with_context(|| format!("see {}", state.log_file("control").display()))?;
    step(format!(
        "skiff-control running (pid {pid}) on 127.0.0.1:{API_PORT} and {HOST_ADDR}:{API_PORT}"
    ));
    install_cli_config(state)
}

/// Copies the administrator's config that skiff-control wrote to the CLI's default place.
fn install_cli_config(state: &State) -> Result<()> {
    let source = state.dir.join("control/admin.yaml");
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let target = home.join(".skiff/config");
    fs::create_dir_all(target.parent().expect("has a parent"))?;
    fs::copy(&source, &target)
        .with_context(|| format!("copying {} to {}", source.display(), target.display()))?;
    step(format!("skiffctl config written to {}", target.display()));
    Ok(())
}

fn ensure_agent(workspace: &Workspace, state: &State, node: &Node, release: bool) -> Result<()> {
    let name = node.name();
    if let Some(pid) = state.running(&name, "skiff-agent") {
        step(format!("skiff-agent {name}: already running (pid {pid})"));
        return Ok(());
    }
    step(format!("starting skiff-agent for {name}"));
    let node_dir = state.dir.join("nodes").join(&name);
    fs::create_dir_all(&node_dir)?;
    // nsenter --net, not `ip netns exec`: the agent must share the host's mount namespace
    // with containerd, which joins the pod namespaces the agent bind-mounts.
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/var/run/netns/{}", node.netns()))
        .arg("--")
        .arg(workspace.binary("skiff-agent", release))
        .args(["--node-name", &name, "--uplink", "eth0"])
        .arg("--node-ip")
        .arg(node.address().to_string())
        .arg("--pod-cidr")
        .arg(node.pod_cidr())
        .arg("--state-dir")
        .arg(&node_dir)
        .arg("--cgroup-root")
        .arg(node.cgroup())
        .arg("--bpffs")
        .arg(node.bpffs())
        .arg("--containerd-namespace")
        .arg(node.containerd_namespace())
        .arg("--server")
        .arg(format!("https://{HOST_ADDR}:{API_PORT}"))
        .arg("--ca-file")
        .arg(state.dir.join("control/pki/ca.crt"))
        .arg("--bootstrap-token-file")
        .arg(state.dir.join("control/auth/bootstrap.token"));
    let pid = spawn_logged(state, &name, cmd)?;
    // The agent exits at once on a bad flag or a data plane it cannot load.
    thread::sleep(Duration::from_secs(1));
    if state.running(&name, "skiff-agent").is_none() {
        bail!(
            "skiff-agent for {name} exited at start; see {}",
            state.log_file(&name).display()
        );
    }
    step(format!("skiff-agent {name} running (pid {pid})"));
    Ok(())
}

fn build_demo_image(out: &Path) -> Result<()> {
    let busybox = Path::new("/bin/busybox");
    let mut entries = oci::busybox_entries(busybox).context("packing busybox-static")?;
    entries.push(oci::Entry::Dir { path: "www".into() });
    entries.push(oci::Entry::Contents {
        path: "www/index.html".into(),
        bytes: b"Hello from Skiff!\n".to_vec(),
        mode: 0o644,
    });
    let spec = oci::ImageSpec {
        name: DEMO_IMAGE.into(),
        entries,
        entrypoint: vec![],
        cmd: ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
            .map(String::from)
            .to_vec(),
        env: vec!["PATH=/bin".into()],
        exposed_ports: vec!["8080/tcp".into()],
    };
    oci::write_archive(&spec, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

fn import_image(node: &Node, archive: &Path) -> Result<()> {
    let ns = node.containerd_namespace();
    let images = shell::output("ctr", &["-n", &ns, "images", "ls", "-q"])?;
    if images.lines().any(|l| l.trim() == DEMO_IMAGE) {
        return Ok(());
    }
    step(format!("importing {DEMO_IMAGE} into {}", node.name()));
    let archive = archive.to_string_lossy();
    shell::output(
        "ctr",
        &["-n", &ns, "images", "import", "--no-unpack", &archive],
    )?;
    Ok(())
}

/// Removes the node's cgroup subtree (pods' QoS tiers and pod cgroups, which runc made in
/// every hierarchy), deepest first; the machine's own cgroups are never touched.
fn remove_cgroups(node: &Node) {
    fn remove_tree(dir: &Path) {
        if let Ok(children) = fs::read_dir(dir) {
            for child in children.flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&child.path());
                }
            }
        }
        let _ = fs::remove_dir(dir);
    }
    let relative = Path::new("skiff").join(node.name());
    if let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") {
        for hierarchy in hierarchies.flatten() {
            remove_tree(&hierarchy.path().join(&relative));
        }
    }
}

/// Kills and removes the node's pod containers and unmounts the pod namespaces the agent
/// bind-mounted in its state directory (the agent is already stopped).
fn remove_pods(state: &State, node: &Node) {
    let ns = node.containerd_namespace();
    let list = |what: &str| {
        shell::output("ctr", &["-n", &ns, what, "ls", "-q"])
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    for task in list("tasks") {
        let _ = shell::output(
            "ctr",
            &["-n", &ns, "tasks", "kill", "-a", "-s", "SIGKILL", &task],
        );
        for _ in 0..50 {
            if shell::output("ctr", &["-n", &ns, "tasks", "rm", "-f", &task]).is_ok() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    for container in list("containers") {
        let _ = shell::output("ctr", &["-n", &ns, "containers", "rm", &container]);
    }
    let pods = state.dir.join("nodes").join(node.name()).join("pods");
    let prefix = pods.to_string_lossy().into_owned();
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for mount in mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
    {
        let _ = shell::output("umount", &["-l", mount]);
    }
    let _ = fs::remove_dir_all(&pods);
}

fn purge_images(node: &Node) {
    let ns = node.containerd_namespace();
    if let Ok(images) = shell::output("ctr", &["-n", &ns, "images", "ls", "-q"]) {
        for image in images.lines() {
            let _ = shell::output("ctr", &["-n", &ns, "images", "rm", image.trim()]);
        }
    }
    let _ = shell::output("ctr", &["namespaces", "rm", &ns]);
}

/// Starts `cmd` in its own process group with output to its log file, records its pid.
fn spawn_logged(state: &State, name: &str, mut cmd: Command) -> Result<u32> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.log_file(name))
        .with_context(|| format!("opening {}", state.log_file(name).display()))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
    let pid = child.id();
    fs::write(state.pid_file(name), pid.to_string())?;
    Ok(pid)
}

/// Stops the process recorded as `name`: SIGTERM, up to 10 s, then SIGKILL.
fn stop(state: &State, name: &str, binary: &str) -> Result<()> {
    let Some(pid) = state.running(name, binary) else {
        let _ = fs::remove_file(state.pid_file(name));
        return Ok(());
    };
    step(format!("stopping {name} (pid {pid})"));
    let pid_arg = pid.to_string();
    let _ = shell::output("kill", &["-TERM", &pid_arg]);
    let gone = wait_until(Duration::from_secs(10), "exit", || {
        state.running(name, binary).is_none()
    });
    if gone.is_err() {
        let _ = shell::output("kill", &["-KILL", &pid_arg]);
    }
    let _ = fs::remove_file(state.pid_file(name));
    Ok(())
}

fn wait_until(timeout: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
