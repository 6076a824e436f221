//! What `get`, `describe` and `delete` are pointed at, in kubectl's forms:
//! `TYPE[,TYPE...] [NAME...]`, `TYPE/NAME...`, and `all` (the workload types and services).
//! Types are resolved like kubectl resolves them (`po`, `deploy`, `deployments.apps`).

use skiff_api::{
    metrics_api::MetricsResource,
    resources::{self, ResourceId, ResourceType},
};

use crate::error::CtlError;

/// The types `all` stands for, in kubectl's order.
const ALL: [ResourceId; 6] = [
    ResourceId::Pod,
    ResourceId::Service,
    ResourceId::DaemonSet,
    ResourceId::Deployment,
    ResourceId::ReplicaSet,
    ResourceId::Job,
];

/// Objects of one type: the named ones, or all of them when `names` is empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The type.
    pub resource: &'static ResourceType,
    /// The names; empty means every object (in scope).
    pub names: Vec<String>,
}

/// The result of parsing positional arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets {
    /// One entry per type, in the order given.
    pub targets: Vec<Target>,
    /// Whether the user asked for several types (or `all`), so output names the type.
    pub several_types: bool,
}

impl Targets {
    /// Whether exactly one object was asked for by name.
    pub fn single_named(&self) -> bool {
        self.targets.len() == 1 && self.targets[0].names.len() == 1
    }
}

/// Resolves one type name as kubectl does.
///
/// # Errors
/// `the server doesn't have a resource type "foo"`; for the metrics.k8s.io types (served
/// live, not stored), which command reads them.
pub fn resolve_type(name: &str) -> Result<&'static ResourceType, CtlError> {
    resources::resolve(name).ok_or_else(|| match MetricsResource::from_name(name) {
        Some(metrics) => CtlError::usage(format!(
            "{} is served live from the nodes, not stored: read it with `skiffctl top {}`",
            metrics.group_resource(),
            metrics.plural()
        )),
        None => CtlError::usage(format!(
            "the server doesn't have a resource type \"{name}\""
        )),
    })
}

/// Parses `TYPE[,TYPE...] [NAME...]` or `TYPE/NAME...`; `verb` words the error when no
/// type is given.
///
/// # Errors
/// No arguments, an unknown type, or the two forms mixed.
pub fn parse(args: &[String], verb: &str) -> Result<Targets, CtlError> {
    let Some(first) = args.first() else {
        return Err(CtlError::usage(format!(
            "you must specify the type of resource to {verb}. Use \"skiffctl api-resources\" \
             for a complete list of supported resources"
        )));
    };
    if first.contains('/') {
        let mut targets: Vec<Target> = Vec::new();
        for arg in args {
            let Some((kind, name)) = arg
                .split_once('/')
                .filter(|(k, n)| !k.is_empty() && !n.is_empty())
            else {
                return Err(CtlError::usage(format!(
                    "arguments in resource/name form must have a single resource and name; \
                     \"{arg}\" is not of that form"
                )));
            };
            let resource = resolve_type(kind)?;
            match targets.iter_mut().find(|t| t.resource.id == resource.id) {
                Some(target) => target.names.push(name.to_owned()),
                None => targets.push(Target {
                    resource,
                    names: vec![name.to_owned()],
                }),
            }
        }
        let several_types = targets.len() > 1;
        return Ok(Targets {
            targets,
            several_types,
        });
    }
    let names: Vec<String> = args[1..].to_vec();
    if let Some(bad) = names.iter().find(|n| n.contains('/')) {
        return Err(CtlError::usage(format!(
            "there is no need to specify a resource type as a separate argument when passing \
             arguments in resource/name form (e.g. 'skiffctl {verb} resource/<resource_name>' \
             instead of 'skiffctl {verb} resource resource/<resource_name>'): {bad}"
        )));
    }
    let mut targets: Vec<Target> = Vec::new();
    let mut expanded_all = false;
    for kind in first.split(',').filter(|k| !k.is_empty()) {
        let resolved: Vec<&'static ResourceType> = if kind.eq_ignore_ascii_case("all") {
            expanded_all = true;
            ALL.iter().map(|id| resources::get(*id)).collect()
        } else {
            vec![resolve_type(kind)?]
        };
        for resource in resolved {
            if !targets.iter().any(|t| t.resource.id == resource.id) {
                targets.push(Target {
                    resource,
                    names: names.clone(),
                });
            }
        }
    }
    if targets.is_empty() {
        return Err(CtlError::usage(format!(
            "you must specify the type of resource to {verb}"
        )));
    }
    let several_types = expanded_all || targets.len() > 1;
    Ok(Targets {
        targets,
        several_types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn kinds(targets: &Targets) -> Vec<&str> {
        targets.targets.iter().map(|t| t.resource.kind).collect()
    }

    #[test]
    fn metrics_types_point_at_top() {
        let error = resolve_type("nodes.metrics.k8s.io")
            .unwrap_err()
            .to_string();
        assert!(error.contains("skiffctl top nodes"), "{error}");
        let error = resolve_type("widgets").unwrap_err().to_string();
        assert!(error.contains("doesn't have a resource type"), "{error}");
    }

    #[test]
    fn a_type_and_names_address_those_objects() {
        let targets = parse(&args(&["po", "a", "b"]), "get").unwrap();
        assert_eq!(kinds(&targets), ["Pod"]);
        assert_eq!(targets.targets[0].names, ["a", "b"]);
        assert!(!targets.several_types);
    }

    #[test]
    fn comma_separated_types_are_each_listed() {
        let targets = parse(&args(&["deploy,svc"]), "get").unwrap();
        assert_eq!(kinds(&targets), ["Deployment", "Service"]);
        assert!(targets.several_types);
    }

    #[test]
    fn type_slash_name_arguments_group_by_type() {
        let targets = parse(&args(&["deploy/web", "svc/web", "deployment/api"]), "get").unwrap();
        assert_eq!(kinds(&targets), ["Deployment", "Service"]);
        assert_eq!(targets.targets[0].names, ["web", "api"]);
        assert!(targets.several_types);
        assert!(parse(&args(&["po/a"]), "get").unwrap().single_named());
    }

    #[test]
    fn all_stands_for_the_workloads_and_services() {
        let targets = parse(&args(&["all"]), "get").unwrap();
        assert_eq!(
            kinds(&targets),
            [
                "Pod",
                "Service",
                "DaemonSet",
                "Deployment",
                "ReplicaSet",
                "Job"
            ]
        );
        assert!(targets.several_types);
    }

    #[test]
    fn an_unknown_type_is_reported_as_kubectl_reports_it() {
        let error = parse(&args(&["foo"]), "get").unwrap_err();
        assert_eq!(
            error.to_string(),
            "error: the server doesn't have a resource type \"foo\""
        );
    }

    #[test]
    fn mixing_the_two_forms_is_an_error() {
        assert!(parse(&args(&["pods", "pod/a"]), "get").is_err());
        assert!(parse(&args(&["pod/"]), "get").is_err());
        assert!(
            parse(&[], "get")
                .unwrap_err()
                .to_string()
                .contains("api-resources")
        );
    }
}
