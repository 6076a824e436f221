//! The etcd backend: the store on a real etcd cluster (v3 API, etcd 3.4 and later), for HA and
//! for clusters past one machine.
//!
//! Store revisions are etcd revisions. Each conditional write is one etcd transaction:
//! create is "if create_revision == 0 then put", update and delete are "if mod_revision ==
//! expected then write else get" (the get tells `NotFound` from `Conflict`). A watch is an etcd
//! watch with `prev_kv`, started at `from_revision + 1`; etcd's compaction answer becomes
//! [`StoreError::Compacted`]. etcd does not say where it compacted when it refuses a read, so
//! the backend asks with a watch from revision 1, which etcd answers with the compaction point.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions,
    PutOptions, SortOrder, SortTarget, TxnOp, TxnOpResponse, WatchOptions,
};

use super::{
    Deleted, KeyValue, LeaseId, RangeOptions, RangeResult, Store, StoreError, WatchEvent,
    WatchStream, validate_key, validate_ttl,
};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request (not a watch) may take.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The key the compaction probe watches; nothing is ever written there.
const PROBE_KEY: &[u8] = b"\0skiff/compaction-probe";

/// The store on an etcd cluster. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    endpoints: Vec<String>,
    request_timeout: Duration,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// What etcd sent that the store could not make sense of.
#[derive(Debug, thiserror::Error)]
enum Unexpected {
    #[error("etcd returned a key that is not UTF-8")]
    NonUtf8Key,
    #[error("etcd's transaction response lacks the expected {0} result")]
    MissingTxnResponse(&'static str),
    #[error("etcd's response has no header")]
    MissingHeader,
    #[error("etcd canceled the watch: {0}")]
    WatchCanceled(String),
    #[error("etcd closed the watch stream")]
    WatchClosed,
    #[error("etcd refused the lease: {0}")]
    LeaseRefused(String),
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (`http://host:port`).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the endpoints are invalid or none can be reached.
    pub async fn connect(endpoints: &[String]) -> Result<Self, StoreError> {
        let options = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| StoreError::backend("connect", e))?;
        Ok(Self {
            client,
            endpoints: endpoints.to_vec(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// Bounds every request (watch streams excepted) by `timeout` instead of the default 15 s.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Runs one etcd request within the request timeout, leaving its error to the caller.
    async fn call<T>(
        &self,
        operation: &'static str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<Result<T, etcd_client::Error>, StoreError> {
        tokio::time::timeout(self.request_timeout, request)
            .await
            .map_err(|_| StoreError::Timeout {
                operation,
                after: self.request_timeout,
            })
    }

    /// Runs `request` within the request timeout, trying again while the member it reached
    /// is unavailable (killed, or cut off from the quorum): the client balances over every
    /// endpoint, so a retry reaches a live member. `true` beside the answer when an attempt
    /// before it failed.
    async fn retrying<T, F, Fut>(
        &self,
        operation: &'static str,
        mut request: F,
    ) -> Result<(Result<T, etcd_client::Error>, bool), StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut delay = Duration::from_millis(50);
        let mut retried = false;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let answer =
                tokio::time::timeout(left, request())
                    .await
                    .map_err(|_| StoreError::Timeout {
                        operation,
                        after: self.request_timeout,
                    })?;
            match answer {
                Err(e) if is_unavailable(&e) && tokio::time::Instant::now() + delay < deadline => {
                    tracing::debug!(operation, error = %e, retry_in = ?delay, "etcd unavailable");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                    retried = true;
                }
                other => return Ok((other, retried)),
            }
        }
    }

    /// Runs a read (safe to repeat), trying again while the member it reached is unavailable.
    async fn read<T, F, Fut>(
        &self,
        operation: &'static str,
        request: F,
    ) -> Result<Result<T, etcd_client::Error>, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        Ok(self.retrying(operation, request).await?.0)
    }

    /// Runs a conditional write, trying again while the member it reached is unavailable.
    /// A failed attempt may still have landed (its answer was lost), so when the answer says
    /// it was retried (`true`) the caller checks a failed compare with [`landed`].
    async fn write(
        &self,
        operation: &'static str,
        txn: impl Fn() -> etcd_client::Txn,
    ) -> Result<(etcd_client::TxnResponse, bool), StoreError> {
        let (answer, retried) = self
            .retrying(operation, || {
                let (mut kv, txn) = (self.client.kv_client(), txn());
                async move { kv.txn(txn).await }
            })
            .await?;
        match answer {
            Ok(resp) => Ok((resp, retried)),
            Err(e) if is_lease_not_found(&e) => {
                Err(StoreError::LeaseNotFound { lease: LeaseId(0) })
            }
            Err(e) => Err(StoreError::backend(operation, e)),
        }
    }

    /// The revision etcd compacted at, learned from a watch from revision 1. Only called once
    /// etcd has refused a request as compacted, so the answer comes.
    async fn compaction_revision(&self) -> Result<i64, StoreError> {
        let operation = "find the compaction revision";
        let mut watch_client = self.client.watch_client();
        let options = WatchOptions::new().with_start_revision(1);
        let mut stream = self
            .call(operation, watch_client.watch(PROBE_KEY, Some(options)))
            .await?
            .map_err(|e| StoreError::backend(operation, e))?;
        let answer = async {
            loop {
                match stream.message().await {
                    Ok(Some(resp)) if resp.compact_revision() != 0 => {
                        return Ok(resp.compact_revision());
                    }
                    Ok(Some(resp)) if resp.canceled() => {
                        let reason = resp.cancel_reason().to_owned();
                        return Err(StoreError::backend(
                            operation,
                            Unexpected::WatchCanceled(reason),
                        ));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        return Err(StoreError::backend(operation, Unexpected::WatchClosed));
                    }
                    Err(e) => return Err(StoreError::backend(operation, e)),
                }
            }
        };
        tokio::time::timeout(self.request_timeout, answer)
            .await
            .map_err(|_| StoreError::Timeout {
                operation,
                after: self.request_timeout,
            })?
    }

    /// Maps a read error: compaction and future revisions get their own errors.
    async fn read_error(&self, requested: i64, e: etcd_client::Error) -> StoreError {
        if is_compacted(&e) {
            match self.compaction_revision().await {
                Ok(compacted) => StoreError::Compacted {
                    requested,
                    compacted,
                },
                Err(probe) => probe,
            }
        } else if is_future_revision(&e) {
            match self.current_revision().await {
                Ok(current) => StoreError::FutureRevision { requested, current },
                Err(e) => e,
            }
        } else {
            StoreError::backend("range", e)
        }
    }
}

fn grpc_message(e: &etcd_client::Error) -> Option<&str> {
    match e {
        etcd_client::Error::GRpcStatus(status) => Some(status.message()),
        _ => None,
    }
}

/// A member that cannot answer now (gone, or without a leader): worth another endpoint.
fn is_unavailable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(status) => matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown
        ),
        _ => false,
    }
}

fn is_compacted(e: &etcd_client::Error) -> bool {
    grpc_message(e).is_some_and(|m| m.contains("required revision has been compacted"))
}

fn is_future_revision(e: &etcd_client::Error) -> bool {
    grpc_message(e).is_some_and(|m| m.contains("required revision is a future revision"))
}

fn is_lease_not_found(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::LeaseKeepAliveError(m) => m.contains("lease not found"),
        other => grpc_message(other).is_some_and(|m| m.contains("lease not found")),
    }
}

/// The first key after every key that starts with `prefix`: the `range_end` of a prefix
/// range. `\0` (with a start key) means "to the end of the keyspace".
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The first key of a range over `prefix` (etcd refuses an empty key: `\0` is the smallest).
fn range_start(prefix: &str) -> Vec<u8> {
    if prefix.is_empty() {
        vec![0]
    } else {
        prefix.as_bytes().to_vec()
    }
}

fn convert(kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let key = std::str::from_utf8(kv.key())
        .map_err(|_| StoreError::backend("decode", Unexpected::NonUtf8Key))?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
    })
}

fn header_revision(
    operation: &'static str,
    header: Option<&etcd_client::ResponseHeader>,
) -> Result<i64, StoreError> {
    header
        .map(etcd_client::ResponseHeader::revision)
        .ok_or_else(|| StoreError::backend(operation, Unexpected::MissingHeader))
}

/// The key a failed compare-and-swap found, from the `get` in its else branch.
/// Whether the key's current state is the value a retried write sent: an earlier attempt,
/// whose answer was lost, landed.
fn landed(current: &KeyValue, ours: &Bytes) -> bool {
    current.value == *ours
}

fn found_by_else_branch(
    operation: &'static str,
    responses: &[TxnOpResponse],
) -> Result<Option<KeyValue>, StoreError> {
    match responses.first() {
        Some(TxnOpResponse::Get(get)) => get.kvs().first().map(convert).transpose(),
        _ => Err(StoreError::backend(
            operation,
            Unexpected::MissingTxnResponse("get"),
        )),
    }
}

/// The state of one watch stream.
struct Watcher {
    stream: etcd_client::WatchStream,
    pending: VecDeque<WatchEvent>,
    /// The revision of the last event seen (for the error if etcd compacts past it).
    last: i64,
    finished: bool,
}

impl Watcher {
    fn fail(mut self, error: StoreError) -> Option<(Result<WatchEvent, StoreError>, Self)> {
        self.finished = true;
        Some((Err(error), self))
    }

    async fn next(mut self) -> Option<(Result<WatchEvent, StoreError>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.finished {
                return None;
            }
            let resp = match self.stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    return self.fail(StoreError::backend("watch", Unexpected::WatchClosed));
                }
                Err(e) => return self.fail(StoreError::backend("watch", e)),
            };
            if resp.compact_revision() != 0 {
                let error = StoreError::Compacted {
                    requested: self.last,
                    compacted: resp.compact_revision(),
                };
                return self.fail(error);
            }
            if resp.canceled() {
                let reason = resp.cancel_reason().to_owned();
                return self.fail(StoreError::backend(
                    "watch",
                    Unexpected::WatchCanceled(reason),
                ));
            }
            for event in resp.events() {
                match watch_event(event) {
                    Ok(event) => {
                        self.last = event.revision();
                        self.pending.push_back(event);
                    }
                    Err(e) => return self.fail(e),
                }
            }
        }
    }
}

fn watch_event(event: &etcd_client::Event) -> Result<WatchEvent, StoreError> {
    let kv = event
        .kv()
        .ok_or_else(|| StoreError::backend("watch", Unexpected::MissingTxnResponse("kv")))?;
    let prev = event.prev_kv().map(convert).transpose()?;
    Ok(match event.event_type() {
        etcd_client::EventType::Put => WatchEvent::Put {
            kv: convert(kv)?,
            prev,
        },
        etcd_client::EventType::Delete => WatchEvent::Delete {
            key: convert(kv)?.key,
            revision: kv.mod_revision(),
            prev,
        },
    })
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        validate_key(key)?;
        let resp = self
            .read("get", || {
                let mut kv = self.client.kv_client();
                async move { kv.get(key, None).await }
            })
            .await?
            .map_err(|e| StoreError::backend("get", e))?;
        resp.kvs().first().map(convert).transpose()
    }

    async fn range(&self, prefix: &str, options: RangeOptions) -> Result<RangeResult, StoreError> {
        let at = options.at_revision.filter(|r| *r > 0);
        let start = match options.start_after.as_deref() {
            Some(after) if !after.is_empty() && after >= prefix => {
                let mut start = after.as_bytes().to_vec();
                start.push(0);
                start
            }
            _ => range_start(prefix),
        };
        let mut get = GetOptions::new()
            .with_range(prefix_end(prefix.as_bytes()))
            .with_sort(SortTarget::Key, SortOrder::Ascend);
        if let Some(limit) = options.limit.filter(|l| *l > 0) {
            get = get.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        if let Some(at) = at {
            get = get.with_revision(at);
        }
        let answer = self
            .read("range", || {
                let (mut kv, start, get) = (self.client.kv_client(), start.clone(), get.clone());
                async move { kv.get(start, Some(get)).await }
            })
            .await?;
        let resp = match answer {
            Ok(resp) => resp,
            Err(e) => return Err(self.read_error(at.unwrap_or(0), e).await),
        };
        let kvs = resp
            .kvs()
            .iter()
            .map(convert)
            .collect::<Result<Vec<_>, _>>()?;
        let revision = match at {
            Some(at) => at,
            None => header_revision("range", resp.header())?,
        };
        Ok(RangeResult {
            kvs,
            revision,
            more: resp.more(),
        })
    }

    async fn create(
        &self,
        key: &str,
        value: Bytes,
        lease: Option<LeaseId>,
    ) -> Result<i64, StoreError> {
        validate_key(key)?;
        let mut put = PutOptions::new();
        if let Some(lease) = lease {
            put = put.with_lease(lease.0);
        }
        let txn = || {
            etcd_client::Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value.to_vec(), Some(put.clone()))])
                .or_else([TxnOp::get(key, None)])
        };
        let (resp, retried) = match self.write("create", txn).await {
            Err(StoreError::LeaseNotFound { .. }) => {
                return Err(StoreError::LeaseNotFound {
                    lease: lease.unwrap_or(LeaseId(0)),
                });
            }
            other => other?,
        };
        if resp.succeeded() {
            return header_revision("create", resp.header());
        }
        match found_by_else_branch("create", &resp.op_responses())? {
            // An attempt whose answer was lost wrote it: the object carries a fresh uid,
            // so equal bytes are this create's.
            Some(current) if retried && landed(&current, &value) => Ok(current.mod_revision),
            _ => Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            }),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Option<i64>,
    ) -> Result<i64, StoreError> {
        validate_key(key)?;
        let compare = match expected_mod_revision {
            Some(expected) => Compare::mod_revision(key, CompareOp::Equal, expected),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = || {
            etcd_client::Txn::new()
                .when([compare.clone()])
                .and_then([TxnOp::put(
                    key,
                    value.to_vec(),
                    Some(PutOptions::new().with_ignore_lease()),
                )])
                .or_else([TxnOp::get(key, None)])
        };
        let (resp, retried) = self.write("update", txn).await?;
        if resp.succeeded() {
            return header_revision("update", resp.header());
        }
        match (
            found_by_else_branch("update", &resp.op_responses())?,
            expected_mod_revision,
        ) {
            // An attempt whose answer was lost wrote it (the object's new state is exactly
            // ours, so the update took effect either way).
            (Some(current), _) if retried && landed(&current, &value) => Ok(current.mod_revision),
            (Some(current), Some(expected)) => Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                actual: current.mod_revision,
            }),
            _ => Err(StoreError::NotFound {
                key: key.to_owned(),
            }),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<i64>,
    ) -> Result<Deleted, StoreError> {
        validate_key(key)?;
        let compare = match expected_mod_revision {
            Some(expected) => Compare::mod_revision(key, CompareOp::Equal, expected),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = etcd_client::Txn::new()
            .when([compare])
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let mut kv = self.client.kv_client();
        let resp = self
            .call("delete", kv.txn(txn))
            .await?
            .map_err(|e| StoreError::backend("delete", e))?;
        let responses = resp.op_responses();
        if resp.succeeded() {
            let prev = match responses.first() {
                Some(TxnOpResponse::Delete(deleted)) => deleted.prev_kvs().first().map(convert),
                _ => None,
            };
            let Some(prev) = prev.transpose()? else {
                return Err(StoreError::backend(
                    "delete",
                    Unexpected::MissingTxnResponse("delete"),
                ));
            };
            let revision = header_revision("delete", resp.header())?;
            return Ok(Deleted { prev, revision });
        }
        match (
            found_by_else_branch("delete", &responses)?,
            expected_mod_revision,
        ) {
            (Some(current), Some(expected)) => Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                actual: current.mod_revision,
            }),
            _ => Err(StoreError::NotFound {
                key: key.to_owned(),
            }),
        }
    }

    async fn current_revision(&self) -> Result<i64, StoreError> {
        let resp = self
            .read("current revision", || {
                let mut kv = self.client.kv_client();
                let options = GetOptions::new().with_count_only();
                async move { kv.get(PROBE_KEY, Some(options)).await }
            })
            .await?
            .map_err(|e| StoreError::backend("current revision", e))?;
        header_revision("current revision", resp.header())
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError> {
        let from = from_revision.max(0);
        // etcd refuses a read at a revision older than its compaction point: the same rule
        // as the history this watch needs. (A watch alone would be refused a little later
        // and not always: etcd replays from the compaction point itself.)
        if from >= 1 {
            let mut kv = self.client.kv_client();
            let check = GetOptions::new()
                .with_range(prefix_end(prefix.as_bytes()))
                .with_revision(from)
                .with_count_only();
            match self
                .call("watch", kv.get(range_start(prefix), Some(check)))
                .await?
            {
                Ok(_) => {}
                Err(e) if is_future_revision(&e) => {}
                Err(e) => return Err(self.read_error(from, e).await),
            }
        }

        let options = WatchOptions::new()
            .with_range(prefix_end(prefix.as_bytes()))
            .with_start_revision(from.saturating_add(1))
            .with_prev_key();
        let mut watch_client = self.client.watch_client();
        let mut stream = self
            .call(
                "watch",
                watch_client.watch(range_start(prefix), Some(options)),
            )
            .await?
            .map_err(|e| StoreError::backend("watch", e))?;
        // etcd confirms the watch before it sends events.
        let created = self
            .call("watch", stream.message())
            .await?
            .map_err(|e| StoreError::backend("watch", e))?;
        match created {
            Some(resp) if resp.compact_revision() != 0 => {
                return Err(StoreError::Compacted {
                    requested: from,
                    compacted: resp.compact_revision(),
                });
            }
            Some(resp) if resp.canceled() => {
                let reason = resp.cancel_reason().to_owned();
                return Err(StoreError::backend(
                    "watch",
                    Unexpected::WatchCanceled(reason),
                ));
            }
            Some(_) => {}
            None => return Err(StoreError::backend("watch", Unexpected::WatchClosed)),
        }
        let watcher = Watcher {
            stream,
            pending: VecDeque::new(),
            last: from,
            finished: false,
        };
        Ok(Box::pin(futures::stream::unfold(watcher, Watcher::next)))
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let mut kv = self.client.kv_client();
        let options = CompactionOptions::new().with_physical();
        match self
            .call("compact", kv.compact(revision, Some(options)))
            .await?
        {
            Ok(_) => Ok(()),
            Err(e) if is_compacted(&e) => Ok(()),
            Err(e) if is_future_revision(&e) => Err(StoreError::FutureRevision {
                requested: revision,
                current: self.current_revision().await?,
            }),
            Err(e) => Err(StoreError::backend("compact", e)),
        }
    }

    async fn grant_lease(&self, ttl_seconds: i64) -> Result<LeaseId, StoreError> {
        validate_ttl(ttl_seconds)?;
        let mut lease = self.client.lease_client();
        let resp = self
            .call("grant lease", lease.grant(ttl_seconds, None))
            .await?
            .map_err(|e| StoreError::backend("grant lease", e))?;
        if !resp.error().is_empty() {
            let refused = Unexpected::LeaseRefused(resp.error().to_owned());
            return Err(StoreError::backend("grant lease", refused));
        }
        Ok(LeaseId(resp.id()))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let mut client = self.client.lease_client();
        // Opening the keep-alive stream sends one keep-alive and reads its answer.
        match self.call("keep alive", client.keep_alive(lease.0)).await? {
            Ok(_) => Ok(()),
            Err(e) if is_lease_not_found(&e) => Err(StoreError::LeaseNotFound { lease }),
            Err(e) => Err(StoreError::backend("keep alive", e)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        let mut client = self.client.lease_client();
        match self.call("revoke lease", client.revoke(lease.0)).await? {
            Ok(_) => Ok(()),
            Err(e) if is_lease_not_found(&e) => Err(StoreError::LeaseNotFound { lease }),
            Err(e) => Err(StoreError::backend("revoke lease", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn an_empty_prefix_ranges_from_the_smallest_key() {
        assert_eq!(range_start(""), vec![0]);
        assert_eq!(range_start("/a"), b"/a".to_vec());
    }
}
