//! Nanoseconds per packet of the uplink XDP program through `BPF_PROG_TEST_RUN`, next to
//! an XDP program that only returns XDP_PASS (the floor): for a packet that is no service's
//! (lookup miss, passed) and for a NodePort packet of a tracked flow (conntrack hit, DNAT).

use std::{collections::BTreeMap, net::Ipv4Addr};

use anyhow::{Context, Result, ensure};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use skiff_agent::dataplane::{
    Dataplane, LoadOptions, MapSizes,
    lb_maps::KernelLbMaps,
    maglev::Maglev,
    services::{DesiredService, ServiceSync},
};
use skiff_ebpf_common::{
    Backend, ServiceKey,
    service::{BACKEND_LOCAL, PROTO_TCP, SERVICE_EXTERNAL},
};
use skiff_tests::packets::{self, Ipv4};

use crate::report::{Report, SKIFF, median};

/// Runs per `BPF_PROG_TEST_RUN` call; the kernel reports the mean time per run.
const REPEAT: u32 = 1_000_000;
/// Calls per program; the median is reported.
const ROUNDS: usize = 7;

pub fn run(report: &mut Report) -> Result<()> {
    let node = Ipv4Addr::new(198, 51, 100, 20);
    let sizes = MapSizes {
        maglev_table_size: 251,
        maglev_tables: 16,
        ..MapSizes::default()
    };
    let mut dataplane = Dataplane::load(&LoadOptions {
        pin_path: None,
        sizes,
        node_addr: Some(node),
    })
    .context("loading the data plane")?;
    let mut maps = KernelLbMaps::take(&mut dataplane, sizes.maglev_table_size)?;
    let mut sync = ServiceSync::adopt(&maps, Maglev::new(sizes.maglev_table_size, 1)?)?;
    let backends = (10..12)
        .map(|i| Backend::new([10, 244, 9, i], 8080, PROTO_TCP, BACKEND_LOCAL))
        .collect();
    let desired: BTreeMap<_, _> = [(
        ServiceKey::new(node.octets(), 30080, PROTO_TCP),
        DesiredService {
            backends,
            flags: SERVICE_EXTERNAL,
            affinity_timeout_secs: 0,
        },
    )]
    .into_iter()
    .collect();
    let (_, errors) = sync.apply(&mut maps, &desired);
    ensure!(
        errors.is_empty(),
        "writing the benchmark's service: {errors:?}"
    );

    let ip = Ipv4::new(Ipv4Addr::new(192, 0, 2, 10), node, packets::IPPROTO_TCP);
    let frame = |port| {
        packets::ethernet(
            packets::ETH_P_IP,
            &ip.packet(&packets::tcp(&ip, 40000, port, packets::TCP_SYN, b"")),
        )
    };
    // Port 22 is no service's: lookup miss, passed. Port 30080 is a NodePort: the first run
    // creates the conntrack entry, every later one hits it and DNATs.
    for (case, packet) in [
        ("xdp prog-test-run tcp syn, no service", frame(22)),
        ("xdp prog-test-run nodeport, conntrack hit", frame(30080)),
    ] {
        // Interleave the two programs so that noise on this shared machine hits both alike.
        let mut uplink = Vec::new();
        let mut pass = Vec::new();
        for _ in 0..ROUNDS {
            uplink.push(ns_per_packet(dataplane.uplink_program()?, &packet)?);
            pass.push(ns_per_packet(dataplane.pass_program()?, &packet)?);
        }
        report.add(case, SKIFF, "ns_per_packet", median(uplink), "ns");
        report.add(case, "xdp-pass", "ns_per_packet", median(pass), "ns");
    }
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
