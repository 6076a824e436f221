//! A work queue of keys, as client-go's: duplicates collapse, a key is never handed to two
//! workers at once, a key added while it is being processed is processed again after
//! [`WorkQueue::done`], and failed keys come back after a per-key exponential backoff.
//!
//! A key moves through three sets: *queued* (waiting for a worker), *processing* (handed
//! out by [`WorkQueue::get`], until `done`), and *dirty* (needs processing: queued, or
//! re-added while processing). Delayed keys wait on a timer until their time comes, then
//! are added like any other.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    fmt,
    hash::Hash,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

/// The first retry's delay after a failure (client-go's default).
pub const RETRY_BASE: Duration = Duration::from_millis(5);
/// The longest delay between retries (client-go's default).
pub const RETRY_MAX: Duration = Duration::from_secs(1000);

struct State<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// Delayed keys by due time (the sequence number breaks ties), and each delayed key's
    /// entry there: a key waits once, for its earliest time.
    timers: BTreeMap<(Instant, u64), K>,
    waiting: HashMap<K, (Instant, u64)>,
    next_timer: u64,
    failures: HashMap<K, u32>,
    shutting_down: bool,
    adds: u64,
    retries: u64,
}

impl<K: Clone + Eq + Hash> State<K> {
    /// Adds `key`; true when a worker can now take it.
    fn add(&mut self, key: K) -> bool {
        if self.shutting_down || self.dirty.contains(&key) {
            return false;
        }
        self.adds += 1;
        self.dirty.insert(key.clone());
        if self.processing.contains(&key) {
            // Queued again by `done`.
            return false;
        }
        self.queue.push_back(key);
        true
    }

    /// Moves the keys whose time has come into the queue.
    fn promote_due(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.waiting.remove(&key);
            self.add(key);
        }
    }
}

struct Shared<K> {
    state: Mutex<State<K>>,
    /// Wakes the workers waiting in `get` (after an add, a new timer, or shut down).
    wake: Notify,
    retry_base: Duration,
    retry_max: Duration,
}

/// A deduplicating, rate-limited queue of keys; clones share one queue.
pub struct WorkQueue<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: Clone + Eq + Hash> fmt::Debug for WorkQueue<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("WorkQueue")
            .field("queued", &state.queue.len())
            .field("processing", &state.processing.len())
            .field("delayed", &state.timers.len())
            .field("shutting_down", &state.shutting_down)
            .finish()
    }
}

impl<K: Clone + Eq + Hash> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    /// A queue whose retries back off from [`RETRY_BASE`] to [`RETRY_MAX`].
    pub fn new() -> Self {
        Self::with_retry_backoff(RETRY_BASE, RETRY_MAX)
    }

    /// A queue whose n-th consecutive retry of a key waits `base * 2^n`, at most `max`.
    pub fn with_retry_backoff(base: Duration, max: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    timers: BTreeMap::new(),
                    waiting: HashMap::new(),
                    next_timer: 0,
                    failures: HashMap::new(),
                    shutting_down: false,
                    adds: 0,
                    retries: 0,
                }),
                wake: Notify::new(),
                retry_base: base,
                retry_max: max,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `key` as needing processing. A key already queued is not queued twice; a key
    /// being processed is queued again when its worker calls [`WorkQueue::done`].
    pub fn add(&self, key: K) {
        if self.lock().add(key) {
            self.shared.wake.notify_waiters();
        }
    }

    /// Adds `key` once `delay` has passed. A key already waiting keeps the earlier time.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let due = Instant::now() + delay;
        {
            let mut state = self.lock();
            if state.shutting_down {
                return;
            }
            if let Some(&(at, sequence)) = state.waiting.get(&key) {
                if at <= due {
                    return;
                }
                state.timers.remove(&(at, sequence));
            }
            let sequence = state.next_timer;
            state.next_timer += 1;
            state.timers.insert((due, sequence), key.clone());
            state.waiting.insert(key, (due, sequence));
        }
        // Waiting workers sleep until the earliest timer: this one may be earlier.
        self.shared.wake.notify_waiters();
    }

    /// Adds `key` after its backoff: `base * 2^n` for its n-th retry since the last
    /// [`WorkQueue::forget`].
    pub fn add_rate_limited(&self, key: K) {
        let delay = {
            let mut state = self.lock();
            if state.shutting_down {
                return;
            }
            state.retries += 1;
            let failures = state.failures.entry(key.clone()).or_insert(0);
            let exponent = *failures;
            *failures = failures.saturating_add(1);
            backoff(self.shared.retry_base, self.shared.retry_max, exponent)
        };
        self.add_after(key, delay);
    }

    /// Resets `key`'s backoff (after it was processed successfully).
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// How many retries `key` has had since the last [`WorkQueue::forget`].
    pub fn num_requeues(&self, key: &K) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to process, waiting for one if needed; `None` once the queue is shut
    /// down. The caller owns the key until it calls [`WorkQueue::done`] with it: no other
    /// `get` returns it meanwhile.
    pub async fn get(&self) -> Option<K> {
        loop {
            let woken = self.shared.wake.notified();
            tokio::pin!(woken);
            // Register for a wake-up before looking, so an add in between is not missed.
            woken.as_mut().enable();
            let next_due = {
                let mut state = self.lock();
                if state.shutting_down {
                    return None;
                }
                state.promote_due(Instant::now());
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    return Some(key);
                }
                state.timers.first_key_value().map(|(&(at, _), _)| at)
            };
            match next_due {
                Some(at) => {
                    tokio::select! {
                        () = &mut woken => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => woken.await,
            }
        }
    }

    /// Ends the processing of `key`; if it was added meanwhile, it is queued again.
    pub fn done(&self, key: &K) {
        let requeued = {
            let mut state = self.lock();
            state.processing.remove(key);
            if state.dirty.contains(key) && !state.shutting_down {
                state.queue.push_back(key.clone());
                true
            } else {
                false
            }
        };
        if requeued {
            self.shared.wake.notify_waiters();
        }
    }

    /// Stops handing out keys: every pending and future [`WorkQueue::get`] returns `None`,
    /// and adds are ignored. Keys being processed may still be `done`.
    pub fn shut_down(&self) {
        self.lock().shutting_down = true;
        self.shared.wake.notify_waiters();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    /// Keys waiting for a worker (the `workqueue_depth` metric); delayed keys count once
    /// their time has come.
    pub fn len(&self) -> usize {
        let mut state = self.lock();
        state.promote_due(Instant::now());
        state.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds that were not duplicates, since the queue was made (`workqueue_adds_total`).
    pub fn adds(&self) -> u64 {
        self.lock().adds
    }

    /// Rate-limited re-adds since the queue was made (`workqueue_retries_total`).
    pub fn retries(&self) -> u64 {
        self.lock().retries
    }
}

/// `base * 2^exponent`, at most `max`.
fn backoff(base: Duration, max: Duration, exponent: u32) -> Duration {
    2u32.checked_pow(exponent)
        .and_then(|factor| base.checked_mul(factor))
        .map_or(max, |delay| delay.min(max))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use futures::FutureExt;
    use proptest::prelude::*;

    use super::*;

    /// `get()` that must answer now (the queue has something ready).
    fn take(queue: &WorkQueue<&'static str>) -> &'static str {
        queue
            .get()
            .now_or_never()
            .expect("a key is ready")
            .expect("the queue is running")
    }

    fn nothing_ready(queue: &WorkQueue<&'static str>) -> bool {
        queue.get().now_or_never().is_none()
    }

    #[tokio::test]
    async fn workqueue_collapses_duplicate_adds_into_one_key() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("b");
        queue.add("a");
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.adds(), 2);
        assert_eq!(take(&queue), "a");
        assert_eq!(take(&queue), "b");
        assert!(nothing_ready(&queue));
    }

    #[tokio::test]
    async fn workqueue_never_hands_out_a_key_that_is_being_processed() {
        let queue = WorkQueue::new();
        queue.add("a");
        assert_eq!(take(&queue), "a");
        queue.add("a");
        queue.add("a");
        assert!(nothing_ready(&queue), "a is still being processed");
        assert_eq!(queue.len(), 0);

        queue.done(&"a");
        assert_eq!(take(&queue), "a", "added while processing: processed again");
        queue.done(&"a");
        assert!(nothing_ready(&queue), "the two adds collapsed into one");
    }

    #[tokio::test]
    async fn workqueue_wakes_a_waiting_worker_when_a_key_arrives() {
        let queue = WorkQueue::new();
        let worker = tokio::spawn({
            let queue = queue.clone();
            async move { queue.get().await }
        });
        tokio::task::yield_now().await;
        queue.add("a");
        let key = tokio::time::timeout(Duration::from_secs(5), worker)
            .await
            .expect("the worker wakes")
            .unwrap();
        assert_eq!(key, Some("a"));
    }

    #[tokio::test]
    async fn workqueue_hands_a_key_to_one_of_two_waiting_workers_only() {
        let queue = WorkQueue::new();
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move { queue.get().await })
            })
            .collect();
        tokio::task::yield_now().await;
        queue.add("a");
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        let finished: Vec<_> = workers.iter().filter(|w| w.is_finished()).collect();
        assert_eq!(finished.len(), 1, "exactly one worker got the key");
        queue.shut_down();
        let mut got = Vec::new();
        for worker in workers {
            got.push(worker.await.unwrap());
        }
        got.sort();
        assert_eq!(got, [None, Some("a")]);
    }

    #[tokio::test(start_paused = true)]
    async fn workqueue_add_after_hands_the_key_out_when_its_time_comes() {
        let queue = WorkQueue::new();
        let start = Instant::now();
        queue.add_after("late", Duration::from_secs(10));
        queue.add_after("early", Duration::from_secs(2));
        // A second, later request for a waiting key keeps the earlier time.
        queue.add_after("early", Duration::from_secs(30));
        assert!(queue.is_empty());

        assert_eq!(queue.get().await, Some("early"));
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(queue.get().await, Some("late"));
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        queue.done(&"early");
        queue.done(&"late");
        assert!(nothing_ready(&queue));
    }

    #[tokio::test(start_paused = true)]
    async fn workqueue_add_after_with_an_earlier_time_wakes_the_waiting_worker_sooner() {
        let queue = WorkQueue::new();
        let start = Instant::now();
        queue.add_after("a", Duration::from_secs(60));
        let worker = tokio::spawn({
            let queue = queue.clone();
            async move { queue.get().await }
        });
        tokio::task::yield_now().await;
        queue.add_after("a", Duration::from_secs(1));
        assert_eq!(worker.await.unwrap(), Some("a"));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn workqueue_rate_limited_retries_back_off_exponentially_until_forgotten() {
        let queue = WorkQueue::new();
        let mut delays = Vec::new();
        for _ in 0..4 {
            let start = Instant::now();
            queue.add_rate_limited("a");
            assert_eq!(queue.get().await, Some("a"));
            delays.push(start.elapsed());
            queue.done(&"a");
        }
        let ms = Duration::from_millis;
        assert_eq!(delays, [ms(5), ms(10), ms(20), ms(40)]);
        assert_eq!(queue.num_requeues(&"a"), 4);
        assert_eq!(queue.retries(), 4);

        queue.forget(&"a");
        assert_eq!(queue.num_requeues(&"a"), 0);
        let start = Instant::now();
        queue.add_rate_limited("a");
        assert_eq!(queue.get().await, Some("a"));
        assert_eq!(start.elapsed(), ms(5), "forget starts the backoff over");
    }

    #[test]
    fn workqueue_backoff_is_capped() {
        assert_eq!(backoff(RETRY_BASE, RETRY_MAX, 0), RETRY_BASE);
        assert_eq!(
            backoff(RETRY_BASE, RETRY_MAX, 10),
            Duration::from_millis(5 * 1024)
        );
        assert_eq!(backoff(RETRY_BASE, RETRY_MAX, 18), RETRY_MAX);
        assert_eq!(backoff(RETRY_BASE, RETRY_MAX, u32::MAX), RETRY_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn workqueue_delayed_key_that_comes_due_while_processing_waits_for_done() {
        let queue = WorkQueue::new();
        queue.add("a");
        assert_eq!(take(&queue), "a");
        queue.add_after("a", Duration::from_millis(1));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(nothing_ready(&queue));
        queue.done(&"a");
        assert_eq!(take(&queue), "a");
    }

    #[tokio::test]
    async fn workqueue_shut_down_releases_waiting_workers_and_ignores_adds() {
        let queue = WorkQueue::<&str>::new();
        let worker = tokio::spawn({
            let queue = queue.clone();
            async move { queue.get().await }
        });
        tokio::task::yield_now().await;
        queue.shut_down();
        assert_eq!(worker.await.unwrap(), None);
        queue.add("a");
        assert!(queue.is_empty());
        assert_eq!(queue.get().await, None);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add(u8),
        AddAfter(u8, u8),
        Get,
        Done(usize),
        Advance(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6).prop_map(Op::Add),
            (0u8..6, 1u8..20).prop_map(|(k, ms)| Op::AddAfter(k, ms)),
            Just(Op::Get),
            any::<usize>().prop_map(Op::Done),
            (1u8..30).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Whatever the order of operations: a key is never handed out while it is being
        /// processed, and every key added is eventually handed out after its last add.
        #[test]
        fn workqueue_never_yields_a_key_that_is_in_processing(ops in proptest::collection::vec(op(), 1..200)) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            runtime.block_on(async {
                let queue = WorkQueue::new();
                let mut processing: Vec<u8> = Vec::new();
                // Keys added (now or later) and not handed out since.
                let mut owed: BTreeSet<u8> = BTreeSet::new();
                for op in ops {
                    match op {
                        Op::Add(k) => {
                            queue.add(k);
                            owed.insert(k);
                        }
                        Op::AddAfter(k, ms) => {
                            queue.add_after(k, Duration::from_millis(ms.into()));
                            owed.insert(k);
                        }
                        Op::Get => {
                            if let Some(Some(k)) = queue.get().now_or_never() {
                                prop_assert!(!processing.contains(&k), "{k} handed out twice");
                                processing.push(k);
                                owed.remove(&k);
                            }
                        }
                        Op::Done(i) if !processing.is_empty() => {
                            let k = processing.remove(i % processing.len());
                            queue.done(&k);
                        }
                        Op::Done(_) => {}
                        Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms.into())).await,
                    }
                }
                // Drain: finish everything, let every timer fire, and collect what is owed.
                for k in processing.drain(..) {
                    queue.done(&k);
                }
                tokio::time::advance(Duration::from_secs(1)).await;
                while let Some(Some(k)) = queue.get().now_or_never() {
                    prop_assert!(!processing.contains(&k));
                    owed.remove(&k);
                    processing.push(k);
                }
                prop_assert!(owed.is_empty(), "never handed out: {owed:?}");
                Ok(())
            })?;
        }
    }
}
