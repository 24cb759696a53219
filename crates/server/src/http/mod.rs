//! The HTTP edge. Handlers parse the request, authenticate, call one service function on
//! a blocking thread, and render the result; they hold no rules of their own. Errors are
//! rendered as Kubernetes `Status` bodies here and nowhere else.

mod api;
mod audit;
mod body;
pub mod discovery;
mod metrics;
pub mod openapi;
mod protobuf;
mod registry;
mod watch;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_model::meta::{ListMeta, Status, StatusCause, StatusDetails};
use bytes::Bytes;
use headers::HeaderMapExt;
use serde::Serialize;

use crate::services::import::Importer;
use crate::services::{Caller, Catalog, Error, ErrorKind, LazyList, ListResult, Resource};

pub use body::MAX_BODY_BYTES;

/// Shared state of every handler.
#[derive(Clone)]
pub struct App {
    pub catalog: Catalog,
    /// Where every write is recorded.
    pub audit: Arc<crate::services::audit::AuditLog>,
    pub importer: Importer,
    pub registry: crate::services::registry::Registry,
    pub webhooks: Arc<Vec<crate::registry_events::WebhookEndpoint>>,
    pub ready: Arc<AtomicBool>,
    /// The store's last write probe, for `/readyz`.
    pub readiness: Arc<metrics::Readiness>,
    /// Turns true when the server shuts down, so that long-lived watches end and a
    /// graceful shutdown does not wait for their timeouts.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// `http` or `https`: how clients reach this listener (the registry's token realm).
    pub scheme: &'static str,
    /// How admission reviews resolve images.
    pub admission: Arc<crate::services::admission::AdmissionSettings>,
}

/// The whole HTTP surface: the image API, the core API, berth's API, the OCI registry
/// (`/v2/`), registry webhooks, health checks.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(metrics::readyz))
        .route("/metrics", get(metrics::render))
        .route("/version", get(|| async { axum::Json(serde_json::json!({"gitVersion": env!("CARGO_PKG_VERSION"), "platform": "berth"})) }))
        .merge(api::routes())
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(|| async { axum::Json(openapi::v3_index()) }))
        .route("/openapi/v3/{*path}", get(openapi_v3))
        .route("/webhooks/{name}", axum::routing::post(api::receive_webhook))
        .route("/admission/mutate", axum::routing::post(api::admission_mutate))
        .route("/admission/validate", axum::routing::post(api::admission_validate))
        .route("/imagereview", axum::routing::post(api::image_review))
        .route("/v2/", axum::routing::any(registry::check))
        .route("/v2", axum::routing::any(registry::check))
        .route("/v2/{*rest}", axum::routing::any(registry::dispatch))
        .route("/apis/berth.dev/v1/auditevents", get(audit::list))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(app.clone(), audit::record))
        .layer(axum::middleware::from_fn(metrics::observe))
        .layer(axum::middleware::map_request(host_from_authority))
        .with_state(app)
}

/// `/openapi/v2`: JSON, or the protobuf form when the client asks for it (kubectl does).
async fn openapi_v2(headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if accept.contains("protobuf") {
        return ([(header::CONTENT_TYPE, HeaderValue::from_static(openapi::V2_PROTOBUF))], openapi::v2_protobuf()).into_response();
    }
    axum::Json(openapi::v2()).into_response()
}

async fn openapi_v3(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    match openapi::v3(&path) {
        Some(document) => axum::Json(document).into_response(),
        None => render_error(Error::not_found("openapi", &path)),
    }
}

async fn not_found() -> Response {
    render_error(Error::new(
        ErrorKind::NotFound,
        "the server could not find the requested resource: check the path (image API paths start with /apis/image.openshift.io/v1/)",
    ))
}

async fn method_not_allowed() -> Response {
    render_error(Error::new(ErrorKind::MethodNotAllowed, "this method is not supported on this resource"))
}

/// The bearer token of a request: `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

/// Authenticates the request and runs `f` on a blocking thread (the store is synchronous).
async fn call<T, F>(app: &App, headers: &HeaderMap, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(&Catalog, &Caller) -> Result<T, Error> + Send + 'static,
{
    let catalog = app.catalog.clone();
    let token = bearer(headers);
    tokio::task::spawn_blocking(move || {
        let caller = catalog.authenticate(token.as_deref())?;
        f(&catalog, &caller)
    })
    .await
    .map_err(|err| Error::internal(format!("the request was interrupted: {err}")))?
}

/// Authenticates the request and runs `f` right here on the async worker. Only for
/// single-object reads: they are a few indexed SQLite reads from the read-only pool, far
/// shorter than the hand-off to a blocking thread would be, and they never wait for the
/// writer. Everything that writes or may run long goes through [`call`].
fn call_inline<T, F>(app: &App, headers: &HeaderMap, f: F) -> Result<T, Error>
where
    F: FnOnce(&Catalog, &Caller) -> Result<T, Error>,
{
    let caller = app.catalog.authenticate(bearer(headers).as_deref())?;
    f(&app.catalog, &caller)
}

/// A Kubernetes `Table` a client asked for (kubectl does, with `Accept:
/// application/json;as=Table;v=v1;g=meta.k8s.io`), and what its rows carry of their
/// objects (`includeObject`, `Metadata` unless the query says otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TableRequest {
    pub include: crate::printers::table::Include,
}

pub(crate) fn table_request(headers: &HeaderMap, include_object: Option<&str>) -> Option<TableRequest> {
    let accept = headers.typed_get::<headers_accept::Accept>()?;
    let wants_table = accept.media_types().any(|media_type| {
        let text = media_type.to_string();
        let params: Vec<(String, String)> = text
            .split(';')
            .skip(1)
            .filter_map(|param| param.split_once('=').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string())))
            .collect();
        let has = |key: &str, value: &str| params.iter().any(|(k, v)| k == key && v.eq_ignore_ascii_case(value));
        has("as", "Table") && has("g", "meta.k8s.io")
    });
    use crate::printers::table::Include;
    let include = match include_object {
        Some("None") => Include::None,
        Some("Object") => Include::Object,
        _ => Include::Metadata,
    };
    wants_table.then_some(TableRequest { include })
}

/// `value` as a Table: a list's items as rows, or one object as the one row. A `Status`
/// and anything without a kind stay as they are.
pub(crate) fn as_table(value: serde_json::Value, table: TableRequest) -> serde_json::Value {
    use crate::printers::table;
    let kind = value.get("kind").and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
    if kind.is_empty() || kind == "Status" || kind == "Table" {
        return value;
    }
    match (kind.strip_suffix("List"), value.get("items").and_then(serde_json::Value::as_array)) {
        (Some(item_kind), Some(items)) => {
            let rows = items.iter().map(|item| table::row(item_kind, item, table.include)).collect();
            table::of_rows(item_kind, value.get("metadata").cloned().unwrap_or_default(), rows)
        }
        _ => {
            let metadata = serde_json::json!({"resourceVersion": value.pointer("/metadata/resourceVersion").cloned().unwrap_or_default()});
            let row = table::row(&kind, &value, table.include);
            table::of_rows(&kind, metadata, vec![row])
        }
    }
}

/// Whether the client asked for YAML rather than JSON.
pub(crate) fn wants_yaml(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("yaml") && !accept.contains("json"))
}

/// Renders `value` with `status`, as JSON, or YAML when asked, or as a Table when asked.
fn render<T: Serialize>(headers: &HeaderMap, status: StatusCode, value: &T) -> Response {
    if let Some(table) = table_request(headers, None) {
        return match serde_json::to_value(value) {
            Ok(value) => (status, axum::Json(as_table(value, table))).into_response(),
            Err(err) => render_error(Error::internal(format!("the response could not be written: {err}"))),
        };
    }
    if wants_yaml(headers) {
        match yaml_serde::to_string(value) {
            Ok(text) => return (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"))], text).into_response(),
            Err(err) => return render_error(Error::internal(format!("the response could not be written as YAML: {err}"))),
        }
    }
    match serde_json::to_vec(value) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response(),
        Err(err) => render_error(Error::internal(format!("the response could not be written: {err}"))),
    }
}

fn respond<T: Serialize>(headers: &HeaderMap, status: StatusCode, result: Result<T, Error>) -> Response {
    match result {
        Ok(value) => render(headers, status, &value),
        Err(err) => render_error(err),
    }
}

/// A list in the Kubernetes shape: `{kind: XList, apiVersion, metadata, items}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct List<T> {
    kind: String,
    api_version: &'static str,
    metadata: ListMeta,
    items: Vec<T>,
}

fn list_of<T: Serialize>(kind: &str, api_version: &'static str, list: ListResult<T>) -> List<T> {
    List { kind: format!("{kind}List"), api_version, metadata: list.metadata, items: list.items }
}

/// Bytes of a list gathered before they are handed to the connection.
const LIST_CHUNK: usize = 64 * 1024;
/// How long a list waits for its client to take the next chunk before it gives up: a
/// client that stops reading must not hold a store connection and a thread for long.
const LIST_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How a list is written out.
#[derive(Clone, Copy)]
enum ListFormat {
    Json,
    Yaml,
    /// A Kubernetes Table of the list's kind.
    Table(TableRequest),
}

impl ListFormat {
    fn head(self, kind: &str, api_version: &str, metadata: &ListMeta) -> Vec<u8> {
        let head = serde_json::json!({"kind": kind, "apiVersion": api_version, "metadata": metadata});
        match self {
            ListFormat::Table(_) => {
                let item_kind = kind.strip_suffix("List").unwrap_or(kind);
                let mut table = crate::printers::table::of_rows(item_kind, serde_json::to_value(metadata).unwrap_or_default(), Vec::new());
                table.as_object_mut().expect("a table is an object").remove("rows");
                let mut buffer = serde_json::to_vec(&table).expect("a table serialises");
                buffer.pop(); // The closing brace: rows follow.
                buffer.extend_from_slice(b",\"rows\":[");
                buffer
            }
            ListFormat::Json => {
                let mut buffer = serde_json::to_vec(&head).expect("list metadata serialises");
                buffer.pop(); // The closing brace: items follow.
                buffer.extend_from_slice(b",\"items\":[");
                buffer
            }
            ListFormat::Yaml => yaml_serde::to_string(&head).expect("list metadata serialises").into_bytes(),
        }
    }

    fn item<T: Resource>(self, buffer: &mut Vec<u8>, first: bool, item: &T) -> Result<(), String> {
        match self {
            ListFormat::Table(table) => {
                if !first {
                    buffer.push(b',');
                }
                let object = serde_json::to_value(item).map_err(|err| err.to_string())?;
                serde_json::to_writer(&mut *buffer, &crate::printers::table::row(T::KIND, &object, table.include))
                    .map_err(|err| err.to_string())
            }
            ListFormat::Json => {
                if !first {
                    buffer.push(b',');
                }
                serde_json::to_writer(&mut *buffer, item).map_err(|err| err.to_string())
            }
            ListFormat::Yaml => {
                if first {
                    buffer.extend_from_slice(b"items:\n");
                }
                // Each item is a YAML document indented under `- `: block scalars keep
                // their meaning because every line moves by the same two spaces.
                let text = yaml_serde::to_string(item).map_err(|err| err.to_string())?;
                for (idx, line) in text.lines().enumerate() {
                    buffer.extend_from_slice(if idx == 0 { b"- " } else { b"  " });
                    buffer.extend_from_slice(line.as_bytes());
                    buffer.push(b'\n');
                }
                Ok(())
            }
        }
    }

    fn tail(self, buffer: &mut Vec<u8>, empty: bool) {
        match self {
            ListFormat::Json | ListFormat::Table(_) => buffer.extend_from_slice(b"]}"),
            ListFormat::Yaml if empty => buffer.extend_from_slice(b"items: []\n"),
            ListFormat::Yaml => {}
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            ListFormat::Json | ListFormat::Table(_) => "application/json",
            ListFormat::Yaml => "application/yaml",
        }
    }
}

/// Answers a list, written item by item while the client reads it (JSON, or YAML when
/// asked), so that a large list never exists whole in memory, neither as objects nor as
/// text: items come from the store a page at a time, each is serialised into a bounded
/// channel of chunks and then dropped. Errors found before the first byte
/// (authentication, authorization, selectors) are answered with a `Status`.
pub(crate) async fn stream_list<T, F>(app: App, headers: HeaderMap, table: Option<TableRequest>, list: F) -> Response
where
    T: Resource,
    F: FnOnce(&Catalog, &Caller) -> Result<LazyList<T>, Error> + Send + 'static,
{
    let format = match table {
        Some(table) => ListFormat::Table(table),
        None if wants_yaml(&headers) => ListFormat::Yaml,
        None => ListFormat::Json,
    };
    let (started, first) = tokio::sync::oneshot::channel::<Result<(), Error>>();
    let (chunks, body) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let catalog = app.catalog.clone();
    let token = bearer(&headers);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let listed = catalog.authenticate(token.as_deref()).and_then(|caller| list(&catalog, &caller));
        let result = match listed {
            Ok(result) => result,
            Err(err) => {
                let _ = started.send(Err(err));
                return;
            }
        };
        if started.send(Ok(())).is_err() {
            return;
        }
        // False when the client went away or stopped reading: the list ends there.
        let send = |item: Result<Bytes, std::io::Error>| {
            runtime.block_on(async { matches!(tokio::time::timeout(LIST_SEND_TIMEOUT, chunks.send(item)).await, Ok(Ok(()))) })
        };
        let mut buffer = format.head(&format!("{}List", T::KIND), T::API_VERSION, &result.metadata);
        let mut empty = true;
        for item in result.items {
            let written = item.map_err(|err| err.message).and_then(|item| format.item(&mut buffer, empty, &item));
            if let Err(message) = written {
                // The status line is sent: all that is left is to cut the response short.
                send(Err(std::io::Error::other(message)));
                return;
            }
            empty = false;
            if buffer.len() >= LIST_CHUNK && !send(Ok(Bytes::from(std::mem::take(&mut buffer)))) {
                return;
            }
        }
        format.tail(&mut buffer, empty);
        send(Ok(Bytes::from(buffer)));
    });
    match first.await {
        Ok(Ok(())) => {
            let stream = tokio_stream::wrappers::ReceiverStream::new(body);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()))],
                axum::body::Body::from_stream(stream),
            )
                .into_response()
        }
        Ok(Err(err)) => render_error(err),
        Err(_) => render_error(Error::internal("the list was interrupted")),
    }
}

/// A `Status` of success, as Kubernetes returns for deletes of virtual objects.
fn success(details: StatusDetails) -> Status {
    Status {
        kind: "Status".to_string(),
        api_version: "v1".to_string(),
        metadata: ListMeta::default(),
        status: "Success".to_string(),
        message: String::new(),
        reason: String::new(),
        details: Some(details),
        code: 200,
    }
}

/// The `Status` code and reason of each kind of error (Kubernetes' own).
trait StatusOf {
    fn code(self) -> u16;
    fn reason(self) -> &'static str;
}

impl StatusOf for ErrorKind {
    fn code(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::AlreadyExists | ErrorKind::Conflict => 409,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Gone => 410,
            ErrorKind::TooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Invalid => 422,
            ErrorKind::Busy => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "BadRequest",
            ErrorKind::Unauthorized => "Unauthorized",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::AlreadyExists => "AlreadyExists",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::Invalid => "Invalid",
            ErrorKind::Gone => "Expired",
            ErrorKind::MethodNotAllowed => "MethodNotAllowed",
            ErrorKind::TooLarge => "RequestEntityTooLarge",
            ErrorKind::UnsupportedMediaType => "UnsupportedMediaType",
            ErrorKind::Busy => "TooManyRequests",
            ErrorKind::Unavailable => "ServiceUnavailable",
            ErrorKind::Internal => "InternalError",
        }
    }
}

/// The `Status` body of an error.
pub fn status_of(err: &Error) -> Status {
    let (group, kind) = match err.resource.split_once('.') {
        Some((kind, group)) => (group.to_string(), kind.to_string()),
        None => (String::new(), err.resource.clone()),
    };
    let details = (!err.resource.is_empty() || !err.causes.is_empty()).then(|| StatusDetails {
        name: err.name.clone(),
        group,
        kind,
        causes: err
            .causes
            .iter()
            .map(|c| StatusCause { reason: "FieldValueInvalid".to_string(), message: c.message.clone(), field: c.field.clone() })
            .collect(),
    });
    Status {
        kind: "Status".to_string(),
        api_version: "v1".to_string(),
        metadata: ListMeta::default(),
        status: "Failure".to_string(),
        message: err.message.clone(),
        reason: err.kind.reason().to_string(),
        details,
        code: err.kind.code(),
    }
}

pub fn render_error(err: Error) -> Response {
    let status = status_of(&err);
    let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&status).expect("Status always serialises");
    let mut response = (code, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
    match err.kind {
        ErrorKind::Unauthorized => {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"berth\""));
        }
        // As the Kubernetes API server answers when it sheds load.
        ErrorKind::Busy => {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    response
}

/// HTTP/2 has no `Host` header: the request's authority (`:authority`) says the same, and
/// whatever reads `Host` (the registry's login challenge) reads it there.
async fn host_from_authority(mut request: axum::extract::Request) -> axum::extract::Request {
    if !request.headers().contains_key(axum::http::header::HOST)
        && let Some(host) = request.uri().authority().and_then(|a| axum::http::HeaderValue::from_str(a.as_str()).ok())
    {
        request.headers_mut().insert(axum::http::header::HOST, host);
    }
    request
}
