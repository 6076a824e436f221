//! How the eBPF object is built: one definition shared by `cargo xtask build-ebpf` and the
//! agent's build script (which includes this file with `#[path]`), so both always build it
//! the same way, into the same place.

use std::{
    env,
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Command,
};

/// The Rust target the programs are built for.
pub const BPF_TARGET: &str = "bpfel-unknown-none";
/// The binary name of the `ebpf` crate, which is also the object's file name.
pub const OBJECT_NAME: &str = "skiff-ebpf";

/// Where the eBPF crate's own cargo target directory lives, under the workspace's one.
///
/// It is separate from the host build's directory so that a build script can build it
/// without waiting on the lock the outer cargo holds.
pub fn ebpf_target_dir(workspace_target: &Path) -> PathBuf {
    workspace_target.join("ebpf")
}

/// The path of the built object.
pub fn object_path(workspace_target: &Path) -> PathBuf {
    ebpf_target_dir(workspace_target)
        .join(BPF_TARGET)
        .join("release")
        .join(OBJECT_NAME)
}

/// Builds the `ebpf` crate at `workspace_root/ebpf` and returns the object's path.
///
/// `cargo` is the cargo binary to run. Environment that cargo gives build scripts and that
/// would leak host settings into the BPF build (rustflags, wrappers) is removed.
pub fn build(
    cargo: &OsStr,
    workspace_root: &Path,
    workspace_target: &Path,
) -> Result<PathBuf, String> {
    if which("bpf-linker").is_none() {
        return Err("bpf-linker is not installed; run `cargo xtask setup` \
                    (it builds bpf-linker against LLVM 22)"
            .to_string());
    }
    let rustflags = [
        "--cfg=bpf_target_arch=\"x86_64\"",
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
    ]
    .join("\x1f");
    let status = Command::new(cargo)
        .current_dir(workspace_root.join("ebpf"))
        .args([
            "build",
            "--release",
            "--target",
            BPF_TARGET,
            "-Z",
            "build-std=core",
        ])
        .arg("--target-dir")
        .arg(ebpf_target_dir(workspace_target))
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .map_err(|e| {
            format!(
                "running {} for the eBPF crate: {e}",
                Path::new(cargo).display()
            )
        })?;
    if !status.success() {
        return Err(format!("building the eBPF programs failed ({status})"));
    }
    let object = object_path(workspace_target);
    if !object.is_file() {
        return Err(format!(
            "the eBPF build succeeded but {} is missing",
            object.display()
        ));
    }
    Ok(object)
}

/// The first executable called `name` on `PATH` (or in `~/.cargo/bin`).
pub fn which(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}
