//! Leader election over a coordination/v1 Lease, as Kubernetes' control-plane components do:
//! several `skiff-control` processes serve the API, and exactly one at a time runs the
//! scheduler and the controllers.
//!
//! A candidate takes the Lease when it is free or expired (no renewal for its duration),
//! renews it every `retry_period`, and steps down (stopping its work) when it cannot renew
//! within `renew_deadline`. Every write is a compare-and-swap on the Lease's
//! resourceVersion, so two candidates can never both believe they hold it.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use skiff_api::{
    client::{Client, ClientError},
    status::Reason,
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::events::{EventRecorder, EventType};

/// Timings of an election (Kubernetes' defaults).
#[derive(Clone, Copy, Debug)]
pub struct ElectionTimings {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for ElectionTimings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One candidate for a Lease.
#[derive(Debug, Clone)]
pub struct LeaderElector {
    client: Client,
    namespace: String,
    name: String,
    identity: String,
    timings: ElectionTimings,
    events: Option<EventRecorder>,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: ElectionTimings,
    ) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            timings,
            events: None,
        }
    }

    /// Records a `LeaderElection` event on the Lease whenever this candidate takes it.
    pub fn with_events(mut self, events: EventRecorder) -> Self {
        self.events = Some(events);
        self
    }

    /// Campaigns forever: whenever this candidate holds the Lease the returned channel reads
    /// `true`, and `false` as soon as it may no longer act (lost, or not renewed in time).
    pub fn spawn(self) -> watch::Receiver<bool> {
        let (leading, rx) = watch::channel(false);
        tokio::spawn(async move { self.campaign(leading).await });
        rx
    }

    async fn campaign(self, leading: watch::Sender<bool>) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renewed = tokio::time::Instant::now();
                    if !*leading.borrow() {
                        info!(lease = %self.name, identity = %self.identity, "became the leader");
                        leading.send_replace(true);
                        self.record_leadership().await;
                    }
                }
                Ok(false) => {
                    if *leading.borrow() {
                        warn!(lease = %self.name, "another candidate holds the lease; stepping down");
                        leading.send_replace(false);
                    }
                }
                Err(error) => {
                    warn!(%error, lease = %self.name, "lease election request failed");
                    if *leading.borrow() && last_renewed.elapsed() >= self.timings.renew_deadline {
                        warn!(lease = %self.name, "could not renew within the deadline; stepping down");
                        leading.send_replace(false);
                    }
                }
            }
            if leading.is_closed() {
                return;
            }
            tokio::time::sleep(self.timings.retry_period).await;
        }
    }

    async fn record_leadership(&self) {
        let Some(events) = &self.events else { return };
        if let Ok(lease) = self.client.get("leases", &self.namespace, &self.name).await {
            let message = format!("{} became leader", self.identity);
            events
                .record(&lease, EventType::Normal, "LeaderElection", &message)
                .await;
        }
    }

    /// One round: true when this candidate holds the Lease afterwards.
    async fn try_acquire_or_renew(&self) -> Result<bool, ClientError> {
        let now = now_micro();
        let duration = self.timings.lease_duration.as_secs() as i64;
        let current = match self.client.get("leases", &self.namespace, &self.name).await {
            Ok(lease) => lease,
            Err(e) if e.is(Reason::NotFound) => {
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {
                        "holderIdentity": self.identity,
                        "leaseDurationSeconds": duration,
                        "acquireTime": now,
                        "renewTime": now,
                        "leaseTransitions": 0,
                    },
                });
                return match self.client.create("leases", &self.namespace, &lease).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.is(Reason::AlreadyExists) => Ok(false),
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let spec = &current["spec"];
        let holder = spec["holderIdentity"].as_str().unwrap_or("");
        let ours = holder == self.identity;
        if !ours && !holder.is_empty() && !expired(spec) {
            return Ok(false);
        }
        let mut next = current.clone();
        next["spec"]["holderIdentity"] = json!(self.identity);
        next["spec"]["leaseDurationSeconds"] = json!(duration);
        next["spec"]["renewTime"] = json!(now);
        if !ours {
            next["spec"]["acquireTime"] = json!(now);
            let transitions = spec["leaseTransitions"].as_i64().unwrap_or(0);
            next["spec"]["leaseTransitions"] = json!(transitions + 1);
        }
        // `next` carries the resourceVersion read above: a racing candidate gets a Conflict.
        match self.client.update("leases", &self.namespace, &next).await {
            Ok(_) => Ok(true),
            Err(e) if e.is(Reason::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// True when the Lease was not renewed within its duration.
fn expired(spec: &Value) -> bool {
    let Some(renewed) = spec["renewTime"]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok())
    else {
        return true;
    };
    let duration = spec["leaseDurationSeconds"].as_i64().unwrap_or(0);
    Timestamp::now() > renewed + jiff::SignedDuration::from_secs(duration)
}

fn now_micro() -> String {
    Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_expired_only_after_its_duration_without_renewal() {
        let fresh = json!({"renewTime": now_micro(), "leaseDurationSeconds": 15});
        assert!(!expired(&fresh));
        let old = Timestamp::now() - jiff::SignedDuration::from_secs(16);
        let stale = json!({"renewTime": old.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), "leaseDurationSeconds": 15});
        assert!(expired(&stale));
        assert!(
            expired(&json!({"leaseDurationSeconds": 15})),
            "never renewed"
        );
    }
}
