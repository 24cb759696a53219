//! `?watch=true`: a chunked response of one JSON event per line, fed from the event log.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use tokio::time::Instant;

use crate::http::api::ListParams;
use crate::http::{App, TableRequest, bearer, render_error, status_of};
use crate::services::watch::{Watch, WatchEvent, Watchable};
use crate::services::{Catalog, Error, ListOptions};

/// How long a watch runs when the client names no `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

struct State<T> {
    catalog: Catalog,
    /// Each event's object as a one-row Table, when the client asked for Tables.
    table: Option<TableRequest>,
    watch: Option<Watch<T>>,
    pending: VecDeque<WatchEvent>,
    committed: tokio::sync::watch::Receiver<u64>,
    stopping: tokio::sync::watch::Receiver<bool>,
    deadline: Instant,
    done: bool,
    _open: OpenWatch,
}

/// Counts a watch in `berth_watches` for as long as its response lives (a client that
/// goes away drops it).
struct OpenWatch;

impl OpenWatch {
    fn new() -> OpenWatch {
        metrics::gauge!(crate::metrics::WATCHES).increment(1.0);
        OpenWatch
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::WATCHES).decrement(1.0);
    }
}

pub async fn serve_watch<T: Watchable>(
    app: App,
    headers: HeaderMap,
    namespace: Option<String>,
    options: ListOptions,
    params: ListParams,
    table: Option<TableRequest>,
) -> Response {
    let (revision, timeout) = match (params.watch_revision(), params.timeout()) {
        (Ok(revision), Ok(timeout)) => (revision, timeout.unwrap_or(DEFAULT_TIMEOUT)),
        (Err(err), _) | (_, Err(err)) => return render_error(err),
    };
    // Subscribe before reading, so that no commit between the read and the wait is missed.
    let committed = app.catalog.store().subscribe();
    let catalog = app.catalog.clone();
    let token = bearer(&headers);
    let started = tokio::task::spawn_blocking(move || {
        let caller = catalog.authenticate(token.as_deref())?;
        catalog.start_watch::<T>(&caller, namespace.as_deref(), options, revision)
    })
    .await
    .unwrap_or_else(|err| Err(Error::internal(format!("the watch could not start: {err}"))));
    let (watch, initial) = match started {
        Ok(started) => started,
        Err(err) => return render_error(err),
    };
    let state = State {
        catalog: app.catalog.clone(),
        table,
        watch: Some(watch),
        pending: initial.into(),
        committed,
        stopping: app.stopping.clone(),
        deadline: Instant::now() + timeout,
        done: false,
        _open: OpenWatch::new(),
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        let line = next_line(&mut state).await?;
        Some((Ok::<Bytes, std::convert::Infallible>(line), state))
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], Body::from_stream(stream)).into_response()
}

fn line(event: &WatchEvent, table: Option<TableRequest>) -> Bytes {
    let object = match table {
        Some(table) => crate::http::as_table(event.object.clone(), table),
        None => event.object.clone(),
    };
    let mut bytes = serde_json::to_vec(&json!({"type": event.event_type, "object": object})).expect("events serialise");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// The next line to send, or `None` when the watch is over (timeout, or after an error
/// event).
async fn next_line<T: Watchable>(state: &mut State<T>) -> Option<Bytes> {
    loop {
        if let Some(event) = state.pending.pop_front() {
            return Some(line(&event, state.table));
        }
        if state.done {
            return None;
        }
        let latest = *state.committed.borrow_and_update();
        let behind = state.watch.as_ref().is_some_and(|w| w.revision < latest);
        if behind {
            let catalog = state.catalog.clone();
            let mut watch = state.watch.take()?;
            let read = tokio::task::spawn_blocking(move || {
                let result = catalog.next_events(&mut watch, latest);
                (watch, result)
            })
            .await;
            match read {
                Ok((watch, Ok(events))) => {
                    state.watch = Some(watch);
                    state.pending.extend(events);
                }
                Ok((_, Err(err))) => {
                    state.done = true;
                    let status = serde_json::to_value(status_of(&err)).expect("Status serialises");
                    return Some(line(&WatchEvent { event_type: "ERROR", object: status }, None));
                }
                Err(_) => return None,
            }
            continue;
        }
        tokio::select! {
            changed = tokio::time::timeout_at(state.deadline, state.committed.changed()) => match changed {
                Ok(Ok(())) => continue,
                // The deadline passed, or the store is gone: end the watch.
                Ok(Err(_)) | Err(_) => return None,
            },
            // The server is shutting down: end the watch, the client will resume elsewhere.
            _ = state.stopping.wait_for(|stopping| *stopping) => return None,
        }
    }
}
