//! `skiff-bench`: runs one benchmark, prints its comparison table, and writes its figures
//! as JSON. Started by `cargo xtask bench NAME`.

mod api;
mod controllers;
mod dataplane;
mod metrics;
mod pod_startup;
mod report;
mod scheduler;

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
    #[command(flatten)]
    dataplane: dataplane::Options,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Benchmark {
    /// The API server: creates per second, List at 10k pods, watch latency to 1000
    /// watchers, on the embedded store and on etcd.
    Api,
    /// The controllers on 100 hollow nodes: a 1000-replica Deployment created and bound,
    /// and pod-Ready-to-EndpointSlice latency (p50/p99).
    Controllers,
    /// The eBPF data plane against its peers.
    Dataplane,
    /// Container metrics with 100 containers on one node: the agent's CPU time per
    /// housekeeping pass, /metrics scrape latency, and the cgroup_skb program's per-packet
    /// cost (BPF_PROG_TEST_RUN).
    Metrics,
    /// Pod start-up on one node: create-to-Running latency of 30 pods and the agent's
    /// memory, with real containers.
    PodStartup,
    /// The scheduler: pods bound per second on 5000 hollow nodes, through the real API.
    Scheduler,
}

#[tokio::main]
async fn main() -> Result<()> {
    // The data-plane bench re-runs this binary as its load generator, inside a bench netns.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(dataplane::loadgen::LOADGEN_ARG) {
        return dataplane::loadgen::main(args.get(2).map_or("", String::as_str));
    }
    let cli = Cli::parse();
    let mut report = report::Report::default();
    match cli.name {
        Benchmark::Api => api::run(&mut report).await?,
        Benchmark::Controllers => controllers::run(&mut report).await?,
        Benchmark::Dataplane => dataplane::run(&mut report, &cli.dataplane)?,
        Benchmark::Metrics => metrics::run(&mut report).await?,
        Benchmark::PodStartup => pod_startup::run(&mut report).await?,
        Benchmark::Scheduler => scheduler::run(&mut report).await?,
    }
    report.print();
    report.write_json(&cli.out)?;
    Ok(())
}
