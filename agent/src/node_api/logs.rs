//! Container logs for the node API: the CRI files `skiff-logger` writes
//! (`<state>/logs/<ns>_<pod>_<uid>/<container>/<attempt>.log`, the older half rotated to
//! `.log.1`) read back as the container wrote them, the last N lines, the previous
//! attempt, and followed like `tail -F` across rotations until the container is replaced.

use std::{
    io::{Read, Seek, SeekFrom},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use skiff_api::{
    proto::LogChunk,
    status::{ApiError, Reason},
};
use tokio::sync::mpsc;
use tonic::Status;

/// How often a followed log is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Which log a request is about.
#[derive(Clone, Debug)]
pub struct LogTarget<'a> {
    pub logs_dir: &'a Path,
    pub namespace: &'a str,
    pub pod: &'a str,
    pub uid: &'a str,
    pub container: &'a str,
}

impl LogTarget<'_> {
    fn dir(&self) -> PathBuf {
        self.logs_dir
            .join(format!("{}_{}_{}", self.namespace, self.pod, self.uid))
            .join(self.container)
    }

    /// The attempts with a log file, oldest first.
    fn attempts(&self) -> Vec<u32> {
        let mut attempts: Vec<u32> = std::fs::read_dir(self.dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
            .collect();
        attempts.sort_unstable();
        attempts
    }

    /// The log file of the current attempt, or with `previous` of the one before.
    ///
    /// # Errors
    /// BadRequest when the container has no (previous) log yet, as the kubelet answers.
    pub fn file(&self, previous: bool) -> Result<(u32, PathBuf), ApiError> {
        let attempts = self.attempts();
        let pick = if previous {
            attempts.len().checked_sub(2).map(|i| attempts[i])
        } else {
            attempts.last().copied()
        };
        match pick {
            Some(attempt) => Ok((attempt, self.dir().join(format!("{attempt}.log")))),
            None if previous => Err(ApiError::new(
                Reason::BadRequest,
                format!(
                    "previous terminated container \"{}\" in pod \"{}\" not found",
                    self.container, self.pod
                ),
            )),
            None => Err(ApiError::new(
                Reason::BadRequest,
                format!(
                    "container \"{}\" in pod \"{}\" is waiting to start: it has no log yet",
                    self.container, self.pod
                ),
            )),
        }
    }

    /// Whether a newer attempt than `attempt` has started (the followed one is over).
    fn replaced(&self, attempt: u32) -> bool {
        !self.dir().exists() || self.attempts().last().is_some_and(|&a| a > attempt)
    }
}

/// Turns CRI records into the lines the container wrote, joining partial records.
#[derive(Debug, Default)]
pub struct CriDecoder {
    /// Bytes after the last newline (a record being written).
    pending: Vec<u8>,
    /// A line whose partial records are joined so far, with its first timestamp.
    partial: Option<(String, Vec<u8>)>,
    timestamps: bool,
}

impl CriDecoder {
    pub fn new(timestamps: bool) -> Self {
        Self {
            timestamps,
            ..Self::default()
        }
    }

    /// Feeds bytes of the file; returns the complete lines they finish (each with its
    /// newline, and its timestamp in front when asked for).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let record: Vec<u8> = self.pending.drain(..=end).collect();
            if let Some(line) = self.record(&record[..record.len() - 1]) {
                lines.push(line);
            }
        }
        lines
    }

    fn record(&mut self, record: &[u8]) -> Option<Vec<u8>> {
        let mut fields = record.splitn(4, |&b| b == b' ');
        let (time, _stream, tag) = (fields.next()?, fields.next()?, fields.next()?);
        let text = fields.next().unwrap_or_default();
        let time = String::from_utf8_lossy(time).into_owned();
        let (time, mut line) = match self.partial.take() {
            Some((first, mut joined)) => {
                joined.extend_from_slice(text);
                (first, joined)
            }
            None => (time, text.to_vec()),
        };
        if tag == b"P" {
            self.partial = Some((time, line));
            return None;
        }
        line.push(b'\n');
        if self.timestamps {
            let mut stamped = format!("{time} ").into_bytes();
            stamped.extend_from_slice(&line);
            return Some(stamped);
        }
        Some(line)
    }
}

/// The last `n` of `lines`.
pub fn tail(mut lines: Vec<Vec<u8>>, n: Option<usize>) -> Vec<Vec<u8>> {
    if let Some(n) = n
        && lines.len() > n
    {
        lines.drain(..lines.len() - n);
    }
    lines
}

/// Reads `path` from `offset` to its end.
fn read_from(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn rotated(path: &Path) -> PathBuf {
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    PathBuf::from(old)
}

/// Where a followed file was left: its inode and how far it was read.
#[derive(Clone, Copy, Debug)]
struct Position {
    inode: u64,
    offset: u64,
}

/// Sends the log of `target` to `out` (each message whole lines); follows it when asked
/// until the caller leaves or the container is replaced.
///
/// # Errors
/// When there is no such log.
pub async fn stream(
    target: LogTarget<'_>,
    previous: bool,
    tail_lines: Option<usize>,
    follow: bool,
    timestamps: bool,
    out: &mpsc::Sender<Result<LogChunk, Status>>,
) -> Result<(), ApiError> {
    let send = async |data: Vec<u8>| out.send(Ok(LogChunk { data })).await.is_ok();
    let (attempt, path) = target.file(previous)?;
    let mut decoder = CriDecoder::new(timestamps);
    let old = read_from(&rotated(&path), 0).unwrap_or_default();
    let mut lines = decoder.feed(&old);
    let (current, mut position) = match std::fs::File::open(&path) {
        Ok(mut file) => {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            let inode = file.metadata().map(|m| m.ino()).unwrap_or_default();
            let offset = bytes.len() as u64;
            (bytes, Some(Position { inode, offset }))
        }
        Err(_) => (Vec::new(), None),
    };
    lines.extend(decoder.feed(&current));
    let first = tail(lines, tail_lines).concat();
    if !first.is_empty() && !send(first).await {
        return Ok(());
    }
    if !follow || previous {
        return Ok(());
    }
    loop {
        tokio::time::sleep(FOLLOW_POLL).await;
        let mut fresh = Vec::new();
        let now = std::fs::metadata(&path).ok().map(|m| m.ino());
        match (position, now) {
            (Some(at), Some(inode)) if inode == at.inode => {
                if let Ok(bytes) = read_from(&path, at.offset) {
                    position = Some(Position {
                        inode,
                        offset: at.offset + bytes.len() as u64,
                    });
                    fresh.extend(decoder.feed(&bytes));
                }
            }
            (at, Some(inode)) => {
                // Rotated: the rest of the file we had is now `.log.1`, then the new one.
                if let Some(at) = at
                    && std::fs::metadata(rotated(&path)).is_ok_and(|m| m.ino() == at.inode)
                    && let Ok(bytes) = read_from(&rotated(&path), at.offset)
                {
                    fresh.extend(decoder.feed(&bytes));
                }
                if let Ok(bytes) = read_from(&path, 0) {
                    position = Some(Position {
                        inode,
                        offset: bytes.len() as u64,
                    });
                    fresh.extend(decoder.feed(&bytes));
                }
            }
            (_, None) => {}
        }
        if !fresh.is_empty() && !send(fresh.concat()).await {
            return Ok(());
        }
        if target.replaced(attempt) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_records_become_the_lines_the_container_wrote() {
        let mut decoder = CriDecoder::new(false);
        let lines = decoder.feed(
            b"2026-01-01T00:00:00Z stdout F hello\n2026-01-01T00:00:01Z stderr F oops\n2026-01-01T00:00:02Z stdout F ",
        );
        assert_eq!(lines, vec![b"hello\n".to_vec(), b"oops\n".to_vec()]);
        // The rest of a record arrives later.
        assert_eq!(decoder.feed(b"\n"), vec![b"\n".to_vec()]);
    }

    #[test]
    fn partial_records_are_joined_and_timestamps_kept_when_asked() {
        let mut decoder = CriDecoder::new(true);
        let lines = decoder.feed(b"t1 stdout P abc\nt2 stdout P def\nt3 stdout F ghi\n");
        assert_eq!(lines, vec![b"t1 abcdefghi\n".to_vec()]);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let lines: Vec<Vec<u8>> = (0..5).map(|i| format!("{i}\n").into_bytes()).collect();
        assert_eq!(tail(lines.clone(), Some(2)).concat(), b"3\n4\n");
        assert_eq!(tail(lines.clone(), Some(0)).concat(), b"");
        assert_eq!(tail(lines.clone(), None).len(), 5);
        assert_eq!(tail(lines, Some(10)).len(), 5);
    }
}
