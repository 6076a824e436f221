//! Generic object storage: what the API server does for every resource type between
//! decoding a request and the store (Kubernetes' generic registry and its strategies).
//!
//! It owns the server-side metadata (uid, creationTimestamp, generation, resourceVersion),
//! keeps spec and status writers apart (status is a subresource), turns stale writes into
//! Conflicts, and implements graceful and finalizer-aware deletion.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use skiff_api::{
    ValidationErrors, prepare_create, prepare_status_update, prepare_update,
    resources::ResourceType,
    selector::{FieldSelector, LabelSelector},
    status::{ApiError, Cause, Reason},
};

use super::{
    admission::DefaultTolerationSeconds,
    allocation::{Allocated, ServiceAllocator},
    watch_cache::{CacheError, CachedObject, WatchCache},
};
use crate::store::{RangeOptions, Store, StoreError};

/// How many times a patch is retried when the object changes under it.
const PATCH_ATTEMPTS: usize = 5;

/// The options of a delete request.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    /// `Background` (the default), `Foreground` or `Orphan`.
    pub propagation_policy: Option<String>,
    pub precondition_resource_version: Option<String>,
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Bytes>,
    pub resource_version: i64,
    pub continue_token: Option<String>,
    pub remaining: usize,
}

/// Create, read, update, patch and delete for every resource type.
#[derive(Debug, Clone)]
pub struct Objects {
    cache: Arc<WatchCache>,
    services: Option<Arc<ServiceAllocator>>,
    tolerations: DefaultTolerationSeconds,
}

impl Objects {
    pub fn new(cache: Arc<WatchCache>) -> Self {
        Self {
            cache,
            services: None,
            tolerations: DefaultTolerationSeconds::default(),
        }
    }

    /// Sets the tolerations new pods get for not-ready and unreachable nodes.
    pub fn with_default_toleration_seconds(mut self, defaults: DefaultTolerationSeconds) -> Self {
        self.tolerations = defaults;
        self
    }

    /// Hands out ClusterIPs and NodePorts to Services as they are stored.
    pub fn with_service_allocator(mut self, allocator: Arc<ServiceAllocator>) -> Self {
        self.services = Some(allocator);
        self
    }

    /// Takes the addresses and ports `service` needs (keeping `old`'s on an update).
    async fn allocate(
        &self,
        rt: &ResourceType,
        service: &mut Value,
        old: Option<&Value>,
    ) -> Result<Allocated, ApiError> {
        match &self.services {
            Some(allocator) if rt.kind == "Service" => allocator
                .allocate(service, old)
                .await
                .map_err(|(field, error)| {
                    let name = service
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let value = match field.as_str() {
                        "spec.clusterIP" => {
                            service.pointer("/spec/clusterIP").map(|v| v.to_string())
                        }
                        _ => None,
                    };
                    let detail = match value {
                        Some(v) => format!("Invalid value: {v}: {error}"),
                        None => format!("Invalid value: {error}"),
                    };
                    let mut api = ApiError::new(
                        Reason::Invalid,
                        format!("Service \"{name}\" is invalid: {field}: {detail}"),
                    );
                    api.causes.push(Cause {
                        field,
                        reason: "FieldValueInvalid".into(),
                        message: detail,
                    });
                    api
                }),
            _ => Ok(Allocated::default()),
        }
    }

    async fn release(&self, rt: &ResourceType, service: &Value, keep: Option<&Value>) {
        if let Some(allocator) = &self.services
            && rt.kind == "Service"
        {
            allocator.release(service, keep).await;
        }
    }

    async fn release_allocated(&self, allocated: &Allocated) {
        if let Some(allocator) = &self.services {
            allocator.release_allocated(allocated).await;
        }
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.cache.store()
    }

    /// The watch cache, for watches.
    pub fn cache(&self) -> &Arc<WatchCache> {
        &self.cache
    }

    /// Creates `body` in `namespace`; returns the stored object.
    ///
    /// # Errors
    /// Invalid objects (with field causes), a missing or terminating namespace, a name
    /// already taken, or a store failure.
    pub async fn create(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        mut body: Value,
        dry_run: bool,
    ) -> Result<Bytes, ApiError> {
        check_type(rt, &mut body)?;
        let namespace = target_namespace(rt, namespace, &body)?;
        let meta = metadata_mut(&mut body)?;
        if meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
            && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
        {
            let name = format!("{prefix}{}", random_suffix());
            meta.insert("name".into(), Value::String(name));
        }
        for owned in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(owned);
        }
        meta.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        meta.insert("creationTimestamp".into(), Value::String(now()));
        meta.insert("generation".into(), json!(1));
        reset_status_on_create(rt, &mut body);
        if rt.kind == "Pod" {
            self.tolerations.apply(&mut body);
        }

        let display_name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let body = prepare_create(rt, namespace.as_deref(), body)
            .map_err(|e| invalid(rt, &display_name, e))?;
        let name = object_name(&body)?;
        if let Some(ns) = &namespace {
            self.check_namespace_accepts(ns).await?;
        }
        let mut body = body;
        if rt.kind == "Pod" {
            self.resolve_priority(&name, &mut body).await?;
        }
        let key = rt.key(namespace.as_deref(), &name);
        if dry_run {
            let bytes = serde_json::to_vec(&body).map_err(internal)?;
            return Ok(served(&key, &bytes, 0)?.bytes);
        }
        let allocated = self.allocate(rt, &mut body, None).await?;
        let bytes = Bytes::from(serde_json::to_vec(&body).map_err(internal)?);
        let revision = match self.store().create(&key, bytes.clone(), None).await {
            Ok(revision) => revision,
            Err(e) => {
                self.release_allocated(&allocated).await;
                return Err(store_error(rt, &name, e));
            }
        };
        Ok(served(&key, &bytes, revision)?.bytes)
    }

    /// One object, read from the store (a consistent read).
    ///
    /// # Errors
    /// NotFound, or a store failure.
    pub async fn get(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Bytes, ApiError> {
        Ok(self.get_current(rt, namespace, name).await?.bytes)
    }

    async fn get_current(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<CachedObject, ApiError> {
        let key = rt.key(scope(rt, namespace), name);
        let kv = self
            .store()
            .get(&key)
            .await
            .map_err(|e| store_error(rt, name, e))?
            .ok_or_else(|| ApiError::not_found(&rt.group_resource(), name))?;
        served(&key, &kv.value, kv.mod_revision)
    }

    /// A page of objects matching the selectors, from the watch cache (first page) or from
    /// the store at the first page's revision (continued pages).
    ///
    /// # Errors
    /// Bad selectors or continue tokens, an expired continue token, a store failure.
    pub async fn list(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: usize,
        continue_token: &str,
    ) -> Result<ListPage, ApiError> {
        let prefix = rt.prefix(scope(rt, namespace));
        let matches =
            |object: &Value| labels.matches_object(object) && fields.matches_object(object);
        if continue_token.is_empty() {
            let (items, revision, remaining) = self
                .cache
                .list(&prefix, None, limit, |o| matches(&o.value))
                .await
                .map_err(cache_error)?;
            let continue_token = (remaining > 0)
                .then(|| items.last().map(|o| encode_continue(&o.key, revision)))
                .flatten();
            return Ok(ListPage {
                items: items.iter().map(|o| o.bytes.clone()).collect(),
                resource_version: revision,
                continue_token,
                remaining,
            });
        }
        // Later pages are read from the store as of the first page's revision, so the pages
        // together are one consistent snapshot.
        let (start_after, revision) = decode_continue(continue_token, &prefix)?;
        let mut items = Vec::new();
        let mut options = RangeOptions {
            at_revision: Some(revision),
            limit: Some(limit.max(1)),
            start_after: Some(start_after),
        };
        loop {
            let page = self.store().range(&prefix, options.clone()).await.map_err(|e| match e {
                StoreError::Compacted { .. } => ApiError::new(
                    Reason::Expired,
                    "The provided continue parameter is too old to display a consistent list result. \
                     You can start a new list without the continue parameter.",
                ),
                other => store_error(rt, "", other),
            })?;
            for kv in &page.kvs {
                let object = served(&kv.key, &kv.value, kv.mod_revision)?;
                if matches(&object.value) {
                    items.push((kv.key.clone(), object.bytes));
                }
            }
            let last = page.kvs.last().map(|kv| kv.key.clone());
            if items.len() >= limit || !page.more {
                let more = page.more || items.len() > limit;
                items.truncate(limit.max(1));
                let continue_token = more
                    .then(|| items.last().map(|(key, _)| encode_continue(key, revision)))
                    .flatten();
                return Ok(ListPage {
                    items: items.into_iter().map(|(_, b)| b).collect(),
                    resource_version: revision,
                    remaining: 0,
                    continue_token,
                });
            }
            options.start_after = last;
        }
    }

    /// Replaces an object (`subresource` "") or its status (`subresource` "status").
    ///
    /// # Errors
    /// NotFound, Conflict on a stale resourceVersion, Invalid, or a store failure.
    pub async fn update(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        mut body: Value,
        subresource: &str,
        dry_run: bool,
    ) -> Result<Bytes, ApiError> {
        if subresource == "binding" && rt.kind == "Pod" {
            return self.bind(rt, namespace, &body).await;
        }
        check_type(rt, &mut body)?;
        let name = object_name(&body)?;
        if let Some(ns) = body.pointer("/metadata/namespace").and_then(Value::as_str)
            && rt.namespaced()
            && !namespace.is_empty()
            && ns != namespace
        {
            return Err(namespace_mismatch());
        }
        let old = self.get_current(rt, namespace, &name).await?;
        let requested = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|rv| !rv.is_empty())
            .map(str::to_string);
        if let Some(rv) = &requested
            && *rv != old.mod_revision.to_string()
        {
            return Err(ApiError::conflict(&rt.group_resource(), &name));
        }
        let new = match subresource {
            "" => {
                let mut new = body;
                carry_server_metadata(&old.value, &mut new);
                if rt.has_status {
                    match old.value.get("status") {
                        Some(status) => set(&mut new, "status", status.clone()),
                        None => remove(&mut new, "status"),
                    }
                }
                new
            }
            "finalize" if rt.kind == "Namespace" => {
                return self.finalize_namespace(rt, &old, &body).await;
            }
            "status" if rt.has_status => {
                let mut new = old.value.clone();
                set(
                    &mut new,
                    "status",
                    body.get("status").cloned().unwrap_or(Value::Null),
                );
                new
            }
            other => {
                return Err(ApiError::new(
                    Reason::NotFound,
                    format!(
                        "the server could not find the requested resource ({}/{other})",
                        rt.plural
                    ),
                ));
            }
        };
        self.write_update(rt, &old, new, subresource == "status", dry_run)
            .await
    }

    /// Replaces a Namespace's `spec.finalizers` (the `namespaces/finalize` subresource the
    /// namespace controller writes once the namespace is empty); a terminating namespace
    /// left without finalizers is deleted.
    async fn finalize_namespace(
        &self,
        rt: &'static ResourceType,
        old: &CachedObject,
        body: &Value,
    ) -> Result<Bytes, ApiError> {
        let name = object_name(&old.value)?;
        let finalizers = body
            .pointer("/spec/finalizers")
            .cloned()
            .unwrap_or_else(|| json!([]));
        if !finalizers
            .as_array()
            .is_some_and(|list| list.iter().all(Value::is_string))
        {
            return Err(ApiError::bad_request(
                "spec.finalizers: must be a list of finalizer names",
            ));
        }
        let mut new = old.value.clone();
        remove_rv(&mut new);
        match new.get_mut("spec").and_then(Value::as_object_mut) {
            Some(spec) => {
                spec.insert("finalizers".into(), finalizers);
            }
            None => set(&mut new, "spec", json!({ "finalizers": finalizers })),
        }
        if is_finalized(&new) {
            let deleted = self
                .store()
                .delete(&old.key, Some(old.mod_revision))
                .await
                .map_err(|e| store_error(rt, &name, e))?;
            let bytes = serde_json::to_vec(&new).map_err(internal)?;
            return Ok(served(&old.key, &bytes, deleted.revision)?.bytes);
        }
        let bytes = Bytes::from(serde_json::to_vec(&new).map_err(internal)?);
        let revision = self
            .store()
            .update(&old.key, bytes.clone(), Some(old.mod_revision))
            .await
            .map_err(|e| store_error(rt, &name, e))?;
        Ok(served(&old.key, &bytes, revision)?.bytes)
    }

    /// Assigns a pod to a node (the `pods/binding` subresource the scheduler writes): sets
    /// `spec.nodeName` and the PodScheduled condition, once. `body` is a core/v1 Binding.
    async fn bind(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        body: &Value,
    ) -> Result<Bytes, ApiError> {
        let name = object_name(body)?;
        let node = body
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                let mut error = ApiError::new(
                    Reason::Invalid,
                    format!("Binding \"{name}\" is invalid: target.name: Required value"),
                );
                error.causes.push(Cause {
                    field: "target.name".into(),
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                });
                error
            })?;
        // Like Kubernetes' GuaranteedUpdate: a concurrent status write is no reason to fail
        // the binding; re-read and try again while the pod is still unassigned.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let old = self.get_current(rt, namespace, &name).await?;
            let cannot = |why: String| {
                ApiError::new(
                    Reason::Conflict,
                    format!("Operation cannot be fulfilled on pods/binding \"{name}\": {why}"),
                )
            };
            if let Some(assigned) = old
                .value
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(cannot(format!(
                    "pod {name} is already assigned to node \"{assigned}\""
                )));
            }
            if old.value.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(cannot(format!(
                    "pod {name} is being deleted, cannot be assigned to a host"
                )));
            }
            let mut pod = old.value.clone();
            remove_rv(&mut pod);
            if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("nodeName".into(), Value::String(node.to_string()));
            }
            set_condition(
                &mut pod,
                json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}),
            );
            let bytes = Bytes::from(serde_json::to_vec(&pod).map_err(internal)?);
            match self
                .store()
                .update(&old.key, bytes.clone(), Some(old.mod_revision))
                .await
            {
                Ok(revision) => return Ok(served(&old.key, &bytes, revision)?.bytes),
                Err(StoreError::Conflict { .. }) if attempt < PATCH_ATTEMPTS => continue,
                Err(e) => return Err(store_error(rt, &name, e)),
            }
        }
    }

    /// Validates and stores `new` in place of `old` (compare-and-swap on `old`'s revision).
    async fn write_update(
        &self,
        rt: &'static ResourceType,
        old: &CachedObject,
        mut new: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Bytes, ApiError> {
        let name = object_name(&old.value)?;
        let mut old_value = old.value.clone();
        remove_rv(&mut old_value);
        remove_rv(&mut new);
        let mut new = if status_only {
            prepare_status_update(rt, &old_value, &new)
        } else {
            prepare_update(rt, &old_value, new)
        }
        .map_err(|e| invalid(rt, &name, e))?;
        if spec_of(&new) != spec_of(&old_value) {
            let generation = old_value
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            metadata_mut(&mut new)?.insert("generation".into(), json!(generation + 1));
        }
        if new == old_value {
            return Ok(old.bytes.clone());
        }
        if dry_run {
            return Ok(served(
                &old.key,
                &serde_json::to_vec(&new).map_err(internal)?,
                old.mod_revision,
            )?
            .bytes);
        }
        if is_finalized(&new) {
            let deleted = self
                .store()
                .delete(&old.key, Some(old.mod_revision))
                .await
                .map_err(|e| store_error(rt, &name, e))?;
            self.release(rt, &old_value, None).await;
            let bytes = serde_json::to_vec(&new).map_err(internal)?;
            return Ok(served(&old.key, &bytes, deleted.revision)?.bytes);
        }
        let allocated = if status_only {
            Allocated::default()
        } else {
            self.allocate(rt, &mut new, Some(&old_value)).await?
        };
        let bytes = Bytes::from(serde_json::to_vec(&new).map_err(internal)?);
        let revision = match self
            .store()
            .update(&old.key, bytes.clone(), Some(old.mod_revision))
            .await
        {
            Ok(revision) => revision,
            Err(e) => {
                self.release_allocated(&allocated).await;
                return Err(store_error(rt, &name, e));
            }
        };
        self.release(rt, &old_value, Some(&new)).await;
        Ok(served(&old.key, &bytes, revision)?.bytes)
    }

    /// Applies a JSON merge patch (RFC 7386) to an object or its status, retrying when the
    /// object changes under it (unless the patch itself names a resourceVersion).
    ///
    /// # Errors
    /// As for [`Objects::update`], and BadRequest for a patch that is not a JSON object.
    pub async fn patch(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        patch: &Value,
        subresource: &str,
    ) -> Result<Bytes, ApiError> {
        if !patch.is_object() {
            return Err(ApiError::bad_request("a merge patch must be a JSON object"));
        }
        let pinned = patch.pointer("/metadata/resourceVersion").is_some();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let old = self.get_current(rt, namespace, name).await?;
            let mut merged = old.value.clone();
            merge_patch(&mut merged, patch);
            match self.update(rt, namespace, merged, subresource, false).await {
                Err(e) if e.is(Reason::Conflict) && !pinned && attempt < PATCH_ATTEMPTS => continue,
                result => return result,
            }
        }
    }

    /// Deletes an object: at once, or by marking it (deletionTimestamp) when a grace period,
    /// finalizers or foreground/orphan propagation keep it for a while.
    ///
    /// # Errors
    /// NotFound, Conflict on a failed precondition, or a store failure.
    pub async fn delete(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Bytes, ApiError> {
        // Without a precondition a concurrent write (a controller's status) is no reason to
        // fail: read again and retry, as Kubernetes' GuaranteedUpdate does.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.delete_once(rt, namespace, name, options).await {
                Err(e)
                    if e.is(Reason::Conflict)
                        && options.precondition_resource_version.is_none()
                        && attempt < PATCH_ATTEMPTS =>
                {
                    continue;
                }
                result => return result,
            }
        }
    }

    async fn delete_once(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Bytes, ApiError> {
        let old = self.get_current(rt, namespace, name).await?;
        if let Some(rv) = &options.precondition_resource_version
            && *rv != old.mod_revision.to_string()
        {
            return Err(ApiError::conflict(&rt.group_resource(), name));
        }
        let mut marked = old.value.clone();
        let already_marked = marked.pointer("/metadata/deletionTimestamp").is_some();
        let mut keep = false;
        let meta = metadata_mut(&mut marked)?;
        match options.propagation_policy.as_deref() {
            None | Some("") | Some("Background") => {}
            Some(policy @ ("Foreground" | "Orphan")) => {
                let finalizer = if policy == "Foreground" {
                    "foregroundDeletion"
                } else {
                    "orphan"
                };
                add_finalizer(meta, finalizer);
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy {other:?} is not one of Background, Foreground, Orphan"
                )));
            }
        }
        if meta
            .get("finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
        {
            keep = true;
        }
        if rt.kind == "Namespace" {
            keep |= marked
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            set(&mut marked, "status", json!({ "phase": "Terminating" }));
        }
        if rt.kind == "Pod" {
            let grace = options
                .grace_period_seconds
                .or_else(|| {
                    marked
                        .pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                })
                .unwrap_or(30)
                .max(0);
            let bound = marked
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            // A pod on a node is stopped by its agent first, which then deletes it with
            // grace 0; a pod on no node has nothing to stop.
            if bound && grace > 0 {
                keep = true;
                let meta = metadata_mut(&mut marked)?;
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                if !already_marked {
                    meta.insert("deletionTimestamp".into(), Value::String(now_plus(grace)));
                }
            }
        }
        if keep {
            // A pod's grace period already set its deletionTimestamp (now + grace).
            if !already_marked && marked.pointer("/metadata/deletionTimestamp").is_none() {
                metadata_mut(&mut marked)?.insert("deletionTimestamp".into(), Value::String(now()));
            }
            remove_rv(&mut marked);
            let bytes = Bytes::from(serde_json::to_vec(&marked).map_err(internal)?);
            if bytes == strip_rv_bytes(&old.value)? {
                return Ok(old.bytes);
            }
            let revision = self
                .store()
                .update(&old.key, bytes.clone(), Some(old.mod_revision))
                .await
                .map_err(|e| store_error(rt, name, e))?;
            return Ok(served(&old.key, &bytes, revision)?.bytes);
        }
        let deleted = self
            .store()
            .delete(&old.key, Some(old.mod_revision))
            .await
            .map_err(|e| store_error(rt, name, e))?;
        self.release(rt, &old.value, None).await;
        Ok(served(&old.key, &deleted.prev.value, deleted.prev.mod_revision)?.bytes)
    }

    /// The Priority admission step: `spec.priority` comes from the pod's
    /// `priorityClassName` (or the global default class), never from the user.
    async fn resolve_priority(&self, name: &str, pod: &mut Value) -> Result<(), ApiError> {
        let requested = pod
            .pointer("/spec/priorityClassName")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty());
        let class = match requested {
            Some(class_name) => {
                let value = match builtin_priority(class_name) {
                    Some(value) => value,
                    None => {
                        let kv = self
                            .store()
                            .get(&format!("/registry/priorityclasses/{class_name}"))
                            .await
                            .map_err(|e| ApiError::new(Reason::ServiceUnavailable, format!("storage: {e}")))?
                            .ok_or_else(|| {
                                ApiError::new(
                                    Reason::Forbidden,
                                    format!("pods \"{name}\" is forbidden: no PriorityClass with name {class_name} was found"),
                                )
                            })?;
                        let class: Value = serde_json::from_slice(&kv.value).map_err(internal)?;
                        class["value"].as_i64().unwrap_or(0)
                    }
                };
                Some((class_name.to_string(), value))
            }
            None => {
                let (classes, _, _) = self
                    .cache
                    .list("/registry/priorityclasses/", None, 0, |c| {
                        c.value["globalDefault"] == Value::Bool(true)
                    })
                    .await
                    .map_err(cache_error)?;
                classes.first().map(|c| {
                    (
                        c.value
                            .pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        c.value["value"].as_i64().unwrap_or(0),
                    )
                })
            }
        };
        let (class_name, value) = class.unwrap_or_default();
        if let Some(given) = pod.pointer("/spec/priority").and_then(Value::as_i64)
            && given != value
        {
            return Err(ApiError::new(
                Reason::Forbidden,
                format!(
                    "pods \"{name}\" is forbidden: the integer value of priority ({given}) must not be provided in pod spec; \
                     priority admission controller computed {value} from the given PriorityClass name"
                ),
            ));
        }
        if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("priority".into(), json!(value));
            if !class_name.is_empty() {
                spec.insert("priorityClassName".into(), json!(class_name));
            }
        }
        Ok(())
    }

    async fn check_namespace_accepts(&self, namespace: &str) -> Result<(), ApiError> {
        let key = format!("/registry/namespaces/{namespace}");
        let kv = self
            .store()
            .get(&key)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| ApiError::not_found("namespaces", namespace))?;
        let ns: Value = serde_json::from_slice(&kv.value).map_err(internal)?;
        if ns.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::new(
                Reason::Forbidden,
                format!(
                    "unable to create new content in namespace {namespace} because it is being terminated"
                ),
            ));
        }
        Ok(())
    }
}

/// The namespace part of a key: `None` for cluster-scoped types and for "all namespaces".
fn scope<'a>(rt: &ResourceType, namespace: &'a str) -> Option<&'a str> {
    (rt.namespaced() && !namespace.is_empty()).then_some(namespace)
}

/// Checks (or fills in) `apiVersion` and `kind` against the resource the request names.
fn check_type(rt: &ResourceType, body: &mut Value) -> Result<(), ApiError> {
    let Some(object) = body.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body is not a JSON object",
        ));
    };
    for (field, expected) in [("apiVersion", rt.api_version), ("kind", rt.kind)] {
        match object.get(field).and_then(Value::as_str) {
            None | Some("") => {
                object.insert(field.into(), Value::String(expected.into()));
            }
            Some(given) if given == expected => {}
            Some(given) => {
                return Err(ApiError::bad_request(format!(
                    "{field} {given:?} does not match the resource {} ({} {})",
                    rt.plural, rt.api_version, rt.kind
                )));
            }
        }
    }
    Ok(())
}

/// The namespace the object goes to: the request's, which the body may repeat but not
/// contradict.
fn target_namespace(
    rt: &ResourceType,
    namespace: &str,
    body: &Value,
) -> Result<Option<String>, ApiError> {
    let in_body = body
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if !rt.namespaced() {
        return Ok(None);
    }
    match (namespace, in_body) {
        ("", None) => Ok(Some("default".into())),
        ("", Some(ns)) => Ok(Some(ns.into())),
        (ns, Some(body_ns)) if body_ns != ns => Err(namespace_mismatch()),
        (ns, _) => Ok(Some(ns.into())),
    }
}

fn namespace_mismatch() -> ApiError {
    ApiError::bad_request(
        "the namespace of the provided object does not match the namespace sent on the request",
    )
}

fn metadata_mut(body: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let object = body
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the object is not a JSON object"))?;
    object
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata: must be an object"))
}

fn object_name(body: &Value) -> Result<String, ApiError> {
    body.pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            let mut error = ApiError::new(
                Reason::Invalid,
                "metadata.name: Required value: name or generateName is required",
            );
            error.causes.push(Cause {
                field: "metadata.name".into(),
                reason: "FieldValueRequired".into(),
                message: "Required value: name or generateName is required".into(),
            });
            error
        })
}

/// The classes every cluster has (Kubernetes' `system-cluster-critical` and
/// `system-node-critical`).
fn builtin_priority(class: &str) -> Option<i64> {
    match class {
        "system-cluster-critical" => Some(2_000_000_000),
        "system-node-critical" => Some(2_000_001_000),
        _ => None,
    }
}

/// Status is written by controllers and agents, never by a create: each type starts from
/// its initial status (a Pod is Pending). Nodes and Namespaces keep what they are given.
fn reset_status_on_create(rt: &ResourceType, body: &mut Value) {
    if !rt.has_status || matches!(rt.kind, "Node" | "Namespace") {
        return;
    }
    remove(body, "status");
    if rt.kind == "Pod" {
        set(body, "status", json!({ "phase": "Pending" }));
    }
}

/// Metadata the server owns is kept from the stored object whatever an update sends.
fn carry_server_metadata(old: &Value, new: &mut Value) {
    let Some(new_meta) = new.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for field in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old.pointer(&format!("/metadata/{field}")) {
            Some(value) => {
                new_meta.insert(field.into(), value.clone());
            }
            None => {
                new_meta.remove(field);
            }
        }
    }
}

/// What counts as the spec for `generation`: `spec` when the type has one, otherwise
/// everything but metadata and status.
fn spec_of(object: &Value) -> Value {
    match object.get("spec") {
        Some(spec) => spec.clone(),
        None => {
            let mut rest = object.clone();
            if let Some(map) = rest.as_object_mut() {
                map.remove("metadata");
                map.remove("status");
            }
            rest
        }
    }
}

/// An object marked for deletion whose finalizers are all gone is deleted for real.
fn is_finalized(object: &Value) -> bool {
    let empty = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
    };
    object.pointer("/metadata/deletionTimestamp").is_some()
        && empty("/metadata/finalizers")
        && (object.get("kind").and_then(Value::as_str) != Some("Namespace")
            || empty("/spec/finalizers"))
        && object.get("kind").and_then(Value::as_str) != Some("Pod")
}

/// Sets a condition in `status.conditions`, replacing one of the same type.
fn set_condition(object: &mut Value, condition: Value) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let status = map.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    let conditions = status
        .as_object_mut()
        .expect("made an object above")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if let Some(list) = conditions.as_array_mut() {
        list.retain(|c| c.get("type") != condition.get("type"));
        list.push(condition);
    }
}

fn add_finalizer(meta: &mut Map<String, Value>, finalizer: &str) {
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut()
        && !list.iter().any(|f| f == finalizer)
    {
        list.push(Value::String(finalizer.into()));
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn set(object: &mut Value, field: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        map.insert(field.into(), value);
    }
}

fn remove(object: &mut Value, field: &str) {
    if let Some(map) = object.as_object_mut() {
        map.remove(field);
    }
}

fn remove_rv(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
}

fn strip_rv_bytes(object: &Value) -> Result<Bytes, ApiError> {
    let mut copy = object.clone();
    remove_rv(&mut copy);
    Ok(Bytes::from(serde_json::to_vec(&copy).map_err(internal)?))
}

fn served(key: &str, bytes: &[u8], revision: i64) -> Result<CachedObject, ApiError> {
    CachedObject::from_stored(key, bytes, revision).map_err(cache_error)
}

fn encode_continue(key: &str, revision: i64) -> String {
    let raw = json!({ "start": key, "rv": revision }).to_string();
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str, prefix: &str) -> Result<(String, i64), ApiError> {
    let bad = || ApiError::bad_request("invalid continue token: start a new list without it");
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let value: Value = serde_json::from_slice(&bytes.ok_or_else(bad)?).map_err(|_| bad())?;
    let start = value.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    let revision = value.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    if !start.starts_with(prefix) {
        return Err(bad());
    }
    Ok((start.to_string(), revision))
}

/// The current time as Kubernetes writes it (RFC 3339, seconds, UTC).
pub fn now() -> String {
    now_plus(0)
}

fn now_plus(seconds: i64) -> String {
    let ts = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let id = uuid::Uuid::new_v4();
    id.as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Turns validation errors into an Invalid error with one cause per field.
fn invalid(rt: &ResourceType, name: &str, errors: ValidationErrors) -> ApiError {
    let mut error = ApiError::new(Reason::Invalid, errors.describe(rt, name));
    error.causes = errors
        .errors()
        .iter()
        .map(|e| Cause {
            field: e.path.as_str().to_string(),
            reason: e.kind.cause_type().to_string(),
            message: e.message(),
        })
        .collect();
    error
}

fn store_error(rt: &ResourceType, name: &str, error: StoreError) -> ApiError {
    match error {
        StoreError::AlreadyExists { .. } => ApiError::already_exists(&rt.group_resource(), name),
        StoreError::NotFound { .. } => ApiError::not_found(&rt.group_resource(), name),
        StoreError::Conflict { .. } => ApiError::conflict(&rt.group_resource(), name),
        StoreError::Compacted { .. } => ApiError::new(Reason::Expired, error.to_string()),
        StoreError::Timeout { .. } => ApiError::new(Reason::Timeout, error.to_string()),
        other => {
            // The client gets the operation; the log gets the whole chain of causes.
            tracing::warn!(resource = %rt.group_resource(), name, error = %skiff_api::runtime::error_chain(&other), "storage failed");
            ApiError::new(Reason::ServiceUnavailable, format!("storage: {other}"))
        }
    }
}

fn cache_error(error: CacheError) -> ApiError {
    match error {
        CacheError::TooOld { .. } => ApiError::new(Reason::Expired, error.to_string()),
        CacheError::Behind { .. } => ApiError::new(Reason::ServiceUnavailable, error.to_string()),
        CacheError::Corrupt { .. } => ApiError::internal(error.to_string()),
        CacheError::Store(e) => ApiError::new(Reason::ServiceUnavailable, format!("storage: {e}")),
    }
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(error.to_string())
}
