//! Error policy: services return this typed [`Error`], whose kinds are the Kubernetes
//! `Status` reasons, and whose message says what was wrong and what to do. The HTTP edge
//! gives each kind its status code and renders it as a `Status` body; nothing else maps
//! errors. `anyhow` is for the binary and
//! start-up only. Storage failures are logged here, once, and reach the user as a plain
//! internal error.

use berth_model::FieldError;
use berth_store::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    AlreadyExists,
    Conflict,
    Invalid,
    Gone,
    MethodNotAllowed,
    TooLarge,
    UnsupportedMediaType,
    /// The server is too busy to take the request now: retry shortly.
    Busy,
    /// Something berth depends on (another registry) did not answer as it should.
    Unavailable,
    Internal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// The qualified resource (`imagestreams.image.openshift.io`) and name concerned.
    pub resource: String,
    pub name: String,
    pub causes: Vec<FieldError>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), resource: String::new(), name: String::new(), causes: Vec::new() }
    }

    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Forbidden, message)
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }

    /// The same error with another message.
    pub fn with_message(self, message: impl Into<String>) -> Error {
        Error { message: message.into(), ..self }
    }

    pub fn not_found(resource: &str, name: &str) -> Error {
        Error {
            resource: resource.to_string(),
            name: name.to_string(),
            ..Error::new(ErrorKind::NotFound, format!("{resource} {name:?} not found"))
        }
    }

    pub fn already_exists(resource: &str, name: &str) -> Error {
        Error {
            resource: resource.to_string(),
            name: name.to_string(),
            ..Error::new(ErrorKind::AlreadyExists, format!("{resource} {name:?} already exists: update it instead, or delete it first"))
        }
    }

    pub fn conflict(resource: &str, name: &str) -> Error {
        Error {
            resource: resource.to_string(),
            name: name.to_string(),
            ..Error::new(
                ErrorKind::Conflict,
                format!(
                    "Operation cannot be fulfilled on {resource} {name:?}: the object has been modified; please apply your changes to the latest version and try again"
                ),
            )
        }
    }

    pub fn invalid(resource: &str, name: &str, causes: Vec<FieldError>) -> Error {
        let summary: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        Error {
            resource: resource.to_string(),
            name: name.to_string(),
            causes,
            ..Error::new(ErrorKind::Invalid, format!("{resource} {name:?} is invalid: {}", summary.join("; ")))
        }
    }

    pub fn gone(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Gone, message)
    }

    /// Translates a store error about `resource`/`name`.
    pub fn from_store(err: StoreError, resource: &str, name: &str) -> Error {
        match err {
            StoreError::AlreadyExists(_) => Error::already_exists(resource, name),
            StoreError::NotFound(_) => Error::not_found(resource, name),
            StoreError::Conflict { .. } => Error::conflict(resource, name),
            StoreError::Compacted { requested, oldest } => Error::gone(format!(
                "too old resource version: {requested} (the oldest this server can serve is {oldest}); list again to get a current resourceVersion"
            )),
            other => Error::from(other),
        }
    }
}

/// Blob storage failing under a service (the registry's own requests map blob errors to
/// OCI codes instead).
impl From<berth_store::BlobError> for Error {
    fn from(err: berth_store::BlobError) -> Error {
        tracing::error!(%err, "blob storage failure");
        Error::internal(format!("{err}; nothing more was changed. Try again, and check the server's log if it persists"))
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Error {
        match err {
            StoreError::Backend(message) => {
                tracing::error!(%message, "storage failure");
                Error::internal(
                    "the server could not read or write its store; the change was not made. Try again, and check the server's log if it persists",
                )
            }
            StoreError::AlreadyExists(ref key) | StoreError::NotFound(ref key) | StoreError::Conflict { ref key, .. } => {
                let (resource, name) = (key.resource.clone(), key.name.clone());
                Error::from_store(err, &resource, &name)
            }
            StoreError::Compacted { .. } => Error::from_store(err, "", ""),
            StoreError::Aborted => Error::internal("the change was abandoned"),
            StoreError::Busy => Error::new(ErrorKind::Busy, "the server is busy reading its store for other requests: retry in a second"),
        }
    }
}
