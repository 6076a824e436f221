//! `rollout`: follow and steer a Deployment's rollout, with kubectl's words. `status`
//! waits until it is done (or its progress deadline passes), `history` lists revisions
//! (its ReplicaSets), `undo` copies an old revision's template back, `pause`, `resume`
//! and `restart` (a new template annotation) change the Deployment.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use skiff_api::{
    client::ListParams,
    resources::{self, ResourceId, ResourceType},
};

use crate::{
    commands::delete::parse_timeout,
    error::CtlError,
    printers::{self, name::qualified_name, yaml_json::to_yaml},
    session::Session,
};

/// The revision annotation on ReplicaSets and Deployments.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// `skiffctl rollout`.
#[derive(Args, Debug)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
}

/// The deployment a rollout verb acts on: `deployment/NAME` or `deployment NAME`.
#[derive(Args, Debug)]
pub struct RolloutTarget {
    /// deployment/NAME, or TYPE NAME
    #[arg(value_name = "TYPE/NAME", required = true, num_args = 1..=2)]
    pub target: Vec<String>,
}

/// The rollout verbs.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Wait until the rollout is done, printing its progress
    Status {
        #[command(flatten)]
        target: RolloutTarget,
        /// Keep watching until the rollout is done (false: print the state once)
        #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        watch: bool,
        /// Give up after this long (`30s`, `5m`; 0 waits forever)
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_timeout)]
        timeout: Duration,
    },
    /// List the revisions, or show one with --revision
    History {
        #[command(flatten)]
        target: RolloutTarget,
        /// Show this revision's pod template
        #[arg(long, value_name = "N", default_value_t = 0)]
        revision: i64,
    },
    /// Go back to the previous revision, or to --to-revision
    Undo {
        #[command(flatten)]
        target: RolloutTarget,
        /// The revision to go back to (0: the one before the current)
        #[arg(long, value_name = "N", default_value_t = 0)]
        to_revision: i64,
    },
    /// Stop rolling out changes to the template
    Pause {
        #[command(flatten)]
        target: RolloutTarget,
    },
    /// Roll out changes again after a pause
    Resume {
        #[command(flatten)]
        target: RolloutTarget,
    },
    /// Replace every pod (a new template annotation starts a rollout)
    Restart {
        #[command(flatten)]
        target: RolloutTarget,
    },
}

/// The deployment named by `target` (`deployment/web`, `deploy web`).
///
/// # Errors
/// A type other than Deployment, or a malformed target.
pub fn deployment_name(target: &[String]) -> Result<String, CtlError> {
    let (kind, name) = match target {
        [one] => one
            .split_once('/')
            .ok_or_else(|| CtlError::usage(format!("expected TYPE/NAME, got {one:?}")))?,
        [kind, name] => (kind.as_str(), name.as_str()),
        _ => return Err(CtlError::usage("expected one deployment: TYPE/NAME")),
    };
    match resources::resolve(kind) {
        Some(r) if r.id == ResourceId::Deployment => Ok(name.to_string()),
        Some(r) => Err(CtlError::usage(format!(
            "no rollout support for {}; only deployments roll out",
            r.plural
        ))),
        None => Err(CtlError::usage(format!(
            "the server doesn't have a resource type \"{kind}\""
        ))),
    }
}

fn deployments() -> &'static ResourceType {
    resources::get(ResourceId::Deployment)
}

/// kubectl's `DeploymentStatusViewer`: what to print and whether the rollout is done.
///
/// # Errors
/// When the Deployment's progress deadline has passed.
pub fn status_message(deployment: &Value) -> Result<(String, bool), CtlError> {
    let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
    let int = |v: &Value| v.as_i64().unwrap_or(0);
    let status = &deployment["status"];
    if int(&deployment["metadata"]["generation"]) > int(&status["observedGeneration"]) {
        return Ok((
            "Waiting for deployment spec update to be observed...".into(),
            false,
        ));
    }
    let progressing = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Progressing");
    if progressing.is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded") {
        return Err(CtlError::usage(format!(
            "deployment \"{name}\" exceeded its progress deadline"
        )));
    }
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let updated = int(&status["updatedReplicas"]);
    let total = int(&status["replicas"]);
    let available = int(&status["availableReplicas"]);
    let waiting = |what: String| {
        (
            format!("Waiting for deployment \"{name}\" rollout to finish: {what}"),
            false,
        )
    };
    Ok(if updated < replicas {
        waiting(format!(
            "{updated} out of {replicas} new replicas have been updated..."
        ))
    } else if total > updated {
        waiting(format!(
            "{} old replicas are pending termination...",
            total - updated
        ))
    } else if available < updated {
        waiting(format!(
            "{available} of {updated} updated replicas are available..."
        ))
    } else {
        (
            format!("deployment \"{name}\" successfully rolled out"),
            true,
        )
    })
}

/// The revision annotation (0 when absent).
pub fn revision_of(object: &Value) -> i64 {
    object["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The ReplicaSets `deployment` controls, oldest revision first.
pub fn owned_replica_sets(deployment: &Value, replica_sets: &[Value]) -> Vec<Value> {
    let uid = &deployment["metadata"]["uid"];
    let mut owned: Vec<Value> = replica_sets
        .iter()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r["controller"] == true && r["uid"] == *uid)
                })
        })
        .cloned()
        .collect();
    owned.sort_by_key(revision_of);
    owned
}

/// `rollout history` without --revision: kubectl's table.
pub fn history_table(name: &str, replica_sets: &[Value]) -> String {
    let mut out = format!(
        "{}\nREVISION  CHANGE-CAUSE\n",
        qualified_name(deployments(), name)
    );
    for rs in replica_sets {
        let revision = revision_of(rs);
        if revision == 0 {
            continue;
        }
        let cause = rs["metadata"]["annotations"][CHANGE_CAUSE]
            .as_str()
            .unwrap_or("<none>");
        out.push_str(&format!("{revision:<10}{cause}\n"));
    }
    out
}

/// The template of `rs` without the controller's hash label: what undo puts back.
pub fn template_without_hash(rs: &Value) -> Value {
    let mut template = rs["spec"]["template"].clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove(POD_TEMPLATE_HASH);
    }
    template
}

/// What `rollout undo` does to `deployment`: the patch to send, or the message to print
/// when nothing is to be done.
///
/// # Errors
/// A paused Deployment, no history, or no such revision.
pub fn undo_patch(
    deployment: &Value,
    replica_sets: &[Value],
    to_revision: i64,
) -> Result<Result<Value, String>, CtlError> {
    let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
    if deployment["spec"]["paused"] == true {
        return Err(CtlError::usage(format!(
            "you cannot rollback a paused deployment; resume it first with 'skiffctl rollout resume deployment/{name}' and try again"
        )));
    }
    let owned = owned_replica_sets(deployment, replica_sets);
    let target = if to_revision == 0 {
        let mut revisions: Vec<i64> = owned.iter().map(revision_of).collect();
        revisions.sort_unstable();
        revisions.dedup();
        let Some(&previous) = revisions.iter().rev().nth(1) else {
            return Err(CtlError::usage(format!(
                "no rollout history found for deployment \"{name}\""
            )));
        };
        previous
    } else {
        to_revision
    };
    let Some(rs) = owned.iter().find(|rs| revision_of(rs) == target) else {
        return Err(CtlError::usage(format!(
            "unable to find specified revision {target} in history"
        )));
    };
    let template = template_without_hash(rs);
    if template == deployment["spec"]["template"] {
        return Ok(Err(format!(
            "{} skipped rollback (current template already matches revision {target})",
            qualified_name(deployments(), name)
        )));
    }
    let mut patch = json!({"spec": {"template": template}});
    if let Some(cause) = rs["metadata"]["annotations"][CHANGE_CAUSE].as_str() {
        patch["metadata"] = json!({"annotations": {CHANGE_CAUSE: cause}});
    }
    Ok(Ok(patch))
}

/// Runs a rollout verb.
///
/// # Errors
/// From the server, or as each verb says.
pub async fn run(session: &Session, args: &RolloutArgs) -> Result<(), CtlError> {
    let client = session.client();
    let namespace = session.namespace();
    let get = |name: String| async move {
        client
            .get("deployments", namespace, &name)
            .await
            .map_err(|e| session.fail(e))
    };
    let qualified = |name: &str| qualified_name(deployments(), name);
    let patch = |name: String, body: Value| async move {
        client
            .patch("deployments", namespace, &name, &body, "")
            .await
            .map_err(|e| session.fail(e))
    };
    let replica_sets = || async {
        client
            .list("replicasets", namespace, &ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|e| session.fail(e))
    };
    match &args.command {
        RolloutCommand::Status {
            target,
            watch,
            timeout,
        } => {
            let name = deployment_name(&target.target)?;
            let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + *timeout);
            let mut last = String::new();
            loop {
                let (message, done) = status_message(&get(name.clone()).await?)?;
                if message != last {
                    printers::write_stdout(&format!("{message}\n"));
                    last = message;
                }
                if done || !watch {
                    return Ok(());
                }
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    return Err(CtlError::usage("timed out waiting for the condition"));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        RolloutCommand::History { target, revision } => {
            let name = deployment_name(&target.target)?;
            let deployment = get(name.clone()).await?;
            let owned = owned_replica_sets(&deployment, &replica_sets().await?);
            if *revision == 0 {
                printers::write_stdout(&history_table(&name, &owned));
                return Ok(());
            }
            let rs = owned
                .iter()
                .find(|rs| revision_of(rs) == *revision)
                .ok_or_else(|| CtlError::usage("unable to find the specified revision"))?;
            let template = to_yaml(&template_without_hash(rs));
            let indented: String = template.lines().map(|l| format!("  {l}\n")).collect();
            printers::write_stdout(&format!(
                "{} with revision #{revision}\nPod Template:\n{indented}",
                qualified(&name)
            ));
            Ok(())
        }
        RolloutCommand::Undo {
            target,
            to_revision,
        } => {
            let name = deployment_name(&target.target)?;
            let deployment = get(name.clone()).await?;
            match undo_patch(&deployment, &replica_sets().await?, *to_revision)? {
                Ok(body) => {
                    patch(name.clone(), body).await?;
                    printers::write_stdout(&format!("{} rolled back\n", qualified(&name)));
                }
                Err(message) => printers::write_stdout(&format!("{message}\n")),
            }
            Ok(())
        }
        RolloutCommand::Pause { target } | RolloutCommand::Resume { target } => {
            let pause = matches!(args.command, RolloutCommand::Pause { .. });
            let name = deployment_name(&target.target)?;
            let deployment = get(name.clone()).await?;
            let paused = deployment["spec"]["paused"] == true;
            if paused == pause {
                let state = if pause {
                    "already paused"
                } else {
                    "not paused"
                };
                return Err(CtlError::usage(format!(
                    "{}.apps \"{name}\" is {state}",
                    deployments().plural
                )));
            }
            patch(name.clone(), json!({"spec": {"paused": pause}})).await?;
            let done = if pause { "paused" } else { "resumed" };
            printers::write_stdout(&format!("{} {done}\n", qualified(&name)));
            Ok(())
        }
        RolloutCommand::Restart { target } => {
            let name = deployment_name(&target.target)?;
            let deployment = get(name.clone()).await?;
            if deployment["spec"]["paused"] == true {
                return Err(CtlError::usage(format!(
                    "{}.apps \"{name}\" can't restart paused deployment (run rollout resume first)",
                    deployments().plural
                )));
            }
            let now = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            patch(
                name.clone(),
                json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}),
            )
            .await?;
            printers::write_stdout(&format!("{} restarted\n", qualified(&name)));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(generation: i64, observed: i64, status: Value) -> Value {
        let mut status = status;
        status["observedGeneration"] = json!(observed);
        json!({
            "metadata": {"name": "web", "uid": "d1", "generation": generation},
            "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "img:2"}]}}},
            "status": status,
        })
    }

    fn rs(revision: i64, image: &str, owner: &str) -> Value {
        json!({
            "metadata": {"name": format!("web-{revision}"),
                "annotations": {REVISION: revision.to_string()},
                "ownerReferences": [{"uid": owner, "controller": true, "kind": "Deployment", "name": "web"}]},
            "spec": {"template": {"metadata": {"labels": {"app": "web", POD_TEMPLATE_HASH: "abc"}},
                "spec": {"containers": [{"name": "c", "image": image}]}}},
        })
    }

    #[test]
    fn status_reads_like_kubectl_at_each_stage_of_a_rollout() {
        let msg = |d: Value| status_message(&d).unwrap();
        assert_eq!(
            msg(deployment(2, 1, json!({}))),
            (
                "Waiting for deployment spec update to be observed...".into(),
                false
            )
        );
        assert_eq!(
            msg(deployment(
                2,
                2,
                json!({"updatedReplicas": 1, "replicas": 4})
            ))
            .0,
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."
        );
        assert_eq!(
            msg(deployment(
                2,
                2,
                json!({"updatedReplicas": 3, "replicas": 4})
            ))
            .0,
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
        );
        assert_eq!(
            msg(deployment(
                2,
                2,
                json!({"updatedReplicas": 3, "replicas": 3, "availableReplicas": 2})
            ))
            .0,
            "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available..."
        );
        assert_eq!(
            msg(deployment(
                2,
                2,
                json!({"updatedReplicas": 3, "replicas": 3, "availableReplicas": 3})
            )),
            ("deployment \"web\" successfully rolled out".into(), true)
        );
    }

    #[test]
    fn status_fails_once_the_progress_deadline_has_passed() {
        let d = deployment(
            1,
            1,
            json!({"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
        );
        let error = status_message(&d).unwrap_err();
        assert_eq!(
            error.to_string(),
            "error: deployment \"web\" exceeded its progress deadline"
        );
    }

    #[test]
    fn history_lists_the_deployments_own_revisions_in_order() {
        let d = deployment(1, 1, json!({}));
        let mut second = rs(2, "img:2", "d1");
        second["metadata"]["annotations"][CHANGE_CAUSE] = json!("set image");
        let owned =
            owned_replica_sets(&d, &[second, rs(1, "img:1", "d1"), rs(7, "img:9", "other")]);
        assert_eq!(
            history_table("web", &owned),
            "deployment.apps/web\nREVISION  CHANGE-CAUSE\n1         <none>\n2         set image\n"
        );
    }

    #[test]
    fn undo_copies_the_previous_revisions_template_without_its_hash_label() {
        let d = deployment(1, 1, json!({}));
        let rss = [rs(1, "img:1", "d1"), rs(2, "img:2", "d1")];
        let patch = undo_patch(&d, &rss, 0).unwrap().unwrap();
        assert_eq!(
            patch["spec"]["template"]["spec"]["containers"][0]["image"],
            "img:1"
        );
        assert_eq!(
            patch["spec"]["template"]["metadata"]["labels"],
            json!({"app": "web"})
        );
        let same = undo_patch(&d, &rss, 2).unwrap().unwrap_err();
        assert_eq!(
            same,
            "deployment.apps/web skipped rollback (current template already matches revision 2)"
        );
        let missing = undo_patch(&d, &rss, 5).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "error: unable to find specified revision 5 in history"
        );
    }

    #[test]
    fn undo_refuses_a_paused_deployment_and_one_without_history() {
        let mut d = deployment(1, 1, json!({}));
        assert!(
            undo_patch(&d, &[rs(2, "img:2", "d1")], 0)
                .unwrap_err()
                .to_string()
                .contains("no rollout history")
        );
        d["spec"]["paused"] = json!(true);
        assert!(
            undo_patch(&d, &[], 0)
                .unwrap_err()
                .to_string()
                .contains("paused deployment")
        );
    }

    #[test]
    fn targets_name_a_deployment_either_way() {
        let t = |a: &[&str]| deployment_name(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(t(&["deployment/web"]).unwrap(), "web");
        assert_eq!(t(&["deploy", "web"]).unwrap(), "web");
        assert!(t(&["pods/web"]).is_err());
        assert!(t(&["web"]).is_err());
    }
}
