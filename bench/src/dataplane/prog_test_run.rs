//! Nanoseconds per packet of the uplink XDP program through `BPF_PROG_TEST_RUN`, next to
//! an XDP program that only returns XDP_PASS (the floor): for a packet that is no service's
//! (lookup miss, passed) and for a NodePort packet of a tracked flow (conntrack hit, DNAT).
//! And the TC programs' cost per packet over whole NodePort connections (the SYN that
//! creates the flow, the segments that hit it, the replies reversed, the reset that ends
//! it): on real skbs, with the skb helpers, so each step's share of a connection shows.

use std::{collections::BTreeMap, net::Ipv4Addr};

use anyhow::{Context, Result, ensure};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};
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

/// The node address and NodePort the programs are run against.
const NODE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const NODE_PORT: u16 = 30080;
/// The service's backends: a pod on this node each.
const BACKENDS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 244, 9, 10), Ipv4Addr::new(10, 244, 9, 11)];
const TARGET_PORT: u16 = 8080;

pub fn run(report: &mut Report) -> Result<()> {
    let mut dataplane = service_plane(&BACKENDS)?;
    let ip = Ipv4::new(Ipv4Addr::new(192, 0, 2, 10), NODE, packets::IPPROTO_TCP);
    let frame = |port| {
        packets::ethernet(
            packets::ETH_P_IP,
            &ip.packet(&packets::tcp(&ip, 40000, port, packets::TCP_SYN, b"")),
        )
    };
    // Port 22 is no service's: lookup miss, passed. The NodePort: the first run creates the
    // conntrack entry, every later one hits it and DNATs.
    for (case, packet) in [
        ("xdp prog-test-run tcp syn, no service", frame(22)),
        (
            "xdp prog-test-run nodeport, conntrack hit",
            frame(NODE_PORT),
        ),
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
    tc_connections(report)
}

/// Connections whose packets the TC programs are run on, one packet per run.
const CONNECTIONS: u16 = 20_000;

/// The TC programs over `CONNECTIONS` NodePort connections to a one-backend service, each
/// packet in its own run (the mean of one run is what a real packet costs; repeating one
/// packet would hit the flow it created): SYN, the SYN-ACK reversed at egress, the ACK,
/// a request, its reply, and the client's reset, as the bench's load generator sends them.
fn tc_connections(report: &mut Report) -> Result<()> {
    let backend = BACKENDS[0];
    let mut dataplane = service_plane(&[backend])?;
    let client = Ipv4Addr::new(192, 0, 2, 10);
    let inbound = Ipv4::new(client, NODE, packets::IPPROTO_TCP);
    let outbound = Ipv4::new(backend, client, packets::IPPROTO_TCP);
    let request = |port, flags, payload: &[u8]| {
        packets::ethernet(
            packets::ETH_P_IP,
            &inbound.packet(&packets::tcp(&inbound, port, NODE_PORT, flags, payload)),
        )
    };
    let reply = |port, flags, payload: &[u8]| {
        packets::ethernet(
            packets::ETH_P_IP,
            &outbound.packet(&packets::tcp(&outbound, TARGET_PORT, port, flags, payload)),
        )
    };
    const ACK: u8 = packets::TCP_ACK;
    let message = [7u8; 32];
    let mut costs: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for n in 0..CONNECTIONS {
        let port = 10_000 + n;
        let steps: [(&str, bool, Vec<u8>); 6] = [
            ("syn, new flow", true, request(port, packets::TCP_SYN, b"")),
            (
                "syn-ack, reversed",
                false,
                reply(port, packets::TCP_SYN | ACK, b""),
            ),
            ("ack, tracked", true, request(port, ACK, b"")),
            ("request, tracked", true, request(port, ACK, &message)),
            ("reply, reversed", false, reply(port, ACK, &message)),
            (
                "rst, ends the flow",
                true,
                request(port, packets::TCP_RST | ACK, b""),
            ),
        ];
        for (step, ingress, frame) in steps {
            let program = if ingress {
                dataplane.uplink_ingress_program()?
            } else {
                dataplane.uplink_egress_program()?
            };
            costs
                .entry(step)
                .or_default()
                .push(one_run(program, &frame)?);
        }
    }
    // The floor of one run: the egress program on a frame that is not IPv4 returns at once.
    let arp = packets::ethernet(packets::ETH_P_ARP, &[0; 28]);
    let mut floor = Vec::new();
    for _ in 0..CONNECTIONS {
        floor.push(one_run(dataplane.uplink_egress_program()?, &arp)?);
    }
    report.add(
        "tc prog-test-run, a frame not ours (the floor)",
        SKIFF,
        "ns_per_packet",
        floor.iter().sum::<f64>() / floor.len() as f64,
        "ns",
    );
    let mut per_connection = 0.0;
    for (step, runs) in costs {
        let mean = runs.iter().sum::<f64>() / runs.len() as f64;
        per_connection += mean;
        report.add(
            &format!("tc prog-test-run nodeport {step}"),
            SKIFF,
            "ns_per_packet",
            mean,
            "ns",
        );
    }
    report.add(
        "tc prog-test-run nodeport, whole connection",
        SKIFF,
        "ns_per_connection",
        per_connection,
        "ns",
    );
    Ok(())
}

/// A data plane with one NodePort service on `NODE` over `backends`.
fn service_plane(backends: &[Ipv4Addr]) -> Result<Dataplane> {
    let sizes = MapSizes {
        maglev_table_size: 251,
        maglev_tables: 16,
        ..MapSizes::default()
    };
    let mut dataplane = Dataplane::load(&LoadOptions {
        pin_path: None,
        sizes,
        node_addr: Some(NODE),
    })
    .context("loading the data plane")?;
    let mut maps = KernelLbMaps::take(&mut dataplane, sizes.maglev_table_size)?;
    let mut sync = ServiceSync::adopt(&maps, Maglev::new(sizes.maglev_table_size, 1)?)?;
    let backends = backends
        .iter()
        .map(|addr| Backend::new(addr.octets(), TARGET_PORT, PROTO_TCP, BACKEND_LOCAL))
        .collect();
    let desired: BTreeMap<_, _> = [(
        ServiceKey::new(NODE.octets(), NODE_PORT, PROTO_TCP),
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
    drop(maps);
    Ok(dataplane)
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

/// One run of a TC program on `frame`, in nanoseconds.
fn one_run(program: &SchedClassifier, frame: &[u8]) -> Result<f64> {
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::new()
        })
        .context("BPF_PROG_TEST_RUN")?;
    Ok(result.duration.as_nanos() as f64)
}
