//! `create`: create objects from manifests (failing, like kubectl, when one already
//! exists), or build a Namespace, ConfigMap or Deployment from flags. With
//! `--dry-run=client -o yaml` the built object is printed instead of sent, the usual way
//! to start a manifest.

use std::collections::BTreeMap;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use skiff_api::resources::{self, ResourceId, ResourceType};

use crate::{
    commands::apply::with_last_applied,
    error::CtlError,
    input,
    printers::{self, Batch, OutputFormat, name::qualified_name},
    session::Session,
};

/// `skiffctl create`.
#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  skiffctl create -f app.yaml\n  skiffctl create namespace shop\n  skiffctl create configmap settings --from-literal=mode=fast\n  skiffctl create deployment web --image=skiff.local/web:1.0 --dry-run=client -o yaml"
)]
pub struct CreateArgs {
    /// A manifest file, a directory (its *.yaml, *.yml and *.json files) or `-` for
    /// standard input; repeat for several
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
    /// Record each manifest in the object's last-applied annotation, so `apply` can manage
    /// it later
    #[arg(long)]
    pub save_config: bool,
    /// Print the created objects as `name`, `yaml` or `json` instead of a line per object
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
    #[command(subcommand)]
    pub kind: Option<CreateKind>,
}

/// Objects `create` can build from flags.
#[derive(Debug, Subcommand)]
pub enum CreateKind {
    /// Create a namespace
    #[command(visible_alias = "ns")]
    Namespace(NamespaceArgs),
    /// Create a config map from literal values and files
    #[command(visible_alias = "cm")]
    Configmap(ConfigMapArgs),
    /// Create a deployment running an image
    #[command(visible_alias = "deploy")]
    Deployment(DeploymentArgs),
}

/// `--dry-run`: whether to send the object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    /// Send it.
    #[default]
    None,
    /// Only print it.
    Client,
}

/// Flags every generated object takes.
#[derive(Args, Debug)]
pub struct GeneratedArgs {
    /// `client`: print the object instead of creating it
    #[arg(long, value_enum, value_name = "MODE", default_value_t = DryRun::None, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: DryRun,
    /// Print the object as `name`, `yaml` or `json` instead of `kind/name created`
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
}

/// `create namespace`.
#[derive(Args, Debug)]
pub struct NamespaceArgs {
    /// The namespace's name
    pub name: String,
    #[command(flatten)]
    pub generated: GeneratedArgs,
}

/// `create configmap`.
#[derive(Args, Debug)]
pub struct ConfigMapArgs {
    /// The config map's name
    pub name: String,
    /// A `key=value` entry; repeatable
    #[arg(long, value_name = "KEY=VALUE")]
    pub from_literal: Vec<String>,
    /// A file whose content becomes an entry (`[key=]path`, the key defaulting to the
    /// file's name); repeatable
    #[arg(long, value_name = "[KEY=]PATH")]
    pub from_file: Vec<String>,
    #[command(flatten)]
    pub generated: GeneratedArgs,
}

/// `create deployment`.
#[derive(Args, Debug)]
pub struct DeploymentArgs {
    /// The deployment's name (also its `app` label and container name)
    pub name: String,
    /// The image to run
    #[arg(long, required = true)]
    pub image: String,
    /// How many pods to run
    #[arg(long, default_value_t = 1)]
    pub replicas: i32,
    /// The port the container listens on
    #[arg(long)]
    pub port: Option<i32>,
    #[command(flatten)]
    pub generated: GeneratedArgs,
}

/// A Namespace named `name`.
pub fn namespace_manifest(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// A ConfigMap with `data`.
pub fn configmap_manifest(name: &str, namespace: &str, data: &BTreeMap<String, String>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    })
}

/// A Deployment of `replicas` pods labelled `app: <name>` running `image`.
pub fn deployment_manifest(
    name: &str,
    namespace: &str,
    image: &str,
    replicas: i32,
    port: Option<i32>,
) -> Value {
    let mut container = json!({"name": name, "image": image});
    if let Some(port) = port {
        container["ports"] = json!([{"containerPort": port}]);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
        },
    })
}

/// The entries of `--from-literal` and `--from-file`.
///
/// # Errors
/// A literal without `=`, an unreadable file, or a key given twice.
pub fn configmap_data(
    literals: &[String],
    files: &[String],
) -> Result<BTreeMap<String, String>, CtlError> {
    let mut data = BTreeMap::new();
    let mut insert = |key: String, value: String| {
        if data.insert(key.clone(), value).is_some() {
            return Err(CtlError::usage(format!(
                "cannot add key {key:?}: another key by that name already exists"
            )));
        }
        Ok(())
    };
    for literal in literals {
        let (key, value) = literal.split_once('=').ok_or_else(|| {
            CtlError::usage(format!(
                "invalid literal source {literal:?}, expected key=value"
            ))
        })?;
        insert(key.to_owned(), value.to_owned())?;
    }
    for file in files {
        let (key, path) = match file.split_once('=') {
            Some((key, path)) => (key.to_owned(), path),
            None => (
                std::path::Path::new(file)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| file.clone()),
                file.as_str(),
            ),
        };
        let content = std::fs::read_to_string(path)
            .map_err(|e| CtlError::usage(format!("reading {path}: {e}")))?;
        insert(key, content)?;
    }
    Ok(data)
}

fn print_objects(format: Option<&OutputFormat>, created: &[Batch], lines: &[String]) {
    match format.filter(|f| !f.is_table()) {
        Some(format) => {
            let options = crate::commands::get::plain_table_options();
            printers::write_stdout(&printers::render(
                format,
                created,
                created.len() == 1,
                &options,
                false,
            ));
        }
        None => {
            for line in lines {
                printers::write_stdout(&format!("{line}\n"));
            }
        }
    }
}

async fn create_generated(
    session: Option<&Session>,
    resource: &'static ResourceType,
    object: Value,
    generated: &GeneratedArgs,
) -> Result<(), CtlError> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let (object, suffix) = match (generated.dry_run, session) {
        (DryRun::Client, _) | (_, None) => (object, " (dry run)"),
        (DryRun::None, Some(session)) => {
            let namespace = session.scope(resource, false);
            let created = session
                .client()
                .create(resource.plural, &namespace, &object)
                .await
                .map_err(|e| session.fail(e))?;
            (created, "")
        }
    };
    let line = format!("{} created{suffix}", qualified_name(resource, &name));
    print_objects(
        generated.output.as_ref(),
        &[Batch {
            resource,
            objects: vec![object],
        }],
        &[line],
    );
    Ok(())
}

/// Runs `create`. `session` is `None` only for a client-side dry run that needs no
/// cluster; `namespace` is the one objects are created in.
///
/// # Errors
/// Bad arguments or manifests, an unreachable server, or [`CtlError::Reported`] when the
/// server refused some objects.
pub async fn run(
    session: Option<&Session>,
    namespace: &str,
    args: &CreateArgs,
) -> Result<(), CtlError> {
    match &args.kind {
        Some(CreateKind::Namespace(ns)) => {
            let resource = resources::get(ResourceId::Namespace);
            create_generated(
                session,
                resource,
                namespace_manifest(&ns.name),
                &ns.generated,
            )
            .await
        }
        Some(CreateKind::Configmap(cm)) => {
            let data = configmap_data(&cm.from_literal, &cm.from_file)?;
            let resource = resources::get(ResourceId::ConfigMap);
            create_generated(
                session,
                resource,
                configmap_manifest(&cm.name, namespace, &data),
                &cm.generated,
            )
            .await
        }
        Some(CreateKind::Deployment(d)) => {
            let resource = resources::get(ResourceId::Deployment);
            let object = deployment_manifest(&d.name, namespace, &d.image, d.replicas, d.port);
            create_generated(session, resource, object, &d.generated).await
        }
        None => {
            let session = session.ok_or_else(|| CtlError::usage("create -f needs a cluster"))?;
            from_files(session, args).await
        }
    }
}

/// Whether `args` describe a client-side dry run, which needs no cluster.
pub fn is_client_dry_run(args: &CreateArgs) -> bool {
    let generated = match &args.kind {
        Some(CreateKind::Namespace(a)) => &a.generated,
        Some(CreateKind::Configmap(a)) => &a.generated,
        Some(CreateKind::Deployment(a)) => &a.generated,
        None => return false,
    };
    generated.dry_run == DryRun::Client
}

async fn from_files(session: &Session, args: &CreateArgs) -> Result<(), CtlError> {
    let objects = input::load(&args.filenames, args.recursive, "create")?;
    let mut planned = Vec::new();
    for object in &objects {
        let namespace = object
            .namespace_in(session.namespace(), session.explicit_namespace())
            .map_err(|why| {
                CtlError::usage(format!(
                    "error when creating {} of {}: {why}",
                    object.document(),
                    object.source
                ))
            })?;
        let mut body = object.object.value.clone();
        if args.save_config {
            body = with_last_applied(body);
        }
        planned.push((object.object.resource, namespace, body));
    }
    let mut failed = false;
    let mut created = Vec::new();
    let mut lines = Vec::new();
    for (resource, namespace, body) in planned {
        match session
            .client()
            .create(resource.plural, &namespace, &body)
            .await
        {
            Ok(object) => {
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let line = format!("{} created", qualified_name(resource, name));
                if args.output.as_ref().is_none_or(OutputFormat::is_table) {
                    printers::write_stdout(&format!("{line}\n"));
                }
                lines.push(line);
                created.push(Batch {
                    resource,
                    objects: vec![object],
                });
            }
            Err(e) => match session.fail(e) {
                error @ CtlError::Server(_) => {
                    eprintln!("{error}");
                    failed = true;
                }
                other => return Err(other),
            },
        }
    }
    if args.output.as_ref().is_some_and(|f| !f.is_table()) {
        print_objects(args.output.as_ref(), &created, &lines);
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

    #[test]
    fn a_generated_deployment_selects_its_own_pods() {
        let d = deployment_manifest("web", "shop", "skiff.local/web:1.0", 2, Some(8080));
        assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
        assert_eq!(d["spec"]["template"]["metadata"]["labels"]["app"], "web");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
            8080
        );
        let typed: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(d).unwrap();
        assert_eq!(typed.spec.unwrap().replicas, Some(2));
    }

    #[test]
    fn config_map_literals_need_an_equals_sign_and_distinct_keys() {
        let data = configmap_data(&["a=1".into(), "b=x=y".into()], &[]).unwrap();
        assert_eq!(data["b"], "x=y");
        assert!(configmap_data(&["novalue".into()], &[]).is_err());
        assert!(configmap_data(&["a=1".into(), "a=2".into()], &[]).is_err());
    }
}
