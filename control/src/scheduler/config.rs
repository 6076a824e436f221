//! The scheduler's configuration, shaped like kube-scheduler's `KubeSchedulerConfiguration`
//! (`kubescheduler.config.k8s.io/v1`) so existing files mostly carry over: profiles by
//! `schedulerName`, the plugins each enables or disables per extension point (`multiPoint`
//! applies to every point a plugin implements), score weights, `pluginConfig` arguments,
//! `percentageOfNodesToScore`, and the queue's back-off timings.
//!
//! Every field has a default; the empty document is the default profile, which enables
//! every in-tree plugin with kube-scheduler's weights. The caller reads the file and hands
//! the text to [`SchedulerConfig::from_yaml`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::plugins::{
    balanced_allocation, default_preemption, image_locality, inter_pod_affinity, node_affinity,
    node_name, node_ports, node_resources_fit, node_unschedulable, pod_topology_spread,
    priority_sort, taint_toleration,
};
use super::queue::QueueConfig;

/// The scheduler name pods get when they name none.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Below this many nodes, every node is tried.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never drops below this.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("scheduler configuration is not valid YAML for KubeSchedulerConfiguration")]
    Yaml {
        #[source]
        source: serde_yaml::Error,
    },
    #[error("profile {profile:?}: unknown plugin {plugin:?}")]
    UnknownPlugin { profile: String, plugin: String },
    #[error(
        "profile {profile:?}: plugin {plugin:?} does not implement the {point} extension point"
    )]
    NotAnExtension {
        profile: String,
        plugin: String,
        point: &'static str,
    },
    #[error("profile {profile:?}: no queue sort plugin is enabled; enable PrioritySort")]
    NoQueueSort { profile: String },
    #[error(
        "profile {profile:?}: queue sort {plugin:?} differs from the first profile's; all profiles share one queue"
    )]
    DifferentQueueSort { profile: String, plugin: String },
    #[error("two profiles are named {profile:?}; schedulerName must be unique")]
    DuplicateProfile { profile: String },
    #[error("no profiles configured")]
    NoProfiles,
    #[error("percentageOfNodesToScore {value} is above 100")]
    InvalidPercentage { value: u32 },
    #[error("profile {profile:?}: score weight of {plugin:?} must be positive, got {weight}")]
    InvalidWeight {
        profile: String,
        plugin: String,
        weight: i64,
    },
    #[error("pluginConfig for {plugin:?}: invalid args")]
    Args {
        plugin: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A plugin named in a plugin set, with a score weight when relevant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
}

impl PluginRef {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            weight: None,
        }
    }

    pub fn weighted(name: &str, weight: i64) -> Self {
        Self {
            name: name.to_string(),
            weight: Some(weight),
        }
    }
}

/// Plugins enabled and disabled at one extension point (`*` disables all defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginSet {
    #[serde(default)]
    pub enabled: Vec<PluginRef>,
    #[serde(default)]
    pub disabled: Vec<PluginRef>,
}

impl PluginSet {
    pub(crate) fn disables(&self, name: &str) -> bool {
        self.disabled
            .iter()
            .any(|p| p.name == name || p.name == "*")
    }
}

/// The plugin sets of a profile, per extension point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plugins {
    #[serde(default)]
    pub multi_point: PluginSet,
    #[serde(default)]
    pub queue_sort: PluginSet,
    #[serde(default)]
    pub pre_filter: PluginSet,
    #[serde(default)]
    pub filter: PluginSet,
    #[serde(default)]
    pub post_filter: PluginSet,
    #[serde(default)]
    pub pre_score: PluginSet,
    #[serde(default)]
    pub score: PluginSet,
    #[serde(default)]
    pub reserve: PluginSet,
    #[serde(default)]
    pub permit: PluginSet,
}

/// Arguments for one plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginConfig {
    pub name: String,
    #[serde(default)]
    pub args: serde_json::Value,
}

/// One scheduling profile: what pods with `spec.schedulerName == scheduler_name` get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileConfig {
    #[serde(default = "default_scheduler_name")]
    pub scheduler_name: String,
    /// Overrides the global percentage for this profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    pub plugins: Plugins,
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            scheduler_name: default_scheduler_name(),
            percentage_of_nodes_to_score: None,
            plugins: Plugins::default(),
            plugin_config: Vec::new(),
        }
    }
}

impl ProfileConfig {
    /// The arguments configured for `plugin`.
    pub fn args(&self, plugin: &str) -> Option<&serde_json::Value> {
        self.plugin_config
            .iter()
            .find(|c| c.name == plugin)
            .map(|c| &c.args)
            .filter(|a| !a.is_null())
    }
}

fn default_scheduler_name() -> String {
    DEFAULT_SCHEDULER_NAME.to_string()
}

fn default_profiles() -> Vec<ProfileConfig> {
    vec![ProfileConfig::default()]
}

fn one_second() -> u64 {
    1
}

fn ten_seconds() -> u64 {
    10
}

fn five_minutes() -> u64 {
    300
}

/// The whole scheduler configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The share of nodes to find feasible before scoring; unset or 0 means adaptive
    /// (50% minus 1% per 125 nodes, at least 5%), and never fewer than 100 nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage_of_nodes_to_score: Option<u32>,
    #[serde(default = "one_second")]
    pub pod_initial_backoff_seconds: u64,
    #[serde(default = "ten_seconds")]
    pub pod_max_backoff_seconds: u64,
    /// How long a pod stays unschedulable before it is retried without an event.
    #[serde(default = "five_minutes")]
    pub pod_max_in_unschedulable_pods_seconds: u64,
    /// Assumed pods whose bind finished but never showed up bound from the watch expire
    /// after this long; unset keeps them until confirmed or forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumed_pod_ttl_seconds: Option<u64>,
    #[serde(default = "default_profiles")]
    pub profiles: Vec<ProfileConfig>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            api_version: None,
            kind: None,
            percentage_of_nodes_to_score: None,
            pod_initial_backoff_seconds: one_second(),
            pod_max_backoff_seconds: ten_seconds(),
            pod_max_in_unschedulable_pods_seconds: five_minutes(),
            assumed_pod_ttl_seconds: None,
            profiles: default_profiles(),
        }
    }
}

impl SchedulerConfig {
    /// Parses a `KubeSchedulerConfiguration` document; missing fields take defaults.
    ///
    /// # Errors
    /// When the text is not valid YAML of this shape, or a percentage is above 100.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: SchedulerConfig = if text.trim().is_empty() {
            SchedulerConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|source| ConfigError::Yaml { source })?
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot.
    ///
    /// # Errors
    /// On a percentage above 100, no profiles, or two profiles with one name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let percentages = std::iter::once(self.percentage_of_nodes_to_score)
            .chain(self.profiles.iter().map(|p| p.percentage_of_nodes_to_score));
        for value in percentages.flatten() {
            if value > 100 {
                return Err(ConfigError::InvalidPercentage { value });
            }
        }
        if self.profiles.is_empty() {
            return Err(ConfigError::NoProfiles);
        }
        for (i, p) in self.profiles.iter().enumerate() {
            if self.profiles[..i]
                .iter()
                .any(|q| q.scheduler_name == p.scheduler_name)
            {
                return Err(ConfigError::DuplicateProfile {
                    profile: p.scheduler_name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The queue's timings.
    pub fn queue_config(&self) -> QueueConfig {
        QueueConfig {
            initial_backoff: Duration::from_secs(self.pod_initial_backoff_seconds),
            max_backoff: Duration::from_secs(self.pod_max_backoff_seconds),
            max_unschedulable_duration: Duration::from_secs(
                self.pod_max_in_unschedulable_pods_seconds,
            ),
        }
    }
}

/// kube-scheduler's default `multiPoint` plugins in order, with default score weights.
pub fn default_plugins() -> Vec<PluginRef> {
    vec![
        PluginRef::new(priority_sort::NAME),
        PluginRef::new(node_unschedulable::NAME),
        PluginRef::new(node_name::NAME),
        PluginRef::weighted(taint_toleration::NAME, 3),
        PluginRef::weighted(node_affinity::NAME, 2),
        PluginRef::new(node_ports::NAME),
        PluginRef::weighted(node_resources_fit::NAME, 1),
        PluginRef::weighted(pod_topology_spread::NAME, 2),
        PluginRef::weighted(inter_pod_affinity::NAME, 2),
        PluginRef::new(default_preemption::NAME),
        PluginRef::weighted(balanced_allocation::NAME, 1),
        PluginRef::weighted(image_locality::NAME, 1),
    ]
}

/// How many feasible nodes to find before scoring, of `all_nodes` (kube-scheduler's
/// `numFeasibleNodesToFind`). `percentage` of `None` or 0 is adaptive.
pub fn num_feasible_nodes_to_find(percentage: Option<u32>, all_nodes: usize) -> usize {
    if all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return all_nodes;
    }
    let percentage = match percentage {
        Some(p) if p > 0 => p as usize,
        _ => 50usize
            .saturating_sub(all_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND),
    };
    (all_nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_adaptive_percentage_shrinks_with_the_cluster_but_keeps_a_floor() {
        assert_eq!(num_feasible_nodes_to_find(None, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(None, 100), 100);
        // 50% - 1000/125 = 42%.
        assert_eq!(num_feasible_nodes_to_find(None, 1000), 420);
        // 50% - 5000/125 = 10%.
        assert_eq!(num_feasible_nodes_to_find(None, 5000), 500);
        // Floors at 5%.
        assert_eq!(num_feasible_nodes_to_find(None, 10_000), 500);
        assert_eq!(num_feasible_nodes_to_find(Some(0), 5000), 500);
        assert_eq!(num_feasible_nodes_to_find(Some(100), 5000), 5000);
        // Never fewer than 100.
        assert_eq!(num_feasible_nodes_to_find(Some(1), 1000), 100);
    }

    #[test]
    fn an_empty_document_is_the_default_configuration() {
        let config = SchedulerConfig::from_yaml("").unwrap();
        assert_eq!(config, SchedulerConfig::default());
        assert_eq!(config.profiles[0].scheduler_name, DEFAULT_SCHEDULER_NAME);
        assert_eq!(config.queue_config(), QueueConfig::default());
    }

    #[test]
    fn a_kube_scheduler_configuration_file_parses() {
        let config = SchedulerConfig::from_yaml(
            r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 30
podMaxBackoffSeconds: 20
profiles:
  - schedulerName: default-scheduler
  - schedulerName: bin-packing
    plugins:
      score:
        disabled:
          - name: NodeResourcesBalancedAllocation
        enabled:
          - name: NodeResourcesFit
            weight: 5
    pluginConfig:
      - name: NodeResourcesFit
        args:
          scoringStrategy:
            type: MostAllocated
"#,
        )
        .unwrap();
        assert_eq!(config.percentage_of_nodes_to_score, Some(30));
        assert_eq!(config.queue_config().max_backoff, Duration::from_secs(20));
        assert_eq!(config.profiles.len(), 2);
        let packing = &config.profiles[1];
        assert_eq!(packing.plugins.score.enabled[0].weight, Some(5));
        assert!(packing.args("NodeResourcesFit").is_some());
        assert!(packing.args("ImageLocality").is_none());
    }

    #[test]
    fn invalid_configurations_are_refused_with_the_reason() {
        let err = SchedulerConfig::from_yaml("percentageOfNodesToScore: 150").unwrap_err();
        assert_eq!(err.to_string(), "percentageOfNodesToScore 150 is above 100");
        let err = SchedulerConfig::from_yaml("profiles: []").unwrap_err();
        assert!(matches!(err, ConfigError::NoProfiles));
        let err = SchedulerConfig::from_yaml("profiles: [{}, {}]").unwrap_err();
        assert!(matches!(err, ConfigError::DuplicateProfile { .. }));
        assert!(matches!(
            SchedulerConfig::from_yaml("profiles: 3").unwrap_err(),
            ConfigError::Yaml { .. }
        ));
    }
}
