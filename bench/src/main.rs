//! `skiff-bench`: runs one benchmark, prints its comparison table, and writes its figures
//! as JSON. Started by `cargo xtask bench NAME`.

mod dataplane;
mod report;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "skiff-bench",
    about = "Skiff's benchmarks, side by side with their peers"
)]
struct Cli {
    /// Which benchmark to run.
    name: Benchmark,
    /// Where to write the figures as JSON.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Benchmark {
    /// The eBPF data plane against its peers.
    Dataplane,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut report = report::Report::default();
    match cli.name {
        Benchmark::Dataplane => dataplane::run(&mut report)?,
    }
    report.print();
    report.write_json(&cli.out)?;
    Ok(())
}
