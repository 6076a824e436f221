//! Plugins by name: the constructors a profile's configuration refers to. The in-tree
//! registry holds every plugin of [`super::plugins`]; callers may register their own
//! before building the scheduler.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::config::ConfigError;
use super::framework::Plugin;
use super::plugins::{
    balanced_allocation, default_preemption, image_locality, inter_pod_affinity, node_affinity,
    node_name, node_ports, node_resources_fit, node_unschedulable, pod_topology_spread,
    priority_sort, taint_toleration,
};

/// Builds a plugin from its `pluginConfig` arguments (`None` when not configured).
pub type PluginFactory =
    Arc<dyn Fn(Option<&Value>) -> Result<Arc<dyn Plugin>, ConfigError> + Send + Sync>;

/// Plugin name -> constructor.
#[derive(Clone, Default)]
pub struct Registry {
    factories: HashMap<String, PluginFactory>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.factories.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Registry").field("plugins", &names).finish()
    }
}

/// Decodes a plugin's arguments, or its defaults when none are configured.
///
/// # Errors
/// When the arguments do not fit the plugin's argument type.
pub fn parse_args<T: DeserializeOwned + Default>(
    plugin: &str,
    args: Option<&Value>,
) -> Result<T, ConfigError> {
    match args {
        None => Ok(T::default()),
        Some(value) => serde_json::from_value(value.clone()).map_err(|source| ConfigError::Args {
            plugin: plugin.to_string(),
            source,
        }),
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every in-tree plugin.
    pub fn in_tree() -> Self {
        let mut r = Self::new();
        r.register(priority_sort::NAME, |_| {
            Ok(Arc::new(priority_sort::PrioritySort))
        });
        r.register(node_unschedulable::NAME, |_| {
            Ok(Arc::new(node_unschedulable::NodeUnschedulable))
        });
        r.register(node_name::NAME, |_| Ok(Arc::new(node_name::NodeName)));
        r.register(taint_toleration::NAME, |_| {
            Ok(Arc::new(taint_toleration::TaintToleration))
        });
        r.register(node_affinity::NAME, |_| {
            Ok(Arc::new(node_affinity::NodeAffinity))
        });
        r.register(node_ports::NAME, |_| Ok(Arc::new(node_ports::NodePorts)));
        r.register(node_resources_fit::NAME, |args| {
            Ok(Arc::new(node_resources_fit::NodeResourcesFit::new(
                parse_args(node_resources_fit::NAME, args)?,
            )))
        });
        r.register(pod_topology_spread::NAME, |_| {
            Ok(Arc::new(pod_topology_spread::PodTopologySpread))
        });
        r.register(inter_pod_affinity::NAME, |args| {
            Ok(Arc::new(inter_pod_affinity::InterPodAffinity::new(
                parse_args(inter_pod_affinity::NAME, args)?,
            )))
        });
        r.register(default_preemption::NAME, |args| {
            Ok(Arc::new(default_preemption::DefaultPreemption::new(
                parse_args(default_preemption::NAME, args)?,
            )))
        });
        r.register(balanced_allocation::NAME, |args| {
            Ok(Arc::new(balanced_allocation::BalancedAllocation::new(
                parse_args(balanced_allocation::NAME, args)?,
            )))
        });
        r.register(image_locality::NAME, |_| {
            Ok(Arc::new(image_locality::ImageLocality))
        });
        r
    }

    /// Adds (or replaces) the plugin `name`.
    pub fn register(
        &mut self,
        name: &str,
        factory: impl Fn(Option<&Value>) -> Result<Arc<dyn Plugin>, ConfigError> + Send + Sync + 'static,
    ) {
        self.factories.insert(name.to_string(), Arc::new(factory));
    }

    /// True when a plugin called `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// Builds plugin `name` with `args`.
    ///
    /// # Errors
    /// When no such plugin is registered or its arguments are invalid.
    pub fn build(
        &self,
        profile: &str,
        name: &str,
        args: Option<&Value>,
    ) -> Result<Arc<dyn Plugin>, ConfigError> {
        let factory = self
            .factories
            .get(name)
            .ok_or_else(|| ConfigError::UnknownPlugin {
                profile: profile.to_string(),
                plugin: name.to_string(),
            })?;
        factory(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_default_plugin_is_registered_in_tree() {
        let registry = Registry::in_tree();
        for plugin in super::super::config::default_plugins() {
            let built = registry.build("p", &plugin.name, None).unwrap();
            assert_eq!(built.name(), plugin.name);
        }
    }

    #[test]
    fn unknown_plugins_and_bad_args_are_configuration_errors() {
        let registry = Registry::in_tree();
        assert!(matches!(
            registry.build("p", "Nope", None),
            Err(ConfigError::UnknownPlugin { .. })
        ));
        let bad = json!({"scoringStrategy": {"type": "Sideways"}});
        assert!(matches!(
            registry.build("p", node_resources_fit::NAME, Some(&bad)),
            Err(ConfigError::Args { .. })
        ));
    }
}
