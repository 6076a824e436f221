//! A bpffs directory of a test's own, for an agent's pinned maps; removed with its pins
//! when dropped.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `/sys/fs/bpf/<unique name>`, deleted with everything pinned in it on drop.
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// Creates the directory under `/sys/fs/bpf`.
    ///
    /// # Errors
    /// When bpffs is not mounted there or the directory cannot be made.
    pub fn new(prefix: &str) -> Result<Self> {
        let path = Path::new("/sys/fs/bpf").join(crate::unique_name(prefix));
        std::fs::create_dir(&path)
            .with_context(|| format!("creating {} (is bpffs mounted?)", path.display()))?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names pinned in the directory right now, sorted.
    ///
    /// # Errors
    /// When it cannot be read.
    pub fn pinned(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(&self.path)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        Ok(names)
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        // Unlinking a pin drops the kernel object once nothing else holds it.
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            eprintln!("removing {}: {error}", self.path.display());
        }
    }
}
