//! Three `berth serve` replicas on one PostgreSQL database and one S3 bucket (Debian's
//! PostgreSQL and s3s-fs, on loopback) under load, one of them killed with SIGKILL in the
//! middle: tag moves and pushes spread over the three, a watch on each, a subscription and
//! scheduled tags. Afterwards every acknowledged write is there, every watch (resumed on
//! another replica when its own died) saw every change once and in order, the
//! subscription got every change, each scheduled tag was checked once per interval (never
//! by two servers at once) and again after its controller moved, and the only failed
//! requests were those sent to the killed replica.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_testkit::{Auth, DistributionRegistry, Format, RegistryClient, TestImage};
use serde_json::{Value, json};

const NS: &str = "ha";
const API: &str = "/apis/image.openshift.io/v1/namespaces/ha";
/// Seconds between two checks of a scheduled tag.
const INTERVAL: u64 = 3;
/// Load before the kill, and after it: long enough for the killed server's leases (15 s)
/// to run out and its controllers to move.
const BEFORE_KILL: Duration = Duration::from_secs(6);
const AFTER_KILL: Duration = Duration::from_secs(32);

struct Replica {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shared parts every replica is started on.
struct Shared {
    database: String,
    bucket: berth_testkit::s3::Bucket,
    config: PathBuf,
}

fn start(shared: &Shared) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--no-client-config", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .arg("--server-config")
        .arg(&shared.config)
        .env("BERTH_DATABASE", &shared.database)
        .env("BERTH_BLOB_STORE", &shared.bucket.url)
        .envs(shared.bucket.env())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap())
        .spawn()
        .expect("berth starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::blocking::get(format!("{url}/readyz")).map(|r| r.status().is_success()).unwrap_or(false) {
        assert!(
            Instant::now() < deadline,
            "berth did not become ready: {}",
            std::fs::read_to_string(dir.path().join("server.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Replica { child, url, dir }
}

/// The replicas as clients see them: their URLs, and which one was killed.
#[derive(Clone)]
struct Cluster {
    urls: Arc<Vec<String>>,
    killed: Arc<Mutex<Option<(usize, Instant)>>>,
    token: Arc<str>,
}

/// A request that failed: which replica it was sent to, and when it was sent.
#[derive(Debug)]
struct Failure {
    replica: usize,
    sent: Instant,
    what: String,
}

impl Cluster {
    /// The replica a client that started on `preferred` uses now: the next one when its
    /// own was killed (as a Service stops sending to a dead pod).
    fn pick(&self, preferred: usize) -> usize {
        match *self.killed.lock().unwrap() {
            Some((dead, _)) if dead == preferred => (preferred + 1) % self.urls.len(),
            _ => preferred,
        }
    }
}

/// A webhook receiver: keeps every body POSTed to it, answers 204.
fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let bodies = Arc::clone(&got);
    std::thread::spawn(move || {
        for connection in listener.incoming().flatten() {
            let bodies = Arc::clone(&bodies);
            std::thread::spawn(move || serve_connection(connection, &bodies));
        }
    });
    (url, got)
}

fn serve_connection(connection: TcpStream, bodies: &Mutex<Vec<Value>>) {
    let mut reader = BufReader::new(connection.try_clone().unwrap());
    let mut writer = connection;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        // The request line and headers, up to the blank line.
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        bodies.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
        if writer.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").is_err() {
            return;
        }
    }
}

fn sha256_of(text: &str) -> String {
    use sha2::Digest as _;
    let hex: String = sha2::Sha256::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256:{hex}")
}

/// Moves tags with ImageStreamMappings until stopped, recording each acknowledged move.
fn tag_mover(
    cluster: Cluster,
    preferred: usize,
    id: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, String, String)>>>,
    failed: Arc<Mutex<Vec<Failure>>>,
) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let (stream, tag) = (format!("s{}", seq % 5), format!("w{id}"));
        let digest = sha256_of(&format!("{id}-{seq}"));
        let body = json!({"metadata": {"name": stream}, "tag": tag,
            "image": {"metadata": {"name": digest}, "dockerImageReference": format!("registry.example.com/{NS}/{stream}@{digest}")}});
        let replica = cluster.pick(preferred);
        let sent = Instant::now();
        match client.post(format!("{}{API}/imagestreammappings", cluster.urls[replica])).bearer_auth(&*cluster.token).json(&body).send() {
            Ok(response) if response.status().as_u16() == 201 => acked.lock().unwrap().push((stream, tag, digest)),
            Ok(response) => failed.lock().unwrap().push(Failure { replica, sent, what: format!("mapping: {}", response.status()) }),
            Err(err) => failed.lock().unwrap().push(Failure { replica, sent, what: format!("mapping: {err}") }),
        }
    }
}

/// Pushes small images to `ha/pushed`, recording each acknowledged push (tag, digest).
fn pusher(
    cluster: Cluster,
    preferred: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, String)>>>,
    failed: Arc<Mutex<Vec<Failure>>>,
) {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let replica = cluster.pick(preferred);
        let host = cluster.urls[replica].trim_start_matches("http://").to_string();
        let image = TestImage::new(Format::Oci, 1000 * preferred as u64 + seq, 1, 20_000, "amd64");
        let tag = format!("p{preferred}-{seq}");
        let sent = Instant::now();
        let pushed = RegistryClient::new(&host, Some(("me", &*cluster.token)))
            .and_then(|client| client.push(&format!("{NS}/pushed"), Some(&tag), &image));
        match pushed {
            Ok(_) => acked.lock().unwrap().push((tag, image.digest())),
            Err(err) => failed.lock().unwrap().push(Failure { replica, sent, what: format!("push: {err:#}") }),
        }
    }
}

/// One event of a watch: type, stream, revision.
type Seen = (String, String, u64);
/// The events a watch saw, as it sees them.
type Recorded = Arc<Mutex<Vec<Seen>>>;

/// Watches the streams of `ha` from `from`, on `preferred` and, when that replica dies,
/// on the next one from the last revision it saw, until it sees the stream `end`.
fn watcher(cluster: Cluster, preferred: usize, from: u64, seen: Recorded, failed: Arc<Mutex<Vec<Failure>>>) {
    let client = reqwest::blocking::Client::builder().timeout(None).build().unwrap();
    let mut revision = from;
    loop {
        let replica = cluster.pick(preferred);
        let sent = Instant::now();
        let url = format!("{}{API}/imagestreams?watch=true&resourceVersion={revision}", cluster.urls[replica]);
        let response = match client.get(url).bearer_auth(&*cluster.token).send() {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => {
                failed.lock().unwrap().push(Failure { replica, sent, what: format!("watch: {}", response.status()) });
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(err) => {
                failed.lock().unwrap().push(Failure { replica, sent, what: format!("watch: {err}") });
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        for line in BufReader::new(response).lines() {
            let Ok(line) = line else { break };
            let event: Value = serde_json::from_str(&line).unwrap();
            let name = event["object"]["metadata"]["name"].as_str().unwrap().to_string();
            revision = event["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
            seen.lock().unwrap().push((event["type"].as_str().unwrap().to_string(), name.clone(), revision));
            if name == "end" {
                return;
            }
        }
        // The stream ended (its server died, or ended the watch as servers may): the
        // watch goes on from the last revision it saw, elsewhere if its server is gone.
    }
}

fn post(url: &str, token: &str, body: Value) -> Value {
    let response = reqwest::blocking::Client::new().post(url).bearer_auth(token).json(&body).send().unwrap();
    let status = response.status();
    let body: Value = response.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {url}: {status} {body}");
    body
}

fn get(url: &str, token: &str) -> Value {
    reqwest::blocking::Client::new().get(url).bearer_auth(token).send().unwrap().json().unwrap()
}

/// When each scheduled tag was checked (a HEAD of its manifest) after `since` (a Unix
/// time), from the upstream registry's access log:
/// `[03/Dec/2026:10:29:00 +0000] "HEAD /v2/src/app/manifests/t0 HTTP/1.1"`.
fn checks(log: &str, tags: &[&str], since: i64) -> BTreeMap<String, Vec<i64>> {
    let mut checks: BTreeMap<String, Vec<i64>> = tags.iter().map(|tag| (tag.to_string(), Vec::new())).collect();
    for line in log.lines() {
        for tag in tags {
            if !line.contains(&format!("\"HEAD /v2/src/app/manifests/{tag} ")) {
                continue;
            }
            let time = line.split_once('[').and_then(|(_, rest)| rest.split_once(']')).map(|(time, _)| time).unwrap();
            let at = chrono::DateTime::parse_from_str(time, "%d/%b/%Y:%H:%M:%S %z").unwrap().timestamp();
            if at > since {
                checks.get_mut(*tag).unwrap().push(at);
            }
        }
    }
    checks
}

#[test]
fn three_replicas_lose_only_the_killed_ones_requests() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("berth.yaml");
    std::fs::write(
        &config,
        format!(
            "import:\n  allowedRegistries: [\"127.0.0.1:*\"]\n  insecureRegistries: [\"127.0.0.1:*\"]\n  \
             scheduledImportIntervalSeconds: {INTERVAL}\n  minimumScheduledImportIntervalSeconds: 1\n  \
             maxScheduledImportsPerMinute: -1\nnotifications:\n  allowedHosts: [\"127.0.0.1:*\"]\n"
        ),
    )
    .unwrap();
    let shared = Shared { database: berth_testkit::postgres::database().unwrap(), bucket: berth_testkit::s3::bucket().unwrap(), config };
    // The first replica starts alone on the empty database (it writes the admin token and
    // takes the controllers' leases); the others join.
    let mut replicas = vec![start(&shared)];
    let token = std::fs::read_to_string(replicas[0].dir.path().join("admin.token")).unwrap().trim().to_string();
    replicas.push(start(&shared));
    replicas.push(start(&shared));
    let cluster = Cluster {
        urls: Arc::new(replicas.iter().map(|r| r.url.clone()).collect()),
        killed: Arc::default(),
        token: Arc::from(token.as_str()),
    };
    let first = &replicas[0].url;

    // The namespace, a subscription, and scheduled tags that follow an upstream registry.
    post(&format!("{first}/api/v1/namespaces"), &token, json!({"metadata": {"name": NS}}));
    let (hook, delivered) = receiver();
    post(
        &format!("{first}/apis/berth.dev/v1/namespaces/{NS}/subscriptions"),
        &token,
        json!({"apiVersion": "berth.dev/v1", "kind": "Subscription", "metadata": {"name": "all"}, "spec": {"url": hook}}),
    );
    let upstream = DistributionRegistry::start(Auth::Open).unwrap();
    let scheduled = ["t0", "t1", "t2"];
    for (seed, tag) in scheduled.iter().enumerate() {
        upstream.push("src/app", Some(tag), &TestImage::new(Format::Oci, 500 + seed as u64, 1, 1000, "amd64")).unwrap();
    }
    let spec_tags: Vec<Value> = scheduled
        .iter()
        .map(|tag| json!({"name": tag, "from": {"kind": "DockerImage", "name": upstream.pull_spec("src/app", tag)}, "importPolicy": {"scheduled": true}}))
        .collect();
    post(&format!("{first}{API}/imagestreams"), &token, json!({"metadata": {"name": "sched"}, "spec": {"tags": spec_tags}}));
    // The first import, then each tag's first check somewhere in its first interval; from
    // then on, one check per interval.
    let steady = chrono::Utc::now().timestamp() + INTERVAL as i64 + 1;
    let listed = get(&format!("{first}{API}/imagestreams"), &token);
    let from: u64 = listed["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();

    // Load over the three, and a watch on each.
    let stop = Arc::new(AtomicBool::new(false));
    let moved: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let pushed: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let failed: Arc<Mutex<Vec<Failure>>> = Arc::default();
    let mut load = Vec::new();
    for id in 0..6 {
        let (cluster, stop, moved, failed) = (cluster.clone(), Arc::clone(&stop), Arc::clone(&moved), Arc::clone(&failed));
        load.push(std::thread::spawn(move || tag_mover(cluster, id % 3, id, stop, moved, failed)));
    }
    for replica in 0..3 {
        let (cluster, stop, pushed, failed) = (cluster.clone(), Arc::clone(&stop), Arc::clone(&pushed), Arc::clone(&failed));
        load.push(std::thread::spawn(move || pusher(cluster, replica, stop, pushed, failed)));
    }
    let watches: Vec<(Recorded, std::thread::JoinHandle<()>)> = (0..3)
        .map(|replica| {
            let seen: Recorded = Arc::default();
            let (cluster, recorded, failed) = (cluster.clone(), Arc::clone(&seen), Arc::clone(&failed));
            (seen, std::thread::spawn(move || watcher(cluster, replica, from, recorded, failed)))
        })
        .collect();

    std::thread::sleep(BEFORE_KILL);
    // SIGKILL to the first replica, which holds the controllers' leases.
    let killed_at = Instant::now();
    *cluster.killed.lock().unwrap() = Some((0, killed_at));
    kill_9(&replicas[0].child);
    std::thread::sleep(AFTER_KILL);
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    // A last write tells the watches they have seen everything.
    let survivor = &replicas[1].url;
    post(
        &format!("{survivor}{API}/imagestreammappings"),
        &token,
        json!({"metadata": {"name": "end"}, "tag": "end", "image": {"metadata": {"name": sha256_of("end")},
            "dockerImageReference": format!("registry.example.com/{NS}/end@{}", sha256_of("end"))}}),
    );
    let seen: Vec<Vec<Seen>> = watches
        .into_iter()
        .map(|(seen, thread)| {
            thread.join().unwrap();
            seen.lock().unwrap().clone()
        })
        .collect();

    // The only failed requests were sent to the killed replica, once it was killed (or
    // while in flight then).
    let failed = std::mem::take(&mut *failed.lock().unwrap());
    for failure in &failed {
        assert_eq!(failure.replica, 0, "a request to a replica that lived failed: {failure:?}");
        assert!(failure.sent + Duration::from_secs(10) >= killed_at, "a request before the kill failed: {failure:?}");
    }

    // Every acknowledged tag move is in its stream's history, read through a survivor.
    let moved = moved.lock().unwrap().clone();
    let pushed = pushed.lock().unwrap().clone();
    assert!(moved.len() > 100 && pushed.len() > 10, "the load ran: {} moves, {} pushes", moved.len(), pushed.len());
    let mut histories: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for stream in moved.iter().map(|(stream, _, _)| stream).collect::<BTreeSet<_>>() {
        let body = get(&format!("{survivor}{API}/imagestreams/{stream}"), &token);
        for tag in body["status"]["tags"].as_array().unwrap() {
            let images = tag["items"].as_array().unwrap().iter().map(|item| item["image"].as_str().unwrap().to_string()).collect();
            histories.insert((stream.clone(), tag["tag"].as_str().unwrap().to_string()), images);
        }
    }
    for (stream, tag, digest) in &moved {
        assert!(
            histories.get(&(stream.clone(), tag.clone())).is_some_and(|h| h.contains(digest)),
            "acknowledged {stream}:{tag} -> {digest} is lost"
        );
    }
    // Every acknowledged push is pullable through another replica: its manifest by tag.
    let client = reqwest::blocking::Client::new();
    for (tag, digest) in &pushed {
        let response = client
            .head(format!("{}/v2/{NS}/pushed/manifests/{tag}", replicas[2].url))
            .bearer_auth(&token)
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "acknowledged push {tag} is lost");
        assert_eq!(response.headers()["docker-content-digest"], digest.as_str(), "{tag}");
    }

    // Every watch saw every change once and in order: the same events as a watch of the
    // whole stretch from one survivor.
    let reference = {
        let seen: Recorded = Arc::default();
        let only_survivors = Cluster { urls: Arc::new(vec![survivor.clone()]), killed: Arc::default(), token: cluster.token.clone() };
        watcher(only_survivors, 0, from, Arc::clone(&seen), Arc::default());
        seen.lock().unwrap().clone()
    };
    let streams_moved: BTreeSet<&String> = moved.iter().map(|(stream, _, _)| stream).collect();
    assert!(reference.iter().any(|(_, name, _)| streams_moved.contains(name)));
    for (replica, events) in seen.iter().enumerate() {
        assert_eq!(
            events.len(),
            reference.len(),
            "the watch started on replica {replica} saw {} of {} events",
            events.len(),
            reference.len()
        );
        assert!(events == &reference, "the watch started on replica {replica} saw other events or another order");
    }

    // The subscription got every change: each acknowledged tag move has its event (at
    // least once: a notifier that dies between a delivery and recording it sends that
    // event again from its successor, with the same id).
    let deadline = Instant::now() + Duration::from_secs(30);
    let wanted: BTreeSet<(String, String)> =
        moved.iter().map(|(stream, tag, digest)| (format!("{stream}:{tag}"), digest.clone())).collect();
    loop {
        let events = delivered.lock().unwrap().clone();
        let got: BTreeSet<(String, String)> = events
            .iter()
            .filter_map(|event| Some((event["subject"].as_str()?.to_string(), event["data"]["digest"].as_str()?.to_string())))
            .collect();
        let missing = wanted.difference(&got).count();
        if missing == 0 {
            let mut by_id: BTreeMap<&str, &Value> = BTreeMap::new();
            for event in &events {
                let id = event["id"].as_str().unwrap();
                if let Some(earlier) = by_id.insert(id, event) {
                    assert_eq!(earlier, event, "an event sent again is the same event");
                }
            }
            break;
        }
        assert!(Instant::now() < deadline, "{missing} of {} acknowledged tag moves were never delivered", wanted.len());
        std::thread::sleep(Duration::from_millis(200));
    }

    // Each scheduled tag was checked once per interval, never twice in one (two servers
    // running the scheduler at once), and checked again after the scheduler moved.
    let log = upstream.log();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for failure in &failed {
        *reasons.entry(failure.what.split(':').next().unwrap_or("")).or_default() += 1;
    }
    eprintln!(
        "{} tag moves and {} pushes acknowledged; {} failed requests, all sent to the killed replica ({reasons:?}); {} watch events each; {} deliveries",
        moved.len(),
        pushed.len(),
        failed.len(),
        reference.len(),
        delivered.lock().unwrap().len()
    );
    let killed_wall = chrono::Utc::now().timestamp() - killed_at.elapsed().as_secs() as i64;
    // Which server held which controller when (for the message of a failure).
    let leases: Vec<String> = replicas
        .iter()
        .enumerate()
        .flat_map(|(idx, replica)| {
            let log = std::fs::read_to_string(replica.dir.path().join("server.log")).unwrap_or_default();
            log.lines().filter(|line| line.contains("lease")).map(|line| format!("replica {idx}: {line}")).collect::<Vec<_>>()
        })
        .collect();
    for (tag, times) in checks(&log, &scheduled, steady) {
        assert!(!times.is_empty(), "{tag} was never checked:\n{}", leases.join("\n"));
        for pair in times.windows(2) {
            // The log's times are whole seconds: a check INTERVAL after another is at
            // least INTERVAL - 1 later on the log.
            assert!(
                pair[1] - pair[0] >= INTERVAL as i64 - 1,
                "{tag} was checked twice within an interval: {times:?}\n{}",
                leases.join("\n")
            );
        }
        assert!(times.last().unwrap() > &killed_wall, "{tag} was not checked after the kill: {times:?}\n{}", leases.join("\n"));
        eprintln!("{tag} checked at {:?} (s after the kill)", times.iter().map(|t| t - killed_wall).collect::<Vec<_>>());
    }
}

/// Kills a child process with SIGKILL (a crash: no shutdown, no lease released).
fn kill_9(child: &Child) {
    let status = Command::new("kill").args(["-9", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}
