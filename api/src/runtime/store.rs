//! The reflector's cache: the watcher's events applied to a map of typed objects keyed by
//! `namespace/name`, read by everyone and written by one [`Writer`].
//!
//! Objects are decoded once, when their event arrives, and shared as `Arc<T>`; readers
//! clone a [`Store`] freely and never wait on the network. Secondary indexes (pods by
//! node, say) are kept up to date on every write so lookups by them do not scan.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use k8s_openapi::{Metadata, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;

use super::{error_chain, watcher::Event};

/// Why an object from the server could not be cached (it is logged and skipped).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the object has no metadata.name")]
    MissingName,
    #[error("{key} does not decode as {type_name}")]
    Decode {
        key: ObjectKey,
        type_name: &'static str,
        #[source]
        source: serde_path_to_error::Error<serde_json::Error>,
    },
}

/// Names one object: `namespace/name`, or `name` for a cluster-scoped object (empty
/// namespace). The key of the store and of work queues.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    /// The key of object `name` in `namespace` ("" for cluster-scoped).
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of cluster-scoped object `name` (a Node, a Namespace).
    pub fn cluster(name: impl Into<String>) -> Self {
        Self::new("", name)
    }

    /// The key of the object `meta` describes (empty parts where `meta` has none).
    pub fn from_meta(meta: &ObjectMeta) -> Self {
        Self::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }

    /// The key of a typed object (`ObjectKey::of(&*pod)`).
    pub fn of<K: Metadata<Ty = ObjectMeta>>(object: &K) -> Self {
        Self::from_meta(object.metadata())
    }

    /// The key of an object as JSON.
    ///
    /// # Errors
    /// [`StoreError::MissingName`] when it has no `metadata.name`.
    pub fn from_value(object: &Value) -> Result<Self, StoreError> {
        let field = |name: &str| {
            object
                .pointer(&format!("/metadata/{name}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        match field("name") {
            "" => Err(StoreError::MissingName),
            name => Ok(Self::new(field("namespace"), name)),
        }
    }

    /// Reads `namespace/name` or `name` (the form [`fmt::Display`] writes).
    pub fn parse(text: &str) -> Self {
        match text.split_once('/') {
            Some((namespace, name)) => Self::new(namespace, name),
            None => Self::cluster(text),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// What a write did to the store, as subscribers of an informer see it.
#[derive(Debug)]
pub enum Change<T> {
    Added(Arc<T>),
    Updated {
        old: Arc<T>,
        new: Arc<T>,
    },
    /// The object's last known state.
    Deleted(Arc<T>),
    /// The store may hold changes this subscriber was not told about: after every full
    /// list, and in place of the changes a lagging subscriber lost. Re-read the store
    /// (for a controller: enqueue every key it cares about).
    Resynced,
}

impl<T> Clone for Change<T> {
    fn clone(&self) -> Self {
        match self {
            Change::Added(object) => Change::Added(Arc::clone(object)),
            Change::Updated { old, new } => Change::Updated {
                old: Arc::clone(old),
                new: Arc::clone(new),
            },
            Change::Deleted(object) => Change::Deleted(Arc::clone(object)),
            Change::Resynced => Change::Resynced,
        }
    }
}

impl<T> Change<T> {
    /// The object the change is about: the new state, or the last one for a deletion.
    pub fn object(&self) -> Option<&Arc<T>> {
        match self {
            Change::Added(object) | Change::Deleted(object) => Some(object),
            Change::Updated { new, .. } => Some(new),
            Change::Resynced => None,
        }
    }
}

/// Computes the values an object is indexed under (none, one or several).
pub type IndexFn<T> = Arc<dyn Fn(&T) -> Vec<String> + Send + Sync>;

struct Entry<T> {
    object: Arc<T>,
    resource_version: String,
}

struct Index<T> {
    function: IndexFn<T>,
    entries: HashMap<String, BTreeSet<ObjectKey>>,
}

impl<T> Index<T> {
    fn insert(&mut self, key: &ObjectKey, object: &T) {
        for value in (self.function)(object) {
            self.entries.entry(value).or_default().insert(key.clone());
        }
    }

    fn remove(&mut self, key: &ObjectKey, object: &T) {
        for value in (self.function)(object) {
            if let Some(keys) = self.entries.get_mut(&value) {
                keys.remove(key);
                if keys.is_empty() {
                    self.entries.remove(&value);
                }
            }
        }
    }
}

struct State<T> {
    objects: BTreeMap<ObjectKey, Entry<T>>,
    indexes: BTreeMap<&'static str, Index<T>>,
}

impl<T> State<T> {
    fn insert(&mut self, key: ObjectKey, entry: Entry<T>) -> Option<Entry<T>> {
        let old = self.remove(&key);
        for index in self.indexes.values_mut() {
            index.insert(&key, &entry.object);
        }
        self.objects.insert(key, entry);
        old
    }

    fn remove(&mut self, key: &ObjectKey) -> Option<Entry<T>> {
        let old = self.objects.remove(key)?;
        self.unindex(key, &old.object);
        Some(old)
    }

    fn unindex(&mut self, key: &ObjectKey, object: &T) {
        for index in self.indexes.values_mut() {
            index.remove(key, object);
        }
    }

    fn reindex(&mut self) {
        for index in self.indexes.values_mut() {
            index.entries.clear();
            for (key, entry) in &self.objects {
                index.insert(key, &entry.object);
            }
        }
    }
}

struct Shared<T> {
    state: RwLock<State<T>>,
    ready: watch::Sender<bool>,
}

/// A read handle on the cache: cheap to clone, never blocks on I/O.
pub struct Store<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Store<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for Store<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len())
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> Store<T> {
    fn read(&self) -> RwLockReadGuard<'_, State<T>> {
        self.shared.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The object under `key`, if cached.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<T>> {
        self.read()
            .objects
            .get(key)
            .map(|entry| Arc::clone(&entry.object))
    }

    /// Every cached object, in key order.
    pub fn list(&self) -> Vec<Arc<T>> {
        self.read()
            .objects
            .values()
            .map(|entry| Arc::clone(&entry.object))
            .collect()
    }

    /// Every cached key, in order.
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.read().objects.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The objects index `index` files under `value`, in key order.
    ///
    /// # Panics
    /// When no index named `index` was registered (a programming error).
    pub fn by_index(&self, index: &str, value: &str) -> Vec<Arc<T>> {
        let state = self.read();
        Self::indexed(&state, index, value)
            .map(|key| Arc::clone(&state.objects[key].object))
            .collect()
    }

    /// The keys index `index` files under `value`, in order.
    ///
    /// # Panics
    /// When no index named `index` was registered (a programming error).
    pub fn index_keys(&self, index: &str, value: &str) -> Vec<ObjectKey> {
        let state = self.read();
        Self::indexed(&state, index, value).cloned().collect()
    }

    fn indexed<'a>(
        state: &'a State<T>,
        index: &str,
        value: &str,
    ) -> impl Iterator<Item = &'a ObjectKey> {
        let Some(index) = state.indexes.get(index) else {
            panic!(
                "the store of {} has no index `{index}`; register it with Writer::with_index",
                std::any::type_name::<T>()
            )
        };
        index.entries.get(value).into_iter().flatten()
    }

    /// Gives this store every index of `other` it lacks (by name), filled from what it
    /// holds, so several users of one shared store each find the indexes they registered.
    /// An index name means one function: a name already present keeps its function.
    pub(crate) fn merge_indexes(&self, other: Writer<T>) {
        let taken = {
            let mut theirs = other
                .store
                .shared
                .state
                .write()
                .unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut theirs.indexes)
        };
        let mut state = self.shared.state.write().unwrap_or_else(|e| e.into_inner());
        for (name, index) in taken {
            if state.indexes.contains_key(name) {
                continue;
            }
            let mut index = Index {
                function: index.function,
                entries: HashMap::new(),
            };
            for (key, entry) in &state.objects {
                index.insert(key, &entry.object);
            }
            state.indexes.insert(name, index);
        }
    }

    /// True once the first full list has been applied.
    pub fn ready(&self) -> bool {
        *self.shared.ready.borrow()
    }

    /// Waits for the first full list. It never comes if the watcher cannot reach the
    /// server, so bound the wait where that matters.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.shared.ready.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

/// The one handle that writes a store: it applies watcher events and says what changed.
pub struct Writer<T> {
    store: Store<T>,
}

impl<T> fmt::Debug for Writer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("store", &self.store)
            .finish()
    }
}

impl<T: DeserializeOwned> Default for Writer<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: DeserializeOwned> Writer<T> {
    /// An empty, not yet ready store.
    pub fn new() -> Self {
        Self {
            store: Store {
                shared: Arc::new(Shared {
                    state: RwLock::new(State {
                        objects: BTreeMap::new(),
                        indexes: BTreeMap::new(),
                    }),
                    ready: watch::Sender::new(false),
                }),
            },
        }
    }

    /// Adds a secondary index: `function` gives the values an object is filed under
    /// (e.g. a pod's `spec.nodeName`); it must depend on the object alone.
    #[must_use]
    pub fn with_index(
        self,
        name: &'static str,
        function: impl Fn(&T) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        {
            let mut state = self.write();
            state.indexes.insert(
                name,
                Index {
                    function: Arc::new(function),
                    entries: HashMap::new(),
                },
            );
            state.reindex();
        }
        self
    }

    /// A read handle on the store this writer fills.
    pub fn reader(&self) -> Store<T> {
        self.store.clone()
    }

    fn write(&self) -> RwLockWriteGuard<'_, State<T>> {
        self.store
            .shared
            .state
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one watcher event and returns what changed, in order. Objects that do not
    /// decode as `T` are logged and skipped (a stale version stays cached).
    pub fn apply(&mut self, event: Event) -> Vec<Change<T>> {
        match event {
            Event::Applied(value) => {
                let Some((key, entry)) = decode::<T>(value) else {
                    return Vec::new();
                };
                let mut state = self.write();
                if let Some(old) = state.objects.get(&key)
                    && same_version(&old.resource_version, &entry.resource_version)
                {
                    return Vec::new();
                }
                let new = Arc::clone(&entry.object);
                match state.insert(key, entry) {
                    None => vec![Change::Added(new)],
                    Some(old) => vec![Change::Updated {
                        old: old.object,
                        new,
                    }],
                }
            }
            Event::Deleted(value) => {
                let key = match ObjectKey::from_value(&value) {
                    Ok(key) => key,
                    Err(error) => {
                        tracing::warn!(error = %error_chain(&error), "skipping a deletion");
                        return Vec::new();
                    }
                };
                self.write()
                    .remove(&key)
                    .map(|old| Change::Deleted(old.object))
                    .into_iter()
                    .collect()
            }
            Event::Restarted { objects, .. } => {
                let fresh: BTreeMap<ObjectKey, Entry<T>> =
                    objects.into_iter().filter_map(decode::<T>).collect();
                let mut changes = Vec::new();
                {
                    let mut state = self.write();
                    for (key, old) in &state.objects {
                        if !fresh.contains_key(key) {
                            changes.push(Change::Deleted(Arc::clone(&old.object)));
                        }
                    }
                    for (key, new) in &fresh {
                        match state.objects.get(key) {
                            None => changes.push(Change::Added(Arc::clone(&new.object))),
                            Some(old)
                                if same_version(&old.resource_version, &new.resource_version) => {}
                            Some(old) => changes.push(Change::Updated {
                                old: Arc::clone(&old.object),
                                new: Arc::clone(&new.object),
                            }),
                        }
                    }
                    state.objects = fresh;
                    state.reindex();
                }
                self.store.shared.ready.send_replace(true);
                changes.push(Change::Resynced);
                changes
            }
        }
    }
}

/// Two states are the same when they carry the same (non-empty) resourceVersion.
fn same_version(old: &str, new: &str) -> bool {
    !old.is_empty() && old == new
}

fn decode<T: DeserializeOwned>(value: Value) -> Option<(ObjectKey, Entry<T>)> {
    let key = match ObjectKey::from_value(&value) {
        Ok(key) => key,
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "skipping an object");
            return None;
        }
    };
    let resource_version = value
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(object) => Some((
            key,
            Entry {
                object: Arc::new(object),
                resource_version,
            },
        )),
        Err(source) => {
            let error = StoreError::Decode {
                key,
                type_name: std::any::type_name::<T>(),
                source,
            };
            tracing::warn!(error = %error_chain(&error), "skipping an object");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::*;

    const BY_NODE: &str = "node";

    fn pod(name: &str, node: &str, resource_version: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": resource_version},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "demo"}]},
        })
    }

    fn node_of(pod: &Pod) -> Vec<String> {
        pod.spec
            .as_ref()
            .and_then(|spec| spec.node_name.clone())
            .into_iter()
            .collect()
    }

    fn writer() -> Writer<Pod> {
        Writer::new().with_index(BY_NODE, node_of)
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    fn describe(changes: &[Change<Pod>]) -> Vec<String> {
        changes
            .iter()
            .map(|change| {
                let name = |p: &Arc<Pod>| p.metadata.name.clone().unwrap_or_default();
                match change {
                    Change::Added(p) => format!("added {}", name(p)),
                    Change::Updated { old, new } => format!(
                        "updated {} {}->{}",
                        name(new),
                        old.metadata.resource_version.as_deref().unwrap_or(""),
                        new.metadata.resource_version.as_deref().unwrap_or("")
                    ),
                    Change::Deleted(p) => format!("deleted {}", name(p)),
                    Change::Resynced => "resynced".to_string(),
                }
            })
            .collect()
    }

    fn restart(objects: Vec<Value>) -> Event {
        Event::Restarted {
            objects,
            resource_version: "100".into(),
        }
    }

    #[test]
    fn store_applies_added_modified_and_deleted_events() {
        let mut writer = writer();
        let store = writer.reader();

        let added = writer.apply(Event::Applied(pod("a", "n1", "1")));
        assert_eq!(describe(&added), ["added a"]);
        let updated = writer.apply(Event::Applied(pod("a", "n2", "2")));
        assert_eq!(describe(&updated), ["updated a 1->2"]);
        let key = ObjectKey::new("default", "a");
        let cached = store.get(&key).expect("a is cached");
        assert_eq!(
            cached.spec.as_ref().unwrap().node_name.as_deref(),
            Some("n2")
        );

        let deleted = writer.apply(Event::Deleted(pod("a", "n2", "2")));
        assert_eq!(describe(&deleted), ["deleted a"]);
        assert!(store.get(&key).is_none());
        assert!(store.is_empty());
        assert!(
            writer.apply(Event::Deleted(pod("a", "n2", "2"))).is_empty(),
            "deleting what is not cached changes nothing"
        );
    }

    #[test]
    fn store_ignores_a_replayed_event_of_the_version_it_holds() {
        let mut writer = writer();
        writer.apply(Event::Applied(pod("a", "n1", "1")));
        assert!(writer.apply(Event::Applied(pod("a", "n1", "1"))).is_empty());
    }

    #[test]
    fn store_becomes_ready_with_the_first_full_list() {
        let mut writer = writer();
        let store = writer.reader();
        writer.apply(Event::Applied(pod("a", "n1", "1")));
        assert!(!store.ready(), "watch events alone do not make a full list");
        let changes = writer.apply(restart(vec![pod("a", "n1", "1")]));
        assert_eq!(describe(&changes), ["resynced"]);
        assert!(store.ready());
        futures::executor::block_on(store.wait_until_ready());
    }

    #[test]
    fn store_restart_replaces_its_contents_and_reports_what_the_gap_hid() {
        let mut writer = writer();
        let store = writer.reader();
        writer.apply(restart(vec![
            pod("a", "n1", "1"),
            pod("b", "n1", "2"),
            pod("c", "n2", "3"),
        ]));

        // While the watch was away: b was deleted, c changed, d appeared.
        let changes = writer.apply(restart(vec![
            pod("a", "n1", "1"),
            pod("c", "n1", "7"),
            pod("d", "n2", "8"),
        ]));
        assert_eq!(
            describe(&changes),
            ["deleted b", "updated c 3->7", "added d", "resynced"]
        );
        assert_eq!(names(&store.list()), ["a", "c", "d"]);
        assert_eq!(names(&store.by_index(BY_NODE, "n1")), ["a", "c"]);
        assert_eq!(names(&store.by_index(BY_NODE, "n2")), ["d"]);
    }

    #[test]
    fn store_index_follows_updates_and_deletions() {
        let mut writer = writer();
        let store = writer.reader();
        writer.apply(Event::Applied(pod("a", "n1", "1")));
        writer.apply(Event::Applied(pod("b", "n1", "2")));
        assert_eq!(names(&store.by_index(BY_NODE, "n1")), ["a", "b"]);

        writer.apply(Event::Applied(pod("a", "n2", "3")));
        assert_eq!(names(&store.by_index(BY_NODE, "n1")), ["b"]);
        assert_eq!(
            store.index_keys(BY_NODE, "n2"),
            [ObjectKey::new("default", "a")]
        );

        // An update that keeps the node keeps the pod filed under it.
        writer.apply(Event::Applied(pod("b", "n1", "4")));
        assert_eq!(names(&store.by_index(BY_NODE, "n1")), ["b"]);

        writer.apply(Event::Deleted(pod("b", "n1", "4")));
        assert!(store.by_index(BY_NODE, "n1").is_empty());
        assert!(store.by_index(BY_NODE, "nowhere").is_empty());
    }

    #[test]
    fn store_index_registered_late_covers_what_is_already_cached() {
        let mut writer = Writer::<Pod>::new();
        writer.apply(Event::Applied(pod("a", "n1", "1")));
        let writer = writer.with_index(BY_NODE, node_of);
        assert_eq!(names(&writer.reader().by_index(BY_NODE, "n1")), ["a"]);
    }

    #[test]
    #[should_panic(expected = "has no index `typo`")]
    fn store_lookup_by_an_unregistered_index_is_a_programming_error() {
        writer().reader().by_index("typo", "n1");
    }

    #[test]
    fn store_skips_objects_that_do_not_decode_and_keeps_the_rest() {
        let mut writer = writer();
        let store = writer.reader();
        let mut broken = pod("b", "n1", "2");
        broken["spec"]["containers"] = json!("not a list");
        let nameless = json!({"metadata": {"namespace": "default"}});
        let changes = writer.apply(restart(vec![pod("a", "n1", "1"), broken.clone(), nameless]));
        assert_eq!(describe(&changes), ["added a", "resynced"]);
        assert_eq!(names(&store.list()), ["a"]);

        // A version that does not decode leaves the last good one cached.
        let mut broken_a = pod("a", "n1", "3");
        broken_a["spec"] = json!(42);
        assert!(writer.apply(Event::Applied(broken_a)).is_empty());
        assert_eq!(
            store
                .get(&ObjectKey::new("default", "a"))
                .unwrap()
                .metadata
                .resource_version
                .as_deref(),
            Some("1")
        );
        // Deleting needs only the key, so an undecodable object can still be deleted.
        let mut gone = pod("a", "n1", "4");
        gone["spec"] = json!(42);
        assert_eq!(describe(&writer.apply(Event::Deleted(gone))), ["deleted a"]);
    }

    #[test]
    fn store_error_names_the_field_that_did_not_decode() {
        let mut broken = pod("b", "n1", "2");
        broken["spec"]["containers"] = json!("not a list");
        let key = ObjectKey::from_value(&broken).unwrap();
        let source = serde_path_to_error::deserialize::<_, Pod>(broken).unwrap_err();
        let error = StoreError::Decode {
            key,
            type_name: "Pod",
            source,
        };
        let text = error_chain(&error);
        assert!(
            text.starts_with("default/b does not decode as Pod: spec.containers"),
            "{text}"
        );
    }

    #[test]
    fn object_keys_print_and_parse_as_namespace_slash_name() {
        let key = ObjectKey::new("default", "web");
        assert_eq!(key.to_string(), "default/web");
        assert_eq!(ObjectKey::parse("default/web"), key);
        assert_eq!(ObjectKey::cluster("node-1").to_string(), "node-1");
        assert_eq!(ObjectKey::parse("node-1"), ObjectKey::cluster("node-1"));

        let pod: Pod = serde_json::from_value(pod("a", "n1", "1")).unwrap();
        assert_eq!(ObjectKey::of(&pod), ObjectKey::new("default", "a"));
        assert_eq!(
            ObjectKey::from_value(&json!({"metadata": {"name": "n"}})).unwrap(),
            ObjectKey::cluster("n")
        );
        assert!(matches!(
            ObjectKey::from_value(&json!({"metadata": {}})),
            Err(StoreError::MissingName)
        ));
    }
}
