//! Import faults a real registry will not produce on demand, from mock servers: a token
//! service that rejects a pull secret but serves anonymous users, 429 with `Retry-After`,
//! 5xx, a timeout, a truncated body, and bytes that do not match their digest. Each ends
//! in a precise condition (or a success), and history is never touched by a failure.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use berth_testkit::{Format, TestImage};
use common::{TestApp, history, istag_path};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{header, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NS: &str = "team";
const REPO: &str = "team/app";

/// A registry's view of one image: manifest, digest and config.
struct Served {
    manifest: Vec<u8>,
    digest: String,
    config: Vec<u8>,
    config_digest: String,
}

fn served(seed: u64) -> Served {
    let image = TestImage::new(Format::Oci, seed, 1, 64, "amd64");
    let config = image.config_bytes();
    Served { manifest: image.manifest_bytes(), digest: image.digest(), config_digest: berth_testkit::digest_of(&config), config }
}

fn manifest_reply(image: &Served) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("docker-content-digest", image.digest.as_str())
        .set_body_raw(image.manifest.clone(), Format::Oci.manifest_media_type())
}

/// Mounts a healthy registry serving `image` as `REPO:1`.
async fn serve(server: &MockServer, image: &Served) {
    let head = ResponseTemplate::new(200)
        .insert_header("docker-content-digest", image.digest.as_str())
        .insert_header("content-type", Format::Oci.manifest_media_type());
    Mock::given(method("HEAD")).and(path(format!("/v2/{REPO}/manifests/1"))).respond_with(head).mount(server).await;
    for reference in ["1", image.digest.as_str()] {
        Mock::given(method("GET"))
            .and(path(format!("/v2/{REPO}/manifests/{reference}")))
            .respond_with(manifest_reply(image))
            .mount(server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(format!("/v2/{REPO}/blobs/{}", image.config_digest)))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(image.config.clone()))
        .mount(server)
        .await;
}

async fn app() -> TestApp {
    TestApp::start_with(|config| {
        config.import.retries = 2;
        config.import.request_timeout_seconds = 1;
    })
    .await
}

/// Sets (or re-requests, with generation 0) the import of `app:1` from `host` and waits
/// for it to settle.
async fn import(app: &TestApp, host: &str) -> Value {
    let tag = json!({"from": {"kind": "DockerImage", "name": format!("{host}/{REPO}:1")}, "generation": 0});
    let (status, reply) = app.put(&istag_path(NS, "app:1"), json!({"metadata": {"name": "app:1"}, "tag": tag})).await;
    assert!(status.is_success(), "{reply}");
    app.settled_tag(NS, "app:1").await
}

fn reason(istag: &Value) -> (&str, &str) {
    (istag["conditions"][0]["reason"].as_str().unwrap_or(""), istag["conditions"][0]["message"].as_str().unwrap_or(""))
}

/// Imports `image` from a healthy `server`, then checks that after `fault` is mounted a
/// re-import fails with `expected_reason` and leaves history as it was.
async fn fails_without_touching_history(
    server: &MockServer,
    fault: impl std::future::Future<Output = ()>,
    expected_reason: &str,
) -> String {
    let first = served(1);
    serve(server, &first).await;
    let app = app().await;
    app.namespace(NS).await;
    let host = server.address().to_string();
    assert_eq!(import(&app, &host).await["image"]["metadata"]["name"], first.digest);
    server.reset().await;
    fault.await;
    let istag = import(&app, &host).await;
    let (reason, message) = reason(&istag);
    assert_eq!(reason, expected_reason, "{istag}");
    assert_eq!(istag["conditions"][0]["status"], "False");
    assert_eq!(istag["image"]["metadata"]["name"], first.digest, "the tag still points at its image");
    assert_eq!(history(&app.stream(NS, "app").await, "1"), [(first.digest.clone(), 1)]);
    let message = message.to_string();
    app.stop().await;
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_pull_secret_falls_back_to_anonymous_access() {
    let server = MockServer::start().await;
    let host = server.address().to_string();
    let image = served(2);
    let challenge = format!(r#"Bearer realm="http://{host}/token",service="mock""#);
    // The registry wants a token; the token service refuses the secret's credentials
    // ("incorrect username or password") but serves anonymous users.
    Mock::given(path("/token"))
        .and(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(401).set_body_string("incorrect username or password"))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token": "anonymous-token"})))
        .mount(&server)
        .await;
    Mock::given(header("authorization", "Bearer anonymous-token"))
        .and(path(format!("/v2/{REPO}/manifests/1")))
        .and(method("HEAD"))
        .respond_with(ResponseTemplate::new(200).insert_header("docker-content-digest", image.digest.as_str()))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(header("authorization", "Bearer anonymous-token"))
        .and(path(format!("/v2/{REPO}/manifests/{}", image.digest)))
        .respond_with(manifest_reply(&image))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(header("authorization", "Bearer anonymous-token"))
        .and(path(format!("/v2/{REPO}/blobs/{}", image.config_digest)))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(image.config.clone()))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path(format!("/v2/{REPO}/manifests/1")))
        .respond_with(ResponseTemplate::new(401).insert_header("www-authenticate", challenge.as_str()))
        .mount(&server)
        .await;

    let app = app().await;
    app.namespace(NS).await;
    let auth = base64::engine::general_purpose::STANDARD.encode("robot:expired-password");
    let document = json!({"auths": {host.clone(): {"auth": auth}}}).to_string();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "stale"}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(document)}});
    let (status, reply) = app.post(&format!("/api/v1/namespaces/{NS}/secrets"), secret).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");

    let istag = import(&app, &host).await;
    assert_eq!(istag["image"]["metadata"]["name"], image.digest, "{istag}");
    let token_requests: Vec<bool> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/token")
        .map(|r| r.headers.contains_key("authorization"))
        .collect();
    assert_eq!(token_requests, [true, false], "the secret was tried first, then anonymous access");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_waits_as_retry_after_says_then_gives_up_with_a_reason() {
    // Once: the import waits the second the registry asks for, then succeeds.
    let server = MockServer::start().await;
    let image = served(3);
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    serve(&server, &image).await;
    let app = app().await;
    app.namespace(NS).await;
    let started = Instant::now();
    let istag = import(&app, &server.address().to_string()).await;
    assert_eq!(istag["image"]["metadata"]["name"], image.digest, "{istag}");
    assert!(started.elapsed() >= Duration::from_millis(950), "Retry-After: 1 was honoured ({:?})", started.elapsed());
    app.stop().await;

    // Always: the import fails with TooManyRequests once the retries are spent.
    let server = MockServer::start().await;
    let fault = Mock::given(method("HEAD")).respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0")).mount(&server);
    let message = fails_without_touching_history(&server, fault, "TooManyRequests").await;
    assert!(message.contains("429"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_reported() {
    let server = MockServer::start().await;
    let image = served(4);
    Mock::given(method("GET"))
        .and(path(format!("/v2/{REPO}/manifests/{}", image.digest)))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    serve(&server, &image).await;
    let app = app().await;
    app.namespace(NS).await;
    assert_eq!(import(&app, &server.address().to_string()).await["image"]["metadata"]["name"], image.digest);
    app.stop().await;

    let server = MockServer::start().await;
    let fault = Mock::given(method("HEAD")).respond_with(ResponseTemplate::new(502)).mount(&server);
    let message = fails_without_touching_history(&server, fault, "ServiceUnavailable").await;
    assert!(message.contains("502"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_does_not_answer_times_out() {
    let server = MockServer::start().await;
    let fault = Mock::given(method("HEAD")).respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5))).mount(&server);
    let message = fails_without_touching_history(&server, fault, "Timeout").await;
    assert!(message.contains("did not answer in time"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_does_not_match_its_digest_is_refused() {
    let server = MockServer::start().await;
    let moved = served(5);
    let tampered = served(6);
    let fault = async {
        Mock::given(method("HEAD"))
            .respond_with(ResponseTemplate::new(200).insert_header("docker-content-digest", moved.digest.as_str()))
            .mount(&server)
            .await;
        // The registry sends other bytes under the digest it announced.
        Mock::given(method("GET"))
            .and(path(format!("/v2/{REPO}/manifests/{}", moved.digest)))
            .respond_with(ResponseTemplate::new(200).set_body_raw(tampered.manifest.clone(), Format::Oci.manifest_media_type()))
            .mount(&server)
            .await;
    };
    let message = fails_without_touching_history(&server, fault, "DigestMismatch").await;
    assert!(message.contains(&moved.digest) && message.contains(&tampered.digest), "{message}");
}

/// A registry that announces the whole manifest, sends part of it and hangs up.
async fn truncating_registry(image: &Served) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let (digest, manifest) = (image.digest.clone(), image.manifest.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (digest, manifest) = (digest.clone(), manifest.clone());
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let Ok(read) = socket.read(&mut request).await else { return };
                let head = String::from_utf8_lossy(&request[..read]).to_string();
                let headers = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ndocker-content-digest: {digest}\r\ncontent-length: {}\r\n\r\n",
                    Format::Oci.manifest_media_type(),
                    manifest.len()
                );
                if head.starts_with("HEAD ") {
                    let _ = socket.write_all(headers.as_bytes()).await;
                } else if head.starts_with("GET ") {
                    let _ = socket.write_all(headers.as_bytes()).await;
                    let _ = socket.write_all(&manifest[..manifest.len() / 2]).await;
                }
                // Anything else (a TLS hello) is dropped; so is the connection after a GET.
            });
        }
    });
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_manifest_is_reported_as_incomplete() {
    let app = app().await;
    app.namespace(NS).await;
    // The tag already has history (pushed by a mapping); the import must leave it.
    let mapped = app.map(NS, "app", "1", "before").await;
    let image = served(7);
    let host = truncating_registry(&image).await;
    let istag = import(&app, &host).await;
    let (reason, message) = reason(&istag);
    assert_eq!(reason, "IncompleteResponse", "{istag}");
    assert!(message.contains(&format!("of {} bytes", image.manifest.len())), "{message}");
    assert_eq!(history(&app.stream(NS, "app").await, "1"), [(mapped, 1)]);
    app.stop().await;
}
