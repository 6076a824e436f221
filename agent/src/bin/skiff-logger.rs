//! `skiff-logger`: the log driver containerd's shim runs for a container (`binary://`
//! stdio). Reads the container's stdout (fd 3) and stderr (fd 4), writes CRI-format lines to
//! `--path` with size rotation, and signals readiness by closing fd 5.

use std::{
    io::Read,
    os::fd::FromRawFd,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use clap::Parser;
use skiff_agent::logs::{RotatingFile, cri_line, split_records};

/// Writes a container's output as CRI log lines.
#[derive(Debug, Parser)]
#[command(name = "skiff-logger")]
struct Args {
    /// The log file.
    #[arg(long)]
    path: PathBuf,
    /// Rotate when the file would grow past this many bytes (0: never).
    #[arg(long, default_value_t = 10 << 20)]
    max_size: u64,
}

fn main() {
    let args = Args::parse();
    let file = match RotatingFile::open(&args.path, args.max_size) {
        Ok(file) => Arc::new(Mutex::new(file)),
        Err(error) => {
            eprintln!("skiff-logger: opening {}: {error}", args.path.display());
            std::process::exit(1);
        }
    };
    // SAFETY: the shim passes the stdout and stderr pipes as fds 3 and 4 and the readiness
    // pipe as fd 5; each is owned here alone and closed exactly once.
    let (stdout, stderr, ready) = unsafe {
        (
            std::fs::File::from_raw_fd(3),
            std::fs::File::from_raw_fd(4),
            std::fs::File::from_raw_fd(5),
        )
    };
    drop(ready);
    let threads: Vec<_> = [(stdout, "stdout"), (stderr, "stderr")]
        .into_iter()
        .map(|(source, stream)| {
            let file = Arc::clone(&file);
            std::thread::spawn(move || copy(source, stream, &file))
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

fn copy(mut source: std::fs::File, stream: &str, file: &Mutex<RotatingFile>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let n = match source.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buffer[..n]);
        let (records, rest) = split_records(&pending);
        pending = rest;
        write(file, stream, records);
    }
    if !pending.is_empty() {
        write(file, stream, vec![(pending, false)]);
    }
}

fn write(file: &Mutex<RotatingFile>, stream: &str, records: Vec<(Vec<u8>, bool)>) {
    if records.is_empty() {
        return;
    }
    let now = jiff::Timestamp::now().to_string();
    let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
    for (text, partial) in records {
        let _ = file.write_record(&cri_line(&now, stream, partial, &text));
    }
}
