//! The data-plane benchmark: Skiff beside direct-to-pod traffic and kube-proxy's iptables
//! and nftables rule shapes, at 1, 1,000 and 10,000 services, in bench-made namespaces.

mod kube_proxy;
pub mod loadgen;
mod prog_test_run;
mod services;
mod topology;

use std::{
    collections::BTreeMap,
    net::SocketAddrV4,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, ensure};
use skiff_agent::dataplane::{
    Dataplane, LoadOptions, MapSizes, UplinkHook,
    endpoints::LocalEndpoints,
    lb_maps::KernelLbMaps,
    maglev::Maglev,
    services::{DesiredService, ServiceSync},
};
use skiff_ebpf_common::{
    Backend, LocalEndpoint, ServiceKey,
    service::{BACKEND_LOCAL, PROTO_TCP, SERVICE_EXTERNAL},
};
use skiff_tests::cgroup::{TestCgroup, UNIFIED, require_cgroup2};

use crate::report::{Report, SKIFF, median};
use loadgen::{Mode, Outcome, Spec};
use services::{SERVICE_PORT, Service};
use topology::{EchoServer, NODE_IP, Topology};

/// Service counts measured by default.
const COUNTS: [usize; 3] = [1, 1_000, 10_000];
/// Client threads of the load generator.
const THREADS: usize = 4;
/// How long each load case runs, per round: short rounds, many of them, so that Skiff and
/// direct alternate often enough for the machine's slow phases to hit both alike.
const CASE_MS: u64 = 600;
/// Rounds of every load case by default; the median is reported.
const ROUNDS: usize = 15;
/// Services a load spreads its connections over (evenly over the set).
const TARGETS: usize = 64;
/// Maglev table size for the bench's services (two endpoints each).
const TABLE_SIZE: u32 = 251;

/// What to measure; by default everything the issue asks for. Narrower runs (one case, two
/// systems, one service count) serve A/B comparisons of one change to the data plane.
#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Load cases to run (repeatable; default all).
    #[arg(long = "case", value_enum)]
    cases: Vec<LoadCase>,
    /// Systems the load cases run on (repeatable; default direct, iptables, nftables and
    /// skiff). Skiff's ratios need direct among them; one system alone serves profiling.
    #[arg(long = "system", value_enum)]
    systems: Vec<System>,
    /// Service counts (repeatable; default 1, 1000 and 10000).
    #[arg(long = "services")]
    counts: Vec<usize>,
    /// Rounds of every load case.
    #[arg(long, default_value_t = ROUNDS)]
    rounds: usize,
    /// Parts of the benchmark to run (repeatable; default all).
    #[arg(long = "part", value_enum)]
    parts: Vec<Part>,
}

/// The benchmark's parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// BPF_PROG_TEST_RUN of the uplink programs.
    TestRun,
    /// Request and connection rates on every system.
    Loads,
    /// A new service's first reply with the largest service count present.
    Update,
}

impl Options {
    fn cases(&self) -> Vec<LoadCase> {
        or_default(&self.cases, &LoadCase::ALL)
    }

    fn systems(&self) -> Vec<System> {
        or_default(&self.systems, &LOAD_SYSTEMS)
    }

    fn counts(&self) -> Vec<usize> {
        or_default(&self.counts, &COUNTS)
    }

    fn runs(&self, part: Part) -> bool {
        self.parts.is_empty() || self.parts.contains(&part)
    }
}

fn or_default<T: Clone>(chosen: &[T], default: &[T]) -> Vec<T> {
    if chosen.is_empty() { default } else { chosen }.to_vec()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum System {
    /// Straight to the pod IP: no load balancing at all.
    Direct,
    Iptables,
    Nftables,
    /// kube-proxy's nftables mode sending only the changed service (update latency only).
    NftablesDelta,
    Skiff,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Iptables => "iptables",
            Self::Nftables => "nftables",
            Self::NftablesDelta => "nftables-delta",
            Self::Skiff => SKIFF,
        }
    }
}

pub fn run(report: &mut Report, options: &Options) -> Result<()> {
    require_cgroup2(std::path::Path::new(UNIFIED))?;
    let restore = kube_proxy::iptables_restore();
    println!("kube-proxy's iptables shape is loaded with {restore}; nftables with nft -f");
    if options.runs(Part::TestRun) {
        prog_test_run::run(report)?;
    }
    let counts = options.counts();
    for &count in counts.iter().filter(|_| options.runs(Part::Loads)) {
        let set = services::services(count);
        let started = Instant::now();
        measure_loads(report, &set, restore, options)
            .with_context(|| format!("the load cases at {count} services"))?;
        eprintln!(
            "measured the load cases at {count} services in {:.1?}",
            started.elapsed()
        );
    }
    if !options.runs(Part::Update) {
        return Ok(());
    }
    let others = counts.iter().copied().max().unwrap_or(COUNTS[2]);
    for system in [
        System::Iptables,
        System::Nftables,
        System::NftablesDelta,
        System::Skiff,
    ] {
        // A failed update case leaves its rows out; the load figures are still printed.
        if let Err(error) = measure_update(report, system, others, restore) {
            eprintln!("warning: update latency of {}: {error:#}", system.name());
        }
    }
    Ok(())
}

/// One topology with `system` programmed for `set` (and the echo server running).
struct Programmed {
    // Dropped in this order: the data plane before the namespaces it is attached in.
    skiff: Option<SkiffPlane>,
    _server: EchoServer,
    topo: Topology,
}

impl Programmed {
    fn new(system: System, set: &[Service], capacity: usize, restore: &str) -> Result<Self> {
        let topo = Topology::new()?;
        let server = EchoServer::start(&topo.pod, 2 * THREADS + 2)?;
        let mut skiff = None;
        match system {
            System::Direct => {}
            System::Iptables => {
                kube_proxy::load_in(&topo.node, &[restore], &kube_proxy::iptables_rules(set))?;
            }
            System::Nftables | System::NftablesDelta => {
                kube_proxy::load_in(&topo.node, &["nft", "-f", "-"], &kube_proxy::nft_rules(set))?;
            }
            System::Skiff => skiff = Some(SkiffPlane::new(&topo, set, capacity)?),
        }
        Ok(Self {
            skiff,
            _server: server,
            topo,
        })
    }

    fn cgroup(&self) -> Option<&std::path::Path> {
        self.skiff.as_ref().map(|s| s.cgroup.path())
    }
}

/// The systems every load case runs on by default.
const LOAD_SYSTEMS: [System; 4] = [
    System::Direct,
    System::Iptables,
    System::Nftables,
    System::Skiff,
];

/// The metric of Skiff's rate over direct's, the median of the rounds' ratios.
const PAIRED_RATIO: &str = "per_round_skiff/direct";

/// Every load case on every system, `rounds` times: in each round every case runs on the
/// systems back to back (all programmed side by side), their order rotating each round, so
/// that a burst of noise on the shared machine lands on one round of one system, and the
/// median of the rounds is reported.
fn measure_loads(
    report: &mut Report,
    set: &[Service],
    restore: &str,
    options: &Options,
) -> Result<()> {
    let programmed: Vec<(System, Programmed)> = options
        .systems()
        .iter()
        .map(|&system| {
            Programmed::new(system, set, set.len(), restore)
                .with_context(|| format!("programming {}", system.name()))
                .map(|p| (system, p))
        })
        .collect::<Result<_>>()?;
    let mut samples: BTreeMap<(String, &'static str, &'static str), Vec<Outcome>> = BTreeMap::new();
    for round in 0..options.rounds {
        for case in options.cases() {
            for k in 0..programmed.len() {
                let (system, programmed) = &programmed[(round + k) % programmed.len()];
                let outcome = run_case(programmed, *system, set, case).with_context(|| {
                    format!("{} of {} in round {round}", case.label(), system.name())
                })?;
                samples
                    .entry((
                        format!("{}, {} svc", case.label(), set.len()),
                        system.name(),
                        case.rate(),
                    ))
                    .or_default()
                    .push(outcome);
            }
        }
    }
    for (system, programmed) in &programmed {
        if let Some(skiff) = &programmed.skiff {
            let events = skiff.dataplane.lb_stats()?;
            let shown: Vec<String> = events
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(event, n)| format!("{}={n}", event.name()))
                .collect();
            eprintln!(
                "{} load-balancing events: {}",
                system.name(),
                shown.join(" ")
            );
        }
    }
    // Skiff against direct round by round: the two ran seconds apart, so a slow phase of
    // the machine weighs on both sides of each ratio.
    for ((case, system, rate), skiff) in &samples {
        if *system != SKIFF {
            continue;
        }
        let Some(direct) = samples.get(&(case.clone(), System::Direct.name(), *rate)) else {
            continue;
        };
        let ratios = skiff
            .iter()
            .zip(direct)
            .map(|(s, d)| s.per_second() / d.per_second())
            .collect();
        report.add(case, SKIFF, PAIRED_RATIO, median(ratios), "ratio");
    }
    for ((case, system, rate), outcomes) in samples {
        let pick = |f: fn(&Outcome) -> f64| median(outcomes.iter().map(f).collect());
        report.add(&case, system, rate, pick(Outcome::per_second), "1/s");
        report.add(&case, system, "p50_latency", pick(|o| o.p50_us), "us");
        report.add(&case, system, "p99_latency", pick(|o| o.p99_us), "us");
        let (errors, requests) = outcomes
            .iter()
            .fold((0, 0), |(e, r), o| (e + o.errors, r + o.requests));
        if errors > 0 {
            eprintln!(
                "warning: {case}, {system}: {errors} of {} requests failed",
                errors + requests
            );
        }
    }
    Ok(())
}

/// The load cases.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LoadCase {
    /// ClusterIP from a process on the node (in the node's cgroup, for Skiff's socket LB),
    /// requests back to back on one connection per thread.
    ClusterIpPersistent,
    /// The same with a new connection per request.
    ClusterIpPerRequest,
    /// NodePort from outside the node (the client netns), a new connection per request:
    /// the uplink program for Skiff.
    NodePort,
}

impl LoadCase {
    const ALL: [Self; 3] = [
        Self::ClusterIpPersistent,
        Self::ClusterIpPerRequest,
        Self::NodePort,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::ClusterIpPersistent => "clusterip persistent",
            Self::ClusterIpPerRequest => "clusterip new conn/request",
            Self::NodePort => "nodeport new conn/request",
        }
    }

    fn rate(self) -> &'static str {
        match self {
            Self::NodePort => "connections_per_s",
            _ => "requests_per_s",
        }
    }
}

/// One round of one load case on `system`.
fn run_case(
    programmed: &Programmed,
    system: System,
    set: &[Service],
    case: LoadCase,
) -> Result<Outcome> {
    let picked = services::sample(set, TARGETS);
    let targets: Vec<SocketAddrV4> = if system == System::Direct {
        picked.iter().flat_map(|s| s.endpoint_addrs()).collect()
    } else if let LoadCase::NodePort = case {
        picked
            .iter()
            .map(|s| SocketAddrV4::new(NODE_IP, s.node_port))
            .collect()
    } else {
        picked.iter().map(|s| s.cluster_addr()).collect()
    };
    let (mode, netns, cgroup) = match case {
        LoadCase::ClusterIpPersistent => {
            (Mode::Persistent, &programmed.topo.node, programmed.cgroup())
        }
        LoadCase::ClusterIpPerRequest => {
            (Mode::PerRequest, &programmed.topo.node, programmed.cgroup())
        }
        LoadCase::NodePort => (Mode::PerRequest, &programmed.topo.client, None),
    };
    loadgen::run(
        netns,
        cgroup,
        &Spec {
            mode,
            targets,
            threads: THREADS,
            duration_ms: CASE_MS,
        },
    )
}

/// Creates service `others` while services `0..others` exist, and measures the time from
/// starting the update to the first request answered through the new service's ClusterIP.
fn measure_update(report: &mut Report, system: System, others: usize, restore: &str) -> Result<()> {
    let set = services::services(others);
    let all = services::services(others + 1);
    let new = Service::nth(others);
    let mut programmed = Programmed::new(system, &set, all.len(), restore)?;
    let spec = Spec {
        mode: Mode::FirstSuccess,
        targets: vec![new.cluster_addr()],
        threads: 1,
        // A full nft -f of 10,000 services takes about a minute on the project's machine.
        duration_ms: 300_000,
    };
    let mut probe = loadgen::spawn(&programmed.topo.node, programmed.cgroup(), &spec)?;
    probe.ready()?;
    // Let the probe see refusals first: the service does not exist yet.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let start = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let began = Instant::now();
    let node = &programmed.topo.node;
    match system {
        System::Iptables => {
            kube_proxy::load_in(node, &[restore], &kube_proxy::iptables_rules(&all))?
        }
        System::Nftables => {
            kube_proxy::load_in(node, &["nft", "-f", "-"], &kube_proxy::nft_rules(&all))?
        }
        System::NftablesDelta => kube_proxy::load_in(
            node,
            &["nft", "-f", "-"],
            &kube_proxy::nft_delta(std::slice::from_ref(&new)),
        )?,
        System::Skiff => programmed
            .skiff
            .as_mut()
            .context("skiff plane")?
            .apply(&all)?,
        System::Direct => unreachable!("direct traffic has no services to create"),
    }
    let written = began.elapsed();
    let outcome = probe.finish()?;
    ensure!(
        outcome.errors > 0,
        "the new service answered before it was created"
    );
    let first = outcome.first_success_unix_ns.context("no first success")?;
    let case = format!("new service to first reply, {others} others");
    report.add(
        &case,
        system.name(),
        "to_first_reply",
        first.saturating_sub(start) as f64 / 1e6,
        "ms",
    );
    report.add(
        &case,
        system.name(),
        "update_written",
        written.as_secs_f64() * 1e3,
        "ms",
    );
    Ok(())
}

/// Skiff's data plane for one topology: socket LB on a cgroup of the node, XDP and TC on
/// the node's uplink, and the services written by the agent's `ServiceSync`.
struct SkiffPlane {
    sync: ServiceSync,
    maps: KernelLbMaps,
    /// Keeps the programs loaded and attached.
    dataplane: Dataplane,
    cgroup: TestCgroup,
}

impl SkiffPlane {
    fn new(topo: &Topology, set: &[Service], capacity: usize) -> Result<Self> {
        // A ClusterIP and a NodePort entry per service, one table each plus spares.
        let entries = u32::try_from(2 * capacity + 64)?;
        let sizes = MapSizes {
            services: entries,
            backends: 2 * entries,
            maglev_table_size: TABLE_SIZE,
            maglev_tables: entries,
            flows: 1 << 18,
            // Every endpoint address is a pod of this node here.
            local_pods: 2 * entries,
        };
        let mut dataplane = Dataplane::load(&LoadOptions {
            pin_path: None,
            sizes,
            node_addr: Some(NODE_IP),
        })
        .context("loading the data plane")?;
        let cgroup = TestCgroup::new("sbcg")?;
        dataplane.attach_socket_lb(cgroup.path())?;
        // As the agent does by default: on this veth uplink that is TC ingress.
        let mode = topo
            .node
            .run(|| dataplane.attach_uplink(&topo.uplink, UplinkHook::Auto))??;
        eprintln!("skiff's uplink program attached as {mode:?}");
        // The pod's veth, as the agent registers each pod it wires: every endpoint address
        // lives in the one pod namespace.
        let node_side = topo.node.link(&topo.pod_link.0)?;
        let pod_side = topo.pod.link(&topo.pod_link.1)?;
        let endpoint = LocalEndpoint {
            ifindex: node_side.index,
            mac: pod_side.mac,
            node_mac: node_side.mac,
        };
        let wanted = set
            .iter()
            .flat_map(Service::endpoint_addrs)
            .map(|ep| (*ep.ip(), endpoint))
            .collect();
        LocalEndpoints::take(&mut dataplane)?.reconcile(&wanted)?;
        let maps = KernelLbMaps::take(&mut dataplane, TABLE_SIZE)?;
        let sync = ServiceSync::adopt(&maps, Maglev::new(TABLE_SIZE, 1)?)?;
        let mut plane = Self {
            sync,
            maps,
            dataplane,
            cgroup,
        };
        plane.apply(set)?;
        Ok(plane)
    }

    fn apply(&mut self, set: &[Service]) -> Result<()> {
        let (_, errors) = self.sync.apply(&mut self.maps, &desired(set));
        ensure!(
            errors.is_empty(),
            "writing the bench's services: {errors:?}"
        );
        Ok(())
    }
}

/// What the agent would derive from the services and their EndpointSlices: a ClusterIP
/// entry and a NodePort entry per service, over its endpoints on this node.
fn desired(set: &[Service]) -> BTreeMap<ServiceKey, DesiredService> {
    let mut desired = BTreeMap::new();
    for svc in set {
        let backends: Vec<Backend> = svc
            .endpoint_addrs()
            .map(|ep| Backend::new(ep.ip().octets(), ep.port(), PROTO_TCP, BACKEND_LOCAL))
            .collect();
        desired.insert(
            ServiceKey::new(svc.cluster_ip.octets(), SERVICE_PORT, PROTO_TCP),
            DesiredService {
                backends: backends.clone(),
                ..DesiredService::default()
            },
        );
        desired.insert(
            ServiceKey::new(NODE_IP.octets(), svc.node_port, PROTO_TCP),
            DesiredService {
                backends,
                flags: SERVICE_EXTERNAL,
                affinity_timeout_secs: 0,
            },
        );
    }
    desired
}
