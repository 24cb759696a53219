//! Tenants who may be hostile: whatever one namespace writes (an upload, an image
//! mapping, a subscription URL) must not change what another namespace pulls, nor reach a
//! host the server does not allow. Each test is an attack as a tenant would try it from
//! outside, over HTTP, against the real server and real registries.

mod common;

use berth_testkit::{Auth, DistributionRegistry, Format, TestImage, digest_of};
use common::{Hook, IMAGE_API, TestApp, blocking, istag_path};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn request(app: &TestApp, token: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().request(method, format!("{}{path}", app.base)).bearer_auth(token)
}

async fn sha256_of_blob(app: &TestApp, token: &str, repository: &str, digest: &str) -> (StatusCode, String) {
    let response = request(app, token, Method::GET, &format!("/v2/{repository}/blobs/{digest}")).send().await.unwrap();
    let status = response.status();
    (status, digest_of(&response.bytes().await.unwrap()))
}

/// Two concurrent 1 MiB PATCHes at offset 0 of one upload and a racing PUT naming the
/// first one's digest, many times over: whatever is accepted, every blob berth serves
/// (to the attacker's namespace and to another that pushes the true bytes) hashes to its
/// digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_chunks_of_one_upload_cannot_store_other_bytes_under_a_digest() {
    let app = TestApp::start().await;
    app.namespace("evil").await;
    app.namespace("victim").await;
    app.create_stream("evil", "race").await;
    app.create_stream("victim", "base").await;
    let evil = app.token("evil", "edit", &["evil"]).await;
    let victim = app.token("victim", "edit", &["victim"]).await;
    let mut both_accepted = 0;
    // Two hundred rounds: a race that wins one time in 25 would pass them all by luck once
    // in about 3,500 runs.
    for round in 0..200u8 {
        let first = vec![round; 1 << 20];
        let second = vec![round.wrapping_add(128); 1 << 20];
        let target = digest_of(&first);
        let started = request(&app, &evil, Method::POST, "/v2/evil/race/blobs/uploads/").send().await.unwrap();
        assert_eq!(started.status(), StatusCode::ACCEPTED);
        let location = started.headers()["location"].to_str().unwrap().to_string();
        let patch = |bytes: Vec<u8>| {
            request(&app, &evil, Method::PATCH, &location).header("content-range", format!("0-{}", (1 << 20) - 1)).body(bytes).send()
        };
        let put = request(&app, &evil, Method::PUT, &format!("{location}?digest={target}")).send();
        let (one, two, finished) = tokio::join!(patch(first.clone()), patch(second.clone()), put);
        // The losing chunk may be refused before its body is read, and the connection closed
        // under the client (a broken pipe): that is a refusal too.
        let status = |sent: reqwest::Result<reqwest::Response>| sent.map(|r| r.status()).ok();
        let (one, two) = (status(one), status(two));
        if one == Some(StatusCode::ACCEPTED) && two == Some(StatusCode::ACCEPTED) {
            both_accepted += 1;
        }
        if status(finished) != Some(StatusCode::CREATED) {
            // The PUT came first or after the wrong chunk: finish again, as a client would.
            request(&app, &evil, Method::PUT, &format!("{location}?digest={target}")).send().await.unwrap();
        }
        // Whatever evil's repository serves under the digest is the bytes of the digest.
        let (status, served) = sha256_of_blob(&app, &evil, "evil/race", &target).await;
        if status == StatusCode::OK {
            assert_eq!(served, target, "round {round}: evil's repository serves other bytes under {target}");
        }
        // Another namespace pushes the true bytes and gets exactly them back.
        let pushed = request(&app, &victim, Method::POST, &format!("/v2/victim/base/blobs/uploads/?digest={target}"))
            .body(first.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(pushed.status(), StatusCode::CREATED);
        let (status, served) = sha256_of_blob(&app, &victim, "victim/base", &target).await;
        assert_eq!((status, served), (StatusCode::OK, target.clone()), "round {round}: the victim is served poisoned bytes");
    }
    assert_eq!(both_accepted, 0, "two chunks were accepted at the same offset of one upload");
    app.stop().await;
}

/// An ImageStreamMapping as a tenant writes it: the digest of a public image, a pull spec
/// on a host the tenant chose, and the layers and metadata the tenant wants others to see.
fn poisoned_mapping(image: &TestImage, host: &str, with_manifest: bool) -> Value {
    let mut mapped = json!({
        "metadata": {"name": image.digest(), "labels": {"scanner.example.com/approved": "true"}},
        "dockerImageReference": format!("{host}/evil/copy@{}", image.digest()),
        "dockerImageLayers": [{"name": digest_of(b"evil layer"), "size": 1, "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}],
        "dockerImageMetadata": {"Config": {"Env": ["EVIL=1"], "Labels": {"scanner.example.com/approved": "true"}}},
    });
    if with_manifest {
        mapped["dockerImageManifest"] = json!(String::from_utf8(image.manifest_bytes()).unwrap());
        mapped["dockerImageManifestMediaType"] = json!(image.format.manifest_media_type());
    }
    json!({"kind": "ImageStreamMapping", "apiVersion": "image.openshift.io/v1", "metadata": {"name": "copy"}, "tag": "latest", "image": mapped})
}

/// A tenant maps the digest of a public image with its own metadata and a host of its
/// choosing. berth reads the image itself (from that host, which must serve the true
/// bytes), so the tenant's metadata never reaches the Image; and another namespace that
/// imports the same image from its own registry pulls its blobs from there, never from
/// the tenant's host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_mapping_cannot_poison_an_image_or_steer_another_namespace_s_pulls() {
    let app = TestApp::start().await;
    app.namespace("evil").await;
    app.namespace("victim").await;
    app.create_stream("evil", "copy").await;
    app.create_stream("victim", "base").await;
    let evil = app.token("evil", "edit", &["evil"]).await;
    let victim = app.token("victim", "edit", &["victim"]).await;
    let (upstream, evil_host) =
        blocking(|| (DistributionRegistry::start(Auth::Open).unwrap(), DistributionRegistry::start(Auth::Open).unwrap()));
    let image = TestImage::new(Format::Docker, 90, 2, 32 * 1024, "amd64");
    blocking(|| upstream.push("library/base", Some("1"), &image).unwrap());
    let mappings = format!("{IMAGE_API}/namespaces/evil/imagestreammappings");

    // The evil host does not have the image: the mapping is refused and nothing is stored.
    let before = app.revision().await;
    for with_manifest in [false, true] {
        let (status, reply) =
            app.send(&evil, Method::POST, &mappings, Some(&poisoned_mapping(&image, &evil_host.host(), with_manifest))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
        assert!(reply["message"].as_str().unwrap().contains("berth reads the image a mapping names itself"), "{reply}");
    }
    assert_eq!(app.revision().await, before, "a refused mapping stores nothing");

    // Now it does (a copy of the public image): the mapping is taken, with the true metadata.
    blocking(|| evil_host.push("evil/copy", None, &image).unwrap());
    let (status, reply) = app.send(&evil, Method::POST, &mappings, Some(&poisoned_mapping(&image, &evil_host.host(), false))).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let (_, stored) = app.get(&format!("{IMAGE_API}/images/{}", image.digest())).await;
    assert_eq!(stored["metadata"]["labels"], Value::Null, "no label a tenant wrote: {stored}");
    assert_eq!(stored["dockerImageMetadata"]["Config"]["Labels"], json!({"seed": "90"}));
    assert!(!stored["dockerImageMetadata"]["Config"]["Env"].to_string().contains("EVIL"));
    assert_eq!(stored["dockerImageLayers"].as_array().unwrap().len(), 2);

    // The victim imports the image from its own registry: berth already knows the digest.
    let body = json!({"kind": "ImageStreamTag", "apiVersion": "image.openshift.io/v1", "metadata": {"name": "base:1"},
        "tag": {"from": {"kind": "DockerImage", "name": upstream.pull_spec("library/base", "1")}}});
    let (status, reply) = app.send(&victim, Method::PUT, &istag_path("victim", "base:1"), Some(&body)).await;
    assert!(status.is_success(), "{reply}");
    let istag = app.settled_tag("victim", "base:1").await;
    assert_eq!(istag["image"]["metadata"]["name"], image.digest());
    assert_eq!(istag["image"]["dockerImageMetadata"]["Config"]["Labels"], json!({"seed": "90"}));
    assert!(!istag["image"]["dockerImageMetadata"]["Config"]["Env"].to_string().contains("EVIL"), "{istag}");

    // The victim's pull through berth fetches the layers from the victim's registry only.
    let evil_log_before = blocking(|| evil_host.log());
    for layer in &image.layers {
        let (status, served) = sha256_of_blob(&app, &victim, "victim/base", &digest_of(layer)).await;
        assert_eq!((status, served), (StatusCode::OK, digest_of(layer)));
    }
    // The registry writes its access line after the response: give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let upstream_log = blocking(|| upstream.log());
        let fetched = image.layers.iter().all(|layer| upstream_log.contains(&format!("GET /v2/library/base/blobs/{}", digest_of(layer))));
        if fetched {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the layers did not come from the victim's registry:\n{upstream_log}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Read once the victim's registry has logged its part, so that a request to the
    // tenant's host made during the pull would be in its log too.
    let evil_log = blocking(|| evil_host.log());
    let asked_since = &evil_log[evil_log_before.len()..];
    assert!(!asked_since.contains("/blobs/"), "berth fetched blobs from the tenant's host for another namespace:\n{asked_since}");
    app.stop().await;
}

/// A stream's history may name any registry (a cluster admin can map anything), but a
/// pull through berth goes only to registries `import.allowedRegistries` allows, and then
/// without asking anything of the refused one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_reaches_only_allowed_registries() {
    let app = TestApp::start().await;
    app.namespace("team").await;
    let digest = app.map("team", "app", "v1", "outside").await;
    let layer = common::sha256("outside");
    let requests = app.upstream_requests();
    let response = request(&app, &app.admin, Method::GET, &format!("/v2/team/app/blobs/{layer}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "BLOB_UNKNOWN");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("registry.example.com") && message.contains("import.allowedRegistries"), "{message}");
    assert_eq!(app.upstream_requests(), requests, "nothing was asked of a registry the server does not allow");
    assert!(!digest.is_empty());
    app.stop().await;
}

/// A receiver on loopback that counts the POSTs it gets, answering `status` with
/// `location` when given.
async fn receiver(status: u16, location: Option<String>) -> (std::sync::Arc<std::sync::atomic::AtomicUsize>, std::net::SocketAddr) {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&hits);
    let app = axum::Router::new().fallback(move || {
        let (counted, location) = (std::sync::Arc::clone(&counted), location.clone());
        async move {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut response = axum::response::Response::new(axum::body::Body::empty());
            *response.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
            if let Some(location) = location {
                response.headers_mut().insert("location", location.parse().unwrap());
            }
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (hits, addr)
}

fn subscription(name: &str, url: &str) -> Value {
    json!({"apiVersion": "berth.dev/v1", "kind": "Subscription", "metadata": {"name": name}, "spec": {"url": url}})
}

/// Waits until the subscription's status names a delivery error, and returns it.
async fn delivery_error(app: &TestApp, namespace: &str, name: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, found) = app.get(&format!("/apis/berth.dev/v1/namespaces/{namespace}/subscriptions/{name}")).await;
        if let Some(error) = found["status"]["lastError"].as_str().filter(|e| !e.is_empty()) {
            return error.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no delivery error recorded: {found}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// By default (no `notifications.allowedHosts`) a subscription reaches public hosts
/// only: a loopback URL is refused when written, a name that resolves to a private
/// address is refused when delivered to, and nothing reaches either receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_reach_private_addresses_only_when_the_server_lists_them() {
    let app = TestApp::start_with(|config| config.delivery.allowed_hosts = Vec::new()).await;
    app.namespace("team").await;
    let editor = app.token("editor", "edit", &["team"]).await;
    let (hits, addr) = receiver(204, None).await;
    let subscriptions = "/apis/berth.dev/v1/namespaces/team/subscriptions";
    for url in [
        format!("http://{addr}/hook"),
        format!("http://localhost:{}/hook", addr.port()),
        "http://169.254.169.254/latest/meta-data".to_string(),
        format!("http://[::1]:{}/", addr.port()),
    ] {
        let (status, reply) = app.send(&editor, Method::POST, subscriptions, Some(&subscription("direct", &url))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains("spec.url") && message.contains("notifications.allowedHosts"), "{message}");
    }
    // A name that is not an address passes the check when written, but it resolves to
    // this machine: berth refuses to connect, and says why in the subscription's status.
    let host = hostname();
    let resolved: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 80)).unwrap().collect();
    assert!(
        !resolved.is_empty() && resolved.iter().all(|a| !berth_upstream::hosts::is_public(a.ip())),
        "this test needs the machine's name ({host}) to resolve to a non-public address, as it does on Debian: {resolved:?}"
    );
    let url = format!("http://{host}:{}/hook", addr.port());
    let (status, reply) = app.send(&editor, Method::POST, subscriptions, Some(&subscription("by-name", &url))).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    app.map("team", "app", "v1", "first").await;
    let error = delivery_error(&app, "team", "by-name").await;
    assert!(error.contains("not a public address") && error.contains("notifications.allowedHosts"), "{error}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing reached the receiver");
    app.stop().await;
}

/// A receiver that redirects is not followed: the redirect is the delivery's error and
/// the place it points at gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_receiver_is_not_followed() {
    let app = TestApp::start().await;
    app.namespace("team").await;
    let (target_hits, target) = receiver(204, None).await;
    let (redirect_hits, redirecting) = receiver(307, Some(format!("http://{target}/elsewhere"))).await;
    let (status, reply) =
        app.post("/apis/berth.dev/v1/namespaces/team/subscriptions", subscription("hooks", &format!("http://{redirecting}/hook"))).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    app.map("team", "app", "v1", "first").await;
    let error = delivery_error(&app, "team", "hooks").await;
    assert!(error.contains("307") && error.contains("does not follow redirects"), "{error}");
    assert!(redirect_hits.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert_eq!(target_hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the redirect was not followed");
    app.stop().await;
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

/// The notifier reads each namespace's outbox once for all its subscriptions and builds
/// each change's event once: a namespace's subscribers get exactly its own changes, in
/// order, never another namespace's, whatever the other namespace writes meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_only_their_own_namespaces_changes() {
    let app = TestApp::start().await;
    let mut hooks = Vec::new();
    for ns in ["alpha", "beta"] {
        app.namespace(ns).await;
        for name in ["one", "two"] {
            let (hook, url) = Hook::start().await;
            let body = json!({"apiVersion": "berth.dev/v1", "kind": "Subscription", "metadata": {"name": name}, "spec": {"url": url}});
            let (status, reply) = app.post(&format!("/apis/berth.dev/v1/namespaces/{ns}/subscriptions"), body).await;
            assert_eq!(status, StatusCode::CREATED, "{reply}");
            hooks.push((ns, hook));
        }
    }
    let mut digests: std::collections::HashMap<&str, Vec<String>> = std::collections::HashMap::new();
    for round in 0..5 {
        for ns in ["alpha", "beta"] {
            // The same stream and tag names in both namespaces.
            let digest = app.map(ns, "app", "latest", &format!("{ns}-{round}")).await;
            digests.entry(ns).or_default().push(digest);
        }
    }
    for (ns, hook) in &hooks {
        let events = hook.wait_for(5).await;
        assert_eq!(events.len(), 5, "{ns}: exactly its own five changes: {events:?}");
        assert!(events.iter().all(|e| e["data"]["namespace"] == *ns), "{ns} got another namespace's change: {events:?}");
        let got: Vec<&str> = events.iter().map(|e| e["data"]["digest"].as_str().unwrap()).collect();
        assert_eq!(got, digests[ns].iter().map(String::as_str).collect::<Vec<_>>(), "{ns}: its own images, in order");
    }
    app.stop().await;
}
