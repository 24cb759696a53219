//! Several servers on one PostgreSQL database (`berth serve --database`), PostgreSQL from
//! Debian on loopback: any server answers any request, a write acknowledged by one is
//! read at once through another, a watch on one sees every write made through another,
//! and the controllers that must run once hold leases, so imports go on after the server
//! holding them stops.

mod common;

use berth_testkit::{Auth, DistributionRegistry, Format, TestImage};
use common::{IMAGE_API, TestApp, blocking, istag_path, watch_events};
use reqwest::StatusCode;
use serde_json::json;

const NS: &str = "team";

/// Sets `stream:tag` on `app` to import `from` and waits for the import to settle.
async fn import(app: &TestApp, name: &str, from: &str) -> String {
    let body = json!({"kind": "ImageStreamTag", "apiVersion": "image.openshift.io/v1", "metadata": {"name": name},
        "tag": {"from": {"kind": "DockerImage", "name": from}}});
    let (status, reply) = app.put(&istag_path(NS, name), body).await;
    assert!(status.is_success(), "{reply}");
    let istag = app.settled_tag(NS, name).await;
    istag["image"]["metadata"]["name"].as_str().unwrap_or_else(|| panic!("{name} was imported: {istag}")).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_database_serve_one_catalog_and_hand_over_their_controllers() {
    let url = blocking(|| berth_testkit::postgres::database().unwrap());
    let first = TestApp::start_with(|config| config.database = Some(url)).await;
    let second = first.start_replica().await;
    first.namespace(NS).await;

    // A write acknowledged by one is read at once through the other.
    let digest = first.map(NS, "app", "v1", "one").await;
    let (status, istag) = second.get(&istag_path(NS, "app:v1")).await;
    assert_eq!(status, StatusCode::OK, "{istag}");
    assert_eq!(istag["image"]["metadata"]["name"], digest.as_str());

    // A watch on one sees the writes made through the other, in order.
    let start = second.revision().await;
    let watch = second
        .http()
        .get(format!("{}{IMAGE_API}/namespaces/{NS}/imagestreams?watch=true&resourceVersion={start}", second.base))
        .bearer_auth(&second.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), StatusCode::OK);
    let mut events = watch_events(watch);
    let moved = first.map(NS, "app", "v2", "two").await;
    let added = first.map(NS, "other", "v1", "three").await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv()).await.expect("an event arrives").unwrap();
        seen.push((event["type"].as_str().unwrap().to_string(), event["object"]["metadata"]["name"].as_str().unwrap().to_string()));
    }
    assert_eq!(seen, [("MODIFIED".to_string(), "app".to_string()), ("ADDED".to_string(), "other".to_string())]);
    let (_, stream) = second.get(&format!("{IMAGE_API}/namespaces/{NS}/imagestreams/app")).await;
    assert_eq!(stream["status"]["tags"].as_array().unwrap().len(), 2, "{stream}");
    let _ = (moved, added);

    // The import controller runs on one of them (the first took its lease); an import
    // asked for through the second is done.
    let registry = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let image = TestImage::new(Format::Oci, 1, 1, 512, "amd64");
    let pushed = blocking(|| registry.push("team/app", Some("1.0"), &image).unwrap());
    let from = format!("{}/team/app:1.0", registry.host());
    assert_eq!(import(&second, "app:imported", &from).await, pushed.digest);

    // The first stops and gives its leases up: the second takes the controllers over.
    first.stop().await;
    let image = TestImage::new(Format::Oci, 2, 1, 512, "amd64");
    let pushed = blocking(|| registry.push("team/app", Some("2.0"), &image).unwrap());
    let from = format!("{}/team/app:2.0", registry.host());
    assert_eq!(import(&second, "app:after", &from).await, pushed.digest, "imports go on after the holder stops");
    second.stop().await;
}

/// Replicas on PostgreSQL and S3 serve one registry: a registry token one server issued
/// works on another (the token key is in the database), an upload started on one goes
/// on and finishes on others, and what was pushed through one is pulled through another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgres_and_s3_serve_one_registry() {
    let url = blocking(|| berth_testkit::postgres::database().unwrap());
    let bucket = blocking(|| berth_testkit::s3::bucket().unwrap());
    let first = TestApp::start_with(|config| {
        config.database = Some(url);
        config.blob_store = Some(berth_server::BlobStoreUrl { url: bucket.url.clone(), options: bucket.options() });
    })
    .await;
    let second = first.start_replica().await;
    first.namespace(NS).await;
    first.create_stream(NS, "app").await;
    let editor = first.token("pusher", "edit", &[NS]).await;
    let issued = first.registry_token(&editor, &format!("repository:{NS}/app:pull,push")).await;
    let token = issued["token"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    // A chunked upload: started on the first, a chunk through each, finished on the second.
    let layer: Vec<u8> = (0..90_000u32).map(|i| (i % 241) as u8).collect();
    let digest = berth_testkit::digest_of(&layer);
    let started = http.post(format!("{}/v2/{NS}/app/blobs/uploads/", first.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let mut location = started.headers()["location"].to_str().unwrap().to_string();
    for (server, chunk) in [(&first, &layer[..30_000]), (&second, &layer[30_000..60_000]), (&first, &layer[60_000..])] {
        let patched = http.patch(format!("{}{location}", server.base)).bearer_auth(&token).body(chunk.to_vec()).send().await.unwrap();
        assert_eq!(patched.status(), StatusCode::ACCEPTED, "{}", patched.text().await.unwrap());
        location = patched.headers()["location"].to_str().unwrap().to_string();
    }
    let finished = http.put(format!("{}{location}?digest={digest}", second.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(finished.status(), StatusCode::CREATED, "{}", finished.text().await.unwrap());
    // Pulled through the other server, with the token the first one issued.
    let pulled = http.get(format!("{}/v2/{NS}/app/blobs/{digest}", first.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), layer.as_slice());

    // A whole image pushed through one is pulled through the other.
    let image = TestImage::new(Format::Oci, 3, 2, 20_000, "amd64");
    let (host, admin) = (second.base.trim_start_matches("http://").to_string(), second.admin.clone());
    blocking(|| berth_testkit::RegistryClient::new(&host, Some(("me", &admin))).unwrap().push(&format!("{NS}/app"), Some("v1"), &image))
        .unwrap();
    let manifest = http
        .get(format!("{}/v2/{NS}/app/manifests/v1", first.base))
        .bearer_auth(&token)
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.headers()["docker-content-digest"], image.digest().as_str());
    for layer in &image.layers {
        let got =
            http.get(format!("{}/v2/{NS}/app/blobs/{}", first.base, berth_testkit::digest_of(layer))).bearer_auth(&token).send().await;
        assert_eq!(got.unwrap().bytes().await.unwrap().as_ref(), layer.as_slice());
    }
    second.stop().await;
    first.stop().await;
}

/// Class labels follow a class created through any replica, also on one that does not
/// run the class labeller; and a replica whose leases are taken from it stops its
/// controllers and runs them again when it takes the leases back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_labels_follow_every_replica_and_a_replica_runs_its_controllers_again_when_its_leases_come_back() {
    let url = blocking(|| berth_testkit::postgres::database().unwrap());
    let first = TestApp::start_with(|config| config.database = Some(url.clone())).await;
    let second = first.start_replica().await;
    first.namespace(NS).await;
    let registry = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let base = TestImage::new(Format::Oci, 31, 2, 256, "amd64");
    let built = base.built_on(32, 1);
    blocking(|| {
        registry.push("team/base", Some("1"), &base).unwrap();
        registry.push("team/app", Some("1"), &built).unwrap();
    });
    assert_eq!(import(&first, "base:1", &registry.pull_spec("team/base", "1")).await, base.digest());
    assert_eq!(import(&first, "app:1", &registry.pull_spec("team/app", "1")).await, built.digest());

    // The second resolves class labels before there is a class (none), then a class is
    // made through the first, whose server runs the class labeller: the second labels
    // the image built on the class's target as well.
    async fn vendor_label(app: &TestApp, digest: &str) -> serde_json::Value {
        let (status, image) = app.get(&format!("{IMAGE_API}/images/{digest}")).await;
        assert_eq!(status, StatusCode::OK, "{image}");
        image["metadata"]["labels"]["class.berth.dev/vendor"].clone()
    }
    let built_digest = built.digest();
    let labels = |app| vendor_label(app, &built_digest);
    assert!(labels(&second).await.is_null());
    let class = json!({"apiVersion": "berth.dev/v1", "kind": "ImageClass", "metadata": {"name": "vendor"},
        "spec": {"target": {"namespace": NS, "name": "base:1"}}});
    let (status, body) = first.post("/apis/berth.dev/v1/imageclasses", class).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while labels(&second).await != "current" {
        assert!(std::time::Instant::now() < deadline, "the second replica never labelled the image of the class");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(labels(&first).await, "current");

    // Only the first is left. Its leases are taken from it for a few seconds (as a
    // replica that took them after a pause in its renewals would); it stops its
    // controllers, and when it takes the leases back it imports again.
    second.stop().await;
    let held = blocking(|| berth_testkit::postgres::psql(&url, "SELECT string_agg(name, ',' ORDER BY name) FROM leases").unwrap());
    assert!(held.split(',').any(|name| name == "imports"), "the controllers' leases: {held}");
    blocking(|| {
        berth_testkit::postgres::psql(&url, "UPDATE leases SET holder = 'another replica', expires = now() + interval '3 seconds'").unwrap()
    });
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let next = TestImage::new(Format::Oci, 33, 1, 256, "amd64");
    blocking(|| registry.push("team/app", Some("2"), &next).unwrap());
    assert_eq!(
        import(&first, "app:2", &registry.pull_spec("team/app", "2")).await,
        next.digest(),
        "the import controller runs again where its lease came back"
    );
    let holders = blocking(|| berth_testkit::postgres::psql(&url, "SELECT DISTINCT holder FROM leases").unwrap());
    assert!(!holders.contains("another replica"), "the first took every lease back: {holders}");
    first.stop().await;
}
