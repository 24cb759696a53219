//! Request bodies in Kubernetes' protobuf encoding, which kubectl's typed clients send
//! for core kinds (`kubectl create quota`): the `k8s\0` envelope around a
//! `runtime.Unknown`, whose `raw` bytes are the object in `k8s.io/api`'s
//! `generated.proto` shape. berth reads the kinds it serves that kubectl creates this
//! way, into the same JSON the other encodings give, and refuses the rest by name.

use std::collections::BTreeMap;

use prost::Message;
use serde_json::{Value, json};

use crate::services::{Error, ErrorKind};

/// The content type kubectl names protobuf bodies with.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", tag = "2")]
    raw: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, tag = "1")]
    api_version: String,
    #[prost(string, tag = "2")]
    kind: String,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "3")]
    namespace: String,
    #[prost(string, tag = "6")]
    resource_version: String,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
struct Quantity {
    #[prost(string, tag = "1")]
    string: String,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceQuotaSpec {
    #[prost(btree_map = "string, message", tag = "1")]
    hard: BTreeMap<String, Quantity>,
    #[prost(string, repeated, tag = "2")]
    scopes: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceQuota {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    spec: Option<ResourceQuotaSpec>,
}

fn malformed(what: &str) -> Error {
    Error::bad_request(format!("the request body is not a Kubernetes protobuf object: {what}; send application/json or application/yaml"))
}

fn metadata(meta: Option<ObjectMeta>) -> Value {
    let meta = meta.unwrap_or_default();
    let mut value = json!({"name": meta.name, "labels": meta.labels, "annotations": meta.annotations});
    for (key, text) in [("namespace", meta.namespace), ("resourceVersion", meta.resource_version)] {
        if !text.is_empty() {
            value[key] = Value::String(text);
        }
    }
    value
}

/// The object a protobuf body holds, as JSON.
pub fn to_value(bytes: &[u8]) -> Result<Value, Error> {
    let envelope = bytes.strip_prefix(MAGIC).ok_or_else(|| malformed("it does not start with the k8s envelope"))?;
    let unknown = Unknown::decode(envelope).map_err(|err| malformed(&err.to_string()))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    match (type_meta.api_version.as_str(), type_meta.kind.as_str()) {
        ("v1", "ResourceQuota") => {
            let quota = ResourceQuota::decode(unknown.raw.as_slice()).map_err(|err| malformed(&err.to_string()))?;
            let spec = quota.spec.unwrap_or_default();
            let hard: BTreeMap<String, String> = spec.hard.into_iter().map(|(k, q)| (k, q.string)).collect();
            Ok(json!({
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": metadata(quota.metadata),
                "spec": {"hard": hard, "scopes": spec.scopes},
            }))
        }
        (api_version, kind) => Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "berth reads protobuf bodies of ResourceQuota only, not {kind} ({api_version}): send application/json or application/yaml (kubectl apply does)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_quota_as_kubectl_create_quota_sends_it_reads_as_json() {
        let quota = ResourceQuota {
            metadata: Some(ObjectMeta { name: "images".into(), ..ObjectMeta::default() }),
            spec: Some(ResourceQuotaSpec {
                hard: [("openshift.io/imagestreams".to_string(), Quantity { string: "10".into() })].into(),
                scopes: Vec::new(),
            }),
        };
        let unknown =
            Unknown { type_meta: Some(TypeMeta { api_version: "v1".into(), kind: "ResourceQuota".into() }), raw: quota.encode_to_vec() };
        let body = [MAGIC, &unknown.encode_to_vec()].concat();
        let value = to_value(&body).unwrap();
        assert_eq!(value["metadata"]["name"], "images");
        assert_eq!(value["spec"]["hard"]["openshift.io/imagestreams"], "10");

        let secret = Unknown { type_meta: Some(TypeMeta { api_version: "v1".into(), kind: "Secret".into() }), raw: Vec::new() };
        let err = to_value(&[MAGIC, &secret.encode_to_vec()].concat()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnsupportedMediaType);
        assert!(err.message.contains("not Secret (v1)"), "{}", err.message);
        assert_eq!(to_value(b"{}").unwrap_err().kind, ErrorKind::BadRequest);
    }
}
