//! The stages the API server runs on a write before it stores the object: decode the JSON
//! into the kind's typed struct, place it in its namespace, fill in defaults and what the
//! server owns on create (a new pod is `Pending`), validate it, and encode it back. These
//! functions are the seam between the `api` crate and the control plane.
//!
//! What they leave to the caller: `metadata.uid`, `creationTimestamp`, `resourceVersion`,
//! `generation`, a name drawn from `generateName` ([`crate::defaults::generate_name`]), a
//! Job's generated selector once it has a uid
//! ([`crate::defaults::workloads::generate_job_selector`]), cluster IPs and node ports
//! (allocators), and admission (quotas, service account tokens).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{NamespaceSpec, NamespaceStatus, PodStatus};
use serde_json::Value;

use crate::defaults::workloads::{JOB_CONTROLLER_UID_LABEL, JOB_NAME_LABEL};
use crate::defaults::{self, service::carry_over_allocations};
use crate::object::Object;
use crate::resources::ResourceType;
use crate::validation::{self, FieldError, Path, ValidationErrors, pod::qos_class};

/// The finalizer that holds a Namespace until its contents are deleted.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

/// Prepares a new object for storage, as the API server does on create: decode, put it in
/// `namespace` (the request's; `None` means `default` for namespaced kinds), set what the
/// server owns on create (status, a Namespace's finalizer), apply defaults, validate.
/// Returns the object to store, as JSON with `apiVersion` and `kind`.
///
/// # Errors
/// Every problem found, each with its field path: a field of the wrong type
/// (`spec.replicas: Invalid value: "abc": expected int32`, decoding stops there), a
/// namespace other than the request's, or the validation errors of the defaulted object.
pub fn prepare_create(
    resource: &ResourceType,
    namespace: Option<&str>,
    value: Value,
) -> Result<Value, ValidationErrors> {
    prepare_create_object(resource, namespace, &value)?.encode()
}

/// [`prepare_create`], returning the typed object.
///
/// # Errors
/// As [`prepare_create`].
pub fn prepare_create_object(
    resource: &ResourceType,
    namespace: Option<&str>,
    value: &Value,
) -> Result<Object, ValidationErrors> {
    let mut object = Object::decode(resource, value)?;
    defaults::set_namespace(&mut object, namespace)?;
    defaults::apply_defaults(&mut object);
    prepare_for_create(&mut object);
    validation::validate(&object)?;
    Ok(object)
}

/// What the server sets on create whatever the client sent (Kubernetes' `PrepareForCreate`):
/// the status of kinds with a status subresource starts empty (a pod `Pending` with its QoS
/// class; a Namespace `Active`; a Node keeps what its agent reports), and a Namespace gets
/// the `kubernetes` finalizer.
pub fn prepare_for_create(object: &mut Object) {
    match object {
        Object::Pod(pod) => {
            let qos = pod.spec.as_ref().map_or("BestEffort", qos_class);
            pod.status = Some(PodStatus {
                phase: Some("Pending".to_owned()),
                qos_class: Some(qos.to_owned()),
                ..Default::default()
            });
        }
        Object::Namespace(ns) => {
            let finalizers = ns
                .spec
                .get_or_insert_with(NamespaceSpec::default)
                .finalizers
                .get_or_insert_with(Vec::new);
            if !finalizers.iter().any(|f| f == NAMESPACE_FINALIZER) {
                finalizers.push(NAMESPACE_FINALIZER.to_owned());
            }
            ns.status = Some(NamespaceStatus {
                phase: Some("Active".to_owned()),
                conditions: None,
            });
        }
        Object::Service(svc) => svc.status = None,
        Object::Deployment(d) => d.status = None,
        Object::ReplicaSet(rs) => rs.status = None,
        Object::DaemonSet(ds) => ds.status = None,
        Object::Job(job) => job.status = None,
        _ => {}
    }
}

/// Prepares an update for storage, as the API server does on update: decode both, keep the
/// stored namespace when the new object names none, keep the stored status (it changes only
/// through [`prepare_status_update`]), a Namespace's finalizers and a Service's allocated
/// cluster IP and node ports when the new object leaves them out, apply defaults, validate
/// the new object and what may not change.
///
/// # Errors
/// Every problem found, with field paths; a stored object that no longer decodes is an
/// internal error.
pub fn prepare_update(
    resource: &ResourceType,
    old: &Value,
    new: Value,
) -> Result<Value, ValidationErrors> {
    prepare_update_object(resource, old, &new)?.encode()
}

/// [`prepare_update`], returning the typed object.
///
/// # Errors
/// As [`prepare_update`].
pub fn prepare_update_object(
    resource: &ResourceType,
    old: &Value,
    new: &Value,
) -> Result<Object, ValidationErrors> {
    let old = decode_stored(resource, old)?;
    let mut new = Object::decode(resource, new)?;
    defaults::set_namespace(&mut new, old.namespace())?;
    prepare_for_update(&old, &mut new);
    defaults::apply_defaults(&mut new);
    validation::validate_update(&old, &new)?;
    Ok(new)
}

fn decode_stored(resource: &ResourceType, value: &Value) -> Result<Object, ValidationErrors> {
    Object::decode(resource, value).map_err(|errors| {
        ValidationErrors::from(FieldError::internal(
            &Path::root(),
            format!("the stored object does not decode: {errors}"),
        ))
    })
}

/// Kubernetes' `PrepareForUpdate`: the status of kinds with a status subresource, a
/// Namespace's finalizers and a Service's allocations come from the stored object.
pub fn prepare_for_update(old: &Object, new: &mut Object) {
    match (old, new) {
        (Object::Pod(old), Object::Pod(new)) => new.status.clone_from(&old.status),
        (Object::Namespace(old), Object::Namespace(new)) => {
            new.status.clone_from(&old.status);
            let finalizers = old.spec.as_ref().and_then(|s| s.finalizers.clone());
            new.spec
                .get_or_insert_with(NamespaceSpec::default)
                .finalizers = finalizers;
        }
        (Object::Service(old), Object::Service(new)) => {
            new.status.clone_from(&old.status);
            carry_over_allocations(old, new);
        }
        (Object::Node(old), Object::Node(new)) => new.status.clone_from(&old.status),
        (Object::Deployment(old), Object::Deployment(new)) => new.status.clone_from(&old.status),
        (Object::ReplicaSet(old), Object::ReplicaSet(new)) => new.status.clone_from(&old.status),
        (Object::DaemonSet(old), Object::DaemonSet(new)) => new.status.clone_from(&old.status),
        (Object::Job(old), Object::Job(new)) => {
            new.status.clone_from(&old.status);
            carry_over_job_selector(old, new);
        }
        _ => {}
    }
}

/// A Job's selector and the labels it selects are generated by the API server: an update
/// that leaves them out keeps the stored ones.
fn carry_over_job_selector(old: &Job, new: &mut Job) {
    let (Some(old_spec), Some(new_spec)) = (old.spec.as_ref(), new.spec.as_mut()) else {
        return;
    };
    if new_spec.selector.is_some() || new_spec.manual_selector == Some(true) {
        return;
    }
    new_spec.selector.clone_from(&old_spec.selector);
    let old_labels = old_spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    let generated = old_labels.into_iter().flatten().filter(|(key, _)| {
        [
            JOB_CONTROLLER_UID_LABEL,
            JOB_NAME_LABEL,
            "controller-uid",
            "job-name",
        ]
        .contains(&key.as_str())
    });
    for (key, value) in generated {
        new_spec
            .template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .entry(key.clone())
            .or_insert_with(|| value.clone());
    }
}

/// Prepares a write to the `status` subresource: the stored object with only its `status`
/// taken from `new` (spec and metadata changes are ignored, as Kubernetes ignores them).
///
/// # Errors
/// A kind without a status subresource (`status: Forbidden: ...`), a `new` that does not
/// decode, or a resulting object that is not valid.
pub fn prepare_status_update(
    resource: &ResourceType,
    old: &Value,
    new: &Value,
) -> Result<Value, ValidationErrors> {
    if !resource.has_status {
        return Err(FieldError::forbidden(
            &Path::new("status"),
            format!("{} have no status subresource", resource.group_resource()),
        )
        .into());
    }
    let stored = decode_stored(resource, old)?;
    let mut merged = stored.encode()?;
    // Decoding `new` first reports its type errors at their paths.
    let new_status = Object::decode(resource, new)?
        .encode()?
        .get("status")
        .cloned();
    if let Some(fields) = merged.as_object_mut() {
        match new_status {
            Some(status) => fields.insert("status".to_owned(), status),
            None => fields.remove("status"),
        };
    }
    let updated = Object::decode(resource, &merged)?;
    validation::validate_update(&stored, &updated)?;
    updated.encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_objects;
    use crate::resources::{self, ResourceId};
    use proptest::prelude::*;
    use serde_json::json;

    fn kind(id: ResourceId) -> &'static ResourceType {
        resources::get(id)
    }

    const SHOP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app.kubernetes.io/name: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports:
            - name: http
              containerPort: 80
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
          resources:
            requests:
              cpu: 100m
              memory: 128Mi
            limits:
              cpu: 1
              memory: 256Mi
          volumeMounts:
            - name: cache
              mountPath: /var/cache/nginx
      volumes:
        - name: cache
          emptyDir: {}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  type: NodePort
  selector:
    app: web
  ports:
    - name: http
      port: 80
      targetPort: http
"#;

    #[test]
    fn realistic_manifest_parses_defaults_and_validates_clean() {
        let objects = parse_objects(SHOP).expect("the manifest parses");
        let stored: Vec<Value> = objects
            .iter()
            .map(|o| {
                prepare_create(o.resource, o.target_namespace("default"), o.value.clone())
                    .unwrap_or_else(|e| panic!("{} is invalid: {e}", o.resource.kind))
            })
            .collect();
        let namespace = &stored[0];
        assert_eq!(namespace["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(namespace["status"]["phase"], "Active");
        assert_eq!(
            namespace["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "shop"
        );
        let deployment = &stored[1];
        assert_eq!(
            deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
            "25%"
        );
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            container["env"][0]["valueFrom"]["fieldRef"]["apiVersion"],
            "v1"
        );
        assert_eq!(container["readinessProbe"]["periodSeconds"], 10);
        let service = &stored[2];
        assert_eq!(service["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(service["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    }

    #[test]
    fn create_puts_namespaced_objects_in_the_request_namespace() {
        let stored = prepare_create(
            kind(ResourceId::ConfigMap),
            Some("shop"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}),
        )
        .expect("valid");
        assert_eq!(stored["metadata"]["namespace"], "shop");
        let stored = prepare_create(
            kind(ResourceId::ConfigMap),
            None,
            json!({"metadata": {"name": "settings"}}),
        )
        .expect("valid");
        assert_eq!(stored["metadata"]["namespace"], "default");
        assert_eq!(stored["kind"], "ConfigMap");
    }

    #[test]
    fn create_reports_all_errors_with_paths() {
        let error = prepare_create(
            kind(ResourceId::Deployment),
            None,
            json!({"metadata": {"name": "Bad_Name"},
                   "spec": {"selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "db"}},
                                         "spec": {"containers": [{"name": "web"}]}}}}),
        )
        .expect_err("invalid");
        let paths: Vec<&str> = error.errors().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "metadata.name",
                "spec.template.metadata.labels",
                "spec.template.spec.containers[0].image"
            ]
        );
    }

    #[test]
    fn create_reports_a_decode_error_at_its_path() {
        let error = prepare_create(
            kind(ResourceId::Deployment),
            None,
            json!({"metadata": {"name": "web"}, "spec": {"replicas": "abc"}}),
        )
        .expect_err("not a number");
        assert_eq!(
            error.to_string(),
            r#"spec.replicas: Invalid value: "abc": expected int32"#
        );
    }

    #[test]
    fn created_pod_is_pending_with_its_qos_class_whatever_status_was_sent() {
        let stored = prepare_create(
            kind(ResourceId::Pod),
            Some("default"),
            json!({"metadata": {"name": "p"},
                   "spec": {"containers": [{"name": "c", "image": "busybox",
                            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]},
                   "status": {"phase": "Running"}}),
        )
        .expect("valid");
        assert_eq!(
            stored["status"],
            json!({"phase": "Pending", "qosClass": "Guaranteed"})
        );
        assert_eq!(stored["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(stored["spec"]["enableServiceLinks"], true);
    }

    #[test]
    fn update_keeps_status_and_validates_immutable_fields() {
        let deployments = kind(ResourceId::Deployment);
        let manifest = json!({"metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}});
        let mut old = prepare_create(deployments, None, manifest.clone()).expect("valid");
        old["status"] = json!({"replicas": 1});
        let mut scaled = manifest.clone();
        scaled["spec"]["replicas"] = json!(4);
        scaled["status"] = json!({"replicas": 99});
        let updated = prepare_update(deployments, &old, scaled).expect("scaling is allowed");
        assert_eq!(updated["spec"]["replicas"], 4);
        assert_eq!(updated["status"], json!({"replicas": 1}));
        assert_eq!(updated["metadata"]["namespace"], "default");

        let mut moved = manifest;
        moved["spec"]["selector"]["matchLabels"]["app"] = json!("api");
        moved["spec"]["template"]["metadata"]["labels"]["app"] = json!("api");
        let error = prepare_update(deployments, &old, moved).expect_err("selector is immutable");
        assert_eq!(error.errors()[0].path, "spec.selector");
        assert!(error.to_string().ends_with("field is immutable"));
    }

    #[test]
    fn update_of_a_pod_spec_is_forbidden_but_an_image_change_is_not() {
        let pods = kind(ResourceId::Pod);
        let manifest = json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}});
        let old = prepare_create(pods, None, manifest.clone()).expect("valid");
        let mut new_image = manifest.clone();
        new_image["spec"]["containers"][0]["image"] = json!("busybox:2");
        assert!(prepare_update(pods, &old, new_image).is_ok());
        let mut new_command = manifest;
        new_command["spec"]["containers"][0]["command"] = json!(["sh"]);
        let error = prepare_update(pods, &old, new_command).expect_err("forbidden");
        assert!(
            error
                .to_string()
                .starts_with("spec: Forbidden: pod updates may not change fields")
        );
    }

    #[test]
    fn update_that_omits_the_cluster_ip_keeps_it() {
        let services = kind(ResourceId::Service);
        let manifest = json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}});
        let mut allocated = manifest.clone();
        allocated["spec"]["clusterIP"] = json!("10.96.0.20");
        let old = prepare_create(services, None, allocated).expect("valid");
        let updated = prepare_update(services, &old, manifest).expect("valid");
        assert_eq!(updated["spec"]["clusterIP"], "10.96.0.20");
        let mut changed = old.clone();
        changed["spec"]["clusterIP"] = json!("10.96.0.21");
        changed["spec"]["clusterIPs"] = json!(["10.96.0.21"]);
        let error = prepare_update(services, &old, changed).expect_err("immutable");
        assert_eq!(
            error.to_string(),
            r#"spec.clusterIP: Invalid value: "10.96.0.21": field is immutable"#
        );
    }

    #[test]
    fn job_update_that_omits_the_generated_selector_keeps_it() {
        let jobs = kind(ResourceId::Job);
        let manifest = json!({"metadata": {"name": "pi"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl:5"}]}}}});
        let created = prepare_create_object(jobs, None, &manifest).expect("valid");
        let Object::Job(mut job) = created else {
            panic!("a Job decodes as a Job");
        };
        defaults::workloads::generate_job_selector(&mut job, "uid-1");
        let stored = Object::Job(job).encode().expect("encodes");
        let mut suspended = manifest;
        suspended["spec"]["suspend"] = json!(true);
        let updated = prepare_update(jobs, &stored, suspended).expect("suspending is allowed");
        assert_eq!(updated["spec"]["selector"], stored["spec"]["selector"]);
        assert_eq!(updated["spec"]["suspend"], true);
    }

    #[test]
    fn namespace_update_keeps_its_finalizers() {
        let namespaces = kind(ResourceId::Namespace);
        let old =
            prepare_create(namespaces, None, json!({"metadata": {"name": "shop"}})).expect("valid");
        let updated = prepare_update(
            namespaces,
            &old,
            json!({"metadata": {"name": "shop", "labels": {"team": "a"}}, "spec": {"finalizers": []}}),
        )
        .expect("valid");
        assert_eq!(updated["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(updated["metadata"]["labels"]["team"], "a");
    }

    #[test]
    fn status_update_changes_only_the_status() {
        let deployments = kind(ResourceId::Deployment);
        let manifest = json!({"metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}});
        let old = prepare_create(deployments, None, manifest.clone()).expect("valid");
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(7);
        new["status"] = json!({"readyReplicas": 1});
        let updated = prepare_status_update(deployments, &old, &new).expect("valid");
        assert_eq!(updated["spec"]["replicas"], 1);
        assert_eq!(updated["status"]["readyReplicas"], 1);

        let config_maps = kind(ResourceId::ConfigMap);
        let error =
            prepare_status_update(config_maps, &json!({}), &json!({})).expect_err("no status");
        assert_eq!(
            error.to_string(),
            "status: Forbidden: configmaps have no status subresource"
        );
    }

    #[test]
    fn update_may_not_rename_or_move_an_object() {
        let config_maps = kind(ResourceId::ConfigMap);
        let old = prepare_create(config_maps, Some("a"), json!({"metadata": {"name": "x"}}))
            .expect("valid");
        let error = prepare_update(config_maps, &old, json!({"metadata": {"name": "y"}}))
            .expect_err("rename");
        assert_eq!(
            error.to_string(),
            r#"metadata.name: Invalid value: "y": field is immutable"#
        );
        let error = prepare_update(
            config_maps,
            &old,
            json!({"metadata": {"name": "x", "namespace": "b"}}),
        )
        .expect_err("move");
        assert!(
            error
                .to_string()
                .starts_with("metadata.namespace: Invalid value: \"b\"")
        );
    }

    #[test]
    fn every_kind_accepts_a_minimal_valid_object() {
        let minimal = [
            (ResourceId::Namespace, json!({"metadata": {"name": "ns"}})),
            (
                ResourceId::Pod,
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
            ),
            (
                ResourceId::Service,
                json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 53, "protocol": "UDP"}]}}),
            ),
            (
                ResourceId::Node,
                json!({"metadata": {"name": "node-1"}, "spec": {"podCIDR": "10.244.0.0/24"}}),
            ),
            (
                ResourceId::Event,
                json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"}, "type": "Normal"}),
            ),
            (
                ResourceId::ConfigMap,
                json!({"metadata": {"name": "c"}, "data": {"k": "v"}}),
            ),
            (
                ResourceId::Secret,
                json!({"metadata": {"name": "s"}, "stringData": {"password": "x"}}),
            ),
            (
                ResourceId::ServiceAccount,
                json!({"metadata": {"name": "default"}}),
            ),
            (
                ResourceId::ReplicaSet,
                json!({"metadata": {"name": "r"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            ),
            (
                ResourceId::DaemonSet,
                json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            ),
            (
                ResourceId::Job,
                json!({"metadata": {"name": "j"}, "spec": {
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}),
            ),
            (
                ResourceId::EndpointSlice,
                json!({"metadata": {"name": "s"}, "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.0.5"]}], "ports": [{"port": 80}]}),
            ),
            (
                ResourceId::Lease,
                json!({"metadata": {"name": "node-1"}, "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}}),
            ),
            (
                ResourceId::NetworkPolicy,
                json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}}),
            ),
            (
                ResourceId::Role,
                json!({"metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
            ),
            (
                ResourceId::RoleBinding,
                json!({"metadata": {"name": "rb"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                "subjects": [{"kind": "User", "name": "alice"}]}),
            ),
            (
                ResourceId::ClusterRole,
                json!({"metadata": {"name": "system:reader"}, "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]}),
            ),
            (
                ResourceId::ClusterRoleBinding,
                json!({"metadata": {"name": "crb"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}]}),
            ),
            (
                ResourceId::PriorityClass,
                json!({"metadata": {"name": "high"}, "value": 1000}),
            ),
        ];
        for (id, value) in minimal {
            let resource = kind(id);
            prepare_create(resource, None, value)
                .unwrap_or_else(|e| panic!("{}: {e}", resource.kind));
        }
        let deployment = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        assert!(prepare_create(kind(ResourceId::Deployment), None, deployment).is_ok());
    }

    /// JSON shaped like API objects: keys drawn from real field names, so that random
    /// values reach deep into specs.
    fn object_like_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            "[a-zA-Z0-9:/._%-]{0,10}".prop_map(Value::from),
        ];
        let key = prop::sample::select(vec![
            "apiVersion",
            "kind",
            "metadata",
            "name",
            "namespace",
            "labels",
            "generateName",
            "spec",
            "status",
            "containers",
            "initContainers",
            "image",
            "ports",
            "port",
            "containerPort",
            "targetPort",
            "nodePort",
            "protocol",
            "replicas",
            "selector",
            "matchLabels",
            "matchExpressions",
            "operator",
            "values",
            "key",
            "template",
            "resources",
            "limits",
            "requests",
            "cpu",
            "memory",
            "volumes",
            "volumeMounts",
            "emptyDir",
            "livenessProbe",
            "httpGet",
            "type",
            "clusterIP",
            "data",
            "value",
            "strategy",
            "rollingUpdate",
            "maxSurge",
            "maxUnavailable",
            "endpoints",
            "addresses",
            "addressType",
            "rules",
            "verbs",
            "roleRef",
            "subjects",
            "ingress",
            "from",
            "ipBlock",
            "cidr",
            "except",
            "podSelector",
            "tolerations",
            "env",
        ]);
        leaf.prop_recursive(5, 96, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn preparing_arbitrary_json_never_panics(old in object_like_json(), new in object_like_json()) {
            for resource in resources::RESOURCES {
                let _ = prepare_create(resource, Some("default"), new.clone());
                let _ = prepare_update(resource, &old, new.clone());
                let _ = prepare_status_update(resource, &old, &new);
            }
        }

        #[test]
        fn valid_objects_stay_valid_when_prepared_again(replicas in 0i32..100, port in 1i32..65536) {
            let deployment = json!({"metadata": {"name": "web"}, "spec": {"replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                    {"name": "web", "image": "nginx:1", "ports": [{"containerPort": port}]}]}}}});
            let resource = kind(ResourceId::Deployment);
            let stored = prepare_create(resource, None, deployment).expect("valid");
            let again = prepare_update(resource, &stored, stored.clone()).expect("still valid");
            prop_assert_eq!(again, stored);
        }
    }

    #[test]
    fn cluster_scoped_object_with_a_namespace_is_rejected() {
        let error = prepare_create(
            kind(ResourceId::Node),
            None,
            json!({"metadata": {"name": "n", "namespace": "default"}}),
        )
        .expect_err("namespace on a node");
        assert_eq!(
            error.to_string(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );
    }
}
