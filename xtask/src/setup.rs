//! `cargo xtask setup`: installs, idempotently and only what is missing, the system pieces
//! Skiff needs on a fresh Debian 12 machine, then the Rust-side tools (rust-src for the
//! eBPF build, bpf-linker built against LLVM 22).

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::{
    ebpf_build::which,
    shell::{self, step},
};

/// Debian packages and why each is needed.
const PACKAGES: &[(&str, &str)] = &[
    ("containerd", "the container runtime the agent drives"),
    ("runc", "the OCI runtime under containerd"),
    (
        "etcd-server",
        "the distributed store backend, and its tests",
    ),
    (
        "protobuf-compiler",
        "protoc, for the gRPC code of the API, containerd and etcd",
    ),
    (
        "libprotobuf-dev",
        "protobuf's well-known types (google/protobuf/*.proto), which etcd's protos import",
    ),
    ("llvm-22-dev", "LLVM 22, which bpf-linker links against"),
    (
        "libpolly-22-dev",
        "LLVM 22's Polly libraries, linked by bpf-linker",
    ),
    ("clang-22", "the C toolchain of LLVM 22"),
    ("libzstd-dev", "a library bpf-linker's LLVM links against"),
    ("zlib1g-dev", "a library bpf-linker's LLVM links against"),
    (
        "iproute2",
        "network namespaces and veth links for nodes and tests",
    ),
    ("iputils-ping", "ping, used by the network tests"),
    (
        "iptables",
        "the kube-proxy iptables shape the data-plane benchmark compares with",
    ),
    (
        "nftables",
        "the kube-proxy nftables shape the data-plane benchmark compares with",
    ),
    (
        "busybox-static",
        "the base of the images tests and `up` build themselves",
    ),
    ("bpftool", "inspecting loaded programs and maps"),
    (
        "prometheus",
        "the real Prometheus the metrics test scrapes with",
    ),
    (
        "docker-registry",
        "the real OCI registry the image pull test pulls from",
    ),
    (
        "python3",
        "bcrypt for the test registry's htpasswd (its crypt module)",
    ),
    (
        "bsdutils",
        "script(1), which gives `skiffctl exec -t` a terminal in tests",
    ),
];

/// Installs whatever is missing. Safe to run any number of times.
///
/// # Errors
/// When something is missing and cannot be installed; the message names it.
pub fn run() -> Result<()> {
    install_packages()?;
    mount_bpffs()?;
    install_rust_src()?;
    install_bpf_linker()?;
    step("setup complete");
    Ok(())
}

fn installed(package: &str) -> bool {
    shell::output("dpkg-query", &["-W", "-f=${Status}", package])
        .is_ok_and(|status| status.contains("install ok installed"))
}

fn install_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        step("system packages: all present");
        return Ok(());
    }
    let why: Vec<String> = PACKAGES
        .iter()
        .filter(|(p, _)| missing.contains(p))
        .map(|(p, w)| format!("  {p}: {w}"))
        .collect();
    if !shell::is_root() {
        bail!(
            "missing Debian packages (run `cargo xtask setup` as root, or install them):\n{}\n\
             apt-get install {}",
            why.join("\n"),
            missing.join(" ")
        );
    }
    step(format!("installing: {}", missing.join(" ")));
    shell::run("apt-get", &["update", "-q"]).context("apt-get update")?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    std::process::Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("starting apt-get")?
        .success()
        .then_some(())
        .with_context(|| {
            format!(
                "apt-get could not install: {}\n{}",
                missing.join(" "),
                why.join("\n")
            )
        })
}

fn mount_bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("bpf"))
    {
        return Ok(());
    }
    step("mounting bpffs at /sys/fs/bpf (pinned maps live there)");
    shell::run("mount", &["-t", "bpf", "bpf", "/sys/fs/bpf"])
}

fn install_rust_src() -> Result<()> {
    let sysroot = shell::output("rustc", &["--print", "sysroot"])?;
    if Path::new(sysroot.trim())
        .join("lib/rustlib/src/rust/library/core")
        .is_dir()
    {
        return Ok(());
    }
    step("rustup component add rust-src (for -Z build-std=core)");
    shell::run("rustup", &["component", "add", "rust-src"])
        .context("the eBPF build needs the rust-src component")
}

fn install_bpf_linker() -> Result<()> {
    if which("bpf-linker").is_some() {
        return Ok(());
    }
    step("cargo install bpf-linker (against LLVM 22; a few minutes)");
    let status = std::process::Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
        .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22")
        .status()
        .context("starting cargo install")?;
    if !status.success() {
        bail!("cargo install bpf-linker failed; it needs llvm-22-dev (from bookworm-security)");
    }
    Ok(())
}
