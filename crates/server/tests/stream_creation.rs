//! Who creates image streams (the server setting `streams.implicitCreate`): by default a
//! push, a tag, a mapping or an import into a stream that does not exist creates it only
//! for a namespace admin; an editor is refused, is told how to create the stream, and
//! nothing is created. Editors create streams explicitly, or everywhere once the setting
//! says `Editors`.

mod common;

use berth_server::ImplicitCreate;
use berth_testkit::{Format, RegistryClient, TestImage};
use common::{IMAGE_API, TestApp, blocking, istag_path, sha256, stream_body};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const NS: &str = "team";

fn host(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

/// Pushes `image` to `team/<stream>:<tag>` with `token`, with the test kit's client (made
/// and dropped off the async workers).
fn push(app: &TestApp, token: &str, stream: &str, tag: &str, image: &TestImage) -> anyhow::Result<()> {
    let host = host(app);
    blocking(|| RegistryClient::new(&host, Some(("me", token)))?.push(&format!("{NS}/{stream}"), Some(tag), image).map(drop))
}

/// The OCI error of a `/v2/` answer: status, code, message.
async fn oci_error(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let error = &body["errors"][0];
    (status, error["code"].as_str().unwrap_or_default().to_string(), error["message"].as_str().unwrap_or_default().to_string())
}

/// What the refusal says for the missing stream `team/fresh`.
fn says_how_to_create(message: &str, how: &str) {
    for words in [
        "image stream team/fresh does not exist",
        &format!("may not create it by {how}"),
        "only a namespace admin may",
        "streams.implicitCreate is Admins",
        "`berth create imagestream fresh -n team`",
        "streams.implicitCreate: Editors",
    ] {
        assert!(message.contains(words), "{words:?} in {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_cannot_create_a_stream_by_pushing_tagging_mapping_or_importing() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let editor = app.token("editor", "edit", &[NS]).await;
    let owner = app.token("owner", "admin", &[NS]).await;
    let image = TestImage::new(Format::Oci, 1, 1, 256, "amd64");
    let revision = app.revision().await;

    // The registry: the first blob upload is refused, and so is a manifest by tag or digest.
    let client = reqwest::Client::new();
    let upload = client.post(format!("{}/v2/{NS}/fresh/blobs/uploads/", app.base)).bearer_auth(&editor).send().await.unwrap();
    let (status, code, message) = oci_error(upload).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"), "{message}");
    says_how_to_create(&message, "pushing to it");
    for reference in ["v1".to_string(), image.digest()] {
        let response = client
            .put(format!("{}/v2/{NS}/fresh/manifests/{reference}", app.base))
            .bearer_auth(&editor)
            .header("content-type", Format::Oci.manifest_media_type())
            .body(image.manifest_bytes())
            .send()
            .await
            .unwrap();
        let (status, code, message) = oci_error(response).await;
        assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"), "{reference}: {message}");
        says_how_to_create(&message, "pushing to it");
    }
    let pushed = push(&app, &editor, "fresh", "v1", &image).expect_err("an editor's push creates no stream").to_string();
    assert!(pushed.contains("DENIED") && pushed.contains("berth create imagestream fresh -n team"), "{pushed}");

    // The image API: a tag (create and update), a mapping, an import.
    let tag = json!({"metadata": {"name": "fresh:v1"}, "tag": {"from": {"kind": "DockerImage", "name": "registry.example.com/app:1"}}});
    let (status, error) = app.send(&editor, Method::POST, &format!("{IMAGE_API}/namespaces/{NS}/imagestreamtags"), Some(&tag)).await;
    assert_eq!((status, error["reason"].as_str()), (StatusCode::FORBIDDEN, Some("Forbidden")), "{error}");
    says_how_to_create(error["message"].as_str().unwrap(), "tagging into it");
    let (status, error) = app.send(&editor, Method::PUT, &istag_path(NS, "fresh:v1"), Some(&tag)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    let manifest = "{\"schemaVersion\":2}";
    let mapping = json!({"kind": "ImageStreamMapping", "apiVersion": "image.openshift.io/v1", "metadata": {"name": "fresh"}, "tag": "v1",
        "image": {"metadata": {"name": sha256(manifest)}, "dockerImageReference": format!("registry.example.com/app@{}", sha256(manifest)),
            "dockerImageManifest": manifest}});
    let (status, error) =
        app.send(&editor, Method::POST, &format!("{IMAGE_API}/namespaces/{NS}/imagestreammappings"), Some(&mapping)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    says_how_to_create(error["message"].as_str().unwrap(), "mapping an image into it");
    let isi = json!({"kind": "ImageStreamImport", "apiVersion": "image.openshift.io/v1", "metadata": {"name": "fresh"},
        "spec": {"import": true, "images": [{"from": {"kind": "DockerImage", "name": "registry.example.com/app:1"}}]}});
    let (status, error) = app.send(&editor, Method::POST, &format!("{IMAGE_API}/namespaces/{NS}/imagestreamimports"), Some(&isi)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    says_how_to_create(error["message"].as_str().unwrap(), "importing into it");

    // Nothing was created.
    assert_eq!(app.revision().await, revision, "no write was made");
    let (status, _) = app.get(&format!("{IMAGE_API}/namespaces/{NS}/imagestreams/fresh")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A namespace admin's push creates the stream.
    push(&app, &owner, "fresh", "v1", &image).unwrap();
    let (_, istag) = app.get(&istag_path(NS, "fresh:v1")).await;
    assert_eq!(istag["image"]["metadata"]["name"], image.digest());
    // An editor creates a stream explicitly, and then pushes and tags into it.
    let (status, created) =
        app.send(&editor, Method::POST, &format!("{IMAGE_API}/namespaces/{NS}/imagestreams"), Some(&stream_body("mine", json!([])))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    push(&app, &editor, "mine", "v1", &image).unwrap();
    let (status, _) = app.get(&istag_path(NS, "mine:v1")).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_implicit_create_editors_an_editor_push_creates_the_stream() {
    let app = TestApp::start_with(|config| config.streams.implicit_create = ImplicitCreate::Editors).await;
    app.namespace(NS).await;
    let editor = app.token("editor", "edit", &[NS]).await;
    let viewer = app.token("viewer", "view", &[NS]).await;
    let image = TestImage::new(Format::Oci, 2, 1, 256, "amd64");
    push(&app, &editor, "fresh", "v1", &image).unwrap();
    let (_, istag) = app.get(&istag_path(NS, "fresh:v1")).await;
    assert_eq!(istag["image"]["metadata"]["name"], image.digest());
    let tag = json!({"metadata": {"name": "other:v1"}, "tag": {"from": {"kind": "ImageStreamTag", "name": "fresh:v1"}}});
    let (status, reply) = app.send(&editor, Method::PUT, &istag_path(NS, "other:v1"), Some(&tag)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    // Writing the namespace is still needed.
    let refused = push(&app, &viewer, "third", "v1", &image).expect_err("a viewer pushes nothing").to_string();
    assert!(refused.contains("DENIED"), "{refused}");
    app.stop().await;
}
