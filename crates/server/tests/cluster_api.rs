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

/// Debian's kubectl (`kubernetes-client`), which scripts/test unpacks into
/// `target/tools` (or `$BERTH_KUBECTL`).
fn kubectl_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("BERTH_KUBECTL") {
        return path.into();
    }
    let unpacked = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/kubernetes-client/usr/bin/kubectl");
    assert!(unpacked.exists(), "Debian's kubectl is not at {}: run scripts/test, which unpacks it there", unpacked.display());
    unpacked
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
        Kubectl { binary: kubectl_binary(), kubeconfig }
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
