//! Skiff's API: the object model (Kubernetes types from `k8s-openapi`), the resource
//! registry, defaulting and validation, shared by the control plane, the agent and the CLI.

pub use k8s_openapi;
