//! `cargo xtask bench NAME`: builds the benchmark runner in release mode and runs one
//! benchmark, which prints its comparison table and writes `<target>/bench/NAME.json`.

use anyhow::{Result, bail};
use clap::Args;

use crate::{Workspace, shell};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The benchmark to run (`skiff-bench --help` lists them).
    name: String,
    /// Extra arguments for the benchmark.
    #[arg(last = true)]
    extra: Vec<String>,
}

pub fn run(workspace: &Workspace, args: &BenchArgs) -> Result<()> {
    if !shell::is_root() {
        bail!("benchmarks load eBPF programs and make network namespaces: run as root");
    }
    // Benchmarks run the workspace's binaries (skiff-control, ...) as processes.
    shell::run("cargo", &["build", "--release", "--workspace", "--bins"])?;
    let out_dir = workspace.target.join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let out = out_dir.join(format!("{}.json", args.name));
    let runner = workspace.binary("skiff-bench", true);
    let mut argv = vec![
        args.name.clone(),
        "--out".into(),
        out.to_string_lossy().into_owned(),
    ];
    argv.extend(args.extra.iter().cloned());
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    shell::run(&runner.to_string_lossy(), &argv)?;
    println!("figures written to {}", out.display());
    Ok(())
}
