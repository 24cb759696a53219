// The registry's tests, compiled into two test binaries: `registry` (the embedded store
// and the filesystem) and `registry_postgres_s3` (PostgreSQL and S3; see
// `common::ON_SCALE_OUT_BACKENDS`).

use berth_testkit::{Auth, DistributionRegistry, Format, RegistryClient, TestImage, TestIndex, digest_of, skopeo, skopeo_copy};
use common::{IMAGE_API, TestApp, blocking, docker_config_secret, istag_path};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const NS: &str = "team";

fn host(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

fn creds(token: &str) -> String {
    format!("--creds=me:{token}")
}

/// A registry client for berth that logs in with `token` as the Basic password.
fn client(app: &TestApp, token: &str) -> RegistryClient {
    RegistryClient::new(&host(app), Some(("me", token))).unwrap()
}

/// An app with the namespace `team`, the image streams `streams` in it, and an edit token
/// for it (an editor pushes only into streams that exist: see stream_creation.rs).
async fn app_with_editor(streams: &[&str]) -> (TestApp, String) {
    let app = TestApp::start().await;
    app.namespace(NS).await;
    for stream in streams {
        app.create_stream(NS, stream).await;
    }
    let token = app.token("pusher", "edit", &[NS]).await;
    (app, token)
}

/// A request to berth with `token` as the bearer token, for headers and a body to be added.
fn request(app: &TestApp, token: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().request(method, format!("{}{path}", app.base)).bearer_auth(token)
}

async fn v2(app: &TestApp, token: Option<&str>, method: Method, path: &str) -> reqwest::Response {
    match token {
        Some(token) => request(app, token, method, path).send().await.unwrap(),
        None => reqwest::Client::new().request(method, format!("{}{path}", app.base)).send().await.unwrap(),
    }
}

/// PUT of manifest bytes to `team/app` under `reference`.
async fn put_manifest(app: &TestApp, token: &str, reference: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    let path = format!("/v2/{NS}/app/manifests/{reference}");
    request(app, token, Method::PUT, &path).header("content-type", content_type).body(body).send().await.unwrap()
}

async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["errors"][0]["code"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_in_and_out_in_oci_and_docker_formats() {
    let (app, token) = app_with_editor(&["app"]).await;
    let upstream = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let oci = TestImage::new(Format::Oci, 1, 3, 4096, "amd64");
    let docker = TestImage::new(Format::Docker, 2, 2, 4096, "amd64");
    blocking(|| {
        upstream.push("src/app", Some("oci"), &oci).unwrap();
        upstream.push("src/app", Some("docker"), &docker).unwrap();
    });
    let berth = host(&app);
    for (tag, image) in [("oci", &oci), ("docker", &docker)] {
        let src = format!("docker://{}", upstream.pull_spec("src/app", tag));
        let dest = format!("docker://{berth}/{NS}/app:{tag}");
        // (The test layers are not real gzip: without --preserve-digests skopeo would
        // compress them and push other digests.)
        blocking(|| skopeo_copy(&src, &dest, &["--preserve-digests", &format!("--dest-creds=me:{token}")])).unwrap();
        // The push is a tag move: the stream has the tag at the same digest, and the
        // image is managed by berth with its metadata read from the config.
        let (status, istag) = app.get(&istag_path(NS, &format!("app:{tag}"))).await;
        assert_eq!(status, StatusCode::OK, "{istag}");
        assert_eq!(istag["image"]["metadata"]["name"], image.digest());
        assert_eq!(istag["image"]["metadata"]["annotations"]["openshift.io/image.managed"], "true");
        assert_eq!(istag["image"]["dockerImageMetadata"]["Config"]["User"], "1001");
        assert_eq!(istag["image"]["dockerImageReference"], format!("registry.berth.test/{NS}/app@{}", image.digest()));
    }
    // Out again: inspect, a copy to a directory, and the digest is the same bytes.
    let inspected: Value = serde_json::from_slice(
        &blocking(|| skopeo(&["inspect", "--tls-verify=false", &creds(&token), &format!("docker://{berth}/{NS}/app:oci")])).unwrap(),
    )
    .unwrap();
    assert_eq!(inspected["Digest"], oci.digest());
    assert_eq!(inspected["Labels"]["seed"], "1");
    let dir = tempfile::tempdir().unwrap();
    let out = format!("dir:{}", dir.path().display());
    blocking(|| skopeo_copy(&format!("docker://{berth}/{NS}/app:docker"), &out, &[&format!("--src-creds=me:{token}")])).unwrap();
    let manifest = std::fs::read(dir.path().join("manifest.json")).unwrap();
    assert_eq!(digest_of(&manifest), docker.digest(), "the manifest comes back byte for byte");
    for layer in &docker.layers {
        let hex = digest_of(layer).trim_start_matches("sha256:").to_string();
        assert_eq!(std::fs::read(dir.path().join(hex)).unwrap(), *layer);
    }
    // Tags, then delete one: the tag is gone from the stream too.
    let tags: Value = serde_json::from_slice(
        &blocking(|| skopeo(&["list-tags", "--tls-verify=false", &creds(&token), &format!("docker://{berth}/{NS}/app")])).unwrap(),
    )
    .unwrap();
    assert_eq!(tags["Tags"], json!(["docker", "oci"]));
    blocking(|| skopeo(&["delete", "--tls-verify=false", &creds(&token), &format!("docker://{berth}/{NS}/app:docker")])).unwrap();
    let (status, _) = app.get(&istag_path(NS, "app:docker")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get(&istag_path(NS, "app:oci")).await;
    assert_eq!(status, StatusCode::OK, "the other tag stays");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_platform_index_is_copied_with_all_its_images() {
    let (app, token) = app_with_editor(&["multi"]).await;
    let upstream = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let index = TestIndex {
        format: Format::Oci,
        children: vec![TestImage::new(Format::Oci, 10, 1, 1024, "amd64"), TestImage::new(Format::Oci, 11, 1, 1024, "arm64/v8")],
        with_attestation: true,
    };
    blocking(|| upstream.push_index("src/multi", Some("v1"), &index).unwrap());
    let berth = host(&app);
    let src = format!("docker://{}", upstream.pull_spec("src/multi", "v1"));
    blocking(|| {
        skopeo_copy(&src, &format!("docker://{berth}/{NS}/multi:v1"), &["--all", "--preserve-digests", &format!("--dest-creds=me:{token}")])
    })
    .unwrap();
    let (_, istag) = app.get(&istag_path(NS, "multi:v1")).await;
    assert_eq!(istag["image"]["metadata"]["name"], index.digest());
    assert_eq!(istag["image"]["dockerImageManifests"].as_array().unwrap().len(), 3);
    // Each platform's image is stored and served by digest.
    for child in &index.children {
        let raw = blocking(|| {
            skopeo(&["inspect", "--raw", "--tls-verify=false", &creds(&token), &format!("docker://{berth}/{NS}/multi@{}", child.digest())])
        })
        .unwrap();
        assert_eq!(digest_of(&raw), child.digest());
    }
    let raw = blocking(|| skopeo(&["inspect", "--raw", "--tls-verify=false", &creds(&token), &format!("docker://{berth}/{NS}/multi:v1")]))
        .unwrap();
    assert_eq!(digest_of(&raw), index.digest());
    // A client that takes no lists gets the linux/amd64 image by tag.
    let response = request(&app, &token, Method::GET, &format!("/v2/{NS}/multi/manifests/v1"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["docker-content-digest"], index.children[0].digest().as_str());
    app.stop().await;
}

/// Sets `stream:tag` to import `from` and waits until the import succeeded.
async fn import(app: &TestApp, name: &str, from: &str) -> Value {
    let body = json!({"kind": "ImageStreamTag", "apiVersion": "image.openshift.io/v1", "metadata": {"name": name},
        "tag": {"from": {"kind": "DockerImage", "name": from}, "referencePolicy": {"type": "Local"}}});
    let (status, reply) = app.put(&istag_path(NS, name), body).await;
    assert!(status.is_success(), "{reply}");
    let istag = app.settled_tag(NS, name).await;
    assert!(istag["image"]["metadata"]["name"].is_string(), "the import succeeded: {istag}");
    istag
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_uses_the_namespace_secret_and_keeps_working_when_the_upstream_is_down() {
    let (app, token) = app_with_editor(&[]).await;
    let mut upstream =
        blocking(|| DistributionRegistry::start(Auth::Basic { user: "robot".into(), password: "s3cret-pass".into() }).unwrap());
    let image = TestImage::new(Format::Docker, 20, 3, 64 * 1024, "amd64");
    blocking(|| upstream.push("lib/base", Some("1"), &image).unwrap());
    let (status, reply) =
        app.post(&format!("/api/v1/namespaces/{NS}/secrets"), docker_config_secret("pull", &upstream.host(), "robot", "s3cret-pass")).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let istag = import(&app, "base:1", &upstream.pull_spec("lib/base", "1")).await;
    // referencePolicy Local: the tag's pull spec points at berth.
    assert_eq!(istag["image"]["dockerImageReference"], format!("registry.berth.test/{NS}/base@{}", image.digest()));

    // The client has berth's token only; the blobs come from the upstream through berth.
    let berth = host(&app);
    let pull = |dir: &std::path::Path| {
        let out = format!("dir:{}", dir.display());
        blocking(|| skopeo_copy(&format!("docker://{berth}/{NS}/base:1"), &out, &[&format!("--src-creds=me:{token}")]))
    };
    let first = tempfile::tempdir().unwrap();
    pull(first.path()).unwrap();
    for layer in &image.layers {
        let hex = digest_of(layer).trim_start_matches("sha256:").to_string();
        assert_eq!(std::fs::read(first.path().join(hex)).unwrap(), *layer);
    }
    // Mirrored: with the upstream stopped the same pull still works.
    blocking(|| upstream.stop());
    let second = tempfile::tempdir().unwrap();
    pull(second.path()).unwrap();
    assert_eq!(std::fs::read(second.path().join("manifest.json")).unwrap(), image.manifest_bytes());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_pulls_of_a_cold_blob_make_one_upstream_fetch() {
    let (app, token) = app_with_editor(&[]).await;
    let upstream = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let image = TestImage::new(Format::Oci, 30, 1, 8 << 20, "amd64");
    blocking(|| upstream.push("lib/big", Some("1"), &image).unwrap());
    import(&app, "big:1", &upstream.pull_spec("lib/big", "1")).await;
    let layer = digest_of(&image.layers[0]);
    // On S3 nothing of the download is written to the server's own disk: its data
    // directory stays far smaller than the blob while the pulls run.
    let (done, mut finished) = tokio::sync::watch::channel(false);
    let data_dir = app.dir.path().to_path_buf();
    let largest_on_disk = tokio::spawn(async move {
        let mut largest = 0;
        while !*finished.borrow_and_update() {
            largest = largest.max(bytes_under(&data_dir));
            tokio::select! {
                _ = finished.changed() => {}
                () = tokio::time::sleep(std::time::Duration::from_millis(2)) => {}
            }
        }
        largest
    });
    let pulls = (0..20).map(|_| {
        let (url, token) = (format!("{}/v2/{NS}/big/blobs/{layer}", app.base), token.clone());
        tokio::spawn(async move {
            let response = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.content_length(), Some(8 << 20));
            digest_of(&response.bytes().await.unwrap())
        })
    });
    for pull in futures::future::join_all(pulls).await {
        assert_eq!(pull.unwrap(), layer, "every client gets the whole blob");
    }
    done.send_replace(true);
    let largest = largest_on_disk.await.unwrap();
    if common::ON_SCALE_OUT_BACKENDS {
        assert!(largest < 1 << 20, "the server's data directory held {largest} bytes during a pull-through to S3");
    }
    let log = upstream.log();
    let fetches = log.lines().filter(|line| line.contains(&format!("\"GET /v2/lib/big/blobs/{layer}"))).count();
    assert_eq!(fetches, 1, "one upstream GET of the blob:\n{log}");
    app.stop().await;
}

/// Bytes in the files under `dir` (files that vanish while it counts are left out).
fn bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => bytes_under(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Starts an upload and returns its location.
async fn start_upload(app: &TestApp, token: &str) -> String {
    let response = v2(app, Some(token), Method::POST, &format!("/v2/{NS}/up/blobs/uploads/")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.headers()["location"].to_str().unwrap().to_string()
}

async fn patch(app: &TestApp, token: &str, location: &str, range: &str, chunk: Vec<u8>) -> reqwest::Response {
    request(app, token, Method::PATCH, location).header("content-range", range).body(chunk).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_uploads_resume_after_a_restart_and_check_the_digest() {
    let (mut app, token) = app_with_editor(&["up"]).await;
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let digest = digest_of(&blob);
    let location = start_upload(&app, &token).await;
    let response = patch(&app, &token, &location, "0-99999", blob[..100_000].to_vec()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["range"], "0-99999");

    app.restart().await;
    // The upload survived: its status says where to resume.
    let status = v2(&app, Some(&token), Method::GET, &location).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(status.headers()["range"], "0-99999");
    // A chunk that does not start where the upload ends is refused with where it ends.
    let wrong = patch(&app, &token, &location, "150000-299999", blob[150_000..].to_vec()).await;
    assert_eq!(wrong.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(wrong.headers()["range"], "0-99999");
    let response = patch(&app, &token, &location, "100000-199999", blob[100_000..200_000].to_vec()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // The blob is not visible before the upload is finished.
    let head = v2(&app, Some(&token), Method::HEAD, &format!("/v2/{NS}/up/blobs/{digest}")).await;
    assert_ne!(head.status(), StatusCode::OK);
    // Finish with the last chunk in the PUT.
    let put =
        request(&app, &token, Method::PUT, &format!("{location}?digest={digest}")).body(blob[200_000..].to_vec()).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::CREATED, "{:?}", put.text().await);
    let head = v2(&app, Some(&token), Method::HEAD, &format!("/v2/{NS}/up/blobs/{digest}")).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], blob.len().to_string().as_str());
    // A range of it.
    let ranged =
        request(&app, &token, Method::GET, &format!("/v2/{NS}/up/blobs/{digest}")).header("range", "bytes=1000-1999").send().await.unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.headers()["content-range"], format!("bytes 1000-1999/{}", blob.len()).as_str());
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &blob[1000..2000]);
    // The finished upload is gone.
    let gone = v2(&app, Some(&token), Method::GET, &location).await;
    assert_eq!(error_code(gone).await, (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_mismatch_stores_nothing() {
    let (app, token) = app_with_editor(&["up"]).await;
    let body = b"these are the bytes".to_vec();
    let claimed = digest_of(b"other bytes");
    let response = request(&app, &token, Method::POST, &format!("/v2/{NS}/up/blobs/uploads/?digest={claimed}"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    for digest in [claimed, digest_of(&body)] {
        let head = v2(&app, Some(&token), Method::HEAD, &format!("/v2/{NS}/up/blobs/{digest}")).await;
        assert_eq!(head.status(), StatusCode::NOT_FOUND, "{digest}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_references_and_manifests_are_refused_and_change_nothing() {
    // A namespace admin, whose pushes may create `team/app`: each is refused for what is
    // wrong with it, and none creates the stream.
    let (app, _) = app_with_editor(&[]).await;
    let token = app.token("owner", "admin", &[NS]).await;
    let before = app.revision().await;
    for (path, code) in [
        ("/v2/team/../etc/manifests/latest", "NAME_INVALID"),
        ("/v2/team/%2e%2e/manifests/latest", "NAME_INVALID"),
        ("/v2/Team/app/tags/list", "NAME_INVALID"),
        ("/v2/team/a/b/manifests/latest", "NAME_INVALID"),
        ("/v2/team/app/blobs/sha256:1234", "DIGEST_INVALID"),
        ("/v2/team/app/manifests/sha256:zz", "DIGEST_INVALID"),
        ("/v2/team/app/blobs/uploads/../../../../etc/passwd", "NAME_INVALID"),
        ("/v2/team/app/blobs/uploads/not-an-upload", "BLOB_UPLOAD_UNKNOWN"),
    ] {
        let response = v2(&app, Some(&token), Method::GET, path).await;
        let (status, found) = error_code(response).await;
        assert_eq!(found, code, "{path} ({status})");
        assert!(status.is_client_error(), "{path}: {status}");
    }
    let oci = "application/vnd.oci.image.manifest.v1+json";
    assert_eq!(
        error_code(put_manifest(&app, &token, "v1", oci, b"{not json".to_vec()).await).await,
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID".into())
    );
    let image = TestImage::new(Format::Oci, 40, 1, 128, "amd64");
    assert_eq!(
        error_code(put_manifest(&app, &token, "v1", oci, image.manifest_bytes()).await).await,
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".into()),
        "the blobs were never pushed"
    );
    let huge = vec![b' '; 5 << 20];
    assert_eq!(error_code(put_manifest(&app, &token, "v1", oci, huge).await).await, (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID".into()));
    // By digest, the bytes must hash to it.
    let wrong = put_manifest(&app, &token, &digest_of(b"x"), oci, image.manifest_bytes()).await;
    assert_eq!(error_code(wrong).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    assert_eq!(app.revision().await, before, "nothing was stored");
    let (status, _) = app.get(&format!("{IMAGE_API}/namespaces/{NS}/imagestreams/app")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_clients_log_in_through_the_token_flow_and_access_follows_roles() {
    let (app, editor) = app_with_editor(&["app"]).await;
    app.namespace("other").await;
    let viewer = app.token("viewer", "view", &[NS]).await;
    let image = TestImage::new(Format::Oci, 50, 1, 256, "amd64");
    blocking(|| client(&app, &editor).push(&format!("{NS}/app"), Some("v1"), &image)).unwrap();

    // No credentials: 401 with the challenge that names the token endpoint and the scope.
    let response = v2(&app, None, Method::GET, &format!("/v2/{NS}/app/tags/list")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with(&format!("Bearer realm=\"{}/v2/token\"", app.base)), "{challenge}");
    assert!(challenge.contains(&format!("scope=\"repository:{NS}/app:pull\"")), "{challenge}");
    // The token endpoint takes a berth token as the Basic password.
    let issued = app.registry_token(&viewer, &format!("repository:{NS}/app:pull")).await;
    let registry_token = issued["token"].as_str().unwrap().to_string();
    assert!(issued["expires_in"].as_u64().unwrap() > 0);
    let tags: Value = v2(&app, Some(&registry_token), Method::GET, &format!("/v2/{NS}/app/tags/list")).await.json().await.unwrap();
    assert_eq!(tags, json!({"name": "team/app", "tags": ["v1"]}));
    // A viewer may pull but not push; nobody sees other namespaces.
    let push = v2(&app, Some(&registry_token), Method::POST, &format!("/v2/{NS}/app/blobs/uploads/")).await;
    assert_eq!(error_code(push).await, (StatusCode::FORBIDDEN, "DENIED".into()));
    let other = v2(&app, Some(&registry_token), Method::GET, "/v2/other/app/tags/list").await;
    assert_eq!(error_code(other).await, (StatusCode::FORBIDDEN, "DENIED".into()));
    // Wrong credentials get no token.
    let refused = reqwest::Client::new().get(format!("{}/v2/token", app.base)).basic_auth("me", Some("brt_x.y")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let refusal: Value = refused.json().await.unwrap();
    assert!(refusal["errors"][0]["message"].as_str().unwrap().contains("the password must be a current berth token"), "{refusal}");
    // Revoking the berth token ends its registry tokens too.
    let (status, _) = app.delete("/apis/berth.dev/v1/tokens/viewer").await;
    assert_eq!(status, StatusCode::OK);
    let revoked = v2(&app, Some(&registry_token), Method::GET, &format!("/v2/{NS}/app/tags/list")).await;
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);

    // Anonymous: a token without credentials pulls only from namespaces that opt in.
    let anonymous: Value = reqwest::Client::new().get(format!("{}/v2/token", app.base)).send().await.unwrap().json().await.unwrap();
    let anonymous = anonymous["token"].as_str().unwrap().to_string();
    let closed = v2(&app, Some(&anonymous), Method::GET, &format!("/v2/{NS}/app/manifests/v1")).await;
    assert_eq!(closed.status(), StatusCode::UNAUTHORIZED);
    let (status, ns) = app.get(&format!("/api/v1/namespaces/{NS}")).await;
    assert_eq!(status, StatusCode::OK);
    let mut ns = ns;
    ns["metadata"]["annotations"] = json!({"berth.dev/anonymous-pull": "true"});
    let (status, reply) = app.put(&format!("/api/v1/namespaces/{NS}"), ns).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let open = v2(&app, Some(&anonymous), Method::GET, &format!("/v2/{NS}/app/manifests/v1")).await;
    assert_eq!(open.status(), StatusCode::OK);
    assert_eq!(open.headers()["docker-content-digest"], image.digest().as_str());
    let catalog: Value = v2(&app, Some(&anonymous), Method::GET, "/v2/_catalog").await.json().await.unwrap();
    assert_eq!(catalog, json!({"repositories": ["team/app"]}));
    // The catalog pages, for a cluster reader and for a namespaced one.
    app.create_stream(NS, "base").await;
    blocking(|| client(&app, &editor).push(&format!("{NS}/base"), Some("v1"), &image)).unwrap();
    blocking(|| client(&app, &app.admin).push("other/tool", Some("v1"), &image)).unwrap();
    let admin = app.admin.clone();
    let mut pages = Vec::new();
    let mut path = "/v2/_catalog?n=2".to_string();
    loop {
        let response = v2(&app, Some(&admin), Method::GET, &path).await;
        let next = response.headers().get("link").map(|l| l.to_str().unwrap().to_string());
        pages.push(response.json::<Value>().await.unwrap()["repositories"].clone());
        match next {
            Some(link) => path = link.trim_start_matches('<').split('>').next().unwrap().to_string(),
            None => break,
        }
    }
    assert_eq!(pages, [json!(["other/tool", "team/app"]), json!(["team/base"])]);
    let team_only: Value = v2(&app, Some(&editor), Method::GET, "/v2/_catalog?n=1&last=team/app").await.json().await.unwrap();
    assert_eq!(team_only["repositories"], json!(["team/base"]), "a namespaced caller sees its namespaces only");
    let push = v2(&app, Some(&anonymous), Method::POST, &format!("/v2/{NS}/app/blobs/uploads/")).await;
    assert_eq!(push.status(), StatusCode::UNAUTHORIZED, "anonymous never pushes");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_page_mounts_link_and_referrers_list_artifacts() {
    let (app, token) = app_with_editor(&["app", "copy"]).await;
    let image = TestImage::new(Format::Oci, 60, 2, 512, "amd64");
    let registry = blocking(|| client(&app, &token));
    for tag in ["a", "b", "c"] {
        blocking(|| registry.push(&format!("{NS}/app"), Some(tag), &image)).unwrap();
    }
    let page = v2(&app, Some(&token), Method::GET, &format!("/v2/{NS}/app/tags/list?n=2")).await;
    assert_eq!(page.headers()["link"], format!("</v2/{NS}/app/tags/list?n=2&last=b>; rel=\"next\"").as_str());
    assert_eq!(page.json::<Value>().await.unwrap()["tags"], json!(["a", "b"]));
    let rest: Value = v2(&app, Some(&token), Method::GET, &format!("/v2/{NS}/app/tags/list?n=2&last=b")).await.json().await.unwrap();
    assert_eq!(rest["tags"], json!(["c"]));

    // Mount a layer into another repository without sending it.
    let layer = digest_of(&image.layers[0]);
    let mount = v2(&app, Some(&token), Method::POST, &format!("/v2/{NS}/copy/blobs/uploads/?mount={layer}&from={NS}/app")).await;
    assert_eq!(mount.status(), StatusCode::CREATED);
    let head = v2(&app, Some(&token), Method::HEAD, &format!("/v2/{NS}/copy/blobs/{layer}")).await;
    assert_eq!(head.status(), StatusCode::OK);
    let never = v2(&app, Some(&token), Method::HEAD, &format!("/v2/{NS}/third/blobs/{layer}")).await;
    assert_eq!(never.status(), StatusCode::NOT_FOUND, "a repository sees only its own blobs");

    // An artifact whose subject is the image shows up in the referrers of the image.
    let empty = b"{}".to_vec();
    blocking(|| registry.push_blob(&format!("{NS}/app"), &empty)).unwrap();
    let artifact = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(&empty), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(&empty), "size": 2}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.digest(), "size": image.manifest_bytes().len()},
        "annotations": {"org.example.kind": "sbom"},
    });
    let bytes = serde_json::to_vec(&artifact).unwrap();
    let put = put_manifest(&app, &token, &digest_of(&bytes), "application/vnd.oci.image.manifest.v1+json", bytes.clone()).await;
    assert_eq!(put.status(), StatusCode::CREATED);
    assert_eq!(put.headers()["oci-subject"], image.digest().as_str());
    let referrers: Value =
        v2(&app, Some(&token), Method::GET, &format!("/v2/{NS}/app/referrers/{}", image.digest())).await.json().await.unwrap();
    assert_eq!(referrers["manifests"][0]["digest"], digest_of(&bytes));
    assert_eq!(referrers["manifests"][0]["artifactType"], "application/vnd.example.sbom");
    assert_eq!(referrers["manifests"][0]["annotations"]["org.example.kind"], "sbom");
    let filtered = v2(&app, Some(&token), Method::GET, &format!("/v2/{NS}/app/referrers/{}?artifactType=text/other", image.digest())).await;
    assert_eq!(filtered.headers()["oci-filters-applied"], "artifactType");
    assert_eq!(filtered.json::<Value>().await.unwrap()["manifests"], json!([]));
    blocking(move || drop(registry));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_moves_the_tag_with_history_and_needs_an_existing_namespace() {
    let (app, token) = app_with_editor(&["app"]).await;
    let registry = blocking(|| client(&app, &token));
    let (first, second) = (TestImage::new(Format::Docker, 70, 1, 256, "amd64"), TestImage::new(Format::Docker, 71, 1, 256, "amd64"));
    blocking(|| registry.push(&format!("{NS}/app"), Some("v1"), &first)).unwrap();
    blocking(|| registry.push(&format!("{NS}/app"), Some("v1"), &second)).unwrap();
    let stream = app.stream(NS, "app").await;
    let history: Vec<&str> =
        stream["status"]["tags"][0]["items"].as_array().unwrap().iter().map(|e| e["image"].as_str().unwrap()).collect();
    assert_eq!(history, [second.digest(), first.digest()], "newest first, the old image kept");
    // A push by digest stores the image and moves no tag.
    let third = TestImage::new(Format::Docker, 72, 1, 256, "amd64");
    blocking(|| registry.push(&format!("{NS}/app"), None, &third)).unwrap();
    let (status, _) = app.get(&format!("{IMAGE_API}/images/{}", third.digest())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.stream(NS, "app").await["status"]["tags"].as_array().unwrap().len(), 1);
    let by_digest = v2(&app, Some(&token), Method::GET, &format!("/v2/{NS}/app/manifests/{}", third.digest())).await;
    assert_eq!(by_digest.status(), StatusCode::OK);

    let before = app.revision().await;
    let admin = app.admin.clone();
    let response = v2(&app, Some(&admin), Method::POST, "/v2/nowhere/app/blobs/uploads/").await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!((status, body["errors"][0]["code"].as_str().unwrap()), (StatusCode::NOT_FOUND, "NAME_UNKNOWN"));
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("berth create namespace nowhere"), "{body}");
    assert_eq!(app.revision().await, before);
    blocking(move || drop(registry));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_cap_get_429_until_one_ends() {
    let app = TestApp::start_with(|config| config.registry.max_concurrent_uploads = 1).await;
    app.namespace(NS).await;
    app.create_stream(NS, "up").await;
    let token = app.token("pusher", "edit", &[NS]).await;
    let first = start_upload(&app, &token).await;
    let second = start_upload(&app, &token).await;
    // The first PATCH keeps sending until told to stop.
    let (feed, body) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    feed.send(Ok(vec![1u8; 1024])).await.unwrap();
    let streaming = {
        let (url, token) = (format!("{}{first}", app.base), token.clone());
        let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(body));
        tokio::spawn(async move { reqwest::Client::new().patch(url).bearer_auth(token).body(body).send().await.unwrap().status() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let refused = patch(&app, &token, &second, "0-9", vec![2u8; 10]).await;
    assert_eq!(error_code(refused).await, (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS".into()));
    drop(feed);
    assert_eq!(streaming.await.unwrap(), StatusCode::ACCEPTED);
    let accepted = patch(&app, &token, &second, "0-9", vec![2u8; 10]).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    app.stop().await;
}

/// Pushes `blob` to `team/<repository>` in one request and returns its digest.
async fn push_blob(app: &TestApp, token: &str, repository: &str, blob: &[u8]) -> String {
    let digest = digest_of(blob);
    let response = request(app, token, Method::POST, &format!("/v2/{NS}/{repository}/blobs/uploads/?digest={digest}"))
        .body(blob.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "{:?}", response.text().await);
    digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_deleted_per_repository_and_uploads_cancelled() {
    let (app, token) = app_with_editor(&["one", "two", "up"]).await;
    let blob = b"a layer both repositories have".to_vec();
    let digest = push_blob(&app, &token, "one", &blob).await;
    push_blob(&app, &token, "two", &blob).await;
    let deleted = v2(&app, Some(&token), Method::DELETE, &format!("/v2/{NS}/one/blobs/{digest}")).await;
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    let gone = v2(&app, Some(&token), Method::GET, &format!("/v2/{NS}/one/blobs/{digest}")).await;
    assert_eq!(error_code(gone).await, (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into()));
    let kept = v2(&app, Some(&token), Method::GET, &format!("/v2/{NS}/two/blobs/{digest}")).await;
    assert_eq!(kept.status(), StatusCode::OK, "the other repository still links it");
    assert_eq!(kept.bytes().await.unwrap().as_ref(), blob.as_slice());
    let again = v2(&app, Some(&token), Method::DELETE, &format!("/v2/{NS}/one/blobs/{digest}")).await;
    assert_eq!(error_code(again).await, (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into()));
    // A viewer may not delete.
    let viewer = app.token("viewer", "view", &[NS]).await;
    let refused = v2(&app, Some(&viewer), Method::DELETE, &format!("/v2/{NS}/two/blobs/{digest}")).await;
    assert_eq!(error_code(refused).await, (StatusCode::FORBIDDEN, "DENIED".into()));
    // Pushed again, it is served again.
    push_blob(&app, &token, "one", &blob).await;
    let back = v2(&app, Some(&token), Method::HEAD, &format!("/v2/{NS}/one/blobs/{digest}")).await;
    assert_eq!(back.status(), StatusCode::OK);

    // Cancelling an upload: 204, then it is unknown.
    let location = start_upload(&app, &token).await;
    patch(&app, &token, &location, "0-9", vec![7u8; 10]).await;
    let cancelled = v2(&app, Some(&token), Method::DELETE, &location).await;
    assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
    let unknown = v2(&app, Some(&token), Method::GET, &location).await;
    assert_eq!(error_code(unknown).await, (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_ranges_are_served_as_rfc_9110_says() {
    let (app, token) = app_with_editor(&["app"]).await;
    let blob: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let digest = push_blob(&app, &token, "app", &blob).await;
    let path = format!("/v2/{NS}/app/blobs/{digest}");
    let ranged = |range: &'static str| request(&app, &token, Method::GET, &path).header("range", range).send();
    // A suffix: the last N bytes.
    let suffix = ranged("bytes=-100").await.unwrap();
    assert_eq!(suffix.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(suffix.headers()["content-range"], "bytes 9900-9999/10000");
    assert_eq!(suffix.bytes().await.unwrap().as_ref(), &blob[9900..]);
    // From a byte to the end, and a range whose end is past the end.
    let open = ranged("bytes=9000-").await.unwrap();
    assert_eq!(open.headers()["content-range"], "bytes 9000-9999/10000");
    assert_eq!(open.bytes().await.unwrap().len(), 1000);
    let clamped = ranged("bytes=9990-20000").await.unwrap();
    assert_eq!(clamped.headers()["content-range"], "bytes 9990-9999/10000");
    // Unsatisfiable: 416 with the size, and a body whose length is its Content-Length.
    for range in ["bytes=10000-", "bytes=20000-20010", "bytes=-0", "bytes=abc"] {
        let refused = ranged(range).await.unwrap();
        assert_eq!(refused.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(refused.headers()["content-range"], "bytes */10000", "{range}");
        let length: usize = refused.headers()["content-length"].to_str().unwrap().parse().unwrap();
        assert_eq!(refused.bytes().await.unwrap().len(), length, "{range}");
    }
    // Several ranges, or another unit: the whole blob.
    for range in ["bytes=0-1,5-6", "items=0-1"] {
        let whole = ranged(range).await.unwrap();
        assert_eq!(whole.status(), StatusCode::OK, "{range}");
        assert_eq!(whole.bytes().await.unwrap().len(), blob.len());
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_of_anything_unknown_are_an_empty_index() {
    let (app, token) = app_with_editor(&[]).await;
    let unknown = digest_of(b"no manifest has this digest");
    for repository in ["app", "never-pushed"] {
        let response = v2(&app, Some(&token), Method::GET, &format!("/v2/{NS}/{repository}/referrers/{unknown}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{repository}");
        assert_eq!(response.headers()["content-type"], "application/vnd.oci.image.index.v1+json");
        let index: Value = response.json().await.unwrap();
        assert_eq!(index, json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}));
    }
    let invalid = v2(&app, Some(&token), Method::GET, &format!("/v2/{NS}/app/referrers/sha256:nothex")).await;
    assert_eq!(error_code(invalid).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_by_digest_creates_the_repository_as_a_push_by_tag_does() {
    // A namespace admin's push creates a stream (an editor's does not: stream_creation.rs).
    let (app, _) = app_with_editor(&[]).await;
    let token = app.token("owner", "admin", &[NS]).await;
    let image = TestImage::new(Format::Oci, 80, 2, 512, "amd64");
    for layer in image.layers.iter().chain(std::iter::once(&image.config_bytes())) {
        push_blob(&app, &token, "fresh", layer).await;
    }
    let path = format!("/v2/{NS}/fresh/manifests/{}", image.digest());
    let put = request(&app, &token, Method::PUT, &path)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(image.manifest_bytes())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED, "{:?}", put.text().await);
    // The stream exists, with no tag; the manifest is served by digest; tagging it later works.
    let stream = app.stream(NS, "fresh").await;
    assert_eq!(stream["status"]["tags"], json!([]));
    let by_digest = v2(&app, Some(&token), Method::GET, &path).await;
    assert_eq!(by_digest.status(), StatusCode::OK);
    assert_eq!(by_digest.bytes().await.unwrap().as_ref(), image.manifest_bytes().as_slice());
    let tagged = put_manifest_to(&app, &token, "fresh", "v1", image.manifest_bytes()).await;
    assert_eq!(tagged.status(), StatusCode::CREATED);
    // A viewer may not create one.
    let viewer = app.token("viewer", "view", &[NS]).await;
    let refused = request(&app, &viewer, Method::PUT, &format!("/v2/{NS}/other/manifests/{}", image.digest()))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(image.manifest_bytes())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(refused).await, (StatusCode::FORBIDDEN, "DENIED".into()));
    let (status, _) = app.get(&format!("{IMAGE_API}/namespaces/{NS}/imagestreams/other")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn put_manifest_to(app: &TestApp, token: &str, repository: &str, reference: &str, body: Vec<u8>) -> reqwest::Response {
    request(app, token, Method::PUT, &format!("/v2/{NS}/{repository}/manifests/{reference}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_distributable_layers_need_not_be_pushed_but_everything_else_does() {
    let (app, token) = app_with_editor(&["win"]).await;
    let config = br#"{"architecture":"amd64","os":"windows","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let config_digest = push_blob(&app, &token, "win", &config).await;
    let foreign = digest_of(b"a windows base layer kept elsewhere");
    let manifest = |layer_digest: &str| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": layer_digest,
                "size": 123, "urls": ["https://mcr.example.com/layer"]}],
        }))
        .unwrap()
    };
    let accepted = put_manifest_to(&app, &token, "win", "ltsc", manifest(&foreign)).await;
    assert_eq!(accepted.status(), StatusCode::CREATED, "{:?}", accepted.text().await);
    // The same layer without `urls` must be in the registry.
    let mut plain: Value = serde_json::from_slice(&manifest(&digest_of(b"another layer"))).unwrap();
    plain["layers"][0].as_object_mut().unwrap().remove("urls");
    let refused = put_manifest_to(&app, &token, "win", "plain", serde_json::to_vec(&plain).unwrap()).await;
    assert_eq!(error_code(refused).await, (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".into()));
    app.stop().await;
}

/// Content offload: with `registry.blobRedirectSeconds`, a blob GET on S3 is answered
/// with a redirect to a presigned URL once the caller's access is checked (no redirect
/// for a caller who may not pull), and real clients follow it; on the filesystem the
/// setting changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_gets_redirect_to_the_object_store_after_the_access_check() {
    let app = TestApp::start_with(|config| config.registry.blob_redirect_seconds = 60).await;
    app.namespace(NS).await;
    app.namespace("other").await;
    app.create_stream(NS, "app").await;
    let token = app.token("pusher", "edit", &[NS]).await;
    let outsider = app.token("outsider", "edit", &["other"]).await;
    let image = TestImage::new(Format::Oci, 7, 2, 300_000, "amd64");
    let berth = host(&app);
    blocking(|| client(&app, &token).push(&format!("{NS}/app"), Some("v1"), &image)).unwrap();
    let layer = &image.layers[0];
    let path = format!("/v2/{NS}/app/blobs/{}", digest_of(layer));
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let refused = no_redirects.get(format!("{}{path}", app.base)).bearer_auth(&outsider).send().await.unwrap();
    assert!(refused.status().is_client_error(), "{}", refused.status());
    assert!(refused.headers().get("location").is_none(), "no URL for a caller who may not pull");
    let answered = no_redirects.get(format!("{}{path}", app.base)).bearer_auth(&token).send().await.unwrap();
    if common::ON_SCALE_OUT_BACKENDS {
        assert_eq!(answered.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(answered.headers()["docker-content-digest"], digest_of(layer).as_str());
        let location = answered.headers()["location"].to_str().unwrap().to_string();
        // The presigned URL needs no token, and serves ranges as S3 does.
        let fetched = reqwest::get(&location).await.unwrap();
        assert_eq!(fetched.bytes().await.unwrap().as_ref(), layer.as_slice());
        let ranged = reqwest::Client::new().get(&location).header("range", "bytes=10-19").send().await.unwrap();
        assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(ranged.bytes().await.unwrap().as_ref(), &layer[10..20]);
    } else {
        assert_eq!(answered.status(), StatusCode::OK, "the filesystem has no URLs to hand out");
        assert_eq!(answered.bytes().await.unwrap().as_ref(), layer.as_slice());
    }
    // skopeo follows the redirects and gets every layer.
    let out = tempfile::tempdir().unwrap();
    blocking(|| {
        skopeo_copy(
            &format!("docker://{berth}/{NS}/app:v1"),
            &format!("dir:{}", out.path().display()),
            &[&format!("--src-creds=me:{token}")],
        )
    })
    .unwrap();
    for layer in &image.layers {
        let hex = digest_of(layer).trim_start_matches("sha256:").to_string();
        assert_eq!(std::fs::read(out.path().join(hex)).unwrap(), *layer);
    }
    app.stop().await;
}
