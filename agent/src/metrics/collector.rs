//! Housekeeping: on an interval, read every pod's and container's cgroup, the cgroup_skb
//! traffic counters and the data plane's counters into one [`Snapshot`], which the
//! `/metrics` endpoint serves until the next pass replaces it (cAdvisor's model).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use skiff_ebpf_common::{CgroupNetCounters, LbEvent, PacketClass, PacketCounter};

use super::{
    cgroupfs::{self, CgroupFiles, CgroupLayout, CgroupStats},
    exposition::AgentMetrics,
    targets::{Target, targets},
};
use crate::dataplane::{
    Dataplane, DataplaneError, MapFill,
    loader::{self, FlowStats, PinnedStats},
};

/// What the data plane reports; the loaded programs' maps, or a fake in unit tests.
pub trait DataplaneStats: Send + Sync {
    /// Traffic counters by cgroup id.
    ///
    /// # Errors
    /// When the map cannot be read.
    fn cgroup_net(&self) -> Result<HashMap<u64, CgroupNetCounters>, DataplaneError>;
    /// The uplink program's counters by packet class.
    ///
    /// # Errors
    /// When the map cannot be read.
    fn uplink(&self) -> Result<Vec<(PacketClass, PacketCounter)>, DataplaneError>;
    /// Load-balancing events.
    ///
    /// # Errors
    /// When the map cannot be read.
    fn lb_events(&self) -> Result<Vec<(LbEvent, u64)>, DataplaneError>;
    /// Fill levels of the pinned maps, and what the load balancers sent each backend and
    /// service address (none when the maps are not pinned), from one walk of each map.
    fn pinned(&self) -> PinnedStats;
}

/// The node's loaded data plane and where its maps are pinned.
#[derive(Debug)]
pub struct KernelStats {
    pub dataplane: Arc<Dataplane>,
    pub pin_path: Option<PathBuf>,
}

impl DataplaneStats for KernelStats {
    fn cgroup_net(&self) -> Result<HashMap<u64, CgroupNetCounters>, DataplaneError> {
        self.dataplane.cgroup_net_stats()
    }
    fn uplink(&self) -> Result<Vec<(PacketClass, PacketCounter)>, DataplaneError> {
        self.dataplane.uplink_stats()
    }
    fn lb_events(&self) -> Result<Vec<(LbEvent, u64)>, DataplaneError> {
        self.dataplane.lb_stats()
    }
    fn pinned(&self) -> PinnedStats {
        self.pin_path.as_deref().map_or_else(
            || PinnedStats {
                fill: Vec::new(),
                flows: Ok(FlowStats::default()),
            },
            loader::pinned_stats,
        )
    }
}

/// One pod's or container's cgroup as read in one pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub target: Target,
    pub stats: CgroupStats,
    /// Block devices by `major:minor`, with their `/dev` names where known.
    pub devices: HashMap<String, String>,
    /// Traffic of the cgroup's sockets (for a pod: its containers' and its own).
    pub network: Option<CgroupNetCounters>,
}

/// Everything one housekeeping pass read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub samples: Vec<Sample>,
    pub uplink: Vec<(PacketClass, PacketCounter)>,
    pub lb_events: Vec<(LbEvent, u64)>,
    pub maps: Vec<MapFill>,
    pub flows: FlowStats,
    /// Parts that could not be read in this pass (each also logged).
    pub errors: u64,
    /// The node's own cgroup: the whole subtree its pods run in.
    pub node: Option<CgroupStats>,
}

/// Reads the node's cgroups and data plane; one [`Housekeeping::pass`] per interval.
pub struct Housekeeping {
    pub pods: Box<dyn Fn() -> Vec<Arc<Pod>> + Send + Sync>,
    pub dataplane: Option<Arc<dyn DataplaneStats>>,
    pub files: Arc<dyn CgroupFiles>,
    pub layout: CgroupLayout,
    /// The node's cgroup relative to the hierarchies' roots (`/skiff/node-1`).
    pub cgroup_parent: String,
}

impl std::fmt::Debug for Housekeeping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Housekeeping")
            .field("layout", &self.layout)
            .field("cgroup_parent", &self.cgroup_parent)
            .finish_non_exhaustive()
    }
}

impl Housekeeping {
    /// One pass: the cgroups of the pods bound here and the data plane's maps.
    pub fn pass(&self) -> Snapshot {
        let pods = (self.pods)();
        let targets = targets(&pods, &self.cgroup_parent, &*self.files, &self.layout);
        let mut snapshot = Snapshot::default();
        // None: no counters this pass (no data plane, or its map unreadable). A cgroup
        // missing from a readable map has sent and received nothing: the programs watch
        // the whole subtree.
        let net = match &self.dataplane {
            Some(dataplane) => match dataplane.cgroup_net() {
                Ok(net) => Some(net),
                Err(error) => {
                    tracing::warn!(error = %error, "reading the cgroup traffic counters");
                    snapshot.errors += 1;
                    None
                }
            },
            None => None,
        };
        let mut device_names = HashMap::new();
        let mut samples: Vec<Sample> = targets
            .into_iter()
            .map(|target| {
                let stats = cgroupfs::read_stats(&*self.files, &self.layout, &target.id);
                let devices = stats
                    .io
                    .keys()
                    .map(|device| {
                        let name = device_names
                            .entry(device.clone())
                            .or_insert_with(|| self.device_name(device))
                            .clone();
                        (device.clone(), name)
                    })
                    .collect();
                let network = net.as_ref().and_then(|net| {
                    let id = self.files.inode(&self.layout.unified_dir(&target.id))?;
                    Some(net.get(&id).copied().unwrap_or_default())
                });
                Sample {
                    target,
                    stats,
                    devices,
                    network,
                }
            })
            .collect();
        add_containers_to_pods(&mut samples);
        snapshot.samples = samples;
        snapshot.node = Some(cgroupfs::read_stats(
            &*self.files,
            &self.layout,
            &self.cgroup_parent,
        ));
        if let Some(dataplane) = &self.dataplane {
            match (dataplane.uplink(), dataplane.lb_events()) {
                (Ok(uplink), Ok(lb)) => {
                    snapshot.uplink = uplink;
                    snapshot.lb_events = lb;
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(error = %error, "reading the data plane's counters");
                    snapshot.errors += 1;
                }
            }
            let pinned = dataplane.pinned();
            snapshot.maps = pinned.fill;
            match pinned.flows {
                Ok(flows) => snapshot.flows = flows,
                Err(error) => {
                    tracing::warn!(error = %error, "reading the data plane's flow counters");
                    snapshot.errors += 1;
                }
            }
        }
        snapshot
    }

    /// `/dev/<name>` of a block device `major:minor`, from sysfs; the number otherwise.
    fn device_name(&self, device: &str) -> String {
        self.files
            .read(&Path::new("/sys/dev/block").join(device).join("uevent"))
            .and_then(|uevent| {
                uevent
                    .lines()
                    .find_map(|l| l.strip_prefix("DEVNAME="))
                    .map(|name| format!("/dev/{name}"))
            })
            .unwrap_or_else(|| device.to_string())
    }

    /// Runs a pass every `interval` (the first at once) and publishes each into `metrics`
    /// with its CPU time, until `shutdown` completes.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        metrics: Arc<AgentMetrics>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticks.tick() => {}
            }
            let housekeeping = Arc::clone(&self);
            let pass = tokio::task::spawn_blocking(move || timed(|| housekeeping.pass())).await;
            match pass {
                Ok((snapshot, timing)) => metrics.publish(snapshot, timing),
                Err(error) => tracing::error!(%error, "a housekeeping pass failed"),
            }
        }
    }
}

/// How long one pass took: wall-clock and the CPU time of the thread that ran it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PassTiming {
    pub wall: Duration,
    pub cpu: Duration,
}

/// Runs `f` on this thread, measuring its wall-clock and thread CPU time.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, PassTiming) {
    let (cpu_before, started) = (thread_cpu_time(), Instant::now());
    let value = f();
    let timing = PassTiming {
        wall: started.elapsed(),
        cpu: thread_cpu_time().saturating_sub(cpu_before),
    };
    (value, timing)
}

/// CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// A pod's traffic is its own cgroup's plus that of every container cgroup below it.
fn add_containers_to_pods(samples: &mut [Sample]) {
    let mut per_pod: HashMap<(String, String), CgroupNetCounters> = HashMap::new();
    for sample in samples.iter().filter(|s| !s.target.container.is_empty()) {
        if let Some(net) = &sample.network {
            per_pod
                .entry((sample.target.namespace.clone(), sample.target.pod.clone()))
                .or_default()
                .merge(net);
        }
    }
    for sample in samples.iter_mut().filter(|s| s.target.container.is_empty()) {
        let key = (sample.target.namespace.clone(), sample.target.pod.clone());
        if let (Some(own), Some(containers)) = (&mut sample.network, per_pod.get(&key)) {
            own.merge(containers);
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{Container, PodSpec},
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use super::*;
    use crate::{metrics::cgroupfs::tests::FakeFiles, pods::worker::container_id};

    struct FakeDataplane(HashMap<u64, CgroupNetCounters>);

    impl DataplaneStats for FakeDataplane {
        fn cgroup_net(&self) -> Result<HashMap<u64, CgroupNetCounters>, DataplaneError> {
            Ok(self.0.clone())
        }
        fn uplink(&self) -> Result<Vec<(PacketClass, PacketCounter)>, DataplaneError> {
            Ok(vec![(
                PacketClass::Tcp,
                PacketCounter {
                    packets: 1,
                    bytes: 60,
                },
            )])
        }
        fn lb_events(&self) -> Result<Vec<(LbEvent, u64)>, DataplaneError> {
            Ok(vec![])
        }
        fn pinned(&self) -> PinnedStats {
            PinnedStats {
                fill: vec![],
                flows: Ok(FlowStats::default()),
            }
        }
    }

    fn pod() -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some("p".into()),
                uid: Some("u".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: ["a", "b", "quiet"]
                    .iter()
                    .map(|n| Container {
                        name: n.to_string(),
                        image: Some("img".into()),
                        ..Container::default()
                    })
                    .collect(),
                ..PodSpec::default()
            }),
            ..Pod::default()
        })
    }

    #[test]
    fn traffic_is_matched_by_cgroup_inode_and_summed_into_the_pod() {
        let mut files = FakeFiles::default();
        let pod_dir = "/cg/unified/n/kubepods/besteffort/podu";
        files.put(&format!("{pod_dir}/cgroup.procs"), "");
        files.inodes.insert(pod_dir.into(), 100);
        for (name, inode) in [("a", 101), ("b", 102), ("quiet", 103)] {
            let dir = format!("{pod_dir}/{}", container_id("u", name, 0));
            files.put(&format!("{dir}/cgroup.procs"), "1\n");
            files.inodes.insert(dir.into(), inode);
        }
        let counters = |n: u64| CgroupNetCounters {
            rx_packets: n,
            rx_bytes: n * 100,
            tx_packets: n,
            tx_bytes: n * 10,
        };
        let housekeeping = Housekeeping {
            pods: Box::new(|| vec![pod()]),
            dataplane: Some(Arc::new(FakeDataplane(HashMap::from([
                (101, counters(1)),
                (102, counters(2)),
                (999, counters(50)),
            ])))),
            files: Arc::new(files),
            layout: CgroupLayout {
                v1: Some("/cg".into()),
                unified: "/cg/unified".into(),
            },
            cgroup_parent: "/n".into(),
        };
        let snapshot = housekeeping.pass();
        let net = |container: &str| {
            snapshot
                .samples
                .iter()
                .find(|s| s.target.container == container)
                .and_then(|s| s.network)
        };
        assert_eq!(net("a"), Some(counters(1)));
        assert_eq!(net("b"), Some(counters(2)));
        assert_eq!(net("quiet"), Some(counters(0)), "no entry: nothing sent");
        assert_eq!(net(""), Some(counters(3)), "the pod sums its containers");
        assert_eq!(snapshot.uplink.len(), 1);
        assert_eq!(snapshot.errors, 0);
    }

    #[test]
    fn timing_a_busy_closure_counts_its_cpu_time() {
        // Spins until this thread has used 5 ms of CPU (however busy the machine is).
        let ((), timing) = timed(|| {
            let start = thread_cpu_time();
            let mut x = 0u64;
            while thread_cpu_time() - start < Duration::from_millis(5) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        });
        assert!(timing.cpu >= Duration::from_millis(5), "{timing:?}");
        // The two clocks are read a few microseconds apart: wall time can trail CPU time by
        // that much, never by more.
        assert!(
            timing.wall + Duration::from_millis(1) >= timing.cpu,
            "{timing:?}"
        );
    }
}
