//! `logs`: print a container's log through the API server (pods/log), like kubectl:
//! `skiffctl logs web [-c app] [-f] [--previous] [--tail 20] [--timestamps]`.

use std::io::Write;

use clap::Args;
use futures::StreamExt;
use serde_json::Value;
use skiff_api::proto::LogsRequest;

use crate::{error::CtlError, session::Session};

/// `skiffctl logs`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  skiffctl logs web\n  skiffctl logs -f web -c sidecar\n  skiffctl logs --previous --tail 20 pod/web"
)]
pub struct LogsArgs {
    /// The pod: NAME or pod/NAME
    #[arg(value_name = "POD")]
    pub pod: String,
    /// The container (default: the pod's only one, else its default container)
    #[arg(short = 'c', long, value_name = "NAME")]
    pub container: Option<String>,
    /// Keep streaming new lines
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The previous instance of the container (before its last restart)
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only the last N lines (-1: all)
    #[arg(long, value_name = "N", default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// Put each line's RFC 3339 timestamp in front of it
    #[arg(long)]
    pub timestamps: bool,
}

/// The pod's name from `NAME` or `pod/NAME` (`pods/`, `po/`).
///
/// # Errors
/// Another type than pods.
pub fn pod_name(text: &str) -> Result<String, CtlError> {
    match text.split_once('/') {
        None => Ok(text.to_string()),
        Some(("pod" | "pods" | "po", name)) if !name.is_empty() => Ok(name.to_string()),
        Some((kind, _)) => Err(CtlError::usage(format!(
            "cannot use {kind}: only pods have logs and exec (POD or pod/NAME)"
        ))),
    }
}

/// The container to use when none is named, like kubectl: the pod's
/// `kubectl.kubernetes.io/default-container`, else its first (with a note when there are
/// several).
pub fn default_container(pod: &Value) -> Option<(String, Option<String>)> {
    let names: Vec<&str> = pod
        .pointer("/spec/containers")?
        .as_array()?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    if let Some(name) = pod
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
        .and_then(Value::as_str)
        .filter(|n| names.contains(n))
    {
        return Some((name.to_string(), None));
    }
    let first = (*names.first()?).to_string();
    let note = (names.len() > 1).then(|| {
        format!(
            "Defaulted container \"{first}\" out of: {}",
            names.join(", ")
        )
    });
    Some((first, note))
}

/// The container a command means: the flag, else the pod's default.
///
/// # Errors
/// When the pod cannot be read.
pub async fn container(
    session: &Session,
    pod: &str,
    named: Option<&str>,
) -> Result<String, CtlError> {
    if let Some(name) = named {
        return Ok(name.to_string());
    }
    let object = session
        .client()
        .get("pods", session.namespace(), pod)
        .await
        .map_err(|e| session.fail(e))?;
    match default_container(&object) {
        Some((name, note)) => {
            if let Some(note) = note {
                eprintln!("{note}");
            }
            Ok(name)
        }
        // The server says what is wrong.
        None => Ok(String::new()),
    }
}

/// Runs `logs`.
///
/// # Errors
/// From the server (no such pod, container or previous instance, the node unreachable).
pub async fn run(session: &Session, args: &LogsArgs) -> Result<(), CtlError> {
    let pod = pod_name(&args.pod)?;
    let container = container(session, &pod, args.container.as_deref()).await?;
    let request = LogsRequest {
        namespace: session.namespace().to_string(),
        pod,
        pod_uid: String::new(),
        container,
        follow: args.follow,
        previous: args.previous,
        tail_lines: (args.tail >= 0).then_some(args.tail),
        timestamps: args.timestamps,
    };
    let mut stream = session
        .client()
        .pod_logs(request)
        .await
        .map_err(|e| session.fail(e))?;
    let mut stdout = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| session.fail(e))?;
        if let Err(error) = stdout.write_all(&chunk).and_then(|()| stdout.flush()) {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(CtlError::usage(format!(
                "writing to standard output: {error}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_pod_is_named_alone_or_with_its_type() {
        assert_eq!(pod_name("web").unwrap(), "web");
        assert_eq!(pod_name("pod/web").unwrap(), "web");
        assert_eq!(pod_name("po/web").unwrap(), "web");
        assert!(pod_name("deploy/web").is_err());
    }

    #[test]
    fn the_default_container_is_the_annotated_one_else_the_first_with_a_note() {
        let pod = json!({"spec": {"containers": [{"name": "app"}, {"name": "sidecar"}]}});
        let (name, note) = default_container(&pod).unwrap();
        assert_eq!(name, "app");
        assert_eq!(
            note.unwrap(),
            "Defaulted container \"app\" out of: app, sidecar"
        );
        let annotated = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/default-container": "sidecar"}},
            "spec": {"containers": [{"name": "app"}, {"name": "sidecar"}]},
        });
        assert_eq!(
            default_container(&annotated).unwrap(),
            ("sidecar".into(), None)
        );
        let single = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(default_container(&single).unwrap(), ("only".into(), None));
    }
}
