//! Wiring the workload controllers share: an informer subscription turned into work-queue
//! keys by a handler, and the wait for caches to fill before the first reconcile.

use std::time::Duration;

use skiff_api::runtime::{Change, Store, Subscription, WorkQueue};
use tokio::task::JoinHandle;
use tracing::warn;

/// How many keys of one controller are reconciled at once (kube-controller-manager's
/// `--concurrent-*-syncs` default).
pub const WORKERS: usize = 5;

/// How long a controller waits for its caches before it starts anyway (and logs).
const CACHE_SYNC: Duration = Duration::from_secs(60);

/// Feeds `queue` from `subscription`: `handler` names the keys each change concerns.
pub fn feed<T, K>(
    mut subscription: Subscription<T>,
    queue: WorkQueue<K>,
    handler: impl Fn(Change<T>, &WorkQueue<K>) + Send + 'static,
) -> JoinHandle<()>
where
    T: Send + Sync + 'static,
    K: Clone + Eq + std::hash::Hash + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(change) = subscription.recv().await {
            handler(change, &queue);
        }
    })
}

/// Waits until `store` holds a first full list (bounded by [`CACHE_SYNC`]).
pub async fn wait_for_cache<T>(controller: &str, store: &Store<T>) {
    if tokio::time::timeout(CACHE_SYNC, store.wait_until_ready())
        .await
        .is_err()
    {
        warn!(
            controller,
            "a cache did not fill within {CACHE_SYNC:?}; starting anyway"
        );
    }
}
