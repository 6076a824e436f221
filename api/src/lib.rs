//! Skiff's API: the object model (Kubernetes types from `k8s-openapi`), the resource
//! registry, defaulting and validation, shared by the control plane, the agent and the CLI.
//!
//! A write flows through it as the Kubernetes API server's does: text from a user is split
//! into objects by [`manifest`], each names a type of the [`resources`] registry, and
//! [`prepare_create`] / [`prepare_update`] decode it into its typed [`Object`], apply
//! [`defaults`], run [`validation`] and return the JSON to store; that part is pure, no I/O.
//! [`client`] reaches the API server, and [`runtime`] builds informers, work queues and
//! controllers on top of it for every component.
//!
//! ```
//! use skiff_api::{parse_objects, prepare_create};
//!
//! let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n";
//! for object in parse_objects(manifest)? {
//!     let namespace = object.target_namespace("default");
//!     let stored = prepare_create(object.resource, namespace, object.value.clone())?;
//!     assert_eq!(stored["metadata"]["namespace"], "default");
//!     assert_eq!(object.resource.key(namespace, "settings"), "/registry/configmaps/default/settings");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod client;
pub mod defaults;
pub mod duration;
pub mod manifest;
pub mod metrics_api;
#[cfg(feature = "metrics-http")]
pub mod metrics_http;
pub mod node_api;
pub mod object;
pub mod prepare;
pub mod resources;
pub mod runtime;
pub mod selector;
pub mod status;
pub mod validation;

pub use k8s_openapi;

/// The gRPC messages and services generated from `proto/skiff/v1/` (the API and the node API).
#[allow(
    missing_docs,
    clippy::all,
    unused_qualifications,
    missing_debug_implementations
)]
pub mod proto {
    tonic::include_proto!("skiff.v1");
}

pub use manifest::{Document, ManifestError, TypedObject, parse_documents, parse_objects};
pub use object::Object;
pub use prepare::{prepare_create, prepare_status_update, prepare_update};
pub use resources::{ResourceId, ResourceType, Scope};
pub use validation::{ErrorKind, FieldError, Path, ValidationErrors};
