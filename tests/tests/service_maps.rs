//! Privileged tests of service sync against the kernel's maps: capacity limits give a
//! clear, counted error and never a half-written service (and a clear error for the local
//! endpoint map too).

use std::{collections::BTreeMap, net::Ipv4Addr};

use skiff_agent::{
    dataplane::{
        Dataplane, DataplaneError, LoadOptions, MapSizes,
        endpoints::LocalEndpoints,
        lb_maps::{KernelLbMaps, LbMaps},
        maglev::Maglev,
        services::{DesiredService, ServiceSync},
    },
    network::veth,
};
use skiff_ebpf_common::{Backend, LocalEndpoint, ServiceKey, service::PROTO_TCP};
use skiff_tests::{dataplane, require_root};

#[test]
fn privileged_a_full_backend_map_is_reported_with_the_flag_to_raise_and_counted() {
    require_root();
    let sizes = MapSizes {
        backends: 2,
        maglev_table_size: 251,
        maglev_tables: 4,
        ..MapSizes::default()
    };
    let mut dataplane = Dataplane::load(&LoadOptions {
        pin_path: None,
        sizes,
        node_addr: None,
    })
    .unwrap();
    let mut maps = KernelLbMaps::take(&mut dataplane, 251).unwrap();
    let mut sync = ServiceSync::adopt(&maps, Maglev::new(251, 1).unwrap()).unwrap();
    let backends: Vec<Backend> = (1..=3)
        .map(|i| Backend::new([10, 244, 0, i], 8080, PROTO_TCP, 0))
        .collect();
    let small = ServiceKey::new([10, 96, 0, 1], 80, PROTO_TCP);
    let big = ServiceKey::new([10, 96, 0, 2], 80, PROTO_TCP);
    let desired: BTreeMap<_, _> = [
        (
            small,
            DesiredService {
                backends: backends[..1].to_vec(),
                ..DesiredService::default()
            },
        ),
        (
            big,
            DesiredService {
                backends: backends.clone(),
                ..DesiredService::default()
            },
        ),
    ]
    .into_iter()
    .collect();
    let (_, errors) = sync.apply(&mut maps, &desired);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let mut message = errors[0].to_string();
    let mut source = std::error::Error::source(&errors[0]);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    assert!(message.contains("10.96.0.2:80/tcp"), "{message}");
    assert!(
        message.contains("BACKENDS map is full (2 entries)"),
        "{message}"
    );
    assert!(message.contains("--dataplane-max-backends"), "{message}");
    assert_eq!(sync.map_full_errors(), 1);
    let written: Vec<ServiceKey> = maps
        .services()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        written,
        vec![small],
        "the service that fits is live, the other absent"
    );
}

#[test]
fn privileged_a_pinned_map_with_an_older_layout_or_type_is_replaced_on_load_not_reused() {
    require_root();
    let pins = skiff_tests::pins::PinDir::new("skiffbpf").unwrap();
    let stale = pins.path().join("CONNTRACK");
    let stale_stats = pins.path().join("BACKEND_STATS");
    // What older agents left behind: a 24-byte conntrack value, and backend counters in a
    // hash map of the same key and value sizes as today's array.
    let create = |path: &std::path::Path, name: &str, kind: &str, key: &str, value: &str| {
        let output = std::process::Command::new("bpftool")
            .args(["map", "create"])
            .arg(path)
            .args(["type", kind, "key", key, "value", value, "entries", "16"])
            .args(["name", name])
            .output()
            .expect("running bpftool");
        assert!(
            output.status.success(),
            "bpftool map create: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    create(&stale, "CONNTRACK", "lru_hash", "16", "24");
    create(&stale_stats, "BACKEND_STATS", "lru_percpu_hash", "4", "24");
    let _dataplane = Dataplane::load(&LoadOptions {
        pin_path: Some(pins.path().to_path_buf()),
        sizes: MapSizes {
            maglev_table_size: 251,
            maglev_tables: 4,
            ..MapSizes::default()
        },
        node_addr: None,
    })
    .unwrap();
    let info = aya::maps::MapData::from_pin(&stale)
        .unwrap()
        .info()
        .unwrap();
    assert_eq!(
        info.value_size() as usize,
        size_of::<skiff_ebpf_common::CtValue>(),
        "a new map with this agent's layout is pinned in its place"
    );
    let info = aya::maps::MapData::from_pin(&stale_stats)
        .unwrap()
        .info()
        .unwrap();
    assert!(
        matches!(info.map_type(), Ok(aya::maps::MapType::PerCpuArray)),
        "a map of this agent's type is pinned in its place: {:?}",
        info.map_type()
    );
    assert!(pins.pinned().unwrap().contains(&"SERVICES".to_string()));
}

#[test]
fn privileged_more_local_pods_than_the_endpoint_map_holds_is_reported_with_the_flag_to_raise() {
    require_root();
    let sizes = MapSizes {
        local_pods: 2,
        ..dataplane::small_sizes()
    };
    let mut dataplane = dataplane::load_with(sizes, None).unwrap();
    let mut local = LocalEndpoints::take(&mut dataplane).unwrap();
    let wanted: BTreeMap<_, _> = (1..=3)
        .map(|i| {
            let pod = Ipv4Addr::new(10, 244, 0, i);
            let endpoint = LocalEndpoint {
                ifindex: u32::from(i) + 100,
                mac: veth::pod_mac(pod),
                node_mac: [2, 0, 0, 0, 0, i],
            };
            (pod, endpoint)
        })
        .collect();
    let error = local.reconcile(&wanted).unwrap_err();
    assert!(
        matches!(error, DataplaneError::LocalPodsFull { capacity: 2 }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("--dataplane-max-local-pods") && message.contains("2 pods"),
        "{message}"
    );
    // The pods that fit are registered; the third is reached through the stack.
    assert_eq!(local.entries().len(), 2);
}
