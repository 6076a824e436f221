//! Descriptions rendered from JSON fixtures, in UTC.

use jiff::{Timestamp, tz::TimeZone};
use serde_json::json;
use skiff_api::resources::resolve;

use super::*;

fn ctx() -> Context {
    Context {
        now: "2024-05-01T12:00:00Z".parse::<Timestamp>().unwrap(),
        tz: TimeZone::UTC,
    }
}

fn event(kind: &str, name: &str, reason: &str, message: &str, last: &str) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{name}.1"), "namespace": "default"},
        "involvedObject": {"kind": kind, "name": name},
        "type": "Normal",
        "reason": reason,
        "message": message,
        "firstTimestamp": "2024-05-01T11:50:00Z",
        "lastTimestamp": last,
        "count": 1,
        "source": {"component": "default-scheduler"},
    }))
    .unwrap()
}

#[test]
fn a_pod_description_shows_its_containers_conditions_and_events() {
    let pod = json!({
        "metadata": {
            "name": "web-1", "namespace": "default", "uid": "u1",
            "labels": {"app": "web"},
            "annotations": {LAST_APPLIED_KEY: "{}", "team": "shop"},
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [{
                "name": "web", "image": "skiff.local/web:1.0",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "MODE", "value": "fast"}],
            }],
        },
        "status": {
            "phase": "Running", "podIP": "10.1.0.5", "hostIP": "10.0.0.1", "qosClass": "BestEffort",
            "startTime": "2024-05-01T11:50:00Z",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            "containerStatuses": [{
                "name": "web", "ready": true, "restartCount": 0, "image": "skiff.local/web:1.0", "imageID": "",
                "state": {"running": {"startedAt": "2024-05-01T11:51:00Z"}},
            }],
        },
    });
    let related = Related {
        events: Some(vec![event(
            "Pod",
            "web-1",
            "Scheduled",
            "Successfully assigned default/web-1 to node-1",
            "2024-05-01T11:50:00Z",
        )]),
        ..Related::default()
    };
    let text = render(resolve("po").unwrap(), &pod, &related, &ctx());
    let expected_lines = [
        "Name:             web-1",
        "Namespace:        default",
        "Node:             node-1/10.0.0.1",
        "Start Time:       Wed, 01 May 2024 11:50:00 +0000",
        "Labels:           app=web",
        "Annotations:      team: shop",
        "Status:           Running",
        "IP:               10.1.0.5",
        "Containers:",
        "  web:",
        "    Image:          skiff.local/web:1.0",
        "    Port:           8080/TCP",
        "    State:          Running",
        "      Started:      Wed, 01 May 2024 11:51:00 +0000",
        "    Ready:          True",
        "      MODE:  fast",
        "  Type           Status",
        "  PodScheduled   True",
        "QoS Class:       BestEffort",
        "  Type    Reason     Age   From               Message",
        "  Normal  Scheduled  10m   default-scheduler  Successfully assigned default/web-1 to node-1",
    ];
    for line in expected_lines {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        !text.contains(LAST_APPLIED_KEY),
        "the last-applied manifest is hidden"
    );
}

const LAST_APPLIED_KEY: &str = crate::commands::apply::LAST_APPLIED;

#[test]
fn a_deployment_description_shows_replicas_and_strategy() {
    let deployment = json!({
        "metadata": {"name": "web", "namespace": "shop", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "50%"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "skiff.local/web:1.0"}]}},
        },
        "status": {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 2, "unavailableReplicas": 1},
    });
    let related = Related {
        events: Some(Vec::new()),
        ..Related::default()
    };
    let text = render(resolve("deploy").unwrap(), &deployment, &related, &ctx());
    for line in [
        "Name:                   web",
        "CreationTimestamp:      Wed, 01 May 2024 11:00:00 +0000",
        "Selector:               app=web",
        "Replicas:               3 desired | 3 updated | 3 total | 2 available | 1 unavailable",
        "StrategyType:           RollingUpdate",
        "RollingUpdateStrategy:  1 max unavailable, 50% max surge",
        "Pod Template:",
        "  Labels:  app=web",
        "      Image:        skiff.local/web:1.0",
        "Events:             <none>",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn a_service_description_shows_ports_and_ready_endpoints() {
    let service = json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}],
        },
    });
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-x"},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [
            {"addresses": ["10.1.0.5"], "conditions": {"ready": true}},
            {"addresses": ["10.1.0.6"], "conditions": {"ready": false}},
        ],
    }))
    .unwrap();
    let related = Related {
        endpoint_slices: vec![slice],
        ..Related::default()
    };
    let text = render(resolve("svc").unwrap(), &service, &related, &ctx());
    for line in [
        "Selector:                 app=web",
        "Type:                     NodePort",
        "IP:                       10.96.0.10",
        "Port:                     http  80/TCP",
        "TargetPort:               8080/TCP",
        "NodePort:                 http  30080/TCP",
        "Endpoints:                10.1.0.5:8080",
        "External Traffic Policy:  Cluster",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(!text.contains("Events"), "events were not asked for");
}

#[test]
fn events_about_another_object_of_the_same_name_are_left_out() {
    let object = json!({"metadata": {"name": "web", "uid": "u1"}});
    let deploy = resolve("deploy").unwrap();
    let mut same = event(
        "Deployment",
        "web",
        "ScalingReplicaSet",
        "",
        "2024-05-01T11:50:00Z",
    );
    assert!(is_about(&same, deploy, &object));
    same.involved_object.uid = Some("u2".into());
    assert!(
        !is_about(&same, deploy, &object),
        "an older object's events"
    );
    let other_kind = event("Service", "web", "Created", "", "2024-05-01T11:50:00Z");
    assert!(!is_about(&other_kind, deploy, &object));
}

#[test]
fn repeated_events_show_how_often_and_over_how_long() {
    let mut e = event(
        "Pod",
        "web-1",
        "BackOff",
        "Back-off",
        "2024-05-01T11:59:00Z",
    );
    e.count = Some(5);
    let mut w = Writer::new();
    write_events(&mut w, &[e], &ctx());
    assert!(
        w.render().contains("BackOff  60s (x5 over 10m)"),
        "{}",
        w.render()
    );
}

#[test]
fn other_kinds_are_described_as_a_tree_of_fields() {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "node-1", "namespace": "kube-node-lease", "uid": "u"},
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40},
    });
    let text = render(
        resolve("leases").unwrap(),
        &lease,
        &Related::default(),
        &ctx(),
    );
    for line in [
        "Name:         node-1",
        "API Version:  coordination.k8s.io/v1",
        "Kind:         Lease",
        "  UID:  u",
        "Spec:",
        "  Holder Identity:         node-1",
        "  Lease Duration Seconds:  40",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn a_secret_description_shows_sizes_not_values() {
    let secret = json!({"metadata": {"name": "token", "namespace": "default"}, "type": "Opaque", "data": {"t": "c2VjcmV0"}});
    let text = render(
        resolve("secret").unwrap(),
        &secret,
        &Related::default(),
        &ctx(),
    );
    assert!(text.contains("t:  6 bytes"), "{text}");
    assert!(!text.contains("c2VjcmV0") && !text.contains("secret\n"));
}
