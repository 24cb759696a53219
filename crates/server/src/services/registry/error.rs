//! Registry errors: what went wrong, as a kind named in the OCI distribution spec's terms
//! (plus the few cases that need more than its codes say), with a message that says what
//! to do. The HTTP edge decides the status and the envelope's code of each kind.

use berth_store::BlobError;
use berth_upstream::UpstreamError;

use crate::services::{Error, ErrorKind};

/// What a registry request failed with: the OCI spec's error codes, distribution's
/// UNAVAILABLE and UNKNOWN, and the finer kinds the edge answers differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    /// A manifest larger than the registry takes.
    ManifestTooLarge,
    /// An upload chunk that does not start where the upload stands, which has `size` bytes.
    ChunkOutOfOrder {
        size: u64,
    },
    /// A byte range outside a blob of `size` bytes.
    RangeNotSatisfiable {
        size: u64,
    },
    /// A path that is not one of the registry API's.
    PathUnknown,
    /// A method the path does not take.
    MethodUnsupported,
    /// A malformed `n` or `last` of a paged list.
    PaginationInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    Unavailable,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RegistryError {
    pub code: Code,
    pub message: String,
}

impl RegistryError {
    pub fn new(code: Code, message: impl Into<String>) -> RegistryError {
        RegistryError { code, message: message.into() }
    }
}

impl From<Error> for RegistryError {
    fn from(err: Error) -> RegistryError {
        let code = match err.kind {
            ErrorKind::NotFound => Code::NameUnknown,
            ErrorKind::Unauthorized => Code::Unauthorized,
            ErrorKind::Forbidden => Code::Denied,
            ErrorKind::Invalid | ErrorKind::BadRequest => Code::ManifestInvalid,
            ErrorKind::TooLarge => Code::SizeInvalid,
            ErrorKind::Busy => Code::TooManyRequests,
            _ => Code::Unknown,
        };
        let mut message = err.message;
        for cause in err.causes {
            message.push_str(&format!("; {}: {}", cause.field, cause.message));
        }
        RegistryError::new(code, message)
    }
}

impl From<BlobError> for RegistryError {
    fn from(err: BlobError) -> RegistryError {
        let code = match &err {
            BlobError::UnknownUpload(_) => Code::BlobUploadUnknown,
            BlobError::OutOfOrder { size, .. } => Code::ChunkOutOfOrder { size: *size },
            BlobError::DigestMismatch { .. } => Code::DigestInvalid,
            BlobError::Body(_) => Code::BlobUploadInvalid,
            BlobError::Storage(_) => Code::Unknown,
        };
        RegistryError::new(code, err.to_string())
    }
}

impl From<UpstreamError> for RegistryError {
    fn from(err: UpstreamError) -> RegistryError {
        use berth_upstream::ErrorKind as Kind;
        let code = match err.kind {
            Kind::NotFound => Code::BlobUnknown,
            Kind::TooManyRequests => Code::TooManyRequests,
            Kind::Unauthorized | Kind::Forbidden => Code::Denied,
            _ => Code::Unavailable,
        };
        RegistryError::new(code, format!("pulling through from the image's registry failed: {}", err.message))
    }
}
