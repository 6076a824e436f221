//! Pod addresses from the node's pod CIDR, one file per address in the state directory
//! (named by the address, holding the owner's pod UID), so allocations survive an agent
//! restart and two allocations can never hand out one address (the file is created with
//! O_EXCL). The network, the first host (kept for a gateway) and broadcast are never given.

use std::{
    collections::BTreeSet,
    io::Write,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use super::Cidr;

/// Errors from the address allocator.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("pod CIDR {cidr} has no free address left; remove pods or give the node a larger CIDR")]
    Exhausted { cidr: String },
    #[error("IPAM state in {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The first free address after `last` (wrapping), skipping `used` and the reserved ones.
pub fn next_free(
    cidr: Cidr,
    used: &BTreeSet<Ipv4Addr>,
    last: Option<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let base = u32::from(cidr.network);
    let size = cidr.size();
    // Offsets 2..size-1: not the network (0), the gateway (1) or broadcast (size-1).
    let usable = size.checked_sub(3)?;
    let start = last
        .filter(|ip| cidr.contains(*ip))
        .map_or(0, |ip| u32::from(ip) - base - 1);
    (0..usable)
        .map(|i| base + 2 + (start + i) % usable)
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))
}

/// The allocator over a directory.
#[derive(Debug)]
pub struct Ipam {
    cidr: Cidr,
    dir: PathBuf,
}

impl Ipam {
    /// Allocations of `cidr` kept in `dir`.
    ///
    /// # Errors
    /// When `dir` cannot be created.
    pub fn new(cidr: Cidr, dir: &Path) -> Result<Self, IpamError> {
        std::fs::create_dir_all(dir).map_err(|source| IpamError::Io {
            path: dir.into(),
            source,
        })?;
        Ok(Self {
            cidr,
            dir: dir.into(),
        })
    }

    /// The pod CIDR.
    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    fn entries(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let io = |source| IpamError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            if let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                let owner = std::fs::read_to_string(entry.path()).unwrap_or_default();
                out.push((ip, owner.trim().to_string()));
            }
        }
        Ok(out)
    }

    /// The address held by `owner`, if any.
    ///
    /// # Errors
    /// When the state cannot be read.
    pub fn lookup(&self, owner: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        Ok(self
            .entries()?
            .into_iter()
            .find(|(_, o)| o == owner)
            .map(|(ip, _)| ip))
    }

    /// Gives `owner` an address (the one it already holds, if any).
    ///
    /// # Errors
    /// [`IpamError::Exhausted`] when the CIDR is full.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        loop {
            let entries = self.entries()?;
            if let Some((ip, _)) = entries.iter().find(|(_, o)| o == owner) {
                return Ok(*ip);
            }
            let used: BTreeSet<Ipv4Addr> = entries.iter().map(|(ip, _)| *ip).collect();
            let last = std::fs::read_to_string(self.dir.join("last"))
                .ok()
                .and_then(|s| s.trim().parse().ok());
            let ip = next_free(self.cidr, &used, last).ok_or_else(|| IpamError::Exhausted {
                cidr: self.cidr.to_string(),
            })?;
            let path = self.dir.join(ip.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    file.write_all(owner.as_bytes())
                        .map_err(|source| IpamError::Io { path, source })?;
                    let _ = std::fs::write(self.dir.join("last"), ip.to_string());
                    return Ok(ip);
                }
                // Taken between the listing and now: look again.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(IpamError::Io { path, source }),
            }
        }
    }

    /// Releases whatever `owner` holds.
    ///
    /// # Errors
    /// When the state cannot be changed.
    pub fn release(&self, owner: &str) -> Result<(), IpamError> {
        for (ip, o) in self.entries()? {
            if o == owner {
                let path = self.dir.join(ip.to_string());
                std::fs::remove_file(&path).map_err(|source| IpamError::Io { path, source })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn allocation_skips_network_gateway_and_broadcast() {
        let c = cidr("10.244.1.0/30");
        // A /30 has one usable pod address: .2 (.1 is the gateway, .3 broadcast).
        let first = next_free(c, &BTreeSet::new(), None).unwrap();
        assert_eq!(first, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(next_free(c, &BTreeSet::from([first]), None), None);
    }

    #[test]
    fn allocation_continues_after_the_last_address_and_wraps() {
        let c = cidr("10.0.0.0/29");
        let used = BTreeSet::new();
        assert_eq!(
            next_free(c, &used, Some(Ipv4Addr::new(10, 0, 0, 3))),
            Some(Ipv4Addr::new(10, 0, 0, 4))
        );
        assert_eq!(
            next_free(c, &used, Some(Ipv4Addr::new(10, 0, 0, 6))),
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
    }

    #[test]
    fn cidrs_parse_to_their_network() {
        let c = cidr("10.244.7.9/24");
        assert_eq!(c.network, Ipv4Addr::new(10, 244, 7, 0));
        assert!(c.contains(Ipv4Addr::new(10, 244, 7, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 244, 8, 1)));
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("10.0.0.0/31".parse::<Cidr>().is_err());
    }

    proptest! {
        #[test]
        fn repeated_allocation_never_hands_out_an_address_twice(n in 1usize..300, prefix in 22u8..29) {
            let c = Cidr { network: Ipv4Addr::new(10, 1, 0, 0), prefix };
            let mut used = BTreeSet::new();
            let mut last = None;
            for _ in 0..n {
                match next_free(c, &used, last) {
                    Some(ip) => {
                        prop_assert!(c.contains(ip));
                        prop_assert!(used.insert(ip), "{} given twice", ip);
                        last = Some(ip);
                    }
                    None => {
                        prop_assert_eq!(used.len() as u32, c.size() - 3);
                        break;
                    }
                }
            }
        }
    }
}
