//! The agent's `/metrics`: the latest housekeeping [`Snapshot`] under cAdvisor's names,
//! types, units and labels (through a custom `Collector`, so series of containers that are
//! gone disappear), node and data-plane metrics, and the agent's own, served over HTTP.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use prometheus::{
    CounterVec, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry,
    core::{Collector, Desc},
    exponential_buckets,
    proto::MetricFamily,
};
use skiff_api::metrics_http;

use super::{
    collector::{PassTiming, Snapshot},
    usage::UsageHistory,
};
use crate::dataplane::services::{describe, describe_backend};

/// kubelet's cAdvisor label set, in this order.
const LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

/// cAdvisor reports "no limit" as 0 (limits past 2^62 are the kernel's "unlimited").
fn spec_bytes(limit: Option<u64>) -> f64 {
    limit.filter(|&l| l < 1 << 62).map_or(0.0, |l| l as f64)
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

fn counter(name: &str, help: &str, extra: &[&str]) -> CounterVec {
    CounterVec::new(opts(name, help), &[&LABELS[..], extra].concat()).expect("a valid metric")
}

fn gauge(name: &str, help: &str, extra: &[&str]) -> GaugeVec {
    GaugeVec::new(opts(name, help), &[&LABELS[..], extra].concat()).expect("a valid metric")
}

/// The families built afresh from each snapshot.
struct Families {
    cpu_usage: CounterVec,
    cpu_user: CounterVec,
    cpu_system: CounterVec,
    cfs_periods: CounterVec,
    cfs_throttled_periods: CounterVec,
    cfs_throttled_seconds: CounterVec,
    memory_usage: GaugeVec,
    memory_working_set: GaugeVec,
    memory_rss: GaugeVec,
    memory_cache: GaugeVec,
    memory_failcnt: GaugeVec,
    oom_events: CounterVec,
    processes: GaugeVec,
    threads: GaugeVec,
    threads_max: GaugeVec,
    fs_reads_bytes: CounterVec,
    fs_writes_bytes: CounterVec,
    fs_reads: CounterVec,
    fs_writes: CounterVec,
    rx_bytes: CounterVec,
    rx_packets: CounterVec,
    tx_bytes: CounterVec,
    tx_packets: CounterVec,
    spec_memory_limit: GaugeVec,
    spec_cpu_quota: GaugeVec,
    spec_cpu_period: GaugeVec,
    spec_cpu_shares: GaugeVec,
    machine_cpu_cores: GaugeVec,
    machine_memory_bytes: GaugeVec,
    uplink_packets: CounterVec,
    uplink_bytes: CounterVec,
    lb_events: CounterVec,
    map_entries: GaugeVec,
    map_max_entries: GaugeVec,
    backend_flows: CounterVec,
    backend_packets: CounterVec,
    backend_bytes: CounterVec,
    service_flows: CounterVec,
}

impl Families {
    fn new() -> Self {
        let plain = |name: &str, help: &str, labels: &[&str]| {
            GaugeVec::new(opts(name, help), labels).expect("a valid metric")
        };
        let plain_counter = |name: &str, help: &str, labels: &[&str]| {
            CounterVec::new(opts(name, help), labels).expect("a valid metric")
        };
        Self {
            cpu_usage: counter(
                "container_cpu_usage_seconds_total",
                "Cumulative cpu time consumed in seconds.",
                &["cpu"],
            ),
            cpu_user: counter(
                "container_cpu_user_seconds_total",
                "Cumulative user cpu time consumed in seconds.",
                &[],
            ),
            cpu_system: counter(
                "container_cpu_system_seconds_total",
                "Cumulative system cpu time consumed in seconds.",
                &[],
            ),
            cfs_periods: counter(
                "container_cpu_cfs_periods_total",
                "Number of elapsed enforcement period intervals.",
                &[],
            ),
            cfs_throttled_periods: counter(
                "container_cpu_cfs_throttled_periods_total",
                "Number of throttled period intervals.",
                &[],
            ),
            cfs_throttled_seconds: counter(
                "container_cpu_cfs_throttled_seconds_total",
                "Total time duration the container has been throttled.",
                &[],
            ),
            memory_usage: gauge(
                "container_memory_usage_bytes",
                "Current memory usage in bytes, including all memory regardless of when it was accessed",
                &[],
            ),
            memory_working_set: gauge(
                "container_memory_working_set_bytes",
                "Current working set in bytes.",
                &[],
            ),
            memory_rss: gauge("container_memory_rss", "Size of RSS in bytes.", &[]),
            memory_cache: gauge(
                "container_memory_cache",
                "Number of bytes of page cache memory.",
                &[],
            ),
            // cAdvisor types this a counter, but a counter without `_total` fails
            // `promtool check metrics`; as a gauge it keeps its name (queries and
            // dashboards work unchanged) and passes the lint.
            memory_failcnt: gauge(
                "container_memory_failcnt",
                "Number of memory usage hits limits",
                &[],
            ),
            oom_events: counter(
                "container_oom_events_total",
                "Count of out of memory events observed for the container",
                &[],
            ),
            processes: gauge(
                "container_processes",
                "Number of processes running inside the container.",
                &[],
            ),
            threads: gauge(
                "container_threads",
                "Number of threads running inside the container",
                &[],
            ),
            threads_max: gauge(
                "container_threads_max",
                "Maximum number of threads allowed inside the container, infinity if value is zero",
                &[],
            ),
            fs_reads_bytes: counter(
                "container_fs_reads_bytes_total",
                "Cumulative count of bytes read",
                &["device"],
            ),
            fs_writes_bytes: counter(
                "container_fs_writes_bytes_total",
                "Cumulative count of bytes written",
                &["device"],
            ),
            fs_reads: counter(
                "container_fs_reads_total",
                "Cumulative count of reads completed",
                &["device"],
            ),
            fs_writes: counter(
                "container_fs_writes_total",
                "Cumulative count of writes completed",
                &["device"],
            ),
            rx_bytes: counter(
                "container_network_receive_bytes_total",
                "Cumulative count of bytes received",
                &["interface"],
            ),
            rx_packets: counter(
                "container_network_receive_packets_total",
                "Cumulative count of packets received",
                &["interface"],
            ),
            tx_bytes: counter(
                "container_network_transmit_bytes_total",
                "Cumulative count of bytes transmitted",
                &["interface"],
            ),
            tx_packets: counter(
                "container_network_transmit_packets_total",
                "Cumulative count of packets transmitted",
                &["interface"],
            ),
            spec_memory_limit: gauge(
                "container_spec_memory_limit_bytes",
                "Memory limit for the container.",
                &[],
            ),
            spec_cpu_quota: gauge(
                "container_spec_cpu_quota",
                "CPU quota of the container.",
                &[],
            ),
            spec_cpu_period: gauge(
                "container_spec_cpu_period",
                "CPU period of the container.",
                &[],
            ),
            spec_cpu_shares: gauge(
                "container_spec_cpu_shares",
                "CPU share of the container.",
                &[],
            ),
            machine_cpu_cores: plain("machine_cpu_cores", "Number of logical CPU cores.", &[]),
            machine_memory_bytes: plain(
                "machine_memory_bytes",
                "Amount of memory installed on the machine.",
                &[],
            ),
            uplink_packets: plain_counter(
                "skiff_dataplane_uplink_packets_total",
                "Frames the uplink XDP program saw, by packet class.",
                &["class"],
            ),
            uplink_bytes: plain_counter(
                "skiff_dataplane_uplink_bytes_total",
                "Bytes of the frames the uplink XDP program saw, by packet class.",
                &["class"],
            ),
            lb_events: plain_counter(
                "skiff_dataplane_lb_events_total",
                "Load-balancing decisions of the eBPF programs, by event.",
                &["event"],
            ),
            map_entries: plain(
                "skiff_dataplane_map_entries",
                "Entries in a pinned data-plane map (conntrack, services, ...).",
                &["map"],
            ),
            map_max_entries: plain(
                "skiff_dataplane_map_max_entries",
                "Capacity of a pinned data-plane map.",
                &["map"],
            ),
            backend_flows: plain_counter(
                "skiff_dataplane_backend_flows_total",
                "Connections (and unconnected datagrams) the load balancers sent to a backend.",
                &["backend"],
            ),
            backend_packets: plain_counter(
                "skiff_dataplane_backend_packets_total",
                "Packets the uplink program forwarded to a backend.",
                &["backend"],
            ),
            backend_bytes: plain_counter(
                "skiff_dataplane_backend_bytes_total",
                "Bytes of the frames the uplink program forwarded to a backend.",
                &["backend"],
            ),
            service_flows: plain_counter(
                "skiff_dataplane_service_flows_total",
                "Connections (and unconnected datagrams) the load balancers balanced for a service address.",
                &["service"],
            ),
        }
    }

    fn all(&self) -> [&dyn Collector; 38] {
        [
            &self.cpu_usage,
            &self.cpu_user,
            &self.cpu_system,
            &self.cfs_periods,
            &self.cfs_throttled_periods,
            &self.cfs_throttled_seconds,
            &self.memory_usage,
            &self.memory_working_set,
            &self.memory_rss,
            &self.memory_cache,
            &self.memory_failcnt,
            &self.oom_events,
            &self.processes,
            &self.threads,
            &self.threads_max,
            &self.fs_reads_bytes,
            &self.fs_writes_bytes,
            &self.fs_reads,
            &self.fs_writes,
            &self.rx_bytes,
            &self.rx_packets,
            &self.tx_bytes,
            &self.tx_packets,
            &self.spec_memory_limit,
            &self.spec_cpu_quota,
            &self.spec_cpu_period,
            &self.spec_cpu_shares,
            &self.machine_cpu_cores,
            &self.machine_memory_bytes,
            &self.uplink_packets,
            &self.uplink_bytes,
            &self.lb_events,
            &self.map_entries,
            &self.map_max_entries,
            &self.backend_flows,
            &self.backend_packets,
            &self.backend_bytes,
            &self.service_flows,
        ]
    }

    /// Fills the families from `snapshot` and the machine's facts.
    fn fill(&self, snapshot: &Snapshot, machine: MachineFacts) {
        self.machine_cpu_cores
            .with_label_values::<&str>(&[])
            .set(f64::from(machine.cpu_cores));
        self.machine_memory_bytes
            .with_label_values::<&str>(&[])
            .set(machine.memory_bytes as f64);
        for sample in &snapshot.samples {
            let t = &sample.target;
            let base = [
                t.container.as_str(),
                &t.id,
                &t.image,
                &t.name,
                &t.namespace,
                &t.pod,
            ];
            if let Some(cpu) = &sample.stats.cpu {
                self.cpu_usage
                    .with_label_values(&with(&base, "total"))
                    .inc_by(cpu.usage_seconds);
                self.cpu_user
                    .with_label_values(&base)
                    .inc_by(cpu.user_seconds);
                self.cpu_system
                    .with_label_values(&base)
                    .inc_by(cpu.system_seconds);
                self.cfs_periods
                    .with_label_values(&base)
                    .inc_by(cpu.periods as f64);
                self.cfs_throttled_periods
                    .with_label_values(&base)
                    .inc_by(cpu.throttled_periods as f64);
                self.cfs_throttled_seconds
                    .with_label_values(&base)
                    .inc_by(cpu.throttled_seconds);
            }
            if let Some(memory) = &sample.stats.memory {
                self.memory_usage
                    .with_label_values(&base)
                    .set(memory.usage as f64);
                self.memory_working_set
                    .with_label_values(&base)
                    .set(memory.working_set as f64);
                self.memory_rss
                    .with_label_values(&base)
                    .set(memory.rss as f64);
                self.memory_cache
                    .with_label_values(&base)
                    .set(memory.cache as f64);
                self.memory_failcnt
                    .with_label_values(&base)
                    .set(memory.failcnt as f64);
                self.oom_events
                    .with_label_values(&base)
                    .inc_by(memory.oom_kills as f64);
            }
            if let Some(processes) = sample.stats.processes {
                self.processes
                    .with_label_values(&base)
                    .set(processes as f64);
            }
            if let Some(threads) = sample.stats.threads {
                self.threads.with_label_values(&base).set(threads as f64);
                self.threads_max
                    .with_label_values(&base)
                    .set(sample.stats.threads_max.unwrap_or(0) as f64);
            }
            for (device, io) in &sample.stats.io {
                let name = sample.devices.get(device).unwrap_or(device);
                let labels = with(&base, name);
                self.fs_reads_bytes
                    .with_label_values(&labels)
                    .inc_by(io.read_bytes as f64);
                self.fs_writes_bytes
                    .with_label_values(&labels)
                    .inc_by(io.write_bytes as f64);
                self.fs_reads
                    .with_label_values(&labels)
                    .inc_by(io.reads as f64);
                self.fs_writes
                    .with_label_values(&labels)
                    .inc_by(io.writes as f64);
            }
            if let Some(net) = &sample.network {
                // A pod's one interface (the veth end the agent names eth0); loopback
                // traffic is not counted, as cAdvisor reads eth0's counters.
                let labels = with(&base, "eth0");
                self.rx_bytes
                    .with_label_values(&labels)
                    .inc_by(net.rx_bytes as f64);
                self.rx_packets
                    .with_label_values(&labels)
                    .inc_by(net.rx_packets as f64);
                self.tx_bytes
                    .with_label_values(&labels)
                    .inc_by(net.tx_bytes as f64);
                self.tx_packets
                    .with_label_values(&labels)
                    .inc_by(net.tx_packets as f64);
            }
            let spec = &sample.stats.spec;
            self.spec_memory_limit
                .with_label_values(&base)
                .set(spec_bytes(spec.memory_limit));
            if let Some(quota) = spec.cpu_quota {
                self.spec_cpu_quota
                    .with_label_values(&base)
                    .set(quota as f64);
                if let Some(period) = spec.cpu_period {
                    self.spec_cpu_period
                        .with_label_values(&base)
                        .set(period as f64);
                }
            }
            if let Some(shares) = spec.cpu_shares {
                self.spec_cpu_shares
                    .with_label_values(&base)
                    .set(shares as f64);
            }
        }
        for (class, counter) in &snapshot.uplink {
            self.uplink_packets
                .with_label_values(&[class.name()])
                .inc_by(counter.packets as f64);
            self.uplink_bytes
                .with_label_values(&[class.name()])
                .inc_by(counter.bytes as f64);
        }
        for (event, count) in &snapshot.lb_events {
            self.lb_events
                .with_label_values(&[event.name()])
                .inc_by(*count as f64);
        }
        for (backend, counter) in &snapshot.flows.backends {
            let label = [describe_backend(backend)];
            let label: Vec<&str> = label.iter().map(String::as_str).collect();
            let add =
                |family: &CounterVec, n: u64| family.with_label_values(&label).inc_by(n as f64);
            add(&self.backend_flows, counter.flows);
            add(&self.backend_packets, counter.packets);
            add(&self.backend_bytes, counter.bytes);
        }
        for (service, counter) in &snapshot.flows.services {
            self.service_flows
                .with_label_values(&[describe(service).as_str()])
                .inc_by(counter.flows as f64);
        }
        for fill in &snapshot.maps {
            self.map_entries
                .with_label_values(&[fill.name])
                .set(fill.entries as f64);
            self.map_max_entries
                .with_label_values(&[fill.name])
                .set(f64::from(fill.max_entries));
        }
    }
}

/// The base labels followed by one more.
fn with<'a>(base: &[&'a str], extra: &'a str) -> Vec<&'a str> {
    [base, &[extra]].concat()
}

/// The machine facts cAdvisor exports as `machine_*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineFacts {
    pub cpu_cores: u32,
    pub memory_bytes: u64,
}

/// Serves the latest snapshot; series of cgroups gone since are not reported.
struct SnapshotCollector {
    snapshot: Mutex<Option<Snapshot>>,
    machine: MachineFacts,
    descs: Vec<Desc>,
}

impl SnapshotCollector {
    fn new(machine: MachineFacts) -> Self {
        let families = Families::new();
        let descs = families
            .all()
            .iter()
            .flat_map(|c| c.desc())
            .cloned()
            .collect();
        Self {
            snapshot: Mutex::new(None),
            machine,
            descs,
        }
    }
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let families = Families::new();
        let snapshot = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        families.fill(
            snapshot.as_ref().unwrap_or(&Snapshot::default()),
            self.machine,
        );
        families.all().iter().flat_map(|c| c.collect()).collect()
    }
}

/// Registers a shared collector (the registry takes collectors by value).
struct Shared(Arc<SnapshotCollector>);

impl Collector for Shared {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }
    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

/// Every metric of one `skiff-agent`.
pub struct AgentMetrics {
    registry: Registry,
    snapshot: Arc<SnapshotCollector>,
    housekeeping_duration: Histogram,
    housekeeping_cpu: prometheus::Counter,
    housekeeping_errors: IntCounter,
    pod_sync_duration: HistogramVec,
    pod_sync_errors: IntCounterVec,
    conntrack_collected: IntCounter,
    usage: Arc<UsageHistory>,
}

impl fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

impl AgentMetrics {
    /// # Panics
    /// Never: the metric definitions are fixed and valid (unit tests build them).
    pub fn new(machine: MachineFacts) -> Self {
        let registry = Registry::new();
        let snapshot = Arc::new(SnapshotCollector::new(machine));
        let housekeeping_duration = Histogram::with_opts(
            HistogramOpts::new(
                "skiff_agent_housekeeping_duration_seconds",
                "Wall-clock time of one housekeeping pass (cgroups and data-plane maps read).",
            )
            .buckets(exponential_buckets(0.0001, 2.0, 16).expect("valid buckets")),
        )
        .expect("a valid metric");
        let housekeeping_cpu = prometheus::Counter::with_opts(Opts::new(
            "skiff_agent_housekeeping_cpu_seconds_total",
            "CPU time spent in housekeeping passes.",
        ))
        .expect("a valid metric");
        let housekeeping_errors = IntCounter::with_opts(Opts::new(
            "skiff_agent_housekeeping_errors_total",
            "Parts of housekeeping passes that could not be read.",
        ))
        .expect("a valid metric");
        let pod_sync_duration = HistogramVec::new(
            HistogramOpts::new(
                "skiff_agent_pod_reconcile_duration_seconds",
                "Duration in seconds of one reconcile of one pod, by result.",
            )
            .buckets(exponential_buckets(0.001, 2.0, 16).expect("valid buckets")),
            &["result"],
        )
        .expect("a valid metric");
        let pod_sync_errors = IntCounterVec::new(
            Opts::new(
                "skiff_agent_pod_reconcile_errors_total",
                "Pod reconciles that failed (and are retried with back-off).",
            ),
            &[],
        )
        .expect("a valid metric");
        let conntrack_collected = IntCounter::with_opts(Opts::new(
            "skiff_dataplane_conntrack_collected_total",
            "Conntrack entries removed because their flow was idle past its timeout.",
        ))
        .expect("a valid metric");
        for collector in [
            Box::new(Shared(Arc::clone(&snapshot))) as Box<dyn Collector>,
            Box::new(housekeeping_duration.clone()),
            Box::new(housekeeping_cpu.clone()),
            Box::new(housekeeping_errors.clone()),
            Box::new(pod_sync_duration.clone()),
            Box::new(pod_sync_errors.clone()),
            Box::new(conntrack_collected.clone()),
        ] {
            registry.register(collector).expect("distinct metric names");
        }
        Self {
            registry,
            snapshot,
            housekeeping_duration,
            housekeeping_cpu,
            housekeeping_errors,
            pod_sync_duration,
            pod_sync_errors,
            conntrack_collected,
            usage: Arc::new(UsageHistory::default()),
        }
    }

    /// The last two passes' CPU and memory use, for the node API's `Summary`.
    pub fn usage(&self) -> Arc<UsageHistory> {
        Arc::clone(&self.usage)
    }

    /// Serves `snapshot` from now on and records what its pass cost.
    pub fn publish(&self, snapshot: Snapshot, timing: PassTiming) {
        self.housekeeping_duration
            .observe(timing.wall.as_secs_f64());
        self.housekeeping_cpu.inc_by(timing.cpu.as_secs_f64());
        self.housekeeping_errors.inc_by(snapshot.errors);
        self.usage.record(&snapshot, std::time::SystemTime::now());
        *self
            .snapshot
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
    }

    /// Records one pod reconcile and whether it failed.
    pub fn observe_pod_reconcile(&self, took: Duration, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.pod_sync_duration
            .with_label_values(&[result])
            .observe(took.as_secs_f64());
        if !ok {
            self.pod_sync_errors.with_label_values::<&str>(&[]).inc();
        }
    }

    /// Counts conntrack entries a collection pass removed.
    pub fn observe_conntrack_collected(&self, removed: usize) {
        self.conntrack_collected.inc_by(removed as u64);
    }

    /// Everything, in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        metrics_http::render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use skiff_ebpf_common::{
        Backend, CgroupNetCounters, FlowCounter, LbEvent, PacketClass, PacketCounter, ServiceKey,
        service::{PROTO_TCP, PROTO_UDP},
    };

    use super::*;
    use crate::{
        dataplane::{MapFill, loader::FlowStats},
        metrics::{
            cgroupfs::{CgroupStats, CpuStats, IoStats, MemoryStats, SpecStats},
            collector::Sample,
            targets::Target,
        },
    };

    fn sample(container: &str) -> Sample {
        Sample {
            target: Target {
                namespace: "default".into(),
                pod: "web".into(),
                container: container.into(),
                image: if container.is_empty() {
                    ""
                } else {
                    "busybox:1"
                }
                .into(),
                id: format!("/n/kubepods/podu/{container}"),
                name: container.into(),
            },
            stats: CgroupStats {
                cpu: Some(CpuStats {
                    usage_seconds: 1.5,
                    ..CpuStats::default()
                }),
                memory: Some(MemoryStats {
                    usage: 4096,
                    working_set: 2048,
                    ..MemoryStats::default()
                }),
                threads: Some(2),
                threads_max: None,
                processes: Some(1),
                io: BTreeMap::from([(
                    "8:0".to_string(),
                    IoStats {
                        read_bytes: 512,
                        ..IoStats::default()
                    },
                )]),
                spec: SpecStats {
                    memory_limit: Some(1 << 20),
                    cpu_quota: Some(50_000),
                    cpu_period: Some(100_000),
                    cpu_shares: Some(512),
                },
            },
            devices: HashMap::from([("8:0".to_string(), "/dev/vda".to_string())]),
            network: Some(CgroupNetCounters {
                rx_packets: 3,
                rx_bytes: 300,
                tx_packets: 2,
                tx_bytes: 200,
            }),
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// The value of `metric` on the series whose labels are exactly `labels` (any order).
    fn series(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(metric)?.strip_prefix('{')?;
            let (set, value) = rest.split_once("} ")?;
            let mut found: Vec<&str> = set.split(',').collect();
            let mut wanted: Vec<String> =
                labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            found.sort_unstable();
            wanted.sort_unstable();
            (found == wanted).then(|| value.parse().ok()).flatten()
        })
    }

    #[test]
    fn a_snapshot_is_exposed_under_cadvisor_names_and_labels() {
        let metrics = AgentMetrics::new(MachineFacts {
            cpu_cores: 2,
            memory_bytes: 1 << 30,
        });
        metrics.publish(
            Snapshot {
                samples: vec![sample("app"), sample("")],
                uplink: vec![(
                    PacketClass::Udp,
                    PacketCounter {
                        packets: 4,
                        bytes: 400,
                    },
                )],
                lb_events: vec![(LbEvent::Translated, 7)],
                maps: vec![MapFill {
                    name: "CONNTRACK",
                    entries: 5,
                    max_entries: 65536,
                }],
                flows: FlowStats {
                    backends: vec![(
                        Backend::new([10, 244, 1, 3], 8080, PROTO_TCP, 0),
                        FlowCounter {
                            flows: 3,
                            packets: 12,
                            bytes: 960,
                        },
                    )],
                    services: vec![(
                        ServiceKey::new([10, 96, 0, 10], 53, PROTO_UDP),
                        FlowCounter {
                            flows: 9,
                            ..FlowCounter::default()
                        },
                    )],
                },
                errors: 0,
                node: None,
            },
            PassTiming::default(),
        );
        let text = metrics.render();
        let app = [
            ("container", "app"),
            ("id", "/n/kubepods/podu/app"),
            ("image", "busybox:1"),
            ("name", "app"),
            ("namespace", "default"),
            ("pod", "web"),
        ];
        let and = |extra: (&'static str, &'static str)| [&app[..], &[extra]].concat();
        assert_eq!(
            series(
                &text,
                "container_cpu_usage_seconds_total",
                &and(("cpu", "total"))
            ),
            Some(1.5),
            "{text}"
        );
        assert_eq!(
            series(&text, "container_memory_working_set_bytes", &app),
            Some(2048.0)
        );
        assert_eq!(
            series(
                &text,
                "container_network_receive_bytes_total",
                &and(("interface", "eth0"))
            ),
            Some(300.0)
        );
        assert_eq!(
            series(
                &text,
                "container_fs_reads_bytes_total",
                &and(("device", "/dev/vda"))
            ),
            Some(512.0)
        );
        assert_eq!(
            series(&text, "container_spec_memory_limit_bytes", &app),
            Some(1048576.0)
        );
        let pod = [
            ("container", ""),
            ("id", "/n/kubepods/podu/"),
            ("image", ""),
            ("name", ""),
            ("namespace", "default"),
            ("pod", "web"),
        ];
        assert_eq!(
            series(&text, "container_memory_usage_bytes", &pod),
            Some(4096.0)
        );
        assert!(text.contains("# TYPE container_network_transmit_packets_total counter"));
        assert!(text.contains("# TYPE container_memory_rss gauge"));
        assert_eq!(value(&text, "machine_cpu_cores"), Some(2.0));
        assert_eq!(
            value(&text, r#"skiff_dataplane_map_entries{map="CONNTRACK"}"#),
            Some(5.0)
        );
        assert_eq!(
            value(
                &text,
                r#"skiff_dataplane_uplink_packets_total{class="udp"}"#
            ),
            Some(4.0)
        );
        let backend = [("backend", "10.244.1.3:8080/tcp")];
        assert_eq!(
            series(&text, "skiff_dataplane_backend_flows_total", &backend),
            Some(3.0)
        );
        assert_eq!(
            series(&text, "skiff_dataplane_backend_packets_total", &backend),
            Some(12.0)
        );
        assert_eq!(
            series(&text, "skiff_dataplane_backend_bytes_total", &backend),
            Some(960.0)
        );
        assert_eq!(
            series(
                &text,
                "skiff_dataplane_service_flows_total",
                &[("service", "10.96.0.10:53/udp")]
            ),
            Some(9.0)
        );
    }

    #[test]
    fn series_of_a_container_gone_from_the_next_snapshot_disappear() {
        let metrics = AgentMetrics::new(MachineFacts::default());
        metrics.publish(
            Snapshot {
                samples: vec![sample("app")],
                ..Snapshot::default()
            },
            PassTiming::default(),
        );
        assert!(metrics.render().contains(r#"container="app""#));
        metrics.publish(Snapshot::default(), PassTiming::default());
        assert!(!metrics.render().contains(r#"container="app""#));
    }

    #[test]
    fn unlimited_memory_is_reported_as_zero_like_cadvisor() {
        assert_eq!(spec_bytes(None), 0.0);
        assert_eq!(spec_bytes(Some(9_223_372_036_854_771_712)), 0.0);
        assert_eq!(spec_bytes(Some(4096)), 4096.0);
    }

    #[test]
    fn housekeeping_costs_and_reconciles_are_counted() {
        let metrics = AgentMetrics::new(MachineFacts::default());
        metrics.publish(
            Snapshot {
                errors: 2,
                ..Snapshot::default()
            },
            PassTiming {
                wall: Duration::from_millis(3),
                cpu: Duration::from_millis(2),
            },
        );
        metrics.observe_pod_reconcile(Duration::from_millis(5), false);
        let text = metrics.render();
        assert_eq!(
            value(&text, "skiff_agent_housekeeping_errors_total"),
            Some(2.0)
        );
        assert_eq!(
            value(&text, "skiff_agent_housekeeping_cpu_seconds_total"),
            Some(0.002)
        );
        assert_eq!(
            value(&text, "skiff_agent_pod_reconcile_errors_total"),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                r#"skiff_agent_pod_reconcile_duration_seconds_count{result="error"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn conntrack_entries_collected_add_up_over_passes() {
        let metrics = AgentMetrics::new(MachineFacts::default());
        assert_eq!(
            value(
                &metrics.render(),
                "skiff_dataplane_conntrack_collected_total"
            ),
            Some(0.0)
        );
        metrics.observe_conntrack_collected(4);
        metrics.observe_conntrack_collected(0);
        metrics.observe_conntrack_collected(2);
        assert_eq!(
            value(
                &metrics.render(),
                "skiff_dataplane_conntrack_collected_total"
            ),
            Some(6.0)
        );
    }
}
