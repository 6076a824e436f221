//! What can go wrong in a command, and how it reads on stderr: `Error from server
//! (NotFound): pods "x" not found` when the server said no, `error: ...` when the CLI did,
//! and a hint to start a cluster when the server cannot be reached.

use skiff_api::{
    client::ClientError,
    runtime::error_chain,
    status::{ApiError, Reason},
};

use crate::input::InputError;

/// A failed command. [`CtlError::Reported`] means the errors are already on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The server answered with an error.
    #[error("Error from server ({reason:?}): {message}", reason = .0.reason, message = .0.message)]
    Server(ApiError),
    /// The server could not be reached.
    #[error("error: the server {server} could not be reached ({detail}); {}", unreachable_hint(.detail))]
    Unreachable {
        /// The address tried.
        server: String,
        /// What failed, as the transport said it.
        detail: String,
    },
    /// The client config is missing, unreadable or unusable.
    #[error("error: {0}")]
    Config(String),
    /// The command line asks for something that cannot be done.
    #[error("error: {0}")]
    Usage(String),
    /// A manifest could not be read or parsed.
    #[error("error: {}", error_chain(.0))]
    Input(#[from] InputError),
    /// Some objects failed; each error has been printed already.
    #[error("")]
    Reported,
    /// A command run by `exec` exited with this code (nothing more to print).
    #[error("")]
    Exit(i32),
}

impl CtlError {
    /// Classifies a client error: a server answer, or a server that could not be reached.
    pub fn from_client(error: ClientError, server: &str) -> Self {
        match error {
            ClientError::Api(api) if is_transport_failure(&api) => CtlError::Unreachable {
                server: server.to_owned(),
                detail: api.message,
            },
            ClientError::Api(api) => CtlError::Server(api),
            ClientError::Connect { .. } => CtlError::Unreachable {
                server: server.to_owned(),
                detail: error_chain(&error),
            },
            other => CtlError::Config(error_chain(&other)),
        }
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        CtlError::Usage(message.into())
    }
}

/// What to do about a server that cannot be reached, by what went wrong.
fn unreachable_hint(detail: &str) -> &'static str {
    let detail = detail.to_ascii_lowercase();
    if detail.contains("certificate") || detail.contains("tls") {
        "its certificate is not signed by the configured CA: check --certificate-authority \
         or the config's certificateAuthority (a cluster's admin.yaml has the right one)"
    } else if detail.contains("protocol error") {
        "it does not speak TLS gRPC there: Skiff's API server is https://host:port"
    } else {
        "is the cluster running? Start one with `cargo xtask up`, or point --config (or \
         SKIFFCONFIG) at a cluster's admin.yaml"
    }
}

/// Whether an error came from the transport (no connection, TLS failure) rather than from
/// the API server, which always sends a reason in the details.
fn is_transport_failure(error: &ApiError) -> bool {
    let message = error.message.to_ascii_lowercase();
    matches!(
        error.reason,
        Reason::ServiceUnavailable | Reason::InternalError | Reason::Timeout
    ) && error.causes.is_empty()
        && [
            "transport error",
            "connect",
            "connection",
            "dns error",
            "certificate",
            "tls",
            "timed out",
            "broken pipe",
            "protocol error",
        ]
        .iter()
        .any(|needle| message.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_read_like_kubectl() {
        let error = CtlError::from_client(
            ClientError::Api(ApiError::not_found("pods", "x")),
            "https://127.0.0.1:6443",
        );
        assert_eq!(
            error.to_string(),
            "Error from server (NotFound): pods \"x\" not found"
        );
    }

    #[test]
    fn a_refused_connection_names_the_server_and_suggests_starting_a_cluster() {
        let error =
            CtlError::from_client(ClientError::Api(tonic_unavailable()), "https://127.0.0.1:1");
        let text = error.to_string();
        assert!(text.starts_with("error: the server https://127.0.0.1:1 could not be reached"));
        assert!(text.contains("cargo xtask up"), "{text}");
    }

    #[test]
    fn a_certificate_from_another_ca_points_at_the_ca_setting() {
        let error = CtlError::from_client(
            ClientError::Api(ApiError::new(
                Reason::ServiceUnavailable,
                "invalid peer certificate: UnknownIssuer",
            )),
            "https://127.0.0.1:6443",
        );
        assert!(
            error.to_string().contains("--certificate-authority"),
            "{error}"
        );
    }

    fn tonic_unavailable() -> ApiError {
        ApiError::new(
            Reason::ServiceUnavailable,
            "tcp connect error: Connection refused (os error 111)",
        )
    }
}
