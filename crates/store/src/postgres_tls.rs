//! TLS to PostgreSQL, with libpq's `sslmode` and `sslrootcert` in the database URL:
//!
//! | `sslmode` | encrypted | the server's certificate |
//! |---|---|---|
//! | `disable` | no | — |
//! | `allow`, `prefer` (the default) | when the server offers TLS | not checked |
//! | `require` | yes | not checked; checked as by `verify-ca` when `sslrootcert` is given |
//! | `verify-ca` | yes | signed by a trusted CA |
//! | `verify-full` | yes | signed by a trusted CA and naming the host connected to |
//!
//! The trusted CAs are those in the PEM file `sslrootcert`, or the system's
//! (`sslrootcert=system`, and when it is not given). rustls, with aws-lc-rs as
//! everywhere else in berth, does the TLS.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::Config;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// How far the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Not at all: the connection is encrypted, but to whoever answers.
    Nothing,
    /// Signed by a trusted CA, whatever names it holds.
    Chain,
    /// Signed by a trusted CA and naming the host.
    ChainAndName,
}

/// The connection settings of a database URL, and the TLS connector its `sslmode` asks
/// for.
pub(crate) fn parse(url: &str) -> Result<(Config, MakeRustlsConnect), StoreError> {
    let not_a_url = |why: String| StoreError::Backend(format!("the database address is not a PostgreSQL URL: {why}"));
    let mut sslmode = None;
    let mut rootcert = None;
    let rest = match url::Url::parse(url) {
        Ok(mut parsed) if matches!(parsed.scheme(), "postgres" | "postgresql") => {
            let mut kept = Vec::new();
            for (key, value) in parsed.query_pairs() {
                match &*key {
                    "sslmode" => sslmode = Some(value.into_owned()),
                    "sslrootcert" => rootcert = Some(value.into_owned()),
                    _ => kept.push((key.into_owned(), value.into_owned())),
                }
            }
            parsed.set_query(None);
            if !kept.is_empty() {
                parsed.query_pairs_mut().extend_pairs(kept);
            }
            parsed.to_string()
        }
        _ => url.to_string(),
    };
    let mut config: Config = rest.parse().map_err(|err: tokio_postgres::Error| not_a_url(err.to_string()))?;
    let (mode, check) = match sslmode.as_deref() {
        None => match config.get_ssl_mode() {
            SslMode::Disable => (SslMode::Disable, Check::Nothing),
            SslMode::Require => (SslMode::Require, Check::Nothing),
            _ => (SslMode::Prefer, Check::Nothing),
        },
        Some("disable") => (SslMode::Disable, Check::Nothing),
        Some("allow" | "prefer") => (SslMode::Prefer, Check::Nothing),
        Some("require") if rootcert.is_some() => (SslMode::Require, Check::Chain),
        Some("require") => (SslMode::Require, Check::Nothing),
        Some("verify-ca") => (SslMode::Require, Check::Chain),
        Some("verify-full") => (SslMode::Require, Check::ChainAndName),
        Some(other) => {
            return Err(StoreError::Backend(format!(
                "the database URL's sslmode={other} is none of disable, allow, prefer, require, verify-ca, verify-full"
            )));
        }
    };
    config.ssl_mode(mode);
    Ok((config, MakeRustlsConnect::new(client_config(check, rootcert.as_deref())?)))
}

fn client_config(check: Check, rootcert: Option<&str>) -> Result<ClientConfig, StoreError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| StoreError::Backend(format!("TLS to PostgreSQL: {err}")))?;
    let inner = match check {
        Check::Nothing => None,
        Check::Chain | Check::ChainAndName => {
            let roots = Arc::new(roots(rootcert)?);
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|err| StoreError::Backend(format!("TLS to PostgreSQL: {err}")))?;
            Some(verifier)
        }
    };
    let verifier = Verifier { inner, check_name: check == Check::ChainAndName, provider };
    Ok(builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth())
}

/// The CAs in the PEM file `rootcert`, or the system's.
fn roots(rootcert: Option<&str>) -> Result<RootCertStore, StoreError> {
    let mut roots = RootCertStore::empty();
    match rootcert {
        Some(path) if path != "system" => {
            let certificates: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect)
                .map_err(|err| StoreError::Backend(format!("reading the database URL's sslrootcert {path}: {err}")))?;
            let (added, _) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(StoreError::Backend(format!("the database URL's sslrootcert {path} holds no certificate")));
            }
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    Ok(roots)
}

/// The check `sslmode` asks for: rustls's own (webpki) for the chain, the name left out
/// for `verify-ca`, and nothing for modes that only encrypt. Handshake signatures are
/// always checked.
#[derive(Debug)]
struct Verifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // webpki checks the chain before the name: a name error means the chain held.
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }))
                if !self.check_name =>
            {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
