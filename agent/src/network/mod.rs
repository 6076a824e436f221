//! Pod networking: a network namespace per pod (with its IPC and UTS namespaces, all
//! bind-mounted under the state directory so they outlive the agent), an address from the
//! node's pod CIDR, and a routed veth pair (no bridge): the host side has a /32 route to the
//! pod and answers ARP for everything by proxy; the pod's default route points out of eth0.

pub mod ipam;
pub mod namespaces;
pub mod routes;
pub mod veth;

use std::net::Ipv4Addr;

/// A pod's network as set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodNetwork {
    pub ip: Ipv4Addr,
}

/// An IPv4 CIDR (`10.244.1.0/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

/// Errors parsing a CIDR.
#[derive(Debug, thiserror::Error)]
pub enum CidrError {
    #[error("pod CIDR `{text}` is not an IPv4 CIDR like 10.244.1.0/24")]
    Malformed { text: String },
}

impl std::str::FromStr for Cidr {
    type Err = CidrError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || CidrError::Malformed { text: text.into() };
        let (ip, prefix) = text.split_once('/').ok_or_else(malformed)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| malformed())?;
        let prefix: u8 = prefix.parse().map_err(|_| malformed())?;
        if prefix > 30 {
            return Err(malformed());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Self {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// The number of addresses in the range.
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.network)
    }
}
