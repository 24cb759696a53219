//! The audit edge: a middleware that records every write as an `audit.k8s.io/v1` Event
//! once its response is complete (before it is sent), and `GET
//! /apis/berth.dev/v1/auditevents` for cluster admins.
//!
//! What is a write: `POST`, `PUT`, `PATCH` and `DELETE` on the API (`/api/…`,
//! `/apis/…`); on the registry, a manifest put or delete and a blob delete (blob uploads
//! are the parts of a push, whose manifest put is the event); a registry webhook (`POST
//! /webhooks/NAME`), which may start imports. Reads are not recorded. Events carry the
//! request's metadata only, never a body, so no secret data or credential is written.

use std::net::SocketAddr;

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use berth_model::audit::{AUDIT_API_VERSION, Event, ObjectReference, ResponseStatus, UserInfo};
use berth_model::time::MicroTime;
use serde::Deserialize;

use super::{App, bearer, call, render_error, respond};
use crate::services::Error;
use crate::services::audit::AuditQuery;

/// Responses up to this size are read for the name of the object a `POST` created.
const NAME_PEEK_BYTES: u64 = 1 << 20;
const ANONYMOUS: &str = "system:anonymous";

/// What kind of write a request is, and what it acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Audited {
    verb: String,
    object: Option<ObjectReference>,
    via: Via,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Via {
    Api,
    Registry,
    Webhook(String),
}

/// Whether a request is audited, and as what.
pub(crate) fn audited(method: &Method, path: &str) -> Option<Audited> {
    let writes = matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    if !writes {
        return None;
    }
    if let Some(name) = path.strip_prefix("/webhooks/") {
        let object = ObjectReference { resource: "webhooks".into(), name: decode(name), ..ObjectReference::default() };
        return Some(Audited { verb: lower(method), object: Some(object), via: Via::Webhook(decode(name)) });
    }
    if let Some(rest) = path.strip_prefix("/v2/") {
        return registry_object(method, rest).map(|object| Audited { verb: lower(method), object: Some(object), via: Via::Registry });
    }
    let (group, version, rest) = if let Some(rest) = path.strip_prefix("/api/v1/") {
        ("", "v1", rest)
    } else {
        let rest = path.strip_prefix("/apis/")?;
        let mut parts = rest.splitn(3, '/');
        let (group, version, rest) = (parts.next()?, parts.next()?, parts.next()?);
        (group, version, rest)
    };
    let segments: Vec<String> = rest.split('/').filter(|s| !s.is_empty()).map(decode).collect();
    let (namespace, resource, name, subresource) = match segments.as_slice() {
        [ns_word, namespace, resource, rest @ ..] if ns_word == "namespaces" => {
            (namespace.clone(), resource.clone(), rest.first().cloned(), rest.get(1).cloned())
        }
        [resource, rest @ ..] => {
            let name = rest.first().cloned();
            // A namespace is its own namespace, as Kubernetes records it.
            let namespace = if resource == "namespaces" { name.clone().unwrap_or_default() } else { String::new() };
            (namespace, resource.clone(), name, rest.get(1).cloned())
        }
        [] => return None,
    };
    let verb = match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        _ => "delete",
    };
    let object = ObjectReference {
        resource,
        namespace,
        name: name.unwrap_or_default(),
        api_group: group.to_string(),
        api_version: version.to_string(),
        subresource: subresource.unwrap_or_default(),
    };
    Some(Audited { verb: verb.to_string(), object: Some(object), via: Via::Api })
}

/// The catalog object a registry write changes: the tag or image of a manifest put or
/// delete, or the blob of a blob delete. `None` for what is not audited (uploads, reads).
fn registry_object(method: &Method, rest: &str) -> Option<ObjectReference> {
    let (repository, reference, resource) = if let Some((repository, reference)) = rest.rsplit_once("/manifests/") {
        let resource = if reference.contains(':') { "imagestreamimages" } else { "imagestreamtags" };
        (repository, reference, resource)
    } else {
        let (repository, digest) = rest.rsplit_once("/blobs/")?;
        if *method != Method::DELETE || digest.starts_with("uploads") {
            return None;
        }
        (repository, digest, "blobs")
    };
    if !matches!(*method, Method::PUT | Method::DELETE) {
        return None;
    }
    let (namespace, stream) = repository.split_once('/').unwrap_or(("", repository));
    let separator = if reference.contains(':') { '@' } else { ':' };
    let (api_group, api_version) = if resource == "blobs" { ("", "") } else { ("image.openshift.io", "v1") };
    Some(ObjectReference {
        resource: resource.into(),
        namespace: decode(namespace),
        name: format!("{}{separator}{}", decode(stream), decode(reference)),
        api_group: api_group.into(),
        api_version: api_version.into(),
        subresource: String::new(),
    })
}

fn lower(method: &Method) -> String {
    method.as_str().to_ascii_lowercase()
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

/// Records the writes that pass through. The event is written before the response goes
/// out, so that an acknowledged write is always audited.
pub(crate) async fn record(State(app): State<App>, request: Request, next: Next) -> Response {
    let Some(audited) = audited(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let received = MicroTime::now();
    let request_uri = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let source_ips: Vec<String> =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip().to_string()).into_iter().collect();
    let mut credentials = HeaderMap::new();
    for name in [header::AUTHORIZATION, header::USER_AGENT] {
        if let Some(value) = request.headers().get(&name) {
            credentials.insert(name, value.clone());
        }
    }
    let response = next.run(request).await;
    let code = response.status();
    let mut object = audited.object;
    let response = match object.as_mut() {
        Some(object) if object.name.is_empty() => {
            let (response, name) = peek_name(response).await;
            object.name = name.unwrap_or_default();
            response
        }
        _ => response,
    };
    let event = Event {
        kind: "Event".into(),
        api_version: AUDIT_API_VERSION.into(),
        level: "Metadata".into(),
        audit_id: uuid::Uuid::new_v4().to_string(),
        stage: "ResponseComplete".into(),
        request_uri,
        verb: audited.verb,
        user: UserInfo { username: user(&app, &audited.via, &credentials, code).await },
        source_ips,
        user_agent: credentials.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string(),
        object_ref: object,
        response_status: Some(ResponseStatus { metadata: Default::default(), code: code.as_u16() }),
        request_received_timestamp: received,
        stage_timestamp: MicroTime::now(),
    };
    if let Err(err) = app.audit.record(&event) {
        metrics::counter!(crate::metrics::AUDIT_FAILURES).increment(1);
        tracing::error!(error = %err, uri = %event.request_uri, "could not write the audit event of a request");
    }
    response
}

/// Who made the request: the name of the token it carried (checked again here, from the
/// cache); `system:anonymous` when it carried none that is valid.
async fn user(app: &App, via: &Via, headers: &HeaderMap, code: StatusCode) -> String {
    let caller = match via {
        Via::Api => app.catalog.authenticate(bearer(headers).as_deref()).ok(),
        Via::Registry => app.registry.authenticate(super::registry::credential(headers)).await.ok(),
        Via::Webhook(name) if code != StatusCode::UNAUTHORIZED => return format!("system:webhook:{name}"),
        Via::Webhook(_) => None,
    };
    caller.map(|caller| caller.token).unwrap_or_else(|| ANONYMOUS.to_string())
}

/// The name of the object a response carries (`metadata.name`, or `details.name` of a
/// Status), read when the body is small and whole; the response is passed on intact.
async fn peek_name(response: Response) -> (Response, Option<String>) {
    let small = response.body().size_hint().exact().is_some_and(|size| size <= NAME_PEEK_BYTES);
    if !small {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, NAME_PEEK_BYTES as usize).await else {
        return (Response::from_parts(parts, Body::empty()), None);
    };
    #[derive(Deserialize)]
    struct Named {
        #[serde(default)]
        metadata: Option<NameOnly>,
        #[serde(default)]
        details: Option<NameOnly>,
    }
    #[derive(Deserialize)]
    struct NameOnly {
        #[serde(default)]
        name: String,
    }
    let name = serde_json::from_slice::<Named>(&bytes)
        .ok()
        .and_then(|named| named.metadata.filter(|m| !m.name.is_empty()).or(named.details))
        .map(|n| n.name)
        .filter(|n| !n.is_empty());
    (Response::from_parts(parts, Body::from(bytes)), name)
}

/// The query of `GET /apis/berth.dev/v1/auditevents`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditParams {
    namespace: Option<String>,
    user: Option<String>,
    resource: Option<String>,
    name: Option<String>,
    verb: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
}

fn parse_time(field: &str, text: Option<String>) -> Result<Option<MicroTime>, Error> {
    text.map(|text| {
        serde_json::from_value::<MicroTime>(serde_json::Value::String(text.clone()))
            .map_err(|_| Error::bad_request(format!("{field}={text:?} is not a time: give RFC 3339, e.g. 2026-12-01T10:00:00Z")))
    })
    .transpose()
}

/// `GET /apis/berth.dev/v1/auditevents`: the newest matching events, oldest first.
pub(crate) async fn list(State(app): State<App>, Query(params): Query<AuditParams>, headers: HeaderMap) -> Response {
    let limit = match params.limit.map(|text| text.parse::<usize>().map_err(|_| text)).transpose() {
        Ok(limit) => limit,
        Err(text) => {
            return render_error(Error::bad_request(format!(
                "limit={text:?} is not a number: give how many of the newest events to return (at most {})",
                crate::services::audit::MAX_LIMIT
            )));
        }
    };
    let query = match (parse_time("since", params.since), parse_time("until", params.until)) {
        (Ok(since), Ok(until)) => AuditQuery {
            namespace: params.namespace,
            user: params.user,
            resource: params.resource,
            name: params.name,
            verb: params.verb,
            since,
            until,
            limit,
        },
        (Err(err), _) | (_, Err(err)) => return render_error(err),
    };
    let audit = app.audit.clone();
    let result = call(&app, &headers, move |_, caller| audit.read(caller, &query)).await;
    respond(&headers, StatusCode::OK, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(method: Method, path: &str) -> Option<(String, ObjectReference)> {
        audited(&method, path).map(|a| (a.verb, a.object.unwrap()))
    }

    #[test]
    fn api_paths_name_the_object_as_kubernetes_does() {
        let (verb, istag) = object(Method::PUT, "/apis/image.openshift.io/v1/namespaces/team/imagestreamtags/app%3A1.0").unwrap();
        assert_eq!(verb, "update");
        assert_eq!(
            istag,
            ObjectReference {
                resource: "imagestreamtags".into(),
                namespace: "team".into(),
                name: "app:1.0".into(),
                api_group: "image.openshift.io".into(),
                api_version: "v1".into(),
                subresource: String::new(),
            }
        );
        let (verb, created) = object(Method::POST, "/api/v1/namespaces/team/secrets").unwrap();
        assert_eq!(
            (verb.as_str(), created.resource.as_str(), created.name.as_str(), created.api_group.as_str()),
            ("create", "secrets", "", "")
        );
        let (_, namespace) = object(Method::DELETE, "/api/v1/namespaces/team").unwrap();
        assert_eq!((namespace.resource.as_str(), namespace.namespace.as_str(), namespace.name.as_str()), ("namespaces", "team", "team"));
        let (verb, token) = object(Method::DELETE, "/apis/berth.dev/v1/tokens/ci").unwrap();
        assert_eq!((verb.as_str(), token.name.as_str(), token.namespace.as_str()), ("delete", "ci", ""));
        assert_eq!(object(Method::GET, "/apis/image.openshift.io/v1/namespaces/team/imagestreams"), None, "reads are not audited");
    }

    #[test]
    fn registry_writes_name_the_tag_image_or_blob_and_uploads_are_not_audited() {
        let (verb, tag) = object(Method::PUT, "/v2/team/app/manifests/1.0").unwrap();
        assert_eq!(
            (verb.as_str(), tag.resource.as_str(), tag.namespace.as_str(), tag.name.as_str()),
            ("put", "imagestreamtags", "team", "app:1.0")
        );
        let (verb, image) = object(Method::DELETE, "/v2/team/app/manifests/sha256:abc").unwrap();
        assert_eq!((verb.as_str(), image.resource.as_str(), image.name.as_str()), ("delete", "imagestreamimages", "app@sha256:abc"));
        let (_, blob) = object(Method::DELETE, "/v2/team/app/blobs/sha256:abc").unwrap();
        assert_eq!((blob.resource.as_str(), blob.name.as_str()), ("blobs", "app@sha256:abc"));
        assert_eq!(object(Method::POST, "/v2/team/app/blobs/uploads/"), None);
        assert_eq!(object(Method::PATCH, "/v2/team/app/blobs/uploads/0f1e"), None);
        assert_eq!(object(Method::PUT, "/v2/team/app/blobs/uploads/0f1e"), None);
        assert_eq!(object(Method::GET, "/v2/team/app/manifests/1.0"), None);
        let (verb, hook) = object(Method::POST, "/webhooks/quay").unwrap();
        assert_eq!((verb.as_str(), hook.resource.as_str(), hook.name.as_str()), ("post", "webhooks", "quay"));
    }
}
