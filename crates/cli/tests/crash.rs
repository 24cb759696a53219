//! Nothing acknowledged is lost: writers run against `berth serve`, the server is killed
//! with SIGKILL at random moments, restarted on the same data directory, and every write
//! it acknowledged must be there, with the store consistent.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};

const API: &str = "/apis/image.openshift.io/v1/namespaces/crash";

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &Path, port: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-client-config"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("berth starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reqwest::blocking::get(format!("{url}/readyz")).map(|r| r.status().is_success()).unwrap_or(false) {
        assert!(Instant::now() < deadline, "berth did not become ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, url }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn sha256_hex(seed: &str) -> String {
    // A digest-shaped name that is unique per write; no manifest is sent, so it need not
    // be the hash of anything.
    let mut out = String::new();
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.bytes() {
        state = (state ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    for round in 0..4u64 {
        let mut x = state ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.push_str(&format!("{:016x}", x ^ (x >> 31)));
    }
    format!("sha256:{out}")
}

/// One acknowledged tag move: stream, tag, image.
type Ack = (String, String, String);

fn writer(url: String, token: String, id: usize, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<Ack>>>) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let stream = format!("s{}", seq % 7);
        let tag = format!("w{id}");
        let digest = sha256_hex(&format!("{id}-{seq}-{}", rand::rng().random::<u64>()));
        let body = json!({"metadata": {"name": stream}, "tag": tag,
            "image": {"metadata": {"name": digest}, "dockerImageReference": format!("registry.example.com/crash/{stream}@{digest}")}});
        match client.post(format!("{url}{API}/imagestreammappings")).bearer_auth(&token).json(&body).send() {
            Ok(response) if response.status().as_u16() == 201 => acked.lock().unwrap().push((stream, tag, digest)),
            // The server died mid-request: the write may or may not have happened.
            _ => return,
        }
    }
}

/// Creates ResourceQuotas `q1`, `q2`, ... in `crash` until stopped, recording each
/// acknowledged one with the limit it set.
fn quota_writer(url: String, token: String, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<(String, String)>>>) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let name = format!("q{}-{seq}", rand::rng().random::<u32>());
        let hard = format!("{seq}Gi");
        let body = json!({"metadata": {"name": name}, "spec": {"hard": {"berth.dev/image-storage": hard}}});
        match client.post(format!("{url}/api/v1/namespaces/crash/resourcequotas")).bearer_auth(&token).json(&body).send() {
            Ok(response) if response.status().as_u16() == 201 => acked.lock().unwrap().push((name, hard)),
            _ => return,
        }
    }
}

/// The admin token of a server's first start, after creating the namespace `crash` with it.
fn admin_token_with_namespace(data_dir: &Path, server: &Server) -> String {
    let token = std::fs::read_to_string(data_dir.join("admin.token")).unwrap().trim().to_string();
    let created = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/namespaces", server.url))
        .bearer_auth(&token)
        .json(&json!({"metadata": {"name": "crash"}}))
        .send()
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    token
}

fn get(client: &reqwest::blocking::Client, url: &str, token: &str) -> (u16, Value) {
    let response = client.get(url).bearer_auth(token).send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start(dir.path(), port);
    let token = admin_token_with_namespace(dir.path(), &server);
    let client = reqwest::blocking::Client::new();
    drop(server);

    let acked: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let quotas: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    for round in 0..5 {
        let mut server = start(dir.path(), port);
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|id| {
                let (url, token, stop, acked) = (server.url.clone(), token.clone(), Arc::clone(&stop), Arc::clone(&acked));
                std::thread::spawn(move || writer(url, token, id, stop, acked))
            })
            .chain(std::iter::once({
                let (url, token, stop, quotas) = (server.url.clone(), token.clone(), Arc::clone(&stop), Arc::clone(&quotas));
                std::thread::spawn(move || quota_writer(url, token, stop, quotas))
            }))
            .collect();
        std::thread::sleep(Duration::from_millis(rand::rng().random_range(150..900)));
        server.child.kill().unwrap(); // SIGKILL: no shutdown, no flush.
        server.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.join().unwrap();
        }
        assert!(!acked.lock().unwrap().is_empty(), "round {round} acknowledged no write");
    }

    let server = start(dir.path(), port);
    let acked = acked.lock().unwrap().clone();
    let mut streams = BTreeSet::new();
    for (stream, tag, digest) in &acked {
        streams.insert(stream.clone());
        let (status, _) = get(&client, &format!("{}/apis/image.openshift.io/v1/images/{digest}", server.url), &token);
        assert_eq!(status, 200, "acknowledged image {digest} is missing");
        let (status, body) = get(&client, &format!("{}{API}/imagestreams/{stream}", server.url), &token);
        assert_eq!(status, 200);
        let history = body["status"]["tags"].as_array().unwrap().iter().find(|t| t["tag"] == tag.as_str()).expect("the tag exists");
        assert!(
            history["items"].as_array().unwrap().iter().any(|e| e["image"] == digest.as_str()),
            "acknowledged tag move {stream}:{tag} -> {digest} is missing"
        );
    }
    for (name, hard) in quotas.lock().unwrap().iter() {
        let (status, quota) = get(&client, &format!("{}/api/v1/namespaces/crash/resourcequotas/{name}", server.url), &token);
        assert_eq!(status, 200, "acknowledged quota {name} is missing");
        assert_eq!(quota["spec"]["hard"]["berth.dev/image-storage"], hard.as_str());
    }
    // Consistency: every image a history names exists, and no object is newer than the
    // revision the store reports.
    let (_, list) = get(&client, &format!("{}{API}/imagestreams", server.url), &token);
    let revision: u64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    for stream in list["items"].as_array().unwrap() {
        assert!(stream["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() <= revision);
        for event in stream["status"]["tags"].as_array().unwrap().iter().flat_map(|t| t["items"].as_array().unwrap()) {
            let (status, _) =
                get(&client, &format!("{}/apis/image.openshift.io/v1/images/{}", server.url, event["image"].as_str().unwrap()), &token);
            assert_eq!(status, 200, "history names an image that does not exist");
        }
    }
    // Every acknowledged write is in the audit trail: its event is written before the
    // response is sent.
    let (status, audit) =
        get(&client, &format!("{}/apis/berth.dev/v1/auditevents?resource=imagestreammappings&limit=10000", server.url), &token);
    assert_eq!(status, 200);
    let audited = audit["items"].as_array().unwrap().iter().filter(|e| e["responseStatus"]["code"] == 201).count();
    assert!(acked.len() < 10_000, "more writes than one audit read returns");
    assert!(audited >= acked.len(), "{} acknowledged writes, {audited} audit events", acked.len());
    println!("{} acknowledged writes over 5 crashes, all present and audited", acked.len());
}

fn sha256_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex_of(&sha2::Sha256::digest(bytes)))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A server killed while a blob upload streams in leaves no visible partial blob, and the
/// upload resumes after the restart at the size it reports.
#[test]
fn a_blob_upload_killed_midway_leaves_nothing_visible_and_resumes() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start(dir.path(), port);
    let token = admin_token_with_namespace(dir.path(), &server);
    let client = reqwest::blocking::Client::new();
    let blob: Vec<u8> = (0..(4u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let digest = sha256_of(&blob);
    let started = client.post(format!("{}/v2/crash/app/blobs/uploads/", server.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(started.status().as_u16(), 202);
    let location = started.headers()["location"].to_str().unwrap().to_string();

    // A PATCH that announces the whole blob and sends a quarter of it, then the kill.
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        socket,
        "PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        blob.len()
    )
    .unwrap();
    socket.write_all(&blob[..1 << 20]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(socket);

    let server = start(dir.path(), port);
    let head = client.head(format!("{}/v2/crash/app/blobs/{digest}", server.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(head.status().as_u16(), 404, "no partial blob is visible");
    let status = client.get(format!("{}{location}", server.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(status.status().as_u16(), 204, "the upload survived the kill");
    let range = status.headers()["range"].to_str().unwrap().to_string();
    let size: usize = if range == "0-0" { 0 } else { range.trim_start_matches("0-").parse::<usize>().unwrap() + 1 };
    assert!(size < 1 << 20, "only completed chunks count: {range}");
    let resumed = client
        .patch(format!("{}{location}", server.url))
        .bearer_auth(&token)
        .header("content-range", format!("{size}-{}", blob.len() - 1))
        .body(blob[size..].to_vec())
        .send()
        .unwrap();
    assert_eq!(resumed.status().as_u16(), 202);
    let finished = client.put(format!("{}{location}?digest={digest}", server.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(finished.status().as_u16(), 201);
    let pulled = client.get(format!("{}/v2/crash/app/blobs/{digest}", server.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(pulled.status().as_u16(), 200);
    assert_eq!(sha256_of(&pulled.bytes().unwrap()), digest);
}

/// The embedded store is single-node: a second `berth serve` on a data directory in use
/// refuses to start (two writers, schedulers and notifiers on one SQLite file would
/// step on each other), says which process holds it and what to do instead, and leaves
/// the first serving; once the first is killed, the directory is free at once.
#[test]
fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path(), free_port());
    let second = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{}", free_port()), "--no-client-config"])
        .output()
        .expect("berth runs");
    assert!(!second.status.success(), "the second server must not start");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&dir.path().display().to_string()), "names the data directory: {stderr}");
    assert!(stderr.contains(&format!("process {}", first.child.id())), "names the process holding it: {stderr}");
    assert!(stderr.contains("--database"), "points at a shared database for several replicas: {stderr}");
    assert!(reqwest::blocking::get(format!("{}/readyz", first.url)).unwrap().status().is_success(), "the first still serves");
    drop(first); // SIGKILL: the kernel drops the lock with the process.
    let again = start(dir.path(), free_port());
    assert!(reqwest::blocking::get(format!("{}/readyz", again.url)).unwrap().status().is_success());
}
