//! Container logs in the CRI format kubelet writes (`<RFC3339Nano> <stream> <F|P> <text>`),
//! produced by `skiff-logger`, the binary containerd's shim runs for each task (its
//! `binary://` stdio scheme), so logging goes on while the agent restarts. Files rotate by
//! size: `N.log` moves to `N.log.1` (one older file kept).

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

/// Lines longer than this are split into partial (`P`) lines.
pub const MAX_LINE: usize = 16 * 1024;

/// One CRI log line for `text` (without its newline) from `stream`, `partial` when the
/// original line continues in the next record.
pub fn cri_line(timestamp: &str, stream: &str, partial: bool, text: &[u8]) -> Vec<u8> {
    let tag = if partial { "P" } else { "F" };
    let mut line = Vec::with_capacity(text.len() + 48);
    line.extend_from_slice(format!("{timestamp} {stream} {tag} ").as_bytes());
    line.extend_from_slice(text);
    line.push(b'\n');
    line
}

/// Splits what a stream produced into CRI records: full lines, and pieces of overlong ones.
/// Returns the records (text, partial) and the bytes left over (an unfinished line).
pub fn split_records(buffer: &[u8]) -> (Vec<(Vec<u8>, bool)>, Vec<u8>) {
    let mut records = Vec::new();
    let mut rest = buffer;
    loop {
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) if end <= MAX_LINE => {
                records.push((rest[..end].to_vec(), false));
                rest = &rest[end + 1..];
            }
            _ if rest.len() > MAX_LINE => {
                records.push((rest[..MAX_LINE].to_vec(), true));
                rest = &rest[MAX_LINE..];
            }
            _ => return (records, rest.to_vec()),
        }
    }
}

/// A log file that rotates when it grows past `max_size`.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
}

impl RotatingFile {
    /// Opens (appends to) `path`.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn open(path: &Path, max_size: u64) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
        })
    }

    /// Appends one record, rotating first if it would not fit.
    ///
    /// # Errors
    /// When writing or rotating fails.
    pub fn write_record(&mut self, record: &[u8]) -> io::Result<()> {
        if self.max_size > 0 && self.size > 0 && self.size + record.len() as u64 > self.max_size {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(&self.path, &old)?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(record)?;
        self.size += record.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_in_the_cri_format() {
        let line = cri_line("2026-01-01T00:00:00.5Z", "stdout", false, b"hello");
        assert_eq!(line, b"2026-01-01T00:00:00.5Z stdout F hello\n");
        let line = cri_line("t", "stderr", true, b"part");
        assert_eq!(line, b"t stderr P part\n");
    }

    #[test]
    fn full_lines_become_records_and_an_unfinished_one_waits() {
        let (records, rest) = split_records(b"one\ntwo\nthr");
        assert_eq!(
            records,
            vec![(b"one".to_vec(), false), (b"two".to_vec(), false)]
        );
        assert_eq!(rest, b"thr");
    }

    #[test]
    fn overlong_lines_are_split_into_partial_records() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.push(b'\n');
        let (records, rest) = split_records(&input);
        assert_eq!(records.len(), 2);
        assert!(records[0].1, "the first piece is partial");
        assert_eq!(records[0].0.len(), MAX_LINE);
        assert_eq!(records[1], (vec![b'x'; 10], false));
        assert!(rest.is_empty());
    }
}
