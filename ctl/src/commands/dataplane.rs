//! `dataplane services|backends|conntrack`: a node's eBPF load-balancing state, read from the maps
//! its agent pinned (run on the node, as root, like `cilium bpf lb list`).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::{Path, PathBuf},
};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use clap::{Args, ValueEnum};
use skiff_ebpf_common::{
    Backend, CtKey, CtValue, FlowCounter, ServiceKey, ServiceValue,
    service::{
        BACKEND_LOCAL, BACKEND_TERMINATING, CT_FIN, CT_REPLY, CT_SNAT, PROTO_TCP, SERVICE_AFFINITY,
        SERVICE_EXTERNAL, SERVICE_EXTERNAL_LOCAL, SERVICE_INTERNAL_LOCAL, backend_index,
    },
};

use crate::{error::CtlError, printers};

/// `skiffctl dataplane`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  sudo skiffctl dataplane services\n  sudo skiffctl dataplane conntrack --bpffs /sys/fs/bpf/skiff"
)]
pub struct DataplaneArgs {
    /// What to show
    #[arg(value_enum)]
    pub what: View,
    /// The agent's bpffs directory (its --bpffs)
    #[arg(long, default_value = "/sys/fs/bpf/skiff")]
    pub bpffs: PathBuf,
    /// Entries per Maglev table (the agent's --maglev-table-size)
    #[arg(long, default_value_t = 16381)]
    pub maglev_table_size: u32,
}

/// The tables `dataplane` can show.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum View {
    /// Service addresses with their flags and backends
    Services,
    /// Backends with the flows, packets and bytes the load balancers sent them
    Backends,
    /// Flows the uplink XDP program tracks
    Conntrack,
}

/// Prints the requested view.
///
/// # Errors
/// When a pinned map cannot be opened or read.
pub fn run(args: &DataplaneArgs) -> Result<(), CtlError> {
    let text = match args.what {
        View::Services => {
            let services: HashMap<MapData, ServiceKey, ServiceValue> =
                open(&args.bpffs, "SERVICES", Map::HashMap)?;
            let maglev: Array<MapData, u32> = open(&args.bpffs, "MAGLEV", Map::Array)?;
            let services = collect(services.iter(), "SERVICES")?;
            let backends: BTreeMap<u32, Backend> = live_backends(&args.bpffs)?
                .into_iter()
                .map(|b| (b.id, b))
                .collect();
            let size = args.maglev_table_size;
            let tables = services
                .iter()
                .filter(|(_, v)| v.backend_count > 0)
                .map(|(_, v)| {
                    let ids: BTreeSet<u32> = (0..size)
                        .filter_map(|i| maglev.get(&(v.maglev_slot * size + i), 0).ok())
                        .collect();
                    (v.maglev_slot, ids)
                })
                .collect();
            services_table(&services, &backends, &tables)
        }
        View::Backends => {
            let stats: PerCpuArray<MapData, FlowCounter> =
                open(&args.bpffs, "BACKEND_STATS", Map::PerCpuArray)?;
            let mut counted = Vec::new();
            for backend in live_backends(&args.bpffs)? {
                let per_cpu = stats
                    .get(&backend_index(backend.id), 0)
                    .map_err(|e| CtlError::Usage(format!("reading the BACKEND_STATS map: {e}")))?;
                let mut total = FlowCounter::default();
                per_cpu.iter().for_each(|c| total.merge(c));
                counted.push((backend, total));
            }
            backends_table(&counted)
        }
        View::Conntrack => {
            let conntrack: HashMap<MapData, CtKey, CtValue> =
                open(&args.bpffs, "CONNTRACK", Map::LruHashMap)?;
            conntrack_table(&collect(conntrack.iter(), "CONNTRACK")?)
        }
    };
    printers::write_stdout(&text);
    Ok(())
}

fn open<T>(dir: &Path, name: &str, kind: fn(MapData) -> Map) -> Result<T, CtlError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let path = dir.join(name);
    let data = MapData::from_pin(&path).map_err(|e| {
        CtlError::Usage(format!(
            "opening {}: {e}; is the agent running with --bpffs {} (and are you root)?",
            path.display(),
            dir.display()
        ))
    })?;
    T::try_from(kind(data))
        .map_err(|e| CtlError::Usage(format!("{} is not the expected map: {e}", path.display())))
}

/// The backends the `BACKENDS` array holds (its free slots left out).
fn live_backends(dir: &Path) -> Result<Vec<Backend>, CtlError> {
    let backends: Array<MapData, Backend> = open(dir, "BACKENDS", Map::Array)?;
    let slots: Vec<Backend> = backends
        .iter()
        .collect::<Result<_, _>>()
        .map_err(|e| CtlError::Usage(format!("reading the BACKENDS map: {e}")))?;
    Ok(slots.into_iter().filter(|b| !b.is_free()).collect())
}

fn collect<K, V>(
    entries: impl Iterator<Item = Result<(K, V), aya::maps::MapError>>,
    name: &str,
) -> Result<Vec<(K, V)>, CtlError> {
    entries
        .collect::<Result<_, _>>()
        .map_err(|e| CtlError::Usage(format!("reading the {name} map: {e}")))
}

fn addr(addr: u32, port: u16, proto: u8) -> String {
    let [a, b, c, d] = addr.to_ne_bytes();
    let proto = if proto == PROTO_TCP { "tcp" } else { "udp" };
    format!("{a}.{b}.{c}.{d}:{}/{proto}", u16::from_be(port))
}

fn service_flags(value: &ServiceValue) -> String {
    let mut flags = Vec::new();
    if value.flags & SERVICE_EXTERNAL != 0 {
        flags.push("external".to_string());
    }
    if value.flags & SERVICE_EXTERNAL_LOCAL != 0 {
        flags.push("externalTrafficPolicy=Local".to_string());
    }
    if value.flags & SERVICE_INTERNAL_LOCAL != 0 {
        flags.push("internalTrafficPolicy=Local".to_string());
    }
    if value.flags & SERVICE_AFFINITY != 0 {
        flags.push(format!("affinity={}s", value.affinity_timeout_secs));
    }
    if flags.is_empty() {
        "-".into()
    } else {
        flags.join(",")
    }
}

/// One line per service address: its flags and the backends its Maglev table names.
fn services_table(
    services: &[(ServiceKey, ServiceValue)],
    backends: &BTreeMap<u32, Backend>,
    tables: &BTreeMap<u32, BTreeSet<u32>>,
) -> String {
    let mut rows: Vec<[String; 4]> = services
        .iter()
        .map(|(key, value)| {
            let names: Vec<String> = if value.backend_count == 0 {
                vec!["(none: refused)".into()]
            } else {
                tables
                    .get(&value.maglev_slot)
                    .into_iter()
                    .flatten()
                    .map(|id| match backends.get(id) {
                        Some(b) => {
                            let mut name = addr(b.addr, b.port, b.proto);
                            if b.flags & BACKEND_LOCAL != 0 {
                                name.push_str(" (local)");
                            }
                            if b.flags & BACKEND_TERMINATING != 0 {
                                name.push_str(" (terminating)");
                            }
                            name
                        }
                        None => format!("#{id} (missing)"),
                    })
                    .collect()
            };
            [
                addr(key.addr, key.port, key.proto),
                value.service_id.to_string(),
                service_flags(value),
                names.join(", "),
            ]
        })
        .collect();
    rows.sort();
    table(["SERVICE", "ID", "FLAGS", "BACKENDS"], &rows)
}

/// One line per backend: its id, address, flags and what the load balancers sent it.
fn backends_table(backends: &[(Backend, FlowCounter)]) -> String {
    let mut sorted = backends.to_vec();
    sorted.sort_by_key(|(b, _)| b.id);
    let rows: Vec<[String; 6]> = sorted
        .iter()
        .map(|(b, total)| {
            let mut flags = Vec::new();
            if b.flags & BACKEND_LOCAL != 0 {
                flags.push("local");
            }
            if b.flags & BACKEND_TERMINATING != 0 {
                flags.push("terminating");
            }
            [
                b.id.to_string(),
                addr(b.addr, b.port, b.proto),
                if flags.is_empty() {
                    "-".into()
                } else {
                    flags.join(",")
                },
                total.flows.to_string(),
                total.packets.to_string(),
                total.bytes.to_string(),
            ]
        })
        .collect();
    table(
        ["ID", "BACKEND", "FLAGS", "FLOWS", "PACKETS", "BYTES"],
        &rows,
    )
}

/// One line per tracked flow direction.
fn conntrack_table(entries: &[(CtKey, CtValue)]) -> String {
    let mut rows: Vec<[String; 4]> = entries
        .iter()
        .map(|(key, value)| {
            let mut kind = match (value.flags & CT_REPLY != 0, value.flags & CT_SNAT != 0) {
                (false, false) => "forward",
                (false, true) => "forward+snat",
                (true, false) => "reply",
                (true, true) => "reply+snat",
            }
            .to_string();
            if value.flags & CT_FIN != 0 {
                kind.push_str(" (fin sent)");
            }
            let target = if value.flags & CT_REPLY != 0 {
                format!("from {}", addr(value.nat_addr, value.nat_port, key.proto))
            } else {
                format!("backend #{}", value.backend_id)
            };
            [
                addr(key.saddr, key.sport, key.proto),
                addr(key.daddr, key.dport, key.proto),
                kind,
                target,
            ]
        })
        .collect();
    rows.sort();
    table(["SOURCE", "DESTINATION", "DIRECTION", "TRANSLATION"], &rows)
}

fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}   ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_ebpf_common::service::PROTO_UDP;

    #[test]
    fn services_show_flags_and_the_backends_their_table_names() {
        let web = ServiceKey::new([10, 96, 0, 10], 80, PROTO_TCP);
        let dns = ServiceKey::new([10, 96, 0, 53], 53, PROTO_UDP);
        let services = vec![
            (
                web,
                ServiceValue {
                    service_id: 1,
                    maglev_slot: 0,
                    backend_count: 2,
                    flags: SERVICE_AFFINITY,
                    affinity_timeout_secs: 60,
                    pad: 0,
                },
            ),
            (
                dns,
                ServiceValue {
                    service_id: 2,
                    maglev_slot: u32::MAX,
                    ..ServiceValue::default()
                },
            ),
        ];
        let backends = BTreeMap::from([
            (
                1,
                Backend::new([10, 244, 0, 5], 8080, PROTO_TCP, BACKEND_LOCAL),
            ),
            (2, Backend::new([10, 244, 1, 5], 8080, PROTO_TCP, 0)),
        ]);
        let tables = BTreeMap::from([(0, BTreeSet::from([1, 2]))]);
        let text = services_table(&services, &backends, &tables);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("SERVICE"), "{text}");
        assert!(
            lines[1].contains("10.96.0.10:80/tcp")
                && lines[1].contains("affinity=60s")
                && lines[1].contains("10.244.0.5:8080/tcp (local), 10.244.1.5:8080/tcp"),
            "{text}"
        );
        assert!(lines[2].contains("10.96.0.53:53/udp") && lines[2].contains("(none: refused)"));
    }

    #[test]
    fn backends_show_their_flags_and_counters_in_id_order() {
        let with_id = |id, backend| Backend { id, ..backend };
        let backends = vec![
            (
                with_id(
                    7,
                    Backend::new([10, 244, 1, 5], 8080, PROTO_TCP, BACKEND_TERMINATING),
                ),
                FlowCounter::default(),
            ),
            (
                with_id(
                    3,
                    Backend::new([10, 244, 0, 5], 8080, PROTO_TCP, BACKEND_LOCAL),
                ),
                FlowCounter {
                    flows: 4,
                    packets: 40,
                    bytes: 4000,
                },
            ),
        ];
        let text = backends_table(&backends);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            ["ID", "BACKEND", "FLAGS", "FLOWS", "PACKETS", "BYTES"]
        );
        assert_eq!(
            lines[1],
            ["3", "10.244.0.5:8080/tcp", "local", "4", "40", "4000"]
        );
        assert_eq!(
            lines[2],
            ["7", "10.244.1.5:8080/tcp", "terminating", "0", "0", "0"]
        );
    }

    #[test]
    fn conntrack_shows_both_directions_of_a_flow_and_which_sent_a_fin() {
        let client = u32::from_ne_bytes([192, 0, 2, 10]);
        let node = u32::from_ne_bytes([198, 51, 100, 20]);
        let pod = u32::from_ne_bytes([10, 244, 0, 5]);
        let entries = vec![
            (
                CtKey {
                    saddr: client,
                    daddr: node,
                    sport: 40000u16.to_be(),
                    dport: 30080u16.to_be(),
                    proto: PROTO_TCP,
                    pad: [0; 3],
                },
                CtValue {
                    backend_id: 1,
                    ..CtValue::default()
                },
            ),
            (
                CtKey {
                    saddr: pod,
                    daddr: client,
                    sport: 8080u16.to_be(),
                    dport: 40000u16.to_be(),
                    proto: PROTO_TCP,
                    pad: [0; 3],
                },
                CtValue {
                    flags: CT_REPLY | CT_FIN,
                    nat_addr: node,
                    nat_port: 30080u16.to_be(),
                    ..CtValue::default()
                },
            ),
        ];
        let text = conntrack_table(&entries);
        assert!(text.contains("192.0.2.10:40000/tcp"), "{text}");
        assert!(
            text.contains("forward") && text.contains("backend #1"),
            "{text}"
        );
        assert!(
            text.contains("reply (fin sent)") && text.contains("from 198.51.100.20:30080/tcp"),
            "{text}"
        );
        assert!(!text.contains("forward (fin sent)"), "{text}");
    }
}
