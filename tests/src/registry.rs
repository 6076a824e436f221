//! A real OCI registry for pull tests: Debian's `docker-registry` on an address the test
//! picks (a node's host-side link), storing into a temporary directory, optionally behind
//! htpasswd Basic auth; and a small distribution-API push of an OCI archive into it.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use base64::Engine;
use serde_json::Value;

use crate::process::{ChildGuard, free_port, spawn_guarded};

/// A running registry (killed on drop, its storage removed).
#[derive(Debug)]
pub struct Registry {
    _child: ChildGuard,
    _dir: tempfile::TempDir,
    /// `ip:port`, as image names and `--plain-http-registry` write it.
    pub address: String,
    /// The user and password it requires, if any.
    pub credentials: Option<(String, String)>,
}

impl Registry {
    /// Starts a registry on `ip` (a free port), with Basic auth for `credentials`.
    ///
    /// # Errors
    /// When it cannot be configured or does not answer within the deadline.
    pub fn start(ip: Ipv4Addr, credentials: Option<(&str, &str)>) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let address = format!("{ip}:{}", free_port());
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
            dir.path().join("storage").display()
        );
        if let Some((user, password)) = credentials {
            // docker-registry's htpasswd takes bcrypt only; Python's crypt makes one.
            let hash = Command::new("python3")
                .args([
                    "-W",
                    "ignore",
                    "-c",
                    "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
                    password,
                ])
                .output()
                .context("hashing the registry password with python3")?;
            let hash = String::from_utf8(hash.stdout)?.trim().to_string();
            if !hash.starts_with("$2") {
                bail!("python3 made no bcrypt hash: {hash:?}");
            }
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n"))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let mut command = Command::new("docker-registry");
        command
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut child = spawn_guarded(command)
            .context("starting docker-registry (apt-get install docker-registry)")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&address).is_err() {
            if let Some(status) = child.exited() {
                let log =
                    std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
                bail!("docker-registry exited with {status}: {log}");
            }
            if Instant::now() > deadline {
                bail!("docker-registry did not listen on {address}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            _child: child,
            _dir: dir,
            address,
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
        })
    }

    fn authorization(&self) -> Option<String> {
        self.credentials.as_ref().map(|(user, password)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        })
    }

    /// Pushes the OCI archive at `archive` (one manifest) as `repository:tag`.
    ///
    /// # Errors
    /// When the archive cannot be read or the registry refuses.
    pub fn push_oci_archive(&self, archive: &Path, repository: &str, tag: &str) -> Result<()> {
        let mut files = std::collections::HashMap::new();
        let mut tar = tar::Archive::new(std::fs::File::open(archive)?);
        for entry in tar.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            files.insert(path, bytes);
        }
        let blob = |digest: &str| -> Result<Vec<u8>> {
            let path = format!("blobs/{}", digest.replace(':', "/"));
            files
                .get(&path)
                .cloned()
                .with_context(|| format!("{path} is not in the archive"))
        };
        let index: Value =
            serde_json::from_slice(files.get("index.json").context("no index.json")?)?;
        let manifest_digest = index["manifests"][0]["digest"]
            .as_str()
            .context("no manifest")?;
        let manifest_bytes = blob(manifest_digest)?;
        let manifest: Value = serde_json::from_slice(&manifest_bytes)?;
        let children = std::iter::once(&manifest["config"]["digest"])
            .chain(
                manifest["layers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| &l["digest"]),
            )
            .filter_map(Value::as_str);
        for digest in children {
            let (status, headers, _) = self.request(
                "POST",
                &format!("/v2/{repository}/blobs/uploads/"),
                &[],
                &[],
            )?;
            if status != 202 {
                bail!("starting an upload: HTTP {status}");
            }
            let location = header(&headers, "location").context("no upload location")?;
            let location = location
                .strip_prefix(&format!("http://{}", self.address))
                .unwrap_or(&location)
                .to_string();
            let separator = if location.contains('?') { '&' } else { '?' };
            let (status, _, body) = self.request(
                "PUT",
                &format!("{location}{separator}digest={digest}"),
                &[("Content-Type", "application/octet-stream")],
                &blob(digest)?,
            )?;
            if status != 201 {
                bail!(
                    "uploading {digest}: HTTP {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
        let (status, _, body) = self.request(
            "PUT",
            &format!("/v2/{repository}/manifests/{tag}"),
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            &manifest_bytes,
        )?;
        if status != 201 {
            bail!(
                "putting the manifest: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }

    /// One HTTP/1.1 request (`Connection: close`).
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        let mut stream = TcpStream::connect(&self.address)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.address,
            body.len()
        );
        if let Some(authorization) = self.authorization() {
            head.push_str(&format!("Authorization: {authorization}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no end of headers")?;
        let text = String::from_utf8_lossy(&response[..end]).into_owned();
        let mut lines = text.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .context("no status line")?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Ok((status, headers, response[end + 4..].to_vec()))
    }
}

/// An HTTP response: status, headers (names in lower case) and body.
type Response = (u16, Vec<(String, String)>, Vec<u8>);

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}
