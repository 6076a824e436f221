//! `sock_probe`: a tiny client that privileged tests run inside a test cgroup and network
//! namespace to exercise socket load balancing with real sockets.
//!
//! `sock_probe tcp|udp|udp-connected ADDR:PORT COUNT` makes COUNT connections (or datagram
//! exchanges), one socket each, and prints one line per attempt:
//! `ok <peer or source address> <reply>` or `err <errno>`; the backends of the tests
//! reply `<backend address> <client address as the backend saw it>`.

use std::{
    io::Read,
    net::{SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

const TIMEOUT: Duration = Duration::from_secs(3);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, target, count] = &args[..] else {
        eprintln!("usage: sock_probe tcp|udp|udp-connected ADDR:PORT COUNT");
        std::process::exit(2);
    };
    let target: SocketAddr = target.parse().expect("ADDR:PORT");
    let count: usize = count.parse().expect("COUNT");
    for _ in 0..count {
        let line = match mode.as_str() {
            "tcp" => tcp(target),
            "udp" => udp(target, false),
            "udp-connected" => udp(target, true),
            other => panic!("unknown mode {other}"),
        };
        match line {
            Ok((peer, reply)) => println!("ok {peer} {}", reply.trim()),
            Err(error) => println!("err {}", error.raw_os_error().unwrap_or(-1)),
        }
    }
}

fn tcp(target: SocketAddr) -> std::io::Result<(SocketAddr, String)> {
    let mut stream = TcpStream::connect_timeout(&target, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let peer = stream.peer_addr()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok((peer, reply))
}

fn udp(target: SocketAddr, connected: bool) -> std::io::Result<(SocketAddr, String)> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(TIMEOUT))?;
    if connected {
        socket.connect(target)?;
        socket.send(b"hello")?;
    } else {
        socket.send_to(b"hello", target)?;
    }
    let mut buf = [0u8; 256];
    let (n, source) = socket.recv_from(&mut buf)?;
    let shown = if connected {
        socket.peer_addr()?
    } else {
        source
    };
    if shown != source {
        return Ok((source, format!("getpeername {shown} differs from source")));
    }
    Ok((source, String::from_utf8_lossy(&buf[..n]).into_owned()))
}
