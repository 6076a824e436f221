//! A TCP load balancer in front of several `skiff-control` instances, as an HA cluster puts
//! one before its API servers: each connection goes to the first instance that accepts it,
//! so agents and clients ride out the loss of any one control. TLS passes through untouched.

use std::{
    io,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

/// How long one backend may take to accept before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Forwards every listener's connections to live backends until dropped.
#[derive(Debug)]
pub struct ApiProxy {
    stop: Arc<AtomicBool>,
    /// Both halves of every forwarded connection, shut down on drop.
    streams: Arc<Mutex<Vec<TcpStream>>>,
    accepting: Vec<thread::JoinHandle<()>>,
    addresses: Vec<SocketAddr>,
}

impl ApiProxy {
    /// Serves `listeners` (bound by the caller, in whatever network namespace), forwarding
    /// to `backends` in round-robin order, skipping those that refuse.
    ///
    /// # Errors
    /// When a listener cannot be made non-blocking or has no local address.
    pub fn start(listeners: Vec<TcpListener>, backends: Vec<SocketAddr>) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let backends = Arc::new(backends);
        let next = Arc::new(AtomicUsize::new(0));
        let mut addresses = Vec::new();
        let mut accepting = Vec::new();
        for listener in listeners {
            listener.set_nonblocking(true)?;
            addresses.push(listener.local_addr()?);
            let (stop, streams, backends, next) = (
                stop.clone(),
                streams.clone(),
                backends.clone(),
                next.clone(),
            );
            accepting.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let start = next.fetch_add(1, Ordering::Relaxed);
                            forward(client, &backends, start, &streams);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(20)),
                    }
                }
            }));
        }
        Ok(Self {
            stop,
            streams,
            accepting,
            addresses,
        })
    }

    /// The addresses it listens on, in the order the listeners were given.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }
}

/// Connects `client` to the first backend (from `start`, round robin) that accepts, and
/// copies bytes both ways on two threads; the client is closed when none accepts.
fn forward(
    client: TcpStream,
    backends: &[SocketAddr],
    start: usize,
    streams: &Mutex<Vec<TcpStream>>,
) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_nodelay(true);
    let server = (0..backends.len())
        .map(|i| backends[(start + i) % backends.len()])
        .find_map(|backend| TcpStream::connect_timeout(&backend, CONNECT_TIMEOUT).ok());
    let Some(server) = server else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (Ok(client_read), Ok(server_read)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    {
        let mut streams = streams.lock().unwrap_or_else(|e| e.into_inner());
        // Forget connections that have ended (both halves shut down by their pumps).
        streams.retain(|s| s.peer_addr().is_ok());
        if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
            streams.push(c);
            streams.push(s);
        }
    }
    thread::spawn(move || pump(client_read, server));
    thread::spawn(move || pump(server_read, client));
}

/// Copies `from` into `to` until either ends, then closes both directions of both.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.accepting.drain(..) {
            let _ = handle.join();
        }
        for stream in self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}
