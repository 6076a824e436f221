//! A list+watch loop that never gives up: it lists (in pages), watches from the list's
//! resourceVersion, resumes from the last resourceVersion it saw when a stream ends or
//! breaks, and lists again when the server says that version is too old (`Expired`).
//!
//! Its output is a sequence of [`Event`]s whose replay always yields the server's state:
//! a [`Event::Restarted`] carries the whole state after a (re)list, so a cache that
//! replaces its contents with it also drops objects deleted while the watch was away.

use std::{
    collections::hash_map::RandomState,
    future::Future,
    hash::{BuildHasher, Hasher},
    time::Duration,
};

use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::{
    client::{Client, ClientError, EventType, ListParams, ObjectList, WatchParams, WatchStream},
    status::Reason,
};

use super::error_chain;

/// The page size of a list, as client-go's reflector uses.
pub const PAGE_SIZE: i64 = 500;

/// The shortest and longest pause after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The two calls a watcher makes: the seam between it and the API server, which tests
/// replace with a scripted fake. [`Client`] implements it.
pub trait ListWatch: Send + Sync + 'static {
    /// One page of `resource` (plural) in `namespace` ("" for all).
    fn list(
        &self,
        resource: &str,
        namespace: &str,
        params: &ListParams,
    ) -> impl Future<Output = Result<ObjectList, ClientError>> + Send;

    /// A stream of changes after `params.resource_version`.
    fn watch(
        &self,
        resource: &str,
        namespace: &str,
        params: &WatchParams,
    ) -> impl Future<Output = Result<WatchStream, ClientError>> + Send;
}

impl ListWatch for Client {
    async fn list(
        &self,
        resource: &str,
        namespace: &str,
        params: &ListParams,
    ) -> Result<ObjectList, ClientError> {
        Client::list(self, resource, namespace, params).await
    }

    async fn watch(
        &self,
        resource: &str,
        namespace: &str,
        params: &WatchParams,
    ) -> Result<WatchStream, ClientError> {
        Client::watch(self, resource, namespace, params).await
    }
}

/// Which objects to watch, beyond the resource and namespace; the server applies both
/// selectors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// A label selector (`app=web,tier!=db`); empty for all.
    pub label_selector: String,
    /// A field selector (`spec.nodeName=node-1`); empty for all.
    pub field_selector: String,
    /// Objects per list page (0: the whole list in one answer).
    pub page_size: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            label_selector: String::new(),
            field_selector: String::new(),
            page_size: PAGE_SIZE,
        }
    }
}

impl Config {
    /// Only objects whose labels match `selector`.
    #[must_use]
    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = selector.to_string();
        self
    }

    /// Only objects whose fields match `selector`.
    #[must_use]
    pub fn fields(mut self, selector: &str) -> Self {
        self.field_selector = selector.to_string();
        self
    }
}

/// What changed, as JSON straight from the server (decoding is the store's job).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A fresh list: the complete state at `resource_version`. Replace, don't merge.
    Restarted {
        objects: Vec<Value>,
        resource_version: String,
    },
    /// An object was created or changed (the watch's ADDED and MODIFIED).
    Applied(Value),
    /// An object was deleted; this is its last state.
    Deleted(Value),
}

/// Where the loop is.
enum State {
    /// Nothing to resume from: list.
    Listing,
    /// Open a watch from this resourceVersion.
    Resuming { resource_version: String },
    /// Reading a watch; `delivered` says whether it has produced anything yet.
    Watching {
        stream: WatchStream,
        resource_version: String,
        delivered: bool,
    },
}

/// The list+watch loop over `resource` in `namespace`. Call [`Watcher::next`] forever (or
/// turn it into a stream with [`Watcher::into_stream`]): failures are logged and retried
/// with [`Backoff`], never returned.
pub struct Watcher<L> {
    source: L,
    resource: String,
    namespace: String,
    config: Config,
    state: State,
    backoff: Backoff,
}

impl<L> std::fmt::Debug for Watcher<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Listing => "listing".to_string(),
            State::Resuming { resource_version } => format!("resuming from {resource_version}"),
            State::Watching {
                resource_version, ..
            } => format!("watching at {resource_version}"),
        };
        f.debug_struct("Watcher")
            .field("resource", &self.resource)
            .field("namespace", &self.namespace)
            .field("config", &self.config)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<L: ListWatch> Watcher<L> {
    /// A watcher of `resource` (plural, e.g. `pods`) in `namespace` ("" for all namespaces,
    /// and for cluster-scoped resources). Nothing happens until the first [`Watcher::next`].
    pub fn new(source: L, resource: &str, namespace: &str, config: Config) -> Self {
        Self {
            source,
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            config,
            state: State::Listing,
            backoff: Backoff::new(),
        }
    }

    /// The plural resource name this watcher follows.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The next change. Never fails and never ends: errors are logged and retried after a
    /// backoff.
    ///
    /// Dropping the future part-way (in a `select!`) is safe but costly: the watcher lists
    /// again on the next call.
    pub async fn next(&mut self) -> Event {
        loop {
            match std::mem::replace(&mut self.state, State::Listing) {
                State::Listing => {
                    match list_all(&self.source, &self.resource, &self.namespace, &self.config)
                        .await
                    {
                        Ok((objects, resource_version)) => {
                            tracing::debug!(
                                resource = %self.resource,
                                namespace = %self.namespace,
                                objects = objects.len(),
                                %resource_version,
                                "listed"
                            );
                            self.backoff.reset();
                            self.state = State::Resuming {
                                resource_version: resource_version.clone(),
                            };
                            return Event::Restarted {
                                objects,
                                resource_version,
                            };
                        }
                        Err(error) => self.fail("listing", &error).await,
                    }
                }
                State::Resuming { resource_version } => {
                    let params = WatchParams {
                        label_selector: self.config.label_selector.clone(),
                        field_selector: self.config.field_selector.clone(),
                        resource_version: resource_version.clone(),
                        allow_bookmarks: true,
                    };
                    match self
                        .source
                        .watch(&self.resource, &self.namespace, &params)
                        .await
                    {
                        Ok(stream) => {
                            self.state = State::Watching {
                                stream,
                                resource_version,
                                delivered: false,
                            }
                        }
                        Err(error) => {
                            if !error.is(Reason::Expired) {
                                self.state = State::Resuming { resource_version };
                            }
                            self.fail("opening a watch", &error).await;
                        }
                    }
                }
                State::Watching {
                    mut stream,
                    resource_version,
                    delivered,
                } => match stream.next().await {
                    Some(Ok(event)) => {
                        self.backoff.reset();
                        let next_version = if event.resource_version.is_empty() {
                            object_resource_version(&event.object)
                                .unwrap_or(&resource_version)
                                .to_string()
                        } else {
                            event.resource_version
                        };
                        self.state = State::Watching {
                            stream,
                            resource_version: next_version,
                            delivered: true,
                        };
                        match event.event_type {
                            EventType::Added | EventType::Modified => {
                                return Event::Applied(event.object);
                            }
                            EventType::Deleted => return Event::Deleted(event.object),
                            EventType::Bookmark => {}
                        }
                    }
                    Some(Err(error)) => {
                        if !error.is(Reason::Expired) {
                            self.state = State::Resuming { resource_version };
                        }
                        self.fail("watching", &error).await;
                    }
                    None => {
                        tracing::debug!(
                            resource = %self.resource,
                            %resource_version,
                            "the watch ended; resuming"
                        );
                        self.state = State::Resuming { resource_version };
                        if !delivered {
                            // A server that closes every watch at once must not make us spin.
                            self.backoff.wait().await;
                        }
                    }
                },
            }
        }
    }

    /// The watcher as an endless stream of events.
    pub fn into_stream(self) -> impl Stream<Item = Event> + Send {
        futures::stream::unfold(self, |mut watcher| async move {
            let event = watcher.next().await;
            Some((event, watcher))
        })
    }

    /// Logs a failure and waits out the backoff; the caller has set the state to retry from.
    async fn fail(&mut self, doing: &str, error: &ClientError) {
        let delay = self.backoff.next_delay();
        if error.is(Reason::Expired) {
            tracing::info!(
                resource = %self.resource,
                namespace = %self.namespace,
                error = %error_chain(error),
                "the resume point is gone ({doing}); listing again in {delay:?}"
            );
        } else {
            tracing::warn!(
                resource = %self.resource,
                namespace = %self.namespace,
                error = %error_chain(error),
                "{doing} failed; retrying in {delay:?}"
            );
        }
        tokio::time::sleep(delay).await;
    }
}

/// Every page of a list, and the resourceVersion they share.
async fn list_all<L: ListWatch>(
    source: &L,
    resource: &str,
    namespace: &str,
    config: &Config,
) -> Result<(Vec<Value>, String), ClientError> {
    let mut params = ListParams {
        label_selector: config.label_selector.clone(),
        field_selector: config.field_selector.clone(),
        limit: config.page_size,
        continue_token: String::new(),
    };
    let mut objects = Vec::new();
    let mut resource_version = None;
    loop {
        let page = source.list(resource, namespace, &params).await?;
        objects.extend(page.items);
        // Later pages are read at the first page's revision: that one names the state.
        let version = resource_version.get_or_insert(page.resource_version);
        if page.continue_token.is_empty() {
            return Ok((objects, version.clone()));
        }
        params.continue_token = page.continue_token;
    }
}

fn object_resource_version(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

/// Exponential backoff with "equal jitter": the n-th consecutive failure waits a random
/// time in `[d/2, d]` where `d = 2 * BACKOFF_MIN * 2^n`, capped at [`BACKOFF_MAX`]; so
/// every pause lies in `BACKOFF_MIN..=BACKOFF_MAX` and clients that failed together do not
/// return together.
#[derive(Debug, Clone)]
pub struct Backoff {
    failures: u32,
    rng: XorShift,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// A backoff with a random seed.
    pub fn new() -> Self {
        let seed = RandomState::new().build_hasher().finish();
        Self::with_seed(seed)
    }

    /// A backoff whose jitter is the sequence `seed` determines.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            failures: 0,
            rng: XorShift(seed | 1),
        }
    }

    /// The pause before the next retry; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = (BACKOFF_MIN * 2)
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(self.rng.next() % jitter_nanos.saturating_add(1));
        (half + jitter).clamp(BACKOFF_MIN, BACKOFF_MAX)
    }

    /// Sleeps for [`Backoff::next_delay`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Forgets the failures: the next pause is short again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Marsaglia's xorshift64: enough randomness for jitter, no dependency.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{
        collections::VecDeque,
        sync::{Arc, Mutex},
    };

    use futures::stream;
    use serde_json::json;
    use tokio::time::Instant;

    use super::*;
    use crate::{client::WatchEvent, status::ApiError};

    /// One scripted answer to a watch call: an error, or a stream of items that ends.
    pub(crate) type WatchScript = Result<Vec<Result<WatchEvent, ClientError>>, ClientError>;

    /// A call the fake received.
    #[derive(Clone, Debug)]
    pub(crate) enum Call {
        List {
            params: ListParams,
            namespace: String,
            at: Instant,
        },
        Watch {
            params: WatchParams,
            namespace: String,
            at: Instant,
        },
    }

    /// A scripted server: answers lists and watches in order, and records every call. When
    /// a script runs out, calls hang (a watch stream stays open, a list never answers).
    #[derive(Clone, Default)]
    pub(crate) struct FakeApi {
        lists: Arc<Mutex<VecDeque<Result<ObjectList, ClientError>>>>,
        watches: Arc<Mutex<VecDeque<WatchScript>>>,
        calls: Arc<Mutex<Vec<Call>>>,
    }

    impl FakeApi {
        pub(crate) fn list_answers(&self, answer: Result<ObjectList, ClientError>) -> &Self {
            self.lists.lock().unwrap().push_back(answer);
            self
        }

        pub(crate) fn watch_answers(&self, answer: WatchScript) -> &Self {
            self.watches.lock().unwrap().push_back(answer);
            self
        }

        pub(crate) fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }

        fn watch_versions(&self) -> Vec<String> {
            self.calls()
                .into_iter()
                .filter_map(|c| match c {
                    Call::Watch { params, .. } => Some(params.resource_version),
                    Call::List { .. } => None,
                })
                .collect()
        }

        fn call_times(&self) -> Vec<Instant> {
            self.calls()
                .into_iter()
                .map(|c| match c {
                    Call::List { at, .. } | Call::Watch { at, .. } => at,
                })
                .collect()
        }
    }

    impl ListWatch for FakeApi {
        async fn list(
            &self,
            _resource: &str,
            namespace: &str,
            params: &ListParams,
        ) -> Result<ObjectList, ClientError> {
            self.calls.lock().unwrap().push(Call::List {
                params: params.clone(),
                namespace: namespace.to_string(),
                at: Instant::now(),
            });
            let answer = self.lists.lock().unwrap().pop_front();
            match answer {
                Some(answer) => answer,
                None => futures::future::pending().await,
            }
        }

        async fn watch(
            &self,
            _resource: &str,
            namespace: &str,
            params: &WatchParams,
        ) -> Result<WatchStream, ClientError> {
            self.calls.lock().unwrap().push(Call::Watch {
                params: params.clone(),
                namespace: namespace.to_string(),
                at: Instant::now(),
            });
            let answer = self.watches.lock().unwrap().pop_front();
            match answer {
                Some(Ok(items)) => Ok(Box::pin(stream::iter(items))),
                Some(Err(error)) => Err(error),
                None => Ok(Box::pin(stream::pending())),
            }
        }
    }

    pub(crate) fn pod(name: &str, resource_version: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": resource_version},
            "spec": {"containers": [{"name": "c", "image": "demo"}]},
        })
    }

    pub(crate) fn page(items: Vec<Value>, resource_version: &str, next: &str) -> ObjectList {
        ObjectList {
            items,
            resource_version: resource_version.to_string(),
            continue_token: next.to_string(),
            remaining_item_count: 0,
        }
    }

    pub(crate) fn event(event_type: EventType, object: Value) -> Result<WatchEvent, ClientError> {
        let resource_version = object_resource_version(&object)
            .unwrap_or_default()
            .to_string();
        Ok(WatchEvent {
            event_type,
            object,
            resource_version,
        })
    }

    pub(crate) fn bookmark(resource_version: &str) -> Result<WatchEvent, ClientError> {
        Ok(WatchEvent {
            event_type: EventType::Bookmark,
            object: Value::Null,
            resource_version: resource_version.to_string(),
        })
    }

    pub(crate) fn expired() -> ClientError {
        ApiError::new(Reason::Expired, "too old resource version").into()
    }

    pub(crate) fn unavailable() -> ClientError {
        ApiError::new(Reason::ServiceUnavailable, "connection refused").into()
    }

    fn watcher(fake: &FakeApi) -> Watcher<FakeApi> {
        Watcher::new(fake.clone(), "pods", "default", Config::default())
    }

    /// `next()`, failing the test instead of hanging when the script is exhausted.
    async fn next(watcher: &mut Watcher<FakeApi>) -> Event {
        tokio::time::timeout(Duration::from_secs(3600), watcher.next())
            .await
            .expect("the watcher produced no event (the script ran out)")
    }

    #[tokio::test(start_paused = true)]
    async fn watcher_lists_every_page_then_watches_from_the_lists_resource_version() {
        let fake = FakeApi::default();
        fake.list_answers(Ok(page(vec![pod("a", "3")], "10", "token-1")))
            .list_answers(Ok(page(vec![pod("b", "7")], "10", "")))
            .watch_answers(Ok(vec![event(EventType::Added, pod("c", "11"))]));
        let mut watcher = Watcher::new(
            fake.clone(),
            "pods",
            "",
            Config::default()
                .labels("app=web")
                .fields("spec.nodeName=n1"),
        );

        let restarted = next(&mut watcher).await;
        assert_eq!(
            restarted,
            Event::Restarted {
                objects: vec![pod("a", "3"), pod("b", "7")],
                resource_version: "10".into()
            }
        );
        assert_eq!(next(&mut watcher).await, Event::Applied(pod("c", "11")));

        let calls = fake.calls();
        let Call::List {
            params: first,
            namespace,
            ..
        } = &calls[0]
        else {
            panic!("the first call is a list: {calls:?}")
        };
        assert_eq!(namespace, "");
        assert_eq!(first.limit, PAGE_SIZE);
        assert_eq!(first.continue_token, "");
        assert_eq!(first.label_selector, "app=web");
        assert_eq!(first.field_selector, "spec.nodeName=n1");
        let Call::List { params: second, .. } = &calls[1] else {
            panic!("the second call continues the list: {calls:?}")
        };
        assert_eq!(second.continue_token, "token-1");
        let Call::Watch {
            params: watch,
            namespace,
            ..
        } = &calls[2]
        else {
            panic!("the third call is a watch: {calls:?}")
        };
        assert_eq!(namespace, "");
        assert_eq!(watch.resource_version, "10");
        assert!(watch.allow_bookmarks);
        assert_eq!(watch.label_selector, "app=web");
        assert_eq!(watch.field_selector, "spec.nodeName=n1");
    }

    #[tokio::test(start_paused = true)]
    async fn watcher_resumes_from_the_last_seen_resource_version_when_the_stream_ends() {
        let fake = FakeApi::default();
        fake.list_answers(Ok(page(vec![], "10", "")))
            .watch_answers(Ok(vec![
                event(EventType::Added, pod("a", "11")),
                event(EventType::Modified, pod("a", "12")),
            ]))
            .watch_answers(Ok(vec![event(EventType::Deleted, pod("a", "13"))]));
        let mut watcher = watcher(&fake);

        assert!(matches!(next(&mut watcher).await, Event::Restarted { .. }));
        assert_eq!(next(&mut watcher).await, Event::Applied(pod("a", "11")));
        assert_eq!(next(&mut watcher).await, Event::Applied(pod("a", "12")));
        assert_eq!(next(&mut watcher).await, Event::Deleted(pod("a", "13")));
        assert_eq!(fake.watch_versions(), ["10", "12"]);
        let lists = fake
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::List { .. }))
            .count();
        assert_eq!(lists, 1, "a resumable watch never lists again");
    }

    #[tokio::test(start_paused = true)]
    async fn watcher_resumes_after_a_broken_stream_from_the_last_resource_version() {
        let fake = FakeApi::default();
        fake.list_answers(Ok(page(vec![], "10", "")))
            .watch_answers(Ok(vec![
                event(EventType::Added, pod("a", "11")),
                Err(unavailable()),
            ]))
            .watch_answers(Ok(vec![event(EventType::Added, pod("b", "12"))]));
        let mut watcher = watcher(&fake);

        next(&mut watcher).await;
        assert_eq!(next(&mut watcher).await, Event::Applied(pod("a", "11")));
        assert_eq!(next(&mut watcher).await, Event::Applied(pod("b", "12")));
        assert_eq!(fake.watch_versions(), ["10", "11"]);
    }

    #[tokio::test(start_paused = true)]
    async fn watcher_bookmark_advances_the_resume_point() {
        let fake = FakeApi::default();
        fake.list_answers(Ok(page(vec![], "10", "")))
            .watch_answers(Ok(vec![
                event(EventType::Added, pod("a", "11")),
                bookmark("25"),
            ]))
            .watch_answers(Ok(vec![event(EventType::Added, pod("b", "26"))]));
        let mut watcher = watcher(&fake);

        next(&mut watcher).await;
        assert_eq!(next(&mut watcher).await, Event::Applied(pod("a", "11")));
        // The bookmark is not an event; it only moves the resume point.
        assert_eq!(next(&mut watcher).await, Event::Applied(pod("b", "26")));
        assert_eq!(fake.watch_versions(), ["10", "25"]);
    }

    #[tokio::test(start_paused = true)]
    async fn watcher_relists_on_expired_and_restarts_with_the_full_state() {
        let fake = FakeApi::default();
        fake.list_answers(Ok(page(vec![pod("a", "5"), pod("b", "6")], "10", "")))
            .watch_answers(Ok(vec![
                event(EventType::Modified, pod("a", "11")),
                Err(expired()),
            ]))
            // The server lost the history after 11 (a restart, a compaction): list again.
            .list_answers(Ok(page(vec![pod("a", "11"), pod("c", "40")], "41", "")))
            .watch_answers(Ok(vec![event(EventType::Added, pod("d", "42"))]));
        let mut watcher = watcher(&fake);

        next(&mut watcher).await;
        assert_eq!(next(&mut watcher).await, Event::Applied(pod("a", "11")));
        // "b" was deleted while the watch was gone: the restart's state no longer has it.
        assert_eq!(
            next(&mut watcher).await,
            Event::Restarted {
                objects: vec![pod("a", "11"), pod("c", "40")],
                resource_version: "41".into()
            }
        );
        assert_eq!(next(&mut watcher).await, Event::Applied(pod("d", "42")));
        assert_eq!(fake.watch_versions(), ["10", "41"]);
    }

    #[tokio::test(start_paused = true)]
    async fn watcher_relists_when_opening_a_watch_is_refused_as_expired() {
        let fake = FakeApi::default();
        fake.list_answers(Ok(page(vec![pod("a", "5")], "10", "")))
            .watch_answers(Err(expired()))
            .list_answers(Ok(page(vec![], "20", "")));
        let mut watcher = watcher(&fake);

        next(&mut watcher).await;
        assert_eq!(
            next(&mut watcher).await,
            Event::Restarted {
                objects: vec![],
                resource_version: "20".into()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn watcher_backs_off_with_growing_bounded_delays_while_the_server_is_down() {
        let fake = FakeApi::default();
        for _ in 0..12 {
            fake.list_answers(Err(unavailable()));
        }
        fake.list_answers(Ok(page(vec![pod("a", "1")], "10", "")));
        let mut watcher = watcher(&fake);

        assert!(matches!(next(&mut watcher).await, Event::Restarted { .. }));
        let times = fake.call_times();
        assert_eq!(times.len(), 13);
        let pauses: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        for (n, pause) in pauses.iter().enumerate() {
            let ceiling = (BACKOFF_MIN * 2 * (1 << n)).min(BACKOFF_MAX);
            assert!(
                *pause >= ceiling / 2 && *pause <= ceiling,
                "pause {n} was {pause:?}, expected within [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        assert!(pauses[0] >= BACKOFF_MIN);
        assert!(pauses.iter().all(|p| *p <= BACKOFF_MAX));
        assert!(pauses[11] >= BACKOFF_MAX / 2, "the pauses reach the cap");
    }

    #[tokio::test(start_paused = true)]
    async fn watcher_backoff_starts_short_again_after_a_success() {
        let fake = FakeApi::default();
        for _ in 0..6 {
            fake.list_answers(Err(unavailable()));
        }
        fake.list_answers(Ok(page(vec![], "10", "")))
            .watch_answers(Err(unavailable()))
            .watch_answers(Ok(vec![event(EventType::Added, pod("a", "11"))]));
        let mut watcher = watcher(&fake);

        next(&mut watcher).await;
        assert_eq!(next(&mut watcher).await, Event::Applied(pod("a", "11")));
        let times = fake.call_times();
        let last_pause = times[times.len() - 1] - times[times.len() - 2];
        assert!(
            last_pause <= BACKOFF_MIN * 2,
            "after a successful list the first retry waits {last_pause:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn watcher_does_not_spin_on_watches_that_end_at_once() {
        let fake = FakeApi::default();
        fake.list_answers(Ok(page(vec![], "10", "")));
        for _ in 0..3 {
            fake.watch_answers(Ok(vec![]));
        }
        fake.watch_answers(Ok(vec![event(EventType::Added, pod("a", "11"))]));
        let mut watcher = watcher(&fake);

        next(&mut watcher).await;
        let started = Instant::now();
        assert_eq!(next(&mut watcher).await, Event::Applied(pod("a", "11")));
        assert!(started.elapsed() >= BACKOFF_MIN * 3);
        assert_eq!(fake.watch_versions(), ["10", "10", "10", "10"]);
    }

    #[test]
    fn backoff_delays_stay_within_their_jitter_bounds_for_any_seed() {
        for seed in [0, 1, 42, u64::MAX, 0xdead_beef] {
            let mut backoff = Backoff::with_seed(seed);
            for n in 0..40 {
                let delay = backoff.next_delay();
                let ceiling = (BACKOFF_MIN * 2)
                    .saturating_mul(1 << n.min(16))
                    .min(BACKOFF_MAX);
                assert!(delay >= ceiling / 2 && delay <= ceiling, "{delay:?}");
            }
        }
    }
}
