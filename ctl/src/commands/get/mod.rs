//! `get`: list objects, or fetch them by name, and print them as a table (kubectl's
//! columns per kind), YAML, JSON or names. With `--watch` it keeps printing a line per
//! change ([`watch`]).
//!
//! The server does the filtering (`-l`, `--field-selector`); this module gathers one
//! [`Batch`] per type asked for and hands them to the printers.

pub mod watch;

use clap::Args;
use jiff::Timestamp;
use skiff_api::status::Reason;

use crate::{
    columns::TableOptions,
    error::CtlError,
    printers::{self, Batch, OutputFormat},
    session::Session,
    target::{self, Targets},
};

/// `skiffctl get`.
#[derive(Args, Debug, Default)]
#[command(
    after_help = "Examples:\n  skiffctl get pods\n  skiffctl get deploy,svc -n shop -o wide\n  skiffctl get pod web-1 -o yaml\n  skiffctl get pods -A -l app=web --show-labels\n  skiffctl get deployments -w"
)]
pub struct GetArgs {
    /// What to get: TYPE[,TYPE...] [NAME...], TYPE/NAME..., or `all` (pods, services and
    /// the workload controllers); types by name, plural, short name or kind (po, svc,
    /// deploy, deployments.apps)
    #[arg(value_name = "TYPE[,TYPE...] [NAME...]")]
    pub targets: Vec<String>,
    /// Output format: wide (more columns), yaml, json, name (kind/name),
    /// jsonpath=TEMPLATE (`{.spec.clusterIP}`) or custom-columns=HEADER:PATH,... [default: a
    /// table]
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
    /// Only objects whose labels match this selector (`app=web`, `tier in (a,b)`, `!legacy`)
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Only objects whose fields match (`metadata.name=web`, `spec.nodeName!=n1`)
    #[arg(long, value_name = "SELECTOR")]
    pub field_selector: Option<String>,
    /// Look in every namespace; adds a NAMESPACE column
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After printing, keep watching and print a line for every change (Ctrl-C stops)
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Watch without printing the current objects first
    #[arg(long)]
    pub watch_only: bool,
    /// With --watch, show the kind of each change (ADDED, MODIFIED, DELETED)
    #[arg(long)]
    pub output_watch_events: bool,
    /// Add a LABELS column with every label
    #[arg(long)]
    pub show_labels: bool,
    /// Add a column with the value of each of these labels (comma-separated or repeated)
    #[arg(
        short = 'L',
        long = "label-columns",
        value_name = "KEY",
        value_delimiter = ','
    )]
    pub label_columns: Vec<String>,
    /// Print tables without the header line
    #[arg(long)]
    pub no_headers: bool,
    /// Say nothing about named objects that do not exist
    #[arg(long)]
    pub ignore_not_found: bool,
}

impl GetArgs {
    /// The table layout these flags ask for.
    pub fn table_options(&self, several_types: bool, now: Timestamp) -> TableOptions {
        TableOptions {
            wide: self.output == Some(OutputFormat::Wide),
            with_namespace: self.all_namespaces,
            with_kind: several_types,
            show_labels: self.show_labels,
            label_columns: self.label_columns.clone(),
            now,
        }
    }

    fn format(&self) -> OutputFormat {
        self.output.clone().unwrap_or_default()
    }
}

/// A table layout with no extra columns, for commands that print objects on the side.
pub fn plain_table_options() -> TableOptions {
    GetArgs::default().table_options(false, Timestamp::now())
}

/// The message when a list finds nothing: `No resources found in default namespace.`
pub fn nothing_found(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("No resources found in {ns} namespace."),
        None => "No resources found".to_owned(),
    }
}

/// Checks flag combinations kubectl refuses.
fn check(args: &GetArgs, targets: &Targets) -> Result<(), CtlError> {
    let named = targets.targets.iter().any(|t| !t.names.is_empty());
    if named && args.selector.is_some() {
        return Err(CtlError::usage(
            "name cannot be provided when a selector is specified",
        ));
    }
    if named && args.all_namespaces {
        return Err(CtlError::usage(
            "a resource cannot be retrieved by name across all namespaces",
        ));
    }
    Ok(())
}

/// Runs `get`.
///
/// # Errors
/// Bad arguments, an unreachable server, a server error, or [`CtlError::Reported`] when
/// some named objects were not found.
pub async fn run(session: &Session, args: &GetArgs) -> Result<(), CtlError> {
    let targets = target::parse(&args.targets, "get")?;
    check(args, &targets)?;
    if args.watch || args.watch_only {
        return watch::run(session, args, &targets).await;
    }
    let selector = args.selector.as_deref().unwrap_or_default();
    let field_selector = args.field_selector.as_deref().unwrap_or_default();
    let mut batches = Vec::new();
    let mut failed = false;
    let mut listed = false;
    for target in &targets.targets {
        let resource = target.resource;
        let namespace = session.scope(resource, args.all_namespaces);
        let mut objects = Vec::new();
        if target.names.is_empty() {
            listed = true;
            let (items, _) = session
                .list(resource, &namespace, selector, field_selector)
                .await?;
            objects = items;
        } else {
            for name in &target.names {
                match session
                    .client()
                    .get(resource.plural, &namespace, name)
                    .await
                {
                    Ok(object) => objects.push(object),
                    Err(e) if e.is(Reason::NotFound) && args.ignore_not_found => {}
                    Err(e) => match session.fail(e) {
                        error @ CtlError::Server(_) => {
                            eprintln!("{error}");
                            failed = true;
                        }
                        other => return Err(other),
                    },
                }
            }
        }
        batches.push(Batch { resource, objects });
    }
    let format = args.format();
    let empty = batches.iter().all(|b| b.objects.is_empty());
    if empty && listed && !format.is_document() {
        let namespaced = targets.targets.iter().any(|t| t.resource.namespaced());
        let scope = (namespaced && !args.all_namespaces).then_some(session.namespace());
        eprintln!("{}", nothing_found(scope));
    } else if !empty || listed {
        let options = args.table_options(targets.several_types, Timestamp::now());
        printers::write_stdout(&printers::render(
            &format,
            &batches,
            targets.single_named(),
            &options,
            args.no_headers,
        ));
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
    fn an_empty_list_names_the_namespace_it_looked_in() {
        assert_eq!(
            nothing_found(Some("default")),
            "No resources found in default namespace."
        );
        assert_eq!(nothing_found(None), "No resources found");
    }
}
