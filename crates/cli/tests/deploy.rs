//! The deployment contract in deploy/: the Kubernetes manifests of deploy/kubernetes go
//! through kubectl's client-side apply, match the Kubernetes schema field for field, fit
//! together (selectors, ports, probes, the Secrets, ConfigMaps and volumes the Deployment
//! reads), and give `berth serve` only flags, environment variables and server settings
//! that this binary takes; deploy/Containerfile builds this binary and starts it the way
//! the manifests expect.
//!
//! `kubectl apply --dry-run=client` still needs an API server: it reads discovery (which
//! kinds exist, under which resource names) to map each object to its REST path, and GETs
//! each object to tell "created" from "configured". A fake API server on loopback answers
//! both: discovery for the kinds in [`KINDS`], 404 for every object. It serves no OpenAPI
//! document (that would be a whole cluster's schema), so kubectl runs with
//! `--validate=false` and the schema is checked here instead, against k8s-openapi's types.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A kind the fake API server serves, and how an object of it is read back through
/// k8s-openapi's type. A manifest of any other kind fails in kubectl with "no matches for
/// kind": add the kind here.
struct Kind {
    group_version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    read_back: ReadBack,
}

type ReadBack = fn(&Value) -> Result<Value, serde_json::Error>;

impl Kind {
    const fn new(group_version: &'static str, plural: &'static str, kind: &'static str, namespaced: bool, read_back: ReadBack) -> Kind {
        Kind { group_version, plural, kind, namespaced, read_back }
    }
}

/// Deserialises `value` as `T` and serialises it again. k8s-openapi's types skip fields
/// they do not know, so a misspelt or misplaced field is missing from the result.
fn read_back<T: serde::de::DeserializeOwned + serde::Serialize>(value: &Value) -> Result<Value, serde_json::Error> {
    serde_json::to_value(serde_json::from_value::<T>(value.clone())?)
}

const KINDS: &[Kind] = {
    use k8s_openapi::api::{apps, core, policy};
    &[
        Kind::new("v1", "namespaces", "Namespace", false, read_back::<core::v1::Namespace>),
        Kind::new("v1", "serviceaccounts", "ServiceAccount", true, read_back::<core::v1::ServiceAccount>),
        Kind::new("v1", "secrets", "Secret", true, read_back::<core::v1::Secret>),
        Kind::new("v1", "configmaps", "ConfigMap", true, read_back::<core::v1::ConfigMap>),
        Kind::new("v1", "services", "Service", true, read_back::<core::v1::Service>),
        Kind::new("apps/v1", "deployments", "Deployment", true, read_back::<apps::v1::Deployment>),
        Kind::new("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", true, read_back::<policy::v1::PodDisruptionBudget>),
    ]
};

/// The objects deploy/kubernetes makes, by kind and name.
const EXPECTED: &[(&str, &str)] = &[
    ("Namespace", "berth"),
    ("ServiceAccount", "berth"),
    ("Secret", "berth"),
    ("Secret", "berth-tls"),
    ("ConfigMap", "berth-env"),
    ("ConfigMap", "berth-config"),
    ("Service", "berth"),
    ("Deployment", "berth"),
    ("PodDisruptionBudget", "berth"),
];
const NAMESPACE: &str = "berth";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// A stand-in for kube-apiserver: discovery for [`KINDS`] and 404 for everything else.
/// It records the requests it answered ("METHOD /path").
struct FakeApiServer {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeApiServer {
    fn start() -> FakeApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        // Runs until the test process ends.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(&stream, &seen);
            }
        });
        FakeApiServer { url, requests }
    }
}

/// Reads one HTTP/1.1 request from `stream` and answers it, closing the connection.
fn answer(stream: &TcpStream, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().split('?').next().unwrap_or_default().to_string();
    let mut body_length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            body_length = value.trim().parse().unwrap_or(0);
        }
    }
    std::io::copy(&mut reader.take(body_length), &mut std::io::sink())?;
    seen.lock().unwrap().push(format!("{method} {path}"));
    let (status, body) = match discovery(&path) {
        Some(body) if method == "GET" => ("200 OK", body),
        _ => (
            "404 Not Found",
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                   "message": format!("{path} not found")}),
        ),
    };
    let body = body.to_string();
    let mut stream = stream;
    write!(stream, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// The discovery documents of an API server that serves [`KINDS`].
fn discovery(path: &str) -> Option<Value> {
    let group_versions: BTreeSet<&str> = KINDS.iter().map(|kind| kind.group_version).collect();
    match path {
        "/api" => Some(json!({"kind": "APIVersions", "versions": ["v1"]})),
        "/apis" => {
            let groups: Vec<Value> = group_versions
                .iter()
                .filter_map(|gv| gv.split_once('/'))
                .map(|(group, version)| {
                    let version = json!({"groupVersion": format!("{group}/{version}"), "version": version});
                    json!({"name": group, "versions": [version], "preferredVersion": version})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        _ => {
            let group_version = path.strip_prefix("/api/").or_else(|| path.strip_prefix("/apis/"))?;
            group_versions.get(group_version)?;
            let resources: Vec<Value> = KINDS
                .iter()
                .filter(|kind| kind.group_version == group_version)
                .map(|kind| {
                    json!({"name": kind.plural, "singularName": kind.kind.to_lowercase(), "namespaced": kind.namespaced,
                           "kind": kind.kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
                })
                .collect();
            Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
        }
    }
}

/// kubectl with a kubeconfig for a fresh [`FakeApiServer`] and its own home (so its
/// discovery cache is its own).
struct Kubectl {
    binary: PathBuf,
    home: tempfile::TempDir,
    api: FakeApiServer,
}

impl Kubectl {
    fn new() -> Kubectl {
        let api = FakeApiServer::start();
        let home = tempfile::tempdir().unwrap();
        let config = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        });
        std::fs::write(home.path().join("kubeconfig"), config.to_string()).unwrap();
        Kubectl { binary: berth_testkit::kubectl(), home, api }
    }

    /// `kubectl apply --dry-run=client -k deploy/kubernetes` with more arguments; panics
    /// unless it succeeds.
    fn apply(&self, more: &[&str]) -> String {
        let output = Command::new(&self.binary)
            .env("HOME", self.home.path())
            .env("KUBECONFIG", self.home.path().join("kubeconfig"))
            .args(["apply", "--dry-run=client", "--validate=false", "--request-timeout=20s", "-k"])
            .arg(deploy_dir().join("kubernetes"))
            .args(more)
            .stdin(Stdio::null())
            .output()
            .expect("kubectl runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kubectl apply --dry-run=client -k deploy/kubernetes failed ({}):\n{stderr}", output.status);
        String::from_utf8(output.stdout).unwrap()
    }
}

/// The objects of deploy/kubernetes as kubectl would send them.
fn applied_objects() -> Vec<Value> {
    let kubectl = Kubectl::new();
    let printed: Value = serde_json::from_str(&kubectl.apply(&["-o", "json"])).expect("kubectl printed JSON");
    match printed["kind"].as_str() {
        Some("List") => printed["items"].as_array().unwrap().clone(),
        _ => vec![printed],
    }
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy/kubernetes has no {kind} {name}"))
}

/// Where `written` and `read_back` differ: fields the schema does not have, values it
/// reads otherwise.
fn differences(path: &str, written: &Value, read_back: &Value, found: &mut Vec<String>) {
    match (written, read_back) {
        (Value::Object(written), Value::Object(read_back)) => {
            for (key, value) in written {
                match read_back.get(key) {
                    Some(back) => differences(&format!("{path}.{key}"), value, back, found),
                    None if value.is_null() => found.push(format!("{path}.{key}: null, as good as absent")),
                    None => found.push(format!("{path}.{key}: not a field of the Kubernetes schema here")),
                }
            }
            for key in read_back.keys().filter(|key| !written.contains_key(*key)) {
                found.push(format!("{path}.{key}: added when read back"));
            }
        }
        (Value::Array(written), Value::Array(read_back)) if written.len() == read_back.len() => {
            for (index, (value, back)) in written.iter().zip(read_back).enumerate() {
                differences(&format!("{path}[{index}]"), value, back, found);
            }
        }
        _ if written == read_back => {}
        _ => found.push(format!("{path}: {written} reads back as {read_back}")),
    }
}

/// `berth serve --help`: the server's flags (`--data-dir`, ...) and the environment
/// variables it reads (`BERTH_DATABASE`, ...).
fn serve_flags_and_env() -> (BTreeSet<String>, BTreeSet<String>) {
    let output = Command::new(env!("CARGO_BIN_EXE_berth")).args(["serve", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    // The client's global options (--server, BERTH_TOKEN, ...) are not the server's.
    let help = help.split("Global options:").next().unwrap();
    let flags = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(str::to_string)
        .collect();
    let env = help.split("[env: ").skip(1).map(|rest| rest.split(['=', ']']).next().unwrap().to_string()).collect();
    (flags, env)
}

/// `--flag=value`, `--flag value` and `--flag` arguments, as (flag, value).
fn flag_values(args: &[String]) -> Vec<(String, Option<String>)> {
    let mut parsed = Vec::new();
    let mut args = args.iter().peekable();
    while let Some(arg) = args.next() {
        assert!(arg.starts_with("--"), "{arg}: berth serve takes no positional arguments");
        match arg.split_once('=') {
            Some((flag, value)) => parsed.push((flag.to_string(), Some(value.to_string()))),
            None => {
                let value = args.next_if(|next| !next.starts_with("--")).cloned();
                parsed.push((arg.clone(), value));
            }
        }
    }
    parsed
}

/// The Deployment's one container, its pod spec and its `berth serve` arguments.
struct Pod<'a> {
    spec: &'a Value,
    container: &'a Value,
    args: Vec<(String, Option<String>)>,
}

impl<'a> Pod<'a> {
    fn of(deployment: &'a Value) -> Pod<'a> {
        let spec = &deployment["spec"]["template"]["spec"];
        let containers = spec["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "one container: berth");
        let container = &containers[0];
        let args: Vec<String> = container["args"].as_array().expect("args").iter().map(|arg| arg.as_str().unwrap().to_string()).collect();
        assert!(container.get("command").is_none(), "the image's entrypoint (`berth serve --listen ...`) is kept");
        Pod { spec, container, args: flag_values(&args) }
    }

    fn arg(&self, flag: &str) -> Option<&str> {
        self.args.iter().find(|(name, _)| name == flag).map(|(_, value)| value.as_deref().unwrap_or_default())
    }

    /// The volume a path in the container is on, and the path inside it.
    fn volume_of(&self, path: &str) -> (&'a Value, String) {
        let mount = self.container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|mount| Path::new(path).starts_with(mount["mountPath"].as_str().unwrap()))
            .max_by_key(|mount| mount["mountPath"].as_str().unwrap().len())
            .unwrap_or_else(|| panic!("{path} is on no volume, and the root filesystem is read-only"));
        let name = &mount["name"];
        let volume = self.spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|volume| volume["name"] == *name)
            .unwrap_or_else(|| panic!("no volume {name}"));
        let inside = Path::new(path).strip_prefix(mount["mountPath"].as_str().unwrap()).unwrap();
        (volume, inside.to_string_lossy().into_owned())
    }

    /// The port a probe or Service names (by name or number), as the container's port number.
    fn port(&self, named: &Value) -> i64 {
        let ports = self.container["ports"].as_array().expect("container ports");
        let port = ports
            .iter()
            .find(|port| port["name"] == *named || port["containerPort"] == *named)
            .unwrap_or_else(|| panic!("the container has no port {named}"));
        port["containerPort"].as_i64().unwrap()
    }
}

/// The keys of a Secret or ConfigMap.
fn keys(object: &Value) -> BTreeSet<String> {
    ["data", "stringData", "binaryData"]
        .iter()
        .filter_map(|field| object[field].as_object())
        .flat_map(|data| data.keys().cloned())
        .collect()
}

/// The text of a key of a ConfigMap.
fn config_map_text(objects: &[Value], name: &str, key: &str) -> String {
    let config_map = object(objects, "ConfigMap", name);
    config_map["data"][key].as_str().unwrap_or_else(|| panic!("ConfigMap {name} has no {key}")).to_string()
}

#[test]
fn kubectl_applies_the_manifests_with_a_client_side_dry_run() {
    let kubectl = Kubectl::new();
    let printed = kubectl.apply(&[]);
    let printed: BTreeSet<&str> = printed.lines().collect();
    let expected: BTreeSet<String> = EXPECTED
        .iter()
        .map(|(kind, name)| {
            let group = KINDS.iter().find(|k| k.kind == *kind).unwrap().group_version.rsplit_once('/').map(|(group, _)| group);
            let resource = kind.to_lowercase();
            match group {
                Some(group) => format!("{resource}.{group}/{name} created (dry run)"),
                None => format!("{resource}/{name} created (dry run)"),
            }
        })
        .collect();
    assert_eq!(printed, expected.iter().map(String::as_str).collect::<BTreeSet<&str>>());
    // A client-side dry run reads and never writes.
    let requests = kubectl.api.requests.lock().unwrap().clone();
    assert!(requests.iter().all(|request| request.starts_with("GET ")), "{requests:#?}");
    assert!(requests.iter().any(|request| request == "GET /apis/apps/v1/namespaces/berth/deployments/berth"), "{requests:#?}");
}

#[test]
fn the_manifests_fit_the_kubernetes_schema_and_each_other() {
    let objects = applied_objects();
    let made: BTreeSet<(String, String)> = objects
        .iter()
        .map(|object| (object["kind"].as_str().unwrap().to_string(), object["metadata"]["name"].as_str().unwrap().to_string()))
        .collect();
    let expected: BTreeSet<(String, String)> = EXPECTED.iter().map(|(kind, name)| (kind.to_string(), name.to_string())).collect();
    assert_eq!(made, expected);

    // Field for field, what the Kubernetes API reads.
    let mut found = Vec::new();
    for object in &objects {
        let name = format!("{} {}", object["kind"].as_str().unwrap(), object["metadata"]["name"].as_str().unwrap());
        let kind = KINDS.iter().find(|kind| object["kind"] == kind.kind).unwrap();
        assert_eq!(object["apiVersion"], kind.group_version, "{name}");
        assert_eq!(object["metadata"]["namespace"].as_str(), kind.namespaced.then_some(NAMESPACE), "{name}: its namespace");
        match (kind.read_back)(object) {
            Ok(back) => differences(&name, object, &back, &mut found),
            Err(err) => found.push(format!("{name}: {err}")),
        }
    }
    assert!(found.is_empty(), "deploy/kubernetes does not fit the Kubernetes schema:\n{}", found.join("\n"));

    let deployment = object(&objects, "Deployment", "berth");
    let pod = Pod::of(deployment);
    let spec = &deployment["spec"];
    let pod_labels = spec["template"]["metadata"]["labels"].as_object().expect("pod labels");
    let selects =
        |labels: &Value| labels.as_object().is_some_and(|labels| labels.iter().all(|(key, value)| pod_labels.get(key) == Some(value)));

    // Three replicas, one at a time away: in a rollout and in a drain.
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 1);
    assert!(selects(&spec["selector"]["matchLabels"]));
    let budget = object(&objects, "PodDisruptionBudget", "berth");
    assert_eq!(budget["spec"]["minAvailable"], 2);
    assert_eq!(budget["spec"]["selector"], spec["selector"], "the budget covers exactly the Deployment's pods");

    // The Service reaches the container's port, which the probes ask over HTTPS, since
    // berth serves TLS.
    let service = object(&objects, "Service", "berth");
    assert!(selects(&service["spec"]["selector"]), "the Service selects berth's pods");
    let port = pod.port(&service["spec"]["ports"][0]["targetPort"]);
    assert!(pod.arg("--tls-cert").is_some() && pod.arg("--tls-key").is_some(), "berth serves HTTPS (webhooks need it)");
    for (probe, paths) in
        [("livenessProbe", &["/healthz"][..]), ("readinessProbe", &["/readyz"]), ("startupProbe", &["/healthz", "/readyz"])]
    {
        let get = &pod.container[probe]["httpGet"];
        assert!(paths.iter().any(|path| get["path"] == *path), "{probe} asks {}", get["path"]);
        assert_eq!(get["scheme"], "HTTPS", "{probe}");
        assert_eq!(pod.port(&get["port"]), port, "{probe}");
    }

    // Every flag is one of `berth serve`'s, and the files they name are where the
    // manifests put them.
    let (flags, serve_env) = serve_flags_and_env();
    for (flag, _) in &pod.args {
        assert!(flags.contains(flag), "the Deployment gives berth serve {flag}, which it does not take");
    }
    let data_dir = pod.arg("--data-dir").expect("--data-dir");
    assert!(pod.volume_of(data_dir).0.get("emptyDir").is_some(), "--data-dir is on an emptyDir");
    for flag in ["--tls-cert", "--tls-key"] {
        let (volume, file) = pod.volume_of(pod.arg(flag).unwrap());
        let secret = object(&objects, "Secret", volume["secret"]["secretName"].as_str().expect("a Secret volume"));
        assert_eq!(secret["type"], "kubernetes.io/tls");
        assert!(keys(secret).contains(&file), "{flag}: the TLS Secret has no {file}");
    }
    let (volume, file) = pod.volume_of(pod.arg("--server-config").expect("--server-config"));
    config_map_text(&objects, volume["configMap"]["name"].as_str().expect("a ConfigMap volume"), &file);

    // The environment: what envFrom names exists; the catalog and the blobs are shared;
    // every BERTH_ variable is one berth serve reads, or one the arguments use.
    let mut env = BTreeSet::new();
    for source in pod.container["envFrom"].as_array().into_iter().flatten() {
        let (kind, reference) = match (source.get("secretRef"), source.get("configMapRef")) {
            (Some(reference), _) => ("Secret", reference),
            (_, Some(reference)) => ("ConfigMap", reference),
            _ => panic!("envFrom {source}"),
        };
        env.extend(keys(object(&objects, kind, reference["name"].as_str().unwrap())));
    }
    env.extend(pod.container["env"].as_array().into_iter().flatten().map(|var| var["name"].as_str().unwrap().to_string()));
    assert!(env.contains("BERTH_DATABASE"), "replicas share one catalog only through BERTH_DATABASE");
    assert!(env.contains("BERTH_BLOB_STORE"), "replicas share one registry only through BERTH_BLOB_STORE");
    let args_text: String = pod.args.iter().filter_map(|(_, value)| value.clone()).collect::<Vec<_>>().join(" ");
    for var in env.iter().filter(|var| var.starts_with("BERTH_")) {
        assert!(
            serve_env.contains(var) || args_text.contains(&format!("$({var})")),
            "{var} is neither read by berth serve ({serve_env:?}) nor used by the arguments"
        );
    }
    for used in args_text.split("$(").skip(1).map(|rest| rest.split(')').next().unwrap()) {
        assert!(env.contains(used), "the arguments use $({used}), which the environment does not have");
    }

    // Non-root, read-only, and enough time to drain.
    assert_eq!(pod.spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod.container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(pod.container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(pod.spec["serviceAccountName"], object(&objects, "ServiceAccount", "berth")["metadata"]["name"]);
    let pre_stop = pod.container["lifecycle"]["preStop"]["sleep"]["seconds"].as_i64().unwrap_or(0);
    assert!(pod.spec["terminationGracePeriodSeconds"].as_i64().unwrap() >= pre_stop + 15, "berth drains for about 10 s after SIGTERM");
}

#[test]
fn berth_serve_takes_the_server_settings_of_the_config_map() {
    let objects = applied_objects();
    let pod = Pod::of(object(&objects, "Deployment", "berth"));
    let (volume, file) = pod.volume_of(pod.arg("--server-config").unwrap());
    let settings = config_map_text(&objects, volume["configMap"]["name"].as_str().unwrap(), &file);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("berth.yaml"), settings).unwrap();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--no-client-config", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--server-config")
        .arg(dir.path().join("berth.yaml"))
        .env_remove("BERTH_DATABASE")
        .env_remove("BERTH_SERVER_CONFIG")
        .env_remove("BERTH_BLOB_STORE")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // The settings are read before berth listens: it listens, or it exits saying why.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listening = loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break true;
        }
        if server.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = server.kill();
    let _ = server.wait();
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(listening, "berth serve did not start with the ConfigMap's settings:\n{log}");
}

#[test]
fn the_containerfile_builds_this_binary_and_serves_what_the_manifests_expect() {
    let containerfile = std::fs::read_to_string(deploy_dir().join("Containerfile")).unwrap();
    let instructions: Vec<(&str, &str)> = containerfile
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with(' ') && !line.trim().is_empty())
        .filter_map(|line| line.split_once(' '))
        .collect();
    let all = |name: &str| instructions.iter().filter(|(n, _)| *n == name).map(|(_, rest)| rest.trim()).collect::<Vec<_>>();
    let one = |name: &str| {
        let found = all(name);
        assert_eq!(found.len(), 1, "one {name} in deploy/Containerfile");
        found[0]
    };
    let objects = applied_objects();
    let pod = Pod::of(object(&objects, "Deployment", "berth"));

    // The build stage builds this package with at least its Rust version, on the Debian
    // release the run stage has (the same glibc).
    let binary = Path::new(env!("CARGO_BIN_EXE_berth")).file_name().unwrap().to_str().unwrap();
    assert!(containerfile.contains(&format!("cargo build --release --locked -p {}", env!("CARGO_PKG_NAME"))));
    assert!(containerfile.contains(&format!("target/release/{binary} ")));
    let stages = all("FROM");
    assert_eq!(stages.len(), 2, "a build stage and a run stage");
    let rust_tag = stages[0].split_once("rust:").expect("the build stage is the Rust image").1.split_whitespace().next().unwrap();
    let (rust_version, release) = rust_tag.split_once('-').expect("rust:VERSION-RELEASE");
    let version = |text: &str| text.split('.').map(|part| part.parse::<u32>().unwrap()).collect::<Vec<_>>();
    assert!(version(rust_version) >= version(env!("CARGO_PKG_RUST_VERSION")), "{rust_tag} is older than the workspace's Rust");
    assert!(stages[1].contains(release), "the run stage ({}) is not Debian {release}, which the binary is built on", stages[1]);

    // The entrypoint is `berth serve --listen` on the port the manifests use, as the
    // user the pod runs as.
    let entrypoint: Vec<String> = serde_json::from_str(one("ENTRYPOINT")).expect("ENTRYPOINT in exec form");
    let cmd: Vec<String> = serde_json::from_str(one("CMD")).expect("CMD in exec form");
    let port = pod.port(&pod.container["ports"][0]["name"]);
    assert!(entrypoint[0].ends_with(&format!("/{binary}")), "{entrypoint:?}");
    assert!(containerfile.contains(&format!("/out/{binary} {}", entrypoint[0])), "the binary is copied to {}", entrypoint[0]);
    assert_eq!(entrypoint[1..], ["serve".to_string(), "--listen".into(), format!("0.0.0.0:{port}")]);
    assert_eq!(one("EXPOSE"), port.to_string());
    let (flags, _) = serve_flags_and_env();
    for (flag, _) in flag_values(&cmd) {
        assert!(flags.contains(&flag), "CMD gives berth serve {flag}, which it does not take");
    }
    let (user, group) = one("USER").split_once(':').expect("USER uid:gid");
    assert_eq!(pod.spec["securityContext"]["runAsUser"].to_string(), user);
    assert_eq!(pod.spec["securityContext"]["runAsGroup"].to_string(), group);

    // The build context is the repository root: the ignore file named after the
    // Containerfile keeps target/ out of it.
    let ignore = std::fs::read_to_string(deploy_dir().join("Containerfile.dockerignore")).unwrap();
    assert!(ignore.lines().any(|line| line == "*" || line == "target"), "{ignore}");
}
