//! The scheduling queue, as kube-scheduler's priority queue: pods waiting to be scheduled in
//! three sets.
//!
//! - **active**: a heap ordered by the queue-sort plugin (priority, then arrival); `pop`
//!   takes from here.
//! - **backoff**: pods that failed recently, each waiting out an exponential back-off
//!   (1 s doubling to 10 s by default); they move to active when it expires.
//! - **unschedulable**: pods no node fits. A cluster event that can help (a node added, a pod
//!   deleted, ...) moves them back through [`SchedulingQueue::move_all_to_active_or_backoff`],
//!   but only pods rejected by a plugin that registered that event. Pods left there for 5
//!   minutes are retried anyway. Pods with `spec.schedulingGates` wait here until ungated.
//!
//! A pod that failed in a cycle during which a move request happened goes to backoff rather
//! than unschedulable: the event it missed may have made it schedulable. The queue also
//! keeps the *nominator*: pods nominated to a node by preemption, which the filters count
//! on that node.
//!
//! The queue is shared (`Arc`) between the event handlers and the scheduling loop; its
//! methods lock internally and [`SchedulingQueue::pop`] waits with `tokio::time`, so tests
//! can pause the clock.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use skiff_api::k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::framework::{ClusterEvent, QueueSortPlugin};
use super::pod_info::{PodInfo, pod_key};

/// How often pods that waited too long in unschedulable are looked for.
const UNSCHEDULABLE_FLUSH_PERIOD: Duration = Duration::from_secs(30);

/// Back-off and retry timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a pod may stay unschedulable before it is retried without an event.
    pub max_unschedulable_duration: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_unschedulable_duration: Duration::from_secs(300),
        }
    }
}

/// A pod in the queue and its scheduling history.
#[derive(Debug, Clone)]
pub struct QueuedPodInfo {
    pub pod: Arc<PodInfo>,
    /// When the pod entered the queue or last failed.
    pub timestamp: Instant,
    /// When the pod was first popped.
    pub initial_attempt_timestamp: Option<Instant>,
    /// How many times the pod was popped for scheduling.
    pub attempts: u32,
    /// The plugins that rejected the pod in its last cycle (empty after an error).
    pub unschedulable_plugins: Vec<&'static str>,
    /// True while the pod has scheduling gates.
    pub gated: bool,
    /// The scheduling cycle the pod was last popped in.
    pub cycle: u64,
}

impl QueuedPodInfo {
    /// A pod entering the queue now.
    pub fn new(pod: Pod) -> Self {
        Self::from_info(Arc::new(PodInfo::new(Arc::new(pod))), Instant::now())
    }

    pub fn from_info(pod: Arc<PodInfo>, now: Instant) -> Self {
        let gated = is_gated(&pod);
        Self {
            pod,
            timestamp: now,
            initial_attempt_timestamp: None,
            attempts: 0,
            unschedulable_plugins: Vec::new(),
            gated,
            cycle: 0,
        }
    }

    pub fn key(&self) -> &str {
        &self.pod.key
    }

    pub fn priority(&self) -> i32 {
        self.pod.priority
    }
}

fn has_nomination(pod: &PodInfo) -> bool {
    pod.pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

fn is_gated(pod: &PodInfo) -> bool {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty())
}

/// "`a` comes before `b`".
type Less = Box<dyn Fn(&QueuedPodInfo, &QueuedPodInfo) -> bool + Send + Sync>;

/// A binary heap of queued pods with removal and update by key.
struct Heap {
    items: Vec<QueuedPodInfo>,
    index: HashMap<String, usize>,
    less: Less,
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("len", &self.items.len())
            .finish()
    }
}

impl Heap {
    fn new(less: impl Fn(&QueuedPodInfo, &QueuedPodInfo) -> bool + Send + Sync + 'static) -> Self {
        Self {
            items: Vec::new(),
            index: HashMap::new(),
            less: Box::new(less),
        }
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        self.index.keys()
    }

    fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    fn peek(&self) -> Option<&QueuedPodInfo> {
        self.items.first()
    }

    /// Adds the pod, or replaces the one with the same key.
    fn push(&mut self, item: QueuedPodInfo) {
        if let Some(&i) = self.index.get(item.key()) {
            self.items[i] = item;
            self.fix(i);
            return;
        }
        self.index.insert(item.key().to_string(), self.items.len());
        self.items.push(item);
        self.up(self.items.len() - 1);
    }

    fn pop(&mut self) -> Option<QueuedPodInfo> {
        if self.items.is_empty() {
            return None;
        }
        Some(self.remove_at(0))
    }

    fn remove(&mut self, key: &str) -> Option<QueuedPodInfo> {
        let i = *self.index.get(key)?;
        Some(self.remove_at(i))
    }

    fn get(&self, key: &str) -> Option<&QueuedPodInfo> {
        self.index.get(key).map(|&i| &self.items[i])
    }

    fn remove_at(&mut self, i: usize) -> QueuedPodInfo {
        let item = self.items.swap_remove(i);
        self.index.remove(item.key());
        if i < self.items.len() {
            self.index.insert(self.items[i].key().to_string(), i);
            self.fix(i);
        }
        item
    }

    fn fix(&mut self, i: usize) {
        if !self.up(i) {
            self.down(i);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        self.items.swap(a, b);
        self.index.insert(self.items[a].key().to_string(), a);
        self.index.insert(self.items[b].key().to_string(), b);
    }

    /// Moves item `i` up; returns true when it moved.
    fn up(&mut self, mut i: usize) -> bool {
        let start = i;
        while i > 0 {
            let parent = (i - 1) / 2;
            if !(self.less)(&self.items[i], &self.items[parent]) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
        i != start
    }

    fn down(&mut self, mut i: usize) {
        let n = self.items.len();
        loop {
            let (left, right) = (2 * i + 1, 2 * i + 2);
            let mut smallest = i;
            if left < n && (self.less)(&self.items[left], &self.items[smallest]) {
                smallest = left;
            }
            if right < n && (self.less)(&self.items[right], &self.items[smallest]) {
                smallest = right;
            }
            if smallest == i {
                return;
            }
            self.swap(i, smallest);
            i = smallest;
        }
    }
}

/// Pods nominated to nodes by preemption, shared with scheduling cycles copy-on-write.
pub type NominatedPods = HashMap<String, Vec<Arc<PodInfo>>>;

#[derive(Debug, Default)]
struct Nominator {
    by_node: Arc<NominatedPods>,
    by_pod: HashMap<String, String>,
}

impl Nominator {
    fn add(&mut self, pod: Arc<PodInfo>, node: Option<&str>) {
        self.delete(&pod.key);
        let node = node.map(str::to_string).or_else(|| {
            pod.pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty())
        });
        let Some(node) = node else {
            return;
        };
        self.by_pod.insert(pod.key.clone(), node.clone());
        Arc::make_mut(&mut self.by_node)
            .entry(node)
            .or_default()
            .push(pod);
    }

    /// A new version of a pod: its `status.nominatedNodeName` wins, but a nomination made in
    /// memory (preemption) survives updates that carry none, before and after (as
    /// kube-scheduler's `UpdateNominatedPod`): the status patch may not have arrived yet.
    fn update(&mut self, pod: Arc<PodInfo>, old_had_nomination: bool) {
        if !has_nomination(&pod)
            && !old_had_nomination
            && let Some(node) = self.by_pod.get(&pod.key).cloned()
        {
            self.add(pod, Some(&node));
            return;
        }
        self.add(pod, None);
    }

    fn delete(&mut self, key: &str) {
        let Some(node) = self.by_pod.remove(key) else {
            return;
        };
        let by_node = Arc::make_mut(&mut self.by_node);
        if let Some(pods) = by_node.get_mut(&node) {
            pods.retain(|p| p.key != key);
            if pods.is_empty() {
                by_node.remove(&node);
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    active: Heap,
    backoff: Heap,
    unschedulable: HashMap<String, QueuedPodInfo>,
    scheduling_cycle: u64,
    move_request_cycle: u64,
    last_unschedulable_flush: Instant,
    nominator: Nominator,
    closed: bool,
}

/// The scheduling queue. See the module documentation.
pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    config: QueueConfig,
    /// Plugin name -> the events that can make a pod it rejected schedulable.
    plugin_events: HashMap<&'static str, &'static [ClusterEvent]>,
}

impl fmt::Debug for SchedulingQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulingQueue")
            .field("config", &self.config)
            .field("inner", &self.lock())
            .finish()
    }
}

/// How long a pod that was tried `attempts` times backs off.
pub fn backoff_duration(config: &QueueConfig, attempts: u32) -> Duration {
    let mut duration = config.initial_backoff;
    for _ in 1..attempts {
        duration = duration.saturating_mul(2);
        if duration >= config.max_backoff {
            return config.max_backoff;
        }
    }
    duration.min(config.max_backoff)
}

fn backoff_expiry(config: &QueueConfig, pod: &QueuedPodInfo) -> Instant {
    pod.timestamp + backoff_duration(config, pod.attempts)
}

impl SchedulingQueue {
    /// A queue ordered by `sort`; `plugin_events` says which events retry pods each plugin
    /// rejected.
    pub fn new(
        sort: Arc<dyn QueueSortPlugin>,
        config: QueueConfig,
        plugin_events: HashMap<&'static str, &'static [ClusterEvent]>,
    ) -> Self {
        let backoff_config = config;
        Self {
            inner: Mutex::new(Inner {
                active: Heap::new(move |a, b| sort.less(a, b)),
                backoff: Heap::new(move |a, b| {
                    backoff_expiry(&backoff_config, a) < backoff_expiry(&backoff_config, b)
                }),
                unschedulable: HashMap::new(),
                scheduling_cycle: 0,
                move_request_cycle: 0,
                last_unschedulable_flush: Instant::now(),
                nominator: Nominator::default(),
                closed: false,
            }),
            notify: Notify::new(),
            config,
            plugin_events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Adds a new pending pod (to active, or to unschedulable while it is gated). A pod
    /// already queued is updated instead.
    pub fn add(&self, pod: Pod) {
        let info = Arc::new(PodInfo::new(Arc::new(pod)));
        let mut inner = self.lock();
        if self.contains_locked(&inner, &info.key) {
            drop(inner);
            self.update_info(info);
            return;
        }
        inner.nominator.add(info.clone(), None);
        let queued = QueuedPodInfo::from_info(info, Instant::now());
        if queued.gated {
            inner.unschedulable.insert(queued.key().to_string(), queued);
        } else {
            inner.active.push(queued);
            self.notify.notify_one();
        }
    }

    /// Replaces a pending pod with its new version. A pod waiting in unschedulable whose
    /// spec or labels changed is retried; one that lost its last scheduling gate becomes
    /// active. A pod not queued (being scheduled) is added.
    pub fn update(&self, pod: Pod) {
        self.update_info(Arc::new(PodInfo::new(Arc::new(pod))));
    }

    fn update_info(&self, info: Arc<PodInfo>) {
        let mut inner = self.lock();
        let now = Instant::now();
        let key = info.key.clone();
        let old_had_nomination = [inner.active.get(&key), inner.backoff.get(&key)]
            .into_iter()
            .flatten()
            .chain(inner.unschedulable.get(&key))
            .any(|q| has_nomination(&q.pod));
        inner.nominator.update(info.clone(), old_had_nomination);
        if let Some(existing) = inner.active.get(&key).cloned() {
            inner.active.push(QueuedPodInfo {
                pod: info,
                ..existing
            });
            return;
        }
        if let Some(existing) = inner.backoff.get(&key).cloned() {
            inner.backoff.push(QueuedPodInfo {
                pod: info,
                ..existing
            });
            return;
        }
        if let Some(existing) = inner.unschedulable.remove(&key) {
            let changed = existing.pod.pod.spec != info.pod.spec
                || existing.pod.pod.metadata.labels != info.pod.metadata.labels;
            let was_gated = existing.gated;
            let mut queued = QueuedPodInfo {
                gated: is_gated(&info),
                pod: info,
                ..existing
            };
            if queued.gated {
                inner.unschedulable.insert(key, queued);
            } else if was_gated {
                queued.timestamp = now;
                inner.active.push(queued);
                self.notify.notify_one();
            } else if changed {
                self.requeue_locked(&mut inner, queued, now);
            } else {
                inner.unschedulable.insert(key, queued);
            }
            return;
        }
        let queued = QueuedPodInfo::from_info(info, now);
        if queued.gated {
            inner.unschedulable.insert(key, queued);
        } else {
            inner.active.push(queued);
            self.notify.notify_one();
        }
    }

    /// Removes a pod (deleted, or bound by someone).
    pub fn delete(&self, pod: &Pod) {
        self.delete_key(&pod_key(pod));
    }

    /// Removes the pod with `key` from every set and from the nominator.
    pub fn delete_key(&self, key: &str) {
        let mut inner = self.lock();
        inner.active.remove(key);
        inner.backoff.remove(key);
        inner.unschedulable.remove(key);
        inner.nominator.delete(key);
    }

    /// Puts back a pod whose scheduling cycle (`pod.cycle`) failed: to backoff when a move
    /// request happened during that cycle or it failed with an error, else to
    /// unschedulable. Nothing happens when the pod is queued already (it was updated
    /// meanwhile).
    pub fn add_unschedulable_if_not_present(&self, mut pod: QueuedPodInfo) {
        let pod_cycle = pod.cycle;
        let mut inner = self.lock();
        if self.contains_locked(&inner, pod.key()) {
            return;
        }
        pod.timestamp = Instant::now();
        if inner.move_request_cycle >= pod_cycle || pod.unschedulable_plugins.is_empty() {
            inner.backoff.push(pod);
            self.notify.notify_one();
        } else {
            inner.unschedulable.insert(pod.key().to_string(), pod);
        }
    }

    /// Retries unschedulable pods that `event` may help: those rejected by a plugin that
    /// registered the event (or by no plugin). Each goes to backoff while its back-off
    /// lasts, else to active.
    pub fn move_all_to_active_or_backoff(&self, event: ClusterEvent) {
        let mut inner = self.lock();
        let now = Instant::now();
        let keys: Vec<String> = inner
            .unschedulable
            .iter()
            .filter(|(_, p)| !p.gated && self.event_helps(event, p))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(pod) = inner.unschedulable.remove(&key) {
                self.requeue_locked(&mut inner, pod, now);
            }
        }
        inner.move_request_cycle = inner.scheduling_cycle;
    }

    fn event_helps(&self, event: ClusterEvent, pod: &QueuedPodInfo) -> bool {
        matches!(
            event,
            ClusterEvent::UnschedulableTimeout | ClusterEvent::ForceActivate
        ) || pod.unschedulable_plugins.is_empty()
            || pod.unschedulable_plugins.iter().any(|plugin| {
                self.plugin_events
                    .get(plugin)
                    .is_some_and(|events| events.contains(&event))
            })
    }

    fn requeue_locked(&self, inner: &mut Inner, pod: QueuedPodInfo, now: Instant) {
        if backoff_expiry(&self.config, &pod) > now {
            inner.backoff.push(pod);
        } else {
            inner.active.push(pod);
        }
        self.notify.notify_one();
    }

    /// Records that `pod` is nominated to `node` (after preemption chose it).
    pub fn add_nominated_pod(&self, pod: Arc<PodInfo>, node: &str) {
        self.lock().nominator.add(pod, Some(node));
    }

    /// Forgets the nomination of the pod with `key`.
    pub fn delete_nominated_pod(&self, key: &str) {
        self.lock().nominator.delete(key);
    }

    /// Every nominated pod by node (a cheap shared copy).
    pub fn nominated_pods(&self) -> Arc<NominatedPods> {
        self.lock().nominator.by_node.clone()
    }

    /// Waits for the next pod to schedule; `None` once the queue is closed.
    pub async fn pop(&self) -> Option<QueuedPodInfo> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake_at = {
                let mut inner = self.lock();
                if inner.closed {
                    return None;
                }
                if let Some(popped) = self.pop_locked(&mut inner) {
                    return Some(popped);
                }
                self.next_wake(&inner)
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// The next pod when one is ready now, without waiting.
    pub fn try_pop(&self) -> Option<QueuedPodInfo> {
        let mut inner = self.lock();
        if inner.closed {
            return None;
        }
        self.pop_locked(&mut inner)
    }

    fn pop_locked(&self, inner: &mut Inner) -> Option<QueuedPodInfo> {
        let now = Instant::now();
        self.flush_locked(inner, now);
        let mut pod = inner.active.pop()?;
        inner.scheduling_cycle += 1;
        pod.attempts += 1;
        pod.initial_attempt_timestamp.get_or_insert(now);
        pod.cycle = inner.scheduling_cycle;
        Some(pod)
    }

    /// Moves expired back-offs to active, and pods unschedulable for too long to
    /// active/backoff.
    fn flush_locked(&self, inner: &mut Inner, now: Instant) {
        while inner
            .backoff
            .peek()
            .is_some_and(|p| backoff_expiry(&self.config, p) <= now)
        {
            if let Some(pod) = inner.backoff.pop() {
                inner.active.push(pod);
            }
        }
        if now < inner.last_unschedulable_flush + UNSCHEDULABLE_FLUSH_PERIOD {
            return;
        }
        inner.last_unschedulable_flush = now;
        let max = self.config.max_unschedulable_duration;
        let stale: Vec<String> = inner
            .unschedulable
            .iter()
            .filter(|(_, p)| !p.gated && p.timestamp + max <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(pod) = inner.unschedulable.remove(&key) {
                self.requeue_locked(inner, pod, now);
            }
        }
    }

    fn next_wake(&self, inner: &Inner) -> Option<Instant> {
        let backoff = inner
            .backoff
            .peek()
            .map(|p| backoff_expiry(&self.config, p));
        let unschedulable = inner
            .unschedulable
            .values()
            .any(|p| !p.gated)
            .then(|| inner.last_unschedulable_flush + UNSCHEDULABLE_FLUSH_PERIOD);
        match (backoff, unschedulable) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn contains_locked(&self, inner: &Inner, key: &str) -> bool {
        inner.active.contains(key)
            || inner.backoff.contains(key)
            || inner.unschedulable.contains_key(key)
    }

    /// The keys of every queued pod (active, backoff and unschedulable).
    pub fn keys(&self) -> Vec<String> {
        let inner = self.lock();
        inner
            .active
            .keys()
            .chain(inner.backoff.keys())
            .chain(inner.unschedulable.keys())
            .cloned()
            .collect()
    }

    /// Makes `pop` return `None` from now on.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// The number of pods in active, backoff and unschedulable.
    pub fn lengths(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        (
            inner.active.len(),
            inner.backoff.len(),
            inner.unschedulable.len(),
        )
    }

    /// True when the pod with `key` is in any of the sets.
    pub fn contains(&self, key: &str) -> bool {
        let inner = self.lock();
        self.contains_locked(&inner, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::priority_sort::PrioritySort;
    use serde_json::json;

    fn pod(name: &str, priority: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"priority": priority, "containers": [{"name": "c"}]}
        }))
        .unwrap()
    }

    fn queue() -> SchedulingQueue {
        let events: HashMap<&'static str, &'static [ClusterEvent]> = HashMap::from([
            (
                "NodeResourcesFit",
                &[ClusterEvent::NodeAdded, ClusterEvent::AssignedPodDeleted][..],
            ),
            ("NodePorts", &[ClusterEvent::AssignedPodDeleted][..]),
        ]);
        SchedulingQueue::new(Arc::new(PrioritySort), QueueConfig::default(), events)
    }

    fn failed(queue: &SchedulingQueue, plugin: &'static str) {
        let mut pod = queue.try_pop().expect("a pod is active");
        pod.unschedulable_plugins = vec![plugin];
        queue.add_unschedulable_if_not_present(pod);
    }

    #[tokio::test(start_paused = true)]
    async fn pods_pop_by_priority_then_by_arrival() {
        let q = queue();
        q.add(pod("low", 1));
        tokio::time::advance(Duration::from_millis(1)).await;
        q.add(pod("high-late", 10));
        q.add(pod("high-later", 10));
        tokio::time::advance(Duration::from_millis(1)).await;
        q.add(pod("mid", 5));
        let mut order = Vec::new();
        while let Some(p) = q.try_pop() {
            order.push(p.pod.name().to_string());
        }
        // Same priority and timestamp: either order; both come before lower priorities.
        assert_eq!(order[2..], ["mid", "low"]);
        assert!(order[..2].contains(&"high-late".to_string()));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_from_one_second_up_to_ten() {
        let config = QueueConfig::default();
        let secs: Vec<u64> = (1..=6)
            .map(|a| backoff_duration(&config, a).as_secs())
            .collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);

        let q = queue();
        q.add(pod("p", 0));
        let mut p = q.try_pop().unwrap();
        p.unschedulable_plugins.clear(); // an error: straight to backoff
        q.add_unschedulable_if_not_present(p);
        assert_eq!(q.lengths(), (0, 1, 0));
        assert!(q.try_pop().is_none());
        let start = Instant::now();
        let mut p = q.pop().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(p.attempts, 2);
        p.cycle = u64::MAX;
        q.add_unschedulable_if_not_present(p);
        let start = Instant::now();
        let p = q.pop().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(p.attempts, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_return_only_on_an_event_their_plugin_registered() {
        let q = queue();
        q.add(pod("ports", 0));
        failed(&q, "NodePorts");
        q.add(pod("cpu", 0));
        failed(&q, "NodeResourcesFit");
        assert_eq!(q.lengths(), (0, 0, 2));

        q.move_all_to_active_or_backoff(ClusterEvent::NodeAdded);
        assert_eq!(q.lengths(), (0, 1, 1), "only the cpu pod moves, to backoff");
        tokio::time::advance(Duration::from_secs(1)).await;
        let p = q.try_pop().unwrap();
        assert_eq!(p.pod.name(), "cpu");

        q.move_all_to_active_or_backoff(ClusterEvent::AssignedPodDeleted);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(q.try_pop().unwrap().pod.name(), "ports");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_that_missed_an_event_during_its_cycle_goes_to_backoff() {
        let q = queue();
        q.add(pod("p", 0));
        let mut p = q.try_pop().unwrap();
        q.move_all_to_active_or_backoff(ClusterEvent::NodeAdded);
        p.unschedulable_plugins = vec!["NodePorts"];
        q.add_unschedulable_if_not_present(p);
        assert_eq!(q.lengths(), (0, 1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_are_retried_after_five_minutes_without_an_event() {
        let q = queue();
        q.add(pod("p", 0));
        failed(&q, "NodePorts");
        let start = Instant::now();
        let p = q.pop().await.unwrap();
        assert_eq!(p.pod.name(), "p");
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(300));
        assert!(waited <= Duration::from_secs(330));
    }

    #[tokio::test(start_paused = true)]
    async fn gated_pods_wait_until_their_gates_are_removed() {
        let q = queue();
        let mut gated = pod("g", 0);
        gated.spec.as_mut().unwrap().scheduling_gates = Some(vec![
            serde_json::from_value(json!({"name": "example.com/wait"})).unwrap(),
        ]);
        q.add(gated.clone());
        q.move_all_to_active_or_backoff(ClusterEvent::ForceActivate);
        assert_eq!(q.lengths(), (0, 0, 1));
        gated.spec.as_mut().unwrap().scheduling_gates = None;
        q.update(gated);
        assert_eq!(q.try_pop().unwrap().pod.name(), "g");
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_unschedulable_pod_is_retried_and_a_deleted_one_is_gone() {
        let q = queue();
        q.add(pod("p", 0));
        failed(&q, "NodePorts");
        q.update(pod("p", 7));
        assert_eq!(q.lengths(), (0, 1, 0));
        q.delete(&pod("p", 7));
        assert_eq!(q.lengths(), (0, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn pop_waits_for_an_add_and_close_ends_it() {
        let q = Arc::new(queue());
        let popper = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await.map(|p| p.pod.name().to_string()) }
        });
        tokio::task::yield_now().await;
        q.add(pod("late", 0));
        assert_eq!(popper.await.unwrap().as_deref(), Some("late"));
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await.is_none() }
        });
        tokio::task::yield_now().await;
        q.close();
        assert!(waiting.await.unwrap());
    }

    #[test]
    fn an_in_memory_nomination_survives_updates_that_carry_none() {
        let q = queue();
        q.add(pod("p", 5));
        let info = Arc::new(PodInfo::new(Arc::new(pod("p", 5))));
        q.add_nominated_pod(info, "n1");
        q.update(pod("p", 5));
        assert_eq!(q.nominated_pods()["n1"].len(), 1);
        let mut moved = pod("p", 5);
        moved.status = Some(serde_json::from_value(json!({"nominatedNodeName": "n2"})).unwrap());
        q.update(moved);
        assert!(!q.nominated_pods().contains_key("n1"));
        assert_eq!(q.nominated_pods()["n2"].len(), 1);
    }

    #[test]
    fn nominated_pods_are_listed_by_node_until_deleted() {
        let q = queue();
        let info = Arc::new(PodInfo::new(Arc::new(pod("p", 5))));
        q.add_nominated_pod(info.clone(), "n1");
        assert_eq!(q.nominated_pods()["n1"].len(), 1);
        q.add_nominated_pod(info.clone(), "n2");
        assert!(!q.nominated_pods().contains_key("n1"));
        q.delete_nominated_pod(&info.key);
        assert!(q.nominated_pods().is_empty());
    }
}
