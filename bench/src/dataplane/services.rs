//! The benchmark's service set: n ClusterIP services with a NodePort and two endpoints
//! each, addressed the same way for every system measured.

use std::net::{Ipv4Addr, SocketAddrV4};

/// The pod CIDR: every endpoint lives in it (kube-proxy's `--cluster-cidr`).
pub const POD_CIDR: &str = "10.244.0.0/16";
/// The service CIDR (kube-apiserver's `--service-cluster-ip-range`).
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
/// The port every service listens on and the port every endpoint serves.
pub const SERVICE_PORT: u16 = 80;
pub const TARGET_PORT: u16 = 8080;
/// The first NodePort: 10,001 services need more than the default 30000-32767, as with
/// `--service-node-port-range=20000-32767`.
pub const FIRST_NODE_PORT: u16 = 20000;
/// Endpoints per service.
pub const ENDPOINTS: usize = 2;

/// One service of the set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub index: usize,
    pub cluster_ip: Ipv4Addr,
    pub node_port: u16,
    pub endpoints: Vec<Ipv4Addr>,
}

impl Service {
    /// Service `index`: its ClusterIP, NodePort and endpoints follow from the index.
    pub fn nth(index: usize) -> Self {
        let offset = u32::try_from(index).expect("fewer than 2^32 services");
        let cluster_ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + offset);
        let endpoints = (0..ENDPOINTS)
            .map(|j| {
                let e = index * ENDPOINTS + j;
                // 250 per /24 keeps clear of .0 and .255.
                Ipv4Addr::new(10, 244, 1 + (e / 250) as u8, 1 + (e % 250) as u8)
            })
            .collect();
        Self {
            index,
            cluster_ip,
            node_port: FIRST_NODE_PORT + u16::try_from(index).expect("fewer than 45,000 services"),
            endpoints,
        }
    }

    /// `namespace/name:port`, the way kube-proxy names a service port in comments.
    pub fn port_name(&self) -> String {
        format!("bench/svc-{}:http", self.index)
    }

    pub fn cluster_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.cluster_ip, SERVICE_PORT)
    }

    pub fn endpoint_addrs(&self) -> impl Iterator<Item = SocketAddrV4> + '_ {
        self.endpoints
            .iter()
            .map(|ip| SocketAddrV4::new(*ip, TARGET_PORT))
    }
}

/// Services `0..count`.
pub fn services(count: usize) -> Vec<Service> {
    (0..count).map(Service::nth).collect()
}

/// Up to `most` services spread evenly over the set (first and last included), so that a
/// load spreads over rules at the start, the middle and the end of linear chains.
pub fn sample(services: &[Service], most: usize) -> Vec<&Service> {
    if services.len() <= most {
        return services.iter().collect();
    }
    (0..most)
        .map(|k| &services[k * (services.len() - 1) / (most - 1)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_have_distinct_addresses_ports_and_endpoints_inside_their_ranges() {
        let all = services(10_001);
        let ips: std::collections::HashSet<_> = all.iter().map(|s| s.cluster_ip).collect();
        let ports: std::collections::HashSet<_> = all.iter().map(|s| s.node_port).collect();
        let eps: std::collections::HashSet<_> =
            all.iter().flat_map(|s| s.endpoints.clone()).collect();
        assert_eq!(
            (ips.len(), ports.len(), eps.len()),
            (10_001, 10_001, 20_002)
        );
        let last = &all[10_000];
        assert!(last.cluster_ip.octets()[..2] == [10, 96]);
        assert!(
            last.endpoints.iter().all(|e| e.octets()[..2] == [10, 244]
                && e.octets()[3] != 0
                && e.octets()[3] != 255)
        );
    }

    #[test]
    fn a_sample_spans_the_whole_set() {
        let all = services(1000);
        let picked = sample(&all, 16);
        assert_eq!(picked.len(), 16);
        assert_eq!((picked[0].index, picked[15].index), (0, 999));
        assert_eq!(sample(&all[..3], 16).len(), 3);
    }
}
