//! Lifecycle: usage reports counted on distinct layers (and the same after a restart),
//! pruning that removes what its plan says and frees the blobs nothing holds any longer,
//! online: pushes during a prune survive.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use berth_testkit::{Format, RegistryClient, TestImage, digest_of};
use common::{IMAGE_API, TestApp, blocking};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TOP: &str = "/apis/berth.dev/v1/top";
const PRUNES: &str = "/apis/berth.dev/v1/imageprunes";

/// A registry client for berth (made on a blocking thread: it has a runtime of its own).
fn registry_client(base: &str, token: &str) -> RegistryClient {
    RegistryClient::new(base.trim_start_matches("http://"), Some(("me", token))).unwrap()
}

/// A 2-layer base of 4,096 bytes each, and images built on it with one 128-byte layer each.
fn base() -> TestImage {
    TestImage::new(Format::Oci, 1, 2, 4096, "amd64")
}

async fn push(app: &TestApp, repository: &str, tag: &str, image: &TestImage) -> String {
    let (base, token, repository, tag, image) =
        (app.base.clone(), app.admin.clone(), repository.to_string(), tag.to_string(), image.clone());
    blocking(move || registry_client(&base, &token).push(&repository, Some(&tag), &image).unwrap().digest)
}

async fn app_with_grace(grace_seconds: u64) -> TestApp {
    let app = TestApp::start_with(|config| config.registry.blob_grace_seconds = grace_seconds).await;
    for ns in ["team", "other"] {
        app.namespace(ns).await;
    }
    app
}

fn rows(report: &Value, key: impl Fn(&Value) -> String) -> std::collections::BTreeMap<String, &Value> {
    report["items"].as_array().unwrap().iter().map(|item| (key(item), item)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reports_count_distinct_layers_and_are_the_same_after_a_restart() {
    let mut app = app_with_grace(7200).await;
    let base = base();
    let (first, second) = (base.built_on(10, 1), base.built_on(11, 1));
    let base_digest = push(&app, "team/base", "v1", &base).await;
    let first_digest = push(&app, "team/app", "v1", &first).await;
    push(&app, "team/app", "v2", &second).await;
    push(&app, "other/base", "v1", &base).await;

    let (status, streams) = app.get(&format!("{TOP}/imagestreams")).await;
    assert_eq!(status, StatusCode::OK, "{streams}");
    let by_name = rows(&streams, |i| format!("{}/{}", i["namespace"].as_str().unwrap(), i["name"].as_str().unwrap()));
    // The base's two layers once each; each app image adds its own 128 bytes.
    assert_eq!((by_name["team/base"]["storage"].as_u64(), by_name["team/base"]["images"].as_u64()), (Some(8192), Some(1)));
    assert_eq!(
        (by_name["team/app"]["storage"].as_u64(), by_name["team/app"]["images"].as_u64(), by_name["team/app"]["layers"].as_u64()),
        (Some(8192 + 256), Some(2), Some(4))
    );

    let (status, namespaces) = app.get(&format!("{TOP}/namespaces")).await;
    assert_eq!(status, StatusCode::OK, "{namespaces}");
    let by_ns = rows(&namespaces, |i| i["name"].as_str().unwrap().to_string());
    // team holds the base once though two streams name its layers; other holds it too.
    assert_eq!(by_ns["team"]["storage"].as_u64(), Some(8192 + 256));
    assert_eq!((by_ns["team"]["imagestreams"].as_u64(), by_ns["team"]["images"].as_u64()), (Some(2), Some(3)));
    assert_eq!(by_ns["other"]["storage"].as_u64(), Some(8192));

    let (status, images) = app.get(&format!("{TOP}/images")).await;
    assert_eq!(status, StatusCode::OK, "{images}");
    let by_image = rows(&images, |i| i["name"].as_str().unwrap().to_string());
    let row = by_image[&first_digest];
    assert_eq!(row["imageStreamTags"], json!(["team/app:v1 (latest)"]));
    assert_eq!(row["parents"], json!([base_digest]));
    assert_eq!((row["storage"].as_u64(), row["managed"].as_bool()), (Some(8192 + 128), Some(true)));
    assert_eq!(by_image[&base_digest]["imageStreamTags"], json!(["other/base:v1 (latest)", "team/base:v1 (latest)"]));

    // A tenant sees its own namespace only.
    let viewer = app.token("viewer", "view", &["other"]).await;
    let (_, theirs) = app.send(&viewer, Method::GET, &format!("{TOP}/imagestreams"), None).await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 1, "{theirs}");
    let (status, refused) = app.send(&viewer, Method::GET, &format!("{TOP}/images?namespace=team"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");

    // The figures come from indexes rebuilt at start: the same after a restart.
    app.restart().await;
    for what in ["imagestreams", "namespaces", "images"] {
        let (_, after) = app.get(&format!("{TOP}/{what}")).await;
        let before = match what {
            "imagestreams" => &streams,
            "namespaces" => &namespaces,
            _ => &images,
        };
        assert_eq!(&after, before, "{what} after a restart");
    }
    app.stop().await;
}

/// Every blob file of the data directory's blob store.
fn stored_blobs(app: &TestApp) -> BTreeSet<String> {
    let root = app.dir.path().join("blobs/blobs/sha256");
    let mut blobs = BTreeSet::new();
    for prefix in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for blob in std::fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
            blobs.insert(format!("sha256:{}", blob.file_name().to_string_lossy()));
        }
    }
    blobs
}

/// The layers and configs of every stored Image.
async fn referenced_blobs(app: &TestApp) -> BTreeSet<String> {
    let (status, images) = app.get(&format!("{IMAGE_API}/images")).await;
    assert_eq!(status, StatusCode::OK, "{images}");
    let mut blobs = BTreeSet::new();
    for image in images["items"].as_array().unwrap() {
        for layer in image["dockerImageLayers"].as_array().into_iter().flatten() {
            blobs.insert(layer["name"].as_str().unwrap().to_string());
        }
        if let Some(config) = image["dockerImageMetadata"]["Id"].as_str() {
            blobs.insert(config.to_string());
        }
    }
    blobs
}

async fn status_of(app: &TestApp, method: Method, path: &str) -> StatusCode {
    app.send(&app.admin.clone(), method, path, None).await.0
}

/// Whether every blob of `image` and its manifest can be pulled from `repository`.
async fn pullable(app: &TestApp, repository: &str, image: &TestImage) -> bool {
    let mut paths = vec![format!("/v2/{repository}/manifests/{}", image.digest())];
    paths.extend(image.layers.iter().chain([&image.config_bytes()]).map(|blob| format!("/v2/{repository}/blobs/{}", digest_of(blob))));
    for path in paths {
        if status_of(app, Method::GET, &path).await != StatusCode::OK {
            return false;
        }
    }
    true
}

async fn prune(app: &TestApp, spec: Value, dry_run: bool) -> Value {
    let path = if dry_run { format!("{PRUNES}?dryRun=All") } else { PRUNES.to_string() };
    let (status, answer) = app.post(&path, json!({"apiVersion": "berth.dev/v1", "kind": "ImagePrune", "spec": spec})).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_prune_removes_what_the_dry_run_planned_and_frees_exactly_the_unheld_blobs() {
    let app = app_with_grace(0).await;
    let base = base();
    // Five pushes to one tag: its history, newest first, is images[4] .. images[0].
    let images: Vec<TestImage> = (0..5).map(|i| base.built_on(100 + i, 1)).collect();
    for image in &images {
        push(&app, "team/app", "latest", image).await;
    }
    let spec = json!({"keepTagRevisions": 2, "keepYoungerThan": "0s"});
    let plan = prune(&app, spec.clone(), true).await;
    let planned: Vec<(u64, String)> = plan["status"]["plan"]["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["revision"].as_u64().unwrap(), r["image"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(planned, vec![(2, images[2].digest()), (3, images[1].digest()), (4, images[0].digest())]);
    let mut planned_images: Vec<&str> =
        plan["status"]["plan"]["images"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    planned_images.sort();
    let mut expected: Vec<String> = images[..3].iter().map(TestImage::digest).collect();
    expected.sort();
    assert_eq!(planned_images, expected);
    // Each removed image's own layer: the base stays with the kept images.
    assert_eq!(plan["status"]["plan"]["freedBytes"].as_u64(), Some(3 * 128));
    // A dry run changes nothing.
    assert_eq!(app.stream("team", "app").await["status"]["tags"][0]["items"].as_array().unwrap().len(), 5);
    assert!(pullable(&app, "team/app", &images[0]).await);

    let done = prune(&app, spec, false).await;
    let status = &done["status"];
    assert_eq!((status["removedRevisions"].as_u64(), status["removedImages"].as_u64()), (Some(3), Some(3)), "{done}");
    // Three own layers and three configs.
    assert_eq!(status["sweep"]["blobsRemoved"].as_u64(), Some(6), "{done}");
    assert_eq!(app.stream("team", "app").await["status"]["tags"][0]["items"].as_array().unwrap().len(), 2);
    // What stays is exactly what the remaining Images hold; the pruned images are gone.
    assert_eq!(stored_blobs(&app), referenced_blobs(&app).await);
    for kept in &images[3..] {
        assert!(pullable(&app, "team/app", kept).await, "a kept image lost a blob");
    }
    let own_layer = digest_of(images[0].layers.last().unwrap());
    assert_eq!(status_of(&app, Method::GET, &format!("/v2/team/app/blobs/{own_layer}")).await, StatusCode::NOT_FOUND);
    assert_eq!(status_of(&app, Method::GET, &format!("/v2/team/app/manifests/{}", images[0].digest())).await, StatusCode::NOT_FOUND);

    // A push right after the prune works, blobs the prune removed included.
    push(&app, "team/app", "again", &images[0]).await;
    assert!(pullable(&app, "team/app", &images[0]).await);
    app.stop().await;
}

/// Sets the modification time of every blob file to `age` ago.
fn age_blobs(app: &TestApp, age: Duration) {
    let past = SystemTime::now() - age;
    let root = app.dir.path().join("blobs/blobs");
    for algorithm in std::fs::read_dir(&root).unwrap().flatten() {
        for prefix in std::fs::read_dir(algorithm.path()).unwrap().flatten() {
            for blob in std::fs::read_dir(prefix.path()).unwrap().flatten() {
                std::fs::File::options().write(true).open(blob.path()).unwrap().set_modified(past).unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_during_a_prune_survive_it() {
    let app = app_with_grace(600).await;
    let base = base();
    // Garbage for the prune: images whose tags are deleted, written three hours ago.
    let junk: Vec<TestImage> = (0..12).map(|i| base.built_on(200 + i, 2)).collect();
    for (i, image) in junk.iter().enumerate() {
        push(&app, "team/junk", &format!("v{i}"), image).await;
    }
    let (status, body) = app.delete(&format!("{IMAGE_API}/namespaces/team/imagestreams/junk")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    age_blobs(&app, Duration::from_secs(3 * 3600));

    // Pushes while prunes run: new images, and images on the garbage's layers pushed to
    // the garbage's repository again (where a client finds them present and does not
    // upload them again).
    let pusher = {
        let (base_url, token) = (app.base.clone(), app.admin.clone());
        let (fresh, reused): (Vec<TestImage>, Vec<TestImage>) = (
            (0..12).map(|i| base.built_on(300 + i, 1)).collect(),
            junk.iter()
                .map(|j| {
                    let mut j = j.clone();
                    j.config["seed"] = json!("again");
                    j
                })
                .collect(),
        );
        tokio::task::spawn_blocking(move || {
            let client = registry_client(&base_url, &token);
            let mut pushed = Vec::new();
            for (i, (fresh, reused)) in fresh.into_iter().zip(reused).enumerate() {
                client.push("team/live", Some(&format!("fresh{i}")), &fresh).unwrap();
                client.push("team/junk", Some(&format!("again{i}")), &reused).unwrap();
                pushed.push(("team/live", fresh));
                pushed.push(("team/junk", reused));
            }
            pushed
        })
    };
    let mut sweeps = 0;
    let mut removed = 0;
    while !pusher.is_finished() || sweeps == 0 {
        let done = prune(&app, json!({"keepYoungerThan": "0s"}), false).await;
        removed += done["status"]["sweep"]["blobsRemoved"].as_u64().unwrap_or(0);
        sweeps += 1;
    }
    let pushed = pusher.await.unwrap();
    assert!(removed > 0, "the prunes removed nothing: the test proves nothing");
    for (repository, image) in &pushed {
        assert!(
            pullable(&app, repository, image).await,
            "an image pushed to {repository} during a prune lost a blob ({sweeps} prunes ran)"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_found_a_blob_before_a_prune_still_pushes_its_manifest_after_it() {
    let app = app_with_grace(600).await;
    let (found, other) = (base().built_on(400, 1), base().built_on(401, 1));
    push(&app, "team/junk", "found", &found).await;
    push(&app, "team/junk", "other", &other).await;
    let (status, body) = app.delete(&format!("{IMAGE_API}/namespaces/team/imagestreams/junk")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    age_blobs(&app, Duration::from_secs(3 * 3600));
    // A client about to push `found` again asks for each of its blobs and finds them all.
    let mut again = found.clone();
    again.config["seed"] = json!("again");
    let blobs: Vec<String> = again.layers.iter().map(|l| digest_of(l)).collect();
    for blob in &blobs {
        assert_eq!(status_of(&app, Method::HEAD, &format!("/v2/team/junk/blobs/{blob}")).await, StatusCode::OK);
    }
    // A prune runs before it pushes the rest.
    let done = prune(&app, json!({"keepYoungerThan": "0s"}), false).await;
    assert_eq!(done["status"]["removedImages"].as_u64(), Some(2), "{done}");
    // `other`'s own layer nobody asked about is gone; the layers the client found stayed.
    let other_layer = digest_of(other.layers.last().unwrap());
    assert!(!stored_blobs(&app).contains(&other_layer), "an old blob nobody holds was not swept");
    let (base_url, token) = (app.base.clone(), app.admin.clone());
    let pushed = blocking(move || {
        let client = registry_client(&base_url, &token);
        client.push_blob("team/junk", &again.config_bytes()).unwrap();
        client.push_manifest("team/junk", Some("again"), again.format.manifest_media_type(), &again.manifest_bytes()).map(|_| again)
    });
    let again = pushed.expect("the manifest of blobs the client found before the prune was refused");
    assert!(pullable(&app, "team/junk", &again).await);
    app.stop().await;
}

fn blob_file(app: &TestApp, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    app.dir.path().join("blobs/blobs/sha256").join(&hex[..2]).join(hex)
}

async fn fsck(app: &TestApp, repair: bool) -> Value {
    let body = json!({"apiVersion": "berth.dev/v1", "kind": "StoreCheck", "spec": {"repair": repair, "verifyLayers": true}});
    let (status, answer) = app.post("/apis/berth.dev/v1/storechecks", body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer
}

fn problems(check: &Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = check["status"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["reason"].as_str().unwrap().to_string(), p["blob"].as_str().unwrap_or("").to_string()))
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_finds_corrupt_and_missing_blobs_and_repairs_pull_through_ones_from_upstream() {
    use berth_testkit::{Auth, DistributionRegistry};
    let app = app_with_grace(7200).await;
    // One image pushed to berth, one imported from the distribution registry and pulled
    // through berth (so berth holds a mirrored copy of its blobs).
    let pushed = base().built_on(500, 1);
    push(&app, "team/pushed", "1", &pushed).await;
    let upstream = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let imported = TestImage::new(Format::Oci, 501, 2, 1024, "amd64");
    let copy = imported.clone();
    blocking(|| upstream.push("lib/imported", Some("1"), &copy).unwrap());
    let body = json!({"kind": "ImageStreamTag", "apiVersion": "image.openshift.io/v1", "metadata": {"name": "imported:1"},
        "tag": {"from": {"kind": "DockerImage", "name": upstream.pull_spec("lib/imported", "1")}, "referencePolicy": {"type": "Local"}}});
    let (status, reply) = app.put(&common::istag_path("team", "imported:1"), body).await;
    assert!(status.is_success(), "{reply}");
    app.settled_tag("team", "imported:1").await;
    assert!(pullable(&app, "team/imported", &imported).await);
    assert_eq!(problems(&fsck(&app, false).await), vec![], "a fresh store has no problems");

    // Damage: a pushed layer rewritten, the pushed config deleted, a mirrored layer rewritten.
    let (pushed_layer, pushed_config) = (digest_of(pushed.layers.last().unwrap()), digest_of(&pushed.config_bytes()));
    let mirrored = digest_of(&imported.layers[0]);
    std::fs::write(blob_file(&app, &pushed_layer), b"not the layer").unwrap();
    std::fs::remove_file(blob_file(&app, &pushed_config)).unwrap();
    std::fs::write(blob_file(&app, &mirrored), b"bit rot").unwrap();
    let check = fsck(&app, false).await;
    let mut expected = vec![
        ("BlobCorrupt".to_string(), pushed_layer.clone()),
        ("BlobCorrupt".to_string(), mirrored.clone()),
        ("BlobMissing".to_string(), pushed_config.clone()),
        // The push linked the config into its repository.
        ("DanglingLink".to_string(), pushed_config.trim_start_matches("sha256:").to_string()),
    ];
    expected.sort();
    assert_eq!(problems(&check), expected, "{check}");
    assert_eq!(check["status"]["repaired"].as_u64(), Some(0));
    // Nothing was changed by a check without --repair.
    assert_eq!(std::fs::read(blob_file(&app, &mirrored)).unwrap(), b"bit rot");

    let repaired = fsck(&app, true).await;
    // The two corrupt blobs removed (one fetched again), then the links to the missing
    // config and to the removed layer.
    assert_eq!(repaired["status"]["repaired"].as_u64(), Some(4), "{repaired}");
    let repair_of = |blob: &str| {
        repaired["status"]["problems"].as_array().unwrap().iter().find(|p| p["blob"] == blob).unwrap()["repair"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(repair_of(&mirrored).contains("fetched it again through team/imported"), "{repaired}");
    assert!(repair_of(&pushed_layer).contains("push the image again"), "{repaired}");
    // The mirrored layer is whole again, from the upstream.
    assert_eq!(std::fs::read(blob_file(&app, &mirrored)).unwrap(), imported.layers[0]);
    // What cannot be fetched again stays reported until the image is pushed again.
    push(&app, "team/pushed", "1", &pushed).await;
    assert_eq!(problems(&fsck(&app, false).await), vec![]);
    drop(upstream);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_pruner_prunes_on_its_schedule_and_records_each_run() {
    let app = app_with_grace(0).await;
    let base = base();
    for seed in 0..3 {
        push(&app, "team/app", "latest", &base.built_on(600 + seed, 1)).await;
    }
    let pruner = |name: &str, schedule: &str| {
        json!({"apiVersion": "berth.dev/v1", "kind": "ImagePruner", "metadata": {"name": name},
            "spec": {"schedule": schedule, "keepTagRevisions": 1, "keepYoungerThanDuration": "0s"}})
    };
    let editor = app.token("editor", "admin", &["team"]).await;
    let (status, refused) = app.send(&editor, Method::POST, "/apis/berth.dev/v1/imagepruners", Some(&pruner("cluster", "* * * * *"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (status, invalid) = app.post("/apis/berth.dev/v1/imagepruners", pruner("nightly", "every night")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{invalid}");
    let message = invalid["message"].as_str().unwrap();
    assert!(
        message.contains("metadata.name") && message.contains("spec.schedule") && message.contains("is not a cron schedule"),
        "{message}"
    );

    // Every two seconds (a sixth field, first, is seconds).
    let (status, created) = app.post("/apis/berth.dev/v1/imagepruners", pruner("cluster", "*/2 * * * * *")).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let run = loop {
        let (_, pruner) = app.get("/apis/berth.dev/v1/imagepruners/cluster").await;
        if let Some(run) = pruner["status"]["runs"].as_array().and_then(|runs| runs.first()).cloned() {
            assert!(pruner["status"]["nextRun"].is_string(), "{pruner}");
            break run;
        }
        assert!(std::time::Instant::now() < deadline, "the pruner never ran: {pruner}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (run["succeeded"].as_bool(), run["removedRevisions"].as_u64(), run["removedImages"].as_u64()),
        (Some(true), Some(2), Some(2)),
        "{run}"
    );
    // The two removed images' own layers and configs.
    let freed: usize = [600, 601].iter().map(|seed| 128 + base.built_on(*seed, 1).config_bytes().len()).sum();
    assert_eq!(run["freedBytes"].as_u64(), Some(freed as u64), "{run}");
    assert_eq!(app.stream("team", "app").await["status"]["tags"][0]["items"].as_array().unwrap().len(), 1);

    // An admin's update keeps the runs; suspended, it stops.
    let (_, mut current) = app.get("/apis/berth.dev/v1/imagepruners/cluster").await;
    current["spec"]["suspend"] = json!(true);
    current["status"] = json!({});
    let (status, updated) = app.put("/apis/berth.dev/v1/imagepruners/cluster", current).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert!(!updated["status"]["runs"].as_array().unwrap().is_empty(), "{updated}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_reported_running_keep_their_images_from_a_prune() {
    let app = app_with_grace(0).await;
    let images: Vec<TestImage> = (0..3).map(|seed| base().built_on(700 + seed, 1)).collect();
    for image in &images {
        push(&app, "team/app", "latest", image).await;
    }
    let report = json!({"apiVersion": "berth.dev/v1", "kind": "WorkloadReport", "cluster": "east", "workloads": [
        {"namespace": "team", "kind": "Deployment", "name": "shop",
         "images": [format!("docker-pullable://registry.berth.test/team/app@{}", images[0].digest()), "registry.berth.test/team/app:latest"]}]});
    let tenant = app.token("tenant", "admin", &["team"]).await;
    let (status, refused) = app.send(&tenant, Method::POST, "/apis/berth.dev/v1/workloadreports", Some(&report)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (status, answer) = app.post("/apis/berth.dev/v1/workloadreports", report).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["status"]["noted"], 1);
    assert_eq!(answer["status"]["withoutDigest"], json!(["registry.berth.test/team/app:latest"]));

    let plan = prune(&app, json!({"keepTagRevisions": 1, "keepYoungerThan": "0s"}), true).await;
    let planned: Vec<&str> = plan["status"]["plan"]["revisions"].as_array().unwrap().iter().map(|r| r["image"].as_str().unwrap()).collect();
    assert_eq!(planned, vec![images[1].digest()], "the image running in east stays: {plan}");
    assert_eq!(plan["status"]["plan"]["kept"]["inUse"], 1);
    let (_, top) = app.get(&format!("{TOP}/images")).await;
    let row = top["items"].as_array().unwrap().iter().find(|i| i["name"] == images[0].digest().as_str()).unwrap();
    assert_eq!(row["usage"], json!(["east/team/Deployment/shop"]));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_prunes_only_its_own_namespace_and_bad_prunes_are_refused_with_what_to_fix() {
    let app = app_with_grace(0).await;
    let base = base();
    // The same images in both namespaces' histories.
    let images: Vec<TestImage> = (0..3).map(|seed| base.built_on(800 + seed, 1)).collect();
    for image in &images {
        push(&app, "team/app", "latest", image).await;
        push(&app, "other/app", "latest", image).await;
    }
    let tenant = app.token("tenant", "admin", &["team"]).await;
    let spec = |namespace: &str| json!({"apiVersion": "berth.dev/v1", "kind": "ImagePrune", "spec": {"namespace": namespace, "keepTagRevisions": 1, "keepYoungerThan": "0s"}});
    for (body, what) in [(spec(""), "the whole cluster"), (spec("other"), "another namespace")] {
        let (status, refused) = app.send(&tenant, Method::POST, PRUNES, Some(&body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a tenant pruned {what}: {refused}");
    }
    let check = json!({"apiVersion": "berth.dev/v1", "kind": "StoreCheck", "spec": {"repair": true}});
    let (status, refused) = app.send(&tenant, Method::POST, "/apis/berth.dev/v1/storechecks", Some(&check)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");

    let (status, done) = app.send(&tenant, Method::POST, PRUNES, Some(&spec("team"))).await;
    assert_eq!(status, StatusCode::CREATED, "{done}");
    assert_eq!(done["status"]["removedRevisions"], 2, "{done}");
    // Other's history names the same images: none of them went, and other's tag is whole.
    assert_eq!(done["status"]["removedImages"], 0, "{done}");
    assert_eq!(app.stream("other", "app").await["status"]["tags"][0]["items"].as_array().unwrap().len(), 3);
    for image in &images {
        assert!(pullable(&app, "other/app", image).await);
    }

    // Bad input says what to fix and changes nothing.
    let mut bad = spec("team");
    bad["spec"]["keepYoungerThan"] = json!("soon");
    let (status, invalid) = app.post(PRUNES, bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{invalid}");
    assert!(invalid["message"].as_str().unwrap().contains("spec.keepYoungerThan"), "{invalid}");
    let (status, invalid) = app.post(&format!("{PRUNES}?dryRun=Yes"), spec("team")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{invalid}");
    assert!(invalid["message"].as_str().unwrap().contains("the only value is All"), "{invalid}");
    let (status, invalid) = app.send_raw(&app.admin.clone(), Method::POST, PRUNES, "application/json", b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{invalid}");
    assert_eq!(app.stream("other", "app").await["status"]["tags"][0]["items"].as_array().unwrap().len(), 3);
    app.stop().await;
}
