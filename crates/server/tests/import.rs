//! Import from a real registry: the CNCF distribution registry (`docker-registry` from
//! Debian) started on a loopback port, open or behind htpasswd Basic auth, with test
//! images pushed into it over its HTTP API.

mod common;

use berth_testkit::{Auth, DistributionRegistry, Format, TestImage, TestIndex};
use common::{IMAGE_API, TestApp, blocking, docker_config_secret, history, istag_path};
use reqwest::StatusCode;
use serde_json::{Value, json};

const NS: &str = "team";

fn start_registry(auth: Auth) -> DistributionRegistry {
    blocking(|| DistributionRegistry::start(auth).unwrap())
}

/// Sets `stream:tag` to import `from`, with extra spec fields.
async fn tag_from(app: &TestApp, name: &str, from: &str, extra: Value) -> Value {
    let mut tag = json!({"from": {"kind": "DockerImage", "name": from}});
    tag.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    let body = json!({"kind": "ImageStreamTag", "apiVersion": "image.openshift.io/v1", "metadata": {"name": name}, "tag": tag});
    let (status, reply) = app.put(&istag_path(NS, name), body).await;
    assert!(status.is_success(), "{reply}");
    reply
}

/// Asks for a re-import of `stream:tag` (generation 0) and waits for it.
async fn reimport(app: &TestApp, name: &str) -> Value {
    let (_, mut istag) = app.get(&istag_path(NS, name)).await;
    istag["tag"]["generation"] = json!(0);
    istag["metadata"]["resourceVersion"] = json!("");
    let (status, reply) = app.put(&istag_path(NS, name), json!({"metadata": istag["metadata"], "tag": istag["tag"]})).await;
    assert!(status.is_success(), "{reply}");
    app.settled_tag(NS, name).await
}

fn condition(istag: &Value) -> (String, String) {
    let c = &istag["conditions"][0];
    (c["reason"].as_str().unwrap_or_default().to_string(), c["message"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_imports_its_image_with_full_metadata_and_history() {
    let registry = start_registry(Auth::Open);
    let docker = TestImage::new(Format::Docker, 1, 3, 2048, "amd64");
    let pushed = blocking(|| registry.push("team/app", Some("1.0"), &docker).unwrap());
    let app = TestApp::start().await;
    app.namespace(NS).await;

    tag_from(&app, "app:1.0", &registry.pull_spec("team/app", "1.0"), json!({})).await;
    let istag = app.settled_tag(NS, "app:1.0").await;
    assert!(istag["conditions"].as_array().is_none_or(Vec::is_empty), "{istag}");
    let image = &istag["image"];
    assert_eq!(image["metadata"]["name"], pushed.digest);
    assert_eq!(image["dockerImageReference"], format!("{}/team/app@{}", registry.host(), pushed.digest));
    assert_eq!(image["dockerImageManifestMediaType"], Format::Docker.manifest_media_type());
    let layers = image["dockerImageLayers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    for (layer, bytes) in layers.iter().zip(&docker.layers) {
        assert_eq!(layer["name"], berth_testkit::digest_of(bytes));
        assert_eq!(layer["size"], bytes.len());
        assert_eq!(layer["mediaType"], Format::Docker.layer_media_type());
    }
    let meta = &image["dockerImageMetadata"];
    let config = &meta["Config"];
    assert_eq!(config["User"], "1001");
    assert_eq!(config["Env"], json!(["PATH=/usr/bin", "SEED=1"]));
    assert_eq!(config["ExposedPorts"], json!({"8080/tcp": {}}));
    assert_eq!(config["Labels"]["seed"], "1");
    assert_eq!(config["WorkingDir"], "/app");
    assert_eq!(config["Entrypoint"], json!(["/app/run"]));
    assert_eq!(config["Cmd"], json!(["--serve"]));
    assert_eq!(config["Volumes"], json!({"/data": {}}));
    assert_eq!(meta["Created"], "2026-01-01T00:00:00Z");
    assert_eq!((meta["Architecture"].as_str(), meta["Os"].as_str()), (Some("amd64"), Some("linux")));
    let total: usize = docker.layers.iter().map(Vec::len).sum::<usize>() + docker.config_bytes().len();
    assert_eq!(meta["Size"], total);

    // The raw manifest is kept byte for byte on the Image itself.
    let (_, stored) = app.get(&format!("{IMAGE_API}/images/{}", pushed.digest)).await;
    assert_eq!(stored["dockerImageManifest"].as_str().unwrap().as_bytes(), pushed.manifest.as_slice());
    assert_eq!(stored["dockerImageConfig"].as_str().unwrap().as_bytes(), docker.config_bytes().as_slice());
    let stream = app.stream(NS, "app").await;
    assert!(stream["metadata"]["annotations"]["openshift.io/image.dockerRepositoryCheck"].is_string(), "{stream}");

    // The tag moves upstream (an OCI image now): a re-import prepends it to history.
    let oci = TestImage::new(Format::Oci, 2, 2, 1024, "amd64");
    let moved = blocking(|| registry.push("team/app", Some("1.0"), &oci).unwrap());
    let istag = reimport(&app, "app:1.0").await;
    assert_eq!(istag["image"]["metadata"]["name"], moved.digest);
    assert_eq!(istag["image"]["dockerImageManifestMediaType"], Format::Oci.manifest_media_type());
    let stream = app.stream(NS, "app").await;
    let images: Vec<String> = history(&stream, "1.0").into_iter().map(|(image, _)| image).collect();
    assert_eq!(images, [moved.digest.clone(), pushed.digest.clone()]);

    // Nothing moved: the re-import asks for the manifest digest and stops there.
    let before = app.upstream_requests();
    reimport(&app, "app:1.0").await;
    assert_eq!(app.upstream_requests() - before, 1, "an unchanged tag costs one HEAD");
    assert_eq!(history(&app.stream(NS, "app").await, "1.0").len(), 2);

    // The tag disappears upstream: the import fails with a reason and history stays.
    blocking(|| registry.delete_manifest("team/app", &moved.digest).unwrap());
    let istag = reimport(&app, "app:1.0").await;
    let (reason, message) = condition(&istag);
    assert_eq!(reason, "NotFound", "{istag}");
    assert!(message.contains("team/app"), "{message}");
    assert_eq!(istag["conditions"][0]["status"], "False");
    let images: Vec<String> = history(&app.stream(NS, "app").await, "1.0").into_iter().map(|(image, _)| image).collect();
    assert_eq!(images, [moved.digest, pushed.digest], "a failed import keeps history");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_lists_follow_the_import_mode() {
    let registry = start_registry(Auth::Open);
    let amd64 = TestImage::new(Format::Oci, 10, 2, 512, "amd64");
    let arm64 = TestImage::new(Format::Oci, 11, 2, 512, "arm64");
    let index = TestIndex { format: Format::Oci, children: vec![arm64.clone(), amd64.clone()], with_attestation: true };
    let pushed = blocking(|| registry.push_index("team/multi", Some("latest"), &index).unwrap());
    let docker_list = TestIndex {
        format: Format::Docker,
        children: vec![TestImage::new(Format::Docker, 12, 1, 512, "s390x"), TestImage::new(Format::Docker, 13, 1, 512, "arm64")],
        with_attestation: false,
    };
    let pushed_list = blocking(|| registry.push_index("team/multi", Some("docker"), &docker_list).unwrap());
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let source = registry.pull_spec("team/multi", "latest");

    // Legacy: linux/amd64 when nothing else is asked for.
    tag_from(&app, "multi:legacy", &source, json!({})).await;
    let legacy = app.settled_tag(NS, "multi:legacy").await;
    assert_eq!(legacy["image"]["metadata"]["name"], amd64.digest(), "{legacy}");
    assert_eq!(legacy["image"]["dockerImageMetadata"]["Architecture"], "amd64");

    // The tag's annotations choose another platform.
    tag_from(&app, "multi:arm", &source, json!({"annotations": {"importer.image.openshift.io/prefer-arch": "arm64"}})).await;
    assert_eq!(app.settled_tag(NS, "multi:arm").await["image"]["metadata"]["name"], arm64.digest());

    // The server's default platform comes before linux/amd64.
    let arm_default = TestApp::start_with(|config| config.import.default_platform = "linux/arm64".into()).await;
    arm_default.namespace(NS).await;
    tag_from(&arm_default, "multi:legacy", &source, json!({})).await;
    assert_eq!(arm_default.settled_tag(NS, "multi:legacy").await["image"]["metadata"]["name"], arm64.digest());
    arm_default.stop().await;

    // Nothing matches: the first runnable child (a Docker manifest list here).
    tag_from(&app, "multi:first", &registry.pull_spec("team/multi", "docker"), json!({})).await;
    let first = app.settled_tag(NS, "multi:first").await;
    assert_eq!(first["image"]["metadata"]["name"], docker_list.children[0].digest(), "{first}");
    assert_ne!(first["image"]["metadata"]["name"], pushed_list.digest);

    // PreserveOriginal keeps the list and every child.
    tag_from(&app, "multi:all", &source, json!({"importPolicy": {"importMode": "PreserveOriginal"}})).await;
    let all = app.settled_tag(NS, "multi:all").await;
    assert_eq!(all["image"]["metadata"]["name"], pushed.digest, "{all}");
    let children = all["image"]["dockerImageManifests"].as_array().unwrap();
    assert_eq!(children.len(), 3, "two platforms and the attestation");
    assert_eq!((children[0]["os"].as_str(), children[0]["architecture"].as_str()), (Some("linux"), Some("arm64")));
    for child in children {
        let (status, image) = app.get(&format!("{IMAGE_API}/images/{}", child["digest"].as_str().unwrap())).await;
        assert_eq!(status, StatusCode::OK, "every child is an Image: {image}");
    }
    app.stop().await;
}

fn isi(name: &str, import: bool, spec: Value) -> Value {
    let mut body =
        json!({"kind": "ImageStreamImport", "apiVersion": "image.openshift.io/v1", "metadata": {"name": name}, "spec": {"import": import}});
    body["spec"].as_object_mut().unwrap().extend(spec.as_object().cloned().unwrap());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_imports_take_tags_by_priority_up_to_the_cap() {
    let registry = start_registry(Auth::Open);
    let tags = ["other", "1.0", "latest", "v2.1", "2.1.3", "1.1"];
    let pushed: std::collections::HashMap<&str, String> = blocking(|| {
        let mut pushed = std::collections::HashMap::new();
        for (seed, tag) in tags.iter().enumerate() {
            let image = TestImage::new(Format::Oci, 100 + seed as u64 % 3, 1, 256, "amd64");
            pushed.insert(*tag, registry.push("team/repo", Some(tag), &image).unwrap().digest);
        }
        pushed
    });
    let app = TestApp::start_with(|config| config.import.max_images_bulk_imported_per_repository = 3).await;
    app.namespace(NS).await;
    let path = format!("{IMAGE_API}/namespaces/{NS}/imagestreamimports");
    let repository = json!({"repository": {"from": {"kind": "DockerImage", "name": format!("{}/team/repo", registry.host())}}});

    // A dry run looks everything up and stores nothing.
    let revision = app.revision().await;
    let (status, dry) = app.post(&path, isi("repo", false, repository.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{dry}");
    let imported: Vec<&str> =
        dry["status"]["repository"]["images"].as_array().unwrap().iter().map(|i| i["tag"].as_str().unwrap()).collect();
    assert_eq!(imported, ["latest", "v2.1", "1.1"]);
    assert_eq!(dry["status"]["repository"]["additionalTags"], json!(["1.0", "2.1.3", "other"]));
    for item in dry["status"]["repository"]["images"].as_array().unwrap() {
        assert_eq!(item["status"]["status"], "Success");
        let tag = item["tag"].as_str().unwrap();
        assert_eq!(item["image"]["metadata"]["name"], pushed[tag], "the dry run pairs {tag} with its own image");
    }
    assert!(dry["status"]["import"].is_null());
    assert_eq!(app.revision().await, revision, "a dry run writes nothing");
    let (status, _) = app.get(&format!("{IMAGE_API}/namespaces/{NS}/imagestreams/repo")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The import creates the stream with a spec tag per imported tag. Three tags over two
    // images: the tag list, a HEAD per tag, and each manifest and config fetched once.
    let before = app.upstream_requests();
    let (status, done) = app.post(&path, isi("repo", true, repository.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{done}");
    assert_eq!(app.upstream_requests() - before, 1 + 3 + 2 + 2, "each manifest and config blob is fetched once");
    let stream = &done["status"]["import"];
    let spec: Vec<&str> = stream["spec"]["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(spec, ["1.1", "latest", "v2.1"]);
    for tag in spec {
        let item = &done["status"]["repository"]["images"].as_array().unwrap().iter().find(|i| i["tag"] == tag).unwrap()["image"];
        assert_eq!(history(stream, tag)[0].0, item["metadata"]["name"].as_str().unwrap());
    }

    // Again, with nothing moved: the tag list and one HEAD per tag.
    let before = app.upstream_requests();
    let (status, again) = app.post(&path, isi("repo", true, repository)).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(app.upstream_requests() - before, 1 + 3);
    assert_eq!(history(&again["status"]["import"], "latest").len(), 1, "an unchanged tag gets no new event");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_imports_report_a_reason_per_image() {
    let registry = start_registry(Auth::Open);
    let image = TestImage::new(Format::Docker, 7, 1, 256, "amd64");
    let pushed = blocking(|| registry.push("team/one", Some("v1"), &image).unwrap());
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let path = format!("{IMAGE_API}/namespaces/{NS}/imagestreamimports");
    let from = |name: String| json!({"kind": "DockerImage", "name": name});
    let spec = json!({"images": [
        {"from": from(registry.pull_spec("team/one", "v1")), "to": {"name": "stable"}},
        {"from": from(registry.pull_spec("team/one", "missing"))},
        {"from": from("quay.io/org/app:1".into())},
    ]});
    let (status, reply) = app.post(&path, isi("one", true, spec)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let images = reply["status"]["images"].as_array().unwrap();
    assert_eq!((images[0]["tag"].as_str(), images[0]["status"]["status"].as_str()), (Some("stable"), Some("Success")));
    assert_eq!(images[0]["image"]["metadata"]["name"], pushed.digest);
    assert_eq!((images[1]["status"]["reason"].as_str(), images[1]["status"]["code"].as_u64()), (Some("NotFound"), Some(404)));
    assert_eq!(images[2]["status"]["reason"], "Forbidden");
    assert!(images[2]["status"]["message"].as_str().unwrap().contains("allowedRegistries"));
    let stream = &reply["status"]["import"];
    assert_eq!(history(stream, "stable")[0].0, pushed.digest);
    assert!(history(stream, "missing").is_empty());

    // Bad requests are refused whole.
    let (status, invalid) =
        app.post(&path, isi("one", true, json!({"images": [{"from": {"kind": "ImageStreamTag", "name": "a:b"}}]}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{invalid}");
    assert_eq!(invalid["details"]["causes"][0]["field"], "spec.images[0].from.kind");
    let (status, missing) = app
        .post(
            &format!("{IMAGE_API}/namespaces/nowhere/imagestreamimports"),
            isi("one", true, json!({"images": [{"from": from(registry.pull_spec("team/one", "v1"))}]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_secrets_are_matched_by_host_and_never_shown() {
    let password = "s3cret-pass-word";
    let registry = start_registry(Auth::Basic { user: "robot".into(), password: password.into() });
    let open = start_registry(Auth::Open);
    let image = TestImage::new(Format::Oci, 20, 2, 256, "amd64");
    let pushed = blocking(|| registry.push("team/private", Some("1"), &image).unwrap());
    let public = blocking(|| open.push("team/public", Some("1"), &image).unwrap());
    let app = TestApp::start().await;
    app.namespace(NS).await;
    let secrets = format!("/api/v1/namespaces/{NS}/secrets");

    // No secret: a reason and what to do.
    tag_from(&app, "private:1", &registry.pull_spec("team/private", "1"), json!({})).await;
    let (reason, message) = condition(&app.settled_tag(NS, "private:1").await);
    assert_eq!(reason, "Unauthorized");
    assert!(message.contains("pull secret"), "{message}");

    // A secret for another host is not sent here.
    let (status, reply) = app.post(&secrets, docker_config_secret("elsewhere", "registry.example.com", "robot", password)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(condition(&reimport(&app, "private:1").await).0, "Unauthorized");

    // A wrong password is named by its secret, never shown.
    app.post(&secrets, docker_config_secret("wrong", &registry.host(), "robot", "not-the-password")).await;
    let (reason, message) = condition(&reimport(&app, "private:1").await);
    assert_eq!(reason, "Unauthorized");
    assert!(message.contains("\"wrong\"") && !message.contains("not-the-password"), "{message}");

    // The right secret for this host works.
    app.delete(&format!("{secrets}/wrong")).await;
    app.post(&secrets, docker_config_secret("pull", &registry.host(), "robot", password)).await;
    let istag = reimport(&app, "private:1").await;
    assert_eq!(istag["image"]["metadata"]["name"], pushed.digest, "{istag}");

    // A broken secret for a public registry does not break its images.
    app.post(&secrets, docker_config_secret("broken", &open.host(), "nobody", "bad")).await;
    tag_from(&app, "public:1", &open.pull_spec("team/public", "1"), json!({})).await;
    assert_eq!(app.settled_tag(NS, "public:1").await["image"]["metadata"]["name"], public.digest);

    let stream = app.stream(NS, "private").await.to_string();
    assert!(!stream.contains(password) && !stream.contains("not-the-password"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_registry_needs_to_be_marked_insecure() {
    let registry = start_registry(Auth::Open);
    let image = TestImage::new(Format::Oci, 30, 1, 256, "amd64");
    let pushed = blocking(|| registry.push("team/plain", Some("1"), &image).unwrap());
    let app = TestApp::start_with(|config| config.import.insecure_registries.clear()).await;
    app.namespace(NS).await;
    let source = registry.pull_spec("team/plain", "1");

    tag_from(&app, "plain:1", &source, json!({})).await;
    let (reason, message) = condition(&app.settled_tag(NS, "plain:1").await);
    assert_eq!(reason, "ServiceUnavailable");
    assert!(message.contains("importPolicy.insecure") && message.contains("insecureRegistries"), "{message}");

    tag_from(&app, "plain:1", &source, json!({"importPolicy": {"insecure": true}})).await;
    assert_eq!(reimport(&app, "plain:1").await["image"]["metadata"]["name"], pushed.digest);
    app.stop().await;
}
