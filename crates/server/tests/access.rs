//! The access-control table: token role × namespace × verb, over the real API.

mod common;

use common::{IMAGE_API, TestApp, stream_body};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Case {
    method: Method,
    path: String,
    body: Option<Value>,
}

fn case(method: Method, path: String, body: Option<Value>) -> Case {
    Case { method, path, body }
}

/// One row per verb: (label, request in namespace `ns`).
fn requests(ns: &str) -> Vec<(&'static str, Case)> {
    let streams = format!("{IMAGE_API}/namespaces/{ns}/imagestreams");
    vec![
        ("get stream", case(Method::GET, format!("{streams}/app"), None)),
        ("list streams", case(Method::GET, streams.clone(), None)),
        ("get istag", case(Method::GET, format!("{IMAGE_API}/namespaces/{ns}/imagestreamtags/app:latest"), None)),
        ("create stream", case(Method::POST, streams.clone(), Some(stream_body("new", json!([]))))),
        ("patch stream", case(Method::PATCH, format!("{streams}/app"), Some(json!({"metadata": {"labels": {"x": "y"}}})))),
        (
            "tag into a new stream",
            case(
                Method::POST,
                format!("{IMAGE_API}/namespaces/{ns}/imagestreamtags"),
                Some(
                    json!({"metadata": {"name": "fresh:v1"}, "tag": {"from": {"kind": "DockerImage", "name": "registry.example.com/app:1"}}}),
                ),
            ),
        ),
        (
            "annotate namespace",
            case(
                Method::PATCH,
                format!("/api/v1/namespaces/{ns}"),
                Some(json!({"metadata": {"annotations": {"berth.dev/immutable-tags": "v*"}}})),
            ),
        ),
        ("list secrets", case(Method::GET, format!("/api/v1/namespaces/{ns}/secrets"), None)),
        ("get namespace", case(Method::GET, format!("/api/v1/namespaces/{ns}"), None)),
        ("list quotas", case(Method::GET, format!("/api/v1/namespaces/{ns}/resourcequotas"), None)),
        (
            "create quota",
            case(
                Method::POST,
                format!("/api/v1/namespaces/{ns}/resourcequotas"),
                Some(json!({"metadata": {"name": "images"}, "spec": {"hard": {"openshift.io/imagestreams": "100"}}})),
            ),
        ),
        ("list limit ranges", case(Method::GET, format!("/api/v1/namespaces/{ns}/limitranges"), None)),
        (
            "lineage of istag",
            case(Method::GET, format!("/apis/berth.dev/v1/lineage/ancestors?namespace={ns}&imageStreamTag=app:latest"), None),
        ),
        ("contract diff", case(Method::GET, format!("/apis/berth.dev/v1/namespaces/{ns}/imagestreamtags/app:latest/contractdiff"), None)),
        (
            "rollback",
            case(Method::POST, format!("/apis/berth.dev/v1/namespaces/{ns}/imagestreamtags/app:latest/rollback"), Some(json!({}))),
        ),
    ]
}

async fn run(app: &TestApp, token: &str, request: &Case) -> StatusCode {
    match (&request.method, &request.body) {
        (&Method::PATCH, Some(body)) => {
            app.send_raw(token, Method::PATCH, &request.path, "application/merge-patch+json", body.to_string().into_bytes()).await.0
        }
        (method, body) => app.send(token, method.clone(), &request.path, body.as_ref()).await.0,
    }
}

#[tokio::test]
async fn each_role_may_do_what_its_table_row_says_and_nothing_across_namespaces() {
    let app = TestApp::start().await;
    for ns in ["a", "b"] {
        app.namespace(ns).await;
        app.map(ns, "app", "latest", ns).await;
        app.map(ns, "app", "latest", &format!("{ns} again")).await;
    }
    let view = app.token("viewer", "view", &["a"]).await;
    let edit = app.token("editor", "edit", &["a"]).await;
    let admin = app.token("owner", "admin", &["a"]).await;
    let ok = |s: StatusCode| s.is_success();
    // (label, view allowed, edit allowed, admin allowed) in namespace a.
    let table = [
        ("get stream", true, true, true),
        ("list streams", true, true, true),
        ("get istag", true, true, true),
        ("create stream", false, true, true),
        ("patch stream", false, true, true),
        // A stream that does not exist is made by a tag or push of a namespace admin only
        // (`streams.implicitCreate`); a namespace's annotations, by a cluster admin only.
        ("tag into a new stream", false, false, true),
        ("annotate namespace", false, false, false),
        ("list secrets", true, true, true),
        ("get namespace", true, true, true),
        // Quotas are the cluster operators': a tenant reads them, and cannot raise them.
        ("list quotas", true, true, true),
        ("create quota", false, false, false),
        ("list limit ranges", true, true, true),
        ("lineage of istag", true, true, true),
        ("contract diff", true, true, true),
        ("rollback", false, true, true),
    ];
    for ((label, request), (row, view_ok, edit_ok, admin_ok)) in requests("a").iter().zip(table) {
        assert_eq!(*label, row);
        for (who, token, allowed) in [("view", &view, view_ok), ("edit", &edit, edit_ok), ("admin", &admin, admin_ok)] {
            // Creating twice would conflict: every role gets a fresh name.
            let mut request = Case { method: request.method.clone(), path: request.path.clone(), body: request.body.clone() };
            if let Some(body) = request.body.as_mut().filter(|_| *label == "create stream") {
                body["metadata"]["name"] = json!(format!("new-{who}"));
            }
            if let Some(body) = request.body.as_mut().filter(|_| *label == "tag into a new stream") {
                body["metadata"]["name"] = json!(format!("fresh-{who}:v1"));
            }
            let status = run(&app, token, &request).await;
            assert_eq!(ok(status), allowed, "{who} {label} in its namespace: {status}");
            if !allowed {
                assert_eq!(status, StatusCode::FORBIDDEN, "{who} {label}");
            }
        }
    }
    // Nothing in namespace b, whatever the role.
    for (label, request) in requests("b") {
        for (who, token) in [("view", &view), ("edit", &edit), ("admin", &admin)] {
            assert_eq!(run(&app, token, &request).await, StatusCode::FORBIDDEN, "{who} {label} in another namespace");
        }
    }
    // Cluster-scoped administration needs a cluster role.
    for token in [&view, &edit, &admin] {
        let (status, _) = app.send(token, Method::POST, "/api/v1/namespaces", Some(&json!({"metadata": {"name": "c"}}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app.send(token, Method::GET, "/apis/berth.dev/v1/tokens", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // The audit trail names every namespace's writes: cluster admins only.
        let (status, _) = app.send(token, Method::GET, "/apis/berth.dev/v1/auditevents?namespace=a", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app.send(token, Method::GET, &format!("{IMAGE_API}/imagestreams"), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // Namespace lists show only what the token may see.
    let (_, namespaces) = app.send(&view, Method::GET, "/api/v1/namespaces", None).await;
    let names: Vec<&str> = namespaces["items"].as_array().unwrap().iter().map(|n| n["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a"]);
    app.stop().await;
}

#[tokio::test]
async fn images_are_visible_only_through_streams_the_token_can_read() {
    let app = TestApp::start().await;
    for ns in ["a", "b"] {
        app.namespace(ns).await;
    }
    let in_a = app.map("a", "app", "latest", "shared-a").await;
    let in_b = app.map("b", "app", "latest", "only-b").await;
    let view = app.token("viewer", "view", &["a"]).await;
    let (status, _) = app.send(&view, Method::GET, &format!("{IMAGE_API}/images/{in_a}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, error) = app.send(&view, Method::GET, &format!("{IMAGE_API}/images/{in_b}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "existence does not leak: {error}");
    let (_, list) = app.send(&view, Method::GET, &format!("{IMAGE_API}/images"), None).await;
    let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, [in_a.as_str()]);
    let (status, _) = app.send(&view, Method::PATCH, &format!("{IMAGE_API}/images/{in_a}"), Some(&json!({}))).await;
    assert_ne!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn secret_data_is_for_admins_only() {
    let app = TestApp::start().await;
    app.namespace("a").await;
    let edit = app.token("editor", "edit", &["a"]).await;
    let admin = app.token("owner", "admin", &["a"]).await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pull"}, "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": "{\"auths\":{\"registry.example.com\":{\"auth\":\"dXNlcjpwYXNz\"}}}"}});
    let (status, created) = app.send(&edit, Method::POST, "/api/v1/namespaces/a/secrets", Some(&secret)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created.get("data").is_none() && created.get("stringData").is_none(), "edit may write but not read data: {created}");
    let (_, as_edit) = app.send(&edit, Method::GET, "/api/v1/namespaces/a/secrets/pull", None).await;
    assert!(as_edit.get("data").is_none());
    let (_, listed) = app.send(&edit, Method::GET, "/api/v1/namespaces/a/secrets", None).await;
    assert!(listed["items"][0].get("data").is_none());
    let (_, as_admin) = app.send(&admin, Method::GET, "/api/v1/namespaces/a/secrets/pull", None).await;
    assert!(as_admin["data"][".dockerconfigjson"].as_str().is_some(), "{as_admin}");
    app.stop().await;
}

#[tokio::test]
async fn tokens_are_checked_revoked_and_expire() {
    let app = TestApp::start().await;
    app.namespace("a").await;
    let (status, error) = app.send("", Method::GET, "/api/v1/namespaces", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{error}");
    let (status, _) = app.send("brt_admin.wrong", Method::GET, "/api/v1/namespaces", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let view = app.token("viewer", "view", &["a"]).await;
    assert_eq!(app.send(&view, Method::GET, "/api/v1/namespaces/a", None).await.0, StatusCode::OK);
    let (_, listed) = app.get("/apis/berth.dev/v1/tokens").await;
    assert!(listed["items"].as_array().unwrap().iter().all(|t| t.get("secretSha256").is_none() && t.get("status").is_none()), "{listed}");
    assert_eq!(app.delete("/apis/berth.dev/v1/tokens/viewer").await.0, StatusCode::OK);
    assert_eq!(app.send(&view, Method::GET, "/api/v1/namespaces/a", None).await.0, StatusCode::UNAUTHORIZED);

    let body =
        json!({"metadata": {"name": "old"}, "spec": {"role": "view", "namespaces": ["a"], "expirationTimestamp": "2020-01-01T00:00:00Z"}});
    let (_, created) = app.post("/apis/berth.dev/v1/tokens", body).await;
    let expired = created["status"]["token"].as_str().unwrap();
    let (status, error) = app.send(expired, Method::GET, "/api/v1/namespaces/a", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error["message"].as_str().unwrap().contains("expired"), "{error}");
    app.stop().await;
}
