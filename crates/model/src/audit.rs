//! Audit events in the shape of Kubernetes' `audit.k8s.io/v1` `Event`: who did what to
//! which object, when, and how it ended. berth records them at the `Metadata` level: no
//! request or response bodies, so never secret data or credentials.

use serde::{Deserialize, Serialize};

use crate::meta::ListMeta;
use crate::time::MicroTime;

pub const AUDIT_API_VERSION: &str = "audit.k8s.io/v1";

/// One request, recorded when its response is complete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: String,
    pub api_version: String,
    /// `Metadata`: the request's metadata, never its body.
    pub level: String,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    /// `ResponseComplete`.
    pub stage: String,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    /// The Kubernetes verb (`create`, `update`, `patch`, `delete`) for API requests; the
    /// lower-cased HTTP method for others (`put` of a manifest, `post` of a webhook).
    pub verb: String,
    pub user: UserInfo,
    #[serde(rename = "sourceIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus>,
    pub request_received_timestamp: MicroTime,
    pub stage_timestamp: MicroTime,
}

/// Who made the request: the token's name, `system:anonymous` when it named no valid
/// token, `system:webhook:NAME` for a verified registry webhook.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub username: String,
}

/// The object a request acted on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// The response's status: its HTTP code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseStatus {
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub code: u16,
}

/// Audit events, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    pub kind: String,
    pub api_version: String,
    #[serde(default)]
    pub metadata: ListMeta,
    pub items: Vec<Event>,
}

impl EventList {
    pub fn new(items: Vec<Event>) -> EventList {
        EventList { kind: "EventList".into(), api_version: AUDIT_API_VERSION.into(), metadata: ListMeta::default(), items }
    }
}
