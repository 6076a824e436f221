//! The data-plane benchmark: Skiff's XDP programs measured beside their peers.
//!
//! Today it measures, through `BPF_PROG_TEST_RUN`, the nanoseconds per packet of the uplink
//! XDP program next to an XDP program that only returns XDP_PASS (the floor). The
//! service-level comparisons with kube-proxy's iptables and nftables shapes join it with
//! the service load balancer.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use skiff_agent::dataplane::{Dataplane, LoadOptions};
use skiff_tests::packets::{self, Ipv4};

use crate::report::{Report, SKIFF, median};

/// Runs per `BPF_PROG_TEST_RUN` call; the kernel reports the mean time per run.
const REPEAT: u32 = 1_000_000;
/// Calls per program; the median is reported.
const ROUNDS: usize = 7;

pub fn run(report: &mut Report) -> Result<()> {
    let mut dataplane =
        Dataplane::load(&LoadOptions::default()).context("loading the data plane")?;
    let ip = Ipv4::new(
        Ipv4Addr::new(192, 0, 2, 10),
        Ipv4Addr::new(198, 51, 100, 20),
        packets::IPPROTO_TCP,
    );
    let syn = packets::ethernet(
        packets::ETH_P_IP,
        &ip.packet(&packets::tcp(&ip, 40000, 30080, packets::TCP_SYN, b"")),
    );
    let case = "xdp prog-test-run tcp syn";
    // Interleave the two programs so that noise on this shared machine hits both alike.
    let mut uplink = Vec::new();
    let mut pass = Vec::new();
    for _ in 0..ROUNDS {
        uplink.push(ns_per_packet(dataplane.uplink_program()?, &syn)?);
        pass.push(ns_per_packet(dataplane.pass_program()?, &syn)?);
    }
    report.add(case, SKIFF, "ns_per_packet", median(uplink), "ns");
    report.add(case, "xdp-pass", "ns_per_packet", median(pass), "ns");
    Ok(())
}

fn ns_per_packet(program: &Xdp, frame: &[u8]) -> Result<f64> {
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: REPEAT,
            ..TestRunOptions::new()
        })
        .context("BPF_PROG_TEST_RUN")?;
    Ok(result.duration.as_nanos() as f64)
}
