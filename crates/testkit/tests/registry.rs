//! The harness against the real distribution registry: what it pushes, the registry serves
//! back byte for byte, and skopeo, an independent client, sees the same.

use berth_testkit::{Auth, DistributionRegistry, Format, Pushed, TestImage, TestIndex, skopeo_copy, skopeo_inspect};
use reqwest::StatusCode;
use reqwest::blocking::Client;

/// Every manifest media type the harness pushes, so the registry never converts.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

fn basic() -> Auth {
    Auth::Basic { user: "puller".to_string(), password: "s3cret pass".to_string() }
}

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

/// GETs a manifest with the registry's credentials, returning the status and what it served.
fn fetch(registry: &DistributionRegistry, repository: &str, reference: &str) -> (StatusCode, Pushed) {
    let mut request = client().get(registry.url(&format!("/v2/{repository}/manifests/{reference}"))).header("accept", ACCEPT);
    if let Some((user, password)) = registry.credentials() {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().unwrap();
    let header = |name: &str| response.headers().get(name).map(|value| value.to_str().unwrap().to_string()).unwrap_or_default();
    let (status, digest, media_type) = (response.status(), header("docker-content-digest"), header("content-type"));
    (status, Pushed { digest, media_type, manifest: response.bytes().unwrap().to_vec() })
}

/// The registry serves `pushed` by `tag` and by digest, with its digest and media type.
fn check_served(registry: &DistributionRegistry, repository: &str, tag: &str, pushed: &Pushed) {
    for reference in [tag, &pushed.digest] {
        let (status, served) = fetch(registry, repository, reference);
        assert_eq!(status, StatusCode::OK, "{repository}:{reference}; registry log:\n{}", registry.log());
        assert_eq!(&served, pushed, "{repository}:{reference}");
    }
}

#[test]
fn open_registry_serves_pushed_images_and_indexes_by_tag_and_digest() {
    let registry = DistributionRegistry::start(Auth::Open).unwrap();
    let oci = TestImage::new(Format::Oci, 1, 2, 4096, "amd64");
    let docker = TestImage::new(Format::Docker, 2, 3, 1000, "arm64/v8");
    let oci_index = TestIndex {
        format: Format::Oci,
        children: vec![TestImage::new(Format::Oci, 3, 1, 100, "amd64"), TestImage::new(Format::Oci, 4, 1, 100, "arm64/v8")],
        with_attestation: true,
    };
    let docker_list = TestIndex {
        format: Format::Docker,
        children: vec![TestImage::new(Format::Docker, 5, 1, 100, "amd64"), TestImage::new(Format::Docker, 6, 1, 100, "s390x")],
        with_attestation: false,
    };

    let pushed = [
        ("v1", registry.push("team/app", Some("v1"), &oci).unwrap()),
        ("v2", registry.push("team/app", Some("v2"), &docker).unwrap()),
        ("multi", registry.push_index("team/app", Some("multi"), &oci_index).unwrap()),
        ("list", registry.push_index("team/app", Some("list"), &docker_list).unwrap()),
    ];
    let expected = [(oci.digest(), Format::Oci.manifest_media_type()), (docker.digest(), Format::Docker.manifest_media_type())]
        .into_iter()
        .chain([(oci_index.digest(), oci_index.media_type()), (docker_list.digest(), docker_list.media_type())]);
    for ((tag, pushed), (digest, media_type)) in pushed.iter().zip(expected) {
        assert_eq!((pushed.digest.as_str(), pushed.media_type.as_str()), (digest.as_str(), media_type), "{tag}");
        check_served(&registry, "team/app", tag, pushed);
    }
    // The children (and the attestation) of an index are there by digest.
    for child in oci_index.children.iter().chain(oci_index.attestation().as_ref()).chain(&docker_list.children) {
        assert_eq!(fetch(&registry, "team/app", &child.digest()).1.manifest, child.manifest_bytes());
    }
    // Pushing the same image again reuses its blobs and gives the same digest.
    assert_eq!(registry.push("team/app", Some("v1-again"), &oci).unwrap(), pushed[0].1);
}

#[test]
fn skopeo_sees_what_was_pushed_and_copies_it() {
    let registry = DistributionRegistry::start(Auth::Open).unwrap();
    let image = TestImage::new(Format::Oci, 10, 1, 512, "amd64");
    let pushed = registry.push("app", Some("v1"), &image).unwrap();

    let inspected = skopeo_inspect(&registry.pull_spec("app", "v1"), None).unwrap();
    assert_eq!(inspected["Digest"], pushed.digest);
    assert_eq!(inspected["Architecture"], "amd64");
    assert_eq!(inspected["Labels"]["seed"], "10");
    assert_eq!(inspected["RepoTags"], serde_json::json!(["v1"]));

    let source = format!("docker://{}", registry.pull_spec("app", &pushed.digest));
    let copy = format!("docker://{}", registry.pull_spec("copy/app", "v1"));
    skopeo_copy(&source, &copy, &["--preserve-digests"]).unwrap();
    check_served(&registry, "copy/app", "v1", &pushed);

    let missing = skopeo_inspect(&registry.pull_spec("app", "missing"), None).unwrap_err();
    assert!(format!("{missing:#}").contains("manifest unknown"), "{missing:#}");
}

#[test]
fn basic_auth_registry_needs_the_credentials() {
    let registry = DistributionRegistry::start(basic()).unwrap();
    assert_eq!(client().get(registry.url("/v2/")).send().unwrap().status(), StatusCode::UNAUTHORIZED);

    let image = TestImage::new(Format::Docker, 20, 1, 256, "amd64");
    let pushed = registry.push("private/app", Some("v1"), &image).unwrap();
    check_served(&registry, "private/app", "v1", &pushed);
    let anonymous = client().get(registry.url(&format!("/v2/private/app/manifests/{}", pushed.digest))).header("accept", ACCEPT);
    assert_eq!(anonymous.send().unwrap().status(), StatusCode::UNAUTHORIZED);

    let inspected = skopeo_inspect(&registry.pull_spec("private/app", "v1"), registry.credentials()).unwrap();
    assert_eq!(inspected["Digest"], pushed.digest);
    let refused = skopeo_inspect(&registry.pull_spec("private/app", "v1"), None).unwrap_err();
    assert!(format!("{refused:#}").contains("unauthorized"), "{refused:#}");
    let wrong = skopeo_inspect(&registry.pull_spec("private/app", "v1"), Some(("puller", "wrong"))).unwrap_err();
    assert!(!format!("{wrong:#}").contains("wrong"), "passwords stay out of errors: {wrong:#}");
}

#[test]
fn restart_keeps_port_and_storage() {
    let mut registry = DistributionRegistry::start(basic()).unwrap();
    let image = TestImage::new(Format::Oci, 30, 1, 256, "amd64");
    let pushed = registry.push("app", Some("v1"), &image).unwrap();
    let host = registry.host();

    registry.stop();
    assert!(client().get(registry.url("/v2/")).send().is_err(), "a stopped registry refuses connections");
    assert!(registry.push("app", Some("v2"), &image).is_err());

    registry.restart().unwrap();
    assert_eq!(registry.host(), host);
    check_served(&registry, "app", "v1", &pushed);
}

#[test]
fn deleted_manifests_are_gone() {
    let registry = DistributionRegistry::start(Auth::Open).unwrap();
    let pushed = registry.push("app", Some("v1"), &TestImage::new(Format::Oci, 40, 1, 256, "amd64")).unwrap();
    registry.delete_manifest("app", &pushed.digest).unwrap();
    assert_eq!(fetch(&registry, "app", &pushed.digest).0, StatusCode::NOT_FOUND);
    assert_eq!(fetch(&registry, "app", "v1").0, StatusCode::NOT_FOUND);
}

#[test]
fn registries_run_side_by_side_and_clean_up() {
    let first = DistributionRegistry::start(Auth::Open).unwrap();
    let second = DistributionRegistry::start(Auth::Open).unwrap();
    assert_ne!(first.addr(), second.addr());
    let url = first.url("/v2/");
    drop(first);
    assert!(client().get(url).send().is_err(), "a dropped registry's process is gone");
    let log = second.log();
    assert!(log.contains(&format!("listening on {}", second.host())), "{log}");
}
