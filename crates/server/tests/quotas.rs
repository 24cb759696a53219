//! ResourceQuotas and LimitRanges over the real API: cluster admins write them, a
//! namespace's admins and editors cannot (and are told so), anyone who may read the
//! namespace reads them, bad quantities are refused naming the field, and a quota's
//! status shows what the namespace uses.

mod common;

use berth_testkit::{Auth, DistributionRegistry, Format, RegistryClient, TestImage};
use common::{IMAGE_API, TestApp, blocking};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const NS: &str = "team";
const QUOTAS: &str = "/api/v1/namespaces/team/resourcequotas";
const RANGES: &str = "/api/v1/namespaces/team/limitranges";

fn quota(name: &str, hard: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name}, "spec": {"hard": hard}})
}

fn limit_range(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name}, "spec": {"limits": [
        {"type": "openshift.io/ImageStream", "max": {"openshift.io/image-tags": "20", "openshift.io/images": "50"}},
        {"type": "openshift.io/Image", "max": {"storage": "1Gi"}},
    ]}})
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn cluster_admins_write_quotas_and_readers_of_the_namespace_read_them() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    app.namespace("other").await;
    let view = app.token("viewer", "view", &[NS]).await;
    let edit = app.token("editor", "edit", &[NS]).await;
    let owner = app.token("owner", "admin", &[NS]).await;
    let outsider = app.token("outsider", "admin", &["other"]).await;

    // The cluster admin creates both kinds.
    let images = quota("images", json!({"openshift.io/imagestreams": "10", "berth.dev/image-storage": "10Gi"}));
    let (status, created) = app.post(QUOTAS, images.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["kind"], "ResourceQuota");
    assert_eq!(created["apiVersion"], "v1");
    assert_eq!(created["metadata"]["namespace"], NS);
    assert_eq!(created["status"]["hard"], images["spec"]["hard"]);
    let (status, created) = app.post(RANGES, limit_range("limits")).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["limits"][1]["max"]["storage"], "1Gi");

    // A namespace's own admin and editor may not create, change or delete them.
    for (who, token) in [("admin", &owner), ("edit", &edit), ("view", &view)] {
        for (method, path, body) in [
            (Method::POST, QUOTAS.to_string(), Some(quota("mine", json!({"openshift.io/imagestreams": "1000"})))),
            (Method::PUT, format!("{QUOTAS}/images"), Some(quota("images", json!({"openshift.io/imagestreams": "1000"})))),
            (Method::DELETE, format!("{QUOTAS}/images"), None),
            (Method::POST, RANGES.to_string(), Some(limit_range("mine"))),
            (Method::DELETE, format!("{RANGES}/limits"), None),
        ] {
            let (status, error) = app.send(token, method.clone(), &path, body.as_ref()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{who} {method} {path}: {error}");
            assert!(message(&error).contains("at the cluster scope") && message(&error).contains("ask an admin"), "{error}");
        }
        let patch = json!({"spec": {"hard": {"openshift.io/imagestreams": "1000"}}}).to_string().into_bytes();
        let (status, _) = app.send_raw(token, Method::PATCH, &format!("{QUOTAS}/images"), "application/merge-patch+json", patch).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who} patch");
    }
    let (_, unchanged) = app.get(&format!("{QUOTAS}/images")).await;
    assert_eq!(unchanged["spec"]["hard"]["openshift.io/imagestreams"], "10");

    // Anyone who may read the namespace reads them; another namespace's admin does not.
    for token in [&view, &edit, &owner] {
        let (status, read) = app.send(token, Method::GET, &format!("{QUOTAS}/images"), None).await;
        assert_eq!(status, StatusCode::OK, "{read}");
        assert_eq!(read["spec"]["hard"]["berth.dev/image-storage"], "10Gi");
        let (status, list) = app.send(token, Method::GET, RANGES, None).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert_eq!(list["items"][0]["metadata"]["name"], "limits");
    }
    for path in [format!("{QUOTAS}/images"), RANGES.to_string(), "/api/v1/resourcequotas".to_string()] {
        let (status, _) = app.send(&outsider, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }

    // The cluster admin updates and deletes them.
    let (status, updated) = app.put(&format!("{QUOTAS}/images"), quota("images", json!({"openshift.io/imagestreams": "5"}))).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["status"]["hard"], json!({"openshift.io/imagestreams": "5"}));
    assert_eq!(app.delete(&format!("{RANGES}/limits")).await.0, StatusCode::OK);
    assert_eq!(app.get(&format!("{RANGES}/limits")).await.0, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn a_quantity_that_does_not_parse_is_invalid_and_names_its_field() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let (status, error) =
        app.post(QUOTAS, quota("images", json!({"openshift.io/imagestreams": "ten", "berth.dev/image-storage": "-1Gi"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["kind"], "Status");
    assert_eq!(error["reason"], "Invalid");
    let causes: Vec<&str> = error["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(causes, ["spec.hard[berth.dev/image-storage]", "spec.hard[openshift.io/imagestreams]"]);
    assert!(message(&error).contains("\"ten\" is not a quantity") && message(&error).contains("negative"), "{error}");

    let mut range = limit_range("limits");
    range["spec"]["limits"][1]["max"]["storage"] = json!("1GB");
    let (status, error) = app.post(RANGES, range).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["details"]["causes"][0]["field"], "spec.limits[1].max[storage]");
    assert!(message(&error).contains("\"GB\" is not a suffix"), "{error}");

    let (status, error) = app.post(QUOTAS, quota("Not_A_Name", json!({}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["details"]["causes"][0]["field"], "metadata.name");

    // Nothing was stored.
    let (_, list) = app.get(QUOTAS).await;
    assert_eq!(list["items"], json!([]));
    let (_, list) = app.get(RANGES).await;
    assert_eq!(list["items"], json!([]));
    // A namespace that does not exist holds no quota.
    let (status, error) = app.post("/api/v1/namespaces/nowhere/resourcequotas", quota("images", json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    app.stop().await;
}

#[tokio::test]
async fn status_shows_the_image_streams_the_namespace_holds_and_keeps_unenforced_keys() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    app.namespace("other").await;
    let hard = json!({"openshift.io/imagestreams": "10", "berth.dev/image-storage": "10Gi", "pods": "4"});
    let mut body = quota("images", hard.clone());
    // A status sent by a client is the server's to fill.
    body["status"] = json!({"used": {"openshift.io/imagestreams": "999"}});
    let (status, created) = app.post(QUOTAS, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"]["used"], json!({"openshift.io/imagestreams": "0", "berth.dev/image-storage": "0"}));
    assert_eq!(created["spec"]["hard"]["pods"], "4", "a key berth does not enforce is kept");

    for name in ["one", "two", "three"] {
        app.create_stream(NS, name).await;
    }
    app.create_stream("other", "elsewhere").await;
    let (_, read) = app.get(&format!("{QUOTAS}/images")).await;
    assert_eq!(read["status"]["hard"], hard);
    assert_eq!(read["status"]["used"], json!({"openshift.io/imagestreams": "3", "berth.dev/image-storage": "0"}));
    let (_, list) = app.get("/api/v1/resourcequotas").await;
    assert_eq!(list["items"][0]["status"]["used"]["openshift.io/imagestreams"], "3");

    // kubectl's table: the USED/HARD column.
    let response = app
        .http()
        .get(format!("{}{QUOTAS}", app.base))
        .bearer_auth(&app.admin)
        .header("accept", "application/json;as=Table;g=meta.k8s.io;v=v1")
        .send()
        .await
        .unwrap();
    let table: Value = response.json().await.unwrap();
    assert_eq!(table["columnDefinitions"][1]["name"], "Used/hard", "{table}");
    assert_eq!(table["rows"][0]["cells"][1], "berth.dev/image-storage: 0/10Gi, openshift.io/imagestreams: 3/10, pods: -/4", "{table}");

    // Deleting the namespace deletes its quotas.
    assert_eq!(app.delete("/api/v1/namespaces/team").await.0, StatusCode::OK);
    app.namespace(NS).await;
    let (_, list) = app.get(QUOTAS).await;
    assert_eq!(list["items"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn discovery_names_the_kinds_with_their_short_names() {
    let app = TestApp::start().await;
    let (status, core) = app.get("/api/v1").await;
    assert_eq!(status, StatusCode::OK);
    let find = |name: &str| core["resources"].as_array().unwrap().iter().find(|r| r["name"] == name).cloned().unwrap_or(Value::Null);
    assert_eq!(find("resourcequotas")["shortNames"], json!(["quota"]));
    assert_eq!(find("resourcequotas")["kind"], "ResourceQuota");
    assert_eq!(find("limitranges")["shortNames"], json!(["limits"]));
    assert_eq!(find("limitranges")["namespaced"], true);
    let (status, openapi) = app.get("/openapi/v3/api/v1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(openapi.to_string().contains("/api/v1/namespaces/{namespace}/resourcequotas"), "the OpenAPI document has the paths");
    app.stop().await;
}

/// A registry client for berth (made on a blocking thread: it has a runtime of its own).
fn registry_client(app: &TestApp) -> RegistryClient {
    RegistryClient::new(app.base.trim_start_matches("http://"), Some(("me", &app.admin))).unwrap()
}

/// Pushes `image` to `repository:tag` in berth; the registry's error message when refused.
async fn push(app: &TestApp, repository: &str, tag: &str, image: &TestImage) -> Result<(), String> {
    let (base, admin, repository, tag, image) =
        (app.base.clone(), app.admin.clone(), repository.to_string(), tag.to_string(), image.clone());
    blocking(move || {
        let client = RegistryClient::new(base.trim_start_matches("http://"), Some(("me", &admin))).unwrap();
        client.push(&repository, Some(&tag), &image).map(|_| ()).map_err(|err| format!("{err:#}"))
    })
}

/// A base of two 4,096-byte layers; images on it add one 128-byte layer each.
fn base() -> TestImage {
    TestImage::new(Format::Oci, 1, 2, 4096, "amd64")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_quota_refuses_a_push_over_it_names_the_overage_and_takes_it_after_a_prune() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let _ = registry_client;
    // Room for the base and two images on it: 8,192 + 2 x 128 bytes.
    let (status, body) = app.post(QUOTAS, quota("images", json!({"berth.dev/image-storage": "8448"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let base = base();
    let images: Vec<TestImage> = (0..3).map(|seed| base.built_on(10 + seed, 1)).collect();
    push(&app, "team/app", "latest", &images[0]).await.unwrap();
    push(&app, "team/app", "latest", &images[1]).await.unwrap();
    // Exactly at the limit. Another tag on an image the namespace holds adds nothing.
    push(&app, "team/other", "same", &images[1]).await.unwrap();
    let refused = push(&app, "team/app", "latest", &images[2]).await.unwrap_err();
    for words in [
        "DENIED",
        "would bring namespace team's image storage to 8576 (it holds 8448, this adds 128 of layers it does not hold yet)",
        "over its quota of 8448 (ResourceQuota team/images, berth.dev/image-storage) by 128",
        "berth adm prune images -n team",
    ] {
        assert!(refused.contains(words), "{words:?} missing from: {refused}");
    }
    // Nothing of the refused push is in the catalog.
    let stream = app.stream(NS, "app").await;
    assert_eq!(stream["status"]["tags"][0]["items"].as_array().unwrap().len(), 2);
    let (_, quota_read) = app.get(&format!("{QUOTAS}/images")).await;
    assert_eq!(quota_read["status"]["used"]["berth.dev/image-storage"], "8.3Ki");

    // A prune of the namespace's old revision makes room.
    let prune = json!({"apiVersion": "berth.dev/v1", "kind": "ImagePrune", "spec": {"namespace": NS, "keepTagRevisions": 1, "keepYoungerThan": "0s"}});
    let (status, pruned) = app.post("/apis/berth.dev/v1/imageprunes", prune).await;
    assert_eq!(status, StatusCode::CREATED, "{pruned}");
    assert_eq!(pruned["status"]["removedRevisions"], 1, "{pruned}");
    push(&app, "team/app", "latest", &images[2]).await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_counts_and_per_stream_and_per_image_limits_refuse_what_goes_over_them() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let (status, body) = app.post(QUOTAS, quota("streams", json!({"openshift.io/imagestreams": "2"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let range = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits"}, "spec": {"limits": [
        {"type": "openshift.io/ImageStream", "max": {"openshift.io/images": "2"}},
        {"type": "openshift.io/Image", "max": {"storage": "8300"}},
    ]}});
    let (status, body) = app.post(RANGES, range).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    app.create_stream(NS, "one").await;
    app.create_stream(NS, "two").await;
    let third = json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": "three"}});
    let (status, refused) = app.post(&format!("{IMAGE_API}/namespaces/{NS}/imagestreams"), third).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(
        message(&refused).contains(
            "would make 3 image streams in namespace team, over its quota of 2 (ResourceQuota team/streams, openshift.io/imagestreams) by 1"
        ),
        "{refused}"
    );

    // Small images: three seeds of one 64-byte layer each.
    let small: Vec<TestImage> = (0..3).map(|seed| TestImage::new(Format::Oci, 20 + seed, 1, 64, "amd64")).collect();
    push(&app, "team/one", "a", &small[0]).await.unwrap();
    push(&app, "team/one", "b", &small[1]).await.unwrap();
    let refused = push(&app, "team/one", "c", &small[2]).await.unwrap_err();
    assert!(refused.contains("image stream team/one would have 3 distinct images in its tag history, over the limit of 2 (LimitRange team/limits, openshift.io/images) by 1"), "{refused}");
    // The same images again on another tag add no distinct image.
    push(&app, "team/one", "a-again", &small[0]).await.unwrap();

    // An image over the per-image limit: 8,192 + 128 bytes.
    let big = base().built_on(30, 1);
    let refused = push(&app, "team/two", "big", &big).await.unwrap_err();
    assert!(refused.contains(&format!("image {} has 8320 of layers, over the limit of 8300 per image", big.digest())), "{refused}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_over_the_quota_records_the_failure_on_its_tag_and_imports_the_rest() {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let upstream = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let (small, large) = (TestImage::new(Format::Oci, 40, 1, 512, "amd64"), TestImage::new(Format::Oci, 41, 1, 8192, "amd64"));
    let (s, l) = (small.clone(), large.clone());
    blocking(|| {
        upstream.push("lib/small", Some("1"), &s).unwrap();
        upstream.push("lib/large", Some("1"), &l).unwrap();
    });
    let (status, body) = app.post(QUOTAS, quota("images", json!({"berth.dev/image-storage": "4Ki"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let import = json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamImport", "metadata": {"name": "deps"},
    "spec": {"import": true, "images": [
        {"from": {"kind": "DockerImage", "name": upstream.pull_spec("lib/small", "1")}, "to": {"name": "small"}},
        {"from": {"kind": "DockerImage", "name": upstream.pull_spec("lib/large", "1")}, "to": {"name": "large"}},
    ]}});
    let (status, answer) = app.post(&format!("{IMAGE_API}/namespaces/{NS}/imagestreamimports"), import).await;
    assert!(status.is_success(), "{answer}");
    let stream = app.stream(NS, "deps").await;
    let tag = |name: &str| stream["status"]["tags"].as_array().unwrap().iter().find(|t| t["tag"] == name).cloned().unwrap();
    assert_eq!(tag("small")["items"][0]["image"], small.digest(), "{stream}");
    let large_tag = tag("large");
    assert!(large_tag["items"].as_array().is_none_or(|items| items.is_empty()), "{stream}");
    let condition = &large_tag["conditions"][0];
    assert_eq!(
        (condition["type"].as_str(), condition["status"].as_str(), condition["reason"].as_str()),
        (Some("ImportSuccess"), Some("False"), Some("QuotaExceeded")),
        "{stream}"
    );
    assert!(condition["message"].as_str().unwrap().contains("over its quota of 4Ki"), "{stream}");
    drop(upstream);
    app.stop().await;
}
