//! Knowing when an upstream image changes: scheduled import (with its rate limit), and
//! registry webhooks in (verified, coalesced, free when nobody tracks the change).

mod common;

use std::time::{Duration, Instant};

use berth_server::registry_events::{WebhookEndpoint, WebhookFormat, signature};
use berth_testkit::{Auth, DistributionRegistry, Format, TestImage};
use common::{IMAGE_API, TestApp, blocking, istag_path};
use reqwest::StatusCode;
use serde_json::{Value, json};

const NS: &str = "team";
const TOKEN: &str = "shared-secret-for-the-registry";
const HMAC_KEY: &str = "hmac-key-for-the-berth-format";

async fn set_tag(app: &TestApp, name: &str, from: &str, scheduled: bool) {
    let tag = json!({"from": {"kind": "DockerImage", "name": from}, "importPolicy": {"scheduled": scheduled}});
    let (status, reply) = app.put(&istag_path(NS, name), json!({"metadata": {"name": name}, "tag": tag})).await;
    assert!(status.is_success(), "{reply}");
}

/// Waits until `stream:tag` points at `digest`.
async fn points_at(app: &TestApp, name: &str, digest: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, istag) = app.get(&istag_path(NS, name)).await;
        if istag["image"]["metadata"]["name"] == digest {
            return istag;
        }
        assert!(Instant::now() < deadline, "{name} did not move to {digest}: {istag}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_tags_follow_their_source_without_any_webhook() {
    let registry = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let first = blocking(|| registry.push("team/app", Some("1"), &TestImage::new(Format::Oci, 1, 1, 128, "amd64")).unwrap());
    let app = TestApp::start_with(|config| {
        config.import.scheduled_import_interval_seconds = 1;
        config.import.minimum_scheduled_import_interval_seconds = 1;
    })
    .await;
    app.namespace(NS).await;
    set_tag(&app, "app:1", &registry.pull_spec("team/app", "1"), true).await;
    set_tag(&app, "app:manual", &registry.pull_spec("team/app", "1"), false).await;
    points_at(&app, "app:1", &first.digest, Duration::from_secs(10)).await;
    points_at(&app, "app:manual", &first.digest, Duration::from_secs(10)).await;

    let moved = blocking(|| registry.push("team/app", Some("1"), &TestImage::new(Format::Oci, 2, 1, 128, "amd64")).unwrap());
    points_at(&app, "app:1", &moved.digest, Duration::from_secs(10)).await;
    let (_, manual) = app.get(&istag_path(NS, "app:manual")).await;
    assert_eq!(manual["image"]["metadata"]["name"], first.digest, "a tag that is not scheduled stays until asked");

    // Admins see the schedule: last and next check, last result.
    let (status, list) = app.get(&format!("/apis/berth.dev/v1/namespaces/{NS}/scheduledimports")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!((items[0]["stream"].as_str(), items[0]["tag"].as_str()), (Some("app"), Some("1")));
    assert!(items[0]["lastCheck"].is_string() && items[0]["nextCheck"].is_string(), "{list}");
    assert!(items[0]["lastResult"].as_str().is_some_and(|r| r == "Unchanged" || r.starts_with("Imported")), "{list}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_when_a_thousand_tags_are_due_at_once() {
    let registry = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    blocking(|| registry.push("team/app", Some("1"), &TestImage::new(Format::Oci, 3, 1, 128, "amd64")).unwrap());
    let per_minute = 600;
    let app = TestApp::start_with(|config| {
        config.import.scheduled_import_interval_seconds = 1;
        config.import.minimum_scheduled_import_interval_seconds = 1;
        config.import.max_scheduled_imports_per_minute = per_minute;
    })
    .await;
    app.namespace(NS).await;
    let from = registry.pull_spec("team/app", "1");
    let tags: Vec<Value> = (0..1000)
        .map(|i| json!({"name": format!("t{i}"), "from": {"kind": "DockerImage", "name": from}, "importPolicy": {"scheduled": true}}))
        .collect();
    let stream =
        json!({"kind": "ImageStream", "apiVersion": "image.openshift.io/v1", "metadata": {"name": "many"}, "spec": {"tags": tags}});
    let (status, reply) = app.post(&format!("{IMAGE_API}/namespaces/{NS}/imagestreams"), stream).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    // The first import of all 1,000 is the controller's, not the scheduler's.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stream = app.stream(NS, "many").await;
        if stream["status"]["tags"].as_array().map_or(0, Vec::len) == 1000 {
            break;
        }
        assert!(Instant::now() < deadline, "the first import did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every tag is due within the second; the scheduler starts at most 10 checks a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (before, started) = (app.upstream_requests(), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let checks = app.upstream_requests() - before;
    let allowed = (started.elapsed().as_secs_f64() * per_minute as f64 / 60.0).ceil() as u64 + 2;
    assert!(checks <= allowed, "{checks} checks in {:?}, the limit allows {allowed}", started.elapsed());
    assert!(checks >= 15, "the scheduler keeps checking at its rate: {checks}");
    app.stop().await;
}

fn endpoints(registry: &str) -> Vec<WebhookEndpoint> {
    let endpoint = |name: &str, format, token: Option<&str>, hmac: Option<&str>| WebhookEndpoint {
        name: name.to_string(),
        format,
        registry: registry.to_string(),
        token: token.map(str::to_string),
        hmac_secret: hmac.map(str::to_string),
        max_body_bytes: 64 << 10,
    };
    vec![endpoint("dist", WebhookFormat::Distribution, Some(TOKEN), None), endpoint("plain", WebhookFormat::Berth, None, Some(HMAC_KEY))]
}

async fn post_webhook(app: &TestApp, name: &str, headers: &[(&str, String)], body: Vec<u8>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().post(format!("{}/webhooks/{name}", app.base)).body(body);
    for (key, value) in headers {
        request = request.header(*key, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reimport_tracked_tags_and_refuse_what_they_cannot_trust() {
    let registry = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let first = blocking(|| registry.push("team/app", Some("1"), &TestImage::new(Format::Oci, 4, 1, 128, "amd64")).unwrap());
    let host = registry.host();
    let app = TestApp::start_with(|config| config.webhooks = endpoints(&host)).await;
    app.namespace(NS).await;
    set_tag(&app, "app:1", &registry.pull_spec("team/app", "1"), false).await;
    set_tag(&app, "app:copy", &registry.pull_spec("team/app", "1"), false).await;
    points_at(&app, "app:1", &first.digest, Duration::from_secs(10)).await;
    points_at(&app, "app:copy", &first.digest, Duration::from_secs(10)).await;

    let moved = blocking(|| registry.push("team/app", Some("1"), &TestImage::new(Format::Oci, 5, 1, 128, "amd64")).unwrap());
    let payload = |digest: &str| serde_json::to_vec(&json!({"repository": "team/app", "tag": "1", "digest": digest})).unwrap();
    let signed = |body: &[u8]| vec![("x-berth-signature", signature(HMAC_KEY, body))];

    // Refused without a valid signature, and nothing is asked upstream.
    let before = app.upstream_requests();
    let body = payload(&moved.digest);
    let (status, reply) =
        post_webhook(&app, "plain", &[("x-berth-signature", signature("wrong-key-wrong-key", &body))], body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    let (status, _) = post_webhook(&app, "plain", &[], body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let junk = b"{not json".to_vec();
    let (status, reply) = post_webhook(&app, "plain", &signed(&junk), junk).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let huge = vec![b' '; 70 << 10];
    let (status, _) = post_webhook(&app, "plain", &signed(&huge), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = post_webhook(&app, "nowhere", &[], body.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Something nobody tracks is accepted and costs nothing.
    let untracked = serde_json::to_vec(&json!({"repository": "team/other", "tag": "1"})).unwrap();
    let (status, reply) = post_webhook(&app, "plain", &signed(&untracked), untracked).await;
    assert_eq!((status, reply["trackedTags"].as_u64()), (StatusCode::ACCEPTED, Some(0)), "{reply}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.upstream_requests(), before, "nothing was imported");
    let (_, istag) = app.get(&istag_path(NS, "app:1")).await;
    assert_eq!(istag["image"]["metadata"]["name"], first.digest);

    // A signed notification moves both tracking tags; duplicates coalesce (or, once the
    // tags have the notified digest, cost nothing).
    let (status, reply) = post_webhook(&app, "plain", &signed(&body), body.clone()).await;
    assert_eq!((status, reply["trackedTags"].as_u64()), (StatusCode::ACCEPTED, Some(2)), "{reply}");
    for _ in 0..4 {
        let (status, reply) = post_webhook(&app, "plain", &signed(&body), body.clone()).await;
        assert!(status == StatusCode::ACCEPTED && matches!(reply["trackedTags"].as_u64(), Some(0 | 2)), "{reply}");
    }
    points_at(&app, "app:1", &moved.digest, Duration::from_secs(10)).await;
    points_at(&app, "app:copy", &moved.digest, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = app.upstream_requests() - before;
    assert!(requests <= 4, "five notifications, one check: a HEAD per tag, one manifest, one config ({requests})");

    // A notification for the digest a tag already has asks nothing upstream.
    let before = app.upstream_requests();
    let (status, reply) = post_webhook(&app, "plain", &signed(&body), body.clone()).await;
    assert_eq!((status, reply["trackedTags"].as_u64()), (StatusCode::ACCEPTED, Some(0)), "{reply}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.upstream_requests(), before);

    // The distribution envelope, with its shared secret.
    let third = blocking(|| registry.push("team/app", Some("1"), &TestImage::new(Format::Oci, 6, 1, 128, "amd64")).unwrap());
    let envelope = serde_json::to_vec(&json!({"events": [{
        "id": "1", "timestamp": "2026-11-23T10:00:00Z", "action": "push",
        "target": {"mediaType": Format::Oci.manifest_media_type(), "digest": third.digest, "repository": "team/app", "tag": "1", "size": 1, "length": 1, "url": "http://x"},
        "request": {"id": "r", "addr": "127.0.0.1", "host": host, "method": "PUT", "useragent": "test"},
        "actor": {}, "source": {"addr": "127.0.0.1", "instanceID": "i"}
    }]}))
    .unwrap();
    let (status, _) = post_webhook(&app, "dist", &[("authorization", "Bearer nope".into())], envelope.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, reply) = post_webhook(&app, "dist", &[("authorization", format!("Bearer {TOKEN}"))], envelope).await;
    assert_eq!((status, reply["trackedTags"].as_u64()), (StatusCode::ACCEPTED, Some(2)), "{reply}");
    points_at(&app, "app:1", &third.digest, Duration::from_secs(10)).await;
    app.stop().await;
}

/// The history of `stream:tag`: the images it pointed at, newest first.
async fn history(app: &TestApp, stream: &str, tag: &str) -> Vec<String> {
    let (_, body) = app.get(&format!("{IMAGE_API}/namespaces/{NS}/imagestreams/{stream}")).await;
    let tags = body["status"]["tags"].as_array().cloned().unwrap_or_default();
    let found = tags.iter().find(|t| t["tag"] == tag).cloned().unwrap_or(Value::Null);
    found["items"].as_array().map(|items| items.iter().map(|i| i["image"].as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

async fn notify(app: &TestApp, repository: &str, tag: &str, digest: &str) {
    let body = serde_json::to_vec(&json!({"repository": repository, "tag": tag, "digest": digest})).unwrap();
    let (status, reply) = post_webhook(app, "plain", &[("x-berth-signature", signature(HMAC_KEY, &body))], body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
}

/// A fresh registry (notifying berth's `plain` endpoint) with the image `seed` makes
/// pushed as `team/app:TAG`, and `app:TAG` of namespace NS importing it, settled there.
/// Returns the registry, the server and that first digest.
async fn tracked_tag(tag: &'static str, seed: u64) -> (DistributionRegistry, TestApp, String) {
    let registry = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let first = blocking(|| registry.push("team/app", Some(tag), &TestImage::new(Format::Oci, seed, 1, 128, "amd64")).unwrap());
    let app = TestApp::start_with(|config| config.webhooks = endpoints(&registry.host())).await;
    app.namespace(NS).await;
    let name = format!("app:{tag}");
    set_tag(&app, &name, &registry.pull_spec("team/app", tag), false).await;
    points_at(&app, &name, &first.digest, Duration::from_secs(10)).await;
    (registry, app, first.digest)
}

/// A registry that notifies before it links the tag (as distribution does): the notified
/// digest is fetched (and checked) at once, the tag does not move until the registry's
/// tag shows it, and then moves exactly once, to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_notified_before_its_tag_is_linked_moves_the_tag_once_when_it_is() {
    let (registry, app, first) = tracked_tag("2", 21).await;

    // The manifest is in the registry, by digest only, when the notification comes.
    let next = TestImage::new(Format::Oci, 22, 1, 128, "amd64");
    let pushed = blocking(|| registry.push("team/app", None, &next).unwrap());
    notify(&app, "team/app", "2", &pushed.digest).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.get(&format!("{IMAGE_API}/images/{}", pushed.digest)).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "the notified image was not fetched ahead of its tag");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(history(&app, "app", "2").await, vec![first.clone()], "the tag waits for the registry's tag");

    // The registry links the tag: the next look moves it, once.
    blocking(|| registry.push("team/app", Some("2"), &next).unwrap());
    points_at(&app, "app:2", &pushed.digest, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(history(&app, "app", "2").await, vec![pushed.digest.clone(), first.clone()]);
    app.stop().await;
}

/// Notifications that arrive in the reverse order of the pushes leave the tag at the
/// newer image: the tag follows the registry's tag, never a late notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_in_reverse_order_leave_the_tag_at_the_newer_image() {
    let (registry, app, first) = tracked_tag("3", 31).await;
    let older = blocking(|| registry.push("team/app", Some("3"), &TestImage::new(Format::Oci, 32, 1, 128, "amd64")).unwrap());
    let newer = blocking(|| registry.push("team/app", Some("3"), &TestImage::new(Format::Oci, 33, 1, 128, "amd64")).unwrap());
    notify(&app, "team/app", "3", &newer.digest).await;
    notify(&app, "team/app", "3", &older.digest).await;
    points_at(&app, "app:3", &newer.digest, Duration::from_secs(5)).await;
    // Long enough for every look the late notification causes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(history(&app, "app", "3").await, vec![newer.digest.clone(), first.clone()], "never at the older image");
    app.stop().await;
}

/// A notified digest whose content does not check out is refused, with the reason on the
/// tag, and nothing moves (a registry that serves other bytes under a digest is a fault a
/// real one does not produce on demand: a mock serves them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notified_digest_that_does_not_verify_is_refused_with_a_reason() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let current = TestImage::new(Format::Oci, 41, 1, 64, "amd64");
    let (manifest, digest, config) = (current.manifest_bytes(), current.digest(), current.config_bytes());
    let reply = |bytes: Vec<u8>, digest: &str| {
        ResponseTemplate::new(200).insert_header("docker-content-digest", digest).set_body_raw(bytes, Format::Oci.manifest_media_type())
    };
    Mock::given(method("GET")).and(path("/v2/")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let head = ResponseTemplate::new(200)
        .insert_header("docker-content-digest", digest.as_str())
        .insert_header("content-type", Format::Oci.manifest_media_type());
    Mock::given(method("HEAD")).and(path("/v2/team/app/manifests/4")).respond_with(head).mount(&server).await;
    for reference in ["4", digest.as_str()] {
        Mock::given(method("GET"))
            .and(path(format!("/v2/team/app/manifests/{reference}")))
            .respond_with(reply(manifest.clone(), &digest))
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(format!("/v2/team/app/blobs/{}", berth_testkit::digest_of(&config))))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(config))
        .mount(&server)
        .await;
    // Under the notified digest, the registry serves bytes that hash to something else.
    let claimed = TestImage::new(Format::Oci, 42, 1, 64, "amd64").digest();
    let other = TestImage::new(Format::Oci, 43, 1, 64, "amd64");
    Mock::given(method("GET"))
        .and(path(format!("/v2/team/app/manifests/{claimed}")))
        .respond_with(reply(other.manifest_bytes(), &claimed))
        .mount(&server)
        .await;
    let host = server.address().to_string();
    let app = TestApp::start_with(|config| config.webhooks = endpoints(&host)).await;
    app.namespace(NS).await;
    set_tag(&app, "app:4", &format!("{host}/team/app:4"), false).await;
    points_at(&app, "app:4", &digest, Duration::from_secs(10)).await;

    notify(&app, "team/app", "4", &claimed).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let condition = loop {
        let (_, body) = app.get(&format!("{IMAGE_API}/namespaces/{NS}/imagestreams/app")).await;
        let tag = body["status"]["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "4").cloned().unwrap();
        if let Some(condition) = tag["conditions"].as_array().and_then(|c| c.first()).cloned() {
            break condition;
        }
        assert!(Instant::now() < deadline, "the refusal was not recorded: {tag}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!((condition["type"].as_str(), condition["status"].as_str()), (Some("ImportSuccess"), Some("False")), "{condition}");
    assert_eq!(condition["reason"], "DigestMismatch", "{condition}");
    let message = condition["message"].as_str().unwrap();
    assert!(message.contains(&claimed) && message.contains(&berth_testkit::digest_of(&other.manifest_bytes())), "{message}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(history(&app, "app", "4").await, vec![digest.clone()], "nothing moved");
    assert_eq!(app.get(&format!("{IMAGE_API}/images/{claimed}")).await.0, StatusCode::NOT_FOUND, "nothing was stored under the digest");
    app.stop().await;
}

/// A registry that fails the notified tag's HEAD for a moment (distribution answers 500
/// while it writes the tag's link) costs a notified tag milliseconds, not the client's
/// retry backoff, and no failure is recorded on the tag on the way (a real registry does
/// not fail on demand: a mock fails three HEADs, then shows the new digest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notified_tag_whose_registry_fails_for_a_moment_moves_on_the_short_schedule() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/v2/")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    // Serves `image` by digest, and as tag 5 (HEAD) at `priority` (lower wins).
    let serve = |image: TestImage, priority: u8| {
        let server = &server;
        async move {
            let (manifest, digest, config) = (image.manifest_bytes(), image.digest(), image.config_bytes());
            let head = ResponseTemplate::new(200)
                .insert_header("docker-content-digest", digest.as_str())
                .insert_header("content-type", Format::Oci.manifest_media_type());
            Mock::given(method("HEAD"))
                .and(path("/v2/team/app/manifests/5"))
                .respond_with(head)
                .with_priority(priority)
                .mount(server)
                .await;
            let body = ResponseTemplate::new(200)
                .insert_header("docker-content-digest", digest.as_str())
                .set_body_raw(manifest, Format::Oci.manifest_media_type());
            Mock::given(method("GET")).and(path(format!("/v2/team/app/manifests/{digest}"))).respond_with(body).mount(server).await;
            Mock::given(method("GET"))
                .and(path(format!("/v2/team/app/blobs/{}", berth_testkit::digest_of(&config))))
                .respond_with(ResponseTemplate::new(200).set_body_bytes(config))
                .mount(server)
                .await;
            digest
        }
    };
    let first = serve(TestImage::new(Format::Oci, 51, 1, 64, "amd64"), 5).await;
    let host = server.address().to_string();
    // A patient retry would wait 5 s before trying the HEAD again.
    let app = TestApp::start_with(|config| {
        config.webhooks = endpoints(&host);
        config.import.retry_base_millis = 5000;
    })
    .await;
    app.namespace(NS).await;
    set_tag(&app, "app:5", &format!("{host}/team/app:5"), false).await;
    points_at(&app, "app:5", &first, Duration::from_secs(10)).await;
    let revision = app.revision().await;
    let watch = format!("{}{IMAGE_API}/namespaces/{NS}/imagestreams?watch=1&resourceVersion={revision}", app.base);
    let mut events = common::watch_events(app.http().get(watch).bearer_auth(&app.admin).send().await.unwrap());

    // The tag's HEAD fails three times, then shows the pushed image.
    let failing =
        ResponseTemplate::new(500).set_body_string(r#"{"errors":[{"code":"UNKNOWN","message":"invalid checksum digest format"}]}"#);
    Mock::given(method("HEAD"))
        .and(path("/v2/team/app/manifests/5"))
        .respond_with(failing)
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&server)
        .await;
    let pushed = serve(TestImage::new(Format::Oci, 52, 1, 64, "amd64"), 2).await;
    let notified = Instant::now();
    notify(&app, "team/app", "5", &pushed).await;
    points_at(&app, "app:5", &pushed, Duration::from_secs(3)).await;
    assert!(notified.elapsed() < Duration::from_secs(3), "moved on the client's backoff, not the short schedule");
    assert_eq!(history(&app, "app", "5").await, vec![pushed.clone(), first.clone()]);
    // Every change the watch saw: none shows the tag failed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = 0;
    while let Ok(event) = events.try_recv() {
        seen += 1;
        let tags = event["object"]["status"]["tags"].as_array().cloned().unwrap_or_default();
        assert!(tags.iter().all(|t| t["conditions"].as_array().is_none_or(Vec::is_empty)), "a failure was recorded: {event}");
    }
    assert!(seen >= 1, "the watch saw the tag move");
    app.stop().await;
}
