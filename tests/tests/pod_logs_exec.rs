//! End-to-end tests of `skiffctl logs` and `skiffctl exec` through the control plane: the
//! real skiffctl binary calls a real skiff-control, which relays over mutual TLS to the
//! node API of a real skiff-agent (in a network namespace) running real containers.

use std::{
    io::{Read, Write},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use skiff_api::client::Client;
use skiff_tests::{
    control::{Backend, ControlPlane},
    pod_node::{IMAGE, PodNode},
    process::{spawn_guarded, workspace_binary},
    require_root,
};

const DEADLINE: Duration = Duration::from_secs(60);
/// How long one skiffctl call may take.
const CALL: Duration = Duration::from_secs(30);

async fn start(index: u8) -> (PodNode, ControlPlane, Client) {
    PodNode::started(index, Vec::new()).await
}

fn pod(name: &str, node: &str, script: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node, "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "main", "image": IMAGE,
                "env": [{"name": "GREETING", "value": "hello from the spec"}],
                "command": ["sh", "-c", script],
            }],
        },
    })
}

async fn wait_pod(
    client: &Client,
    name: &str,
    what: &str,
    node: &PodNode,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + DEADLINE;
    let mut last = Value::Null;
    loop {
        if let Ok(object) = client.get("pods", "default", name).await {
            if accept(&object) {
                return object;
            }
            last = object;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; pod status: {}\nagent log:\n{}",
            last["status"],
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn running_with_restarts(restarts: i64) -> impl Fn(&Value) -> bool {
    move |pod| {
        let status = &pod["status"]["containerStatuses"][0];
        pod["status"]["phase"] == "Running"
            && status["state"]["running"].is_object()
            && status["restartCount"] == restarts
    }
}

/// The real skiffctl with the admin config (or `token` instead of its token).
fn skiffctl(control: &ControlPlane, token: Option<&str>, args: &[&str]) -> Command {
    let mut command = Command::new(workspace_binary("skiffctl"));
    command.env("SKIFFCONFIG", control.admin_config_path());
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    command.args(args);
    command
}

/// Runs `command` with `stdin` (none: /dev/null), bounded by [`CALL`].
fn run(mut command: Command, stdin: Option<&[u8]>) -> Output {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let description = format!("{command:?}");
    let mut child = spawn_guarded(command).expect("spawn skiffctl");
    if let Some(bytes) = stdin {
        let mut pipe = child.0.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    let readers: Vec<_> = [
        Box::new(child.0.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.0.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|mut pipe| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    })
    .collect();
    let deadline = Instant::now() + CALL;
    let status = loop {
        if let Some(status) = child.exited() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{description} did not finish within {CALL:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut outputs = readers.into_iter().map(|r| r.join().unwrap());
    Output {
        status,
        stdout: outputs.next().unwrap(),
        stderr: outputs.next().unwrap(),
    }
}

async fn run_async(command: Command, stdin: Option<Vec<u8>>) -> Output {
    tokio::task::spawn_blocking(move || run(command, stdin.as_deref()))
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs and expects success; returns stdout.
async fn ok(control: &ControlPlane, args: &[&str]) -> String {
    let out = run_async(skiffctl(control, None, args), None).await;
    assert!(
        out.status.success(),
        "skiffctl {args:?} failed ({}): {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_skiffctl_logs_streams_through_the_control_plane_with_tail_follow_and_previous()
{
    require_root();
    let (node, control, client) = start(41).await;
    // Prints three lines, then waits for /tmp/stop (made by exec) to say bye and exit.
    let script = "echo one; echo two; echo three; \
                  while [ ! -f /tmp/stop ]; do sleep 0.1; done; echo bye; exit 3";
    client
        .create("pods", "default", &pod("talker", &node.name, script))
        .await
        .unwrap();
    wait_pod(
        &client,
        "talker",
        "the pod to run",
        &node,
        running_with_restarts(0),
    )
    .await;

    // The whole log, as the container wrote it (no CRI prefixes).
    let deadline = Instant::now() + DEADLINE;
    let mut log = String::new();
    while log != "one\ntwo\nthree\n" {
        assert!(
            Instant::now() < deadline,
            "the log never read one/two/three: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        log = ok(&control, &["logs", "talker"]).await;
    }
    assert_eq!(
        ok(&control, &["logs", "pod/talker", "--tail", "1"]).await,
        "three\n"
    );
    assert_eq!(
        ok(&control, &["logs", "talker", "--tail=2"]).await,
        "two\nthree\n"
    );
    let stamped = ok(&control, &["logs", "talker", "--timestamps", "-c", "main"]).await;
    let first = stamped.lines().next().unwrap();
    let (time, rest) = first.split_once(' ').unwrap();
    assert!(
        time.parse::<jiff::Timestamp>().is_ok() && rest == "one",
        "{first}"
    );

    // -f: the lines so far, then new ones as they are written, until the container ends.
    let mut follow = skiffctl(&control, None, &["logs", "-f", "talker"]);
    follow
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let mut follower = spawn_guarded(follow).unwrap();
    let mut out = follower.0.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = out.read(&mut buffer) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buffer[..n]);
            let _ = lines_tx.send(text(&seen));
        }
    });
    let wait_followed = |needle: &str| {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = String::new();
        while !seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(now) => seen = now,
                Err(_) => panic!("logs -f never printed {needle:?}; it printed {seen:?}"),
            }
        }
        seen
    };
    wait_followed("three\n");
    // A line written now (by PID 1's stdout, through exec) arrives while following.
    let wrote = run_async(
        skiffctl(
            &control,
            None,
            &[
                "exec",
                "talker",
                "--",
                "sh",
                "-c",
                "echo more > /proc/1/fd/1",
            ],
        ),
        None,
    )
    .await;
    assert!(wrote.status.success(), "{}", text(&wrote.stderr));
    wait_followed("more\n");
    let stop = run_async(
        skiffctl(
            &control,
            None,
            &["exec", "talker", "--", "touch", "/tmp/stop"],
        ),
        None,
    )
    .await;
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    let all = wait_followed("bye\n");
    assert_eq!(all, "one\ntwo\nthree\nmore\nbye\n");
    // The follower ends once the container instance it followed is replaced.
    let deadline = Instant::now() + DEADLINE;
    while follower.exited().is_none() {
        assert!(
            Instant::now() < deadline,
            "logs -f did not end after the container was replaced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // After the restart: --previous is the instance that said bye, the current one starts over.
    wait_pod(
        &client,
        "talker",
        "the restart",
        &node,
        running_with_restarts(1),
    )
    .await;
    assert_eq!(
        ok(&control, &["logs", "talker", "--previous"]).await,
        "one\ntwo\nthree\nmore\nbye\n"
    );
    assert_eq!(
        ok(&control, &["logs", "talker", "-p", "--tail", "1"]).await,
        "bye\n"
    );
    let deadline = Instant::now() + DEADLINE;
    loop {
        let current = ok(&control, &["logs", "talker"]).await;
        if current == "one\ntwo\nthree\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new instance's log: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_skiffctl_exec_runs_commands_with_stdin_a_tty_and_the_exit_code_passed_back() {
    require_root();
    let (node, control, client) = start(42).await;
    client
        .create(
            "pods",
            "default",
            &pod("shell", &node.name, "exec sleep 3600"),
        )
        .await
        .unwrap();
    wait_pod(
        &client,
        "shell",
        "the pod to run",
        &node,
        running_with_restarts(0),
    )
    .await;

    // Output on both streams, and the command's exit code as skiffctl's.
    let out = run_async(
        skiffctl(
            &control,
            None,
            &[
                "exec",
                "shell",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 7",
            ],
        ),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    // The process runs with the container's own environment.
    assert_eq!(
        ok(
            &control,
            &[
                "exec",
                "shell",
                "-c",
                "main",
                "--",
                "sh",
                "-c",
                "echo $GREETING"
            ]
        )
        .await,
        "hello from the spec\n"
    );
    // stdin is piped through with -i, and its end reaches the command.
    let piped = run_async(
        skiffctl(
            &control,
            None,
            &["exec", "-i", "shell", "--", "sh", "-c", "cat; echo done"],
        ),
        Some(b"line one\nline two\n".to_vec()),
    )
    .await;
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    assert_eq!(text(&piped.stdout), "line one\nline two\ndone\n");
    // A lot of output arrives whole, before the exit code.
    let many = ok(&control, &["exec", "shell", "--", "seq", "1", "50000"]).await;
    assert_eq!(many.lines().count(), 50000);
    assert_eq!(many.lines().last(), Some("50000"));
    // A missing command is an error, not a hang.
    let missing = run_async(
        skiffctl(&control, None, &["exec", "shell", "--", "/no/such"]),
        None,
    )
    .await;
    assert!(!missing.status.success());
    // With -t on a real terminal (script(1) gives skiffctl one), the command gets a TTY.
    let tty = run_async(
        {
            let mut command = Command::new("script");
            let inner = format!(
                "SKIFFCONFIG={} {} exec -it shell -- sh -c 'tty; stty size'",
                control.admin_config_path().display(),
                workspace_binary("skiffctl").display()
            );
            command.args(["-qec", &inner, "/dev/null"]);
            command
        },
        Some(b"".to_vec()),
    )
    .await;
    let tty_out = text(&tty.stdout);
    assert!(tty.status.success(), "{tty_out}{}", text(&tty.stderr));
    assert!(
        tty_out.contains("/dev/pts/"),
        "exec -t got no terminal: {tty_out:?}"
    );

    // The Node reports the node API's port, and the node API answers the API server only:
    // a certificate from the cluster CA under another name is refused, and so is a caller
    // without a client certificate.
    let node_object = client.get("nodes", "", &node.name).await.unwrap();
    assert_eq!(
        node_object["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250,
        "the Node reports the node API's port"
    );
    let address = format!("https://{}:10250", node.link.node_ip);
    let ca = std::fs::read_to_string(control.data_dir().join("pki/ca.crt")).unwrap();
    let ca_key = std::fs::read_to_string(control.data_dir().join("pki/ca.key")).unwrap();
    let intruder = signed_client_certificate(&ca, &ca_key, "system:node:other-node");
    let refused = node_api_logs(&address, &node.name, &ca, Some(intruder)).await;
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("system:node:other-node"),
        "{refused:?}"
    );
    let anonymous = node_api_logs(&address, &node.name, &ca, None).await;
    assert_ne!(anonymous.code(), tonic::Code::Ok, "{anonymous:?}");
    assert_ne!(anonymous.code(), tonic::Code::NotFound, "{anonymous:?}");
}

/// A client certificate named `name`, signed by the cluster CA.
fn signed_client_certificate(ca_pem: &str, ca_key_pem: &str, name: &str) -> (String, String) {
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(ca_pem, rcgen::KeyPair::from_pem(ca_key_pem).unwrap())
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Asks a node API directly for a log, as `identity`; returns how it refused.
async fn node_api_logs(
    address: &str,
    node: &str,
    ca: &str,
    identity: Option<(String, String)>,
) -> tonic::Status {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(node);
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let endpoint = Endpoint::from_shared(address.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .tls_config(tls)
        .unwrap();
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(error) => return tonic::Status::unavailable(format!("{error:?}")),
    };
    let request = skiff_api::proto::LogsRequest {
        namespace: "default".into(),
        pod: "shell".into(),
        pod_uid: "any".into(),
        container: "main".into(),
        ..Default::default()
    };
    match skiff_api::proto::node_client::NodeClient::new(channel)
        .container_logs(request)
        .await
    {
        Ok(_) => tonic::Status::ok("the node API answered"),
        Err(status) => status,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_logs_and_exec_are_refused_without_permission_and_explained_for_an_unknown_node()
{
    require_root();
    let (node, control, client) = start(43).await;
    client
        .create(
            "pods",
            "default",
            &pod("guarded", &node.name, "echo secret-ish; exec sleep 3600"),
        )
        .await
        .unwrap();
    wait_pod(
        &client,
        "guarded",
        "the pod to run",
        &node,
        running_with_restarts(0),
    )
    .await;

    // The default service account of `default` may read (pods/log, like the view role) but
    // not exec (pods/exec is create).
    let deadline = Instant::now() + DEADLINE;
    let token = loop {
        if let Some(token) = ControlPlane::default_service_account_token(&client).await {
            break token;
        }
        assert!(
            Instant::now() < deadline,
            "no token for the default service account"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let denied = run_async(
        skiffctl(&control, Some(&token), &["exec", "guarded", "--", "id"]),
        None,
    )
    .await;
    assert_eq!(denied.status.code(), Some(1));
    let message = text(&denied.stderr);
    assert!(
        message.contains("Forbidden")
            && message.contains("system:serviceaccount:default:default")
            && message.contains("pods/exec"),
        "{message}"
    );
    let deadline = Instant::now() + DEADLINE;
    loop {
        let read = run_async(skiffctl(&control, Some(&token), &["logs", "guarded"]), None).await;
        if read.status.success() && text(&read.stdout) == "secret-ish\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the service account cannot read the log: {}{}",
            text(&read.stdout),
            text(&read.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A made-up token is not anyone.
    let nobody = run_async(
        skiffctl(&control, Some("made-up"), &["logs", "guarded"]),
        None,
    )
    .await;
    assert!(
        text(&nobody.stderr).contains("Unauthorized"),
        "{}",
        text(&nobody.stderr)
    );

    // A pod bound to a node that never registered: a clear error, not a hang.
    client
        .create("pods", "default", &pod("stray", "ghost-node", "true"))
        .await
        .unwrap();
    for args in [&["logs", "stray"][..], &["exec", "stray", "--", "true"][..]] {
        let out = run_async(skiffctl(&control, None, args), None).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let message = text(&out.stderr);
        assert!(
            message.contains("NotFound")
                && message.contains("\"ghost-node\"")
                && message.contains("not registered"),
            "{args:?}: {message}"
        );
    }
    // A pod that does not exist, and a container that does not.
    let out = run_async(skiffctl(&control, None, &["logs", "nope"]), None).await;
    assert!(
        text(&out.stderr).contains("pods \"nope\" not found"),
        "{}",
        text(&out.stderr)
    );
    let out = run_async(
        skiffctl(&control, None, &["logs", "guarded", "-c", "other"]),
        None,
    )
    .await;
    assert!(
        text(&out.stderr).contains("container other is not valid"),
        "{}",
        text(&out.stderr)
    );
    // --previous of a container that never restarted.
    let out = run_async(
        skiffctl(&control, None, &["logs", "guarded", "--previous"]),
        None,
    )
    .await;
    assert!(
        text(&out.stderr)
            .contains("previous terminated container \"main\" in pod \"guarded\" not found"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_logs_follow_keeps_every_line_across_log_rotations() {
    require_root();
    let mut node = PodNode::new(47);
    let host = node.link.host_ip;
    let control = tokio::task::spawn_blocking(move || {
        ControlPlane::start_listening(Backend::Embedded, &[host])
    })
    .await
    .unwrap()
    .unwrap();
    let client = control.admin_client().unwrap();
    // Files rotate at 1 MiB: ~250-byte lines rotate every ~4000 lines.
    node.agent_args = vec!["--container-log-max-mib".into(), "1".into()];
    node.start_agent(&control);
    let pad = "x".repeat(200);
    let script =
        format!("i=0; while true; do printf 'n=%d {pad}\\n' $i; i=$((i+1)); usleep 500; done");
    client
        .create("pods", "default", &pod("chatty", &node.name, &script))
        .await
        .unwrap();
    wait_pod(
        &client,
        "chatty",
        "the pod to run",
        &node,
        running_with_restarts(0),
    )
    .await;

    let mut follow = skiffctl(&control, None, &["logs", "-f", "chatty", "--tail", "1"]);
    follow
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null());
    let mut follower = spawn_guarded(follow).unwrap();
    let out = follower.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut numbers = Vec::new();
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let number = line
                .strip_prefix("n=")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse::<u64>().ok());
            numbers.push(number);
            if numbers.len() >= 12_000 {
                break;
            }
        }
        numbers
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while !reader.is_finished() {
        assert!(
            Instant::now() < deadline,
            "logs -f did not deliver 12000 lines in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let numbers = reader.join().unwrap();
    drop(follower);
    let numbers: Vec<u64> = numbers
        .into_iter()
        .map(|n| n.expect("every followed line is one the container wrote, whole"))
        .collect();
    for pair in numbers.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "a followed line is missing or repeated between {} and {}",
            pair[0],
            pair[1]
        );
    }
    // The log did rotate meanwhile (one older file is kept).
    let pod = client.get("pods", "default", "chatty").await.unwrap();
    let dir = node.state.path().join("logs").join(format!(
        "default_chatty_{}",
        pod["metadata"]["uid"].as_str().unwrap()
    ));
    assert!(
        dir.join("main/0.log.1").exists(),
        "the log never rotated, so this proved nothing"
    );
}
