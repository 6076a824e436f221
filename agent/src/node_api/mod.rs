//! The node API (the kubelet's :10250 role): container logs, exec and image import,
//! served over gRPC to the control plane only.
//!
//! At start the agent makes a key, has the API server sign a serving certificate for its
//! node name (a CSR through `IssueNodeServingCertificate`), and serves with mutual TLS:
//! callers need a client certificate from the cluster CA whose common name is the API
//! server's ([`skiff_api::node_api::API_SERVER_CLIENT_NAME`]). `logs` reads the CRI log
//! files, `exec` runs commands through containerd, and image uploads are received into a
//! file and imported (`runtime::import`). `Summary` answers from the last two housekeeping
//! passes ([`crate::metrics::usage`]) without reading cgroups.

pub mod exec;
pub mod logs;

use std::{net::SocketAddr, path::PathBuf, pin::Pin, sync::Arc};

use futures::{Stream, StreamExt};
use skiff_api::{
    client::{Client, ClientError},
    node_api::API_SERVER_CLIENT_NAME,
    proto::{
        ExecInput, ExecOutput, ImageUpload, ImageUploadStart, ImportProgress, LogChunk,
        LogsRequest, SummaryRequest, SummaryResponse, exec_input, image_upload,
        node_server::{Node, NodeServer},
    },
    status::{ApiError, Reason},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Request, Response, Status, Streaming,
    transport::{Certificate, Identity, Server, ServerTlsConfig},
};
use tracing::{info, warn};

use crate::{metrics::UsageHistory, runtime::containerd::Containerd};

/// Why the node API could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeApiError {
    #[error("making the node API's key or certificate request")]
    Key(#[from] rcgen::Error),
    #[error("having the API server sign the node API's serving certificate")]
    Sign(#[source] ClientError),
    #[error("configuring the node API's TLS")]
    Tls(#[source] tonic::transport::Error),
    #[error("serving the node API on {address}")]
    Serve {
        address: SocketAddr,
        #[source]
        source: tonic::transport::Error,
    },
}

/// The node's serving certificate and key (PEM), signed by the cluster CA for `node`.
///
/// # Errors
/// When the key cannot be made or the API server does not sign.
pub async fn serving_identity(
    client: &Client,
    node: &str,
) -> Result<(String, String), NodeApiError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![node.to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    let csr = params.serialize_request(&key)?.pem()?;
    let cert = client
        .issue_node_serving_certificate(node, &csr)
        .await
        .map_err(NodeApiError::Sign)?;
    Ok((cert, key.serialize_pem()))
}

/// The common name of the first certificate the caller presented.
fn caller_name(request: &Request<()>) -> Option<String> {
    let certs = request.peer_certs()?;
    let der = certs.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(name)
}

/// Lets only the API server through (TLS has already checked the CA).
#[allow(clippy::result_large_err)]
fn only_the_api_server(request: Request<()>) -> Result<Request<()>, Status> {
    match caller_name(&request) {
        Some(name) if name == API_SERVER_CLIENT_NAME => Ok(request),
        other => Err(ApiError::new(
            Reason::Forbidden,
            format!(
                "the node API serves the API server only; the caller's certificate names {}",
                other.map_or_else(|| "nobody".to_string(), |n| format!("\"{n}\""))
            ),
        )
        .into()),
    }
}

/// The node API service.
#[derive(Clone, Debug)]
pub struct NodeApi {
    /// Where container logs are (`<state>/logs`).
    pub logs_dir: PathBuf,
    /// Where exec FIFOs are made (`<state>/exec`).
    pub exec_dir: PathBuf,
    /// Where uploaded image archives are kept while they are imported.
    pub uploads_dir: PathBuf,
    pub runtime: Containerd,
    /// The last two housekeeping passes' CPU and memory use.
    pub usage: Arc<UsageHistory>,
}

impl NodeApi {
    /// Serves on `address` with the node's certificate, accepting only the API server's
    /// client certificate from `ca_pem`, until `shutdown`.
    ///
    /// # Errors
    /// When TLS cannot be configured or the address cannot be served.
    pub async fn serve(
        self,
        address: SocketAddr,
        (cert_pem, key_pem): (String, String),
        ca_pem: &str,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), NodeApiError> {
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert_pem, key_pem))
            .client_ca_root(Certificate::from_pem(ca_pem));
        let service = NodeServer::with_interceptor(self, only_the_api_server);
        info!(%address, "node API listening");
        Server::builder()
            .tls_config(tls)
            .map_err(NodeApiError::Tls)?
            .add_service(service)
            .serve_with_shutdown(address, shutdown)
            .await
            .map_err(|source| NodeApiError::Serve { address, source })
    }
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Node for NodeApi {
    type ContainerLogsStream = ReceiverStream<Result<LogChunk, Status>>;

    async fn container_logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::ContainerLogsStream>, Status> {
        let request = request.into_inner();
        if request.pod_uid.is_empty() || request.container.is_empty() {
            return Err(ApiError::bad_request("the request names no pod uid or container").into());
        }
        let target = logs::LogTarget {
            logs_dir: &self.logs_dir,
            namespace: &request.namespace,
            pod: &request.pod,
            uid: &request.pod_uid,
            container: &request.container,
        };
        // Fails now, not in the stream, when there is no such log.
        target.file(request.previous)?;
        let (tx, rx) = mpsc::channel(16);
        let logs_dir = self.logs_dir.clone();
        tokio::spawn(async move {
            let target = logs::LogTarget {
                logs_dir: &logs_dir,
                namespace: &request.namespace,
                pod: &request.pod,
                uid: &request.pod_uid,
                container: &request.container,
            };
            let tail = request
                .tail_lines
                .map(|n| usize::try_from(n.max(0)).unwrap_or(usize::MAX));
            let sent = logs::stream(
                target,
                request.previous,
                tail,
                request.follow,
                request.timestamps,
                &tx,
            )
            .await;
            if let Err(error) = sent {
                let _ = tx.send(Err(error.into())).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type ExecStream = ReceiverStream<Result<ExecOutput, Status>>;

    async fn exec(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut inbound = request.into_inner();
        let Some(Ok(ExecInput {
            input: Some(exec_input::Input::Start(start)),
        })) = inbound.next().await
        else {
            return Err(ApiError::bad_request("the first exec message must be `start`").into());
        };
        if start.command.is_empty() || start.pod_uid.is_empty() {
            return Err(ApiError::bad_request("the exec names no command or pod uid").into());
        }
        let (tx, rx) = mpsc::channel(64);
        let inbound = Box::pin(
            inbound
                .take_while(|m| futures::future::ready(m.is_ok()))
                .filter_map(|m| futures::future::ready(m.ok())),
        );
        let (runtime, exec_dir) = (self.runtime.clone(), self.exec_dir.clone());
        tokio::spawn(async move {
            if let Err(error) = exec::run(runtime, exec_dir, start, inbound, tx.clone()).await {
                warn!(error = %error.message, "exec failed");
                let _ = tx.send(Err(error.into())).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type ImportImageStream = Boxed<ImportProgress>;

    async fn summary(
        &self,
        _request: Request<SummaryRequest>,
    ) -> Result<Response<SummaryResponse>, Status> {
        self.usage
            .summary()
            .map(Response::new)
            .map_err(|e| ApiError::new(Reason::ServiceUnavailable, e.to_string()).into())
    }

    async fn import_image(
        &self,
        request: Request<Streaming<ImageUpload>>,
    ) -> Result<Response<Self::ImportImageStream>, Status> {
        let mut inbound = request.into_inner();
        let Some(Ok(ImageUpload {
            upload: Some(image_upload::Upload::Start(start)),
        })) = inbound.next().await
        else {
            return Err(ApiError::bad_request("the first upload message must be `start`").into());
        };
        let internal = |e: std::io::Error| -> Status {
            ApiError::internal(format!(
                "storing the upload in {}: {e}",
                self.uploads_dir.display()
            ))
            .into()
        };
        std::fs::create_dir_all(&self.uploads_dir).map_err(internal)?;
        let path = self
            .uploads_dir
            .join(format!("{}.tar", uuid::Uuid::new_v4().simple()));
        let (tx, rx) = mpsc::channel(16);
        let runtime = self.runtime.clone();
        tokio::spawn(async move {
            let result = receive_and_import(&runtime, &path, &start, inbound, &tx).await;
            let _ = std::fs::remove_file(&path);
            if let Err(error) = result {
                warn!(file = %start.file_name, error = %error.message, "image import failed");
                let _ = tx.send(Err(error.into())).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn progress(received: u64, phase: &str) -> Result<ImportProgress, Status> {
    Ok(ImportProgress {
        received,
        phase: phase.to_string(),
        images: Vec::new(),
    })
}

/// Writes the upload to `path` (reporting every MiB), then imports it.
async fn receive_and_import(
    runtime: &Containerd,
    path: &std::path::Path,
    start: &ImageUploadStart,
    mut inbound: Streaming<ImageUpload>,
    out: &mpsc::Sender<Result<ImportProgress, Status>>,
) -> Result<(), ApiError> {
    use tokio::io::AsyncWriteExt;
    let io = |e: std::io::Error| ApiError::internal(format!("writing {}: {e}", path.display()));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut received = 0u64;
    let mut reported = 0u64;
    while let Some(message) = inbound.next().await {
        let message = message.map_err(|s| {
            ApiError::bad_request(format!(
                "the upload of {} broke off: {}",
                start.file_name,
                s.message()
            ))
        })?;
        if let Some(image_upload::Upload::Data(bytes)) = message.upload {
            file.write_all(&bytes).await.map_err(io)?;
            received += bytes.len() as u64;
            if received - reported >= 1 << 20 {
                reported = received;
                let _ = out.send(progress(received, "receiving")).await;
            }
        }
    }
    file.flush().await.map_err(io)?;
    drop(file);
    if start.size > 0 && received != start.size {
        return Err(ApiError::bad_request(format!(
            "the upload of {} ended after {received} of {} bytes",
            start.file_name, start.size
        )));
    }
    let _ = out.send(progress(received, "importing")).await;
    let (steps, mut step_rx) = mpsc::unbounded_channel::<String>();
    let forward = {
        let out = out.clone();
        tokio::spawn(async move {
            while let Some(step) = step_rx.recv().await {
                let _ = out.send(progress(received, &step)).await;
            }
        })
    };
    let report = move |step: &str| {
        let _ = steps.send(step.to_string());
    };
    let imported = runtime.import_archive(path, &report).await;
    drop(report);
    let _ = forward.await;
    let names = imported.map_err(|e| ApiError::bad_request(crate::error_chain(&e)))?;
    info!(file = %start.file_name, images = ?names, "imported an uploaded archive");
    let _ = out
        .send(Ok(ImportProgress {
            received,
            phase: "done".into(),
            images: names,
        }))
        .await;
    Ok(())
}
