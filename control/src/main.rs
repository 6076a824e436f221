//! `skiff-control`: Skiff's control plane in one process.

fn main() {}
