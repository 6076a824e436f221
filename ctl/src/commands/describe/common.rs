//! What descriptions of several kinds share: timestamps in kubectl's format, labels and
//! annotations (without the last-applied manifest), the controller that owns an object,
//! containers with their ports, probes, environment and state, and pod templates.

use std::collections::BTreeMap;

use jiff::{Timestamp, tz::TimeZone};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStatus, EnvVar, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString};

use super::writer::Writer;
use crate::commands::apply::LAST_APPLIED;

/// The clock and time zone descriptions are written with.
#[derive(Clone, Debug)]
pub struct Context {
    /// Ages are counted to this.
    pub now: Timestamp,
    /// Timestamps are shown in this zone (the system's).
    pub tz: TimeZone,
}

impl Context {
    /// The current time in the system's zone.
    pub fn current() -> Self {
        Self {
            now: Timestamp::now(),
            tz: TimeZone::system(),
        }
    }

    /// `Mon, 02 Jan 2006 15:04:05 -0700`, as kubectl prints times.
    pub fn time(&self, at: Timestamp) -> String {
        at.to_zoned(self.tz.clone())
            .strftime("%a, %d %b %Y %H:%M:%S %z")
            .to_string()
    }

    /// [`Context::time`] of an optional time, `<unset>` when there is none.
    pub fn time_or_unset(&self, at: Option<Timestamp>) -> String {
        at.map_or_else(|| "<unset>".to_owned(), |t| self.time(t))
    }
}

/// `key=value` lines, sorted.
pub fn label_lines(labels: Option<&BTreeMap<String, String>>) -> Vec<String> {
    labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// `key: value` lines, without the last-applied manifest (kubectl hides it too).
pub fn annotation_lines(annotations: Option<&BTreeMap<String, String>>) -> Vec<String> {
    annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != LAST_APPLIED)
        .map(|(k, v)| format!("{k}: {v}"))
        .collect()
}

/// Name, Namespace (for namespaced kinds), CreationTimestamp, Labels and Annotations, as
/// kubectl opens most descriptions.
pub fn metadata(w: &mut Writer, meta: &ObjectMeta, namespaced: bool, ctx: &Context) {
    w.field(0, "Name", meta.name.as_deref().unwrap_or_default());
    if namespaced {
        w.field(
            0,
            "Namespace",
            meta.namespace.as_deref().unwrap_or_default(),
        );
    }
    if let Some(created) = &meta.creation_timestamp {
        w.field(0, "CreationTimestamp", ctx.time(created.0));
    }
    w.multiline(0, "Labels", &label_lines(meta.labels.as_ref()));
    w.multiline(
        0,
        "Annotations",
        &annotation_lines(meta.annotations.as_ref()),
    );
}

/// `ReplicaSet/web-5d4f8`: the owner that controls the object, if any.
pub fn controlled_by(meta: &ObjectMeta) -> Option<String> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| format!("{}/{}", o.kind, o.name))
}

/// A port as a number or name.
pub fn int_or_string(value: &IntOrString) -> String {
    match value {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

fn ports_field(w: &mut Writer, level: usize, key: &str, ports: &[String]) {
    match ports {
        [] => w.field(level, key, "<none>"),
        [one] => w.field(level, key, one),
        many => w.field(level, &format!("{key}s"), many.join(", ")),
    }
}

/// kubectl's one-line probe summary: `http-get http://:8080/healthz delay=0s timeout=1s
/// period=10s #success=1 #failure=3`.
pub fn probe(probe: &Probe) -> String {
    let action = if let Some(http) = &probe.http_get {
        let scheme = http.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        format!(
            "http-get {scheme}://{}:{}{}",
            http.host.as_deref().unwrap_or_default(),
            int_or_string(&http.port),
            http.path.as_deref().unwrap_or_default()
        )
    } else if let Some(tcp) = &probe.tcp_socket {
        format!("tcp-socket :{}", int_or_string(&tcp.port))
    } else if let Some(exec) = &probe.exec {
        format!(
            "exec [{}]",
            exec.command.clone().unwrap_or_default().join(" ")
        )
    } else if let Some(grpc) = &probe.grpc {
        format!(
            "grpc <pod>:{} {}",
            grpc.port,
            grpc.service.as_deref().unwrap_or_default()
        )
    } else {
        "unknown".to_owned()
    };
    format!(
        "{action} delay={}s timeout={}s period={}s #success={} #failure={}",
        probe.initial_delay_seconds.unwrap_or(0),
        probe.timeout_seconds.unwrap_or(1),
        probe.period_seconds.unwrap_or(10),
        probe.success_threshold.unwrap_or(1),
        probe.failure_threshold.unwrap_or(3)
    )
}

fn env_value(var: &EnvVar) -> String {
    if let Some(value) = &var.value {
        return value.clone();
    }
    let Some(from) = &var.value_from else {
        return String::new();
    };
    if let Some(field) = &from.field_ref {
        format!(
            " ({}:{})",
            field.api_version.as_deref().unwrap_or("v1"),
            field.field_path
        )
    } else if let Some(resource) = &from.resource_field_ref {
        format!(" ({})", resource.resource)
    } else if let Some(cm) = &from.config_map_key_ref {
        format!("<set to the key '{}' of config map '{}'>", cm.key, cm.name)
    } else if let Some(secret) = &from.secret_key_ref {
        format!(
            "<set to the key '{}' in secret '{}'>",
            secret.key, secret.name
        )
    } else {
        String::new()
    }
}

fn resources(w: &mut Writer, level: usize, resources: Option<&ResourceRequirements>) {
    let Some(resources) = resources else { return };
    for (title, list) in [
        ("Limits", &resources.limits),
        ("Requests", &resources.requests),
    ] {
        if let Some(list) = list.as_ref().filter(|l| !l.is_empty()) {
            w.section(level, title);
            for (name, quantity) in list {
                w.field(level + 1, name, &quantity.0);
            }
        }
    }
}

fn state(w: &mut Writer, level: usize, key: &str, state: &ContainerState, ctx: &Context) {
    if let Some(running) = &state.running {
        w.field(level, key, "Running");
        w.field(
            level + 1,
            "Started",
            ctx.time_or_unset(running.started_at.as_ref().map(|t| t.0)),
        );
    } else if let Some(waiting) = &state.waiting {
        w.field(level, key, "Waiting");
        if let Some(reason) = &waiting.reason {
            w.field(level + 1, "Reason", reason);
        }
        if let Some(message) = &waiting.message {
            w.field(level + 1, "Message", message);
        }
    } else if let Some(terminated) = &state.terminated {
        w.field(level, key, "Terminated");
        if let Some(reason) = &terminated.reason {
            w.field(level + 1, "Reason", reason);
        }
        if let Some(message) = &terminated.message {
            w.field(level + 1, "Message", message);
        }
        w.field(level + 1, "Exit Code", terminated.exit_code);
        if let Some(signal) = terminated.signal.filter(|s| *s != 0) {
            w.field(level + 1, "Signal", signal);
        }
        w.field(
            level + 1,
            "Started",
            ctx.time_or_unset(terminated.started_at.as_ref().map(|t| t.0)),
        );
        w.field(
            level + 1,
            "Finished",
            ctx.time_or_unset(terminated.finished_at.as_ref().map(|t| t.0)),
        );
    } else {
        w.field(level, key, "Waiting");
    }
}

/// One container: image, ports, command, state (when `status` is given), resources,
/// probes and environment.
pub fn container(
    w: &mut Writer,
    level: usize,
    container: &Container,
    status: Option<&ContainerStatus>,
    ctx: &Context,
) {
    w.section(level, &container.name);
    let level = level + 1;
    if let Some(id) = status.and_then(|s| s.container_id.as_deref()) {
        w.field(level, "Container ID", id);
    }
    w.field(
        level,
        "Image",
        container.image.as_deref().unwrap_or_default(),
    );
    if let Some(status) = status {
        w.field(level, "Image ID", &status.image_id);
    }
    let ports = container.ports.as_deref().unwrap_or_default();
    let protocol = |p: Option<&String>| p.cloned().unwrap_or_else(|| "TCP".to_owned());
    let container_ports: Vec<String> = ports
        .iter()
        .map(|p| {
            let name = p
                .name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            format!(
                "{}/{}{name}",
                p.container_port,
                protocol(p.protocol.as_ref())
            )
        })
        .collect();
    let host_ports: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p.host_port.unwrap_or(0),
                protocol(p.protocol.as_ref())
            )
        })
        .collect();
    ports_field(w, level, "Port", &container_ports);
    ports_field(w, level, "Host Port", &host_ports);
    for (key, words) in [("Command", &container.command), ("Args", &container.args)] {
        if let Some(words) = words.as_ref().filter(|w| !w.is_empty()) {
            w.section(level, key);
            for word in words {
                w.text(level + 1, word);
            }
        }
    }
    if let Some(status) = status {
        if let Some(current) = &status.state {
            state(w, level, "State", current, ctx);
        }
        if let Some(last) = status
            .last_state
            .as_ref()
            .filter(|s| s.running.is_some() || s.waiting.is_some() || s.terminated.is_some())
        {
            state(w, level, "Last State", last, ctx);
        }
        w.field(level, "Ready", if status.ready { "True" } else { "False" });
        w.field(level, "Restart Count", status.restart_count);
    }
    resources(w, level, container.resources.as_ref());
    for (key, p) in [
        ("Liveness", &container.liveness_probe),
        ("Readiness", &container.readiness_probe),
        ("Startup", &container.startup_probe),
    ] {
        if let Some(p) = p {
            w.field(level, key, probe(p));
        }
    }
    let env = container.env.as_deref().unwrap_or_default();
    if env.is_empty() {
        w.field(level, "Environment", "<none>");
    } else {
        w.section(level, "Environment");
        for var in env {
            w.field(level + 1, &var.name, env_value(var));
        }
    }
    let mounts = container.volume_mounts.as_deref().unwrap_or_default();
    if mounts.is_empty() {
        w.field(level, "Mounts", "<none>");
    } else {
        w.section(level, "Mounts");
        for mount in mounts {
            let mode = if mount.read_only == Some(true) {
                "ro"
            } else {
                "rw"
            };
            w.text(
                level + 1,
                format!("{} from {} ({mode})", mount.mount_path, mount.name),
            );
        }
    }
}

/// `key=value:Effect op=Exists for 300s`, one per toleration.
pub fn toleration_lines(tolerations: Option<&[Toleration]>) -> Vec<String> {
    tolerations
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let mut line = t.key.clone().unwrap_or_default();
            if let Some(value) = t.value.as_deref().filter(|v| !v.is_empty()) {
                line.push('=');
                line.push_str(value);
            }
            if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
                line.push(':');
                line.push_str(effect);
            }
            if t.operator.as_deref() == Some("Exists")
                && t.value.as_deref().unwrap_or("").is_empty()
            {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str("op=Exists");
            }
            if let Some(seconds) = t.toleration_seconds {
                line.push_str(&format!(" for {seconds}s"));
            }
            line
        })
        .collect()
}

/// Volumes, one section each, with their source type.
pub fn volumes(w: &mut Writer, spec: &PodSpec) {
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    if volumes.is_empty() {
        w.field(0, "Volumes", "<none>");
        return;
    }
    w.section(0, "Volumes");
    for volume in volumes {
        w.section(1, &volume.name);
        let (kind, detail) = if let Some(cm) = &volume.config_map {
            ("ConfigMap", format!("Name: {}", cm.name))
        } else if let Some(secret) = &volume.secret {
            (
                "Secret",
                format!(
                    "SecretName: {}",
                    secret.secret_name.as_deref().unwrap_or_default()
                ),
            )
        } else if let Some(path) = &volume.host_path {
            ("HostPath", format!("Path: {}", path.path))
        } else if volume.empty_dir.is_some() {
            ("EmptyDir", String::new())
        } else if let Some(claim) = &volume.persistent_volume_claim {
            (
                "PersistentVolumeClaim",
                format!("ClaimName: {}", claim.claim_name),
            )
        } else if volume.projected.is_some() {
            ("Projected", String::new())
        } else {
            ("<unknown>", String::new())
        };
        w.field(2, "Type", kind);
        if let Some((key, value)) = detail.split_once(": ") {
            w.field(2, key, value);
        }
    }
}

/// A pod template: its labels and annotations, containers and volumes.
pub fn pod_template(w: &mut Writer, template: Option<&PodTemplateSpec>, ctx: &Context) {
    w.section(0, "Pod Template");
    let Some(template) = template else {
        w.text(1, "<none>");
        return;
    };
    let meta = template.metadata.clone().unwrap_or_default();
    w.multiline(1, "Labels", &label_lines(meta.labels.as_ref()));
    let annotations = annotation_lines(meta.annotations.as_ref());
    if !annotations.is_empty() {
        w.multiline(1, "Annotations", &annotations);
    }
    let Some(spec) = &template.spec else { return };
    if let Some(account) = &spec.service_account_name {
        w.field(1, "Service Account", account);
    }
    if let Some(init) = spec.init_containers.as_ref().filter(|c| !c.is_empty()) {
        w.section(1, "Init Containers");
        for c in init {
            container(w, 2, c, None, ctx);
        }
    }
    w.section(1, "Containers");
    for c in &spec.containers {
        container(w, 2, c, None, ctx);
    }
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    if volumes.is_empty() {
        w.field(1, "Volumes", "<none>");
    } else {
        w.section(1, "Volumes");
        for volume in volumes {
            w.text(2, &volume.name);
        }
    }
}
