//! Network namespaces and veth pairs made by a test and removed when dropped.
//!
//! Test topologies live entirely inside namespaces the test made; nothing here touches the
//! machine's own interfaces.

use std::{fs::File, os::fd::AsRawFd, process::Command, thread};

use anyhow::{Context, Result, bail};

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace with a unique name derived from `prefix`, loopback up.
    ///
    /// # Errors
    /// When `ip netns add` fails.
    pub fn new(prefix: &str) -> Result<Self> {
        let name = crate::unique_name(prefix);
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace and returns its stdout.
    ///
    /// # Errors
    /// When the command cannot start or exits non-zero (the error carries its stderr).
    pub fn exec(&self, argv: &[&str]) -> Result<String> {
        let mut args = vec!["netns", "exec", self.name.as_str()];
        args.extend_from_slice(argv);
        run("ip", &args)
    }

    /// Makes `command` start inside this namespace. Unlike `ip netns exec`, only the
    /// network namespace changes: the child keeps the test's mounts, so `/sys/fs/bpf` and
    /// `/sys/fs/cgroup` are the host's (an agent's pins and cgroups are visible to the test).
    ///
    /// Keep the returned file open until the command has been spawned.
    ///
    /// # Errors
    /// When the namespace cannot be opened.
    pub fn enter_on_spawn(&self, command: &mut Command) -> Result<File> {
        use std::os::unix::process::CommandExt;
        let file = File::open(format!("/var/run/netns/{}", self.name))
            .with_context(|| format!("opening netns {}", self.name))?;
        let fd = file.as_raw_fd();
        // SAFETY: runs in the forked child before exec and only calls setns on a
        // descriptor opened before the fork.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(file)
    }

    /// Runs `f` on a thread that has entered this namespace, and returns its result.
    ///
    /// # Errors
    /// When the namespace cannot be entered.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let file = File::open(format!("/var/run/netns/{}", self.name))
            .with_context(|| format!("opening netns {}", self.name))?;
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: `file` is an open namespace file; setns only changes this
                    // thread's network namespace, and the thread ends after `f`.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    if rc != 0 {
                        bail!(
                            "setns into {}: {}",
                            self.name,
                            std::io::Error::last_os_error()
                        );
                    }
                    Ok(f())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("thread in netns {} panicked", self.name))?
        })
    }
}

impl Netns {
    /// Spawns a thread that enters this namespace, then runs `f` (sockets it opens live
    /// in the namespace); unlike [`Netns::run`], it does not wait for `f`.
    ///
    /// # Errors
    /// When the namespace cannot be opened.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<thread::JoinHandle<T>> {
        let file = File::open(format!("/var/run/netns/{}", self.name))
            .with_context(|| format!("opening netns {}", self.name))?;
        let name = self.name.clone();
        Ok(thread::spawn(move || {
            // SAFETY: `file` is an open namespace file; setns only changes this thread's
            // network namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "setns into {name}: {}",
                std::io::Error::last_os_error()
            );
            f()
        }))
    }
}

/// An interface's index and MAC, as `ip link` shows them inside a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub mac: [u8; 6],
}

impl Netns {
    /// The index and MAC of interface `name` in this namespace.
    ///
    /// # Errors
    /// When `ip` fails or its output has no index or MAC.
    pub fn link(&self, name: &str) -> Result<Link> {
        let out = self.exec(&["ip", "-o", "link", "show", "dev", name])?;
        let index = out
            .split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("no index for {name} in `{out}`"))?;
        let mac = out
            .split_whitespace()
            .skip_while(|word| *word != "link/ether")
            .nth(1)
            .and_then(parse_mac)
            .with_context(|| format!("no MAC for {name} in `{out}`"))?;
        Ok(Link { index, mac })
    }
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also removes the interfaces inside it.
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Connects two namespaces with a veth pair, addresses both ends and brings them up.
///
/// `a_addr` and `b_addr` are CIDRs like `10.0.0.1/24`. Returns the interface names in `a`
/// and `b`. The pair goes away with either namespace.
///
/// # Errors
/// When any `ip` command fails.
pub fn veth_between(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) -> Result<(String, String)> {
    let a_if = crate::unique_name("va");
    let b_if = crate::unique_name("vb");
    run(
        "ip",
        &[
            "link",
            "add",
            &a_if,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            &b_if,
            "netns",
            b.name(),
        ],
    )?;
    for (ns, ifname, addr) in [(a, &a_if, a_addr), (b, &b_if, b_addr)] {
        ns.exec(&["ip", "addr", "add", addr, "dev", ifname])?;
        ns.exec(&["ip", "link", "set", ifname, "up"])?;
    }
    Ok((a_if, b_if))
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("starting {program}"))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A veth between the test's own (root) namespace and a node namespace, with a /30 unique
/// to this process: how a node in a namespace reaches a control plane run by the test.
/// Only this veth is touched in the root namespace; it is deleted on drop.
#[derive(Debug)]
pub struct HostLink {
    host_if: String,
    pub host_ip: std::net::Ipv4Addr,
    pub node_ip: std::net::Ipv4Addr,
    /// The interface's name inside the node namespace.
    pub node_if: String,
}

impl HostLink {
    /// Creates the link; the node end is called `eth0` in `node`.
    ///
    /// # Errors
    /// When an `ip` command fails.
    pub fn new(node: &Netns) -> Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // 10.213.0.0/16 split in /30s by process id and call: unique among running tests.
        let slot =
            (std::process::id().wrapping_mul(7) + NEXT.fetch_add(1, Ordering::Relaxed)) % 16384;
        let base = u32::from(std::net::Ipv4Addr::new(10, 213, 0, 0)) + slot * 4;
        let host_ip = std::net::Ipv4Addr::from(base + 1);
        let node_ip = std::net::Ipv4Addr::from(base + 2);
        let host_if = crate::unique_name("skh");
        run(
            "ip",
            &[
                "link",
                "add",
                &host_if,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                node.name(),
            ],
        )?;
        let link = Self {
            host_if,
            host_ip,
            node_ip,
            node_if: "eth0".into(),
        };
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{host_ip}/30"),
                "dev",
                &link.host_if,
            ],
        )?;
        run("ip", &["link", "set", &link.host_if, "up"])?;
        node.exec(&["ip", "addr", "add", &format!("{node_ip}/30"), "dev", "eth0"])?;
        node.exec(&["ip", "link", "set", "eth0", "up"])?;
        Ok(link)
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.host_if]);
    }
}

/// Turns off transmit checksum offload on `interface` in the calling thread's namespace
/// (what `ethtool -K <if> tx off` does), so that frames leave it with complete checksums,
/// as they arrive from a real network. Run it inside [`Netns::run`].
///
/// # Errors
/// When the interface does not exist or the ioctl fails.
pub fn disable_tx_checksum_offload(interface: &str) -> Result<()> {
    const ETHTOOL_STXCSUM: u32 = 0x17;
    ethtool_set(interface, ETHTOOL_STXCSUM, 0)
}

/// One `SIOCETHTOOL` "set value" command (`struct ethtool_value`) on `interface`.
fn ethtool_set(interface: &str, cmd: u32, data: u32) -> Result<()> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: an all-zero ifreq is valid (a name of NULs and a zeroed union).
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = interface.as_bytes();
    if name.len() >= request.ifr_name.len() {
        bail!("interface name {interface} is too long");
    }
    for (dst, src) in request.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    request.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: socket() has no memory preconditions; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        bail!("socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `request` is a valid ifreq whose data points at `value`, both alive here.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL, &raw mut request) };
    let error = std::io::Error::last_os_error();
    // SAFETY: `fd` is the socket opened above.
    unsafe { libc::close(fd) };
    if rc != 0 {
        bail!("ethtool command {cmd:#x} on {interface}: {error}");
    }
    Ok(())
}
