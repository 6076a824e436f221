//! A real `skiff-control` for end-to-end tests, on the embedded store or on a test etcd,
//! with its data directory, port and the administrator's client config.

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use skiff_api::client::{Client, ClientConfig};

use crate::{
    etcd::EtcdServer,
    process::{ChildGuard, free_port, spawn_guarded, workspace_binary},
};

const STARTUP: Duration = Duration::from_secs(30);

/// Which store the control plane runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Etcd,
}

/// A running `skiff-control` (killed on drop), and the etcd under it if any.
#[derive(Debug)]
pub struct ControlPlane {
    child: Option<ChildGuard>,
    port: u16,
    metrics_port: u16,
    data: tempfile::TempDir,
    etcd: Option<EtcdServer>,
    /// More addresses to listen on besides loopback (e.g. a host link to node namespaces).
    extra_addresses: Vec<std::net::Ipv4Addr>,
    /// etcd client URLs of a cluster the test owns (instead of `etcd`).
    etcd_urls: Vec<String>,
    /// More `skiff-control` flags (e.g. `--node-monitor-grace-period=3s`).
    extra_args: Vec<String>,
}

impl ControlPlane {
    /// Starts a control plane on `backend` and waits until it serves.
    ///
    /// # Errors
    /// When etcd or the control plane does not start within the deadline.
    pub fn start(backend: Backend) -> Result<Self> {
        Self::start_listening(backend, &[])
    }

    /// Like [`ControlPlane::start`], also listening on `addresses` (same port).
    ///
    /// # Errors
    /// As [`ControlPlane::start`].
    pub fn start_listening(backend: Backend, addresses: &[std::net::Ipv4Addr]) -> Result<Self> {
        Self::start_with(backend, addresses, &[])
    }

    /// Like [`ControlPlane::start`], with more `skiff-control` flags (kept on restarts).
    ///
    /// # Errors
    /// As [`ControlPlane::start`].
    pub fn start_with_args(backend: Backend, args: &[&str]) -> Result<Self> {
        Self::start_with(backend, &[], args)
    }

    fn start_with(
        backend: Backend,
        addresses: &[std::net::Ipv4Addr],
        args: &[&str],
    ) -> Result<Self> {
        let etcd = match backend {
            Backend::Embedded => None,
            Backend::Etcd => Some(EtcdServer::start()?),
        };
        let mut control = Self {
            child: None,
            port: free_port(),
            metrics_port: free_port(),
            data: tempfile::tempdir()?,
            etcd,
            extra_addresses: addresses.to_vec(),
            etcd_urls: Vec::new(),
            extra_args: args.iter().map(|a| (*a).to_string()).collect(),
        };
        control.spawn()?;
        Ok(control)
    }

    /// Starts a control plane on an etcd cluster the caller owns, with more flags. With a
    /// `peer`, it joins that instance's cluster: it gets a copy of the peer's CA and
    /// tokens, so both serve one cluster (as two k3s servers share their token).
    ///
    /// # Errors
    /// As [`ControlPlane::start`], or when the peer's PKI cannot be copied.
    pub fn start_on_etcd(
        etcd_urls: &[String],
        peer: Option<&ControlPlane>,
        args: &[&str],
    ) -> Result<Self> {
        let data = tempfile::tempdir()?;
        if let Some(peer) = peer {
            for (dir, files) in [
                ("pki", &["ca.crt", "ca.key"][..]),
                (
                    "auth",
                    &["admin.token", "bootstrap.token", "node.secret"][..],
                ),
            ] {
                std::fs::create_dir_all(data.path().join(dir))?;
                for file in files {
                    let from = peer.data_dir().join(dir).join(file);
                    std::fs::copy(&from, data.path().join(dir).join(file))
                        .with_context(|| format!("copying {}", from.display()))?;
                }
            }
        }
        let mut control = Self {
            child: None,
            port: free_port(),
            metrics_port: free_port(),
            data,
            etcd: None,
            extra_addresses: Vec::new(),
            etcd_urls: etcd_urls.to_vec(),
            extra_args: args.iter().map(|a| (*a).to_string()).collect(),
        };
        control.spawn()?;
        Ok(control)
    }

    /// True while the process runs (false once killed or exited).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.exited().is_none())
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut command = Command::new(workspace_binary("skiff-control"));
        command
            .arg("--data-dir")
            .arg(self.data.path())
            .arg("--listen")
            .arg(
                std::iter::once(std::net::Ipv4Addr::LOCALHOST)
                    .chain(self.extra_addresses.iter().copied())
                    .map(|ip| format!("{ip}:{}", self.port))
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .args(&self.extra_args)
            .env("RUST_LIB_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(etcd) = &self.etcd {
            command.arg("--etcd-servers").arg(etcd.client_url());
        } else if !self.etcd_urls.is_empty() {
            command.arg("--etcd-servers").arg(self.etcd_urls.join(","));
        }
        command
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{}", self.metrics_port));
        let mut child = spawn_guarded(command).context("spawn skiff-control")?;
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err()
            || !self.admin_config_path().exists()
        {
            if let Some(status) = child.exited() {
                bail!("skiff-control exited with {status}: {}", self.log());
            }
            if Instant::now() >= deadline {
                bail!(
                    "skiff-control did not listen within {STARTUP:?}: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILLs the control plane (no shutdown of any kind).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Starts the control plane again on the same data directory, port and store.
    ///
    /// # Errors
    /// As [`ControlPlane::start`].
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        self.spawn()
    }

    /// The administrator's client config the control plane wrote.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn admin_config(&self) -> Result<ClientConfig> {
        Ok(ClientConfig::load(&self.admin_config_path())?)
    }

    pub fn admin_config_path(&self) -> PathBuf {
        self.data.path().join("admin.yaml")
    }

    /// A client with the administrator's token.
    ///
    /// # Errors
    /// When the config cannot be read.
    pub fn admin_client(&self) -> Result<Client> {
        Ok(Client::new(&self.admin_config()?)?)
    }

    /// A client with `token` instead of the administrator's (empty: no token at all).
    ///
    /// # Errors
    /// When the config cannot be read.
    pub fn client_with_token(&self, token: &str) -> Result<Client> {
        let mut config = self.admin_config()?;
        config.token = token.to_string();
        Ok(Client::new(&config)?)
    }

    /// The token of service account `default` in namespace `default`, once the service
    /// account controller has written its Secret; `None` before.
    pub async fn default_service_account_token(client: &Client) -> Option<String> {
        let secrets = client
            .list("secrets", "default", &Default::default())
            .await
            .ok()?;
        let secret = secrets.items.iter().find(|s| {
            s["type"] == "kubernetes.io/service-account-token"
                && s["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "default"
        })?;
        let bytes: skiff_api::k8s_openapi::ByteString =
            serde_json::from_value(secret["data"]["token"].clone()).ok()?;
        String::from_utf8(bytes.0).ok()
    }

    /// The API server's URL at `address` (one it listens on).
    pub fn url_at(&self, address: std::net::Ipv4Addr) -> String {
        format!("https://{address}:{}", self.port)
    }

    /// The API server's loopback address.
    pub fn address(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Where the control plane serves `/metrics` (plain HTTP on loopback).
    pub fn metrics_address(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.metrics_port))
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    fn log_path(&self) -> PathBuf {
        self.data.path().join("control.log")
    }

    /// The control plane's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}
