//! The bench's namespaces: a client, a node and a pod namespace in a line, made per case
//! and removed after it, and the echo backend that answers in the pod namespace.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, Result};
use skiff_tests::netns::{Netns, disable_tx_checksum_offload, veth_between};

use super::services::{POD_CIDR, SERVICE_CIDR, TARGET_PORT};

/// The node's address on the client's link: NodePorts are reached there.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
/// Bytes per request and per reply.
pub const MESSAGE: usize = 32;

/// client netns --veth-- node netns --veth-- pod netns. Every endpoint address is local in
/// the pod netns (a `local` route for the pod CIDR), so one listener serves all of them.
/// The service CIDR is local there too, with nothing on the service port: a connection no
/// data plane translated is refused at once.
#[derive(Debug)]
pub struct Topology {
    pub client: Netns,
    pub node: Netns,
    pub pod: Netns,
    /// The node's interface toward the client (its uplink).
    pub uplink: String,
    /// The node's interface toward the pod, and the pod's (the two ends of its veth).
    pub pod_link: (String, String),
}

impl Topology {
    /// Makes the namespaces, links, addresses and routes.
    ///
    /// # Errors
    /// When an `ip` or `sysctl` command fails.
    pub fn new() -> Result<Self> {
        let client = Netns::new("sbc")?;
        let node = Netns::new("sbn")?;
        let pod = Netns::new("sbp")?;
        let (client_if, uplink) = veth_between(&client, "10.78.0.1/24", &node, "10.78.0.2/24")?;
        let pod_link = veth_between(&node, "10.79.0.1/24", &pod, "10.79.0.2/24")?;
        // Frames from the client carry complete checksums, as from a real network.
        client.run(|| disable_tx_checksum_offload(&client_if))??;
        client.exec(&["ip", "route", "add", POD_CIDR, "via", "10.78.0.2"])?;
        for sysctl in [
            "net.ipv4.ip_local_port_range=10000 65000",
            "net.ipv4.tcp_tw_reuse=1",
        ] {
            client.exec(&["sysctl", "-qw", sysctl])?;
            node.exec(&["sysctl", "-qw", sysctl])?;
        }
        node.exec(&["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"])?;
        node.exec(&["ip", "route", "add", POD_CIDR, "via", "10.79.0.2"])?;
        node.exec(&["ip", "route", "add", SERVICE_CIDR, "via", "10.79.0.2"])?;
        pod.exec(&["ip", "route", "add", "default", "via", "10.79.0.1"])?;
        pod.exec(&["ip", "route", "add", "local", POD_CIDR, "dev", "lo"])?;
        pod.exec(&["ip", "route", "add", "local", SERVICE_CIDR, "dev", "lo"])?;
        Ok(Self {
            client,
            node,
            pod,
            uplink,
            pod_link,
        })
    }
}

/// The CPU the load generator's threads run on, and the echo server's: on a machine with
/// two or more CPUs, clients and servers are kept apart, each side pinned to one CPU, so
/// that every system's run sees the same placement instead of the scheduler's choice of
/// the moment (the largest source of run-to-run spread on a 2-core machine).
#[derive(Clone, Copy, Debug)]
pub enum Side {
    Client,
    Server,
}

/// Pins the calling thread (and the threads it starts afterwards) to `side`'s CPU; a no-op
/// on a single-CPU machine.
pub fn pin(side: Side) {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus < 2 {
        return;
    }
    let cpu = match side {
        Side::Client => 0,
        Side::Server => cpus - 1,
    };
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it; the call
    // reads `size_of` bytes of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        // Best effort: an affinity the machine refuses leaves the placement to the kernel.
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set);
    }
}

/// A TCP echo server on every endpoint address (port 8080 of the pod netns): each thread
/// accepts a connection and echoes fixed-size messages until the client closes.
#[derive(Debug)]
pub struct EchoServer {
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServer {
    /// Binds in `ns` and starts `threads` accepting threads.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start(ns: &Netns, threads: usize) -> Result<Self> {
        let listener = ns
            .run(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, TARGET_PORT)))?
            .context("binding the echo server")?;
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let listener = listener.try_clone()?;
                let stop = stop.clone();
                Ok(std::thread::spawn(move || serve(&listener, &stop)))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            listener,
            stop,
            threads,
        })
    }
}

fn serve(listener: &TcpListener, stop: &AtomicBool) {
    pin(Side::Server);
    let mut buf = [0u8; MESSAGE];
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut conn, _)) = listener.accept() else {
            continue;
        };
        let _ = conn.set_nodelay(true);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        while conn.read_exact(&mut buf).is_ok() {
            if conn.write_all(&buf).is_err() {
                break;
            }
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Shutting a listening socket down wakes every thread blocked in accept.
        // SAFETY: the descriptor is the listener's, open until `self` is dropped.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
