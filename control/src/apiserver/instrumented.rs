//! The API service wrapped in metrics: each call counted in `apiserver_request_total` by
//! verb, resource and HTTP-equivalent code, and timed in
//! `apiserver_request_duration_seconds` (a watch until it is established).

use std::{sync::Arc, time::Instant};

use skiff_api::{
    metrics_api::{self, MetricsResource},
    proto::{
        CreateRequest, DeleteRequest, ExecInput, GetRequest, ImageUpload, ListRequest,
        ListResponse, LogsRequest, NodeCredentialRequest, NodeCredentialResponse,
        NodeServingCertificateRequest, NodeServingCertificateResponse, ObjectResponse,
        PatchRequest, ResourceRef, UpdateRequest, WatchRequest, api_server::Api,
    },
    resources,
    status::ApiError,
};
use tonic::{Request, Response, Status, Streaming};

use super::service::ApiService;
use crate::metrics::{Metrics, RequestLabels};

/// [`ApiService`] with every call observed in [`Metrics`].
#[derive(Debug, Clone)]
pub struct InstrumentedApi {
    inner: ApiService,
    metrics: Arc<Metrics>,
}

impl InstrumentedApi {
    pub fn new(inner: ApiService, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn observed<T>(
        &self,
        verb: &str,
        target: Option<&ResourceRef>,
        subresource: &str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let started = Instant::now();
        let result = call.await;
        let code = match &result {
            Ok(_) if verb == "CREATE" => 201,
            Ok(_) => 200,
            Err(status) => ApiError::from(status.clone()).reason.http_status(),
        };
        let mut plural = target.map_or("", |t| t.resource.as_str());
        let (group, version) = match MetricsResource::from_name(plural) {
            Some(which) => {
                plural = which.plural();
                (metrics_api::GROUP, "v1beta1")
            }
            None => resources::by_plural(plural).map_or(("", ""), |rt| {
                let version = rt.api_version.rsplit('/').next().unwrap_or(rt.api_version);
                (rt.group, version)
            }),
        };
        self.metrics.observe_request(
            &RequestLabels {
                verb: verb.to_string(),
                group: group.to_string(),
                version: version.to_string(),
                resource: plural.to_string(),
                subresource: subresource.to_string(),
            },
            code,
            started.elapsed(),
        );
        result
    }
}

#[tonic::async_trait]
impl Api for InstrumentedApi {
    async fn create(
        &self,
        request: Request<CreateRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let target = request.get_ref().target.clone();
        self.observed("CREATE", target.as_ref(), "", self.inner.create(request))
            .await
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<ObjectResponse>, Status> {
        let target = request.get_ref().target.clone();
        self.observed("GET", target.as_ref(), "", self.inner.get(request))
            .await
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let target = request.get_ref().target.clone();
        self.observed("LIST", target.as_ref(), "", self.inner.list(request))
            .await
    }

    async fn update(
        &self,
        request: Request<UpdateRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let target = request.get_ref().target.clone();
        let subresource = request.get_ref().subresource.clone();
        let verb = if subresource == "binding" {
            "CREATE"
        } else {
            "UPDATE"
        };
        self.observed(
            verb,
            target.as_ref(),
            &subresource,
            self.inner.update(request),
        )
        .await
    }

    async fn patch(
        &self,
        request: Request<PatchRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let target = request.get_ref().target.clone();
        let subresource = request.get_ref().subresource.clone();
        self.observed(
            "PATCH",
            target.as_ref(),
            &subresource,
            self.inner.patch(request),
        )
        .await
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let target = request.get_ref().target.clone();
        self.observed("DELETE", target.as_ref(), "", self.inner.delete(request))
            .await
    }

    type WatchStream = <ApiService as Api>::WatchStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let target = request.get_ref().target.clone();
        self.observed("WATCH", target.as_ref(), "", self.inner.watch(request))
            .await
    }

    async fn issue_node_credential(
        &self,
        request: Request<NodeCredentialRequest>,
    ) -> Result<Response<NodeCredentialResponse>, Status> {
        self.observed(
            "CREATE",
            None,
            "",
            self.inner.issue_node_credential(request),
        )
        .await
    }

    async fn issue_node_serving_certificate(
        &self,
        request: Request<NodeServingCertificateRequest>,
    ) -> Result<Response<NodeServingCertificateResponse>, Status> {
        self.observed(
            "CREATE",
            None,
            "",
            Api::issue_node_serving_certificate(&self.inner, request),
        )
        .await
    }

    type PodLogsStream = <ApiService as Api>::PodLogsStream;
    type PodExecStream = <ApiService as Api>::PodExecStream;
    type ImportImageStream = <ApiService as Api>::ImportImageStream;

    async fn pod_logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::PodLogsStream>, Status> {
        let target = pods(&request.get_ref().namespace);
        self.observed(
            "GET",
            Some(&target),
            "log",
            Api::pod_logs(&self.inner, request),
        )
        .await
    }

    async fn pod_exec(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::PodExecStream>, Status> {
        let target = pods("");
        self.observed(
            "CONNECT",
            Some(&target),
            "exec",
            Api::pod_exec(&self.inner, request),
        )
        .await
    }

    async fn import_image(
        &self,
        request: Request<Streaming<ImageUpload>>,
    ) -> Result<Response<Self::ImportImageStream>, Status> {
        let target = ResourceRef {
            resource: "nodes".into(),
            namespace: String::new(),
        };
        self.observed(
            "CONNECT",
            Some(&target),
            "proxy",
            Api::import_image(&self.inner, request),
        )
        .await
    }
}

fn pods(namespace: &str) -> ResourceRef {
    ResourceRef {
        resource: "pods".into(),
        namespace: namespace.to_string(),
    }
}
