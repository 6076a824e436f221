//! End-to-end test of `skiffctl top` and the metrics.k8s.io API: a real skiff-agent (in a
//! network namespace, housekeeping every 500 ms) runs a busy and an idle container; the
//! real skiffctl asks a real skiff-control, which asks the node's API for its usage summary
//! over mutual TLS.

use std::{collections::BTreeMap, process::Output, time::Duration};

use serde_json::{Value, json};
use skiff_api::{
    client::{Client, ListParams},
    status::Reason,
    validation::quantity::Quantity,
};
use skiff_tests::{
    control::ControlPlane,
    pod_node::{IMAGE, PodNode},
    process::workspace_binary,
    require_root,
    wait::eventually,
};

const DEADLINE: Duration = Duration::from_secs(90);
/// How long one skiffctl call may take.
const CALL: Duration = Duration::from_secs(30);
const LABELS: &str = "app=top-test";

fn pod(name: &str, node: &str, script: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "top-test"}},
        "spec": {
            "nodeName": node, "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", script]}],
        },
    })
}

/// The real skiffctl with the admin config (or `token` instead of its token), bounded by
/// [`CALL`].
async fn skiffctl(control: &ControlPlane, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(workspace_binary("skiffctl"));
    command
        .env("SKIFFCONFIG", control.admin_config_path())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    command.args(args);
    tokio::time::timeout(CALL, command.output())
        .await
        .unwrap_or_else(|_| panic!("skiffctl {args:?} did not finish within {CALL:?}"))
        .expect("skiffctl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The rows of a table by their first cell (the header row under its own first cell).
fn rows(table: &str) -> BTreeMap<String, Vec<String>> {
    table
        .lines()
        .filter_map(|line| {
            let cells: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            Some((cells.first()?.clone(), cells))
        })
        .collect()
}

/// Millicores from a `250m` cell.
fn millicores(cell: &str) -> u64 {
    cell.strip_suffix('m')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{cell:?} is not millicores"))
}

/// A PodMetrics item's total (CPU nanocores, memory bytes) over its containers.
fn pod_usage(item: &Value) -> (i128, i64) {
    item["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let q = |k: &str| Quantity::parse(c["usage"][k].as_str().unwrap()).unwrap();
            (q("cpu").nanos(), q("memory").value())
        })
        .fold((0, 0), |(c, m), (dc, dm)| (c + dc, m + dm))
}

async fn pod_metrics(client: &Client) -> Result<Vec<Value>, String> {
    let params = ListParams {
        label_selector: LABELS.into(),
        ..ListParams::default()
    };
    client
        .list("pods.metrics.k8s.io", "default", &params)
        .await
        .map(|l| l.items)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_top_shows_a_busy_pod_above_an_idle_one_and_the_node_through_metrics_k8s_io() {
    require_root();
    let args = vec!["--housekeeping-interval".to_string(), "500ms".to_string()];
    let (node, control, client) = PodNode::started(51, args).await;
    for (name, script) in [("busy", "while :; do :; done"), ("idle", "exec sleep 3600")] {
        client
            .create("pods", "default", &pod(name, &node.name, script))
            .await
            .unwrap();
    }

    // `top pods` lists both once each has a window, the busy one spinning a core.
    let table = eventually(
        "top pods to list both pods, busy above 100m",
        DEADLINE,
        || async {
            let out = skiffctl(&control, None, &["top", "pods", "-l", LABELS]).await;
            let table = text(&out.stdout);
            let found = rows(&table);
            match (found.get("busy"), found.get("idle")) {
                (Some(busy), Some(_)) if millicores(&busy[1]) > 100 => Ok(table),
                _ => Err(format!("{table}{}", text(&out.stderr))),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", node.log()));
    println!("{table}");
    let found = rows(&table);
    assert_eq!(found["NAME"], ["NAME", "CPU(cores)", "MEMORY(bytes)"]);
    let (busy, idle) = (&found["busy"], &found["idle"]);
    assert!(
        millicores(&busy[1]) > millicores(&idle[1]),
        "busy {busy:?} vs idle {idle:?}"
    );
    assert!(
        busy[2].ends_with("Mi") && idle[2].ends_with("Mi"),
        "{table}"
    );

    // Per container, and sorted by CPU.
    let out = skiffctl(
        &control,
        None,
        &["top", "pods", "--containers", "-l", LABELS],
    )
    .await;
    let containers = text(&out.stdout);
    assert!(out.status.success(), "{containers}{}", text(&out.stderr));
    assert_eq!(
        rows(&containers)["POD"],
        ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    );
    assert_eq!(rows(&containers)["busy"][1], "main");
    let out = skiffctl(&control, None, &["top", "pods", "-A", "--sort-by", "cpu"]).await;
    let sorted = text(&out.stdout);
    let second_line: Vec<&str> = sorted
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(second_line[..2], ["default", "busy"], "{sorted}");

    // The node, with its share of allocatable.
    let out = skiffctl(&control, None, &["top", "nodes"]).await;
    let nodes = text(&out.stdout);
    assert!(out.status.success(), "{nodes}{}", text(&out.stderr));
    println!("{nodes}");
    let found = rows(&nodes);
    assert_eq!(
        found["NAME"],
        ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    );
    let row = &found[&node.name];
    assert!(millicores(&row[1]) > 0, "{nodes}");
    assert!(row[2].ends_with('%') && row[4].ends_with('%'), "{nodes}");
    assert!(row[3].ends_with("Mi"), "{nodes}");

    // The API the CLI reads: the same pods, memory above zero, metrics-server's shape.
    let items = pod_metrics(&client).await.unwrap();
    let mut names: Vec<&str> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["busy", "idle"]);
    for item in &items {
        assert_eq!(item["kind"], "PodMetrics");
        assert_eq!(item["apiVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(item["metadata"]["labels"]["app"], "top-test");
        assert!(item["window"].as_str().unwrap().ends_with('s'), "{item}");
        let (_, memory) = pod_usage(item);
        assert!(memory > 0, "{item}");
    }
    let by_name = |name: &str| {
        pod_usage(
            items
                .iter()
                .find(|i| i["metadata"]["name"] == name)
                .unwrap(),
        )
    };
    assert!(by_name("busy").0 > by_name("idle").0);
    let node_metrics = client
        .get("nodes.metrics.k8s.io", "", &node.name)
        .await
        .unwrap();
    assert_eq!(node_metrics["kind"], "NodeMetrics");
    assert!(
        node_metrics["usage"]["memory"].is_string(),
        "{node_metrics}"
    );
    let missing = client
        .get("pods.metrics.k8s.io", "default", "nope")
        .await
        .unwrap_err();
    assert!(
        missing.api().is_some_and(|e| e.is(Reason::NotFound)),
        "{missing}"
    );

    // A node that does not answer (this one never registered an address) is left out of
    // the list, shown as <unknown> by top, and getting its metrics says why.
    client
        .create(
            "nodes",
            "",
            &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "ghost-node"}}),
        )
        .await
        .unwrap();
    let listed = client
        .list("nodes.metrics.k8s.io", "", &ListParams::default())
        .await
        .unwrap();
    let names: Vec<&str> = listed
        .items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [node.name.as_str()]);
    let out = skiffctl(&control, None, &["top", "nodes"]).await;
    let nodes = text(&out.stdout);
    assert!(out.status.success(), "{nodes}{}", text(&out.stderr));
    assert_eq!(rows(&nodes)["ghost-node"][1..], ["<unknown>"; 4], "{nodes}");
    assert!(millicores(&rows(&nodes)[&node.name][1]) > 0, "{nodes}");
    let ghost = client
        .get("nodes.metrics.k8s.io", "", "ghost-node")
        .await
        .unwrap_err();
    let ghost = ghost.api().expect("an API error");
    assert!(
        ghost.is(Reason::ServiceUnavailable) && ghost.message.contains("\"ghost-node\""),
        "{ghost:?}"
    );

    // The default service account may read pods' metrics in its namespace (like the view
    // role), not the nodes'.
    let token = eventually("the default service account's token", DEADLINE, || async {
        ControlPlane::default_service_account_token(&client)
            .await
            .ok_or_else(|| "no token Secret yet".to_string())
    })
    .await
    .unwrap();
    let denied = skiffctl(&control, Some(&token), &["top", "nodes"]).await;
    assert_eq!(denied.status.code(), Some(1));
    let message = text(&denied.stderr);
    assert!(
        message.contains("Forbidden")
            && message.contains("system:serviceaccount:default:default")
            && message.contains("cannot list resource \"nodes\" in API group \"metrics.k8s.io\""),
        "{message}"
    );
    let viewer = control.client_with_token(&token).unwrap();
    let refused = viewer
        .list("nodes.metrics.k8s.io", "", &ListParams::default())
        .await
        .unwrap_err();
    let refused = refused.api().expect("an API error");
    assert!(refused.is(Reason::Forbidden));
    assert_eq!(refused.reason.http_status(), 403);
    assert_eq!(pod_metrics(&viewer).await.unwrap().len(), 2);
}
