//! Child processes for tests: the workspace's binaries, free loopback ports, and a guard
//! that kills the child when the test ends (or when the test process dies).

use std::{
    net::TcpListener,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command},
};

/// The path of a binary built from this workspace (`skiff-control`, `skiff-agent`,
/// `skiffctl`) of the same profile as the running test or benchmark.
///
/// # Panics
/// When the binary was not built (`cargo xtask test` builds every binary first).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // Tests run from target/<profile>/deps/, benchmarks from target/<profile>/.
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .collect();
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!(
            "{name} is not built (looked at {candidates:?}); run `cargo build --workspace --bins` \
             (cargo xtask test and bench do)"
        )
    })
}

/// A loopback port nobody listens on right now, and never handed out before by this
/// process: the kernel may give a just-released ephemeral port again, so two calls in a
/// row (an API port, then a metrics port) could otherwise collide.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind an ephemeral loopback port")
            .port();
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// Spawns `command` so that the kernel kills it if the test process dies without running
/// destructors (PR_SET_PDEATHSIG), and returns a guard that kills it on drop.
///
/// The death signal follows the *thread* that forked the child, so every child is forked
/// by one thread that lives as long as the process: a child spawned from a short-lived
/// thread (a tokio blocking task) would otherwise be killed when that thread exits.
///
/// # Errors
/// When the command cannot be started.
pub fn spawn_guarded(mut command: Command) -> std::io::Result<ChildGuard> {
    use std::sync::{Mutex, OnceLock, mpsc};
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    kill_with_parent(&mut command);
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the child spawner thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((command, reply))
        .map_err(|_| std::io::Error::other("the child spawner thread is gone"))?;
    let child = answer
        .recv()
        .map_err(|_| std::io::Error::other("the child spawner thread is gone"))??;
    Ok(ChildGuard(child))
}

/// Has the kernel kill the child when the thread that forks it exits (see
/// [`spawn_guarded`], which makes that the whole test process).
fn kill_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls `prctl`, which
    // is async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// SIGKILLs the child now and reaps it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// The child's exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().ok().flatten()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
