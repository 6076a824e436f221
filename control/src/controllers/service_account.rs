//! The service account controllers: every active namespace has a `default` ServiceAccount
//! (made again if deleted), and every ServiceAccount a token Secret
//! (`kubernetes.io/service-account-token`) whose token the API server accepts as
//! `system:serviceaccount:<ns>:<name>`; tokens of accounts that are gone are deleted.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;
use skiff_api::{
    client::ClientError,
    k8s_openapi::{
        ByteString,
        api::core::v1::{Namespace, Secret, ServiceAccount},
    },
    runtime::{Action, Change, Controller, ObjectKey, Store, WorkQueue, Writer},
};
use tracing::info;

use super::{
    Context, Stop,
    cluster_api::{ClusterApi, LiveApi, is_already_exists, is_not_found},
    feed::{feed, informer},
};
use crate::apiserver::auth::ServiceAccountSigner;

/// The Secret type of service account tokens.
pub const TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
/// The annotation naming a token Secret's account.
pub const ACCOUNT_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// The annotation holding a token Secret's account uid.
pub const ACCOUNT_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
/// The index of objects by namespace.
pub const BY_NAMESPACE: &str = "namespace";
/// How soon a namespace is looked at again while the cache lacks a token just made.
const STALE_CACHE_RETRY: Duration = Duration::from_millis(200);

/// Why a namespace's service accounts could not be brought in line.
#[derive(Debug, thiserror::Error)]
pub enum ServiceAccountError {
    #[error("creating the default ServiceAccount in namespace {namespace}")]
    CreateAccount {
        namespace: String,
        #[source]
        source: ClientError,
    },
    #[error("creating the token Secret of ServiceAccount {namespace}/{account}")]
    CreateToken {
        namespace: String,
        account: String,
        #[source]
        source: ClientError,
    },
    #[error("deleting token Secret {namespace}/{secret}, whose ServiceAccount is gone")]
    DeleteToken {
        namespace: String,
        secret: String,
        #[source]
        source: ClientError,
    },
}

/// The caches a reconcile reads (accounts and secrets indexed by namespace).
#[derive(Clone, Debug)]
pub struct Caches {
    pub namespaces: Store<Namespace>,
    pub accounts: Store<ServiceAccount>,
    pub secrets: Store<Secret>,
}

/// A store indexed by namespace.
pub fn namespaced_writer<T>() -> Writer<T>
where
    T: serde::de::DeserializeOwned
        + skiff_api::k8s_openapi::Metadata<
            Ty = skiff_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        >,
{
    Writer::new().with_index(BY_NAMESPACE, |object: &T| {
        vec![object.metadata().namespace.clone().unwrap_or_default()]
    })
}

/// Reconciles one namespace (by name) at a time.
#[derive(Debug)]
pub struct Reconciler<A> {
    api: A,
    caches: Caches,
    signer: ServiceAccountSigner,
    /// Accounts (by uid) whose token was created but is not yet in the cache.
    pending: Mutex<HashSet<String>>,
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

impl<A: ClusterApi> Reconciler<A> {
    pub fn new(api: A, caches: Caches, signer: ServiceAccountSigner) -> Self {
        Self {
            api,
            caches,
            signer,
            pending: Mutex::default(),
        }
    }

    /// Makes sure namespace `name` has its `default` account and every account its token.
    ///
    /// # Errors
    /// When a write fails; the key is retried with backoff.
    pub async fn reconcile(&self, name: &str) -> Result<Action, ServiceAccountError> {
        let active = self
            .caches
            .namespaces
            .get(&ObjectKey::cluster(name))
            .is_some_and(|ns| ns.metadata.deletion_timestamp.is_none());
        if !active {
            return Ok(Action::Done);
        }
        let accounts = self.caches.accounts.by_index(BY_NAMESPACE, name);
        let tokens: Vec<Arc<Secret>> = self
            .caches
            .secrets
            .by_index(BY_NAMESPACE, name)
            .into_iter()
            .filter(|s| s.type_.as_deref() == Some(TOKEN_SECRET_TYPE))
            .collect();

        if !accounts
            .iter()
            .any(|a| a.metadata.name.as_deref() == Some("default"))
        {
            let account = json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": name},
            });
            match self.api.create("serviceaccounts", name, account).await {
                Ok(_) => info!(namespace = name, "created the default ServiceAccount"),
                Err(error) if is_already_exists(&error) => {}
                Err(source) => {
                    return Err(ServiceAccountError::CreateAccount {
                        namespace: name.into(),
                        source,
                    });
                }
            }
            // Its token follows once the cache shows the account (with its uid).
        }

        let mut waiting = false;
        for account in &accounts {
            let account_name = account.metadata.name.clone().unwrap_or_default();
            let uid = account.metadata.uid.clone().unwrap_or_default();
            if uid.is_empty() {
                continue;
            }
            let has_token = tokens
                .iter()
                .any(|s| annotation(s, ACCOUNT_UID_ANNOTATION) == Some(uid.as_str()));
            let already_pending = {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if has_token {
                    pending.remove(&uid);
                }
                pending.contains(&uid)
            };
            if has_token {
                continue;
            }
            if already_pending {
                waiting = true;
                continue;
            }
            self.create_token(name, &account_name, &uid).await?;
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(uid);
            waiting = true;
        }

        // Tokens of accounts that are gone (or were made again with a new uid) go too.
        let live: HashSet<String> = accounts
            .iter()
            .filter_map(|a| a.metadata.uid.clone())
            .collect();
        for secret in &tokens {
            let owner = annotation(secret, ACCOUNT_UID_ANNOTATION).unwrap_or("");
            if live.contains(owner) {
                continue;
            }
            let secret_name = secret.metadata.name.clone().unwrap_or_default();
            match self.api.delete("secrets", name, &secret_name).await {
                Ok(()) => info!(
                    namespace = name,
                    secret = secret_name,
                    "deleted the token of a deleted ServiceAccount"
                ),
                Err(error) if is_not_found(&error) => {}
                Err(source) => {
                    return Err(ServiceAccountError::DeleteToken {
                        namespace: name.into(),
                        secret: secret_name,
                        source,
                    });
                }
            }
        }
        Ok(if waiting {
            Action::RequeueAfter(STALE_CACHE_RETRY)
        } else {
            Action::Done
        })
    }

    async fn create_token(
        &self,
        namespace: &str,
        account: &str,
        uid: &str,
    ) -> Result<(), ServiceAccountError> {
        let token = self.signer.token(namespace, account, uid);
        let data = |text: &str| ByteString(text.as_bytes().to_vec());
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "generateName": format!("{account}-token-"),
                "namespace": namespace,
                "annotations": {ACCOUNT_NAME_ANNOTATION: account, ACCOUNT_UID_ANNOTATION: uid},
                "ownerReferences": [{"apiVersion": "v1", "kind": "ServiceAccount",
                                     "name": account, "uid": uid}],
            },
            "type": TOKEN_SECRET_TYPE,
            "data": {
                "token": data(&token),
                "ca.crt": data(self.signer.ca_pem()),
                "namespace": data(namespace),
            },
        });
        self.api
            .create("secrets", namespace, secret)
            .await
            .map_err(|source| ServiceAccountError::CreateToken {
                namespace: namespace.into(),
                account: account.into(),
                source,
            })?;
        info!(namespace, account, "created a service account token");
        Ok(())
    }
}

/// Runs the controller until `stop` fires; without a signer (no token key) it does not run.
pub async fn run(context: Context, stop: Stop) {
    let Some(signer) = context.options.service_account_signer.clone() else {
        tracing::warn!(
            "no service account signer configured; the service account controller is off"
        );
        return;
    };
    let namespaces = informer(&context, "namespaces", Writer::<Namespace>::new());
    let accounts = informer(
        &context,
        "serviceaccounts",
        namespaced_writer::<ServiceAccount>(),
    );
    let secrets = informer(&context, "secrets", namespaced_writer::<Secret>());
    let queue: WorkQueue<ObjectKey> = context.queue("serviceaccount");
    let namespace_key =
        |namespace: &Option<String>| ObjectKey::cluster(namespace.clone().unwrap_or_default());
    feed(namespaces.subscribe(), queue.clone(), {
        let store = namespaces.store();
        move |change: &Change<Namespace>| match change.object() {
            Some(ns) => vec![ObjectKey::of(&**ns)],
            None => store.keys(),
        }
    });
    feed(accounts.subscribe(), queue.clone(), {
        let store = namespaces.store();
        move |change: &Change<ServiceAccount>| match change.object() {
            Some(sa) => vec![namespace_key(&sa.metadata.namespace)],
            None => store.keys(),
        }
    });
    feed(secrets.subscribe(), queue.clone(), {
        let store = namespaces.store();
        move |change: &Change<Secret>| match change.object() {
            Some(secret) if secret.type_.as_deref() == Some(TOKEN_SECRET_TYPE) => {
                vec![namespace_key(&secret.metadata.namespace)]
            }
            Some(_) => Vec::new(),
            None => store.keys(),
        }
    });
    let caches = Caches {
        namespaces: namespaces.store(),
        accounts: accounts.store(),
        secrets: secrets.store(),
    };
    let synced = async {
        tokio::join!(
            caches.namespaces.wait_until_ready(),
            caches.accounts.wait_until_ready(),
            caches.secrets.wait_until_ready()
        )
    };
    tokio::select! {
        _ = synced => {}
        () = stop.clone().wait() => return,
    }
    let api = LiveApi::new(
        context.client.clone(),
        "serviceaccount-controller",
        &context.identity,
    );
    let reconciler = Arc::new(Reconciler::new(api, caches, signer));
    Controller::new(queue)
        .graceful_shutdown_on(stop.wait())
        .run(2, move |key: ObjectKey| {
            let reconciler = Arc::clone(&reconciler);
            async move { reconciler.reconcile(&key.name).await }
        })
        .await;
    drop((namespaces, accounts, secrets));
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use skiff_api::runtime::Event;

    use super::*;
    use crate::{
        apiserver::auth::Authenticator,
        controllers::cluster_api::fake::{Call, FakeApi},
    };

    fn store<T: serde::de::DeserializeOwned>(
        mut writer: Writer<T>,
        objects: Vec<Value>,
    ) -> Store<T> {
        writer.apply(Event::Restarted {
            objects,
            resource_version: "1".into(),
        });
        writer.reader()
    }

    fn namespace(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "resourceVersion": "2"}})
    }

    fn account(name: &str, uid: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": name, "namespace": "shop", "uid": uid, "resourceVersion": "3"}})
    }

    fn token_secret(name: &str, uid: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "type": TOKEN_SECRET_TYPE,
               "metadata": {"name": name, "namespace": "shop", "resourceVersion": "4",
                            "annotations": {ACCOUNT_UID_ANNOTATION: uid, ACCOUNT_NAME_ANNOTATION: "x"}}})
    }

    fn reconciler(
        api: &FakeApi,
        namespaces: Vec<Value>,
        accounts: Vec<Value>,
        secrets: Vec<Value>,
    ) -> (tempfile::TempDir, Authenticator, Reconciler<FakeApi>) {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::load_or_create(dir.path()).unwrap();
        let signer = auth.service_account_signer("CA PEM");
        let caches = Caches {
            namespaces: store(Writer::new(), namespaces),
            accounts: store(namespaced_writer(), accounts),
            secrets: store(namespaced_writer(), secrets),
        };
        (dir, auth, Reconciler::new(api.clone(), caches, signer))
    }

    fn created(api: &FakeApi, resource: &str) -> Vec<Value> {
        api.writes()
            .into_iter()
            .filter_map(|c| match c {
                Call::Create {
                    resource: r,
                    object,
                    ..
                } if r == resource => Some(object),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_namespace_without_a_default_account_gets_one() {
        let api = FakeApi::new();
        let (_dir, _auth, r) = reconciler(&api, vec![namespace("shop")], vec![], vec![]);
        r.reconcile("shop").await.unwrap();
        let accounts = created(&api, "serviceaccounts");
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0]["metadata"]["name"], "default");
    }

    #[tokio::test(start_paused = true)]
    async fn an_account_gets_a_token_the_api_server_accepts_as_that_account() {
        let api = FakeApi::new();
        let (_dir, auth, r) = reconciler(
            &api,
            vec![namespace("shop")],
            vec![account("default", "u-1")],
            vec![],
        );
        assert_eq!(
            r.reconcile("shop").await.unwrap(),
            Action::RequeueAfter(STALE_CACHE_RETRY)
        );
        let secrets = created(&api, "secrets");
        assert_eq!(secrets.len(), 1);
        let secret: Secret = serde_json::from_value(secrets[0].clone()).unwrap();
        assert_eq!(secret.type_.as_deref(), Some(TOKEN_SECRET_TYPE));
        assert_eq!(annotation(&secret, ACCOUNT_UID_ANNOTATION), Some("u-1"));
        let data = secret.data.unwrap();
        let token = String::from_utf8(data["token"].0.clone()).unwrap();
        assert_eq!(data["ca.crt"].0, b"CA PEM");
        let identity = auth.authenticate(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(identity.user, "system:serviceaccount:shop:default");
        // The cache has not caught up: no second token.
        api.clear();
        r.reconcile("shop").await.unwrap();
        assert!(created(&api, "secrets").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_token_of_a_deleted_account_is_deleted_and_a_terminating_namespace_is_left_alone() {
        let api = FakeApi::new();
        let (_dir, _auth, r) = reconciler(
            &api,
            vec![namespace("shop")],
            vec![account("default", "u-1")],
            vec![
                token_secret("default-token-a", "u-1"),
                token_secret("gone-token-b", "u-9"),
            ],
        );
        assert_eq!(r.reconcile("shop").await.unwrap(), Action::Done);
        assert_eq!(
            api.writes(),
            [Call::Delete {
                resource: "secrets".into(),
                namespace: "shop".into(),
                name: "gone-token-b".into()
            }]
        );
        let api = FakeApi::new();
        let mut leaving = namespace("shop");
        leaving["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let (_dir, _auth, r) = reconciler(&api, vec![leaving], vec![], vec![]);
        r.reconcile("shop").await.unwrap();
        assert!(api.writes().is_empty());
    }
}
