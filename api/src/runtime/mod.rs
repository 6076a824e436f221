//! The client-side runtime every component builds on (scheduler, controllers, node agent):
//! a cache of the objects it watches and a loop that reconciles them, after kube-runtime and
//! client-go.
//!
//! Data flows one way:
//!
//! ```text
//! API server ──list+watch──▶ watcher ──Event──▶ store (Writer) ──Change──▶ subscribers
//!                                                  │                          │ key
//!                                                  ▼ reads                    ▼
//!                              reconcile(key) ◀── Controller ◀── WorkQueue (dedup, backoff)
//! ```
//!
//! - [`watcher`] lists (in pages) and watches from the list's resourceVersion, resumes
//!   from the last one it saw when a stream breaks, and lists again (an [`Event::Restarted`]
//!   with the full state) when the server has forgotten that version. It never fails: it
//!   backs off and retries.
//! - [`store`] decodes each object once into its `k8s-openapi` type and keeps it as an
//!   `Arc<T>` keyed by [`ObjectKey`] (`namespace/name`), with optional secondary indexes.
//! - [`informer`] runs a watcher into a store in a task and broadcasts each [`Change`];
//!   [`factory`] shares one informer per resource among every component of a process.
//! - [`workqueue`] collapses the keys those changes name, hands each to one worker at a
//!   time, and brings failed keys back after a per-key backoff.
//! - [`controller`] runs `reconcile(key)` on a number of workers and requeues by the
//!   [`Action`] it returns or its error.
//!
//! Reconcile is level-triggered: it reads the current state from stores and acts on that;
//! a change only says which key to look at. Wired together:
//!
//! ```no_run
//! use k8s_openapi::api::core::v1::Pod;
//! use skiff_api::{
//!     client::Client,
//!     runtime::{Action, Change, Config, Controller, Informer, ObjectKey, WorkQueue},
//! };
//!
//! # async fn example(client: Client) {
//! let pods = Informer::<Pod>::new(client, "pods", "", Config::default());
//! let queue = WorkQueue::new();
//! let (store, mut changes, feed) = (pods.store(), pods.subscribe(), queue.clone());
//! tokio::spawn(async move {
//!     while let Some(change) = changes.recv().await {
//!         match change.object() {
//!             Some(pod) => feed.add(ObjectKey::of(&**pod)),
//!             None => store.keys().into_iter().for_each(|key| feed.add(key)), // Resynced
//!         }
//!     }
//! });
//! let store = pods.store();
//! Controller::new(queue)
//!     .graceful_shutdown_on(async { tokio::signal::ctrl_c().await.unwrap_or_default() })
//!     .run(4, move |key: ObjectKey| {
//!         let _pod = store.get(&key); // None: deleted, clean up after it
//!         async move { Ok::<_, std::convert::Infallible>(Action::Done) }
//!     })
//!     .await;
//! # }
//! ```

pub mod controller;
pub mod factory;
pub mod informer;
pub mod store;
pub mod watcher;
pub mod workqueue;

pub use controller::{Action, Controller};
pub use factory::InformerFactory;
pub use informer::{Informer, Subscription};
pub use store::{Change, ObjectKey, Store, StoreError, Writer};
pub use watcher::{Config, Event, ListWatch, Watcher};
pub use workqueue::WorkQueue;

/// An error and its causes on one line (`outer: middle: root`), for logs and for messages
/// that leave the process; a cause whose text the line already holds is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
