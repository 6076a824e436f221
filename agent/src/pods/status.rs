//! Pod status from what the runtime reports: each container's attempts (from containerd
//! labels and task state) become `containerStatuses` (state, lastState, restartCount), and
//! those the pod's phase and conditions, as kubelet computes them. Pure functions.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::runtime::{ContainerRecord, TaskState, labels};

/// One attempt of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub id: String,
    pub attempt: u32,
    pub state: AttemptState,
    pub started_at: Option<String>,
}

/// Where an attempt is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptState {
    /// Created, not started.
    Created,
    Running {
        pid: u32,
    },
    /// The task exited but the agent has not recorded it yet.
    Exited {
        code: i32,
        exited_at: i64,
    },
    /// Exit recorded in the labels (the task is gone).
    Finished {
        code: i32,
        reason: String,
        finished_at: String,
    },
}

impl Attempt {
    /// Whether this attempt is over.
    pub fn is_over(&self) -> bool {
        matches!(
            self.state,
            AttemptState::Exited { .. } | AttemptState::Finished { .. }
        )
    }

    /// The exit code, once over.
    pub fn exit_code(&self) -> Option<i32> {
        match self.state {
            AttemptState::Exited { code, .. } | AttemptState::Finished { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The attempts of each container of the pod, oldest first, keyed by container name.
pub fn attempts_by_container(records: &[ContainerRecord]) -> BTreeMap<String, Vec<Attempt>> {
    let mut out: BTreeMap<String, Vec<Attempt>> = BTreeMap::new();
    for record in records {
        let Some(name) = record.labels.get(labels::CONTAINER) else {
            continue;
        };
        let attempt = record
            .labels
            .get(labels::ATTEMPT)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let finished = record
            .labels
            .get(labels::EXIT_CODE)
            .map(|code| AttemptState::Finished {
                code: code.parse().unwrap_or(-1),
                reason: record
                    .labels
                    .get(labels::REASON)
                    .cloned()
                    .unwrap_or_default(),
                finished_at: record
                    .labels
                    .get(labels::FINISHED_AT)
                    .cloned()
                    .unwrap_or_default(),
            });
        let state = match (record.task, finished) {
            (_, Some(finished)) => finished,
            (TaskState::Running { pid }, None) => AttemptState::Running { pid },
            (
                TaskState::Exited {
                    exit_code,
                    exited_at,
                },
                None,
            ) => AttemptState::Exited {
                code: exit_code as i32,
                exited_at,
            },
            (TaskState::NotRunning, None) => AttemptState::Created,
        };
        out.entry(name.clone()).or_default().push(Attempt {
            id: record.id.clone(),
            attempt,
            state,
            started_at: record.labels.get(labels::STARTED_AT).cloned(),
        });
    }
    for list in out.values_mut() {
        list.sort_by_key(|a| a.attempt);
    }
    out
}

/// Why a container exited: `OOMKilled` when the kernel killed it for memory, else
/// `Completed` for 0 and `Error` for anything else.
pub fn exit_reason(code: i32, oom_killed: bool) -> &'static str {
    if oom_killed {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// A waiting reason and message the worker wants shown (back-off, errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

fn state_json(attempt: &Attempt) -> Value {
    match &attempt.state {
        AttemptState::Created => json!({"waiting": {"reason": "ContainerCreating"}}),
        AttemptState::Running { .. } => json!({"running": {"startedAt": attempt.started_at}}),
        AttemptState::Exited { code, exited_at } => json!({"terminated": {
            "exitCode": code,
            "reason": exit_reason(*code, false),
            "startedAt": attempt.started_at,
            "finishedAt": jiff::Timestamp::from_second(*exited_at).ok().map(|t| t.to_string()),
            "containerID": format!("containerd://{}", attempt.id),
        }}),
        AttemptState::Finished {
            code,
            reason,
            finished_at,
        } => json!({"terminated": {
            "exitCode": code,
            "reason": reason,
            "startedAt": attempt.started_at,
            "finishedAt": finished_at,
            "containerID": format!("containerd://{}", attempt.id),
        }}),
    }
}

/// One entry of `containerStatuses` (or `initContainerStatuses`).
pub fn container_status(
    name: &str,
    image: &str,
    attempts: &[Attempt],
    waiting: Option<&Waiting>,
    ready: Option<bool>,
) -> Value {
    let current = attempts.last();
    let previous = attempts.len().checked_sub(2).map(|i| &attempts[i]);
    let running = matches!(
        current.map(|a| &a.state),
        Some(AttemptState::Running { .. })
    );
    let (state, last_state) = match (waiting, current) {
        (Some(w), Some(current)) if current.is_over() => (
            json!({"waiting": {"reason": w.reason, "message": w.message}}),
            state_json(current),
        ),
        (Some(w), _) => (
            json!({"waiting": {"reason": w.reason, "message": w.message}}),
            previous.map_or(json!({}), state_json),
        ),
        (None, Some(current)) => (state_json(current), previous.map_or(json!({}), state_json)),
        (None, None) => (
            json!({"waiting": {"reason": "ContainerCreating"}}),
            json!({}),
        ),
    };
    let mut status = json!({
        "name": name,
        "image": image,
        "imageID": "",
        "ready": running && ready.unwrap_or(true),
        "started": running,
        "restartCount": current.map_or(0, |a| a.attempt),
        "state": state,
        "lastState": last_state,
    });
    if let Some(current) = current {
        status["containerID"] = json!(format!("containerd://{}", current.id));
    }
    status
}

/// The pod phase from its containers' latest attempts, by kubelet's rules.
pub fn phase(
    restart_policy: &str,
    init_done: bool,
    init_failed: bool,
    containers: &[Option<&Attempt>],
) -> &'static str {
    if init_failed {
        return "Failed";
    }
    if !init_done || containers.iter().any(Option::is_none) {
        return "Pending";
    }
    let latest: Vec<&Attempt> = containers.iter().flatten().copied().collect();
    if latest.iter().any(|a| !a.is_over()) {
        let started = latest
            .iter()
            .all(|a| !matches!(a.state, AttemptState::Created));
        return if started { "Running" } else { "Pending" };
    }
    let all_succeeded = latest.iter().all(|a| a.exit_code() == Some(0));
    match restart_policy {
        "Always" => "Running",
        "OnFailure" if all_succeeded => "Succeeded",
        "OnFailure" => "Running",
        _ if all_succeeded => "Succeeded",
        _ => "Failed",
    }
}

/// Conditions with their transition times kept from `old` when their status is unchanged.
pub fn conditions(old: Option<&Value>, now: &str, wanted: &[(&str, bool)]) -> Value {
    let previous = |kind: &str| {
        old.and_then(Value::as_array)?
            .iter()
            .find(|c| c["type"] == kind)
            .cloned()
    };
    Value::Array(
        wanted
            .iter()
            .map(|(kind, ok)| {
                let status = if *ok { "True" } else { "False" };
                let since = previous(kind)
                    .filter(|c| c["status"] == status)
                    .and_then(|c| c.get("lastTransitionTime").cloned())
                    .unwrap_or_else(|| json!(now));
                json!({"type": kind, "status": status, "lastTransitionTime": since})
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        name: &str,
        attempt: u32,
        task: TaskState,
        extra: &[(&str, &str)],
    ) -> ContainerRecord {
        let mut labels: BTreeMap<String, String> = [
            (labels::CONTAINER, name.to_string()),
            (labels::ATTEMPT, attempt.to_string()),
            (labels::STARTED_AT, "2026-01-01T00:00:00Z".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in extra {
            labels.insert(k.to_string(), v.to_string());
        }
        ContainerRecord {
            id: format!("{name}-{attempt}"),
            labels,
            task,
        }
    }

    #[test]
    fn attempts_are_grouped_by_container_and_ordered() {
        let records = vec![
            record("web", 1, TaskState::Running { pid: 7 }, &[]),
            record(
                "web",
                0,
                TaskState::NotRunning,
                &[(labels::EXIT_CODE, "1"), (labels::REASON, "Error")],
            ),
            record(
                "side",
                0,
                TaskState::Exited {
                    exit_code: 137,
                    exited_at: 5,
                },
                &[],
            ),
        ];
        let by = attempts_by_container(&records);
        assert_eq!(by["web"].len(), 2);
        assert_eq!(by["web"][0].exit_code(), Some(1));
        assert_eq!(by["web"][1].state, AttemptState::Running { pid: 7 });
        assert_eq!(by["side"][0].exit_code(), Some(137));
    }

    #[test]
    fn a_crash_looping_container_waits_with_its_last_exit_in_last_state() {
        let records = vec![record(
            "web",
            3,
            TaskState::NotRunning,
            &[
                (labels::EXIT_CODE, "2"),
                (labels::REASON, "Error"),
                (labels::FINISHED_AT, "t"),
            ],
        )];
        let by = attempts_by_container(&records);
        let waiting = Waiting {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 40s".into(),
        };
        let status = container_status("web", "img", &by["web"], Some(&waiting), None);
        assert_eq!(status["restartCount"], 3);
        assert_eq!(status["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(status["lastState"]["terminated"]["exitCode"], 2);
        assert_eq!(status["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(status["ready"], false);
    }

    #[test]
    fn a_running_container_is_ready_and_shows_the_previous_exit() {
        let records = vec![
            record(
                "web",
                0,
                TaskState::NotRunning,
                &[(labels::EXIT_CODE, "137"), (labels::REASON, "OOMKilled")],
            ),
            record("web", 1, TaskState::Running { pid: 9 }, &[]),
        ];
        let by = attempts_by_container(&records);
        let status = container_status("web", "img", &by["web"], None, None);
        assert_eq!(status["ready"], true);
        let unready = container_status("web", "img", &by["web"], None, Some(false));
        assert_eq!(unready["ready"], false);
        assert_eq!(status["restartCount"], 1);
        assert!(status["state"]["running"]["startedAt"].is_string());
        assert_eq!(status["lastState"]["terminated"]["reason"], "OOMKilled");
    }

    #[test]
    fn exit_reasons_follow_kubelet() {
        assert_eq!(exit_reason(0, false), "Completed");
        assert_eq!(exit_reason(1, false), "Error");
        assert_eq!(exit_reason(137, true), "OOMKilled");
    }

    #[test]
    fn the_phase_follows_the_containers_and_the_restart_policy() {
        let a = |state| Attempt {
            id: "x".into(),
            attempt: 0,
            state,
            started_at: None,
        };
        let running = a(AttemptState::Running { pid: 1 });
        let ok = a(AttemptState::Exited {
            code: 0,
            exited_at: 0,
        });
        let bad = a(AttemptState::Exited {
            code: 1,
            exited_at: 0,
        });
        assert_eq!(phase("Always", false, false, &[None]), "Pending");
        assert_eq!(phase("Always", true, false, &[Some(&running)]), "Running");
        assert_eq!(phase("Never", true, false, &[Some(&ok)]), "Succeeded");
        assert_eq!(
            phase("Never", true, false, &[Some(&ok), Some(&bad)]),
            "Failed"
        );
        assert_eq!(phase("OnFailure", true, false, &[Some(&bad)]), "Running");
        assert_eq!(phase("Always", true, false, &[Some(&ok)]), "Running");
        assert_eq!(phase("Never", true, true, &[None]), "Failed");
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let old = json!([
            {"type": "Ready", "status": "True", "lastTransitionTime": "then"},
            {"type": "Initialized", "status": "False", "lastTransitionTime": "then"},
        ]);
        let now = conditions(Some(&old), "now", &[("Ready", true), ("Initialized", true)]);
        assert_eq!(now[0]["lastTransitionTime"], "then");
        assert_eq!(now[1]["lastTransitionTime"], "now");
    }
}
