//! `skiffctl`: the command-line client, with kubectl's verbs and habits.

fn main() {}
