//! Tables built from JSON fixtures shaped like what the API server returns.

use super::*;
use serde_json::json;
use skiff_api::resources::resolve;

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

fn options() -> TableOptions {
    TableOptions {
        wide: false,
        with_namespace: false,
        with_kind: false,
        show_labels: false,
        label_columns: Vec::new(),
        now: now(),
    }
}

fn render(kind: &str, objects: &[Value], options: &TableOptions) -> String {
    table(resolve(kind).unwrap(), objects, options).render(false)
}

fn pod(name: &str, status: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "creationTimestamp": "2024-05-01T11:56:58Z",
            "labels": {"app": "web"},
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": "skiff.local/web:1"}, {"name": "log", "image": "skiff.local/log:1"}]},
        "status": status,
    })
}

fn summary_of(object: &Value) -> pod::PodSummary {
    pod::summarize(&serde_json::from_value(object.clone()).unwrap())
}

#[test]
fn a_pending_pod_shows_its_phase_and_no_ready_containers() {
    let p = pod("web-1", json!({"phase": "Pending"}));
    assert_eq!(
        render("pods", &[p], &options()),
        "NAME    READY   STATUS    RESTARTS   AGE\n\
         web-1   0/2     Pending   0          3m2s\n"
    );
}

#[test]
fn a_running_pod_counts_ready_running_containers() {
    let p = pod(
        "web-1",
        json!({
            "phase": "Running",
            "podIP": "10.1.0.5",
            "containerStatuses": [
                {"name": "web", "ready": true, "restartCount": 0, "image": "", "imageID": "", "state": {"running": {}}},
                {"name": "log", "ready": false, "restartCount": 0, "image": "", "imageID": "", "state": {"running": {}}},
            ],
        }),
    );
    let s = summary_of(&p);
    assert_eq!((s.ready, s.total, s.status.as_str()), (1, 2, "Running"));
}

#[test]
fn a_waiting_reason_such_as_crash_loop_back_off_replaces_the_phase() {
    let p = pod(
        "web-1",
        json!({
            "phase": "Running",
            "containerStatuses": [
                {"name": "web", "ready": false, "restartCount": 4, "image": "", "imageID": "",
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:00Z"}}},
                {"name": "log", "ready": true, "restartCount": 1, "image": "", "imageID": "", "state": {"running": {}}},
            ],
        }),
    );
    let table = render("pods", &[p], &options());
    assert_eq!(
        table.lines().nth(1).unwrap(),
        "web-1   1/2     CrashLoopBackOff   5 (60s ago)   3m2s"
    );
}

#[test]
fn a_terminated_container_without_a_reason_shows_its_exit_code() {
    let p = pod(
        "web-1",
        json!({
            "phase": "Failed",
            "containerStatuses": [
                {"name": "web", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"terminated": {"exitCode": 137}}},
            ],
        }),
    );
    assert_eq!(summary_of(&p).status, "ExitCode:137");
}

#[test]
fn init_containers_show_progress_until_the_pod_is_initialized() {
    let mut p = pod(
        "web-1",
        json!({
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "migrate", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "seed", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"running": {}}},
            ],
        }),
    );
    p["spec"]["initContainers"] = json!([{"name": "migrate"}, {"name": "seed"}]);
    assert_eq!(summary_of(&p).status, "Init:1/2");
    p["status"]["initContainerStatuses"][1]["state"] =
        json!({"waiting": {"reason": "ImagePullBackOff"}});
    assert_eq!(summary_of(&p).status, "Init:ImagePullBackOff");
    p["status"]["initContainerStatuses"][1]["state"] =
        json!({"terminated": {"exitCode": 2, "reason": "Error"}});
    assert_eq!(summary_of(&p).status, "Init:Error");
}

#[test]
fn a_pod_being_deleted_is_terminating_unless_it_already_finished() {
    let mut p = pod("web-1", json!({"phase": "Running"}));
    p["metadata"]["deletionTimestamp"] = json!("2024-05-01T12:00:30Z");
    assert_eq!(summary_of(&p).status, "Terminating");
    p["status"]["phase"] = json!("Succeeded");
    assert_eq!(summary_of(&p).status, "Succeeded");
}

#[test]
fn a_completed_container_beside_a_running_one_reads_as_not_ready() {
    let p = pod(
        "web-1",
        json!({
            "phase": "Running",
            "containerStatuses": [
                {"name": "web", "ready": true, "restartCount": 0, "image": "", "imageID": "", "state": {"running": {}}},
                {"name": "log", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            ],
        }),
    );
    assert_eq!(summary_of(&p).status, "NotReady");
}

#[test]
fn wide_pods_add_ip_and_node_and_all_namespaces_adds_a_namespace_column() {
    let p = pod("web-1", json!({"phase": "Running", "podIP": "10.1.0.5"}));
    let mut opts = options();
    opts.wide = true;
    opts.with_namespace = true;
    let table = render("po", &[p], &opts);
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap(),
        "NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE    IP         NODE     NOMINATED NODE   READINESS GATES"
    );
    assert_eq!(
        lines.next().unwrap(),
        "default     web-1   0/2     Running   0          3m2s   10.1.0.5   node-1   <none>           <none>"
    );
}

#[test]
fn labels_can_be_shown_whole_or_as_columns() {
    let p = pod("web-1", json!({"phase": "Running"}));
    let mut opts = options();
    opts.show_labels = true;
    opts.label_columns = vec!["app.kubernetes.io/app".into(), "app".into()];
    let table = render("pods", &[p], &opts);
    let header = table.lines().next().unwrap();
    assert!(header.ends_with("AGE    APP   APP   LABELS"), "{header}");
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("3m2s         web   app=web")
    );
}

#[test]
fn several_types_prefix_names_with_their_kind() {
    let mut opts = options();
    opts.with_kind = true;
    let table = render("deploy", &[json!({"metadata": {"name": "web"}})], &opts);
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("deployment.apps/web   ")
    );
}

#[test]
fn deployments_show_ready_over_desired_and_their_rollout_counts() {
    let d = json!({
        "metadata": {"name": "web", "creationTimestamp": "2024-04-29T09:00:00Z"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "skiff.local/web:1"}]}},
        },
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    });
    assert_eq!(
        render("deployments", std::slice::from_ref(&d), &options()),
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE\nweb    2/3     3            2           2d3h\n"
    );
    let mut wide = options();
    wide.wide = true;
    assert!(
        render("deployments", &[d], &wide)
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("2d3h   web          skiff.local/web:1   app=web")
    );
}

#[test]
fn a_deployment_without_status_reads_as_nothing_ready() {
    let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2, "selector": {}, "template": {}}});
    assert_eq!(
        render("deploy", &[d], &options()).lines().nth(1).unwrap(),
        "web    0/2     0            0           <unknown>"
    );
}

#[test]
fn services_show_type_addresses_and_ports() {
    let cluster_ip = json!({
        "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                 "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
    });
    let node_port = json!({
        "metadata": {"name": "api", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.11",
                 "ports": [{"port": 443, "nodePort": 30443, "protocol": "TCP"}]},
    });
    let balancer = json!({
        "metadata": {"name": "lb", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.12",
                 "ports": [{"port": 80, "nodePort": 31000, "protocol": "TCP"}]},
    });
    let external = json!({
        "metadata": {"name": "db", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"},
    });
    assert_eq!(
        render(
            "svc",
            &[cluster_ip, node_port, balancer, external],
            &options()
        ),
        "NAME   TYPE           CLUSTER-IP   EXTERNAL-IP      PORT(S)         AGE\n\
         web    ClusterIP      10.96.0.10   <none>           80/TCP,53/UDP   60m\n\
         api    NodePort       10.96.0.11   <none>           443:30443/TCP   60m\n\
         lb     LoadBalancer   10.96.0.12   <pending>        80:31000/TCP    60m\n\
         db     ExternalName   <none>       db.example.com   <none>          60m\n"
    );
}

#[test]
fn a_load_balancer_with_an_address_shows_it() {
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "externalIPs": ["192.0.2.9"]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
    }))
    .unwrap();
    assert_eq!(networking::external_ip(&service), "192.0.2.1,192.0.2.9");
}

#[test]
fn nodes_show_readiness_roles_and_version_and_wide_shows_system_info() {
    let node = json!({
        "metadata": {
            "name": "node-1",
            "creationTimestamp": "2024-04-01T12:00:00Z",
            "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"},
        },
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
            "nodeInfo": {
                "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "containerd://1.6.20",
                "kernelVersion": "6.18.0", "kubeProxyVersion": "", "kubeletVersion": "skiff-0.1.0",
                "machineID": "", "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12", "systemUUID": "",
            },
        },
    });
    assert_eq!(
        render("nodes", std::slice::from_ref(&node), &options()),
        "NAME     STATUS                     ROLES                  AGE   VERSION\n\
         node-1   Ready,SchedulingDisabled   control-plane,worker   30d   skiff-0.1.0\n"
    );
    let mut wide = options();
    wide.wide = true;
    let line = render("no", &[node], &wide);
    assert!(
        line.lines().nth(1).unwrap().ends_with(
            "10.0.0.1      <none>        Debian GNU/Linux 12   6.18.0           containerd://1.6.20"
        ),
        "{line}"
    );
}

#[test]
fn a_node_without_a_ready_condition_is_unknown_and_one_not_ready_says_so() {
    let mut node: Node = serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap();
    assert_eq!(node::status(&node), "Unknown");
    node = serde_json::from_value(json!({
        "metadata": {"name": "n"},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
    }))
    .unwrap();
    assert_eq!(node::status(&node), "NotReady");
}

#[test]
fn events_have_no_name_column_and_name_their_object() {
    let event = json!({
        "metadata": {"name": "web-1.17a", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-1"},
        "type": "Warning",
        "reason": "BackOff",
        "message": "Back-off restarting failed container\n",
        "lastTimestamp": "2024-05-01T11:59:30Z",
        "count": 3,
    });
    assert_eq!(
        render("events", &[event], &options()),
        "LAST SEEN   TYPE      REASON    OBJECT      MESSAGE\n\
         30s         Warning   BackOff   pod/web-1   Back-off restarting failed container\n"
    );
}

#[test]
fn jobs_show_status_completions_and_duration() {
    let job = json!({
        "metadata": {"name": "migrate", "creationTimestamp": "2024-05-01T11:50:00Z"},
        "spec": {"completions": 3, "template": {}},
        "status": {
            "succeeded": 3,
            "startTime": "2024-05-01T11:50:00Z",
            "completionTime": "2024-05-01T11:50:42Z",
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    });
    assert_eq!(
        render("jobs", &[job], &options()),
        "NAME      STATUS     COMPLETIONS   DURATION   AGE\nmigrate   Complete   3/3           42s        10m\n"
    );
}

#[test]
fn config_maps_and_secrets_count_entries_and_never_show_values() {
    let cm = json!({"metadata": {"name": "settings"}, "data": {"a": "1", "b": "2"}});
    let secret =
        json!({"metadata": {"name": "token"}, "type": "Opaque", "data": {"t": "c2VjcmV0"}});
    assert!(render("cm", &[cm], &options()).contains("settings   2      <unknown>"));
    let text = render("secrets", &[secret], &options());
    assert!(text.contains("token   Opaque   1      <unknown>"), "{text}");
    assert!(!text.contains("c2VjcmV0"));
}

#[test]
fn endpoint_slices_show_three_addresses_then_how_many_more() {
    let slice = json!({
        "metadata": {"name": "web-abc"},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [
            {"addresses": ["10.1.0.1"]}, {"addresses": ["10.1.0.2"]},
            {"addresses": ["10.1.0.3"]}, {"addresses": ["10.1.0.4"]},
        ],
    });
    assert!(
        render("endpointslices", &[slice], &options())
            .contains("web-abc   IPv4          8080    10.1.0.1,10.1.0.2,10.1.0.3 + 1 more...")
    );
}

#[test]
fn selectors_print_in_kubectl_syntax() {
    let selector: LabelSelector = serde_json::from_value(json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }))
    .unwrap();
    assert_eq!(
        format_label_selector(Some(&selector)),
        "app=web,tier in (a,b),!legacy"
    );
    assert_eq!(format_label_selector(None), "<none>");
}
