//! `ImageStreamImport` (create only): look up images in other registries and, unless it
//! is a dry run, import them into a stream. The shapes are OpenShift's
//! (reference/openshift.md §1, §2).

use serde::{Deserialize, Serialize};

use crate::ObjectMeta;
use crate::image::Image;
use crate::imagestream::{ImageStream, TagImportPolicy, TagReferencePolicy};
use crate::meta::{ObjectReference, Status};

/// How many tags a whole-repository import takes when the server's config says nothing
/// (OpenShift's `maxImagesBulkImportedPerRepository`).
pub const DEFAULT_MAX_IMAGES_BULK_IMPORTED: i64 = 50;

/// Reasons an image's import failed, as `status.images[].status.reason`.
pub mod reason {
    pub const NOT_FOUND: &str = "NotFound";
    pub const UNAUTHORIZED: &str = "Unauthorized";
    pub const FORBIDDEN: &str = "Forbidden";
    pub const TIMEOUT: &str = "Timeout";
    pub const DIGEST_MISMATCH: &str = "DigestMismatch";
    pub const INCOMPLETE: &str = "IncompleteResponse";
    pub const INVALID: &str = "Invalid";
    pub const UNSUPPORTED: &str = "Unsupported";
    pub const TOO_MANY_REQUESTS: &str = "TooManyRequests";
    pub const UNAVAILABLE: &str = "ServiceUnavailable";
    pub const INTERNAL: &str = "InternalError";
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamImport {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `name` is the stream to import into.
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ImageStreamImportSpec,
    #[serde(default)]
    pub status: ImageStreamImportStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamImportSpec {
    /// `false` looks the images up and stores nothing.
    #[serde(default)]
    pub import: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryImportSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageImportSpec>,
}

/// Import the tags of a whole repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryImportSpec {
    /// `kind: DockerImage`, `name: registry/repository`.
    pub from: ObjectReference,
    #[serde(default)]
    pub import_policy: TagImportPolicy,
    #[serde(default)]
    pub reference_policy: TagReferencePolicy,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_manifest: bool,
}

/// Import one image, into the tag `to` (default: the tag of `from`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageImportSpec {
    pub from: ObjectReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<LocalObjectReference>,
    #[serde(default)]
    pub import_policy: TagImportPolicy,
    #[serde(default)]
    pub reference_policy: TagReferencePolicy,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_manifest: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LocalObjectReference {
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamImportStatus {
    /// The stream after the import (absent on a dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImageStream>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryImportStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageImportStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryImportStatus {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageImportStatus>,
    /// Tags of the repository left out by the bulk-import cap, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_tags: Vec<String>,
}

/// The result for one image: `status.status` is `Success` or `Failure` (with `reason`,
/// `message` and `code`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageImportStatus {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// The children of a manifest list kept with `importMode: PreserveOriginal`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Image>,
}

impl Status {
    /// A per-image success.
    pub fn success() -> Status {
        Status { status: "Success".to_string(), code: 200, ..Status::default() }
    }

    /// A per-image failure with a reason a user can act on.
    pub fn failure(reason: &str, code: u16, message: impl Into<String>) -> Status {
        Status { status: "Failure".to_string(), reason: reason.to_string(), code, message: message.into(), ..Status::default() }
    }

    pub fn is_success(&self) -> bool {
        self.status == "Success"
    }
}
