//! Shared informers: one watch and one [`Store`] per (type, resource, namespace) in a
//! process, however many controllers ask for it, as client-go's `SharedInformerFactory`.
//!
//! Each object is then received, decoded and cached once, not once per controller.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
};

use serde::de::DeserializeOwned;

use super::{
    informer::Informer,
    store::Writer,
    watcher::{Config, ListWatch, Watcher},
};
use crate::client::Client;

type Key = (TypeId, String, String);

/// Hands out shared informers; dropping the factory and every [`Arc`] it gave out stops
/// their watches.
pub struct InformerFactory<L = Client> {
    api: L,
    config: Config,
    informers: Mutex<HashMap<Key, Arc<dyn Any + Send + Sync>>>,
}

impl<L> fmt::Debug for InformerFactory<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.informers.lock().map(|m| m.len()).unwrap_or_default();
        f.debug_struct("InformerFactory")
            .field("informers", &count)
            .finish_non_exhaustive()
    }
}

impl<L: ListWatch + Clone> InformerFactory<L> {
    /// A factory whose informers watch through `api` with `config`.
    pub fn new(api: L, config: Config) -> Self {
        Self {
            api,
            config,
            informers: Mutex::default(),
        }
    }

    /// The informer of `resource` (plural, e.g. `pods`) in every namespace, decoded as `T`.
    /// `writer` carries the indexes the caller needs: the first caller's writer becomes the
    /// store; a later caller's indexes are added to it (an index name means one function).
    ///
    /// # Panics
    /// Outside a Tokio runtime (the first call for a resource starts its watch).
    pub fn informer<T>(&self, resource: &str, writer: Writer<T>) -> Arc<Informer<T>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        self.namespaced(resource, "", writer)
    }

    /// As [`Self::informer`], for one namespace ("" for all).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn namespaced<T>(
        &self,
        resource: &str,
        namespace: &str,
        writer: Writer<T>,
    ) -> Arc<Informer<T>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let key = (
            TypeId::of::<T>(),
            resource.to_string(),
            namespace.to_string(),
        );
        let mut informers = self.informers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = informers.get(&key)
            && let Ok(informer) = Arc::clone(existing).downcast::<Informer<T>>()
        {
            informer.store().merge_indexes(writer);
            return informer;
        }
        let watcher = Watcher::new(self.api.clone(), resource, namespace, self.config.clone());
        let informer = Arc::new(Informer::spawn(watcher, writer));
        informers.insert(key, Arc::clone(&informer) as Arc<dyn Any + Send + Sync>);
        informer
    }

    /// How many watches the factory runs.
    pub fn len(&self) -> usize {
        self.informers.lock().map(|m| m.len()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::Pod;

    use super::*;
    use crate::runtime::{
        ObjectKey,
        watcher::tests::{Call, FakeApi, page, pod},
    };

    fn by_name(pod: &Pod) -> Vec<String> {
        pod.metadata.name.clone().into_iter().collect()
    }

    #[tokio::test(start_paused = true)]
    async fn factory_shares_one_watch_and_store_per_resource_and_merges_indexes() {
        let fake = FakeApi::default();
        fake.list_answers(Ok(page(vec![pod("a", "1"), pod("b", "2")], "10", "")))
            .watch_answers(Ok(vec![]));
        let factory = InformerFactory::new(fake.clone(), Config::default());

        let first = factory.informer::<Pod>("pods", Writer::new());
        let second = factory.informer::<Pod>("pods", Writer::new().with_index("name", by_name));
        assert_eq!(factory.len(), 1, "one watch for both callers");
        let store = second.store();
        tokio::time::timeout(Duration::from_secs(60), store.wait_until_ready())
            .await
            .expect("the shared store is filled");

        let lists = fake
            .calls()
            .into_iter()
            .filter(|c| matches!(c, Call::List { .. }))
            .count();
        assert_eq!(lists, 1, "the resource is listed once");
        assert_eq!(first.store().len(), 2, "both callers read one store");
        assert_eq!(
            store.index_keys("name", "b"),
            [ObjectKey::new("default", "b")],
            "an index added by a later caller covers objects cached before it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn factory_keeps_apart_resources_and_namespaces() {
        let fake = FakeApi::default();
        let factory = InformerFactory::new(fake, Config::default());
        let _all = factory.informer::<Pod>("pods", Writer::new());
        let _one = factory.namespaced::<Pod>("pods", "default", Writer::new());
        let _other = factory.informer::<Pod>("otherpods", Writer::new());
        let _again = factory.informer::<Pod>("pods", Writer::new());
        assert_eq!(factory.len(), 3);
    }
}
