//! The reconcile runner: workers take keys from a [`WorkQueue`] and call `reconcile(key)`;
//! the [`Action`] it returns (or its error) decides when the key comes back.
//!
//! The queue hands a key to one worker at a time, so one key is never reconciled twice at
//! once while different keys run in parallel. Errors and panics are logged and the key is
//! retried with the queue's per-key backoff; success resets that backoff.

use std::{
    any::Any,
    fmt::{self, Display},
    future::Future,
    hash::Hash,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use futures::FutureExt;
use tokio::task::JoinSet;

use super::workqueue::WorkQueue;

/// What to do with a key after a successful reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing until something changes (the key is added again by a watch event).
    Done,
    /// Reconcile again after this long, even if nothing changes.
    RequeueAfter(Duration),
}

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs reconciles for the keys of one queue.
pub struct Controller<K> {
    queue: WorkQueue<K>,
    shutdown: Option<Signal>,
}

impl<K: Clone + Eq + Hash> fmt::Debug for Controller<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("queue", &self.queue)
            .field("graceful_shutdown", &self.shutdown.is_some())
            .finish()
    }
}

impl<K> Controller<K>
where
    K: Clone + Eq + Hash + Display + Send + Sync + 'static,
{
    /// A controller over `queue`; whoever feeds the queue (usually informer subscriptions)
    /// holds a clone of it.
    pub fn new(queue: WorkQueue<K>) -> Self {
        Self {
            queue,
            shutdown: None,
        }
    }

    /// Stops when `signal` completes: no new reconcile starts, running ones finish, then
    /// [`Controller::run`] returns. (Shutting the queue down has the same effect.)
    #[must_use]
    pub fn graceful_shutdown_on(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// Runs `workers` workers (at least one) until shut down. Each takes a key, awaits
    /// `reconcile(key)` and then:
    /// - `Ok(Action::Done)`: forgets the key's failures;
    /// - `Ok(Action::RequeueAfter(d))`: forgets them and adds the key again after `d`;
    /// - `Err(_)` or a panic: logs it and adds the key again after its backoff.
    pub async fn run<F, Fut, E>(self, workers: usize, reconcile: F)
    where
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let reconcile = Arc::new(reconcile);
        let mut set = JoinSet::new();
        for _ in 0..workers.max(1) {
            set.spawn(work(self.queue.clone(), Arc::clone(&reconcile)));
        }
        let finished = async move {
            while let Some(joined) = set.join_next().await {
                if let Err(error) = joined {
                    tracing::error!(%error, "a controller worker stopped");
                }
            }
        };
        let Some(signal) = self.shutdown else {
            return finished.await;
        };
        tokio::pin!(finished);
        tokio::select! {
            () = &mut finished => {}
            () = signal => {
                tracing::info!("controller shutting down; waiting for running reconciles");
                self.queue.shut_down();
                finished.await;
            }
        }
    }
}

async fn work<K, F, Fut, E>(queue: WorkQueue<K>, reconcile: Arc<F>)
where
    K: Clone + Eq + Hash + Display + Send + Sync + 'static,
    F: Fn(K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: Display + Send + 'static,
{
    while let Some(key) = queue.get().await {
        let attempt = AssertUnwindSafe(async { reconcile(key.clone()).await })
            .catch_unwind()
            .await;
        match attempt {
            Ok(Ok(Action::Done)) => queue.forget(&key),
            Ok(Ok(Action::RequeueAfter(delay))) => {
                queue.forget(&key);
                queue.add_after(key.clone(), delay);
            }
            Ok(Err(error)) => {
                tracing::warn!(
                    %key,
                    error = %format_args!("{error:#}"),
                    retries = queue.num_requeues(&key),
                    "reconcile failed; retrying with backoff"
                );
                queue.add_rate_limited(key.clone());
            }
            Err(panic) => {
                tracing::error!(
                    %key,
                    panic = panic_message(panic.as_ref()),
                    "reconcile panicked; retrying with backoff"
                );
                queue.add_rate_limited(key.clone());
            }
        }
        queue.done(&key);
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use tokio::{
        sync::{Barrier, oneshot},
        time::Instant,
    };

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the test said no")]
    struct Refused;

    const DEADLINE: Duration = Duration::from_secs(3600);

    async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
        tokio::time::timeout(DEADLINE, future)
            .await
            .unwrap_or_else(|_| panic!("timed out: {what}"))
    }

    #[tokio::test(start_paused = true)]
    async fn controller_reconciles_two_keys_in_parallel() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("b");
        // Each reconcile waits for the other: only parallel reconciles get through.
        let barrier = Arc::new(Barrier::new(2));
        let reconciled = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel::<()>();
        let stop = Mutex::new(Some(stop));
        let run = Controller::new(queue)
            .graceful_shutdown_on(async move {
                let _ = stopped.await;
            })
            .run(2, {
                let reconciled = Arc::clone(&reconciled);
                move |_key: &'static str| {
                    let barrier = Arc::clone(&barrier);
                    let reconciled = Arc::clone(&reconciled);
                    let stop = stop.lock().unwrap().take();
                    async move {
                        barrier.wait().await;
                        reconciled.fetch_add(1, Ordering::SeqCst);
                        drop(stop);
                        Ok::<_, Refused>(Action::Done)
                    }
                }
            });
        bounded("both reconciles meet and the controller stops", run).await;
        assert_eq!(reconciled.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn controller_never_reconciles_one_key_twice_at_once() {
        let queue = WorkQueue::new();
        queue.add("a");
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let run = Controller::new(queue.clone()).run(4, {
            let (running, most, calls, queue) =
                (running.clone(), most.clone(), calls.clone(), queue.clone());
            move |key: &'static str| {
                let (running, most, calls, queue) =
                    (running.clone(), most.clone(), calls.clone(), queue.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let call = calls.fetch_add(1, Ordering::SeqCst);
                    if call == 0 {
                        // Changes arrive while the key is being reconciled.
                        for _ in 0..3 {
                            queue.add(key);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    running.fetch_sub(1, Ordering::SeqCst);
                    if call == 1 {
                        queue.shut_down();
                    }
                    Ok::<_, Refused>(Action::Done)
                }
            }
        });
        bounded("the controller stops", run).await;
        assert_eq!(most.load(Ordering::SeqCst), 1, "never two at once");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the adds during the first reconcile collapse into one more"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn controller_retries_a_failing_key_with_growing_backoff_and_resets_it_on_success() {
        let queue = WorkQueue::new();
        queue.add("a");
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let run = Controller::new(queue.clone()).run(1, {
            let (attempts, queue) = (attempts.clone(), queue.clone());
            move |_key: &'static str| {
                let (attempts, queue) = (attempts.clone(), queue.clone());
                async move {
                    let mut attempts = attempts.lock().unwrap();
                    attempts.push(Instant::now());
                    match attempts.len() {
                        1..=3 => Err(Refused),
                        _ => {
                            queue.shut_down();
                            Ok(Action::Done)
                        }
                    }
                }
            }
        });
        bounded("the controller stops", run).await;
        let attempts = attempts.lock().unwrap();
        let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        let ms = Duration::from_millis;
        assert_eq!(gaps, [ms(5), ms(10), ms(20)]);
        assert_eq!(queue.num_requeues(&"a"), 0, "success forgets the failures");
        assert_eq!(queue.retries(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn controller_retries_a_key_whose_reconcile_panicked() {
        let queue = WorkQueue::new();
        queue.add("a");
        let calls = Arc::new(AtomicUsize::new(0));
        let run = Controller::new(queue.clone()).run(1, {
            let (calls, queue) = (calls.clone(), queue.clone());
            move |_key: &'static str| {
                let (calls, queue) = (calls.clone(), queue.clone());
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("reconcile bug");
                    }
                    queue.shut_down();
                    Ok::<_, Refused>(Action::Done)
                }
            }
        });
        bounded("the controller stops", run).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn controller_requeues_after_the_delay_the_reconcile_asks_for() {
        let queue = WorkQueue::new();
        queue.add("a");
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let run = Controller::new(queue.clone()).run(1, {
            let (attempts, queue) = (attempts.clone(), queue.clone());
            move |_key: &'static str| {
                let (attempts, queue) = (attempts.clone(), queue.clone());
                async move {
                    let mut attempts = attempts.lock().unwrap();
                    attempts.push(Instant::now());
                    if attempts.len() == 3 {
                        queue.shut_down();
                    }
                    Ok::<_, Refused>(Action::RequeueAfter(Duration::from_secs(30)))
                }
            }
        });
        bounded("the controller stops", run).await;
        let attempts = attempts.lock().unwrap();
        let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, [Duration::from_secs(30), Duration::from_secs(30)]);
    }

    #[tokio::test(start_paused = true)]
    async fn controller_shutdown_lets_running_reconciles_finish_and_starts_no_more() {
        let queue = WorkQueue::new();
        queue.add("slow");
        let (stop, stopped) = oneshot::channel::<()>();
        let stop = Mutex::new(Some(stop));
        let finished = Arc::new(AtomicUsize::new(0));
        let run = Controller::new(queue.clone())
            .graceful_shutdown_on(async move {
                let _ = stopped.await;
            })
            .run(2, {
                let (finished, queue) = (finished.clone(), queue.clone());
                move |_key: &'static str| {
                    let (finished, queue) = (finished.clone(), queue.clone());
                    let stop = stop.lock().unwrap().take();
                    async move {
                        // Ask for shutdown, then keep working for a while.
                        drop(stop);
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        queue.add("next");
                        finished.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Refused>(Action::Done)
                    }
                }
            });
        let start = Instant::now();
        bounded("the controller stops", run).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(5),
            "the running reconcile finished"
        );
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "no reconcile started after the stop"
        );
    }
}
