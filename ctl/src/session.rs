//! A connection to the cluster for one command: the client, the namespace it works in,
//! and the helpers every verb needs (the namespace a type is addressed in, paged lists,
//! errors that name the server).

use serde_json::Value;
use skiff_api::{
    client::{Client, ClientError, ListParams},
    resources::ResourceType,
};

use crate::{
    config::{self, ConnectionArgs},
    error::CtlError,
};

/// How many objects a list asks for per page (kubectl's `--chunk-size`).
const CHUNK_SIZE: i64 = 500;

/// The client and the namespace a command works with.
#[derive(Debug)]
pub struct Session {
    client: Client,
    namespace: String,
    explicit_namespace: bool,
    server: String,
}

impl Session {
    /// Resolves the config and sets up the (lazy) connection.
    ///
    /// # Errors
    /// When there is no usable config.
    pub fn connect(args: &ConnectionArgs) -> Result<Self, CtlError> {
        let config = config::resolve(args)?;
        let client = Client::new(&config).map_err(|e| CtlError::from_client(e, &config.server))?;
        Ok(Self {
            client,
            namespace: config.namespace.clone(),
            explicit_namespace: args.namespace.is_some(),
            server: config.server,
        })
    }

    /// The API client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The namespace commands default to (`-n`, else the config's).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether the namespace was given with `-n`.
    pub fn explicit_namespace(&self) -> bool {
        self.explicit_namespace
    }

    /// Turns a client error into a command error that names this server.
    pub fn fail(&self, error: ClientError) -> CtlError {
        CtlError::from_client(error, &self.server)
    }

    /// The namespace to address `resource` in: "" for cluster-scoped types and with
    /// `all_namespaces`, else the session's.
    pub fn scope(&self, resource: &ResourceType, all_namespaces: bool) -> String {
        if !resource.namespaced() || all_namespaces {
            String::new()
        } else {
            self.namespace.clone()
        }
    }

    /// Every object of `resource` in `namespace` matching the selectors, page by page;
    /// returns them and the list's resourceVersion.
    ///
    /// # Errors
    /// The server's.
    pub async fn list(
        &self,
        resource: &ResourceType,
        namespace: &str,
        label_selector: &str,
        field_selector: &str,
    ) -> Result<(Vec<Value>, String), CtlError> {
        let mut params = ListParams {
            label_selector: label_selector.to_owned(),
            field_selector: field_selector.to_owned(),
            limit: CHUNK_SIZE,
            continue_token: String::new(),
        };
        let mut items = Vec::new();
        loop {
            let page = self
                .client
                .list(resource.plural, namespace, &params)
                .await
                .map_err(|e| self.fail(e))?;
            items.extend(page.items);
            if page.continue_token.is_empty() {
                return Ok((items, page.resource_version));
            }
            params.continue_token = page.continue_token;
        }
    }
}
