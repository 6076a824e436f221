//! API errors as both sides see them: a reason (Kubernetes' `metav1.StatusReason`), a
//! message, and field causes, carried over gRPC as a status code plus JSON details.
//!
//! The server builds an [`ApiError`] and turns it into a `tonic::Status` at its edge; the
//! client turns the `tonic::Status` back into the same [`ApiError`].

use serde::{Deserialize, Serialize};

/// Why a request failed, as in Kubernetes' `StatusReason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    AlreadyExists,
    /// A write based on a stale resourceVersion.
    Conflict,
    /// The object failed validation; the causes name the fields.
    Invalid,
    /// A watch or list from a resourceVersion whose history is gone: list again.
    Expired,
    MethodNotAllowed,
    ServiceUnavailable,
    Timeout,
    InternalError,
}

impl Reason {
    /// The HTTP status Kubernetes answers with for this reason (`apiserver_request_total`'s
    /// `code`).
    pub fn http_status(self) -> u16 {
        match self {
            Reason::BadRequest => 400,
            Reason::Unauthorized => 401,
            Reason::Forbidden => 403,
            Reason::NotFound => 404,
            Reason::MethodNotAllowed => 405,
            Reason::AlreadyExists | Reason::Conflict => 409,
            Reason::Expired => 410,
            Reason::Invalid => 422,
            Reason::InternalError => 500,
            Reason::ServiceUnavailable => 503,
            Reason::Timeout => 504,
        }
    }

    /// The gRPC code this reason travels as.
    pub fn code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            Reason::BadRequest | Reason::Invalid => Code::InvalidArgument,
            Reason::Unauthorized => Code::Unauthenticated,
            Reason::Forbidden => Code::PermissionDenied,
            Reason::NotFound => Code::NotFound,
            Reason::AlreadyExists => Code::AlreadyExists,
            Reason::Conflict => Code::Aborted,
            Reason::Expired => Code::OutOfRange,
            Reason::MethodNotAllowed => Code::Unimplemented,
            Reason::ServiceUnavailable => Code::Unavailable,
            Reason::Timeout => Code::DeadlineExceeded,
            Reason::InternalError => Code::Internal,
        }
    }

    fn from_code(code: tonic::Code) -> Self {
        use tonic::Code;
        match code {
            Code::InvalidArgument => Reason::BadRequest,
            Code::Unauthenticated => Reason::Unauthorized,
            Code::PermissionDenied => Reason::Forbidden,
            Code::NotFound => Reason::NotFound,
            Code::AlreadyExists => Reason::AlreadyExists,
            Code::Aborted => Reason::Conflict,
            Code::OutOfRange => Reason::Expired,
            Code::Unimplemented => Reason::MethodNotAllowed,
            Code::Unavailable => Reason::ServiceUnavailable,
            Code::DeadlineExceeded => Reason::Timeout,
            _ => Reason::InternalError,
        }
    }
}

/// One field that made a request invalid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// The field path, e.g. `spec.template.spec.containers[0].image`.
    pub field: String,
    /// Kubernetes' cause type, e.g. `FieldValueRequired`.
    pub reason: String,
    pub message: String,
}

/// A failed API request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub reason: Reason,
    /// One readable line, e.g. `Deployment.apps "web" is invalid: spec.replicas: ...`.
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Cause>,
}

impl ApiError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            causes: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Reason::BadRequest, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Reason::InternalError, message)
    }

    /// `<resource> "<name>" not found`, as kubectl prints it.
    pub fn not_found(resource: &str, name: &str) -> Self {
        Self::new(Reason::NotFound, format!("{resource} \"{name}\" not found"))
    }

    /// `<resource> "<name>" already exists`.
    pub fn already_exists(resource: &str, name: &str) -> Self {
        Self::new(
            Reason::AlreadyExists,
            format!("{resource} \"{name}\" already exists"),
        )
    }

    /// The stale-write error, in Kubernetes' words.
    pub fn conflict(resource: &str, name: &str) -> Self {
        Self::new(
            Reason::Conflict,
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been \
                 modified; please apply your changes to the latest version and try again"
            ),
        )
    }

    pub fn is(&self, reason: Reason) -> bool {
        self.reason == reason
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        let details = serde_json::to_vec(&error).unwrap_or_default();
        tonic::Status::with_details(error.reason.code(), error.message, details.into())
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        serde_json::from_slice(status.details()).unwrap_or_else(|_| Self {
            reason: Reason::from_code(status.code()),
            message: status.message().to_string(),
            causes: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_error_survives_the_trip_through_a_grpc_status() {
        let mut error = ApiError::new(
            Reason::Invalid,
            "Pod \"a\" is invalid: spec.containers[0].image: Required value",
        );
        error.causes.push(Cause {
            field: "spec.containers[0].image".into(),
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
        });
        let status = tonic::Status::from(error.clone());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(ApiError::from(status), error);
    }

    #[test]
    fn a_plain_grpc_status_maps_to_the_reason_of_its_code() {
        let error = ApiError::from(tonic::Status::unauthenticated("no token"));
        assert_eq!(error.reason, Reason::Unauthorized);
        assert_eq!(error.message, "no token");
    }
}
