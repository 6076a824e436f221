//! `skiff-control`'s `/metrics`: the upstream metric names move with real requests and
//! scheduling, and `promtool check metrics` accepts the exposition.

use std::time::Duration;

use serde_json::json;
use skiff_tests::{
    control::{Backend, ControlPlane},
    metrics::{promtool_check, sample, scrape},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_metrics_count_requests_and_scheduling_attempts_and_pass_promtool() {
    let control = tokio::task::spawn_blocking(|| ControlPlane::start(Backend::Embedded))
        .await
        .unwrap()
        .unwrap();
    let client = control.admin_client().unwrap();
    client
        .create(
            "nodes",
            "",
            &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "hollow"},
                "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "10"},
                    "conditions": [{"type": "Ready", "status": "True"}]}}),
        )
        .await
        .unwrap();
    for i in 0..3 {
        client
            .create(
                "pods",
                "default",
                &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("p{i}")},
                    "spec": {"containers": [{"name": "c", "image": "skiff.local/demo:1.0"}]}}),
            )
            .await
            .unwrap();
    }
    // One create that fails validation: counted with kube-apiserver's code for Invalid.
    let invalid = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"},
        "spec": {"containers": []}});
    assert!(client.create("pods", "default", &invalid).await.is_err());

    let address = control.metrics_address();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = tokio::task::spawn_blocking(move || scrape(address))
            .await
            .unwrap()
            .unwrap();
        let scheduled = sample(
            &text,
            "scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"scheduled\"}",
        );
        let bound = sample(
            &text,
            "apiserver_request_total{code=\"201\",group=\"\",resource=\"pods\",subresource=\"binding\",verb=\"CREATE\",version=\"v1\"}",
        );
        // Attempts are counted when the decision is made, bindings when the (background)
        // bind is answered.
        if scheduled == Some(3.0) && bound == Some(3.0) {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "three pods were never counted as scheduled and bound:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let creates = sample(
        &text,
        "apiserver_request_total{code=\"201\",group=\"\",resource=\"pods\",subresource=\"\",verb=\"CREATE\",version=\"v1\"}",
    );
    assert_eq!(creates, Some(3.0), "{text}");
    let invalid = sample(
        &text,
        "apiserver_request_total{code=\"422\",group=\"\",resource=\"pods\",subresource=\"\",verb=\"CREATE\",version=\"v1\"}",
    );
    assert_eq!(invalid, Some(1.0), "{text}");
    let bindings = sample(
        &text,
        "apiserver_request_total{code=\"201\",group=\"\",resource=\"pods\",subresource=\"binding\",verb=\"CREATE\",version=\"v1\"}",
    );
    assert_eq!(bindings, Some(3.0), "{text}");
    assert!(text.contains("apiserver_request_duration_seconds_bucket{"));
    assert!(text.contains("scheduler_pending_pods{queue=\"active\"}"));
    promtool_check(&text).unwrap();
}
