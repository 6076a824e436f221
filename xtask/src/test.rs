//! `cargo xtask test`: sets up the machine, builds everything once, and runs every test of
//! the workspace (unit, property and privileged end-to-end), in parallel where they can.

use anyhow::{Result, bail};
use clap::Args;

use crate::{
    Workspace, setup,
    shell::{self, step},
};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Skip `setup` (for a machine known to have everything).
    #[arg(long)]
    no_setup: bool,
    /// Extra arguments for the test runner, e.g. a filter.
    #[arg(last = true)]
    runner_args: Vec<String>,
}

pub fn run(workspace: &Workspace, args: &TestArgs) -> Result<()> {
    if !shell::is_root() {
        bail!(
            "the test suite includes privileged tests (eBPF, network namespaces, containerd): run `cargo xtask test` as root"
        );
    }
    if !args.no_setup {
        setup::run()?;
    }
    step("building the eBPF programs");
    workspace.build_ebpf()?;
    // End-to-end tests run the workspace's binaries as processes: build them all first.
    step("building every binary");
    shell::run("cargo", &["build", "--workspace", "--bins"])?;
    let extra: Vec<&str> = args.runner_args.iter().map(String::as_str).collect();
    if shell::succeeds("cargo", &["nextest", "--version"]) {
        step("running every test with cargo nextest");
        let mut cmd = vec!["nextest", "run", "--workspace", "--no-fail-fast"];
        cmd.extend(&extra);
        shell::run("cargo", &cmd)
    } else {
        step("running every test with cargo test (cargo-nextest is not installed)");
        let mut cmd = vec!["test", "--workspace", "--no-fail-fast"];
        cmd.extend(&extra);
        shell::run("cargo", &cmd)
    }
}
