//! Skiff's control plane: the API server, the store under it, the scheduler and the
//! controllers, run together by the `skiff-control` binary.

pub mod apiserver;
pub mod compaction;
pub mod controllers;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod scheduler;
pub mod store;
