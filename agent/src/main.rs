//! `skiff-agent`: the node agent. Loads the eBPF data plane onto the node's uplink and runs
//! until SIGTERM or Ctrl-C, reporting what the data plane sees.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use skiff_agent::{
    config::Config,
    dataplane::{
        Dataplane, LoadOptions,
        conntrack::{self, Conntrack},
        desired::NodeView,
        endpoints::{self, LocalEndpoints},
        lb_maps::KernelLbMaps,
        maglev::Maglev,
        services::{self, ServiceSync},
    },
    eviction::EvictionManager,
    metrics::{
        AgentMetrics, Housekeeping, KernelStats, MachineFacts, MetricsListen, UsageHistory,
        cgroupfs::{CgroupLayout, HostCgroupFiles, subtree_memory_limit},
    },
    network::{self, Cidr},
    node::{
        credentials::node_client_config,
        heartbeat::{Heartbeat, HeartbeatTimings},
        status::{DEFAULT_MAX_PODS, MachineInfo, NodeFacts},
    },
    node_api::{NodeApi, serving_identity},
    pods::{PodManager, PodManagerConfig},
    runtime::containerd::Containerd,
};
use skiff_api::{
    client::{Client, ClientConfig},
    runtime::{Config as WatchConfig, Informer},
};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Config::parse();
    info!(node = %config.node_name, uplink = %config.uplink, "starting skiff-agent");

    let sizes = config.dataplane.sizes();
    let maglev = Maglev::new(sizes.maglev_table_size, config.dataplane.maglev_seed)?;
    std::fs::create_dir_all(&config.bpffs)
        .with_context(|| format!("creating the bpffs directory {}", config.bpffs.display()))?;
    let mut dataplane = Dataplane::load(&LoadOptions {
        pin_path: Some(config.bpffs.clone()),
        sizes,
        node_addr: config.node_ip,
    })
    .context("loading the eBPF data plane")?;
    let mode = dataplane
        .attach_uplink(&config.uplink, config.dataplane.uplink_hook)
        .with_context(|| format!("attaching to the uplink {}", config.uplink))?;
    info!(interface = %config.uplink, ?mode, "uplink ingress program attached");
    network::veth::enable_ipv4_forwarding()
        .context("turning on IPv4 forwarding (NodePorts to other nodes' pods need it)")?;
    if config.cgroup_root == std::path::Path::new("/sys/fs/cgroup/unified") {
        anyhow::bail!("--cgroup-root must be a subtree of the unified hierarchy, not its root");
    }
    std::fs::create_dir_all(&config.cgroup_root)
        .with_context(|| format!("creating the cgroup {}", config.cgroup_root.display()))?;
    dataplane
        .attach_socket_lb(&config.cgroup_root)
        .context("attaching socket load balancing")?;
    info!(cgroup = %config.cgroup_root.display(), "socket load balancing attached");
    dataplane
        .attach_cgroup_stats(&config.cgroup_root)
        .context("attaching the cgroup traffic counters")?;
    let maps = KernelLbMaps::take(&mut dataplane, sizes.maglev_table_size)?;
    let local_endpoints = LocalEndpoints::take(&mut dataplane)?;
    let conntrack = Conntrack::take(&mut dataplane)?;
    let dataplane = Arc::new(dataplane);
    let machine = MachineInfo::read(&config.state_dir);
    let metrics = Arc::new(AgentMetrics::new(MachineFacts {
        cpu_cores: machine.cpus,
        memory_bytes: machine.memory_bytes,
    }));
    if let MetricsListen(Some(address)) = config.metrics.metrics_listen {
        let scraped = Arc::clone(&metrics);
        skiff_api::metrics_http::spawn(address, move || scraped.render())
            .await
            .with_context(|| format!("listening for /metrics on {address} (--metrics-listen)"))?;
        info!(%address, "metrics at /metrics");
    }
    let sync = ServiceSync::adopt(&maps, maglev)?;
    info!(adopted = sync.service_count(), pins = %config.bpffs.display(), "service maps adopted");

    // A node in a memory-limited cgroup subtree has that much memory.
    let layout = CgroupLayout::detect(&HostCgroupFiles, std::path::Path::new("/sys/fs/cgroup"));
    let subtree_limit = subtree_memory_limit(&HostCgroupFiles, &layout, &config.cgroup_parent());
    let machine = machine.with_memory_limit(subtree_limit);
    info!(
        memory_bytes = machine.memory_bytes,
        ?subtree_limit,
        "node memory"
    );
    let (mut heartbeat, client) = register(&config, &machine).await?;
    let (pressure, pressure_seen) = tokio::sync::watch::channel(false);
    heartbeat.watch_memory_pressure(pressure_seen);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|&s| s).await;
        }
    };
    let beating = tokio::spawn(heartbeat.run(until_stopped()));
    // The pod worker tells when it wires or removes a pod's veth.
    let pod_network_changed = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(endpoints::run(
        local_endpoints,
        Arc::clone(&pod_network_changed),
        Duration::from_secs(30),
        until_stopped(),
    ));
    let counted = Arc::clone(&metrics);
    tokio::spawn(conntrack::run(
        conntrack,
        conntrack::Timeouts::default(),
        Duration::from_secs(30),
        move |done| counted.observe_conntrack_collected(done.removed),
        until_stopped(),
    ));
    let housekeeping = tokio::spawn(
        housekeeping(&config, client.clone(), Arc::clone(&dataplane)).run(
            config.metrics.housekeeping_interval,
            Arc::clone(&metrics),
            until_stopped(),
        ),
    );
    let syncing = tokio::spawn(services::run(
        client.clone(),
        NodeView {
            name: config.node_name.clone(),
            address: config.node_ip,
        },
        maps,
        sync,
        Duration::from_secs(60),
        until_stopped(),
    ));
    let node_api = {
        let (config, client, shutdown) = (config.clone(), client.clone(), until_stopped.clone());
        let usage = metrics.usage();
        tokio::spawn(async move {
            if let Err(error) = serve_node_api(&config, &client, usage, shutdown).await {
                warn!(
                    error = format!("{error:#}"),
                    "the node API is down: no logs, exec or image import through the control plane"
                );
            }
        })
    };
    let pods = {
        let (config, shutdown) = (config.clone(), until_stopped());
        let metrics = Arc::clone(&metrics);
        let network_changed = Arc::clone(&pod_network_changed);
        let eviction = NodeEviction {
            capacity: machine.memory_bytes,
            layout,
            pressure,
            shutdown: until_stopped(),
        };
        tokio::spawn(async move {
            let started = start_pods(
                &config,
                client,
                metrics,
                eviction,
                network_changed,
                shutdown,
            );
            match started.await {
                Ok(manager) => {
                    let _ = manager.await;
                }
                Err(error) => warn!(error = format!("{error:#}"), "pods cannot run on this node"),
            }
        })
    };

    let mut terminate = signal(SignalKind::terminate())?;
    let mut report = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = report.tick() => {
                let stats = dataplane.uplink_stats()?;
                let summary: Vec<String> = stats
                    .iter()
                    .map(|(class, c)| format!("{}={}", class.name(), c.packets))
                    .collect();
                info!(packets = %summary.join(" "), "uplink");
            }
        }
    }
    let _ = stop.send(true);
    let _ = beating.await;
    let _ = syncing.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), node_api).await;
    let _ = housekeeping.await;
    let _ = tokio::time::timeout(Duration::from_secs(10), pods).await;
    info!("stopping: programs detach with the agent; pinned maps keep their state");
    Ok(())
}

/// Housekeeping over the pods bound to this node (its own pod informer) and the data plane.
fn housekeeping(config: &Config, client: Client, dataplane: Arc<Dataplane>) -> Arc<Housekeeping> {
    let informer = Informer::<Pod>::new(
        client,
        "pods",
        "",
        WatchConfig::default().fields(&format!("spec.nodeName={}", config.node_name)),
    );
    let files = HostCgroupFiles;
    Arc::new(Housekeeping {
        // The closure owns the informer: the watch lives as long as housekeeping.
        pods: Box::new(move || informer.store().list()),
        dataplane: Some(Arc::new(KernelStats {
            dataplane,
            pin_path: Some(config.bpffs.clone()),
        })),
        files: Arc::new(files),
        layout: CgroupLayout::detect(&files, std::path::Path::new("/sys/fs/cgroup")),
        cgroup_parent: config.cgroup_parent(),
    })
}

/// Gets this node's credential and registers the node, retrying until the control plane
/// answers (it may start after the agent).
async fn register(config: &Config, machine: &MachineInfo) -> Result<(Heartbeat, Client)> {
    let ca = std::fs::read_to_string(&config.ca_file)
        .with_context(|| format!("reading the cluster CA {}", config.ca_file.display()))?;
    let base = ClientConfig {
        server: config.server.clone(),
        certificate_authority: ca,
        token: String::new(),
        namespace: "default".into(),
    };
    let facts = NodeFacts {
        name: config.node_name.clone(),
        address: config.node_ip,
        pod_cidr: config.pod_cidr.clone(),
        max_pods: DEFAULT_MAX_PODS,
        machine: machine.clone(),
        runtime_version: "containerd://1.6".into(),
        reserved_memory_bytes: config.reserved_memory_mib << 20,
        node_api_port: config.node_api_listen.port(),
    };
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = async {
            let client_config = node_client_config(
                &base,
                &config.node_name,
                &config.state_dir,
                config.bootstrap_token_file.as_deref(),
            )
            .await?;
            let client = Client::new(&client_config)?;
            let mut heartbeat = Heartbeat::new(
                client.clone(),
                facts.clone(),
                HeartbeatTimings {
                    lease_renew_interval: Duration::from_secs(config.lease_renew_seconds),
                    ..HeartbeatTimings::default()
                },
            );
            heartbeat.register().await?;
            anyhow::Ok((heartbeat, client))
        };
        match attempt.await {
            Ok(registered) => return Ok(registered),
            Err(error) => {
                warn!(error = format!("{error:#}"), retry_in = ?delay, "registering the node failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Serves the node API once the API server has signed its certificate and containerd
/// answers, and imports the archives of the images directory.
async fn serve_node_api<F>(
    config: &Config,
    client: &Client,
    usage: Arc<UsageHistory>,
    shutdown: impl Fn() -> F,
) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let ca = std::fs::read_to_string(&config.ca_file)
        .with_context(|| format!("reading the cluster CA {}", config.ca_file.display()))?;
    let runtime = connect_containerd(config).await;
    tokio::spawn(skiff_agent::runtime::import::watch_images_dir(
        runtime.clone(),
        config.images_dir(),
        shutdown(),
    ));
    let mut delay = Duration::from_millis(200);
    let identity = loop {
        match serving_identity(client, &config.node_name).await {
            Ok(identity) => break identity,
            Err(error) if delay < Duration::from_secs(10) => {
                warn!(error = format!("{error:#}"), retry_in = ?delay, "getting the node API's certificate");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(error) => return Err(error.into()),
        }
    };
    let api = NodeApi {
        logs_dir: config.state_dir.join("logs"),
        exec_dir: config.state_dir.join("exec"),
        uploads_dir: config.state_dir.join("uploads"),
        runtime,
        usage,
    };
    api.serve(config.node_api_listen, identity, &ca, shutdown())
        .await?;
    Ok(())
}

/// Connects to containerd, retrying until it answers (it may start after the agent; the
/// node's heartbeat goes on meanwhile).
async fn connect_containerd(config: &Config) -> Containerd {
    let mut delay = Duration::from_millis(500);
    loop {
        match Containerd::connect(&config.containerd_socket, &config.containerd_namespace).await {
            Ok(runtime) => return runtime,
            Err(error) => {
                warn!(
                    socket = %config.containerd_socket.display(),
                    error = %error,
                    retry_in = ?delay,
                    "containerd does not answer; pods wait for it"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// What the eviction manager needs from `main`.
struct NodeEviction<F> {
    /// The node's memory capacity in bytes.
    capacity: u64,
    layout: CgroupLayout,
    pressure: tokio::sync::watch::Sender<bool>,
    shutdown: F,
}

/// Connects to containerd and starts the pod manager with this node's pod CIDR (the flag,
/// else the Node's spec.podCIDR), and the eviction manager beside it.
async fn start_pods<F>(
    config: &Config,
    client: Client,
    metrics: Arc<AgentMetrics>,
    eviction: NodeEviction<F>,
    network_changed: Arc<tokio::sync::Notify>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>>
where
    F: Future<Output = ()> + Send + 'static,
{
    let cidr_text = match &config.pod_cidr {
        Some(cidr) => cidr.clone(),
        None => {
            let node = client.get("nodes", "", &config.node_name).await?;
            node.pointer("/spec/podCIDR")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
                .context("the node has no spec.podCIDR and --pod-cidr was not given")?
        }
    };
    let pod_cidr: Cidr = cidr_text.parse()?;
    let runtime = connect_containerd(config)
        .await
        .with_plain_http_registries(&config.plain_http_registry);
    let runtime = match config.log_driver() {
        Some(driver) => {
            info!(driver = %driver.display(), "container logs through the log driver");
            runtime.with_logger(&driver, config.container_log_max_mib << 20)
        }
        None => {
            warn!("no log driver (skiff-logger) found: container logs are raw, not CRI lines");
            runtime
        }
    };
    let client_for_routes = client.clone();
    let manager = PodManager::new(
        client,
        Arc::new(runtime),
        PodManagerConfig {
            node_name: config.node_name.clone(),
            node_ip: config.node_ip,
            state_dir: config.state_dir.clone(),
            cgroup_parent: config.cgroup_parent(),
            cgroup_mount: "/sys/fs/cgroup".into(),
            pod_cidr,
            pids_limit: (config.pod_pids_limit > 0).then_some(config.pod_pids_limit),
            network_changed: Some(network_changed),
        },
    )?;
    manager.report_to(metrics);
    let informer = Informer::<Pod>::new(
        client_for_routes.clone(),
        "pods",
        "",
        WatchConfig::default().fields(&format!("spec.nodeName={}", config.node_name)),
    );
    let evictions = EvictionManager {
        thresholds: config.eviction.eviction_hard.0.clone(),
        transition_period: config.eviction.eviction_pressure_transition_period,
        interval: config.eviction.eviction_monitoring_interval,
        capacity: eviction.capacity,
        files: Arc::new(HostCgroupFiles),
        layout: eviction.layout,
        cgroup_parent: config.cgroup_parent(),
        // The closure owns the informer: the watch lives as long as the manager.
        pods: Box::new(move || informer.store().list()),
        pod_manager: Arc::clone(&manager),
        client: client_for_routes.clone(),
        node_name: config.node_name.clone(),
        pressure: eviction.pressure,
    };
    tokio::spawn(evictions.run(eviction.shutdown));
    tokio::spawn(network::routes::run(
        client_for_routes,
        config.node_name.clone(),
    ));
    info!(%pod_cidr, cgroup = %config.cgroup_parent(), "running pods");
    Ok(tokio::spawn(manager.run(shutdown)))
}
