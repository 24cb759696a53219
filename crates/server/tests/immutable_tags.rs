//! Immutable tags (`berth.dev/immutable-tags` on a stream or a namespace): a pinned tag
//! that points at an image never moves, whatever would move it (a push, raw or by skopeo,
//! an ImageStreamTag or ImageTag update, an ImageStreamMapping, a stream update, a tag it
//! follows, an import on demand or on schedule from the real distribution registry), and
//! is deleted only by a cluster admin. Each refusal says why and leaves the store as it was.

mod common;

use std::time::{Duration, Instant};

use berth_testkit::{Auth, DistributionRegistry, Format, RegistryClient, TestImage, skopeo_copy};
use common::{IMAGE_API, TestApp, blocking, history, istag_path, sha256};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const NS: &str = "team";
const ANNOTATION: &str = "berth.dev/immutable-tags";

fn streams_path() -> String {
    format!("{IMAGE_API}/namespaces/{NS}/imagestreams")
}

/// An ImageStream named `name`, with the immutable tags annotation when given.
fn stream_with(name: &str, patterns: Option<&str>) -> Value {
    let annotations = patterns.map(|p| json!({ANNOTATION: p})).unwrap_or(json!({}));
    json!({"kind": "ImageStream", "apiVersion": "image.openshift.io/v1", "metadata": {"name": name, "annotations": annotations}})
}

async fn merge_patch(app: &TestApp, token: &str, path: &str, patch: Value) -> (StatusCode, Value) {
    app.send_raw(token, Method::PATCH, path, "application/merge-patch+json", patch.to_string().into_bytes()).await
}

/// An ImageStreamMapping of `stream:tag` to a new image made from `seed` (a cluster admin's:
/// the image is taken as written).
fn mapping(stream: &str, tag: &str, seed: &str) -> Value {
    let manifest = format!("{{\"schemaVersion\":2,\"seed\":\"{seed}\"}}");
    let digest = sha256(&manifest);
    json!({
        "kind": "ImageStreamMapping", "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": stream}, "tag": tag,
        "image": {"metadata": {"name": digest}, "dockerImageReference": format!("registry.example.com/{NS}/{stream}@{digest}"),
            "dockerImageManifest": manifest},
    })
}

/// Asserts a 403 `Status` whose message has every one of `words`.
fn forbidden(status: StatusCode, body: &Value, words: &[&str]) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "Forbidden", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    for word in words {
        assert!(message.contains(word), "{word:?} in {message}");
    }
}

fn host(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

async fn v2(app: &TestApp, token: &str, method: Method, path: &str) -> reqwest::Response {
    reqwest::Client::new().request(method, format!("{}{path}", app.base)).bearer_auth(token).send().await.unwrap()
}

/// The OCI error of a `/v2/` answer: status, code, message.
async fn oci_error(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let error = &body["errors"][0];
    (status, error["code"].as_str().unwrap_or_default().to_string(), error["message"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_immutable_tag_never_moves_and_only_a_cluster_admin_deletes_it() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let pusher = app.token("pusher", "edit", &[NS]).await;
    // The stream's editors pin its release tags themselves.
    let (status, created) = app.send(&pusher, Method::POST, &streams_path(), Some(&stream_with("app", Some("v*.*.*")))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    // A blocking client, made and dropped off the async workers each time.
    let berth = host(&app);
    let registry = || RegistryClient::new(&berth, Some(("me", &pusher))).unwrap();
    let first = TestImage::new(Format::Oci, 1, 1, 512, "amd64");
    let second = TestImage::new(Format::Oci, 2, 1, 512, "amd64");
    blocking(|| registry().push("team/app", Some("v1.0.0"), &first)).unwrap();
    // The same image again is no move.
    blocking(|| registry().push("team/app", Some("v1.0.0"), &first)).expect("pushing the pinned digest again is allowed");

    // Another image under the pinned tag: its blobs go up, its manifest is refused.
    blocking(|| {
        let registry = registry();
        for blob in second.layers.iter().cloned().chain([second.config_bytes()]) {
            registry.push_blob("team/app", &blob).unwrap();
        }
    });
    let before = app.stream(NS, "app").await;
    let refused = reqwest::Client::new()
        .put(format!("{}/v2/{NS}/app/manifests/v1.0.0", app.base))
        .bearer_auth(&pusher)
        .header("content-type", Format::Oci.manifest_media_type())
        .body(second.manifest_bytes())
        .send()
        .await
        .unwrap();
    let (status, code, message) = oci_error(refused).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"), "{message}");
    for words in [
        "tag \"v1.0.0\" of image stream team/app is immutable",
        &first.digest(),
        &format!("may not move to {}", second.digest()),
        "pattern \"v*.*.*\" in the annotation berth.dev/immutable-tags of image stream team/app",
        "under a new tag",
    ] {
        assert!(message.contains(words), "{words:?} in {message}");
    }
    assert_eq!(app.stream(NS, "app").await, before, "a refused push changes nothing");
    let (status, _) = app.get(&format!("{IMAGE_API}/images/{}", second.digest())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the refused image was not stored");

    // A tag no pattern matches moves as always.
    blocking(|| registry().push("team/app", Some("latest"), &second)).unwrap();
    let third = TestImage::new(Format::Oci, 3, 1, 512, "amd64");
    blocking(|| registry().push("team/app", Some("latest"), &third)).unwrap();
    assert_eq!(history(&app.stream(NS, "app").await, "latest").len(), 2);

    // skopeo copying `latest` onto the pinned tag is refused the same way.
    let creds = [format!("--src-creds=me:{pusher}"), format!("--dest-creds=me:{pusher}")];
    let copied = blocking(|| {
        skopeo_copy(
            &format!("docker://{berth}/{NS}/app:latest"),
            &format!("docker://{berth}/{NS}/app:v1.0.0"),
            &["--preserve-digests", &creds[0], &creds[1]],
        )
    });
    let error = copied.expect_err("skopeo may not move the pinned tag").to_string();
    assert!(error.contains("denied") && error.contains("immutable"), "{error}");
    let after = app.stream(NS, "app").await;
    assert_eq!(history(&after, "v1.0.0"), [(first.digest(), 1)]);

    // Deleting it, by tag or by digest, is refused to the editor and leaves it.
    for reference in ["v1.0.0".to_string(), first.digest()] {
        let response = v2(&app, &pusher, Method::DELETE, &format!("/v2/{NS}/app/manifests/{reference}")).await;
        let (status, code, message) = oci_error(response).await;
        assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"), "{message}");
        assert!(message.contains("may not be deleted") && message.contains("only a cluster admin"), "{message}");
    }
    let (status, error) = app.send(&pusher, Method::DELETE, &format!("{}/app", streams_path()), None).await;
    forbidden(status, &error, &["deleting it would delete a pinned tag", "\"v1.0.0\""]);
    assert_eq!(app.stream(NS, "app").await, after);
    // A cluster admin may delete it.
    let response = v2(&app, &app.admin, Method::DELETE, &format!("/v2/{NS}/app/manifests/v1.0.0")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let (status, _) = app.get(&istag_path(NS, "app:v1.0.0")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn a_namespace_pin_holds_against_every_write_of_the_image_api() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let editor = app.token("editor", "edit", &[NS]).await;
    let owner = app.token("owner", "admin", &[NS]).await;
    // Only a cluster admin sets a namespace's annotations: the namespace's pin is the admin's.
    let namespace = format!("/api/v1/namespaces/{NS}");
    let pin = json!({"metadata": {"annotations": {ANNOTATION: "v*"}}});
    for token in [&editor, &owner] {
        let (status, error) = merge_patch(&app, token, &namespace, pin.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    }
    let (status, error) = merge_patch(&app, &app.admin, &namespace, json!({"metadata": {"annotations": {ANNOTATION: "v*, a/b"}}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(error["message"].as_str().unwrap().contains("\"a/b\" is not a tag pattern"), "{error}");
    let (status, patched) = merge_patch(&app, &app.admin, &namespace, pin).await;
    assert_eq!(status, StatusCode::OK, "{patched}");

    let one = app.map(NS, "app", "v1", "one").await;
    assert_eq!(app.map(NS, "app", "v1", "one").await, one, "mapping the same image again is no move");
    let two = app.map(NS, "app", "latest", "two").await;
    let before = app.stream(NS, "app").await;
    let pinned_words = ["tag \"v1\" of image stream team/app is immutable", one.as_str(), "namespace team, set by a cluster admin"];

    // An ImageStreamMapping.
    let (status, error) = app.post(&format!("{IMAGE_API}/namespaces/{NS}/imagestreammappings"), mapping("app", "v1", "two")).await;
    forbidden(status, &error, &pinned_words);
    assert!(error["message"].as_str().unwrap().contains(&format!("may not move to {two}")), "{error}");
    // An ImageStreamTag update (`berth tag app:latest app:v1`), and an ImageTag update.
    let follow_latest = json!({"metadata": {"name": "app:v1"}, "tag": {"from": {"kind": "ImageStreamTag", "name": "latest"}}});
    let (status, error) = app.send(&editor, Method::PUT, &istag_path(NS, "app:v1"), Some(&follow_latest)).await;
    forbidden(status, &error, &pinned_words);
    let by_digest = json!({"metadata": {"name": "app:v1"}, "spec": {"from": {"kind": "ImageStreamImage", "name": format!("app@{two}")}}});
    let (status, error) = app.send(&editor, Method::PUT, &format!("{IMAGE_API}/namespaces/{NS}/imagetags/app:v1"), Some(&by_digest)).await;
    forbidden(status, &error, &pinned_words);
    // A stream update.
    let mut update = before.clone();
    update["spec"]["tags"] = json!([{"name": "v1", "from": {"kind": "ImageStreamTag", "name": "latest"}}]);
    let (status, error) = app.send(&editor, Method::PUT, &format!("{}/app", streams_path()), Some(&update)).await;
    forbidden(status, &error, &pinned_words);
    assert_eq!(app.stream(NS, "app").await, before, "refused writes change nothing");

    // A pinned tag with no image yet is set once: v2 follows latest...
    let follow = json!({"metadata": {"name": "app:v2"}, "tag": {"from": {"kind": "ImageStreamTag", "name": "latest"}}});
    let (status, set) = app.send(&editor, Method::PUT, &istag_path(NS, "app:v2"), Some(&follow)).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["image"]["metadata"]["name"], two);
    // ...and from then on `latest` cannot move either, since v2 would follow it.
    let before = app.stream(NS, "app").await;
    let (status, error) = app.post(&format!("{IMAGE_API}/namespaces/{NS}/imagestreammappings"), mapping("app", "latest", "three")).await;
    forbidden(status, &error, &["tag \"v2\" of image stream team/app is immutable", &two]);
    assert_eq!(app.stream(NS, "app").await, before);
    // A tag no pattern matches moves as always.
    app.map(NS, "app", "dev", "four").await;
    let five = app.map(NS, "app", "dev", "five").await;
    assert_eq!(history(&app.stream(NS, "app").await, "dev")[0].0, five);

    // Deleting a pinned tag, or the stream, is refused even to a namespace admin.
    let before = app.stream(NS, "app").await;
    for token in [&editor, &owner] {
        let (status, error) = app.send(token, Method::DELETE, &istag_path(NS, "app:v1"), None).await;
        forbidden(status, &error, &["may not be deleted", "only a cluster admin may delete it"]);
        let (status, error) = app.send(token, Method::DELETE, &format!("{}/app", streams_path()), None).await;
        forbidden(status, &error, &["deleting it would delete a pinned tag"]);
    }
    assert_eq!(app.stream(NS, "app").await, before);
    let (status, reply) = app.delete(&istag_path(NS, "app:v1")).await;
    assert_eq!(status, StatusCode::OK, "a cluster admin deletes it: {reply}");
    app.stop().await;
}

#[tokio::test]
async fn a_stream_pin_cannot_be_dropped_and_broken_in_one_write() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let editor = app.token("editor", "edit", &[NS]).await;
    let (status, error) = app.send(&editor, Method::POST, &streams_path(), Some(&stream_with("lib", Some("release-?, bad pattern")))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (status, created) = app.send(&editor, Method::POST, &streams_path(), Some(&stream_with("lib", Some("release-?")))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let a = app.map(NS, "lib", "release-1", "a").await;
    let b = app.map(NS, "lib", "next", "b").await;

    // One update that drops the pattern and moves the tag: the old version's pattern holds.
    let before = app.stream(NS, "lib").await;
    let mut update = before.clone();
    update["metadata"]["annotations"] = json!({});
    update["spec"]["tags"] = json!([{"name": "release-1", "from": {"kind": "ImageStreamTag", "name": "next"}}]);
    let (status, error) = app.send(&editor, Method::PUT, &format!("{}/lib", streams_path()), Some(&update)).await;
    forbidden(status, &error, &["tag \"release-1\"", &a, "pattern \"release-?\"", "of image stream team/lib"]);
    assert_eq!(app.stream(NS, "lib").await, before);

    // Dropping it in a write of its own unpins the tag for the next write.
    let (status, patched) =
        merge_patch(&app, &editor, &format!("{}/lib", streams_path()), json!({"metadata": {"annotations": {ANNOTATION: null}}})).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let follow = json!({"metadata": {"name": "lib:release-1"}, "tag": {"from": {"kind": "ImageStreamTag", "name": "next"}}});
    let (status, moved) = app.send(&editor, Method::PUT, &istag_path(NS, "lib:release-1"), Some(&follow)).await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["image"]["metadata"]["name"], b);
    app.stop().await;
}

/// Waits until `check` holds for the ImageStreamTag `name`, and returns it.
async fn wait_for_istag(app: &TestApp, name: &str, within: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, istag) = app.get(&istag_path(NS, name)).await;
        if check(&istag) {
            return istag;
        }
        assert!(Instant::now() < deadline, "{name} did not get there: {istag}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn reason(istag: &Value) -> &str {
    istag["conditions"][0]["reason"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_leaves_a_moved_immutable_tag_where_it_was_and_imports_the_rest() {
    let upstream = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let image = |seed| TestImage::new(Format::Oci, seed, 1, 256, "amd64");
    let (release, latest, scheduled) = blocking(|| {
        (
            upstream.push("lib/app", Some("v1.0.0"), &image(11)).unwrap(),
            upstream.push("lib/app", Some("latest"), &image(12)).unwrap(),
            upstream.push("lib/app", Some("v2.0.0"), &image(13)).unwrap(),
        )
    });
    let app = TestApp::start_with(|config| {
        config.import.scheduled_import_interval_seconds = 1;
        config.import.minimum_scheduled_import_interval_seconds = 1;
    })
    .await;
    app.namespace(NS).await;
    let (status, created) = app.post(&streams_path(), stream_with("app", Some("v*.*.*"))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let imports = format!("{IMAGE_API}/namespaces/{NS}/imagestreamimports");
    let isi = json!({"kind": "ImageStreamImport", "apiVersion": "image.openshift.io/v1", "metadata": {"name": "app"},
    "spec": {"import": true, "images": [
        {"from": {"kind": "DockerImage", "name": upstream.pull_spec("lib/app", "v1.0.0")}, "to": {"name": "v1.0.0"}},
        {"from": {"kind": "DockerImage", "name": upstream.pull_spec("lib/app", "latest")}, "to": {"name": "latest"}},
    ]}});
    let (status, done) = app.post(&imports, isi.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{done}");
    let tag = json!({"metadata": {"name": "app:v2.0.0"},
        "tag": {"from": {"kind": "DockerImage", "name": upstream.pull_spec("lib/app", "v2.0.0")}, "importPolicy": {"scheduled": true}}});
    let (status, reply) = app.put(&istag_path(NS, "app:v2.0.0"), tag).await;
    assert!(status.is_success(), "{reply}");
    wait_for_istag(&app, "app:v2.0.0", Duration::from_secs(10), |t| t["image"]["metadata"]["name"] == scheduled.digest).await;

    // Upstream, every tag moves.
    let (moved_release, moved_latest, moved_scheduled) = blocking(|| {
        (
            upstream.push("lib/app", Some("v1.0.0"), &image(21)).unwrap(),
            upstream.push("lib/app", Some("latest"), &image(22)).unwrap(),
            upstream.push("lib/app", Some("v2.0.0"), &image(23)).unwrap(),
        )
    });

    // An import on demand: the pinned tag stays and says why; the other tag moves.
    let (status, again) = app.post(&imports, isi.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    let statuses = again["status"]["images"].as_array().unwrap();
    assert_eq!(statuses[0]["tag"], "v1.0.0");
    assert_eq!(
        (statuses[0]["status"]["status"].as_str(), statuses[0]["status"]["reason"].as_str()),
        (Some("Failure"), Some("ImmutableTag"))
    );
    let message = statuses[0]["status"]["message"].as_str().unwrap();
    assert!(message.contains(&release.digest) && message.contains(&format!("may not move to {}", moved_release.digest)), "{message}");
    assert_eq!(statuses[1]["status"]["status"], "Success", "{again}");
    let stream = app.stream(NS, "app").await;
    assert_eq!(history(&stream, "v1.0.0").iter().map(|(image, _)| image.as_str()).collect::<Vec<_>>(), [release.digest.as_str()]);
    assert_eq!(
        history(&stream, "latest").iter().map(|(image, _)| image.as_str()).collect::<Vec<_>>(),
        [moved_latest.digest.as_str(), latest.digest.as_str()]
    );
    let istag = app.get(&istag_path(NS, "app:v1.0.0")).await.1;
    assert_eq!(reason(&istag), "ImmutableTag", "{istag}");
    assert_eq!(istag["conditions"][0]["status"], "False");
    assert_eq!(istag["image"]["metadata"]["name"], release.digest);
    let (status, _) = app.get(&format!("{IMAGE_API}/images/{}", moved_release.digest)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the refused image is not stored");

    // The scheduled check finds its tag moved too, and leaves it.
    let istag = wait_for_istag(&app, "app:v2.0.0", Duration::from_secs(15), |t| reason(t) == "ImmutableTag").await;
    assert_eq!(istag["image"]["metadata"]["name"], scheduled.digest);
    assert!(istag["conditions"][0]["message"].as_str().unwrap().contains(&moved_scheduled.digest), "{istag}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, schedule) = app.get(&format!("/apis/berth.dev/v1/namespaces/{NS}/scheduledimports")).await;
        if schedule["items"][0]["lastResult"].as_str().is_some_and(|last| last.starts_with("Failed (ImmutableTag)")) {
            break;
        }
        assert!(Instant::now() < deadline, "the schedule does not say the check was refused: {schedule}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Upstream back at the pinned image: the import succeeds and the condition clears.
    blocking(|| upstream.push("lib/app", Some("v1.0.0"), &image(11)).unwrap());
    let (status, back) = app.post(&imports, isi).await;
    assert_eq!(status, StatusCode::CREATED, "{back}");
    assert_eq!(back["status"]["images"][0]["status"]["status"], "Success", "{back}");
    let istag = app.get(&istag_path(NS, "app:v1.0.0")).await.1;
    assert!(istag["conditions"].as_array().is_none_or(Vec::is_empty), "{istag}");
    assert_eq!(istag["image"]["metadata"]["name"], release.digest);
    app.stop().await;
}

/// Two writers racing for a pinned tag that has no image yet: one wins, the other is
/// refused, and the tag points at the winner's image, every round.
#[tokio::test(flavor = "multi_thread")]
async fn racing_writers_of_a_pinned_tag_leave_exactly_one_image() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let (status, body) = app.post(&streams_path(), stream_with("race", Some("v*"))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let path = format!("{IMAGE_API}/namespaces/{NS}/imagestreammappings");
    for round in 0..20 {
        let tag = format!("v1.{round}");
        let (a, b) = (mapping("race", &tag, &format!("a-{round}")), mapping("race", &tag, &format!("b-{round}")));
        let ((status_a, _), (status_b, _)) = tokio::join!(app.post(&path, a.clone()), app.post(&path, b.clone()));
        let mut statuses = [status_a, status_b];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::CREATED, StatusCode::FORBIDDEN], "round {round}");
        let winner = if status_a == StatusCode::CREATED { &a } else { &b };
        let stream = app.stream(NS, "race").await;
        let events = history(&stream, &tag);
        assert_eq!(events.len(), 1, "round {round}: {events:?}");
        assert_eq!(events[0].0, winner["image"]["metadata"]["name"].as_str().unwrap(), "round {round}");
    }
    app.stop().await;
}
