//! `scale`: set the replicas of Deployments and ReplicaSets, like kubectl: `skiffctl scale
//! --replicas=3 deployment/web` prints `deployment.apps/web scaled`.

use clap::Args;
use serde_json::json;
use skiff_api::resources::{ResourceId, ResourceType};

use crate::{error::CtlError, printers, printers::name::qualified_name, session::Session, target};

/// `skiffctl scale`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  skiffctl scale --replicas=3 deployment/web\n  skiffctl scale rs web-7d9c --replicas 0"
)]
pub struct ScaleArgs {
    /// What to scale: TYPE NAME... or TYPE/NAME...
    #[arg(value_name = "TYPE [NAME...]", required = true)]
    pub targets: Vec<String>,
    /// The new number of replicas
    #[arg(long, value_name = "N")]
    pub replicas: i32,
    /// Only scale when the object has this many replicas now
    #[arg(long, value_name = "N", default_value_t = -1, allow_negative_numbers = true)]
    pub current_replicas: i32,
}

/// The objects to scale, checked to be scalable.
///
/// # Errors
/// Types without replicas, a negative count, or nothing named.
pub fn scalable_targets(
    args: &ScaleArgs,
) -> Result<Vec<(&'static ResourceType, String)>, CtlError> {
    if args.replicas < 0 {
        return Err(CtlError::usage(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0",
        ));
    }
    let targets = target::parse(&args.targets, "scale")?;
    let mut out = Vec::new();
    for t in targets.targets {
        if !matches!(
            t.resource.id,
            ResourceId::Deployment | ResourceId::ReplicaSet
        ) {
            return Err(CtlError::usage(format!(
                "cannot scale {}: only deployments and replicasets have replicas",
                t.resource.plural
            )));
        }
        if t.names.is_empty() {
            return Err(CtlError::usage(
                "resource(s) were provided, but no name was specified",
            ));
        }
        out.extend(t.names.into_iter().map(|n| (t.resource, n)));
    }
    Ok(out)
}

/// Runs `scale`.
///
/// # Errors
/// From the server, or a precondition that does not hold.
pub async fn run(session: &Session, args: &ScaleArgs) -> Result<(), CtlError> {
    for (resource, name) in scalable_targets(args)? {
        let client = session.client();
        let namespace = session.namespace();
        let mut patch = json!({"spec": {"replicas": args.replicas}});
        if args.current_replicas >= 0 {
            let object = client
                .get(resource.plural, namespace, &name)
                .await
                .map_err(|e| session.fail(e))?;
            if object["spec"]["replicas"].as_i64() != Some(args.current_replicas.into()) {
                return Err(CtlError::usage(format!(
                    "Expected replicas to be {}, was {}",
                    args.current_replicas, object["spec"]["replicas"]
                )));
            }
            patch["metadata"] = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
        }
        client
            .patch(resource.plural, namespace, &name, &patch, "")
            .await
            .map_err(|e| session.fail(e))?;
        printers::write_stdout(&format!("{} scaled\n", qualified_name(resource, &name)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(targets: &[&str], replicas: i32) -> ScaleArgs {
        ScaleArgs {
            targets: targets.iter().map(|s| s.to_string()).collect(),
            replicas,
            current_replicas: -1,
        }
    }

    #[test]
    fn scale_accepts_deployments_and_replica_sets_by_either_form() {
        let t = scalable_targets(&args(&["deploy/web", "rs/web-1"], 2)).unwrap();
        let names: Vec<_> = t.iter().map(|(r, n)| qualified_name(r, n)).collect();
        assert_eq!(names, ["deployment.apps/web", "replicaset.apps/web-1"]);
        let t = scalable_targets(&args(&["deployment", "a", "b"], 2)).unwrap();
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn scale_refuses_types_without_replicas_and_negative_counts() {
        assert!(
            scalable_targets(&args(&["pods/web"], 1))
                .unwrap_err()
                .to_string()
                .contains("cannot scale pods")
        );
        assert!(scalable_targets(&args(&["deploy/web"], -1)).is_err());
        assert!(scalable_targets(&args(&["deploy"], 1)).is_err());
    }
}
