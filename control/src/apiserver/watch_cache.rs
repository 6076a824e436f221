//! The watch cache: one store watch on `/registry/` feeds an in-memory copy of every object
//! and a bounded history of recent events, from which List and Watch are served, so that a
//! thousand watchers cost the store a single watch.
//!
//! Consistency: a List first learns the store's current revision and waits until the cache
//! has applied it (a consistent read served from memory). A Watch from revision R replays
//! the history after R and then follows live events without a gap: it subscribes while the
//! history is locked. A watch from before the history's start gets [`CacheError::TooOld`]
//! (HTTP 410 Gone in Kubernetes): the client lists again.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, RwLock},
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tracing::{info, warn};

use crate::store::{RangeOptions, Store, StoreError, WatchEvent as StoreEvent};

/// The key prefix every object lives under.
pub const REGISTRY_PREFIX: &str = "/registry/";
/// How long a List waits for the cache to catch up with the store.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);
const LIST_PAGE: usize = 5000;

/// An object as served: its JSON with `metadata.resourceVersion` set, and the parsed value
/// for selector matching.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub mod_revision: i64,
    pub bytes: Bytes,
    pub value: Value,
}

impl CachedObject {
    /// Builds the served form of a stored value: injects `metadata.resourceVersion`.
    pub fn from_stored(key: &str, value: &[u8], mod_revision: i64) -> Result<Self, CacheError> {
        let mut json: Value =
            serde_json::from_slice(value).map_err(|source| CacheError::Corrupt {
                key: key.to_string(),
                source,
            })?;
        if let Some(meta) = json.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert(
                "resourceVersion".into(),
                Value::String(mod_revision.to_string()),
            );
        }
        let bytes =
            Bytes::from(
                serde_json::to_vec(&json).map_err(|source| CacheError::Corrupt {
                    key: key.to_string(),
                    source,
                })?,
            );
        Ok(Self {
            key: key.to_string(),
            mod_revision,
            bytes,
            value: json,
        })
    }
}

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// One change, with the object after it (or, for a delete, as it was last).
#[derive(Debug, Clone)]
pub struct CacheEvent {
    pub revision: i64,
    pub kind: EventKind,
    pub object: Arc<CachedObject>,
    /// The object before the change, for modifies and deletes.
    pub prev: Option<Arc<CachedObject>>,
}

/// Why the cache could not serve a request.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "resourceVersion {requested} is too old (the cache's history starts after {oldest}); list again"
    )]
    TooOld { requested: i64, oldest: i64 },
    #[error(
        "the watch cache did not reach revision {wanted} within {CATCH_UP_TIMEOUT:?} (it is at {at})"
    )]
    Behind { wanted: i64, at: i64 },
    #[error("stored object {key} is not valid JSON")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Default)]
struct CacheState {
    objects: BTreeMap<String, Arc<CachedObject>>,
    /// The last revision applied.
    revision: i64,
    /// Events after `history_start`, in revision order.
    history: VecDeque<Arc<CacheEvent>>,
    /// Every event after this revision is in `history`.
    history_start: i64,
}

/// The cache shared by every request handler.
#[derive(Debug)]
pub struct WatchCache {
    store: Arc<dyn Store>,
    state: RwLock<CacheState>,
    events: broadcast::Sender<Arc<CacheEvent>>,
    applied: watch::Sender<i64>,
    capacity: usize,
}

/// A watch's first part (replayed history or the initial state) and its live feed.
#[derive(Debug)]
pub struct Subscription {
    pub backlog: Vec<Arc<CacheEvent>>,
    /// The revision the backlog ends at; live events at or below it are skipped.
    pub revision: i64,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
}

impl WatchCache {
    /// Lists the store, then follows it from a background task.
    ///
    /// # Errors
    /// When the initial list fails.
    pub async fn start(store: Arc<dyn Store>, capacity: usize) -> Result<Arc<Self>, CacheError> {
        let (events, _) = broadcast::channel(capacity.max(1024));
        let (applied, _) = watch::channel(0);
        let cache = Arc::new(Self {
            store,
            state: RwLock::new(CacheState::default()),
            events,
            applied,
            capacity,
        });
        let revision = cache.relist().await?;
        let follower = Arc::clone(&cache);
        tokio::spawn(async move { follower.follow(revision).await });
        Ok(cache)
    }

    /// Replaces the cache's contents with a fresh list of the store; returns its revision.
    async fn relist(&self) -> Result<i64, CacheError> {
        let mut objects = BTreeMap::new();
        let mut options = RangeOptions {
            limit: Some(LIST_PAGE),
            ..RangeOptions::default()
        };
        let revision = loop {
            let page = self.store.range(REGISTRY_PREFIX, options.clone()).await?;
            for kv in &page.kvs {
                match CachedObject::from_stored(&kv.key, &kv.value, kv.mod_revision) {
                    Ok(object) => {
                        objects.insert(kv.key.clone(), Arc::new(object));
                    }
                    Err(error) => warn!(%error, "skipping an object that is not valid JSON"),
                }
            }
            if !page.more {
                break page.revision;
            }
            options.at_revision = Some(page.revision);
            options.start_after = page.kvs.last().map(|kv| kv.key.clone());
        };
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        // Watchers already following see the difference as events at the list's revision;
        // nobody can resume into the lost history.
        for event in diff(&state.objects, &objects, revision) {
            let _ = self.events.send(Arc::new(event));
        }
        state.objects = objects;
        state.revision = revision;
        state.history.clear();
        state.history_start = revision;
        drop(state);
        self.applied.send_replace(revision);
        info!(revision, "watch cache listed the store");
        Ok(revision)
    }

    /// Applies the store's events forever, relisting when the store's history is lost.
    async fn follow(self: Arc<Self>, mut from: i64) {
        loop {
            match self.store.watch(REGISTRY_PREFIX, from).await {
                Ok(mut stream) => {
                    while let Some(event) = stream.next().await {
                        match event {
                            Ok(event) => {
                                from = event.revision();
                                self.apply(event);
                            }
                            Err(error) => {
                                warn!(%error, "store watch ended");
                                break;
                            }
                        }
                    }
                }
                Err(error) => warn!(%error, "cannot watch the store"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Resume where we were if the store still has that history; otherwise relist.
            if let Err(StoreError::Compacted { .. }) = self
                .store
                .range(
                    REGISTRY_PREFIX,
                    RangeOptions {
                        at_revision: Some(from),
                        limit: Some(1),
                        ..Default::default()
                    },
                )
                .await
            {
                match self.relist().await {
                    Ok(revision) => from = revision,
                    Err(error) => warn!(%error, "relisting the store failed"),
                }
            }
        }
    }

    fn apply(&self, event: StoreEvent) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let revision = event.revision();
        if revision <= state.revision {
            return;
        }
        let cached = match event {
            StoreEvent::Put { kv, .. } => {
                match CachedObject::from_stored(&kv.key, &kv.value, kv.mod_revision) {
                    Ok(object) => {
                        let object = Arc::new(object);
                        let prev = state.objects.insert(kv.key.clone(), Arc::clone(&object));
                        let kind = if prev.is_some() {
                            EventKind::Modified
                        } else {
                            EventKind::Added
                        };
                        Some(CacheEvent {
                            revision,
                            kind,
                            object,
                            prev,
                        })
                    }
                    Err(error) => {
                        warn!(%error, "skipping an object that is not valid JSON");
                        None
                    }
                }
            }
            StoreEvent::Delete { key, .. } => state.objects.remove(&key).map(|prev| CacheEvent {
                revision,
                kind: EventKind::Deleted,
                object: Arc::clone(&prev),
                prev: Some(prev),
            }),
        };
        state.revision = revision;
        if let Some(event) = cached {
            let event = Arc::new(event);
            state.history.push_back(Arc::clone(&event));
            while state.history.len() > self.capacity {
                if let Some(old) = state.history.pop_front() {
                    state.history_start = old.revision;
                }
            }
            // Sent under the lock, so that a subscriber sees either the history or the event.
            let _ = self.events.send(event);
        }
        drop(state);
        self.applied.send_replace(revision);
    }

    /// Waits until the cache has applied the store's current revision, and returns it.
    async fn catch_up(&self) -> Result<i64, CacheError> {
        let wanted = self.store.current_revision().await?;
        let mut applied = self.applied.subscribe();
        let reached =
            tokio::time::timeout(CATCH_UP_TIMEOUT, applied.wait_for(|&r| r >= wanted)).await;
        match reached {
            Ok(Ok(_)) => Ok(wanted),
            _ => Err(CacheError::Behind {
                wanted,
                at: *self.applied.borrow(),
            }),
        }
    }

    /// Objects under `prefix` that `filter` accepts, consistent with the store at the
    /// returned revision; at most `limit` (0: all), after the key `start_after`. The last
    /// value says whether more remain.
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        filter: impl Fn(&CachedObject) -> bool,
    ) -> Result<(Vec<Arc<CachedObject>>, i64, usize), CacheError> {
        self.catch_up().await?;
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let start = match start_after {
            Some(key) => std::ops::Bound::Excluded(key.to_string()),
            None => std::ops::Bound::Included(prefix.to_string()),
        };
        let mut items = Vec::new();
        let mut remaining = 0;
        for (key, object) in state.objects.range((start, std::ops::Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            if !filter(object) {
                continue;
            }
            if limit == 0 || items.len() < limit {
                items.push(Arc::clone(object));
            } else {
                remaining += 1;
            }
        }
        Ok((items, state.revision, remaining))
    }

    /// Starts a watch on keys under `prefix`: from `since` (events strictly after it), or,
    /// with `None`, from the current state (every object as an `Added` event first).
    pub async fn subscribe(
        &self,
        prefix: &str,
        since: Option<i64>,
    ) -> Result<Subscription, CacheError> {
        if since.is_none() {
            self.catch_up().await?;
        }
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let backlog = match since {
            None => state
                .objects
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, object)| {
                    Arc::new(CacheEvent {
                        revision: object.mod_revision,
                        kind: EventKind::Added,
                        object: Arc::clone(object),
                        prev: None,
                    })
                })
                .collect(),
            Some(since) if since < state.history_start => {
                return Err(CacheError::TooOld {
                    requested: since,
                    oldest: state.history_start,
                });
            }
            Some(since) => {
                let first = state.history.partition_point(|e| e.revision <= since);
                state
                    .history
                    .range(first..)
                    .filter(|e| e.object.key.starts_with(prefix))
                    .cloned()
                    .collect()
            }
        };
        Ok(Subscription {
            backlog,
            revision: state.revision.max(since.unwrap_or(0)),
            live: self.events.subscribe(),
        })
    }

    /// The last revision the cache applied.
    pub fn revision(&self) -> i64 {
        *self.applied.borrow()
    }

    /// The store under the cache, for reads and writes that must reach it.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// The events that turn `old` into `new`, all at `revision`.
fn diff(
    old: &BTreeMap<String, Arc<CachedObject>>,
    new: &BTreeMap<String, Arc<CachedObject>>,
    revision: i64,
) -> Vec<CacheEvent> {
    let mut events = Vec::new();
    for (key, object) in new {
        match old.get(key) {
            Some(prev) if prev.mod_revision == object.mod_revision => {}
            prev => events.push(CacheEvent {
                revision,
                kind: if prev.is_some() {
                    EventKind::Modified
                } else {
                    EventKind::Added
                },
                object: Arc::clone(object),
                prev: prev.cloned(),
            }),
        }
    }
    for (key, prev) in old {
        if !new.contains_key(key) {
            events.push(CacheEvent {
                revision,
                kind: EventKind::Deleted,
                object: Arc::clone(prev),
                prev: Some(Arc::clone(prev)),
            });
        }
    }
    events
}
