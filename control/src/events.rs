//! Events (core/v1 Event) recorded by control-plane components about the objects they act
//! on, as Kubernetes' event recorder does: the scheduler's `FailedScheduling`, the leader
//! election's `LeaderElection`, a controller's `SuccessfulCreate`. Repeats of one event
//! within ten minutes update its count instead of creating another.
//!
//! Recording never fails the caller: an event that cannot be written is logged and dropped.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use skiff_api::client::Client;
use tracing::debug;

/// How long repeats of one event are folded into it.
const AGGREGATION_WINDOW: Duration = Duration::from_secs(600);

/// Normal or Warning, as Kubernetes' `EventTypeNormal` / `EventTypeWarning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Debug)]
struct Recorded {
    namespace: String,
    name: String,
    count: i64,
    at: Instant,
}

/// Writes Events on behalf of one component.
#[derive(Debug, Clone)]
pub struct EventRecorder {
    client: Client,
    component: String,
    instance: String,
    recent: Arc<Mutex<HashMap<String, Recorded>>>,
}

impl EventRecorder {
    /// `component` is e.g. `default-scheduler`; `instance` names this process.
    pub fn new(client: Client, component: &str, instance: &str) -> Self {
        Self {
            client,
            component: component.into(),
            instance: instance.into(),
            recent: Arc::default(),
        }
    }

    /// Records an event about `object` (any object as JSON, with apiVersion, kind and
    /// metadata).
    pub async fn record(&self, object: &Value, event_type: EventType, reason: &str, message: &str) {
        let meta = &object["metadata"];
        let involved_name = meta["name"].as_str().unwrap_or("");
        let namespace = meta["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or("default");
        let uid = meta["uid"].as_str().unwrap_or("");
        let key = format!(
            "{uid}/{involved_name}/{}/{reason}/{message}",
            event_type.as_str()
        );
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();

        let repeat = {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            recent.retain(|_, r| r.at.elapsed() < AGGREGATION_WINDOW);
            recent.get_mut(&key).map(|r| {
                r.count += 1;
                r.at = Instant::now();
                (r.namespace.clone(), r.name.clone(), r.count)
            })
        };
        if let Some((ns, name, count)) = repeat {
            let patch = json!({"count": count, "lastTimestamp": now});
            match self.client.patch("events", &ns, &name, &patch, "").await {
                Ok(_) => return,
                Err(error) => debug!(%error, "updating an event failed; recording a new one"),
            }
        }

        let name = format!("{involved_name}.{:016x}", rand_suffix());
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": object["apiVersion"],
                "kind": object["kind"],
                "name": involved_name,
                "namespace": meta["namespace"],
                "uid": uid,
                "resourceVersion": meta["resourceVersion"],
            },
            "reason": reason,
            "message": message,
            "type": event_type.as_str(),
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
        });
        match self.client.create("events", namespace, &event).await {
            Ok(_) => {
                let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                recent.insert(
                    key,
                    Recorded {
                        namespace: namespace.into(),
                        name,
                        count: 1,
                        at: Instant::now(),
                    },
                );
            }
            Err(error) => debug!(%error, reason, "recording an event failed"),
        }
    }
}

fn rand_suffix() -> u64 {
    let id = uuid::Uuid::new_v4();
    u64::from_le_bytes(id.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}
