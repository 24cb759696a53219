//! Start-up and shutdown of `berth serve`: the data directory, the store, the first
//! admin token and client config, the listener, and background compaction.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use berth_store::{MetadataStore, PostgresStore, SqliteStore, Synchronous};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

use crate::tls::TlsSettings;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::http::{App, router};
use crate::services::admission::AdmissionSettings;
use crate::services::audit::{AuditLog, AuditSettings};
use crate::services::classes::ClassSettings;
use crate::services::delivery::{Deliverer, DeliverySettings, NotificationSettings};
use crate::services::import::Importer;
use crate::services::registry::{Registry, RegistrySettings};
use crate::services::streams::StreamSettings;
use crate::services::{Catalog, CatalogConfig};
use berth_upstream::{ImportSettings, Upstream};

use crate::registry_events::WebhookEndpoint;

/// Everything `berth serve` is told at start-up.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// The PostgreSQL database of the catalog (a URL); the embedded SQLite file in
    /// `data_dir` when `None`.
    pub database: Option<String>,
    /// S3-compatible storage for blobs (`s3://bucket/prefix`); `<data_dir>/blobs` when `None`.
    pub blob_store: Option<BlobStoreUrl>,
    pub listen: SocketAddr,
    /// `host[:port]` of berth's registry in pull specs; the listen address when `None`.
    pub registry_hostname: Option<String>,
    pub public_registry_hostnames: Vec<String>,
    pub synchronous: Synchronous,
    /// How many event-log entries to keep for watches to resume from.
    pub event_retention: u64,
    pub compaction_interval: Duration,
    /// Where to write the client config on first start; `None` writes none.
    pub client_config: Option<PathBuf>,
    /// Registry settings for import (the config file's `import` section).
    pub import: ImportSettings,
    /// How notifications are delivered to subscribers.
    pub delivery: DeliverySettings,
    /// Registry webhook endpoints (`POST /webhooks/{name}`).
    pub webhooks: Vec<WebhookEndpoint>,
    /// berth's own registry (`/v2/`).
    pub registry: RegistrySettings,
    /// HTTPS for the listener (plain HTTP when off).
    pub tls: TlsSettings,
    /// The audit log's rotation.
    pub audit: AuditSettings,
    /// Image classes: the domain of their labels.
    pub classes: ClassSettings,
    /// Admission reviews: how images are resolved.
    pub admission: AdmissionSettings,
    /// Image streams: who may create one implicitly.
    pub streams: StreamSettings,
}

/// Where blobs go on S3: the URL, and connection settings over the `AWS_*` environment
/// (lower-case keys, as object_store names them; empty for `berth serve`, which reads the
/// environment only).
#[derive(Clone, Debug, Default)]
pub struct BlobStoreUrl {
    pub url: String,
    pub options: Vec<(String, String)>,
}

/// The server's config file (`berth serve --config`): settings that are too many or too
/// structured for flags.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerFile {
    #[serde(default)]
    pub import: ImportSettings,
    /// Endpoints registries send change notifications to.
    #[serde(default)]
    pub webhooks: Vec<WebhookEndpoint>,
    /// berth's own registry: limits and token lifetime.
    #[serde(default)]
    pub registry: RegistrySettings,
    /// Notifications out: the hosts subscriptions may send to.
    #[serde(default)]
    pub notifications: NotificationSettings,
    /// HTTPS: a certificate and key, or berth's own CA (`selfSigned`).
    #[serde(default)]
    pub tls: TlsSettings,
    /// The audit log in the data directory: when it rotates, how many backups it keeps.
    #[serde(default)]
    pub audit: AuditSettings,
    /// Image classes: the domain of their labels.
    #[serde(default)]
    pub classes: ClassSettings,
    /// Admission reviews: how images are resolved, per resource.
    #[serde(default)]
    pub admission: AdmissionSettings,
    /// Image streams: who may create one by pushing or tagging into it.
    #[serde(default)]
    pub streams: StreamSettings,
}

impl ServerFile {
    pub fn load(path: &Path) -> anyhow::Result<ServerFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the server config {}", path.display()))?;
        let file: ServerFile =
            yaml_serde::from_str(&text).with_context(|| format!("{} is not a valid berth server config", path.display()))?;
        file.import.validate().map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        file.registry.validate().map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        file.tls.validate().map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        file.audit.validate().map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        file.classes.validate().map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        let mut names = std::collections::BTreeSet::new();
        for (idx, endpoint) in file.webhooks.iter().enumerate() {
            endpoint.validate().map_err(|err| anyhow::anyhow!("{}: webhooks[{idx}]: {err}", path.display()))?;
            if !names.insert(endpoint.name.as_str()) {
                anyhow::bail!("{}: webhooks[{idx}]: the name {:?} is used by another endpoint", path.display(), endpoint.name);
            }
        }
        Ok(file)
    }
}

/// The file the CLI reads to find the server and its token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConfig {
    pub server: String,
    pub token: String,
    /// A PEM file with the CA that signed the server's certificate, when clients must be
    /// told which one (berth's own CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<PathBuf>,
}

impl ClientConfig {
    /// `$BERTH_CONFIG`, else `$XDG_CONFIG_HOME/berth/config.yaml`, else
    /// `~/.config/berth/config.yaml`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("BERTH_CONFIG") {
            return Some(PathBuf::from(path));
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("berth").join("config.yaml"))
    }

    pub fn load(path: &Path) -> anyhow::Result<ClientConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        yaml_serde::from_str(&text).with_context(|| format!("{} is not a berth client config", path.display()))
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_private(path, &yaml_serde::to_string(self)?)
    }
}

/// A running server.
pub struct Started {
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The CA clients should trust, when berth made its own certificate.
    pub certificate_authority: Option<PathBuf>,
    /// The admin token, when this start created it (the first start of a data directory).
    pub admin_token: Option<String>,
    upstream: Upstream,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Started {
    /// How many requests the importer has sent to other registries.
    pub fn upstream_requests(&self) -> u64 {
        self.upstream.request_count()
    }

    /// Stops accepting, lets requests in flight finish, and waits for the server to end.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.serve_until(std::future::ready(())).await
    }

    /// Serves until `signal` completes (then shuts down gracefully) or the server fails.
    pub async fn serve_until(self, signal: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let Started { shutdown, mut task, .. } = self;
        tokio::select! {
            ended = &mut task => return ended.context("the server task failed")?,
            () = signal => {}
        }
        let _ = shutdown.send(());
        task.await.context("the server task failed")?
    }
}

/// Opens the data directory and starts serving. Returns once the listener is bound and
/// the server is ready.
pub async fn start(config: ServeConfig) -> anyhow::Result<Started> {
    std::fs::create_dir_all(config.data_dir.join("blobs"))
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let data_dir_lock = lock_data_dir(&config.data_dir)?;
    let store: Arc<dyn MetadataStore> = match &config.database {
        Some(url) => {
            let url = url.clone();
            Arc::new(tokio::task::spawn_blocking(move || PostgresStore::connect(&url)).await?.context("opening the --database")?)
        }
        None => {
            let db = config.data_dir.join("berth.db");
            Arc::new(SqliteStore::open(&db, config.synchronous).with_context(|| format!("opening {}", db.display()))?)
        }
    };
    crate::memory::release_when_quiet(Arc::downgrade(&store));
    let listener = std::net::TcpListener::bind(config.listen).with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let mut names = vec![addr.ip().to_string(), hostname()];
    names.extend(config.registry_hostname.iter().cloned());
    names.extend(config.public_registry_hostnames.iter().cloned());
    let tls = crate::tls::prepare(&config.tls, &config.data_dir, &names)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "serving plain HTTP beyond this machine: tokens cross the network in clear, and Kubernetes and Docker clients want HTTPS; serve with --tls=self-signed or --tls-cert/--tls-key");
    }
    let catalog = Catalog::new(
        Arc::clone(&store),
        CatalogConfig {
            registry_hostname: config.registry_hostname.clone().unwrap_or_else(|| addr.to_string()),
            public_registry_hostnames: config.public_registry_hostnames.clone(),
            subscription_hosts: berth_upstream::HostPolicy::new(&config.delivery.allowed_hosts, "notifications.allowedHosts"),
            classes: config.classes.clone(),
            streams: config.streams.clone(),
        },
    );
    let admin_token = tokio::task::spawn_blocking({
        let catalog = catalog.clone();
        move || {
            catalog.ensure_default_namespace()?;
            catalog.bootstrap_admin()
        }
    })
    .await?
    .map_err(|err| anyhow::anyhow!(err.message))?;
    let token_file = config.data_dir.join("admin.token");
    if let Some(token) = &admin_token {
        write_private(&token_file, &format!("{token}\n"))?;
        tracing::info!(path = %token_file.display(), "created the cluster-admin token");
    }
    // The client config is written on first start, again whenever it is missing (it was
    // deleted, or BERTH_CONFIG points somewhere new), and when it holds this server's admin
    // token but another address or CA (TLS turned on or off).
    if let Some(path) = &config.client_config
        && let Some(token) = admin_token.clone().or_else(|| std::fs::read_to_string(&token_file).ok().map(|t| t.trim().to_string()))
    {
        let wanted = ClientConfig {
            server: format!("{scheme}://{addr}"),
            token,
            certificate_authority: tls.as_ref().and_then(|files| files.ca.clone()),
        };
        let current = ClientConfig::load(path).ok();
        if admin_token.is_some() || current.as_ref().is_none_or(|c| c.token == wanted.token && *c != wanted) {
            wanted.save(path)?;
            tracing::info!(path = %path.display(), "wrote the client config: berth commands on this machine will use this server");
        }
    }
    crate::metrics::handle();
    let ready = Arc::new(AtomicBool::new(false));
    let (shutdown, stopped) = oneshot::channel::<()>();
    let (stopping, stopping_seen) = tokio::sync::watch::channel(false);
    let upstream = Upstream::new(config.import.clone()).map_err(|err| anyhow::anyhow!("import settings: {err}"))?;
    let importer = Importer::new(catalog.clone(), upstream.clone());
    // On a shared database, the controllers that must run once hold leases; on the
    // embedded store this is the only server (the data directory is locked).
    let holder: Option<Arc<str>> = config.database.as_ref().map(|_| Arc::from(crate::leases::holder_id()));
    if holder.is_some() {
        // Tokens revoked through another server stop working here at once too.
        tokio::spawn(crate::services::tokens::follow_tokens(catalog.clone(), stopping_seen.clone()));
    }
    let controllers = crate::leases::Controllers { store: Arc::clone(&store), holder, stop: stopping_seen.clone() };
    controllers.spawn("imports", {
        let importer = importer.clone();
        move |stop| importer.clone().run_imports(stop)
    });
    tokio::spawn(crate::services::lineage::follow(catalog.clone(), stopping_seen.clone()));
    controllers.spawn("class-labeller", {
        let catalog = catalog.clone();
        move |stop| crate::services::lineage::label_classes(catalog.clone(), stop)
    });
    // The storage index is loaded now, off the request path: the first quota check
    // runs in the store's writer, which must not wait for a scan of every Image.
    let loading = catalog.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(err) = loading.storage() {
            tracing::warn!(error = %err.message, "the storage index could not be loaded; the first report or quota check will retry");
        }
    });
    tokio::spawn(crate::services::usage::write_forever(catalog.clone(), stopping_seen.clone()));
    let deliverer =
        Deliverer::new(catalog.clone(), config.delivery.clone()).map_err(|err| anyhow::anyhow!("notification settings: {err}"))?;
    controllers.spawn("notifier", move |stop| deliverer.clone().run(stop));
    let blobs = match &config.blob_store {
        None => berth_store::BlobStore::open_local(&config.data_dir.join("blobs"), config.synchronous == Synchronous::Full)
            .with_context(|| format!("opening blob storage in {}", config.data_dir.join("blobs").display()))?,
        Some(s3) => {
            berth_store::BlobStore::open_s3(&s3.url, &s3.options).with_context(|| format!("opening the --blob-store {}", s3.url))?
        }
    };
    if config.blob_store.is_some() {
        blobs.probe().await.context("the --blob-store does not answer (check the bucket, AWS_ENDPOINT_URL and the credentials)")?;
    }
    let key = match &config.database {
        None => registry_key(&config.data_dir)?,
        Some(_) => {
            let store = Arc::clone(&store);
            tokio::task::spawn_blocking(move || shared_registry_key(&*store)).await??
        }
    };
    let registry = Registry::new(catalog.clone(), blobs, upstream.clone(), config.registry.clone(), key);
    controllers.spawn("upload-cleanup", {
        let registry = registry.clone();
        move |stop| registry.clone().run_upload_cleanup(stop)
    });
    controllers.spawn("pruner", {
        let registry = registry.clone();
        move |stop| registry.clone().run_pruner(stop)
    });
    tokio::spawn(crate::metrics::upkeep(stopping_seen.clone()));
    let audit_dir = config.data_dir.join("audit");
    let audit =
        AuditLog::open(&audit_dir, config.audit.clone()).with_context(|| format!("opening the audit log in {}", audit_dir.display()))?;
    let app = App {
        audit: Arc::new(audit),
        catalog,
        importer,
        registry,
        webhooks: Arc::new(config.webhooks.clone()),
        ready: Arc::clone(&ready),
        readiness: Arc::default(),
        stopping: stopping_seen.clone(),
        scheme,
        admission: Arc::new(config.admission.clone()),
    };
    let (keep, every) = (config.event_retention, config.compaction_interval);
    controllers.spawn("compaction", move |stop| compact_forever(Arc::clone(&store), keep, every, stop));
    let handle = axum_server::Handle::new();
    tokio::spawn({
        let handle = handle.clone();
        async move {
            let _ = stopped.await;
            stopping.send_replace(true);
            // Requests in flight finish; watches end as `stopping` turns true.
            handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        }
    });
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    // Answers leave at once (TCP_NODELAY): a small response held back for the peer's
    // delayed ACK costs a review or a GET up to 40 ms.
    use axum_server::accept::NoDelayAcceptor;
    let served: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match &tls {
        Some(files) => {
            let rustls = crate::tls::load(files).await?;
            tokio::spawn(crate::tls::reload_on_change(rustls.clone(), files.clone(), stopping_seen.clone()));
            Box::pin(
                axum_server::from_tcp_rustls(listener, rustls)?
                    .map(|tls| tls.acceptor(NoDelayAcceptor::new()))
                    .handle(handle)
                    .serve(service),
            )
        }
        None => Box::pin(axum_server::from_tcp(listener)?.acceptor(NoDelayAcceptor::new()).handle(handle).serve(service)),
    };
    let task = tokio::spawn(async move {
        let result = served.await.context("serving HTTP");
        // The data directory is free for the next server once this one has stopped.
        drop(data_dir_lock);
        result
    });
    ready.store(true, Ordering::Release);
    tracing::info!(%addr, %scheme, data_dir = %config.data_dir.display(), "berth is serving");
    let certificate_authority = tls.and_then(|files| files.ca);
    Ok(Started { addr, scheme, certificate_authority, admin_token, upstream, shutdown, task })
}

/// Runs `berth serve` until SIGINT or SIGTERM.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    start(config)
        .await?
        .serve_until(async {
            wait_for_signal().await;
            tracing::info!("shutting down");
        })
        .await
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn compact_forever(store: Arc<dyn MetadataStore>, keep: u64, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let store = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || store.compact(keep)).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(%err, "event-log compaction failed; will retry"),
            Err(_) => return,
        }
    }
}

/// The key that signs the registry's tokens: made on first start, kept in the data
/// directory so that tokens outlive a restart.
fn registry_key(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    use base64::Engine;
    let path = data_dir.join("registry.key");
    let engine = base64::engine::general_purpose::STANDARD;
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(bytes) = engine.decode(text.trim())
        && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(key);
    }
    let key: [u8; 32] = rand::random();
    write_private(&path, &format!("{}\n", engine.encode(key)))?;
    Ok(key)
}

/// The registry's token key on a shared database: kept in the database (made by the
/// first server to start), so that a token one server issued works on every other.
fn shared_registry_key(store: &dyn MetadataStore) -> anyhow::Result<[u8; 32]> {
    use base64::Engine;
    let key = berth_store::ObjectKey::new(SERVER_KEYS, "", "registry");
    let engine = base64::engine::general_purpose::STANDARD;
    let made: [u8; 32] = rand::random();
    let text = engine.encode(made);
    let wanted = key.clone();
    let stored = match berth_store::transact(store, move |txn| {
        if let Some(stored) = txn.get(&wanted)? {
            return Ok::<_, berth_store::StoreError>(stored.body);
        }
        txn.put(&wanted, text.as_bytes(), &[], berth_store::Precondition::Absent)?;
        Ok(text.into_bytes())
    }) {
        Ok(stored) => stored,
        // Another server starting at the same time made it first.
        Err(err) => store.get(&key)?.map(|stored| stored.body).ok_or(err)?,
    };
    let bytes = engine.decode(&stored).context("the registry key in the database is not base64")?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| anyhow::anyhow!("the registry key in the database is not 32 bytes"))
}

/// The store's resource for the server's own secrets (never served by the API).
const SERVER_KEYS: &str = "serverkeys";

/// The file whose lock says a server owns the data directory; it holds that server's
/// process id.
const LOCK_FILE: &str = "berth.lock";

/// Takes the data directory for this server's life. The embedded store is single-node:
/// two servers on one SQLite file would each run a writer, a scheduler and a notifier,
/// so a second `berth serve` on the same directory refuses to start, naming the process
/// that holds it. The lock (`flock`) goes when the server stops or its process dies, even
/// by SIGKILL, so a crash never leaves a stale lock behind.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::Write;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path)
                .ok()
                .map(|text| text.trim().to_string())
                .filter(|pid| !pid.is_empty())
                .map_or_else(|| "another process".to_string(), |pid| format!("process {pid}"));
            anyhow::bail!(
                "the data directory {} is in use by another berth serve ({holder}, which holds {}). The embedded store \
                 serves one process at a time: stop that server, or give this one its own --data-dir; to run several \
                 replicas on one catalog, start each with --database postgres://... (a shared PostgreSQL)",
                dir.display(),
                path.display()
            )
        }
        Err(std::fs::TryLockError::Error(err)) => Err(err).with_context(|| format!("locking {}", path.display())),
    }
}

/// How long a shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// This machine's name, one of the names a self-signed certificate is for.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|name| name.trim().to_string()).unwrap_or_default()
}

pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings the README documents are the settings the server reads.
    #[test]
    fn the_readme_server_settings_parse() {
        let readme = include_str!("../../../README.md");
        let mut documented = String::new();
        for block in readme.split("```yaml\n").skip(1).filter_map(|b| b.split("```").next()) {
            if ["import:", "webhooks:\n-", "registry:", "notifications:", "audit:", "classes:", "admission:", "streams:"]
                .iter()
                .any(|section| block.starts_with(section))
            {
                documented.push_str(&block.replace("webhooks: []", ""));
            }
        }
        assert!(documented.contains("additionalTrustedCA") && documented.contains("format: berth"), "{documented}");
        assert!(documented.contains("implicitCreate: Admins"), "{documented}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.yaml");
        std::fs::write(&path, documented).unwrap();
        let file = ServerFile::load(&path).unwrap();
        assert_eq!(file.import, ImportSettings::default(), "the README lists the defaults");
        assert_eq!(file.registry, RegistrySettings::default(), "the README lists the registry's defaults");
        assert_eq!(file.notifications, NotificationSettings::default(), "the README lists the notification defaults");
        assert_eq!(file.tls, TlsSettings::default(), "the README lists the TLS defaults");
        assert_eq!(file.audit, AuditSettings::default(), "the README lists the audit defaults");
        assert_eq!(file.classes, ClassSettings::default(), "the README lists the class defaults");
        assert_eq!(file.admission, AdmissionSettings::default(), "the README lists the admission defaults");
        assert_eq!(file.streams, StreamSettings::default(), "the README lists the stream defaults");
        assert_eq!(file.webhooks.len(), 2);
    }
}
