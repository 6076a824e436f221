//! End-to-end tests of image import: `skiffctl image import FILE --node N` uploads an
//! archive through the control plane to a real agent, which imports it into its
//! containerd; and an archive dropped in the agent's images directory is imported too.
//! Either way a pod then runs the image.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use skiff_api::client::Client;
use skiff_tests::{
    control::{Backend, ControlPlane},
    oci::{self, Entry, ImageSpec},
    pod_node::PodNode,
    process::workspace_binary,
    require_root,
};

const DEADLINE: Duration = Duration::from_secs(90);

fn spec(name: &str, marker: &str) -> ImageSpec {
    let mut entries = oci::busybox_entries(Path::new("/bin/busybox")).unwrap();
    entries.push(Entry::Contents {
        path: "marker".into(),
        bytes: format!("{marker}\n").into_bytes(),
        mode: 0o644,
    });
    ImageSpec {
        name: name.into(),
        entries,
        entrypoint: vec![],
        cmd: vec!["sh".into()],
        env: vec!["PATH=/bin".into()],
        exposed_ports: vec![],
    }
}

fn pod(name: &str, node: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node, "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "cat /marker; exec sleep 3600"],
            }],
        },
    })
}

async fn wait_running(client: &Client, name: &str, node: &PodNode) {
    let deadline = Instant::now() + DEADLINE;
    let mut last = Value::Null;
    loop {
        if let Ok(pod) = client.get("pods", "default", name).await {
            if pod["status"]["containerStatuses"][0]["state"]["running"].is_object() {
                return;
            }
            last = pod["status"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "pod {name} never ran: {last}\nagent log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_skiffctl_image_import_uploads_an_archive_a_pod_then_runs() {
    require_root();
    let mut node = PodNode::new(44);
    let host = node.link.host_ip;
    let control = tokio::task::spawn_blocking(move || {
        ControlPlane::start_listening(Backend::Embedded, &[host])
    })
    .await
    .unwrap()
    .unwrap();
    let client = control.admin_client().unwrap();
    node.start_agent(&control);
    let dir = tempfile::tempdir().unwrap();
    let oci_archive = dir.path().join("uploaded.tar");
    oci::write_archive(
        &spec("skiff.test/uploaded:1", "from an OCI upload"),
        &oci_archive,
    )
    .unwrap();
    let docker_archive = dir.path().join("saved.tar");
    oci::write_docker_archive(
        &spec("skiff.test/saved:2", "from docker save"),
        &docker_archive,
    )
    .unwrap();

    // The node registers (and gets its node API certificate) before it can take uploads.
    let deadline = Instant::now() + DEADLINE;
    let upload = |archive: &Path| {
        Command::new(workspace_binary("skiffctl"))
            .env("SKIFFCONFIG", control.admin_config_path())
            .args(["image", "import"])
            .arg(archive)
            .args(["--node", &node.name])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = loop {
        let out = upload(&oci_archive);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stdout}{stderr}\nagent log:\n{}",
        node.log()
    );
    assert_eq!(
        stdout,
        format!("imported skiff.test/uploaded:1 on node {}\n", node.name)
    );
    // Progress is shown on stderr: the upload, then the node's import steps.
    assert!(
        stderr.contains("importing:") && stderr.contains("done:"),
        "{stderr}"
    );
    assert!(stderr.contains("MiB"), "{stderr}");
    let out = upload(&docker_archive);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("imported skiff.test/saved:2 on node {}\n", node.name)
    );

    for (name, image) in [
        ("uploaded", "skiff.test/uploaded:1"),
        ("saved", "skiff.test/saved:2"),
    ] {
        client
            .create("pods", "default", &pod(name, &node.name, image))
            .await
            .unwrap();
        wait_running(&client, name, &node).await;
    }
    let logs = |name: &'static str| {
        let out = Command::new(workspace_binary("skiffctl"))
            .env("SKIFFCONFIG", control.admin_config_path())
            .args(["logs", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = Instant::now() + DEADLINE;
    while logs("uploaded") != "from an OCI upload\n" || logs("saved") != "from docker save\n" {
        assert!(
            Instant::now() < deadline,
            "the pods never printed their image's marker"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A broken archive and an unknown node are refused with a reason.
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar at all").unwrap();
    let out = upload(&junk);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("junk.tar") || stderr.contains("archive"),
        "{stderr}"
    );
    let out = Command::new(workspace_binary("skiffctl"))
        .env("SKIFFCONFIG", control.admin_config_path())
        .args(["image", "import"])
        .arg(&oci_archive)
        .args(["--node", "ghost-node"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nodes \"ghost-node\" not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_an_archive_dropped_in_the_images_directory_is_imported() {
    require_root();
    let mut node = PodNode::new(45);
    let host = node.link.host_ip;
    let control = tokio::task::spawn_blocking(move || {
        ControlPlane::start_listening(Backend::Embedded, &[host])
    })
    .await
    .unwrap()
    .unwrap();
    let client = control.admin_client().unwrap();
    node.start_agent(&control);
    // The pod first: it waits (ErrImagePull) until the image appears.
    client
        .create(
            "pods",
            "default",
            &pod("dropped", &node.name, "skiff.test/dropped:3"),
        )
        .await
        .unwrap();
    let images = node.state.path().join("images");
    let deadline = Instant::now() + DEADLINE;
    while !images.is_dir() {
        assert!(
            Instant::now() < deadline,
            "the agent made no images directory"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Written elsewhere and moved in, as a finished file.
    let staging = node.state.path().join("staging.tar");
    oci::write_docker_archive(&spec("skiff.test/dropped:3", "dropped in"), &staging).unwrap();
    std::fs::rename(&staging, images.join("dropped.tar")).unwrap();
    wait_running(&client, "dropped", &node).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let log = node.pod_log(
            &client.get("pods", "default", "dropped").await.unwrap(),
            "main",
            latest_attempt(&node),
        );
        if log.contains("dropped in") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pod did not print the marker: {log}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The newest attempt with a log file of the only pod on `node`.
fn latest_attempt(node: &PodNode) -> u32 {
    let logs = node.state.path().join("logs");
    std::fs::read_dir(&logs)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|pod| {
            std::fs::read_dir(pod.path().join("main"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter_map(|f| f.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .max()
        .unwrap_or(0)
}
