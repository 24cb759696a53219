//! Bad input gets a clear 4xx `Status` and stores nothing.

mod common;

use common::{IMAGE_API, TestApp, sha256, stream_body};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// What is sent, with what content type to which path, the status wanted, and words the
/// message must contain.
type BadRequest = (&'static str, &'static str, String, Vec<u8>, StatusCode, &'static str);

#[tokio::test]
async fn each_kind_of_bad_input_is_refused_with_a_clear_status_and_nothing_stored() {
    let app = TestApp::start().await;
    app.namespace("team").await;
    let streams = format!("{IMAGE_API}/namespaces/team/imagestreams");
    let mappings = format!("{IMAGE_API}/namespaces/team/imagestreammappings");
    let digest = sha256("x");
    let mapping = |name: &str, tag: &str, image: serde_json::Value| json!({"kind": "ImageStreamMapping", "apiVersion": "image.openshift.io/v1", "metadata": {"name": name}, "tag": tag, "image": image});
    let good_image = json!({"metadata": {"name": digest}, "dockerImageReference": format!("registry.example.com/team/app@{digest}")});
    let long_name = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(60));
    let cases: Vec<BadRequest> = vec![
        ("malformed JSON", "application/json", streams.clone(), b"{\"metadata\": {".to_vec(), StatusCode::BAD_REQUEST, "not valid JSON"),
        ("malformed YAML", "application/yaml", streams.clone(), b"metadata: [unclosed".to_vec(), StatusCode::BAD_REQUEST, "not valid YAML"),
        ("empty body", "application/json", streams.clone(), b"  ".to_vec(), StatusCode::BAD_REQUEST, "empty"),
        (
            "wrong kind",
            "application/json",
            streams.clone(),
            br#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x"}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "takes ImageStream",
        ),
        (
            "wrong apiVersion",
            "application/json",
            streams.clone(),
            br#"{"kind":"ImageStream","apiVersion":"image.openshift.io/v9","metadata":{"name":"x"}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "not served here",
        ),
        (
            "wrong field type",
            "application/json",
            streams.clone(),
            br#"{"metadata":{"name":"x"},"spec":{"tags":"latest"}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        ("unsupported media type", "text/plain", streams.clone(), b"name: x".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "not supported"),
        (
            "invalid stream name",
            "application/json",
            streams.clone(),
            stream_body("Bad_Name", json!([])).to_string().into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a valid name",
        ),
        (
            "namespace/name over 255",
            "application/json",
            streams.clone(),
            stream_body(&long_name, json!([])).to_string().into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "longer than 255",
        ),
        (
            "invalid tag name",
            "application/json",
            streams.clone(),
            stream_body("app", json!([{"name": "-x", "from": {"kind": "DockerImage", "name": "a:b"}}])).to_string().into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a valid tag",
        ),
        (
            "bad source reference",
            "application/json",
            streams.clone(),
            stream_body("app", json!([{"name": "x", "from": {"kind": "DockerImage", "name": "UPPER:case"}}])).to_string().into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "repository path",
        ),
        (
            "invalid digest",
            "application/json",
            mappings.clone(),
            mapping("app", "latest", json!({"metadata": {"name": "sha256:1234"}, "dockerImageReference": "r.example.com/a@sha256:1234"}))
                .to_string()
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong length",
        ),
        (
            "manifest not matching its digest",
            "application/json",
            mappings.clone(),
            mapping(
                "app",
                "latest",
                json!({"metadata": {"name": digest}, "dockerImageReference": "r.example.com/a:1", "dockerImageManifest": "{}"}),
            )
            .to_string()
            .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "manifest's digest is",
        ),
        (
            "mapping without a tag",
            "application/json",
            mappings.clone(),
            mapping("app", "", good_image.clone()).to_string().into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a valid tag",
        ),
        (
            "unknown namespace",
            "application/json",
            format!("{IMAGE_API}/namespaces/nowhere/imagestreams"),
            stream_body("app", json!([])).to_string().into_bytes(),
            StatusCode::NOT_FOUND,
            "berth create namespace nowhere",
        ),
        ("oversize body", "application/json", streams.clone(), vec![b' '; 4 * 1024 * 1024], StatusCode::PAYLOAD_TOO_LARGE, "larger than"),
    ];
    let before = app.revision().await;
    for (what, content_type, path, body, want, words) in cases {
        let (status, error) = app.send_raw(&app.admin, Method::POST, &path, content_type, body).await;
        assert_eq!(status, want, "{what}: {error}");
        assert_eq!(error["kind"], "Status", "{what}");
        assert_eq!(error["code"].as_u64(), Some(u64::from(want.as_u16())), "{what}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{what}: {message:?} should say {words:?}");
        assert_eq!(app.revision().await, before, "{what} stored something");
    }
    let (_, list) = app.get(&streams).await;
    assert!(list["items"].as_array().unwrap().is_empty());
    let (_, images) = app.get(&format!("{IMAGE_API}/images")).await;
    assert!(images["items"].as_array().unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn images_keep_their_content_but_take_new_labels() {
    let app = TestApp::start().await;
    app.namespace("team").await;
    let digest = app.map("team", "app", "latest", "one").await;
    let path = format!("{IMAGE_API}/images/{digest}");
    let (_, image) = app.get(&path).await;
    let mut changed = image.clone();
    changed["dockerImageReference"] = json!("elsewhere.example.com/x@sha256:00");
    let (status, error) = app.put(&path, changed).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(error["message"].as_str().unwrap().contains("field is immutable"));
    let mut labelled = image.clone();
    labelled["metadata"]["labels"] = json!({"tier": "gold"});
    let (status, updated) = app.put(&path, labelled).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["metadata"]["labels"]["tier"], "gold");
    assert_eq!(updated["dockerImageManifest"], image["dockerImageManifest"]);
    app.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_with_status_bodies() {
    let app = TestApp::start().await;
    let (status, error) = app.get("/apis/image.openshift.io/v1/nothing").await;
    assert_eq!((status, error["reason"].as_str()), (StatusCode::NOT_FOUND, Some("NotFound")));
    let (status, error) = app.send(&app.admin, Method::DELETE, "/api/v1/namespaces", None).await;
    assert_eq!((status, error["reason"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("MethodNotAllowed")));
    app.namespace("team").await;
    let (status, error) = app.get(&format!("{IMAGE_API}/namespaces/team/imagestreamtags?watch=true")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{error}");
    assert!(error["message"].as_str().unwrap().contains("watch imagestreams"));
    let (_, discovery) = app.get(IMAGE_API).await;
    let mappings = discovery["resources"].as_array().unwrap().iter().find(|r| r["name"] == "imagestreammappings").unwrap();
    assert_eq!(mappings["verbs"], json!(["create"]));
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}
