//! berth as a cluster API: HTTPS with berth's own CA or the operator's certificate
//! (reloaded when its files change), and Docker-style clients over it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use berth_testkit::{Auth, DistributionRegistry, Format, TestImage, skopeo};
use common::{TestApp, blocking};
use reqwest::StatusCode;

/// A CA and a certificate it signed for 127.0.0.1 and localhost, as PEM: (ca, cert, key).
fn issue(common_name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("{common_name} CA"));
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A client that trusts only `ca` (PEM).
fn trusting(ca: &str) -> reqwest::Client {
    let certificate = reqwest::Certificate::from_pem(ca.as_bytes()).unwrap();
    reqwest::Client::builder().tls_certs_only([certificate]).build().unwrap()
}

fn port(app: &TestApp) -> u16 {
    app.base.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_berths_own_ca_serves_the_api_and_the_registry() {
    let app = TestApp::start_with(|config| config.tls.self_signed = true).await;
    assert!(app.base.starts_with("https://127.0.0.1:"), "{}", app.base);
    app.namespace("team").await;
    app.create_stream("team", "app").await;
    let token = app.token("pusher", "edit", &["team"]).await;
    let ca = app.dir.path().join("tls/ca.crt");
    let ca_pem = std::fs::read_to_string(&ca).unwrap();

    // Only a client that trusts berth's CA gets in; plain HTTP is not spoken on a TLS port.
    let ok = trusting(&ca_pem).get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let (other_ca, _, _) = issue("other");
    let refused = trusting(&other_ca).get(format!("{}/healthz", app.base)).send().await;
    assert!(refused.is_err_and(|err| berth_upstream::error_chain(&err).contains("certificate")), "a certificate berth's CA did not sign");
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{}/healthz", port(&app))).send().await;
    assert!(plain.map(|r| r.status() != StatusCode::OK).unwrap_or(true), "plain HTTP is not answered as HTTPS");

    // The registry's login challenge names the https token endpoint.
    let challenge = trusting(&ca_pem).get(format!("{}/v2/team/app/tags/list", app.base)).send().await.unwrap();
    let realm = challenge.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(realm.starts_with(&format!("Bearer realm=\"{}/v2/token\"", app.base)), "{realm}");

    // skopeo pushes and pulls over TLS, trusting the CA through a certs directory (as
    // Docker's /etc/docker/certs.d/<host>/ca.crt), with no --tls-verify=false.
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(&ca, certs.path().join("ca.crt")).unwrap();
    let upstream = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let image = TestImage::new(Format::Oci, 7, 2, 2048, "amd64");
    blocking(|| upstream.push("src/app", Some("v1"), &image).unwrap());
    let berth = format!("127.0.0.1:{}", port(&app));
    let dest = format!("docker://{berth}/team/app:v1");
    let cert_dir = format!("--dest-cert-dir={}", certs.path().display());
    let creds = format!("--dest-creds=me:{token}");
    let source = format!("docker://{}", upstream.pull_spec("src/app", "v1"));
    blocking(|| skopeo(&["copy", "--preserve-digests", "--src-tls-verify=false", &cert_dir, &creds, &source, &dest])).unwrap();
    let inspect_certs = format!("--cert-dir={}", certs.path().display());
    let inspected = blocking(|| skopeo(&["inspect", "--raw", &inspect_certs, &format!("--creds=me:{token}"), &dest])).unwrap();
    assert_eq!(inspected, image.manifest_bytes());
    // Without the CA, skopeo refuses the server.
    let untrusted = blocking(|| skopeo(&["inspect", "--raw", &format!("--creds=me:{token}"), &dest]));
    assert!(untrusted.is_err_and(|err| format!("{err:#}").contains("certificate")));
    app.stop().await;
}

fn write(path: &Path, text: &str) {
    // Written beside and renamed, as a certificate manager replaces files.
    let staged = path.with_extension("new");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(staged, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_certificate_is_reloaded_when_its_files_change() {
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("tls.crt"), files.path().join("tls.key"));
    let (first_ca, first_cert, first_key) = issue("first");
    write(&cert, &first_cert);
    write(&key, &first_key);
    let (cert_file, key_file) = (cert.clone(), key.clone());
    let app = TestApp::start_with(move |config| {
        config.tls.cert_file = Some(cert_file);
        config.tls.key_file = Some(key_file);
    })
    .await;
    let healthz = format!("{}/healthz", app.base);
    assert_eq!(trusting(&first_ca).get(&healthz).send().await.unwrap().status(), StatusCode::OK);

    let (second_ca, second_cert, second_key) = issue("second");
    write(&key, &second_key);
    write(&cert, &second_cert);
    let deadline = Instant::now() + Duration::from_secs(20);
    while trusting(&second_ca).get(&healthz).send().await.is_err() {
        assert!(Instant::now() < deadline, "the new certificate was not served within 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(trusting(&first_ca).get(&healthz).send().await.is_err(), "the old certificate is gone");
    app.stop().await;
}

/// kubectl against `app` with a kubeconfig like `berth config kubeconfig` prints.
struct Kubectl {
    binary: std::path::PathBuf,
    kubeconfig: tempfile::NamedTempFile,
}

impl Kubectl {
    fn new(app: &TestApp) -> Kubectl {
        use base64::Engine;
        let ca = std::fs::read(app.dir.path().join("tls/ca.crt")).unwrap();
        let config = serde_json::json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "berth",
            "clusters": [{"name": "berth", "cluster": {"server": app.base, "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca)}}],
            "users": [{"name": "admin", "user": {"token": app.admin}}],
            "contexts": [{"name": "berth", "context": {"cluster": "berth", "user": "admin", "namespace": "team"}}],
        });
        let kubeconfig = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(kubeconfig.path(), serde_json::to_vec(&config).unwrap()).unwrap();
        Kubectl { binary: berth_testkit::kubectl(), kubeconfig }
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(&self.binary);
        command.env("KUBECONFIG", self.kubeconfig.path()).env("HOME", self.kubeconfig.path().parent().unwrap()).args(args);
        command
    }

    /// Runs kubectl and returns its stdout, failing the test with its stderr otherwise.
    fn ok(&self, args: &[&str]) -> String {
        let output = blocking(|| self.command(args).output().unwrap());
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        stdout.into_owned()
    }
}

const STREAM: &str = r#"apiVersion: image.openshift.io/v1
kind: ImageStream
metadata:
  name: ruby
spec:
  tags:
  - name: "3.3"
    from:
      kind: DockerImage
      name: registry.example.com/ruby:3.3
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_applies_edits_explains_watches_and_deletes() {
    let app = TestApp::start_with(|config| config.tls.self_signed = true).await;
    app.namespace("team").await;
    let kubectl = Kubectl::new(&app);
    let files = tempfile::tempdir().unwrap();
    let manifest = files.path().join("ruby.yaml");

    // Apply creates, then (with a changed manifest) configures, keeping the last applied
    // configuration as kubectl does.
    std::fs::write(&manifest, STREAM).unwrap();
    assert!(kubectl.ok(&["apply", "-f", manifest.to_str().unwrap()]).contains("imagestream.image.openshift.io/ruby created"));
    let extended = format!("{STREAM}  - name: latest\n    from:\n      kind: ImageStreamTag\n      name: ruby:3.3\n");
    std::fs::write(&manifest, extended).unwrap();
    assert!(kubectl.ok(&["apply", "-f", manifest.to_str().unwrap()]).contains("imagestream.image.openshift.io/ruby configured"));
    let stream = app.stream("team", "ruby").await;
    assert_eq!(stream["spec"]["tags"].as_array().unwrap().len(), 2, "{stream}");
    assert!(stream["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().unwrap().contains("latest"));

    // Tables with OpenShift's columns.
    let table = kubectl.ok(&["get", "imagestreams"]);
    let header: Vec<&str> = table.lines().next().unwrap().split("  ").filter(|c| !c.is_empty()).map(str::trim).collect();
    assert_eq!(header, ["NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED"], "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("ruby "), "{table}");
    assert!(table.contains("3.3,latest"), "{table}");
    let digest = app.map("team", "app", "v1", "first").await;
    let tags = kubectl.ok(&["get", "istag", "-o", "wide"]);
    assert!(tags.contains("app:v1") && tags.contains(&format!("registry.example.com/team/app@{digest}")), "{tags}");
    assert!(kubectl.ok(&["get", "imagetags"]).contains("app:v1"));
    assert!(kubectl.ok(&["get", "images"]).contains(&digest));
    assert!(kubectl.ok(&["get", "namespaces"]).lines().any(|l| l.starts_with("default ") && l.contains("Active")));
    assert!(kubectl.ok(&["get", "is", "-A"]).lines().next().unwrap().starts_with("NAMESPACE"));

    // A watch prints a row when a tag moves.
    let mut watch = blocking(|| {
        kubectl
            .command(&["get", "is", "app", "-w"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    });
    let mut lines = std::io::BufReader::new(watch.stdout.take().unwrap());
    let first = blocking(|| {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut lines, &mut line).unwrap();
        line
    });
    assert!(first.starts_with("NAME"), "{first}");
    // kubectl prints the object, then watches from "now" (resourceVersion=0) and drops the
    // first event, the object as it is when the watch starts: a tag moved before the watch
    // is open would be that dropped event. So the tag moves once the watch is open.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Scrape::of(&app).await.value("berth_watches", &[]) < 1.0 {
        assert!(Instant::now() < deadline, "kubectl's watch did not open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.map("team", "app", "v2", "second").await;
    let seen = blocking(move || {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut lines, &mut line).unwrap();
            seen.push(line);
        }
        let _ = watch.kill();
        let _ = watch.wait();
        seen
    });
    assert!(seen.iter().any(|line| line.contains("v1,v2")), "the watch showed the new tag: {seen:?}");

    // Edit goes through the editor and a patch.
    let editor = files.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's|registry.example.com/ruby:3.3|registry.example.com/ruby:3.4|' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let edited = blocking(|| kubectl.command(&["edit", "is", "ruby"]).env("KUBE_EDITOR", &editor).output().unwrap());
    assert!(String::from_utf8_lossy(&edited.stdout).contains("imagestream.image.openshift.io/ruby edited"), "{edited:?}");
    let stream = app.stream("team", "ruby").await;
    assert_eq!(common::spec_tag(&stream, "3.3")["from"]["name"], "registry.example.com/ruby:3.4");

    // Explain reads the OpenAPI document.
    let explained = kubectl.ok(&["explain", "imagestream.spec.tags"]);
    assert!(explained.contains("RESOURCE: tags <[]Object>") && explained.contains("referencePolicy"), "{explained}");
    assert!(kubectl.ok(&["explain", "imagestream.spec.tags.from"]).contains("name\t<string>"));

    // Delete.
    assert!(kubectl.ok(&["delete", "is", "ruby"]).contains("imagestream.image.openshift.io \"ruby\" deleted"));
    let (status, _) = app.get(&format!("{}/namespaces/team/imagestreams/ruby", common::IMAGE_API)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

const LIMIT_RANGE: &str = r#"apiVersion: v1
kind: LimitRange
metadata:
  name: limits
spec:
  limits:
  - type: openshift.io/Image
    max:
      storage: 1Gi
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_applies_gets_describes_and_deletes_quotas() {
    let app = TestApp::start_with(|config| config.tls.self_signed = true).await;
    app.namespace("team").await;
    app.create_stream("team", "app").await;
    let kubectl = Kubectl::new(&app);

    let hard = "--hard=openshift.io/imagestreams=10,berth.dev/image-storage=10Gi";
    assert!(kubectl.ok(&["create", "quota", "images", hard]).contains("resourcequota/images created"));
    let table = kubectl.ok(&["get", "quota"]);
    let header: Vec<&str> = table.lines().next().unwrap().split("  ").filter(|c| !c.is_empty()).map(str::trim).collect();
    assert_eq!(header, ["NAME", "USED/HARD", "AGE"], "{table}");
    assert!(table.contains("berth.dev/image-storage: 0/10Gi, openshift.io/imagestreams: 1/10"), "{table}");
    let described = kubectl.ok(&["describe", "quota", "images"]);
    assert!(described.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["openshift.io/imagestreams", "1", "10"]), "{described}");

    let files = tempfile::tempdir().unwrap();
    let manifest = files.path().join("limits.yaml");
    std::fs::write(&manifest, LIMIT_RANGE).unwrap();
    assert!(kubectl.ok(&["apply", "-f", manifest.to_str().unwrap()]).contains("limitrange/limits created"));
    std::fs::write(&manifest, LIMIT_RANGE.replace("1Gi", "2Gi")).unwrap();
    assert!(kubectl.ok(&["apply", "-f", manifest.to_str().unwrap()]).contains("limitrange/limits configured"));
    let (_, range) = app.get("/api/v1/namespaces/team/limitranges/limits").await;
    assert_eq!(range["spec"]["limits"][0]["max"]["storage"], "2Gi", "{range}");
    assert!(kubectl.ok(&["get", "limits"]).lines().nth(1).is_some_and(|l| l.starts_with("limits ")));

    assert!(kubectl.ok(&["delete", "quota", "images"]).contains("resourcequota \"images\" deleted"));
    assert!(kubectl.ok(&["delete", "limits", "limits"]).contains("limitrange \"limits\" deleted"));
    app.stop().await;
}

/// A scrape of `/metrics`: each series (`name{label="value",...}`) and its value.
struct Scrape(Vec<(String, std::collections::BTreeMap<String, String>, f64)>);

impl Scrape {
    async fn of(app: &TestApp) -> Scrape {
        let response = app.http().get(format!("{}/metrics", app.base)).bearer_auth(&app.admin).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        let text = response.text().await.unwrap();
        let mut series = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (head, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match head.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (head, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once("=\"").unwrap();
                    (key.to_string(), value.trim_end_matches('"').to_string())
                })
                .collect();
            series.push((name.to_string(), labels, value.parse().unwrap()));
        }
        Scrape(series)
    }

    /// The sum of the series of `name` that have all of `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, value)| value)
            .sum()
    }
}

/// `/metrics` after known traffic: each counter moved by exactly that traffic. (The
/// recorder is the process's; nextest runs each test in a process of its own.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_traffic_they_saw() {
    use serde_json::json;
    let upstream = blocking(|| DistributionRegistry::start(Auth::Open).unwrap());
    let upstream_image = TestImage::new(Format::Oci, 7, 1, 700, "amd64");
    blocking(|| upstream.client().push("lib/app", Some("1.0"), &upstream_image).unwrap());
    let app = TestApp::start().await;
    app.namespace("team").await;
    app.map("team", "app", "latest", "one").await;
    let unauthenticated = reqwest::get(format!("{}/metrics", app.base)).await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED, "metrics need a token that may read the cluster");

    // API reads: three found, two not.
    let before = Scrape::of(&app).await;
    for name in ["app", "app", "app", "missing", "missing"] {
        app.get(&format!("{}/namespaces/team/imagestreams/{name}", common::IMAGE_API)).await;
    }
    let after = Scrape::of(&app).await;
    let route = [("route", "/apis/image.openshift.io/v1/namespaces/{ns}/imagestreams/{name}"), ("method", "GET")];
    let moved = |name: &str, labels: &[(&str, &str)]| after.value(name, labels) - before.value(name, labels);
    assert_eq!(moved("berth_http_requests_total", &[route[0], route[1], ("code", "200")]), 3.0);
    assert_eq!(moved("berth_http_requests_total", &[route[0], route[1], ("code", "404")]), 2.0);
    assert_eq!(moved("berth_http_request_duration_seconds_count", &route), 5.0);

    // A push: every uploaded byte counted in, every blob upload completed.
    let image = TestImage::new(Format::Oci, 8, 2, 1000, "amd64");
    let before = Scrape::of(&app).await;
    let host = app.base.trim_start_matches("http://").to_string();
    let admin = app.admin.clone();
    blocking(|| berth_testkit::RegistryClient::new(&host, Some(("me", &admin))).unwrap().push("team/pushed", Some("v1"), &image).unwrap());
    let after = Scrape::of(&app).await;
    let moved = |name: &str, labels: &[(&str, &str)]| after.value(name, labels) - before.value(name, labels);
    let pushed_bytes = image.layers.iter().map(Vec::len).sum::<usize>() + image.config_bytes().len() + image.manifest_bytes().len();
    assert_eq!(moved("berth_registry_received_bytes_total", &[]), pushed_bytes as f64);
    assert_eq!(moved("berth_registry_uploads_total", &[("result", "completed")]), 3.0);
    assert_eq!(
        moved("berth_http_requests_total", &[("route", "/v2/{name}/manifests/{reference}"), ("method", "PUT"), ("code", "201")]),
        1.0
    );
    assert!(moved("berth_store_commit_group_size_sum", &[]) >= 1.0, "the push's tag move was committed");

    // A pull of one blob: exactly its bytes counted out.
    let layer = &image.layers[1];
    let before = Scrape::of(&app).await;
    let pulled = reqwest::Client::new()
        .get(format!("{}/v2/team/pushed/blobs/{}", app.base, berth_testkit::digest_of(layer)))
        .basic_auth("me", Some(&app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.bytes().await.unwrap().len(), layer.len());
    let after = Scrape::of(&app).await;
    assert_eq!(
        after.value("berth_registry_sent_bytes_total", &[]) - before.value("berth_registry_sent_bytes_total", &[]),
        layer.len() as f64
    );

    // Imports: one that imports, one that finds the digest unchanged; then a pull-through.
    let isi = json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamImport", "metadata": {"name": "ext"},
        "spec": {"import": true, "images": [{"from": {"kind": "DockerImage", "name": format!("{}/lib/app:1.0", upstream.host())}, "to": {"name": "1.0"}}]}});
    let before = Scrape::of(&app).await;
    for _ in 0..2 {
        let (status, reply) = app.post(&format!("{}/namespaces/team/imagestreamimports", common::IMAGE_API), isi.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
    }
    let mirrored = reqwest::Client::new()
        .get(format!("{}/v2/team/ext/blobs/{}", app.base, berth_testkit::digest_of(&upstream_image.layers[0])))
        .basic_auth("me", Some(&app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(mirrored.bytes().await.unwrap().len(), upstream_image.layers[0].len());
    // The mirror is published (and counted) once its digest is checked, which may be just
    // after the client has read the last byte.
    let mirrored = [("result", "mirrored")];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = Scrape::of(&app).await;
    while after.value("berth_registry_pull_through_total", &mirrored) == before.value("berth_registry_pull_through_total", &mirrored)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = Scrape::of(&app).await;
    }
    let moved = |name: &str, labels: &[(&str, &str)]| after.value(name, labels) - before.value(name, labels);
    let registry = upstream.host();
    assert_eq!(moved("berth_imports_total", &[("registry", &registry), ("result", "imported")]), 1.0);
    assert_eq!(moved("berth_imports_total", &[("registry", &registry), ("result", "unchanged")]), 1.0);
    assert_eq!(moved("berth_registry_pull_through_total", &mirrored), 1.0);

    // A notification delivered to a subscriber.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let receiver = axum::Router::new().route("/hook", axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }));
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });
    let subscription = json!({"apiVersion": "berth.dev/v1", "kind": "Subscription", "metadata": {"name": "ci"}, "spec": {"url": url, "tags": ["app:latest"]}});
    let (status, reply) = app.post("/apis/berth.dev/v1/namespaces/team/subscriptions", subscription).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let delivered = [("namespace", "team"), ("subscription", "ci"), ("result", "delivered")];
    let before = Scrape::of(&app).await.value("berth_subscription_deliveries_total", &delivered);
    app.map("team", "app", "latest", "two").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let scrape = Scrape::of(&app).await;
        if scrape.value("berth_subscription_deliveries_total", &delivered) - before == 1.0
            && scrape.value("berth_subscription_backlog", &[("namespace", "team"), ("subscription", "ci")]) == 0.0
            && scrape.0.iter().any(|(name, _, _)| name == "berth_subscription_backlog")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the delivery was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A watch is counted while it is open.
    assert_eq!(Scrape::of(&app).await.value("berth_watches", &[]), 0.0);
    let watch = reqwest::Client::new()
        .get(format!("{}{}/namespaces/team/imagestreams?watch=true", app.base, common::IMAGE_API))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), StatusCode::OK);
    assert_eq!(Scrape::of(&app).await.value("berth_watches", &[]), 1.0);
    drop(watch);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Scrape::of(&app).await.value("berth_watches", &[]) != 0.0 {
        // A change wakes the watch, which then finds its client gone.
        app.map("team", "app", "latest", &format!("wake-{}", Instant::now().elapsed().as_nanos())).await;
        assert!(Instant::now() < deadline, "a closed watch is still counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

/// `/readyz` answers 503 while another process holds the database's write lock, and 200
/// again once it lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_the_store_cannot_be_written() {
    let app = TestApp::start().await;
    let ready = || async { reqwest::get(format!("{}/readyz", app.base)).await.unwrap() };
    assert_eq!(ready().await.status(), StatusCode::OK);
    let db = app.dir.path().join("berth.db");
    let (locked, release) = std::sync::mpsc::channel::<()>();
    let (go, done) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE; UPDATE meta SET value = value WHERE key = 'schema';").unwrap();
        locked.send(()).unwrap();
        done.recv().unwrap();
        conn.execute_batch("ROLLBACK").unwrap();
    });
    release.recv().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the reuse of the last answer
    let refused = ready().await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let reason = refused.text().await.unwrap();
    assert!(reason.contains("store"), "{reason}");
    go.send(()).unwrap();
    holder.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready().await.status() != StatusCode::OK {
        assert!(Instant::now() < deadline, "readyz did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}
