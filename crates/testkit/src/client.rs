//! Pushing test images over the registry HTTP API to any registry reachable over plain
//! HTTP: the one [`crate::DistributionRegistry`] starts, or one started by someone else
//! (a benchmark script, say).

use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{CONTENT_TYPE, LOCATION};

use crate::image::{TestImage, TestIndex, digest_of};

/// A manifest as the registry stored it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// The manifest's digest, as the registry reported it in `Docker-Content-Digest`.
    pub digest: String,
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// The manifest's media type.
    pub media_type: String,
}

/// A blocking client of one registry over plain HTTP, with HTTP Basic credentials if it
/// needs them. It is `Sync`: several threads may push through one client.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    host: String,
    credentials: Option<(String, String)>,
    http: Client,
}

impl RegistryClient {
    /// A client of the registry at `host` (`127.0.0.1:5000`), sending `credentials`
    /// (user, password) with every request if given.
    pub fn new(host: &str, credentials: Option<(&str, &str)>) -> anyhow::Result<RegistryClient> {
        let http = Client::builder().no_proxy().connect_timeout(Duration::from_secs(5)).timeout(Duration::from_secs(300)).build()?;
        Ok(RegistryClient {
            host: host.to_string(),
            credentials: credentials.map(|(user, password)| (user.to_string(), password.to_string())),
            http,
        })
    }

    /// `host[:port]`, the registry host of pull specs.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The URL of `path` (which starts with `/`) on the registry.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host)
    }

    /// The user and password sent with each request, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials.as_ref().map(|(user, password)| (user.as_str(), password.as_str()))
    }

    /// Whether the registry answers `GET /v2/` with 200 (with the credentials, if any).
    pub fn ping(&self) -> bool {
        self.request(reqwest::Method::GET, "/v2/").send().is_ok_and(|response| response.status() == StatusCode::OK)
    }

    /// Pushes `image`'s blobs and then its manifest, under `tag`, or by digest if `None`.
    pub fn push(&self, repository: &str, tag: Option<&str>, image: &TestImage) -> anyhow::Result<Pushed> {
        for layer in &image.layers {
            self.push_blob(repository, layer)?;
        }
        self.push_blob(repository, &image.config_bytes())?;
        self.push_manifest(repository, tag, image.format.manifest_media_type(), &image.manifest_bytes())
    }

    /// Pushes each child of `index` (and its attestation) by digest, then the index under
    /// `tag`, or by digest if `None`.
    pub fn push_index(&self, repository: &str, tag: Option<&str>, index: &TestIndex) -> anyhow::Result<Pushed> {
        for child in index.children.iter().chain(index.attestation().as_ref()) {
            self.push(repository, None, child)?;
        }
        self.push_manifest(repository, tag, index.media_type(), &index.manifest_bytes())
    }

    /// Pushes one blob unless the repository already has it (monolithic upload: `POST`,
    /// then one `PUT ?digest=`). Returns its digest.
    pub fn push_blob(&self, repository: &str, blob: &[u8]) -> anyhow::Result<String> {
        let digest = digest_of(blob);
        let exists = self.request(reqwest::Method::HEAD, &format!("/v2/{repository}/blobs/{digest}")).send()?;
        if exists.status() == StatusCode::OK {
            return Ok(digest);
        }
        let started = self.request(reqwest::Method::POST, &format!("/v2/{repository}/blobs/uploads/")).send()?;
        let started = expect_status(started, StatusCode::ACCEPTED, "starting a blob upload")?;
        let location = started.headers().get(LOCATION).context("a blob upload without Location")?.to_str()?;
        // The registry answers with an absolute URL; a relative one is resolved against it.
        let location = if location.starts_with('/') { self.url(location) } else { location.to_string() };
        let separator = if location.contains('?') { '&' } else { '?' };
        let upload = self
            .http
            .put(format!("{location}{separator}digest={digest}"))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(blob.to_vec());
        expect_status(self.authenticate(upload).send()?, StatusCode::CREATED, "uploading a blob")?;
        Ok(digest)
    }

    /// Pushes manifest bytes as they are, under `tag`, or by digest if `None`, and checks
    /// that the registry reports the digest of these bytes.
    pub fn push_manifest(&self, repository: &str, tag: Option<&str>, media_type: &str, manifest: &[u8]) -> anyhow::Result<Pushed> {
        let digest = digest_of(manifest);
        let reference = tag.unwrap_or(&digest);
        let request =
            self.request(reqwest::Method::PUT, &format!("/v2/{repository}/manifests/{reference}")).header(CONTENT_TYPE, media_type);
        let response = expect_status(request.body(manifest.to_vec()).send()?, StatusCode::CREATED, "pushing a manifest")?;
        let reported = response.headers().get("docker-content-digest").context("a manifest push without Docker-Content-Digest")?;
        if reported.to_str()? != digest {
            bail!("the registry stored manifest {reported:?}, but its bytes have digest {digest}");
        }
        Ok(Pushed { digest, manifest: manifest.to_vec(), media_type: media_type.to_string() })
    }

    /// Deletes the manifest `digest` from `repository`, and with it every tag pointing to it.
    pub fn delete_manifest(&self, repository: &str, digest: &str) -> anyhow::Result<()> {
        let response = self.request(reqwest::Method::DELETE, &format!("/v2/{repository}/manifests/{digest}")).send()?;
        expect_status(response, StatusCode::ACCEPTED, "deleting a manifest")?;
        Ok(())
    }

    /// A request to `path` on the registry, with the credentials if there are any.
    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.authenticate(self.http.request(method, self.url(path)))
    }

    fn authenticate(&self, request: RequestBuilder) -> RequestBuilder {
        match self.credentials() {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }
}

/// `response` if it has `expected` status, else an error with the status and body.
fn expect_status(response: Response, expected: StatusCode, what: &str) -> anyhow::Result<Response> {
    if response.status() == expected {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().unwrap_or_default();
    bail!("{what}: expected {expected}, got {status}: {body}")
}
