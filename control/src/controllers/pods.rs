//! What workload controllers ask of pods and owners, as Kubernetes' `controller_utils` and
//! `podutil` answer it: activity, readiness and availability, controller references, the
//! order in which pods are given up on scale-down, and pods stamped from a template.

use std::{cmp::Ordering, collections::BTreeMap};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use skiff_api::{
    k8s_openapi::{
        api::core::v1::{Pod, PodTemplateSpec},
        apimachinery::pkg::{
            apis::meta::v1::{ObjectMeta, OwnerReference},
            util::intstr::IntOrString,
        },
    },
    runtime::Writer,
};

/// The store index of objects by their controller's uid.
pub const BY_CONTROLLER: &str = "controller-uid";
/// The store index of objects by namespace.
pub const BY_NAMESPACE: &str = "namespace";

/// A pod store writer indexed by controller uid and namespace.
pub fn indexed_pods() -> Writer<Pod> {
    indexed(|p: &Pod| &p.metadata)
}

/// Any store writer indexed by controller uid and namespace.
pub fn indexed<T: serde::de::DeserializeOwned + 'static>(meta: fn(&T) -> &ObjectMeta) -> Writer<T> {
    Writer::new()
        .with_index(BY_CONTROLLER, move |o: &T| {
            controller_of(meta(o))
                .map(|r| vec![r.uid.clone()])
                .unwrap_or_default()
        })
        .with_index(BY_NAMESPACE, move |o: &T| {
            vec![meta(o).namespace.clone().unwrap_or_default()]
        })
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (controller and blockOwnerDeletion true).
pub fn controller_reference(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `meta` is marked for deletion.
pub fn is_terminating(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Kubernetes' `IsPodActive`: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !is_terminating(&pod.metadata)
}

/// Whether the pod's phase is `phase`.
pub fn has_phase(pod: &Pod, wanted: &str) -> bool {
    phase(pod) == wanted
}

/// When the pod's Ready condition turned True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (Kubernetes' `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since + SignedDuration::from_secs(min_ready_seconds.into()) <= now,
    }
}

/// How long until a ready pod becomes available, if it is ready and not yet available.
pub fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<SignedDuration> {
    let since = ready_since(pod)??;
    let at = since + SignedDuration::from_secs(min_ready_seconds.into());
    (at > now).then(|| at.duration_since(now))
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|c| c.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

fn phase_rank(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

/// Kubernetes' `ActivePods` order: the pod to give up first sorts first. Unscheduled
/// before scheduled, pending before unknown before running, not ready before ready, ready
/// for less time before more, more restarts before fewer, newer before older.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| {
            // Both ready: the one ready more recently goes first.
            match (ready_since(a).flatten(), ready_since(b).flatten()) {
                (Some(x), Some(y)) => y.cmp(&x),
                _ => Ordering::Equal,
            }
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            match (created(a), created(b)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => y.cmp(&x),
            }
        })
}

/// A pod (as JSON) from `template`, named `<generate_name>xxxxx`, controlled by `owner`,
/// with `extra_labels` added.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    generate_name: &str,
    owner: &OwnerReference,
) -> Value {
    let meta = template.metadata.clone().unwrap_or_default();
    let mut metadata = json!({
        "generateName": generate_name,
        "namespace": namespace,
        "ownerReferences": [owner],
    });
    if let Some(labels) = meta.labels.filter(|l| !l.is_empty()) {
        metadata["labels"] = json!(labels);
    }
    if let Some(annotations) = meta.annotations.filter(|a| !a.is_empty()) {
        metadata["annotations"] = json!(annotations);
    }
    if let Some(finalizers) = meta.finalizers.filter(|f| !f.is_empty()) {
        metadata["finalizers"] = json!(finalizers);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.spec.clone().unwrap_or_default(),
    })
}

/// `value` of `total` (an int, or a percent rounded up or down), like Kubernetes'
/// `GetScaledValueFromIntOrPercent`. A malformed percent counts as 0.
pub fn scaled_value(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(text)) => {
            let Some(percent) = text
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<i64>().ok())
            else {
                return text.parse().unwrap_or(0);
            };
            let scaled = percent * i64::from(total);
            let value = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(value).unwrap_or(i32::MAX)
        }
    }
}

/// Kubernetes' `ComputeHash` shape: FNV-32a of the template (plus a collision count), in
/// the alphabet of `SafeEncodeString` (no vowels, no look-alikes).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(count) = collision_count {
        bytes.extend_from_slice(&count.to_le_bytes());
    }
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|digit| char::from(ALPHABET[usize::from(digit) % ALPHABET.len()]))
        .collect()
}

/// The labels of `meta`, or none.
pub fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

#[cfg(test)]
pub mod testing {
    //! Pods and templates for controller unit tests.
    use skiff_api::{
        k8s_openapi::{
            api::core::v1::{Container, PodCondition, PodSpec, PodStatus},
            apimachinery::pkg::apis::meta::v1::Time,
        },
        runtime::{Event, Store},
    };

    use super::*;

    pub fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    pub fn template(labels: &[(&str, &str)], image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    /// A pod named `name` with `labels`, created at `created` seconds, owned by `owner`.
    pub fn pod(
        name: &str,
        labels: &[(&str, &str)],
        owner: Option<&OwnerReference>,
        created: i64,
    ) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("1".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                owner_references: owner.map(|o| vec![o.clone()]),
                creation_timestamp: Some(Time(at(created))),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            }),
        }
    }

    /// The pod bound to `node`, Running and Ready since `ready_at` seconds.
    pub fn ready(mut pod: Pod, node: &str, ready_at: i64) -> Pod {
        pod.spec.get_or_insert_with(Default::default).node_name = Some(node.into());
        let status = pod.status.get_or_insert_with(Default::default);
        status.phase = Some("Running".into());
        status.conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(at(ready_at))),
            ..Default::default()
        }]);
        pod
    }

    pub fn with_phase(mut pod: Pod, phase: &str) -> Pod {
        pod.status.get_or_insert_with(Default::default).phase = Some(phase.into());
        pod
    }

    /// A ready store holding `objects`.
    pub fn store<T: serde::Serialize + serde::de::DeserializeOwned>(
        mut writer: Writer<T>,
        objects: &[T],
    ) -> Store<T> {
        let store = writer.reader();
        writer.apply(Event::Restarted {
            objects: objects
                .iter()
                .map(|o| serde_json::to_value(o).unwrap())
                .collect(),
            resource_version: "1".into(),
        });
        store
    }
}

#[cfg(test)]
mod tests {
    use super::{testing::*, *};

    #[test]
    fn scale_down_gives_up_unscheduled_then_pending_then_not_ready_then_newest_ready() {
        let unscheduled = pod("unscheduled", &[], None, 0);
        let mut pending = pod("pending", &[], None, 0);
        pending.spec.as_mut().unwrap().node_name = Some("n1".into());
        let mut running = with_phase(pending.clone(), "Running");
        running.metadata.name = Some("running".into());
        let ready_recently = ready(pod("ready-recently", &[], None, 0), "n1", 50);
        let ready_long_ago = ready(pod("ready-long-ago", &[], None, 0), "n1", 10);
        let mut pods = [
            ready_long_ago,
            running,
            ready_recently,
            unscheduled,
            pending,
        ];
        pods.sort_by(deletion_order);
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending",
                "running",
                "ready-recently",
                "ready-long-ago"
            ]
        );
    }

    #[test]
    fn newer_pods_go_before_older_ones_when_all_else_is_equal() {
        let mut pods = [pod("old", &[], None, 1), pod("new", &[], None, 9)];
        pods.sort_by(deletion_order);
        assert_eq!(pods[0].metadata.name.as_deref(), Some("new"));
    }

    #[test]
    fn percentages_scale_with_kubernetes_rounding() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled_value(Some(&pct("25%")), 10, true), 3);
        assert_eq!(scaled_value(Some(&pct("25%")), 10, false), 2);
        assert_eq!(scaled_value(Some(&IntOrString::Int(4)), 10, false), 4);
        assert_eq!(scaled_value(None, 10, true), 0);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = ready(pod("p", &[], None, 0), "n", 100);
        assert!(!is_available(&p, 10, at(105)));
        assert_eq!(
            until_available(&p, 10, at(105)),
            Some(SignedDuration::from_secs(5))
        );
        assert!(is_available(&p, 10, at(110)));
        assert!(is_available(&p, 0, at(0)));
    }

    #[test]
    fn template_hashes_differ_by_template_and_collision_count_and_are_safe_text() {
        let a = template(&[("app", "a")], "img:1");
        let b = template(&[("app", "a")], "img:2");
        let hash = template_hash(&a, None);
        assert_eq!(hash, template_hash(&a, None));
        assert_ne!(hash, template_hash(&b, None));
        assert_ne!(hash, template_hash(&a, Some(1)));
        assert!(
            hash.bytes()
                .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c))
        );
    }
}
