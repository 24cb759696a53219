//! PostgreSQL from Debian (`postgresql`), real and on loopback: one server per test
//! process (nextest runs each test in a process of its own), a fresh database per call of
//! [`database`].
//!
//! A cluster is made once per machine and user of the tests with `initdb` (a template
//! under the system's temporary directory, made under a file lock) and copied for each
//! server, which then starts in a fraction of a second. PostgreSQL refuses to run as root,
//! so when the tests run as root the server runs as the `postgres` user. The server dies
//! with the test process (`PR_SET_PDEATHSIG`), and data directories left by processes that
//! are gone are removed when the next one starts. Each server offers TLS as well, with a
//! certificate for `127.0.0.1` only (not `localhost`) from a CA of its own ([`ca_file`]).

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// How long a started server has to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The superuser the tests connect as (trusted on loopback, no password).
const USER: &str = "berth";

/// A running server: its port and where its programs are.
struct Server {
    port: u16,
    bin: PathBuf,
    ca: PathBuf,
}

/// Makes a new, empty database on this process's server (started on first use) and
/// returns its URL.
pub fn database() -> anyhow::Result<String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let server = server()?;
    let name = format!("test{}", NEXT.fetch_add(1, Ordering::Relaxed));
    psql("postgres", &format!("CREATE DATABASE {name}")).with_context(|| format!("creating database {name}"))?;
    Ok(format!("postgres://{USER}@127.0.0.1:{}/{name}", server.port))
}

/// Runs `statement` in `database` (a name, or a URL [`database`] gave) on this process's
/// server, as a user with psql would (to do what berth offers no way to: take a lease
/// from its holder, say); returns what psql printed, unaligned and without headers.
pub fn psql(database: &str, statement: &str) -> anyhow::Result<String> {
    let server = server()?;
    let name = database.rsplit('/').next().unwrap_or(database);
    let output = Command::new(server.bin.join("psql"))
        .args(["-h", "127.0.0.1", "-p", &server.port.to_string(), "-U", USER, "-d", name, "-q", "-A", "-t", "-c"])
        .arg(statement)
        .output()
        .context("running psql")?;
    if !output.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The PEM file of the CA that signed this process's server's certificate.
pub fn ca_file() -> anyhow::Result<PathBuf> {
    Ok(server()?.ca.clone())
}

/// This process's server, started on first use.
fn server() -> anyhow::Result<&'static Server> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    SERVER.get_or_init(|| start().map_err(|err| format!("{err:#}"))).as_ref().map_err(|err| anyhow::anyhow!("{err}"))
}

/// The newest PostgreSQL installed (`/usr/lib/postgresql/<version>/bin`).
fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (apt-get install postgresql; scripts/test does this)")?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context("no initdb under /usr/lib/postgresql/*/bin")
}

/// The user and group the server runs as: `postgres` when the tests run as root.
fn server_user() -> anyhow::Result<Option<(u32, u32)>> {
    if fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd")?;
    let line = passwd.lines().find(|line| line.starts_with("postgres:")).context("no postgres user to run PostgreSQL as")?;
    let fields: Vec<&str> = line.split(':').collect();
    Ok(Some((fields[2].parse()?, fields[3].parse()?)))
}

fn run(mut command: Command, user: Option<(u32, u32)>, what: &str) -> anyhow::Result<()> {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    let output = command.output().with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!("{what} failed: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

fn chown_all(path: &Path, user: Option<(u32, u32)>) -> anyhow::Result<()> {
    if let Some((uid, gid)) = user {
        run(
            {
                let mut chown = Command::new("chown");
                chown.arg("-R").arg(format!("{uid}:{gid}")).arg(path);
                chown
            },
            None,
            "chown",
        )?;
    }
    Ok(())
}

/// The cluster every server is copied from, made with `initdb` on first use.
fn template(bin: &Path, root: &Path, user: Option<(u32, u32)>) -> anyhow::Result<PathBuf> {
    let template = root.join("template");
    let lock = fs::File::create(root.join("template.lock"))?;
    lock.lock()?;
    if !template.join("PG_VERSION").exists() {
        let _ = fs::remove_dir_all(&template);
        let making = root.join("template.new");
        let _ = fs::remove_dir_all(&making);
        fs::create_dir_all(&making)?;
        chown_all(&making, user)?;
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(&making).args(["-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync"]).current_dir(root);
        run(initdb, user, "initdb")?;
        fs::rename(&making, &template)?;
    }
    Ok(template)
}

fn start() -> anyhow::Result<Server> {
    let bin = bin_dir()?;
    let user = server_user()?;
    let root = std::env::temp_dir().join(format!("berth-postgres-{}", fs::metadata("/proc/self")?.uid()));
    fs::create_dir_all(&root)?;
    // Whoever runs the server must reach its directory.
    fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    remove_abandoned(&root);
    let template = template(&bin, &root, user)?;
    let data = root.join(format!("pid-{}", std::process::id()));
    let _ = fs::remove_dir_all(&data);
    run(
        {
            let mut copy = Command::new("cp");
            copy.arg("-a").arg(&template).arg(&data);
            copy
        },
        None,
        "copying the template cluster",
    )?;
    let ca = certificates(&data, user)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut postgres = Command::new(bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c"])
        .arg(format!("unix_socket_directories={}", data.display()))
        // The tests check berth's behaviour, not the disk's: no fsync.
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200"])
        .args(["-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key"])
        .current_dir(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(root.join(format!("pid-{}.log", std::process::id())))?);
    if let Some((uid, gid)) = user {
        postgres.uid(uid).gid(gid);
    }
    // The server stops (immediate shutdown) when the test process ends.
    let mut child = crate::process::spawn_tied(postgres, libc::SIGQUIT).context("starting postgres")?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER, "-q"])
            .status()
            .is_ok_and(|status| status.success());
        if ready {
            return Ok(Server { port, bin, ca });
        }
        if let Some(status) = child.try_wait()? {
            bail!("postgres exited ({status}); see {}", root.join(format!("pid-{}.log", std::process::id())).display());
        }
        if Instant::now() > deadline {
            bail!("postgres did not accept connections within {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes a CA and a server certificate for 127.0.0.1 it signed, in `data` (the key readable
/// by the server's user only, as PostgreSQL requires); returns the CA's file.
fn certificates(data: &Path, user: Option<(u32, u32)>) -> anyhow::Result<PathBuf> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(rcgen::DnType::CommonName, "berth tests' PostgreSQL CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "127.0.0.1");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer)?;
    let ca_file = data.join("ca.pem");
    fs::write(&ca_file, ca_pem)?;
    fs::write(data.join("server.crt"), cert.pem())?;
    let key_file = data.join("server.key");
    fs::write(&key_file, key.serialize_pem())?;
    fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&key_file, Some(uid), Some(gid))?;
        std::os::unix::fs::chown(data.join("server.crt"), Some(uid), Some(gid))?;
    }
    Ok(ca_file)
}

/// Removes the data directories of test processes that have ended.
fn remove_abandoned(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix("pid-").map(|rest| rest.trim_end_matches(".log")) else { continue };
        if !Path::new("/proc").join(pid).exists() {
            let path = entry.path();
            let _ = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
        }
    }
}
