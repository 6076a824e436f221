//! A private containerd per test (own root, state and socket under a temporary directory,
//! the CRI plugin off), so tests never share images, containers or shims with each other
//! or with a containerd the machine runs. Dropping it removes every task and container it
//! ran, stops it and unmounts what it left behind.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::process::{ChildGuard, spawn_guarded};

/// A running private containerd.
#[derive(Debug)]
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Option<ChildGuard>,
}

impl Containerd {
    /// Starts containerd and waits until it answers.
    ///
    /// # Errors
    /// When it cannot start or does not answer within 20 s.
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("skctrd")
            .tempdir_in("/tmp")?;
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        let socket = dir.path().join("c.sock");
        let config = format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}.ttrpc\"\n",
            root.display(),
            state.display(),
            socket.display(),
            socket.display(),
        );
        std::fs::write(dir.path().join("config.toml"), config)?;
        let mut containerd = Self { dir, child: None };
        containerd.spawn()?;
        Ok(containerd)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("containerd.log"))?;
        let mut command = Command::new("containerd");
        command
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(spawn_guarded(command).context("starting containerd")?);
        let containerd = &*self;
        let deadline = Instant::now() + Duration::from_secs(20);
        while containerd.ctr("", &["version"]).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "containerd did not answer on {} within 20 s; its log:\n{}",
                    containerd.socket().display(),
                    containerd.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Stops containerd (SIGTERM; its shims and containers go on) and starts it again on
    /// the same root, state and socket.
    ///
    /// # Errors
    /// When it does not come back.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM first, so it closes its databases cleanly.
            // SAFETY: kill with a pid of our own child has no memory effects.
            unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    /// containerd's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Runs `ctr` against this containerd in `namespace` ("" for the default).
    ///
    /// # Errors
    /// When ctr fails (the error carries its stderr).
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> Result<String> {
        let mut command = Command::new("ctr");
        command.arg("--address").arg(self.socket());
        if !namespace.is_empty() {
            command.args(["-n", namespace]);
        }
        let output = command.args(args).output().context("running ctr")?;
        if !output.status.success() {
            bail!(
                "ctr {args:?}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Imports an OCI archive into `namespace`; with `unpack` false only into the content
    /// store, so whoever runs it must unpack its layers into the snapshotter.
    ///
    /// # Errors
    /// When ctr import fails.
    pub fn import(&self, namespace: &str, archive: &Path, unpack: bool) -> Result<()> {
        let archive = archive.display().to_string();
        let mut args = vec!["images", "import"];
        if !unpack {
            args.push("--no-unpack");
        }
        args.push(&archive);
        self.ctr(namespace, &args)?;
        Ok(())
    }

    fn remove_everything(&self) {
        let Ok(namespaces) = self.ctr("", &["namespaces", "ls", "-q"]) else {
            return;
        };
        for ns in namespaces.lines().map(str::trim).filter(|n| !n.is_empty()) {
            if let Ok(tasks) = self.ctr(ns, &["tasks", "ls", "-q"]) {
                for task in tasks.lines().map(str::trim).filter(|t| !t.is_empty()) {
                    let _ = self.ctr(ns, &["tasks", "kill", "-a", "-s", "SIGKILL", task]);
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while self.ctr(ns, &["tasks", "rm", "-f", task]).is_err()
                        && Instant::now() < deadline
                    {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            if let Ok(containers) = self.ctr(ns, &["containers", "ls", "-q"]) {
                for container in containers.lines().map(str::trim).filter(|c| !c.is_empty()) {
                    let _ = self.ctr(ns, &["containers", "rm", container]);
                }
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(dir) = std::env::var_os("SKIFF_TEST_KEEP_CONTAINERD_LOG") {
            let name = self
                .dir
                .path()
                .file_name()
                .unwrap_or_default()
                .to_os_string();
            let _ = std::fs::copy(
                self.dir.path().join("containerd.log"),
                PathBuf::from(dir).join(name),
            );
        }
        self.remove_everything();
        self.stop();
        // Unmount anything left under the directory (overlay rootfs, shm), deepest first.
        let prefix = self.dir.path().to_string_lossy().into_owned();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            if let Ok(c) = std::ffi::CString::new(mount) {
                // SAFETY: a NUL-terminated path; a failed unmount is harmless here.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// A cgroup subtree for one test's node, removed (depth first, in every hierarchy) on drop.
#[derive(Debug)]
pub struct CgroupTree {
    /// Relative to the hierarchy roots, e.g. `/skiff-test-ab12`.
    pub relative: String,
}

impl CgroupTree {
    /// A fresh name; created in the unified hierarchy (runc makes the rest).
    ///
    /// # Errors
    /// When the directory cannot be made.
    pub fn new() -> Result<Self> {
        let relative = format!("/{}", crate::unique_name("sktest"));
        std::fs::create_dir_all(format!("/sys/fs/cgroup/unified{relative}"))?;
        Ok(Self { relative })
    }

    /// The path to give the agent as --cgroup-root.
    pub fn unified_path(&self) -> PathBuf {
        PathBuf::from(format!("/sys/fs/cgroup/unified{}", self.relative))
    }

    /// Limits the subtree's memory to `bytes`, where runc puts pod memory: the v1 memory
    /// controller on a hybrid host (`memory.limit_in_bytes`), else the unified `memory.max`
    /// (with the memory controller enabled for it). The node's agent counts this as its
    /// memory.
    ///
    /// # Errors
    /// When the directory or the limit cannot be written.
    pub fn limit_memory(&self, bytes: u64) -> Result<()> {
        let v1 = Path::new("/sys/fs/cgroup/memory");
        if v1.join("cgroup.procs").is_file() {
            let dir = v1.join(self.relative.trim_start_matches('/'));
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string())?;
        } else {
            let _ = std::fs::write("/sys/fs/cgroup/unified/cgroup.subtree_control", "+memory");
            std::fs::write(self.unified_path().join("memory.max"), bytes.to_string())?;
        }
        Ok(())
    }

    /// The memory limit of the cgroup at `relative` (e.g. a pod's cgroup), where
    /// [`CgroupTree::limit_memory`] would write it; `None` when unlimited or absent.
    pub fn memory_limit_of(relative: &str) -> Option<u64> {
        let relative = relative.trim_start_matches('/');
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let text = if v1.join("cgroup.procs").is_file() {
            std::fs::read_to_string(v1.join(relative).join("memory.limit_in_bytes"))
        } else {
            std::fs::read_to_string(
                Path::new("/sys/fs/cgroup/unified")
                    .join(relative)
                    .join("memory.max"),
            )
        };
        text.ok()?
            .trim()
            .parse()
            .ok()
            .filter(|&l: &u64| l < 1 << 62)
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&child.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for hierarchy in hierarchies.flatten() {
            remove_tree(&hierarchy.path().join(self.relative.trim_start_matches('/')));
        }
    }
}
