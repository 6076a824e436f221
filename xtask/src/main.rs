//! Skiff's developer commands, run as `cargo xtask <command>`: install the system pieces,
//! build the eBPF programs, start and stop a local cluster, run every test, run benchmarks.

mod bench;
mod cluster;
mod ebpf_build;
// Shared with the tests, which also build docker-save archives xtask has no use for.
#[allow(dead_code)]
#[path = "../../tests/src/oci.rs"]
mod oci;
mod setup;
mod shell;
mod test;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Skiff's developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install, only where missing, every system piece Skiff needs on Debian (as root).
    Setup,
    /// Build the eBPF programs into the object the agent embeds.
    BuildEbpf,
    /// Start a local cluster: containerd, skiff-control, and one skiff-agent per node, each
    /// node in a network namespace of its own.
    Up(cluster::UpArgs),
    /// Stop what `up` started; keep the cluster's data unless `--purge`.
    Down(cluster::DownArgs),
    /// Build everything and run every test, unit and privileged end-to-end alike.
    Test(test::TestArgs),
    /// Run a benchmark and write its figures to `<target>/bench/<name>.json`.
    Bench(bench::BenchArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let workspace = Workspace::locate()?;
    match cli.command {
        Command::Setup => setup::run(),
        Command::BuildEbpf => {
            let object = workspace.build_ebpf()?;
            println!("eBPF object: {}", object.display());
            Ok(())
        }
        Command::Up(args) => cluster::up(&workspace, &args),
        Command::Down(args) => cluster::down(&args),
        Command::Test(args) => test::run(&workspace, &args),
        Command::Bench(args) => bench::run(&workspace, &args),
    }
}

/// Where the workspace and its cargo target directory are.
#[derive(Debug)]
pub struct Workspace {
    pub root: PathBuf,
    pub target: PathBuf,
}

impl Workspace {
    fn locate() -> Result<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask sits in the workspace")?
            .to_path_buf();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        };
        Ok(Self { root, target })
    }

    /// Builds the eBPF object and returns its path.
    pub fn build_ebpf(&self) -> Result<PathBuf> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        ebpf_build::build(&cargo, &self.root, &self.target).map_err(anyhow::Error::msg)
    }

    /// A binary of the default (dev) profile.
    pub fn binary(&self, name: &str, release: bool) -> PathBuf {
        self.target
            .join(if release { "release" } else { "debug" })
            .join(name)
    }
}
