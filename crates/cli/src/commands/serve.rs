//! `berth serve`: runs the server in this process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use berth_server::tls::TlsSettings;
use berth_server::{DeliverySettings, ServeConfig, ServerFile};
use berth_store::Synchronous;
use tracing_subscriber::EnvFilter;

use crate::commands::Context;

/// How often the event log is trimmed to `--event-retention` entries.
const COMPACTION_INTERVAL: Duration = Duration::from_secs(10);
const MAX_BLOCKING_THREADS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// Faster writes; the last commits may be lost on power failure (not on a crash).
    Normal,
    /// Every commit is on disk before it is acknowledged.
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where the embedded database (unless --database), blobs and first admin token live.
    #[arg(long, default_value = "./berth-data")]
    data_dir: PathBuf,
    /// Keep the catalog in this PostgreSQL database (`postgres://user:password@host:port/db`)
    /// instead of the embedded SQLite file in --data-dir: several servers can then share
    /// one catalog (the README says what they share today). Best given through the
    /// environment, from a Secret.
    #[arg(long, env = "BERTH_DATABASE", value_name = "URL", hide_env_values = true)]
    database: Option<String>,
    /// Keep blobs in S3-compatible storage (`s3://bucket/prefix`) instead of
    /// `<data-dir>/blobs`, so that several servers share them. Connection settings come
    /// from the usual AWS variables: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ENDPOINT_URL (another S3-compatible server), AWS_ALLOW_HTTP=true (one on plain HTTP).
    #[arg(long, env = "BERTH_BLOB_STORE", value_name = "URL")]
    blob_store: Option<String>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:7440")]
    listen: SocketAddr,
    /// `host[:port]` that image pull specs start with (default: the listen address).
    #[arg(long)]
    registry_hostname: Option<String>,
    /// `host[:port]` clients outside use to reach berth's registry; fills
    /// `status.publicDockerImageRepository` of every stream. May be given more than once
    /// (the first is shown).
    #[arg(long = "public-registry-hostname", value_name = "HOST")]
    public_registry_hostnames: Vec<String>,
    /// How durable each commit is.
    #[arg(long, value_enum, default_value_t = SyncMode::Full)]
    sync: SyncMode,
    /// How many event-log entries to keep for watches to resume from. Each holds a whole
    /// object (an image stream can be tens of KB), so this bounds the log's disk use.
    #[arg(long, default_value_t = 20_000)]
    event_retention: u64,
    /// Do not write the client config (server URL and admin token) on first start.
    #[arg(long)]
    no_client_config: bool,
    /// How log lines are written to stderr: `text` for people, `json` (one object per
    /// line, with every field) for log collectors. `RUST_LOG` sets the level.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// A YAML file with the server's settings: `import` (allowed and insecure registries,
    /// trusted CAs, the default platform, limits, timeouts, retries). See the README.
    #[arg(long, env = "BERTH_SERVER_CONFIG", value_name = "FILE")]
    server_config: Option<PathBuf>,
    /// Serve HTTPS with a CA and certificate berth makes in `<data-dir>/tls` (and writes
    /// into the client config, so `berth` commands trust it).
    #[arg(long, value_enum, value_name = "MODE")]
    tls: Option<TlsMode>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key). Reloaded when it changes.
    #[arg(long, value_name = "FILE", requires = "tls_key", conflicts_with = "tls")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsMode {
    /// berth's own CA and serving certificate.
    SelfSigned,
}

/// mimalloc (the allocator) reads its options from the environment when the process
/// starts. On Linux it commits its arenas eagerly by default, which kept berth's resident
/// memory at about twice what it uses under registry load (26 MiB idle instead of 16, 71
/// MiB instead of 28 after a 64 MiB push). `berth serve` therefore starts itself again
/// with eager commit off, unless the variable is already set (then it is respected).
const ALLOCATOR_OPTION: &str = "MIMALLOC_ARENA_EAGER_COMMIT";

#[cfg(unix)]
fn restart_with_allocator_options() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(ALLOCATOR_OPTION).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    // `exec` returns only when it failed; berth then runs with the allocator's defaults.
    let _ = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env(ALLOCATOR_OPTION, "0").exec();
}

#[cfg(not(unix))]
fn restart_with_allocator_options() {}

/// The config file's `tls` section, with the flags over it.
fn tls_settings(mut file: TlsSettings, mode: &Option<TlsMode>, cert: &Option<PathBuf>, key: &Option<PathBuf>) -> TlsSettings {
    if mode.is_some() {
        file = TlsSettings { self_signed: true, cert_file: None, key_file: None, ..file };
    }
    if let (Some(cert), Some(key)) = (cert, key) {
        file = TlsSettings { self_signed: false, cert_file: Some(cert.clone()), key_file: Some(key.clone()), ..file };
    }
    file
}

pub fn run(ctx: &Context, args: ServeArgs) -> anyhow::Result<()> {
    restart_with_allocator_options();
    berth_server::memory::use_allocator(berth_server::memory::Allocator {
        live: crate::heap_live,
        release: crate::release_memory,
        release_all: crate::release_all_memory,
    });
    // Logging is for the server only: client verbs print results, not logs.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).init(),
    }
    let file = match &args.server_config {
        Some(path) => ServerFile::load(path)?,
        None => ServerFile::default(),
    };
    let config = ServeConfig {
        data_dir: args.data_dir,
        database: args.database,
        blob_store: args.blob_store.map(|url| berth_server::BlobStoreUrl { url, options: Vec::new() }),
        listen: args.listen,
        registry_hostname: args.registry_hostname,
        public_registry_hostnames: args.public_registry_hostnames,
        synchronous: match args.sync {
            SyncMode::Normal => Synchronous::Normal,
            SyncMode::Full => Synchronous::Full,
        },
        event_retention: args.event_retention,
        compaction_interval: COMPACTION_INTERVAL,
        client_config: if args.no_client_config { None } else { ctx.config_path() },
        import: file.import,
        delivery: DeliverySettings { allowed_hosts: file.notifications.allowed_hosts, ..DeliverySettings::default() },
        webhooks: file.webhooks,
        registry: file.registry,
        tls: tls_settings(file.tls, &args.tls, &args.tls_cert, &args.tls_key),
        audit: file.audit,
        classes: file.classes,
        admission: file.admission,
        streams: file.streams,
    };
    // Blocking threads run writes and lists; more of them than this only queue on the one
    // writer connection and the reader pool while each holds its own memory.
    let runtime = berth_server::memory::runtime_builder()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(berth_server::run(config))
}
