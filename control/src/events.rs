//! Events (core/v1 Event) recorded by control-plane components about the objects they act
//! on, as Kubernetes' event recorder does: the scheduler's `FailedScheduling`, the leader
//! election's `LeaderElection`, a controller's `SuccessfulCreate`. Repeats of one event
//! within ten minutes update its count instead of creating another.
//!
//! Recording never fails the caller: an event that cannot be written is logged and dropped.

use std::{
    collections::{HashMap, VecDeque},
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

/// Events recorded within the aggregation window, by key, with their expiry order so that
/// forgetting old ones costs nothing per record (a scan per record would cost O(events)).
#[derive(Debug, Default)]
struct Recent {
    by_key: HashMap<String, Recorded>,
    /// (when recorded or repeated, key), oldest first; a key repeated later has a newer
    /// entry too, and only the entry matching its `at` expires it.
    expiry: VecDeque<(Instant, String)>,
}

impl Recent {
    /// Forgets the events last seen more than [`AGGREGATION_WINDOW`] before `now`.
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.expiry.front()
            && now.saturating_duration_since(*at) >= AGGREGATION_WINDOW
        {
            let Some((at, key)) = self.expiry.pop_front() else {
                break;
            };
            if self.by_key.get(&key).is_some_and(|r| r.at == at) {
                self.by_key.remove(&key);
            }
        }
    }

    /// Counts a repeat of `key` at `now`: its (namespace, name, new count), if recent.
    fn repeat(&mut self, key: &str, now: Instant) -> Option<(String, String, i64)> {
        self.expire(now);
        let recorded = self.by_key.get_mut(key)?;
        recorded.count += 1;
        recorded.at = now;
        let found = (
            recorded.namespace.clone(),
            recorded.name.clone(),
            recorded.count,
        );
        self.expiry.push_back((now, key.to_string()));
        Some(found)
    }

    fn insert(&mut self, key: String, recorded: Recorded) {
        self.expiry.push_back((recorded.at, key.clone()));
        self.by_key.insert(key, recorded);
    }
}

/// Writes Events on behalf of one component.
#[derive(Debug, Clone)]
pub struct EventRecorder {
    client: Client,
    component: String,
    instance: String,
    recent: Arc<Mutex<Recent>>,
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

        let repeat = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .repeat(&key, Instant::now());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(name: &str, at: Instant) -> Recorded {
        Recorded {
            namespace: "default".into(),
            name: name.into(),
            count: 1,
            at,
        }
    }

    #[test]
    fn repeats_within_the_window_count_up_and_old_events_are_forgotten() {
        let start = Instant::now();
        let mut recent = Recent::default();
        recent.insert("a".into(), recorded("a.1", start));
        recent.insert("b".into(), recorded("b.1", start));

        let minute = Duration::from_secs(60);
        assert_eq!(
            recent.repeat("a", start + minute),
            Some(("default".into(), "a.1".into(), 2))
        );
        // Past b's window but not a's (a was repeated a minute in).
        let later = start + AGGREGATION_WINDOW + Duration::from_secs(1);
        assert_eq!(recent.repeat("b", later), None, "b is forgotten");
        assert_eq!(
            recent.repeat("a", later),
            Some(("default".into(), "a.1".into(), 3)),
            "a repeat renews the window"
        );
        assert_eq!(recent.by_key.len(), 1);
        assert!(recent.repeat("a", later + AGGREGATION_WINDOW).is_none());
        assert!(recent.by_key.is_empty() && recent.expiry.is_empty());
    }
}
