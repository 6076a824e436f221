//! `ImageLocality`: prefers nodes that already hold the pod's images (from
//! `node.status.images`), weighting each image by its size and by how widely it is spread
//! over the cluster, so pods do not all pile onto the one node that has an image.

use std::sync::Arc;

use crate::scheduler::framework::{
    CycleState, MAX_NODE_SCORE, Plugin, PreScorePlugin, ScorePlugin, Status, missing_state,
};
use crate::scheduler::node_info::{NodeInfo, normalized_image_name};
use crate::scheduler::pod_info::PodInfo;
use crate::scheduler::snapshot::Snapshot;

pub const NAME: &str = "ImageLocality";

const MB: i64 = 1024 * 1024;
/// Below this total, image locality does not matter (score 0).
const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container, above this the score is full.
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

#[derive(Debug, Default, Clone, Copy)]
pub struct ImageLocality;

/// The pod's images and how spread each is (`nodes with it / all nodes`).
#[derive(Debug, Clone)]
struct PreScoreState {
    images: Vec<(String, f64)>,
    containers: i64,
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }

    fn as_pre_score(self: Arc<Self>) -> Option<Arc<dyn PreScorePlugin>> {
        Some(self)
    }

    fn as_score(self: Arc<Self>) -> Option<Arc<dyn ScorePlugin>> {
        Some(self)
    }
}

impl PreScorePlugin for ImageLocality {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status {
        let Some(spec) = pod.pod.spec.as_ref() else {
            return Status::skip();
        };
        let total = snapshot.len().max(1) as f64;
        let containers = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers);
        let mut images = Vec::new();
        let mut count = 0;
        for container in containers {
            count += 1;
            if let Some(image) = container.image.as_deref() {
                let name = normalized_image_name(image);
                let spread = snapshot.image_node_count(&name) as f64 / total;
                if spread > 0.0 {
                    images.push((name, spread));
                }
            }
        }
        if images.is_empty() {
            // No node has any of the images: every node would score 0.
            return Status::skip();
        }
        state.write(
            NAME,
            PreScoreState {
                images,
                containers: count,
            },
        );
        Status::success()
    }
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let state = state
            .read::<PreScoreState>(NAME)
            .ok_or_else(|| missing_state(NAME))?;
        let sum: i64 = state
            .images
            .iter()
            .filter_map(|(image, spread)| {
                node.image_size(image)
                    .map(|size| (size as f64 * spread) as i64)
            })
            .sum();
        let max = MAX_CONTAINER_THRESHOLD * state.containers;
        let clamped = sum.clamp(MIN_THRESHOLD, max.max(MIN_THRESHOLD + 1));
        Ok(MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max - MIN_THRESHOLD).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn nodes_with_large_images_score_higher_scaled_by_spread() {
        let with = |name: &str, size: i64| {
            node(
                json!({"metadata": {"name": name}, "status": {"images": [{"names": ["docker.io/app:1", "app:1"], "sizeBytes": size}]}}),
            )
        };
        let big = with("big", 500 * MB);
        let small = with("small", 10 * MB);
        let none = node(json!({"metadata": {"name": "none"}}));
        let snapshot = Snapshot::from_nodes([big.clone(), small.clone(), none.clone()]);
        let p = pod(json!({"spec": {"containers": [{"name": "c", "image": "app:1"}]}}));
        let mut state = CycleState::new();
        let nodes = [&big, &small, &none];
        assert!(
            ImageLocality
                .pre_score(&mut state, &p, &nodes, &snapshot)
                .is_success()
        );
        // 500Mi spread over 2 of 3 nodes: 333Mi, between the 23Mi and 1000Mi thresholds.
        let score = ImageLocality.score(&state, &p, &big).unwrap();
        assert_eq!(
            score,
            100 * (500 * MB * 2 / 3 - MIN_THRESHOLD) / (1000 * MB - MIN_THRESHOLD)
        );
        assert_eq!(ImageLocality.score(&state, &p, &small).unwrap(), 0);
        assert_eq!(ImageLocality.score(&state, &p, &none).unwrap(), 0);
    }

    #[test]
    fn a_pod_whose_images_no_node_has_skips_the_score() {
        let n = node(json!({}));
        let snapshot = Snapshot::from_nodes([n.clone()]);
        let p = pod(json!({"spec": {"containers": [{"name": "c", "image": "nowhere"}]}}));
        assert!(
            ImageLocality
                .pre_score(&mut CycleState::new(), &p, &[&n], &snapshot)
                .is_skip()
        );
    }
}
