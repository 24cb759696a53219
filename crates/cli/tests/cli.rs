//! The `berth` client against a real `berth serve`: each test starts the binary on a
//! free port with its own data directory and client config, and runs client commands
//! as a user would, checking their output and exit codes.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A running `berth serve`, killed when dropped.
struct Berth {
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Drop for Berth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    // Bind to port 0 to learn a free port, then let it go for the server to take.
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `berth` command with a clean environment but for the client config.
fn berth_command(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command.env("BERTH_CONFIG", config).env_remove("BERTH_SERVER").env_remove("BERTH_TOKEN").env_remove("BERTH_NAMESPACE");
    command
}

impl Berth {
    fn start() -> Berth {
        Berth::start_with(&[])
    }

    /// `berth serve` with more flags.
    fn start_with(flags: &[&str]) -> Berth {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("client.yaml");
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let port = free_port();
        let child = berth_command(&config)
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--sync", "normal"])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("berth serve starts");
        let server = Berth { child, dir, config };
        let deadline = Instant::now() + Duration::from_secs(30);
        // Ready is asked of the listener whatever it speaks: a TLS port answers a plain
        // request with an error status, which says it is up.
        let ready = || {
            reqwest::blocking::get(format!("http://127.0.0.1:{port}/readyz")).is_ok_and(|r| r.status().is_success())
                || reqwest::blocking::Client::builder()
                    .danger_accept_invalid_certs(true)
                    .build()
                    .unwrap()
                    .get(format!("https://127.0.0.1:{port}/readyz"))
                    .send()
                    .is_ok_and(|r| r.status().is_success())
        };
        while !ready() {
            let log = std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "berth serve did not become ready:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(server.config.exists(), "berth serve wrote no client config");
        server
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = berth_command(&self.config);
        command.args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "berth {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs a command that must fail with exit code 1; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(output.status.code(), Some(1), "berth {args:?} did not fail:\n{}", String::from_utf8_lossy(&output.stdout));
        String::from_utf8(output.stderr).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// A server with the namespace `team`.
    fn with_team() -> Berth {
        let berth = Berth::start();
        assert_eq!(berth.ok(&["create", "namespace", "team"]), "namespace/team created\n");
        berth
    }
}

fn sha256(text: &str) -> String {
    let hex: String = Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A mapping that points `app:latest` at an image whose manifest is `manifest`, named
/// by the manifest's digest as the server requires.
fn mapping(manifest: &str) -> (String, Value) {
    let digest = sha256(manifest);
    let mapping = serde_json::json!({
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStreamMapping",
        "metadata": {"name": "app", "namespace": "team"},
        "tag": "latest",
        "image": {
            "metadata": {"name": digest},
            "dockerImageReference": format!("registry.example.com/team/app@{digest}"),
            "dockerImageManifest": manifest,
            "dockerImageLayers": [{"name": sha256(&format!("layer of {manifest}")), "size": 1_500_000, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}],
        }
    });
    (digest, mapping)
}

const STREAM_LIST: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: image.openshift.io/v1
  kind: ImageStream
  metadata:
    name: db
  spec:
    tags:
    - name: "5.6"
      from:
        kind: DockerImage
        name: mysql:5.6
    - name: latest
      from:
        kind: ImageStreamTag
        name: db:5.6
"#;

#[test]
fn apply_creates_then_reports_unchanged_and_configured() {
    let berth = Berth::with_team();
    let file = berth.write("db.yaml", STREAM_LIST);
    assert_eq!(berth.ok(&["apply", "-f", &file, "-n", "team"]), "imagestream.image.openshift.io/db created\n");
    assert_eq!(berth.ok(&["apply", "-f", &file, "-n", "team"]), "imagestream.image.openshift.io/db unchanged\n");
    let labelled = berth.write("db2.yaml", &STREAM_LIST.replace("    name: db\n", "    name: db\n    labels:\n      tier: data\n"));
    assert_eq!(berth.ok(&["apply", "-f", &labelled, "-n", "team"]), "imagestream.image.openshift.io/db configured\n");

    let table = berth.ok(&["get", "is", "-n", "team"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("NAME  IMAGE REPOSITORY"), "{table}");
    assert!(lines[1].starts_with("db    ") && lines[1].contains("/team/db") && lines[1].contains("5.6,latest"), "{table}");

    let selected = berth.ok(&["get", "is", "-n", "team", "-l", "tier=data", "-o", "name"]);
    assert_eq!(selected, "imagestream.image.openshift.io/db\n");
    let none = berth.run(&["get", "is", "-n", "team", "-l", "tier=web"]);
    assert!(none.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&none.stderr), "No resources found in team namespace.\n");

    let stream = berth.json(&["get", "imagestream", "db", "-n", "team", "-o", "json"]);
    assert_eq!(stream["metadata"]["labels"]["tier"], "data");
    let conditions = berth.ok(&["describe", "is", "db", "-n", "team"]);
    assert!(conditions.contains("  tagged from DockerImage mysql:5.6"), "{conditions}");
    assert!(conditions.contains("  tagged from ImageStreamTag db:5.6"), "{conditions}");
    // Whether the server's import of mysql:5.6 is still pending or has failed (tests
    // reach no registry), the tag says how its import stands.
    assert!(conditions.contains("\n  importing...\n") || conditions.contains("\n  ! import failed ("), "{conditions}");

    assert_eq!(berth.ok(&["delete", "is", "db", "-n", "team"]), "imagestream.image.openshift.io \"db\" deleted\n");
    let gone = berth.fails(&["get", "is", "db", "-n", "team"]);
    assert!(gone.starts_with("Error from server (NotFound): "), "{gone}");
}

#[test]
fn mappings_build_history_and_tags_follow_it() {
    let berth = Berth::with_team();
    let (first, first_mapping) = mapping("{\"schemaVersion\":2,\"n\":1}");
    let (second, second_mapping) = mapping("{\"schemaVersion\":2,\"n\":2}");
    let file = berth.write("m1.yaml", &yaml_serde::to_string(&first_mapping).unwrap());
    assert_eq!(berth.ok(&["apply", "-f", &file]), "imagestreammapping.image.openshift.io/app created\n");
    let istag = berth.json(&["get", "istag", "app:latest", "-n", "team", "-o", "json"]);
    assert_eq!(istag["image"]["metadata"]["name"], first.as_str());

    // A JSON file works as well as YAML.
    let file = berth.write("m2.json", &second_mapping.to_string());
    assert_eq!(berth.ok(&["apply", "-f", &file]), "imagestreammapping.image.openshift.io/app created\n");
    let istag = berth.json(&["get", "istag", "app:latest", "-n", "team", "-o", "json"]);
    assert_eq!(istag["image"]["metadata"]["name"], second.as_str());
    assert_eq!(istag["image"]["dockerImageReference"], format!("registry.example.com/team/app@{second}"));

    let described = berth.ok(&["describe", "is", "app", "-n", "team"]);
    assert!(described.contains("Unique Images:      2\n"), "{described}");
    assert!(described.contains("\nlatest\n  pushed image\n"), "{described}");
    let newest = described.find(&format!("  * registry.example.com/team/app@{second}")).expect("the current image is starred");
    let older = described.find(&format!("    registry.example.com/team/app@{first}")).expect("the older image is listed");
    assert!(newest < older, "{described}");
    assert!(described.contains(&format!("      {first}\n")) && described.contains(&format!("      {second}\n")), "{described}");

    assert_eq!(berth.ok(&["tag", "app:latest", "app:prod", "-n", "team"]), "Tag app:prod set to app:latest.\n");
    let prod = berth.json(&["get", "istag", "app:prod", "-n", "team", "-o", "json"]);
    assert_eq!(prod["image"]["metadata"]["name"], second.as_str());
    assert_eq!(prod["tag"]["from"]["kind"], "ImageStreamTag");

    let tags = berth.ok(&["get", "istag", "-n", "team", "-o", "wide"]);
    assert!(tags.starts_with("NAME        IMAGE REFERENCE"), "{tags}");
    assert_eq!(tags.lines().filter(|l| l.contains(&second)).count(), 2, "{tags}");

    let detail = berth.ok(&["describe", "istag", "app:prod", "-n", "team"]);
    assert!(detail.contains(&format!("Image Name:         {second}\n")), "{detail}");
    assert!(detail.contains("Image Size:         1.5MB\n") && detail.contains("Layers:             1\n"), "{detail}");
    assert!(detail.contains("Tagged From:        ImageStreamTag app:latest\n"), "{detail}");

    assert_eq!(berth.ok(&["tag", "-d", "app:prod", "-n", "team"]), "Deleted tag team/app:prod.\n");
    assert!(berth.fails(&["get", "istag", "app:prod", "-n", "team"]).starts_with("Error from server (NotFound)"));

    let images = berth.ok(&["get", "images"]);
    assert!(images.contains(&first) && images.contains(&second) && images.contains("1.5MB"), "{images}");
}

/// What `oc new-app -o yaml` and templates produce: a List that mixes image streams with
/// kinds berth does not serve, in OpenShift 3's `v1` apiVersion for some of them.
const NEW_APP_LIST: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: image.openshift.io/v1
  kind: ImageStream
  metadata:
    name: ruby-builder
  spec:
    tags:
    - name: "3.3"
      from: {kind: DockerImage, name: registry.example.com/ruby:3.3}
      referencePolicy: {type: ""}
- apiVersion: build.openshift.io/v1
  kind: BuildConfig
  metadata:
    name: web
  spec:
    output: {to: {kind: ImageStreamTag, name: "web:latest"}}
- apiVersion: v1
  kind: ImageStream
  metadata:
    name: web
  spec:
    tags:
    - name: latest
      from: {kind: ImageStreamTag, name: "ruby-builder:3.3"}
- apiVersion: apps.openshift.io/v1
  kind: DeploymentConfig
  metadata:
    name: web
- apiVersion: v1
  kind: Service
  metadata:
    name: web
"#;

#[test]
fn a_list_from_a_template_applies_its_image_kinds_and_names_what_it_skipped() {
    let berth = Berth::with_team();
    let file = berth.write("new-app.yaml", NEW_APP_LIST);
    // --strict refuses the file whole and applies nothing.
    let refused = berth.fails(&["apply", "-f", &file, "-n", "team", "--strict"]);
    assert!(refused.contains("document 1, item 2: BuildConfig \"web\" (build.openshift.io/v1) is not a kind berth serves"), "{refused}");
    assert!(refused.contains("nothing was applied"), "{refused}");
    assert!(berth.run(&["get", "is", "-n", "team"]).stdout.is_empty());
    // By default the image streams are applied and each skipped object is named.
    let applied = berth.run(&["apply", "-f", &file, "-n", "team"]);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let stdout = String::from_utf8_lossy(&applied.stdout);
    assert!(
        stdout.contains("imagestream.image.openshift.io/ruby-builder created")
            && stdout.contains("imagestream.image.openshift.io/web created"),
        "{stdout}"
    );
    let warnings: Vec<String> =
        String::from_utf8_lossy(&applied.stderr).lines().filter(|l| l.starts_with("Warning: skipped")).map(str::to_string).collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    for what in ["BuildConfig \"web\"", "DeploymentConfig \"web\"", "Service \"web\""] {
        assert!(warnings.iter().any(|w| w.contains(what)), "{what} in {warnings:?}");
    }
    // The empty reference policy is OpenShift's default, Source.
    let stream = berth.json(&["get", "is", "ruby-builder", "-n", "team", "-o", "json"]);
    assert_eq!(stream["spec"]["tags"][0]["referencePolicy"]["type"], "Source");
}

#[test]
fn a_view_token_reads_but_cannot_write() {
    let berth = Berth::with_team();
    let file = berth.write("db.yaml", STREAM_LIST);
    berth.ok(&["apply", "-f", &file, "-n", "team"]);
    let created = berth.run(&["token", "create", "viewer", "--role", "view", "--namespace", "team", "--expires-in", "24h"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let token = String::from_utf8(created.stdout).unwrap();
    assert_eq!(token.lines().count(), 1, "the token alone is printed: {token}");
    assert!(String::from_utf8_lossy(&created.stderr).contains("only time"));
    let token = token.trim();

    let as_viewer = |args: &[&str]| berth.command(args).env("BERTH_TOKEN", token).output().unwrap();
    let listed = as_viewer(&["get", "is", "-n", "team"]);
    assert!(listed.status.success() && String::from_utf8_lossy(&listed.stdout).contains("db"));
    let applied = as_viewer(&["apply", "-f", &file, "-n", "team"]);
    assert_eq!(applied.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&applied.stderr);
    assert!(stderr.starts_with("Error from server (Forbidden): "), "{stderr}");
    let elsewhere = as_viewer(&["get", "is", "-n", "default"]);
    assert!(String::from_utf8_lossy(&elsewhere.stderr).starts_with("Error from server (Forbidden)"));

    let tokens = berth.ok(&["token", "list"]);
    let viewer = tokens.lines().find(|l| l.starts_with("viewer ")).unwrap_or_else(|| panic!("{tokens}"));
    assert!(viewer.contains(" view ") && viewer.contains(" team ") && viewer.contains(" in 23h "), "{tokens}");
    assert_eq!(berth.ok(&["token", "revoke", "viewer"]), "token.berth.dev \"viewer\" revoked\n");
    let revoked = as_viewer(&["get", "is", "-n", "team"]);
    assert!(String::from_utf8_lossy(&revoked.stderr).starts_with("Error from server (Unauthorized)"));

    let unscoped = berth.fails(&["token", "create", "nowhere", "--role", "view"]);
    assert!(unscoped.contains("--cluster"), "{unscoped}");
}

#[test]
fn watch_prints_a_row_per_change() {
    let berth = Berth::with_team();
    let mut watch = berth.command(&["get", "is", "-n", "team", "-w"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let (lines, received) = mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // Give the watch time to list and start before the change it must see.
    std::thread::sleep(Duration::from_millis(500));
    berth.ok(&["apply", "-f", &berth.write("db.yaml", STREAM_LIST), "-n", "team"]);
    let header = received.recv_timeout(Duration::from_secs(10)).expect("a header");
    let row = received.recv_timeout(Duration::from_secs(10)).expect("a row");
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(header.starts_with("NAME") && header.contains("TAGS"), "{header}");
    assert!(row.starts_with("db ") && row.contains("5.6,latest"), "{row}");
}

#[test]
fn yaml_output_keeps_the_servers_timestamps() {
    let berth = Berth::with_team();
    let json = berth.json(&["get", "ns", "team", "-o", "json"]);
    let yaml = berth.ok(&["get", "ns", "team", "-o", "yaml"]);
    let created = json["metadata"]["creationTimestamp"].as_str().unwrap();
    assert!(yaml.contains(created) && yaml.contains("kind: Namespace"), "{yaml}");
    let list = berth.json(&["get", "namespaces", "-o", "json"]);
    assert_eq!(list["kind"], "NamespaceList");
    assert!(list["metadata"]["resourceVersion"].is_string());
}

/// The server's URL and the token of the client config `berth` uses.
fn server_and_token(berth: &Berth) -> (String, String) {
    let config = std::fs::read_to_string(&berth.config).unwrap();
    let field = |key: &str| config.lines().find_map(|line| line.trim().strip_prefix(key)).unwrap().trim().to_string();
    (field("server:"), field("token:"))
}

/// `/metrics` says where `berth serve`'s memory is: the bytes Rust code holds (counted by
/// the binary's allocator) and SQLite's heap, both within the process's resident memory.
#[test]
fn metrics_say_where_the_servers_memory_is() {
    let berth = Berth::with_team();
    let (server, token) = server_and_token(&berth);
    let metrics = reqwest::blocking::Client::new().get(format!("{server}/metrics")).bearer_auth(token).send().unwrap().text().unwrap();
    let gauge = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} is not in /metrics:\n{metrics}"))
    };
    let status = std::fs::read_to_string(format!("/proc/{}/status", berth.child.id())).unwrap();
    let resident = status.lines().find_map(|line| line.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB");
    let resident: f64 = resident.parse::<f64>().unwrap() * 1024.0;
    let (live, sqlite) = (gauge("berth_heap_live_bytes"), gauge("berth_sqlite_heap_bytes"));
    assert!(live > 100_000.0 && live < resident, "live heap {live} of {resident} resident");
    assert!(sqlite > 0.0 && sqlite < resident, "SQLite heap {sqlite} of {resident} resident");
}

#[test]
fn the_server_gives_memory_back_when_it_goes_quiet() {
    let berth = Berth::with_team();
    let (server, token) = server_and_token(&berth);
    let http = reqwest::blocking::Client::new();
    let sqlite_heap = || -> f64 {
        let metrics = http.get(format!("{server}/metrics")).bearer_auth(&token).send().unwrap().text().unwrap();
        metrics.lines().find_map(|line| line.strip_prefix("berth_sqlite_heap_bytes ")?.parse().ok()).unwrap()
    };
    let namespace = serde_json::json!({"metadata": {"name": "quiet"}});
    assert!(http.post(format!("{server}/api/v1/namespaces")).bearer_auth(&token).json(&namespace).send().unwrap().status().is_success());
    let before = sqlite_heap();
    // A burst of writes and lists fills the store's page caches (the writer's, and the
    // readers' that list the streams).
    let url = format!("{server}/apis/image.openshift.io/v1/namespaces/quiet/imagestreams");
    let mut seed = 0x2545_f491_u64;
    for idx in 0..100 {
        // Annotations of 20 KB that do not compress make each stream several pages, as a
        // stream with a long history is.
        let note: String = (0..20_000)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                char::from(b'a' + (seed >> 59) as u8)
            })
            .collect();
        let stream = serde_json::json!({"metadata": {"name": format!("app-{idx}"), "annotations": {"note": note}}});
        assert!(http.post(&url).bearer_auth(&token).json(&stream).send().unwrap().status().is_success());
    }
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| assert!(http.get(&url).bearer_auth(&token).send().unwrap().status().is_success()));
        }
    });
    let busy = sqlite_heap();
    assert!(busy > before + 1_000_000.0, "the burst did not fill SQLite's caches: {before} -> {busy} bytes");
    let (deadline, mut quiet) = (std::time::Instant::now() + std::time::Duration::from_secs(10), busy);
    let half_back = before + (busy - before) / 2.0;
    while std::time::Instant::now() < deadline && quiet > half_back {
        std::thread::sleep(std::time::Duration::from_millis(250));
        quiet = sqlite_heap();
    }
    assert!(quiet <= half_back, "SQLite's heap stayed at {quiet} bytes after the burst took it from {before} to {busy}");
}

#[test]
fn errors_say_what_to_do_next() {
    let berth = Berth::start();
    let port = free_port();
    let unreachable = berth.fails(&["get", "is", "--server", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(unreachable, format!("error: cannot reach the berth server at http://127.0.0.1:{port}: is `berth serve` running?\n"));
    let nowhere = berth.dir.path().join("missing.yaml");
    let output = berth_command(&nowhere).args(["get", "is"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "error: no server: start one with `berth serve`, or pass --server\n");
    let missing_ns = berth.fails(&["apply", "-f", &berth.write("db.yaml", STREAM_LIST), "-n", "nope"]);
    assert!(missing_ns.contains("berth create namespace nope"), "{missing_ns}");
    let kind = berth.fails(&["get", "pods"]);
    assert!(kind.contains("\"pods\"") && kind.contains("imagestreams (is)"), "{kind}");
}

/// A subscription to two kinds of change of `app:latest`, signed with the key in the
/// Opaque Secret `hook-key`. No tag changes, so no
/// delivery is attempted in the test.
const SUBSCRIPTION: &str = r#"
apiVersion: berth.dev/v1
kind: Subscription
metadata:
  name: hooks
spec:
  url: https://ci.example.com/hook
  events: [TagCreated, TagMoved]
  streams: [app]
  tags: ["app:latest"]
  streamSelector:
    tier: web
  secretRef:
    name: hook-key
    key: signing-key
"#;

#[test]
fn subscriptions_are_applied_listed_and_described_and_scheduled_imports_listed() {
    let berth = Berth::with_team();
    let created = berth.run(&["create", "secret", "generic", "hook-key", "--from-literal=signing-key=s3cr3t-value", "-n", "team"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert_eq!(String::from_utf8_lossy(&created.stdout), "secret/hook-key created\n");
    assert!(!String::from_utf8_lossy(&created.stderr).contains("s3cr3t"), "the value is never printed back");
    let secrets = berth.ok(&["get", "secrets", "-n", "team"]);
    assert!(secrets.lines().any(|l| l.starts_with("hook-key") && l.contains(" Opaque ") && l.contains(" 1 ")), "{secrets}");

    let file = berth.write("hooks.yaml", SUBSCRIPTION);
    assert_eq!(berth.ok(&["apply", "-f", &file, "-n", "team"]), "subscription.berth.dev/hooks created\n");
    assert_eq!(berth.ok(&["apply", "-f", &file, "-n", "team"]), "subscription.berth.dev/hooks unchanged\n");

    let table = berth.ok(&["get", "subscriptions", "-n", "team"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let header: Vec<&str> = lines[0].split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["NAME", "URL", "EVENTS", "DELIVERED", "BACKLOG", "LAST DELIVERED"], "{table}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row, ["hooks", "https://ci.example.com/hook", "TagCreated,TagMoved", "0", "0", "<none>"], "{table}");
    let wide = berth.ok(&["get", "sub", "-A", "-o", "wide"]);
    assert!(wide.starts_with("NAMESPACE  NAME") && wide.lines().next().unwrap().ends_with("LAST ERROR"), "{wide}");
    assert!(wide.lines().nth(1).is_some_and(|l| l.starts_with("team       hooks")), "{wide}");
    assert_eq!(berth.ok(&["get", "sub", "-n", "team", "-o", "name"]), "subscription.berth.dev/hooks\n");

    let described = berth.ok(&["describe", "subscription", "hooks", "-n", "team"]);
    for line in [
        "Name:               hooks\n",
        "URL:                https://ci.example.com/hook\n",
        "Events:             TagCreated, TagMoved\n",
        "Streams:            app\n",
        "Tags:               app:latest\n",
        "Stream Selector:    tier=web\n",
        "Secret Ref:         key signing-key of Secret hook-key",
        "Delivered:          0\n",
        "Last Error:         <none>\n",
    ] {
        assert!(described.contains(line), "{line:?} in:\n{described}");
    }

    let none = berth.run(&["get", "scheduledimports", "-n", "team"]);
    assert!(none.status.success() && none.stdout.is_empty(), "{}", String::from_utf8_lossy(&none.stdout));
    assert_eq!(String::from_utf8_lossy(&none.stderr), "No resources found in team namespace.\n");
    let list = berth.json(&["get", "si", "-A", "-o", "json"]);
    assert_eq!((list["kind"].as_str(), list["items"].as_array().map(Vec::len)), (Some("ScheduledImportList"), Some(0)));
    assert!(berth.fails(&["get", "si", "-n", "team", "-l", "a=b"]).contains("no labels"));

    // A scheduled tag whose registry refuses connections: the server schedules it anyway,
    // and get and describe show the schedule.
    let tagged = berth.ok(&["tag", "127.0.0.1:1/team/app:1", "app:latest", "--scheduled", "--insecure", "--no-wait", "-n", "team"]);
    assert_eq!(tagged, "Tag app:latest set to import 127.0.0.1:1/team/app:1 periodically.\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    let scheduled = loop {
        let table = berth.ok(&["get", "si", "-n", "team"]);
        if table.lines().count() == 2 {
            break table;
        }
        assert!(Instant::now() < deadline, "the tag was not scheduled: {table:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(scheduled.starts_with("NAME        FROM"), "{scheduled}");
    let row: Vec<&str> = scheduled.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..2], ["app:latest", "127.0.0.1:1/team/app:1"], "{scheduled}");
    assert_eq!(berth.ok(&["get", "si", "app:latest", "-n", "team", "-o", "name"]), "scheduledimport.berth.dev/app:latest\n");
    let missing = berth.fails(&["get", "si", "app:other", "-n", "team"]);
    assert!(missing.starts_with("Error from server (NotFound): scheduledimports.berth.dev \"app:other\" not found"), "{missing}");
    let described = berth.ok(&["describe", "istag", "app:latest", "-n", "team"]);
    let line = described.lines().find(|l| l.starts_with("Scheduled:")).unwrap_or_else(|| panic!("{described}"));
    assert!(line.starts_with("Scheduled:          every ") && line.contains(", next "), "{described}");
    let stream = berth.ok(&["describe", "is", "app", "-n", "team"]);
    assert!(stream.contains("\n  Scheduled: every "), "{stream}");

    assert_eq!(berth.ok(&["delete", "subscription", "hooks", "-n", "team"]), "subscription.berth.dev \"hooks\" deleted\n");
    let gone = berth.run(&["get", "sub", "-n", "team"]);
    assert_eq!(String::from_utf8_lossy(&gone.stderr), "No resources found in team namespace.\n");
}

#[test]
fn completion_prints_a_script() {
    let output = Command::new(env!("CARGO_BIN_EXE_berth")).args(["completion", "bash"]).output().unwrap();
    assert!(output.status.success());
    let script = String::from_utf8(output.stdout).unwrap();
    assert!(script.contains("_berth()") && script.contains("complete -F _berth"), "{script}");
}

#[test]
fn sigterm_and_sigint_stop_the_server_cleanly_and_a_restart_rewrites_a_missing_client_config() {
    for signal in ["-TERM", "-INT"] {
        let mut server = Berth::start();
        server.ok(&["create", "namespace", "kept"]);
        // An open watch must not hold the shutdown up.
        let mut watcher = server.command(&["get", "namespaces", "-w"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let mut first_line = String::new();
        BufReader::new(watcher.stdout.take().unwrap()).read_line(&mut first_line).unwrap();
        assert!(first_line.contains("kept") || first_line.contains("NAME"), "{first_line}");
        let killed = Command::new("kill").args([signal, &server.child.id().to_string()]).status().unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "berth serve did not stop on {signal}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "berth serve exited with {status} on {signal}");
        let _ = watcher.kill();
        let _ = watcher.wait();
        let log = std::fs::read_to_string(server.dir.path().join("server.log")).unwrap();
        assert!(log.contains("shutting down"), "{log}");
    }

    // The client config is written again from the saved admin token when it is missing.
    let mut first = Berth::start();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let data = first.dir.path().join("data");
    let config = first.config.clone();
    std::fs::remove_file(&config).unwrap();
    let port = free_port();
    let mut child = berth_command(&config)
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !config.exists() {
        assert!(Instant::now() < deadline, "the client config was not written again");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let listed = berth_command(&config).args(["get", "namespaces", "-o", "name"]).output().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
}

#[test]
fn a_self_signed_server_is_trusted_by_the_client_it_configured_and_its_kubeconfig() {
    let berth = Berth::start_with(&["--tls", "self-signed"]);
    let config = std::fs::read_to_string(&berth.config).unwrap();
    assert!(config.contains("server: https://127.0.0.1:") && config.contains("certificateAuthority:"), "{config}");
    // No flag: the client config names the server and the CA that signed its certificate.
    berth.ok(&["create", "namespace", "team"]);
    assert!(berth.ok(&["get", "namespaces"]).contains("team"));
    let view = berth.ok(&["config", "view"]);
    assert!(view.contains("token: admin") && !view.contains("brt_"), "{view}");

    let kubeconfig: Value = yaml_serde::from_str(&berth.ok(&["config", "kubeconfig", "-n", "team"])).unwrap();
    let ca = std::fs::read(berth.dir.path().join("data/tls/ca.crt")).unwrap();
    let data = kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"].as_str().unwrap();
    use base64::Engine;
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(data).unwrap(), ca);
    assert!(kubeconfig["clusters"][0]["cluster"]["server"].as_str().unwrap().starts_with("https://127.0.0.1:"));
    assert!(kubeconfig["users"][0]["user"]["token"].as_str().unwrap().starts_with("brt_admin."));
    assert_eq!(kubeconfig["contexts"][0]["context"]["namespace"], "team");

    // A CA that did not sign the server's certificate (another berth's) is refused.
    let other = Berth::start_with(&["--tls", "self-signed"]);
    let other_ca = other.dir.path().join("data/tls/ca.crt");
    let refused = berth.fails(&["get", "namespaces", "--certificate-authority", other_ca.to_str().unwrap()]);
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
}

/// One `audit.k8s.io/v1` Event per write, with the right user and code, and tag history
/// that says what moved each tag: a CLI tag, a push, a webhook-triggered import and a
/// refused write, read back with `berth audit`. No secret reaches the audit file.
#[test]
fn each_write_is_audited_once_and_tag_history_says_who_moved_it() {
    use berth_testkit::{Auth, DistributionRegistry, Format, RegistryClient, TestImage};
    let upstream = DistributionRegistry::start(Auth::Open).unwrap();
    upstream.client().push("lib/app", Some("1.0"), &TestImage::new(Format::Oci, 1, 1, 512, "amd64")).unwrap();
    let hook_secret = "hook-secret-3f9a1c77d2";
    let dir = tempfile::tempdir().unwrap();
    let server_config = dir.path().join("server.yaml");
    std::fs::write(
        &server_config,
        format!(
            "import:\n  allowedRegistries: [\"127.0.0.1:*\"]\n  insecureRegistries: [\"127.0.0.1:*\"]\n\
             webhooks:\n- name: upstream\n  format: berth\n  registry: \"{}\"\n  token: {hook_secret}\n",
            upstream.host()
        ),
    )
    .unwrap();
    let berth = Berth::start_with(&["--server-config", server_config.to_str().unwrap()]);
    berth.ok(&["create", "namespace", "team"]);
    let client_config: Value = yaml_serde::from_str(&std::fs::read_to_string(&berth.config).unwrap()).unwrap();
    let (server, admin) = (client_config["server"].as_str().unwrap().to_string(), client_config["token"].as_str().unwrap().to_string());
    let host = server.trim_start_matches("http://").to_string();
    let secret_value = "s3cr3t-pull-password-81b2";
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("u:{secret_value}"));
    berth.ok(&[
        "create",
        "secret",
        "docker-registry",
        "pull",
        "-n",
        "team",
        "--docker-server",
        "example.com",
        "--docker-username",
        "u",
        "--docker-password",
        secret_value,
    ]);
    let audit = |args: &[&str]| -> Vec<Value> {
        let mut full = vec!["audit", "-o", "json"];
        full.extend_from_slice(args);
        berth.json(&full)["items"].as_array().unwrap().clone()
    };

    // A tag set with the CLI: one update of the ImageStreamTag, by the admin token.
    berth.ok(&["tag", &format!("{}/lib/app:1.0", upstream.host()), "team/ext:1.0"]);
    let events = audit(&["--object", "istag/ext:1.0"]);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["verb"], "update");
    assert_eq!(events[0]["user"]["username"], "admin");
    assert_eq!(events[0]["objectRef"]["namespace"], "team");
    assert_eq!(events[0]["objectRef"]["apiGroup"], "image.openshift.io");
    assert!(events[0]["responseStatus"]["code"].as_u64().unwrap() < 300, "{events:#?}");
    assert_eq!(events[0]["level"], "Metadata");
    assert_eq!(events[0]["stage"], "ResponseComplete");
    assert_eq!(events[0]["sourceIPs"][0], "127.0.0.1");

    // A push by a token of its own: one event for the manifest, none for the blob uploads.
    // An editor pushes into a stream that exists: an admin makes it first.
    assert_eq!(berth.ok(&["create", "imagestream", "pushed", "-n", "team"]).trim(), "imagestream.image.openshift.io/pushed created");
    let pusher = berth.ok(&["token", "create", "ci", "--role", "edit", "-n", "team"]).trim().to_string();
    let registry = RegistryClient::new(&host, Some(("ci", &pusher))).unwrap();
    registry.push("team/pushed", Some("v1"), &TestImage::new(Format::Oci, 2, 2, 512, "amd64")).unwrap();
    let events = audit(&["--user", "ci"]);
    assert_eq!(events.len(), 1, "one event for the push: {events:#?}");
    assert_eq!(events[0]["verb"], "put");
    assert_eq!(events[0]["objectRef"]["resource"], "imagestreamtags");
    assert_eq!(events[0]["objectRef"]["name"], "pushed:v1");
    assert_eq!(events[0]["responseStatus"]["code"], 201);

    // The upstream tag moves and the registry says so: one event, by the webhook.
    upstream.client().push("lib/app", Some("1.0"), &TestImage::new(Format::Oci, 3, 1, 512, "amd64")).unwrap();
    let moved = reqwest::blocking::Client::new()
        .post(format!("{server}/webhooks/upstream"))
        .bearer_auth(hook_secret)
        .json(&serde_json::json!({"repository": "lib/app", "tag": "1.0"}))
        .send()
        .unwrap();
    assert_eq!(moved.status().as_u16(), 202);
    let events = audit(&["--user", "system:webhook:upstream"]);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!((events[0]["verb"].as_str(), events[0]["responseStatus"]["code"].as_u64()), (Some("post"), Some(202)));
    let deadline = Instant::now() + Duration::from_secs(20);
    let history = loop {
        let stream = berth.json(&["get", "is", "ext", "-n", "team", "-o", "json"]);
        let items = stream["status"]["tags"][0]["items"].as_array().cloned().unwrap_or_default();
        if items.len() == 2 {
            break items;
        }
        assert!(Instant::now() < deadline, "the webhook's import did not move the tag: {stream:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(history[0]["cause"], "registry webhook upstream");
    assert_eq!(history[1]["cause"], "import after the tag was set");
    let pushed = berth.json(&["get", "is", "pushed", "-n", "team", "-o", "json"]);
    assert_eq!(pushed["status"]["tags"][0]["items"][0]["cause"], "push by token ci");
    let described = berth.ok(&["describe", "is", "pushed", "-n", "team"]);
    assert!(described.contains(", push by token ci\n"), "{described}");

    // A write the token may not make: one event, with its 403.
    let refused = berth.command(&["create", "namespace", "elsewhere"]).env("BERTH_TOKEN", &pusher).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let events = audit(&["--user", "ci", "--verb", "create"]);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["objectRef"]["resource"], "namespaces");
    assert_eq!(events[0]["responseStatus"]["code"], 403);

    // The table, and what only admins may read.
    let table = berth.ok(&["audit", "-n", "team", "--user", "ci"]);
    assert!(table.starts_with("TIME ") && table.contains(" put ") && table.contains("imagestreamtags/pushed:v1"), "{table}");
    let forbidden = berth.command(&["audit"]).env("BERTH_TOKEN", &pusher).output().unwrap();
    assert!(String::from_utf8_lossy(&forbidden.stderr).starts_with("Error from server (Forbidden)"));

    // No credential or secret value is in the audit trail.
    let mut trail = String::new();
    for entry in std::fs::read_dir(berth.dir.path().join("data/audit")).unwrap() {
        trail.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    assert!(trail.lines().count() >= 6, "{trail}");
    for secret in [admin.as_str(), pusher.as_str(), hook_secret, secret_value, auth.as_str()] {
        let tail = &secret[secret.len() - 12..];
        assert!(!trail.contains(tail), "the audit file holds a secret ({tail})");
    }
}

/// `--log-format json`: every log line is one JSON object with its level, message and fields.
#[test]
fn json_logs_are_one_object_per_line() {
    let berth = Berth::start_with(&["--log-format", "json"]);
    berth.ok(&["create", "namespace", "team"]);
    let log = std::fs::read_to_string(berth.dir.path().join("server.log")).unwrap();
    let lines: Vec<Value> = log.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"))).collect();
    let serving = lines.iter().find(|l| l["message"] == "berth is serving").unwrap_or_else(|| panic!("{log}"));
    assert_eq!(serving["level"], "INFO");
    assert!(serving["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "fields are kept: {serving}");
    assert!(serving["timestamp"].is_string());
}

#[test]
fn lineage_draws_a_tree_and_a_class_names_its_tags() {
    use berth_testkit::{Format, RegistryClient, TestImage};
    let berth = Berth::with_team();
    berth.ok(&["create", "namespace", "lib"]);
    let client_config: Value = yaml_serde::from_str(&std::fs::read_to_string(&berth.config).unwrap()).unwrap();
    let host = client_config["server"].as_str().unwrap().trim_start_matches("http://").to_string();
    let admin = client_config["token"].as_str().unwrap().to_string();
    let registry = RegistryClient::new(&host, Some(("me", &admin))).unwrap();
    let base = TestImage::new(Format::Oci, 31, 2, 64, "amd64");
    let mut app = TestImage::new(Format::Oci, 32, 1, 64, "amd64");
    app.layers.splice(0..0, base.layers.clone());
    let mut child = TestImage::new(Format::Oci, 33, 1, 64, "amd64");
    child.layers.splice(0..0, app.layers.clone());
    registry.push("lib/base", Some("1"), &base).unwrap();
    registry.push("team/app", Some("1"), &app).unwrap();
    registry.push("team/child", Some("1"), &child).unwrap();
    let short = |digest: String| format!("sha256:{}", &digest["sha256:".len().."sha256:".len() + 12]);

    let tree = berth.ok(&["lineage", "tree", "lib/base:1"]);
    assert_eq!(
        tree,
        format!(
            "lib/base:1 ({})\n└── team/app:1 ({})\n    └── team/child:1 ({})\n",
            short(base.digest()),
            short(app.digest()),
            short(child.digest())
        )
    );
    let ancestors = berth.ok(&["lineage", "ancestors", "child:1", "-n", "team"]);
    let lines: Vec<&str> = ancestors.lines().collect();
    assert!(lines[0].starts_with("IMAGE") && lines[0].contains("TAGS") && lines[0].contains("EVIDENCE"), "{ancestors}");
    assert!(lines[1].contains("team/app:1") && lines[1].contains("Layers"), "{ancestors}");
    assert!(lines[2].contains("lib/base:1"), "{ancestors}");
    let answer = berth.json(&["lineage", "descendants", "lib/base:1", "-o", "json"]);
    assert_eq!(answer["kind"], "ImageLineage");

    let class = berth.write(
        "class.yaml",
        "apiVersion: berth.dev/v1\nkind: ImageClass\nmetadata:\n  name: vendor\nspec:\n  target:\n    namespace: lib\n    name: base:1\n",
    );
    assert_eq!(berth.ok(&["apply", "-f", &class]), "imageclass.berth.dev/vendor created\n");
    let listed = berth.ok(&["get", "ic"]);
    assert!(listed.contains("vendor") && listed.contains("lib/base:1") && listed.contains(&short(base.digest())), "{listed}");
    let tags = berth.ok(&["class", "tags", "vendor"]);
    assert!(tags.contains("team") && tags.contains("app:1") && tags.contains("child:1") && tags.contains("current"), "{tags}");
    assert_eq!(berth.ok(&["class", "usage", "vendor"]), "class vendor: 3 images, 3 stream tags, 2 namespaces\n");
    // Nothing is built on an earlier version yet: nothing to rebuild.
    let output = berth.run(&["lineage", "rebuild-plan", "vendor"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("No stream tag you can see points at an image of class vendor"));
    assert!(berth.fails(&["lineage", "ancestors", "missing:1", "-n", "team"]).contains("not found"));
}

/// A scanner marks a base image; `berth adm vulnerable` shows the mark, the tags, what is
/// built on it and who runs that, and `berth adm who-runs` the workloads of a tag.
#[test]
fn adm_vulnerable_shows_what_a_mark_on_a_base_reaches() {
    use berth_testkit::{Format, RegistryClient, TestImage};
    use serde_json::json;
    let berth = Berth::with_team();
    berth.ok(&["create", "namespace", "lib"]);
    let client_config: Value = yaml_serde::from_str(&std::fs::read_to_string(&berth.config).unwrap()).unwrap();
    let server = client_config["server"].as_str().unwrap().to_string();
    let admin = client_config["token"].as_str().unwrap().to_string();
    let registry = RegistryClient::new(server.trim_start_matches("http://"), Some(("me", &admin))).unwrap();
    let base = TestImage::new(Format::Oci, 81, 1, 64, "amd64");
    let app = base.built_on(82, 1);
    registry.push("lib/base", Some("1"), &base).unwrap();
    registry.push("team/app", Some("1"), &app).unwrap();
    let http = reqwest::blocking::Client::new();

    // The validating webhook admits a Deployment of the app in cluster east.
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "1", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"}, "name": "shop", "namespace": "team",
        "operation": "CREATE", "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": format!("{}/team/app:1", server.trim_start_matches("http://"))}]}}}}}});
    let reply: Value =
        http.post(format!("{server}/admission/validate?cluster=east")).bearer_auth(&admin).json(&review).send().unwrap().json().unwrap();
    assert_eq!(reply["response"]["allowed"], true, "{reply}");

    // A scanner token marks the base.
    let created = berth.ok(&["token", "create", "trivy", "--role", "scanner", "--cluster"]);
    let scanner = created.lines().find(|l| l.starts_with("brt_")).unwrap().to_string();
    let url = format!("{server}/apis/image.openshift.io/v1/images/{}", base.digest());
    let mut image: Value = http.get(&url).bearer_auth(&scanner).send().unwrap().json().unwrap();
    let report = json!({"name": "trivy", "timestamp": "2026-12-01T10:00:00Z", "reference": "https://cve.example/CVE-2026-1",
        "summary": [{"label": "critical", "data": 1, "severityIndex": 3}]});
    image["metadata"]["annotations"]["images.openshift.io/deny-execution"] = json!("true");
    image["metadata"]["annotations"]["quality.images.openshift.io/vulnerability.trivy"] = json!(report.to_string());
    let status = http.put(&url).bearer_auth(&scanner).json(&image).send().unwrap().status();
    assert_eq!(status, 200);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let report = loop {
        let out = berth.ok(&["adm", "vulnerable", "lib/base:1"]);
        if out.contains("shop") || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(report.contains(&format!("Image {}", base.digest())), "{report}");
    assert!(report.contains("images.openshift.io/deny-execution: true"), "{report}");
    assert!(
        report.contains("quality.images.openshift.io/vulnerability.trivy: trivy; critical: 1; https://cve.example/CVE-2026-1"),
        "{report}"
    );
    assert!(report.contains("Tags pointing at it (1):") && report.contains("base:1"), "{report}");
    assert!(report.contains("Images built on it (1):") && report.contains("team/app:1"), "{report}");
    let running = report.lines().find(|l| l.contains("shop")).unwrap();
    for word in ["east", "team", "Deployment"] {
        assert!(running.contains(word), "{running}");
    }
    let who = berth.ok(&["adm", "who-runs", "app:1", "-n", "team"]);
    assert!(who.starts_with("CLUSTER") && who.contains("LAST SEEN") && who.contains("shop"), "{who}");
    let json = berth.json(&["adm", "vulnerable", "lib/base:1", "-o", "json"]);
    assert_eq!(json["kind"], "ImageImpact");
    assert!(berth.fails(&["adm", "who-runs", "missing:1", "-n", "team"]).contains("not found"));

    // Rules read as kubectl users expect.
    let policy = berth.write(
        "policy.yaml",
        "apiVersion: berth.dev/v1\nkind: ImagePolicy\nmetadata:\n  name: digests\nspec:\n  resources: [deployments]\n  require: {digest: true}\n  enforcement: DryRun\n",
    );
    assert_eq!(berth.ok(&["apply", "-f", &policy]), "imagepolicy.berth.dev/digests created\n");
    let listed = berth.ok(&["get", "ipol"]);
    let header = listed.lines().next().unwrap();
    assert!(["NAME", "ACTION", "RESOURCES", "ENFORCEMENT", "FAILURE POLICY"].iter().all(|h| header.contains(h)), "{listed}");
    assert!(
        listed.lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>()[..5]
            == ["digests", "Require", "deployments", "DryRun", "Fail"],
        "{listed}"
    );
}

/// The configuration `berth adm admission-config` prints registers webhooks that work: the
/// API server would call the printed URL over HTTPS, trusting the printed CA bundle, with
/// the printed token, and get an AdmissionReview answer.
#[test]
fn admission_config_registers_webhooks_kubernetes_can_call_over_https() {
    use base64::Engine;
    let berth = Berth::start_with(&["--tls", "self-signed"]);
    berth.ok(&["create", "namespace", "team"]);
    let token = berth.ok(&["token", "create", "kube-apiserver", "--role", "view", "--cluster"]).trim().to_string();
    let token = token.lines().find(|l| l.starts_with("brt_")).unwrap_or(&token).to_string();
    let printed = berth.ok(&["adm", "admission-config", "--token", &token, "--failure-policy", "Fail", "--cluster", "prod-eu"]);
    let documents: Vec<Value> =
        printed.split("\n---\n").map(|doc| yaml_serde::from_str(doc).unwrap_or_else(|err| panic!("{err}: {doc}"))).collect();
    assert_eq!(documents[0]["kind"], "MutatingWebhookConfiguration");
    assert_eq!(documents[1]["kind"], "ValidatingWebhookConfiguration");
    assert_eq!(documents[2]["kind"], "AdmissionConfiguration");
    let hook = &documents[0]["webhooks"][0];
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["admissionReviewVersions"], serde_json::json!(["v1"]));
    assert!(
        hook["rules"].as_array().unwrap().iter().any(|r| r["resources"].as_array().unwrap().contains(&serde_json::json!("deployments")))
    );
    let url = hook["clientConfig"]["url"].as_str().unwrap();
    assert!(url.starts_with("https://127.0.0.1:") && url.ends_with("/admission/mutate?cluster=prod-eu"), "{url}");
    let ca = base64::engine::general_purpose::STANDARD.decode(hook["clientConfig"]["caBundle"].as_str().unwrap()).unwrap();
    assert_eq!(ca, std::fs::read(berth.dir.path().join("data/tls/ca.crt")).unwrap());
    assert_eq!(documents[2]["plugins"][2]["name"], "ImagePolicyWebhook");
    assert_eq!(documents[2]["plugins"][2]["configuration"]["imagePolicy"]["defaultAllow"], false);
    let image_policy = &documents[4];
    assert!(image_policy["clusters"][0]["cluster"]["server"].as_str().unwrap().ends_with("/imagereview?cluster=prod-eu"));
    assert_eq!(image_policy["users"][0]["user"]["token"], token.as_str());
    let user = &documents[3]["users"][0];
    assert_eq!(user["name"].as_str().unwrap(), url.trim_start_matches("https://").split('/').next().unwrap());
    assert_eq!(user["user"]["token"], token.as_str());

    // Called as the API server would call it.
    let client = reqwest::blocking::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap()).build().unwrap();
    let review = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "b4d5c6e7-0000-4000-8000-000000000001",
        "kind": {"group": "", "version": "v1", "kind": "Pod"}, "resource": {"group": "", "version": "v1", "resource": "pods"},
        "name": "web", "namespace": "team", "operation": "CREATE", "userInfo": {"username": "developer"},
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}});
    let reply: Value = client.post(url).bearer_auth(&token).json(&review).send().unwrap().json().unwrap();
    assert_eq!(reply["kind"], "AdmissionReview");
    assert_eq!(reply["response"]["uid"], "b4d5c6e7-0000-4000-8000-000000000001");
    assert_eq!(reply["response"]["allowed"], true);
    assert_eq!(reply["response"]["auditAnnotations"]["berth.dev/cluster"], "prod-eu", "every decision names its cluster");
    let image_review = serde_json::json!({"apiVersion": "imagepolicy.k8s.io/v1alpha1", "kind": "ImageReview",
        "spec": {"containers": [{"image": "nginx:1.27"}], "namespace": "team"}});
    let server = image_policy["clusters"][0]["cluster"]["server"].as_str().unwrap();
    let reply: Value = client.post(server).bearer_auth(&token).json(&image_review).send().unwrap().json().unwrap();
    assert_eq!(reply["status"]["allowed"], true, "{reply}");
}

/// A mapping of `app:latest` to an image whose config is `config` (its manifest names
/// `n`, so that each gets its own digest).
fn contract_mapping(n: u32, config: Value) -> (String, Value) {
    let (digest, mut mapping) = mapping(&format!("{{\"schemaVersion\":2,\"contract\":{n}}}"));
    mapping["image"]["dockerImageMetadata"] =
        serde_json::json!({"kind": "DockerImage", "apiVersion": "1.0", "Config": config, "Os": "linux", "Architecture": "amd64"});
    mapping["image"]["dockerImageMetadataVersion"] = serde_json::json!("1.0");
    (digest, mapping)
}

const CONTRACT_STREAM: &str = r#"
apiVersion: image.openshift.io/v1
kind: ImageStream
metadata:
  name: app
  annotations:
    berth.dev/overrides: '{"env":{"MODE":"prod","DEBUG":null},"resources":{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"memory":"256Mi"}}}'
"#;

/// Deserialises `value` as `T` and back: a field `T` does not know would be lost, so the
/// two must be equal (k8s-openapi's types ignore unknown fields; this refuses them).
fn strictly<T: serde::de::DeserializeOwned + serde::Serialize>(value: &Value) -> T {
    let typed: T = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&typed).unwrap(), value, "a field is not in the Kubernetes schema");
    typed
}

#[test]
fn generate_deployment_fits_the_kubernetes_schema_and_check_catches_a_removed_port() {
    let berth = Berth::with_team();
    let stream = berth.write("stream.yaml", CONTRACT_STREAM);
    berth.ok(&["apply", "-f", &stream, "-n", "team"]);
    let config = serde_json::json!({
        "Env": ["PATH=/usr/bin", "DEBUG=1", "APP_VERSION=1.0"],
        "ExposedPorts": {"8080/tcp": {}, "9090/tcp": {}},
        "Volumes": {"/var/lib/app": {}},
        "User": "1001",
        "WorkingDir": "/app",
        "Entrypoint": ["/app/run"],
        "Cmd": ["--serve"],
        "Labels": {"org.opencontainers.image.version": "1.0"},
    });
    let (first, first_mapping) = contract_mapping(1, config.clone());
    let file = berth.write("m1.yaml", &yaml_serde::to_string(&first_mapping).unwrap());
    berth.ok(&["apply", "-f", &file]);

    let generated = berth.ok(&["generate", "deployment", "app:latest", "-n", "team", "--replicas", "2", "--name", "web"]);
    insta::assert_snapshot!("generate_deployment", generated);
    let documents: Vec<Value> = {
        use serde::Deserialize as _;
        yaml_serde::Deserializer::from_str(&generated).map(Value::deserialize).collect::<Result<_, _>>().unwrap()
    };
    let deployment: k8s_openapi::api::apps::v1::Deployment = strictly(&documents[0]);
    let _: k8s_openapi::api::core::v1::Service = strictly(&documents[1]);
    let deployment = serde_json::to_value(&deployment).unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], format!("registry.example.com/team/app@{first}"));
    assert_eq!(container["resources"]["requests"]["cpu"], "100m");
    assert!(container["env"].as_array().unwrap().iter().all(|e| e["name"] != "DEBUG"), "the override removed DEBUG");
    assert_eq!(documents[1]["spec"]["ports"].as_array().unwrap().len(), 2);

    // The running Deployment fits the image it was generated from.
    let running = berth.write("running.yaml", &generated);
    let fits = berth.ok(&["generate", "deployment", "app:latest", "-n", "team", "--check", &running]);
    assert_eq!(fits, "Deployment web fits the current image of team/app:latest.\n");

    // A new image that no longer exposes 8080 (and exposes 8443): the check says why not.
    let mut next = config.clone();
    next["ExposedPorts"] = serde_json::json!({"8443/tcp": {}, "9090/tcp": {}});
    next["Env"] = serde_json::json!(["PATH=/usr/bin", "DEBUG=1", "APP_VERSION=1.1"]);
    let (_, second_mapping) = contract_mapping(2, next);
    let file = berth.write("m2.yaml", &yaml_serde::to_string(&second_mapping).unwrap());
    berth.ok(&["apply", "-f", &file]);
    let check = berth.run(&["generate", "deployment", "app:latest", "-n", "team", "--check", &running]);
    assert_eq!(check.status.code(), Some(1));
    let report = String::from_utf8(check.stdout).unwrap();
    insta::assert_snapshot!("generate_deployment_check_removed_port", report);

    // The contract diff between the two images, and describe's three columns.
    let diff = berth.ok(&["diff", "app:latest", "-n", "team"]);
    insta::assert_snapshot!("diff_current_against_previous", diff);
    let same = berth.ok(&["diff", "app:latest", "1", "1", "-n", "team"]);
    assert!(same.ends_with("No change to the contract.\n"), "{same}");
    let described = berth.ok(&["describe", "istag", "app:latest", "-n", "team"]);
    let contract = described.split("Contract:\n").nth(1).unwrap();
    assert!(contract.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["env", "DEBUG", "1", "(removed)"]), "{described}");
    assert!(contract.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["env", "MODE", "prod", "prod"]), "{described}");
    assert!(contract.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["requests.cpu", "100m", "100m"]), "{described}");

    let got = berth.ok(&["get", "istag", "app:latest", "-n", "team"]);
    assert!(got.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["", "IMAGE", "OVERRIDE", "EFFECTIVE"][1..]), "{got}");
    assert!(got.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["port", "8443/tcp", "8443/tcp"]), "{got}");
    let history = berth.ok(&["describe", "is", "app", "-n", "team"]);
    assert!(history.contains(&format!("registry.example.com/team/app@{first}  (revision 1)")), "{history}");

    // Rollback of a pushed tag: back to the first image, nothing to pause.
    let rolled = berth.ok(&["rollback", "app:latest", "-n", "team"]);
    assert_eq!(rolled, format!("team/app:latest rolled back to {first}.\n"));
    let err = berth.fails(&["rollback", "app:latest", "-n", "team", "--to-revision", "7"]);
    assert!(err.contains("has revisions 1 to 3"), "{err}");
    let err = berth.fails(&["tag", "--resume", "app:latest", "-n", "team"]);
    assert!(err.contains("nothing imports into it"), "{err}");
}

#[test]
fn override_sets_and_removes_metadata_of_a_tag_over_its_stream() {
    let berth = Berth::with_team();
    let config = serde_json::json!({"Env": ["PATH=/usr/bin", "DEBUG=1"], "ExposedPorts": {"8080/tcp": {}}, "User": "1001"});
    let (_, first_mapping) = contract_mapping(1, config);
    let file = berth.write("m1.yaml", &yaml_serde::to_string(&first_mapping).unwrap());
    berth.ok(&["apply", "-f", &file]);
    let said = berth.ok(&[
        "override",
        "app:latest",
        "-n",
        "team",
        "--env",
        "MODE=dev",
        "--env",
        "DEBUG-",
        "--port",
        "8443/tcp",
        "--port",
        "8080/tcp-",
        "--request",
        "cpu=50m",
    ]);
    assert!(said.starts_with("Overrides of team/app:latest set: "), "{said}");
    berth.ok(&["override", "app", "-n", "team", "--user", "2000"]);
    let effective =
        |berth: &Berth| berth.json(&["get", "istag", "app:latest", "-n", "team", "-o", "json"])["contract"]["effective"].clone();
    let now = effective(&berth);
    assert_eq!(now["env"], serde_json::json!({"MODE": "dev", "PATH": "/usr/bin"}), "{now}");
    assert_eq!(now["ports"], serde_json::json!(["8443/tcp"]));
    assert_eq!((now["user"].as_str(), now["resources"]["requests"]["cpu"].as_str()), (Some("2000"), Some("50m")));
    // The server refuses what makes no sense, and says where.
    let err = berth.fails(&["override", "app:latest", "-n", "team", "--port", "http"]);
    assert!(err.contains("is not a port"), "{err}");
    // Clearing the tag's overrides leaves the stream's.
    berth.ok(&["override", "app:latest", "-n", "team", "--clear"]);
    let now = effective(&berth);
    assert_eq!((now["env"]["DEBUG"].as_str(), now["user"].as_str()), (Some("1"), Some("2000")), "{now}");
}

/// An imported tag rolled back with the CLI: the rollback says the imports are paused,
/// describe says by whom, and `tag --resume` brings upstream's image back.
#[test]
fn rollback_of_an_imported_tag_pauses_it_until_tag_resume() {
    use berth_testkit::{Auth, DistributionRegistry, Format, TestImage};
    let upstream = DistributionRegistry::start(Auth::Open).unwrap();
    let first = upstream.client().push("lib/app", Some("1"), &TestImage::new(Format::Oci, 1, 1, 256, "amd64")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server_config = dir.path().join("server.yaml");
    std::fs::write(&server_config, "import:\n  allowedRegistries: [\"127.0.0.1:*\"]\n  insecureRegistries: [\"127.0.0.1:*\"]\n").unwrap();
    let berth = Berth::start_with(&["--server-config", server_config.to_str().unwrap()]);
    berth.ok(&["create", "namespace", "team"]);
    let source = format!("{}/lib/app:1", upstream.host());
    berth.ok(&["tag", &source, "team/app:1"]);
    let second = upstream.client().push("lib/app", Some("1"), &TestImage::new(Format::Oci, 2, 1, 256, "amd64")).unwrap();
    berth.ok(&["import-image", "app:1", "-n", "team"]);
    let image = |berth: &Berth| berth.json(&["get", "istag", "app:1", "-n", "team", "-o", "json"])["image"]["metadata"]["name"].clone();
    assert_eq!(image(&berth), second.digest.as_str());

    let said = berth.ok(&["rollback", "app:1", "-n", "team", "--to-revision", "1"]);
    assert!(
        said.starts_with(&format!("team/app:1 rolled back to {}.\nImports of app:1 are paused (rollback by token ", first.digest)),
        "{said}"
    );
    assert_eq!(image(&berth), first.digest.as_str());
    let described = berth.ok(&["describe", "istag", "app:1", "-n", "team"]);
    assert!(described.contains("Import:             paused by rollback by token "), "{described}");
    let history = berth.ok(&["describe", "is", "app", "-n", "team"]);
    assert!(history.contains("(revision 3)") && history.contains("to revision 1\n"), "{history}");
    assert!(berth.ok(&["get", "istag", "-n", "team", "-o", "wide"]).contains("Paused"));
    let err = berth.fails(&["import-image", "app:1", "-n", "team"]);
    assert!(err.contains("are paused (rollback by token") && err.contains("berth tag --resume app:1"), "{err}");

    assert_eq!(
        berth.ok(&["tag", "--resume", "app:1", "-n", "team"]),
        "Imports of team/app:1 resumed: upstream's image is imported again.\n"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while image(&berth) != second.digest.as_str() {
        assert!(Instant::now() < deadline, "the resumed tag was not imported again");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn adm_top_prune_and_fsck_report_what_the_store_holds() {
    use berth_testkit::{Format, RegistryClient, TestImage};
    let berth = Berth::with_team();
    let client_config: Value = yaml_serde::from_str(&std::fs::read_to_string(&berth.config).unwrap()).unwrap();
    let server = client_config["server"].as_str().unwrap().to_string();
    let admin = client_config["token"].as_str().unwrap().to_string();
    let registry = RegistryClient::new(server.trim_start_matches("http://"), Some(("me", &admin))).unwrap();
    let base = TestImage::new(Format::Oci, 91, 1, 2048, "amd64");
    for seed in 0..4 {
        registry.push("team/app", Some("latest"), &base.built_on(100 + seed, 1)).unwrap();
    }

    let streams = berth.ok(&["adm", "top", "imagestreams"]);
    assert!(streams.starts_with("NAME") && streams.contains("STORAGE") && streams.contains("LAYERS"), "{streams}");
    let row = streams.lines().find(|l| l.starts_with("team/app")).unwrap_or_else(|| panic!("{streams}"));
    // One shared 2 KiB layer and four of 128 bytes.
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), vec!["team/app", "2.5Ki", "4", "5"], "{streams}");
    let images = berth.ok(&["adm", "top", "images", "-n", "team"]);
    assert!(images.contains("team/app:latest (latest)") && images.contains("pushed"), "{images}");
    let namespace = berth.ok(&["describe", "namespace", "team"]);
    assert!(namespace.contains("Image Streams:") && namespace.contains("2.5Ki (distinct layers)"), "{namespace}");

    let plan = berth.ok(&["adm", "prune", "images", "-A", "--keep-tag-revisions=1", "--keep-younger-than=0s"]);
    assert!(plan.starts_with("Dry run of the whole cluster: 3 tag revisions and 3 images would go, freeing 384"), "{plan}");
    assert!(plan.contains("Nothing was changed. Run again with --confirm to prune."), "{plan}");
    assert!(berth.ok(&["adm", "top", "imagestreams"]).contains("2.5Ki"));
    let done = berth.ok(&["adm", "prune", "images", "-A", "--keep-tag-revisions=1", "--keep-younger-than=0s", "--confirm"]);
    assert!(done.contains("Removed 3 tag revisions and 3 images."), "{done}");
    assert!(done.contains("Blob sweep:"), "{done}");
    let row = berth.ok(&["adm", "top", "imagestreams"]);
    assert!(row.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["team/app", "2.1Ki", "1", "2"]), "{row}");

    let fsck = berth.ok(&["adm", "fsck", "--verify-layers"]);
    assert!(fsck.contains("No problems found."), "{fsck}");
    let json = berth.json(&["adm", "fsck", "-o", "json"]);
    assert_eq!(json["kind"], "StoreCheck");
    assert_eq!(json["status"]["images"], 1);
}

const QUOTAS: &str = "apiVersion: v1
kind: ResourceQuota
metadata:
  name: images
spec:
  hard:
    openshift.io/imagestreams: \"10\"
    berth.dev/image-storage: 10Gi
    pods: \"4\"
---
apiVersion: v1
kind: LimitRange
metadata:
  name: limits
spec:
  limits:
  - type: openshift.io/ImageStream
    max:
      openshift.io/image-tags: \"20\"
  - type: Container
    max:
      cpu: \"2\"
";

#[test]
fn quotas_are_applied_listed_described_and_deleted() {
    let berth = Berth::with_team();
    let file = berth.write("quotas.yaml", QUOTAS);
    assert_eq!(berth.ok(&["apply", "-f", &file, "-n", "team"]), "resourcequota/images created\nlimitrange/limits created\n");
    assert_eq!(berth.ok(&["apply", "-f", &file, "-n", "team"]), "resourcequota/images unchanged\nlimitrange/limits unchanged\n");
    assert_eq!(berth.ok(&["create", "imagestream", "app", "-n", "team"]), "imagestream.image.openshift.io/app created\n");

    let table = berth.ok(&["get", "quota", "-n", "team"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let header: Vec<&str> = lines[0].split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["NAME", "USED/HARD", "AGE"], "{table}");
    assert!(
        lines[1].starts_with("images") && lines[1].contains("berth.dev/image-storage: 0/10Gi, openshift.io/imagestreams: 1/10, pods: -/4"),
        "{table}"
    );
    let ranges = berth.ok(&["get", "limits", "-A"]);
    assert!(ranges.starts_with("NAMESPACE  NAME    CREATED AT"), "{ranges}");
    // CREATED AT is the creation time as written: 2026-01-02T03:04:05Z.
    assert!(ranges.lines().nth(1).is_some_and(|l| l.starts_with("team       limits  ") && l.ends_with('Z')), "{ranges}");

    let described = berth.ok(&["describe", "quota", "images", "-n", "team"]);
    for words in ["Name:               images\n", "Resource", "openshift.io/imagestreams  1", "pods", "no: berth keeps it only"] {
        assert!(described.contains(words), "{words:?} in:\n{described}");
    }
    let described = berth.ok(&["describe", "limits", "limits", "-n", "team"]);
    assert!(described.contains("openshift.io/ImageStream  openshift.io/image-tags"), "{described}");
    assert!(described.lines().any(|l| l.starts_with("Container") && l.contains("no: berth keeps it only")), "{described}");

    assert_eq!(berth.ok(&["delete", "limits", "limits", "-n", "team"]), "limitrange \"limits\" deleted\n");
    assert_eq!(berth.ok(&["delete", "quota", "images", "-n", "team"]), "resourcequota \"images\" deleted\n");
    let gone = berth.run(&["get", "quota", "-n", "team"]);
    assert_eq!(String::from_utf8_lossy(&gone.stderr), "No resources found in team namespace.\n");
}
