//! `skiff-control`: Skiff's control plane in one process (like a k3s server): the API server
//! over the embedded store or etcd. The scheduler and controllers join it here.

use std::{net::IpAddr, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use clap::Parser;
use skiff_api::{
    client::{Client, ClientConfig},
    duration::parse_duration,
    runtime::{Config as WatchConfig, InformerFactory},
};
use skiff_control::{
    apiserver::{
        self, ApiServerParts, ServiceRanges, admission::DefaultTolerationSeconds, allocation::Cidr,
        auth::Authenticator, tls,
    },
    compaction,
    controllers::{
        self, Context as ControllerContext, ControllerOptions, Stop, load_balancer::IpPool,
        node_ipam::CidrSet,
    },
    events::EventRecorder,
    leader::{ElectionTimings, LeaderElector},
    metrics::Metrics,
    scheduler::{Scheduler, SchedulerConfig, runner},
    store::{Store, embedded::EmbeddedStore, etcd::EtcdStore},
};
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

/// mimalloc instead of glibc's malloc: the API server, watch cache and scheduler allocate
/// many short-lived small objects per request (JSON values, protobuf buffers), and glibc's
/// allocator took about a fifth of the process's CPU time under the scheduler benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `skiff-control`: the API server, store, scheduler and controllers of a Skiff cluster.
#[derive(Debug, Parser)]
#[command(name = "skiff-control", version)]
struct Args {
    /// Where the control plane keeps its data: the embedded store, the PKI, tokens, and the
    /// administrator's client config (`admin.yaml`).
    #[arg(long, default_value = "/var/lib/skiff/control")]
    data_dir: PathBuf,
    /// The addresses the API server listens on (TLS); repeat or comma-separate. The first
    /// is the one written to `admin.yaml`.
    #[arg(long, default_value = "127.0.0.1:6443", value_delimiter = ',')]
    listen: Vec<SocketAddr>,
    /// More addresses clients reach the API server by, added to its certificate (repeat or
    /// comma-separate).
    #[arg(long, value_delimiter = ',')]
    advertise_address: Vec<IpAddr>,
    /// etcd client URLs (comma-separated); without them the embedded store in the data
    /// directory is used.
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// The range ClusterIPs are allocated from.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: Cidr,
    /// The range NodePorts are allocated from (inclusive).
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    service_node_port_range: (u16, u16),
    /// A scheduler configuration file (KubeSchedulerConfiguration's fields: profiles,
    /// plugins, weights, percentageOfNodesToScore); the default profile without one.
    #[arg(long)]
    scheduler_config: Option<PathBuf>,
    /// How many recent events the watch cache keeps for watches that resume.
    #[arg(long, default_value_t = 100_000)]
    watch_cache_size: usize,
    /// How long a node's Lease may go unrenewed before the node is Ready=Unknown
    /// (`40s`, `500ms`, `2m`).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// Nodes per second that may be given NoExecute taints (which evict their pods).
    #[arg(long, default_value_t = 0.1)]
    node_eviction_rate: f64,
    /// The tolerationSeconds of the `node.kubernetes.io/not-ready:NoExecute` toleration
    /// every pod gets unless it has one.
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// The tolerationSeconds of the `node.kubernetes.io/unreachable:NoExecute` toleration
    /// every pod gets unless it has one.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
    /// Addresses LoadBalancer Services get: ranges (`10.250.0.200-10.250.0.250`) or CIDRs,
    /// comma-separated. Without it they get none (as on a cluster without a cloud).
    #[arg(long)]
    load_balancer_ip_pool: Option<IpPool>,
    /// Whether nodes without a pod CIDR get one from `--cluster-cidr`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allocate_node_cidrs: bool,
    /// The range pod CIDRs of nodes are cut from.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: Cidr,
    /// The prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// How long a leader's Lease holds after its last renewal before another instance may
    /// take over (kube-controller-manager's flag of the same name).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// How often candidates try to acquire, and the leader to renew, the Lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
    /// Where `/metrics` is served over plain HTTP (Prometheus text format); `none` to
    /// serve no metrics.
    #[arg(long, default_value = "127.0.0.1:10257", value_parser = parse_optional_address)]
    metrics_listen: MetricsListen,
}

/// `--metrics-listen`: an address, or none.
#[derive(Clone, Copy, Debug)]
struct MetricsListen(Option<SocketAddr>);

fn parse_optional_address(text: &str) -> Result<MetricsListen, String> {
    if text == "none" {
        return Ok(MetricsListen(None));
    }
    text.parse()
        .map(|a| MetricsListen(Some(a)))
        .map_err(|_| format!("{text:?} is not an address such as 127.0.0.1:10257, or none"))
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if !(args.leader_elect_retry_period < args.leader_elect_renew_deadline
        && args.leader_elect_renew_deadline < args.leader_elect_lease_duration)
    {
        anyhow::bail!(
            "--leader-elect-lease-duration ({:?}) must be longer than --leader-elect-renew-deadline ({:?}), \
             which must be longer than --leader-elect-retry-period ({:?})",
            args.leader_elect_lease_duration,
            args.leader_elect_renew_deadline,
            args.leader_elect_retry_period
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;

    let store: Arc<dyn Store> = if args.etcd_servers.is_empty() {
        let path = args.data_dir.join("store.redb");
        info!(path = %path.display(), "using the embedded store");
        Arc::new(
            EmbeddedStore::open(&path)
                .await
                .with_context(|| format!("opening {}", path.display()))?,
        )
    } else {
        info!(endpoints = ?args.etcd_servers, "using etcd");
        Arc::new(
            EtcdStore::connect(&args.etcd_servers)
                .await
                .context("connecting to etcd")?,
        )
    };

    let mut addresses = args.advertise_address.clone();
    addresses.extend(
        args.listen
            .iter()
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified()),
    );
    let pki =
        tls::load_or_create(&args.data_dir.join("pki"), &addresses).context("setting up TLS")?;
    let auth = Arc::new(
        Authenticator::load_or_create(&args.data_dir.join("auth")).context("setting up tokens")?,
    );
    let server_url = format!("https://{}", args.listen[0]);
    let admin_config = args.data_dir.join("admin.yaml");
    apiserver::write_admin_config(&admin_config, &server_url, &pki, &auth)
        .with_context(|| format!("writing {}", admin_config.display()))?;
    info!(path = %admin_config.display(), "administrator's client config written");

    let ranges = ServiceRanges {
        cluster_ips: args.service_cluster_ip_range,
        node_ports: args.service_node_port_range,
    };
    let parts = ApiServerParts::new(Arc::clone(&store), auth, args.watch_cache_size, ranges)
        .await?
        .with_default_toleration_seconds(DefaultTolerationSeconds {
            not_ready: args.default_not_ready_toleration_seconds,
            unreachable: args.default_unreachable_toleration_seconds,
        });
    tokio::spawn(compaction::run(store, compaction::INTERVAL));
    let scheduler_config = match &args.scheduler_config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => String::new(),
    };
    let scheduler_config =
        SchedulerConfig::from_yaml(&scheduler_config).context("the scheduler configuration")?;
    // Validate it now, so that a bad file stops the process at start rather than on election.
    Scheduler::new(&scheduler_config).context("the scheduler configuration")?;
    let loopback = args.listen[0];
    let internal = ClientConfig {
        server: format!(
            "https://{}",
            if loopback.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], loopback.port()))
            } else {
                loopback
            }
        ),
        certificate_authority: pki.ca_pem.clone(),
        token: parts.auth.admin_token().to_string(),
        namespace: "default".into(),
    };
    let timings = ElectionTimings {
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    };
    let metrics = Arc::new(Metrics::new());
    if let MetricsListen(Some(address)) = args.metrics_listen {
        let scraped = Arc::clone(&metrics);
        skiff_api::metrics_http::spawn(address, move || scraped.render())
            .await
            .with_context(|| format!("listening for /metrics on {address} (--metrics-listen)"))?;
        info!(%address, "metrics at /metrics");
    }
    let controller_options = ControllerOptions {
        node_monitor_grace_period: args.node_monitor_grace_period,
        default_eviction_seconds: args.default_unreachable_toleration_seconds,
        node_eviction_rate: args.node_eviction_rate,
        service_account_signer: Some(parts.auth.service_account_signer(&pki.ca_pem)),
        load_balancer_pool: args.load_balancer_ip_pool.clone(),
        cluster_cidr: args
            .allocate_node_cidrs
            .then_some((args.cluster_cidr, args.node_cidr_mask_size)),
    };
    if args.allocate_node_cidrs {
        CidrSet::new(args.cluster_cidr, args.node_cidr_mask_size)
            .context("--cluster-cidr and --node-cidr-mask-size")?;
    }
    tokio::spawn(lead(
        Client::new(&internal)?,
        timings,
        scheduler_config,
        controller_options,
        Arc::clone(&metrics),
    ));

    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        info!("shutting down");
    };
    parts.serve(&args.listen, &pki, metrics, shutdown).await?;
    Ok(())
}

/// Parses `30000-32767`.
fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (low, high) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not a range like 30000-32767"))?;
    let low: u16 = low
        .trim()
        .parse()
        .map_err(|_| format!("{low:?} is not a port"))?;
    let high: u16 = high
        .trim()
        .parse()
        .map_err(|_| format!("{high:?} is not a port"))?;
    if low == 0 || low > high {
        return Err(format!(
            "{text:?}: the first port must be 1 or more and not above the last"
        ));
    }
    Ok((low, high))
}

/// Campaigns for leadership and, while leading, runs the scheduler (and, as they land, the
/// controllers); several `skiff-control` processes serve the API but only one acts.
async fn lead(
    client: Client,
    timings: ElectionTimings,
    scheduler_config: SchedulerConfig,
    controller_options: ControllerOptions,
    metrics: Arc<Metrics>,
) {
    let controller_options = Arc::new(controller_options);
    let identity = format!(
        "skiff-control-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let events = EventRecorder::new(client.clone(), "skiff-control", &identity);
    let elector = LeaderElector::new(
        client.clone(),
        "kube-system",
        "skiff-control",
        &identity,
        timings,
    )
    .with_events(events);
    let mut leading = elector.spawn();
    loop {
        if leading.wait_for(|&l| l).await.is_err() {
            return;
        }
        let scheduler = match Scheduler::new(&scheduler_config) {
            Ok(scheduler) => scheduler,
            Err(error) => {
                tracing::error!(%error, "the scheduler configuration is invalid");
                return;
            }
        };
        let recorder = EventRecorder::new(client.clone(), "default-scheduler", &identity);
        // One watch and cache per resource for this term, shared by the scheduler and
        // every controller; dropped (and the watches stopped) when leadership is lost.
        let informers = Arc::new(InformerFactory::new(client.clone(), WatchConfig::default()));
        let mut lost = leading.clone();
        let stop = async move {
            let _ = lost.wait_for(|&l| !l).await;
        };
        let controllers = controllers::run(
            ControllerContext {
                client: client.clone(),
                informers: Arc::clone(&informers),
                options: Arc::clone(&controller_options),
                identity: identity.clone(),
                metrics: Arc::clone(&metrics),
            },
            Stop::when_not_leading(leading.clone()),
        );
        tokio::join!(
            runner::run(
                client.clone(),
                Arc::clone(&informers),
                recorder,
                scheduler,
                Arc::clone(&metrics),
                stop
            ),
            controllers
        );
    }
}
