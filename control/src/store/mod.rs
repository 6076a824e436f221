//! The control plane's storage layer: the role etcd plays for the Kubernetes API server.
//!
//! One trait, [`Store`], and two backends that pass the same [`conformance`] suite:
//! [`embedded::EmbeddedStore`] (a single redb file, the default for a one-machine cluster) and
//! [`etcd::EtcdStore`] (a real etcd cluster, for HA and for clusters past one machine).
//!
//! Data flows like this: the API server turns an object into JSON and writes it under a key
//! such as `/registry/pods/<ns>/<name>` with [`Store::create`], [`Store::update`] (a
//! compare-and-swap on the key's `mod_revision`, which is the object's `resourceVersion`) or
//! [`Store::delete`]. Every write advances one global revision by exactly one and is durable
//! before the call returns. Reads ([`Store::get`], [`Store::range`]) can be served at a past
//! revision, so a paged list sees one snapshot. Every write also becomes a [`WatchEvent`];
//! [`Store::watch`] replays the events after a revision and then follows new ones, so a client
//! that listed at revision `R` and watches from `R` misses nothing. [`Store::compact`] drops the
//! history before a revision; reads and watches older than that fail with
//! [`StoreError::Compacted`], which tells the client to list again. Leases attach keys to a
//! time to live: when a lease expires or is revoked its keys are deleted, each a delete event.

pub mod conformance;
pub mod embedded;
pub mod etcd;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// The error type's boxed cause, for the [`StoreError::Backend`] variant.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A stream of watch events, in revision order. It ends when the store is closed; an `Err`
/// item (for example [`StoreError::Compacted`]) is the last item.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, StoreError>>;

/// The identity of a lease, as etcd numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// One key and its value as stored at some revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, for example `/registry/pods/default/web-0`.
    pub key: String,
    /// The value, usually an object's JSON.
    pub value: Bytes,
    /// The revision of the write that created the key.
    pub create_revision: i64,
    /// The revision of the key's last write: the object's `resourceVersion`.
    pub mod_revision: i64,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// What [`Store::range`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// Read the store as it was at this revision; `None` (or a value `<= 0`) reads the latest.
    pub at_revision: Option<i64>,
    /// Return at most this many keys; `None` or `Some(0)` returns them all.
    pub limit: Option<usize>,
    /// Return only keys after this one: the continue key of the previous page.
    pub start_after: Option<String>,
}

/// The answer to [`Store::range`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult {
    /// The keys found, sorted by key (byte-wise).
    pub kvs: Vec<KeyValue>,
    /// The revision the read was served at. A client pages on by passing it as
    /// [`RangeOptions::at_revision`], and watches from it to follow changes.
    pub revision: i64,
    /// Whether keys beyond `limit` remain.
    pub more: bool,
}

impl RangeResult {
    /// The `start_after` key for the next page, when more keys remain.
    pub fn continue_key(&self) -> Option<&str> {
        if self.more {
            self.kvs.last().map(|kv| kv.key.as_str())
        } else {
            None
        }
    }
}

/// The answer to [`Store::delete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The key as it was just before the delete.
    pub prev: KeyValue,
    /// The revision of the delete.
    pub revision: i64,
}

/// One change to a key, as [`Store::watch`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was created or updated.
    Put {
        /// The key as written; `kv.mod_revision` is the event's revision.
        kv: KeyValue,
        /// The key as it was before, when it existed and the backend still knows it.
        prev: Option<KeyValue>,
    },
    /// The key was deleted (directly, or because its lease ended).
    Delete {
        /// The deleted key.
        key: String,
        /// The revision of the delete.
        revision: i64,
        /// The key as it was before the delete, when the backend still knows it.
        prev: Option<KeyValue>,
    },
}

impl WatchEvent {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put { kv, .. } => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the write that caused the event.
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` found the key already there.
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// The key does not exist.
    #[error("key {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// A compare-and-swap found another revision than the caller expected: the caller read a
    /// stale copy and should read again.
    #[error("key {key} is at revision {actual}, not the expected {expected}")]
    Conflict {
        /// The key.
        key: String,
        /// The `mod_revision` the caller expected.
        expected: i64,
        /// The key's current `mod_revision`.
        actual: i64,
    },
    /// The requested revision's history was compacted away: list again and watch from the
    /// list's revision.
    #[error("revision {requested} is compacted (history starts at revision {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The compaction point: the oldest revision still readable.
        compacted: i64,
    },
    /// The requested revision has not happened yet.
    #[error("revision {requested} is in the future (the store is at revision {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: i64,
        /// The store's current revision.
        current: i64,
    },
    /// The lease does not exist (it was revoked, it expired, or it never existed).
    #[error("lease {lease} not found")]
    LeaseNotFound {
        /// The lease.
        lease: LeaseId,
    },
    /// The caller passed an argument the store cannot accept.
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// What was wrong.
        reason: String,
    },
    /// The backend did not answer in time.
    #[error("store operation {operation} timed out after {after:?}")]
    Timeout {
        /// The operation.
        operation: &'static str,
        /// How long it waited.
        after: Duration,
    },
    /// The backend failed (I/O, the database file, the connection to etcd).
    #[error("store backend failed during {operation}")]
    Backend {
        /// The operation.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// A [`StoreError::Backend`] for `operation` caused by `source`.
    pub fn backend(operation: &'static str, source: impl Into<BoxError>) -> Self {
        StoreError::Backend {
            operation,
            source: source.into(),
        }
    }
}

/// The control plane's key-value store: one global revision, compare-and-swap writes,
/// reads at past revisions, watches that resume from a revision, and leases.
///
/// Held as `Arc<dyn Store>`. Every backend passes [`conformance`].
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// The key's current value, or `None` when absent.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// The keys under `prefix`, sorted by key, as of `options.at_revision`.
    ///
    /// # Errors
    /// [`StoreError::Compacted`] for a revision older than the compaction point,
    /// [`StoreError::FutureRevision`] for one not yet written.
    async fn range(&self, prefix: &str, options: RangeOptions) -> Result<RangeResult, StoreError>;

    /// Creates `key` if it is absent, attached to `lease` if given; returns the new revision.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] when the key exists, [`StoreError::LeaseNotFound`] for an
    /// unknown lease.
    async fn create(
        &self,
        key: &str,
        value: Bytes,
        lease: Option<LeaseId>,
    ) -> Result<i64, StoreError>;

    /// Replaces the value of an existing key, keeping its lease; returns the new revision.
    /// With `expected_mod_revision`, only if the key's `mod_revision` still equals it.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the key is absent, [`StoreError::Conflict`] (with the
    /// current revision) when it changed since the caller read it.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Option<i64>,
    ) -> Result<i64, StoreError>;

    /// Deletes a key, with the same precondition as [`Store::update`]; returns what it was and
    /// the revision of the delete.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Conflict`] as for [`Store::update`].
    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<i64>,
    ) -> Result<Deleted, StoreError>;

    /// The store's current revision: that of the last write (1 on an empty store).
    async fn current_revision(&self) -> Result<i64, StoreError>;

    /// The changes to keys under `prefix` with a revision strictly greater than
    /// `from_revision`, in revision order: first those already written, then new ones as they
    /// happen.
    ///
    /// # Errors
    /// [`StoreError::Compacted`] when `from_revision` is older than the compaction point (the
    /// history after it is gone). A watch that loses its history later (a compaction racing
    /// its start) ends with the same error as its last item.
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError>;

    /// Forgets the history before `revision`: reads and watches older than it fail with
    /// [`StoreError::Compacted`]. Compacting at or below the current compaction point does
    /// nothing. Compaction writes no revision.
    ///
    /// # Errors
    /// [`StoreError::FutureRevision`] for a revision not yet written.
    async fn compact(&self, revision: i64) -> Result<(), StoreError>;

    /// Grants a lease that expires `ttl_seconds` after the last keep-alive. A backend may round
    /// the TTL up to its minimum (etcd does).
    async fn grant_lease(&self, ttl_seconds: i64) -> Result<LeaseId, StoreError>;

    /// Renews a lease for another full TTL.
    ///
    /// # Errors
    /// [`StoreError::LeaseNotFound`] when the lease expired or was revoked.
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Ends a lease now, deleting the keys attached to it (each a delete event).
    ///
    /// # Errors
    /// [`StoreError::LeaseNotFound`] when the lease expired or was revoked.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError>;
}

/// Checks that `key` can be stored: it must not be empty.
pub(crate) fn validate_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidArgument {
            reason: "the key is empty".to_owned(),
        });
    }
    Ok(())
}

/// Checks a lease TTL: it must be positive.
pub(crate) fn validate_ttl(ttl_seconds: i64) -> Result<(), StoreError> {
    if ttl_seconds <= 0 {
        return Err(StoreError::InvalidArgument {
            reason: format!("lease TTL must be at least 1 second, got {ttl_seconds}"),
        });
    }
    Ok(())
}
