//! Registration and liveness: the Node object is created (or adopted) at start, its Lease in
//! `kube-node-lease` is renewed every `lease_renew_interval`, and its status is written when
//! it changed, when the Node's conditions in the API disagree with it (the node lifecycle
//! controller marked the node Unknown while it was cut off), or at the latest every
//! `status_report_interval` (Kubernetes' defaults: 10 s, 40 s lease, 5 min).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skiff_api::{
    client::{Client, ClientError},
    status::Reason,
};
use tracing::{info, warn};

use super::status::{NodeFacts, node_object, node_status};

/// The namespace node leases live in.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How long a lease lasts without renewal (Kubernetes' default).
pub const LEASE_DURATION_SECONDS: i64 = 40;

/// Timings of the heartbeat.
#[derive(Clone, Copy, Debug)]
pub struct HeartbeatTimings {
    pub lease_renew_interval: Duration,
    pub status_report_interval: Duration,
}

impl Default for HeartbeatTimings {
    fn default() -> Self {
        Self {
            lease_renew_interval: Duration::from_secs(10),
            status_report_interval: Duration::from_secs(300),
        }
    }
}

/// Keeps this node registered and alive.
#[derive(Debug)]
pub struct Heartbeat {
    client: Client,
    facts: NodeFacts,
    timings: HeartbeatTimings,
    reported: Option<(Value, Instant)>,
    /// MemoryPressure from the eviction manager (none: never under pressure).
    memory_pressure: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Heartbeat {
    pub fn new(client: Client, facts: NodeFacts, timings: HeartbeatTimings) -> Self {
        Self {
            client,
            facts,
            timings,
            reported: None,
            memory_pressure: None,
        }
    }

    /// Reports MemoryPressure as `pressure` says, and reports at once when it changes.
    pub fn watch_memory_pressure(&mut self, pressure: tokio::sync::watch::Receiver<bool>) {
        self.memory_pressure = Some(pressure);
    }

    /// Creates the Node if it does not exist (or adopts the existing one), reports its
    /// status, and takes its Lease.
    ///
    /// # Errors
    /// When the API server refuses or cannot be reached.
    pub async fn register(&mut self) -> Result<(), ClientError> {
        let name = self.facts.name.clone();
        match self
            .client
            .create("nodes", "", &node_object(&self.facts))
            .await
        {
            Ok(_) => info!(node = %name, "registered the node"),
            Err(e) if e.is(Reason::AlreadyExists) => {
                info!(node = %name, "the node exists; adopting it")
            }
            Err(e) => return Err(e),
        }
        self.report_status(true).await?;
        self.renew_lease().await
    }

    /// Renews the lease and reports the status when due; call every renew interval.
    ///
    /// # Errors
    /// When the API server refuses or cannot be reached (the next beat tries again).
    pub async fn beat(&mut self) -> Result<(), ClientError> {
        self.renew_lease().await?;
        self.report_status(false).await
    }

    /// Beats until `shutdown` completes, logging (and retrying) failures.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut ticker = tokio::time::interval(self.timings.lease_renew_interval);
        let mut pressure = self.memory_pressure.clone();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if let Err(error) = self.beat().await {
                        warn!(%error, "node heartbeat failed");
                    }
                }
                () = pressure_changed(&mut pressure) => {
                    if let Err(error) = self.report_status(false).await {
                        warn!(%error, "reporting the node's MemoryPressure failed");
                    }
                }
                () = &mut shutdown => return,
            }
        }
    }

    async fn report_status(&mut self, force: bool) -> Result<(), ClientError> {
        let pressure = self
            .memory_pressure
            .as_ref()
            .is_some_and(|receiver| *receiver.borrow());
        let status = node_status(&self.facts, pressure);
        let due = match &self.reported {
            None => true,
            Some((last, at)) => {
                *last != status || at.elapsed() >= self.timings.status_report_interval
            }
        };
        // Like kubelet, compare with the Node as the API has it: another writer (the node
        // lifecycle controller) may have changed its conditions since the last report.
        let current = self.client.get("nodes", "", &self.facts.name).await?;
        if !due && !force && conditions_agree(&current, &status) {
            return Ok(());
        }
        let now = now();
        let mut stamped = status.clone();
        if let Some(conditions) = stamped["conditions"].as_array_mut() {
            for condition in conditions {
                condition["lastHeartbeatTime"] = json!(now);
                condition["lastTransitionTime"] = json!(now);
            }
        }
        // Keep transition times of conditions whose status did not change.
        if let (Some(new), Some(old)) = (
            stamped["conditions"].as_array_mut(),
            current
                .pointer("/status/conditions")
                .and_then(Value::as_array),
        ) {
            for condition in new {
                if let Some(previous) = old
                    .iter()
                    .find(|o| o["type"] == condition["type"] && o["status"] == condition["status"])
                    && let Some(since) = previous.get("lastTransitionTime")
                {
                    condition["lastTransitionTime"] = since.clone();
                }
            }
        }
        let patch = json!({ "status": stamped });
        self.client
            .patch("nodes", "", &self.facts.name, &patch, "status")
            .await?;
        self.reported = Some((status, Instant::now()));
        Ok(())
    }

    async fn renew_lease(&mut self) -> Result<(), ClientError> {
        let name = &self.facts.name;
        let spec = json!({
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": now_micro(),
        });
        match self
            .client
            .patch(
                "leases",
                LEASE_NAMESPACE,
                name,
                &json!({ "spec": spec }),
                "",
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is(Reason::NotFound) => {
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": { "name": name, "namespace": LEASE_NAMESPACE },
                    "spec": spec,
                });
                self.client
                    .create("leases", LEASE_NAMESPACE, &lease)
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        }
    }
}

/// Completes when `pressure` changes; never when there is none or its sender is gone.
async fn pressure_changed(pressure: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    if let Some(receiver) = pressure
        && receiver.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// True when every condition of `status` has the same status in the Node `current`.
fn conditions_agree(current: &Value, status: &Value) -> bool {
    let theirs = current
        .pointer("/status/conditions")
        .and_then(Value::as_array);
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|ours| {
            theirs.is_some_and(|theirs| {
                theirs
                    .iter()
                    .any(|t| t["type"] == ours["type"] && t["status"] == ours["status"])
            })
        })
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A `metav1.MicroTime` (leases carry microseconds).
fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::conditions_agree;

    #[test]
    fn conditions_another_writer_changed_disagree_with_the_agents() {
        let ours = json!({"conditions": [
            {"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"}]});
        let same = json!({"status": {"conditions": [
            {"type": "MemoryPressure", "status": "False", "reason": "x"},
            {"type": "Ready", "status": "True"}]}});
        let unknown = json!({"status": {"conditions": [
            {"type": "MemoryPressure", "status": "Unknown"}, {"type": "Ready", "status": "Unknown"}]}});
        assert!(conditions_agree(&same, &ours));
        assert!(!conditions_agree(&unknown, &ours));
        assert!(!conditions_agree(&json!({}), &ours));
    }
}
