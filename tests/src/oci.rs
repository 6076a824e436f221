//! Builds OCI image archives from files on this machine (busybox-static and the project's
//! own binaries), since no image can be pulled here. `ctr images import` and the agent's
//! importer take the result.
//!
//! Shared with `xtask` (included by `#[path]`), which builds the demo image for `up`.

use std::{
    fs::File,
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde_json::json;
use sha2::{Digest, Sha256};

/// One file in the image's single layer.
#[derive(Clone, Debug)]
pub enum Entry {
    /// A regular file with the given mode, read from the host.
    HostFile {
        path: String,
        source: PathBuf,
        mode: u32,
    },
    /// A regular file with the given contents.
    Contents {
        path: String,
        bytes: Vec<u8>,
        mode: u32,
    },
    /// A symbolic link.
    Symlink { path: String, target: String },
    /// A directory.
    Dir { path: String },
}

/// An image to build: a name, one layer, and the config's entrypoint and command.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// Full reference, e.g. `skiff.local/demo:1.0`.
    pub name: String,
    pub entries: Vec<Entry>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub exposed_ports: Vec<String>,
}

/// Entries for busybox-static at `/bin/busybox` with a symlink for each of its applets.
///
/// # Errors
/// When `busybox` cannot be found or run.
pub fn busybox_entries(busybox: &Path) -> io::Result<Vec<Entry>> {
    let output = std::process::Command::new(busybox).arg("--list").output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{} --list failed",
            busybox.display()
        )));
    }
    let mut entries = vec![
        Entry::Dir { path: "bin".into() },
        Entry::Dir { path: "tmp".into() },
        Entry::HostFile {
            path: "bin/busybox".into(),
            source: busybox.to_path_buf(),
            mode: 0o755,
        },
    ];
    for applet in String::from_utf8_lossy(&output.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && applet != "busybox" {
            entries.push(Entry::Symlink {
                path: format!("bin/{applet}"),
                target: "busybox".into(),
            });
        }
    }
    Ok(entries)
}

/// Writes `spec` as an OCI image layout archive (a tar with `oci-layout`, `index.json` and
/// blobs) to `out`, and returns the manifest's digest.
///
/// # Errors
/// On I/O errors reading sources or writing the archive.
pub fn write_archive(spec: &ImageSpec, out: &Path) -> io::Result<String> {
    let layer = layer_tar(&spec.entries)?;
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": spec.entrypoint,
            "Cmd": spec.cmd,
            "Env": spec.env,
            "ExposedPorts": spec.exposed_ports.iter().map(|p| (p.clone(), json!({}))).collect::<serde_json::Map<_, _>>(),
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created_by": "skiff oci builder" }],
    }))?;
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))?;
    let manifest_digest = sha256(&manifest);
    let tag = spec.name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": spec.name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))?;

    let mut archive = tar::Builder::new(File::create(out)?);
    append(
        &mut archive,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    )?;
    append(&mut archive, "index.json", &index, 0o644)?;
    for (digest, bytes) in [
        (&layer_digest, &layer),
        (&config_digest, &config),
        (&manifest_digest, &manifest),
    ] {
        let hex = digest.trim_start_matches("sha256:");
        append(&mut archive, &format!("blobs/sha256/{hex}"), bytes, 0o644)?;
    }
    archive.into_inner()?.flush()?;
    Ok(manifest_digest)
}

/// Writes `spec` as a `docker save` archive (`manifest.json`, the config, one layer tar)
/// to `out`.
///
/// # Errors
/// On I/O errors reading sources or writing the archive.
pub fn write_docker_archive(spec: &ImageSpec, out: &Path) -> io::Result<()> {
    let layer = layer_tar(&spec.entries)?;
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": spec.entrypoint, "Cmd": spec.cmd, "Env": spec.env, "WorkingDir": "/"},
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))?;
    let config_hex = sha256(&config).trim_start_matches("sha256:").to_string();
    let layer_hex = layer_digest.trim_start_matches("sha256:").to_string();
    let manifest = serde_json::to_vec(&json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [spec.name],
        "Layers": [format!("{layer_hex}/layer.tar")],
    }]))?;
    let mut archive = tar::Builder::new(File::create(out)?);
    append(
        &mut archive,
        &format!("{layer_hex}/layer.tar"),
        &layer,
        0o644,
    )?;
    append(&mut archive, &format!("{config_hex}.json"), &config, 0o644)?;
    append(&mut archive, "manifest.json", &manifest, 0o644)?;
    archive.into_inner()?.flush()?;
    Ok(())
}

fn layer_tar(entries: &[Entry]) -> io::Result<Vec<u8>> {
    let mut layer = tar::Builder::new(Vec::new());
    for entry in entries {
        match entry {
            Entry::HostFile { path, source, mode } => {
                append(&mut layer, path, &std::fs::read(source)?, *mode)?;
            }
            Entry::Contents { path, bytes, mode } => append(&mut layer, path, bytes, *mode)?,
            Entry::Symlink { path, target } => {
                let mut header = header(tar::EntryType::Symlink, 0o777, 0);
                layer.append_link(&mut header, path, target)?;
            }
            Entry::Dir { path } => {
                let mut header = header(tar::EntryType::Directory, 0o755, 0);
                layer.append_data(&mut header, path, io::empty())?;
            }
        }
    }
    layer.into_inner()
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append<W: Write>(
    archive: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    mode: u32,
) -> io::Result<()> {
    let mut header = header(tar::EntryType::Regular, mode, bytes.len() as u64);
    archive.append_data(&mut header, path, bytes)
}

fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
