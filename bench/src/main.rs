//! `skiff-bench`: runs one benchmark and prints its comparison table.

fn main() {}
