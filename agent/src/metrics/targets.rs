//! Which cgroups to read and how to label them: each pod bound here has a pod cgroup in its
//! QoS tier and one cgroup per running container attempt (named by its containerd id),
//! labelled like kubelet's cAdvisor endpoint (`namespace`, `pod`, `container`, `image`,
//! `id` = the cgroup path, `name` = the container id; pod-level series with `container=""`).

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use super::cgroupfs::{CgroupFiles, CgroupLayout};
use crate::pods::{qos, worker::container_id};

/// One cgroup to read, with its labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub namespace: String,
    pub pod: String,
    /// Empty for the pod-level cgroup.
    pub container: String,
    pub image: String,
    /// The cgroup path relative to the hierarchies' roots (cAdvisor's `id`).
    pub id: String,
    /// The containerd container id (cAdvisor's `name`); empty for the pod-level cgroup.
    pub name: String,
}

/// The pod cgroup and the cgroups of the running containers of each pod, as found in the
/// unified hierarchy or, failing that, the v1 cpu hierarchy (runc makes both).
pub fn targets(
    pods: &[impl AsRef<Pod>],
    cgroup_parent: &str,
    files: &dyn CgroupFiles,
    layout: &CgroupLayout,
) -> Vec<Target> {
    let mut found = Vec::new();
    for pod in pods {
        let pod = pod.as_ref();
        let (Some(namespace), Some(name), Some(uid)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
            pod.metadata.uid.as_deref(),
        ) else {
            continue;
        };
        let pod_cgroup = qos::pod_cgroup(cgroup_parent, qos::qos_class(pod), uid);
        let children = container_dirs(files, layout, &pod_cgroup);
        if children.is_none() {
            continue;
        }
        found.push(Target {
            namespace: namespace.to_string(),
            pod: name.to_string(),
            container: String::new(),
            image: String::new(),
            id: pod_cgroup.clone(),
            name: String::new(),
        });
        let children = children.unwrap_or_default();
        let spec = pod.spec.as_ref();
        let containers = spec.into_iter().flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        });
        for container in containers {
            // `<name>-<hash of uid/name>-<attempt>`: the latest attempt with a cgroup.
            let first = container_id(uid, &container.name, 0);
            let prefix = first.strip_suffix('0').unwrap_or(&first);
            let latest = children
                .iter()
                .filter_map(|dir| {
                    let attempt: u32 = dir.strip_prefix(prefix)?.parse().ok()?;
                    Some((attempt, dir))
                })
                .max();
            if let Some((_, dir)) = latest {
                found.push(Target {
                    namespace: namespace.to_string(),
                    pod: name.to_string(),
                    container: container.name.clone(),
                    image: container.image.clone().unwrap_or_default(),
                    id: format!("{pod_cgroup}/{dir}"),
                    name: dir.clone(),
                });
            }
        }
    }
    found
}

/// The directories in the pod's cgroup, or `None` when the pod has no cgroup (yet).
fn container_dirs(
    files: &dyn CgroupFiles,
    layout: &CgroupLayout,
    pod_cgroup: &str,
) -> Option<Vec<String>> {
    let relative = pod_cgroup.trim_start_matches('/');
    let mut candidates = vec![layout.unified_dir(pod_cgroup)];
    if let Some(v1) = &layout.v1 {
        candidates.push(Path::new(v1).join("cpu").join(relative));
    }
    candidates
        .into_iter()
        .find(|dir| files.read(&dir.join("cgroup.procs")).is_some())
        .map(|dir| files.subdirs(&dir))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{Container, PodSpec},
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use std::sync::Arc;

    use super::*;
    use crate::metrics::cgroupfs::tests::FakeFiles;

    fn pod(uid: &str, containers: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some("web".into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: containers
                    .iter()
                    .map(|(name, image)| Container {
                        name: name.to_string(),
                        image: Some(image.to_string()),
                        ..Container::default()
                    })
                    .collect(),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn the_latest_attempt_of_each_container_is_labelled_like_cadvisor() {
        let layout = CgroupLayout {
            v1: Some("/cg".into()),
            unified: "/cg/unified".into(),
        };
        let mut fs = FakeFiles::default();
        let pod_dir = "/cg/unified/node/kubepods/besteffort/podu1";
        fs.put(&format!("{pod_dir}/cgroup.procs"), "");
        let (old, new, sidecar) = (
            container_id("u1", "app", 0),
            container_id("u1", "app", 1),
            container_id("u1", "side", 0),
        );
        for id in [&old, &new, &sidecar] {
            fs.put(&format!("{pod_dir}/{id}/cgroup.procs"), "1\n");
        }
        let pods = [Arc::new(pod(
            "u1",
            &[("app", "busybox:1"), ("side", "pause:3")],
        ))];
        let found = targets(&pods, "/node", &fs, &layout);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert_eq!(found[0].container, "");
        assert_eq!(found[0].id, "/node/kubepods/besteffort/podu1");
        assert_eq!(found[1].container, "app");
        assert_eq!(found[1].name, new);
        assert_eq!(found[1].image, "busybox:1");
        assert_eq!(
            found[1].id,
            format!("/node/kubepods/besteffort/podu1/{new}")
        );
        assert_eq!(found[2].container, "side");
        assert_eq!(found[2].name, sidecar);
    }

    #[test]
    fn a_pod_without_a_cgroup_has_no_series() {
        let layout = CgroupLayout {
            v1: None,
            unified: "/cg".into(),
        };
        let pods = [Arc::new(pod("u2", &[("app", "busybox:1")]))];
        assert!(targets(&pods, "/node", &FakeFiles::default(), &layout).is_empty());
    }
}
