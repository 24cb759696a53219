//! Notifications out: a Subscription receives each tag change as a signed CloudEvent, at
//! least once and in order, through a receiver that is down for a while and a berth
//! restart in the middle.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use base64::Engine;
use common::{IMAGE_API, TestApp, sha256};
use hmac::{KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};

const NS: &str = "team";
const KEY: &str = "signing-key-for-tests";

/// A webhook receiver on loopback that records what it gets, or answers 503 while down.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    down: Arc<AtomicBool>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    if state.down.load(Ordering::SeqCst) {
                        return AxumStatus::SERVICE_UNAVAILABLE;
                    }
                    state.got.lock().unwrap().push((headers, body));
                    AxumStatus::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    /// The events received, checking each signature.
    fn events(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(headers, body)| {
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
                mac.update(body);
                let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                assert_eq!(headers["x-berth-signature"].to_str().unwrap(), expected, "every body is signed");
                assert_eq!(headers["content-type"], "application/cloudevents+json");
                serde_json::from_slice(body).unwrap()
            })
            .collect()
    }

    async fn wait_for(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let events = self.events();
            if events.len() >= count {
                return events;
            }
            assert!(Instant::now() < deadline, "{} of {count} events arrived: {events:?}", events.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The (field, key, change, verdict) of each contract change an event carries.
fn changed(event: &Value) -> Vec<(&str, &str, &str, &str)> {
    fn text<'a>(c: &'a Value, k: &str) -> &'a str {
        c.get(k).and_then(Value::as_str).unwrap_or("")
    }
    event["data"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (text(c, "field"), text(c, "key"), text(c, "change"), text(c, "verdict")))
        .collect()
}

async fn subscribe(app: &TestApp, url: &str, spec: Value) {
    subscribe_named(app, "ci", url, spec).await
}

async fn subscribe_named(app: &TestApp, name: &str, url: &str, spec: Value) {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook"}, "type": "Opaque",
        "data": {"hmac": base64::engine::general_purpose::STANDARD.encode(KEY)}});
    let (status, reply) = app.post(&format!("/api/v1/namespaces/{NS}/secrets"), secret).await;
    assert!(status == StatusCode::CREATED || status == StatusCode::CONFLICT, "{reply}");
    let mut spec_body = json!({"url": url, "secretRef": {"name": "hook", "key": "hmac"}});
    spec_body.as_object_mut().unwrap().extend(spec.as_object().cloned().unwrap());
    let body = json!({"apiVersion": "berth.dev/v1", "kind": "Subscription", "metadata": {"name": name}, "spec": spec_body});
    let (status, reply) = app.post(&format!("/apis/berth.dev/v1/namespaces/{NS}/subscriptions"), body).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
}

/// Points `app:<tag>` at a new image whose config has `config`; returns its digest.
async fn push(app: &TestApp, tag: &str, seed: &str, config: Value) -> String {
    let manifest = format!("{{\"schemaVersion\":2,\"seed\":\"{seed}\"}}");
    let digest = sha256(&manifest);
    let body = json!({
        "kind": "ImageStreamMapping", "apiVersion": "image.openshift.io/v1", "metadata": {"name": "app"}, "tag": tag,
        "image": {
            "metadata": {"name": digest},
            "dockerImageReference": format!("registry.example.com/{NS}/app@{digest}"),
            "dockerImageManifest": manifest,
            "dockerImageMetadata": {"kind": "DockerImage", "apiVersion": "1.0", "Config": config},
        }
    });
    let (status, reply) = app.post(&format!("{IMAGE_API}/namespaces/{NS}/imagestreammappings"), body).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_changes_arrive_as_signed_cloud_events_with_the_metadata_diff() {
    let (receiver, url) = Receiver::start().await;
    let (breaking_receiver, breaking_url) = Receiver::start().await;
    let app = TestApp::start().await;
    app.namespace(NS).await;
    subscribe(&app, &url, json!({})).await;
    subscribe_named(&app, "breaking", &breaking_url, json!({"breakingOnly": true})).await;

    let first = push(&app, "latest", "one", json!({"Env": ["A=1"], "ExposedPorts": {"8080/tcp": {}}, "User": "app"})).await;
    let second = push(&app, "latest", "two", json!({"Env": ["A=1", "B=2"], "ExposedPorts": {"8080/tcp": {}}, "User": "app"})).await;
    let third = push(&app, "latest", "three", json!({"Env": ["A=1"], "User": "root"})).await;
    let events = receiver.wait_for(3).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["dev.berth.tag.created", "dev.berth.tag.moved", "dev.berth.tag.moved"]);
    let moved = &events[1];
    assert_eq!(moved["specversion"], "1.0");
    assert_eq!(moved["subject"], "app:latest");
    assert_eq!(moved["source"], format!("/apis/image.openshift.io/v1/namespaces/{NS}/imagestreams/app"));
    assert_eq!((moved["data"]["previousDigest"].as_str(), moved["data"]["digest"].as_str()), (Some(first.as_str()), Some(second.as_str())));
    assert_eq!(moved["data"]["pullSpec"], format!("registry.example.com/{NS}/app@{second}"));
    assert_eq!(moved["data"]["compatible"], true, "{moved}");
    assert_eq!(changed(moved), [("env", "B", "Added", "Compatible")]);
    let breaking = &events[2];
    assert_eq!(breaking["data"]["digest"], third);
    assert_eq!(breaking["data"]["compatible"], false, "{breaking}");
    assert_eq!(breaking["data"]["verdict"], "Breaking");
    assert_eq!(
        changed(breaking),
        [("env", "B", "Removed", "Breaking"), ("ports", "8080/tcp", "Removed", "Breaking"), ("user", "", "Changed", "Breaking")]
    );
    assert_eq!(breaking["data"]["changes"][2]["from"], "app");
    // A subscription for breaking changes only gets the one move that breaks.
    let only = breaking_receiver.wait_for(1).await;
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["data"]["digest"], third, "{only:?}");
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "ids are unique and in order");

    // The status says where delivery stands.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, subscription) = app.get(&format!("/apis/berth.dev/v1/namespaces/{NS}/subscriptions/ci")).await;
        let status = &subscription["status"];
        if status["lastDeliveredId"] == ids[2] && status["backlog"] == 0 {
            assert_eq!(status["delivered"], 3);
            break;
        }
        assert!(Instant::now() < deadline, "{subscription}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_while_the_receiver_is_down_and_berth_restarts() {
    let (receiver, url) = Receiver::start().await;
    let mut app = TestApp::start().await;
    app.namespace(NS).await;
    subscribe(&app, &url, json!({"events": ["TagCreated", "TagMoved"], "tags": ["app:latest"]})).await;
    receiver.down.store(true, Ordering::SeqCst);

    let mut digests = Vec::new();
    for round in 0..10 {
        digests.push(push(&app, "latest", &format!("a{round}"), json!({})).await);
        push(&app, "other", &format!("b{round}"), json!({})).await; // not subscribed to
    }
    // Delivery is failing: the status says why, and the backlog holds everything.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, subscription) = app.get(&format!("/apis/berth.dev/v1/namespaces/{NS}/subscriptions/ci")).await;
        let status = &subscription["status"];
        if status["lastError"].as_str().is_some_and(|e| e.contains("503")) && status["backlog"].as_u64() >= Some(20) {
            assert_eq!(status["delivered"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "{subscription}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    app.restart().await;
    for round in 10..15 {
        digests.push(push(&app, "latest", &format!("a{round}"), json!({})).await);
    }
    receiver.down.store(false, Ordering::SeqCst);
    let events = receiver.wait_for(digests.len()).await;
    let received: Vec<String> = events.iter().map(|e| e["data"]["digest"].as_str().unwrap().to_string()).collect();
    // At least once: a retried event may come twice, but never out of order.
    let mut distinct = received.clone();
    distinct.dedup();
    assert_eq!(distinct, digests, "every change, in order");
    assert!(events.iter().all(|e| e["subject"] == "app:latest"), "filters hold");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_a_tracked_tag_reaches_the_subscriber_through_registry_notifications() {
    use berth_server::registry_events::{WebhookEndpoint, WebhookFormat};
    use berth_testkit::{Auth, DistributionRegistry, Format, Notifications, TestImage};

    // berth's address must be in the registry's config before either starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let token = "registry-notification-token";
    let notify = Notifications {
        url: format!("http://127.0.0.1:{port}/webhooks/registry"),
        headers: vec![("Authorization".into(), format!("Bearer {token}"))],
    };
    let registry = tokio::task::block_in_place(|| DistributionRegistry::start_notifying(Auth::Open, notify).unwrap());
    let (first, next) = tokio::task::block_in_place(|| {
        let first = registry.push("team/app", Some("1"), &TestImage::new(Format::Oci, 40, 2, 256, "amd64")).unwrap();
        let next = registry.push("team/staging", Some("2"), &TestImage::new(Format::Oci, 41, 2, 256, "amd64")).unwrap();
        (first, next)
    });
    let endpoint = WebhookEndpoint {
        name: "registry".into(),
        format: WebhookFormat::Distribution,
        registry: registry.host(),
        token: Some(token.into()),
        hmac_secret: None,
        max_body_bytes: 1 << 20,
    };
    let app = TestApp::start_with(|config| {
        config.listen = format!("127.0.0.1:{port}").parse().unwrap();
        config.webhooks = vec![endpoint];
    })
    .await;
    app.namespace(NS).await;
    let (receiver, url) = Receiver::start().await;
    subscribe(&app, &url, json!({"tags": ["app:1"]})).await;
    let tag = json!({"from": {"kind": "DockerImage", "name": registry.pull_spec("team/app", "1")}});
    let (status, reply) =
        app.put(&format!("{IMAGE_API}/namespaces/{NS}/imagestreamtags/app:1"), json!({"metadata": {"name": "app:1"}, "tag": tag})).await;
    assert!(status.is_success(), "{reply}");
    let created = receiver.wait_for(1).await;
    assert_eq!(
        (created[0]["type"].as_str(), created[0]["data"]["digest"].as_str()),
        (Some("dev.berth.tag.created"), Some(first.digest.as_str()))
    );

    // A real client pushes another image to the tracked tag; nobody tells berth but the
    // registry's own notification.
    let (source, target) = (registry.pull_spec("team/staging", "2"), registry.pull_spec("team/app", "1"));
    tokio::task::block_in_place(|| {
        berth_testkit::skopeo_copy(&format!("docker://{source}"), &format!("docker://{target}"), &["--preserve-digests"]).unwrap()
    });
    let events = receiver.wait_for(2).await;
    let moved = &events[1];
    assert_eq!(moved["type"], "dev.berth.tag.moved", "{moved}");
    assert_eq!(
        (moved["data"]["previousDigest"].as_str(), moved["data"]["digest"].as_str()),
        (Some(first.digest.as_str()), Some(next.digest.as_str()))
    );
    assert_eq!(changed(moved), [("env", "SEED", "Changed", "Compatible"), ("labels", "seed", "Changed", "Compatible")], "{moved}");
    assert_eq!(moved["data"]["compatible"], true);
    app.stop().await;
}
