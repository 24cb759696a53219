//! S3-compatible storage, real and on loopback: `s3s-fs` (crates.io; `scripts/test`
//! installs it), one server per test process, a fresh bucket per call of [`bucket`].
//!
//! Why s3s-fs: it is a real S3 server (SigV4 authentication, presigned URLs, multipart
//! uploads, ListObjectsV2, CopyObject) that keeps objects as files, starts in
//! milliseconds and installs with cargo like the rest of the toolchain; moto, the other
//! candidate, is an in-memory mock in Python and slow under load.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

const ACCESS_KEY: &str = "berth-test";
const SECRET_KEY: &str = "berth-test-secret";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A bucket of its own on this process's S3 server.
#[derive(Clone, Debug)]
pub struct Bucket {
    /// `s3://<bucket>/blobs`, what `berth serve --blob-store` takes.
    pub url: String,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The bucket's directory on the server's disk (where a test can make an object look
    /// old: s3s-fs gives an object its file's time).
    pub dir: PathBuf,
}

impl Bucket {
    /// The connection settings as `AWS_*` environment variables (what `berth serve`
    /// reads); lower-cased, the options `BlobStore::open_s3` takes.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", &self.endpoint),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
    }

    pub fn options(&self) -> Vec<(String, String)> {
        self.env().into_iter().map(|(key, value)| (key.to_ascii_lowercase(), value)).collect()
    }
}

struct Server {
    port: u16,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

/// Makes a new, empty bucket on this process's server (started on first use).
pub fn bucket() -> anyhow::Result<Bucket> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let server = SERVER.get_or_init(|| start().map_err(|err| format!("{err:#}"))).as_ref().map_err(|err| anyhow::anyhow!("{err}"))?;
    let name = format!("test{}", NEXT.fetch_add(1, Ordering::Relaxed));
    // s3s-fs keeps a bucket as a directory of its root.
    std::fs::create_dir(server.root.join(&name)).with_context(|| format!("making bucket {name}"))?;
    Ok(Bucket { url: format!("s3://{name}/blobs"), endpoint: format!("http://127.0.0.1:{}", server.port), dir: server.root.join(&name) })
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_S3S_FS") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"));
    let installed = home.join("bin/s3s-fs");
    if installed.exists() { installed } else { PathBuf::from("s3s-fs") }
}

fn start() -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("data");
    std::fs::create_dir(&root)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut command = Command::new(binary());
    command
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("s3s-fs.log"))?);
    let mut child = crate::process::spawn_tied(command, libc::SIGKILL)
        .context("starting s3s-fs (cargo install s3s-fs@0.14.1 --locked --features binary; scripts/test does this)")?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Server { port, root, _dir: dir });
        }
        if let Some(status) = child.try_wait()? {
            bail!("s3s-fs exited ({status}): {}", std::fs::read_to_string(dir.path().join("s3s-fs.log")).unwrap_or_default());
        }
        if Instant::now() > deadline {
            bail!("s3s-fs did not accept connections within {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
