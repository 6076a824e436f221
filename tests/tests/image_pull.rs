//! End-to-end tests of pulling images from a real OCI registry (Debian's docker-registry,
//! behind Basic auth, on the host side of a node's link): pull secrets of type
//! kubernetes.io/dockerconfigjson, the imagePullPolicy values, and ErrImagePull,
//! ImagePullBackOff and ErrImageNeverPull in the pod's status.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use skiff_api::client::Client;
use skiff_tests::{
    control::{Backend, ControlPlane},
    oci::{self, Entry, ImageSpec},
    pod_node::PodNode,
    registry::Registry,
    require_root,
};

const DEADLINE: Duration = Duration::from_secs(90);

fn archive(dir: &Path, name: &str, marker: &str) -> std::path::PathBuf {
    let mut entries = oci::busybox_entries(Path::new("/bin/busybox")).unwrap();
    entries.push(Entry::Contents {
        path: "marker".into(),
        bytes: format!("{marker}\n").into_bytes(),
        mode: 0o644,
    });
    let path = dir.join(format!("{marker}.tar"));
    oci::write_archive(
        &ImageSpec {
            name: name.into(),
            entries,
            entrypoint: vec![],
            cmd: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            exposed_ports: vec![],
        },
        &path,
    )
    .unwrap();
    path
}

fn pod(name: &str, node: &str, image: &str, policy: &str, secret: Option<&str>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node, "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": image, "imagePullPolicy": policy,
                "command": ["sh", "-c", "cat /marker; exec sleep 3600"],
            }],
        },
    });
    if let Some(secret) = secret {
        pod["spec"]["imagePullSecrets"] = json!([{"name": secret}]);
    }
    pod
}

async fn wait_status(
    client: &Client,
    name: &str,
    node: &PodNode,
    what: &str,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + DEADLINE;
    let mut last = Value::Null;
    loop {
        if let Ok(pod) = client.get("pods", "default", name).await {
            let status = pod["status"]["containerStatuses"][0].clone();
            if accept(&status) {
                return status;
            }
            last = status;
        }
        assert!(
            Instant::now() < deadline,
            "pod {name}: {what} never came; container status: {last}\nagent log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn running(status: &Value) -> bool {
    status["state"]["running"].is_object()
}

async fn marker(client: &Client, node: &PodNode, name: &str) -> String {
    let pod = client.get("pods", "default", name).await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let log = node.pod_log(&pod, "main", 0);
        if !log.is_empty() {
            return log
                .lines()
                .last()
                .unwrap_or_default()
                .rsplit(' ')
                .next()
                .unwrap_or_default()
                .to_string();
        }
        assert!(Instant::now() < deadline, "pod {name} printed nothing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_images_are_pulled_from_a_registry_with_pull_secrets_and_pull_policies() {
    require_root();
    let mut node = PodNode::new(46);
    let host = node.link.host_ip;
    let registry = Registry::start(host, Some(("puller", "pull-pw"))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = format!("{}/skiff/pulled:1", registry.address);
    registry
        .push_oci_archive(&archive(dir.path(), &image, "first"), "skiff/pulled", "1")
        .unwrap();
    let control = tokio::task::spawn_blocking(move || {
        ControlPlane::start_listening(Backend::Embedded, &[host])
    })
    .await
    .unwrap()
    .unwrap();
    let client = control.admin_client().unwrap();
    node.agent_args = vec!["--plain-http-registry".into(), registry.address.clone()];
    node.start_agent(&control);

    // Without credentials the registry says no: ErrImagePull, then ImagePullBackOff, with
    // the reason in the message.
    client
        .create(
            "pods",
            "default",
            &pod("anonymous", &node.name, &image, "IfNotPresent", None),
        )
        .await
        .unwrap();
    let status = wait_status(&client, "anonymous", &node, "a pull failure", |s| {
        matches!(
            s["state"]["waiting"]["reason"].as_str(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    })
    .await;
    let message = status["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("401") && message.contains("imagePullSecret"),
        "{message}"
    );
    wait_status(&client, "anonymous", &node, "ImagePullBackOff", |s| {
        s["state"]["waiting"]["reason"] == "ImagePullBackOff"
    })
    .await;

    // With a dockerconfigjson pull secret, the image is pulled and runs.
    let auth = base64_encode(b"puller:pull-pw");
    let config = json!({"auths": {registry.address.clone(): {"auth": auth}}}).to_string();
    client
        .create(
            "secrets",
            "default",
            &json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "regcred"},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": base64_encode(config.as_bytes())},
            }),
        )
        .await
        .unwrap();
    client
        .create(
            "pods",
            "default",
            &pod("first", &node.name, &image, "IfNotPresent", Some("regcred")),
        )
        .await
        .unwrap();
    wait_status(&client, "first", &node, "running", running).await;
    assert_eq!(marker(&client, &node, "first").await, "first");

    // A new image under the same tag: IfNotPresent keeps the one the node has, Always pulls.
    registry
        .push_oci_archive(&archive(dir.path(), &image, "second"), "skiff/pulled", "1")
        .unwrap();
    client
        .create(
            "pods",
            "default",
            &pod("kept", &node.name, &image, "IfNotPresent", Some("regcred")),
        )
        .await
        .unwrap();
    wait_status(&client, "kept", &node, "running", running).await;
    assert_eq!(marker(&client, &node, "kept").await, "first");
    client
        .create(
            "pods",
            "default",
            &pod("fresh", &node.name, &image, "Always", Some("regcred")),
        )
        .await
        .unwrap();
    wait_status(&client, "fresh", &node, "running", running).await;
    assert_eq!(marker(&client, &node, "fresh").await, "second");

    // Never: an image the node does not have is not pulled.
    let absent = format!("{}/skiff/absent:1", registry.address);
    client
        .create(
            "pods",
            "default",
            &pod("never", &node.name, &absent, "Never", Some("regcred")),
        )
        .await
        .unwrap();
    let status = wait_status(&client, "never", &node, "ErrImageNeverPull", |s| {
        s["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    })
    .await;
    assert!(
        status["state"]["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&absent) && m.contains("pull policy of Never")),
        "{status}"
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
