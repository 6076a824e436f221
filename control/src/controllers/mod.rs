//! The controller manager: controllers that converge the cluster toward what its objects
//! ask for. Each follows one pattern: informer caches feed a deduplicating, rate-limited
//! work queue, and `reconcile(key)` reads the caches (never the event payload) and acts.
//! They run only in the `skiff-control` instance that holds the leader Lease.

pub mod cluster_api;
pub mod daemonset;
pub mod deployment;
pub mod endpoint_slice;
pub mod expectations;
mod feed;
pub mod garbage_collector;
pub mod job;
pub mod load_balancer;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod pods;
pub mod replicaset;
pub mod runner;
pub mod service_account;
pub mod writes;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use skiff_api::{
    client::Client,
    runtime::{InformerFactory, WorkQueue},
};
use tokio::{sync::watch, task::JoinSet};
use tracing::info;

use crate::metrics::Metrics;

/// Settings shared by the controllers, from `skiff-control`'s flags.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// How long a node's Lease may go unrenewed before the node is Ready=Unknown
    /// (kube-controller-manager's `--node-monitor-grace-period`, 40 s).
    pub node_monitor_grace_period: Duration,
    /// How long pods on an unreachable node stay when they do not say otherwise: the
    /// toleration seconds the API server adds to pods (300 s).
    pub default_eviction_seconds: i64,
    /// Nodes per second that may be given NoExecute taints, which evict their pods
    /// (kube-controller-manager's `--node-eviction-rate`, 0.1).
    pub node_eviction_rate: f64,
    /// Signs the tokens of service accounts; the service account controller is off without.
    pub service_account_signer: Option<crate::apiserver::auth::ServiceAccountSigner>,
    /// The pool LoadBalancer Services get addresses from (`--load-balancer-ip-pool`); the
    /// load balancer controller is off without one.
    pub load_balancer_pool: Option<load_balancer::IpPool>,
    /// The cluster CIDR and the prefix length of each node's pod CIDR (`--cluster-cidr`,
    /// `--node-cidr-mask-size`); node IPAM is off without.
    pub cluster_cidr: Option<(crate::apiserver::allocation::Cidr, u8)>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            node_monitor_grace_period: Duration::from_secs(40),
            default_eviction_seconds: 300,
            node_eviction_rate: 0.1,
            service_account_signer: None,
            load_balancer_pool: None,
            cluster_cidr: None,
        }
    }
}

/// What every controller gets: a client, the process's shared informers, the options and
/// this instance's name (for events).
#[derive(Clone, Debug)]
pub struct Context {
    pub client: Client,
    /// One watch and cache per resource, shared with the scheduler and every controller.
    pub informers: Arc<InformerFactory>,
    pub options: Arc<ControllerOptions>,
    pub identity: String,
    /// Where each controller's work queue is reported (`workqueue_depth{name=...}`).
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// A work queue for the controller `name`, reported in the process's metrics.
    pub fn queue<K>(&self, name: &str) -> WorkQueue<K>
    where
        K: Clone + Eq + std::hash::Hash + Send + Sync + 'static,
    {
        let queue = WorkQueue::new();
        self.metrics.register_queue(name, Arc::new(queue.clone()));
        queue
    }
}

/// A stop signal every controller can wait on; it fires when leadership is lost.
#[derive(Clone, Debug)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// A signal that fires when `leading` turns false (or its sender goes away).
    pub fn when_not_leading(leading: watch::Receiver<bool>) -> Self {
        Self(leading)
    }

    /// Completes once the controllers must stop.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|&leading| !leading).await;
    }
}

type Runner = fn(Context, Stop) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every controller, by the name kube-controller-manager gives it.
const CONTROLLERS: &[(&str, Runner)] = &[
    ("replicaset", replicaset::run),
    ("deployment", deployment::run),
    ("job", job::run),
    ("daemonset", daemonset::run),
    ("garbagecollector", garbage_collector::run),
    ("endpointslice-controller", |context, stop| {
        Box::pin(endpoint_slice::run(context, stop))
    }),
    ("node-lifecycle-controller", |context, stop| {
        Box::pin(node_lifecycle::run(context, stop))
    }),
    ("namespace-controller", |context, stop| {
        Box::pin(namespace::run(context, stop))
    }),
    ("serviceaccount-controller", |context, stop| {
        Box::pin(service_account::run(context, stop))
    }),
    ("service-lb-controller", |context, stop| {
        Box::pin(load_balancer::run(context, stop))
    }),
    ("node-ipam-controller", |context, stop| {
        Box::pin(node_ipam::run(context, stop))
    }),
];

/// Runs every controller until `stop` fires, then waits for them to finish.
pub async fn run(context: Context, stop: Stop) {
    let mut running = JoinSet::new();
    for (name, runner) in CONTROLLERS {
        info!(controller = name, "starting controller");
        running.spawn(runner(context.clone(), stop.clone()));
    }
    while running.join_next().await.is_some() {}
}
