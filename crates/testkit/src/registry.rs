//! The real CNCF distribution registry (`docker-registry` from Debian), one process per
//! test, with its own config, storage and port, so it never depends on a system service.

use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tempfile::TempDir;

use crate::client::{Pushed, RegistryClient};
use crate::image::{TestImage, TestIndex};

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

impl Auth {
    /// The user and password clients send, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match self {
            Auth::Open => None,
            Auth::Basic { user, password } => Some((user, password)),
        }
    }
}

/// Where a registry sends its notifications: a URL and the headers to send with each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notifications {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// A running `docker-registry` on `127.0.0.1` and an ephemeral port, storing into a
/// temporary directory. Dropping it kills the process and removes the directory.
pub struct DistributionRegistry {
    child: Option<Child>,
    addr: SocketAddr,
    auth: Auth,
    /// Where the registry sends its notifications, if anywhere.
    notify: Option<Notifications>,
    /// Pushes to this registry; rebuilt whenever the port changes.
    client: RegistryClient,
    /// Holds `config.yml`, `htpasswd`, `registry.log` and `storage/`.
    dir: TempDir,
}

impl DistributionRegistry {
    /// Starts a registry and waits until it answers `GET /v2/` (with the credentials of
    /// `auth`, if any). Tries another port if the one picked was taken meanwhile.
    pub fn start(auth: Auth) -> anyhow::Result<DistributionRegistry> {
        DistributionRegistry::start_with(auth, None)
    }

    /// Starts a registry that sends its notifications (`notifications.endpoints`) to
    /// `notify.url` with `notify.headers`.
    pub fn start_notifying(auth: Auth, notify: Notifications) -> anyhow::Result<DistributionRegistry> {
        DistributionRegistry::start_with(auth, Some(notify))
    }

    fn start_with(auth: Auth, notify: Option<Notifications>) -> anyhow::Result<DistributionRegistry> {
        let dir = tempfile::Builder::new().prefix("berth-registry-").tempdir()?;
        if let Auth::Basic { user, password } = &auth {
            let output = Command::new("htpasswd").args(["-Bbn", user, password]).output().context("running htpasswd")?;
            if !output.status.success() {
                bail!("htpasswd failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
            }
            fs::write(dir.path().join("htpasswd"), output.stdout)?;
        }
        let addr = free_port()?;
        let client = RegistryClient::new(&addr.to_string(), auth.credentials())?;
        let mut registry = DistributionRegistry { child: None, addr, auth, notify, client, dir };
        for attempt in 1..=START_ATTEMPTS {
            if attempt > 1 {
                registry.addr = free_port()?;
                registry.client = RegistryClient::new(&registry.addr.to_string(), registry.credentials())?;
            }
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
        self.client.url(path)
    }

    /// The client that pushes to this registry (with its credentials, if any).
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The pull spec of `repository` at `reference`: `host/repository:tag`, or
    /// `host/repository@digest` when `reference` is a digest.
    pub fn pull_spec(&self, repository: &str, reference: &str) -> String {
        let separator = if reference.contains(':') { '@' } else { ':' };
        format!("{}/{repository}{separator}{reference}", self.host())
    }

    /// The user and password clients need, if the registry requires them.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.credentials()
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
        self.client.push(repository, tag, image)
    }

    /// Pushes each child of `index` (and its attestation) by digest, then the index under
    /// `tag`, or by digest if `None`.
    pub fn push_index(&self, repository: &str, tag: Option<&str>, index: &TestIndex) -> anyhow::Result<Pushed> {
        self.client.push_index(repository, tag, index)
    }

    /// Pushes one blob unless the repository already has it. Returns its digest.
    pub fn push_blob(&self, repository: &str, blob: &[u8]) -> anyhow::Result<String> {
        self.client.push_blob(repository, blob)
    }

    /// Pushes manifest bytes as they are, under `tag`, or by digest if `None`, and checks
    /// that the registry reports the digest of these bytes.
    pub fn push_manifest(&self, repository: &str, tag: Option<&str>, media_type: &str, manifest: &[u8]) -> anyhow::Result<Pushed> {
        self.client.push_manifest(repository, tag, media_type, manifest)
    }

    /// Deletes the manifest `digest` from `repository`, and with it every tag pointing to it.
    pub fn delete_manifest(&self, repository: &str, digest: &str) -> anyhow::Result<()> {
        self.client.delete_manifest(repository, digest)
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
        let notifications = match &self.notify {
            None => String::new(),
            Some(notify) => {
                let headers: String =
                    notify.headers.iter().map(|(name, value)| format!("        {name}: [{value:?}]\n")).collect::<Vec<_>>().join("");
                format!(
                    "notifications:\n  endpoints:\n    - name: berth\n      url: {}\n      timeout: 2s\n      threshold: 5\n      backoff: 100ms\n      headers:\n{headers}",
                    notify.url
                )
            }
        };
        // The health check of the storage driver is off: it would only add log noise.
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n  secret: berth-testkit\n\
             health:\n  storagedriver:\n    enabled: false\n\
             {auth}{notifications}",
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
            if self.client.ping() {
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
