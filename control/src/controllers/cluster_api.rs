//! The writes (and the few uncached reads) the cluster controllers make, behind one trait:
//! the live implementation talks to the API server and records Events, the recording fake
//! lets a unit test run a reconcile against caches it built and check what it asked for.

use std::future::Future;

use serde_json::Value;
use skiff_api::client::{Client, ClientError, DeleteParams, ListParams};

use crate::events::{EventRecorder, EventType};

/// What a reconcile may ask of the API server.
pub trait ClusterApi: Clone + Send + Sync + 'static {
    /// Creates `object` in `namespace`; returns it as stored (with its generated name).
    fn create(
        &self,
        resource: &str,
        namespace: &str,
        object: Value,
    ) -> impl Future<Output = Result<Value, ClientError>> + Send;
    /// Replaces an object (optimistic concurrency on its resourceVersion).
    fn update(
        &self,
        resource: &str,
        namespace: &str,
        object: Value,
    ) -> impl Future<Output = Result<Value, ClientError>> + Send;
    /// Replaces an object's status.
    fn update_status(
        &self,
        resource: &str,
        namespace: &str,
        object: Value,
    ) -> impl Future<Output = Result<Value, ClientError>> + Send;
    /// Applies a JSON merge patch to an object ("") or its status ("status").
    fn patch(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        patch: Value,
        subresource: &str,
    ) -> impl Future<Output = Result<Value, ClientError>> + Send;
    /// Deletes an object (default grace, background propagation).
    fn delete(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
    /// Every object of `resource` in `namespace`, read from the server (not a cache).
    fn list(
        &self,
        resource: &str,
        namespace: &str,
    ) -> impl Future<Output = Result<Vec<Value>, ClientError>> + Send;
    /// Records an Event about `object` (never fails the caller).
    fn event(
        &self,
        object: &Value,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) -> impl Future<Output = ()> + Send;
}

/// The API server, and an event recorder speaking for one controller.
#[derive(Clone, Debug)]
pub struct LiveApi {
    client: Client,
    events: EventRecorder,
}

impl LiveApi {
    /// Writes through `client`; events name `component` (e.g. `endpointslice-controller`).
    pub fn new(client: Client, component: &str, instance: &str) -> Self {
        Self {
            events: EventRecorder::new(client.clone(), component, instance),
            client,
        }
    }
}

impl ClusterApi for LiveApi {
    async fn create(
        &self,
        resource: &str,
        namespace: &str,
        object: Value,
    ) -> Result<Value, ClientError> {
        self.client.create(resource, namespace, &object).await
    }

    async fn update(
        &self,
        resource: &str,
        namespace: &str,
        object: Value,
    ) -> Result<Value, ClientError> {
        self.client.update(resource, namespace, &object).await
    }

    async fn update_status(
        &self,
        resource: &str,
        namespace: &str,
        object: Value,
    ) -> Result<Value, ClientError> {
        self.client
            .update_status(resource, namespace, &object)
            .await
    }

    async fn patch(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        patch: Value,
        subresource: &str,
    ) -> Result<Value, ClientError> {
        self.client
            .patch(resource, namespace, name, &patch, subresource)
            .await
    }

    async fn delete(&self, resource: &str, namespace: &str, name: &str) -> Result<(), ClientError> {
        self.client
            .delete(resource, namespace, name, &DeleteParams::default())
            .await
            .map(drop)
    }

    async fn list(&self, resource: &str, namespace: &str) -> Result<Vec<Value>, ClientError> {
        let mut items = Vec::new();
        let mut params = ListParams {
            limit: 500,
            ..ListParams::default()
        };
        loop {
            let page = self.client.list(resource, namespace, &params).await?;
            items.extend(page.items);
            if page.continue_token.is_empty() {
                return Ok(items);
            }
            params.continue_token = page.continue_token;
        }
    }

    async fn event(&self, object: &Value, event_type: EventType, reason: &str, message: &str) {
        self.events
            .record(object, event_type, reason, message)
            .await;
    }
}

/// True when `error` is the server's NotFound (the object is already gone).
pub fn is_not_found(error: &ClientError) -> bool {
    error.is(skiff_api::status::Reason::NotFound)
}

/// True when `error` is the server's AlreadyExists.
pub fn is_already_exists(error: &ClientError) -> bool {
    error.is(skiff_api::status::Reason::AlreadyExists)
}

#[cfg(test)]
pub mod fake {
    //! A [`ClusterApi`] that records every call and answers from what it was told.

    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
    };

    use serde_json::{Value, json};
    use skiff_api::{
        client::ClientError,
        status::{ApiError, Reason},
    };

    use super::ClusterApi;
    use crate::events::EventType;

    /// One call a reconcile made.
    #[derive(Clone, Debug, PartialEq)]
    pub enum Call {
        Create {
            resource: String,
            namespace: String,
            object: Value,
        },
        Update {
            resource: String,
            namespace: String,
            object: Value,
        },
        UpdateStatus {
            resource: String,
            namespace: String,
            object: Value,
        },
        Patch {
            resource: String,
            namespace: String,
            name: String,
            patch: Value,
            subresource: String,
        },
        Delete {
            resource: String,
            namespace: String,
            name: String,
        },
        Event {
            event_type: EventType,
            reason: String,
            message: String,
        },
    }

    #[derive(Debug, Default)]
    struct State {
        calls: Vec<Call>,
        lists: HashMap<(String, String), Vec<Value>>,
        next_name: u64,
        next_version: u64,
        refuse: HashMap<(String, String), Reason>,
    }

    /// Records calls; `create` names `generateName` objects `<prefix>N` and every write
    /// gets a fresh resourceVersion.
    #[derive(Clone, Debug, Default)]
    pub struct FakeApi(Arc<Mutex<State>>);

    impl FakeApi {
        pub fn new() -> Self {
            Self::default()
        }

        /// Every call so far, in order.
        pub fn calls(&self) -> Vec<Call> {
            self.0.lock().unwrap().calls.clone()
        }

        /// The calls that wrote something (not events).
        pub fn writes(&self) -> Vec<Call> {
            self.calls()
                .into_iter()
                .filter(|c| !matches!(c, Call::Event { .. }))
                .collect()
        }

        /// The reasons of the events recorded so far.
        pub fn event_reasons(&self) -> Vec<String> {
            self.calls()
                .into_iter()
                .filter_map(|c| match c {
                    Call::Event { reason, .. } => Some(reason),
                    _ => None,
                })
                .collect()
        }

        pub fn clear(&self) {
            self.0.lock().unwrap().calls.clear();
        }

        /// What `list(resource, namespace)` answers.
        pub fn set_list(&self, resource: &str, namespace: &str, items: Vec<Value>) {
            self.0
                .lock()
                .unwrap()
                .lists
                .insert((resource.into(), namespace.into()), items);
        }

        /// Makes writes to `resource/name` fail with `reason`.
        pub fn refuse(&self, resource: &str, name: &str, reason: Reason) {
            self.0
                .lock()
                .unwrap()
                .refuse
                .insert((resource.into(), name.into()), reason);
        }

        fn check(&self, resource: &str, name: &str) -> Result<(), ClientError> {
            match self
                .0
                .lock()
                .unwrap()
                .refuse
                .get(&(resource.to_string(), name.to_string()))
            {
                Some(reason) => {
                    Err(ApiError::new(*reason, format!("{resource} {name}: refused")).into())
                }
                None => Ok(()),
            }
        }

        fn stamp(&self, mut object: Value) -> Value {
            let mut state = self.0.lock().unwrap();
            state.next_version += 1;
            let version = state.next_version;
            let meta = object
                .as_object_mut()
                .expect("objects are JSON objects")
                .entry("metadata")
                .or_insert_with(|| json!({}));
            if meta["name"].as_str().unwrap_or("").is_empty()
                && let Some(prefix) = meta["generateName"].as_str().map(str::to_string)
            {
                state.next_name += 1;
                meta["name"] = json!(format!("{prefix}{}", state.next_name));
            }
            meta["resourceVersion"] = json!((1000 + version).to_string());
            object
        }

        fn record(&self, call: Call) {
            self.0.lock().unwrap().calls.push(call);
        }
    }

    fn name_of(object: &Value) -> String {
        object["metadata"]["name"].as_str().unwrap_or("").into()
    }

    impl ClusterApi for FakeApi {
        async fn create(
            &self,
            resource: &str,
            namespace: &str,
            object: Value,
        ) -> Result<Value, ClientError> {
            self.check(resource, &name_of(&object))?;
            let object = self.stamp(object);
            self.record(Call::Create {
                resource: resource.into(),
                namespace: namespace.into(),
                object: object.clone(),
            });
            Ok(object)
        }

        async fn update(
            &self,
            resource: &str,
            namespace: &str,
            object: Value,
        ) -> Result<Value, ClientError> {
            self.check(resource, &name_of(&object))?;
            self.record(Call::Update {
                resource: resource.into(),
                namespace: namespace.into(),
                object: object.clone(),
            });
            Ok(self.stamp(object))
        }

        async fn update_status(
            &self,
            resource: &str,
            namespace: &str,
            object: Value,
        ) -> Result<Value, ClientError> {
            self.check(resource, &name_of(&object))?;
            self.record(Call::UpdateStatus {
                resource: resource.into(),
                namespace: namespace.into(),
                object: object.clone(),
            });
            Ok(self.stamp(object))
        }

        async fn patch(
            &self,
            resource: &str,
            namespace: &str,
            name: &str,
            patch: Value,
            subresource: &str,
        ) -> Result<Value, ClientError> {
            self.check(resource, name)?;
            self.record(Call::Patch {
                resource: resource.into(),
                namespace: namespace.into(),
                name: name.into(),
                patch: patch.clone(),
                subresource: subresource.into(),
            });
            Ok(self.stamp(json!({"metadata": {"name": name, "namespace": namespace}})))
        }

        async fn delete(
            &self,
            resource: &str,
            namespace: &str,
            name: &str,
        ) -> Result<(), ClientError> {
            self.check(resource, name)?;
            self.record(Call::Delete {
                resource: resource.into(),
                namespace: namespace.into(),
                name: name.into(),
            });
            Ok(())
        }

        async fn list(&self, resource: &str, namespace: &str) -> Result<Vec<Value>, ClientError> {
            self.check(resource, "")?;
            Ok(self
                .0
                .lock()
                .unwrap()
                .lists
                .get(&(resource.to_string(), namespace.to_string()))
                .cloned()
                .unwrap_or_default())
        }

        async fn event(&self, _object: &Value, event_type: EventType, reason: &str, message: &str) {
            self.record(Call::Event {
                event_type,
                reason: reason.into(),
                message: message.into(),
            });
        }
    }
}
