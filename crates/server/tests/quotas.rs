//! ResourceQuotas and LimitRanges over the real API: cluster admins write them, a
//! namespace's admins and editors cannot (and are told so), anyone who may read the
//! namespace reads them, bad quantities are refused naming the field, and a quota's
//! status shows what the namespace uses.

mod common;

use common::TestApp;
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
    assert_eq!(created["status"]["used"], json!({"openshift.io/imagestreams": "0"}));
    assert_eq!(created["spec"]["hard"]["pods"], "4", "a key berth does not enforce is kept");

    for name in ["one", "two", "three"] {
        app.create_stream(NS, name).await;
    }
    app.create_stream("other", "elsewhere").await;
    let (_, read) = app.get(&format!("{QUOTAS}/images")).await;
    assert_eq!(read["status"]["hard"], hard);
    assert_eq!(read["status"]["used"], json!({"openshift.io/imagestreams": "3"}));
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
    assert_eq!(table["rows"][0]["cells"][1], "berth.dev/image-storage: -/10Gi, openshift.io/imagestreams: 3/10, pods: -/4", "{table}");

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
