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
    // What berth resolved is kept only until the store changes: a tag moved is seen by the
    // very next review.
    let moved = app.map("team", "app", "1.0", "app-moved").await;
    let (_, reply) = ask(&app, &app.admin, "mutate", &review("apps", "Deployment", "deployments", &deployment)).await;
    let after = patched(&deployment, &reply["response"]);
    assert_eq!(after["spec"]["template"]["spec"]["containers"][0]["image"], format!("registry.berth.test/team/app@{moved}"));
    let digest = app.map("team", "app", "1.0", "app-one").await;

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

/// Imports `pull_spec` as `stream:tag` in `ns`.
async fn import(app: &TestApp, ns: &str, stream: &str, tag: &str, pull_spec: &str) {
    let body = json!({
        "kind": "ImageStreamImport", "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": stream},
        "spec": {"import": true, "images": [{"from": {"kind": "DockerImage", "name": pull_spec}, "to": {"name": tag}}]},
    });
    let (status, reply) = app.post(&format!("{IMAGE_API}/namespaces/{ns}/imagestreamimports"), body).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["status"]["images"][0]["status"]["status"], "Success", "{reply}");
}

async fn create_policy(app: &TestApp, name: &str, spec: Value) {
    let body = json!({"apiVersion": "berth.dev/v1", "kind": "ImagePolicy", "metadata": {"name": name}, "spec": spec});
    let (status, reply) = app.post("/apis/berth.dev/v1/imagepolicies", body).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
}

/// A review of a workload of `kind` in `namespace` running `image`.
fn workload_review(kind: &str, namespace: &str, image: &str) -> Value {
    let spec = containers(&[image]);
    let (group, resource, object) = match kind {
        "Pod" => ("", "pods", json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": spec})),
        "Deployment" => (
            "apps",
            "deployments",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": spec}}}),
        ),
        "Job" => (
            "batch",
            "jobs",
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "web"},
            "spec": {"template": {"spec": spec}}}),
        ),
        "CronJob" => (
            "batch",
            "cronjobs",
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "web"},
            "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": spec}}}}}),
        ),
        "BuildConfig" => (
            "build.openshift.io",
            "buildconfigs",
            json!({"apiVersion": "build.openshift.io/v1", "kind": "BuildConfig",
            "metadata": {"name": "web"}, "spec": {"strategy": {"type": "Source", "sourceStrategy": {"from": {"kind": "DockerImage", "name": image}}}}}),
        ),
        other => panic!("no review for {other}"),
    };
    let mut body = review(group, kind, resource, &object);
    body["request"]["namespace"] = json!(namespace);
    body
}

/// (webhook, kind, namespace, image, allowed, words in the refusal, words in the
/// warnings, the image after the patch).
type Row<'a> = (&'a str, &'a str, &'a str, String, bool, Vec<&'a str>, Vec<&'a str>, Option<String>);

#[tokio::test(flavor = "multi_thread")]
async fn image_policies_judge_each_image_as_the_table_says() {
    let registry = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let base = TestImage::new(Format::Oci, 61, 1, 128, "amd64");
    let mut web = base.built_on(62, 1);
    web.config["config"]["Labels"] = json!({"tier": "web"});
    let other = TestImage::new(Format::Oci, 63, 1, 128, "amd64");
    blocking(|| {
        registry.push("lib/base", Some("1"), &base).unwrap();
        registry.push("team/web", Some("1"), &web).unwrap();
        registry.push("team/other", Some("1"), &other).unwrap();
    });
    let app = TestApp::start().await;
    for ns in ["lib", "team", "dev"] {
        app.namespace(ns).await;
    }
    let (_, mut team) = app.get("/api/v1/namespaces/team").await;
    team["metadata"]["labels"] = json!({"env": "prod"});
    let (status, reply) = app.put("/api/v1/namespaces/team", team).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    import(&app, "lib", "base", "1", &registry.pull_spec("lib/base", "1")).await;
    import(&app, "team", "web", "1", &registry.pull_spec("team/web", "1")).await;
    import(&app, "team", "other", "1", &registry.pull_spec("team/other", "1")).await;
    let class = json!({"apiVersion": "berth.dev/v1", "kind": "ImageClass", "metadata": {"name": "vendor"},
        "spec": {"target": {"namespace": "lib", "name": "base:1"}}});
    let (status, reply) = app.post("/apis/berth.dev/v1/imageclasses", class).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    // A scanner approved web's image.
    let path = format!("{IMAGE_API}/images/{}", web.digest());
    let (_, mut image) = app.get(&path).await;
    image["metadata"]["annotations"] = json!({"scan.example.com/approved": "true"});
    let (status, reply) = app.put(&path, image).await;
    assert_eq!(status, StatusCode::OK, "{reply}");

    // Only a cluster admin writes policies, and a policy is checked.
    let editor = app.token("editor", "edit", &["team"]).await;
    let policy = json!({"apiVersion": "berth.dev/v1", "kind": "ImagePolicy", "metadata": {"name": "mine"}, "spec": {}});
    let (status, _) = app.send(&editor, Method::POST, "/apis/berth.dev/v1/imagepolicies", Some(&policy)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let bad = json!({"apiVersion": "berth.dev/v1", "kind": "ImagePolicy", "metadata": {"name": "bad"},
        "spec": {"action": "Deny", "require": {"digest": true}}});
    let (status, reply) = app.post("/apis/berth.dev/v1/imagepolicies", bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    let typo = json!({"apiVersion": "berth.dev/v1", "kind": "ImagePolicy", "metadata": {"name": "typo"}, "spec": {"requires": {}}});
    let (status, reply) = app.post("/apis/berth.dev/v1/imagepolicies", typo).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a misspelt field is refused, not ignored: {reply}");

    create_policy(
        &app,
        "prod-vendor",
        json!({"resources": ["pods"], "namespaceSelector": {"matchLabels": {"env": "prod"}},
        "require": {"descendantOf": ["vendor"]}, "message": "ask #platform for a vendor base"}),
    )
    .await;
    create_policy(&app, "no-evil", json!({"action": "Deny", "images": {"registries": ["evil.example"]}})).await;
    create_policy(&app, "deploy-digests", json!({"resources": ["deployments"], "require": {"digest": true}})).await;
    create_policy(
        &app,
        "approved",
        json!({"enforcement": "DryRun",
        "require": {"annotations": {"matchLabels": {"scan.example.com/approved": "true"}}}}),
    )
    .await;
    create_policy(&app, "web-tier", json!({"resources": ["cronjobs"], "require": {"labels": {"matchLabels": {"tier": "web"}}}})).await;
    create_policy(&app, "known", json!({"resources": ["jobs"], "exemptNamespaces": ["dev"], "require": {"known": true}})).await;
    create_policy(&app, "builder-base", json!({"resources": ["buildconfigs"], "require": {"repositories": ["lib/*"]}})).await;

    let upstream = registry.host();
    let (web_tag, other_tag) = ("registry.berth.test/team/web:1".to_string(), "registry.berth.test/team/other:1".to_string());
    let web_by_digest = format!("registry.berth.test/team/web@{}", web.digest());
    let base_tag = format!("{upstream}/lib/base:1");
    let table: Vec<Row> = vec![
        ("validate", "Pod", "team", web_tag.clone(), true, vec![], vec![], None),
        ("mutate", "Pod", "team", web_tag.clone(), true, vec![], vec![], Some(web_by_digest.clone())),
        (
            "validate",
            "Pod",
            "team",
            other_tag.clone(),
            false,
            vec!["rule prod-vendor", "not built on ImageClass vendor", "ask #platform"],
            vec!["dry run", "rule approved"],
            None,
        ),
        ("validate", "Pod", "dev", "evil.example/x:1".into(), false, vec!["rule no-evil", "evil.example/x:1"], vec!["rule approved"], None),
        (
            "validate",
            "Pod",
            "dev",
            "docker.io/library/busybox:1".into(),
            true,
            vec![],
            vec!["rule approved", "not an image berth knows"],
            None,
        ),
        ("validate", "Deployment", "team", web_tag.clone(), false, vec!["rule deploy-digests", "named by tag"], vec![], None),
        ("mutate", "Deployment", "team", web_tag.clone(), true, vec![], vec![], Some(web_by_digest.clone())),
        ("validate", "Deployment", "team", web_by_digest.clone(), true, vec![], vec![], None),
        ("validate", "CronJob", "team", web_tag.clone(), true, vec![], vec![], None),
        ("validate", "CronJob", "team", other_tag.clone(), false, vec!["rule web-tier", "tier=web"], vec!["rule approved"], None),
        (
            "validate",
            "Job",
            "team",
            "docker.io/library/busybox:1".into(),
            false,
            vec!["rule known", "berth knows"],
            vec!["rule approved"],
            None,
        ),
        ("validate", "Job", "dev", "docker.io/library/busybox:1".into(), true, vec![], vec!["rule approved"], None),
        ("validate", "BuildConfig", "team", base_tag.clone(), true, vec![], vec!["rule approved"], None),
        (
            "validate",
            "BuildConfig",
            "team",
            format!("{upstream}/team/other:1"),
            false,
            vec!["rule builder-base", "is repository team/other", "lib/*"],
            vec!["rule approved"],
            None,
        ),
    ];
    for (webhook, kind, namespace, image, allowed, refusal, warnings, patched_to) in table {
        let row = format!("{webhook} {kind} in {namespace} running {image}");
        let body = workload_review(kind, namespace, &image);
        let (status, reply) = ask(&app, &app.admin, webhook, &body).await;
        assert_eq!(status, StatusCode::OK, "{row}: {reply}");
        let response = &reply["response"];
        assert_eq!(response["allowed"], allowed, "{row}: {response}");
        let message = response["status"]["message"].as_str().unwrap_or("");
        for words in refusal {
            assert!(message.contains(words), "{row}: {words:?} not in {message}");
        }
        let said: Vec<&str> = response["warnings"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        for words in &warnings {
            assert!(said.iter().any(|w| w.contains(words)), "{row}: {words:?} not in the warnings {said:?}");
        }
        if warnings.is_empty() {
            assert!(said.is_empty(), "{row}: warned {said:?}");
        }
        match patched_to {
            Some(to) => {
                let after = patched(&body["request"]["object"], response);
                let at = if kind == "Pod" { "/spec/containers/0/image" } else { "/spec/template/spec/containers/0/image" };
                assert_eq!(after.pointer(at).unwrap(), &json!(to), "{row}");
            }
            None if allowed && webhook == "validate" => assert!(response.get("patch").is_none(), "{row}: the validating webhook patched"),
            None => {}
        }
    }

    // CI asks about a build's base image before building, as a BuildConfig's.
    let build_review = |image: &str| {
        json!({"apiVersion": "imagepolicy.k8s.io/v1alpha1", "kind": "ImageReview",
            "spec": {"containers": [{"image": image}], "namespace": "team"}})
    };
    let (_, reply) = app.send(&app.admin, Method::POST, "/imagereview?resource=buildconfigs", Some(&build_review(&base_tag))).await;
    assert_eq!(reply["status"]["allowed"], true, "{reply}");
    let (_, reply) = app
        .send(&app.admin, Method::POST, "/imagereview?resource=buildconfigs", Some(&build_review(&format!("{upstream}/team/other:1"))))
        .await;
    assert_eq!(reply["status"]["allowed"], false, "{reply}");
    assert!(reply["status"]["reason"].as_str().unwrap().contains("rule builder-base"), "{reply}");

    // A rule deleted stops applying at once; a tenant may read the rules.
    let (status, _) = app.delete("/apis/berth.dev/v1/imagepolicies/prod-vendor").await;
    assert_eq!(status, StatusCode::OK);
    let (_, reply) = ask(&app, &app.admin, "validate", &workload_review("Pod", "team", &other_tag)).await;
    assert_eq!(reply["response"]["allowed"], true, "{reply}");
    let (status, listed) = app.send(&editor, Method::GET, "/apis/berth.dev/v1/imagepolicies", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["items"].as_array().unwrap().len(), 6, "{listed}");
    app.stop().await;
    blocking(move || drop(registry));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mark_on_a_base_reaches_every_image_built_on_it() {
    let registry = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let base = TestImage::new(Format::Oci, 71, 1, 128, "amd64");
    let (api, worker) = (base.built_on(72, 1), base.built_on(73, 1));
    blocking(|| registry.push("lib/base", Some("1"), &base).unwrap());
    let app = TestApp::start_with(|config| {
        config.admission.deny_execution = berth_server::services::admission::DenyExecution::ImageAndDescendants;
    })
    .await;
    for ns in ["lib", "team"] {
        app.namespace(ns).await;
    }
    import(&app, "lib", "base", "1", &registry.pull_spec("lib/base", "1")).await;
    // Two images built on the base are pushed to berth.
    let host = app.base.trim_start_matches("http://").to_string();
    let admin = app.admin.clone();
    blocking(|| {
        let client = berth_testkit::RegistryClient::new(&host, Some(("me", &admin))).unwrap();
        client.push("team/api", Some("1"), &api).unwrap();
        client.push("team/worker", Some("1"), &worker).unwrap();
    });
    let (hook, url) = common::Hook::start().await;
    let subscription = json!({"apiVersion": "berth.dev/v1", "kind": "Subscription", "metadata": {"name": "security"},
        "spec": {"url": url, "events": ["ImageMarked"]}});
    let (status, reply) = app.post("/apis/berth.dev/v1/namespaces/team/subscriptions", subscription).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");

    // The api runs in production cluster prod: a Deployment's pod, as its ReplicaSet makes it.
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "api-5d8f7c-", "labels": {"app": "api", "pod-template-hash": "5d8f7c"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-5d8f7c", "uid": "a1", "controller": true}]},
        "spec": containers(&["registry.berth.test/team/api:1"])});
    let mut body = review("", "Pod", "pods", &pod);
    body["request"]["name"] = json!("");
    let (_, reply) = ask(&app, &app.admin, "validate?cluster=prod", &body).await;
    assert_eq!(reply["response"]["allowed"], true, "{reply}");
    // What admission saw is written behind the decision.
    let who_runs = "/apis/berth.dev/v1/imageimpact?namespace=team&imageStreamTag=api:1&descendants=false&allVersions=true";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let seen = loop {
        let (status, answer) = app.get(who_runs).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        if !answer["workloads"].as_array().unwrap().is_empty() {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "admission's sighting was never written: {answer}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let workload = &seen["workloads"][0];
    assert_eq!(
        (&workload["cluster"], &workload["namespace"], &workload["kind"], &workload["name"], &workload["image"]),
        (&json!("prod"), &json!("team"), &json!("Deployment"), &json!("api"), &json!(api.digest())),
        "{seen}"
    );

    // A scanner marks the base: only marks may change, and only a cluster scanner sets them.
    let scanner = app.token("scanner", "scanner", &["*"]).await;
    let path = format!("{IMAGE_API}/images/{}", base.digest());
    let (_, mut image) = app.get(&path).await;
    image["metadata"]["labels"] = json!({"sneaky": "yes"});
    let (status, reply) = app.send(&scanner, Method::PUT, &path, Some(&image)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("only an image's marks"), "{reply}");
    let report = json!({"name": "openscap", "timestamp": "2026-12-01T10:00:00Z", "reference": "https://scanner.example/r/1",
        "summary": [{"label": "critical", "data": 1, "severityIndex": 3}]});
    image["metadata"]["labels"] = json!({});
    image["metadata"]["annotations"]["images.openshift.io/deny-execution"] = json!("true");
    image["metadata"]["annotations"]["quality.images.openshift.io/vulnerability.openscap"] = json!(report.to_string());
    let (status, reply) = app.send(&scanner, Method::PUT, &path, Some(&image)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");

    // One command answers what the mark reaches.
    let (status, impact) = app.get(&format!("/apis/berth.dev/v1/imageimpact?image={}", base.digest())).await;
    assert_eq!(status, StatusCode::OK, "{impact}");
    assert_eq!(impact["marks"][base.digest()]["images.openshift.io/deny-execution"], "true", "{impact}");
    let tags: Vec<String> = impact["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{}/{}", t["namespace"].as_str().unwrap(), t["name"].as_str().unwrap()))
        .collect();
    assert_eq!(tags, ["lib/base:1"]);
    let mut built_on: Vec<(String, String)> = impact["descendants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["image"].as_str().unwrap().to_string(), d["tags"][0]["name"].as_str().unwrap().to_string()))
        .collect();
    built_on.sort();
    let mut expect = vec![(api.digest(), "api:1".to_string()), (worker.digest(), "worker:1".to_string())];
    expect.sort();
    assert_eq!(built_on, expect);
    let workloads = impact["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), 1, "{impact}");
    assert_eq!(workloads[0]["name"], "api");

    // Admission of either derived image is refused, and says why and what to do.
    for image in ["registry.berth.test/team/api:1", "registry.berth.test/team/worker:1"] {
        let (_, reply) = ask(&app, &app.admin, "validate", &workload_review("Deployment", "team", image)).await;
        assert_eq!(reply["response"]["allowed"], false, "{image}: {reply}");
        let message = reply["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("execution-denied") && message.contains(&format!("built on image {}", base.digest())), "{message}");
        assert!(message.contains("berth adm vulnerable"), "{message}");
    }

    // team's subscription hears of the mark once per tag built on the base.
    let events = hook.wait_for(2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let mut subjects: Vec<&str> = events.iter().map(|e| e["subject"].as_str().unwrap()).collect();
    subjects.sort();
    assert_eq!(subjects, ["team/api:1", "team/worker:1"]);
    for event in &events {
        assert_eq!(event["type"], "dev.berth.image.marked");
        assert_eq!(event["data"]["markedDigest"], base.digest());
        assert_eq!(event["source"], format!("{IMAGE_API}/images/{}", base.digest()));
        assert!(event["data"]["marks"]["quality.images.openshift.io/vulnerability.openscap"].is_string(), "{event}");
    }

    // A tenant sees only its own namespaces' part of the answer.
    let lib_reader = app.token("lib-reader", "view", &["lib"]).await;
    let (_, seen) = app.send(&lib_reader, Method::GET, &format!("/apis/berth.dev/v1/imageimpact?image={}", base.digest()), None).await;
    assert_eq!(seen["descendants"], json!([]), "{seen}");
    assert_eq!(seen["workloads"], json!([]), "{seen}");
    app.stop().await;
    blocking(move || drop(registry));
}

/// The store under a server whose disk fails: reads of Images (`ImagesFail`) or every
/// read (`AllFail`) error as SQLite does when the disk does. A real store does not fail
/// on demand, so this fault is injected; everything else is the real SQLite store.
struct FailingStore {
    inner: berth_store::SqliteStore,
    fault: std::sync::atomic::AtomicU8,
}

const HEALTHY: u8 = 0;
const IMAGES_FAIL: u8 = 1;
const ALL_FAIL: u8 = 2;

impl FailingStore {
    fn check(&self, resource: &str) -> Result<(), berth_store::StoreError> {
        match self.fault.load(std::sync::atomic::Ordering::SeqCst) {
            IMAGES_FAIL if resource == "images" => Err(berth_store::StoreError::Backend("disk I/O error".into())),
            ALL_FAIL => Err(berth_store::StoreError::Backend("disk I/O error".into())),
            _ => Ok(()),
        }
    }
}

impl berth_store::MetadataStore for FailingStore {
    fn get(&self, key: &berth_store::ObjectKey) -> Result<Option<berth_store::StoredObject>, berth_store::StoreError> {
        self.check(&key.resource)?;
        self.inner.get(key)
    }
    fn list(&self, query: &berth_store::ListQuery) -> Result<berth_store::ListPage, berth_store::StoreError> {
        self.check(&query.resource)?;
        self.inner.list(query)
    }
    fn scan(&self, query: &berth_store::ListQuery) -> Result<berth_store::Scan, berth_store::StoreError> {
        self.check(&query.resource)?;
        self.inner.scan(query)
    }
    fn list_keys(&self, query: &berth_store::ListQuery) -> Result<berth_store::KeyPage, berth_store::StoreError> {
        self.check(&query.resource)?;
        self.inner.list_keys(query)
    }
    fn count(&self, query: &berth_store::ListQuery) -> Result<u64, berth_store::StoreError> {
        self.check(&query.resource)?;
        self.inner.count(query)
    }
    fn referrers(&self, resource: &str, reference: &str) -> Result<Vec<berth_store::ObjectKey>, berth_store::StoreError> {
        self.check(resource)?;
        self.inner.referrers(resource, reference)
    }
    fn write(&self, job: berth_store::WriteJob) -> Result<u64, berth_store::StoreError> {
        self.check("")?;
        self.inner.write(job)
    }
    fn events_since(
        &self,
        resource: &str,
        namespace: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<berth_store::Event>, berth_store::StoreError> {
        self.check(resource)?;
        self.inner.events_since(resource, namespace, after, limit)
    }
    fn current_revision(&self) -> Result<u64, berth_store::StoreError> {
        self.inner.current_revision()
    }
    fn compact(&self, keep: u64) -> Result<u64, berth_store::StoreError> {
        self.inner.compact(keep)
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.subscribe()
    }
    fn probe_write(&self) -> Result<(), berth_store::StoreError> {
        self.check("")?;
        self.inner.probe_write()
    }
    fn lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool, berth_store::StoreError> {
        self.check("")?;
        self.inner.lease(name, holder, ttl)
    }
    fn release(&self, name: &str, holder: &str) -> Result<(), berth_store::StoreError> {
        self.inner.release(name, holder)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_rule_fails_open_or_closed_as_it_says_when_the_store_cannot_be_read() {
    use berth_server::services::admission::{AdmissionSettings, Webhook};
    use berth_server::services::{Catalog, CatalogConfig};
    let app = TestApp::start().await;
    for ns in ["open", "closed"] {
        app.namespace(ns).await;
        app.map(ns, "app", "1", "same-image").await;
    }
    create_policy(&app, "known-closed", json!({"exemptNamespaces": ["open"], "require": {"known": true}})).await;
    create_policy(&app, "known-open", json!({"exemptNamespaces": ["closed"], "failurePolicy": "Ignore", "require": {"known": true}})).await;
    let dir = app.stop_keeping_data().await;

    let open_store = || {
        let inner = berth_store::SqliteStore::open(&dir.path().join("berth.db"), berth_store::Synchronous::Normal).unwrap();
        std::sync::Arc::new(FailingStore { inner, fault: std::sync::atomic::AtomicU8::new(HEALTHY) })
    };
    let config = || CatalogConfig {
        registry_hostname: "registry.berth.test".into(),
        public_registry_hostnames: vec![],
        subscription_hosts: berth_upstream::HostPolicy::new(&[], "notifications.allowedHosts"),
        classes: Default::default(),
        streams: Default::default(),
    };
    let store = open_store();
    let catalog = Catalog::new(store.clone(), config());
    let settings = AdmissionSettings::default();
    let decide = |catalog: &Catalog, namespace: &str| {
        let mut body = workload_review("Pod", namespace, &format!("registry.berth.test/{namespace}/app:1"));
        let request = serde_json::from_value(body["request"].take()).unwrap();
        catalog
            .review(&settings, "default", Webhook::Validating, &request)
            .map(|review| serde_json::to_value(review.response.unwrap()).unwrap())
    };
    // The disk fails under the images, then under everything: each rule does what it says.
    for fault in [IMAGES_FAIL, ALL_FAIL] {
        store.fault.store(fault, std::sync::atomic::Ordering::SeqCst);
        let closed = decide(&catalog, "closed").unwrap();
        assert_eq!(closed["allowed"], false, "{closed}");
        let message = closed["status"]["message"].as_str().unwrap();
        assert!(
            message.contains("rule known-closed")
                && message.contains("could not read or write its store")
                && message.contains("fails closed"),
            "{message}"
        );
        let open = decide(&catalog, "open").unwrap();
        assert_eq!(open["allowed"], true, "{open}");
        let warning = open["warnings"][0].as_str().unwrap();
        assert!(warning.contains("rule known-open") && warning.contains("admitted, as the rule fails open"), "{warning}");
    }

    // Once the store is back, what berth read is kept for as long as the store has not
    // changed: a failure after that does not stop it deciding.
    store.fault.store(HEALTHY, std::sync::atomic::Ordering::SeqCst);
    for fault in [HEALTHY, ALL_FAIL] {
        store.fault.store(fault, std::sync::atomic::Ordering::SeqCst);
        for ns in ["open", "closed"] {
            let response = decide(&catalog, ns).unwrap();
            assert_eq!(response["allowed"], true, "{ns}: {response}");
            assert!(response.get("warnings").is_none(), "{ns}: {response}");
        }
    }

    // A berth that has never read its rules cannot decide at all: the review fails, and
    // the webhook's own failurePolicy (admission-config --failure-policy) decides.
    let cold_store = open_store();
    cold_store.fault.store(ALL_FAIL, std::sync::atomic::Ordering::SeqCst);
    let cold = Catalog::new(cold_store, config());
    let err = decide(&cold, "open").unwrap_err();
    assert!(err.message.contains("could not read or write its store"), "{}", err.message);
}
