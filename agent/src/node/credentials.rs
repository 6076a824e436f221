//! The agent's credential: a node token obtained once with the bootstrap token (like a
//! kubelet's TLS bootstrap) and kept in the state directory for later starts.

use std::path::{Path, PathBuf};

use skiff_api::client::{Client, ClientConfig, ClientError};

/// Why the agent could not get a credential.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no node credential in {state} and no bootstrap token was given (--bootstrap-token-file)"
    )]
    NoBootstrapToken { state: PathBuf },
    #[error("exchanging the bootstrap token for the credential of node {node}")]
    Exchange {
        node: String,
        #[source]
        source: ClientError,
    },
}

/// Returns the client config the agent runs with: the node credential from
/// `state_dir/node.token`, or one obtained now with the bootstrap token and saved there.
///
/// # Errors
/// When no credential is stored and none can be obtained.
pub async fn node_client_config(
    base: &ClientConfig,
    node: &str,
    state_dir: &Path,
    bootstrap_token_file: Option<&Path>,
) -> Result<ClientConfig, CredentialError> {
    let stored = state_dir.join("node.token");
    if let Ok(token) = std::fs::read_to_string(&stored)
        && !token.trim().is_empty()
    {
        return Ok(ClientConfig {
            token: token.trim().to_string(),
            ..base.clone()
        });
    }
    let bootstrap_file = bootstrap_token_file.ok_or_else(|| CredentialError::NoBootstrapToken {
        state: state_dir.to_path_buf(),
    })?;
    let bootstrap =
        std::fs::read_to_string(bootstrap_file).map_err(|source| CredentialError::Read {
            path: bootstrap_file.to_path_buf(),
            source,
        })?;
    let exchange = |source| CredentialError::Exchange {
        node: node.to_string(),
        source,
    };
    let client = Client::new(&ClientConfig {
        token: bootstrap.trim().to_string(),
        ..base.clone()
    })
    .map_err(exchange)?;
    let token = client.issue_node_credential(node).await.map_err(exchange)?;
    std::fs::create_dir_all(state_dir).map_err(|source| CredentialError::Write {
        path: state_dir.to_path_buf(),
        source,
    })?;
    write_private(&stored, &token).map_err(|source| CredentialError::Write {
        path: stored.clone(),
        source,
    })?;
    Ok(ClientConfig {
        token,
        ..base.clone()
    })
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut file, contents.as_bytes())
}
