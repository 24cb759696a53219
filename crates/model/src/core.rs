//! The Kubernetes core kinds berth serves (Namespace, Secret) and berth's own Token.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::access::{Grant, Role, Scope};
use crate::names::{check_dns_label, check_dns_subdomain};
use crate::{BERTH_API_VERSION, FieldError, ObjectMeta, Time};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: NamespaceStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NamespaceStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
}

impl Namespace {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = check_dns_label("metadata.name", &self.metadata.name).err().into_iter().collect();
        errors.extend(crate::tags::immutable::check_annotation(&self.metadata.annotations));
        errors
    }
}

/// The Secret types berth stores: pull credentials.
pub const SECRET_TYPE_DOCKERCONFIGJSON: &str = "kubernetes.io/dockerconfigjson";
pub const SECRET_TYPE_DOCKERCFG: &str = "kubernetes.io/dockercfg";
/// Arbitrary keys, such as the key that signs a Subscription's deliveries.
pub const SECRET_TYPE_OPAQUE: &str = "Opaque";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(rename = "type", default)]
    pub secret_type: String,
    /// Values base64-encoded, as in Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<BTreeMap<String, String>>,
    /// Plain-text values, merged into `data` on write and never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_data: Option<BTreeMap<String, String>>,
}

impl Secret {
    /// The key holding the credentials for this secret's type.
    pub fn credentials_key(&self) -> &'static str {
        if self.secret_type == SECRET_TYPE_DOCKERCFG { ".dockercfg" } else { ".dockerconfigjson" }
    }

    /// Checks names and type. `decoded` is the decoded credentials document, which the
    /// caller (the edge that knows base64) extracts.
    pub fn validate(&self, decoded: Option<&[u8]>) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = check_dns_subdomain("metadata.name", &self.metadata.name).err().into_iter().collect();
        if self.secret_type == SECRET_TYPE_OPAQUE {
            return errors;
        }
        if self.secret_type != SECRET_TYPE_DOCKERCONFIGJSON && self.secret_type != SECRET_TYPE_DOCKERCFG {
            errors.push(FieldError::new(
                "type",
                format!(
                    "secret type {:?} is not stored by berth: use {SECRET_TYPE_DOCKERCONFIGJSON} for registry pull credentials, or {SECRET_TYPE_OPAQUE} for other keys",
                    self.secret_type
                ),
            ));
            return errors;
        }
        let key = self.credentials_key();
        let field = format!("data[{key}]");
        match decoded.map(serde_json::from_slice::<serde_json::Value>) {
            None => errors.push(FieldError::new(field, format!("{key} is required"))),
            Some(Err(err)) => errors.push(FieldError::new(field, format!("{key} is not valid JSON: {err}"))),
            Some(Ok(doc)) if self.secret_type == SECRET_TYPE_DOCKERCONFIGJSON && !doc.get("auths").is_some_and(|a| a.is_object()) => {
                errors.push(FieldError::new(field, "must be a JSON object with an \"auths\" map of registry → credentials"));
            }
            Some(Ok(_)) => {}
        }
        errors
    }
}

/// An API token (berth.dev/v1 Token): a role on some namespaces, or on the whole cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: TokenSpec,
    /// Only in the response that creates the token: the bearer token itself, shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TokenStatus>,
    /// The SHA-256 of the token's secret part, as stored; never returned.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret_sha256: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenStatus {
    pub token: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenSpec {
    pub role: Role,
    /// The namespaces the role applies in; `["*"]` means the whole cluster.
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_timestamp: Option<Time>,
}

impl Token {
    pub fn new(name: &str, spec: TokenSpec) -> Token {
        Token {
            kind: "Token".to_string(),
            api_version: BERTH_API_VERSION.to_string(),
            metadata: ObjectMeta { name: name.to_string(), ..ObjectMeta::default() },
            spec,
            status: None,
            secret_sha256: String::new(),
        }
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = check_dns_label("metadata.name", &self.metadata.name).err().into_iter().collect();
        if self.spec.namespaces.is_empty() {
            errors.push(FieldError::new("spec.namespaces", "name at least one namespace, or \"*\" for the whole cluster"));
        }
        for (idx, namespace) in self.spec.namespaces.iter().enumerate() {
            if namespace != "*"
                && let Err(err) = check_dns_label(&format!("spec.namespaces[{idx}]"), namespace)
            {
                errors.push(err);
            }
        }
        if self.spec.role == Role::Scanner && !self.spec.namespaces.iter().any(|n| n == "*") {
            errors.push(FieldError::new("spec.role", "a scanner marks images, which are cluster-wide: create it with --cluster"));
        }
        errors
    }

    pub fn grant(&self) -> Grant {
        let scope =
            if self.spec.namespaces.iter().any(|n| n == "*") { Scope::Cluster } else { Scope::Namespaces(self.spec.namespaces.clone()) };
        Grant { role: self.spec.role, scope }
    }

    pub fn expired(&self, now: Time) -> bool {
        self.spec.expiration_timestamp.is_some_and(|at| at <= now)
    }
}
