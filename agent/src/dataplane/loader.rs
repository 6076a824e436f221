//! Loads the embedded eBPF object, attaches its programs and reads its maps.
//!
//! The object is built from the `ebpf` crate by the agent's build script and embedded in the
//! binary, so an agent always runs exactly the programs it was built with.

use std::path::PathBuf;

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapError, PerCpuArray},
    programs::{ProgramError, Xdp, XdpMode},
};
use skiff_ebpf_common::{PacketClass, PacketCounter};

/// The eBPF object built from the `ebpf` crate.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("SKIFF_EBPF_OBJECT"));

/// The XDP program on a node's uplink.
pub const XDP_UPLINK: &str = "xdp_uplink";
/// The XDP program that passes everything (for veth peers, and as a baseline).
pub const XDP_PASS: &str = "xdp_pass";
/// Per-class packet counters of the uplink program.
pub const UPLINK_STATS: &str = "UPLINK_STATS";

/// Errors from loading, attaching or reading the data plane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the eBPF object")]
    Load(#[source] Box<aya::EbpfError>),
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
    #[error("the eBPF object has no map `{name}`")]
    MissingMap { name: &'static str },
    #[error("map `{name}`")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
}

/// How an XDP program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// In the driver, before the kernel allocates a socket buffer.
    Native,
    /// Generic XDP in the network stack, for devices whose driver lacks XDP.
    Generic,
}

/// Where to load the programs and how.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// A bpffs directory under which maps are pinned, so that they outlive the agent.
    pub pin_path: Option<PathBuf>,
}

/// The loaded programs and maps of one node.
#[derive(Debug)]
pub struct Dataplane {
    ebpf: Ebpf,
}

impl Dataplane {
    /// Loads the embedded object into the kernel (programs are verified here).
    ///
    /// # Errors
    /// When the kernel rejects a program or a map cannot be created or pinned.
    pub fn load(options: &LoadOptions) -> Result<Self, DataplaneError> {
        let mut loader = EbpfLoader::new();
        if let Some(pin_path) = &options.pin_path {
            loader.default_map_pin_directory(pin_path);
        }
        let mut ebpf = loader
            .load(OBJECT)
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;
        for name in [XDP_UPLINK, XDP_PASS] {
            xdp_program(&mut ebpf, name)?
                .load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        Ok(Self { ebpf })
    }

    /// Attaches the uplink program to `interface` (in the calling thread's network
    /// namespace), natively when the driver supports it, generically otherwise.
    ///
    /// The program stays attached until this `Dataplane` is dropped.
    ///
    /// # Errors
    /// When the interface does not exist or neither mode can be attached.
    pub fn attach_uplink(&mut self, interface: &str) -> Result<XdpAttachMode, DataplaneError> {
        let xdp = xdp_program(&mut self.ebpf, XDP_UPLINK)?;
        if xdp.attach(interface, XdpMode::Driver).is_ok() {
            return Ok(XdpAttachMode::Native);
        }
        match xdp.attach(interface, XdpMode::Skb) {
            Ok(_) => Ok(XdpAttachMode::Generic),
            Err(source) => Err(DataplaneError::AttachXdp {
                interface: interface.to_string(),
                source,
            }),
        }
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
        xdp_program(&mut self.ebpf, XDP_UPLINK)
    }

    /// The pass-everything XDP program.
    ///
    /// # Errors
    /// When the object has no such program.
    pub fn pass_program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        xdp_program(&mut self.ebpf, XDP_PASS)
    }
}

fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, DataplaneError> {
    let program = ebpf
        .program_mut(name)
        .ok_or(DataplaneError::MissingProgram { name })?;
    program
        .try_into()
        .map_err(|source| DataplaneError::Program { name, source })
}
