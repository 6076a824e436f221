//! End-to-end tests of `skiffctl` against a real `skiff-control`: a multi-document manifest
//! applied, read back as YAML and JSON, a watch that sees a change, a stale write refused,
//! precise errors for bad manifests that change nothing, and deletion.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;
use skiff_tests::{
    control::{Backend, ControlPlane},
    process::{ChildGuard, workspace_binary},
};

const MANIFEST: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: skiff.local/demo:1.0
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

struct Ctl {
    control: ControlPlane,
    dir: tempfile::TempDir,
}

impl Ctl {
    fn start(backend: Backend) -> Self {
        Self {
            control: ControlPlane::start(backend).expect("skiff-control starts"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(workspace_binary("skiffctl"));
        command
            .args(args)
            .env("SKIFFCONFIG", self.control.admin_config_path())
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run skiffctl")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "skiffctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and expects failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "skiffctl {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }
}

fn round_trip(backend: Backend) {
    let ctl = Ctl::start(backend);
    let manifest = ctl.write("shop.yaml", MANIFEST);
    let applied = ctl.ok(&["apply", "-f", &manifest]);
    assert!(applied.contains("namespace/shop created"), "{applied}");
    assert!(applied.contains("deployment.apps/web created"), "{applied}");
    assert!(applied.contains("service/web created"), "{applied}");
    assert!(
        ctl.ok(&["apply", "-f", &manifest])
            .contains("deployment.apps/web unchanged")
    );

    let yaml: Value =
        serde_yaml::from_str(&ctl.ok(&["get", "deploy", "web", "-n", "shop", "-o", "yaml"]))
            .unwrap();
    assert_eq!(yaml["spec"]["replicas"], 2);
    let json: Value =
        serde_json::from_str(&ctl.ok(&["get", "svc", "web", "-n", "shop", "-o", "json"])).unwrap();
    assert_eq!(json["spec"]["type"], "NodePort");
    assert!(
        json["spec"]["ports"][0]["nodePort"]
            .as_i64()
            .is_some_and(|p| (30000..=32767).contains(&p))
    );
    let table = ctl.ok(&["get", "svc", "-n", "shop"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("NodePort"), "{table}");

    // A watch sees a change made by another apply.
    let mut watch = ChildGuard(
        ctl.command(&[
            "get",
            "deploy",
            "-n",
            "shop",
            "-w",
            "-o",
            "name",
            "--output-watch-events",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let (lines, received) = mpsc::channel();
    let stdout = watch.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let first = received
        .recv_timeout(Duration::from_secs(20))
        .expect("the watch lists first");
    assert!(first.contains("deployment.apps/web"), "{first}");
    let scaled = ctl.write(
        "scaled.yaml",
        &MANIFEST.replace("replicas: 2", "replicas: 3"),
    );
    assert!(
        ctl.ok(&["apply", "-f", &scaled])
            .contains("deployment.apps/web configured")
    );
    let change = received
        .recv_timeout(Duration::from_secs(20))
        .expect("the watch sees the change");
    assert!(
        change.contains("MODIFIED") && change.contains("deployment.apps/web"),
        "{change}"
    );
    watch.kill();

    // A manifest carrying an old resourceVersion is a stale write: Conflict, nothing changes.
    let stale_rv = yaml["metadata"]["resourceVersion"].as_str().unwrap();
    let stale = ctl.write(
        "stale.yaml",
        &MANIFEST
            .split("---")
            .nth(1)
            .unwrap()
            .replace(
                "  namespace: shop\n",
                &format!("  namespace: shop\n  resourceVersion: \"{stale_rv}\"\n"),
            )
            .replace("replicas: 2", "replicas: 9"),
    );
    let conflict = ctl.fails(&["apply", "-f", &stale]);
    assert!(
        conflict.contains("Conflict") && conflict.contains("the object has been modified"),
        "{conflict}"
    );
    let now: Value =
        serde_json::from_str(&ctl.ok(&["get", "deploy", "web", "-n", "shop", "-o", "json"]))
            .unwrap();
    assert_eq!(now["spec"]["replicas"], 3);

    let deleted = ctl.ok(&["delete", "-f", &manifest]);
    assert!(
        deleted.contains("deployment.apps \"web\" deleted"),
        "{deleted}"
    );
    let gone = ctl.fails(&["get", "deploy", "web", "-n", "shop"]);
    assert!(
        gone.contains("NotFound") && gone.contains("\"web\" not found"),
        "{gone}"
    );
}

#[test]
fn skiffctl_applies_reads_watches_and_deletes_on_the_embedded_store() {
    round_trip(Backend::Embedded);
}

#[test]
fn skiffctl_applies_reads_watches_and_deletes_on_etcd() {
    round_trip(Backend::Etcd);
}

#[test]
fn skiffctl_reports_each_bad_manifest_precisely_and_applies_none_of_it() {
    let ctl = Ctl::start(Backend::Embedded);
    let cases = [
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c}]\n",
            "spec.containers[0].image: Required value",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n",
            "metadata.name: Invalid value: \"Bad_Name\"",
        ),
        (
            "apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n",
            "Widget",
        ),
        (
            "apiVersion: apps/v2\nkind: Deployment\nmetadata: {name: d}\n",
            "apps/v2",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n",
            "malformed YAML",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = ctl.write(&format!("bad-{i}.yaml"), text);
        let error = ctl.fails(&["apply", "-f", &file]);
        assert!(
            error.contains(expected),
            "case {i}: expected {expected:?} in {error:?}"
        );
        assert_eq!(
            error.trim().lines().count(),
            1,
            "one readable line: {error}"
        );
    }
    // Nothing was created by any of them.
    let pods = ctl.run(&["get", "pods", "-A", "-o", "name"]);
    assert!(String::from_utf8_lossy(&pods.stdout).trim().is_empty());
    let configmaps = ctl.run(&["get", "cm", "-A", "-o", "name"]);
    assert!(
        String::from_utf8_lossy(&configmaps.stdout)
            .trim()
            .is_empty()
    );

    // Without a token, nothing is allowed.
    let mut config: Value =
        serde_yaml::from_str(&std::fs::read_to_string(ctl.control.admin_config_path()).unwrap())
            .unwrap();
    config["token"] = Value::String(String::new());
    let anonymous = ctl.write("anonymous.yaml", &serde_yaml::to_string(&config).unwrap());
    let mut command = Command::new(workspace_binary("skiffctl"));
    let out = command
        .args(["--config", &anonymous, "get", "ns"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
