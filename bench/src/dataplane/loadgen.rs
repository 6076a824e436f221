//! The load generator: a child process of the bench (`skiff-bench loadgen '<json>'`),
//! started inside a bench netns (and, for Skiff's socket LB, inside its cgroup), whose
//! client threads send fixed-size requests to the echo server and time each one.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddrV4, TcpStream},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use skiff_tests::netns::Netns;

use super::topology::{MESSAGE, Side, pin};

/// The first argument that makes `skiff-bench` run as a load generator.
pub const LOADGEN_ARG: &str = "loadgen";

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Mode {
    /// One connection per thread, requests back to back on it.
    Persistent,
    /// A new connection per request (connect, request, reply, close).
    PerRequest,
    /// Prints `ready`, then retries one request on a new connection to the first target
    /// until it succeeds, and reports when (wall clock, shared with the parent).
    FirstSuccess,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub mode: Mode,
    pub targets: Vec<SocketAddrV4>,
    pub threads: usize,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// For [`Mode::FirstSuccess`]: nanoseconds since the Unix epoch of the first reply.
    pub first_success_unix_ns: Option<u128>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed_s
    }
}

/// The child's entry point: runs `spec_json` and prints the outcome as JSON.
///
/// # Errors
/// When the spec does not parse.
pub fn main(spec_json: &str) -> Result<()> {
    let spec: Spec = serde_json::from_str(spec_json).context("parsing the loadgen spec")?;
    ensure!(!spec.targets.is_empty(), "no targets");
    // Before the client threads start: they inherit it.
    pin(Side::Client);
    let outcome = match spec.mode {
        Mode::FirstSuccess => first_success(&spec)?,
        _ => load(&spec),
    };
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

fn request(stream: &mut TcpStream, buf: &mut [u8; MESSAGE]) -> std::io::Result<()> {
    stream.write_all(buf)?;
    stream.read_exact(buf)
}

/// Closes with a reset (SO_LINGER 0), as load generators do, so that client ports are not
/// held in TIME_WAIT.
fn close_with_reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a properly sized option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn one_connection(target: SocketAddrV4, buf: &mut [u8; MESSAGE]) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&target.into(), Duration::from_secs(1))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let result = request(&mut stream, buf);
    close_with_reset(stream);
    result
}

fn load(spec: &Spec) -> Outcome {
    let start = Instant::now();
    let deadline = start + Duration::from_millis(spec.duration_ms);
    let per_thread: Vec<(Vec<u32>, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..spec.threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut latencies = Vec::with_capacity(1 << 16);
                    let mut errors = 0u64;
                    let mut buf = [b'x'; MESSAGE];
                    let mut k = t;
                    let mut persistent: Option<TcpStream> = None;
                    while Instant::now() < deadline {
                        let target = spec.targets[k % spec.targets.len()];
                        k += spec.threads;
                        let began = Instant::now();
                        let result = if spec.mode == Mode::Persistent {
                            if persistent.is_none() {
                                persistent = TcpStream::connect_timeout(
                                    &target.into(),
                                    Duration::from_secs(1),
                                )
                                .and_then(|s| {
                                    s.set_nodelay(true)?;
                                    s.set_read_timeout(Some(Duration::from_secs(1)))?;
                                    Ok(s)
                                })
                                .ok();
                            }
                            match persistent.as_mut() {
                                Some(stream) => request(stream, &mut buf),
                                None => Err(std::io::ErrorKind::NotConnected.into()),
                            }
                        } else {
                            one_connection(target, &mut buf)
                        };
                        match result {
                            Ok(()) => latencies.push(
                                u32::try_from(began.elapsed().as_nanos()).unwrap_or(u32::MAX),
                            ),
                            Err(_) => {
                                errors += 1;
                                persistent = None;
                            }
                        }
                    }
                    (latencies, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed_s = start.elapsed().as_secs_f64();
    let errors = per_thread.iter().map(|(_, e)| e).sum();
    let mut all: Vec<u32> = per_thread.into_iter().flat_map(|(l, _)| l).collect();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |ns| f64::from(*ns) / 1000.0)
    };
    Outcome {
        requests: all.len() as u64,
        errors,
        elapsed_s,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        first_success_unix_ns: None,
    }
}

fn first_success(spec: &Spec) -> Result<Outcome> {
    println!("ready");
    std::io::stdout().flush()?;
    let deadline = Instant::now() + Duration::from_millis(spec.duration_ms);
    let mut buf = [b'x'; MESSAGE];
    let mut attempts = 0u64;
    while Instant::now() < deadline {
        attempts += 1;
        if one_connection(spec.targets[0], &mut buf).is_ok() {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
            return Ok(Outcome {
                requests: 1,
                errors: attempts - 1,
                first_success_unix_ns: Some(now),
                ..Outcome::default()
            });
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    bail!(
        "no connection to {} succeeded within {} ms ({attempts} attempts)",
        spec.targets[0],
        spec.duration_ms
    )
}

/// A running load generator.
pub struct Running {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

/// Starts the load generator inside `ns`, and inside the cgroup `cgroup` when given.
///
/// # Errors
/// When the namespace or cgroup cannot be opened or the process cannot start.
pub fn spawn(ns: &Netns, cgroup: Option<&Path>, spec: &Spec) -> Result<Running> {
    let netns = File::open(format!("/var/run/netns/{}", ns.name()))
        .with_context(|| format!("opening netns {}", ns.name()))?;
    let procs = cgroup
        .map(|dir| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .with_context(|| format!("opening {}/cgroup.procs", dir.display()))
        })
        .transpose()?;
    let (ns_fd, procs_fd) = (netns.as_raw_fd(), procs.as_ref().map(AsRawFd::as_raw_fd));
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg(LOADGEN_ARG)
        .arg(serde_json::to_string(spec)?)
        .stdout(Stdio::piped());
    // SAFETY: runs in the forked child before exec and only makes async-signal-safe calls
    // (setns, write) on descriptors opened before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // "0" moves the writing process itself.
            if let Some(fd) = procs_fd
                && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().context("starting the load generator")?;
    let stdout = BufReader::new(child.stdout.take().context("loadgen stdout")?);
    Ok(Running { child, stdout })
}

impl Running {
    /// Waits for the `ready` line of [`Mode::FirstSuccess`].
    ///
    /// # Errors
    /// When the child exits first.
    pub fn ready(&mut self) -> Result<()> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        ensure!(line.trim() == "ready", "loadgen did not start: {line:?}");
        Ok(())
    }

    /// Waits for the outcome (the child bounds its own run time).
    ///
    /// # Errors
    /// When the child fails.
    pub fn finish(mut self) -> Result<Outcome> {
        let mut out = String::new();
        self.stdout.read_to_string(&mut out)?;
        let status = self.child.wait()?;
        ensure!(status.success(), "loadgen failed ({status})");
        let last = out.lines().last().context("loadgen printed nothing")?;
        Ok(serde_json::from_str(last)?)
    }
}

/// Runs `spec` to completion in `ns` (and `cgroup`).
///
/// # Errors
/// When it cannot run or fails.
pub fn run(ns: &Netns, cgroup: Option<&Path>, spec: &Spec) -> Result<Outcome> {
    spawn(ns, cgroup, spec)?.finish()
}
