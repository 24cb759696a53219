//! Images as deployment contracts, against the real distribution registry: overrides that
//! survive re-imports, the contract diff's verdicts over images built to differ in each
//! way, and rollback with the pause it puts on imports.

mod common;

use berth_testkit::{Auth, DistributionRegistry, Format, TestImage};
use common::{IMAGE_API, TestApp, blocking, istag_path};
use reqwest::StatusCode;
use serde_json::{Value, json};

const NS: &str = "team";
const BERTH_NS: &str = "/apis/berth.dev/v1/namespaces/team";

fn start_registry() -> DistributionRegistry {
    blocking(|| DistributionRegistry::start(Auth::Open).unwrap())
}

/// Sets `stream:tag` to import `from`, with the tag's annotations.
async fn tag_from(app: &TestApp, name: &str, from: &str, annotations: Value) -> (StatusCode, Value) {
    let tag = json!({"from": {"kind": "DockerImage", "name": from}, "annotations": annotations});
    let body = json!({"kind": "ImageStreamTag", "apiVersion": "image.openshift.io/v1", "metadata": {"name": name}, "tag": tag});
    app.put(&istag_path(NS, name), body).await
}

/// Asks for a re-import of `stream:tag` (generation 0), keeping its spec as it is.
async fn ask_reimport(app: &TestApp, name: &str) {
    let (_, istag) = app.get(&istag_path(NS, name)).await;
    let mut tag = istag["tag"].clone();
    tag["generation"] = json!(0);
    let (status, reply) = app.put(&istag_path(NS, name), json!({"metadata": {"name": name}, "tag": tag})).await;
    assert!(status.is_success(), "{reply}");
}

async fn reimport(app: &TestApp, name: &str) -> Value {
    ask_reimport(app, name).await;
    app.settled_tag(NS, name).await
}

async fn push_and_import(app: &TestApp, registry: &DistributionRegistry, image: &TestImage) -> String {
    let pushed = blocking(|| registry.push("team/app", Some("1"), image).unwrap());
    let istag = reimport(app, "app:1").await;
    assert_eq!(istag["image"]["metadata"]["name"], pushed.digest, "{istag}");
    pushed.digest
}

async fn contract_diff(app: &TestApp, query: &str) -> Value {
    let (status, diff) = app.get(&format!("{BERTH_NS}/imagestreamtags/app:1/contractdiff{query}")).await;
    assert_eq!(status, StatusCode::OK, "{diff}");
    diff
}

/// The (field, key, change) of each change of a contract diff.
fn changes(diff: &Value) -> Vec<(String, String, String)> {
    let text = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    diff["changes"].as_array().unwrap().iter().map(|c| (text(c, "field"), text(c, "key"), text(c, "change"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_survive_reimport_and_apply_to_every_new_image() {
    let registry = start_registry();
    let app = TestApp::start().await;
    app.namespace(NS).await;
    blocking(|| registry.push("team/app", Some("1"), &TestImage::new(Format::Oci, 1, 1, 256, "amd64")).unwrap());
    let overrides =
        json!({"env": {"MODE": "prod", "SEED": null}, "ports": {"add": ["9090"]}, "resources": {"limits": {"memory": "256Mi"}}});
    let (status, reply) =
        tag_from(&app, "app:1", &registry.pull_spec("team/app", "1"), json!({"berth.dev/overrides": overrides.to_string()})).await;
    assert!(status.is_success(), "{reply}");
    let istag = app.settled_tag(NS, "app:1").await;
    let effective = &istag["contract"]["effective"];
    assert_eq!(effective["env"], json!({"MODE": "prod", "PATH": "/usr/bin"}), "{istag}");
    assert_eq!(effective["ports"], json!(["8080/tcp", "9090/tcp"]));
    assert_eq!(effective["resources"], json!({"limits": {"memory": "256Mi"}}));
    assert_eq!(istag["contract"]["image"]["env"]["SEED"], "1");
    // OpenShift's view of the image is the image as it is.
    assert_eq!(istag["image"]["dockerImageMetadata"]["Config"]["Env"], json!(["PATH=/usr/bin", "SEED=1"]));

    // Overrides on the stream apply under the tag's.
    let mut stream = app.stream(NS, "app").await;
    stream["metadata"]["annotations"]["berth.dev/overrides"] = json!(r#"{"user":"2000","env":{"MODE":"stream"}}"#);
    let (status, reply) = app.put(&format!("{IMAGE_API}/namespaces/{NS}/imagestreams/app"), stream).await;
    assert!(status.is_success(), "{reply}");

    // A new image upstream: the overrides apply to it too.
    let second = blocking(|| registry.push("team/app", Some("1"), &TestImage::new(Format::Oci, 2, 1, 256, "amd64")).unwrap());
    let istag = reimport(&app, "app:1").await;
    assert_eq!(istag["image"]["metadata"]["name"], second.digest);
    let effective = &istag["contract"]["effective"];
    assert_eq!(effective["env"], json!({"MODE": "prod", "PATH": "/usr/bin"}), "{istag}");
    assert_eq!((effective["user"].as_str(), istag["contract"]["image"]["user"].as_str()), (Some("2000"), Some("1001")));
    assert_eq!(istag["contract"]["image"]["env"]["SEED"], "2");
    assert_eq!(istag["tag"]["annotations"]["berth.dev/overrides"], overrides.to_string());

    // Overrides that make no sense are refused, saying where, and nothing is stored.
    let (status, reply) =
        tag_from(&app, "app:1", &registry.pull_spec("team/app", "1"), json!({"berth.dev/overrides": r#"{"ports":{"add":["http"]}}"#}))
            .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("NUMBER[/tcp|/udp|/sctp]"), "{reply}");
    let (_, istag) = app.get(&istag_path(NS, "app:1")).await;
    assert_eq!(istag["tag"]["annotations"]["berth.dev/overrides"], overrides.to_string());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_diff_judges_images_built_to_differ_in_each_way() {
    let registry = start_registry();
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let base = TestImage::new(Format::Docker, 7, 1, 256, "amd64");
    blocking(|| registry.push("team/app", Some("1"), &base).unwrap());
    let (status, reply) = tag_from(&app, "app:1", &registry.pull_spec("team/app", "1"), json!({})).await;
    assert!(status.is_success(), "{reply}");
    app.settled_tag(NS, "app:1").await;
    let (status, reply) = app.get(&format!("{BERTH_NS}/imagestreamtags/app:1/contractdiff")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "one image: nothing before it: {reply}");
    assert!(reply["message"].as_str().unwrap().contains("name the revision or image to compare with"), "{reply}");

    type Change = fn(&mut Value);
    type Expected = (&'static str, &'static str, &'static str);
    let cases: [(&str, Change, &str, Expected); 11] = [
        ("a port added", |c| c["ExposedPorts"]["8443/tcp"] = json!({}), "Compatible", ("ports", "8443/tcp", "Added")),
        ("an env var added", |c| c["Env"].as_array_mut().unwrap().push(json!("NEW=1")), "Compatible", ("env", "NEW", "Added")),
        ("a label changed", |c| c["Labels"]["seed"] = json!("other"), "Compatible", ("labels", "seed", "Changed")),
        ("a port removed", |c| c["ExposedPorts"] = json!({}), "Breaking", ("ports", "8080/tcp", "Removed")),
        ("a volume moved", |c| c["Volumes"] = json!({"/var/data": {}}), "Breaking", ("volumes", "/data", "Removed")),
        ("an env var removed", |c| c["Env"] = json!(["PATH=/usr/bin"]), "Breaking", ("env", "SEED", "Removed")),
        ("an env var's meaning changed", |c| c["Env"][0] = json!("PATH=/opt/bin"), "Breaking", ("env", "PATH", "Changed")),
        ("the user changed", |c| c["User"] = json!("0"), "Breaking", ("user", "", "Changed")),
        ("the entrypoint changed", |c| c["Entrypoint"] = json!(["/bin/sh", "-c"]), "Breaking", ("entrypoint", "", "Changed")),
        ("the working directory changed", |c| c["WorkingDir"] = json!("/srv"), "Breaking", ("workingDir", "", "Changed")),
        ("the platform changed", |_| {}, "Breaking", ("platform", "", "Changed")),
    ];
    let mut digests = Vec::new();
    for (revision, (what, change, verdict, first)) in cases.iter().enumerate() {
        let mut image = base.clone();
        change(&mut image.config["config"]);
        if *what == "the platform changed" {
            image.config["architecture"] = json!("arm64");
        }
        digests.push(push_and_import(&app, &registry, &image).await);
        // Revision 1 is the base image; this one is revision `revision + 2`.
        let diff = contract_diff(&app, "?from=1").await;
        assert_eq!((diff["from"]["revision"].as_u64(), diff["to"]["revision"].as_u64()), (Some(1), Some(revision as u64 + 2)));
        assert_eq!(diff["verdict"], *verdict, "{what}: {diff}");
        let found = changes(&diff);
        assert_eq!(found.first().map(|(f, k, c)| (f.as_str(), k.as_str(), c.as_str())), Some(*first), "{what}: {diff}");
        assert!(diff["changes"].as_array().unwrap().iter().all(|c| !c["reason"].as_str().unwrap().is_empty()));
    }
    // With nothing named: the current image against the one before it.
    let diff = contract_diff(&app, "").await;
    assert_eq!((diff["from"]["image"].as_str(), diff["to"]["image"].as_str()), (Some(digests[9].as_str()), Some(digests[10].as_str())));
    // Any two images of the stream, by digest (or a prefix of one), either way round.
    let diff = contract_diff(&app, &format!("?from={}&to={}", &digests[3][..20], digests[0])).await;
    assert_eq!(
        changes(&diff),
        [("ports".to_string(), "8080/tcp".to_string(), "Added".to_string()), ("ports".into(), "8443/tcp".into(), "Added".into())]
    );
    assert_eq!(diff["verdict"], "Compatible");
    let (status, reply) = app.get(&format!("{BERTH_NS}/imagestreamtags/app:1/contractdiff?from=99")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("revisions 1 to 12"), "{reply}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_recorded_and_pauses_imports_until_resumed() {
    let registry = start_registry();
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let first = blocking(|| registry.push("team/app", Some("1"), &TestImage::new(Format::Oci, 1, 1, 256, "amd64")).unwrap());
    let (status, reply) = tag_from(&app, "app:1", &registry.pull_spec("team/app", "1"), json!({})).await;
    assert!(status.is_success(), "{reply}");
    app.settled_tag(NS, "app:1").await;
    let second = blocking(|| registry.push("team/app", Some("1"), &TestImage::new(Format::Oci, 2, 1, 256, "amd64")).unwrap());
    assert_eq!(reimport(&app, "app:1").await["image"]["metadata"]["name"], second.digest);

    let (status, istag) = app.post(&format!("{BERTH_NS}/imagestreamtags/app:1/rollback"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{istag}");
    assert_eq!(istag["image"]["metadata"]["name"], first.digest);
    let paused = istag["tag"]["annotations"]["berth.dev/paused"].as_str().unwrap();
    assert!(paused.starts_with("rollback by token ") && paused.contains(" at "), "{paused}");
    let stream = app.stream(NS, "app").await;
    let items = stream["status"]["tags"][0]["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items[0]["cause"].as_str().unwrap().ends_with("to revision 1"), "{}", items[0]);

    // A re-import asked for while paused leaves the rollback alone.
    let third = blocking(|| registry.push("team/app", Some("1"), &TestImage::new(Format::Oci, 3, 1, 256, "amd64")).unwrap());
    ask_reimport(&app, "app:1").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (_, istag) = app.get(&istag_path(NS, "app:1")).await;
    assert_eq!(istag["image"]["metadata"]["name"], first.digest, "{istag}");

    // Resuming imports upstream's image now.
    let (status, reply) = app.post(&format!("{BERTH_NS}/imagestreamtags/app:1/resume"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let istag = app.settled_tag(NS, "app:1").await;
    assert_eq!(istag["image"]["metadata"]["name"], third.digest, "{istag}");
    assert!(istag["tag"]["annotations"].get("berth.dev/paused").is_none(), "{istag}");
    let (status, reply) = app.post(&format!("{BERTH_NS}/imagestreamtags/app:1/resume"), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("not paused"), "{reply}");

    // Rolling back to a revision or an image that the tag never had says what it has.
    let (status, reply) = app.post(&format!("{BERTH_NS}/imagestreamtags/app:1/rollback"), json!({"revision": 9})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("revisions 1 to 4"), "{reply}");
    let (status, reply) = app.post(&format!("{BERTH_NS}/imagestreamtags/app:1/rollback"), json!({"image": "sha256:0000"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");

    // An immutable tag is not rolled back either.
    let mut stream = app.stream(NS, "app").await;
    stream["metadata"]["annotations"]["berth.dev/immutable-tags"] = json!("1");
    let (status, reply) = app.put(&format!("{IMAGE_API}/namespaces/{NS}/imagestreams/app"), stream).await;
    assert!(status.is_success(), "{reply}");
    let (status, reply) = app.post(&format!("{BERTH_NS}/imagestreamtags/app:1/rollback"), json!({"image": first.digest})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_leaves_a_rolled_back_tag_alone_until_it_is_resumed() {
    let registry = start_registry();
    let first = blocking(|| registry.push("team/app", Some("1"), &TestImage::new(Format::Oci, 1, 1, 128, "amd64")).unwrap());
    let app = TestApp::start_with(|config| {
        config.import.scheduled_import_interval_seconds = 1;
        config.import.minimum_scheduled_import_interval_seconds = 1;
    })
    .await;
    app.namespace(NS).await;
    let tag = json!({"from": {"kind": "DockerImage", "name": registry.pull_spec("team/app", "1")}, "importPolicy": {"scheduled": true}});
    let (status, reply) = app.put(&istag_path(NS, "app:1"), json!({"metadata": {"name": "app:1"}, "tag": tag})).await;
    assert!(status.is_success(), "{reply}");
    let points_at = |digest: String| {
        let app = &app;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let (_, istag) = app.get(&istag_path(NS, "app:1")).await;
                if istag["image"]["metadata"]["name"] == digest.as_str() {
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "app:1 did not move to {digest}: {istag}");
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        }
    };
    points_at(first.digest.clone()).await;
    let second = blocking(|| registry.push("team/app", Some("1"), &TestImage::new(Format::Oci, 2, 1, 128, "amd64")).unwrap());
    points_at(second.digest.clone()).await;

    let (status, istag) = app.post(&format!("{BERTH_NS}/imagestreamtags/app:1/rollback"), json!({"image": first.digest})).await;
    assert_eq!(status, StatusCode::OK, "{istag}");
    // Three scheduler rounds later the rollback stands, and the schedule leaves the tag out.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (_, istag) = app.get(&istag_path(NS, "app:1")).await;
    assert_eq!(istag["image"]["metadata"]["name"], first.digest, "{istag}");
    let (_, schedule) = app.get(&format!("/apis/berth.dev/v1/namespaces/{NS}/scheduledimports")).await;
    assert_eq!(schedule["items"].as_array().map(Vec::len), Some(0), "{schedule}");

    let (status, reply) = app.post(&format!("{BERTH_NS}/imagestreamtags/app:1/resume"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    points_at(second.digest.clone()).await;
    app.stop().await;
}
