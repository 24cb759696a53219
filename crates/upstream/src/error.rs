//! What can go wrong talking to a registry, as a kind (which decides the reason a user
//! sees) and a message that says what happened and what to do. Messages never carry
//! credentials: they name the secret a credential came from at most.

use berth_model::imagestreamimport::reason;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The repository, tag or digest does not exist.
    NotFound,
    /// The registry wants credentials it did not get (or rejected the ones given).
    Unauthorized,
    /// The registry refused, or berth's settings forbid this registry.
    Forbidden,
    /// No answer in time.
    Timeout,
    /// Content that does not hash to the digest it was asked for or announced with.
    DigestMismatch,
    /// The connection ended before the whole body arrived.
    Incomplete,
    /// A manifest or config berth cannot read.
    Invalid,
    /// A manifest kind berth does not import (Docker schema 1).
    Unsupported,
    /// Still 429 after the retries.
    TooManyRequests,
    /// Unreachable, or 5xx after the retries.
    Unavailable,
    /// A body larger than berth accepts.
    TooLarge,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    pub kind: ErrorKind,
    pub message: String,
}

impl UpstreamError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> UpstreamError {
        UpstreamError { kind, message: message.into() }
    }

    /// The `reason` an import status carries for this error.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            ErrorKind::NotFound => reason::NOT_FOUND,
            ErrorKind::Unauthorized => reason::UNAUTHORIZED,
            ErrorKind::Forbidden => reason::FORBIDDEN,
            ErrorKind::Timeout => reason::TIMEOUT,
            ErrorKind::DigestMismatch => reason::DIGEST_MISMATCH,
            ErrorKind::Incomplete => reason::INCOMPLETE,
            ErrorKind::Invalid | ErrorKind::TooLarge => reason::INVALID,
            ErrorKind::Unsupported => reason::UNSUPPORTED,
            ErrorKind::TooManyRequests => reason::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable => reason::UNAVAILABLE,
        }
    }

    /// The HTTP status code an import status carries for this error.
    pub fn code(&self) -> u16 {
        match self.kind {
            ErrorKind::NotFound => 404,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::Timeout => 504,
            ErrorKind::DigestMismatch | ErrorKind::Invalid | ErrorKind::Unsupported => 422,
            ErrorKind::TooLarge => 413,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::Incomplete | ErrorKind::Unavailable => 503,
        }
    }

    /// Whether trying the same request again may help.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Timeout | ErrorKind::Incomplete | ErrorKind::Unavailable | ErrorKind::TooManyRequests)
    }
}

pub type Result<T, E = UpstreamError> = std::result::Result<T, E>;
