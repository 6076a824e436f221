//! A pod's parent cgroup with its pod-level limits, made before its first container starts
//! (runc then creates the containers' cgroups below it): memory and CPU in the v1
//! controllers on a hybrid host (where runc puts the limits), or in the unified hierarchy.

use std::path::PathBuf;

use super::qos::{CPU_PERIOD_US, PodResources};
use crate::metrics::cgroupfs::CgroupLayout;

/// Why the pod cgroup could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PodCgroupError {
    #[error("creating the cgroup {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
}

/// The files to write, in order, for the pod cgroup at `relative` (relative to each
/// hierarchy's root) with `resources`. `v1_controllers` are the v1 mounts present (e.g.
/// `memory`, `cpu` or `cpu,cpuacct`); when there is none, the unified hierarchy is used.
pub fn limit_files(
    layout: &CgroupLayout,
    v1_controllers: &[String],
    relative: &str,
    resources: &PodResources,
) -> Vec<(PathBuf, String)> {
    let relative = relative.trim_start_matches('/');
    let mut files = Vec::new();
    match &layout.v1 {
        Some(root) if !v1_controllers.is_empty() => {
            let cpu = v1_controllers
                .iter()
                .find(|c| *c == "cpu" || *c == "cpu,cpuacct");
            if let Some(cpu) = cpu {
                let dir = root.join(cpu).join(relative);
                files.push((dir.join("cpu.shares"), resources.cpu_shares.to_string()));
                if let Some(quota) = resources.cpu_quota {
                    files.push((dir.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string()));
                    files.push((dir.join("cpu.cfs_quota_us"), quota.to_string()));
                }
            }
            if let Some(limit) = resources.memory_limit
                && v1_controllers.iter().any(|c| c == "memory")
            {
                let dir = root.join("memory").join(relative);
                files.push((dir.join("memory.limit_in_bytes"), limit.to_string()));
            }
        }
        _ => {
            let dir = layout.unified_dir(relative);
            files.push((
                dir.join("cpu.weight"),
                shares_to_weight(resources.cpu_shares).to_string(),
            ));
            let quota = resources
                .cpu_quota
                .map_or_else(|| "max".to_string(), |q| q.to_string());
            files.push((dir.join("cpu.max"), format!("{quota} {CPU_PERIOD_US}")));
            if let Some(limit) = resources.memory_limit {
                files.push((dir.join("memory.max"), limit.to_string()));
            }
        }
    }
    files
}

/// cpu.shares to cpu.weight (runc's conversion).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

/// Creates the pod cgroup in the hierarchies of `layout` and writes its limits.
///
/// # Errors
/// When a directory cannot be made or a file cannot be written.
pub fn ensure(
    layout: &CgroupLayout,
    relative: &str,
    resources: &PodResources,
) -> Result<(), PodCgroupError> {
    let controllers: Vec<String> = match &layout.v1 {
        Some(root) => ["memory", "cpu", "cpu,cpuacct"]
            .iter()
            .filter(|c| root.join(c).join("cgroup.procs").is_file())
            .map(|c| c.to_string())
            .collect(),
        None => Vec::new(),
    };
    if controllers.is_empty() {
        enable_unified_controllers(layout, relative);
    }
    for (path, value) in limit_files(layout, &controllers, relative, resources) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| PodCgroupError::Create {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, &value).map_err(|source| PodCgroupError::Write {
            path: path.clone(),
            value,
            source,
        })?;
    }
    Ok(())
}

/// On a unified-only host, enables the cpu and memory controllers down to the pod cgroup's
/// parent (best effort: a controller the root does not offer stays off, and runc's own
/// settings still apply per container).
fn enable_unified_controllers(layout: &CgroupLayout, relative: &str) {
    let parts: Vec<&str> = relative
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let mut dir = layout.unified.clone();
    for part in parts {
        let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory");
        dir = dir.join(part);
        let _ = std::fs::create_dir_all(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid() -> CgroupLayout {
        CgroupLayout {
            v1: Some("/sys/fs/cgroup".into()),
            unified: "/sys/fs/cgroup/unified".into(),
        }
    }

    fn resources(quota: Option<i64>, memory: Option<i64>) -> PodResources {
        PodResources {
            cpu_shares: 512,
            cpu_quota: quota,
            memory_limit: memory,
        }
    }

    fn texts(files: &[(PathBuf, String)]) -> Vec<String> {
        files
            .iter()
            .map(|(p, v)| format!("{}={v}", p.display()))
            .collect()
    }

    #[test]
    fn a_hybrid_host_gets_the_limits_in_its_v1_controllers() {
        let controllers = vec!["memory".to_string(), "cpu".to_string()];
        let files = limit_files(
            &hybrid(),
            &controllers,
            "/n1/kubepods/podu1",
            &resources(Some(50_000), Some(64 << 20)),
        );
        assert_eq!(
            texts(&files),
            [
                "/sys/fs/cgroup/cpu/n1/kubepods/podu1/cpu.shares=512",
                "/sys/fs/cgroup/cpu/n1/kubepods/podu1/cpu.cfs_period_us=100000",
                "/sys/fs/cgroup/cpu/n1/kubepods/podu1/cpu.cfs_quota_us=50000",
                "/sys/fs/cgroup/memory/n1/kubepods/podu1/memory.limit_in_bytes=67108864",
            ]
        );
        let unlimited = limit_files(&hybrid(), &controllers, "/p", &resources(None, None));
        assert_eq!(texts(&unlimited), ["/sys/fs/cgroup/cpu/p/cpu.shares=512"]);
    }

    #[test]
    fn a_unified_host_gets_weight_max_and_memory_max() {
        let layout = CgroupLayout {
            v1: None,
            unified: "/sys/fs/cgroup".into(),
        };
        let files = limit_files(&layout, &[], "/p", &resources(Some(150_000), Some(1 << 30)));
        assert_eq!(
            texts(&files),
            [
                "/sys/fs/cgroup/p/cpu.weight=20",
                "/sys/fs/cgroup/p/cpu.max=150000 100000",
                "/sys/fs/cgroup/p/memory.max=1073741824",
            ]
        );
        let files = limit_files(&layout, &[], "/p", &resources(None, None));
        assert_eq!(files[1].1, "max 100000");
    }

    #[test]
    fn shares_convert_to_weight_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
}
