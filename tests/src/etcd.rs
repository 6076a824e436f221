//! A real etcd server (Debian's `etcd-server`) for one test: free loopback ports, a
//! temporary data directory, started within a deadline and killed on drop.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::process::{ChildGuard, free_port, spawn_guarded};

/// How long an etcd server may take to answer its health check.
const STARTUP: Duration = Duration::from_secs(30);

/// One single-member etcd cluster.
#[derive(Debug)]
pub struct EtcdServer {
    child: ChildGuard,
    client_url: String,
    // Dropped after the process is killed (fields drop in declaration order).
    dir: tempfile::TempDir,
}

/// The etcd binary: `$SKIFF_ETCD_BIN` or Debian's `/usr/bin/etcd`.
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("SKIFF_ETCD_BIN").map_or_else(|| PathBuf::from("/usr/bin/etcd"), PathBuf::from)
}

impl EtcdServer {
    /// Starts etcd and waits until it is healthy, retrying on other ports if the chosen
    /// ones were taken in between.
    ///
    /// # Errors
    /// When etcd is not installed or does not become healthy within the deadline.
    pub fn start() -> Result<Self> {
        let binary = etcd_binary();
        if !binary.exists() {
            bail!(
                "etcd is not installed at {} (Debian package etcd-server; or set SKIFF_ETCD_BIN)",
                binary.display()
            );
        }
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(&binary) {
                Ok(server) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .expect("at least one attempt")
            .context("etcd did not start"))
    }

    fn try_start(binary: &PathBuf) -> Result<Self> {
        let dir = tempfile::tempdir().context("temporary directory")?;
        let client_url = format!("http://127.0.0.1:{}", free_port());
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let mut command = Command::new(binary);
        command
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--initial-cluster-state=new")
            // Short raft timings: a fast election, and a minimum lease TTL of 1 s.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child =
            spawn_guarded(command).with_context(|| format!("spawn {}", binary.display()))?;
        let mut server = Self {
            child,
            client_url,
            dir,
        };
        server.wait_healthy()?;
        Ok(server)
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.exited() {
                bail!("etcd exited with {status}: {}", self.log());
            }
            if self.healthy() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("etcd was not healthy within {STARTUP:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// True when `GET /health` answers `"health":"true"`.
    pub fn healthy(&self) -> bool {
        let address = self.client_url.trim_start_matches("http://");
        let Ok(mut stream) = TcpStream::connect(address) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let request = format!("GET /health HTTP/1.0\r\nHost: {address}\r\n\r\n");
        let mut response = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut response).is_ok()
            && response.contains("\"health\":\"true\"")
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// etcd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}
