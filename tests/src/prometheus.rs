//! A real Prometheus server (Debian's `prometheus` package) for tests: started on loopback
//! with a temporary configuration and storage directory, scraping the given targets every
//! second, stopped and removed on drop; and its HTTP query API.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::process::{ChildGuard, free_port, spawn_guarded};

/// A running Prometheus; killed (and its directory removed) when dropped.
#[derive(Debug)]
pub struct Prometheus {
    // Field order is drop order: the server stops before its directory goes.
    _child: ChildGuard,
    address: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on `127.0.0.1:<free port>` scraping `/metrics` of each
    /// `(job, address)` every second.
    ///
    /// # Errors
    /// When the binary is missing (install Debian's `prometheus`) or cannot start.
    pub fn start(jobs: &[(&str, SocketAddr)]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("skprom").tempdir()?;
        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
        for (job, address) in jobs {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{address}']\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child =
            spawn_guarded(command).context("starting prometheus (Debian package prometheus)")?;
        Ok(Self {
            _child: child,
            address,
            dir,
        })
    }

    /// Where its HTTP API listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The result vector of an instant query (`/api/v1/query`): `(labels, value)` pairs.
    ///
    /// # Errors
    /// When Prometheus does not answer or reports an error.
    pub fn query(&self, query: &str) -> Result<Vec<(Value, f64)>> {
        let body = http_get(
            self.address,
            &format!("/api/v1/query?query={}", percent_encode(query)),
        )?;
        let answer: Value = serde_json::from_str(&body).context("a JSON answer")?;
        if answer["status"] != "success" {
            bail!("query {query} failed: {answer}");
        }
        let results = answer["data"]["result"]
            .as_array()
            .context("a result vector")?;
        results
            .iter()
            .map(|r| {
                let value = r["value"][1]
                    .as_str()
                    .context("a sample value")?
                    .parse::<f64>()?;
                Ok((r["metric"].clone(), value))
            })
            .collect()
    }
}

/// `GET path` over plain HTTP/1.0; the body of a 200 answer.
///
/// # Errors
/// When the server does not answer 200 within a few seconds.
pub fn http_get(address: SocketAddr, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("an HTTP response without a body")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path} at {address} answered {head}\n{body}");
    }
    Ok(body.to_string())
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
