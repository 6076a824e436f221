//! Which pod goes first under memory pressure, and what it is told: kubelet's
//! `rankMemoryPressure` (pods using more than they requested first, then lower priority
//! first, then the most usage above the request first) and its eviction message.

use std::cmp::Ordering;

use skiff_api::validation::quantity::{Quantity, QuantityFormat};

/// One pod's memory, as the ranking sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodMemoryUsage {
    /// `namespace/name`.
    pub pod: String,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// The pod's memory request in bytes.
    pub request: i64,
    /// The working set of the pod's cgroup in bytes.
    pub usage: i64,
}

impl PodMemoryUsage {
    fn exceeds_request(&self) -> bool {
        self.usage > self.request
    }
}

/// kubelet's order: `exceedMemoryRequests`, then `priority`, then `memory` (usage above
/// the request, largest first).
pub fn eviction_order(a: &PodMemoryUsage, b: &PodMemoryUsage) -> Ordering {
    b.exceeds_request()
        .cmp(&a.exceeds_request())
        .then(a.priority.cmp(&b.priority))
        .then((b.usage - b.request).cmp(&(a.usage - a.request)))
}

/// Sorts `pods` so the first is the one to evict.
pub fn rank(pods: &mut [PodMemoryUsage]) {
    pods.sort_by(eviction_order);
}

/// One container's memory, for the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerMemoryUsage {
    pub name: String,
    /// Working set in bytes.
    pub usage: i64,
    /// The container's memory request (zero when none).
    pub request: Quantity,
}

/// The pod's status message (and Event message) when it is evicted for memory, as kubelet
/// words it: the threshold, what was available, and each container using more than it
/// requested.
pub fn eviction_message(
    threshold: &Quantity,
    available: i64,
    containers: &[ContainerMemoryUsage],
) -> String {
    let bytes = |n: i64| Quantity::from_value(n, QuantityFormat::BinarySi);
    let mut message = format!(
        "The node was low on resource: memory. Threshold quantity: {threshold}, available: {}. ",
        bytes(available)
    );
    for container in containers {
        if container.usage > container.request.value() {
            message.push_str(&format!(
                "Container {} was using {}, request is {}, has larger consumption of memory. ",
                container.name,
                bytes(container.usage),
                container.request
            ));
        }
    }
    message.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MI: i64 = 1 << 20;

    fn pod(name: &str, priority: i32, request: i64, usage: i64) -> PodMemoryUsage {
        PodMemoryUsage {
            pod: name.into(),
            priority,
            request,
            usage,
        }
    }

    fn order(mut pods: Vec<PodMemoryUsage>) -> Vec<String> {
        rank(&mut pods);
        pods.into_iter().map(|p| p.pod).collect()
    }

    #[test]
    fn pods_over_their_requests_go_first_and_guaranteed_pods_last() {
        // BestEffort: no request, so any usage exceeds it. Burstable over its request.
        // Guaranteed: request = limit, usage below it (the limit caps it).
        let pods = vec![
            pod("guaranteed", 0, 64 * MI, 60 * MI),
            pod("burstable", 0, 32 * MI, 40 * MI),
            pod("best-effort", 0, 0, 5 * MI),
        ];
        assert_eq!(order(pods), ["burstable", "best-effort", "guaranteed"]);
        // At equal usage above the request, the one without a request goes first.
        let pods = vec![
            pod("guaranteed", 0, 64 * MI, 60 * MI),
            pod("burstable", 0, 32 * MI, 40 * MI),
            pod("best-effort", 0, 0, 40 * MI),
        ];
        assert_eq!(order(pods), ["best-effort", "burstable", "guaranteed"]);
    }

    #[test]
    fn the_ranking_follows_kubelets_three_keys_in_order() {
        let table = [
            // Exceeding the request beats a lower priority.
            (
                vec![
                    pod("within", -10, 100 * MI, 50 * MI),
                    pod("over", 100, 10 * MI, 20 * MI),
                ],
                vec!["over", "within"],
            ),
            // Both exceed: lower priority first, whatever the usage.
            (
                vec![pod("big", 10, 0, 500 * MI), pod("small", 0, 0, MI)],
                vec!["small", "big"],
            ),
            // Same priority: the most above its request first.
            (
                vec![
                    pod("a", 0, 100 * MI, 150 * MI),
                    pod("b", 0, 0, 80 * MI),
                    pod("c", 0, 10 * MI, 200 * MI),
                ],
                vec!["c", "b", "a"],
            ),
            // None exceeds: priority, then the least below its request first.
            (
                vec![
                    pod("far-below", 0, 100 * MI, 10 * MI),
                    pod("near", 0, 100 * MI, 90 * MI),
                    pod("low", -1, 100 * MI, MI),
                ],
                vec!["low", "near", "far-below"],
            ),
        ];
        for (pods, expected) in table {
            assert_eq!(order(pods), expected);
        }
    }

    #[test]
    fn the_message_says_what_was_available_and_who_used_more_than_requested() {
        let containers = [
            ContainerMemoryUsage {
                name: "hog".into(),
                usage: 300 * MI,
                request: Quantity::from_value(0, QuantityFormat::BinarySi),
            },
            ContainerMemoryUsage {
                name: "quiet".into(),
                usage: 10 * MI,
                request: Quantity::parse("64Mi").unwrap(),
            },
        ];
        assert_eq!(
            eviction_message(&Quantity::parse("100Mi").unwrap(), 80 * MI, &containers),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 80Mi. \
             Container hog was using 300Mi, request is 0, has larger consumption of memory."
        );
        // Amounts that are not whole KiB print as plain numbers, as Kubernetes does.
        assert_eq!(
            eviction_message(&Quantity::parse("1Gi").unwrap(), 1000, &[]),
            "The node was low on resource: memory. Threshold quantity: 1Gi, available: 1k."
        );
    }

    proptest! {
        #[test]
        fn a_pod_over_its_request_always_ranks_before_one_within_it(
            over in (any::<i32>(), 0i64..1 << 40, 1i64..1 << 30),
            within in (any::<i32>(), 0i64..1 << 40, 0i64..1 << 30),
        ) {
            let over = pod("over", over.0, over.1, over.1 + over.2);
            let within = pod("within", within.0, within.1, within.1 - within.2);
            prop_assert_eq!(order(vec![within.clone(), over.clone()]), ["over", "within"]);
            prop_assert_eq!(order(vec![over, within]), ["over", "within"]);
        }

        #[test]
        fn ranking_is_a_total_order(pods in proptest::collection::vec((-5i32..5, 0i64..10, 0i64..10), 0..8)) {
            let pods: Vec<PodMemoryUsage> = pods
                .iter()
                .enumerate()
                .map(|(i, (p, r, u))| pod(&i.to_string(), *p, *r, *u))
                .collect();
            let mut ranked = pods.clone();
            rank(&mut ranked);
            for pair in ranked.windows(2) {
                prop_assert_ne!(eviction_order(&pair[0], &pair[1]), Ordering::Greater);
            }
        }
    }
}
