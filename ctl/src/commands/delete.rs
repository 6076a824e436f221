//! `delete`: delete objects named by type and name, by selector (`-l`, `--all`), or as
//! written in manifests (`-f`). Prints `pod "web" deleted` per object, like kubectl, and
//! with `--wait` waits until each is really gone (finalizers and graceful termination can
//! keep an object for a while after the request).

use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};
use serde_json::Value;
use skiff_api::{client::DeleteParams, resources::ResourceType, status::Reason};

use crate::{
    error::CtlError,
    input,
    printers::{
        self,
        name::{kind_prefix, qualified_name},
    },
    session::Session,
    target,
};

/// How the objects an object owns are deleted (`--cascade`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Cascade {
    /// Delete the object now; the garbage collector deletes what it owns afterwards.
    #[default]
    Background,
    /// Delete what the object owns first, then the object.
    Foreground,
    /// Leave what the object owns, without owner.
    Orphan,
    /// The same as background (kubectl's old spelling).
    #[value(name = "true", hide = true)]
    True,
    /// The same as orphan (kubectl's old spelling).
    #[value(name = "false", hide = true)]
    False,
}

impl Cascade {
    /// The API's propagationPolicy.
    pub fn propagation_policy(self) -> &'static str {
        match self {
            Cascade::Background | Cascade::True => "Background",
            Cascade::Foreground => "Foreground",
            Cascade::Orphan | Cascade::False => "Orphan",
        }
    }
}

/// `skiffctl delete`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  skiffctl delete pod web-1\n  skiffctl delete deploy/web svc/web\n  skiffctl delete -f app.yaml\n  skiffctl delete pods -l app=web\n  skiffctl delete pods --all --grace-period=0 --force"
)]
pub struct DeleteArgs {
    /// What to delete: TYPE NAME... or TYPE/NAME...; a TYPE alone needs --all or -l
    #[arg(value_name = "TYPE [NAME...]")]
    pub targets: Vec<String>,
    /// Delete the objects in these manifests (file, directory or `-`); repeatable
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    pub filenames: Vec<String>,
    /// Also read the subdirectories of directories given with -f
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Delete the objects whose labels match this selector
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Delete the objects whose fields match this selector
    #[arg(long, value_name = "SELECTOR")]
    pub field_selector: Option<String>,
    /// Delete every object of the type (in the namespace)
    #[arg(long)]
    pub all: bool,
    /// With --all or -l, look in every namespace
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Seconds a pod gets to stop; -1 uses the pod's own terminationGracePeriodSeconds
    #[arg(long, value_name = "SECONDS", default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Stop at once (grace period 1)
    #[arg(long)]
    pub now: bool,
    /// Remove at once from the API without waiting for the node to stop the pod (grace
    /// period 0 unless --grace-period says otherwise)
    #[arg(long)]
    pub force: bool,
    /// What happens to the objects this one owns: background, foreground or orphan
    #[arg(long, value_enum, value_name = "MODE", default_value_t = Cascade::Background, num_args = 0..=1, default_missing_value = "background")]
    pub cascade: Cascade,
    /// Wait until the objects are gone before returning
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = ArgAction::Set)]
    pub wait: bool,
    /// With --wait, how long to wait (`30s`, `5m`, `1h`; 0 waits for a week)
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Say nothing about objects that do not exist
    #[arg(long)]
    pub ignore_not_found: bool,
    /// `name`: print only `kind/name` of each deleted object
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = ["name"])]
    pub output: Option<String>,
}

/// Parses `30s`, `5m`, `1h` or plain seconds.
///
/// # Errors
/// Anything else.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 5m or 1h"))?;
    let seconds = match unit {
        "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        _ => return Err(format!("{text:?} is not a duration like 30s, 5m or 1h")),
    };
    Ok(Duration::from_secs(seconds))
}

/// `deployment.apps "web" deleted`.
pub fn deleted_line(resource: &ResourceType, name: &str, force: bool) -> String {
    let how = if force { "force deleted" } else { "deleted" };
    format!("{} \"{name}\" {how}", kind_prefix(resource))
}

/// One object to delete.
#[derive(Clone, Debug)]
struct Doomed {
    resource: &'static ResourceType,
    namespace: String,
    name: String,
}

impl DeleteArgs {
    fn params(&self) -> DeleteParams {
        let grace = if self.grace_period >= 0 {
            Some(self.grace_period)
        } else if self.now {
            Some(1)
        } else if self.force {
            Some(0)
        } else {
            None
        };
        DeleteParams {
            grace_period_seconds: grace,
            propagation_policy: self.cascade.propagation_policy().to_owned(),
            precondition_resource_version: String::new(),
        }
    }
}

/// What `args` name, resolved to objects (listing for `--all` and selectors).
async fn collect(session: &Session, args: &DeleteArgs) -> Result<Vec<Doomed>, CtlError> {
    if !args.filenames.is_empty() {
        if !args.targets.is_empty() {
            return Err(CtlError::usage(
                "name or type arguments cannot be given together with -f",
            ));
        }
        let objects = input::load(&args.filenames, args.recursive, "delete")?;
        return objects
            .iter()
            .map(|o| {
                let name = o.object.name().ok_or_else(|| {
                    CtlError::usage(format!(
                        "{} of {} ({}) has no metadata.name",
                        o.document(),
                        o.source,
                        o.object.resource.kind
                    ))
                })?;
                let namespace = o
                    .namespace_in(session.namespace(), session.explicit_namespace())
                    .map_err(CtlError::usage)?;
                Ok(Doomed {
                    resource: o.object.resource,
                    namespace,
                    name: name.to_owned(),
                })
            })
            .collect();
    }
    let targets = target::parse(&args.targets, "delete")?;
    let by_selector = args.all || args.selector.is_some() || args.field_selector.is_some();
    let mut doomed = Vec::new();
    for target in targets.targets {
        let resource = target.resource;
        if !target.names.is_empty() {
            if by_selector {
                return Err(CtlError::usage(
                    "names cannot be given together with --all or a selector",
                ));
            }
            let namespace = session.scope(resource, false);
            doomed.extend(target.names.into_iter().map(|name| Doomed {
                resource,
                namespace: namespace.clone(),
                name,
            }));
            continue;
        }
        if !by_selector {
            return Err(CtlError::usage(
                "resource(s) were provided, but no name was specified; name objects, or use \
                 --all or -l to delete by selector",
            ));
        }
        let namespace = session.scope(resource, args.all_namespaces);
        let (items, _) = session
            .list(
                resource,
                &namespace,
                args.selector.as_deref().unwrap_or_default(),
                args.field_selector.as_deref().unwrap_or_default(),
            )
            .await?;
        let text = |o: &Value, key: &str| {
            o.pointer(&format!("/metadata/{key}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        doomed.extend(items.iter().map(|o| Doomed {
            resource,
            namespace: text(o, "namespace"),
            name: text(o, "name"),
        }));
    }
    if doomed.is_empty() {
        eprintln!("No resources found");
    }
    Ok(doomed)
}

/// Polls until the object of `uid` is gone (or replaced by one with another uid).
async fn wait_gone(session: &Session, object: &Doomed, uid: &str) -> Result<bool, CtlError> {
    loop {
        match session
            .client()
            .get(object.resource.plural, &object.namespace, &object.name)
            .await
        {
            Err(e) if e.is(Reason::NotFound) => return Ok(true),
            Err(e) => return Err(session.fail(e)),
            Ok(live) => {
                if live.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
                    return Ok(true);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `delete`.
///
/// # Errors
/// Bad arguments, an unreachable server, or [`CtlError::Reported`] when some objects
/// could not be deleted.
pub async fn run(session: &Session, args: &DeleteArgs) -> Result<(), CtlError> {
    let doomed = collect(session, args).await?;
    let params = args.params();
    let force = args.force && params.grace_period_seconds == Some(0);
    if force {
        eprintln!(
            "Warning: Immediate deletion does not wait for confirmation that the running \
             resource has been terminated. The resource may continue to run on the cluster \
             indefinitely."
        );
    }
    let mut failed = false;
    let mut deleted = Vec::new();
    for object in doomed {
        match session
            .client()
            .delete(
                object.resource.plural,
                &object.namespace,
                &object.name,
                &params,
            )
            .await
        {
            Ok(last) => {
                let line = if args.output.is_some() {
                    qualified_name(object.resource, &object.name)
                } else {
                    deleted_line(object.resource, &object.name, force)
                };
                printers::write_stdout(&(line + "\n"));
                let uid = last
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                deleted.push((object, uid));
            }
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
    if args.wait && !deleted.is_empty() {
        let timeout = if args.timeout.is_zero() {
            Duration::from_secs(7 * 24 * 3600)
        } else {
            args.timeout
        };
        let all_gone = async {
            for (object, uid) in &deleted {
                wait_gone(session, object, uid).await?;
            }
            Ok::<_, CtlError>(())
        };
        match tokio::time::timeout(timeout, all_gone).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(CtlError::usage(format!(
                    "timed out after {}s waiting for the deleted objects to go away \
                     (finalizers or a node may still be holding them)",
                    timeout.as_secs()
                )));
            }
        }
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
    use skiff_api::resources::resolve;

    #[test]
    fn deletions_are_reported_like_kubectl_reports_them() {
        assert_eq!(
            deleted_line(resolve("po").unwrap(), "x", false),
            "pod \"x\" deleted"
        );
        assert_eq!(
            deleted_line(resolve("deploy").unwrap(), "web", true),
            "deployment.apps \"web\" force deleted"
        );
    }

    #[test]
    fn timeouts_read_seconds_minutes_and_hours() {
        assert_eq!(parse_timeout("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_timeout("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("12"), Ok(Duration::from_secs(12)));
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn cascade_modes_map_to_propagation_policies() {
        assert_eq!(Cascade::Background.propagation_policy(), "Background");
        assert_eq!(Cascade::Foreground.propagation_policy(), "Foreground");
        assert_eq!(Cascade::Orphan.propagation_policy(), "Orphan");
        assert_eq!(Cascade::False.propagation_policy(), "Orphan");
    }
}
