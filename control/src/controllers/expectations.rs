//! What a controller still expects to see through its watch after its own creates and
//! deletes (Kubernetes' `ControllerExpectations` with UID-tracked deletions), so that it
//! never acts twice on a cache that has not caught up with it yet.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::Duration,
};

use skiff_api::{
    k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::ObjectMeta},
    runtime::{Change, ObjectKey},
};
use tokio::time::Instant;

use super::pods;

/// How long expectations are trusted before the controller acts anyway (a watch event
/// can be lost to a relist): Kubernetes' `ExpectationsTimeout`.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Expected {
    creations: i64,
    deletions: HashSet<String>,
    at: Instant,
}

/// Expectations per controller key.
#[derive(Debug, Default)]
pub struct Expectations {
    keys: Mutex<HashMap<ObjectKey, Expected>>,
}

impl Expectations {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<ObjectKey, Expected>) -> R) -> R {
        f(&mut self.keys.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// True when nothing is outstanding for `key` (or what is has timed out).
    pub fn satisfied(&self, key: &ObjectKey) -> bool {
        self.with(|keys| match keys.get(key) {
            None => true,
            Some(e) => {
                (e.creations <= 0 && e.deletions.is_empty())
                    || e.at.elapsed() > EXPECTATIONS_TIMEOUT
            }
        })
    }

    /// `key` is about to create `count` objects.
    pub fn expect_creations(&self, key: &ObjectKey, count: usize) {
        self.expect(key, count, []);
    }

    /// `key` is about to delete the objects with these uids.
    pub fn expect_deletions(&self, key: &ObjectKey, uids: impl IntoIterator<Item = String>) {
        self.expect(key, 0, uids);
    }

    /// `key` is about to create `creations` objects and delete the objects with `uids`
    /// (replacing whatever it expected before).
    pub fn expect(
        &self,
        key: &ObjectKey,
        creations: usize,
        uids: impl IntoIterator<Item = String>,
    ) {
        self.with(|keys| {
            keys.insert(
                key.clone(),
                Expected {
                    creations: i64::try_from(creations).unwrap_or(i64::MAX),
                    deletions: uids.into_iter().collect(),
                    at: Instant::now(),
                },
            );
        });
    }

    /// One creation for `key` was seen (or will never be: its create failed).
    pub fn creation_observed(&self, key: &ObjectKey) {
        self.with(|keys| {
            if let Some(e) = keys.get_mut(key) {
                e.creations -= 1;
            }
        });
    }

    /// The object `uid` of `key` was seen going away (or its delete failed).
    pub fn deletion_observed(&self, key: &ObjectKey, uid: &str) {
        self.with(|keys| {
            if let Some(e) = keys.get_mut(key) {
                e.deletions.remove(uid);
            }
        });
    }

    /// Drops what `key` expected (the controller's object is gone).
    pub fn forget(&self, key: &ObjectKey) {
        self.with(|keys| {
            keys.remove(key);
        });
    }
}

impl Expectations {
    /// Records what a change of a pod controlled by `owner` means for the owner's
    /// expectations (a create or a delete it waited for has been seen) and returns the
    /// owner's key, to reconcile; `None` for pods `owner` does not claim and for resyncs.
    pub fn observe_pod(
        &self,
        change: &Change<Pod>,
        owner: impl Fn(&ObjectMeta) -> Option<ObjectKey>,
    ) -> Option<ObjectKey> {
        let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
        match change {
            Change::Added(pod) => {
                let key = owner(&pod.metadata)?;
                if pods::is_terminating(&pod.metadata) {
                    self.deletion_observed(&key, &uid(pod));
                } else {
                    self.creation_observed(&key);
                }
                Some(key)
            }
            Change::Updated { old, new } => {
                let key = owner(&new.metadata)?;
                if pods::is_terminating(&new.metadata) && !pods::is_terminating(&old.metadata) {
                    self.deletion_observed(&key, &uid(new));
                }
                Some(key)
            }
            Change::Deleted(pod) => {
                let key = owner(&pod.metadata)?;
                self.deletion_observed(&key, &uid(pod));
                Some(key)
            }
            Change::Resynced => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expectations_hold_until_every_create_and_delete_is_observed_or_times_out() {
        let e = Expectations::default();
        let key = ObjectKey::new("default", "rs");
        assert!(e.satisfied(&key), "nothing expected yet");

        e.expect_creations(&key, 2);
        e.creation_observed(&key);
        assert!(!e.satisfied(&key));
        e.creation_observed(&key);
        assert!(e.satisfied(&key));

        e.expect_deletions(&key, ["a".to_string(), "b".to_string()]);
        e.deletion_observed(&key, "a");
        e.deletion_observed(&key, "a");
        assert!(
            !e.satisfied(&key),
            "one uid seen twice is not two deletions"
        );
        tokio::time::advance(EXPECTATIONS_TIMEOUT + Duration::from_secs(1)).await;
        assert!(e.satisfied(&key), "stale expectations give way");
    }
}
