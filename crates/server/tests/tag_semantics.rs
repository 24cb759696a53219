//! OpenShift's tag semantics over the real HTTP API: generations, history, tags that
//! follow other tags, pins, reference tags, re-import requests, and the virtual kinds.

mod common;

use common::{IMAGE_API, TestApp, history, spec_tag, stream_body};
use reqwest::StatusCode;
use serde_json::json;

const NS: &str = "team";

fn path(rest: &str) -> String {
    format!("{IMAGE_API}/namespaces/{NS}/{rest}")
}

#[tokio::test]
async fn generations_follow_spec_changes_and_reimport_requests() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let (status, created) = app
        .post(&path("imagestreams"), stream_body("mysql", json!([{"name": "5.6", "from": {"kind": "DockerImage", "name": "mysql:5.6"}}])))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(spec_tag(&created, "5.6")["generation"], 1);
    assert_eq!(created["status"]["dockerImageRepository"], "registry.berth.test/team/mysql");
    assert!(created["status"]["tags"].as_array().is_none_or(Vec::is_empty), "the tag waits for the importer: {created}");

    // A label change is not a spec change.
    // The importer writes the stream too, so these updates carry no resourceVersion.
    let mut relabelled = created.clone();
    relabelled["metadata"]["resourceVersion"] = json!("");
    relabelled["metadata"]["labels"] = json!({"app": "db"});
    let (_, relabelled) = app.put(&path("imagestreams/mysql"), relabelled).await;
    assert_eq!(relabelled["metadata"]["generation"], 1);

    // A user-set generation is ignored, except 0, which asks for a re-import.
    let mut forged = relabelled.clone();
    forged["metadata"]["resourceVersion"] = json!("");
    forged["spec"]["tags"][0]["generation"] = json!(7);
    let (_, forged) = app.put(&path("imagestreams/mysql"), forged).await;
    assert_eq!(spec_tag(&forged, "5.6")["generation"], 1);
    let mut reimport = forged.clone();
    reimport["metadata"]["resourceVersion"] = json!("");
    reimport["spec"]["tags"][0]["generation"] = json!(0);
    let (_, reimported) = app.put(&path("imagestreams/mysql"), reimport).await;
    assert_eq!(reimported["metadata"]["generation"], 2);
    assert_eq!(spec_tag(&reimported, "5.6")["generation"], 2);
    // The importer tries generation 2 (docker.io is not allowed in tests, so it fails
    // without a request) and records the result at that generation.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stream = app.stream(NS, "mysql").await;
        let condition = &stream["status"]["tags"][0]["conditions"][0];
        if condition["generation"] == 2 {
            assert_eq!((condition["status"].as_str(), condition["reason"].as_str()), (Some("False"), Some("Forbidden")), "{stream}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no import result at generation 2: {stream}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn history_is_newest_first_and_repeats_do_not_add_events() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let one = app.map(NS, "app", "latest", "one").await;
    let two = app.map(NS, "app", "latest", "two").await;
    let again = app.map(NS, "app", "latest", "two").await;
    assert_eq!(again, two);
    let stream = app.stream(NS, "app").await;
    assert_eq!(history(&stream, "latest"), vec![(two.clone(), 1), (one.clone(), 1)]);
    // The mapping created the stream, and the images are readable by digest.
    let (status, image) = app.get(&format!("{IMAGE_API}/images/{one}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(image["dockerImageLayers"][0]["size"], 1024);
    assert!(image["dockerImageManifest"].as_str().unwrap().contains("one"));

    let (status, istag) = app.get(&path("imagestreamtags/app:latest")).await;
    assert_eq!(status, StatusCode::OK, "{istag}");
    assert_eq!(istag["kind"], "ImageStreamTag");
    assert_eq!(istag["image"]["metadata"]["name"], two.as_str());
    assert!(istag["image"].get("dockerImageManifest").is_none(), "views leave the raw manifest out");
    let (status, isimage) = app.get(&path(&format!("imagestreamimages/app@{one}"))).await;
    assert_eq!(status, StatusCode::OK, "{isimage}");
    assert_eq!(isimage["image"]["metadata"]["name"], one.as_str());
    let (status, imagetag) = app.get(&path("imagetags/app:latest")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(imagetag["status"]["items"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn tracking_tags_pins_and_references() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let one = app.map(NS, "app", "latest", "one").await;
    let tags = json!([
        {"name": "stable", "from": {"kind": "ImageStreamTag", "name": "app:latest"}},
        {"name": "pinned", "from": {"kind": "ImageStreamImage", "name": format!("app@{one}")}},
        {"name": "ext", "reference": true, "from": {"kind": "DockerImage", "name": "quay.io/org/tool:1.0"}},
    ]);
    let mut stream = app.stream(NS, "app").await;
    stream["spec"]["tags"] = tags;
    let (status, updated) = app.put(&path("imagestreams/app"), stream).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_eq!(history(&updated, "stable"), vec![(one.clone(), 2)]);
    assert_eq!(history(&updated, "pinned"), vec![(one.clone(), 2)]);
    let ext = updated["status"]["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "ext").unwrap();
    assert_eq!(ext["items"][0]["dockerImageReference"], "quay.io/org/tool:1.0");
    assert_eq!(ext["items"][0]["image"], "");

    // When latest moves, stable follows and pinned stays.
    let two = app.map(NS, "app", "latest", "two").await;
    let stream = app.stream(NS, "app").await;
    assert_eq!(history(&stream, "stable").iter().map(|(i, _)| i.clone()).collect::<Vec<_>>(), vec![two.clone(), one.clone()]);
    assert_eq!(history(&stream, "pinned").len(), 1);

    // A pin to an image the stream never had is refused, and nothing changes.
    let before = app.revision().await;
    let mut bad = stream.clone();
    bad["spec"]["tags"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "bad", "from": {"kind": "ImageStreamImage", "name": format!("app@{}", common::sha256("never"))}}));
    let (status, error) = app.put(&path("imagestreams/app"), bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["reason"], "Invalid");
    assert!(error["details"]["causes"][0]["message"].as_str().unwrap().contains("not found in image stream team/app"));
    assert_eq!(app.revision().await, before);
    app.stop().await;
}

#[tokio::test]
async fn image_stream_tags_create_update_and_delete_spec_and_status() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let one = app.map(NS, "app", "latest", "one").await;
    let istag = json!({"kind": "ImageStreamTag", "apiVersion": "image.openshift.io/v1", "metadata": {"name": "copy:v1"},
        "tag": {"from": {"kind": "ImageStreamTag", "name": "app:latest"}}});
    let (status, created) = app.post(&path("imagestreamtags"), istag.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["image"]["metadata"]["name"], one.as_str(), "a tag from another stream resolves at once");
    let (status, _) = app.post(&path("imagestreamtags"), istag).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // A tag copied from another stream does not follow it.
    app.map(NS, "app", "latest", "two").await;
    let (_, copy) = app.get(&path("imagestreamtags/copy:v1")).await;
    assert_eq!(copy["image"]["metadata"]["name"], one.as_str());

    let (status, body) = app.delete(&path("imagestreamtags/copy:v1")).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("Success")));
    let (status, _) = app.get(&path("imagestreamtags/copy:v1")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let copy_stream = app.stream(NS, "copy").await;
    assert!(copy_stream["spec"]["tags"].as_array().unwrap().is_empty());
    assert!(copy_stream["status"]["tags"].as_array().unwrap().is_empty());
    let (status, error) = app.delete(&path("imagestreamtags/copy:v1")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    app.stop().await;
}

/// Manifests in OpenShift's own shapes apply as OpenShift takes them: an empty reference
/// policy is `Source`, and a tag whose source is an image stream tag of a stream that does
/// not exist yet is accepted, says what it waits for, and is set when the source appears
/// (also in another namespace, and through a tag that follows it).
#[tokio::test]
async fn openshift_manifests_apply_as_openshift_takes_them() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    app.namespace("shared").await;
    let tags = json!([
        {"name": "latest", "from": {"kind": "ImageStreamTag", "name": "builder:1.0"}, "referencePolicy": {"type": ""}},
        {"name": "base", "from": {"kind": "ImageStreamTag", "namespace": "shared", "name": "base:8"}},
        {"name": "stable", "from": {"kind": "ImageStreamTag", "name": "base"}},
    ]);
    let (status, created) = app.post(&path("imagestreams"), stream_body("app", tags)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(spec_tag(&created, "latest")["referencePolicy"]["type"], "Source");
    let condition = |stream: &serde_json::Value, tag: &str| {
        stream["status"]["tags"].as_array().and_then(|t| t.iter().find(|t| t["tag"] == tag)).map(|t| t["conditions"].clone())
    };
    let waiting = condition(&created, "base").unwrap();
    assert_eq!(waiting[0]["reason"], "NotFound");
    assert!(waiting[0]["message"].as_str().unwrap().contains("waiting for image stream tag shared/base:8"), "{waiting}");

    // The sources appear: the waiting tags are set, and the tag following one follows.
    let builder = app.map(NS, "builder", "1.0", "builder-one").await;
    let base = app.map("shared", "base", "8", "base-eight").await;
    let stream = app.stream(NS, "app").await;
    assert_eq!(history(&stream, "latest")[0].0, builder);
    assert_eq!(history(&stream, "base")[0].0, base);
    assert_eq!(history(&stream, "stable")[0].0, base);
    assert!(condition(&stream, "base").is_none_or(|c| c.as_array().is_none_or(Vec::is_empty)), "{stream}");
    // Resolved once, as OpenShift resolves such a tag when it is set: later moves of the
    // source are not followed across streams.
    app.map("shared", "base", "8", "base-eight-later").await;
    assert_eq!(history(&app.stream(NS, "app").await, "base").len(), 1);
    app.stop().await;
}
