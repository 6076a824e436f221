//! Wiring shared by the cluster controllers: an informer over a store built with the
//! indexes a controller needs, and a task that turns its changes into work-queue keys.

use std::hash::Hash;

use serde::de::DeserializeOwned;
use skiff_api::{
    client::Client,
    runtime::{Change, Config, Informer, Subscription, Watcher, WorkQueue, Writer},
};

/// Watches `resource` in every namespace into `writer`'s store.
pub fn informer<T: DeserializeOwned + Send + Sync + 'static>(
    client: &Client,
    resource: &str,
    writer: Writer<T>,
) -> Informer<T> {
    Informer::spawn(
        Watcher::new(client.clone(), resource, "", Config::default()),
        writer,
    )
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
