//! The real CNCF distribution registry (`docker-registry` from Debian), one process per
//! test, with its own config, storage and port, so it never depends on a system service.

use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use tempfile::TempDir;

use crate::image::{TestImage, TestIndex, digest_of};

const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
/// How long a started registry has to answer `GET /v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many ports `start` tries: the free port it picks may be taken before the registry binds it.
const START_ATTEMPTS: usize = 3;

/// How clients authenticate to the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// No authentication: anyone may pull and push.
    Open,
    /// HTTP Basic authentication against an htpasswd file holding this one user.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

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

/// A running `docker-registry` on `127.0.0.1` and an ephemeral port, storing into a
/// temporary directory. Dropping it kills the process and removes the directory.
pub struct DistributionRegistry {
    child: Option<Child>,
    addr: SocketAddr,
    auth: Auth,
    http: Client,
    /// Holds `config.yml`, `htpasswd`, `registry.log` and `storage/`.
    dir: TempDir,
}

impl DistributionRegistry {
    /// Starts a registry and waits until it answers `GET /v2/` (with the credentials of
    /// `auth`, if any). Tries another port if the one picked was taken meanwhile.
    pub fn start(auth: Auth) -> anyhow::Result<DistributionRegistry> {
        let dir = tempfile::Builder::new().prefix("berth-registry-").tempdir()?;
        if let Auth::Basic { user, password } = &auth {
            let output = Command::new("htpasswd").args(["-Bbn", user, password]).output().context("running htpasswd")?;
            if !output.status.success() {
                bail!("htpasswd failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
            }
            fs::write(dir.path().join("htpasswd"), output.stdout)?;
        }
        let http = Client::builder().no_proxy().connect_timeout(Duration::from_secs(5)).timeout(Duration::from_secs(300)).build()?;
        let mut registry = DistributionRegistry { child: None, addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), auth, http, dir };
        for attempt in 1..=START_ATTEMPTS {
            registry.addr = free_port()?;
            registry.write_config()?;
            // Each attempt gets a fresh log, so that a clash seen in it is this attempt's.
            let _ = fs::remove_file(registry.log_path());
            match registry.launch() {
                Ok(()) => return Ok(registry),
                Err(error) if attempt < START_ATTEMPTS && format!("{error:#}").contains("address already in use") => continue,
                Err(error) => return Err(error),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The address the registry listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, the registry host of pull specs.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The URL of `path` (which starts with `/`) on the registry.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The pull spec of `repository` at `reference`: `host/repository:tag`, or
    /// `host/repository@digest` when `reference` is a digest.
    pub fn pull_spec(&self, repository: &str, reference: &str) -> String {
        let separator = if reference.contains(':') { '@' } else { ':' };
        format!("{}/{repository}{separator}{reference}", self.host())
    }

    /// The user and password clients need, if the registry requires them.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match &self.auth {
            Auth::Open => None,
            Auth::Basic { user, password } => Some((user, password)),
        }
    }

    /// Kills the registry process (it answers nothing until [`DistributionRegistry::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Kill fails only if the process has already exited; wait reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the registry if it runs, then starts it again on the same port and storage.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    /// The registry's log (all its runs since `start`), for the message of a failed test.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_else(|error| format!("(no registry log: {error})"))
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

    /// A request to `path` on the registry, with the registry's credentials if it has any.
    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.authenticate(self.http.request(method, self.url(path)))
    }

    fn authenticate(&self, request: RequestBuilder) -> RequestBuilder {
        match self.credentials() {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    fn write_config(&self) -> anyhow::Result<()> {
        let dir = self.dir.path();
        let auth = match self.auth {
            Auth::Open => String::new(),
            Auth::Basic { .. } => format!("auth:\n  htpasswd:\n    realm: berth-testkit\n    path: {}\n", dir.join("htpasswd").display()),
        };
        // The health check of the storage driver is off: it would only add log noise.
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n  secret: berth-testkit\n\
             health:\n  storagedriver:\n    enabled: false\n\
             {auth}",
            storage = dir.join("storage").display(),
            addr = self.addr,
        );
        fs::write(dir.join("config.yml"), config).context("writing config.yml")
    }

    /// Starts the process with the current config and waits until it answers.
    fn launch(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let mut command = Command::new(REGISTRY_BINARY);
        command.arg("serve").arg(self.dir.path().join("config.yml")).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // REGISTRY_* variables override the config file; none from the test's environment may.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REGISTRY_") {
                command.env_remove(name);
            }
        }
        self.child = Some(command.spawn().with_context(|| format!("starting {REGISTRY_BINARY}"))?);
        let ready = self.wait_until_ready();
        if ready.is_err() {
            self.stop();
        }
        ready
    }

    fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().transpose()).transpose()? {
                bail!("docker-registry exited ({status}) before answering; its log:\n{}", self.log());
            }
            if let Ok(response) = self.request(reqwest::Method::GET, "/v2/").send()
                && response.status() == StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("docker-registry did not answer GET /v2/ within {READY_TIMEOUT:?}; its log:\n{}", self.log());
            }
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DistributionRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port free right now. Another process may take it before the registry
/// binds it, which is why `start` retries.
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?)
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
