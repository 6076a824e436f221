//! Container probes (startup, liveness, readiness) as kubelet runs them: when each is due
//! (initial delay, period), how results fold into a verdict (success and failure
//! thresholds), and the checks themselves: exec in the container, HTTP GET and TCP connect
//! to the pod's address.

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use k8s_openapi::{
    api::core::v1::{Container, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

use crate::runtime::Runtime;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

/// The timing and thresholds of a probe, with Kubernetes' defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    /// The timing of `probe`.
    pub fn of(probe: &Probe) -> Self {
        let secs = |v: Option<i32>, default: u64| {
            Duration::from_secs(v.map_or(default, |v| v.max(0) as u64))
        };
        Self {
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: probe.success_threshold.map_or(1, |v| v.max(1) as u32),
            failure_threshold: probe.failure_threshold.map_or(3, |v| v.max(1) as u32),
        }
    }
}

/// The verdict a probe has reached so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough results yet.
    Unknown,
    Success,
    Failure,
}

/// What one probe of one container attempt has seen.
#[derive(Clone, Copy, Debug)]
pub struct ProbeState {
    pub last_run: Option<Instant>,
    pub successes: u32,
    pub failures: u32,
    pub verdict: Verdict,
}

impl Default for ProbeState {
    fn default() -> Self {
        Self {
            last_run: None,
            successes: 0,
            failures: 0,
            verdict: Verdict::Unknown,
        }
    }
}

impl ProbeState {
    /// Whether the probe should run at `now` for a container started at `started`.
    pub fn due(&self, timing: &Timing, started: Instant, now: Instant) -> bool {
        if now < started + timing.initial_delay {
            return false;
        }
        self.last_run.is_none_or(|last| now >= last + timing.period)
    }

    /// Folds one result in.
    pub fn record(&mut self, timing: &Timing, ok: bool, now: Instant) -> Verdict {
        self.last_run = Some(now);
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= timing.success_threshold {
                self.verdict = Verdict::Success;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= timing.failure_threshold {
                self.verdict = Verdict::Failure;
            }
        }
        self.verdict
    }
}

fn port_of(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Whether an HTTP status line says success (200-399).
pub fn http_success(response: &[u8]) -> bool {
    let text = String::from_utf8_lossy(response);
    let code = text
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok());
    code.is_some_and(|c| (200..400).contains(&c))
}

/// Runs `probe` once against the container `id` of a pod at `pod_ip`.
pub async fn run(
    probe: &Probe,
    container: &Container,
    id: &str,
    pod_ip: Ipv4Addr,
    runtime: &Arc<dyn Runtime>,
) -> bool {
    let timeout = Timing::of(probe).timeout;
    let check = async {
        if let Some(exec) = &probe.exec {
            let args = exec.command.clone().unwrap_or_default();
            let env = vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ];
            return runtime
                .exec(id, &args, &env)
                .await
                .is_ok_and(|code| code == 0);
        }
        if let Some(http) = &probe.http_get {
            let Some(port) = port_of(container, &http.port) else {
                return false;
            };
            let path = http.path.clone().unwrap_or_else(|| "/".into());
            let Ok(mut stream) = TcpStream::connect((pod_ip, port)).await else {
                return false;
            };
            let request = format!(
                "GET {path} HTTP/1.0\r\nHost: {pod_ip}:{port}\r\nUser-Agent: skiff-probe\r\n\r\n"
            );
            if stream.write_all(request.as_bytes()).await.is_err() {
                return false;
            }
            let mut response = Vec::new();
            let _ = stream.read_to_end(&mut response).await;
            return http_success(&response);
        }
        if let Some(tcp) = &probe.tcp_socket {
            let Some(port) = port_of(container, &tcp.port) else {
                return false;
            };
            return TcpStream::connect((pod_ip, port)).await.is_ok();
        }
        false
    };
    tokio::time::timeout(timeout, check).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::from_secs(5),
            period: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_waits_its_initial_delay_and_then_runs_every_period() {
        let t = timing(1, 3);
        let start = Instant::now();
        let mut state = ProbeState::default();
        assert!(!state.due(&t, start, start + Duration::from_secs(4)));
        assert!(state.due(&t, start, start + Duration::from_secs(5)));
        state.record(&t, true, start + Duration::from_secs(5));
        assert!(!state.due(&t, start, start + Duration::from_secs(6)));
        assert!(state.due(&t, start, start + Duration::from_secs(7)));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_must_reach_the_threshold_and_a_success_resets_them() {
        let t = timing(1, 3);
        let now = Instant::now();
        let mut state = ProbeState::default();
        assert_eq!(state.record(&t, false, now), Verdict::Unknown);
        assert_eq!(state.record(&t, false, now), Verdict::Unknown);
        assert_eq!(state.record(&t, true, now), Verdict::Success);
        assert_eq!(state.record(&t, false, now), Verdict::Success);
        assert_eq!(state.record(&t, false, now), Verdict::Success);
        assert_eq!(state.record(&t, false, now), Verdict::Failure);
        let t2 = timing(2, 1);
        let mut state = ProbeState::default();
        assert_eq!(state.record(&t2, true, now), Verdict::Unknown);
        assert_eq!(state.record(&t2, true, now), Verdict::Success);
    }

    #[test]
    fn http_success_is_2xx_or_3xx() {
        assert!(http_success(b"HTTP/1.0 200 OK\r\n\r\nhi"));
        assert!(http_success(b"HTTP/1.1 302 Found\r\n"));
        assert!(!http_success(b"HTTP/1.0 404 Not Found\r\n"));
        assert!(!http_success(b""));
    }

    #[test]
    fn defaults_follow_kubernetes() {
        let t = Timing::of(&Probe::default());
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!(t.success_threshold, 1);
        assert_eq!(t.failure_threshold, 3);
    }
}
