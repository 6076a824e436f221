//! `skiff-control`'s own metrics, under the names the upstream components use
//! (kube-apiserver's `apiserver_request_total`, kube-scheduler's
//! `scheduler_schedule_attempts_total`, client-go's `workqueue_depth`, ...), served in the
//! Prometheus text format at `/metrics` over plain HTTP.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    core::{Collector, Desc},
    exponential_buckets,
    proto::MetricFamily,
};
use skiff_api::metrics_http;

/// The labels of `apiserver_request_duration_seconds` (and, with `code`, of
/// `apiserver_request_total`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
}

/// What a work queue reports at each scrape.
pub trait QueueStats: Send + Sync {
    /// Items waiting.
    fn depth(&self) -> usize;
    /// Items ever added.
    fn adds(&self) -> u64;
    /// Items ever re-added after a failure.
    fn retries(&self) -> u64;
}

impl<K> QueueStats for skiff_api::runtime::WorkQueue<K>
where
    K: Clone + Eq + std::hash::Hash + Send + Sync + 'static,
{
    fn depth(&self) -> usize {
        self.len()
    }
    fn adds(&self) -> u64 {
        skiff_api::runtime::WorkQueue::adds(self)
    }
    fn retries(&self) -> u64 {
        skiff_api::runtime::WorkQueue::retries(self)
    }
}

/// The scheduling queue's lengths: (active, backoff, unschedulable).
pub type PendingPods = Box<dyn Fn() -> (usize, usize, usize) + Send + Sync>;

/// Gauges and counters read from live objects at each scrape.
#[derive(Default)]
struct Live {
    queues: Vec<(String, Arc<dyn QueueStats>)>,
    pending_pods: Option<PendingPods>,
}

/// The families [`Live`] is reported as; built afresh at each scrape from the templates'
/// options, so their values are the live objects' own.
struct LiveCollector {
    live: Mutex<Live>,
    descs: Vec<Desc>,
}

impl fmt::Debug for LiveCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveCollector").finish_non_exhaustive()
    }
}

fn queue_depth() -> IntGaugeVec {
    IntGaugeVec::new(
        Opts::new("workqueue_depth", "Current depth of workqueue"),
        &["name"],
    )
    .expect("a valid metric")
}

fn queue_adds() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "workqueue_adds_total",
            "Total number of adds handled by workqueue",
        ),
        &["name"],
    )
    .expect("a valid metric")
}

fn queue_retries() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "workqueue_retries_total",
            "Total number of retries handled by workqueue",
        ),
        &["name"],
    )
    .expect("a valid metric")
}

fn pending_pods() -> IntGaugeVec {
    IntGaugeVec::new(
        Opts::new(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type",
        ),
        &["queue"],
    )
    .expect("a valid metric")
}

impl LiveCollector {
    fn new() -> Self {
        let descs = [
            queue_depth().desc(),
            queue_adds().desc(),
            queue_retries().desc(),
            pending_pods().desc(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        Self {
            live: Mutex::default(),
            descs,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for LiveCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let live = self.lock();
        let (depth, adds, retries) = (queue_depth(), queue_adds(), queue_retries());
        for (name, stats) in &live.queues {
            depth
                .with_label_values(&[name])
                .set(gauge_value(stats.depth()));
            adds.with_label_values(&[name]).inc_by(stats.adds());
            retries.with_label_values(&[name]).inc_by(stats.retries());
        }
        let mut families = [depth.collect(), adds.collect(), retries.collect()].concat();
        if let Some(lengths) = &live.pending_pods {
            let (active, backoff, unschedulable) = lengths();
            let pending = pending_pods();
            for (queue, n) in [
                ("active", active),
                ("backoff", backoff),
                ("unschedulable", unschedulable),
            ] {
                pending.with_label_values(&[queue]).set(gauge_value(n));
            }
            families.extend(pending.collect());
        }
        families
    }
}

/// Every metric of one `skiff-control` process.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    schedule_attempts: IntCounterVec,
    attempt_duration: HistogramVec,
    live: Arc<LiveCollector>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

const REQUEST_LABELS: [&str; 5] = ["verb", "group", "version", "resource", "subresource"];

impl Metrics {
    /// # Panics
    /// Never: the metric definitions are fixed and valid (a unit test builds them).
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "apiserver_request_total",
                "Counter of apiserver requests broken out for each verb, group, version, \
                 resource, subresource and HTTP response code",
            ),
            &[&REQUEST_LABELS[..], &["code"]].concat(),
        )
        .expect("a valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "apiserver_request_duration_seconds",
                "Response latency distribution in seconds for each verb, group, version, \
                 resource and subresource",
            )
            .buckets(exponential_buckets(0.0005, 2.0, 16).expect("valid buckets")),
            &REQUEST_LABELS,
        )
        .expect("a valid metric");
        let schedule_attempts = IntCounterVec::new(
            Opts::new(
                "scheduler_schedule_attempts_total",
                "Number of attempts to schedule pods, by the result",
            ),
            &["result", "profile"],
        )
        .expect("a valid metric");
        let attempt_duration = HistogramVec::new(
            HistogramOpts::new(
                "scheduler_scheduling_attempt_duration_seconds",
                "Scheduling attempt latency in seconds (the scheduling algorithm)",
            )
            .buckets(exponential_buckets(0.00001, 2.0, 20).expect("valid buckets")),
            &["result", "profile"],
        )
        .expect("a valid metric");
        let live = Arc::new(LiveCollector::new());
        for collector in [
            Box::new(requests.clone()) as Box<dyn Collector>,
            Box::new(request_duration.clone()),
            Box::new(schedule_attempts.clone()),
            Box::new(attempt_duration.clone()),
            Box::new(ArcCollector(Arc::clone(&live))),
        ] {
            registry.register(collector).expect("distinct metric names");
        }
        Self {
            registry,
            requests,
            request_duration,
            schedule_attempts,
            attempt_duration,
            live,
        }
    }

    /// Counts one API request, its HTTP-equivalent `code` and its latency.
    pub fn observe_request(&self, request: &RequestLabels, code: u16, took: Duration) {
        let labels = [
            request.verb.as_str(),
            &request.group,
            &request.version,
            &request.resource,
            &request.subresource,
        ];
        self.request_duration
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
        let code = code.to_string();
        self.requests
            .with_label_values(&[&labels[..], &[code.as_str()]].concat())
            .inc();
    }

    /// Counts one scheduling attempt of `profile` and how long it took.
    pub fn observe_attempt(&self, result: &str, profile: &str, took: Duration) {
        self.schedule_attempts
            .with_label_values(&[result, profile])
            .inc();
        self.attempt_duration
            .with_label_values(&[result, profile])
            .observe(took.as_secs_f64());
    }

    /// Reports a work queue under `name` (replacing one of the same name: a controller
    /// that starts again after regaining leadership reports its new queue).
    pub fn register_queue(&self, name: &str, queue: Arc<dyn QueueStats>) {
        let mut live = self.live.lock();
        live.queues.retain(|(n, _)| n != name);
        live.queues.push((name.to_string(), queue));
    }

    /// Reports the scheduling queue's lengths.
    pub fn register_pending_pods(&self, lengths: PendingPods) {
        self.live.lock().pending_pods = Some(lengths);
    }

    /// Everything, in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        metrics_http::render(&self.registry)
    }
}

/// Registers a shared [`LiveCollector`] (the registry takes its collectors by value).
#[derive(Debug)]
struct ArcCollector(Arc<LiveCollector>);

impl Collector for ArcCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }
    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_uses_the_upstream_names_and_labels() {
        let metrics = Metrics::new();
        metrics.observe_request(
            &RequestLabels {
                verb: "CREATE".into(),
                group: "apps".into(),
                version: "v1".into(),
                resource: "deployments".into(),
                subresource: String::new(),
            },
            201,
            Duration::from_millis(3),
        );
        metrics.observe_attempt("scheduled", "default-scheduler", Duration::from_micros(40));
        let queue = skiff_api::runtime::WorkQueue::<String>::new();
        queue.add("a".to_string());
        queue.add("b".to_string());
        metrics.register_queue("replicaset", Arc::new(queue));
        metrics.register_pending_pods(Box::new(|| (1, 2, 3)));
        let text = metrics.render();
        for line in [
            "apiserver_request_total{code=\"201\",group=\"apps\",resource=\"deployments\",subresource=\"\",verb=\"CREATE\",version=\"v1\"} 1",
            "apiserver_request_duration_seconds_count{group=\"apps\",resource=\"deployments\",subresource=\"\",verb=\"CREATE\",version=\"v1\"} 1",
            "scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"scheduled\"} 1",
            "scheduler_scheduling_attempt_duration_seconds_count{profile=\"default-scheduler\",result=\"scheduled\"} 1",
            "workqueue_depth{name=\"replicaset\"} 2",
            "workqueue_adds_total{name=\"replicaset\"} 2",
            "scheduler_pending_pods{queue=\"unschedulable\"} 3",
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
    }
}
