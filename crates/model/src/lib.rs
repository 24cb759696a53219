//! berth's domain: the image API's types (kept wire-compatible with OpenShift's
//! `image.openshift.io/v1` and the Kubernetes core kinds berth serves), name and digest
//! rules, label selectors, and the tag-history rules that decide what a change does to an
//! image stream.
//!
//! Architecture invariant: this crate does no I/O, knows nothing of HTTP, SQL or async,
//! and every rule here is a pure function of its inputs (the current time is passed in).

pub mod access;
pub mod admission;
pub mod audit;
pub mod contract;
pub mod core;
pub mod digest;
pub mod duration;
pub mod image;
pub mod imagestream;
pub mod imagestreamimport;
pub mod lineage;
pub mod manifest;
pub mod meta;
pub mod names;
pub mod notify;
pub mod policy;
pub mod prune;
pub mod quantity;
pub mod quota;
pub mod reference;
pub mod selector;
pub mod tags;
pub mod time;
pub mod usage;

pub use digest::Digest;
pub use meta::{FieldError, ObjectMeta};
pub use time::Time;

/// An error and its causes in one line (`outer: cause: root cause`): libraries such as
/// reqwest and tokio-postgres keep the detail a user needs (the OS error, the server's
/// message) in the source, not in the error's own text.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The API group and version of OpenShift's image API.
pub const IMAGE_API_VERSION: &str = "image.openshift.io/v1";
/// The API group of berth's own kinds.
pub const BERTH_GROUP: &str = "berth.dev";
/// The API group and version of berth's own kinds.
pub const BERTH_API_VERSION: &str = "berth.dev/v1";
