//! Who is calling, and may they: bearer tokens for users, a bootstrap token exchanged for a
//! per-node credential, and the rules that confine a node to its own objects.
//!
//! Tokens live in the data directory (`auth/`), made at first start. A node credential is
//! `node.<name>.<mac>` where the MAC is an HMAC-SHA256 of the name under a secret only the
//! control plane holds, so it can be checked without storing it and never names another
//! node. A service account token is `sa:<namespace>:<name>:<uid>:<mac>`, signed the same
//! way under its own domain; it names `system:serviceaccount:<namespace>:<name>` and is only
//! good while that account (with that uid) exists.

use std::{fs, path::Path};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use skiff_api::status::{ApiError, Reason};

use super::tls::write_private;

/// The group with every permission (Kubernetes' `system:masters`).
pub const MASTERS: &str = "system:masters";
/// The group of node agents.
pub const NODES: &str = "system:nodes";
/// The group that may only exchange its token for a node credential.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";

/// The group of every service account (each is also in `system:serviceaccounts:<ns>`).
pub const SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
/// The user-name prefix of service accounts.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    /// Set for node agents: the node they speak for.
    pub node: Option<String>,
}

impl Identity {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Why auth could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("reading or writing {path}")]
pub struct AuthSetupError {
    path: String,
    #[source]
    source: std::io::Error,
}

/// What a service account token says: whose it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountClaims {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// Signs and checks service account tokens (handed to the service account controller,
/// which writes them into Secrets).
#[derive(Clone)]
pub struct ServiceAccountSigner {
    key: Vec<u8>,
    /// The cluster CA, written beside each token as `ca.crt`.
    ca_pem: String,
}

impl std::fmt::Debug for ServiceAccountSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceAccountSigner { .. }")
    }
}

impl ServiceAccountSigner {
    fn mac(&self, namespace: &str, name: &str, uid: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        // Domain-separated from node credentials: no name contains a NUL.
        mac.update(b"serviceaccount\0");
        for part in [namespace, name, uid] {
            mac.update(part.as_bytes());
            mac.update(b"\0");
        }
        hex(&mac.finalize().into_bytes())
    }

    /// The token of service account `namespace/name` with `uid`.
    pub fn token(&self, namespace: &str, name: &str, uid: &str) -> String {
        format!(
            "sa:{namespace}:{name}:{uid}:{}",
            self.mac(namespace, name, uid)
        )
    }

    /// The claims of a token this signer made; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<ServiceAccountClaims> {
        let mut parts = token.strip_prefix("sa:")?.split(':');
        let (namespace, name, uid, mac) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !constant_time_eq(mac, &self.mac(namespace, name, uid)) {
            return None;
        }
        Some(ServiceAccountClaims {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
        })
    }

    /// The cluster CA's PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

/// The tokens the server accepts.
#[derive(Clone)]
pub struct Authenticator {
    admin_token: String,
    bootstrap_token: String,
    node_secret: Vec<u8>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

impl Authenticator {
    /// Loads the tokens from `dir`, making any that is missing.
    ///
    /// # Errors
    /// On I/O errors in `dir`.
    pub fn load_or_create(dir: &Path) -> Result<Self, AuthSetupError> {
        let err = |path: &Path| {
            let path = path.display().to_string();
            move |source| AuthSetupError { path, source }
        };
        fs::create_dir_all(dir).map_err(err(dir))?;
        let read_or_make = |name: &str| -> Result<String, AuthSetupError> {
            let path = dir.join(name);
            match fs::read_to_string(&path) {
                Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_string()),
                _ => {
                    let token = random_token();
                    write_private(&path, &token).map_err(err(&path))?;
                    Ok(token)
                }
            }
        };
        Ok(Self {
            admin_token: read_or_make("admin.token")?,
            bootstrap_token: read_or_make("bootstrap.token")?,
            node_secret: read_or_make("node.secret")?.into_bytes(),
        })
    }

    /// The administrator's token (for the CLI's config).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The token agents start with.
    pub fn bootstrap_token(&self) -> &str {
        &self.bootstrap_token
    }

    /// The signer of service account tokens; `ca_pem` is handed out beside them.
    pub fn service_account_signer(&self, ca_pem: &str) -> ServiceAccountSigner {
        ServiceAccountSigner {
            key: self.node_secret.clone(),
            ca_pem: ca_pem.into(),
        }
    }

    /// The service account a token names, if it is a valid service account token (whether
    /// the account still exists is for the caller to check).
    pub fn service_account_claims(&self, token: &str) -> Option<ServiceAccountClaims> {
        self.service_account_signer("").verify(token)
    }

    /// The credential of node `name`.
    pub fn node_credential(&self, name: &str) -> String {
        format!("node.{name}.{}", self.node_mac(name))
    }

    fn node_mac(&self, name: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.node_secret).expect("HMAC takes any key length");
        mac.update(name.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// The identity behind an `authorization` header value (`Bearer <token>`).
    ///
    /// # Errors
    /// Unauthorized when there is no token or it is not one the server issued.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Identity, ApiError> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    Reason::Unauthorized,
                    "Unauthorized: a bearer token is required",
                )
            })?;
        if constant_time_eq(token, &self.admin_token) {
            return Ok(Identity {
                user: "admin".into(),
                groups: vec![MASTERS.into()],
                node: None,
            });
        }
        if constant_time_eq(token, &self.bootstrap_token) {
            return Ok(Identity {
                user: "system:bootstrap".into(),
                groups: vec![BOOTSTRAPPERS.into()],
                node: None,
            });
        }
        if let Some(rest) = token.strip_prefix("node.")
            && let Some((name, mac)) = rest.rsplit_once('.')
            && constant_time_eq(mac, &self.node_mac(name))
        {
            return Ok(Identity {
                user: format!("system:node:{name}"),
                groups: vec![NODES.into()],
                node: Some(name.into()),
            });
        }
        if let Some(claims) = self.service_account_claims(token) {
            return Ok(Identity {
                user: format!(
                    "{SERVICE_ACCOUNT_PREFIX}{}:{}",
                    claims.namespace, claims.name
                ),
                groups: vec![
                    SERVICE_ACCOUNTS.into(),
                    format!("{SERVICE_ACCOUNTS}:{}", claims.namespace),
                ],
                node: None,
            });
        }
        Err(ApiError::new(
            Reason::Unauthorized,
            "Unauthorized: the token is not valid",
        ))
    }
}

/// What a request does, for authorization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
}

impl Verb {
    pub fn is_read(self) -> bool {
        matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }

    /// The verb as Kubernetes' RBAC rules spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }
}

/// One request as the authorizer sees it.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    pub verb: Verb,
    /// The API group ("" for the core group).
    pub group: &'a str,
    pub resource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub subresource: &'a str,
    /// For pod writes: the node the pod is bound to (the stored pod's, or the new one's).
    pub pod_node: Option<&'a str>,
}

/// Decides whether `identity` may do `attrs`.
///
/// Administrators may do anything. A node may read everything (but no pod's log or exec),
/// and write only its own
/// Node, its own Lease in `kube-node-lease`, Events, and the status (or the final deletion)
/// of pods bound to it. A service account may read (get, list, watch) the objects of its own
/// namespace other than Secrets, and nothing else: a read-only view, like Kubernetes' `view`
/// role bound in its namespace. Bootstrap tokens may do nothing but get a node credential.
///
/// # Errors
/// Forbidden, with who tried what.
pub fn authorize(identity: &Identity, attrs: &Attributes<'_>) -> Result<(), ApiError> {
    if identity.in_group(MASTERS) {
        return Ok(());
    }
    let allowed = match (&identity.node, service_account_namespace(identity)) {
        (Some(node), _) => node_may(node, attrs),
        (None, Some(namespace)) => {
            attrs.verb.is_read() && attrs.namespace == namespace && attrs.resource != "secrets"
        }
        (None, None) => false,
    };
    if allowed {
        return Ok(());
    }
    let (group_resource, in_group) = if attrs.group.is_empty() {
        (attrs.resource.to_string(), String::new())
    } else {
        (
            format!("{}.{}", attrs.resource, attrs.group),
            format!(" in API group \"{}\"", attrs.group),
        )
    };
    let target = if attrs.name.is_empty() {
        group_resource
    } else {
        format!("{group_resource} \"{}\"", attrs.name)
    };
    Err(ApiError::new(
        Reason::Forbidden,
        format!(
            "{target} is forbidden: User \"{}\" cannot {} resource \"{}{}\"{in_group} in namespace \"{}\"",
            identity.user,
            attrs.verb.as_str(),
            attrs.resource,
            if attrs.subresource.is_empty() {
                String::new()
            } else {
                format!("/{}", attrs.subresource)
            },
            attrs.namespace
        ),
    ))
}

/// The namespace of a service account identity.
fn service_account_namespace(identity: &Identity) -> Option<&str> {
    identity
        .user
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)?
        .split_once(':')
        .map(|(namespace, _)| namespace)
}

fn node_may(node: &str, attrs: &Attributes<'_>) -> bool {
    // A node reads objects, never other pods' logs, exec or other nodes' APIs (as
    // Kubernetes' Node authorizer).
    if matches!(
        (attrs.resource, attrs.subresource),
        ("pods", "log" | "exec") | ("nodes", "proxy")
    ) {
        return false;
    }
    if attrs.verb.is_read() {
        return true;
    }
    match attrs.resource {
        "nodes" => attrs.name == node,
        "leases" => attrs.namespace == "kube-node-lease" && attrs.name == node,
        "events" => matches!(attrs.verb, Verb::Create | Verb::Patch | Verb::Update),
        "pods" => {
            let own = attrs.pod_node == Some(node);
            match attrs.verb {
                Verb::Update | Verb::Patch => own && attrs.subresource == "status",
                Verb::Delete => own,
                _ => false,
            }
        }
        _ => false,
    }
}

fn random_token() -> String {
    let bytes: Vec<u8> = (0..2)
        .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
        .collect();
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> (tempfile::TempDir, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::load_or_create(dir.path()).unwrap();
        (dir, auth)
    }

    fn attrs<'a>(
        verb: Verb,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> Attributes<'a> {
        Attributes {
            verb,
            group: "",
            resource,
            namespace,
            name,
            subresource: "",
            pod_node: None,
        }
    }

    #[test]
    fn a_request_without_a_token_or_with_a_made_up_one_is_unauthorized() {
        let (_dir, auth) = auth();
        assert!(
            auth.authenticate(None)
                .unwrap_err()
                .is(Reason::Unauthorized)
        );
        assert!(
            auth.authenticate(Some("Bearer nope"))
                .unwrap_err()
                .is(Reason::Unauthorized)
        );
        assert!(
            auth.authenticate(Some("Bearer node.a.0000"))
                .unwrap_err()
                .is(Reason::Unauthorized)
        );
    }

    #[test]
    fn metrics_resources_are_authorized_in_their_api_group() {
        let (_dir, auth) = auth();
        let token = auth
            .service_account_signer("CA")
            .token("shop", "default", "u-1");
        let identity = auth.authenticate(Some(&format!("Bearer {token}"))).unwrap();
        let metrics = |resource, namespace| Attributes {
            group: "metrics.k8s.io",
            ..attrs(Verb::List, resource, namespace, "")
        };
        assert!(authorize(&identity, &metrics("pods", "shop")).is_ok());
        let refused = authorize(&identity, &metrics("nodes", "")).unwrap_err();
        assert!(refused.is(Reason::Forbidden));
        assert_eq!(
            refused.message,
            "nodes.metrics.k8s.io is forbidden: User \"system:serviceaccount:shop:default\" \
             cannot list resource \"nodes\" in API group \"metrics.k8s.io\" in namespace \"\""
        );
        let admin = auth
            .authenticate(Some(&format!("Bearer {}", auth.admin_token())))
            .unwrap();
        assert!(authorize(&admin, &metrics("nodes", "")).is_ok());
    }

    #[test]
    fn a_service_account_token_names_its_account_and_only_reads_its_namespace() {
        let (_dir, auth) = auth();
        let signer = auth.service_account_signer("CA");
        let token = signer.token("shop", "default", "u-1");
        let identity = auth.authenticate(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(identity.user, "system:serviceaccount:shop:default");
        assert!(identity.in_group("system:serviceaccounts:shop"));
        assert!(authorize(&identity, &attrs(Verb::List, "pods", "shop", "")).is_ok());
        let log = Attributes {
            subresource: "log",
            ..attrs(Verb::Get, "pods", "shop", "p")
        };
        assert!(
            authorize(&identity, &log).is_ok(),
            "like the view role, pods/log"
        );
        for denied in [
            attrs(Verb::List, "pods", "other", ""),
            attrs(Verb::List, "pods", "", ""),
            attrs(Verb::Get, "secrets", "shop", "s"),
            attrs(Verb::Create, "configmaps", "shop", "c"),
            attrs(Verb::Delete, "pods", "shop", "p"),
            Attributes {
                subresource: "exec",
                ..attrs(Verb::Create, "pods", "shop", "p")
            },
        ] {
            assert!(
                authorize(&identity, &denied)
                    .unwrap_err()
                    .is(Reason::Forbidden),
                "{denied:?}"
            );
        }
        let forged = token.replace(":default:", ":admin:");
        assert!(
            auth.authenticate(Some(&format!("Bearer {forged}")))
                .is_err()
        );
        assert!(
            auth.authenticate(Some("Bearer sa:shop:default:u-1:00"))
                .is_err()
        );
        assert_eq!(
            auth.service_account_claims(&token).unwrap().uid,
            "u-1",
            "the uid is bound into the token"
        );
    }

    #[test]
    fn tokens_are_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = Authenticator::load_or_create(dir.path()).unwrap();
        let b = Authenticator::load_or_create(dir.path()).unwrap();
        assert_eq!(a.admin_token(), b.admin_token());
        assert_eq!(a.node_credential("n1"), b.node_credential("n1"));
    }

    #[test]
    fn a_node_credential_names_exactly_its_node() {
        let (_dir, auth) = auth();
        let id = auth
            .authenticate(Some(&format!("Bearer {}", auth.node_credential("node-1"))))
            .unwrap();
        assert_eq!(id.node.as_deref(), Some("node-1"));
        // A credential edited to name another node fails its MAC.
        let forged = auth.node_credential("node-1").replace("node-1", "node-2");
        assert!(
            auth.authenticate(Some(&format!("Bearer {forged}")))
                .is_err()
        );
    }

    #[test]
    fn a_node_may_write_only_its_own_node_lease_and_pod_status() {
        let (_dir, auth) = auth();
        let id = auth
            .authenticate(Some(&format!("Bearer {}", auth.node_credential("node-1"))))
            .unwrap();
        assert!(authorize(&id, &attrs(Verb::Update, "nodes", "", "node-1")).is_ok());
        assert!(authorize(&id, &attrs(Verb::Update, "nodes", "", "node-2")).is_err());
        assert!(
            authorize(
                &id,
                &attrs(Verb::Update, "leases", "kube-node-lease", "node-1")
            )
            .is_ok()
        );
        assert!(
            authorize(
                &id,
                &attrs(Verb::Update, "leases", "kube-node-lease", "node-2")
            )
            .is_err()
        );
        assert!(authorize(&id, &attrs(Verb::Create, "deployments", "default", "x")).is_err());
        assert!(authorize(&id, &attrs(Verb::List, "pods", "", "")).is_ok());
        let mut log = attrs(Verb::Get, "pods", "default", "p");
        log.subresource = "log";
        assert!(authorize(&id, &log).is_err(), "nodes read no pod's log");
        let mut own_pod = attrs(Verb::Update, "pods", "default", "p");
        own_pod.subresource = "status";
        own_pod.pod_node = Some("node-1");
        assert!(authorize(&id, &own_pod).is_ok());
        own_pod.pod_node = Some("node-2");
        let denied = authorize(&id, &own_pod).unwrap_err();
        assert!(denied.is(Reason::Forbidden));
        assert!(
            denied.message.contains("system:node:node-1"),
            "{}",
            denied.message
        );
    }

    #[test]
    fn the_bootstrap_token_grants_no_api_access() {
        let (_dir, auth) = auth();
        let id = auth
            .authenticate(Some(&format!("Bearer {}", auth.bootstrap_token())))
            .unwrap();
        assert!(authorize(&id, &attrs(Verb::Get, "pods", "default", "p")).is_err());
    }
}
