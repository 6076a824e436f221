//! The seam through which workload controllers change the cluster: creates, patches,
//! deletes and events. [`ClientWrites`] is the real one; unit tests record calls instead.

use async_trait::async_trait;
use serde_json::Value;
use skiff_api::client::{Client, ClientError, DeleteParams};

use skiff_api::runtime::ObjectKey;

use super::expectations::Expectations;
use crate::events::{EventRecorder, EventType};

/// Writes a controller makes. Reads come from informer caches, never from here.
#[async_trait]
pub trait Writes: Send + Sync + 'static {
    /// Creates an object of `resource` (plural) in `namespace`; returns it as stored.
    async fn create(
        &self,
        resource: &str,
        namespace: &str,
        object: Value,
    ) -> Result<Value, ClientError>;
    /// A JSON merge patch of an object (`subresource` "" or "status").
    async fn patch(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        patch: Value,
        subresource: &str,
    ) -> Result<Value, ClientError>;
    /// Deletes an object.
    async fn delete(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        params: DeleteParams,
    ) -> Result<Value, ClientError>;
    /// Reads one object live (for the rare check a cache cannot answer).
    async fn get(&self, resource: &str, namespace: &str, name: &str) -> Result<Value, ClientError>;
    /// Records an event about `object` (apiVersion, kind and metadata are enough).
    async fn event(&self, object: Value, event_type: EventType, reason: &str, message: &str);
}

/// Creates one pod for the controller at `key` and records `SuccessfulCreate` or
/// `FailedCreate` on `owner`; a failed create is observed at once in `expectations`, as it
/// will never arrive through the watch.
///
/// # Errors
/// The create's error.
pub async fn create_pod<W: Writes>(
    writes: &W,
    expectations: &Expectations,
    key: &ObjectKey,
    owner: &Value,
    pod: Value,
) -> Result<Value, ClientError> {
    let result = writes.create("pods", &key.namespace, pod).await;
    match &result {
        Ok(made) => {
            let name = made["metadata"]["name"].as_str().unwrap_or_default();
            let message = format!("Created pod: {name}");
            writes
                .event(
                    owner.clone(),
                    EventType::Normal,
                    "SuccessfulCreate",
                    &message,
                )
                .await;
        }
        Err(e) => {
            expectations.creation_observed(key);
            let message = format!("Error creating: {e}");
            writes
                .event(owner.clone(), EventType::Warning, "FailedCreate", &message)
                .await;
        }
    }
    result
}

/// [`Writes`] through the API server.
#[derive(Clone, Debug)]
pub struct ClientWrites {
    client: Client,
    recorder: EventRecorder,
}

impl ClientWrites {
    /// Writes with `client`, events as `component` from `instance`.
    pub fn new(client: Client, component: &str, instance: &str) -> Self {
        Self {
            recorder: EventRecorder::new(client.clone(), component, instance),
            client,
        }
    }
}

#[async_trait]
impl Writes for ClientWrites {
    async fn create(
        &self,
        resource: &str,
        namespace: &str,
        object: Value,
    ) -> Result<Value, ClientError> {
        self.client.create(resource, namespace, &object).await
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

    async fn delete(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        params: DeleteParams,
    ) -> Result<Value, ClientError> {
        self.client.delete(resource, namespace, name, &params).await
    }

    async fn get(&self, resource: &str, namespace: &str, name: &str) -> Result<Value, ClientError> {
        self.client.get(resource, namespace, name).await
    }

    async fn event(&self, object: Value, event_type: EventType, reason: &str, message: &str) {
        self.recorder
            .record(&object, event_type, reason, message)
            .await;
    }
}

#[cfg(test)]
pub mod fake {
    //! A [`Writes`] that records every call and answers from a script.
    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
    };

    use serde_json::json;
    use skiff_api::status::{ApiError, Reason};

    use super::*;

    /// One recorded call, as `verb resource namespace/name` plus its body.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Call {
        pub verb: &'static str,
        pub resource: String,
        pub key: String,
        pub body: Value,
    }

    /// Records calls; creates succeed (generateName gets `-0`, `-1`, ...) unless
    /// `fail_creates_after` says otherwise; gets answer from `objects`.
    #[derive(Clone, Debug, Default)]
    pub struct FakeWrites {
        pub calls: Arc<Mutex<Vec<Call>>>,
        pub fail_creates_after: Arc<Mutex<Option<usize>>>,
        pub objects: Arc<Mutex<HashMap<String, Value>>>,
    }

    impl FakeWrites {
        pub fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }

        /// The calls with `verb` on `resource`.
        pub fn of(&self, verb: &str, resource: &str) -> Vec<Call> {
            self.calls()
                .into_iter()
                .filter(|c| c.verb == verb && c.resource == resource)
                .collect()
        }

        pub fn clear(&self) {
            self.calls.lock().unwrap().clear();
        }

        fn push(&self, verb: &'static str, resource: &str, key: String, body: Value) {
            self.calls.lock().unwrap().push(Call {
                verb,
                resource: resource.into(),
                key,
                body,
            });
        }
    }

    #[async_trait]
    impl Writes for FakeWrites {
        async fn create(
            &self,
            resource: &str,
            namespace: &str,
            mut object: Value,
        ) -> Result<Value, ClientError> {
            let made = self.of("create", resource).len();
            if let Some(limit) = *self.fail_creates_after.lock().unwrap()
                && made >= limit
            {
                return Err(ClientError::Api(ApiError::new(
                    Reason::Forbidden,
                    "quota exceeded",
                )));
            }
            if object["metadata"]["name"].is_null() {
                let prefix = object["metadata"]["generateName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                object["metadata"]["name"] = json!(format!("{prefix}{made}"));
            }
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            self.push(
                "create",
                resource,
                format!("{namespace}/{name}"),
                object.clone(),
            );
            Ok(object)
        }

        async fn patch(
            &self,
            resource: &str,
            namespace: &str,
            name: &str,
            patch: Value,
            subresource: &str,
        ) -> Result<Value, ClientError> {
            let verb = if subresource == "status" {
                "patch-status"
            } else {
                "patch"
            };
            self.push(verb, resource, format!("{namespace}/{name}"), patch.clone());
            Ok(patch)
        }

        async fn delete(
            &self,
            resource: &str,
            namespace: &str,
            name: &str,
            params: DeleteParams,
        ) -> Result<Value, ClientError> {
            self.push(
                "delete",
                resource,
                format!("{namespace}/{name}"),
                json!({"propagationPolicy": params.propagation_policy}),
            );
            Ok(Value::Null)
        }

        async fn get(
            &self,
            resource: &str,
            namespace: &str,
            name: &str,
        ) -> Result<Value, ClientError> {
            let key = format!("{resource}/{namespace}/{name}");
            self.objects
                .lock()
                .unwrap()
                .get(&key)
                .cloned()
                .ok_or_else(|| ClientError::Api(ApiError::not_found(resource, name)))
        }

        async fn event(&self, object: Value, _: EventType, reason: &str, message: &str) {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            self.push(
                "event",
                reason,
                name.to_string(),
                Value::String(message.into()),
            );
        }
    }
}
