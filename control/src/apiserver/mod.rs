//! The API server: the only component that talks to the store.
//!
//! A request arrives at the gRPC edge (`service`), which authenticates it (`auth`), checks
//! it may be done, and hands it to `objects` (defaulting, validation, server-owned metadata,
//! optimistic concurrency, graceful deletion). Writes go to the store; List and Watch are
//! served by the `watch_cache`, which follows the store with one watch. `tls` keeps the PKI.
//! Logs, exec and image uploads are relayed to the pod's node by `node_proxy`, and the
//! metrics.k8s.io resources are answered live from the nodes by `resource_metrics`.

pub mod admission;
pub mod allocation;
pub mod auth;
pub mod instrumented;
pub mod node_proxy;
pub mod objects;
pub mod resource_metrics;
pub mod service;
pub mod tls;
pub mod watch_cache;

use std::{net::SocketAddr, path::Path, sync::Arc};

use bytes::Bytes;
use serde_json::json;
use skiff_api::{proto::api_server::ApiServer, resources};
use tonic::transport::{Identity as TlsIdentity, Server, ServerTlsConfig};
use tracing::info;

use self::{
    allocation::{Cidr, ServiceAllocator},
    auth::Authenticator,
    instrumented::InstrumentedApi,
    objects::Objects,
    service::ApiService,
    tls::Pki,
    watch_cache::WatchCache,
};
use crate::{metrics::Metrics, store::Store};

/// Namespaces every cluster has.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Why the API server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("starting the watch cache")]
    Cache(#[from] watch_cache::CacheError),
    #[error("bootstrapping {what}: {message}")]
    Bootstrap { what: String, message: String },
    #[error("configuring TLS")]
    Tls(#[source] tonic::transport::Error),
    #[error("serving on {address}")]
    Serve {
        address: SocketAddr,
        #[source]
        source: tonic::transport::Error,
    },
}

/// The ranges Services get their ClusterIPs and NodePorts from.
#[derive(Clone, Copy, Debug)]
pub struct ServiceRanges {
    pub cluster_ips: Cidr,
    pub node_ports: (u16, u16),
}

impl Default for ServiceRanges {
    /// Kubernetes' defaults: 10.96.0.0/12 and 30000-32767.
    fn default() -> Self {
        Self {
            cluster_ips: Cidr {
                network: std::net::Ipv4Addr::new(10, 96, 0, 0),
                prefix_len: 12,
            },
            node_ports: (30000, 32767),
        }
    }
}

/// A running API server's parts, built before it listens.
#[derive(Debug, Clone)]
pub struct ApiServerParts {
    pub objects: Objects,
    pub auth: Arc<Authenticator>,
}

impl ApiServerParts {
    /// Starts the watch cache over `store` and makes sure the system namespaces exist.
    ///
    /// # Errors
    /// When the store cannot be listed or the namespaces cannot be created.
    pub async fn new(
        store: Arc<dyn Store>,
        auth: Arc<Authenticator>,
        watch_history: usize,
        services: ServiceRanges,
    ) -> Result<Self, ServeError> {
        let allocator = Arc::new(ServiceAllocator::new(
            Arc::clone(&store),
            services.cluster_ips,
            services.node_ports,
        ));
        let cache = WatchCache::start(store, watch_history).await?;
        let objects = Objects::new(cache).with_service_allocator(Arc::clone(&allocator));
        let service_type = resources::by_plural("services").expect("services are served");
        let stored = objects
            .list(
                service_type,
                "",
                &Default::default(),
                &Default::default(),
                0,
                "",
            )
            .await
            .map_err(|e| ServeError::Bootstrap {
                what: "service allocations".into(),
                message: format!("listing services: {}", e.message),
            })?;
        let stored: Vec<serde_json::Value> = stored
            .items
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
            .collect();
        allocator
            .repair(&stored)
            .await
            .map_err(|e| ServeError::Bootstrap {
                what: "service allocations".into(),
                message: format!("repairing: {e}"),
            })?;
        let namespaces = resources::by_plural("namespaces").expect("namespaces are served");
        for namespace in SYSTEM_NAMESPACES {
            let body = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": namespace } });
            match objects.create(namespaces, "", body, false).await {
                Ok(_) => info!(namespace, "created system namespace"),
                Err(e) if e.is(skiff_api::status::Reason::AlreadyExists) => {}
                Err(e) => {
                    return Err(ServeError::Bootstrap {
                        what: format!("namespace {namespace}"),
                        message: e.message,
                    });
                }
            }
        }
        // The `kubernetes` Service holds the first address of the range, as in Kubernetes.
        let first_ip = std::net::Ipv4Addr::from(u32::from(services.cluster_ips.network) + 1);
        let kubernetes = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": first_ip.to_string(),
                "ports": [{"name": "https", "port": 443, "targetPort": 6443, "protocol": "TCP"}]},
        });
        // Checked first: on a restart, re-creating it would fail on its own address.
        let exists = objects
            .get(service_type, "default", "kubernetes")
            .await
            .is_ok();
        let created = match exists {
            true => Ok(Bytes::new()),
            false => {
                objects
                    .create(service_type, "default", kubernetes, false)
                    .await
            }
        };
        match created {
            Ok(_) if exists => {}
            Ok(_) => info!(ip = %first_ip, "created the kubernetes service"),
            Err(e) if e.is(skiff_api::status::Reason::AlreadyExists) => {}
            Err(e) => {
                return Err(ServeError::Bootstrap {
                    what: "the kubernetes service".into(),
                    message: e.message,
                });
            }
        }
        Ok(Self { objects, auth })
    }

    /// Sets the tolerations new pods get for not-ready and unreachable nodes.
    #[must_use]
    pub fn with_default_toleration_seconds(
        mut self,
        defaults: admission::DefaultTolerationSeconds,
    ) -> Self {
        self.objects = self.objects.with_default_toleration_seconds(defaults);
        self
    }

    /// Serves the API with TLS on every address in `addresses`, observed in `metrics`,
    /// until `shutdown` completes.
    ///
    /// # Errors
    /// When TLS cannot be configured or an address cannot be served.
    pub async fn serve(
        self,
        addresses: &[SocketAddr],
        pki: &Pki,
        metrics: Arc<Metrics>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let service = InstrumentedApi::new(
            ApiService::new(self.objects, self.auth).with_node_tls(pki),
            metrics,
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut servers = Vec::new();
        for &address in addresses {
            let tls =
                ServerTlsConfig::new().identity(TlsIdentity::from_pem(&pki.cert_pem, &pki.key_pem));
            let api = ApiServer::new(service.clone())
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(256 << 20);
            let mut stopped = stopped.clone();
            let router = Server::builder()
                .tls_config(tls)
                .map_err(ServeError::Tls)?
                .add_service(api);
            info!(%address, "API server listening");
            servers.push(async move {
                router
                    .serve_with_shutdown(address, async move {
                        let _ = stopped.wait_for(|&s| s).await;
                    })
                    .await
                    .map_err(|source| ServeError::Serve { address, source })
            });
        }
        let all = futures::future::try_join_all(servers);
        tokio::pin!(all);
        tokio::select! {
            result = &mut all => result.map(|_| ()),
            () = shutdown => {
                let _ = stop.send(true);
                all.await.map(|_| ())
            }
        }
    }
}

/// Writes the administrator's client config (like k3s's `k3s.yaml`): server, CA and token.
///
/// # Errors
/// On I/O errors.
pub fn write_admin_config(
    path: &Path,
    server: &str,
    pki: &Pki,
    auth: &Authenticator,
) -> std::io::Result<()> {
    let config = json!({
        "server": server,
        "certificateAuthority": pki.ca_pem,
        "token": auth.admin_token(),
        "namespace": "default",
    });
    let yaml = serde_yaml::to_string(&config).map_err(std::io::Error::other)?;
    tls::write_private(path, &yaml)
}
