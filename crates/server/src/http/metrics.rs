//! Operators' endpoints and the request metrics: the middleware that counts and times
//! every request (and the registry's body bytes as they stream), `/metrics` in the
//! Prometheus text format, and `/readyz`, which fails while the store cannot be written.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_model::access::Action;

use super::{App, call_inline, render_error};
use crate::metrics::{HTTP_DURATION, HTTP_REQUESTS, REGISTRY_RECEIVED, REGISTRY_SENT, handle};

/// Counts and times each request by route template, method and code; counts the body
/// bytes of registry requests and responses as they pass.
pub(crate) async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = request.uri().path();
    let route = match path.strip_prefix("/v2") {
        Some(rest) => registry_route(rest),
        None => request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "other".into()),
    };
    let registry = path.starts_with("/v2/");
    let watch = request.uri().query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let method = request.method().as_str().to_string();
    let request = if registry { count_request_body(request) } else { request };
    let response = next.run(request).await;
    let code = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method.clone(), "code" => code).increment(1);
    if !watch {
        metrics::histogram!(HTTP_DURATION, "route" => route, "method" => method).record(started.elapsed().as_secs_f64());
    }
    if registry { count_response_body(response) } else { response }
}

fn count_request_body(request: Request) -> Request {
    let received = metrics::counter!(REGISTRY_RECEIVED);
    request.map(|body| Body::new(Counted { inner: body, counter: received }))
}

fn count_response_body(response: Response) -> Response {
    let sent = metrics::counter!(REGISTRY_SENT);
    response.map(|body| Body::new(Counted { inner: body, counter: sent }))
}

/// A body that counts its data bytes as they pass and keeps the inner body's size hint
/// (so a response keeps its `Content-Length`).
struct Counted {
    inner: Body,
    counter: metrics::Counter,
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.increment(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The route template of a registry path (after `/v2`), as the distribution spec names
/// its endpoints; repository names and references never become labels.
fn registry_route(rest: &str) -> String {
    let route = match rest.trim_start_matches('/') {
        "" => "/v2/",
        "_catalog" => "/v2/_catalog",
        "token" => "/v2/token",
        rest if rest.contains("/blobs/uploads") => "/v2/{name}/blobs/uploads/{id}",
        rest if rest.contains("/blobs/") => "/v2/{name}/blobs/{digest}",
        rest if rest.contains("/manifests/") => "/v2/{name}/manifests/{reference}",
        rest if rest.ends_with("/tags/list") => "/v2/{name}/tags/list",
        rest if rest.contains("/referrers/") => "/v2/{name}/referrers/{digest}",
        _ => "/v2/other",
    };
    route.to_string()
}

/// `GET /metrics`: for tokens that may read the whole cluster (the metrics name every
/// namespace's subscriptions), as kube-apiserver's `/metrics` asks for a role.
pub(crate) async fn render(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(err) = call_inline(&app, &headers, |_, caller| caller.require(Action::ReadCluster, "get", "metrics")) {
        return render_error(err);
    }
    crate::metrics::read_memory();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], handle().render()).into_response()
}

/// How long a probe's answer is reused, so that frequent probes cost one write a second.
const PROBE_REUSE: Duration = Duration::from_secs(1);
/// How long `/readyz` waits for the store to take the probe's write.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The last answer of the store's write probe.
#[derive(Default)]
pub struct Readiness {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

/// `GET /readyz`: 200 once the server has started, while the store takes writes and the
/// blob store answers; 503 with the reason otherwise.
pub(crate) async fn readyz(State(app): State<App>) -> Response {
    if !app.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response();
    }
    let reused =
        app.readiness.last.lock().expect("readiness lock").as_ref().filter(|(at, _)| at.elapsed() < PROBE_REUSE).map(|(_, r)| r.clone());
    let result = match reused {
        Some(result) => result,
        None => {
            let store = std::sync::Arc::clone(app.catalog.store());
            let probe = tokio::task::spawn_blocking(move || store.probe_write());
            let mut result = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(err))) => Err(format!("the store cannot be written: {err}")),
                Ok(Err(err)) => Err(format!("the store's probe failed: {err}")),
                Err(_) => Err(format!("the store did not take a write within {}s", PROBE_TIMEOUT.as_secs())),
            };
            if result.is_ok() {
                result = match tokio::time::timeout(PROBE_TIMEOUT, app.registry.blobs().probe()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(err)) => Err(format!("the blob store does not answer: {err}")),
                    Err(_) => Err(format!("the blob store did not answer within {}s", PROBE_TIMEOUT.as_secs())),
                };
            }
            if let Err(message) = &result {
                tracing::warn!(%message, "not ready");
            }
            *app.readiness.last.lock().expect("readiness lock") = Some((Instant::now(), result.clone()));
            result
        }
    };
    match result {
        Ok(()) => "ok".into_response(),
        Err(message) => (StatusCode::SERVICE_UNAVAILABLE, message).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::registry_route;

    #[test]
    fn registry_routes_are_templates_without_names() {
        assert_eq!(registry_route("/"), "/v2/");
        assert_eq!(registry_route("/team/app/manifests/1.0"), "/v2/{name}/manifests/{reference}");
        assert_eq!(registry_route("/team/app/blobs/sha256:ab"), "/v2/{name}/blobs/{digest}");
        assert_eq!(registry_route("/team/app/blobs/uploads/"), "/v2/{name}/blobs/uploads/{id}");
        assert_eq!(registry_route("/team/app/blobs/uploads/0f1e"), "/v2/{name}/blobs/uploads/{id}");
        assert_eq!(registry_route("/team/app/tags/list"), "/v2/{name}/tags/list");
        assert_eq!(registry_route("/_catalog"), "/v2/_catalog");
        assert_eq!(registry_route("/whatever"), "/v2/other");
    }
}
