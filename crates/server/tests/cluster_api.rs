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
