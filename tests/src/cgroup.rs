//! A cgroup v2 directory made by a test under the unified hierarchy, removed when dropped,
//! and a way to start a process inside it (and inside a test network namespace).

use std::{
    fs::File,
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

/// Where cgroup v2 is mounted on the project's machines.
pub const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// A test's own cgroup (never the root cgroup), deleted on drop.
#[derive(Debug)]
pub struct TestCgroup {
    path: PathBuf,
}

impl TestCgroup {
    /// Creates `UNIFIED/<unique name from prefix>`.
    ///
    /// # Errors
    /// When cgroup v2 is not mounted at [`UNIFIED`] or the directory cannot be made.
    pub fn new(prefix: &str) -> Result<Self> {
        let path = Path::new(UNIFIED).join(crate::unique_name(prefix));
        std::fs::create_dir(&path).with_context(|| {
            format!("creating cgroup {} (is cgroup v2 mounted?)", path.display())
        })?;
        Ok(Self { path })
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `command` to completion as a member of this cgroup, inside `netns`, and returns
    /// its output. The caller bounds its run time (the command must time out by itself).
    ///
    /// # Errors
    /// When the namespace or cgroup cannot be opened, or the command cannot start.
    pub fn output_in(&self, netns: &Netns, command: &mut Command) -> Result<Output> {
        let ns = File::open(format!("/var/run/netns/{}", netns.name()))
            .with_context(|| format!("opening netns {}", netns.name()))?;
        let procs_path = self.path.join("cgroup.procs");
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(&procs_path)
            .with_context(|| format!("opening {}", procs_path.display()))?;
        let (ns_fd, procs_fd) = (ns.as_raw_fd(), procs.as_raw_fd());
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (setns, write) on descriptors opened before the fork.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" moves the writing process itself.
                if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let output = command
            .output()
            .context("running a command in the test cgroup")?;
        drop((ns, procs));
        Ok(output)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Members have exited by now (`output_in` waits); an empty cgroup can be removed.
        if let Err(error) = std::fs::remove_dir(&self.path) {
            eprintln!("removing cgroup {}: {error}", self.path.display());
        }
    }
}

/// Fails unless `path` is a cgroup v2 directory.
///
/// # Errors
/// When it is not.
pub fn require_cgroup2(path: &Path) -> Result<()> {
    if !path.join("cgroup.procs").is_file() || !path.join("cgroup.controllers").is_file() {
        bail!("{} is not a cgroup v2 directory", path.display());
    }
    Ok(())
}
