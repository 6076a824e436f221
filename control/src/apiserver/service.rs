//! The gRPC edge of the API server: authenticates and authorizes each call, resolves the
//! resource, hands the work to [`Objects`], and turns [`ApiError`]s into gRPC statuses. No
//! object logic lives here.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use serde_json::Value;
use skiff_api::{
    proto::{
        self, CreateRequest, DeleteRequest, GetRequest, ListRequest, ListResponse,
        NodeCredentialRequest, NodeCredentialResponse, ObjectResponse, PatchRequest, ResourceRef,
        UpdateRequest, WatchRequest, api_server::Api,
    },
    resources::{self, ResourceType},
    selector::{FieldSelector, LabelSelector},
    status::{ApiError, Reason},
};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tonic::{Request, Response, Status};

use super::{
    auth::{Attributes, Authenticator, BOOTSTRAPPERS, Identity, Verb, authorize},
    objects::{DeleteOptions, Objects},
    watch_cache::{CacheError, CacheEvent, EventKind},
};

/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

/// The `skiff.v1.Api` service.
#[derive(Debug, Clone)]
pub struct ApiService {
    objects: Objects,
    auth: Arc<Authenticator>,
}

impl ApiService {
    pub fn new(objects: Objects, auth: Arc<Authenticator>) -> Self {
        Self { objects, auth }
    }

    /// Who is calling; a service account token is only good while its account exists
    /// with the uid the token was made for.
    async fn identity<T>(&self, request: &Request<T>) -> Result<Identity, ApiError> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let identity = self.auth.authenticate(header)?;
        if let Some(claims) = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .and_then(|token| self.auth.service_account_claims(token.trim()))
        {
            let accounts =
                resources::by_plural("serviceaccounts").expect("service accounts are served");
            let live = self
                .objects
                .get(accounts, &claims.namespace, &claims.name)
                .await
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
            let uid = live
                .as_ref()
                .and_then(|sa| sa.pointer("/metadata/uid"))
                .and_then(Value::as_str);
            if uid != Some(claims.uid.as_str()) {
                return Err(ApiError::new(
                    Reason::Unauthorized,
                    format!(
                        "Unauthorized: service account {}/{} of this token no longer exists",
                        claims.namespace, claims.name
                    ),
                ));
            }
        }
        Ok(identity)
    }

    /// For a node writing a pod: the node the stored pod is bound to.
    async fn pod_node(
        &self,
        identity: &Identity,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
    ) -> Option<String> {
        if identity.node.is_none() || rt.plural != "pods" || name.is_empty() {
            return None;
        }
        let bytes = self.objects.get(rt, namespace, name).await.ok()?;
        let pod: Value = serde_json::from_slice(&bytes).ok()?;
        pod.pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    async fn check(
        &self,
        identity: &Identity,
        verb: Verb,
        rt: &'static ResourceType,
        target: &ResourceRef,
        name: &str,
        subresource: &str,
    ) -> Result<(), ApiError> {
        let pod_node = if verb.is_read() {
            None
        } else {
            self.pod_node(identity, rt, &target.namespace, name).await
        };
        authorize(
            identity,
            &Attributes {
                verb,
                resource: rt.plural,
                namespace: &target.namespace,
                name,
                subresource,
                pod_node: pod_node.as_deref(),
            },
        )
    }
}

fn resolve(target: Option<ResourceRef>) -> Result<(&'static ResourceType, ResourceRef), ApiError> {
    let target = target.ok_or_else(|| ApiError::bad_request("the request names no resource"))?;
    let rt = resources::by_plural(&target.resource).ok_or_else(|| {
        ApiError::new(
            Reason::NotFound,
            format!(
                "the server doesn't have a resource type \"{}\"",
                target.resource
            ),
        )
    })?;
    Ok((rt, target))
}

fn decode(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the object is not valid JSON: {e}")))
}

fn name_in(body: &Value) -> &str {
    body.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn object(bytes: bytes::Bytes) -> Response<ObjectResponse> {
    Response::new(ObjectResponse {
        object: bytes.to_vec(),
    })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Api for ApiService {
    async fn create(
        &self,
        request: Request<CreateRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let identity = self.identity(&request).await?;
        let request = request.into_inner();
        let (rt, target) = resolve(request.target)?;
        let body = decode(&request.object)?;
        self.check(&identity, Verb::Create, rt, &target, name_in(&body), "")
            .await?;
        Ok(object(
            self.objects
                .create(rt, &target.namespace, body, request.dry_run)
                .await?,
        ))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<ObjectResponse>, Status> {
        let identity = self.identity(&request).await?;
        let request = request.into_inner();
        let (rt, target) = resolve(request.target)?;
        self.check(&identity, Verb::Get, rt, &target, &request.name, "")
            .await?;
        Ok(object(
            self.objects
                .get(rt, &target.namespace, &request.name)
                .await?,
        ))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let identity = self.identity(&request).await?;
        let request = request.into_inner();
        let (rt, target) = resolve(request.target)?;
        self.check(&identity, Verb::List, rt, &target, "", "")
            .await?;
        let labels = LabelSelector::parse(&request.label_selector)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(&request.field_selector)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let limit = usize::try_from(request.limit).unwrap_or(0);
        let page = self
            .objects
            .list(
                rt,
                &target.namespace,
                &labels,
                &fields,
                limit,
                &request.continue_token,
            )
            .await?;
        Ok(Response::new(ListResponse {
            items: page.items.into_iter().map(|b| b.to_vec()).collect(),
            resource_version: page.resource_version.to_string(),
            continue_token: page.continue_token.unwrap_or_default(),
            remaining_item_count: i64::try_from(page.remaining).unwrap_or(i64::MAX),
        }))
    }

    async fn update(
        &self,
        request: Request<UpdateRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let identity = self.identity(&request).await?;
        let request = request.into_inner();
        let (rt, target) = resolve(request.target)?;
        let body = decode(&request.object)?;
        self.check(
            &identity,
            Verb::Update,
            rt,
            &target,
            name_in(&body),
            &request.subresource,
        )
        .await?;
        let updated = self
            .objects
            .update(
                rt,
                &target.namespace,
                body,
                &request.subresource,
                request.dry_run,
            )
            .await?;
        Ok(object(updated))
    }

    async fn patch(
        &self,
        request: Request<PatchRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let identity = self.identity(&request).await?;
        let request = request.into_inner();
        let (rt, target) = resolve(request.target)?;
        self.check(
            &identity,
            Verb::Patch,
            rt,
            &target,
            &request.name,
            &request.subresource,
        )
        .await?;
        let patch = decode(&request.patch)?;
        let patched = self
            .objects
            .patch(
                rt,
                &target.namespace,
                &request.name,
                &patch,
                &request.subresource,
            )
            .await?;
        Ok(object(patched))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let identity = self.identity(&request).await?;
        let request = request.into_inner();
        let (rt, target) = resolve(request.target)?;
        self.check(&identity, Verb::Delete, rt, &target, &request.name, "")
            .await?;
        let options = DeleteOptions {
            grace_period_seconds: request.grace_period_seconds,
            propagation_policy: Some(request.propagation_policy).filter(|p| !p.is_empty()),
            precondition_resource_version: Some(request.precondition_resource_version)
                .filter(|p| !p.is_empty()),
        };
        Ok(object(
            self.objects
                .delete(rt, &target.namespace, &request.name, &options)
                .await?,
        ))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let identity = self.identity(&request).await?;
        let request = request.into_inner();
        let (rt, target) = resolve(request.target)?;
        self.check(&identity, Verb::Watch, rt, &target, "", "")
            .await?;
        let labels = LabelSelector::parse(&request.label_selector)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(&request.field_selector)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let since = match request.resource_version.as_str() {
            "" => None,
            rv => Some(rv.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("resourceVersion {rv:?} is not a resource version"))
            })?),
        };
        let prefix = rt.prefix(
            (rt.namespaced() && !target.namespace.is_empty()).then_some(target.namespace.as_str()),
        );
        let subscription = self
            .objects
            .cache()
            .subscribe(&prefix, since)
            .await
            .map_err(|e| match e {
                CacheError::TooOld { .. } => ApiError::new(Reason::Expired, e.to_string()),
                other => ApiError::new(Reason::ServiceUnavailable, other.to_string()),
            })?;
        let (tx, rx) = mpsc::channel(256);
        let filter = move |event: &CacheEvent| translate(event, &labels, &fields);
        let bookmarks = request.allow_bookmarks;
        tokio::spawn(async move {
            let mut last = subscription.revision;
            for event in &subscription.backlog {
                if let Some(out) = filter(event)
                    && tx.send(Ok(out)).await.is_err()
                {
                    return;
                }
            }
            let mut live = subscription.live;
            let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
            ticker.tick().await;
            loop {
                tokio::select! {
                    received = live.recv() => match received {
                        Ok(event) => {
                            if event.revision <= last || !event.object.key.starts_with(&prefix) {
                                continue;
                            }
                            last = event.revision;
                            if let Some(out) = filter(&event)
                                && tx.send(Ok(out)).await.is_err()
                            {
                                return;
                            }
                        }
                        Err(RecvError::Lagged(_)) => {
                            let error = ApiError::new(Reason::Expired, "the watch fell too far behind; list again and watch from the list's resourceVersion");
                            let _ = tx.send(Err(error.into())).await;
                            return;
                        }
                        Err(RecvError::Closed) => return,
                    },
                    _ = ticker.tick(), if bookmarks => {
                        let bookmark = proto::WatchEvent {
                            r#type: proto::EventType::Bookmark as i32,
                            object: Vec::new(),
                            resource_version: last.to_string(),
                        };
                        if tx.send(Ok(bookmark)).await.is_err() {
                            return;
                        }
                    }
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn issue_node_credential(
        &self,
        request: Request<NodeCredentialRequest>,
    ) -> Result<Response<NodeCredentialResponse>, Status> {
        let identity = self.identity(&request).await?;
        let node = request.into_inner().node_name;
        let may = identity.in_group(BOOTSTRAPPERS)
            || identity.in_group(super::auth::MASTERS)
            || identity.node.as_deref() == Some(node.as_str());
        if !may {
            return Err(ApiError::new(
                Reason::Forbidden,
                format!(
                    "User \"{}\" cannot get a credential for node \"{node}\"",
                    identity.user
                ),
            )
            .into());
        }
        let errors = skiff_api::validation::names::is_dns1123_subdomain(&node);
        if node.is_empty() || !errors.is_empty() {
            return Err(ApiError::bad_request(format!(
                "node name {node:?} is not a valid DNS-1123 subdomain"
            ))
            .into());
        }
        Ok(Response::new(NodeCredentialResponse {
            token: self.auth.node_credential(&node),
        }))
    }
}

/// The event a watcher with these selectors sees, if any: an object that starts matching
/// is ADDED, one that stops is DELETED.
fn translate(
    event: &CacheEvent,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Option<proto::WatchEvent> {
    let matches = |value: &Value| labels.matches_object(value) && fields.matches_object(value);
    let now = matches(&event.object.value);
    let before = event.prev.as_ref().is_some_and(|p| matches(&p.value));
    let kind = match event.kind {
        EventKind::Added if now => proto::EventType::Added,
        EventKind::Modified if now && before => proto::EventType::Modified,
        EventKind::Modified if now => proto::EventType::Added,
        EventKind::Modified if before => proto::EventType::Deleted,
        EventKind::Deleted if now || before => proto::EventType::Deleted,
        _ => return None,
    };
    Some(proto::WatchEvent {
        r#type: kind as i32,
        object: event.object.bytes.to_vec(),
        resource_version: event.revision.to_string(),
    })
}
