//! `berth-bench-notify`: the notification benchmark (issue 4). It starts the CNCF
//! distribution registry (`docker-registry`, open) and `berth serve` as a child process,
//! runs a webhook receiver of its own on loopback, and measures:
//!
//! 1. **Latency**, one change at a time: a manifest is put under `bench/app:latest` in the
//!    registry (untimed), then the clock starts, the registry's notification envelope for
//!    that push is POSTed to `/webhooks/registry` (standing for the registry's own
//!    notification reaching berth), and the clock stops when the receiver gets the
//!    Subscription's CloudEvent whose `data.digest` is the pushed digest. In between,
//!    berth looks the tag up in the registry, imports the image, commits the tag move and
//!    its outbox entry, and delivers the signed event. A watch of the stream splits the
//!    time at the commit. With `--registry-notifies` the registry is configured to notify
//!    berth itself and the clock starts at the manifest PUT instead.
//! 2. **Throughput**: 100 Subscriptions (all signed, all events) in one namespace, then
//!    1,000 tag changes (ImageStreamMappings) written as fast as the API takes them with a
//!    few requests in flight; timed from the first write to the 100,000th distinct
//!    delivery received. Every subscription must get every event, in commit order (event
//!    ids sort in commit order); re-deliveries are allowed and counted.
//!
//! Every delivery's `X-Berth-Signature` is checked; failures are counted (expected 0).
//! Prints a summary, and writes every figure as JSON with `--json`.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use berth_testkit::{Auth, DistributionRegistry, Format, Notifications, Pushed, RegistryClient, TestImage};
use clap::Parser;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tokio::task::JoinSet;

const IMAGE_API: &str = "/apis/image.openshift.io/v1";
const BERTH_API: &str = "/apis/berth.dev/v1";
/// The registry repository the latency phase pushes to.
const REPOSITORY: &str = "bench/app";
/// The HMAC key every Subscription signs with (in a Secret `hook`, key `hmac`).
const SIGNING_KEY: &str = "berth-bench-notify-signing-key-5f3a9c1e7b2d4068";
/// The shared secret of berth's webhook endpoint for the registry.
const WEBHOOK_TOKEN: &str = "berth-bench-registry-notification-token-8d41c7a2e9";

/// Measures notification latency and delivery throughput of `berth serve`.
#[derive(Parser)]
struct Args {
    /// The `berth` binary to run as `berth serve`.
    #[arg(long, default_value = "target/release/berth")]
    berth: PathBuf,
    /// Distinct images pushed into the registry by digest before berth starts.
    #[arg(long, default_value_t = 300)]
    images: usize,
    /// Timed latency iterations.
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// Latency iterations run first and reported apart, not in the percentiles.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Latency with the registry's own notifications: docker-registry is configured to
    /// notify berth, and the clock runs from the manifest PUT to the registry (not from a
    /// POST of ours) to the event's arrival.
    #[arg(long)]
    registry_notifies: bool,
    /// Milliseconds to wait between latency iterations (after the event arrived).
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// Subscriptions in the throughput phase.
    #[arg(long, default_value_t = 100)]
    subscriptions: usize,
    /// Tag changes in the throughput phase.
    #[arg(long, default_value_t = 1000)]
    changes: usize,
    /// Image streams the tag changes are spread over.
    #[arg(long, default_value_t = 10)]
    streams: usize,
    /// Tags per stream the changes move.
    #[arg(long, default_value_t = 10)]
    tags: usize,
    /// ImageStreamMapping requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// How long the throughput phase may take before it is reported as incomplete.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
    /// Skip the latency phase.
    #[arg(long)]
    skip_latency: bool,
    /// Skip the throughput phase.
    #[arg(long)]
    skip_throughput: bool,
    /// Record `perf record -g` of berth serve during each phase into DIR/latency.data and
    /// DIR/throughput.data.
    #[arg(long, value_name = "DIR")]
    perf_dir: Option<PathBuf>,
    /// perf's call-graph mode.
    #[arg(long, default_value = "dwarf,16384")]
    perf_call_graph: String,
    /// Write every figure to this file as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.images > args.warmup + args.iterations, "--images must exceed --warmup + --iterations");
    ensure!(args.concurrency > 0 && args.streams > 0 && args.tags > 0, "--concurrency, --streams and --tags must be positive");
    // Everything blocking (the registry, the pushes, starting berth) happens before the
    // async runtime exists: the testkit's client blocks its thread.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
    let registry = if args.registry_notifies {
        // berth's address must be in the registry's config before either starts.
        let notify = Notifications {
            url: format!("http://127.0.0.1:{port}/webhooks/registry"),
            headers: vec![("Authorization".into(), format!("Bearer {WEBHOOK_TOKEN}"))],
        };
        DistributionRegistry::start_notifying(Auth::Open, notify)
    } else {
        DistributionRegistry::start(Auth::Open)
    }
    .context("starting docker-registry")?;
    // With the registry's own notifications, berth runs before the pushes, so that the
    // registry has somewhere to send their events (berth accepts and ignores them).
    let mut berth = if args.registry_notifies { Some(Berth::start(&args.berth, &registry.host(), port)?) } else { None };
    let started = Instant::now();
    let pushed = push_images(registry.client(), args.images)?;
    eprintln!("pushed {} images by digest into {}/{REPOSITORY} in {:.1} s", pushed.len(), registry.host(), started.elapsed().as_secs_f64());
    let berth = match berth.take() {
        Some(berth) => {
            std::thread::sleep(Duration::from_secs(3)); // the registry's notification queue drains
            berth
        }
        None => Berth::start(&args.berth, &registry.host(), port)?,
    };
    eprintln!("berth serve (pid {}) on {}", berth.pid, berth.base);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = runtime.block_on(run(&args, &registry, &pushed, &berth));
    if result.is_err() {
        eprintln!("berth serve's log (last lines):\n{}", berth.log_tail(40));
    }
    drop(runtime);
    let report = result?;
    if let Some(path) = &args.json {
        fs::write(path, serde_json::to_vec_pretty(&report)?).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn run(args: &Args, registry: &DistributionRegistry, pushed: &[Pushed], berth: &Berth) -> anyhow::Result<Value> {
    let receiver = Receiver::new();
    let hooks = receiver.clone().serve().await?;
    let api = Api::new(&berth.base, &berth.token)?;
    let mut report = json!({
        "machine": {"cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0)},
        "rssIdleMiB": berth.memory().0 / 1024,
    });
    if !args.skip_latency {
        let perf = Perf::start(args, berth.pid, "latency")?;
        let latency = latency(args, &api, &receiver, registry, pushed, &hooks, berth).await;
        drop(perf);
        report["latency"] = latency?;
        report["rssAfterLatencyMiB"] = json!(berth.memory().0 / 1024);
    }
    if !args.skip_throughput {
        let perf = Perf::start(args, berth.pid, "throughput")?;
        let throughput = throughput(args, &api, &receiver, &hooks, berth).await;
        drop(perf);
        report["throughput"] = throughput?;
    }
    let (rss, hwm) = berth.memory();
    report["rssEndMiB"] = json!(rss / 1024);
    report["hwmMiB"] = json!(hwm / 1024);
    report["badSignatures"] = json!(receiver.bad_signatures.load(Ordering::Relaxed));
    report["malformedDeliveries"] = json!(receiver.malformed.load(Ordering::Relaxed));
    println!();
    println!("berth serve resident memory: {} MiB idle, {} MiB at the end (peak {} MiB)", report["rssIdleMiB"], rss / 1024, hwm / 1024);
    println!(
        "deliveries with a bad or missing signature: {}; not a CloudEvent: {}",
        report["badSignatures"], report["malformedDeliveries"]
    );
    Ok(report)
}

/// Pushes `count` distinct small images (OCI and Docker in turn, 2 layers of 512 bytes)
/// by digest, 8 at a time. Returns them in order.
fn push_images(client: &RegistryClient, count: usize) -> anyhow::Result<Vec<Pushed>> {
    let next = AtomicUsize::new(0);
    let pushed = Mutex::new(vec![None; count]);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let idx = next.fetch_add(1, Ordering::Relaxed);
                        if idx >= count {
                            return Ok(());
                        }
                        let format = if idx.is_multiple_of(2) { Format::Oci } else { Format::Docker };
                        // Seeds apart from the tests' and the import benchmark's.
                        let image = TestImage::new(format, 0x4e07_0000 + idx as u64, 2, 512, "amd64");
                        let done = client.push(REPOSITORY, None, &image).with_context(|| format!("pushing image {idx}"))?;
                        pushed.lock().expect("pushed lock")[idx] = Some(done);
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|worker| worker.join().expect("a push worker panicked"))
    })?;
    Ok(pushed.into_inner().expect("pushed lock").into_iter().map(|p| p.expect("every image pushed")).collect())
}

// ---------------------------------------------------------------------------------------
// berth serve, as a child process

struct Berth {
    child: Child,
    pid: u32,
    base: String,
    token: String,
    dir: tempfile::TempDir,
}

impl Berth {
    /// Starts `berth serve` on a fresh data directory and loopback `port`, with a
    /// webhook endpoint for `registry` and plain HTTP to it, and waits for `/readyz`.
    fn start(binary: &Path, registry: &str, port: u16) -> anyhow::Result<Berth> {
        ensure!(binary.exists(), "{} does not exist: build it with cargo build --release -p berth-cli", binary.display());
        let dir = tempfile::Builder::new().prefix("berth-bench-notify-").tempdir()?;
        let config = format!(
            "import:\n  allowedRegistries: [\"127.0.0.1:*\"]\n  insecureRegistries: [\"127.0.0.1:*\"]\n\
             notifications:\n  allowedHosts: [\"127.0.0.1:*\"]\n\
             webhooks:\n- name: registry\n  format: distribution\n  registry: \"{registry}\"\n  token: \"{WEBHOOK_TOKEN}\"\n"
        );
        fs::write(dir.path().join("server.yml"), config)?;
        let log = File::create(dir.path().join("serve.log"))?;
        let child = Command::new(binary)
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--no-client-config", "--server-config"])
            .arg(dir.path().join("server.yml"))
            .env_remove("BERTH_SERVER_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        let mut berth = Berth { child, pid, base: format!("http://127.0.0.1:{port}"), token: String::new(), dir };
        let http = reqwest::blocking::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = berth.child.try_wait()? {
                bail!("berth serve exited ({status}):\n{}", berth.log_tail(40));
            }
            if http.get(format!("{}/readyz", berth.base)).send().is_ok_and(|r| r.status().is_success()) {
                break;
            }
            ensure!(Instant::now() < deadline, "berth serve did not answer /readyz:\n{}", berth.log_tail(40));
            std::thread::sleep(Duration::from_millis(10));
        }
        berth.token = fs::read_to_string(berth.dir.path().join("data/admin.token")).context("reading admin.token")?.trim().to_string();
        Ok(berth)
    }

    /// VmRSS and VmHWM in KiB.
    fn memory(&self) -> (u64, u64) {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User plus system CPU seconds of process `pid` so far (all its threads).
fn cpu_seconds(pid: u32) -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let hz = *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    });
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |idx: usize| fields.get(idx).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / hz
}

/// Busy and total jiffies of the whole machine.
fn machine_ticks() -> (u64, u64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let get = |idx: usize| values.get(idx).copied().unwrap_or(0);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    (busy, busy + get(3) + get(4))
}

/// `perf record` of berth serve while it lives, if `--perf-dir` asked for it.
struct Perf(Option<Child>);

impl Perf {
    fn start(args: &Args, pid: u32, phase: &str) -> anyhow::Result<Perf> {
        let Some(dir) = &args.perf_dir else {
            return Ok(Perf(None));
        };
        fs::create_dir_all(dir)?;
        let child = Command::new("perf")
            .args(["record", "-q", "-F", "499", "--call-graph", &args.perf_call_graph, "-p", &pid.to_string(), "-o"])
            .arg(dir.join(format!("{phase}.data")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting perf")?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(Perf(Some(child)))
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // perf writes its file on SIGINT; our own child, by its id.
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The API client

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(base: &str, token: &str) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build()?;
        Ok(Api { http, base: base.to_string(), token: token.to_string() })
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let bytes = response.bytes().await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// POSTs `body` and expects 201.
    async fn create(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let (status, reply) = self.send(reqwest::Method::POST, path, Some(&body)).await?;
        ensure!(status == reqwest::StatusCode::CREATED, "POST {path}: {status}: {reply}");
        Ok(reply)
    }

    /// Where berth's memory is, as its `/metrics` says: (bytes Rust code holds, SQLite's heap).
    async fn memory_gauges(&self) -> anyhow::Result<(f64, f64)> {
        let text = self.http.get(format!("{}/metrics", self.base)).bearer_auth(&self.token).send().await?.text().await?;
        let gauge = |name: &str| {
            text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).unwrap_or(0.0)
        };
        Ok((gauge("berth_heap_live_bytes"), gauge("berth_sqlite_heap_bytes")))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, reply) = self.send(reqwest::Method::GET, path, None).await?;
        ensure!(status.is_success(), "GET {path}: {status}: {reply}");
        Ok(reply)
    }

    /// A namespace and, in it, the Secret `hook` holding the signing key.
    async fn namespace_with_key(&self, namespace: &str) -> anyhow::Result<()> {
        self.create("/api/v1/namespaces", json!({"metadata": {"name": namespace}})).await?;
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook"}, "type": "Opaque",
            "data": {"hmac": base64::engine::general_purpose::STANDARD.encode(SIGNING_KEY)}});
        self.create(&format!("/api/v1/namespaces/{namespace}/secrets"), secret).await?;
        Ok(())
    }

    /// A Subscription signed with the `hook` key, sending to `url`, limited to `tags`.
    async fn subscribe(&self, namespace: &str, name: &str, url: &str, tags: &[&str]) -> anyhow::Result<()> {
        let body = json!({"apiVersion": "berth.dev/v1", "kind": "Subscription", "metadata": {"name": name},
            "spec": {"url": url, "tags": tags, "secretRef": {"name": "hook", "key": "hmac"}}});
        self.create(&format!("{BERTH_API}/namespaces/{namespace}/subscriptions"), body).await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The receiver

/// One delivery as the receiver got it.
#[derive(Clone)]
struct Arrival {
    at: Instant,
    id: String,
    digest: String,
}

#[derive(Default)]
struct Inbox {
    /// Per subscription (the last path segment of its URL), in arrival order.
    arrivals: HashMap<String, Vec<Arrival>>,
    seen: HashMap<String, HashSet<String>>,
}

/// A webhook receiver on loopback: `POST /hook/{subscription}` records the arrival time
/// and event id, and checks the signature.
#[derive(Clone)]
struct Receiver(Arc<ReceiverState>);

struct ReceiverState {
    inbox: Mutex<Inbox>,
    bad_signatures: AtomicU64,
    malformed: AtomicU64,
    /// Distinct (subscription, event id) pairs received; bumped for each new one.
    distinct: watch::Sender<u64>,
}

impl std::ops::Deref for Receiver {
    type Target = ReceiverState;
    fn deref(&self) -> &ReceiverState {
        &self.0
    }
}

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(default)]
    data: EventData,
}

#[derive(Default, Deserialize)]
struct EventData {
    #[serde(default)]
    digest: String,
}

impl Receiver {
    fn new() -> Receiver {
        Receiver(Arc::new(ReceiverState {
            inbox: Mutex::default(),
            bad_signatures: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            distinct: watch::channel(0).0,
        }))
    }

    /// Serves on a free loopback port; returns the base URL of the hooks (`.../hook`).
    async fn serve(self) -> anyhow::Result<String> {
        let app = axum::Router::new().route("/hook/{name}", axum::routing::post(receive)).with_state(self);
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(url)
    }

    /// When the event of `subscription` whose `data.digest` is `digest` arrived.
    async fn wait_for_digest(&self, subscription: &str, digest: &str, within: Duration) -> anyhow::Result<Instant> {
        let deadline = tokio::time::Instant::now() + within;
        let mut changes = self.distinct.subscribe();
        loop {
            {
                let inbox = self.inbox.lock().expect("inbox lock");
                if let Some(arrival) = inbox.arrivals.get(subscription).and_then(|a| a.iter().rev().find(|a| a.digest == digest)) {
                    return Ok(arrival.at);
                }
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(changed) => changed?,
                Err(_) => bail!("no event for {digest} reached subscription {subscription} within {within:?}"),
            }
        }
    }

    fn arrivals(&self, subscription: &str) -> Vec<Arrival> {
        self.inbox.lock().expect("inbox lock").arrivals.get(subscription).cloned().unwrap_or_default()
    }
}

async fn receive(State(receiver): State<Receiver>, UrlPath(name): UrlPath<String>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    if !signed(&headers, &body) {
        receiver.bad_signatures.fetch_add(1, Ordering::Relaxed);
    }
    let event = match serde_json::from_slice::<Event>(&body) {
        Ok(event) if headers.get("content-type").is_some_and(|v| v == "application/cloudevents+json") => event,
        // Accepted all the same, so that one bad body does not stall the benchmark.
        _ => {
            receiver.malformed.fetch_add(1, Ordering::Relaxed);
            return StatusCode::NO_CONTENT;
        }
    };
    let new = {
        let mut inbox = receiver.inbox.lock().expect("inbox lock");
        let new = inbox.seen.entry(name.clone()).or_default().insert(event.id.clone());
        inbox.arrivals.entry(name).or_default().push(Arrival { at, id: event.id, digest: event.data.digest });
        new
    };
    if new {
        receiver.distinct.send_modify(|count| *count += 1);
    }
    StatusCode::NO_CONTENT
}

/// Whether `X-Berth-Signature` is `sha256=<hex HMAC-SHA256 of the body>` under the key.
fn signed(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(signature) = headers.get("x-berth-signature").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(signature) = hex::decode(signature) else {
        return false;
    };
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(SIGNING_KEY.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

// ---------------------------------------------------------------------------------------
// Latency

async fn latency(
    args: &Args,
    api: &Api,
    receiver: &Receiver,
    registry: &DistributionRegistry,
    pushed: &[Pushed],
    hooks: &str,
    berth: &Berth,
) -> anyhow::Result<Value> {
    const NS: &str = "lat";
    api.namespace_with_key(NS).await?;
    api.subscribe(NS, "lat", &format!("{hooks}/lat"), &["app:latest"]).await?;
    // The first image under `latest` upstream, then the stream tag that imports it.
    put_latest(registry.client(), &pushed[0]).await?;
    let from = registry.pull_spec(REPOSITORY, "latest");
    let body = json!({"metadata": {"name": "app:latest"}, "tag": {"from": {"kind": "DockerImage", "name": from}}});
    let (status, reply) =
        api.send(reqwest::Method::PUT, &format!("{IMAGE_API}/namespaces/{NS}/imagestreamtags/app:latest"), Some(&body)).await?;
    ensure!(status.is_success(), "creating the stream tag: {status}: {reply}");
    receiver.wait_for_digest("lat", &pushed[0].digest, Duration::from_secs(30)).await.context("the initial import")?;

    let commits = watch_latest(api, NS).await?;

    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build()?;
    let url = format!("{}/webhooks/registry", api.base);
    let (mut warmup, mut timed, mut accepted) = (Vec::new(), Vec::new(), Vec::new());
    let (mut to_commit, mut to_delivery) = (Vec::new(), Vec::new());
    let mut untracked = 0;
    let (berth_cpu0, started, log_from) = (cpu_seconds(berth.pid), Instant::now(), registry.log().lines().count());
    for (round, image) in pushed[1..=args.warmup + args.iterations].iter().enumerate() {
        let (t0, took) = if args.registry_notifies {
            // The registry tells berth itself, some time after it answers the PUT.
            let t0 = Instant::now();
            put_latest(registry.client(), image).await?;
            (t0, t0.elapsed())
        } else {
            put_latest(registry.client(), image).await?;
            let envelope = distribution_envelope(&registry.host(), image, round);
            let t0 = Instant::now();
            let response = http
                .post(&url)
                .bearer_auth(WEBHOOK_TOKEN)
                .header("content-type", "application/vnd.docker.distribution.events.v2+json")
                .body(envelope)
                .send()
                .await?;
            let took = t0.elapsed();
            let status = response.status();
            let reply: Value = response.json().await.unwrap_or(Value::Null);
            ensure!(status == reqwest::StatusCode::ACCEPTED, "the notification was refused: {status}: {reply}");
            if reply["trackedTags"] != 1 {
                untracked += 1;
            }
            (t0, took)
        };
        let arrived = receiver.wait_for_digest("lat", &image.digest, Duration::from_secs(30)).await?;
        let ms = (arrived - t0).as_secs_f64() * 1e3;
        let committed = commits.seen(&image.digest, Duration::from_secs(2)).await;
        if round < args.warmup {
            warmup.push(ms);
        } else {
            timed.push(ms);
            accepted.push(took.as_secs_f64() * 1e3);
            if let Some(committed) = committed {
                to_commit.push(committed.saturating_duration_since(t0).as_secs_f64() * 1e3);
                to_delivery.push(arrived.saturating_duration_since(committed).as_secs_f64() * 1e3);
            }
        }
        if args.pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
        }
    }
    let berth_cpu_ms = (cpu_seconds(berth.pid) - berth_cpu0) * 1e3 / (args.warmup + args.iterations) as f64;
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await; // the access line follows the response
    let log = registry.log();
    let requests = registry_requests(&log, log_from);
    // The registry's own errors in the phase, by message (its log is logrus text).
    let mut errors: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for line in log.lines().skip(log_from).filter(|line| line.contains("level=error")) {
        let field = |name: &str| line.split(&format!("{name}=\"")).nth(1).and_then(|rest| rest.split('"').next());
        let message: String = [field("err.message"), field("err.detail"), field("msg")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ")
            .chars()
            .take(200)
            .collect();
        *errors.entry(message).or_insert(0) += 1;
    }
    let events = receiver.arrivals("lat");
    let deliveries = events.len();
    let distinct = events.iter().map(|a| &a.id).collect::<HashSet<_>>().len();
    let summary = Percentiles::of(&timed);
    let accept = Percentiles::of(&accepted);
    let (commit, delivery) = (Percentiles::of(&to_commit), Percentiles::of(&to_delivery));
    let (start_label, accept_label) = if args.registry_notifies {
        ("manifest PUT to the registry, which notifies berth itself", "the registry answered the PUT")
    } else {
        ("registry notification POSTed", "webhook answered 202")
    };
    println!("latency, {start_label} -> subscriber has the event ({} iterations after {} warm-up; ms):", timed.len(), warmup.len());
    println!(
        "  p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  min {:.1}  mean {:.1}   (target p99 < 100 ms)",
        summary.p50, summary.p90, summary.p99, summary.max, summary.min, summary.mean
    );
    let over = |ms: f64| timed.iter().filter(|t| **t > ms).count();
    println!("  iterations over 50 ms: {}, over 100 ms: {}", over(50.0), over(100.0));
    println!("  {accept_label} after: p50 {:.2}  p99 {:.2}  max {:.2}", accept.p50, accept.p99, accept.max);
    println!(
        "  split at the tag move as a watch of the stream sees it ({} iterations): start -> committed p50 {:.1}  p99 {:.1}; \
         committed -> event received p50 {:.1}  p99 {:.1}",
        to_commit.len(),
        commit.p50,
        commit.p99,
        delivery.p50,
        delivery.p99
    );
    println!("  warm-up iterations (ms): {}", warmup.iter().map(|ms| format!("{ms:.1}")).collect::<Vec<_>>().join(" "));
    println!("  deliveries {deliveries}, distinct events {distinct}; notifications with trackedTags != 1: {untracked}");
    println!("  berth serve CPU per iteration: {berth_cpu_ms:.1} ms; {elapsed:.1} s for all iterations, registry pushes included");
    let per_iteration: Vec<String> = requests
        .iter()
        .filter(|(kind, _)| !kind.starts_with("PUT"))
        .map(|(kind, n)| format!("{kind} {:.2}", *n as f64 / (args.warmup + args.iterations) as f64))
        .collect();
    println!("  registry requests per iteration, the benchmark's own PUTs left out: {}", per_iteration.join(", "));
    for (message, count) in &errors {
        println!("  registry error x{count}: {message}");
    }
    Ok(json!({
        "iterations": timed.len(), "warmup": warmup.len(), "pauseMs": args.pause_ms,
        "clockStarts": if args.registry_notifies { "manifest PUT" } else { "notification POST" },
        "ms": summary.json(), "over50ms": over(50.0), "over100ms": over(100.0), "acceptMs": accept.json(), "toCommitMs": commit.json(), "commitToEventMs": delivery.json(), "warmupMs": warmup, "samplesMs": timed,
        "deliveries": deliveries, "distinctEvents": distinct, "untrackedNotifications": untracked,
        "berthCpuMsPerIteration": berth_cpu_ms, "seconds": elapsed, "registryRequests": requests, "registryErrors": errors,
    }))
}

/// When a watch of a namespace's image streams first saw `app:latest` at each digest.
#[derive(Clone, Default)]
struct Commits {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Commits {
    /// When `digest` was first seen as the newest image of `app:latest`, waiting up to `within`.
    async fn seen(&self, digest: &str, within: Duration) -> Option<Instant> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            if let Some(at) = self.seen.lock().expect("commits lock").get(digest) {
                return Some(*at);
            }
            tokio::time::timeout_at(deadline, notified).await.ok()?;
        }
    }
}

/// Watches the image streams of `namespace` (`?watch=true`, one JSON event a line) and
/// records when `app:latest` first pointed at each digest: the moment a tag move is
/// committed and visible, as near as a client of the API can see it.
async fn watch_latest(api: &Api, namespace: &str) -> anyhow::Result<Commits> {
    let commits = Commits::default();
    let url = format!("{}{IMAGE_API}/namespaces/{namespace}/imagestreams?watch=true", api.base);
    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut response = http.get(url).bearer_auth(&api.token).send().await?;
    ensure!(response.status().is_success(), "watching image streams: {}", response.status());
    let recorder = commits.clone();
    tokio::spawn(async move {
        let mut buffer = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            let at = Instant::now();
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let tags = event["object"]["status"]["tags"].as_array().cloned().unwrap_or_default();
                if let Some(digest) = tags.iter().find(|t| t["tag"] == "latest").and_then(|t| t["items"][0]["image"].as_str()) {
                    recorder.seen.lock().expect("commits lock").entry(digest.to_string()).or_insert(at);
                    recorder.changed.notify_waiters();
                }
            }
        }
    });
    Ok(commits)
}

/// Puts `image`'s manifest under `latest` in the registry (its blobs are there already).
async fn put_latest(client: &RegistryClient, image: &Pushed) -> anyhow::Result<()> {
    let (client, image) = (client.clone(), image.clone());
    tokio::task::spawn_blocking(move || client.push_manifest(REPOSITORY, Some("latest"), &image.media_type, &image.manifest)).await??;
    Ok(())
}

/// The registry's requests after line `from` of its log, by method, kind and status:
/// access-log lines, `127.0.0.1 - - [date] "HEAD /v2/bench/app/manifests/latest HTTP/1.1" 200 ...`.
fn registry_requests(log: &str, from: usize) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for line in log.lines().skip(from) {
        let mut quoted = line.split('"');
        let (Some(_), Some(request), Some(after)) = (quoted.next(), quoted.next(), quoted.next()) else {
            continue;
        };
        let mut parts = request.split(' ');
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !path.starts_with("/v2/") || !method.chars().all(|c| c.is_ascii_uppercase()) {
            continue;
        }
        let kind = if path.contains("/manifests/") {
            "manifest"
        } else if path.contains("/blobs/") {
            "blob"
        } else if path == "/v2/" {
            "ping"
        } else {
            "other"
        };
        let status = after.split_whitespace().next().unwrap_or("?");
        *counts.entry(format!("{method} {kind} {status}")).or_insert(0) += 1;
    }
    counts
}

/// The notification envelope docker-registry 2.8 sends for a manifest push by tag.
fn distribution_envelope(host: &str, image: &Pushed, round: usize) -> Vec<u8> {
    let uuid = |what: &str| {
        let h = hex::encode(Sha256::digest(format!("{what}-{round}").as_bytes()));
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    };
    let size = image.manifest.len();
    serde_json::to_vec(&json!({"events": [{
        "id": uuid("event"),
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "action": "push",
        "target": {
            "mediaType": image.media_type, "size": size, "digest": image.digest, "length": size,
            "repository": REPOSITORY, "url": format!("http://{host}/v2/{REPOSITORY}/manifests/{}", image.digest), "tag": "latest",
        },
        "request": {"id": uuid("request"), "addr": "127.0.0.1:40312", "host": host, "method": "PUT", "useragent": "berth-bench-notify"},
        "actor": {},
        "source": {"addr": "bench:5000", "instanceID": uuid("instance")},
    }]}))
    .expect("JSON serialises")
}

// ---------------------------------------------------------------------------------------
// Throughput

/// How long after the fan-out its memory is measured again (berth idle meanwhile).
const SETTLE_SECONDS: u64 = 10;

async fn throughput(args: &Args, api: &Api, receiver: &Receiver, hooks: &str, berth: &Berth) -> anyhow::Result<Value> {
    const NS: &str = "fan";
    api.namespace_with_key(NS).await?;
    let names: Vec<String> = (0..args.subscriptions).map(|idx| format!("fan-{idx:03}")).collect();
    for name in &names {
        api.subscribe(NS, name, &format!("{hooks}/{name}"), &[]).await?;
    }
    let expected = (args.subscriptions * args.changes) as u64;
    let already = *receiver.distinct.borrow();
    let (rss_before, _) = berth.memory();
    let (berth_cpu0, self_cpu0, machine0) = (cpu_seconds(berth.pid), cpu_seconds(std::process::id()), machine_ticks());

    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut writers = JoinSet::new();
    for _ in 0..args.concurrency {
        let (api, next) = (Api { http: api.http.clone(), base: api.base.clone(), token: api.token.clone() }, Arc::clone(&next));
        let (changes, streams, tags) = (args.changes, args.streams, args.tags);
        writers.spawn(async move {
            let mut conflicts = 0u64;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= changes {
                    return Ok::<_, anyhow::Error>((Instant::now(), conflicts));
                }
                let body = mapping(k, streams, tags);
                loop {
                    let (status, reply) =
                        api.send(reqwest::Method::POST, &format!("{IMAGE_API}/namespaces/{NS}/imagestreammappings"), Some(&body)).await?;
                    match status {
                        reqwest::StatusCode::CREATED => break,
                        reqwest::StatusCode::CONFLICT => conflicts += 1,
                        _ => bail!("ImageStreamMapping {k}: {status}: {reply}"),
                    }
                }
            }
        });
    }

    // Wait for every delivery, printing progress each second.
    let mut progress = receiver.distinct.subscribe();
    let deadline = start + Duration::from_secs(args.timeout_seconds);
    let mut written: Option<(Instant, u64)> = None;
    let mut last_print = Instant::now();
    let mut samples = Vec::new();
    loop {
        let got = *progress.borrow_and_update() - already;
        while let Some(done) = writers.try_join_next() {
            let (finished, conflicts) = done??;
            written = Some(written.map_or((finished, conflicts), |(at, c)| (at.max(finished), c + conflicts)));
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            samples.push(json!({"seconds": start.elapsed().as_secs_f64(), "delivered": got}));
            eprintln!(
                "  {:6.1} s: {got:>7} of {expected} delivered{}",
                start.elapsed().as_secs_f64(),
                if writers.is_empty() { "" } else { " (writing)" }
            );
        }
        if got >= expected && writers.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("  timed out after {} s", args.timeout_seconds);
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), progress.changed()).await;
    }
    while let Some(done) = writers.join_next().await {
        let (finished, conflicts) = done??;
        written = Some(written.map_or((finished, conflicts), |(at, c)| (at.max(finished), c + conflicts)));
    }
    let (written_at, conflicts) = written.context("no writer finished")?;
    let (berth_cpu, self_cpu, machine1) =
        (cpu_seconds(berth.pid) - berth_cpu0, cpu_seconds(std::process::id()) - self_cpu0, machine_ticks());
    let busy = 100.0 * (machine1.0 - machine0.0) as f64 / (machine1.1 - machine0.1).max(1) as f64;
    let (rss_after, hwm) = berth.memory();
    // Late re-deliveries, if any, before the order is checked.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Per subscription: distinct events, duplicates, events out of commit order.
    let (mut distinct, mut duplicates, mut out_of_order, mut complete_subs) = (0u64, 0u64, 0u64, 0usize);
    let (mut first_at, mut last_at, mut completions) = (None::<Instant>, None::<Instant>, Vec::new());
    let mut reference: Option<Vec<String>> = None;
    let mut same_events = true;
    for name in &names {
        let arrivals = receiver.arrivals(name);
        let mut seen = HashSet::new();
        let mut highest: Option<&str> = None;
        let mut order = Vec::new();
        for arrival in &arrivals {
            if !seen.insert(arrival.id.as_str()) {
                duplicates += 1;
                continue;
            }
            if highest.is_some_and(|h| arrival.id.as_str() <= h) {
                out_of_order += 1;
            }
            highest = Some(highest.map_or(arrival.id.as_str(), |h| h.max(arrival.id.as_str())));
            order.push(arrival.id.clone());
            first_at = Some(first_at.map_or(arrival.at, |f| f.min(arrival.at)));
            if order.len() == args.changes {
                completions.push((arrival.at - start).as_secs_f64());
                last_at = Some(last_at.map_or(arrival.at, |l| l.max(arrival.at)));
            }
        }
        distinct += order.len() as u64;
        if order.len() == args.changes {
            complete_subs += 1;
        }
        match &reference {
            None => reference = Some(order),
            Some(first) => same_events &= *first == order,
        }
    }
    completions.sort_by(f64::total_cmp);
    let complete = distinct == expected && complete_subs == args.subscriptions;
    let write_seconds = (written_at - start).as_secs_f64();
    let end = if complete { last_at.expect("complete") } else { Instant::now() };
    let delivery_seconds = (end - start).as_secs_f64();
    let rate = distinct as f64 / delivery_seconds;
    let status = subscription_status(api, NS, expected).await?;

    println!(
        "throughput: {} subscriptions x {} tag changes ({} streams x {} tags, {} mappings in flight):",
        args.subscriptions, args.changes, args.streams, args.tags, args.concurrency
    );
    println!(
        "  {distinct} of {expected} distinct deliveries in {delivery_seconds:.2} s: {rate:.0} deliveries/s (target >= 2,000){}",
        if complete { "" } else { "  ** INCOMPLETE **" }
    );
    println!(
        "  {} changes written in {write_seconds:.2} s ({:.0}/s; {conflicts} 409s retried); first delivery after {:.1} ms",
        args.changes,
        args.changes as f64 / write_seconds,
        first_at.map_or(f64::NAN, |f| (f - start).as_secs_f64() * 1e3)
    );
    if let (Some(first), Some(last)) = (completions.first(), completions.last()) {
        println!("  subscriptions complete after {first:.2} s (first) .. {last:.2} s (last)");
    }
    println!(
        "  every subscription got every event: {}; in commit order: {}; duplicates {duplicates}; same sequence for all: {same_events}",
        complete_subs == args.subscriptions,
        out_of_order == 0
    );
    println!("  CPU seconds: berth serve {berth_cpu:.2}, this generator {self_cpu:.2}; cores {busy:.0}% busy");
    // Memory that returns: resident memory once berth has had nothing to do for a while.
    let settled_at = Instant::now() + Duration::from_secs(SETTLE_SECONDS);
    tokio::time::sleep_until(settled_at.into()).await;
    let (rss_settled, _) = berth.memory();
    let (live, sqlite) = api.memory_gauges().await?;
    let rollup = fs::read_to_string(format!("/proc/{}/smaps_rollup", berth.pid)).unwrap_or_default();
    let field = |name: &str| {
        rollup
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':')?.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    if let Ok(path) = std::env::var("BENCH_SMAPS") {
        let _ = fs::copy(format!("/proc/{}/smaps", berth.pid), path);
    }
    // Pages given back with MADV_FREE stay resident (LazyFree) until the kernel needs them.
    let (anonymous, lazy_free) = (field("Anonymous"), field("LazyFree"));
    println!(
        "  berth serve resident memory: {} MiB before, {} MiB after (peak so far {} MiB), {} MiB {SETTLE_SECONDS} s later \
         (anonymous {} MiB, of which lazily freed {} MiB; live heap {:.1} MiB, SQLite {:.1} MiB)",
        rss_before / 1024,
        rss_after / 1024,
        hwm / 1024,
        rss_settled / 1024,
        anonymous / 1024,
        lazy_free / 1024,
        live / 1048576.0,
        sqlite / 1048576.0
    );
    println!("  subscription status after: {status}");
    Ok(json!({
        "subscriptions": args.subscriptions, "changes": args.changes, "streams": args.streams, "tags": args.tags,
        "concurrency": args.concurrency, "expected": expected, "distinct": distinct, "complete": complete,
        "completeSubscriptions": complete_subs, "duplicates": duplicates, "outOfOrder": out_of_order, "sameSequence": same_events,
        "writeSeconds": write_seconds, "conflicts": conflicts, "deliverySeconds": delivery_seconds, "deliveriesPerSecond": rate,
        "firstDeliveryMs": first_at.map(|f| (f - start).as_secs_f64() * 1e3),
        "subscriptionCompleteSeconds": {"first": completions.first(), "last": completions.last()},
        "berthCpuSeconds": berth_cpu, "generatorCpuSeconds": self_cpu, "busyPercent": busy,
        "rssBeforeMiB": rss_before / 1024, "rssAfterMiB": rss_after / 1024, "hwmMiB": hwm / 1024,
        "rssSettledMiB": rss_settled / 1024, "anonymousSettledMiB": anonymous / 1024,
        "liveHeapSettledMiB": live / 1048576.0, "sqliteHeapSettledMiB": sqlite / 1048576.0,
        "progress": samples, "status": status,
    }))
}

/// An ImageStreamMapping for change `k`: a new image (its config names the build) under
/// tag `t<k / streams % tags>` of stream `app-<k % streams>`.
fn mapping(k: usize, streams: usize, tags: usize) -> Value {
    let (stream, tag) = (format!("app-{:02}", k % streams), format!("t{}", (k / streams) % tags));
    let manifest = format!("{{\"schemaVersion\":2,\"seed\":\"fan-{k}\"}}");
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(manifest.as_bytes())));
    let layer = format!("sha256:{}", hex::encode(Sha256::digest(format!("layer-{k}").as_bytes())));
    json!({
        "kind": "ImageStreamMapping", "apiVersion": "image.openshift.io/v1", "metadata": {"name": stream}, "tag": tag,
        "image": {
            "metadata": {"name": digest},
            "dockerImageReference": format!("registry.example.com/fan/{stream}@{digest}"),
            "dockerImageManifest": manifest,
            "dockerImageLayers": [{"name": layer, "size": 1024, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}],
            "dockerImageMetadata": {"kind": "DockerImage", "apiVersion": "1.0", "Config": {
                "Env": ["PATH=/usr/local/bin:/usr/bin", format!("BUILD={k}")],
                "ExposedPorts": {"8080/tcp": {}},
                "Labels": {"org.opencontainers.image.revision": format!("{k:07x}")},
                "User": "app",
            }},
        }
    })
}

/// The Subscriptions' own account once they settle: total delivered, largest backlog,
/// errors. Waits up to 5 s for every backlog to reach 0 and the counts to add up.
async fn subscription_status(api: &Api, namespace: &str, expected: u64) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list = api.get(&format!("{BERTH_API}/namespaces/{namespace}/subscriptions")).await?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let delivered: u64 = items.iter().filter_map(|s| s["status"]["delivered"].as_u64()).sum();
        let backlog = items.iter().filter_map(|s| s["status"]["backlog"].as_u64()).max().unwrap_or(0);
        let errors = items.iter().filter(|s| s["status"]["lastError"].as_str().is_some_and(|e| !e.is_empty())).count();
        if (backlog == 0 && delivered >= expected) || Instant::now() >= deadline {
            return Ok(json!({"delivered": delivered, "maxBacklog": backlog, "withLastError": errors}));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------------------

/// Nearest-rank percentiles of a sample.
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    min: f64,
    max: f64,
    mean: f64,
}

impl Percentiles {
    fn of(samples: &[f64]) -> Percentiles {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            if sorted.is_empty() {
                return f64::NAN;
            }
            let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[idx]
        };
        Percentiles {
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            mean: sorted.iter().sum::<f64>() / sorted.len().max(1) as f64,
        }
    }

    fn json(&self) -> Value {
        json!({"p50": self.p50, "p90": self.p90, "p99": self.p99, "min": self.min, "max": self.max, "mean": self.mean})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=200).map(f64::from).collect();
        let p = Percentiles::of(&samples);
        assert_eq!((p.p50, p.p90, p.p99, p.min, p.max), (100.0, 180.0, 198.0, 1.0, 200.0));
        assert_eq!(Percentiles::of(&[7.0]).p99, 7.0);
    }

    #[test]
    fn signatures_are_checked() {
        let body = br#"{"id":"x"}"#;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(SIGNING_KEY.as_bytes()).unwrap();
        mac.update(body);
        let mut headers = HeaderMap::new();
        headers.insert("x-berth-signature", format!("sha256={}", hex::encode(mac.finalize().into_bytes())).parse().unwrap());
        assert!(signed(&headers, body));
        assert!(!signed(&headers, br#"{"id":"y"}"#));
        assert!(!signed(&HeaderMap::new(), body));
    }

    #[test]
    fn mappings_move_a_few_tags_of_a_few_streams() {
        let body = mapping(23, 10, 10);
        assert_eq!((body["metadata"]["name"].as_str(), body["tag"].as_str()), (Some("app-03"), Some("t2")));
        let manifest = body["image"]["dockerImageManifest"].as_str().unwrap();
        assert_eq!(body["image"]["metadata"]["name"], format!("sha256:{}", hex::encode(Sha256::digest(manifest.as_bytes()))));
        assert_ne!(mapping(0, 10, 10)["image"]["metadata"]["name"], mapping(100, 10, 10)["image"]["metadata"]["name"]);
    }
}
