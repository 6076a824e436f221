//! Wiring shared by the cluster controllers: the process's shared informer of a resource
//! (with the indexes a controller needs), and a task that turns its changes into work-queue
//! keys.

use std::{hash::Hash, sync::Arc};

use serde::de::DeserializeOwned;
use skiff_api::runtime::{Change, Informer, Subscription, WorkQueue, Writer};

use super::Context;

/// The shared informer of `resource` in every namespace, with `writer`'s indexes.
pub fn informer<T: DeserializeOwned + Send + Sync + 'static>(
    context: &Context,
    resource: &str,
    writer: Writer<T>,
) -> Arc<Informer<T>> {
    context.informers.informer(resource, writer)
}

/// Adds to `queue` the keys `keys` names for each change, until the informer goes away.
pub fn feed<T, K>(
    mut changes: Subscription<T>,
    queue: WorkQueue<K>,
    keys: impl Fn(&Change<T>) -> Vec<K> + Send + 'static,
) where
    T: Send + Sync + 'static,
    K: Clone + Eq + Hash + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            for key in keys(&change) {
                queue.add(key);
            }
        }
    });
}
