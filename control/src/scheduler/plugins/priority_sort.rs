//! `PrioritySort`: the queue order. Higher `spec.priority` first; among equals, the pod that
//! has waited longest.

use std::sync::Arc;

use crate::scheduler::framework::{Plugin, QueueSortPlugin};
use crate::scheduler::queue::QueuedPodInfo;

pub const NAME: &str = "PrioritySort";

/// Orders pods by priority, then by queue timestamp.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrioritySort;

impl Plugin for PrioritySort {
    fn name(&self) -> &'static str {
        NAME
    }

    fn as_queue_sort(self: Arc<Self>) -> Option<Arc<dyn QueueSortPlugin>> {
        Some(self)
    }
}

impl QueueSortPlugin for PrioritySort {
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
        let (pa, pb) = (a.priority(), b.priority());
        pa > pb || (pa == pb && a.timestamp < b.timestamp)
    }
}
