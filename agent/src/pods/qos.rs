//! A pod's QoS class (Guaranteed, Burstable, BestEffort) and the cgroup settings kubelet
//! derives from requests and limits: the per-pod parent cgroup in its QoS tier and its
//! pod-level limits, each container's CPU shares and quota, memory and pids limits.

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_api::validation::quantity::Quantity;

use crate::runtime::spec::Resources;

/// CFS period kubelet uses (100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest cpu.shares the kernel accepts (kubelet gives it to BestEffort).
pub const MIN_SHARES: u64 = 2;

/// A pod's quality-of-service class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The name in `status.qosClass`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Guaranteed => "Guaranteed",
            Self::Burstable => "Burstable",
            Self::BestEffort => "BestEffort",
        }
    }

    /// The tier's directory under `kubepods` (Guaranteed pods sit directly in it).
    pub fn tier(self) -> Option<&'static str> {
        match self {
            Self::Guaranteed => None,
            Self::Burstable => Some("burstable"),
            Self::BestEffort => Some("besteffort"),
        }
    }
}

fn quantity(container: &Container, kind: &str, resource: &str) -> Option<Quantity> {
    let resources = container.resources.as_ref()?;
    let map = if kind == "limits" {
        resources.limits.as_ref()?
    } else {
        resources.requests.as_ref()?
    };
    Quantity::parse(&map.get(resource)?.0).ok()
}

/// A container's request for `resource`, defaulting to its limit (as the API does).
fn request(container: &Container, resource: &str) -> Option<Quantity> {
    quantity(container, "requests", resource).or_else(|| quantity(container, "limits", resource))
}

/// The QoS class of `pod` by kubelet's rules: Guaranteed when every container has CPU and
/// memory limits equal to its requests, BestEffort when none has any, Burstable otherwise.
pub fn qos_class(pod: &Pod) -> QosClass {
    let Some(spec) = pod.spec.as_ref() else {
        return QosClass::BestEffort;
    };
    let containers: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for container in containers {
        for resource in ["cpu", "memory"] {
            let limit = quantity(container, "limits", resource);
            let req = request(container, resource);
            if limit.as_ref().is_some_and(|q| !q.is_zero())
                || req.as_ref().is_some_and(|q| !q.is_zero())
            {
                any = true;
            }
            match (limit, req) {
                (Some(l), Some(r)) if l.nanos() == r.nanos() && !l.is_zero() => {}
                _ => guaranteed = false,
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

/// The pod's parent cgroup relative to the hierarchy roots: `<root>/kubepods[/<tier>]/pod<uid>`.
pub fn pod_cgroup(root: &str, class: QosClass, uid: &str) -> String {
    let root = root.trim_end_matches('/');
    match class.tier() {
        Some(tier) => format!("{root}/kubepods/{tier}/pod{uid}"),
        None => format!("{root}/kubepods/pod{uid}"),
    }
}

/// cpu.shares for a CPU request in millicores (kubelet's `MilliCPUToShares`).
pub fn milli_cpu_to_shares(milli: i64) -> u64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    ((milli as u64) * 1024 / 1000).max(MIN_SHARES)
}

/// CFS quota for a CPU limit in millicores (kubelet's `MilliCPUToQuota`, minimum 1 ms).
pub fn milli_cpu_to_quota(milli: i64) -> Option<i64> {
    if milli <= 0 {
        return None;
    }
    Some((milli * CPU_PERIOD_US as i64 / 1000).max(1000))
}

/// The pod cgroup's settings (kubelet's `ResourceConfigForPod`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodResources {
    pub cpu_shares: u64,
    /// CFS quota per [`CPU_PERIOD_US`]; none unless every container has a CPU limit.
    pub cpu_quota: Option<i64>,
    /// Bytes; none unless every container has a memory limit.
    pub memory_limit: Option<i64>,
}

/// The pod's total of one resource as kubelet's `PodRequests`/`PodLimits` add it up: the
/// sum over the regular containers and the sidecars (init containers with restartPolicy
/// Always, which keep running), or the most any init container needs beside the sidecars
/// started before it if that is more, plus the pod's overhead. `None` when some container
/// lacks the value (`per_container` returned none).
fn pod_total(
    pod: &Pod,
    resource: &str,
    per_container: impl Fn(&Container) -> Option<i64>,
) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let mut sum: i64 = 0;
    for container in &spec.containers {
        sum = sum.saturating_add(per_container(container)?);
    }
    let mut sidecars: i64 = 0;
    let mut largest_init: i64 = 0;
    for container in spec.init_containers.iter().flatten() {
        let value = per_container(container)?;
        let during = if container.restart_policy.as_deref() == Some("Always") {
            sidecars = sidecars.saturating_add(value);
            sidecars
        } else {
            sidecars.saturating_add(value)
        };
        largest_init = largest_init.max(during);
    }
    let sum = sum.saturating_add(sidecars);
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get(resource))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .map_or(0, |q| {
            if resource == "cpu" {
                q.milli_value()
            } else {
                q.value()
            }
        });
    Some(sum.max(largest_init).saturating_add(overhead))
}

/// A container's memory request, defaulting to its limit (as the API does).
pub fn memory_request(container: &Container) -> Option<Quantity> {
    request(container, "memory")
}

/// The pod's memory request in bytes (regular containers summed, init containers' largest
/// if more, requests defaulting to limits); 0 when nothing is requested.
pub fn pod_memory_request(pod: &Pod) -> i64 {
    pod_total(pod, "memory", |c| {
        Some(request(c, "memory").map_or(0, |q| q.value()))
    })
    .unwrap_or(0)
}

/// The settings of the pod's cgroup: cpu.shares from the summed CPU requests, a CFS quota
/// from the summed CPU limits when every container has one, and a memory limit from the
/// summed memory limits when every container has one (BestEffort pods get the smallest
/// shares and no limit).
pub fn pod_resources(pod: &Pod) -> PodResources {
    let limit = |resource: &'static str, unit: fn(&Quantity) -> i64| {
        move |c: &Container| {
            quantity(c, "limits", resource)
                .filter(|q| !q.is_zero())
                .map(|q| unit(&q))
        }
    };
    if qos_class(pod) == QosClass::BestEffort {
        return PodResources {
            cpu_shares: MIN_SHARES,
            cpu_quota: None,
            memory_limit: None,
        };
    }
    let cpu_request = pod_total(pod, "cpu", |c| {
        Some(request(c, "cpu").map_or(0, |q| q.milli_value()))
    })
    .unwrap_or(0);
    PodResources {
        cpu_shares: milli_cpu_to_shares(cpu_request),
        cpu_quota: pod_total(pod, "cpu", limit("cpu", Quantity::milli_value))
            .and_then(milli_cpu_to_quota),
        memory_limit: pod_total(pod, "memory", limit("memory", Quantity::value)),
    }
}

/// The cgroup settings of one container.
pub fn container_resources(container: &Container, pids_limit: Option<i64>) -> Resources {
    let cpu_request = request(container, "cpu").map(|q| q.milli_value());
    let cpu_limit = quantity(container, "limits", "cpu").map(|q| q.milli_value());
    let memory_limit = quantity(container, "limits", "memory")
        .map(|q| q.value())
        .filter(|&v| v > 0);
    Resources {
        cpu_shares: milli_cpu_to_shares(cpu_request.unwrap_or(0)),
        cpu_quota: cpu_limit.and_then(milli_cpu_to_quota),
        cpu_period: CPU_PERIOD_US,
        memory_limit,
        pids_limit,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::{
        api::core::v1::{PodSpec, ResourceRequirements},
        apimachinery::pkg::api::resource::Quantity as ApiQuantity,
    };
    use proptest::prelude::*;

    use super::*;

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let map = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ApiQuantity(v.to_string())))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: map(requests),
                limits: map(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn no_requests_or_limits_is_best_effort() {
        assert_eq!(
            qos_class(&pod(vec![container(&[], &[])])),
            QosClass::BestEffort
        );
    }

    #[test]
    fn equal_cpu_and_memory_limits_and_requests_are_guaranteed() {
        let c = container(
            &[("cpu", "500m"), ("memory", "64Mi")],
            &[("cpu", "0.5"), ("memory", "64Mi")],
        );
        assert_eq!(qos_class(&pod(vec![c])), QosClass::Guaranteed);
        // Limits alone imply equal requests.
        let c = container(&[], &[("cpu", "1"), ("memory", "1Gi")]);
        assert_eq!(qos_class(&pod(vec![c])), QosClass::Guaranteed);
    }

    #[test]
    fn anything_in_between_is_burstable() {
        let c = container(&[("memory", "64Mi")], &[]);
        assert_eq!(qos_class(&pod(vec![c])), QosClass::Burstable);
        let guaranteed = container(&[], &[("cpu", "1"), ("memory", "1Gi")]);
        let none = container(&[], &[]);
        assert_eq!(qos_class(&pod(vec![guaranteed, none])), QosClass::Burstable);
    }

    #[test]
    fn the_pod_cgroup_sits_in_its_tier() {
        assert_eq!(
            pod_cgroup("/skiff/n1/", QosClass::Burstable, "u1"),
            "/skiff/n1/kubepods/burstable/podu1"
        );
        assert_eq!(
            pod_cgroup("/skiff", QosClass::Guaranteed, "u2"),
            "/skiff/kubepods/podu2"
        );
    }

    #[test]
    fn cpu_converts_like_kubelet() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(250), 256);
        assert_eq!(milli_cpu_to_quota(500), Some(50_000));
        assert_eq!(milli_cpu_to_quota(1), Some(1000));
        assert_eq!(milli_cpu_to_quota(0), None);
        let r = container_resources(
            &container(&[("cpu", "250m")], &[("memory", "32Mi")]),
            Some(99),
        );
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, None);
        assert_eq!(r.memory_limit, Some(32 << 20));
        assert_eq!(r.pids_limit, Some(99));
    }

    fn with_init(mut pod: Pod, init: Vec<Container>) -> Pod {
        pod.spec.as_mut().unwrap().init_containers = Some(init);
        pod
    }

    #[test]
    fn the_pod_cgroup_limits_are_the_sums_of_its_containers_limits() {
        let a = container(&[], &[("cpu", "500m"), ("memory", "64Mi")]);
        let b = container(&[], &[("cpu", "250m"), ("memory", "32Mi")]);
        assert_eq!(
            pod_resources(&pod(vec![a.clone(), b.clone()])),
            PodResources {
                cpu_shares: milli_cpu_to_shares(750),
                cpu_quota: Some(75_000),
                memory_limit: Some(96 << 20),
            }
        );
        // One container without a memory limit: no pod memory limit; CPU still summed.
        let c = container(&[("memory", "16Mi")], &[("cpu", "100m")]);
        let burstable = pod_resources(&pod(vec![a.clone(), c]));
        assert_eq!(burstable.memory_limit, None);
        assert_eq!(burstable.cpu_quota, Some(60_000));
        assert_eq!(burstable.cpu_shares, milli_cpu_to_shares(600));
        // Requests alone: shares, no quota and no limit.
        let d = container(&[("cpu", "200m"), ("memory", "16Mi")], &[]);
        assert_eq!(
            pod_resources(&pod(vec![d])),
            PodResources {
                cpu_shares: 204,
                cpu_quota: None,
                memory_limit: None,
            }
        );
    }

    #[test]
    fn an_init_container_larger_than_the_sum_of_the_others_sets_the_pod_limit() {
        let a = container(&[], &[("cpu", "500m"), ("memory", "64Mi")]);
        let b = container(&[], &[("cpu", "250m"), ("memory", "32Mi")]);
        let big_init = container(&[], &[("cpu", "1"), ("memory", "80Mi")]);
        let resources = pod_resources(&with_init(pod(vec![a.clone(), b.clone()]), vec![big_init]));
        assert_eq!(resources.cpu_quota, Some(100_000), "max(1000m, 750m)");
        assert_eq!(resources.memory_limit, Some(96 << 20), "max(80Mi, 96Mi)");
        let small_init = container(&[], &[("cpu", "100m"), ("memory", "8Mi")]);
        let resources = pod_resources(&with_init(pod(vec![a.clone()]), vec![small_init]));
        assert_eq!(resources.memory_limit, Some(64 << 20));
        // An init container without limits leaves the pod unlimited.
        let bare_init = container(&[("memory", "1Mi")], &[]);
        let resources = pod_resources(&with_init(pod(vec![a, b]), vec![bare_init]));
        assert_eq!(resources.memory_limit, None);
        assert_eq!(resources.cpu_quota, None);
    }

    #[test]
    fn sidecars_add_to_the_pod_and_to_every_later_init_container() {
        let sidecar = |memory: &str| Container {
            restart_policy: Some("Always".into()),
            ..container(&[], &[("cpu", "100m"), ("memory", memory)])
        };
        let app = container(&[], &[("cpu", "100m"), ("memory", "64Mi")]);
        let init = container(&[], &[("cpu", "100m"), ("memory", "100Mi")]);
        // sidecar 16Mi, then init 100Mi beside it (116Mi), then app 64Mi + sidecar 16Mi.
        let pod = with_init(pod(vec![app.clone()]), vec![sidecar("16Mi"), init]);
        assert_eq!(pod_resources(&pod).memory_limit, Some(116 << 20));
        // Without a larger init container: the app and the sidecar together.
        let pod = with_init(self::pod(vec![app]), vec![sidecar("16Mi")]);
        assert_eq!(pod_resources(&pod).memory_limit, Some(80 << 20));
        assert_eq!(pod_memory_request(&pod), 80 << 20);
    }

    #[test]
    fn best_effort_pods_get_the_smallest_shares_and_no_limits() {
        assert_eq!(
            pod_resources(&pod(vec![container(&[], &[]), container(&[], &[])])),
            PodResources {
                cpu_shares: MIN_SHARES,
                cpu_quota: None,
                memory_limit: None,
            }
        );
    }

    #[test]
    fn the_pod_memory_request_adds_requests_and_defaults_them_to_limits() {
        let a = container(&[("memory", "64Mi")], &[]);
        let b = container(&[], &[("memory", "32Mi")]);
        assert_eq!(pod_memory_request(&pod(vec![a.clone(), b])), 96 << 20);
        let init = container(&[("memory", "100Mi")], &[]);
        assert_eq!(
            pod_memory_request(&with_init(pod(vec![a]), vec![init])),
            100 << 20
        );
        assert_eq!(pod_memory_request(&pod(vec![container(&[], &[])])), 0);
    }

    proptest! {
        #[test]
        fn shares_grow_with_the_request(a in 0i64..100_000, b in 0i64..100_000) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(milli_cpu_to_shares(lo) <= milli_cpu_to_shares(hi));
            prop_assert!(milli_cpu_to_shares(lo) >= MIN_SHARES);
        }
    }
}
