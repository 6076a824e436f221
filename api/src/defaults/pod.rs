//! Defaults of pods and pod templates, as Kubernetes' core/v1 defaulters
//! (`SetDefaults_PodSpec`, `SetDefaults_Container`, `SetDefaults_Probe`, ...) set them.
//! [`default_pod_spec`] applies to pods and to the templates of workloads alike;
//! [`default_pod`] adds what only a pod gets (requests from limits, service links, host
//! ports under host networking).

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, Pod, PodSecurityContext, PodSpec,
    Probe, Volume,
};

/// The scheduler that places pods that name none.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// Seconds a pod is given to stop before it is killed.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// Where a container writes its termination message.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Mode of files projected from secrets and config maps (0644).
pub const DEFAULT_VOLUME_MODE: i32 = 0o644;

/// Defaults a pod: its spec as [`default_pod_spec`], then what only pods get.
pub fn default_pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    default_pod_spec(spec);
    if spec.enable_service_links.is_none() {
        spec.enable_service_links = Some(true);
    }
    let host_network = spec.host_network.unwrap_or(false);
    for container in all_containers_mut(spec) {
        default_requests_from_limits(container);
        if host_network {
            for port in container.ports.iter_mut().flatten() {
                if port.host_port.is_none_or(|p| p == 0) {
                    port.host_port = Some(port.container_port);
                }
            }
        }
    }
}

fn all_containers_mut(spec: &mut PodSpec) -> impl Iterator<Item = &mut Container> {
    spec.init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
}

/// A container that sets limits but not requests gets requests equal to its limits.
fn default_requests_from_limits(container: &mut Container) {
    let Some(resources) = container.resources.as_mut() else {
        return;
    };
    let Some(limits) = resources.limits.as_ref() else {
        return;
    };
    let requests = resources.requests.get_or_insert_with(Default::default);
    for (name, limit) in limits {
        requests
            .entry(name.clone())
            .or_insert_with(|| limit.clone());
    }
}

/// Defaults a pod spec (of a pod or of a template): restart policy, DNS policy, scheduler,
/// grace period, security context, and each container, probe and volume.
pub fn default_pod_spec(spec: &mut PodSpec) {
    set_if_empty(&mut spec.restart_policy, "Always");
    set_if_empty(&mut spec.dns_policy, "ClusterFirst");
    set_if_empty(&mut spec.scheduler_name, DEFAULT_SCHEDULER_NAME);
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default);
    for container in all_containers_mut(spec) {
        default_container(container);
    }
    for volume in spec.volumes.iter_mut().flatten() {
        default_volume(volume);
    }
}

pub(crate) fn set_if_empty(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_owned());
    }
}

/// The tag of an image reference: `nginx:1.27` -> `1.27`, `nginx` -> `latest`,
/// `registry:5000/app` -> `latest`, `app@sha256:...` -> none (pinned by digest).
pub fn image_tag(image: &str) -> Option<&str> {
    if image.contains('@') {
        let name = image.split('@').next().unwrap_or_default();
        let last = name.rsplit('/').next().unwrap_or_default();
        return last.split_once(':').map(|(_, tag)| tag);
    }
    let last = image.rsplit('/').next().unwrap_or_default();
    Some(last.split_once(':').map_or("latest", |(_, tag)| tag))
}

/// `Always` for a `latest` (or absent) tag, else `IfNotPresent`, as Kubernetes chooses.
pub fn default_image_pull_policy(image: &str) -> &'static str {
    if image_tag(image) == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// Defaults one container: pull policy, termination message, port protocols, probes and
/// the API version of field references in its environment.
pub fn default_container(container: &mut Container) {
    if container
        .image_pull_policy
        .as_deref()
        .is_none_or(str::is_empty)
    {
        let policy = default_image_pull_policy(container.image.as_deref().unwrap_or_default());
        container.image_pull_policy = Some(policy.to_owned());
    }
    set_if_empty(
        &mut container.termination_message_path,
        DEFAULT_TERMINATION_MESSAGE_PATH,
    );
    set_if_empty(&mut container.termination_message_policy, "File");
    for port in container.ports.iter_mut().flatten() {
        default_container_port(port);
    }
    for probe in [
        &mut container.liveness_probe,
        &mut container.readiness_probe,
        &mut container.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    for env in container.env.iter_mut().flatten() {
        default_env(env);
    }
    for handler in container
        .lifecycle
        .iter_mut()
        .flat_map(|l| [l.post_start.as_mut(), l.pre_stop.as_mut()])
        .flatten()
    {
        if let Some(http) = handler.http_get.as_mut() {
            set_if_empty(&mut http.path, "/");
            set_if_empty(&mut http.scheme, "HTTP");
        }
    }
}

fn default_container_port(port: &mut ContainerPort) {
    set_if_empty(&mut port.protocol, "TCP");
}

fn default_env(env: &mut EnvVar) {
    if let Some(field_ref) = env
        .value_from
        .as_mut()
        .and_then(|from| from.field_ref.as_mut())
    {
        set_if_empty(&mut field_ref.api_version, "v1");
    }
}

/// Kubernetes defaults a probe's numbers when they are unset or zero.
fn default_int(field: &mut Option<i32>, value: i32) {
    if field.is_none_or(|v| v == 0) {
        *field = Some(value);
    }
}

/// Defaults a probe: every 10 s, 1 s timeout, 1 success, 3 failures; HTTP probes on `/`.
pub fn default_probe(probe: &mut Probe) {
    default_int(&mut probe.timeout_seconds, 1);
    default_int(&mut probe.period_seconds, 10);
    default_int(&mut probe.success_threshold, 1);
    default_int(&mut probe.failure_threshold, 3);
    if let Some(http) = probe.http_get.as_mut() {
        set_if_empty(&mut http.path, "/");
        set_if_empty(&mut http.scheme, "HTTP");
    }
}

/// Defaults a volume: an `emptyDir` when it names no source; mode 0644 for projected files.
pub fn default_volume(volume: &mut Volume) {
    let value = serde_json::to_value(&*volume).unwrap_or_default();
    let has_source = value
        .as_object()
        .is_some_and(|fields| fields.keys().any(|k| k != "name"));
    if !has_source {
        volume.empty_dir = Some(EmptyDirVolumeSource::default());
    }
    if let Some(secret) = volume.secret.as_mut() {
        secret.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(config_map) = volume.config_map.as_mut() {
        config_map.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(downward) = volume.downward_api.as_mut() {
        downward.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(projected) = volume.projected.as_mut() {
        projected.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        HTTPGetAction, ResourceRequirements, SecretVolumeSource, TCPSocketAction,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use std::collections::BTreeMap;

    fn container(name: &str, image: &str) -> Container {
        Container {
            name: name.into(),
            image: Some(image.into()),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_spec_gets_kubernetes_defaults() {
        let mut pod = pod(vec![container("web", "nginx:1.27")]);
        default_pod(&mut pod);
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.enable_service_links, Some(true));
        assert_eq!(spec.security_context, Some(PodSecurityContext::default()));
        let c = &spec.containers[0];
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
    }

    #[test]
    fn explicit_values_are_kept() {
        let mut pod = pod(vec![container("web", "nginx")]);
        let spec = pod.spec.as_mut().expect("spec");
        spec.restart_policy = Some("Never".into());
        spec.termination_grace_period_seconds = Some(0);
        spec.containers[0].image_pull_policy = Some("Never".into());
        default_pod(&mut pod);
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.termination_grace_period_seconds, Some(0));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("Never")
        );
    }

    #[test]
    fn image_pull_policy_is_always_for_latest_or_untagged_images() {
        assert_eq!(default_image_pull_policy("nginx"), "Always");
        assert_eq!(default_image_pull_policy("nginx:latest"), "Always");
        assert_eq!(
            default_image_pull_policy("registry:5000/team/app"),
            "Always"
        );
        assert_eq!(
            default_image_pull_policy("registry:5000/team/app:v2"),
            "IfNotPresent"
        );
        assert_eq!(
            default_image_pull_policy("nginx@sha256:abcd"),
            "IfNotPresent"
        );
        assert_eq!(default_image_pull_policy("nginx:1.27"), "IfNotPresent");
    }

    #[test]
    fn ports_default_to_tcp_and_probes_to_their_periods() {
        let mut c = container("web", "nginx:1");
        c.ports = Some(vec![ContainerPort {
            container_port: 80,
            ..Default::default()
        }]);
        c.liveness_probe = Some(Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(80),
                ..Default::default()
            }),
            timeout_seconds: Some(0),
            ..Default::default()
        });
        c.readiness_probe = Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(80),
                host: None,
            }),
            period_seconds: Some(5),
            ..Default::default()
        });
        default_container(&mut c);
        assert_eq!(c.ports.expect("ports")[0].protocol.as_deref(), Some("TCP"));
        let liveness = c.liveness_probe.expect("liveness");
        assert_eq!(
            (
                liveness.timeout_seconds,
                liveness.period_seconds,
                liveness.success_threshold,
                liveness.failure_threshold
            ),
            (Some(1), Some(10), Some(1), Some(3))
        );
        let http = liveness.http_get.expect("http");
        assert_eq!(http.path.as_deref(), Some("/"));
        assert_eq!(http.scheme.as_deref(), Some("HTTP"));
        assert_eq!(
            c.readiness_probe.expect("readiness").period_seconds,
            Some(5)
        );
    }

    #[test]
    fn pod_requests_default_to_limits() {
        let mut c = container("web", "nginx:1");
        c.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("1".into())),
                ("memory".to_owned(), Quantity("1Gi".into())),
            ])),
            requests: Some(BTreeMap::from([(
                "cpu".to_owned(),
                Quantity("500m".into()),
            )])),
            claims: None,
        });
        let mut pod = pod(vec![c]);
        default_pod(&mut pod);
        let requests = pod.spec.expect("spec").containers[0]
            .resources
            .clone()
            .and_then(|r| r.requests)
            .expect("requests");
        assert_eq!(requests["cpu"].0, "500m");
        assert_eq!(requests["memory"].0, "1Gi");
    }

    #[test]
    fn host_network_pods_get_host_ports() {
        let mut c = container("web", "nginx:1");
        c.ports = Some(vec![ContainerPort {
            container_port: 8080,
            ..Default::default()
        }]);
        let mut pod = pod(vec![c]);
        pod.spec.as_mut().expect("spec").host_network = Some(true);
        default_pod(&mut pod);
        let ports = pod.spec.expect("spec").containers[0]
            .ports
            .clone()
            .expect("ports");
        assert_eq!(ports[0].host_port, Some(8080));
    }

    #[test]
    fn templates_do_not_get_pod_only_defaults() {
        let mut spec = PodSpec {
            containers: vec![container("web", "nginx")],
            ..Default::default()
        };
        default_pod_spec(&mut spec);
        assert_eq!(spec.enable_service_links, None);
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    }

    #[test]
    fn volumes_without_a_source_become_empty_dirs_and_secrets_get_a_mode() {
        let mut bare = Volume {
            name: "scratch".into(),
            ..Default::default()
        };
        default_volume(&mut bare);
        assert_eq!(bare.empty_dir, Some(EmptyDirVolumeSource::default()));
        let mut secret = Volume {
            name: "creds".into(),
            secret: Some(SecretVolumeSource::default()),
            ..Default::default()
        };
        default_volume(&mut secret);
        assert_eq!(secret.empty_dir, None);
        assert_eq!(secret.secret.expect("secret").default_mode, Some(0o644));
    }
}
