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
    let rollback = "/apis/berth.dev/v1/namespaces/team/imagestreamtags/app:latest/rollback".to_string();
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
            "invalid immutable tag pattern",
            "application/json",
            streams.clone(),
            json!({"metadata": {"name": "app", "annotations": {"berth.dev/immutable-tags": "v*, v[0-9]"}}}).to_string().into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "\"v[0-9]\" is not a tag pattern",
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
        (
            "overrides that make no sense",
            "application/json",
            streams.clone(),
            json!({"metadata": {"name": "app", "annotations": {"berth.dev/overrides": "{\"ports\":{\"add\":[\"http\"]}}"}}})
                .to_string()
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "is not a port",
        ),
        (
            "overrides that are not JSON",
            "application/json",
            streams.clone(),
            json!({"metadata": {"name": "app", "annotations": {"berth.dev/overrides": "env: {A: 1}"}}}).to_string().into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "write JSON such as",
        ),
        ("rollback of a missing tag", "application/json", rollback.clone(), b"{}".to_vec(), StatusCode::NOT_FOUND, "not found"),
        (
            "rollback to a revision and an image",
            "application/json",
            rollback.clone(),
            br#"{"revision":1,"image":"sha256:1"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "not both",
        ),
        (
            "rollback with an unknown field",
            "application/json",
            rollback.clone(),
            br#"{"revisoin":1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            "resume of a missing tag",
            "application/json",
            rollback.replace("/rollback", "/resume"),
            b"{}".to_vec(),
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            "quota quantity with a unit berth does not know",
            "application/json",
            "/api/v1/namespaces/team/resourcequotas".to_string(),
            br#"{"metadata":{"name":"images"},"spec":{"hard":{"berth.dev/image-storage":"10GB"}}}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "spec.hard[berth.dev/image-storage]: \"10GB\" is not a quantity",
        ),
        (
            "negative limit",
            "application/json",
            "/api/v1/namespaces/team/limitranges".to_string(),
            br#"{"metadata":{"name":"limits"},"spec":{"limits":[{"type":"openshift.io/Image","max":{"storage":"-1"}}]}}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "spec.limits[0].max[storage]: \"-1\" is negative",
        ),
        (
            "quota of the wrong kind",
            "application/json",
            "/api/v1/namespaces/team/resourcequotas".to_string(),
            br#"{"kind":"LimitRange","apiVersion":"v1","metadata":{"name":"x"}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "takes ResourceQuota",
        ),
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
    let (status, error) = app.get("/apis/berth.dev/v1/auditevents?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error["message"].as_str().unwrap().contains("since=\"yesterday\" is not a time: give RFC 3339"), "{error}");
    let (status, error) = app.get("/apis/berth.dev/v1/auditevents?limit=many").await;
    assert_eq!((status, error["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("BadRequest")), "{error}");
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

/// Anything a client sends to the registry endpoint (any method, path, range, upload
/// range, credentials, media types and body) gets an answer below 500, and every refusal
/// says what was wrong. A bounded property test against the real server;
/// `PROPTEST_CASES=20000 cargo nextest run -p berth-server --test bad_input` runs longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_registry_request_makes_the_server_fail() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let app = TestApp::start().await;
    app.namespace("team").await;
    let editor = app.token("editor", "edit", &["team"]).await;
    let client = reqwest::Client::new();
    let strategy = (
        prop::sample::select(vec!["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"]),
        prop_oneof![
            "[a-z0-9/._:-]{0,60}",
            "team/app/(manifests|blobs|tags|referrers|blobs/uploads)/[a-zA-Z0-9:._-]{0,70}",
            "team/app/blobs/uploads/[0-9a-f-]{0,40}(\\?digest=sha256:[0-9a-f]{0,64})?",
        ],
        prop::option::of("(bytes=)?[0-9,-]{0,16}"),
        prop::option::of("(bytes )?[0-9]{0,8}-[0-9]{0,8}(/[0-9*]{0,6})?"),
        prop::sample::select(vec!["editor", "admin", "garbage", "none"]),
        prop::option::of("[a-z/.+*;=0-9, -]{0,60}"),
        prop::collection::vec(any::<u8>(), 0..256),
    );
    let mut runner = TestRunner::new(Config { failure_persistence: None, ..Config::default() });
    runner
        .run(&strategy, |(method, path, range, content_range, who, media, body)| {
            let mut request = client.request(method.parse().unwrap(), format!("{}/v2/{path}", app.base)).body(body);
            request = match who {
                "editor" => request.bearer_auth(&editor),
                "admin" => request.bearer_auth(&app.admin),
                "garbage" => request.basic_auth("me", Some("brt_not.a-token")),
                _ => request,
            };
            for (name, value) in
                [("range", range), ("content-range", content_range.clone()), ("accept", media.clone()), ("content-type", media)]
            {
                if let Some(value) = value {
                    request = request.header(name, value);
                }
            }
            let (status, text) = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let response = request.send().await.unwrap();
                    (response.status(), response.text().await.unwrap_or_default())
                })
            });
            prop_assert!(status.as_u16() < 500, "{method} /v2/{path}: {status} {text}");
            if status.is_client_error() && method != "HEAD" {
                // (A path with dot segments is resolved by the client and may leave /v2/: the
                // image API's `Status` answers it, with its message.)
                let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let message = body["errors"][0]["message"].as_str().or(body["message"].as_str());
                prop_assert!(message.is_some_and(|m| !m.is_empty()), "{method} /v2/{path}: {status} {text}");
            }
            Ok(())
        })
        .unwrap();
    app.stop().await;
}
