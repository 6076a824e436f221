//! Scheduler tests across modules: whole cycles on small clusters, preemption, and
//! property tests of the placement invariants, and a throughput run.

mod fixtures;
mod preemption;
mod properties;
mod schedule_one;
mod throughput;
