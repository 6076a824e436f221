//! Loads the embedded eBPF object, attaches its programs and reads its maps.
//!
//! The object is built from the `ebpf` crate by the agent's build script and embedded in the
//! binary, so an agent always runs exactly the programs it was built with.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, MapError, MapType, PerCpuArray, PerCpuHashMap},
    pin::PinError,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, Program,
        ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
        tc,
        xdp::XdpLink,
    },
};
use skiff_ebpf_common::{
    CgroupNetCounters, CgroupNetKey, FlowCounter, LbEvent, PacketClass, PacketCounter, ServiceKey,
};

/// The eBPF object built from the `ebpf` crate.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("SKIFF_EBPF_OBJECT"));

/// The XDP program on a node's uplink.
pub const XDP_UPLINK: &str = "xdp_uplink";
/// The XDP program that passes everything (for veth peers, and as a baseline).
pub const XDP_PASS: &str = "xdp_pass";
/// The TC egress program on a node's uplink (reverse NAT of local backends' replies).
pub const TC_UPLINK_EGRESS: &str = "tc_uplink_egress";
/// The TC twin of the uplink XDP program, for interfaces where XDP does not pay.
pub const TC_UPLINK_INGRESS: &str = "tc_uplink_ingress";
/// Per-class packet counters of the uplink program.
pub const UPLINK_STATS: &str = "UPLINK_STATS";
/// The socket load-balancing programs, attached to the node's cgroup subtree.
pub const SOCK_PROGRAMS: [&str; 4] = [
    "sock_connect4",
    "sock_sendmsg4",
    "sock_recvmsg4",
    "sock_getpeername4",
];
/// Drops a closing socket's reverse entry; attached with the socket load balancer.
pub const SOCK_RELEASE: &str = "sock_release";
/// The per-cgroup traffic counters, attached to the node's cgroup subtree (ingress, egress).
pub const CGROUP_SKB_PROGRAMS: [(&str, CgroupSkbAttachType); 2] = [
    ("cgroup_skb_ingress", CgroupSkbAttachType::Ingress),
    ("cgroup_skb_egress", CgroupSkbAttachType::Egress),
];
/// Cgroup id -> packets and bytes received and sent, per CPU.
pub const CGROUP_NET_STATS: &str = "CGROUP_NET_STATS";
/// Service address -> service entry.
pub const SERVICES: &str = "SERVICES";
/// Backend id -> backend.
pub const BACKENDS: &str = "BACKENDS";
/// The Maglev tables, one slot after another.
pub const MAGLEV: &str = "MAGLEV";
/// Socket reverse NAT (socket, backend) -> service address.
pub const SOCK_REV: &str = "SOCK_REV";
/// Session affinity (client, service) -> backend.
pub const AFFINITY: &str = "AFFINITY";
/// XDP conntrack.
pub const CONNTRACK: &str = "CONNTRACK";
/// This node's pods: pod address -> its veth (see `endpoints`).
pub const LOCAL_ENDPOINTS: &str = "LOCAL_ENDPOINTS";
/// Load-balancing event counters.
pub const LB_STATS: &str = "LB_STATS";
/// Flows, packets and bytes per backend id.
pub const BACKEND_STATS: &str = "BACKEND_STATS";
/// Flows, packets and bytes per service address.
pub const SERVICE_STATS: &str = "SERVICE_STATS";
/// The maps that hold the data plane's state and are pinned so that they outlive the agent
/// (the traffic counters too, so that they keep counting up across agent restarts).
pub const PINNED_MAPS: [&str; 10] = [
    SERVICES,
    BACKENDS,
    MAGLEV,
    SOCK_REV,
    AFFINITY,
    CONNTRACK,
    LOCAL_ENDPOINTS,
    CGROUP_NET_STATS,
    BACKEND_STATS,
    SERVICE_STATS,
];

/// Errors from loading, attaching or reading the data plane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the eBPF object")]
    Load(#[source] Box<aya::EbpfError>),
    #[error(
        "the LOCAL_ENDPOINTS map is full ({capacity} pods); pods beyond it are reached through \
         the node's stack; raise --dataplane-max-local-pods"
    )]
    LocalPodsFull { capacity: u32 },
    #[error("the eBPF object has no program `{name}`")]
    MissingProgram { name: &'static str },
    #[error("program `{name}`")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("attaching XDP to interface `{interface}` (tried native and generic mode)")]
    AttachXdp {
        interface: String,
        #[source]
        source: ProgramError,
    },
    #[error("attaching `{name}` to cgroup {cgroup}")]
    AttachCgroup {
        name: &'static str,
        cgroup: PathBuf,
        #[source]
        source: ProgramError,
    },
    #[error("opening cgroup {cgroup}; it must be a cgroup v2 directory (see --cgroup-root)")]
    OpenCgroup {
        cgroup: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pinning the link of `{name}` at {path}")]
    PinLink {
        name: &'static str,
        path: PathBuf,
        #[source]
        source: PinError,
    },
    #[error("taking over the pinned link {path} of a previous agent")]
    AdoptLink {
        path: PathBuf,
        #[source]
        source: LinkError,
    },
    #[error("unpinning the previous agent's link {path}")]
    UnpinLink {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating the link pin directory {path}")]
    LinkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("attaching TC egress to interface `{interface}`")]
    AttachTc {
        interface: String,
        #[source]
        source: ProgramError,
    },
    #[error("the eBPF object has no map `{name}`")]
    MissingMap { name: &'static str },
    #[error("map `{name}`")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
}

/// Which hook runs the uplink's ingress program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UplinkHook {
    /// TC on virtual interfaces (veth, tun): native XDP there copies every cloned TCP skb
    /// and costs more than it saves. XDP in the driver elsewhere, TC when that fails.
    #[default]
    Auto,
    /// XDP, in the driver when it can, else generic XDP.
    Xdp,
    /// TC ingress.
    Tc,
}

/// How the uplink's ingress program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UplinkMode {
    /// XDP in the driver, before the kernel allocates a socket buffer.
    Native,
    /// Generic XDP in the network stack, for devices whose driver lacks XDP.
    Generic,
    /// TC ingress (the clsact hook).
    Tc,
    /// A previous agent's pinned XDP link now runs this agent's program, in that link's mode.
    Replaced,
}

/// Where to load the programs and how.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// A bpffs directory under which maps are pinned, so that they outlive the agent. An
    /// already pinned map is adopted as it is (with its contents and its size).
    pub pin_path: Option<PathBuf>,
    /// How big the load-balancing maps are.
    pub sizes: MapSizes,
    /// This node's address: the source XDP gives packets it forwards to another node.
    /// Without it, NodePort traffic only reaches backends on this node.
    pub node_addr: Option<std::net::Ipv4Addr>,
}

/// Capacities of the load-balancing maps (from the agent's configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// Service entries (one per address, port and protocol).
    pub services: u32,
    /// Backends over all services.
    pub backends: u32,
    /// Entries per Maglev table: a prime (see `maglev::TABLE_SIZES`).
    pub maglev_table_size: u32,
    /// Maglev tables: each service holds one, plus one while it is being replaced.
    pub maglev_tables: u32,
    /// Socket reverse-NAT, affinity and conntrack entries (LRU).
    pub flows: u32,
    /// Pods on this node the uplink can hand packets to directly (`LOCAL_ENDPOINTS`).
    pub local_pods: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            services: 4096,
            backends: 16384,
            maglev_table_size: crate::dataplane::maglev::DEFAULT_TABLE_SIZE,
            maglev_tables: 256,
            flows: 65536,
            local_pods: 1024,
        }
    }
}

/// The loaded programs and maps of one node.
#[derive(Debug)]
pub struct Dataplane {
    ebpf: Ebpf,
    pin_path: Option<PathBuf>,
    /// Socket LB links pinned under `pin_path/links`: they stay attached when the agent
    /// exits, so forwarding goes on until the next agent replaces them.
    pinned_links: Vec<PinnedLink>,
}

impl Dataplane {
    /// Loads the embedded object into the kernel (programs are verified here).
    ///
    /// # Errors
    /// When the kernel rejects a program or a map cannot be created or pinned.
    pub fn load(options: &LoadOptions) -> Result<Self, DataplaneError> {
        let sizes = options.sizes;
        let table_entries = sizes.maglev_table_size.saturating_mul(sizes.maglev_tables);
        let node_addr = options
            .node_addr
            .map_or(0, |ip| u32::from_ne_bytes(ip.octets()));
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(SERVICES, sizes.services)
            // Slot 0 is never used: `backends` slots after it.
            .map_max_entries(BACKENDS, sizes.backends.saturating_add(1))
            .map_max_entries(BACKEND_STATS, sizes.backends.saturating_add(1))
            .map_max_entries(SERVICE_STATS, sizes.services)
            .map_max_entries(MAGLEV, table_entries)
            .map_max_entries(SOCK_REV, sizes.flows)
            .map_max_entries(AFFINITY, sizes.flows)
            .map_max_entries(CONNTRACK, sizes.flows)
            .map_max_entries(LOCAL_ENDPOINTS, sizes.local_pods)
            .override_global("MAGLEV_TABLE_SIZE", &sizes.maglev_table_size, true)
            .override_global("NODE_ADDR", &node_addr, true);
        if let Some(pin_path) = &options.pin_path {
            for name in PINNED_MAPS {
                let path = pin_path.join(name);
                discard_if_incompatible(name, &path);
                loader.map_pin_path(name, path);
            }
        }
        let mut ebpf = loader
            .load(OBJECT)
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;
        for name in [XDP_UPLINK, XDP_PASS] {
            program::<Xdp>(&mut ebpf, name)?
                .load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        for name in SOCK_PROGRAMS {
            program::<CgroupSockAddr>(&mut ebpf, name)?
                .load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        program::<CgroupSock>(&mut ebpf, SOCK_RELEASE)?
            .load()
            .map_err(|source| DataplaneError::Program {
                name: SOCK_RELEASE,
                source,
            })?;
        for (name, _) in CGROUP_SKB_PROGRAMS {
            program::<CgroupSkb>(&mut ebpf, name)?
                .load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        for name in [TC_UPLINK_INGRESS, TC_UPLINK_EGRESS] {
            program::<SchedClassifier>(&mut ebpf, name)?
                .load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        Ok(Self {
            ebpf,
            pin_path: options.pin_path.clone(),
            pinned_links: Vec::new(),
        })
    }

    /// Attaches the socket load balancer to the cgroup v2 directory `cgroup` (the node's
    /// subtree, never the root cgroup): every socket of a process below it connects to
    /// backends instead of service addresses. Other programs on the cgroup stay attached.
    ///
    /// Without a pin path the programs stay attached until this `Dataplane` is dropped.
    /// With one, each link is pinned at `<pin path>/links/<program>` and outlives the agent;
    /// a link a previous agent pinned there is replaced only once the new one is attached,
    /// so no connection is ever made without the socket load balancer.
    ///
    /// # Errors
    /// When the cgroup cannot be opened or a program cannot be attached or pinned.
    pub fn attach_socket_lb(&mut self, cgroup: &Path) -> Result<(), DataplaneError> {
        let dir = File::open(cgroup).map_err(|source| DataplaneError::OpenCgroup {
            cgroup: cgroup.to_path_buf(),
            source,
        })?;
        let link_dir = self.link_dir()?;
        for name in SOCK_PROGRAMS {
            self.attach_to_cgroup::<CgroupSockAddr>(name, &dir, cgroup, link_dir.as_deref())?;
        }
        self.attach_to_cgroup::<CgroupSock>(SOCK_RELEASE, &dir, cgroup, link_dir.as_deref())
    }

    /// Attaches the cgroup program `name` to `dir` (the cgroup at `cgroup`) through a
    /// bpf_link, which never replaces another program on the cgroup (links take no
    /// BPF_F_ALLOW_MULTI flag: the kernel refuses one), and pins the link under `link_dir`
    /// when there is one (see [`Dataplane::keep_link`]).
    fn attach_to_cgroup<P: SocketCgroupProgram>(
        &mut self,
        name: &'static str,
        dir: &File,
        cgroup: &Path,
        link_dir: Option<&Path>,
    ) -> Result<(), DataplaneError>
    where
        for<'a> &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
    {
        let program = program::<P>(&mut self.ebpf, name)?;
        let attach_err = |source| DataplaneError::AttachCgroup {
            name,
            cgroup: cgroup.to_path_buf(),
            source,
        };
        let id = program.attach_single(dir).map_err(attach_err)?;
        let Some(link_dir) = link_dir else {
            return Ok(());
        };
        let link = program.take(id).map_err(attach_err)?;
        self.keep_link(link_dir, name, link)
    }

    /// Pins a cgroup program's link, taken from its program, at `<link_dir>/<name>` (see
    /// [`Dataplane::attach_socket_lb`]). Without a pin path links are not taken: the
    /// programs own them and stay attached until this `Dataplane` is dropped.
    fn keep_link<L>(
        &mut self,
        link_dir: &Path,
        name: &'static str,
        link: L,
    ) -> Result<(), DataplaneError>
    where
        L: TryInto<FdLink, Error = LinkError>,
    {
        let path = link_dir.join(name);
        let link = fd_link(link, &path)?;
        self.pinned_links.push(pin_replacing(name, &path, link)?);
        Ok(())
    }

    /// Attaches the traffic counters (cgroup_skb ingress and egress) to the cgroup v2
    /// directory `cgroup` (the node's subtree, never the root cgroup): every packet a
    /// socket below it sends or receives is counted under the socket's cgroup, and allowed.
    /// Links are kept and pinned as in [`Dataplane::attach_socket_lb`].
    ///
    /// # Errors
    /// When the cgroup cannot be opened or a program cannot be attached or pinned.
    pub fn attach_cgroup_stats(&mut self, cgroup: &Path) -> Result<(), DataplaneError> {
        let dir = File::open(cgroup).map_err(|source| DataplaneError::OpenCgroup {
            cgroup: cgroup.to_path_buf(),
            source,
        })?;
        let link_dir = self.link_dir()?;
        for (name, attach_type) in CGROUP_SKB_PROGRAMS {
            let program = program::<CgroupSkb>(&mut self.ebpf, name)?;
            let attach_err = |source| DataplaneError::AttachCgroup {
                name,
                cgroup: cgroup.to_path_buf(),
                source,
            };
            // A bpf_link, like the socket LB's: other programs on the cgroup stay.
            let id = program
                .attach(&dir, attach_type, CgroupAttachMode::Single)
                .map_err(attach_err)?;
            let Some(link_dir) = &link_dir else { continue };
            let link = program.take_link(id).map_err(attach_err)?;
            self.keep_link(link_dir, name, link)?;
        }
        Ok(())
    }

    /// The traffic counters of every cgroup seen, summed over CPUs, by cgroup id.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn cgroup_net_stats(
        &self,
    ) -> Result<std::collections::HashMap<u64, CgroupNetCounters>, DataplaneError> {
        let map = self
            .ebpf
            .map(CGROUP_NET_STATS)
            .ok_or(DataplaneError::MissingMap {
                name: CGROUP_NET_STATS,
            })?;
        let map_err = |source| DataplaneError::Map {
            name: CGROUP_NET_STATS,
            source,
        };
        let stats =
            PerCpuHashMap::<_, CgroupNetKey, CgroupNetCounters>::try_from(map).map_err(map_err)?;
        let mut totals = std::collections::HashMap::new();
        for entry in stats.iter() {
            // An entry evicted between the key walk and its lookup is skipped.
            let Ok((key, per_cpu)) = entry else { continue };
            let mut total = CgroupNetCounters::default();
            per_cpu.iter().for_each(|c| total.merge(c));
            totals.insert(key.cgroup_id, total);
        }
        Ok(totals)
    }

    /// A cgroup_skb program (`cgroup_skb_ingress` or `cgroup_skb_egress`), e.g. to run it
    /// with `BPF_PROG_TEST_RUN`.
    ///
    /// # Errors
    /// When the object has no such program.
    pub fn cgroup_skb_program(
        &mut self,
        name: &'static str,
    ) -> Result<&mut CgroupSkb, DataplaneError> {
        program::<CgroupSkb>(&mut self.ebpf, name)
    }

    /// Takes a map out of the loaded object, e.g. to hand it to the map writer.
    ///
    /// # Errors
    /// When the object has no such map or it was already taken.
    pub fn take_map(&mut self, name: &'static str) -> Result<aya::maps::Map, DataplaneError> {
        self.ebpf
            .take_map(name)
            .ok_or(DataplaneError::MissingMap { name })
    }

    /// The load-balancing event counters, summed over CPUs.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn lb_stats(&self) -> Result<Vec<(LbEvent, u64)>, DataplaneError> {
        let map = self
            .ebpf
            .map(LB_STATS)
            .ok_or(DataplaneError::MissingMap { name: LB_STATS })?;
        let map_err = |source| DataplaneError::Map {
            name: LB_STATS,
            source,
        };
        let stats = PerCpuArray::<_, u64>::try_from(map).map_err(map_err)?;
        LbEvent::ALL
            .iter()
            .map(|&event| {
                let per_cpu = stats.get(&(event as u32), 0).map_err(map_err)?;
                Ok((event, per_cpu.iter().sum()))
            })
            .collect()
    }

    /// Attaches the uplink programs to `interface` (in the calling thread's network
    /// namespace): the ingress program at the hook `hook` picks, and TC egress for reverse
    /// NAT.
    ///
    /// Without a pin path they stay attached until this `Dataplane` is dropped. With one,
    /// their links are pinned under `<pin path>/links` and outlive the agent; a previous
    /// agent's XDP link has its program swapped atomically (keeping its mode), and its TC
    /// links are released once the new ones are attached, so forwarding never stops. A
    /// previous agent's ingress program at the other hook is released likewise.
    ///
    /// # Errors
    /// When the interface does not exist or a program cannot be attached or pinned.
    pub fn attach_uplink(
        &mut self,
        interface: &str,
        hook: UplinkHook,
    ) -> Result<UplinkMode, DataplaneError> {
        let link_dir = self.link_dir()?;
        // clsact may already be there (a previous agent's); that is fine.
        let _ = tc::qdisc_add_clsact(interface);
        self.attach_tc(interface, TC_UPLINK_EGRESS, TcAttachType::Egress, &link_dir)?;
        let use_tc = match hook {
            UplinkHook::Tc => true,
            UplinkHook::Xdp => false,
            UplinkHook::Auto => is_virtual(interface),
        };
        let mode = if use_tc {
            self.attach_tc(
                interface,
                TC_UPLINK_INGRESS,
                TcAttachType::Ingress,
                &link_dir,
            )?;
            UplinkMode::Tc
        } else {
            match self.attach_xdp(interface, &link_dir) {
                Ok(mode) => mode,
                Err(error) if hook == UplinkHook::Auto => {
                    tracing::warn!(interface, %error, "XDP cannot attach; using TC ingress");
                    self.attach_tc(
                        interface,
                        TC_UPLINK_INGRESS,
                        TcAttachType::Ingress,
                        &link_dir,
                    )?;
                    UplinkMode::Tc
                }
                Err(error) => return Err(error),
            }
        };
        // The ingress program at the other hook, if a previous agent left one, goes now.
        if let Some(dir) = &link_dir {
            let other = if mode == UplinkMode::Tc {
                XDP_UPLINK
            } else {
                TC_UPLINK_INGRESS
            };
            let path = dir.join(other);
            if let Ok(previous) = PinnedLink::from_pin(&path) {
                previous
                    .unpin()
                    .map_err(|source| DataplaneError::UnpinLink { path, source })?;
            }
        }
        Ok(mode)
    }

    /// Attaches the TC program `name` at `direction` of `interface`, pinned (replacing a
    /// previous agent's) when there is a link directory.
    fn attach_tc(
        &mut self,
        interface: &str,
        name: &'static str,
        direction: TcAttachType,
        link_dir: &Option<PathBuf>,
    ) -> Result<(), DataplaneError> {
        let program = program::<SchedClassifier>(&mut self.ebpf, name)?;
        let tc_err = |source| DataplaneError::AttachTc {
            interface: interface.to_string(),
            source,
        };
        let id = program.attach(interface, direction).map_err(tc_err)?;
        if let Some(dir) = link_dir {
            let path = dir.join(name);
            let link = fd_link(program.take_link(id).map_err(tc_err)?, &path)?;
            self.pinned_links.push(pin_replacing(name, &path, link)?);
        }
        Ok(())
    }

    /// Attaches the uplink XDP program: into a previous agent's pinned link, else in the
    /// driver, else generically.
    fn attach_xdp(
        &mut self,
        interface: &str,
        link_dir: &Option<PathBuf>,
    ) -> Result<UplinkMode, DataplaneError> {
        let xdp = program::<Xdp>(&mut self.ebpf, XDP_UPLINK)?;
        let xdp_err = |source| DataplaneError::AttachXdp {
            interface: interface.to_string(),
            source,
        };
        let path = link_dir.as_ref().map(|dir| dir.join(XDP_UPLINK));
        if let Some(path) = &path
            && let Ok(previous) = PinnedLink::from_pin(path)
        {
            // The pin stays; only the program behind the link changes.
            let link = XdpLink::try_from(FdLink::from(previous)).map_err(|source| {
                DataplaneError::AdoptLink {
                    path: path.clone(),
                    source,
                }
            })?;
            match xdp.attach_to_link(link) {
                Ok(_) => return Ok(UplinkMode::Replaced),
                Err(error) => {
                    // A link whose interface went away (ENOLINK: "severed") cannot be
                    // taken over: drop its pin and attach anew.
                    tracing::warn!(path = %path.display(), %error,
                        "the pinned XDP link cannot be adopted; attaching a new one");
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let (id, mode) = match xdp.attach(interface, XdpMode::Driver) {
            Ok(id) => (id, UplinkMode::Native),
            Err(_) => (
                xdp.attach(interface, XdpMode::Skb).map_err(xdp_err)?,
                UplinkMode::Generic,
            ),
        };
        if let Some(path) = &path {
            let link = fd_link(xdp.take_link(id).map_err(xdp_err)?, path)?;
            self.pinned_links
                .push(pin_replacing(XDP_UPLINK, path, link)?);
        }
        Ok(mode)
    }

    /// `<pin path>/links`, created if missing; `None` without a pin path.
    fn link_dir(&self) -> Result<Option<PathBuf>, DataplaneError> {
        let Some(pin_path) = &self.pin_path else {
            return Ok(None);
        };
        let path = pin_path.join("links");
        std::fs::create_dir_all(&path).map_err(|source| DataplaneError::LinkDir {
            path: path.clone(),
            source,
        })?;
        Ok(Some(path))
    }

    /// The uplink program's counters, summed over CPUs, one entry per packet class.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn uplink_stats(&self) -> Result<Vec<(PacketClass, PacketCounter)>, DataplaneError> {
        let map = self
            .ebpf
            .map(UPLINK_STATS)
            .ok_or(DataplaneError::MissingMap { name: UPLINK_STATS })?;
        let map_err = |source| DataplaneError::Map {
            name: UPLINK_STATS,
            source,
        };
        let stats = PerCpuArray::<_, PacketCounter>::try_from(map).map_err(map_err)?;
        PacketClass::ALL
            .iter()
            .map(|&class| {
                let per_cpu = stats.get(&(class as u32), 0).map_err(map_err)?;
                let mut total = PacketCounter::default();
                per_cpu.iter().for_each(|c| total.merge(c));
                Ok((class, total))
            })
            .collect()
    }

    /// The uplink XDP program, e.g. to run it with `BPF_PROG_TEST_RUN`.
    ///
    /// # Errors
    /// When the object has no such program.
    pub fn uplink_program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        program::<Xdp>(&mut self.ebpf, XDP_UPLINK)
    }

    /// The uplink's TC ingress program (the XDP program's twin), e.g. to run it with
    /// `BPF_PROG_TEST_RUN`.
    ///
    /// # Errors
    /// When the object has no such program.
    pub fn uplink_ingress_program(&mut self) -> Result<&mut SchedClassifier, DataplaneError> {
        program::<SchedClassifier>(&mut self.ebpf, TC_UPLINK_INGRESS)
    }

    /// The uplink's TC egress program, e.g. to run it with `BPF_PROG_TEST_RUN`.
    ///
    /// # Errors
    /// When the object has no such program.
    pub fn uplink_egress_program(&mut self) -> Result<&mut SchedClassifier, DataplaneError> {
        program::<SchedClassifier>(&mut self.ebpf, TC_UPLINK_EGRESS)
    }

    /// The pass-everything XDP program.
    ///
    /// # Errors
    /// When the object has no such program.
    pub fn pass_program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        program::<Xdp>(&mut self.ebpf, XDP_PASS)
    }
}

/// How full one pinned hash map is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapFill {
    pub name: &'static str,
    pub entries: u64,
    pub max_entries: u32,
}

/// What one housekeeping pass reads from the maps pinned under a path.
#[derive(Debug)]
pub struct PinnedStats {
    /// Entries and capacity of each pinned hash map (maps not pinned there, or unreadable,
    /// are left out).
    pub fill: Vec<MapFill>,
    /// What the load balancers sent each backend and service address.
    pub flows: Result<FlowStats, DataplaneError>,
}

/// A pinned hash map whose keys can be walked, whatever its value type.
trait KeyWalk: TryFrom<aya::maps::Map, Error = MapError> {
    /// How many keys a walk finds.
    fn key_count(&self) -> u64;
}

impl<K: aya::Pod, V: aya::Pod> KeyWalk for aya::maps::HashMap<MapData, K, V> {
    fn key_count(&self) -> u64 {
        self.keys().filter(Result::is_ok).count() as u64
    }
}

impl<K: aya::Pod, V: aya::Pod> KeyWalk for PerCpuHashMap<MapData, K, V> {
    fn key_count(&self) -> u64 {
        self.keys().filter(Result::is_ok).count() as u64
    }
}

/// Opens the map `name` pinned under `pin_path` as an `M`, with its capacity.
pub(super) fn open_pinned<M: TryFrom<aya::maps::Map, Error = MapError>>(
    pin_path: &Path,
    name: &'static str,
) -> Result<(M, u32), MapError> {
    let data = MapData::from_pin(pin_path.join(name))?;
    let max_entries = data.info()?.max_entries();
    Ok((
        M::try_from(aya::maps::Map::from_map_data(data)?)?,
        max_entries,
    ))
}

/// Entries and capacity of the hash map `name` pinned under `pin_path`, opened as an `M`.
fn fill_of<M: KeyWalk>(pin_path: &Path, name: &'static str) -> Option<MapFill> {
    let (map, max_entries) = open_pinned::<M>(pin_path, name).ok()?;
    Some(MapFill {
        name,
        entries: map.key_count(),
        max_entries,
    })
}

/// How full each map pinned under `pin_path` is, and the flow counters in them, walking
/// every map once: a few ms per 10k entries.
pub fn pinned_stats(pin_path: &Path) -> PinnedStats {
    use aya::maps::HashMap;
    use skiff_ebpf_common::{
        AffinityKey, AffinityValue, CtKey, CtValue, LocalEndpoint, ServiceValue, SockRevKey,
        SockRevValue,
    };
    /// Each key's counters summed over CPUs, and the map's fill.
    type Sums<K> = (std::collections::HashMap<K, FlowCounter>, MapFill);
    fn sums<K: aya::Pod + Eq + std::hash::Hash>(
        pin_path: &Path,
        name: &'static str,
    ) -> Result<Sums<K>, DataplaneError> {
        let (stats, max_entries) =
            open_pinned::<PerCpuHashMap<MapData, K, FlowCounter>>(pin_path, name)
                .map_err(|source| DataplaneError::Map { name, source })?;
        let mut totals = std::collections::HashMap::new();
        // An entry evicted between the key walk and its lookup is skipped.
        for (key, per_cpu) in stats.iter().flatten() {
            let mut total = FlowCounter::default();
            per_cpu.iter().for_each(|c| total.merge(c));
            totals.insert(key, total);
        }
        let fill = MapFill {
            name,
            entries: totals.len() as u64,
            max_entries,
        };
        Ok((totals, fill))
    }
    fn open<K: aya::Pod, V: aya::Pod>(
        pin_path: &Path,
        name: &'static str,
    ) -> Result<HashMap<MapData, K, V>, DataplaneError> {
        open_pinned(pin_path, name)
            .map(|(map, _)| map)
            .map_err(|source| DataplaneError::Map { name, source })
    }
    let by_backend = backend_sums(pin_path);
    let by_service = sums::<ServiceKey>(pin_path, SERVICE_STATS);
    let mut fill: Vec<MapFill> = [
        fill_of::<HashMap<MapData, ServiceKey, ServiceValue>>(pin_path, SERVICES),
        fill_of::<HashMap<MapData, SockRevKey, SockRevValue>>(pin_path, SOCK_REV),
        fill_of::<HashMap<MapData, AffinityKey, AffinityValue>>(pin_path, AFFINITY),
        fill_of::<HashMap<MapData, CtKey, CtValue>>(pin_path, CONNTRACK),
        fill_of::<HashMap<MapData, u32, LocalEndpoint>>(pin_path, LOCAL_ENDPOINTS),
        fill_of::<PerCpuHashMap<MapData, CgroupNetKey, CgroupNetCounters>>(
            pin_path,
            CGROUP_NET_STATS,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    fill.extend(by_backend.as_ref().ok().map(|(_, fill)| *fill));
    fill.extend(by_service.as_ref().ok().map(|(_, fill)| *fill));
    let flows = (|| -> Result<FlowStats, DataplaneError> {
        let services = open::<ServiceKey, ServiceValue>(pin_path, SERVICES)?;
        let (backends, _) = by_backend?;
        let (by_service, _) = by_service?;
        Ok(FlowStats {
            backends,
            services: by_service
                .into_iter()
                .filter(|(key, _)| services.get(key, 0).is_ok())
                .collect(),
        })
    })();
    PinnedStats { fill, flows }
}

/// Each backend the `BACKENDS` array pinned under `pin_path` holds, with its counters summed
/// over CPUs, and the array's fill.
fn backend_sums(
    pin_path: &Path,
) -> Result<(Vec<(skiff_ebpf_common::Backend, FlowCounter)>, MapFill), DataplaneError> {
    use skiff_ebpf_common::{Backend, service::backend_index};
    let (backends, slots) = open_pinned::<aya::maps::Array<MapData, Backend>>(pin_path, BACKENDS)
        .map_err(|source| DataplaneError::Map {
        name: BACKENDS,
        source,
    })?;
    let (stats, _) = open_pinned::<PerCpuArray<MapData, FlowCounter>>(pin_path, BACKEND_STATS)
        .map_err(|source| DataplaneError::Map {
            name: BACKEND_STATS,
            source,
        })?;
    let mut live = Vec::new();
    for backend in backends.iter().filter_map(Result::ok) {
        if backend.is_free() {
            continue;
        }
        let mut total = FlowCounter::default();
        if let Ok(per_cpu) = stats.get(&backend_index(backend.id), 0) {
            per_cpu.iter().for_each(|c| total.merge(c));
        }
        live.push((backend, total));
    }
    let fill = MapFill {
        name: BACKENDS,
        entries: live.len() as u64,
        // Slot 0 is never used.
        max_entries: slots.saturating_sub(1),
    };
    Ok((live, fill))
}

/// The flow counters of the backends and service addresses a node's maps hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub backends: Vec<(skiff_ebpf_common::Backend, FlowCounter)>,
    pub services: Vec<(ServiceKey, FlowCounter)>,
}

/// Type, key size and value size of each pinned map, as this agent's programs use them.
fn pinned_layout(name: &str) -> Option<(MapType, usize, usize)> {
    use skiff_ebpf_common::{
        AffinityKey, AffinityValue, Backend, CgroupNetCounters, CgroupNetKey, CtKey, CtValue,
        FlowCounter, LocalEndpoint, ServiceKey, ServiceValue, SockRevKey, SockRevValue,
    };
    fn of<K, V>(kind: MapType) -> (MapType, usize, usize) {
        (kind, size_of::<K>(), size_of::<V>())
    }
    Some(match name {
        SERVICES => of::<ServiceKey, ServiceValue>(MapType::Hash),
        BACKENDS => of::<u32, Backend>(MapType::Array),
        MAGLEV => of::<u32, u32>(MapType::Array),
        SOCK_REV => of::<SockRevKey, SockRevValue>(MapType::LruHash),
        AFFINITY => of::<AffinityKey, AffinityValue>(MapType::LruHash),
        CONNTRACK => of::<CtKey, CtValue>(MapType::LruHash),
        LOCAL_ENDPOINTS => of::<u32, LocalEndpoint>(MapType::Hash),
        CGROUP_NET_STATS => of::<CgroupNetKey, CgroupNetCounters>(MapType::LruPerCpuHash),
        BACKEND_STATS => of::<u32, FlowCounter>(MapType::PerCpuArray),
        SERVICE_STATS => of::<ServiceKey, FlowCounter>(MapType::LruPerCpuHash),
        _ => return None,
    })
}

/// Unpins a map a previous agent left whose layout differs from this agent's (an upgrade
/// that changed a type): it is made anew, and the running programs keep the old one until
/// they are replaced. Its entries are lost; service entries are rebuilt from the API.
fn discard_if_incompatible(name: &'static str, path: &Path) {
    let Ok(pinned) = MapData::from_pin(path) else {
        return;
    };
    let (Ok(info), Some((kind, key, value))) = (pinned.info(), pinned_layout(name)) else {
        return;
    };
    let pinned_kind = info.map_type().ok();
    if pinned_kind != Some(kind)
        || info.key_size() as usize != key
        || info.value_size() as usize != value
    {
        tracing::warn!(
            map = name,
            path = %path.display(),
            ?pinned_kind,
            pinned_key = info.key_size(),
            pinned_value = info.value_size(),
            ?kind,
            key,
            value,
            "a pinned map has another layout than this agent's; starting it afresh"
        );
        if let Err(error) = std::fs::remove_file(path) {
            tracing::warn!(%error, path = %path.display(), "unpinning the outdated map");
        }
    }
}

/// A program's link as a plain bpf_link, to pin it.
fn fd_link<L>(link: L, path: &Path) -> Result<FdLink, DataplaneError>
where
    L: TryInto<FdLink, Error = LinkError>,
{
    link.try_into().map_err(|source| DataplaneError::AdoptLink {
        path: path.to_path_buf(),
        source,
    })
}

/// Pins `link` at `path`; a link a previous agent pinned there is released only after, so
/// the hook is never without a program.
fn pin_replacing(
    name: &'static str,
    path: &Path,
    link: FdLink,
) -> Result<PinnedLink, DataplaneError> {
    let previous = match PinnedLink::from_pin(path) {
        Ok(pinned) => Some(pinned.unpin().map_err(|source| DataplaneError::UnpinLink {
            path: path.to_path_buf(),
            source,
        })?),
        Err(_) => None,
    };
    let pinned = link.pin(path).map_err(|source| DataplaneError::PinLink {
        name,
        path: path.to_path_buf(),
        source,
    })?;
    drop(previous);
    Ok(pinned)
}

/// Whether `interface` (in the calling thread's network namespace) is a veth or tun/tap
/// device, by its driver's name (`ETHTOOL_GDRVINFO`). Unknown counts as physical.
fn is_virtual(interface: &str) -> bool {
    matches!(driver_name(interface).as_deref(), Some("veth" | "tun"))
}

/// The driver of `interface`, as `ethtool -i` shows it.
fn driver_name(interface: &str) -> Option<String> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    /// `struct ethtool_drvinfo` (linux/ethtool.h).
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        counts: [u32; 5],
    }
    let name = interface.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: both are plain C structs for which all-zero bytes are valid.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    // SAFETY: as above.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in request.ifr_name.iter_mut().zip(name) {
        *to = *from as libc::c_char;
    }
    request.ifr_ifru.ifru_data = (&raw mut info).cast();
    // SAFETY: a plain socket call; the descriptor is closed below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return None;
    }
    // SAFETY: `request` points at `info`, which outlives the call, as SIOCETHTOOL expects.
    let rc = unsafe { libc::ioctl(socket, SIOCETHTOOL, &raw mut request) };
    // SAFETY: the descriptor was opened above and is not used after.
    unsafe { libc::close(socket) };
    if rc != 0 {
        return None;
    }
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// The socket load balancer's program types: attached to a cgroup with their attach type
/// fixed at load, their links pinned.
trait SocketCgroupProgram {
    type LinkId;
    type Link: TryInto<FdLink, Error = LinkError>;
    fn attach_single(&mut self, cgroup: &File) -> Result<Self::LinkId, ProgramError>;
    fn take(&mut self, id: Self::LinkId) -> Result<Self::Link, ProgramError>;
}

impl SocketCgroupProgram for CgroupSockAddr {
    type LinkId = aya::programs::cgroup_sock_addr::CgroupSockAddrLinkId;
    type Link = aya::programs::cgroup_sock_addr::CgroupSockAddrLink;
    fn attach_single(&mut self, cgroup: &File) -> Result<Self::LinkId, ProgramError> {
        self.attach(cgroup, CgroupAttachMode::Single)
    }
    fn take(&mut self, id: Self::LinkId) -> Result<Self::Link, ProgramError> {
        self.take_link(id)
    }
}

impl SocketCgroupProgram for CgroupSock {
    type LinkId = aya::programs::cgroup_sock::CgroupSockLinkId;
    type Link = aya::programs::cgroup_sock::CgroupSockLink;
    fn attach_single(&mut self, cgroup: &File) -> Result<Self::LinkId, ProgramError> {
        self.attach(cgroup, CgroupAttachMode::Single)
    }
    fn take(&mut self, id: Self::LinkId) -> Result<Self::Link, ProgramError> {
        self.take_link(id)
    }
}

/// The object's program `name`, as its type `P`.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, DataplaneError>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or(DataplaneError::MissingProgram { name })?;
    program
        .try_into()
        .map_err(|source| DataplaneError::Program { name, source })
}
