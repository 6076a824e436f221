//! The typed client every component uses to reach the API server: TLS pinned to the
//! cluster's CA, a bearer token on every call, objects in and out as JSON values or as
//! `k8s-openapi` types.

use std::{
    path::{Path, PathBuf},
    pin::Pin,
    time::Duration,
};

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use tonic::{
    Request,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use crate::{
    proto::{self, ResourceRef, api_client::ApiClient},
    status::{ApiError, Reason},
};

/// Where to reach the cluster and who to be: the CLI's config file (like a kubeconfig).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClientConfig {
    /// `https://host:port` of the API server.
    pub server: String,
    /// PEM of the cluster's CA.
    pub certificate_authority: String,
    /// Bearer token.
    pub token: String,
    /// The namespace used when none is given.
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

fn default_namespace() -> String {
    "default".into()
}

/// Why a client could not be set up or a call could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading the client config {path}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the client config {path} is not valid")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("connecting to {server}")]
    Connect {
        server: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the token is not a valid header value")]
    Token,
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the server sent an object that is not valid JSON: {0}")]
    Decode(#[source] serde_json::Error),
}

impl ClientError {
    /// The API error behind this one, if the server answered.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api(e) => Some(e),
            _ => None,
        }
    }

    /// True when the server answered with `reason`.
    pub fn is(&self, reason: Reason) -> bool {
        self.api().is_some_and(|e| e.is(reason))
    }
}

impl ClientConfig {
    /// The default config path: `$SKIFFCONFIG`, else `~/.skiff/config`.
    pub fn default_path() -> PathBuf {
        if let Some(path) = std::env::var_os("SKIFFCONFIG") {
            return PathBuf::from(path);
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
        home.join(".skiff").join("config")
    }

    /// Reads a config file.
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClientError::ReadConfig {
            path: path.to_path_buf(),
            source,
        })?;
        serde_yaml::from_str(&text).map_err(|source| ClientError::ParseConfig {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Adds the bearer token to every call.
#[derive(Clone, Debug)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// Options of a list.
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i64,
    pub continue_token: String,
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct ObjectList {
    pub items: Vec<Value>,
    pub resource_version: String,
    pub continue_token: String,
    pub remaining_item_count: i64,
}

/// Options of a delete.
#[derive(Clone, Debug, Default)]
pub struct DeleteParams {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: String,
    pub precondition_resource_version: String,
}

/// Options of a watch.
#[derive(Clone, Debug, Default)]
pub struct WatchParams {
    pub label_selector: String,
    pub field_selector: String,
    /// Empty: start with the current state as ADDED events.
    pub resource_version: String,
    pub allow_bookmarks: bool,
}

/// What a watch event says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
}

/// One watch event.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub event_type: EventType,
    /// The object (empty for bookmarks).
    pub object: Value,
    pub resource_version: String,
}

/// A stream of watch events; it ends with an `Expired` error when the client must relist.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, ClientError>> + Send>>;

/// Bytes as they arrive (a log).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>, ClientError>> + Send>>;

/// What an exec sends back: output, and last the exit code.
pub type ExecOutputStream =
    Pin<Box<dyn Stream<Item = Result<proto::exec_output::Output, ClientError>> + Send>>;

/// An image upload's progress.
pub type ImportProgressStream =
    Pin<Box<dyn Stream<Item = Result<proto::ImportProgress, ClientError>> + Send>>;

/// A connection to the API server.
#[derive(Clone, Debug)]
pub struct Client {
    api: ApiClient<InterceptedService<Channel, BearerToken>>,
    namespace: String,
}

impl Client {
    /// Connects (lazily: the first call dials) with the config's server, CA and token.
    ///
    /// # Errors
    /// When the server URL or CA is unusable, or the token is not a valid header.
    pub fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        let connect_err = |source| ClientError::Connect {
            server: config.server.clone(),
            source,
        };
        let mut endpoint = Endpoint::from_shared(config.server.clone())
            .map_err(connect_err)?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        if config.server.starts_with("https://") {
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&config.certificate_authority));
            endpoint = endpoint.tls_config(tls).map_err(connect_err)?;
        }
        let token = if config.token.is_empty() {
            None
        } else {
            Some(
                format!("Bearer {}", config.token)
                    .parse()
                    .map_err(|_| ClientError::Token)?,
            )
        };
        let channel = endpoint.connect_lazy();
        Ok(Self {
            api: ApiClient::with_interceptor(channel, BearerToken(token))
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(64 << 20),
            namespace: config.namespace.clone(),
        })
    }

    /// The namespace requests default to.
    pub fn default_namespace(&self) -> &str {
        &self.namespace
    }

    fn target(resource: &str, namespace: &str) -> Option<ResourceRef> {
        Some(ResourceRef {
            resource: resource.to_string(),
            namespace: namespace.to_string(),
        })
    }

    /// Creates an object of `resource` (plural name) in `namespace`.
    ///
    /// # Errors
    /// The server's [`ApiError`], or a transport failure.
    pub async fn create(
        &self,
        resource: &str,
        namespace: &str,
        object: &Value,
    ) -> Result<Value, ClientError> {
        let request = proto::CreateRequest {
            target: Self::target(resource, namespace),
            object: serde_json::to_vec(object).map_err(ClientError::Decode)?,
            dry_run: false,
        };
        let response = self.api.clone().create(request).await.map_err(api_error)?;
        decode(&response.into_inner().object)
    }

    /// Reads one object.
    ///
    /// # Errors
    /// NotFound, or another [`ApiError`].
    pub async fn get(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ClientError> {
        let request = proto::GetRequest {
            target: Self::target(resource, namespace),
            name: name.to_string(),
        };
        let response = self.api.clone().get(request).await.map_err(api_error)?;
        decode(&response.into_inner().object)
    }

    /// Lists objects (namespace "" for all namespaces).
    ///
    /// # Errors
    /// The server's [`ApiError`].
    pub async fn list(
        &self,
        resource: &str,
        namespace: &str,
        params: &ListParams,
    ) -> Result<ObjectList, ClientError> {
        let request = proto::ListRequest {
            target: Self::target(resource, namespace),
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            limit: params.limit,
            continue_token: params.continue_token.clone(),
        };
        let response = self
            .api
            .clone()
            .list(request)
            .await
            .map_err(api_error)?
            .into_inner();
        Ok(ObjectList {
            items: response
                .items
                .iter()
                .map(|i| decode(i))
                .collect::<Result<_, _>>()?,
            resource_version: response.resource_version,
            continue_token: response.continue_token,
            remaining_item_count: response.remaining_item_count,
        })
    }

    /// Replaces an object; a stale `metadata.resourceVersion` is a Conflict.
    ///
    /// # Errors
    /// Conflict, NotFound, Invalid, or another [`ApiError`].
    pub async fn update(
        &self,
        resource: &str,
        namespace: &str,
        object: &Value,
    ) -> Result<Value, ClientError> {
        self.update_subresource(resource, namespace, object, "")
            .await
    }

    /// Replaces an object's status.
    ///
    /// # Errors
    /// As [`Client::update`].
    pub async fn update_status(
        &self,
        resource: &str,
        namespace: &str,
        object: &Value,
    ) -> Result<Value, ClientError> {
        self.update_subresource(resource, namespace, object, "status")
            .await
    }

    async fn update_subresource(
        &self,
        resource: &str,
        namespace: &str,
        object: &Value,
        subresource: &str,
    ) -> Result<Value, ClientError> {
        let request = proto::UpdateRequest {
            target: Self::target(resource, namespace),
            object: serde_json::to_vec(object).map_err(ClientError::Decode)?,
            subresource: subresource.to_string(),
            dry_run: false,
        };
        let response = self.api.clone().update(request).await.map_err(api_error)?;
        decode(&response.into_inner().object)
    }

    /// Assigns pod `name` to `node` (the `pods/binding` subresource).
    ///
    /// # Errors
    /// Conflict when the pod is already assigned or being deleted.
    pub async fn bind_pod(
        &self,
        namespace: &str,
        name: &str,
        node: &str,
    ) -> Result<Value, ClientError> {
        let binding = serde_json::json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        self.update_subresource("pods", namespace, &binding, "binding")
            .await
    }

    /// Applies a JSON merge patch to an object (`subresource` "" or "status").
    ///
    /// # Errors
    /// The server's [`ApiError`].
    pub async fn patch(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        patch: &Value,
        subresource: &str,
    ) -> Result<Value, ClientError> {
        let request = proto::PatchRequest {
            target: Self::target(resource, namespace),
            name: name.to_string(),
            patch: serde_json::to_vec(patch).map_err(ClientError::Decode)?,
            subresource: subresource.to_string(),
        };
        let response = self.api.clone().patch(request).await.map_err(api_error)?;
        decode(&response.into_inner().object)
    }

    /// Deletes an object; returns it as the server last had it.
    ///
    /// # Errors
    /// NotFound, Conflict on a failed precondition, or another [`ApiError`].
    pub async fn delete(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        params: &DeleteParams,
    ) -> Result<Value, ClientError> {
        let request = proto::DeleteRequest {
            target: Self::target(resource, namespace),
            name: name.to_string(),
            grace_period_seconds: params.grace_period_seconds,
            propagation_policy: params.propagation_policy.clone(),
            precondition_resource_version: params.precondition_resource_version.clone(),
        };
        let response = self.api.clone().delete(request).await.map_err(api_error)?;
        decode(&response.into_inner().object)
    }

    /// Watches objects (namespace "" for all namespaces).
    ///
    /// # Errors
    /// The server's [`ApiError`] (Expired for a resourceVersion too old to resume from).
    pub async fn watch(
        &self,
        resource: &str,
        namespace: &str,
        params: &WatchParams,
    ) -> Result<WatchStream, ClientError> {
        let request = proto::WatchRequest {
            target: Self::target(resource, namespace),
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            resource_version: params.resource_version.clone(),
            allow_bookmarks: params.allow_bookmarks,
        };
        let stream = self
            .api
            .clone()
            .watch(request)
            .await
            .map_err(api_error)?
            .into_inner();
        Ok(Box::pin(stream.map(|item| {
            let event = item.map_err(api_error)?;
            let event_type = match proto::EventType::try_from(event.r#type) {
                Ok(proto::EventType::Added) => EventType::Added,
                Ok(proto::EventType::Modified) => EventType::Modified,
                Ok(proto::EventType::Deleted) => EventType::Deleted,
                _ => EventType::Bookmark,
            };
            let object = if event.object.is_empty() {
                Value::Null
            } else {
                decode(&event.object)?
            };
            Ok(WatchEvent {
                event_type,
                object,
                resource_version: event.resource_version,
            })
        })))
    }

    /// Exchanges this client's (bootstrap) token for node `name`'s credential.
    ///
    /// # Errors
    /// Forbidden unless the token is a bootstrap, admin or that node's token.
    pub async fn issue_node_credential(&self, name: &str) -> Result<String, ClientError> {
        let request = proto::NodeCredentialRequest {
            node_name: name.to_string(),
        };
        let response = self
            .api
            .clone()
            .issue_node_credential(request)
            .await
            .map_err(api_error)?;
        Ok(response.into_inner().token)
    }

    /// Asks the API server to sign this node's serving certificate (`csr_pem`, PEM);
    /// returns the certificate (PEM).
    ///
    /// # Errors
    /// Forbidden unless this client is node `name`.
    pub async fn issue_node_serving_certificate(
        &self,
        name: &str,
        csr_pem: &str,
    ) -> Result<String, ClientError> {
        let request = proto::NodeServingCertificateRequest {
            node_name: name.to_string(),
            csr_pem: csr_pem.to_string(),
        };
        let response = self
            .api
            .clone()
            .issue_node_serving_certificate(request)
            .await
            .map_err(api_error)?;
        Ok(response.into_inner().certificate_pem)
    }

    /// Streams a container's log (pods/log) from its node.
    ///
    /// # Errors
    /// The server's [`ApiError`]: Forbidden, NotFound for the pod, BadRequest for a
    /// missing container name, ServiceUnavailable when the node cannot be reached.
    pub async fn pod_logs(&self, request: proto::LogsRequest) -> Result<ByteStream, ClientError> {
        let stream = self
            .api
            .clone()
            .pod_logs(request)
            .await
            .map_err(api_error)?
            .into_inner();
        Ok(Box::pin(
            stream.map(|chunk| chunk.map(|c| c.data).map_err(api_error)),
        ))
    }

    /// Runs a command in a container (pods/exec): `input` starts with an
    /// [`proto::exec_input::Input::Start`], then stdin and resizes; the answer streams the
    /// output and, last, the exit code.
    ///
    /// # Errors
    /// As [`Client::pod_logs`].
    pub async fn pod_exec(
        &self,
        input: impl Stream<Item = proto::ExecInput> + Send + 'static,
    ) -> Result<ExecOutputStream, ClientError> {
        let stream = self
            .api
            .clone()
            .pod_exec(input)
            .await
            .map_err(api_error)?
            .into_inner();
        Ok(Box::pin(stream.map(|item| {
            item.map_err(api_error)?
                .output
                .ok_or_else(|| ClientError::Api(ApiError::internal("an empty exec message")))
        })))
    }

    /// Uploads an image archive to a node (nodes/proxy): `upload` starts with an
    /// [`proto::image_upload::Upload::Start`] naming the node, then the bytes.
    ///
    /// # Errors
    /// As [`Client::pod_logs`].
    pub async fn import_image(
        &self,
        upload: impl Stream<Item = proto::ImageUpload> + Send + 'static,
    ) -> Result<ImportProgressStream, ClientError> {
        let stream = self
            .api
            .clone()
            .import_image(upload)
            .await
            .map_err(api_error)?
            .into_inner();
        Ok(Box::pin(stream.map(|item| item.map_err(api_error))))
    }

    /// Reads one object as its `k8s-openapi` type.
    ///
    /// # Errors
    /// As [`Client::get`], or Decode when the object does not fit `T`.
    pub async fn get_as<T: DeserializeOwned>(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<T, ClientError> {
        serde_json::from_value(self.get(resource, namespace, name).await?)
            .map_err(ClientError::Decode)
    }
}

fn api_error(status: tonic::Status) -> ClientError {
    ClientError::Api(ApiError::from(status))
}

fn decode(bytes: &[u8]) -> Result<Value, ClientError> {
    serde_json::from_slice(bytes).map_err(ClientError::Decode)
}
