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

/// One member of an [`EtcdCluster`]: its process (absent while killed) and addresses.
#[derive(Debug)]
struct Member {
    name: String,
    child: Option<ChildGuard>,
    client_url: String,
    peer_url: String,
}

/// A multi-member etcd cluster on loopback (Debian's `etcd-server`), killed on drop.
/// Members can be killed and restarted one by one to test the control plane through a
/// member's loss, the leader's included.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members and waits until every one is healthy (has a leader).
    ///
    /// # Errors
    /// When etcd is not installed or the cluster is not healthy within the deadline.
    pub fn start(size: usize) -> Result<Self> {
        let binary = etcd_binary();
        if !binary.exists() {
            bail!(
                "etcd is not installed at {} (Debian package etcd-server; or set SKIFF_ETCD_BIN)",
                binary.display()
            );
        }
        // Another test may take a port between choosing and binding it: try fresh ones.
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(size) {
                Ok(cluster) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .expect("at least one attempt")
            .context("the etcd cluster did not start"))
    }

    fn try_start(size: usize) -> Result<Self> {
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("member-{i}"),
                child: None,
                client_url: format!("http://127.0.0.1:{}", free_port()),
                peer_url: format!("http://127.0.0.1:{}", free_port()),
            })
            .collect();
        let mut cluster = Self {
            members,
            dir: tempfile::tempdir().context("temporary directory")?,
        };
        for i in 0..size {
            cluster.spawn(i, "new")?;
        }
        let deadline = Instant::now() + STARTUP;
        while !(0..size).all(|i| cluster.member_healthy(i)) {
            if Instant::now() >= deadline {
                bail!(
                    "the etcd cluster was not healthy within {STARTUP:?}: {}",
                    cluster.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<()> {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let member = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", member.name)))?;
        let mut command = Command::new(etcd_binary());
        command
            .arg(format!("--name={}", member.name))
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join(&member.name).display()
            ))
            .arg(format!("--listen-client-urls={}", member.client_url))
            .arg(format!("--advertise-client-urls={}", member.client_url))
            .arg(format!("--listen-peer-urls={}", member.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", member.peer_url))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg(format!("--initial-cluster-state={state}"))
            .arg("--initial-cluster-token=skiff-test")
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            // etcd 3.5's default, off in Debian's 3.4: without it a member that rejoins
            // after a kill campaigns with a higher term and deposes a healthy leader, and
            // writes in flight fail with "leader changed".
            .arg("--pre-vote=true")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = spawn_guarded(command).context("spawn an etcd member")?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Every member's client URL (for `--etcd-servers`).
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// How many members the cluster has.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            child.kill();
        }
    }

    /// Starts a killed member `i` again on its data directory and waits until it serves.
    ///
    /// # Errors
    /// When it cannot be spawned or is not healthy (rejoined and caught up) within the
    /// startup deadline.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i);
        self.spawn(i, "existing")?;
        let deadline = Instant::now() + STARTUP;
        while !self.member_healthy(i) {
            if Instant::now() >= deadline {
                bail!(
                    "etcd member {i} was not healthy within {STARTUP:?} of its restart: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The index of the member that is the raft leader, as a live member reports it.
    pub fn leader(&self) -> Option<usize> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .find_map(|m| {
                let status = status(&m.client_url)?;
                let leader = status.get("leader")?.as_str()?.to_string();
                let me = status.get("header")?.get("member_id")?.as_str()?;
                (leader == me).then_some(())?;
                Some(m.name.clone())
            })
            .and_then(|name| self.members.iter().position(|m| m.name == name))
    }

    fn member_healthy(&self, i: usize) -> bool {
        let address = self.members[i].client_url.trim_start_matches("http://");
        http(address, "GET /health HTTP/1.0", "").is_some_and(|r| r.contains("\"health\":\"true\""))
    }

    /// Every member's log so far.
    pub fn log(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let path = self.dir.path().join(format!("{}.log", m.name));
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                format!(
                    "--- {} ---\n{}",
                    m.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The member's `/v3/maintenance/status` through etcd's JSON gateway.
fn status(client_url: &str) -> Option<serde_json::Value> {
    let address = client_url.trim_start_matches("http://");
    let response = http(address, "POST /v3/maintenance/status HTTP/1.0", "{}")?;
    let body = response.split("\r\n\r\n").nth(1)?;
    serde_json::from_str(body).ok()
}

/// One HTTP/1.0 request over a fresh connection; the whole response, or `None`.
fn http(address: &str, request_line: &str, body: &str) -> Option<String> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!(
        "{request_line}\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}
