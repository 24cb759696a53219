//! HTTPS for berth's one listener (the image API, `/v2/`, webhooks): a certificate and key
//! from files the operator gives, or, with `selfSigned`, a CA and a serving certificate
//! that berth makes in its data directory on first start (and makes again when its
//! hostnames change or it nears its end). Certificates are read again when their files
//! change, so a renewed certificate needs no restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The config file's `tls` section (`--tls-cert`, `--tls-key` and `--tls=self-signed` set
/// the same).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TlsSettings {
    /// berth makes its own CA and serving certificate in `<data-dir>/tls`.
    pub self_signed: bool,
    /// A PEM certificate chain to serve (the serving certificate first).
    pub cert_file: Option<PathBuf>,
    /// The PEM private key of `certFile`.
    pub key_file: Option<PathBuf>,
    /// More names the self-signed serving certificate is for, besides the listen address,
    /// the registry hostnames, `localhost` and the loopback addresses.
    pub hostnames: Vec<String>,
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        self.self_signed || self.cert_file.is_some()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.self_signed && (self.cert_file.is_some() || self.key_file.is_some()) {
            return Err("tls: selfSigned and certFile/keyFile exclude each other: choose one".to_string());
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("tls: certFile and keyFile go together".to_string());
        }
        Ok(())
    }
}

/// The files a TLS listener serves, and the CA clients should trust (for a self-signed
/// setup).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signed `cert`, when berth made it.
    pub ca: Option<PathBuf>,
}

/// The serving certificate's names and end, kept beside it so that a restart can tell
/// whether it still fits.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Issued {
    names: Vec<String>,
    not_after: i64,
}

/// How long berth's own certificates last, and how close to its end a serving
/// certificate is made again.
const CA_DAYS: i64 = 3650;
const SERVING_DAYS: i64 = 397;
const RENEW_BEFORE_DAYS: i64 = 30;

/// The files to serve for `settings`: the given ones (checked to be readable), or berth's
/// own, made or renewed now for `names`.
pub fn prepare(settings: &TlsSettings, data_dir: &Path, names: &[String]) -> anyhow::Result<Option<TlsFiles>> {
    settings.validate().map_err(anyhow::Error::msg)?;
    if let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) {
        for file in [cert, key] {
            std::fs::metadata(file).with_context(|| format!("reading the TLS file {}", file.display()))?;
        }
        return Ok(Some(TlsFiles { cert: cert.clone(), key: key.clone(), ca: None }));
    }
    if !settings.self_signed {
        return Ok(None);
    }
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut wanted: Vec<String> = names.iter().chain(&settings.hostnames).map(|n| host_of(n).to_string()).collect();
    wanted.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    wanted.retain(|name| !name.is_empty() && name != "0.0.0.0" && name != "::");
    wanted.sort();
    wanted.dedup();
    let files = TlsFiles { cert: dir.join("serving.crt"), key: dir.join("serving.key"), ca: Some(dir.join("ca.crt")) };
    let (ca_cert, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    if !ca_cert.exists() || !ca_key.exists() {
        make_ca(&ca_cert, &ca_key)?;
        tracing::info!(ca = %ca_cert.display(), "made a CA for berth's serving certificate: clients trust this file");
    }
    let record = dir.join("serving.json");
    let issued: Option<Issued> = std::fs::read(&record).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let renew_by = chrono::Utc::now().timestamp() + RENEW_BEFORE_DAYS * 86_400;
    let fits = issued.is_some_and(|issued| wanted.iter().all(|name| issued.names.contains(name)) && issued.not_after > renew_by);
    if !fits || !files.cert.exists() || !files.key.exists() {
        let issued = make_serving(&ca_cert, &ca_key, &files, &wanted)?;
        std::fs::write(&record, serde_json::to_vec(&issued)?)?;
        tracing::info!(names = ?issued.names, "made berth's serving certificate");
    }
    Ok(Some(files))
}

/// The host of `host[:port]` (IPv6 in brackets).
fn host_of(name: &str) -> &str {
    if let Some(rest) = name.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match name.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => name,
    }
}

/// Makes `params` valid from yesterday for `days` days.
fn valid_for(params: &mut rcgen::CertificateParams, days: i64) {
    use chrono::Datelike;
    let day = |offset: i64| (chrono::Utc::now() + chrono::Duration::days(offset)).date_naive();
    let (from, until) = (day(-1), day(days));
    params.not_before = rcgen::date_time_ymd(from.year(), from.month() as u8, from.day() as u8);
    params.not_after = rcgen::date_time_ymd(until.year(), until.month() as u8, until.day() as u8);
}

fn make_ca(cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "berth CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages =
        vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign, rcgen::KeyUsagePurpose::DigitalSignature];
    valid_for(&mut params, CA_DAYS);
    let cert = params.self_signed(&key)?;
    crate::serve::write_private(key_path, &key.serialize_pem())?;
    std::fs::write(cert_path, cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
    Ok(())
}

fn make_serving(ca_cert: &Path, ca_key: &Path, files: &TlsFiles, names: &[String]) -> anyhow::Result<Issued> {
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(ca_key)?)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(ca_cert)?, ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "berth");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    valid_for(&mut params, SERVING_DAYS);
    let cert = params.signed_by(&key, &issuer)?;
    crate::serve::write_private(&files.key, &key.serialize_pem())?;
    std::fs::write(&files.cert, cert.pem()).with_context(|| format!("writing {}", files.cert.display()))?;
    let not_after = (chrono::Utc::now() + chrono::Duration::days(SERVING_DAYS)).timestamp();
    Ok(Issued { names: names.to_vec(), not_after })
}

/// The rustls configuration of `files`.
pub async fn load(files: &TlsFiles) -> anyhow::Result<axum_server::tls_rustls::RustlsConfig> {
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
        .await
        .with_context(|| format!("loading the TLS certificate {} and key {}", files.cert.display(), files.key.display()))
}

/// How often the certificate files are looked at for a change.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Reads the certificate and key again whenever either file changes, until `stopping`.
/// A pair that does not load is logged and the one in use is kept.
pub async fn reload_on_change(
    config: axum_server::tls_rustls::RustlsConfig,
    files: TlsFiles,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let changed = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let stamp = |files: &TlsFiles| -> (Option<SystemTime>, Option<SystemTime>) { (changed(&files.cert), changed(&files.key)) };
    let mut seen = stamp(&files);
    loop {
        tokio::select! {
            () = tokio::time::sleep(RELOAD_EVERY) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        let now = stamp(&files);
        if now == seen {
            continue;
        }
        match config.reload_from_pem_file(&files.cert, &files.key).await {
            Ok(()) => {
                seen = now;
                tracing::info!(cert = %files.cert.display(), "reloaded the TLS certificate");
            }
            // Half-written files (a renewal in progress) are tried again next time.
            Err(err) => {
                tracing::warn!(cert = %files.cert.display(), %err, "the changed TLS certificate does not load yet; serving the previous one")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificates_are_made_once_and_again_for_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings { self_signed: true, ..TlsSettings::default() };
        let files = prepare(&settings, dir.path(), &["127.0.0.1:7440".into(), "registry.example.com".into()]).unwrap().unwrap();
        let first = std::fs::read(&files.cert).unwrap();
        let ca = std::fs::read(files.ca.as_ref().unwrap()).unwrap();
        let again = prepare(&settings, dir.path(), &["127.0.0.1:7440".into()]).unwrap().unwrap();
        assert_eq!(std::fs::read(&again.cert).unwrap(), first, "the names are covered: nothing new");
        prepare(&settings, dir.path(), &["berth.internal:443".into()]).unwrap();
        assert_ne!(std::fs::read(&files.cert).unwrap(), first, "a new name: a new serving certificate");
        assert_eq!(std::fs::read(files.ca.as_ref().unwrap()).unwrap(), ca, "from the same CA");
        let record: Issued = serde_json::from_slice(&std::fs::read(dir.path().join("tls/serving.json")).unwrap()).unwrap();
        assert!(record.names.contains(&"berth.internal".to_string()) && record.names.contains(&"localhost".to_string()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(dir.path().join("tls/ca.key")).unwrap().permissions().mode() & 0o077, 0);
        }
    }

    #[test]
    fn settings_choose_one_source() {
        let both = TlsSettings { self_signed: true, cert_file: Some("a".into()), key_file: Some("b".into()), ..TlsSettings::default() };
        assert!(both.validate().is_err());
        assert!(TlsSettings { cert_file: Some("a".into()), ..TlsSettings::default() }.validate().is_err());
        assert_eq!(host_of("[::1]:7440"), "::1");
        assert_eq!(host_of("registry.example.com:5000"), "registry.example.com");
        assert_eq!(host_of("::1"), "::1");
    }
}
