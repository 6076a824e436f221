//! `skiff-agent`: the node agent.

fn main() {}
