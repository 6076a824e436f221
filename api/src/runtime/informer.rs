//! An informer: a [`Watcher`] running in its own task, feeding a [`Store`] through its
//! [`Writer`], and telling any number of subscribers what each write changed.
//!
//! Notifications are sent after the store is written, so a subscriber that reads the store
//! on a notification sees at least that state. A subscriber that falls behind gets
//! [`Change::Resynced`] in place of what it missed, never a silent gap.

use std::fmt;

use futures::Stream;
use serde::de::DeserializeOwned;
use tokio::{
    sync::broadcast::{self, error::RecvError},
    task::JoinHandle,
};

use super::{
    store::{Change, Store, Writer},
    watcher::{Config, ListWatch, Watcher},
};
use crate::client::Client;

/// How many notifications a subscriber may fall behind before it lags (and gets
/// [`Change::Resynced`] instead of them).
pub const SUBSCRIBER_BUFFER: usize = 4096;

/// A watched, cached resource. Dropping it stops the watch; the store's readers keep the
/// last state.
pub struct Informer<T> {
    store: Store<T>,
    changes: broadcast::Sender<Change<T>>,
    task: JoinHandle<()>,
}

impl<T> fmt::Debug for Informer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Informer")
            .field("store", &self.store)
            .field("subscribers", &self.changes.receiver_count())
            .finish_non_exhaustive()
    }
}

impl<T> Drop for Informer<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> Informer<T> {
    /// Watches `resource` (plural, e.g. `pods`) in `namespace` ("" for all) through
    /// `client`, decoding objects as `T` (e.g. `Pod`), into a store without indexes.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn new(client: Client, resource: &str, namespace: &str, config: Config) -> Self {
        Self::spawn(
            Watcher::new(client, resource, namespace, config),
            Writer::new(),
        )
    }

    /// Runs `watcher` into the store `writer` fills (build it with the indexes you need).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn<L: ListWatch>(mut watcher: Watcher<L>, mut writer: Writer<T>) -> Self {
        let store = writer.reader();
        let (changes, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        let sender = changes.clone();
        let task = tokio::spawn(async move {
            loop {
                let event = watcher.next().await;
                for change in writer.apply(event) {
                    // No subscriber is not an error: the store is still kept.
                    let _ = sender.send(change);
                }
            }
        });
        Self {
            store,
            changes,
            task,
        }
    }
}

impl<T> Informer<T> {
    /// A read handle on the cache.
    pub fn store(&self) -> Store<T> {
        self.store.clone()
    }

    /// Changes from now on. If the store has already been filled, the first notification
    /// is [`Change::Resynced`]: what came before is only in the store.
    pub fn subscribe(&self) -> Subscription<T> {
        // Subscribe before looking at readiness: a list applied in between is then both
        // received and (harmlessly) announced by the resync.
        let changes = self.changes.subscribe();
        Subscription {
            changes,
            resync_first: self.store.ready(),
        }
    }
}

/// One subscriber's notifications.
pub struct Subscription<T> {
    changes: broadcast::Receiver<Change<T>>,
    resync_first: bool,
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pending", &self.changes.len())
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Subscription<T> {
    /// The next change; `None` once the informer is dropped.
    pub async fn recv(&mut self) -> Option<Change<T>> {
        if std::mem::take(&mut self.resync_first) {
            return Some(Change::Resynced);
        }
        match self.changes.recv().await {
            Ok(change) => Some(change),
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    type_name = std::any::type_name::<T>(),
                    "an informer subscriber fell behind; it must resync from the store"
                );
                Some(Change::Resynced)
            }
            Err(RecvError::Closed) => None,
        }
    }

    /// The subscription as a stream that ends when the informer is dropped.
    pub fn into_stream(self) -> impl Stream<Item = Change<T>> + Send {
        futures::stream::unfold(self, |mut subscription| async move {
            let change = subscription.recv().await?;
            Some((change, subscription))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use k8s_openapi::api::core::v1::Pod;

    use super::*;
    use crate::{
        client::EventType,
        runtime::{
            store::ObjectKey,
            watcher::tests::{FakeApi, event, expired, page, pod},
        },
    };

    fn informer(fake: &FakeApi) -> Informer<Pod> {
        Informer::spawn(
            Watcher::new(fake.clone(), "pods", "default", Config::default()),
            Writer::new(),
        )
    }

    async fn next(subscription: &mut Subscription<Pod>) -> String {
        let change = tokio::time::timeout(Duration::from_secs(60), subscription.recv())
            .await
            .expect("a notification within a minute")
            .expect("the informer is alive");
        let name = |p: &Arc<Pod>| p.metadata.name.clone().unwrap_or_default();
        match change {
            Change::Added(p) => format!("added {}", name(&p)),
            Change::Updated { new, .. } => format!("updated {}", name(&new)),
            Change::Deleted(p) => format!("deleted {}", name(&p)),
            Change::Resynced => "resynced".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn informer_fills_its_store_and_tells_every_subscriber() {
        let fake = FakeApi::default();
        fake.list_answers(Ok(page(vec![pod("a", "1")], "10", "")))
            .watch_answers(Ok(vec![
                event(EventType::Added, pod("b", "11")),
                event(EventType::Modified, pod("a", "12")),
                event(EventType::Deleted, pod("b", "13")),
            ]));
        let informer = informer(&fake);
        let mut first = informer.subscribe();
        let mut second = informer.subscribe();

        for subscription in [&mut first, &mut second] {
            assert_eq!(next(subscription).await, "added a");
            assert_eq!(next(subscription).await, "resynced");
            assert_eq!(next(subscription).await, "added b");
            assert_eq!(next(subscription).await, "updated a");
            assert_eq!(next(subscription).await, "deleted b");
        }
        let store = informer.store();
        assert!(store.ready());
        assert_eq!(store.keys(), [ObjectKey::new("default", "a")]);
        assert_eq!(
            store
                .get(&ObjectKey::new("default", "a"))
                .unwrap()
                .metadata
                .resource_version
                .as_deref(),
            Some("12")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn informer_reports_deletions_hidden_by_a_relist() {
        let fake = FakeApi::default();
        fake.list_answers(Ok(page(vec![pod("a", "1"), pod("b", "2")], "10", "")))
            .watch_answers(Ok(vec![Err(expired())]))
            .list_answers(Ok(page(vec![pod("a", "1")], "20", "")));
        let informer = informer(&fake);
        let mut subscription = informer.subscribe();

        assert_eq!(next(&mut subscription).await, "added a");
        assert_eq!(next(&mut subscription).await, "added b");
        assert_eq!(next(&mut subscription).await, "resynced");
        assert_eq!(next(&mut subscription).await, "deleted b");
        assert_eq!(next(&mut subscription).await, "resynced");
        assert_eq!(informer.store().keys(), [ObjectKey::new("default", "a")]);
    }

    #[tokio::test(start_paused = true)]
    async fn informer_subscriber_that_joins_late_starts_with_a_resync() {
        let fake = FakeApi::default();
        fake.list_answers(Ok(page(vec![pod("a", "1")], "10", "")))
            .watch_answers(Ok(vec![]));
        let informer = informer(&fake);
        tokio::time::timeout(Duration::from_secs(60), informer.store().wait_until_ready())
            .await
            .expect("the store is filled");

        let mut late = informer.subscribe();
        assert_eq!(next(&mut late).await, "resynced");
    }

    #[tokio::test(start_paused = true)]
    async fn informer_subscriber_that_lags_learns_it_must_resync() {
        let fake = FakeApi::default();
        let many: Vec<_> = (0..SUBSCRIBER_BUFFER + 10)
            .map(|i| pod(&format!("p{i}"), "1"))
            .collect();
        fake.list_answers(Ok(page(many, "10", "")));
        let informer = informer(&fake);
        let mut slow = informer.subscribe();
        tokio::time::timeout(Duration::from_secs(60), informer.store().wait_until_ready())
            .await
            .expect("the store is filled");

        assert_eq!(
            next(&mut slow).await,
            "resynced",
            "the lag is reported first"
        );
        assert_eq!(informer.store().len(), SUBSCRIBER_BUFFER + 10);
    }

    #[tokio::test(start_paused = true)]
    async fn informer_subscription_ends_when_the_informer_is_dropped() {
        let fake = FakeApi::default();
        let informer = informer(&fake);
        let mut subscription = informer.subscribe();
        drop(informer);
        let end = tokio::time::timeout(Duration::from_secs(60), subscription.recv())
            .await
            .expect("the subscription ends");
        assert!(end.is_none());
    }
}
