//! Routes and handlers of the image API (`/apis/image.openshift.io/v1`), the core API
//! (`/api/v1`: namespaces, secrets, resource quotas, limit ranges) and berth's own API (`/apis/berth.dev/v1`: tokens).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_model::core::{Namespace, Secret, Token};
use berth_model::image::Image;
use berth_model::imagestream::{ImageStream, ImageStreamMapping, ImageStreamTag, ImageTag};
use berth_model::imagestreamimport::ImageStreamImport;
use berth_model::lineage::{ImageClass, ImageClassGroup};
use berth_model::meta::StatusDetails;
use berth_model::notify::Subscription;
use berth_model::policy::ImagePolicy;
use berth_model::prune::ImagePruner;
use berth_model::quota::{LimitRange, ResourceQuota};
use berth_model::selector::{FieldSelector, LabelSelector};
use berth_model::{BERTH_API_VERSION, IMAGE_API_VERSION};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::body::{RawBody, apply_patch, decode, decode_value};
use crate::http::discovery;
use crate::http::watch::serve_watch;
use crate::http::{App, call, call_inline, list_of, render_error, respond, stream_list, success, table_request};
use crate::services::images::TrustedImage;
use crate::services::streams::TagView;
use crate::services::watch::Watchable;
use crate::services::{Caller, Catalog, Error, ErrorKind, ListOptions, Resource, Result};

const IMAGE: &str = "/apis/image.openshift.io/v1";
const IMAGE_NS: &str = "/apis/image.openshift.io/v1/namespaces/{ns}";
const CORE: &str = "/api/v1";
const BERTH: &str = "/apis/berth.dev/v1";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api", get(|| async { axum::Json(discovery::core_versions()) }))
        .route("/apis", get(|| async { axum::Json(discovery::groups()) }))
        .route(CORE, get(|| async { discovery_of("", "v1") }))
        .route(
            "/apis/{group}/{version}",
            get(|Path((group, version)): Path<(String, String)>| async move { discovery_of(&group, &version) }),
        )
        // Image streams.
        .route(&format!("{IMAGE}/imagestreams"), get(list_streams))
        .route(&format!("{IMAGE_NS}/imagestreams"), get(list_streams).post(create_stream))
        .route(&format!("{IMAGE_NS}/imagestreams/{{name}}"), get(get_stream).put(update_stream).patch(patch_stream).delete(delete_stream))
        // Virtual kinds.
        .route(&format!("{IMAGE_NS}/imagestreamtags"), get(list_tags::<ImageStreamTag>).post(create_tag::<ImageStreamTag>))
        .route(
            &format!("{IMAGE_NS}/imagestreamtags/{{name}}"),
            get(get_tag::<ImageStreamTag>)
                .put(update_tag::<ImageStreamTag>)
                .patch(patch_tag::<ImageStreamTag>)
                .delete(delete_tag::<ImageStreamTag>),
        )
        .route(&format!("{IMAGE_NS}/imagetags"), get(list_tags::<ImageTag>).post(create_tag::<ImageTag>))
        .route(
            &format!("{IMAGE_NS}/imagetags/{{name}}"),
            get(get_tag::<ImageTag>).put(update_tag::<ImageTag>).patch(patch_tag::<ImageTag>).delete(delete_tag::<ImageTag>),
        )
        .route(&format!("{IMAGE_NS}/imagestreamimages/{{name}}"), get(get_stream_image))
        .route(&format!("{IMAGE_NS}/imagestreammappings"), post(create_mapping))
        .route(&format!("{IMAGE_NS}/imagestreamimports"), post(create_import))
        // Images.
        .route(&format!("{IMAGE}/images"), get(list_images).post(create_image))
        .route(&format!("{IMAGE}/images/{{name}}"), get(get_image).put(update_image).patch(patch_image).delete(delete_image))
        // Namespaces and secrets.
        .route(&format!("{CORE}/namespaces"), get(list_namespaces).post(create_namespace))
        .route(
            &format!("{CORE}/namespaces/{{name}}"),
            get(get_namespace).put(update_namespace).patch(patch_namespace).delete(delete_namespace),
        )
        .route(&format!("{CORE}/secrets"), get(list_secrets))
        .route(&format!("{CORE}/namespaces/{{ns}}/secrets"), get(list_secrets).post(create_secret))
        .route(
            &format!("{CORE}/namespaces/{{ns}}/secrets/{{name}}"),
            get(get_secret).put(update_secret).patch(patch_secret).delete(delete_secret),
        )
        // Quotas: cluster admins write them, readers of the namespace read them.
        .route(&format!("{CORE}/resourcequotas"), get(list_resource_quotas))
        .route(&format!("{CORE}/namespaces/{{ns}}/resourcequotas"), get(list_resource_quotas).post(create_resource_quota))
        .route(
            &format!("{CORE}/namespaces/{{ns}}/resourcequotas/{{name}}"),
            get(get_resource_quota).put(update_resource_quota).patch(patch_resource_quota).delete(delete_resource_quota),
        )
        .route(&format!("{CORE}/limitranges"), get(list_limit_ranges))
        .route(&format!("{CORE}/namespaces/{{ns}}/limitranges"), get(list_limit_ranges).post(create_limit_range))
        .route(
            &format!("{CORE}/namespaces/{{ns}}/limitranges/{{name}}"),
            get(get_limit_range).put(update_limit_range).patch(patch_limit_range).delete(delete_limit_range),
        )
        // Subscriptions.
        .route(&format!("{BERTH}/subscriptions"), get(list_subscriptions))
        .route(&format!("{BERTH}/namespaces/{{ns}}/subscriptions"), get(list_subscriptions).post(create_subscription))
        .route(
            &format!("{BERTH}/namespaces/{{ns}}/subscriptions/{{name}}"),
            get(get_subscription).put(update_subscription).delete(delete_subscription),
        )
        // Scheduled imports (read-only views of the scheduler).
        .route(&format!("{BERTH}/scheduledimports"), get(list_scheduled))
        .route(&format!("{BERTH}/namespaces/{{ns}}/scheduledimports"), get(list_scheduled))
        // Tokens.
        // Lineage: what an image is built on, and what is built on it; image classes.
        .route(&format!("{BERTH}/lineage/{{relation}}"), get(lineage))
        .route(&format!("{BERTH}/imageimpact"), get(image_impact))
        // Lifecycle: usage reports and pruning.
        .route(&format!("{BERTH}/top/{{what}}"), get(top))
        .route(&format!("{BERTH}/imageprunes"), post(create_prune))
        .route(&format!("{BERTH}/storechecks"), post(create_store_check))
        .route(&format!("{BERTH}/workloadreports"), post(create_workload_report))
        .route(&format!("{BERTH}/imagepruners"), get(list_pruners).post(create_pruner))
        .route(&format!("{BERTH}/imagepruners/{{name}}"), get(get_pruner).put(update_pruner).delete(delete_pruner))
        .route(&format!("{BERTH}/imageclasses"), get(list_classes).post(create_class))
        .route(&format!("{BERTH}/imageclasses/{{name}}"), get(get_class).put(update_class).delete(delete_class))
        .route(&format!("{BERTH}/imageclasses/{{name}}/images"), get(class_images))
        .route(&format!("{BERTH}/imageclassgroups"), get(list_class_groups).post(create_class_group))
        .route(&format!("{BERTH}/imageclassgroups/{{name}}"), get(get_class_group).put(update_class_group).delete(delete_class_group))
        .route(&format!("{BERTH}/imagepolicies"), get(list_policies).post(create_policy))
        .route(&format!("{BERTH}/imagepolicies/{{name}}"), get(get_policy).put(update_policy).delete(delete_policy))
        // Contracts: the diff between two images of a tag, rollback, resume.
        .route(&format!("{BERTH}/namespaces/{{ns}}/imagestreamtags/{{name}}/contractdiff"), get(contract_diff))
        .route(&format!("{BERTH}/namespaces/{{ns}}/imagestreamtags/{{name}}/rollback"), post(rollback_tag))
        .route(&format!("{BERTH}/namespaces/{{ns}}/imagestreamtags/{{name}}/resume"), post(resume_tag))
        .route(&format!("{BERTH}/tokens"), get(list_tokens).post(create_token))
        .route(&format!("{BERTH}/tokens/{{name}}"), get(get_token).delete(delete_token))
}

/// The query parameters of lists and watches.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    label_selector: Option<String>,
    field_selector: Option<String>,
    limit: Option<String>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
    watch: Option<String>,
    resource_version: Option<String>,
    timeout_seconds: Option<String>,
    /// What the rows of a Table carry of their objects: `None`, `Metadata`, `Object`.
    include_object: Option<String>,
}

impl ListParams {
    fn is_watch(&self) -> bool {
        matches!(self.watch.as_deref(), Some("true" | "1"))
    }

    fn options(&self) -> Result<ListOptions> {
        let label_selector = LabelSelector::parse(self.label_selector.as_deref().unwrap_or_default()).map_err(Error::bad_request)?;
        let field_selector = FieldSelector::parse(self.field_selector.as_deref().unwrap_or_default()).map_err(Error::bad_request)?;
        let limit = match self.limit.as_deref() {
            None | Some("") | Some("0") => None,
            Some(text) => Some(text.parse::<usize>().map_err(|_| Error::bad_request(format!("limit {text:?} is not a positive number")))?),
        };
        Ok(ListOptions { label_selector, field_selector, limit, continue_token: self.continue_token.clone().filter(|t| !t.is_empty()) })
    }

    /// The revision a watch starts after; `None` (or "0") starts with the current state.
    pub fn watch_revision(&self) -> Result<Option<u64>> {
        match self.resource_version.as_deref() {
            None | Some("") | Some("0") => Ok(None),
            Some(text) => {
                text.parse().map(Some).map_err(|_| Error::bad_request(format!("resourceVersion {text:?} is not one this server issued")))
            }
        }
    }

    pub fn timeout(&self) -> Result<Option<std::time::Duration>> {
        match self.timeout_seconds.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => text
                .parse()
                .map(|s| Some(std::time::Duration::from_secs(s)))
                .map_err(|_| Error::bad_request(format!("timeoutSeconds {text:?} is not a number"))),
        }
    }
}

/// A list, or a watch when `?watch=true`.
async fn list_or_watch<T, F>(app: App, headers: HeaderMap, namespace: Option<String>, params: ListParams, list: F) -> Response
where
    T: Watchable,
    F: FnOnce(&Catalog, &Caller, Option<&str>, &ListOptions) -> Result<crate::services::LazyList<T>> + Send + 'static,
{
    let options = match params.options() {
        Ok(options) => options,
        Err(err) => return render_error(err),
    };
    let table = table_request(&headers, params.include_object.as_deref());
    if params.is_watch() {
        return serve_watch::<T>(app, headers, namespace, options, params, table).await;
    }
    stream_list(app, headers, table, move |catalog, caller| list(catalog, caller, namespace.as_deref(), &options)).await
}

/// Decodes a body as `T` and runs `f` with it.
async fn with_body<T, R, F>(
    app: App,
    headers: HeaderMap,
    body: RawBody,
    kind: &'static str,
    api_version: &'static str,
    code: StatusCode,
    f: F,
) -> Response
where
    T: serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + Send + 'static,
    F: FnOnce(&Catalog, &Caller, T) -> Result<R> + Send + 'static,
{
    let object: T = match decode(&body, kind, api_version) {
        Ok(object) => object,
        Err(err) => return render_error(err),
    };
    let result = call(&app, &headers, move |catalog, caller| f(catalog, caller, object)).await;
    respond(&headers, code, result)
}

/// Applies a merge or strategic-merge patch: read, patch, write, retried when another
/// writer got in between (unless the patch itself names a resourceVersion).
async fn patch_object<T, G, P>(app: App, headers: HeaderMap, body: RawBody, get: G, put: P) -> Response
where
    T: Resource,
    G: Fn(&Catalog, &Caller) -> Result<T> + Send + 'static,
    P: Fn(&Catalog, &Caller, T) -> Result<T> + Send + 'static,
{
    patch_kind(app, headers, body, (T::KIND, T::API_VERSION), get, put).await
}

/// [`patch_object`] for any kind, named by `(kind, apiVersion)` (the views of a tag too).
async fn patch_kind<T, G, P>(
    app: App,
    headers: HeaderMap,
    body: RawBody,
    (kind, api_version): (&'static str, &'static str),
    get: G,
    put: P,
) -> Response
where
    T: Serialize + DeserializeOwned + Send + 'static,
    G: Fn(&Catalog, &Caller) -> Result<T> + Send + 'static,
    P: Fn(&Catalog, &Caller, T) -> Result<T> + Send + 'static,
{
    let result = call(&app, &headers, move |catalog, caller| {
        let mut attempts = 0;
        loop {
            let current = get(catalog, caller)?;
            let value = serde_json::to_value(&current).map_err(|err| Error::internal(err.to_string()))?;
            let patched: T = decode_value(apply_patch(value, &body)?, kind, api_version)?;
            match put(catalog, caller, patched) {
                Err(err) if err.kind == ErrorKind::Conflict && attempts < 5 && !patch_pins_version(&body) => attempts += 1,
                other => return other,
            }
        }
    })
    .await;
    respond(&headers, StatusCode::OK, result)
}

/// Virtual kinds have no event log of their own: a watch on them is refused, with the
/// watch that gives the same changes.
fn no_watch(params: &ListParams, resource: &str) -> Result<()> {
    if params.is_watch() {
        return Err(Error::new(
            ErrorKind::MethodNotAllowed,
            format!("{resource} cannot be watched: watch imagestreams, whose every tag change is an event"),
        ));
    }
    Ok(())
}

fn patch_pins_version(body: &RawBody) -> bool {
    serde_json::from_slice::<serde_json::Value>(&body.bytes).ok().and_then(|v| v.pointer("/metadata/resourceVersion").cloned()).is_some()
}

fn deleted(kind: &str, group: &str, name: &str) -> berth_model::meta::Status {
    success(StatusDetails { name: name.to_string(), group: group.to_string(), kind: kind.to_string(), causes: Vec::new() })
}

// Image streams.

async fn list_streams(State(app): State<App>, ns: Option<Path<String>>, Query(params): Query<ListParams>, headers: HeaderMap) -> Response {
    list_or_watch(app, headers, ns.map(|Path(ns)| ns), params, |c, caller, ns, o| c.list_streams(caller, ns, o)).await
}

async fn create_stream(State(app): State<App>, Path(ns): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, ImageStream::KIND, IMAGE_API_VERSION, StatusCode::CREATED, move |c, caller, s| {
        c.create_stream(caller, &ns, s)
    })
    .await
}

async fn get_stream(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let result = call_inline(&app, &headers, |c, caller| c.get_stream(caller, &ns, &name));
    respond(&headers, StatusCode::OK, result)
}

async fn update_stream(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, ImageStream::KIND, IMAGE_API_VERSION, StatusCode::OK, move |c, caller, s| {
        c.update_stream(caller, &ns, &name, s)
    })
    .await
}

async fn patch_stream(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap, body: RawBody) -> Response {
    let (ns2, name2) = (ns.clone(), name.clone());
    patch_object(
        app,
        headers,
        body,
        move |c, caller| c.get_stream(caller, &ns, &name),
        move |c, caller, s| c.update_stream(caller, &ns2, &name2, s),
    )
    .await
}

async fn delete_stream(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let result = call(&app, &headers, move |c, caller| c.delete_stream(caller, &ns, &name)).await;
    respond(&headers, StatusCode::OK, result)
}

// ImageStreamTags and ImageTags: one set of handlers for both views of a tag.

async fn list_tags<V: TagView + Serialize>(
    State(app): State<App>,
    Path(ns): Path<String>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
) -> Response {
    let result = match no_watch(&params, V::RESOURCE).and_then(|()| params.options()) {
        Ok(options) => call(&app, &headers, move |c, caller| c.list_tag_views::<V>(caller, &ns, &options)).await,
        Err(err) => Err(err),
    };
    respond(&headers, StatusCode::OK, result.map(|list| list_of(V::KIND, IMAGE_API_VERSION, list)))
}

async fn get_tag<V: TagView + Serialize>(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let result = call_inline(&app, &headers, |c, caller| c.get_tag_view::<V>(caller, &ns, &name));
    respond(&headers, StatusCode::OK, result)
}

async fn create_tag<V: TagView + Serialize + DeserializeOwned>(
    State(app): State<App>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    with_body(app, headers, body, V::KIND, IMAGE_API_VERSION, StatusCode::CREATED, move |c, caller, view: V| {
        c.create_tag_view(caller, &ns, view)
    })
    .await
}

async fn update_tag<V: TagView + Serialize + DeserializeOwned>(
    State(app): State<App>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    with_body(app, headers, body, V::KIND, IMAGE_API_VERSION, StatusCode::OK, move |c, caller, view: V| {
        c.update_tag_view(caller, &ns, &name, view)
    })
    .await
}

async fn patch_tag<V: TagView + Serialize + DeserializeOwned>(
    State(app): State<App>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    let (ns2, name2) = (ns.clone(), name.clone());
    patch_kind(
        app,
        headers,
        body,
        (V::KIND, IMAGE_API_VERSION),
        move |c, caller| c.get_tag_view::<V>(caller, &ns, &name),
        move |c, caller, view| c.update_tag_view(caller, &ns2, &name2, view),
    )
    .await
}

async fn delete_tag<V: TagView>(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let shown = name.clone();
    let result = call(&app, &headers, move |c, caller| c.delete_tag_view::<V>(caller, &ns, &name)).await;
    respond(&headers, StatusCode::OK, result.map(|()| deleted(V::RESOURCE, "image.openshift.io", &shown)))
}

async fn get_stream_image(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let result = call_inline(&app, &headers, |c, caller| c.get_stream_image(caller, &ns, &name));
    respond(&headers, StatusCode::OK, result)
}

/// A mapping from a cluster admin is taken as written; one from anyone else names an
/// image that berth reads itself, as an import would, before the tag moves.
async fn create_mapping(State(app): State<App>, Path(ns): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    let mapping: ImageStreamMapping = match decode(&body, "ImageStreamMapping", IMAGE_API_VERSION) {
        Ok(mapping) => mapping,
        Err(err) => return render_error(err),
    };
    let checked = {
        let (ns, mapping) = (ns.clone(), mapping.clone());
        call(&app, &headers, move |c, caller| {
            caller.require(berth_model::access::Action::Write(&ns), "create", "imagestreammappings.image.openshift.io")?;
            c.check_mapping(&ns, &mapping)?;
            c.check_stream_creation(caller, &ns, &mapping.metadata.name, "mapping an image into it")?;
            Ok(TrustedImage::vouched(caller, mapping.image.clone()).ok())
        })
        .await
    };
    let vouched = match checked {
        Ok(checked) => checked,
        Err(err) => return render_error(err),
    };
    let image = match vouched {
        Some(image) => image,
        None => match app.importer.read_mapped_image(&ns, &mapping.image).await {
            Ok(image) => image,
            Err(err) => return render_error(err),
        },
    };
    let name = mapping.metadata.name.clone();
    let result = call(&app, &headers, move |c, caller| c.create_mapping(caller, &ns, mapping, image, "mapping")).await;
    respond(
        &headers,
        StatusCode::CREATED,
        result.map(|()| berth_model::meta::Status { code: 201, ..deleted("imagestreammappings", "image.openshift.io", &name) }),
    )
}

/// Imports wait on other registries, so they run on the async workers; only their store
/// work goes to blocking threads.
/// The caller of a request, for handlers whose service is async (the importer, the
/// registry's upkeep) and so is not run through `call`.
async fn authenticated(app: &App, headers: &HeaderMap) -> Result<Caller> {
    call(app, headers, |_, caller| Ok(caller.clone())).await
}

async fn create_import(State(app): State<App>, Path(ns): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    let isi: ImageStreamImport = match decode(&body, "ImageStreamImport", IMAGE_API_VERSION) {
        Ok(isi) => isi,
        Err(err) => return render_error(err),
    };
    let caller = match authenticated(&app, &headers).await {
        Ok(caller) => caller,
        Err(err) => return render_error(err),
    };
    let result = app.importer.create_import(&caller, &ns, isi).await;
    respond(&headers, StatusCode::CREATED, result)
}

// Images.

async fn list_images(State(app): State<App>, Query(params): Query<ListParams>, headers: HeaderMap) -> Response {
    list_or_watch(app, headers, None, params, |c, caller, _, o| c.list_images(caller, o)).await
}

async fn create_image(State(app): State<App>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, Image::KIND, IMAGE_API_VERSION, StatusCode::CREATED, |c, caller, i| c.create_image(caller, i)).await
}

async fn get_image(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = call_inline(&app, &headers, |c, caller| c.get_image(caller, &name));
    respond(&headers, StatusCode::OK, result)
}

async fn update_image(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, Image::KIND, IMAGE_API_VERSION, StatusCode::OK, move |c, caller, i| c.update_image(caller, &name, i))
        .await
}

async fn patch_image(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    let name2 = name.clone();
    patch_object(app, headers, body, move |c, caller| c.get_image(caller, &name), move |c, caller, i| c.update_image(caller, &name2, i))
        .await
}

async fn delete_image(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = call(&app, &headers, move |c, caller| c.delete_image(caller, &name)).await;
    respond(&headers, StatusCode::OK, result)
}

// Namespaces.

async fn list_namespaces(State(app): State<App>, Query(params): Query<ListParams>, headers: HeaderMap) -> Response {
    list_or_watch(app, headers, None, params, |c, caller, _, o| c.list_namespaces(caller, o)).await
}

async fn create_namespace(State(app): State<App>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, Namespace::KIND, "v1", StatusCode::CREATED, |c, caller, n| c.create_namespace(caller, n)).await
}

async fn get_namespace(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = call_inline(&app, &headers, |c, caller| c.get_namespace(caller, &name));
    respond(&headers, StatusCode::OK, result)
}

async fn update_namespace(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, Namespace::KIND, "v1", StatusCode::OK, move |c, caller, n| c.update_namespace(caller, &name, n)).await
}

async fn patch_namespace(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    let name2 = name.clone();
    patch_object(
        app,
        headers,
        body,
        move |c, caller| c.get_namespace(caller, &name),
        move |c, caller, n| c.update_namespace(caller, &name2, n),
    )
    .await
}

async fn delete_namespace(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = call(&app, &headers, move |c, caller| c.delete_namespace(caller, &name)).await;
    respond(&headers, StatusCode::OK, result)
}

// Secrets.

async fn list_secrets(State(app): State<App>, ns: Option<Path<String>>, Query(params): Query<ListParams>, headers: HeaderMap) -> Response {
    list_or_watch(app, headers, ns.map(|Path(ns)| ns), params, |c, caller, ns, o| c.list_secrets(caller, ns, o)).await
}

async fn create_secret(State(app): State<App>, Path(ns): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, Secret::KIND, "v1", StatusCode::CREATED, move |c, caller, s| c.put_secret(caller, &ns, None, s)).await
}

async fn get_secret(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let result = call_inline(&app, &headers, |c, caller| c.get_secret(caller, &ns, &name));
    respond(&headers, StatusCode::OK, result)
}

async fn update_secret(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, Secret::KIND, "v1", StatusCode::OK, move |c, caller, s| c.put_secret(caller, &ns, Some(&name), s)).await
}

async fn patch_secret(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap, body: RawBody) -> Response {
    let (ns2, name2) = (ns.clone(), name.clone());
    patch_object(
        app,
        headers,
        body,
        move |c, caller| c.get_secret(caller, &ns, &name),
        move |c, caller, s| c.put_secret(caller, &ns2, Some(&name2), s),
    )
    .await
}

async fn delete_secret(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let result = call(&app, &headers, move |c, caller| c.delete_secret(caller, &ns, &name)).await;
    respond(&headers, StatusCode::OK, result)
}

// Resource quotas.

async fn list_resource_quotas(
    State(app): State<App>,
    ns: Option<Path<String>>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
) -> Response {
    list_or_watch(app, headers, ns.map(|Path(ns)| ns), params, |c, caller, ns, o| c.list_resource_quotas(caller, ns, o)).await
}

async fn create_resource_quota(State(app): State<App>, Path(ns): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, ResourceQuota::KIND, "v1", StatusCode::CREATED, move |c, caller, q| {
        c.put_resource_quota(caller, &ns, None, q)
    })
    .await
}

async fn get_resource_quota(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let result = call_inline(&app, &headers, |c, caller| c.get_resource_quota(caller, &ns, &name));
    respond(&headers, StatusCode::OK, result)
}

async fn update_resource_quota(
    State(app): State<App>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    with_body(app, headers, body, ResourceQuota::KIND, "v1", StatusCode::OK, move |c, caller, q| {
        c.put_resource_quota(caller, &ns, Some(&name), q)
    })
    .await
}

async fn patch_resource_quota(
    State(app): State<App>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    let (ns2, name2) = (ns.clone(), name.clone());
    patch_object(
        app,
        headers,
        body,
        move |c, caller| c.get_resource_quota(caller, &ns, &name),
        move |c, caller, q| c.put_resource_quota(caller, &ns2, Some(&name2), q),
    )
    .await
}

async fn delete_resource_quota(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let result = call(&app, &headers, move |c, caller| c.delete_resource_quota(caller, &ns, &name)).await;
    respond(&headers, StatusCode::OK, result)
}

// Limit ranges.

async fn list_limit_ranges(
    State(app): State<App>,
    ns: Option<Path<String>>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
) -> Response {
    list_or_watch(app, headers, ns.map(|Path(ns)| ns), params, |c, caller, ns, o| c.list_limit_ranges(caller, ns, o)).await
}

async fn create_limit_range(State(app): State<App>, Path(ns): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, LimitRange::KIND, "v1", StatusCode::CREATED, move |c, caller, r| c.put_limit_range(caller, &ns, None, r))
        .await
}

async fn get_limit_range(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let result = call_inline(&app, &headers, |c, caller| c.get_limit_range(caller, &ns, &name));
    respond(&headers, StatusCode::OK, result)
}

async fn update_limit_range(
    State(app): State<App>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    with_body(app, headers, body, LimitRange::KIND, "v1", StatusCode::OK, move |c, caller, r| {
        c.put_limit_range(caller, &ns, Some(&name), r)
    })
    .await
}

async fn patch_limit_range(
    State(app): State<App>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    let (ns2, name2) = (ns.clone(), name.clone());
    patch_object(
        app,
        headers,
        body,
        move |c, caller| c.get_limit_range(caller, &ns, &name),
        move |c, caller, r| c.put_limit_range(caller, &ns2, Some(&name2), r),
    )
    .await
}

async fn delete_limit_range(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let result = call(&app, &headers, move |c, caller| c.delete_limit_range(caller, &ns, &name)).await;
    respond(&headers, StatusCode::OK, result)
}

// Subscriptions.

async fn list_subscriptions(
    State(app): State<App>,
    ns: Option<Path<String>>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
) -> Response {
    list_or_watch(app, headers, ns.map(|Path(ns)| ns), params, |c, caller, ns, o| c.list_subscriptions(caller, ns, o)).await
}

async fn create_subscription(State(app): State<App>, Path(ns): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, Subscription::KIND, BERTH_API_VERSION, StatusCode::CREATED, move |c, caller, s| {
        c.put_subscription(caller, &ns, None, s)
    })
    .await
}

async fn get_subscription(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let result = call_inline(&app, &headers, |c, caller| c.get_subscription(caller, &ns, &name));
    respond(&headers, StatusCode::OK, result)
}

async fn update_subscription(
    State(app): State<App>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    with_body(app, headers, body, Subscription::KIND, BERTH_API_VERSION, StatusCode::OK, move |c, caller, s| {
        c.put_subscription(caller, &ns, Some(&name), s)
    })
    .await
}

async fn delete_subscription(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let result = call(&app, &headers, move |c, caller| c.delete_subscription(caller, &ns, &name)).await;
    respond(&headers, StatusCode::OK, result)
}

// Lineage.

/// The query of `GET /apis/berth.dev/v1/lineage/{ancestors|descendants|layer}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LineageParams {
    image: Option<String>,
    namespace: Option<String>,
    image_stream_tag: Option<String>,
    all_versions: Option<String>,
    /// `imageimpact` only: whether the images built on those asked about count (default true).
    descendants: Option<String>,
}

/// A boolean query parameter (`?x`, `?x=true`, `?x=false`).
fn flag(name: &str, value: Option<&str>, default: bool) -> Result<bool, Error> {
    match value {
        None => Ok(default),
        Some("false") => Ok(false),
        Some("true") | Some("") => Ok(true),
        Some(other) => Err(Error::bad_request(format!("{name}={other:?} must be true or false"))),
    }
}

/// `GET /apis/berth.dev/v1/imageimpact?image=...|namespace=NS&imageStreamTag=STREAM:TAG`:
/// what a mark on those images reaches (`berth adm vulnerable`, `berth adm who-runs`).
async fn image_impact(State(app): State<App>, Query(params): Query<LineageParams>, headers: HeaderMap) -> Response {
    let (all_versions, descendants) =
        match (flag("allVersions", params.all_versions.as_deref(), false), flag("descendants", params.descendants.as_deref(), true)) {
            (Ok(all), Ok(descendants)) => (all, descendants),
            (Err(err), _) | (_, Err(err)) => return render_error(err),
        };
    let query = crate::services::lineage::LineageQuery {
        relation: berth_model::lineage::Relation::Descendants,
        image: params.image,
        image_stream_tag: params.image_stream_tag,
        namespace: params.namespace,
        all_versions,
    };
    let result = call(&app, &headers, move |catalog, caller| catalog.image_impact(caller, query, descendants)).await;
    respond(&headers, StatusCode::OK, result)
}

#[derive(serde::Deserialize)]
struct TopParams {
    namespace: Option<String>,
}

/// `GET /apis/berth.dev/v1/top/images|imagestreams|namespaces[?namespace=NS]`: usage reports.
async fn top(State(app): State<App>, Path(what): Path<String>, Query(params): Query<TopParams>, headers: HeaderMap) -> Response {
    let namespace = params.namespace.filter(|ns| !ns.is_empty());
    match what.as_str() {
        "images" => {
            respond(&headers, StatusCode::OK, call(&app, &headers, move |c, caller| c.top_images(caller, namespace.as_deref())).await)
        }
        "imagestreams" => {
            respond(&headers, StatusCode::OK, call(&app, &headers, move |c, caller| c.top_imagestreams(caller, namespace.as_deref())).await)
        }
        "namespaces" => {
            respond(&headers, StatusCode::OK, call(&app, &headers, move |c, caller| c.top_namespaces(caller, namespace.as_deref())).await)
        }
        _ => render_error(
            Error::not_found("top", &what)
                .with_message(format!("berth reports the top of images, imagestreams or namespaces, not {what:?}")),
        ),
    }
}

#[derive(serde::Deserialize)]
struct DryRunParams {
    #[serde(rename = "dryRun")]
    dry_run: Option<String>,
}

/// `POST /apis/berth.dev/v1/imageprunes[?dryRun=All]`: a prune's plan, carried out unless
/// a dry run; a confirmed cluster-wide prune then sweeps the blob store.
async fn create_prune(State(app): State<App>, Query(params): Query<DryRunParams>, headers: HeaderMap, body: RawBody) -> Response {
    let dry_run = match params.dry_run.as_deref() {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return render_error(Error::bad_request(format!("dryRun={other:?} is not known: the only value is All (as in Kubernetes)")));
        }
    };
    let prune: berth_model::prune::ImagePrune = match decode(&body, "ImagePrune", BERTH_API_VERSION) {
        Ok(prune) => prune,
        Err(err) => return render_error(err),
    };
    let caller = match authenticated(&app, &headers).await {
        Ok(caller) => caller,
        Err(err) => return render_error(err),
    };
    respond(&headers, StatusCode::CREATED, app.registry.prune(&caller, prune, dry_run).await)
}

/// `POST /apis/berth.dev/v1/workloadreports`: workloads that run, with their images.
async fn create_workload_report(State(app): State<App>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, "WorkloadReport", BERTH_API_VERSION, StatusCode::CREATED, |c, caller, report| {
        c.report_workloads(caller, report)
    })
    .await
}

/// `POST /apis/berth.dev/v1/storechecks`: `berth adm fsck`.
async fn create_store_check(State(app): State<App>, headers: HeaderMap, body: RawBody) -> Response {
    let check: berth_model::prune::StoreCheck = match decode(&body, "StoreCheck", BERTH_API_VERSION) {
        Ok(check) => check,
        Err(err) => return render_error(err),
    };
    let caller = match authenticated(&app, &headers).await {
        Ok(caller) => caller,
        Err(err) => return render_error(err),
    };
    respond(&headers, StatusCode::CREATED, app.registry.check_store(&caller, check).await)
}

async fn lineage(
    State(app): State<App>,
    Path(relation): Path<String>,
    Query(params): Query<LineageParams>,
    headers: HeaderMap,
) -> Response {
    use berth_model::lineage::Relation;
    let Some(relation) = Relation::parse(&relation) else {
        return render_error(
            Error::not_found("lineage", &relation)
                .with_message(format!("lineage {relation:?} is not a question berth answers: ask for ancestors, descendants or layer")),
        );
    };
    let all_versions = match flag("allVersions", params.all_versions.as_deref(), false) {
        Ok(all) => all,
        Err(err) => return render_error(err),
    };
    let query = crate::services::lineage::LineageQuery {
        relation,
        image: params.image,
        image_stream_tag: params.image_stream_tag,
        namespace: params.namespace,
        all_versions,
    };
    let result = call(&app, &headers, move |catalog, caller| catalog.lineage(caller, query)).await;
    respond(&headers, StatusCode::OK, result)
}

// Image classes.

async fn list_classes(State(app): State<App>, Query(params): Query<ListParams>, headers: HeaderMap) -> Response {
    list_or_watch(app, headers, None, params, |c, caller, _, o| c.list_classes(caller, o)).await
}

async fn create_class(State(app): State<App>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, ImageClass::KIND, BERTH_API_VERSION, StatusCode::CREATED, |c, caller, class| {
        c.put_class(caller, None, class)
    })
    .await
}

async fn get_class(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = call_inline(&app, &headers, |c, caller| c.get_class(caller, &name));
    respond(&headers, StatusCode::OK, result)
}

async fn update_class(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, ImageClass::KIND, BERTH_API_VERSION, StatusCode::OK, move |c, caller, class| {
        c.put_class(caller, Some(&name), class)
    })
    .await
}

async fn delete_class(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = call(&app, &headers, move |c, caller| c.delete_class(caller, &name)).await;
    respond(&headers, StatusCode::OK, result)
}

async fn list_class_groups(State(app): State<App>, Query(params): Query<ListParams>, headers: HeaderMap) -> Response {
    list_or_watch(app, headers, None, params, |c, caller, _, o| c.list_class_groups(caller, o)).await
}

async fn create_class_group(State(app): State<App>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, ImageClassGroup::KIND, BERTH_API_VERSION, StatusCode::CREATED, |c, caller, group| {
        c.put_class_group(caller, None, group)
    })
    .await
}

async fn get_class_group(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = call_inline(&app, &headers, |c, caller| c.get_class_group(caller, &name));
    respond(&headers, StatusCode::OK, result)
}

async fn update_class_group(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, ImageClassGroup::KIND, BERTH_API_VERSION, StatusCode::OK, move |c, caller, group| {
        c.put_class_group(caller, Some(&name), group)
    })
    .await
}

async fn delete_class_group(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = call(&app, &headers, move |c, caller| c.delete_class_group(caller, &name)).await;
    respond(&headers, StatusCode::OK, result)
}

// Image policies.

async fn list_pruners(State(app): State<App>, Query(params): Query<ListParams>, headers: HeaderMap) -> Response {
    list_or_watch(app, headers, None, params, |c, caller, _, o| c.list_pruners(caller, o)).await
}

async fn create_pruner(State(app): State<App>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, ImagePruner::KIND, BERTH_API_VERSION, StatusCode::CREATED, |c, caller, pruner| {
        c.put_pruner(caller, None, pruner)
    })
    .await
}

async fn get_pruner(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = call_inline(&app, &headers, |c, caller| c.get_pruner(caller, &name));
    respond(&headers, StatusCode::OK, result)
}

async fn update_pruner(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, ImagePruner::KIND, BERTH_API_VERSION, StatusCode::OK, move |c, caller, pruner| {
        c.put_pruner(caller, Some(&name), pruner)
    })
    .await
}

async fn delete_pruner(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = call(&app, &headers, move |c, caller| c.delete_cluster_object::<ImagePruner>(caller, &name)).await;
    respond(&headers, StatusCode::OK, result)
}

async fn list_policies(State(app): State<App>, Query(params): Query<ListParams>, headers: HeaderMap) -> Response {
    list_or_watch(app, headers, None, params, |c, caller, _, o| c.list_policies(caller, o)).await
}

async fn create_policy(State(app): State<App>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, ImagePolicy::KIND, BERTH_API_VERSION, StatusCode::CREATED, |c, caller, policy| {
        c.put_policy(caller, None, policy)
    })
    .await
}

async fn get_policy(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = call_inline(&app, &headers, |c, caller| c.get_policy(caller, &name));
    respond(&headers, StatusCode::OK, result)
}

async fn update_policy(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, ImagePolicy::KIND, BERTH_API_VERSION, StatusCode::OK, move |c, caller, policy| {
        c.put_policy(caller, Some(&name), policy)
    })
    .await
}

async fn delete_policy(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = call(&app, &headers, move |c, caller| c.delete_policy(caller, &name)).await;
    respond(&headers, StatusCode::OK, result)
}

#[derive(Debug, Default, Deserialize)]
struct ClassImagesParams {
    state: Option<String>,
}

/// `GET /apis/berth.dev/v1/imageclasses/{name}/images[?state=current|outdated]`.
async fn class_images(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(params): Query<ClassImagesParams>,
    headers: HeaderMap,
) -> Response {
    let result = call(&app, &headers, move |c, caller| c.class_images(caller, &name, params.state.as_deref())).await;
    respond(&headers, StatusCode::OK, result)
}

// Contracts.

/// `?from=&to=` of a contract diff: revisions of the tag or images of the stream.
#[derive(Debug, Default, Deserialize)]
struct ContractDiffParams {
    from: Option<String>,
    to: Option<String>,
}

async fn contract_diff(
    State(app): State<App>,
    Path((ns, name)): Path<(String, String)>,
    Query(params): Query<ContractDiffParams>,
    headers: HeaderMap,
) -> Response {
    let result = call(&app, &headers, move |c, caller| {
        c.contract_diff(
            caller,
            &ns,
            &name,
            params.from.as_deref().filter(|f| !f.is_empty()),
            params.to.as_deref().filter(|t| !t.is_empty()),
        )
    })
    .await;
    respond(&headers, StatusCode::OK, result)
}

/// The body of a rollback (`kind: TagRollback`): `revision` or `image`, or neither for the
/// image before the current one.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TagRollback {
    // `decode` checks them; named here so that unknown fields are refused and these are not.
    #[serde(default)]
    #[expect(dead_code, reason = "checked by decode")]
    kind: String,
    #[serde(default)]
    #[expect(dead_code, reason = "checked by decode")]
    api_version: String,
    revision: Option<usize>,
    image: Option<String>,
}

async fn rollback_tag(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap, body: RawBody) -> Response {
    use berth_model::tags::rollback::RollbackTarget;
    let request: TagRollback = if body.bytes.is_empty() {
        TagRollback::default()
    } else {
        match decode(&body, "TagRollback", BERTH_API_VERSION) {
            Ok(request) => request,
            Err(err) => return render_error(err),
        }
    };
    let target = match (request.revision, request.image.filter(|i| !i.is_empty())) {
        (Some(_), Some(_)) => {
            return render_error(Error::bad_request("give either revision or image to roll back to, not both"));
        }
        (Some(revision), None) => RollbackTarget::Revision(revision),
        (None, Some(image)) => RollbackTarget::Image(image),
        (None, None) => RollbackTarget::Previous,
    };
    let result = call(&app, &headers, move |c, caller| c.rollback_tag(caller, &ns, &name, target)).await;
    respond(&headers, StatusCode::OK, result)
}

async fn resume_tag(State(app): State<App>, Path((ns, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let result = call(&app, &headers, move |c, caller| c.resume_tag(caller, &ns, &name)).await;
    respond(&headers, StatusCode::OK, result)
}

// Admission.

/// `?cluster=NAME` on the review endpoints: which cluster sends the review. The
/// ImageReview endpoint also takes `?resource=` (`pods` when absent): a CI job checks a
/// build's base image as a BuildConfig's with `?resource=buildconfigs`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ReviewParams {
    cluster: Option<String>,
    resource: Option<String>,
}

pub(crate) async fn admission_mutate(
    State(app): State<App>,
    Query(params): Query<ReviewParams>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    admission(app, params, headers, body, crate::services::admission::Webhook::Mutating).await
}

pub(crate) async fn admission_validate(
    State(app): State<App>,
    Query(params): Query<ReviewParams>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    admission(app, params, headers, body, crate::services::admission::Webhook::Validating).await
}

/// `POST /admission/{mutate,validate}`: an AdmissionReview from the Kubernetes API server
/// (with a token of cluster-read role, which the API server's admission kubeconfig holds).
async fn admission(
    app: App,
    params: ReviewParams,
    headers: HeaderMap,
    body: RawBody,
    webhook: crate::services::admission::Webhook,
) -> Response {
    let cluster = match crate::services::admission::cluster_name(params.cluster.as_deref()) {
        Ok(cluster) => cluster,
        Err(err) => return render_error(err),
    };
    // RawBody caps the body (413 with a Status) before anything is parsed or authenticated.
    let review: berth_model::admission::AdmissionReview = match serde_json::from_slice(&body.bytes) {
        Ok(review) => review,
        Err(err) => return render_error(Error::bad_request(format!("the body is not an admission.k8s.io/v1 AdmissionReview: {err}"))),
    };
    let Some(request) = review.request else {
        return render_error(Error::bad_request("the AdmissionReview has no request: the API server sends one with each review"));
    };
    if review.api_version != "admission.k8s.io/v1" {
        return render_error(Error::bad_request(format!(
            "AdmissionReview {:?} is not supported: register the webhook with admissionReviewVersions: [v1]",
            review.api_version
        )));
    }
    // Answered on the request's own task, as reads are: what a review needs is kept in
    // memory (services/policy.rs), and the store reads it may make are single-row.
    let result = call_inline(&app, &headers, |catalog, caller| {
        caller.require(berth_model::access::Action::ReadCluster, "create", "admissionreviews")?;
        catalog.review(&app.admission, &cluster, webhook, &request)
    });
    respond(&headers, StatusCode::OK, result)
}

/// `POST /imagereview`: an ImageReview from Kubernetes' ImagePolicyWebhook plugin.
pub(crate) async fn image_review(
    State(app): State<App>,
    Query(params): Query<ReviewParams>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    let cluster = match crate::services::admission::cluster_name(params.cluster.as_deref()) {
        Ok(cluster) => cluster,
        Err(err) => return render_error(err),
    };
    let review = match serde_json::from_slice::<berth_model::admission::ImageReview>(&body.bytes) {
        Ok(review) if review.api_version == berth_model::admission::IMAGE_REVIEW_VERSION => review,
        Ok(review) => {
            return render_error(Error::bad_request(format!(
                "ImageReview {:?} is not supported: berth answers {}",
                review.api_version,
                berth_model::admission::IMAGE_REVIEW_VERSION
            )));
        }
        Err(err) => return render_error(Error::bad_request(format!("the body is not an ImageReview: {err}"))),
    };
    let resource = params.resource.unwrap_or_else(|| "pods".to_string());
    if let Err(err) = berth_model::names::check_dns_label("resource", &resource) {
        return render_error(Error::bad_request(format!("resource={resource:?}: {}", err.message)));
    }
    let result = call_inline(&app, &headers, |catalog, caller| {
        caller.require(berth_model::access::Action::ReadCluster, "create", "imagereviews")?;
        catalog.image_review(&app.admission, &cluster, &resource, &review)
    });
    respond(&headers, StatusCode::OK, result)
}

// Scheduled imports and registry webhooks.

async fn list_scheduled(State(app): State<App>, ns: Option<Path<String>>, headers: HeaderMap) -> Response {
    let importer = app.importer.clone();
    let result = call_inline(&app, &headers, |_, caller| importer.scheduled_imports(caller, ns.as_ref().map(|Path(ns)| ns.as_str())))
        .map(|items| json!({"kind": "ScheduledImportList", "apiVersion": BERTH_API_VERSION, "items": items}));
    respond(&headers, StatusCode::OK, result)
}

/// `POST /webhooks/{name}`: a registry says something changed. Verified by the endpoint's
/// shared secret or HMAC before anything is read; 202 once the checks are started.
pub(crate) async fn receive_webhook(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    use crate::registry_events::WebhookError;
    let Some(endpoint) = app.webhooks.iter().find(|e| e.name == name) else {
        return render_error(Error::new(
            ErrorKind::NotFound,
            format!("no webhook endpoint {name:?}: endpoints are listed under `webhooks` in the server config"),
        ));
    };
    let changes = match endpoint.parse(&headers, &body) {
        Ok(changes) => changes,
        Err(WebhookError::Unverified(message)) => {
            tracing::warn!(endpoint = %name, %message, "refused an unverified registry notification");
            return render_error(Error::new(ErrorKind::Unauthorized, message));
        }
        Err(WebhookError::TooLarge(limit)) => {
            return render_error(Error::new(
                ErrorKind::TooLarge,
                format!("the payload is larger than this endpoint takes ({limit} bytes)"),
            ));
        }
        Err(err @ WebhookError::Malformed(_)) => return render_error(Error::bad_request(err.to_string())),
    };
    let received = changes.len();
    match app.importer.upstream_changed(changes, &format!("registry webhook {name}")).await {
        Ok(tracked) => {
            tracing::info!(endpoint = %name, changes = received, tracked_tags = tracked, "registry notification");
            (StatusCode::ACCEPTED, axum::Json(json!({"changes": received, "trackedTags": tracked}))).into_response()
        }
        Err(err) => render_error(err),
    }
}

// Tokens.

async fn list_tokens(State(app): State<App>, Query(params): Query<ListParams>, headers: HeaderMap) -> Response {
    list_or_watch(app, headers, None, params, |c, caller, _, o| c.list_tokens(caller, o)).await
}

async fn create_token(State(app): State<App>, headers: HeaderMap, body: RawBody) -> Response {
    with_body(app, headers, body, Token::KIND, BERTH_API_VERSION, StatusCode::CREATED, |c, caller, t| c.create_token(caller, t)).await
}

async fn get_token(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = call_inline(&app, &headers, |c, caller| c.get_token(caller, &name));
    respond(&headers, StatusCode::OK, result)
}

async fn delete_token(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let result = call(&app, &headers, move |c, caller| c.delete_token(caller, &name)).await;
    respond(&headers, StatusCode::OK, result)
}

// Discovery.

/// The resource list of a group-version, or 404.
fn discovery_of(group: &str, version: &str) -> Response {
    match discovery::resource_list(group, version) {
        Some(list) => axum::Json(list).into_response(),
        None => render_error(Error::not_found("groupversions", &format!("{group}/{version}"))),
    }
}
