//! The OCI distribution endpoint `/v2/`: one route, the repository name parsed from the
//! right (`…/manifests/<ref>`, `…/blobs/<digest>`, `…/blobs/uploads/[<id>]`,
//! `…/tags/list`, `…/referrers/<digest>`), the token endpoint `/v2/token`, and errors in
//! the OCI envelope `{"errors":[{code,message,detail}]}`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use headers::authorization::{Basic, Bearer};
use headers::{Authorization, ContentRange, HeaderMapExt};
use serde_json::json;

use crate::http::App;
use crate::services::Caller;
use crate::services::registry::{BlobContent, Code, Credential, RangeRequest, Reference, Registry, RegistryError, Repo, parse_digest};

const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// What a `/v2/` path names.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Catalog,
    Token,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Uploads(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

fn route(rest: &str) -> Option<Route<'_>> {
    match rest {
        "_catalog" => return Some(Route::Catalog),
        "token" => return Some(Route::Token),
        _ => {}
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    let trimmed = rest.strip_suffix('/').unwrap_or(rest);
    if let Some(name) = trimmed.strip_suffix("/blobs/uploads") {
        return Some(Route::Uploads(name));
    }
    let (head, last) = trimmed.rsplit_once('/')?;
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest(name, last)),
        "blobs" => Some(Route::Blob(name, last)),
        "referrers" => Some(Route::Referrers(name, last)),
        "uploads" => name.strip_suffix("/blobs").map(|name| Route::Upload(name, last)),
        _ => None,
    }
}

pub(super) fn credential(headers: &HeaderMap) -> Credential {
    if let Some(Authorization(bearer)) = headers.typed_get::<Authorization<Bearer>>() {
        return Credential::Bearer(bearer.token().to_string());
    }
    if let Some(Authorization(basic)) = headers.typed_get::<Authorization<Basic>>() {
        return Credential::Basic(basic.password().to_string());
    }
    Credential::None
}

/// The status and the OCI envelope's code of each kind of registry error: the spec's, or
/// distribution's where the spec is silent.
fn oci(code: Code) -> (StatusCode, &'static str) {
    match code {
        Code::BlobUnknown => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        Code::BlobUploadInvalid => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
        Code::BlobUploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        Code::DigestInvalid => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        Code::ManifestBlobUnknown => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
        Code::ManifestInvalid => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        Code::ManifestUnknown => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        Code::NameInvalid => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
        Code::NameUnknown => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        Code::SizeInvalid => (StatusCode::BAD_REQUEST, "SIZE_INVALID"),
        Code::ManifestTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
        Code::ChunkOutOfOrder { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
        Code::RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_NOT_SATISFIABLE"),
        Code::PathUnknown => (StatusCode::NOT_FOUND, "NAME_INVALID"),
        Code::MethodUnsupported => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
        Code::PaginationInvalid => (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID"),
        Code::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        Code::Denied => (StatusCode::FORBIDDEN, "DENIED"),
        Code::Unsupported => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
        Code::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        Code::Unknown => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
    }
}

/// Renders a registry error in the OCI envelope. A 401 carries the challenge that sends
/// Docker clients to the token endpoint; a chunk out of order the upload's `Range`; an
/// unsatisfiable range the blob's size.
fn error(err: RegistryError, headers: &HeaderMap, scope: Option<&str>, scheme: &str) -> Response {
    let (status, code) = oci(err.code);
    let body = json!({"errors": [{"code": code, "message": err.message, "detail": {}}]});
    let mut response = reply(status, "application/json", body.to_string());
    if err.code == Code::Unauthorized {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        // Behind a proxy that ends TLS, the proxy says how clients reached it.
        let scheme = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or(scheme);
        let mut challenge = format!("Bearer realm=\"{scheme}://{host}/v2/token\",service=\"berth\"");
        if let Some(scope) = scope {
            challenge.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
    }
    match err.code {
        Code::ChunkOutOfOrder { size } => {
            response.headers_mut().insert(header::RANGE, range_header(size));
        }
        Code::RangeNotSatisfiable { size } => {
            response.headers_mut().typed_insert(ContentRange::unsatisfied_bytes(size));
        }
        Code::TooManyRequests => {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    response
}

/// A response with a body of `content_type` and the registry API version header.
fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], [API_VERSION], body).into_response()
}

fn range_header(size: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("0-{}", size.saturating_sub(1))).expect("a range is a valid header")
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `GET /v2/`: 200 for a known caller, 401 with the challenge otherwise.
pub(crate) async fn check(State(app): State<App>, method: Method, headers: HeaderMap) -> Response {
    if !matches!(method, Method::GET | Method::HEAD) {
        return error(unsupported(&method), &headers, None, app.scheme);
    }
    match app.registry.authenticate(credential(&headers)).await {
        Ok(_) => reply(StatusCode::OK, "application/json", "{}".to_string()),
        Err(err) => error(err, &headers, None, app.scheme),
    }
}

/// Every other `/v2/…` request.
pub(crate) async fn dispatch(
    State(app): State<App>,
    method: Method,
    Path(rest): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(target) = route(&rest) else {
        let err = RegistryError::new(Code::PathUnknown, format!("/v2/{rest} is not a registry path: see the OCI distribution spec"));
        return error(err, &headers, None, app.scheme);
    };
    let registry = &app.registry;
    if target == Route::Token {
        return match registry.issue_token(credential(&headers)).await {
            Ok(issued) => (StatusCode::OK, [API_VERSION], axum::Json(issued)).into_response(),
            Err(err) => error(err, &headers, None, app.scheme),
        };
    }
    let scope = repository_of(&target).map(|name| {
        let actions = if matches!(method, Method::GET | Method::HEAD) { "pull" } else { "pull,push" };
        format!("repository:{name}:{actions}")
    });
    let caller = match registry.authenticate(credential(&headers)).await {
        Ok(caller) => caller,
        Err(err) => return error(err, &headers, scope.as_deref(), app.scheme),
    };
    let request = Request { registry, caller: &caller, method: &method, query: &query, headers: &headers };
    match request.serve(target, body).await {
        Ok(response) => response,
        Err(err) => error(err, &headers, scope.as_deref(), app.scheme),
    }
}

fn repository_of<'a>(target: &Route<'a>) -> Option<&'a str> {
    match target {
        Route::Tags(name)
        | Route::Manifest(name, _)
        | Route::Blob(name, _)
        | Route::Uploads(name)
        | Route::Upload(name, _)
        | Route::Referrers(name, _) => Some(name),
        Route::Catalog | Route::Token => None,
    }
}

struct Request<'a> {
    registry: &'a Registry,
    caller: &'a Caller,
    method: &'a Method,
    query: &'a HashMap<String, String>,
    headers: &'a HeaderMap,
}

type Served = Result<Response, RegistryError>;

fn unsupported(method: &Method) -> RegistryError {
    RegistryError::new(Code::MethodUnsupported, format!("{method} is not supported here"))
}

fn body_stream(body: Body) -> berth_store::ByteStream {
    body.into_data_stream().map_err(std::io::Error::other).boxed()
}

impl Request<'_> {
    async fn serve(&self, target: Route<'_>, body: Body) -> Served {
        match target {
            Route::Catalog => self.catalog().await,
            Route::Token => Err(unsupported(self.method)),
            Route::Tags(name) => self.tags(&Repo::parse(name)?).await,
            Route::Manifest(name, reference) => {
                let (repo, reference) = (Repo::parse(name)?, Reference::parse(reference)?);
                match *self.method {
                    Method::GET | Method::HEAD => self.get_manifest(&repo, &reference).await,
                    Method::PUT => self.put_manifest(&repo, &reference, body).await,
                    Method::DELETE => {
                        self.registry.delete_manifest(self.caller, &repo, &reference).await?;
                        Ok((StatusCode::ACCEPTED, [API_VERSION]).into_response())
                    }
                    _ => Err(unsupported(self.method)),
                }
            }
            Route::Blob(name, digest) => {
                let (repo, digest) = (Repo::parse(name)?, parse_digest(digest)?);
                match *self.method {
                    Method::GET | Method::HEAD => self.get_blob(&repo, &digest).await,
                    Method::DELETE => {
                        self.registry.delete_blob(self.caller, &repo, &digest).await?;
                        Ok((StatusCode::ACCEPTED, [API_VERSION, (header::CONTENT_LENGTH.as_str(), "0")]).into_response())
                    }
                    _ => Err(unsupported(self.method)),
                }
            }
            Route::Uploads(name) if *self.method == Method::POST => self.start_upload(&Repo::parse(name)?, body).await,
            Route::Uploads(_) => Err(unsupported(self.method)),
            Route::Upload(name, id) => self.upload(&Repo::parse(name)?, id, body).await,
            Route::Referrers(name, digest) => {
                let (repo, digest) = (Repo::parse(name)?, parse_digest(digest)?);
                if *self.method != Method::GET {
                    return Err(unsupported(self.method));
                }
                let artifact_type = self.query.get("artifactType").map(String::as_str);
                let index = self.registry.referrers(self.caller, &repo, &digest, artifact_type).await?;
                let mut response = reply(StatusCode::OK, berth_model::manifest::OCI_INDEX, index.to_string());
                if artifact_type.is_some() {
                    response.headers_mut().insert("oci-filters-applied", HeaderValue::from_static("artifactType"));
                }
                Ok(response)
            }
        }
    }

    fn page_params(&self) -> Result<(Option<usize>, Option<&str>), RegistryError> {
        let n = match self.query.get("n") {
            Some(n) => Some(
                n.parse::<usize>()
                    .map_err(|_| RegistryError::new(Code::PaginationInvalid, format!("n={n:?} is not a number of entries")))?,
            ),
            None => None,
        };
        Ok((n, self.query.get("last").map(String::as_str)))
    }

    fn paged(
        &self,
        path: &str,
        key: &str,
        mut document: serde_json::Value,
        items: Vec<String>,
        next: Option<String>,
        n: Option<usize>,
    ) -> Response {
        document[key] = json!(items);
        let mut response = reply(StatusCode::OK, "application/json", document.to_string());
        if let Some(last) = next {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            if let Some(n) = n {
                query.append_pair("n", &n.to_string());
            }
            let query = query.append_pair("last", &last).finish();
            response.headers_mut().insert(header::LINK, header_value(&format!("<{path}?{query}>; rel=\"next\"")));
        }
        response
    }

    async fn catalog(&self) -> Served {
        if *self.method != Method::GET {
            return Err(unsupported(self.method));
        }
        let (n, last) = self.page_params()?;
        let page = self.registry.repositories(self.caller, n, last).await?;
        Ok(self.paged("/v2/_catalog", "repositories", json!({}), page.items, page.next_after, n))
    }

    async fn tags(&self, repo: &Repo) -> Served {
        if *self.method != Method::GET {
            return Err(unsupported(self.method));
        }
        let (n, last) = self.page_params()?;
        let page = self.registry.tags(self.caller, repo, n, last).await?;
        let path = format!("/v2/{}/tags/list", repo.name());
        Ok(self.paged(&path, "tags", json!({"name": repo.name()}), page.items, page.next_after, n))
    }

    async fn get_manifest(&self, repo: &Repo, reference: &Reference) -> Served {
        // The media types the client takes, in its order of preference; none (or an
        // Accept that does not parse) takes anything.
        let accept: Vec<String> = self
            .headers
            .typed_get::<headers_accept::Accept>()
            .map(|accept| accept.media_types().map(|media_type| media_type.essence().to_string()).collect())
            .unwrap_or_default();
        let content = self.registry.manifest(self.caller, repo, reference, &accept).await?;
        let headers = [
            (header::CONTENT_TYPE, header_value(&content.media_type)),
            (header::HeaderName::from_static("docker-content-digest"), header_value(content.digest.as_str())),
            (header::ETAG, header_value(&format!("\"{}\"", content.digest))),
            (header::CONTENT_LENGTH, HeaderValue::from(content.bytes.len())),
        ];
        let body = if *self.method == Method::HEAD { Body::empty() } else { Body::from(content.bytes) };
        Ok((StatusCode::OK, headers, [API_VERSION], body).into_response())
    }

    async fn put_manifest(&self, repo: &Repo, reference: &Reference, body: Body) -> Served {
        let max = self.registry.settings().max_manifest_bytes;
        let too_large =
            || RegistryError::new(Code::ManifestTooLarge, format!("the manifest is larger than {max} bytes (registry.maxManifestBytes)"));
        let mut bytes = Vec::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|err| RegistryError::new(Code::ManifestInvalid, format!("the manifest body broke off: {err}")))?;
            if bytes.len() + chunk.len() > max {
                // Read (a bounded amount of) the rest, so that the client, still sending,
                // gets the answer rather than a broken connection.
                let mut drained = bytes.len() + chunk.len();
                while drained < 4 * max
                    && let Some(Ok(more)) = stream.next().await
                {
                    drained += more.len();
                }
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        let bytes = bytes::Bytes::from(bytes);
        let content_type = self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let pushed = self.registry.put_manifest(self.caller, repo, reference, content_type, bytes).await?;
        let mut response = (
            StatusCode::CREATED,
            [
                (header::LOCATION, header_value(&format!("/v2/{}/manifests/{}", repo.name(), pushed.digest))),
                (header::HeaderName::from_static("docker-content-digest"), header_value(pushed.digest.as_str())),
            ],
            [API_VERSION],
        )
            .into_response();
        if let Some(subject) = pushed.subject {
            response.headers_mut().insert("oci-subject", header_value(subject.as_str()));
        }
        Ok(response)
    }

    async fn get_blob(&self, repo: &Repo, digest: &berth_model::Digest) -> Served {
        let range = self.headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(RangeRequest::parse);
        let head = *self.method == Method::HEAD;
        let BlobContent { size, range: sent, body, redirect } = self.registry.blob(self.caller, repo, digest, range.as_ref(), head).await?;
        if let Some(url) = redirect {
            // As the distribution registry does with object storage: the client fetches
            // the bytes (and any range of them) from the presigned URL.
            return Ok((
                StatusCode::TEMPORARY_REDIRECT,
                [
                    (header::LOCATION, header_value(&url)),
                    (header::HeaderName::from_static("docker-content-digest"), header_value(digest.as_str())),
                    (header::HeaderName::from_static(API_VERSION.0), HeaderValue::from_static(API_VERSION.1)),
                    (header::CONTENT_LENGTH, HeaderValue::from(0)),
                ],
            )
                .into_response());
        }
        let mut response = Response::new(body.map(Body::from_stream).unwrap_or_else(Body::empty));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        headers.insert("docker-content-digest", header_value(digest.as_str()));
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        headers.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
        headers.insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
        match (sent, size) {
            (Some(range), size) => {
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                let headers = response.headers_mut();
                if let Ok(content_range) = ContentRange::bytes(range.clone(), size) {
                    headers.typed_insert(content_range);
                }
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(range.end - range.start));
            }
            (_, Some(size)) => {
                response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            }
            _ => {}
        }
        Ok(response)
    }

    fn upload_location(repo: &Repo, id: &str) -> HeaderValue {
        header_value(&format!("/v2/{}/blobs/uploads/{id}", repo.name()))
    }

    fn upload_accepted(repo: &Repo, id: &str, size: u64, status: StatusCode) -> Response {
        (
            status,
            [
                (header::LOCATION, Self::upload_location(repo, id)),
                (header::RANGE, range_header(size)),
                (header::HeaderName::from_static("docker-upload-uuid"), header_value(id)),
                (header::CONTENT_LENGTH, HeaderValue::from(0)),
            ],
            [API_VERSION],
        )
            .into_response()
    }

    fn blob_created(repo: &Repo, digest: &berth_model::Digest) -> Response {
        (
            StatusCode::CREATED,
            [
                (header::LOCATION, header_value(&format!("/v2/{}/blobs/{digest}", repo.name()))),
                (header::HeaderName::from_static("docker-content-digest"), header_value(digest.as_str())),
                (header::CONTENT_LENGTH, HeaderValue::from(0)),
            ],
            [API_VERSION],
        )
            .into_response()
    }

    async fn start_upload(&self, repo: &Repo, body: Body) -> Served {
        if let (Some(mount), Some(from)) = (self.query.get("mount"), self.query.get("from")) {
            let digest = parse_digest(mount)?;
            if self.registry.mount(self.caller, repo, &digest, from).await? {
                return Ok(Self::blob_created(repo, &digest));
            }
        }
        if let Some(digest) = self.query.get("digest") {
            let digest = parse_digest(digest)?;
            let _permit = self.registry.upload_permit()?;
            self.registry.put_blob(self.caller, repo, &digest, body_stream(body)).await?;
            return Ok(Self::blob_created(repo, &digest));
        }
        let upload = self.registry.start_upload(self.caller, repo).await?;
        Ok(Self::upload_accepted(repo, &upload.id, 0, StatusCode::ACCEPTED))
    }

    async fn upload(&self, repo: &Repo, id: &str, body: Body) -> Served {
        match *self.method {
            Method::GET => {
                let upload = self.registry.upload_status(self.caller, repo, id).await?;
                Ok(Self::upload_accepted(repo, &upload.id, upload.size, StatusCode::NO_CONTENT))
            }
            Method::PATCH => {
                let start = match self.headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()) {
                    Some(text) => Some(parse_content_range(text)?),
                    None => None,
                };
                let _permit = self.registry.upload_permit()?;
                let size = self.registry.append(self.caller, repo, id, start, body_stream(body)).await?;
                Ok(Self::upload_accepted(repo, id, size, StatusCode::ACCEPTED))
            }
            Method::PUT => {
                let digest = self.query.get("digest").ok_or_else(|| {
                    RegistryError::new(Code::DigestInvalid, "finishing an upload needs ?digest=<digest of the whole blob>")
                })?;
                let digest = parse_digest(digest)?;
                let _permit = self.registry.upload_permit()?;
                self.registry.finish_upload(self.caller, repo, id, &digest, Some(body_stream(body))).await?;
                Ok(Self::blob_created(repo, &digest))
            }
            Method::DELETE => {
                self.registry.cancel_upload(self.caller, repo, id).await?;
                Ok((StatusCode::NO_CONTENT, [API_VERSION]).into_response())
            }
            _ => Err(unsupported(self.method)),
        }
    }
}

/// `Content-Range: <start>-<end>` of an upload chunk; returns the start. This is the OCI
/// spec's own form (no unit, no size), which no header crate parses; RFC 9110's form
/// (`bytes <start>-<end>/<size>`), which some clients send, is taken too.
fn parse_content_range(text: &str) -> Result<u64, RegistryError> {
    let invalid = || RegistryError::new(Code::BlobUploadInvalid, format!("the Content-Range {text:?} is not START-END"));
    let spec = text.trim().trim_start_matches("bytes ").trim_start_matches("bytes=");
    let (start, end) = spec.split_once('-').ok_or_else(invalid)?;
    let start = start.trim().parse::<u64>().map_err(|_| invalid())?;
    let end = end.split('/').next().unwrap_or("").trim().parse::<u64>().map_err(|_| invalid())?;
    if end < start {
        return Err(invalid());
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_any_depth_are_parsed_from_the_right() {
        assert_eq!(route("a/b/c/manifests/latest"), Some(Route::Manifest("a/b/c", "latest")));
        assert_eq!(route("ns/app/blobs/sha256:x"), Some(Route::Blob("ns/app", "sha256:x")));
        assert_eq!(route("ns/app/blobs/uploads/"), Some(Route::Uploads("ns/app")));
        assert_eq!(route("ns/app/blobs/uploads"), Some(Route::Uploads("ns/app")));
        assert_eq!(route("ns/app/blobs/uploads/1234"), Some(Route::Upload("ns/app", "1234")));
        assert_eq!(route("ns/manifests/tags/list"), Some(Route::Tags("ns/manifests")));
        assert_eq!(route("ns/app/referrers/sha256:x"), Some(Route::Referrers("ns/app", "sha256:x")));
        assert_eq!(route("_catalog"), Some(Route::Catalog));
        assert_eq!(route("ns/app/other/x"), None);
        assert_eq!(route("app"), None);
    }

    proptest::proptest! {
        /// Any `/v2/` path and any `Range` or `Content-Range` a client sends is read
        /// without a panic, and every refusal is a client error with a message.
        #[test]
        fn paths_names_and_ranges_are_read_or_refused_as_client_errors(
            path in "[a-zA-Z0-9._/:%-]{0,80}|\\PC{0,40}",
            range in "(bytes=)?[0-9, -]{0,20}|\\PC{0,20}",
            size in 0u64..1_000_000,
        ) {
            let refused = |err: RegistryError| {
                let (status, code) = oci(err.code);
                proptest::prop_assert!(status.is_client_error(), "{status} for {err:?}");
                proptest::prop_assert!(!code.is_empty() && !err.message.is_empty());
                Ok(())
            };
            if let Some(target) = route(&path) {
                if let Some(name) = repository_of(&target) && let Err(err) = Repo::parse(name) {
                    refused(err)?;
                }
                match target {
                    Route::Manifest(_, reference) => if let Err(err) = Reference::parse(reference) { refused(err)? },
                    Route::Blob(_, digest) | Route::Referrers(_, digest) => if let Err(err) = parse_digest(digest) { refused(err)? },
                    _ => {}
                }
            }
            if let Err(err) = parse_content_range(&range) {
                refused(err)?;
            }
            if let Some(request) = RangeRequest::parse(&range) {
                match request.resolve(size) {
                    Ok(Some(sent)) => proptest::prop_assert!(sent.start < sent.end && sent.end <= size),
                    Ok(None) => {}
                    Err(err) => refused(err)?,
                }
            }
        }
    }

    #[test]
    fn upload_chunk_ranges() {
        assert_eq!(parse_content_range("0-1023").unwrap(), 0);
        assert_eq!(parse_content_range("1024-2047").unwrap(), 1024);
        assert_eq!(parse_content_range("bytes 1024-2047/4096").unwrap(), 1024);
        assert_eq!(parse_content_range("5-1").unwrap_err().code, Code::BlobUploadInvalid);
    }

    #[test]
    fn basic_passwords_and_bearer_tokens_are_read() {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("me:brt_x.y"))).unwrap());
        assert_eq!(credential(&headers), Credential::Basic("brt_x.y".into()));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer brr_abc"));
        assert_eq!(credential(&headers), Credential::Bearer("brr_abc".into()));
        assert_eq!(credential(&HeaderMap::new()), Credential::None);
    }
}
