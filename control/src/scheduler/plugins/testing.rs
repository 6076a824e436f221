//! Fixtures for plugin tests: pods and nodes from JSON, with defaults filled in (a pod gets
//! a name, namespace and a container; a node gets a name, hostname label and roomy
//! allocatable resources unless given).

use std::sync::Arc;

use serde_json::{Value, json};
use skiff_api::k8s_openapi::api::core::v1::{Node, Pod};

use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;

/// Merges `patch` into `base` (objects recursively; anything else replaces).
pub(crate) fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// A pod object: `{"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [..]}}`
/// merged with `patch`.
pub(crate) fn pod_object(patch: Value) -> Pod {
    let mut base = json!({
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "app"}]}
    });
    merge(&mut base, patch);
    serde_json::from_value(base).expect("a valid pod fixture")
}

pub(crate) fn pod(patch: Value) -> PodInfo {
    PodInfo::new(Arc::new(pod_object(patch)))
}

/// A node object named `n` with 4 cpu, 8Gi and 110 pods allocatable, merged with `patch`;
/// the hostname label follows the name.
pub(crate) fn node_object(patch: Value) -> Node {
    let mut base = json!({
        "metadata": {"name": "n"},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
    });
    merge(&mut base, patch);
    let name = base["metadata"]["name"].clone();
    merge(
        &mut base,
        json!({"metadata": {"labels": {"kubernetes.io/hostname": name}}}),
    );
    serde_json::from_value(base).expect("a valid node fixture")
}

pub(crate) fn node(patch: Value) -> NodeInfo {
    NodeInfo::new(node_object(patch))
}

/// `node` with `pods` on it.
pub(crate) fn node_with(patch: Value, pods: Vec<PodInfo>) -> NodeInfo {
    let mut info = node(patch);
    for p in pods {
        info.add_pod(Arc::new(p));
    }
    info
}
