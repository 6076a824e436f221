//! The gRPC edge of the API server: authenticates and authorizes each call, resolves the
//! resource, hands the work to [`Objects`], and turns [`ApiError`]s into gRPC statuses. No
//! object logic lives here.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use serde_json::Value;
use skiff_api::{
    metrics_api::{GROUP as METRICS_GROUP, MetricsResource},
    proto::{
        self, CreateRequest, DeleteRequest, ExecInput, ExecOutput, GetRequest, ImageUpload,
        ImportProgress, ListRequest, ListResponse, LogChunk, LogsRequest, NodeCredentialRequest,
        NodeCredentialResponse, NodeServingCertificateRequest, NodeServingCertificateResponse,
        ObjectResponse, PatchRequest, ResourceRef, UpdateRequest, WatchRequest, api_server::Api,
        exec_input, image_upload,
    },
    resources::{self, ResourceType},
    selector::{FieldSelector, LabelSelector},
    status::{ApiError, Reason},
};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tonic::{Request, Response, Status, Streaming};

use super::{
    auth::{Attributes, Authenticator, BOOTSTRAPPERS, Identity, Verb, authorize},
    node_proxy::{self, NodeAddress, NodeDialer},
    objects::{DeleteOptions, Objects},
    resource_metrics::ResourceMetrics,
    tls::Pki,
    watch_cache::{CacheError, CacheEvent, EventKind},
};

/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

/// The `skiff.v1.Api` service.
#[derive(Debug, Clone)]
pub struct ApiService {
    objects: Objects,
    auth: Arc<Authenticator>,
    /// The PKI that signs nodes' serving certificates, and the dialer of node APIs.
    nodes: Option<(Arc<Pki>, NodeDialer)>,
}

impl ApiService {
    pub fn new(objects: Objects, auth: Arc<Authenticator>) -> Self {
        Self {
            objects,
            auth,
            nodes: None,
        }
    }

    /// Serves the calls that reach nodes (logs, exec, image import) and signs nodes'
    /// serving certificates, with `pki`.
    #[must_use]
    pub fn with_node_tls(mut self, pki: &Pki) -> Self {
        self.nodes = Some((Arc::new(pki.clone()), NodeDialer::new(pki)));
        self
    }

    fn node_tls(&self) -> Result<&(Arc<Pki>, NodeDialer), ApiError> {
        self.nodes.as_ref().ok_or_else(|| {
            ApiError::new(
                Reason::MethodNotAllowed,
                "this API server has no PKI to reach nodes with",
            )
        })
    }

    /// Where the API of node `node` is.
    async fn node_address(&self, node: &str, pod: Option<&str>) -> Result<NodeAddress, ApiError> {
        let nodes = resources::by_plural("nodes").expect("nodes are served");
        match self.objects.get(nodes, "", node).await {
            Ok(bytes) => node_proxy::node_address(&decode(&bytes)?),
            Err(e) if e.is(Reason::NotFound) => Err(ApiError::new(
                Reason::NotFound,
                match pod {
                    Some(pod) => format!(
                        "pod \"{pod}\" is bound to node \"{node}\", which is not registered \
                         (nodes \"{node}\" not found); is that node's agent running?"
                    ),
                    None => format!("nodes \"{node}\" not found"),
                },
            )),
            Err(e) => Err(e),
        }
    }

    /// Authorizes `verb` on the pod's `subresource`, then finds the pod, the container the
    /// request means and its node. Returns (pod uid, container, node address).
    async fn pod_target(
        &self,
        identity: &Identity,
        verb: Verb,
        subresource: &str,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<(String, String, NodeAddress), ApiError> {
        let pods = resources::by_plural("pods").expect("pods are served");
        let target = ResourceRef {
            resource: "pods".into(),
            namespace: namespace.to_string(),
        };
        if pod.is_empty() {
            return Err(ApiError::bad_request("the request names no pod"));
        }
        self.check(identity, verb, pods, &target, pod, subresource)
            .await?;
        let object = decode(&self.objects.get(pods, namespace, pod).await?)?;
        let container = node_proxy::pick_container(&object, container)?;
        let node = object
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "pod {pod} does not have a host assigned: it is not scheduled yet"
                ))
            })?;
        let uid = object
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let address = self.node_address(node, Some(pod)).await?;
        Ok((uid, container, address))
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

    /// The metrics.k8s.io resource a request names, after checking the caller may `verb` it.
    fn metrics_target(
        &self,
        identity: &Identity,
        verb: Verb,
        target: Option<&ResourceRef>,
        name: &str,
    ) -> Result<Option<(MetricsResource, ResourceMetrics<'_>)>, ApiError> {
        let Some((which, target)) =
            target.and_then(|t| Some((MetricsResource::from_name(&t.resource)?, t)))
        else {
            return Ok(None);
        };
        let namespace = if which.namespaced() {
            target.namespace.as_str()
        } else {
            ""
        };
        authorize(
            identity,
            &Attributes {
                verb,
                group: METRICS_GROUP,
                resource: which.plural(),
                namespace,
                name,
                subresource: "",
                pod_node: None,
            },
        )?;
        let (_, dialer) = self.node_tls()?;
        Ok(Some((
            which,
            ResourceMetrics {
                objects: &self.objects,
                dialer,
            },
        )))
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
                group: rt.group,
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
    if let Some(which) = MetricsResource::from_name(&target.resource) {
        return Err(ApiError::new(
            Reason::MethodNotAllowed,
            format!(
                "{} is read-only: it serves get and list",
                which.group_resource()
            ),
        ));
    }
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
type LogStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;
type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;
type ImportStream = Pin<Box<dyn Stream<Item = Result<ImportProgress, Status>> + Send>>;

/// The client's messages after the first, forwarded until the client stops sending (an
/// error from the client ends the stream to the node too).
fn forward<T: Send + 'static>(
    first: T,
    rest: Streaming<T>,
) -> impl Stream<Item = T> + Send + 'static {
    use futures::StreamExt;
    futures::stream::once(async move { first }).chain(
        rest.take_while(|item| futures::future::ready(item.is_ok()))
            .filter_map(|item| futures::future::ready(item.ok())),
    )
}

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
        if let Some((which, metrics)) =
            self.metrics_target(&identity, Verb::Get, request.target.as_ref(), &request.name)?
        {
            let namespace = request.target.map(|t| t.namespace).unwrap_or_default();
            let found = metrics.get(which, &namespace, &request.name).await?;
            return Ok(Response::new(ObjectResponse {
                object: serde_json::to_vec(&found)
                    .map_err(|e| ApiError::internal(e.to_string()))?,
            }));
        }
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
        if let Some((which, metrics)) =
            self.metrics_target(&identity, Verb::List, request.target.as_ref(), "")?
        {
            let labels = LabelSelector::parse(&request.label_selector)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let namespace = request.target.map(|t| t.namespace).unwrap_or_default();
            let items = metrics.list(which, &namespace, &labels).await?;
            return Ok(Response::new(ListResponse {
                items: items
                    .iter()
                    .map(serde_json::to_vec)
                    .collect::<Result<_, _>>()
                    .map_err(|e| ApiError::internal(e.to_string()))?,
                ..ListResponse::default()
            }));
        }
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
    type PodLogsStream = LogStream;
    type PodExecStream = ExecStream;
    type ImportImageStream = ImportStream;

    async fn pod_logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::PodLogsStream>, Status> {
        ApiService::pod_logs(self, request).await.map(Response::new)
    }

    async fn pod_exec(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::PodExecStream>, Status> {
        ApiService::pod_exec(self, request).await.map(Response::new)
    }

    async fn import_image(
        &self,
        request: Request<Streaming<ImageUpload>>,
    ) -> Result<Response<Self::ImportImageStream>, Status> {
        ApiService::import_image(self, request)
            .await
            .map(Response::new)
    }

    async fn issue_node_serving_certificate(
        &self,
        request: Request<NodeServingCertificateRequest>,
    ) -> Result<Response<NodeServingCertificateResponse>, Status> {
        ApiService::issue_node_serving_certificate(self, request)
            .await
            .map(Response::new)
    }

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

impl ApiService {
    /// `PodLogs`: get on pods/log.
    pub(crate) async fn pod_logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<LogStream, Status> {
        let identity = self.identity(&request).await?;
        let mut request = request.into_inner();
        let (_, dialer) = self.node_tls()?;
        let (uid, container, address) = self
            .pod_target(
                &identity,
                Verb::Get,
                "log",
                &request.namespace,
                &request.pod,
                &request.container,
            )
            .await?;
        request.pod_uid = uid;
        request.container = container;
        let stream = dialer
            .connect(&address)
            .await?
            .container_logs(request)
            .await?
            .into_inner();
        Ok(Box::pin(stream))
    }

    /// `PodExec`: create on pods/exec.
    pub(crate) async fn pod_exec(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<ExecStream, Status> {
        let identity = self.identity(&request).await?;
        let mut inbound = request.into_inner();
        let first = futures::StreamExt::next(&mut inbound)
            .await
            .ok_or_else(|| ApiError::bad_request("the exec stream ended before it started"))??;
        let Some(exec_input::Input::Start(mut start)) = first.input else {
            return Err(ApiError::bad_request("the first exec message must be `start`").into());
        };
        if start.command.is_empty() {
            return Err(ApiError::bad_request(
                "you must specify at least one command for the container",
            )
            .into());
        }
        let (_, dialer) = self.node_tls()?;
        let (uid, container, address) = self
            .pod_target(
                &identity,
                Verb::Create,
                "exec",
                &start.namespace,
                &start.pod,
                &start.container,
            )
            .await?;
        start.pod_uid = uid;
        start.container = container;
        let first = ExecInput {
            input: Some(exec_input::Input::Start(start)),
        };
        let stream = dialer
            .connect(&address)
            .await?
            .exec(forward(first, inbound))
            .await?
            .into_inner();
        Ok(Box::pin(stream))
    }

    /// `ImportImage`: create on nodes/proxy (administrators only).
    pub(crate) async fn import_image(
        &self,
        request: Request<Streaming<ImageUpload>>,
    ) -> Result<ImportStream, Status> {
        let identity = self.identity(&request).await?;
        let mut inbound = request.into_inner();
        let first = futures::StreamExt::next(&mut inbound)
            .await
            .ok_or_else(|| ApiError::bad_request("the upload ended before it started"))??;
        let Some(image_upload::Upload::Start(start)) = &first.upload else {
            return Err(ApiError::bad_request("the first upload message must be `start`").into());
        };
        let node = start.node.clone();
        if node.is_empty() {
            return Err(ApiError::bad_request("the upload names no node (--node)").into());
        }
        let nodes = resources::by_plural("nodes").expect("nodes are served");
        let target = ResourceRef {
            resource: "nodes".into(),
            namespace: String::new(),
        };
        self.check(&identity, Verb::Create, nodes, &target, &node, "proxy")
            .await?;
        let (_, dialer) = self.node_tls()?;
        let address = self.node_address(&node, None).await?;
        let stream = dialer
            .connect(&address)
            .await?
            .import_image(forward(first, inbound))
            .await?
            .into_inner();
        Ok(Box::pin(stream))
    }

    /// `IssueNodeServingCertificate`: only node `node_name` itself may ask.
    pub(crate) async fn issue_node_serving_certificate(
        &self,
        request: Request<NodeServingCertificateRequest>,
    ) -> Result<NodeServingCertificateResponse, Status> {
        let identity = self.identity(&request).await?;
        let request = request.into_inner();
        if identity.node.as_deref() != Some(request.node_name.as_str()) {
            return Err(ApiError::new(
                Reason::Forbidden,
                format!(
                    "User \"{}\" cannot get a serving certificate for node \"{}\": only that node may",
                    identity.user, request.node_name
                ),
            )
            .into());
        }
        let (pki, _) = self.node_tls()?;
        let certificate_pem = pki
            .sign_node_serving(&request.node_name, &request.csr_pem)
            .map_err(|e| ApiError::bad_request(format!("csr_pem: {e}")))?;
        Ok(NodeServingCertificateResponse { certificate_pem })
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
