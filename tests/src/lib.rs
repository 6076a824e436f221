//! Shared harness for Skiff's end-to-end tests: network namespaces, processes, deadlines.
