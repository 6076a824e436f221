//! The columns `get` shows for each kind, as kubectl's table printers define them.
//!
//! [`table`] turns objects of one type into a [`Table`]: the NAMESPACE column with `-A`,
//! NAME (prefixed by the type when several types are printed), the kind's own cells from
//! its module here (decoded into its `k8s-openapi` type), then `-L` label columns and
//! LABELS with `--show-labels`.

pub mod cluster;
pub mod config;
pub mod event;
pub mod networking;
pub mod node;
pub mod pod;
pub mod rbac;
pub mod workloads;

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, ReplicaSet},
    batch::v1::Job,
    coordination::v1::Lease,
    core::v1::{ConfigMap, Event, Namespace, Node, Pod, Secret, Service, ServiceAccount},
    discovery::v1::EndpointSlice,
    networking::v1::NetworkPolicy,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    scheduling::v1::PriorityClass,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::de::DeserializeOwned;
use serde_json::Value;
use skiff_api::resources::{ResourceId, ResourceType};

use crate::printers::{Table, name::qualified_name};

/// What a row needs besides the object.
#[derive(Clone, Copy, Debug)]
pub struct RowContext {
    /// The time ages are counted to.
    pub now: Timestamp,
    /// `-o wide`.
    pub wide: bool,
}

/// How `get` was asked to lay out its table.
#[derive(Clone, Debug)]
pub struct TableOptions {
    /// `-o wide`: the kind's extra columns.
    pub wide: bool,
    /// `-A`: a NAMESPACE column first (for namespaced types).
    pub with_namespace: bool,
    /// Several types at once: names read `deployment.apps/web`.
    pub with_kind: bool,
    /// `--show-labels`: a LABELS column last.
    pub show_labels: bool,
    /// `-L key`: one column per label key, with the label's value.
    pub label_columns: Vec<String>,
    /// The time ages are counted to.
    pub now: Timestamp,
}

impl TableOptions {
    fn context(&self) -> RowContext {
        RowContext {
            now: self.now,
            wide: self.wide,
        }
    }
}

/// The table of `objects`, all of type `resource`.
pub fn table(resource: &ResourceType, objects: &[Value], options: &TableOptions) -> Table {
    let mut table = Table::new(headers(resource, options));
    for object in objects {
        table.push(row(resource, object, options));
    }
    table
}

/// The column titles of a table of `resource`.
pub fn headers(resource: &ResourceType, options: &TableOptions) -> Vec<String> {
    let mut headers = Vec::new();
    if options.with_namespace && resource.namespaced() {
        headers.push("NAMESPACE".to_owned());
    }
    if has_name_column(resource.id) {
        headers.push("NAME".to_owned());
    }
    headers.extend(
        kind_headers(resource.id, options.wide)
            .into_iter()
            .map(str::to_owned),
    );
    headers.extend(
        options
            .label_columns
            .iter()
            .map(|key| key.rsplit('/').next().unwrap_or(key).to_uppercase()),
    );
    if options.show_labels {
        headers.push("LABELS".to_owned());
    }
    headers
}

/// The cells of one object of `resource`, in the order of [`headers`].
pub fn row(resource: &ResourceType, object: &Value, options: &TableOptions) -> Vec<String> {
    let metadata = object.get("metadata");
    let field = |name: &str| {
        metadata
            .and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut cells = Vec::new();
    if options.with_namespace && resource.namespaced() {
        cells.push(field("namespace"));
    }
    if has_name_column(resource.id) {
        let name = field("name");
        cells.push(if options.with_kind {
            qualified_name(resource, &name)
        } else {
            name
        });
    }
    let ctx = options.context();
    let kind_cells = kind_cells(resource.id, object, &ctx).unwrap_or_else(|| {
        // An object the kind's type cannot decode still gets a row.
        vec!["<unknown>".to_owned(); kind_headers(resource.id, options.wide).len()]
    });
    cells.extend(kind_cells);
    let labels: BTreeMap<String, String> = metadata
        .and_then(|m| m.get("labels"))
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    for key in &options.label_columns {
        cells.push(labels.get(key).cloned().unwrap_or_default());
    }
    if options.show_labels {
        cells.push(format_label_map(Some(&labels)));
    }
    cells
}

/// Every kind but Event starts with NAME.
fn has_name_column(id: ResourceId) -> bool {
    id != ResourceId::Event
}

/// The kind's own columns (after NAME).
pub fn kind_headers(id: ResourceId, wide: bool) -> Vec<&'static str> {
    use ResourceId as R;
    match id {
        R::Pod => pod::headers(wide),
        R::Deployment => workloads::deployment_headers(wide),
        R::ReplicaSet => workloads::replicaset_headers(wide),
        R::DaemonSet => workloads::daemonset_headers(wide),
        R::Job => workloads::job_headers(wide),
        R::Service => networking::service_headers(wide),
        R::EndpointSlice => networking::endpointslice_headers(wide),
        R::NetworkPolicy => networking::networkpolicy_headers(wide),
        R::Node => node::headers(wide),
        R::Event => event::headers(wide),
        R::Namespace => cluster::namespace_headers(wide),
        R::Lease => cluster::lease_headers(wide),
        R::PriorityClass => cluster::priorityclass_headers(wide),
        R::ConfigMap => config::configmap_headers(wide),
        R::Secret => config::secret_headers(wide),
        R::ServiceAccount => config::serviceaccount_headers(wide),
        R::Role | R::ClusterRole => rbac::role_headers(wide),
        R::RoleBinding | R::ClusterRoleBinding => rbac::binding_headers(wide),
    }
}

fn typed<T: DeserializeOwned>(object: &Value) -> Option<T> {
    T::deserialize(object).ok()
}

/// The kind's own cells, or `None` when the object does not decode as its kind.
fn kind_cells(id: ResourceId, object: &Value, ctx: &RowContext) -> Option<Vec<String>> {
    use ResourceId as R;
    Some(match id {
        R::Pod => pod::row(&typed::<Pod>(object)?, ctx),
        R::Deployment => workloads::deployment_row(&typed::<Deployment>(object)?, ctx),
        R::ReplicaSet => workloads::replicaset_row(&typed::<ReplicaSet>(object)?, ctx),
        R::DaemonSet => workloads::daemonset_row(&typed::<DaemonSet>(object)?, ctx),
        R::Job => workloads::job_row(&typed::<Job>(object)?, ctx),
        R::Service => networking::service_row(&typed::<Service>(object)?, ctx),
        R::EndpointSlice => networking::endpointslice_row(&typed::<EndpointSlice>(object)?, ctx),
        R::NetworkPolicy => networking::networkpolicy_row(&typed::<NetworkPolicy>(object)?, ctx),
        R::Node => node::row(&typed::<Node>(object)?, ctx),
        R::Event => event::row(&typed::<Event>(object)?, ctx),
        R::Namespace => cluster::namespace_row(&typed::<Namespace>(object)?, ctx),
        R::Lease => cluster::lease_row(&typed::<Lease>(object)?, ctx),
        R::PriorityClass => cluster::priorityclass_row(&typed::<PriorityClass>(object)?, ctx),
        R::ConfigMap => config::configmap_row(&typed::<ConfigMap>(object)?, ctx),
        R::Secret => config::secret_row(&typed::<Secret>(object)?, ctx),
        R::ServiceAccount => config::serviceaccount_row(&typed::<ServiceAccount>(object)?, ctx),
        R::Role => rbac::role_row(&typed::<Role>(object)?.metadata, ctx),
        R::ClusterRole => rbac::role_row(&typed::<ClusterRole>(object)?.metadata, ctx),
        R::RoleBinding => {
            let b = typed::<RoleBinding>(object)?;
            rbac::binding_row(&b.metadata, &b.role_ref, b.subjects.as_deref(), ctx)
        }
        R::ClusterRoleBinding => {
            let b = typed::<ClusterRoleBinding>(object)?;
            rbac::binding_row(&b.metadata, &b.role_ref, b.subjects.as_deref(), ctx)
        }
    })
}

/// When the object was created.
pub fn creation(metadata: &ObjectMeta) -> Option<Timestamp> {
    metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// `<none>` for an empty cell.
pub fn none_if_empty(value: String) -> String {
    if value.is_empty() {
        "<none>".to_owned()
    } else {
        value
    }
}

/// Labels as kubectl prints them: `app=web,tier=front`, or `<none>`.
pub fn format_label_map(labels: Option<&BTreeMap<String, String>>) -> String {
    match labels {
        Some(labels) if !labels.is_empty() => labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".to_owned(),
    }
}

/// A label selector in kubectl's syntax: `app=web,tier in (a,b),!legacy`, or `<none>`.
pub fn format_label_selector(selector: Option<&LabelSelector>) -> String {
    let Some(selector) = selector else {
        return "<none>".to_owned();
    };
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for expression in selector.match_expressions.iter().flatten() {
        let values = expression.values.clone().unwrap_or_default().join(",");
        let key = &expression.key;
        terms.push(match expression.operator.as_str() {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({values})"),
        });
    }
    if terms.is_empty() {
        "<none>".to_owned()
    } else {
        terms.join(",")
    }
}

#[cfg(test)]
mod tests;
