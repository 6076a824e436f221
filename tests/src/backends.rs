//! Stand-in service backends for data-plane tests: TCP and UDP servers bound to given
//! addresses inside a test network namespace, each answering `<own address> <client
//! address>`, so a client can tell which backend it reached and the backend's view of who
//! connected (preserved or SNATed). Stopped and joined on drop.

use std::{
    io::Write,
    net::{Ipv4Addr, TcpListener, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, Result};

use crate::netns::Netns;

/// Servers that reply with their own address.
#[derive(Debug)]
pub struct NameServers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl NameServers {
    /// Binds a TCP listener on `tcp_port` and a UDP socket on `udp_port` at each address
    /// (which must already be configured in `ns`).
    ///
    /// # Errors
    /// When the namespace cannot be entered or a socket cannot be bound.
    pub fn start(ns: &Netns, addresses: &[Ipv4Addr], tcp_port: u16, udp_port: u16) -> Result<Self> {
        let sockets = ns.run(|| {
            addresses
                .iter()
                .map(|ip| {
                    let tcp = TcpListener::bind((*ip, tcp_port))
                        .with_context(|| format!("binding TCP {ip}:{tcp_port}"))?;
                    let udp = UdpSocket::bind((*ip, udp_port))
                        .with_context(|| format!("binding UDP {ip}:{udp_port}"))?;
                    Ok((tcp, udp))
                })
                .collect::<Result<Vec<_>>>()
        })??;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (tcp, udp) in sockets {
            let name = tcp.local_addr()?.ip().to_string();
            tcp.set_nonblocking(true)?;
            let (stop_tcp, tcp_name) = (stop.clone(), name.clone());
            threads.push(std::thread::spawn(move || {
                while !stop_tcp.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut conn, peer)) => {
                            let reply = format!("{tcp_name} {}", peer.ip());
                            let _ = conn.write_all(reply.as_bytes());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            }));
            udp.set_read_timeout(Some(Duration::from_millis(20)))?;
            let stop_udp = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !stop_udp.load(Ordering::Relaxed) {
                    if let Ok((_, from)) = udp.recv_from(&mut buf) {
                        let reply = format!("{name} {}", from.ip());
                        let _ = udp.send_to(reply.as_bytes(), from);
                    }
                }
            }));
        }
        Ok(Self { stop, threads })
    }
}

impl Drop for NameServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.drain(..).for_each(|t| {
            let _ = t.join();
        });
    }
}

/// Runs `sock_probe` (built with the tests) as `cgroup`'s member in `ns` and returns its
/// lines: `ok <peer> <reply>` or `err <errno>` per attempt.
///
/// # Errors
/// When the probe cannot run or fails.
pub fn probe(
    cgroup: &crate::cgroup::TestCgroup,
    ns: &Netns,
    probe_binary: &str,
    mode: &str,
    target: &str,
    count: usize,
) -> Result<Vec<String>> {
    let mut command = std::process::Command::new(probe_binary);
    command.args([mode, target, &count.to_string()]);
    let output = cgroup.output_in(ns, &mut command)?;
    anyhow::ensure!(
        output.status.success(),
        "sock_probe failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}
