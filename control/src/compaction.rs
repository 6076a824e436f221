//! Periodic compaction of the store's history, as the Kubernetes API server does for etcd:
//! every interval, forget the history older than the revision seen one interval ago, so
//! that watches can still resume across a short disconnect while the history stays bounded.

use std::{sync::Arc, time::Duration};

use tracing::{debug, warn};

use crate::store::Store;

/// How often history is compacted (Kubernetes' default `--etcd-compaction-interval`).
pub const INTERVAL: Duration = Duration::from_secs(300);

/// Compacts `store` every `interval`, forever.
pub async fn run(store: Arc<dyn Store>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    let mut previous: Option<i64> = None;
    loop {
        ticker.tick().await;
        if let Some(revision) = previous {
            match store.compact(revision).await {
                Ok(()) => debug!(revision, "compacted the store's history"),
                Err(error) => warn!(%error, revision, "compacting the store failed"),
            }
        }
        match store.current_revision().await {
            Ok(revision) => previous = Some(revision),
            Err(error) => warn!(%error, "reading the store's revision failed"),
        }
    }
}
