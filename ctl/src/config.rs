//! Where `skiffctl` connects and as whom: the client config file (`--config`, else
//! `$SKIFFCONFIG` when set and not empty, else `~/.skiff/config`, the file `cargo xtask up`
//! writes), with `--server`, `--token` and `--certificate-authority` overriding it.

use std::path::{Path, PathBuf};

use clap::Args;
use skiff_api::client::ClientConfig;

use skiff_api::runtime::error_chain;

use crate::error::CtlError;

/// The help section of the flags every command takes.
const CONNECTION: &str = "Connection options";

/// The connection flags every command takes.
#[derive(Args, Clone, Debug, Default)]
pub struct ConnectionArgs {
    /// The client config file (server, CA, token, namespace) [env: SKIFFCONFIG] [default:
    /// ~/.skiff/config]
    #[arg(long, global = true, value_name = "PATH", help_heading = CONNECTION)]
    pub config: Option<PathBuf>,
    /// The API server's address (`https://host:port`), instead of the config's
    #[arg(long, global = true, value_name = "URL", help_heading = CONNECTION)]
    pub server: Option<String>,
    /// The bearer token to authenticate with, instead of the config's
    #[arg(long, global = true, value_name = "TOKEN", help_heading = CONNECTION)]
    pub token: Option<String>,
    /// A PEM file with the CA that signed the server's certificate, instead of the config's
    #[arg(long, global = true, value_name = "FILE", help_heading = CONNECTION)]
    pub certificate_authority: Option<PathBuf>,
    /// The namespace to work in [default: the config's, else `default`]
    #[arg(
        short = 'n',
        long,
        global = true,
        value_name = "NAMESPACE",
        help_heading = CONNECTION
    )]
    pub namespace: Option<String>,
}

/// The config to connect with: the file (when there is one) with the flags on top.
///
/// # Errors
/// When the file is named but missing, unreadable or malformed, when there is no file and
/// no `--server`, or when the CA file cannot be read.
pub fn resolve(args: &ConnectionArgs) -> Result<ClientConfig, CtlError> {
    let from_env = std::env::var_os("SKIFFCONFIG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let named = args.config.clone().or(from_env);
    let path = named.clone().unwrap_or_else(default_path);
    let named = named.is_some();
    let base = if path.exists() {
        Some(ClientConfig::load(&path).map_err(|e| CtlError::Config(error_chain(&e)))?)
    } else if named {
        return Err(CtlError::Config(format!(
            "the config file {} does not exist",
            path.display()
        )));
    } else {
        None
    };
    let ca = match &args.certificate_authority {
        Some(file) => Some(std::fs::read_to_string(file).map_err(|e| {
            CtlError::Config(format!(
                "reading the certificate authority {}: {e}",
                file.display()
            ))
        })?),
        None => None,
    };
    merge(base, args, ca, &path)
}

/// `~/.skiff/config`.
fn default_path() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".skiff").join("config")
}

/// Lays the flags over the file's config (`ca` is the CA file's content, already read).
///
/// # Errors
/// When neither the file nor the flags name a server.
pub fn merge(
    base: Option<ClientConfig>,
    args: &ConnectionArgs,
    ca: Option<String>,
    path: &Path,
) -> Result<ClientConfig, CtlError> {
    let had_file = base.is_some();
    let mut config = base.unwrap_or_else(|| ClientConfig {
        namespace: "default".to_owned(),
        ..ClientConfig::default()
    });
    if let Some(server) = &args.server {
        config.server = if server.contains("://") {
            server.clone()
        } else {
            format!("https://{server}")
        };
    }
    if let Some(token) = &args.token {
        config.token = token.clone();
    }
    if let Some(ca) = ca {
        config.certificate_authority = ca;
    }
    if let Some(namespace) = &args.namespace {
        config.namespace = namespace.clone();
    }
    if config.namespace.is_empty() {
        config.namespace = "default".to_owned();
    }
    if config.server.is_empty() {
        return Err(CtlError::Config(if had_file {
            format!("the config file {} names no server", path.display())
        } else {
            format!(
                "no cluster is configured: {} does not exist. Start a local cluster with \
                 `cargo xtask up` (it writes that file), or pass --config with a cluster's \
                 admin.yaml, or --server",
                path.display()
            )
        }));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_config() -> ClientConfig {
        ClientConfig {
            server: "https://10.0.0.1:6443".into(),
            certificate_authority: "CA".into(),
            token: "file-token".into(),
            namespace: "shop".into(),
        }
    }

    #[test]
    fn flags_override_what_the_config_file_says() {
        let args = ConnectionArgs {
            server: Some("127.0.0.1:7443".into()),
            token: Some("flag-token".into()),
            namespace: Some("dev".into()),
            ..Default::default()
        };
        let config = merge(
            Some(file_config()),
            &args,
            Some("OTHER CA".into()),
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(config.server, "https://127.0.0.1:7443");
        assert_eq!(config.token, "flag-token");
        assert_eq!(config.certificate_authority, "OTHER CA");
        assert_eq!(config.namespace, "dev");
    }

    #[test]
    fn the_config_file_is_used_as_is_without_flags() {
        let config = merge(
            Some(file_config()),
            &ConnectionArgs::default(),
            None,
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(config, file_config());
    }

    #[test]
    fn without_a_config_file_or_server_the_error_says_how_to_get_one() {
        let error = merge(
            None,
            &ConnectionArgs::default(),
            None,
            Path::new("/root/.skiff/config"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("/root/.skiff/config does not exist"),
            "{error}"
        );
        assert!(error.contains("cargo xtask up"), "{error}");
    }

    #[test]
    fn a_server_flag_alone_is_enough_and_the_namespace_defaults() {
        let args = ConnectionArgs {
            server: Some("https://h:1".into()),
            ..Default::default()
        };
        let config = merge(None, &args, None, Path::new("c")).unwrap();
        assert_eq!(config.server, "https://h:1");
        assert_eq!(config.namespace, "default");
    }
}
