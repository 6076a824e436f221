//! A pod's network, IPC and UTS namespaces, made by a helper thread that unshares them and
//! bind-mounts `/proc/thread-self/ns/*` onto files in the pod's directory. The mounts keep
//! the namespaces alive without any process, across agent restarts, until the pod goes away.
//!
//! The agent must share its mount namespace with containerd (start it with `nsenter --net`,
//! not `ip netns exec`, which gives it a private mount namespace).

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

/// Errors making or removing a pod's namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("{what} for {path}")]
    Os {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the namespace helper thread panicked")]
    Thread,
}

/// The paths of a pod's namespaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNamespaces {
    pub net: PathBuf,
    pub ipc: PathBuf,
    pub uts: PathBuf,
}

impl PodNamespaces {
    /// The paths under `dir` (they may not exist yet).
    pub fn at(dir: &Path) -> Self {
        Self {
            net: dir.join("net"),
            ipc: dir.join("ipc"),
            uts: dir.join("uts"),
        }
    }

    /// Whether all three are mounted (nsfs bind mounts).
    pub fn exist(&self) -> bool {
        [&self.net, &self.ipc, &self.uts].iter().all(|p| is_nsfs(p))
    }
}

fn is_nsfs(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and `stat` is writable memory of the right type.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    // SAFETY: statfs returned 0, so it filled `stat`.
    rc == 0 && unsafe { stat.assume_init() }.f_type == NSFS_MAGIC
}

fn os_error(what: &'static str, path: &Path) -> NamespaceError {
    NamespaceError::Os {
        what,
        path: path.into(),
        source: std::io::Error::last_os_error(),
    }
}

fn bind(source: &str, target: &Path) -> Result<(), NamespaceError> {
    std::fs::File::create(target).map_err(|source| NamespaceError::Os {
        what: "creating the mount point",
        path: target.into(),
        source,
    })?;
    let src = CString::new(source).expect("no NUL in a /proc path");
    let dst = CString::new(target.as_os_str().as_bytes()).map_err(|_| NamespaceError::Os {
        what: "a path with a NUL byte",
        path: target.into(),
        source: std::io::ErrorKind::InvalidInput.into(),
    })?;
    // SAFETY: both paths are NUL-terminated; a bind mount takes no fs type or data.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(os_error("bind-mounting the namespace", target));
    }
    Ok(())
}

/// Makes the pod's namespaces under `dir` with `hostname` set in its UTS namespace; keeps
/// the ones that already exist.
///
/// # Errors
/// When unshare or a mount fails.
pub fn create(dir: &Path, hostname: &str) -> Result<PodNamespaces, NamespaceError> {
    let paths = PodNamespaces::at(dir);
    if paths.exist() {
        return Ok(paths);
    }
    remove(&paths);
    std::fs::create_dir_all(dir).map_err(|source| NamespaceError::Os {
        what: "creating the namespace directory",
        path: dir.into(),
        source,
    })?;
    let inner = paths.clone();
    let hostname = hostname.to_string();
    std::thread::spawn(move || -> Result<(), NamespaceError> {
        // SAFETY: unshare only affects this helper thread, which exits right after.
        let rc =
            unsafe { libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) };
        if rc != 0 {
            return Err(os_error("unsharing namespaces", &inner.net));
        }
        // SAFETY: the pointer and length describe `hostname`'s bytes.
        let rc = unsafe { libc::sethostname(hostname.as_ptr().cast(), hostname.len()) };
        if rc != 0 {
            return Err(os_error("setting the hostname", &inner.uts));
        }
        bind("/proc/thread-self/ns/net", &inner.net)?;
        bind("/proc/thread-self/ns/ipc", &inner.ipc)?;
        bind("/proc/thread-self/ns/uts", &inner.uts)?;
        Ok(())
    })
    .join()
    .map_err(|_| NamespaceError::Thread)??;
    Ok(paths)
}

/// Unmounts and removes the pod's namespace files (the namespaces die with their last user).
pub fn remove(paths: &PodNamespaces) {
    for path in [&paths.net, &paths.ipc, &paths.uts] {
        if let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) {
            // SAFETY: `c_path` is NUL-terminated; a failed unmount (not mounted) is harmless.
            unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_file(path);
    }
}

/// Runs `work` on a thread inside the network namespace at `path` and returns its result.
///
/// # Errors
/// When the namespace cannot be entered.
pub fn in_netns<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NamespaceError> {
    let file = std::fs::File::open(path).map_err(|source| NamespaceError::Os {
        what: "opening the network namespace",
        path: path.into(),
        source,
    })?;
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: `file` is an open nsfs descriptor; setns affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(os_error("entering the network namespace", &path));
        }
        Ok(work())
    })
    .join()
    .map_err(|_| NamespaceError::Thread)?
}
