//! Pods and pod templates, as Kubernetes' `ValidatePodSpec` checks them: containers (names,
//! images, ports, environment, volume mounts, probes, resources), volumes, restart and DNS
//! policies, tolerations; and which fields a pod update may change.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, LifecycleHandler, Pod, PodSpec, PodTemplateSpec, Probe,
    Toleration, Volume,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{validate_annotations, validate_labels};
use super::names::{
    INVALID_IP, inclusive_range_error, is_dns1123_label, is_dns1123_subdomain, is_env_var_name,
    is_qualified_name, is_valid_label_value, is_valid_port_name, is_valid_port_num, parse_ipv4,
};
use super::quantity::validate_resource_requirements;
use super::{FieldError, Path, json_value, non_negative};

/// Protocols a port may use.
pub const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];
/// Pod restart policies.
pub const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
const DNS_POLICIES: [&str; 4] = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: [&str; 2] = ["File", "FallbackToLogsOnError"];
const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// The message of a forbidden pod update, as Kubernetes words it.
pub const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Validates a pod.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    match &pod.spec {
        Some(spec) => validate_pod_spec(spec, &Path::new("spec")),
        None => vec![FieldError::required(&Path::new("spec"), "")],
    }
}

/// Validates a pod template (of a Deployment, ReplicaSet, DaemonSet or Job): its labels,
/// annotations and spec.
pub fn validate_pod_template_spec(template: &PodTemplateSpec, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(metadata) = &template.metadata {
        let metadata_path = path.child("metadata");
        if let Some(labels) = &metadata.labels {
            errors.extend(validate_labels(labels, &metadata_path.child("labels")));
        }
        if let Some(annotations) = &metadata.annotations {
            errors.extend(validate_annotations(
                annotations,
                &metadata_path.child("annotations"),
            ));
        }
    }
    match &template.spec {
        Some(spec) => errors.extend(validate_pod_spec(spec, &path.child("spec"))),
        None => errors.push(FieldError::required(&path.child("spec"), "")),
    }
    errors
}

/// Validates a pod spec at `path` (`spec` of a pod, `spec.template.spec` of a workload).
pub fn validate_pod_spec(spec: &PodSpec, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let volumes = validate_volumes(
        spec.volumes.as_deref().unwrap_or_default(),
        &path.child("volumes"),
        &mut errors,
    );

    let containers_path = path.child("containers");
    let mut names = BTreeSet::new();
    if spec.containers.is_empty() {
        errors.push(FieldError::required(&containers_path, ""));
    }
    for (i, container) in spec.containers.iter().enumerate() {
        let at = containers_path.index(i);
        if !container.name.is_empty() && !names.insert(container.name.as_str()) {
            errors.push(FieldError::duplicate(
                &at.child("name"),
                container.name.as_str(),
            ));
        }
        errors.extend(validate_container(
            container,
            &at,
            &volumes,
            ContainerRole::Regular,
        ));
    }
    let init_path = path.child("initContainers");
    for (i, container) in spec.init_containers.iter().flatten().enumerate() {
        let at = init_path.index(i);
        if !container.name.is_empty() && !names.insert(container.name.as_str()) {
            errors.push(FieldError::duplicate(
                &at.child("name"),
                container.name.as_str(),
            ));
        }
        let role = if container.restart_policy.as_deref() == Some("Always") {
            ContainerRole::Sidecar
        } else {
            ContainerRole::Init
        };
        errors.extend(validate_container(container, &at, &volumes, role));
    }
    errors.extend(validate_host_ports(spec, path));

    let restart_path = path.child("restartPolicy");
    match spec.restart_policy.as_deref() {
        None | Some("") => errors.push(FieldError::required(&restart_path, "")),
        Some(policy) if !RESTART_POLICIES.contains(&policy) => {
            errors.push(FieldError::not_supported(
                &restart_path,
                policy,
                &RESTART_POLICIES,
            ));
        }
        Some(_) => {}
    }
    let dns_path = path.child("dnsPolicy");
    match spec.dns_policy.as_deref() {
        None | Some("") => errors.push(FieldError::required(&dns_path, "")),
        Some(policy) if !DNS_POLICIES.contains(&policy) => {
            errors.push(FieldError::not_supported(&dns_path, policy, &DNS_POLICIES));
        }
        Some("None") if spec.dns_config.is_none() => errors.push(FieldError::required(
            &path.child("dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        )),
        Some(_) => {}
    }
    if let Some(grace) = spec.termination_grace_period_seconds {
        errors.extend(non_negative(
            grace,
            &path.child("terminationGracePeriodSeconds"),
        ));
    }
    if let Some(deadline) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&deadline)
    {
        errors.push(FieldError::invalid(
            &path.child("activeDeadlineSeconds"),
            &deadline,
            inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    if let Some(selector) = &spec.node_selector {
        errors.extend(validate_labels(selector, &path.child("nodeSelector")));
    }
    for (field, value, check) in [
        (
            "serviceAccountName",
            &spec.service_account_name,
            is_dns1123_subdomain as fn(&str) -> Vec<String>,
        ),
        ("nodeName", &spec.node_name, is_dns1123_subdomain),
        ("hostname", &spec.hostname, is_dns1123_label),
        ("subdomain", &spec.subdomain, is_dns1123_label),
        (
            "priorityClassName",
            &spec.priority_class_name,
            is_dns1123_subdomain,
        ),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            for msg in check(value) {
                errors.push(FieldError::invalid(&path.child(field), value, msg));
            }
        }
    }
    for (i, toleration) in spec.tolerations.iter().flatten().enumerate() {
        errors.extend(validate_toleration(
            toleration,
            &path.child("tolerations").index(i),
        ));
    }
    errors
}

/// Validates volumes: names required, DNS labels and unique; exactly one source each.
/// Returns the volume names.
fn validate_volumes<'a>(
    volumes: &'a [Volume],
    path: &Path,
    errors: &mut Vec<FieldError>,
) -> BTreeSet<&'a str> {
    let mut names = BTreeSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let at = path.index(i);
        let name_path = at.child("name");
        if volume.name.is_empty() {
            errors.push(FieldError::required(&name_path, ""));
        } else {
            for msg in is_dns1123_label(&volume.name) {
                errors.push(FieldError::invalid(&name_path, volume.name.as_str(), msg));
            }
            if !names.insert(volume.name.as_str()) {
                errors.push(FieldError::duplicate(&name_path, volume.name.as_str()));
            }
        }
        let sources: Vec<String> = match serde_json::to_value(volume) {
            Ok(serde_json::Value::Object(fields)) => {
                fields.keys().filter(|k| *k != "name").cloned().collect()
            }
            _ => Vec::new(),
        };
        if sources.is_empty() {
            errors.push(FieldError::required(&at, "must specify a volume type"));
        }
        for extra in sources.iter().skip(1) {
            errors.push(FieldError::forbidden(
                &at.child(extra),
                "may not specify more than 1 volume type",
            ));
        }
        if let Some(host_path) = &volume.host_path
            && host_path.path.is_empty()
        {
            errors.push(FieldError::required(
                &at.child("hostPath").child("path"),
                "",
            ));
        }
    }
    names
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ContainerRole {
    Regular,
    Init,
    /// An init container with `restartPolicy: Always`: runs beside the others.
    Sidecar,
}

fn validate_container(
    container: &Container,
    path: &Path,
    volumes: &BTreeSet<&str>,
    role: ContainerRole,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name_path = path.child("name");
    if container.name.is_empty() {
        errors.push(FieldError::required(&name_path, ""));
    } else {
        for msg in is_dns1123_label(&container.name) {
            errors.push(FieldError::invalid(
                &name_path,
                container.name.as_str(),
                msg,
            ));
        }
    }
    let image = container.image.as_deref().unwrap_or_default();
    if image.is_empty() {
        errors.push(FieldError::required(&path.child("image"), ""));
    } else if image.trim() != image {
        errors.push(FieldError::invalid(
            &path.child("image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    errors.extend(check_enum(
        container.image_pull_policy.as_deref(),
        &PULL_POLICIES,
        &path.child("imagePullPolicy"),
    ));
    errors.extend(check_enum(
        container.termination_message_policy.as_deref(),
        &TERMINATION_MESSAGE_POLICIES,
        &path.child("terminationMessagePolicy"),
    ));
    match (role, container.restart_policy.as_deref()) {
        (_, None) | (ContainerRole::Sidecar, _) => {}
        (ContainerRole::Regular, Some(_)) => errors.push(FieldError::forbidden(
            &path.child("restartPolicy"),
            "may not be set for non-init containers",
        )),
        (ContainerRole::Init, Some(policy)) => errors.push(FieldError::not_supported(
            &path.child("restartPolicy"),
            policy,
            &["Always"],
        )),
    }

    let mut port_names = BTreeSet::new();
    for (i, port) in container.ports.iter().flatten().enumerate() {
        let at = path.child("ports").index(i);
        errors.extend(validate_container_port(port, &at));
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty())
            && !port_names.insert(name)
        {
            errors.push(FieldError::duplicate(&at.child("name"), name));
        }
    }
    for (i, env) in container.env.iter().flatten().enumerate() {
        errors.extend(validate_env(env, &path.child("env").index(i)));
    }
    let mut mount_paths = BTreeSet::new();
    for (i, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let at = path.child("volumeMounts").index(i);
        if mount.name.is_empty() {
            errors.push(FieldError::required(&at.child("name"), ""));
        } else if !volumes.contains(mount.name.as_str()) {
            errors.push(FieldError::not_found(
                &at.child("name"),
                mount.name.as_str(),
            ));
        }
        if mount.mount_path.is_empty() {
            errors.push(FieldError::required(&at.child("mountPath"), ""));
        } else if !mount_paths.insert(mount.mount_path.as_str()) {
            errors.push(FieldError::invalid(
                &at.child("mountPath"),
                mount.mount_path.as_str(),
                "must be unique",
            ));
        }
        if let Some(sub_path) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            errors.extend(validate_local_descending_path(
                sub_path,
                &at.child("subPath"),
            ));
        }
    }

    let probes = [
        ("livenessProbe", &container.liveness_probe),
        ("readinessProbe", &container.readiness_probe),
        ("startupProbe", &container.startup_probe),
    ];
    for (field, probe) in probes {
        let Some(probe) = probe else { continue };
        let at = path.child(field);
        if role == ContainerRole::Init {
            errors.push(FieldError::forbidden(
                &at,
                "may not be set for init containers without restartPolicy=Always",
            ));
            continue;
        }
        errors.extend(validate_probe(probe, &at, field != "readinessProbe"));
    }
    if let Some(lifecycle) = &container.lifecycle {
        let at = path.child("lifecycle");
        if role == ContainerRole::Init {
            errors.push(FieldError::forbidden(
                &at,
                "may not be set for init containers without restartPolicy=Always",
            ));
        } else {
            for (field, handler) in [
                ("postStart", &lifecycle.post_start),
                ("preStop", &lifecycle.pre_stop),
            ] {
                if let Some(handler) = handler {
                    errors.extend(validate_lifecycle_handler(handler, &at.child(field)));
                }
            }
        }
    }
    if let Some(resources) = &container.resources {
        errors.extend(validate_resource_requirements(
            resources,
            &path.child("resources"),
        ));
    }
    errors
}

/// A value from a fixed set, required.
fn check_enum(value: Option<&str>, supported: &[&str], path: &Path) -> Option<FieldError> {
    match value {
        None | Some("") => Some(FieldError::required(path, "")),
        Some(v) if !supported.contains(&v) => Some(FieldError::not_supported(path, v, supported)),
        Some(_) => None,
    }
}

/// A protocol, required: `TCP`, `UDP` or `SCTP`.
pub fn validate_protocol(protocol: Option<&str>, path: &Path) -> Option<FieldError> {
    check_enum(protocol, &PROTOCOLS, path)
}

fn validate_container_port(port: &ContainerPort, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
        for msg in is_valid_port_name(name) {
            errors.push(FieldError::invalid(&path.child("name"), name, msg));
        }
    }
    for msg in is_valid_port_num(i64::from(port.container_port)) {
        errors.push(FieldError::invalid(
            &path.child("containerPort"),
            &port.container_port,
            msg,
        ));
    }
    if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
        for msg in is_valid_port_num(i64::from(host_port)) {
            errors.push(FieldError::invalid(
                &path.child("hostPort"),
                &host_port,
                msg,
            ));
        }
    }
    errors.extend(validate_protocol(
        port.protocol.as_deref(),
        &path.child("protocol"),
    ));
    if let Some(ip) = port.host_ip.as_deref().filter(|ip| !ip.is_empty())
        && parse_ipv4(ip).is_none()
        && ip.parse::<std::net::Ipv6Addr>().is_err()
    {
        errors.push(FieldError::invalid(&path.child("hostIP"), ip, INVALID_IP));
    }
    errors
}

/// Host ports (with protocol and host IP) may be claimed by one container of a pod only.
fn validate_host_ports(spec: &PodSpec, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    let groups = [
        ("containers", spec.containers.as_slice()),
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
    ];
    for (field, containers) in groups {
        for (ci, container) in containers.iter().enumerate() {
            for (pi, port) in container.ports.iter().flatten().enumerate() {
                let Some(host_port) = port.host_port.filter(|p| *p != 0) else {
                    continue;
                };
                let protocol = port.protocol.as_deref().unwrap_or("TCP");
                let key = format!("{host_port}/{protocol}");
                let host_ip = port.host_ip.clone().unwrap_or_default();
                if !seen.insert((key.clone(), host_ip)) {
                    errors.push(FieldError::duplicate(
                        &path
                            .child(field)
                            .index(ci)
                            .child("ports")
                            .index(pi)
                            .child("hostPort"),
                        key.as_str(),
                    ));
                }
            }
        }
    }
    errors
}

fn validate_env(env: &EnvVar, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if env.name.is_empty() {
        errors.push(FieldError::required(&path.child("name"), ""));
    } else {
        for msg in is_env_var_name(&env.name) {
            errors.push(FieldError::invalid(
                &path.child("name"),
                env.name.as_str(),
                msg,
            ));
        }
    }
    if let Some(from) = &env.value_from {
        let from_path = path.child("valueFrom");
        let sources = [
            from.field_ref.is_some(),
            from.resource_field_ref.is_some(),
            from.config_map_key_ref.is_some(),
            from.secret_key_ref.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if env.value.as_deref().is_some_and(|v| !v.is_empty()) {
            errors.push(FieldError::invalid(
                &from_path,
                "",
                "may not be specified when `value` is not empty",
            ));
        }
        if sources == 0 {
            errors.push(FieldError::invalid(
                &from_path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if sources > 1 {
            errors.push(FieldError::invalid(
                &from_path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
        for (field, key) in [
            (
                "configMapKeyRef",
                from.config_map_key_ref.as_ref().map(|r| &r.key),
            ),
            ("secretKeyRef", from.secret_key_ref.as_ref().map(|r| &r.key)),
        ] {
            if let Some(key) = key
                && key.is_empty()
            {
                errors.push(FieldError::required(
                    &from_path.child(field).child("key"),
                    "",
                ));
            }
        }
    }
    errors
}

/// A sub-path inside a volume: relative, never climbing out with `..`.
fn validate_local_descending_path(target: &str, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if target.starts_with('/') {
        errors.push(FieldError::invalid(path, target, "must be a relative path"));
    }
    if target.split(['/', '\\']).any(|part| part == "..") {
        errors.push(FieldError::invalid(path, target, "must not contain '..'"));
    }
    errors
}

/// A port given by number (1..65535) or by the name of a container port.
pub fn validate_port_num_or_name(port: &IntOrString, path: &Path) -> Vec<FieldError> {
    match port {
        IntOrString::Int(number) => is_valid_port_num(i64::from(*number))
            .into_iter()
            .map(|msg| FieldError::invalid(path, number, msg))
            .collect(),
        IntOrString::String(name) => is_valid_port_name(name)
            .into_iter()
            .map(|msg| FieldError::invalid(path, name.as_str(), msg))
            .collect(),
    }
}

fn validate_probe(probe: &Probe, path: &Path, success_must_be_one: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let handlers: Vec<&str> = [
        ("exec", probe.exec.is_some()),
        ("httpGet", probe.http_get.is_some()),
        ("tcpSocket", probe.tcp_socket.is_some()),
        ("grpc", probe.grpc.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    errors.extend(check_one_handler(&handlers, path));
    if let Some(http) = &probe.http_get {
        errors.extend(validate_port_num_or_name(
            &http.port,
            &path.child("httpGet").child("port"),
        ));
        if let Some(scheme) = http.scheme.as_deref().filter(|s| !s.is_empty())
            && !["HTTP", "HTTPS"].contains(&scheme)
        {
            errors.push(FieldError::not_supported(
                &path.child("httpGet").child("scheme"),
                scheme,
                &["HTTP", "HTTPS"],
            ));
        }
    }
    if let Some(tcp) = &probe.tcp_socket {
        errors.extend(validate_port_num_or_name(
            &tcp.port,
            &path.child("tcpSocket").child("port"),
        ));
    }
    if let Some(grpc) = &probe.grpc {
        for msg in is_valid_port_num(i64::from(grpc.port)) {
            errors.push(FieldError::invalid(
                &path.child("grpc").child("port"),
                &grpc.port,
                msg,
            ));
        }
    }
    for (field, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        if let Some(value) = value {
            errors.extend(non_negative(i64::from(value), &path.child(field)));
        }
    }
    if success_must_be_one
        && let Some(threshold) = probe.success_threshold
        && threshold != 1
    {
        errors.push(FieldError::invalid(
            &path.child("successThreshold"),
            &threshold,
            "must be 1",
        ));
    }
    if let Some(grace) = probe.termination_grace_period_seconds
        && grace <= 0
    {
        errors.push(FieldError::invalid(
            &path.child("terminationGracePeriodSeconds"),
            &grace,
            "must be greater than 0",
        ));
    }
    errors
}

fn check_one_handler(handlers: &[&str], path: &Path) -> Vec<FieldError> {
    match handlers {
        [] => vec![FieldError::required(path, "must specify a handler type")],
        [_] => Vec::new(),
        [_, extra @ ..] => extra
            .iter()
            .map(|name| {
                FieldError::forbidden(
                    &path.child(name),
                    "may not specify more than 1 handler type",
                )
            })
            .collect(),
    }
}

fn validate_lifecycle_handler(handler: &LifecycleHandler, path: &Path) -> Vec<FieldError> {
    let handlers: Vec<&str> = [
        ("exec", handler.exec.is_some()),
        ("httpGet", handler.http_get.is_some()),
        ("tcpSocket", handler.tcp_socket.is_some()),
        ("sleep", handler.sleep.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    let mut errors = check_one_handler(&handlers, path);
    if let Some(http) = &handler.http_get {
        errors.extend(validate_port_num_or_name(
            &http.port,
            &path.child("httpGet").child("port"),
        ));
    }
    if let Some(sleep) = &handler.sleep {
        errors.extend(non_negative(
            sleep.seconds,
            &path.child("sleep").child("seconds"),
        ));
    }
    errors
}

/// Validates one toleration, as Kubernetes' `validateTolerations` does.
pub fn validate_toleration(toleration: &Toleration, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let key = toleration.key.as_deref().unwrap_or_default();
    let operator = toleration.operator.as_deref().unwrap_or_default();
    let value = toleration.value.as_deref().unwrap_or_default();
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !key.is_empty() {
        for msg in is_qualified_name(key) {
            errors.push(FieldError::invalid(&path.child("key"), key, msg));
        }
    } else if operator != "Exists" {
        errors.push(FieldError::invalid(
            &path.child("operator"),
            operator,
            "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
        ));
    }
    if toleration.toleration_seconds.is_some() && effect != "NoExecute" {
        errors.push(FieldError::invalid(
            &path.child("effect"),
            effect,
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ));
    }
    match operator {
        "" | "Equal" => {
            for msg in is_valid_label_value(value) {
                errors.push(FieldError::invalid(&path.child("operator"), value, msg));
            }
        }
        "Exists" => {
            if !value.is_empty() {
                errors.push(FieldError::invalid(
                    &path.child("operator"),
                    &json_value(toleration),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        other => errors.push(FieldError::not_supported(
            &path.child("operator"),
            other,
            &["Equal", "Exists"],
        )),
    }
    if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
        errors.push(FieldError::not_supported(
            &path.child("effect"),
            effect,
            &TAINT_EFFECTS,
        ));
    }
    errors
}

/// Validates what a pod update changes: only container images, `activeDeadlineSeconds`
/// (set, or lowered) and added tolerations; anything else is
/// `spec: Forbidden: pod updates may not change fields other than ...`. The scheduler binds
/// pods (sets `spec.nodeName`) through a binding, not through an update.
pub fn validate_pod_update(old: &Pod, new: &Pod) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let (Some(old_spec), Some(new_spec)) = (&old.spec, &new.spec) else {
        return errors;
    };
    let spec_path = Path::new("spec");
    if let Some(old_deadline) = old_spec.active_deadline_seconds {
        match new_spec.active_deadline_seconds {
            None => errors.push(FieldError::invalid(
                &spec_path.child("activeDeadlineSeconds"),
                "null",
                "must not update from a positive integer to nil value",
            )),
            Some(new_deadline) if new_deadline > old_deadline => errors.push(FieldError::invalid(
                &spec_path.child("activeDeadlineSeconds"),
                &new_deadline,
                "must be less than or equal to previous value",
            )),
            Some(_) => {}
        }
    }
    // Apply the allowed changes to the old spec; what is left must equal the new spec.
    let mut allowed = old_spec.clone();
    copy_images(&mut allowed.containers, &new_spec.containers);
    if let (Some(allowed_init), Some(new_init)) = (
        allowed.init_containers.as_mut(),
        new_spec.init_containers.as_ref(),
    ) {
        copy_images(allowed_init, new_init);
    }
    allowed.active_deadline_seconds = new_spec.active_deadline_seconds;
    let old_tolerations = old_spec.tolerations.as_deref().unwrap_or_default();
    let new_tolerations = new_spec.tolerations.as_deref().unwrap_or_default();
    if old_tolerations.iter().all(|t| new_tolerations.contains(t)) {
        allowed.tolerations.clone_from(&new_spec.tolerations);
    }
    if old_spec
        .termination_grace_period_seconds
        .is_some_and(|g| g < 0)
        && new_spec.termination_grace_period_seconds == Some(1)
    {
        allowed.termination_grace_period_seconds = Some(1);
    }
    if &allowed != new_spec {
        errors.push(FieldError::forbidden(&spec_path, POD_UPDATE_FORBIDDEN));
    }
    errors
}

fn copy_images(into: &mut [Container], from: &[Container]) {
    if into.len() != from.len() {
        return;
    }
    for (target, source) in into.iter_mut().zip(from) {
        target.image.clone_from(&source.image);
    }
}

/// The QoS class Kubernetes gives a pod: `Guaranteed` when every container's cpu and memory
/// requests equal their limits, `BestEffort` when no container requests or limits anything,
/// else `Burstable`. Quantities that do not parse count as absent.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let containers: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let parse = |list: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| {
        list.into_iter()
            .flatten()
            .filter(|(name, _)| matches!(name.as_str(), "cpu" | "memory"))
            .filter_map(|(name, q)| {
                super::quantity::Quantity::parse(&q.0)
                    .ok()
                    .filter(|q| !q.is_zero())
                    .map(|q| (name.clone(), q))
            })
            .collect::<BTreeMap<_, _>>()
    };
    let mut any = false;
    let mut guaranteed = true;
    for container in containers {
        let resources = container.resources.as_ref();
        let requests = parse(resources.and_then(|r| r.requests.as_ref()));
        let limits = parse(resources.and_then(|r| r.limits.as_ref()));
        any |= !requests.is_empty() || !limits.is_empty();
        let complete = limits.len() == 2
            && limits
                .iter()
                .all(|(name, limit)| requests.get(name).is_none_or(|request| request == limit));
        guaranteed &= complete;
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EnvVarSource, ExecAction, HTTPGetAction, HostPathVolumeSource, ObjectFieldSelector,
        ResourceRequirements, TCPSocketAction, VolumeMount,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn container(name: &str) -> Container {
        let mut c = Container {
            name: name.into(),
            image: Some("nginx:1.27".into()),
            ..Default::default()
        };
        crate::defaults::pod::default_container(&mut c);
        c
    }

    fn spec(containers: Vec<Container>) -> PodSpec {
        let mut spec = PodSpec {
            containers,
            ..Default::default()
        };
        crate::defaults::pod::default_pod_spec(&mut spec);
        spec
    }

    fn errors(spec: &PodSpec) -> Vec<String> {
        validate_pod_spec(spec, &Path::new("spec"))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn defaulted_pod_with_one_container_is_valid() {
        assert_eq!(errors(&spec(vec![container("web")])), Vec::<String>::new());
    }

    #[test]
    fn pod_without_containers_is_rejected() {
        assert_eq!(
            errors(&spec(vec![])),
            vec!["spec.containers: Required value"]
        );
        assert_eq!(
            validate_pod(&Pod::default())[0].to_string(),
            "spec: Required value"
        );
    }

    #[test]
    fn container_without_image_is_rejected() {
        let mut c = container("web");
        c.image = None;
        assert_eq!(
            errors(&spec(vec![c])),
            vec!["spec.containers[0].image: Required value"]
        );
    }

    #[test]
    fn container_image_with_spaces_is_rejected() {
        let mut c = container("web");
        c.image = Some(" nginx".into());
        assert_eq!(
            errors(&spec(vec![c])),
            vec![
                r#"spec.containers[0].image: Invalid value: " nginx": must not have leading or trailing whitespace"#
            ]
        );
    }

    #[test]
    fn container_names_must_be_dns_labels() {
        let found = errors(&spec(vec![container("Web_1")]));
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with(
            r#"spec.containers[0].name: Invalid value: "Web_1": a lowercase RFC 1123 label must consist of"#
        ));
        let mut unnamed = container("x");
        unnamed.name = String::new();
        assert_eq!(
            errors(&spec(vec![unnamed])),
            vec!["spec.containers[0].name: Required value"]
        );
    }

    #[test]
    fn container_names_are_unique_across_init_and_regular_containers() {
        let mut s = spec(vec![container("web"), container("web")]);
        s.init_containers = Some(vec![container("web"), container("setup")]);
        assert_eq!(
            errors(&s),
            vec![
                r#"spec.containers[1].name: Duplicate value: "web""#,
                r#"spec.initContainers[0].name: Duplicate value: "web""#,
            ]
        );
    }

    #[test]
    fn ports_must_be_in_range_with_unique_names_and_known_protocols() {
        let mut c = container("web");
        c.ports = Some(vec![
            ContainerPort {
                container_port: 0,
                name: Some("http".into()),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                container_port: 70000,
                name: Some("http".into()),
                protocol: Some("SCTPX".into()),
                ..Default::default()
            },
        ]);
        assert_eq!(
            errors(&spec(vec![c])),
            vec![
                "spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                r#"spec.containers[0].ports[1].protocol: Unsupported value: "SCTPX": supported values: "SCTP", "TCP", "UDP""#,
                r#"spec.containers[0].ports[1].name: Duplicate value: "http""#,
            ]
        );
    }

    #[test]
    fn host_ports_may_be_claimed_once_per_pod() {
        let port = ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        };
        let mut a = container("a");
        a.ports = Some(vec![port.clone()]);
        let mut b = container("b");
        b.ports = Some(vec![port]);
        assert_eq!(
            errors(&spec(vec![a, b])),
            vec![r#"spec.containers[1].ports[0].hostPort: Duplicate value: "8080/TCP""#]
        );
    }

    #[test]
    fn restart_policy_must_be_always_on_failure_or_never() {
        let mut s = spec(vec![container("web")]);
        s.restart_policy = Some("Sometimes".into());
        assert_eq!(
            errors(&s),
            vec![
                r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure""#
            ]
        );
    }

    #[test]
    fn negative_termination_grace_period_is_rejected() {
        let mut s = spec(vec![container("web")]);
        s.termination_grace_period_seconds = Some(-1);
        assert_eq!(
            errors(&s),
            vec![
                "spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0"
            ]
        );
    }

    #[test]
    fn volumes_need_unique_names_and_exactly_one_source() {
        let mut s = spec(vec![container("web")]);
        s.volumes = Some(vec![
            Volume {
                name: "data".into(),
                ..Default::default()
            },
            Volume {
                name: "data".into(),
                empty_dir: Some(Default::default()),
                host_path: Some(HostPathVolumeSource {
                    path: "/tmp".into(),
                    type_: None,
                }),
                ..Default::default()
            },
        ]);
        assert_eq!(
            errors(&s),
            vec![
                "spec.volumes[0]: Required value: must specify a volume type",
                r#"spec.volumes[1].name: Duplicate value: "data""#,
                "spec.volumes[1].hostPath: Forbidden: may not specify more than 1 volume type",
            ]
        );
    }

    #[test]
    fn volume_mounts_must_name_a_volume_of_the_pod() {
        let mut c = container("web");
        c.volume_mounts = Some(vec![
            VolumeMount {
                name: "missing".into(),
                mount_path: "/data".into(),
                ..Default::default()
            },
            VolumeMount {
                name: "cache".into(),
                mount_path: "/data".into(),
                sub_path: Some("../etc".into()),
                ..Default::default()
            },
        ]);
        let mut s = spec(vec![c]);
        s.volumes = Some(vec![Volume {
            name: "cache".into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        }]);
        assert_eq!(
            errors(&s),
            vec![
                r#"spec.containers[0].volumeMounts[0].name: Not found: "missing""#,
                r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/data": must be unique"#,
                r#"spec.containers[0].volumeMounts[1].subPath: Invalid value: "../etc": must not contain '..'"#,
            ]
        );
    }

    #[test]
    fn probes_need_exactly_one_handler() {
        let mut c = container("web");
        c.liveness_probe = Some(Probe::default());
        c.readiness_probe = Some(Probe {
            exec: Some(ExecAction { command: None }),
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(80),
                host: None,
            }),
            ..Default::default()
        });
        assert_eq!(
            errors(&spec(vec![c])),
            vec![
                "spec.containers[0].livenessProbe: Required value: must specify a handler type",
                "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
            ]
        );
    }

    #[test]
    fn liveness_probe_success_threshold_must_be_one_and_ports_valid() {
        let mut c = container("web");
        c.liveness_probe = Some(Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("HTTP".into()),
                ..Default::default()
            }),
            success_threshold: Some(2),
            period_seconds: Some(-1),
            ..Default::default()
        });
        let found = errors(&spec(vec![c]));
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(found[0].starts_with(r#"spec.containers[0].livenessProbe.httpGet.port: Invalid value: "HTTP": must contain only"#));
        assert_eq!(
            found[2],
            "spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            found[3],
            "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"
        );
    }

    #[test]
    fn init_containers_may_not_have_probes_unless_they_are_sidecars() {
        let mut init = container("setup");
        init.readiness_probe = Some(Probe {
            exec: Some(ExecAction { command: None }),
            ..Default::default()
        });
        let mut sidecar = init.clone();
        sidecar.name = "proxy".into();
        sidecar.restart_policy = Some("Always".into());
        let mut s = spec(vec![container("web")]);
        s.init_containers = Some(vec![init, sidecar]);
        assert_eq!(
            errors(&s),
            vec![
                "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always"
            ]
        );
    }

    #[test]
    fn regular_containers_may_not_set_a_restart_policy() {
        let mut c = container("web");
        c.restart_policy = Some("Always".into());
        assert_eq!(
            errors(&spec(vec![c])),
            vec![
                "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"
            ]
        );
    }

    #[test]
    fn env_names_must_be_valid_and_sources_single() {
        let mut c = container("web");
        c.env = Some(vec![
            EnvVar {
                name: "A=B".into(),
                value: Some("x".into()),
                value_from: None,
            },
            EnvVar {
                name: "POD_NAME".into(),
                value: Some("x".into()),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: Some("v1".into()),
                        field_path: "metadata.name".into(),
                    }),
                    ..Default::default()
                }),
            },
            EnvVar {
                name: String::new(),
                ..Default::default()
            },
        ]);
        assert_eq!(
            errors(&spec(vec![c])),
            vec![
                r#"spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
                r#"spec.containers[0].env[1].valueFrom: Invalid value: "": may not be specified when `value` is not empty"#,
                "spec.containers[0].env[2].name: Required value",
            ]
        );
    }

    #[test]
    fn resources_are_validated_at_the_container_path() {
        let mut c = container("web");
        c.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("1Gi".into()),
            )])),
            requests: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("2Gi".into()),
            )])),
            claims: None,
        });
        assert_eq!(
            errors(&spec(vec![c])),
            vec![
                r#"spec.containers[0].resources.requests[memory]: Invalid value: "2Gi": must be less than or equal to memory limit of 1Gi"#
            ]
        );
    }

    #[test]
    fn tolerations_follow_kubernetes_rules() {
        let mut s = spec(vec![container("web")]);
        s.tolerations = Some(vec![
            Toleration {
                operator: Some("Exists".into()),
                ..Default::default()
            },
            Toleration {
                key: Some("node.kubernetes.io/not-ready".into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(300),
                ..Default::default()
            },
            Toleration {
                operator: Some("Equal".into()),
                ..Default::default()
            },
            Toleration {
                key: Some("k".into()),
                effect: Some("NoSchedule".into()),
                toleration_seconds: Some(1),
                ..Default::default()
            },
            Toleration {
                key: Some("k".into()),
                operator: Some("Near".into()),
                effect: Some("Sometimes".into()),
                ..Default::default()
            },
        ]);
        assert_eq!(
            errors(&s),
            vec![
                r#"spec.tolerations[2].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, which means "match all values and all keys""#,
                r#"spec.tolerations[3].effect: Invalid value: "NoSchedule": effect must be 'NoExecute' when `tolerationSeconds` is set"#,
                r#"spec.tolerations[4].operator: Unsupported value: "Near": supported values: "Equal", "Exists""#,
                r#"spec.tolerations[4].effect: Unsupported value: "Sometimes": supported values: "NoExecute", "NoSchedule", "PreferNoSchedule""#,
            ]
        );
    }

    fn pod(spec: PodSpec) -> Pod {
        Pod {
            spec: Some(spec),
            ..Default::default()
        }
    }

    #[test]
    fn pod_update_may_change_images_and_add_tolerations() {
        let old = pod(spec(vec![container("web")]));
        let mut new = old.clone();
        let new_spec = new.spec.as_mut().expect("spec");
        new_spec.containers[0].image = Some("nginx:1.28".into());
        new_spec.tolerations = Some(vec![Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        new_spec.active_deadline_seconds = Some(60);
        assert!(validate_pod_update(&old, &new).is_empty());
    }

    #[test]
    fn pod_update_that_changes_other_fields_is_forbidden() {
        let old = pod(spec(vec![container("web")]));
        let mut new = old.clone();
        new.spec.as_mut().expect("spec").containers[0].args = Some(vec!["-v".into()]);
        let found = validate_pod_update(&old, &new);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].to_string(),
            format!("spec: Forbidden: {POD_UPDATE_FORBIDDEN}")
        );
        assert!(found[0].to_string().starts_with(
            "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
        ));
    }

    #[test]
    fn pod_update_may_only_lower_the_active_deadline() {
        let mut old = pod(spec(vec![container("web")]));
        old.spec.as_mut().expect("spec").active_deadline_seconds = Some(60);
        let mut new = old.clone();
        new.spec.as_mut().expect("spec").active_deadline_seconds = Some(120);
        assert_eq!(
            validate_pod_update(&old, &new)[0].to_string(),
            "spec.activeDeadlineSeconds: Invalid value: 120: must be less than or equal to previous value"
        );
    }

    #[test]
    fn qos_class_follows_requests_and_limits() {
        let mut guaranteed = container("g");
        let both = BTreeMap::from([
            ("cpu".to_owned(), Quantity("1".into())),
            ("memory".to_owned(), Quantity("1Gi".into())),
        ]);
        guaranteed.resources = Some(ResourceRequirements {
            limits: Some(both.clone()),
            requests: Some(both),
            claims: None,
        });
        assert_eq!(qos_class(&spec(vec![guaranteed.clone()])), "Guaranteed");
        assert_eq!(qos_class(&spec(vec![container("b")])), "BestEffort");
        assert_eq!(
            qos_class(&spec(vec![guaranteed, container("b")])),
            "Burstable"
        );
    }
}
