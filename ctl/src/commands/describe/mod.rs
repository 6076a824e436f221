//! `describe`: a readable summary of objects, with their recent events.
//!
//! [`run`] finds the objects (by exact name, else by name prefix as kubectl does, or all
//! of a type), fetches what the description needs besides the object ([`Related`]: its
//! events, the pods of a workload or node, a service's EndpointSlices), then [`render`]
//! writes it, which is pure. Each kind's layout has its own module.

pub mod common;
pub mod generic;
pub mod node;
pub mod pod;
pub mod service;
pub mod workloads;
pub mod writer;

use clap::{ArgAction, Args};
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, ReplicaSet},
    batch::v1::Job,
    core::v1::{ConfigMap, Event, Namespace, Node, Pod, Secret, Service},
    discovery::v1::EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::de::DeserializeOwned;
use serde_json::Value;
use skiff_api::{
    resources::{ResourceId, ResourceType},
    status::{ApiError, Reason},
};

use self::{common::Context, writer::Writer};
use crate::{
    age,
    columns::{event as event_columns, format_label_selector},
    error::CtlError,
    printers,
    session::Session,
    target,
};

/// `skiffctl describe`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  skiffctl describe pod web-1\n  skiffctl describe deploy/web\n  skiffctl describe nodes\n  skiffctl describe svc -l app=web"
)]
pub struct DescribeArgs {
    /// What to describe: TYPE [NAME_PREFIX...] or TYPE/NAME...; without names, every
    /// object of the type (in the namespace)
    #[arg(value_name = "TYPE [NAME...]")]
    pub targets: Vec<String>,
    /// Only objects whose labels match this selector
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Look in every namespace
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Include the object's events
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub show_events: bool,
}

/// What a description needs besides the object itself.
#[derive(Clone, Debug, Default)]
pub struct Related {
    /// The object's events; `None` to leave the Events section out.
    pub events: Option<Vec<Event>>,
    /// Pods of a workload, or on a node.
    pub pods: Vec<Pod>,
    /// A service's EndpointSlices.
    pub endpoint_slices: Vec<EndpointSlice>,
}

fn typed<T: DeserializeOwned>(object: &Value) -> Option<T> {
    T::deserialize(object).ok()
}

/// The description of one object of `resource`.
pub fn render(resource: &ResourceType, object: &Value, related: &Related, ctx: &Context) -> String {
    let mut w = Writer::new();
    let described = match resource.id {
        ResourceId::Pod => typed::<Pod>(object).map(|p| pod::describe(&mut w, &p, ctx)),
        ResourceId::Deployment => {
            typed::<Deployment>(object).map(|d| workloads::deployment(&mut w, &d, ctx))
        }
        ResourceId::ReplicaSet => typed::<ReplicaSet>(object)
            .map(|rs| workloads::replicaset(&mut w, &rs, &related.pods, ctx)),
        ResourceId::DaemonSet => typed::<DaemonSet>(object)
            .map(|ds| workloads::daemonset(&mut w, &ds, &related.pods, ctx)),
        ResourceId::Job => typed::<Job>(object).map(|j| workloads::job(&mut w, &j, ctx)),
        ResourceId::Service => typed::<Service>(object)
            .map(|s| service::describe(&mut w, &s, &related.endpoint_slices)),
        ResourceId::Node => {
            typed::<Node>(object).map(|n| node::describe(&mut w, &n, &related.pods, ctx))
        }
        ResourceId::Namespace => typed::<Namespace>(object).map(|n| generic::namespace(&mut w, &n)),
        ResourceId::ConfigMap => {
            typed::<ConfigMap>(object).map(|c| generic::configmap(&mut w, &c, ctx))
        }
        ResourceId::Secret => typed::<Secret>(object).map(|s| generic::secret(&mut w, &s, ctx)),
        _ => None,
    };
    if described.is_none() {
        w = Writer::new();
        generic::any(&mut w, object, resource.namespaced());
    }
    if let Some(events) = &related.events {
        write_events(&mut w, events, ctx);
    }
    w.render()
}

/// The Events section: `Type Reason Age From Message`, oldest first, or `<none>`.
pub fn write_events(w: &mut Writer, events: &[Event], ctx: &Context) {
    if events.is_empty() {
        w.field(0, "Events", "<none>");
        return;
    }
    let mut events = events.to_vec();
    events.sort_by_key(event_columns::last_seen);
    w.section(0, "Events");
    w.row(1, ["Type", "Reason", "Age", "From", "Message"]);
    w.row(1, ["----", "------", "----", "----", "-------"]);
    for event in &events {
        let first = age::since(event_columns::first_seen(event), ctx.now);
        let count = event_columns::count(event);
        let when = if count > 1 {
            format!(
                "{} (x{count} over {first})",
                age::since(event_columns::last_seen(event), ctx.now)
            )
        } else {
            first
        };
        w.row(
            1,
            [
                event.type_.clone().unwrap_or_default(),
                event.reason.clone().unwrap_or_default(),
                when,
                event_columns::source(event),
                event.message.clone().unwrap_or_default().trim().to_owned(),
            ],
        );
    }
}

/// Whether `event` is about `object` (same kind and name, and same uid when the event
/// records one).
pub fn is_about(event: &Event, resource: &ResourceType, object: &Value) -> bool {
    let involved = &event.involved_object;
    let meta = |key: &str| {
        object
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
    };
    involved.kind.as_deref() == Some(resource.kind)
        && involved.name.as_deref() == meta("name")
        && involved
            .uid
            .as_deref()
            .filter(|u| !u.is_empty())
            .is_none_or(|uid| Some(uid) == meta("uid"))
}

fn decode_all<T: DeserializeOwned>(items: &[Value]) -> Vec<T> {
    items.iter().filter_map(typed).collect()
}

/// Fetches what the description of `object` needs.
async fn related(
    session: &Session,
    resource: &ResourceType,
    object: &Value,
    show_events: bool,
) -> Result<Related, CtlError> {
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let events_type = skiff_api::resources::get(ResourceId::Event);
    let pods_type = skiff_api::resources::get(ResourceId::Pod);
    let mut related = Related::default();
    if show_events {
        let (items, _) = session
            .list(
                events_type,
                &namespace,
                "",
                &format!("involvedObject.name={name}"),
            )
            .await?;
        let events: Vec<Event> = decode_all(&items);
        related.events = Some(
            events
                .into_iter()
                .filter(|e| is_about(e, resource, object))
                .collect(),
        );
    }
    let selector = |object: &Value| {
        object
            .pointer("/spec/selector")
            .and_then(typed::<LabelSelector>)
            .map(|s| format_label_selector(Some(&s)))
            .filter(|s| s != "<none>")
    };
    match resource.id {
        ResourceId::ReplicaSet | ResourceId::DaemonSet => {
            if let Some(selector) = selector(object) {
                let (items, _) = session.list(pods_type, &namespace, &selector, "").await?;
                related.pods = decode_all(&items);
            }
        }
        ResourceId::Node => {
            let (items, _) = session
                .list(pods_type, "", "", &format!("spec.nodeName={name}"))
                .await?;
            related.pods = decode_all(&items);
            related.pods.retain(|p: &Pod| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Succeeded" | "Failed"))
            });
        }
        ResourceId::Service => {
            let slices = skiff_api::resources::get(ResourceId::EndpointSlice);
            let (items, _) = session
                .list(
                    slices,
                    &namespace,
                    &format!("kubernetes.io/service-name={name}"),
                    "",
                )
                .await?;
            related.endpoint_slices = decode_all(&items);
        }
        _ => {}
    }
    Ok(related)
}

/// Finds the objects a name stands for: the object of that name, else every object whose
/// name starts with it (kubectl's prefix match).
async fn find(
    session: &Session,
    resource: &ResourceType,
    namespace: &str,
    name: &str,
) -> Result<Vec<Value>, CtlError> {
    match session.client().get(resource.plural, namespace, name).await {
        Ok(object) => Ok(vec![object]),
        Err(e) if e.is(Reason::NotFound) => {
            let (items, _) = session.list(resource, namespace, "", "").await?;
            let matching: Vec<Value> = items
                .into_iter()
                .filter(|o| {
                    o.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.starts_with(name))
                })
                .collect();
            if matching.is_empty() {
                Err(CtlError::Server(ApiError::not_found(
                    &resource.group_resource(),
                    name,
                )))
            } else {
                Ok(matching)
            }
        }
        Err(e) => Err(session.fail(e)),
    }
}

/// Runs `describe`.
///
/// # Errors
/// Bad arguments, an unreachable server, or [`CtlError::Reported`] after objects that
/// were not found.
pub async fn run(session: &Session, args: &DescribeArgs) -> Result<(), CtlError> {
    let targets = target::parse(&args.targets, "describe")?;
    let ctx = Context::current();
    let mut failed = false;
    let mut first = true;
    for target in &targets.targets {
        let resource = target.resource;
        let namespace = session.scope(resource, args.all_namespaces);
        let objects = if target.names.is_empty() {
            let (items, _) = session
                .list(
                    resource,
                    &namespace,
                    args.selector.as_deref().unwrap_or_default(),
                    "",
                )
                .await?;
            if items.is_empty() {
                let scope =
                    (resource.namespaced() && !args.all_namespaces).then_some(session.namespace());
                eprintln!("{}", crate::commands::get::nothing_found(scope));
            }
            items
        } else {
            let mut objects = Vec::new();
            for name in &target.names {
                match find(session, resource, &namespace, name).await {
                    Ok(found) => objects.extend(found),
                    Err(error @ CtlError::Server(_)) => {
                        eprintln!("{error}");
                        failed = true;
                    }
                    Err(other) => return Err(other),
                }
            }
            objects
        };
        for object in objects {
            let related = related(session, resource, &object, args.show_events).await?;
            let text = render(resource, &object, &related, &ctx);
            if !first {
                printers::write_stdout("\n\n");
            }
            first = false;
            printers::write_stdout(&text);
        }
    }
    if failed {
        Err(CtlError::Reported)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
