//! The embedded backend: the whole store in one redb file, the default for a one-machine
//! cluster (the way k3s defaults to sqlite).
//!
//! Every write is committed (fsynced) before the call returns, so a `kill -9` loses nothing
//! acknowledged; concurrent writes share one transaction and one fsync (group commit). The file holds, like etcd's MVCC store:
//! - `current`: key -> the key's latest record, for reads at the head;
//! - `versions`: (key, revision) -> the record written at that revision, or an empty value for
//!   a delete (a tombstone), for reads at a past revision and for watch replay;
//! - `events`: (revision, n) -> key, the log of writes in order, so a watch can replay them;
//! - `meta`: the current revision, the compaction point, the next lease id;
//! - `leases` and `lease_keys`: lease -> TTL, and which keys each lease holds.
//!
//! After a write commits, its events go to an in-process broadcast channel (in revision order:
//! the commit and the send happen under one lock). A watch first replays the `events` table
//! after its start revision, then follows the broadcast; a watcher that falls so far behind
//! that the broadcast drops events for it goes back to replaying from the table, so it never
//! loses an event silently: if the history it needs was compacted meanwhile, it ends with
//! [`StoreError::Compacted`] and the client lists again. Leases expire in a background tokio
//! task; a lease's deadline restarts from a full TTL when the store is reopened (as etcd does
//! after a restart).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition,
    WriteTransaction,
};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{
    Deleted, KeyValue, LeaseId, RangeOptions, RangeResult, Store, StoreError, WatchEvent,
    WatchStream, validate_key, validate_ttl,
};

const CURRENT: TableDefinition<&str, &[u8]> = TableDefinition::new("current");
const VERSIONS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("versions");
const EVENTS: TableDefinition<(i64, u32), &str> = TableDefinition::new("events");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const LEASES: TableDefinition<i64, i64> = TableDefinition::new("leases");
const LEASE_KEYS: TableDefinition<(i64, &str), ()> = TableDefinition::new("lease_keys");

const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";
const META_NEXT_LEASE: &str = "next_lease";

/// The revision of an empty store, as in etcd: the first write is revision 2.
const INITIAL_REVISION: i64 = 1;

/// How many events a watch replays from the file per read transaction.
const REPLAY_CHUNK: usize = 512;

/// Tuning for [`EmbeddedStore::open_with`].
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// How many write batches the broadcast to watchers holds before a slow watcher falls
    /// behind (it then catches up from the file).
    pub watch_buffer: usize,
    /// How often the background task looks for expired leases.
    pub lease_check_interval: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            watch_buffer: 1024,
            lease_check_interval: Duration::from_millis(100),
        }
    }
}

/// The store in one redb file. Cheap to clone: clones share the database. The file is
/// closed when every clone and every watch stream of the store is dropped; its watch streams
/// end when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// The events of one committed write, all at one revision.
#[derive(Debug)]
struct Batch {
    revision: i64,
    events: Vec<WatchEvent>,
}

/// A write queued for a group commit: it runs in the batch's transaction and returns what
/// answers its caller once the commit's outcome is known.
type Job = Box<dyn FnOnce(&mut Tables<'_>) -> Finish + Send>;
type Finish = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

#[derive(Default)]
struct CommitState {
    queue: Vec<Job>,
    committing: bool,
}

/// The group-commit queue (see [`Inner::write`]).
#[derive(Default)]
struct Commits {
    state: Mutex<CommitState>,
    changed: Condvar,
}

impl Commits {
    fn lock(&self) -> MutexGuard<'_, CommitState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, CommitState>) -> MutexGuard<'a, CommitState> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Ends a group commit, also when a write panicked: clears `committing` and wakes the
/// waiting writers (one of them commits the next batch).
struct ClearOnDrop<'a>(&'a Commits);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.lock().committing = false;
        self.0.changed.notify_all();
    }
}

struct Inner {
    db: Arc<Database>,
    path: PathBuf,
    /// The writes waiting for the next group commit, and whether one is running: one
    /// commit at a time, so watchers receive batches in revision order.
    commits: Commits,
    events: broadcast::Sender<Arc<Batch>>,
    leases: Arc<LeaseClock>,
    expiry_task: OnceLock<AbortOnDrop>,
}

/// Aborts the lease expiry task when the store is dropped.
#[derive(Debug)]
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The in-memory deadlines of the live leases, mirrored from the `leases` table.
#[derive(Debug, Default)]
struct LeaseClock {
    deadlines: Mutex<HashMap<LeaseId, Lease>>,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    ttl: Duration,
    deadline: Instant,
}

impl LeaseClock {
    fn lock(&self) -> MutexGuard<'_, HashMap<LeaseId, Lease>> {
        self.deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn start(&self, lease: LeaseId, ttl: Duration) {
        let deadline = Instant::now() + ttl;
        self.lock().insert(lease, Lease { ttl, deadline });
    }

    fn renew(&self, lease: LeaseId) -> bool {
        match self.lock().get_mut(&lease) {
            Some(l) => {
                l.deadline = Instant::now() + l.ttl;
                true
            }
            None => false,
        }
    }

    fn is_expired(&self, lease: LeaseId, now: Instant) -> bool {
        self.lock().get(&lease).is_some_and(|l| l.deadline <= now)
    }

    fn expired(&self, now: Instant) -> Vec<LeaseId> {
        self.lock()
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect()
    }

    fn remove(&self, lease: LeaseId) {
        self.lock().remove(&lease);
    }
}

impl EmbeddedStore {
    /// Opens the store in the file at `path`, creating it when absent, with default options.
    /// Must be called within a tokio runtime (it starts the lease expiry task).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the file cannot be opened (for example, another process
    /// has it open) or is not a store.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, EmbeddedOptions::default()).await
    }

    /// Opens the store at `path` with `options`. See [`EmbeddedStore::open`].
    ///
    /// # Errors
    /// As for [`EmbeddedStore::open`].
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: EmbeddedOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let open_path = path.clone();
        let (db, leases) = tokio::task::spawn_blocking(move || open_database(&open_path))
            .await
            .map_err(|e| StoreError::backend("open", e))??;

        let clock = Arc::new(LeaseClock::default());
        for (lease, ttl) in leases {
            clock.start(lease, ttl);
        }
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let inner = Arc::new(Inner {
            db: Arc::new(db),
            path,
            commits: Commits::default(),
            events,
            leases: clock.clone(),
            expiry_task: OnceLock::new(),
        });
        let task = tokio::spawn(expire_leases(
            Arc::downgrade(&inner),
            clock,
            options.lease_check_interval,
        ));
        // The cell is fresh, so this cannot fail; were it set, the task would simply not be
        // aborted early and would still stop once the store is gone.
        let _ = inner.expiry_task.set(AbortOnDrop(task.abort_handle()));
        Ok(Self { inner })
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the blocking thread pool with the store's state.
    async fn blocking<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::backend(operation, e))?
    }
}

/// Opens (or creates) the file, makes sure every table exists, and reads the live leases.
fn open_database(path: &Path) -> Result<(Database, Vec<(LeaseId, Duration)>), StoreError> {
    let db = Database::create(path).map_err(db_err("open"))?;
    let txn = db.begin_write().map_err(db_err("open"))?;
    let leases = {
        let mut meta = txn.open_table(META).map_err(db_err("open"))?;
        if meta.get(META_REVISION).map_err(db_err("open"))?.is_none() {
            meta.insert(META_REVISION, INITIAL_REVISION)
                .map_err(db_err("open"))?;
            meta.insert(META_COMPACTED, 0).map_err(db_err("open"))?;
            meta.insert(META_NEXT_LEASE, 1).map_err(db_err("open"))?;
        }
        txn.open_table(CURRENT).map_err(db_err("open"))?;
        txn.open_table(VERSIONS).map_err(db_err("open"))?;
        txn.open_table(EVENTS).map_err(db_err("open"))?;
        txn.open_table(LEASE_KEYS).map_err(db_err("open"))?;
        let table = txn.open_table(LEASES).map_err(db_err("open"))?;
        let mut leases = Vec::new();
        for entry in table.iter().map_err(db_err("open"))? {
            let (id, ttl) = entry.map_err(db_err("open"))?;
            let ttl = u64::try_from(ttl.value()).unwrap_or(1);
            leases.push((LeaseId(id.value()), Duration::from_secs(ttl)));
        }
        leases
    };
    txn.commit().map_err(db_err("open"))?;
    Ok((db, leases))
}

/// Maps any redb error to [`StoreError::Backend`] for `operation`.
fn db_err<E: Into<redb::Error>>(operation: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::backend(operation, e.into())
}

/// A record in the file that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("the record of key {key} is corrupt ({len} bytes)")]
struct CorruptRecord {
    key: String,
    len: usize,
}

/// A record is `create_revision`, `mod_revision`, lease id (0 for none), all little-endian
/// `i64`, then the value. An empty record in `versions` is a tombstone.
const RECORD_HEADER: usize = 24;

fn encode_record(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.lease.map_or(0, |l| l.0).to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode_record(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    let corrupt = || {
        StoreError::backend(
            "decode",
            CorruptRecord {
                key: key.to_owned(),
                len: bytes.len(),
            },
        )
    };
    let field = |i: usize| -> Result<i64, StoreError> {
        let raw = bytes.get(i * 8..(i + 1) * 8).ok_or_else(corrupt)?;
        let raw: [u8; 8] = raw.try_into().map_err(|_| corrupt())?;
        Ok(i64::from_le_bytes(raw))
    };
    let lease = field(2)?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(bytes.get(RECORD_HEADER..).ok_or_else(corrupt)?),
        create_revision: field(0)?,
        mod_revision: field(1)?,
        lease: (lease != 0).then_some(LeaseId(lease)),
    })
}

fn meta_value(
    meta: &impl ReadableTable<&'static str, i64>,
    name: &str,
    default: i64,
) -> Result<i64, StoreError> {
    Ok(meta
        .get(name)
        .map_err(db_err("read meta"))?
        .map_or(default, |v| v.value()))
}

fn read_current(
    current: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<KeyValue>, StoreError> {
    match current.get(key).map_err(db_err("get"))? {
        Some(v) => decode_record(key, v.value()).map(Some),
        None => Ok(None),
    }
}

/// The version of `key` written last before `revision`, if it was a put.
fn version_before(
    versions: &impl ReadableTable<(&'static str, i64), &'static [u8]>,
    key: &str,
    revision: i64,
) -> Result<Option<KeyValue>, StoreError> {
    let mut range = versions
        .range::<(&str, i64)>((key, i64::MIN)..(key, revision))
        .map_err(db_err("read history"))?;
    match range.next_back() {
        Some(entry) => {
            let (_, v) = entry.map_err(db_err("read history"))?;
            if v.value().is_empty() {
                Ok(None)
            } else {
                decode_record(key, v.value()).map(Some)
            }
        }
        None => Ok(None),
    }
}

/// The tables of one write transaction.
struct Tables<'t> {
    current: Table<'t, &'static str, &'static [u8]>,
    versions: Table<'t, (&'static str, i64), &'static [u8]>,
    events: Table<'t, (i64, u32), &'static str>,
    meta: Table<'t, &'static str, i64>,
    leases: Table<'t, i64, i64>,
    lease_keys: Table<'t, (i64, &'static str), ()>,
    /// The events this transaction wrote, broadcast after it commits.
    written: Vec<WatchEvent>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction, operation: &'static str) -> Result<Self, StoreError> {
        Ok(Self {
            current: txn.open_table(CURRENT).map_err(db_err(operation))?,
            versions: txn.open_table(VERSIONS).map_err(db_err(operation))?,
            events: txn.open_table(EVENTS).map_err(db_err(operation))?,
            meta: txn.open_table(META).map_err(db_err(operation))?,
            leases: txn.open_table(LEASES).map_err(db_err(operation))?,
            lease_keys: txn.open_table(LEASE_KEYS).map_err(db_err(operation))?,
            written: Vec::new(),
        })
    }

    fn revision(&self) -> Result<i64, StoreError> {
        meta_value(&self.meta, META_REVISION, INITIAL_REVISION)
    }

    fn set_meta(&mut self, name: &str, value: i64) -> Result<(), StoreError> {
        self.meta
            .insert(name, value)
            .map_err(db_err("write meta"))?;
        Ok(())
    }

    /// The key's current value, which must exist and, when `expected` is given, still be
    /// at that revision (the precondition of `update` and `delete`).
    fn current_at(&self, key: &str, expected: Option<i64>) -> Result<KeyValue, StoreError> {
        let Some(prev) = self.current(key)? else {
            return Err(StoreError::NotFound {
                key: key.to_owned(),
            });
        };
        if let Some(expected) = expected
            && expected != prev.mod_revision
        {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                actual: prev.mod_revision,
            });
        }
        Ok(prev)
    }

    fn current(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        read_current(&self.current, key)
    }

    /// Writes `kv` (at `kv.mod_revision`) as the `seq`-th event of its revision.
    fn put(&mut self, kv: KeyValue, prev: Option<KeyValue>, seq: u32) -> Result<(), StoreError> {
        let err = db_err::<redb::StorageError>;
        let record = encode_record(&kv);
        let key = kv.key.as_str();
        self.current
            .insert(key, record.as_slice())
            .map_err(err("put"))?;
        self.versions
            .insert((key, kv.mod_revision), record.as_slice())
            .map_err(err("put"))?;
        self.events
            .insert((kv.mod_revision, seq), key)
            .map_err(err("put"))?;
        let old_lease = prev.as_ref().and_then(|p| p.lease);
        if old_lease != kv.lease {
            if let Some(old) = old_lease {
                self.lease_keys.remove((old.0, key)).map_err(err("put"))?;
            }
            if let Some(new) = kv.lease {
                self.lease_keys
                    .insert((new.0, key), ())
                    .map_err(err("put"))?;
            }
        }
        self.written.push(WatchEvent::Put { kv, prev });
        Ok(())
    }

    /// Deletes `prev.key` at `revision` as the `seq`-th event of that revision.
    fn tombstone(&mut self, prev: KeyValue, revision: i64, seq: u32) -> Result<(), StoreError> {
        let err = db_err::<redb::StorageError>;
        let key = prev.key.as_str();
        self.current.remove(key).map_err(err("delete"))?;
        self.versions
            .insert((key, revision), &[][..])
            .map_err(err("delete"))?;
        self.events
            .insert((revision, seq), key)
            .map_err(err("delete"))?;
        if let Some(lease) = prev.lease {
            self.lease_keys
                .remove((lease.0, key))
                .map_err(err("delete"))?;
        }
        self.written.push(WatchEvent::Delete {
            key: prev.key.clone(),
            revision,
            prev: Some(prev),
        });
        Ok(())
    }

    /// Revokes `lease`, deleting its keys at one new revision (as etcd does).
    fn revoke(&mut self, lease: LeaseId) -> Result<(), StoreError> {
        let err = db_err::<redb::StorageError>;
        if self
            .leases
            .remove(lease.0)
            .map_err(err("revoke"))?
            .is_none()
        {
            return Err(StoreError::LeaseNotFound { lease });
        }
        let mut keys = Vec::new();
        for entry in self
            .lease_keys
            .range::<(i64, &str)>((lease.0, "")..)
            .map_err(err("revoke"))?
        {
            let (k, _) = entry.map_err(err("revoke"))?;
            let (id, key) = k.value();
            if id != lease.0 {
                break;
            }
            keys.push(key.to_owned());
        }
        if keys.is_empty() {
            return Ok(());
        }
        let revision = self.revision()? + 1;
        for (seq, key) in keys.iter().enumerate() {
            if let Some(prev) = self.current(key)? {
                let seq = u32::try_from(seq).unwrap_or(u32::MAX);
                self.tombstone(prev, revision, seq)?;
            } else {
                // An index entry without its key (it cannot happen, but it must not stay).
                self.lease_keys
                    .remove((lease.0, key.as_str()))
                    .map_err(err("revoke"))?;
            }
        }
        if !self.written.is_empty() {
            self.set_meta(META_REVISION, revision)?;
        }
        Ok(())
    }

    /// Drops the history at and before `revision`, keeping the latest version of each key
    /// as of `revision` (unless it is a tombstone) so reads at `revision` still work.
    fn compact(&mut self, revision: i64) -> Result<(), StoreError> {
        let err = db_err::<redb::StorageError>;
        self.events
            .retain_in::<(i64, u32), _>(..=(revision, u32::MAX), |_, _| false)
            .map_err(err("compact"))?;

        let mut doomed: Vec<(String, i64)> = Vec::new();
        // The latest version at or before `revision` of the key being scanned.
        let mut latest: Option<(String, i64, bool)> = None;
        for entry in self.versions.iter().map_err(err("compact"))? {
            let (k, v) = entry.map_err(err("compact"))?;
            let (key, rev) = k.value();
            if rev > revision {
                continue;
            }
            // A version superseded by a later one at or before `revision` goes; so does a
            // tombstone that is the key's last word at `revision`.
            if let Some((prev_key, prev_rev, prev_tombstone)) = latest.take()
                && (prev_key == key || prev_tombstone)
            {
                doomed.push((prev_key, prev_rev));
            }
            latest = Some((key.to_owned(), rev, v.value().is_empty()));
        }
        if let Some((key, rev, true)) = latest {
            doomed.push((key, rev));
        }
        for (key, rev) in &doomed {
            self.versions
                .remove((key.as_str(), *rev))
                .map_err(err("compact"))?;
        }
        self.set_meta(META_COMPACTED, revision)
    }
}

impl Inner {
    /// Runs `f` in a write transaction and returns once that transaction is committed
    /// (durably) and its events are broadcast.
    ///
    /// Writes are group-committed: a caller that finds no commit in progress becomes the
    /// committer and runs every write queued so far, each at its own revision and in queue
    /// order, in one transaction with one fsync; callers arriving meanwhile queue up for the
    /// next one. `f` must fail (with a logical error such as [`StoreError::Conflict`]) before
    /// it changes anything, so that its failure leaves the other writes of the batch intact;
    /// a storage failure fails the whole batch.
    fn write<T: Send + 'static>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut Tables<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, result) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |tables| {
            let outcome = f(tables);
            Box::new(move |committed: Result<(), &StoreError>| {
                let answer = match (outcome, committed) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(StoreError::backend(operation, e.to_string())),
                    (Ok(out), Ok(())) => Ok(out),
                };
                // The caller waits on the other end until it has its answer.
                let _ = reply.send(answer);
            })
        });
        let mut state = self.commits.lock();
        state.queue.push(job);
        loop {
            if let Ok(answer) = result.try_recv() {
                return answer;
            }
            if state.committing || state.queue.is_empty() {
                // Another caller is committing (this write with it, or in the next batch);
                // it clears `committing` under the lock after answering, so no wakeup is lost.
                state = self.commits.wait(state);
                continue;
            }
            state.committing = true;
            let batch = std::mem::take(&mut state.queue);
            drop(state);
            let _clear = ClearOnDrop(&self.commits);
            self.commit_batch(operation, batch);
            drop(_clear);
            state = self.commits.lock();
        }
    }

    /// Runs `jobs` in one transaction, commits it, broadcasts each job's events and then
    /// answers each job's caller.
    fn commit_batch(&self, operation: &'static str, jobs: Vec<Job>) {
        let mut finishers = Vec::with_capacity(jobs.len());
        let mut batches = Vec::new();
        let outcome = self
            .db
            .begin_write()
            .map_err(db_err(operation))
            .and_then(|txn| {
                {
                    let mut tables = Tables::open(&txn, operation)?;
                    for job in jobs {
                        finishers.push(job(&mut tables));
                        let written = std::mem::take(&mut tables.written);
                        if let Some(first) = written.first() {
                            batches.push(Batch {
                                revision: first.revision(),
                                events: written,
                            });
                        }
                    }
                }
                txn.commit().map_err(db_err(operation))
            });
        if outcome.is_ok() {
            for batch in batches {
                // No receiver is not an error: nobody is watching.
                let _ = self.events.send(Arc::new(batch));
            }
        }
        for finish in finishers {
            finish(outcome.as_ref().map(|_| ()));
        }
    }

    fn read(&self, operation: &'static str) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read().map_err(db_err(operation))
    }

    fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        let result = self.write("revoke lease", move |t| t.revoke(lease));
        if matches!(result, Ok(()) | Err(StoreError::LeaseNotFound { .. })) {
            self.leases.remove(lease);
        }
        result
    }
}

/// Reads `prefix` as of `options.at_revision` within one read transaction.
fn range_in(
    txn: &ReadTransaction,
    prefix: &str,
    options: &RangeOptions,
) -> Result<RangeResult, StoreError> {
    let err = db_err::<redb::StorageError>;
    let meta = txn.open_table(META).map_err(db_err("range"))?;
    let head = meta_value(&meta, META_REVISION, INITIAL_REVISION)?;
    let compacted = meta_value(&meta, META_COMPACTED, 0)?;
    let revision = match options.at_revision.filter(|r| *r > 0) {
        Some(r) if r < compacted => {
            return Err(StoreError::Compacted {
                requested: r,
                compacted,
            });
        }
        Some(r) if r > head => {
            return Err(StoreError::FutureRevision {
                requested: r,
                current: head,
            });
        }
        Some(r) => r,
        None => head,
    };
    let limit = options.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let start_after = options
        .start_after
        .as_deref()
        .filter(|s| *s >= prefix && !s.is_empty());

    let mut kvs = Vec::new();
    let mut more = false;
    if revision == head {
        let current = txn.open_table(CURRENT).map_err(db_err("range"))?;
        let lower = start_after.map_or(Bound::Included(prefix), Bound::Excluded);
        for entry in current
            .range::<&str>((lower, Bound::Unbounded))
            .map_err(err("range"))?
        {
            let (k, v) = entry.map_err(err("range"))?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            if kvs.len() == limit {
                more = true;
                break;
            }
            kvs.push(decode_record(key, v.value())?);
        }
    } else {
        let versions = txn.open_table(VERSIONS).map_err(db_err("range"))?;
        let lower = start_after.map_or(Bound::Included((prefix, i64::MIN)), |s| {
            Bound::Excluded((s, i64::MAX))
        });
        // The key being scanned and its latest version at or before `revision`.
        let mut group: Option<(String, Option<KeyValue>)> = None;
        for entry in versions
            .range::<(&str, i64)>((lower, Bound::Unbounded))
            .map_err(err("range"))?
        {
            let (k, v) = entry.map_err(err("range"))?;
            let (key, rev) = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            if group.as_ref().is_none_or(|(g, _)| g != key) {
                if let Some((_, Some(kv))) = group.take() {
                    if kvs.len() == limit {
                        more = true;
                        break;
                    }
                    kvs.push(kv);
                }
                group = Some((key.to_owned(), None));
            }
            if rev <= revision
                && let Some((_, latest)) = group.as_mut()
            {
                let bytes = v.value();
                *latest = if bytes.is_empty() {
                    None
                } else {
                    Some(decode_record(key, bytes)?)
                };
            }
        }
        if !more && let Some((_, Some(kv))) = group {
            if kvs.len() == limit {
                more = true;
            } else {
                kvs.push(kv);
            }
        }
    }
    Ok(RangeResult {
        kvs,
        revision,
        more,
    })
}

/// One chunk of a watch's replay from the file.
#[derive(Debug)]
struct History {
    events: Vec<WatchEvent>,
    /// The last revision read (whether or not its events matched the prefix).
    last: i64,
    /// Whether the chunk reached the head of the log.
    caught_up: bool,
}

/// Reads the events after revision `after` under `prefix`, about `max` of them (whole
/// revisions only).
fn read_history(
    db: &Database,
    prefix: &str,
    after: i64,
    max: usize,
) -> Result<History, StoreError> {
    let err = db_err::<redb::StorageError>;
    let txn = db.begin_read().map_err(db_err("watch"))?;
    let meta = txn.open_table(META).map_err(db_err("watch"))?;
    let compacted = meta_value(&meta, META_COMPACTED, 0)?;
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    let head = meta_value(&meta, META_REVISION, INITIAL_REVISION)?;
    let log = txn.open_table(EVENTS).map_err(db_err("watch"))?;
    let versions = txn.open_table(VERSIONS).map_err(db_err("watch"))?;

    let mut events = Vec::new();
    let mut last = after;
    let mut caught_up = true;
    let start = after.saturating_add(1);
    let log = log
        .range::<(i64, u32)>((start, 0)..)
        .map_err(err("watch"))?;
    for (read, entry) in log.enumerate() {
        let (k, key) = entry.map_err(err("watch"))?;
        let (rev, _) = k.value();
        // Stop after about `max` events, but never inside one revision.
        if read >= max && rev != last {
            caught_up = false;
            break;
        }
        last = rev;
        let key = key.value();
        if !key.starts_with(prefix) {
            continue;
        }
        let Some(written) = versions.get((key, rev)).map_err(err("watch"))? else {
            continue;
        };
        let prev = version_before(&versions, key, rev)?;
        let bytes = written.value();
        events.push(if bytes.is_empty() {
            WatchEvent::Delete {
                key: key.to_owned(),
                revision: rev,
                prev,
            }
        } else {
            WatchEvent::Put {
                kv: decode_record(key, bytes)?,
                prev,
            }
        });
    }
    if caught_up {
        last = last.max(head);
    }
    Ok(History {
        events,
        last,
        caught_up,
    })
}

/// The state of one watch stream.
struct Watcher {
    db: Arc<Database>,
    prefix: String,
    /// Every event up to this revision has been delivered (or did not match the prefix).
    last: i64,
    rx: broadcast::Receiver<Arc<Batch>>,
    pending: VecDeque<WatchEvent>,
    replaying: bool,
    finished: bool,
}

impl Watcher {
    fn accept(&mut self, history: History) {
        self.pending.extend(history.events);
        self.last = history.last;
        self.replaying = !history.caught_up;
    }

    async fn next(mut self) -> Option<(Result<WatchEvent, StoreError>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.finished {
                return None;
            }
            if self.replaying {
                let db = self.db.clone();
                let prefix = self.prefix.clone();
                let after = self.last;
                let chunk = tokio::task::spawn_blocking(move || {
                    read_history(&db, &prefix, after, REPLAY_CHUNK)
                })
                .await
                .map_err(|e| StoreError::backend("watch", e))
                .and_then(|r| r);
                match chunk {
                    Ok(history) => self.accept(history),
                    Err(e) => {
                        self.finished = true;
                        return Some((Err(e), self));
                    }
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(batch) => {
                    if batch.revision <= self.last {
                        continue;
                    }
                    self.last = batch.revision;
                    let prefix = &self.prefix;
                    self.pending.extend(
                        batch
                            .events
                            .iter()
                            .filter(|e| e.key().starts_with(prefix.as_str()))
                            .cloned(),
                    );
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        prefix = %self.prefix,
                        missed,
                        "watcher fell behind; catching up from the store file"
                    );
                    // Subscribe again before reading the file: every batch not in the new
                    // receiver was committed before it, so the replay sees it.
                    self.rx = self.rx.resubscribe();
                    self.replaying = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Revokes leases whose deadline passed, until the store is dropped.
async fn expire_leases(store: Weak<Inner>, clock: Arc<LeaseClock>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let expired = clock.expired(Instant::now());
        if expired.is_empty() {
            if store.strong_count() == 0 {
                return;
            }
            continue;
        }
        let Some(inner) = store.upgrade() else {
            return;
        };
        for lease in expired {
            // A keep-alive may have come in since the list was made.
            if !clock.is_expired(lease, Instant::now()) {
                continue;
            }
            let worker = inner.clone();
            let result = tokio::task::spawn_blocking(move || worker.revoke(lease)).await;
            match result {
                Ok(Ok(()) | Err(StoreError::LeaseNotFound { .. })) => {
                    tracing::debug!(%lease, "lease expired");
                }
                Ok(Err(e)) => {
                    tracing::warn!(%lease, error = %e, "revoking an expired lease failed")
                }
                Err(e) => tracing::warn!(%lease, error = %e, "revoking an expired lease failed"),
            }
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.blocking("get", move |inner| {
            let txn = inner.read("get")?;
            let current = txn.open_table(CURRENT).map_err(db_err("get"))?;
            read_current(&current, &key)
        })
        .await
    }

    async fn range(&self, prefix: &str, options: RangeOptions) -> Result<RangeResult, StoreError> {
        let prefix = prefix.to_owned();
        self.blocking("range", move |inner| {
            range_in(&inner.read("range")?, &prefix, &options)
        })
        .await
    }

    async fn create(
        &self,
        key: &str,
        value: Bytes,
        lease: Option<LeaseId>,
    ) -> Result<i64, StoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.blocking("create", move |inner| {
            inner.write("create", move |t| {
                if t.current(&key)?.is_some() {
                    return Err(StoreError::AlreadyExists { key });
                }
                if let Some(lease) = lease
                    && t.leases.get(lease.0).map_err(db_err("create"))?.is_none()
                {
                    return Err(StoreError::LeaseNotFound { lease });
                }
                let revision = t.revision()? + 1;
                let kv = KeyValue {
                    key,
                    value,
                    create_revision: revision,
                    mod_revision: revision,
                    lease,
                };
                t.put(kv, None, 0)?;
                t.set_meta(META_REVISION, revision)?;
                Ok(revision)
            })
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Option<i64>,
    ) -> Result<i64, StoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.blocking("update", move |inner| {
            inner.write("update", move |t| {
                let prev = t.current_at(&key, expected_mod_revision)?;
                let revision = t.revision()? + 1;
                let kv = KeyValue {
                    key,
                    value,
                    create_revision: prev.create_revision,
                    mod_revision: revision,
                    lease: prev.lease,
                };
                t.put(kv, Some(prev), 0)?;
                t.set_meta(META_REVISION, revision)?;
                Ok(revision)
            })
        })
        .await
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<i64>,
    ) -> Result<Deleted, StoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.blocking("delete", move |inner| {
            inner.write("delete", move |t| {
                let prev = t.current_at(&key, expected_mod_revision)?;
                let revision = t.revision()? + 1;
                t.tombstone(prev.clone(), revision, 0)?;
                t.set_meta(META_REVISION, revision)?;
                Ok(Deleted { prev, revision })
            })
        })
        .await
    }

    async fn current_revision(&self) -> Result<i64, StoreError> {
        self.blocking("current revision", |inner| {
            let txn = inner.read("current revision")?;
            let meta = txn.open_table(META).map_err(db_err("current revision"))?;
            meta_value(&meta, META_REVISION, INITIAL_REVISION)
        })
        .await
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError> {
        // Subscribe before the first read, so that nothing committed in between is missed.
        let rx = self.inner.events.subscribe();
        let db = self.inner.db.clone();
        let prefix = prefix.to_owned();
        let from = from_revision.max(0);
        let first = {
            let db = db.clone();
            let prefix = prefix.clone();
            self.blocking("watch", move |_| {
                read_history(&db, &prefix, from, REPLAY_CHUNK)
            })
            .await?
        };
        let mut watcher = Watcher {
            db,
            prefix,
            last: from,
            rx,
            pending: VecDeque::new(),
            replaying: true,
            finished: false,
        };
        watcher.accept(first);
        Ok(Box::pin(futures::stream::unfold(watcher, Watcher::next)))
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.blocking("compact", move |inner| {
            inner.write("compact", move |t| {
                let head = t.revision()?;
                if revision > head {
                    return Err(StoreError::FutureRevision {
                        requested: revision,
                        current: head,
                    });
                }
                if revision <= meta_value(&t.meta, META_COMPACTED, 0)? {
                    return Ok(());
                }
                t.compact(revision)
            })
        })
        .await
    }

    async fn grant_lease(&self, ttl_seconds: i64) -> Result<LeaseId, StoreError> {
        validate_ttl(ttl_seconds)?;
        let lease = self
            .blocking("grant lease", move |inner| {
                inner.write("grant lease", move |t| {
                    let id = meta_value(&t.meta, META_NEXT_LEASE, 1)?;
                    t.set_meta(META_NEXT_LEASE, id + 1)?;
                    t.leases
                        .insert(id, ttl_seconds)
                        .map_err(db_err("grant lease"))?;
                    Ok(LeaseId(id))
                })
            })
            .await?;
        let ttl = Duration::from_secs(u64::try_from(ttl_seconds).unwrap_or(1));
        self.inner.leases.start(lease, ttl);
        Ok(lease)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        if self.inner.leases.renew(lease) {
            Ok(())
        } else {
            Err(StoreError::LeaseNotFound { lease })
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.blocking("revoke lease", move |inner| inner.revoke(lease))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use futures::StreamExt;
    use proptest::prelude::*;
    use redb::ReadableTableMetadata;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    async fn open(dir: &tempfile::TempDir) -> EmbeddedStore {
        EmbeddedStore::open(dir.path().join("store.redb"))
            .await
            .expect("open the store")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_get_their_own_revisions_and_a_failed_one_spoils_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let start = store.current_revision().await.unwrap();
        let mut watch = store.watch("/registry/", start).await.unwrap();
        store
            .create("/registry/c/shared", Bytes::from_static(b"0"), None)
            .await
            .unwrap();
        // 64 creates of distinct keys, and 64 compare-and-swaps of one key from the same
        // revision: all the creates and exactly one swap may succeed.
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..64 {
            let creator = store.clone();
            writes.spawn(async move {
                creator
                    .create(&format!("/registry/c/k{i}"), Bytes::from(vec![1]), None)
                    .await
            });
            let swapper = store.clone();
            writes.spawn(async move {
                swapper
                    .update("/registry/c/shared", Bytes::from(vec![2]), Some(start + 1))
                    .await
            });
        }
        let mut revisions = Vec::new();
        let mut conflicts = 0;
        while let Some(result) = writes.join_next().await {
            match result.unwrap() {
                Ok(revision) => revisions.push(revision),
                Err(StoreError::Conflict { .. }) => conflicts += 1,
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        assert_eq!(conflicts, 63, "exactly one compare-and-swap wins");
        revisions.sort_unstable();
        let expected: Vec<i64> = (start + 2..start + 2 + 65).collect();
        assert_eq!(
            revisions, expected,
            "one revision per successful write, no gaps"
        );
        // The watch sees every write, once, in revision order.
        let mut seen = Vec::new();
        while seen.len() < 66 {
            let event = tokio::time::timeout(WAIT, watch.next())
                .await
                .unwrap_or_else(|_| panic!("the watch delivered only {seen:?}"))
                .unwrap()
                .unwrap();
            seen.push(event.revision());
        }
        assert_eq!(seen, (start + 1..start + 1 + 66).collect::<Vec<_>>());
        drop((store, watch));
        let reopened = open(&dir).await;
        assert_eq!(
            reopened.current_revision().await.unwrap(),
            start + 66,
            "every acknowledged write is in the file"
        );
    }

    #[tokio::test]
    async fn acknowledged_writes_survive_a_crash_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (rev_a, rev_b, deleted) = {
            let store = open(&dir).await;
            let a = store
                .create("/registry/pods/a", Bytes::from_static(b"1"), None)
                .await
                .unwrap();
            let b = store
                .create("/registry/pods/b", Bytes::from_static(b"2"), None)
                .await
                .unwrap();
            let b = store
                .update("/registry/pods/b", Bytes::from_static(b"3"), Some(b))
                .await
                .unwrap();
            store
                .create("/registry/pods/c", Bytes::from_static(b"4"), None)
                .await
                .unwrap();
            let deleted = store.delete("/registry/pods/c", None).await.unwrap();
            // Dropped without any shutdown call, as a crash would leave it.
            drop(store);
            (a, b, deleted.revision)
        };

        let store = open(&dir).await;
        assert_eq!(store.current_revision().await.unwrap(), deleted);
        let a = store.get("/registry/pods/a").await.unwrap().unwrap();
        assert_eq!((a.value.as_ref(), a.mod_revision), (&b"1"[..], rev_a));
        let b = store.get("/registry/pods/b").await.unwrap().unwrap();
        assert_eq!((b.value.as_ref(), b.mod_revision), (&b"3"[..], rev_b));
        assert!(store.get("/registry/pods/c").await.unwrap().is_none());
        // The history survives too: a watch from the start replays every write.
        let mut watch = store.watch("/registry/", 1).await.unwrap();
        let mut revisions = Vec::new();
        for _ in 0..5 {
            let event = tokio::time::timeout(WAIT, watch.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            revisions.push(event.revision());
        }
        assert_eq!(revisions, (2..=6).collect::<Vec<_>>());
        // And the next write carries on from the last revision.
        let next = store
            .create("/registry/pods/d", Bytes::new(), None)
            .await
            .unwrap();
        assert_eq!(next, deleted + 1);
    }

    #[tokio::test]
    async fn leases_survive_a_reopen_and_still_expire() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(&dir).await;
            let lease = store.grant_lease(1).await.unwrap();
            store
                .create("/registry/leases/x", Bytes::new(), Some(lease))
                .await
                .unwrap();
        }
        let store = open(&dir).await;
        tokio::time::timeout(WAIT, async {
            while store.get("/registry/leases/x").await.unwrap().is_some() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the reopened lease expires");
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_the_broadcast_catches_up_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            watch_buffer: 2,
            ..EmbeddedOptions::default()
        };
        let store = EmbeddedStore::open_with(dir.path().join("s.redb"), options)
            .await
            .unwrap();
        let start = store.current_revision().await.unwrap();
        let mut watch = store.watch("/k/", start).await.unwrap();
        for i in 0..50 {
            store
                .create(&format!("/k/{i:03}"), Bytes::new(), None)
                .await
                .unwrap();
        }
        for i in 0..50 {
            let event = tokio::time::timeout(WAIT, watch.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(event.key(), format!("/k/{i:03}"));
            assert_eq!(event.revision(), start + 1 + i);
        }
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_past_a_compaction_gets_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            watch_buffer: 1,
            ..EmbeddedOptions::default()
        };
        let store = EmbeddedStore::open_with(dir.path().join("s.redb"), options)
            .await
            .unwrap();
        let start = store.current_revision().await.unwrap();
        let mut watch = store.watch("/k/", start).await.unwrap();
        let mut last = start;
        for i in 0..10 {
            last = store
                .create(&format!("/k/{i}"), Bytes::new(), None)
                .await
                .unwrap();
        }
        store.compact(last).await.unwrap();
        let item = tokio::time::timeout(WAIT, watch.next())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(item, Err(StoreError::Compacted { .. })),
            "got {item:?}"
        );
    }

    #[tokio::test]
    async fn compaction_keeps_the_state_at_the_compaction_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let a1 = store
            .create("/k/a", Bytes::from_static(b"1"), None)
            .await
            .unwrap();
        store
            .update("/k/a", Bytes::from_static(b"2"), Some(a1))
            .await
            .unwrap();
        store.create("/k/b", Bytes::new(), None).await.unwrap();
        let at = store.delete("/k/b", None).await.unwrap().revision;
        store
            .update("/k/a", Bytes::from_static(b"3"), None)
            .await
            .unwrap();
        let before = store
            .range(
                "/k/",
                RangeOptions {
                    at_revision: Some(at),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        store.compact(at).await.unwrap();
        let after = store
            .range(
                "/k/",
                RangeOptions {
                    at_revision: Some(at),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(before, after);
        assert_eq!(after.kvs.len(), 1);
        assert_eq!(after.kvs[0].value.as_ref(), b"2");
        // Only the versions needed at `at` and after it remain.
        let txn = store.inner.read("test").unwrap();
        let versions = txn.open_table(VERSIONS).unwrap();
        assert_eq!(versions.len().unwrap(), 2);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Create(usize, u8),
        Update(usize, u8, bool),
        Delete(usize, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6usize, any::<u8>()).prop_map(|(k, v)| Op::Create(k, v)),
            (0..6usize, any::<u8>(), any::<bool>()).prop_map(|(k, v, c)| Op::Update(k, v, c)),
            (0..6usize, any::<bool>()).prop_map(|(k, c)| Op::Delete(k, c)),
        ]
    }

    /// The model: key -> (value, create_revision, mod_revision).
    type Model = BTreeMap<String, (u8, i64, i64)>;

    fn model_kvs(model: &Model) -> Vec<(String, Vec<u8>, i64, i64)> {
        model
            .iter()
            .map(|(k, (v, c, m))| (k.clone(), vec![*v], *c, *m))
            .collect()
    }

    fn store_kvs(result: &RangeResult) -> Vec<(String, Vec<u8>, i64, i64)> {
        result
            .kvs
            .iter()
            .map(|kv| {
                let v = kv.value.to_vec();
                (kv.key.clone(), v, kv.create_revision, kv.mod_revision)
            })
            .collect()
    }

    async fn check_against_model(ops: Vec<Op>) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let mut model = Model::new();
        let mut snapshots: Vec<(i64, Model)> = Vec::new();
        let mut revision = store.current_revision().await.unwrap();
        for op in ops {
            let outcome = match op {
                Op::Create(k, v) => {
                    let key = format!("/m/{k}");
                    let result = store.create(&key, Bytes::from(vec![v]), None).await;
                    match (model.contains_key(&key), result) {
                        (false, Ok(rev)) => {
                            model.insert(key, (v, rev, rev));
                            Some(rev)
                        }
                        (true, Err(StoreError::AlreadyExists { .. })) => None,
                        (exists, other) => panic!("create {key} (exists: {exists}): {other:?}"),
                    }
                }
                Op::Update(k, v, stale) => {
                    let key = format!("/m/{k}");
                    let current = model.get(&key).copied();
                    let expected = current.map(|(_, _, m)| if stale { m - 1 } else { m });
                    let result = store.update(&key, Bytes::from(vec![v]), expected).await;
                    match (current, result) {
                        (Some((_, c, _)), Ok(rev)) if !stale => {
                            model.insert(key, (v, c, rev));
                            Some(rev)
                        }
                        (Some((_, _, m)), Err(StoreError::Conflict { actual, .. })) if stale => {
                            assert_eq!(actual, m);
                            None
                        }
                        (None, Err(StoreError::NotFound { .. })) => None,
                        (current, other) => panic!("update {key} ({current:?}): {other:?}"),
                    }
                }
                Op::Delete(k, stale) => {
                    let key = format!("/m/{k}");
                    let current = model.get(&key).copied();
                    let expected = current.map(|(_, _, m)| if stale { m - 1 } else { m });
                    let result = store.delete(&key, expected).await;
                    match (current, result) {
                        (Some(_), Ok(deleted)) if !stale => {
                            model.remove(&key);
                            Some(deleted.revision)
                        }
                        (Some(_), Err(StoreError::Conflict { .. })) if stale => None,
                        (None, Err(StoreError::NotFound { .. })) => None,
                        (current, other) => panic!("delete {key} ({current:?}): {other:?}"),
                    }
                }
            };
            if let Some(rev) = outcome {
                assert_eq!(rev, revision + 1, "each write advances the revision by one");
                revision = rev;
                snapshots.push((rev, model.clone()));
            }
            assert_eq!(store.current_revision().await.unwrap(), revision);
        }
        let now = store.range("/m/", RangeOptions::default()).await.unwrap();
        assert_eq!(now.revision, revision);
        assert_eq!(store_kvs(&now), model_kvs(&model));
        for (rev, snapshot) in snapshots {
            let then = store
                .range(
                    "/m/",
                    RangeOptions {
                        at_revision: Some(rev),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(store_kvs(&then), model_kvs(&snapshot), "at revision {rev}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn random_writes_advance_the_revision_by_one_and_range_matches_a_model(
            ops in proptest::collection::vec(op(), 1..40)
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(check_against_model(ops));
        }
    }
}
