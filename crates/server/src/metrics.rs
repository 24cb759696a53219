//! What operators measure: the names of berth's Prometheus metrics, in one place, and the
//! process-wide recorder that `/metrics` renders (`metrics` with
//! `metrics-exporter-prometheus`). Code that counts something uses the `metrics` macros
//! with these names; the store records its commits under the names in
//! `berth_store::metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests by `route` (the path template), `method` and `code`.
pub const HTTP_REQUESTS: &str = "berth_http_requests_total";
/// Time to the response's head by `route` and `method` (watches excluded: they last).
pub const HTTP_DURATION: &str = "berth_http_request_duration_seconds";
/// Bytes of blob and manifest bodies the registry received and sent.
pub const REGISTRY_RECEIVED: &str = "berth_registry_received_bytes_total";
pub const REGISTRY_SENT: &str = "berth_registry_sent_bytes_total";
/// Blob uploads finished, by `result` (`completed`, `failed`).
pub const REGISTRY_UPLOADS: &str = "berth_registry_uploads_total";
/// Blobs fetched from upstream for a pull, by `result` (`mirrored`, `failed`).
pub const PULL_THROUGH: &str = "berth_registry_pull_through_total";
/// Blob GETs answered with a redirect to a presigned URL (`registry.blobRedirectSeconds`).
pub const BLOB_REDIRECTS: &str = "berth_registry_blob_redirects_total";
/// Tag imports and checks, by `registry` and `result` (`imported`, `unchanged`, `failed`).
pub const IMPORTS: &str = "berth_imports_total";
/// How late a scheduled check started after it fell due.
pub const SCHEDULED_LAG: &str = "berth_scheduled_import_lag_seconds";
/// Notifications sent to subscribers, by `namespace`, `subscription` and `result`
/// (`delivered`, `failed`).
pub const DELIVERIES: &str = "berth_subscription_deliveries_total";
/// Tag changes a subscription has not been sent yet, by `namespace` and `subscription`.
pub const DELIVERY_BACKLOG: &str = "berth_subscription_backlog";
/// Watches open now.
pub const WATCHES: &str = "berth_watches";
/// Audit events that could not be written.
pub const AUDIT_FAILURES: &str = "berth_audit_write_failures_total";
/// Where the process's memory is, read when `/metrics` is rendered: the bytes Rust code
/// has allocated and not freed (absent when the binary did not say how to count them, see
/// `memory::use_allocator`), and SQLite's own heap (its page caches, in every connection). What
/// resident memory holds beyond them is the allocator's free memory, stacks and code.
pub const HEAP_LIVE: &str = "berth_heap_live_bytes";
pub const SQLITE_HEAP: &str = "berth_sqlite_heap_bytes";

/// Latency buckets, in seconds: 0.5 ms to 10 s.
const SECONDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Group-size buckets: writes per commit.
const GROUP_SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// Sets the memory gauges to what they are now.
pub(crate) fn read_memory() {
    if let Some(live) = crate::memory::live_bytes() {
        metrics::gauge!(HEAP_LIVE).set(live as f64);
    }
    metrics::gauge!(SQLITE_HEAP).set(berth_store::sqlite_heap_bytes() as f64);
}

/// The recorder of this process, installed on first use. One per process: the metrics of
/// two servers in one process (tests) add up.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets(SECONDS)
            .and_then(|builder| builder.set_buckets_for_metric(Matcher::Full(berth_store::metrics::COMMIT_GROUP_SIZE.into()), GROUP_SIZES))
            .expect("bucket lists are not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route, method and status code.");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "Time from a request to its response's head, by route and method.");
    describe_counter!(REGISTRY_RECEIVED, Unit::Bytes, "Body bytes the registry (/v2) received.");
    describe_counter!(REGISTRY_SENT, Unit::Bytes, "Body bytes the registry (/v2) sent.");
    describe_counter!(REGISTRY_UPLOADS, "Blob uploads finished, by result.");
    describe_counter!(PULL_THROUGH, "Blobs fetched from their upstream registry for a pull, by result.");
    describe_counter!(BLOB_REDIRECTS, "Blob GETs answered with a redirect to a presigned URL of the object store.");
    describe_counter!(IMPORTS, "Tag imports and checks, by upstream registry and result.");
    describe_histogram!(SCHEDULED_LAG, Unit::Seconds, "How late scheduled checks started after they fell due.");
    describe_counter!(DELIVERIES, "Notifications sent to subscribers, by subscription and result.");
    describe_gauge!(DELIVERY_BACKLOG, "Tag changes not yet sent to a subscriber.");
    describe_gauge!(WATCHES, "Watches open now.");
    describe_counter!(AUDIT_FAILURES, "Audit events that could not be written.");
    describe_gauge!(HEAP_LIVE, Unit::Bytes, "Memory Rust code has allocated and not freed.");
    describe_gauge!(SQLITE_HEAP, Unit::Bytes, "Memory SQLite has allocated (its page caches, in every connection).");
    describe_histogram!(berth_store::metrics::COMMIT_DURATION, Unit::Seconds, "Time of each store commit (one group of writes).");
    describe_histogram!(berth_store::metrics::COMMIT_GROUP_SIZE, "Writes committed together in one store commit.");
}

/// Keeps the histograms' windows drained, until `stop`.
pub async fn upkeep(mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => handle().run_upkeep(),
            _ = stop.changed() => return,
        }
    }
}
