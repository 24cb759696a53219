//! Lineage over images of known shapes, pushed to the real distribution registry and
//! imported, and pushed to berth directly: a base, a derived image, a derived-of-derived,
//! an image sharing only a prefix of the base's layers, an image rebuilt on a new version
//! of the base, a multi-platform base, an image with only the OCI base annotation. The
//! answers name stream tags, show only what the caller may read, follow deletions and
//! survive a restart.

mod common;

use berth_testkit::{Auth, DistributionRegistry, Format, RegistryClient, TestImage, TestIndex};
use common::{IMAGE_API, TestApp, blocking};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LINEAGE: &str = "/apis/berth.dev/v1/lineage";

/// Imports `pull_spec` as `stream:tag` in `ns` (a manifest list whole, with all its
/// children).
async fn import(app: &TestApp, ns: &str, stream: &str, tag: &str, pull_spec: &str) {
    let body = json!({
        "kind": "ImageStreamImport", "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": stream},
        "spec": {"import": true, "images": [{
            "from": {"kind": "DockerImage", "name": pull_spec},
            "to": {"name": tag},
            "importPolicy": {"importMode": "PreserveOriginal"},
        }]},
    });
    let (status, reply) = app.post(&format!("{IMAGE_API}/namespaces/{ns}/imagestreamimports"), body).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["status"]["images"][0]["status"]["status"], "Success", "{reply}");
}

async fn ask(app: &TestApp, token: &str, relation: &str, query: &str) -> (StatusCode, Value) {
    app.send(token, reqwest::Method::GET, &format!("{LINEAGE}/{relation}?{query}"), None).await
}

/// Each item of an answer as its first current tag (`ns/stream:tag`), or its digest.
fn named(answer: &Value) -> Vec<String> {
    let mut names: Vec<String> = answer["items"]
        .as_array()
        .unwrap_or_else(|| panic!("an answer: {answer}"))
        .iter()
        .map(|item| {
            item["tags"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["current"] == true)
                .map(|t| format!("{}/{}", t["namespace"].as_str().unwrap(), t["name"].as_str().unwrap()))
                .unwrap_or_else(|| item["image"].as_str().unwrap().to_string())
        })
        .collect();
    names.sort();
    names
}

fn item<'a>(answer: &'a Value, digest: &str) -> &'a Value {
    answer["items"].as_array().unwrap().iter().find(|i| i["image"] == digest).unwrap_or_else(|| panic!("{digest} in {answer}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn lineage_answers_as_stream_tags_from_imported_and_pushed_images() {
    let registry = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let mut app = TestApp::start().await;
    for ns in ["lib", "team", "other"] {
        app.namespace(ns).await;
    }
    let base_v1 = TestImage::new(Format::Oci, 1, 2, 128, "amd64");
    let app_image = base_v1.built_on(2, 1);
    let child = app_image.built_on(3, 1);
    // The base's first layer, then one of its own: it shares a prefix, but is not built on it.
    let mut prefix = TestImage::new(Format::Oci, 4, 1, 128, "amd64");
    prefix.layers.insert(0, base_v1.layers[0].clone());
    let base_v2 = base_v1.built_on(5, 1);
    let rebuilt = base_v2.built_on(6, 1);
    let arm = TestImage::new(Format::Oci, 7, 1, 128, "arm64/v8");
    let amd = TestImage::new(Format::Oci, 8, 1, 128, "amd64");
    let multi = TestIndex { format: Format::Oci, children: vec![amd.clone(), arm.clone()], with_attestation: false };
    let multi_app = TestIndex { format: Format::Oci, children: vec![amd.built_on(9, 1), arm.built_on(10, 1)], with_attestation: false };
    // A squashed image: one layer of its own, and the OCI annotation naming the app.
    let squashed = TestImage::new(Format::Oci, 11, 1, 128, "amd64");
    let mut squashed_manifest: Value = serde_json::from_slice(&squashed.manifest_bytes()).unwrap();
    squashed_manifest["annotations"] = json!({
        "org.opencontainers.image.base.digest": app_image.digest(),
        "org.opencontainers.image.base.name": format!("{}/team/app:1", registry.host()),
    });
    let squashed_bytes = serde_json::to_vec(&squashed_manifest).unwrap();
    let squashed_digest = berth_testkit::digest_of(&squashed_bytes);

    blocking(|| {
        registry.push("lib/base", Some("1"), &base_v1).unwrap();
        registry.push("team/app", Some("1"), &app_image).unwrap();
        registry.push("team/prefix", Some("1"), &prefix).unwrap();
        registry.push_index("lib/multi", Some("1"), &multi).unwrap();
        registry.push_index("team/multi-app", Some("1"), &multi_app).unwrap();
        registry.push_blob("team/squashed", &squashed.config_bytes()).unwrap();
        for layer in &squashed.layers {
            registry.push_blob("team/squashed", layer).unwrap();
        }
        registry.push_manifest("team/squashed", Some("1"), Format::Oci.manifest_media_type(), &squashed_bytes).unwrap();
    });
    import(&app, "lib", "base", "1", &registry.pull_spec("lib/base", "1")).await;
    import(&app, "team", "app", "1", &registry.pull_spec("team/app", "1")).await;
    import(&app, "team", "prefix", "1", &registry.pull_spec("team/prefix", "1")).await;
    import(&app, "lib", "multi", "1", &registry.pull_spec("lib/multi", "1")).await;
    import(&app, "team", "multi-app", "1", &registry.pull_spec("team/multi-app", "1")).await;
    import(&app, "team", "squashed", "1", &registry.pull_spec("team/squashed", "1")).await;
    // The derived-of-derived is pushed to berth itself.
    let host = app.base.trim_start_matches("http://").to_string();
    let admin = app.admin.clone();
    blocking(|| RegistryClient::new(&host, Some(("me", &admin))).unwrap().push("team/child", Some("1"), &child).unwrap());

    // Descendants of the base: the app, what is built on the app, and the squashed image
    // through its annotation; not the image that only shares a prefix.
    let admin = app.admin.clone();
    let (status, answer) = ask(&app, &admin, "descendants", "namespace=lib&imageStreamTag=base:1").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["kind"], "ImageLineage");
    assert_eq!(answer["imageStreamTag"], "lib/base:1");
    assert_eq!(named(&answer), ["team/app:1", "team/child:1", "team/squashed:1"]);
    assert_eq!(item(&answer, &app_image.digest())["evidence"], "Layers");
    assert_eq!(item(&answer, &squashed_digest)["evidence"], "Annotation");
    assert_eq!(item(&answer, &child.digest())["builtOn"], app_image.digest(), "the child is under the app in the tree");
    assert_eq!(item(&answer, &app_image.digest())["builtOn"], base_v1.digest());

    // Ancestors of the derived-of-derived, nearest first, asked by digest.
    let (status, answer) = ask(&app, &admin, "ancestors", &format!("image={}", child.digest())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let order: Vec<&str> = answer["items"].as_array().unwrap().iter().map(|i| i["image"].as_str().unwrap()).collect();
    assert_eq!(order, [app_image.digest(), base_v1.digest()]);
    let (_, answer) = ask(&app, &admin, "ancestors", &format!("image={squashed_digest}")).await;
    assert_eq!(named(&answer), ["lib/base:1", "team/app:1"]);

    // Which images hold the app's own layer.
    let app_layer = berth_testkit::digest_of(app_image.layers.last().unwrap());
    let (_, answer) = ask(&app, &admin, "layer", &format!("image={app_layer}")).await;
    assert_eq!(named(&answer), ["team/app:1", "team/child:1"]);

    // A multi-platform base relates through its children, per platform; the tags point
    // at the list that holds each descendant.
    let (_, answer) = ask(&app, &admin, "descendants", "namespace=lib&imageStreamTag=multi:1").await;
    let platforms: Vec<(&str, &str)> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["platform"].as_str().unwrap(), i["tags"][0]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(platforms, [("linux/amd64", "multi-app:1"), ("linux/arm64/v8", "multi-app:1")]);
    assert_eq!(answer["items"][0]["tags"][0]["list"], multi_app.digest());

    // A tenant sees only what it may read: a reader of `lib` learns nothing of `team`.
    let lib_reader = app.token("lib-reader", "view", &["lib"]).await;
    let (status, answer) = ask(&app, &lib_reader, "descendants", "namespace=lib&imageStreamTag=base:1").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["items"], json!([]), "team's images are not shown to a reader of lib");
    let (status, _) = ask(&app, &lib_reader, "ancestors", "namespace=team&imageStreamTag=app:1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = ask(&app, &lib_reader, "ancestors", &format!("image={}", child.digest())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an image the caller cannot see does not exist for it");

    // The base moves to v2, and an image is rebuilt on it: the current version's
    // descendants are the rebuilt image; every version's are all of them.
    blocking(|| {
        registry.push("lib/base", Some("1"), &base_v2).unwrap();
        registry.push("team/rebuilt", Some("1"), &rebuilt).unwrap();
    });
    import(&app, "lib", "base", "1", &registry.pull_spec("lib/base", "1")).await;
    import(&app, "team", "rebuilt", "1", &registry.pull_spec("team/rebuilt", "1")).await;
    let (_, answer) = ask(&app, &admin, "descendants", "namespace=lib&imageStreamTag=base:1").await;
    assert_eq!(named(&answer), ["team/rebuilt:1"]);
    let (_, answer) = ask(&app, &admin, "descendants", "namespace=lib&imageStreamTag=base:1&allVersions=true").await;
    assert_eq!(answer["images"], json!([base_v2.digest(), base_v1.digest()]));
    assert_eq!(named(&answer), ["team/app:1", "team/child:1", "team/rebuilt:1", "team/squashed:1"]);
    assert_eq!(item(&answer, &rebuilt.digest())["of"], base_v2.digest());
    assert_eq!(item(&answer, &app_image.digest())["of"], base_v1.digest());
    // The old base is still an ancestor of the app, shown through the tag it was on.
    let (_, answer) = ask(&app, &admin, "ancestors", "namespace=team&imageStreamTag=app:1").await;
    let tags = &item(&answer, &base_v1.digest())["tags"];
    assert_eq!(tags, &json!([{"namespace": "lib", "name": "base:1", "current": false}]));

    // A deleted image is gone from every answer; a restart rebuilds the same index.
    let (status, _) = app.delete(&format!("{IMAGE_API}/images/{}", child.digest())).await;
    assert_eq!(status, StatusCode::OK);
    let (_, answer) = ask(&app, &admin, "descendants", &format!("image={}", app_image.digest())).await;
    assert_eq!(named(&answer), ["team/squashed:1"]);
    app.restart().await;
    let (_, after_restart) = ask(&app, &admin, "descendants", "namespace=lib&imageStreamTag=base:1&allVersions=true").await;
    assert_eq!(named(&after_restart), ["team/app:1", "team/rebuilt:1", "team/squashed:1"]);
    app.stop().await;
    blocking(move || drop(registry));
}

#[tokio::test(flavor = "multi_thread")]
async fn lineage_questions_that_cannot_be_answered_say_why() {
    let app = TestApp::start().await;
    app.namespace("team").await;
    let admin = app.admin.clone();
    let cases = [
        ("siblings", "image=sha256:00", StatusCode::NOT_FOUND, "ask for ancestors, descendants or layer"),
        ("ancestors", "", StatusCode::BAD_REQUEST, "say what to ask about"),
        ("ancestors", "image=latest", StatusCode::BAD_REQUEST, "is not a digest"),
        ("ancestors", "imageStreamTag=app:1", StatusCode::BAD_REQUEST, "add &namespace=NS"),
        ("ancestors", "namespace=team&imageStreamTag=app", StatusCode::BAD_REQUEST, "must be STREAM:TAG"),
        ("ancestors", "namespace=team&imageStreamTag=app:1", StatusCode::NOT_FOUND, "imagestreams.image.openshift.io \"app\" not found"),
        ("descendants", "namespace=team&imageStreamTag=app:1&allVersions=maybe", StatusCode::BAD_REQUEST, "must be true or false"),
        ("layer", "namespace=team&imageStreamTag=app:1", StatusCode::BAD_REQUEST, "takes a layer digest"),
    ];
    for (relation, query, status, words) in cases {
        let (got, body) = ask(&app, &admin, relation, query).await;
        assert_eq!(got, status, "{relation}?{query}: {body}");
        assert_eq!(body["kind"], "Status", "{body}");
        assert!(body["message"].as_str().unwrap().contains(words), "{relation}?{query}: {body}");
    }
    // A tag with no image yet.
    app.map("team", "app", "1", "one").await;
    let (status, body) = ask(&app, &admin, "ancestors", "namespace=team&imageStreamTag=app:2").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

const CLASSES: &str = "/apis/berth.dev/v1/imageclasses";
const VENDOR_LABEL: &str = "class.berth.dev/vendor";

async fn image_labels(app: &TestApp, digest: &str) -> Value {
    let (status, image) = app.get(&format!("{IMAGE_API}/images/{digest}")).await;
    assert_eq!(status, StatusCode::OK, "{image}");
    image["metadata"]["labels"].clone()
}

/// Waits until the class's current version is `digest` (the controller follows the
/// target tag), and returns the class.
async fn class_at(app: &TestApp, name: &str, digest: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, class) = app.get(&format!("{CLASSES}/{name}")).await;
        assert_eq!(status, StatusCode::OK, "{class}");
        if class["status"]["current"]["image"] == digest {
            return class;
        }
        assert!(std::time::Instant::now() < deadline, "the class did not follow its target to {digest}: {class}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_class_labels_every_descendant_current_or_outdated_as_its_target_moves() {
    let registry = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let app = TestApp::start().await;
    for ns in ["lib", "team"] {
        app.namespace(ns).await;
    }
    let base_v1 = TestImage::new(Format::Oci, 21, 2, 128, "amd64");
    let app_image = base_v1.built_on(22, 1);
    let mut prefix = TestImage::new(Format::Oci, 23, 1, 128, "amd64");
    prefix.layers.insert(0, base_v1.layers[0].clone());
    blocking(|| {
        registry.push("lib/base", Some("1"), &base_v1).unwrap();
        registry.push("team/app", Some("1"), &app_image).unwrap();
        registry.push("team/prefix", Some("1"), &prefix).unwrap();
    });
    import(&app, "lib", "base", "1", &registry.pull_spec("lib/base", "1")).await;
    import(&app, "team", "app", "1", &registry.pull_spec("team/app", "1")).await;
    import(&app, "team", "prefix", "1", &registry.pull_spec("team/prefix", "1")).await;

    // Only a cluster admin defines classes, and a target must be a stream tag.
    let class = json!({"apiVersion": "berth.dev/v1", "kind": "ImageClass", "metadata": {"name": "vendor", "labels": {"os": "rhel9"}},
        "spec": {"target": {"namespace": "lib", "name": "base:1"}}});
    let editor = app.token("editor", "edit", &["lib", "team"]).await;
    let (status, _) = app.send(&editor, reqwest::Method::POST, CLASSES, Some(&class)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut bad = class.clone();
    bad["spec"]["target"]["name"] = json!("base");
    let (status, body) = app.post(CLASSES, bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["message"].as_str().unwrap().contains("must be STREAM:TAG"), "{body}");
    let (status, created) = app.post(CLASSES, class).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let current = &created["status"]["current"];
    assert_eq!(current["image"], base_v1.digest(), "{created}");
    let last_layer = berth_testkit::digest_of(base_v1.layers.last().unwrap());
    assert_eq!(current["chains"][0]["lastLayer"], last_layer);
    assert_eq!(current["chains"][0]["chains"].as_array().unwrap().len(), 2);

    // The base and everything built on it are of the class; an image sharing only a
    // prefix is not.
    assert_eq!(image_labels(&app, &app_image.digest()).await[VENDOR_LABEL], "current");
    assert_eq!(image_labels(&app, &base_v1.digest()).await[VENDOR_LABEL], "current");
    assert!(image_labels(&app, &prefix.digest()).await.get(VENDOR_LABEL).is_none());
    let (_, selected) = app.get(&format!("{IMAGE_API}/images?labelSelector={VENDOR_LABEL}%3Dcurrent")).await;
    let mut names: Vec<&str> = selected["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
    names.sort();
    let mut expect = vec![base_v1.digest(), app_image.digest()];
    expect.sort();
    assert_eq!(names, expect);

    // A CI system subscribes to the class's updates in team.
    let (hook, hook_url) = common::Hook::start().await;
    let subscription = json!({"apiVersion": "berth.dev/v1", "kind": "Subscription", "metadata": {"name": "rebuild"},
        "spec": {"url": hook_url, "events": ["ClassUpdated"], "classes": ["vendor"]}});
    let (status, body) = app.post("/apis/berth.dev/v1/namespaces/team/subscriptions", subscription).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A group `os` over the classes labelled os: key=value questions over images.
    let group = json!({"apiVersion": "berth.dev/v1", "kind": "ImageClassGroup", "metadata": {"name": "os"},
        "spec": {"selector": {"matchExpressions": [{"key": "os", "operator": "Exists"}]}}});
    let mut bad_group = group.clone();
    bad_group["spec"]["selector"]["matchExpressions"][0]["operator"] = json!("Has");
    let (status, body) = app.post("/apis/berth.dev/v1/imageclassgroups", bad_group).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = app.post("/apis/berth.dev/v1/imageclassgroups", group).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(image_labels(&app, &app_image.digest()).await["class.berth.dev/os"], "rhel9");
    let (_, rhel) = app.get(&format!("{IMAGE_API}/images?labelSelector=class.berth.dev%2Fos%3Drhel9")).await;
    assert_eq!(rhel["items"].as_array().unwrap().len(), 2, "{rhel}");
    assert!(image_labels(&app, &prefix.digest()).await.get("class.berth.dev/os").is_none());

    // The target moves to v2 and an image is rebuilt on it: what was built on v1 is now
    // outdated, one version behind, and the rebuilt image is current.
    let base_v2 = base_v1.built_on(24, 1);
    let rebuilt = base_v2.built_on(25, 1);
    blocking(|| {
        registry.push("lib/base", Some("1"), &base_v2).unwrap();
        registry.push("team/rebuilt", Some("1"), &rebuilt).unwrap();
    });
    import(&app, "lib", "base", "1", &registry.pull_spec("lib/base", "1")).await;
    import(&app, "team", "rebuilt", "1", &registry.pull_spec("team/rebuilt", "1")).await;
    let moved = class_at(&app, "vendor", &base_v2.digest()).await;
    assert_eq!(moved["status"]["history"][0]["image"], base_v1.digest());
    assert_eq!(image_labels(&app, &app_image.digest()).await[VENDOR_LABEL], "outdated");
    assert_eq!(image_labels(&app, &rebuilt.digest()).await[VENDOR_LABEL], "current");
    let (status, outdated) = app.get(&format!("{CLASSES}/vendor/images?state=outdated")).await;
    assert_eq!(status, StatusCode::OK, "{outdated}");
    assert_eq!(named(&outdated), [base_v1.digest(), "team/app:1".to_string()]);
    assert_eq!(item(&outdated, &app_image.digest())["versionsBehind"], 1);
    let (_, current) = app.get(&format!("{CLASSES}/vendor/images?state=current")).await;
    assert_eq!(named(&current), ["lib/base:1", "team/rebuilt:1"]);
    // One dev.berth.class.updated event per tag built on the class but not on its new
    // version: team/app:1, not team/rebuilt:1 (already on v2) or team/prefix:1.
    let events = hook.wait_for(1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "dev.berth.class.updated");
    assert_eq!(events[0]["source"], "/apis/berth.dev/v1/imageclasses/vendor");
    assert_eq!(events[0]["subject"], "team/app:1");
    assert_eq!(events[0]["data"]["class"], "vendor");
    assert_eq!(events[0]["data"]["classDigest"], base_v2.digest());
    assert_eq!(events[0]["data"]["classPreviousDigest"], base_v1.digest());
    assert_eq!(events[0]["data"]["digest"], app_image.digest());

    // The old base image goes; the class remembers its chains, so what was built on it
    // stays outdated.
    let (status, _) = app.delete(&format!("{IMAGE_API}/images/{}", base_v1.digest())).await;
    assert_eq!(status, StatusCode::OK);
    let (_, kept) = app.get(&format!("{CLASSES}/vendor")).await;
    assert_eq!(kept["status"]["history"][0]["image"], base_v1.digest());
    assert_eq!(image_labels(&app, &app_image.digest()).await[VENDOR_LABEL], "outdated");

    // A tenant sees the class's images only through its own streams, and not the status
    // of a class whose target it cannot read.
    let team_reader = app.token("team-reader", "view", &["team"]).await;
    let (_, seen) = app.send(&team_reader, reqwest::Method::GET, &format!("{CLASSES}/vendor/images"), None).await;
    assert_eq!(named(&seen), ["team/app:1", "team/rebuilt:1"]);
    let (_, class_seen) = app.send(&team_reader, reqwest::Method::GET, &format!("{CLASSES}/vendor"), None).await;
    assert_eq!(class_seen["status"], json!({}), "the target's images are lib's: {class_seen}");

    // Class labels are computed, never stored: an update carrying one keeps only the
    // others, and a deleted class labels nothing.
    let path = format!("{IMAGE_API}/images/{}", app_image.digest());
    let (_, mut image) = app.get(&path).await;
    image["metadata"]["labels"]["tier"] = json!("gold");
    let (status, updated) = app.put(&path, image).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let (status, _) = app.delete(&format!("{CLASSES}/vendor")).await;
    assert_eq!(status, StatusCode::OK);
    let labels = image_labels(&app, &app_image.digest()).await;
    assert_eq!(labels["tier"], "gold");
    assert!(labels.get(VENDOR_LABEL).is_none(), "{labels}");
    app.stop().await;
    blocking(move || drop(registry));
}

#[tokio::test(flavor = "multi_thread")]
async fn class_labels_use_the_label_domain_the_server_is_given() {
    let app = TestApp::start_with(|config| config.classes.label_domain = "images.example.com".into()).await;
    app.namespace("lib").await;
    let digest = app.map("lib", "base", "1", "base-one").await;
    let class = json!({"apiVersion": "berth.dev/v1", "kind": "ImageClass", "metadata": {"name": "vendor"},
        "spec": {"target": {"namespace": "lib", "name": "base:1"}}});
    let (status, body) = app.post(CLASSES, class).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let labels = image_labels(&app, &digest).await;
    assert_eq!(labels, json!({"images.example.com/vendor": "current"}));
    app.stop().await;
}
