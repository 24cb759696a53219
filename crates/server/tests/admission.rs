//! Admission reviews as the Kubernetes API server sends them (admission.k8s.io/v1, in the
//! shape of the API reference): each workload's images resolved to digests from the
//! streams of its own namespace and returned as a JSON patch that applies to the object,
//! the resolution modes, and who may ask.

mod common;

use base64::Engine;
use berth_testkit::{Auth, DistributionRegistry, Format, TestImage};
use common::{IMAGE_API, TestApp, blocking, stream_body};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// An AdmissionReview for `object`, a `kind` of `group` stored as `resource`, in `team`.
fn review(group: &str, kind: &str, resource: &str, object: &Value) -> Value {
    let version = "v1";
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": "web",
            "namespace": "team",
            "operation": "CREATE",
            "userInfo": {"username": "developer", "uid": "014fbff9a07c", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    })
}

fn containers(images: &[&str]) -> Value {
    let containers: Vec<Value> = images.iter().enumerate().map(|(i, image)| json!({"name": format!("c{i}"), "image": image})).collect();
    json!({"containers": containers})
}

/// The object after the response's patch.
fn patched(object: &Value, response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let bytes = base64::engine::general_purpose::STANDARD.decode(response["patch"].as_str().unwrap()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut object = object.clone();
    json_patch::patch(&mut object, &patch).unwrap();
    object
}

/// The answer to a request announcing a body of 5 MB, sent without it.
async fn too_large(app: &TestApp, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

async fn ask(app: &TestApp, token: &str, webhook: &str, body: &Value) -> (StatusCode, Value) {
    app.send(token, Method::POST, &format!("/admission/{webhook}"), Some(body)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn workloads_get_their_images_by_digest_from_their_own_namespace() {
    let registry = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let ruby = TestImage::new(Format::Oci, 41, 1, 128, "amd64");
    let ruby_digest = blocking(|| registry.push("lib/ruby", Some("3.3"), &ruby).unwrap().digest);
    let app = TestApp::start().await;
    for ns in ["team", "other"] {
        app.namespace(ns).await;
    }
    let digest = app.map("team", "app", "1.0", "app-one").await;
    app.map("other", "app", "1.0", "other-one").await;
    // Short names resolve only through a stream with lookupPolicy.local.
    let (status, body) = app
        .send_raw(
            &app.admin,
            Method::PATCH,
            &format!("{IMAGE_API}/namespaces/team/imagestreams/app"),
            "application/merge-patch+json",
            br#"{"spec": {"lookupPolicy": {"local": true}}}"#.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // An external tag that team imports.
    let upstream = registry.pull_spec("lib/ruby", "3.3");
    let tags = json!([{"name": "3.3", "from": {"kind": "DockerImage", "name": upstream}}]);
    let (status, body) = app.post(&format!("{IMAGE_API}/namespaces/team/imagestreams"), stream_body("ruby", tags)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.settled_tag("team", "ruby:3.3").await;

    let pinned = format!("registry.berth.test/team/app@{}", "sha256:".to_string() + &"0".repeat(64));
    let images = [
        "app:1.0",
        "registry.berth.test/team/app:1.0",
        upstream.as_str(),
        "nginx:1.27",
        "registry.berth.test/other/app:1.0",
        pinned.as_str(),
    ];
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "team"}, "spec": containers(&images)});
    let (status, reply) = ask(&app, &app.admin, "mutate", &review("", "Pod", "pods", &pod)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(reply["kind"], "AdmissionReview");
    let response = &reply["response"];
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);
    let after = patched(&pod, response);
    let got: Vec<&str> = after["spec"]["containers"].as_array().unwrap().iter().map(|c| c["image"].as_str().unwrap()).collect();
    let host = upstream.split('/').next().unwrap();
    assert_eq!(
        got,
        [
            // The mapping's pull spec (reference policy Source).
            format!("registry.example.com/team/app@{digest}").as_str(),
            format!("registry.berth.test/team/app@{digest}").as_str(),
            format!("{host}/lib/ruby@{ruby_digest}").as_str(),
            "nginx:1.27",
            // Another namespace's stream is not looked at.
            "registry.berth.test/other/app:1.0",
            pinned.as_str(),
        ]
    );
    assert_eq!(after["metadata"], pod["metadata"], "nothing but images changes");

    // The same containers in a Deployment's and a CronJob's templates.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}}, "spec": containers(&["app:1.0"])}}});
    let (_, reply) = ask(&app, &app.admin, "mutate", &review("apps", "Deployment", "deployments", &deployment)).await;
    let after = patched(&deployment, &reply["response"]);
    assert_eq!(after["spec"]["template"]["spec"]["containers"][0]["image"], format!("registry.example.com/team/app@{digest}"));
    let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": containers(&["app"])}}}}});
    let (_, reply) = ask(&app, &app.admin, "mutate", &review("batch", "CronJob", "cronjobs", &cron)).await;
    assert_eq!(reply["response"]["allowed"], true);
    assert!(reply["response"]["patch"].is_null(), "app:latest does not exist: nothing to rewrite: {reply}");

    // The validating webhook decides and never patches.
    let (_, reply) = ask(&app, &app.admin, "validate", &review("", "Pod", "pods", &pod)).await;
    assert_eq!(reply["response"]["allowed"], true);
    assert!(reply["response"]["patch"].is_null());
    app.stop().await;
    blocking(move || drop(registry));
}

#[tokio::test(flavor = "multi_thread")]
async fn required_resolution_refuses_what_berth_cannot_pin_and_only_cluster_readers_may_ask() {
    let app = TestApp::start_with(|config| {
        config.admission.resources.insert("pods".into(), berth_server::services::admission::ResolutionMode::RequiredRewrite);
    })
    .await;
    app.namespace("team").await;
    let digest = app.map("team", "app", "1.0", "app-one").await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": containers(&["registry.berth.test/team/app:1.0", "nginx:1.27"])});
    let (status, reply) = ask(&app, &app.admin, "mutate", &review("", "Pod", "pods", &pod)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["response"]["allowed"], false);
    assert_eq!(reply["response"]["status"]["code"], 403);
    let message = reply["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("nginx:1.27") && message.contains("refer to it by digest"), "{message}");
    assert!(message.contains("cluster default, namespace team"), "{message}");
    // Deployments keep the default (AttemptRewrite).
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": containers(&["registry.berth.test/team/app:1.0", "nginx:1.27"])}}});
    let (_, reply) = ask(&app, &app.admin, "mutate", &review("apps", "Deployment", "deployments", &deployment)).await;
    assert_eq!(reply["response"]["allowed"], true);
    let after = patched(&deployment, &reply["response"]);
    assert_eq!(after["spec"]["template"]["spec"]["containers"][0]["image"], format!("registry.berth.test/team/app@{digest}"));

    // An image an administrator marked deny-execution may not run, by tag or by digest.
    let path = format!("{IMAGE_API}/images/{digest}");
    let (_, mut image) = app.get(&path).await;
    image["metadata"]["annotations"]["images.openshift.io/deny-execution"] = json!("true");
    let (status, body) = app.put(&path, image).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for image in ["registry.berth.test/team/app:1.0".to_string(), format!("registry.berth.test/team/app@{digest}")] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": containers(&[image.as_str()])});
        for webhook in ["mutate", "validate"] {
            let (_, reply) = ask(&app, &app.admin, webhook, &review("", "Pod", "pods", &pod)).await;
            assert_eq!(reply["response"]["allowed"], false, "{reply}");
            let message = reply["response"]["status"]["message"].as_str().unwrap();
            assert!(message.contains("execution-denied") && message.contains(&digest), "{message}");
        }
    }

    // The same through Kubernetes' ImagePolicyWebhook, with and without break-glass.
    let image_review = |annotations: Value| {
        json!({"apiVersion": "imagepolicy.k8s.io/v1alpha1", "kind": "ImageReview", "spec": {
            "containers": [{"image": "registry.berth.test/team/app:1.0"}],
            "annotations": annotations,
            "namespace": "team"}})
    };
    let (status, reply) = app.send(&app.admin, Method::POST, "/imagereview", Some(&image_review(json!({})))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["kind"], "ImageReview");
    assert_eq!(reply["status"]["allowed"], false);
    assert!(reply["status"]["reason"].as_str().unwrap().contains("execution-denied"), "{reply}");
    let glass = json!({"mycluster.image-policy.k8s.io/break-glass": "true"});
    let (_, reply) = app.send(&app.admin, Method::POST, "/imagereview", Some(&image_review(glass))).await;
    assert_eq!(reply["status"]["allowed"], true, "{reply}");
    assert_eq!(reply["status"]["auditAnnotations"]["berth.dev/break-glass"], "mycluster.image-policy.k8s.io/break-glass");
    assert!(reply["status"]["auditAnnotations"]["berth.dev/would-deny"].as_str().unwrap().contains("execution-denied"));
    let unknown = json!({"apiVersion": "imagepolicy.k8s.io/v1alpha1", "kind": "ImageReview", "spec": {
        "containers": [{"image": "nginx:1.27"}], "namespace": "team"}});
    let (_, reply) = app.send(&app.admin, Method::POST, "/imagereview", Some(&unknown)).await;
    assert_eq!(reply["status"]["allowed"], false, "pods require resolution here: {reply}");

    // Only a token that reads the whole cluster may ask; a bad body is a 400 Status.
    let editor = app.token("editor", "edit", &["team"]).await;
    let (status, _) = ask(&app, &editor, "mutate", &review("", "Pod", "pods", &pod)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = ask(&app, "not-a-token", "mutate", &review("", "Pod", "pods", &pod)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A body past the cap is refused from its Content-Length, before a byte of it is read,
    // parsed or authenticated (sent raw: a client still writing the body would see the
    // connection close under it).
    for path in ["/admission/mutate", "/admission/validate", "/imagereview"] {
        let answer = too_large(&app, path).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"kind\":\"Status\"") && answer.contains("larger than"), "{answer}");
    }
    let (status, reply) = ask(&app, &app.admin, "mutate?cluster=Not_A_Name", &review("", "Pod", "pods", &pod)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("cluster=\"Not_A_Name\""), "{reply}");
    for (body, words) in [
        (json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}), "has no request"),
        (
            json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "1"}}),
            "admissionReviewVersions: [v1]",
        ),
        (json!([1, 2]), "not an admission.k8s.io/v1 AdmissionReview"),
    ] {
        let (status, reply) = ask(&app, &app.admin, "mutate", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert_eq!(reply["kind"], "Status");
        assert!(reply["message"].as_str().unwrap().contains(words), "{reply}");
    }
    app.stop().await;
}
