//! The namespace controller: a namespace being deleted (Terminating, with the `kubernetes`
//! finalizer) has every namespaced object of every type deleted; once nothing is left the
//! finalizer is removed and the namespace goes. Progress and failures are reported in the
//! namespace's conditions, as Kubernetes' namespace deleter does.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde_json::{Value, json};
use skiff_api::{
    client::ClientError,
    k8s_openapi::api::core::v1::Namespace,
    resources::{RESOURCES, Scope},
    runtime::{Action, Controller, ObjectKey, Store, WorkQueue, Writer},
};
use tracing::info;

use super::{
    Context, Stop,
    cluster_api::{ClusterApi, LiveApi, is_not_found},
    feed::informer,
};
use skiff_api::prepare::NAMESPACE_FINALIZER;

/// How long after a namespace starts terminating it is first emptied (Kubernetes'
/// `namespaceDeletionGracePeriod`).
pub const DELETION_GRACE: Duration = Duration::from_secs(5);
/// How soon a namespace whose content is still going is looked at again.
const CONTENT_REMAINING_RETRY: Duration = Duration::from_secs(1);

/// Why a namespace could not be finalized.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("writing the status of namespace {namespace}")]
    Status {
        namespace: String,
        #[source]
        source: ClientError,
    },
    #[error("removing the {NAMESPACE_FINALIZER:?} finalizer from namespace {namespace}")]
    Finalize {
        namespace: String,
        #[source]
        source: ClientError,
    },
}

/// What one pass over a namespace's content found.
#[derive(Debug, Default)]
struct Content {
    /// Objects still there, by resource.
    remaining: BTreeMap<String, usize>,
    /// Finalizers holding objects, with how many objects each holds.
    finalizers: BTreeMap<String, usize>,
    /// Lists or deletes that failed, as `resource: error`.
    failures: Vec<String>,
}

/// Reconciles one namespace (by name) at a time.
#[derive(Debug)]
pub struct Reconciler<A> {
    api: A,
    namespaces: Store<Namespace>,
}

impl<A: ClusterApi> Reconciler<A> {
    pub fn new(api: A, namespaces: Store<Namespace>) -> Self {
        Self { api, namespaces }
    }

    /// Empties a terminating namespace, then lets it go.
    ///
    /// # Errors
    /// When its status or finalizers cannot be written.
    pub async fn reconcile(&self, name: &str) -> Result<Action, NamespaceError> {
        let Some(namespace) = self.namespaces.get(&ObjectKey::cluster(name)) else {
            return Ok(Action::Done);
        };
        let finalizers = namespace
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default();
        if namespace.metadata.deletion_timestamp.is_none()
            || !finalizers.iter().any(|f| f == NAMESPACE_FINALIZER)
        {
            return Ok(Action::Done);
        }
        let content = self.delete_content(name).await;
        self.report(&namespace, &content).await?;
        if !content.remaining.is_empty() || !content.failures.is_empty() {
            return Ok(Action::RequeueAfter(CONTENT_REMAINING_RETRY));
        }
        // The `finalize` subresource, pinned to the version this pass looked at.
        let finalize = json!({
            "metadata": {"resourceVersion": namespace.metadata.resource_version},
            "spec": {"finalizers": finalizers
                .iter()
                .filter(|f| *f != NAMESPACE_FINALIZER)
                .collect::<Vec<_>>()},
        });
        match self
            .api
            .patch("namespaces", "", name, finalize, "finalize")
            .await
        {
            Ok(_) => {}
            Err(error) if is_not_found(&error) => {}
            Err(source) => {
                return Err(NamespaceError::Finalize {
                    namespace: name.into(),
                    source,
                });
            }
        }
        info!(namespace = name, "namespace emptied and finalized");
        Ok(Action::Done)
    }

    /// Deletes every object in the namespace, then counts what is still there.
    async fn delete_content(&self, namespace: &str) -> Content {
        let mut content = Content::default();
        for rt in RESOURCES.iter().filter(|rt| rt.scope == Scope::Namespaced) {
            let items = match self.api.list(rt.plural, namespace).await {
                Ok(items) => items,
                Err(error) => {
                    content.failures.push(format!("{}: {error}", rt.plural));
                    continue;
                }
            };
            if items.is_empty() {
                continue;
            }
            for item in &items {
                if item.pointer("/metadata/deletionTimestamp").is_some() {
                    continue;
                }
                let object_name = item["metadata"]["name"].as_str().unwrap_or("");
                match self.api.delete(rt.plural, namespace, object_name).await {
                    Ok(()) => {}
                    Err(error) if is_not_found(&error) => {}
                    Err(error) => content
                        .failures
                        .push(format!("{} {object_name}: {error}", rt.plural)),
                }
            }
            // What the deletes left: objects kept by a grace period or finalizers.
            match self.api.list(rt.plural, namespace).await {
                Ok(left) if !left.is_empty() => {
                    content.remaining.insert(rt.plural.to_string(), left.len());
                    for item in &left {
                        for finalizer in item["metadata"]["finalizers"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                        {
                            *content.finalizers.entry(finalizer.to_string()).or_default() += 1;
                        }
                    }
                }
                Ok(_) => {}
                Err(error) => content.failures.push(format!("{}: {error}", rt.plural)),
            }
        }
        content
    }

    /// Writes the deletion conditions when they changed.
    async fn report(&self, namespace: &Namespace, content: &Content) -> Result<(), NamespaceError> {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        let wanted = conditions(content);
        let current: Vec<(String, String, String)> = namespace
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.message.clone().unwrap_or_default(),
                )
            })
            .collect();
        let wanted_keys: Vec<(String, String, String)> = wanted
            .iter()
            .map(|c| {
                (
                    c["type"].as_str().unwrap_or("").into(),
                    c["status"].as_str().unwrap_or("").into(),
                    c["message"].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        if current == wanted_keys {
            return Ok(());
        }
        let patch = json!({"status": {"phase": "Terminating", "conditions": wanted}});
        match self
            .api
            .patch("namespaces", "", &name, patch, "status")
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(source) => Err(NamespaceError::Status {
                namespace: name,
                source,
            }),
        }
    }
}

/// Kubernetes' namespace deletion conditions for what a pass found.
fn conditions(content: &Content) -> Vec<Value> {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let condition =
        |type_: &str, failed: bool, reason_true: &str, reason_false: &str, message: String| {
            json!({
                "type": type_,
                "status": if failed { "True" } else { "False" },
                "reason": if failed { reason_true } else { reason_false },
                "message": message,
                "lastTransitionTime": now,
            })
        };
    let remaining = content
        .remaining
        .iter()
        .map(|(resource, count)| format!("{resource} has {count} resource instances"))
        .collect::<Vec<_>>()
        .join(", ");
    let finalizers = content
        .finalizers
        .iter()
        .map(|(finalizer, count)| format!("{finalizer} in {count} resource instances"))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        condition(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "DiscoveryFailed",
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "GroupVersionParsingFailed",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
        condition(
            "NamespaceDeletionContentFailure",
            !content.failures.is_empty(),
            "ContentDeletionFailed",
            "ContentDeleted",
            if content.failures.is_empty() {
                "All content successfully deleted, may be waiting on finalization".into()
            } else {
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    content.failures.len(),
                    content.failures.join("; ")
                )
            },
        ),
        condition(
            "NamespaceContentRemaining",
            !content.remaining.is_empty(),
            "SomeResourcesRemain",
            "ContentRemoved",
            if content.remaining.is_empty() {
                "All content successfully removed".into()
            } else {
                format!("Some resources are remaining: {remaining}")
            },
        ),
        condition(
            "NamespaceFinalizersRemaining",
            !content.finalizers.is_empty(),
            "SomeFinalizersRemain",
            "ContentHasNoFinalizers",
            if content.finalizers.is_empty() {
                "All content-preserving finalizers finished".into()
            } else {
                format!("Some content in the namespace has finalizers remaining: {finalizers}")
            },
        ),
    ]
}

/// Runs the controller until `stop` fires.
pub async fn run(context: Context, stop: Stop) {
    let namespaces = informer(&context, "namespaces", Writer::<Namespace>::new());
    let queue: WorkQueue<ObjectKey> = context.queue("namespace");
    // As Kubernetes does, a namespace is looked at a while after it starts terminating, so
    // that a client deleting it together with its content (`delete -f`) is not raced.
    let mut changes = namespaces.subscribe();
    let (feed_queue, store) = (queue.clone(), namespaces.store());
    tokio::spawn(async move {
        let terminating = |ns: &Namespace| ns.metadata.deletion_timestamp.is_some();
        while let Some(change) = changes.recv().await {
            let keys: Vec<ObjectKey> = match change.object() {
                Some(ns) if terminating(ns) => vec![ObjectKey::of(&**ns)],
                Some(_) => Vec::new(),
                None => store
                    .list()
                    .iter()
                    .filter(|ns| terminating(ns))
                    .map(|ns| ObjectKey::of(&**ns))
                    .collect(),
            };
            for key in keys {
                feed_queue.add_after(key, DELETION_GRACE);
            }
        }
    });
    let store = namespaces.store();
    tokio::select! {
        () = store.wait_until_ready() => {}
        () = stop.clone().wait() => return,
    }
    let api = LiveApi::new(
        context.client.clone(),
        "namespace-controller",
        &context.identity,
    );
    let reconciler = Arc::new(Reconciler::new(api, store));
    Controller::new(queue)
        .graceful_shutdown_on(stop.wait())
        .run(2, move |key: ObjectKey| {
            let reconciler = Arc::clone(&reconciler);
            async move { reconciler.reconcile(&key.name).await }
        })
        .await;
    drop(namespaces);
}

#[cfg(test)]
mod tests {
    use skiff_api::{runtime::Event, status::Reason};

    use super::*;
    use crate::controllers::cluster_api::fake::{Call, FakeApi};

    fn namespaces(objects: Vec<Value>) -> Store<Namespace> {
        let mut writer = Writer::new();
        writer.apply(Event::Restarted {
            objects,
            resource_version: "1".into(),
        });
        writer.reader()
    }

    fn terminating(name: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": "u", "resourceVersion": "4",
                         "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Terminating"},
        })
    }

    fn object(name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "shop"}})
    }

    fn status_patch(api: &FakeApi) -> Value {
        api.writes()
            .into_iter()
            .find_map(|c| match c {
                Call::Patch {
                    patch, subresource, ..
                } if subresource == "status" => Some(patch),
                _ => None,
            })
            .expect("a status patch")
    }

    fn condition(status: &Value, type_: &str) -> (String, String) {
        let c = status["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap();
        (
            c["status"].as_str().unwrap().into(),
            c["message"].as_str().unwrap().into(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn an_active_namespace_is_left_alone() {
        let api = FakeApi::new();
        let mut active = terminating("shop");
        active["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("deletionTimestamp");
        api.set_list("configmaps", "shop", vec![object("c")]);
        let r = Reconciler::new(api.clone(), namespaces(vec![active]));
        assert_eq!(r.reconcile("shop").await.unwrap(), Action::Done);
        assert!(api.calls().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_terminating_namespace_has_its_content_deleted_and_waits_while_it_remains() {
        let api = FakeApi::new();
        api.set_list("configmaps", "shop", vec![object("c1"), object("c2")]);
        let mut held = object("p");
        held["metadata"]["finalizers"] = json!(["example.com/hold"]);
        held["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        api.set_list("pods", "shop", vec![held]);
        let r = Reconciler::new(api.clone(), namespaces(vec![terminating("shop")]));
        assert_eq!(
            r.reconcile("shop").await.unwrap(),
            Action::RequeueAfter(CONTENT_REMAINING_RETRY)
        );
        let deleted: Vec<String> = api
            .writes()
            .into_iter()
            .filter_map(|c| match c {
                Call::Delete { resource, name, .. } => Some(format!("{resource}/{name}")),
                _ => None,
            })
            .collect();
        assert_eq!(
            deleted,
            ["configmaps/c1", "configmaps/c2"],
            "the held pod is already going"
        );
        let status = status_patch(&api);
        assert_eq!(status["status"]["phase"], "Terminating");
        // The fake still lists them: they count as remaining.
        let (remaining, message) = condition(&status, "NamespaceContentRemaining");
        assert_eq!(remaining, "True");
        assert!(
            message.contains("configmaps has 2 resource instances"),
            "{message}"
        );
        let (held, message) = condition(&status, "NamespaceFinalizersRemaining");
        assert_eq!(held, "True");
        assert!(
            message.contains("example.com/hold in 1 resource instances"),
            "{message}"
        );
        assert!(
            !api.writes()
                .iter()
                .any(|c| matches!(c, Call::Patch { subresource, .. } if subresource == "finalize")),
            "the finalizer stays while content remains"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_terminating_namespace_loses_its_finalizer() {
        let api = FakeApi::new();
        let r = Reconciler::new(api.clone(), namespaces(vec![terminating("shop")]));
        assert_eq!(r.reconcile("shop").await.unwrap(), Action::Done);
        let finalize = api
            .writes()
            .into_iter()
            .find_map(|c| match c {
                Call::Patch {
                    patch, subresource, ..
                } if subresource == "finalize" => Some(patch),
                _ => None,
            })
            .expect("the namespace is finalized");
        assert_eq!(finalize["spec"]["finalizers"], json!([]));
        assert_eq!(
            finalize["metadata"]["resourceVersion"], "4",
            "guarded by its version"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_delete_is_reported_in_the_content_failure_condition() {
        let api = FakeApi::new();
        api.set_list("secrets", "shop", vec![object("s")]);
        api.refuse("secrets", "s", Reason::Forbidden);
        let r = Reconciler::new(api.clone(), namespaces(vec![terminating("shop")]));
        assert_eq!(
            r.reconcile("shop").await.unwrap(),
            Action::RequeueAfter(CONTENT_REMAINING_RETRY)
        );
        let (failed, message) = condition(&status_patch(&api), "NamespaceDeletionContentFailure");
        assert_eq!(failed, "True");
        assert!(message.contains("secrets s"), "{message}");
    }
}
