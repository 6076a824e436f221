//! The command line: global connection flags and one subcommand per kubectl verb. Each
//! verb's flags live beside its code in `commands/`.

use clap::{Parser, Subcommand};

use crate::commands::{
    api_resources, apply, completion, create, dataplane, delete, describe, exec, get, image, logs,
    rollout, scale, top,
};
use crate::config::ConnectionArgs;

/// skiffctl controls a Skiff cluster, with kubectl's verbs and habits.
///
/// Objects are Kubernetes objects: manifests written for kubectl work as they are.
#[derive(Debug, Parser)]
#[command(
    name = "skiffctl",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create objects from manifests, or update them to match (kubectl apply)
    Apply(apply::ApplyArgs),
    /// Create objects from manifests, or a namespace, config map or deployment from flags
    Create(create::CreateArgs),
    /// List objects in a table, or print them as YAML, JSON or names
    Get(get::GetArgs),
    /// Show an object in detail, with its recent events
    Describe(describe::DescribeArgs),
    /// Delete objects by type and name, by label, or as named in manifests
    Delete(delete::DeleteArgs),
    /// Follow, pause, resume, restart or undo a deployment's rollout
    Rollout(rollout::RolloutArgs),
    /// Print a container's log, or follow it
    Logs(logs::LogsArgs),
    /// Run a command in a container, with stdin and a terminal if asked
    Exec(exec::ExecArgs),
    /// Import an image archive on a node, with progress
    Image(image::ImageArgs),
    /// Set the number of replicas of a deployment or replica set
    Scale(scale::ScaleArgs),
    /// Show the CPU and memory use of nodes or pods (metrics.k8s.io)
    Top(top::TopArgs),
    /// List the resource types the server serves, with their short names
    ApiResources(api_resources::ApiResourcesArgs),
    /// Print a shell completion script (bash, zsh, fish, ...)
    Completion(completion::CompletionArgs),
    /// Show this node's eBPF load balancing: services and backends, or tracked flows
    Dataplane(dataplane::DataplaneArgs),
}

#[cfg(test)]
mod tests;
