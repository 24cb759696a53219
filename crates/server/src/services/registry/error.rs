//! Registry errors: the OCI distribution spec's error codes, each with its HTTP status and
//! a message that says what to do.

use berth_store::BlobError;
use berth_upstream::UpstreamError;

use crate::services::{Error, ErrorKind};

/// The error codes of the OCI distribution spec, plus distribution's UNAVAILABLE and
/// UNKNOWN.
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
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    Unavailable,
    Unknown,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::Unavailable => "UNAVAILABLE",
            Code::Unknown => "UNKNOWN",
        }
    }

    /// The status the spec (or distribution, where the spec is silent) answers with.
    pub fn status(self) -> u16 {
        match self {
            Code::BlobUnknown | Code::BlobUploadUnknown | Code::ManifestUnknown | Code::NameUnknown => 404,
            Code::BlobUploadInvalid
            | Code::DigestInvalid
            | Code::ManifestBlobUnknown
            | Code::ManifestInvalid
            | Code::NameInvalid
            | Code::SizeInvalid => 400,
            Code::Unauthorized => 401,
            Code::Denied => 403,
            Code::Unsupported => 405,
            Code::TooManyRequests => 429,
            Code::Unavailable => 503,
            Code::Unknown => 500,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RegistryError {
    pub code: Code,
    pub status: u16,
    pub message: String,
    /// For an upload chunk out of order (416): the bytes the upload has.
    pub upload_size: Option<u64>,
}

impl RegistryError {
    pub fn new(code: Code, message: impl Into<String>) -> RegistryError {
        RegistryError { code, status: code.status(), message: message.into(), upload_size: None }
    }

    pub fn with_status(mut self, status: u16) -> RegistryError {
        self.status = status;
        self
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
            BlobError::OutOfOrder { size, .. } => {
                return RegistryError {
                    upload_size: Some(*size),
                    ..RegistryError::new(Code::BlobUploadInvalid, err.to_string()).with_status(416)
                };
            }
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
