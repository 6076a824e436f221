//! `apply -f`: make the cluster's objects match manifests. An object that does not exist is
//! created; one that does is patched with the manifest (a JSON merge patch), with fields
//! removed from the manifest since the last apply set to null, as kubectl's client-side
//! apply does with its `last-applied-configuration` annotation.
//!
//! Every manifest is read and checked before anything is sent. Objects the server rejects
//! are reported one line each on stderr while the others are still applied; the exit code
//! is then 1.

use clap::Args;
use serde_json::{Map, Value};
use skiff_api::{
    client::ClientError,
    resources::ResourceType,
    status::{ApiError, Reason},
};

use crate::{
    error::CtlError,
    input::{self, ManifestObject},
    printers::{self, Batch, OutputFormat, name::qualified_name},
    session::Session,
};

/// The annotation holding the manifest an object was last applied from; kubectl's name, so
/// objects move between kubectl and skiffctl without surprises.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `skiffctl apply`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  skiffctl apply -f app.yaml\n  skiffctl apply -f manifests/ -f extra.yaml\n  cat app.yaml | skiffctl apply -f -"
)]
pub struct ApplyArgs {
    /// A manifest file, a directory (its *.yaml, *.yml and *.json files, in name order) or
    /// `-` for standard input; repeat for several
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        required = true
    )]
    pub filenames: Vec<String>,
    /// Also read the subdirectories of directories given with -f
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Print the applied objects as `name`, `yaml`, `json`, `jsonpath=...` or
    /// `custom-columns=...` instead of a line per object
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
}

/// What apply did to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It did not exist.
    Created,
    /// It existed and changed.
    Configured,
    /// It already matched the manifest.
    Unchanged,
}

impl Outcome {
    fn verb(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// `deployment.apps/web configured`.
pub fn result_line(resource: &ResourceType, name: &str, outcome: Outcome) -> String {
    format!("{} {}", qualified_name(resource, name), outcome.verb())
}

/// The line for an object the server rejected: `Error from server (Invalid): error when
/// applying document 2 (deployment.apps/web): <message>`. `source` names the manifest
/// when several were read.
pub fn error_line(
    error: &ApiError,
    object: &ManifestObject,
    source: Option<&str>,
    name: &str,
) -> String {
    let of = source.map(|s| format!(" of {s}")).unwrap_or_default();
    format!(
        "Error from server ({:?}): error when applying {}{of} ({}): {}",
        error.reason,
        object.document(),
        qualified_name(object.object.resource, name),
        error.message
    )
}

/// One object ready to send: where it goes and the body to send.
#[derive(Clone, Debug)]
pub struct Planned {
    /// The manifest object.
    pub manifest: ManifestObject,
    /// The namespace it goes to ("" for cluster-scoped types).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The body: the manifest, in its namespace, with the last-applied annotation.
    pub desired: Value,
}

/// Checks every object before anything is sent: each needs a name, and its namespace must
/// agree with an explicit `-n`.
///
/// # Errors
/// The first object that cannot be applied, with its document.
pub fn plan(
    objects: Vec<ManifestObject>,
    namespace: &str,
    explicit_namespace: bool,
) -> Result<Vec<Planned>, CtlError> {
    objects
        .into_iter()
        .map(|manifest| {
            let at = format!("{} of {}", manifest.document(), manifest.source);
            let object = &manifest.object;
            let Some(name) = object.name().map(str::to_owned) else {
                let why = if object.generate_name().is_some() {
                    "cannot use generateName with apply"
                } else {
                    "metadata.name is required"
                };
                return Err(CtlError::usage(format!(
                    "error when applying {at} ({}): {why}",
                    object.resource.kind
                )));
            };
            let target = manifest
                .namespace_in(namespace, explicit_namespace)
                .map_err(|why| CtlError::usage(format!("error when applying {at}: {why}")))?;
            let mut modified = object.value.clone();
            if !target.is_empty()
                && let Some(meta) = modified.get_mut("metadata").and_then(Value::as_object_mut)
            {
                meta.insert("namespace".into(), Value::String(target.clone()));
            }
            let desired = with_last_applied(modified);
            Ok(Planned {
                manifest,
                namespace: target,
                name,
                desired,
            })
        })
        .collect()
}

/// The manifest with the last-applied annotation set to itself (without the annotation),
/// as compact JSON.
pub fn with_last_applied(mut manifest: Value) -> Value {
    if let Some(annotations) = manifest
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
    }
    let recorded = format!("{manifest}\n");
    if let Some(meta) = manifest.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if !annotations.is_object() {
            *annotations = Value::Object(Map::new());
        }
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(LAST_APPLIED.into(), Value::String(recorded));
        }
    }
    manifest
}

/// The merge patch that takes the live object to `modified`: `modified` itself, plus a
/// null for every field `original` (what was last applied) set that `modified` no longer
/// does. Fields set by others (the server, controllers) are kept.
pub fn three_way_patch(original: Option<&Value>, modified: &Value) -> Value {
    match (original, modified) {
        (Some(Value::Object(original)), Value::Object(modified)) => {
            let mut patch = Map::new();
            for (key, value) in modified {
                patch.insert(key.clone(), three_way_patch(original.get(key), value));
            }
            for key in original.keys() {
                if !modified.contains_key(key) {
                    patch.insert(key.clone(), Value::Null);
                }
            }
            Value::Object(patch)
        }
        (_, modified) => modified.clone(),
    }
}

/// The part of an object apply speaks for: everything but status and server or
/// controller metadata (labels and the last-applied annotation stay).
fn applied_view(object: &Value) -> Value {
    let mut view = object.clone();
    if let Some(map) = view.as_object_mut() {
        map.remove("status");
        map.insert(
            "metadata".into(),
            serde_json::json!({
                "labels": object.pointer("/metadata/labels"),
                "lastApplied": object.pointer(&format!("/metadata/annotations/{}", LAST_APPLIED.replace('/', "~1"))),
            }),
        );
    }
    view
}

fn resource_version(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

/// Creates or patches one object.
async fn apply_one(session: &Session, planned: &Planned) -> Result<(Outcome, Value), ClientError> {
    let client = session.client();
    let resource = planned.manifest.object.resource;
    let live = match client
        .get(resource.plural, &planned.namespace, &planned.name)
        .await
    {
        Err(e) if e.is(Reason::NotFound) => {
            let created = client
                .create(resource.plural, &planned.namespace, &planned.desired)
                .await?;
            return Ok((Outcome::Created, created));
        }
        other => other?,
    };
    let original: Option<Value> = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str(text).ok());
    if original.is_none() {
        eprintln!(
            "Warning: {} has no {LAST_APPLIED} annotation (it was not created by apply); \
             fields the manifest lacks are left as they are. The annotation is added now.",
            qualified_name(resource, &planned.name)
        );
    }
    let patch = three_way_patch(original.as_ref(), &planned.desired);
    let updated = client
        .patch(
            resource.plural,
            &planned.namespace,
            &planned.name,
            &patch,
            "",
        )
        .await?;
    // Unchanged when what apply owns is the same before and after; comparing versions
    // alone would call a controller's concurrent status or annotation write ours.
    let outcome = if resource_version(&updated) == resource_version(&live)
        || applied_view(&updated) == applied_view(&live)
    {
        Outcome::Unchanged
    } else {
        Outcome::Configured
    };
    Ok((outcome, updated))
}

/// Runs `apply`.
///
/// # Errors
/// Unreadable or malformed manifests (nothing applied), an unreachable server, or
/// [`CtlError::Reported`] when the server rejected some objects.
pub async fn run(session: &Session, args: &ApplyArgs) -> Result<(), CtlError> {
    let objects = input::load(&args.filenames, args.recursive, "apply")?;
    let several_sources = objects.iter().any(|o| o.source != objects[0].source);
    let planned = plan(objects, session.namespace(), session.explicit_namespace())?;
    let mut failed = false;
    let mut applied: Vec<Batch> = Vec::new();
    for object in &planned {
        match apply_one(session, object).await {
            Ok((outcome, live)) => match &args.output {
                None | Some(OutputFormat::Table | OutputFormat::Wide) => printers::write_stdout(
                    &(result_line(object.manifest.object.resource, &object.name, outcome) + "\n"),
                ),
                Some(_) => applied.push(Batch {
                    resource: object.manifest.object.resource,
                    objects: vec![live],
                }),
            },
            Err(error) => match session.fail(error) {
                CtlError::Server(api) => {
                    let source = several_sources.then_some(object.manifest.source.as_str());
                    eprintln!(
                        "{}",
                        error_line(&api, &object.manifest, source, &object.name)
                    );
                    failed = true;
                }
                other => return Err(other),
            },
        }
    }
    if let Some(format) = args.output.as_ref().filter(|f| !f.is_table())
        && !applied.is_empty()
    {
        let options = crate::commands::get::plain_table_options();
        let single = applied.len() == 1;
        printers::write_stdout(&printers::render(format, &applied, single, &options, false));
    }
    if failed {
        Err(CtlError::Reported)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Source, parse_sources};
    use serde_json::json;
    use skiff_api::resources::resolve;

    fn manifests(text: &str) -> Vec<ManifestObject> {
        parse_sources(
            &[Source {
                name: "app.yaml".into(),
                text: text.into(),
            }],
            "apply",
        )
        .unwrap()
    }

    const APP: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web}]\n";

    #[test]
    fn an_apply_is_unchanged_when_only_status_and_controller_annotations_moved() {
        let live = json!({"metadata": {"resourceVersion": "1", "labels": {"a": "b"},
            "annotations": {LAST_APPLIED: "x"}}, "spec": {"replicas": 2}});
        let mut updated = live.clone();
        updated["metadata"]["resourceVersion"] = json!("2");
        updated["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("1");
        updated["status"] = json!({"replicas": 2});
        assert_eq!(applied_view(&updated), applied_view(&live));
        updated["spec"]["replicas"] = json!(3);
        assert_ne!(applied_view(&updated), applied_view(&live));
    }

    #[test]
    fn result_lines_name_the_kind_with_its_group_and_what_happened() {
        let deploy = resolve("deployments").unwrap();
        assert_eq!(
            result_line(deploy, "hello", Outcome::Created),
            "deployment.apps/hello created"
        );
        assert_eq!(
            result_line(resolve("svc").unwrap(), "web", Outcome::Configured),
            "service/web configured"
        );
        assert_eq!(
            result_line(resolve("ns").unwrap(), "demo", Outcome::Unchanged),
            "namespace/demo unchanged"
        );
    }

    #[test]
    fn a_rejected_object_is_reported_with_its_document_and_name() {
        let objects = manifests(APP);
        let error = ApiError::new(
            Reason::Invalid,
            "Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].image: Required value",
        );
        assert_eq!(
            error_line(&error, &objects[1], None, "web"),
            "Error from server (Invalid): error when applying document 2 (deployment.apps/web): \
             Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].image: Required value"
        );
        assert!(
            error_line(&error, &objects[1], Some("dir/app.yaml"), "web")
                .contains("error when applying document 2 of dir/app.yaml (deployment.apps/web)")
        );
    }

    #[test]
    fn planning_places_namespaced_objects_and_records_the_manifest() {
        let planned = plan(manifests(APP), "shop", false).unwrap();
        assert_eq!(planned[0].namespace, "", "a Namespace is cluster-scoped");
        assert_eq!(planned[1].namespace, "shop");
        assert_eq!(planned[1].desired["metadata"]["namespace"], "shop");
        let recorded = planned[1].desired["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap();
        let recorded: Value = serde_json::from_str(recorded).unwrap();
        assert_eq!(recorded["metadata"]["labels"]["app"], "web");
        assert!(recorded["metadata"].get("annotations").is_none());
    }

    #[test]
    fn an_object_without_a_name_stops_apply_before_anything_is_sent() {
        let error = plan(
            manifests("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: x-\n"),
            "default",
            false,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "error: error when applying document 1 of app.yaml (ConfigMap): cannot use generateName with apply"
        );
    }

    #[test]
    fn an_object_in_another_namespace_than_an_explicit_one_is_refused() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: prod\n";
        assert!(plan(manifests(text), "dev", true).is_err());
        let planned = plan(manifests(text), "dev", false).unwrap();
        assert_eq!(planned[0].namespace, "prod");
    }

    #[test]
    fn fields_dropped_from_the_manifest_since_the_last_apply_are_nulled() {
        let original =
            json!({"metadata": {"labels": {"app": "web", "tier": "front"}}, "data": {"a": "1"}});
        let modified = json!({"metadata": {"labels": {"app": "web"}}});
        assert_eq!(
            three_way_patch(Some(&original), &modified),
            json!({"metadata": {"labels": {"app": "web", "tier": null}}, "data": null})
        );
    }

    #[test]
    fn without_a_last_applied_manifest_the_patch_is_the_manifest() {
        let modified = json!({"spec": {"replicas": 3, "ports": [{"port": 80}]}});
        assert_eq!(three_way_patch(None, &modified), modified);
    }
}
