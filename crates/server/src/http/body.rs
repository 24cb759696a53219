//! Request bodies: a size cap, JSON or YAML by `Content-Type`, the `kind`/`apiVersion`
//! check, and merge patches.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use axum::response::Response;
use berth_model::meta::TypeMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::http::render_error;
use crate::services::{Error, ErrorKind};

/// The largest request body accepted, as in Kubernetes (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// A request body read whole, up to [`MAX_BODY_BYTES`], with its content type.
pub struct RawBody {
    pub bytes: Bytes,
    pub content_type: String,
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Response;

    async fn from_request(req: Request, _state: &S) -> Result<RawBody, Response> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_string();
        let too_large = || {
            render_error(Error::new(
                ErrorKind::TooLarge,
                format!("the request body is larger than {MAX_BODY_BYTES} bytes: split the change into smaller objects"),
            ))
        };
        if req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > MAX_BODY_BYTES)
        {
            return Err(too_large());
        }
        match axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES).await {
            Ok(bytes) => Ok(RawBody { bytes, content_type }),
            Err(_) => Err(too_large()),
        }
    }
}

fn is_yaml(content_type: &str) -> bool {
    content_type.contains("yaml")
}

/// Parses a body as JSON or YAML into a generic value.
fn parse_value(body: &RawBody) -> Result<Value, Error> {
    if body.bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::bad_request("the request body is empty: send the object as JSON or YAML"));
    }
    if body.content_type.starts_with(crate::http::protobuf::CONTENT_TYPE) {
        crate::http::protobuf::to_value(&body.bytes)
    } else if is_yaml(&body.content_type) {
        yaml_serde::from_slice(&body.bytes).map_err(|err| Error::bad_request(format!("the request body is not valid YAML: {err}")))
    } else if body.content_type.contains("json") || body.content_type.is_empty() {
        serde_json::from_slice(&body.bytes).map_err(|err| Error::bad_request(format!("the request body is not valid JSON: {err}")))
    } else {
        Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            format!("content type {:?} is not supported: send application/json or application/yaml", body.content_type),
        ))
    }
}

/// Decodes a body into `T`, after checking that its `kind` and `apiVersion`, when given,
/// are the ones this URL takes.
pub fn decode<T: DeserializeOwned>(body: &RawBody, kind: &str, api_version: &str) -> Result<T, Error> {
    let value = parse_value(body)?;
    decode_value(value, kind, api_version)
}

pub fn decode_value<T: DeserializeOwned>(value: Value, kind: &str, api_version: &str) -> Result<T, Error> {
    if !value.is_object() {
        return Err(Error::bad_request(format!("the request body must be a {kind} object")));
    }
    let type_meta: TypeMeta = serde_json::from_value(value.clone()).unwrap_or_default();
    if !type_meta.kind.is_empty() && type_meta.kind != kind {
        return Err(Error::bad_request(format!("the body is a {:?}, but this URL takes {kind}", type_meta.kind)));
    }
    if !type_meta.api_version.is_empty() && type_meta.api_version != api_version {
        return Err(Error::bad_request(format!("apiVersion {:?} is not served here: use {api_version:?}", type_meta.api_version)));
    }
    serde_json::from_value(value).map_err(|err| Error::bad_request(format!("the {kind} in the request body is malformed: {err}")))
}

/// Applies a patch body to `current`: JSON merge patch (RFC 7386), or a strategic merge
/// patch, where lists of objects with a `name` are merged by name (as `spec.tags` is).
pub fn apply_patch(current: Value, body: &RawBody) -> Result<Value, Error> {
    let strategic = match body.content_type.split(';').next().unwrap_or_default().trim() {
        "application/merge-patch+json" => false,
        "application/strategic-merge-patch+json" => true,
        other => {
            return Err(Error::new(
                ErrorKind::UnsupportedMediaType,
                format!(
                    "patch type {other:?} is not supported: use application/merge-patch+json or application/strategic-merge-patch+json"
                ),
            ));
        }
    };
    let patch: Value =
        serde_json::from_slice(&body.bytes).map_err(|err| Error::bad_request(format!("the patch is not valid JSON: {err}")))?;
    if !patch.is_object() {
        return Err(Error::bad_request("the patch must be a JSON object"));
    }
    let mut target = current;
    merge(&mut target, patch, strategic);
    Ok(target)
}

/// Merges `patch` into `target`: RFC 7386 (nulls remove keys, lists replace), and for a
/// strategic merge patch also Kubernetes' merging of lists of named objects by `name`
/// and its directives: `$patch: delete` on a list item or `$patch: replace` on an object
/// or list, `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>` and
/// `$retainKeys`.
fn merge(target: &mut Value, patch: Value, strategic: bool) {
    match patch {
        Value::Object(mut fields) => {
            if strategic && fields.get("$patch").and_then(Value::as_str) == Some("replace") {
                fields.remove("$patch");
                *target = Value::Object(fields);
                return;
            }
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let retain = if strategic { fields.remove("$retainKeys") } else { None };
            let mut orders = Vec::new();
            let mut removals = Vec::new();
            let object = target.as_object_mut().expect("made an object above");
            for (key, value) in fields {
                if strategic && let Some(list) = key.strip_prefix("$setElementOrder/") {
                    orders.push((list.to_string(), value));
                } else if strategic && let Some(list) = key.strip_prefix("$deleteFromPrimitiveList/") {
                    removals.push((list.to_string(), value));
                } else if value.is_null() {
                    object.remove(&key);
                } else {
                    merge(object.entry(key).or_insert(Value::Null), value, strategic);
                }
            }
            for (list, gone) in removals {
                if let (Some(Value::Array(items)), Value::Array(gone)) = (object.get_mut(&list), gone) {
                    items.retain(|item| !gone.contains(item));
                }
            }
            for (list, order) in orders {
                if let (Some(Value::Array(items)), Value::Array(order)) = (object.get_mut(&list), order) {
                    let position = |item: &Value| {
                        order.iter().position(|o| o.get("name").is_some() && o.get("name") == item.get("name") || *o == *item)
                    };
                    items.sort_by_key(|item| position(item).unwrap_or(usize::MAX));
                }
            }
            if let Some(Value::Array(keep)) = retain {
                object.retain(|key, _| keep.iter().any(|k| k.as_str() == Some(key)));
            }
        }
        Value::Array(items) if strategic && items.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace")) => {
            *target = Value::Array(items.into_iter().filter(|i| i.get("$patch").is_none()).collect());
        }
        Value::Array(items) if strategic && items.iter().all(|i| i.get("name").is_some_and(Value::is_string)) && target.is_array() => {
            let existing = target.as_array_mut().expect("checked above");
            for item in items {
                let name = item.get("name").cloned();
                let position = existing.iter().position(|e| e.get("name") == name.as_ref());
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    if let Some(position) = position {
                        existing.remove(position);
                    }
                    continue;
                }
                match position {
                    Some(position) => merge(&mut existing[position], item, strategic),
                    None => existing.push(item),
                }
            }
        }
        other => *target = other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(current: &str, patch: &str, content_type: &str) -> Value {
        let body = RawBody { bytes: Bytes::from(patch.to_string()), content_type: content_type.to_string() };
        apply_patch(serde_json::from_str(current).unwrap(), &body).unwrap()
    }

    #[test]
    fn merge_patch_replaces_lists_and_removes_nulls() {
        let out =
            patch(r#"{"a":{"b":1,"c":2},"l":[{"name":"x"}]}"#, r#"{"a":{"c":null},"l":[{"name":"y"}]}"#, "application/merge-patch+json");
        assert_eq!(out, serde_json::json!({"a":{"b":1},"l":[{"name":"y"}]}));
    }

    #[test]
    fn strategic_patches_follow_kubectls_directives() {
        let current = r#"{"tags":[{"name":"a","v":1},{"name":"b","v":1},{"name":"c","v":1}],"finalizers":["x","y"],"extra":{"k":1,"l":2}}"#;
        let out = patch(
            current,
            r#"{"$setElementOrder/tags":[{"name":"c"},{"name":"a"}],"tags":[{"name":"b","$patch":"delete"},{"name":"a","v":2}],
                "$deleteFromPrimitiveList/finalizers":["x"],"extra":{"$patch":"replace","m":3}}"#,
            "application/strategic-merge-patch+json",
        );
        assert_eq!(out, serde_json::json!({"tags":[{"name":"c","v":1},{"name":"a","v":2}],"finalizers":["y"],"extra":{"m":3}}));
        let replaced = patch(
            r#"{"tags":[{"name":"a"}]}"#,
            r#"{"tags":[{"$patch":"replace"},{"name":"z"}]}"#,
            "application/strategic-merge-patch+json",
        );
        assert_eq!(replaced, serde_json::json!({"tags":[{"name":"z"}]}));
        let retained = patch(r#"{"a":1,"b":2}"#, r#"{"$retainKeys":["b","c"],"c":3}"#, "application/strategic-merge-patch+json");
        assert_eq!(retained, serde_json::json!({"b":2,"c":3}));
    }

    #[test]
    fn strategic_patch_merges_named_lists() {
        let out = patch(
            r#"{"tags":[{"name":"x","v":1},{"name":"y","v":1}]}"#,
            r#"{"tags":[{"name":"y","v":2},{"name":"z"}]}"#,
            "application/strategic-merge-patch+json",
        );
        assert_eq!(out, serde_json::json!({"tags":[{"name":"x","v":1},{"name":"y","v":2},{"name":"z"}]}));
    }
}
