//! The harness every integration test starts from: the real server, over a temporary
//! data directory, on an ephemeral loopback port, driven over HTTP.

#![allow(dead_code)]

use std::time::Duration;

use berth_server::{ServeConfig, Started};
use berth_store::Synchronous;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const IMAGE_API: &str = "/apis/image.openshift.io/v1";

/// Runs blocking test-kit work (a registry process, its pushes, skopeo) off the async
/// workers.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A `kubernetes.io/dockerconfigjson` Secret with one registry's credentials.
pub fn docker_config_secret(name: &str, host: &str, user: &str, password: &str) -> Value {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let document = json!({"auths": {host: {"auth": engine.encode(format!("{user}:{password}"))}}}).to_string();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": engine.encode(document)}})
}

/// Whether this test binary runs its servers on PostgreSQL and S3 (a target of its own
/// compiled from the same file, e.g. `registry_postgres_s3`) rather than on the embedded
/// store and the filesystem.
pub const ON_SCALE_OUT_BACKENDS: bool = matches!(env!("CARGO_CRATE_NAME").as_bytes(), b"registry_postgres_s3");

pub struct TestApp {
    pub base: String,
    pub admin: String,
    pub dir: tempfile::TempDir,
    config: ServeConfig,
    started: Option<Started>,
    http: reqwest::Client,
}

impl TestApp {
    pub async fn start() -> TestApp {
        TestApp::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServeConfig {
            data_dir: dir.path().to_path_buf(),
            database: None,
            blob_store: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            registry_hostname: Some("registry.berth.test".into()),
            public_registry_hostnames: vec![],
            synchronous: Synchronous::Normal,
            event_retention: 100_000,
            compaction_interval: Duration::from_secs(3600),
            client_config: None,
            // Tests reach only loopback registries: anything else is refused without a request.
            import: berth_server::ImportSettings {
                allowed_registries: vec!["127.0.0.1:*".into(), "localhost:*".into()],
                insecure_registries: vec!["127.0.0.1:*".into(), "localhost:*".into()],
                retry_base_millis: 20,
                ..berth_server::ImportSettings::default()
            },
            delivery: berth_server::DeliverySettings {
                retry_base: Duration::from_millis(50),
                retry_max: Duration::from_millis(500),
                status_every: Duration::from_millis(50),
                // Receivers in tests are on loopback, which only a listed host may reach.
                allowed_hosts: vec!["127.0.0.1:*".into(), "localhost:*".into()],
                ..berth_server::DeliverySettings::default()
            },
            webhooks: Vec::new(),
            registry: berth_server::RegistrySettings::default(),
            tls: berth_server::tls::TlsSettings::default(),
            audit: berth_server::AuditSettings::default(),
            classes: berth_server::ClassSettings::default(),
            admission: berth_server::AdmissionSettings::default(),
            streams: berth_server::StreamSettings::default(),
        };
        if ON_SCALE_OUT_BACKENDS {
            let bucket = berth_testkit::s3::bucket().expect("an S3 server for the tests");
            config.database = Some(berth_testkit::postgres::database().expect("a PostgreSQL server for the tests"));
            config.blob_store = Some(berth_server::BlobStoreUrl { url: bucket.url.clone(), options: bucket.options() });
        }
        configure(&mut config);
        TestApp::serve(dir, config, None).await
    }

    /// Starts another server on this one's `--database` (a replica): its own data
    /// directory and port, the same catalog and admin token.
    pub async fn start_replica(&self) -> TestApp {
        assert!(self.config.database.is_some(), "replicas share a database");
        let dir = tempfile::tempdir().unwrap();
        let config = ServeConfig { data_dir: dir.path().to_path_buf(), listen: "127.0.0.1:0".parse().unwrap(), ..self.config.clone() };
        TestApp::serve(dir, config, Some(self.admin.clone())).await
    }

    async fn serve(dir: tempfile::TempDir, mut config: ServeConfig, admin: Option<String>) -> TestApp {
        let started = berth_server::start(config.clone()).await.unwrap();
        let admin = admin.or_else(|| started.admin_token.clone()).expect("a new data directory gets an admin token");
        config.listen = started.addr;
        // A server with TLS is reached through the CA it made, as a client on this machine would.
        let mut http = reqwest::Client::builder();
        if let Some(ca) = &started.certificate_authority {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap());
        }
        let base = format!("{}://{}", started.scheme, started.addr);
        TestApp { base, admin, dir, config, started: Some(started), http: http.build().unwrap() }
    }

    /// Stops the server and starts it again on the same data directory and address.
    pub async fn restart(&mut self) {
        self.started.take().unwrap().stop().await.unwrap();
        self.started = Some(berth_server::start(self.config.clone()).await.unwrap());
    }

    /// The HTTP client the helpers use (it trusts the server's CA when it serves HTTPS).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// How many requests the server's importer has sent to other registries.
    pub fn upstream_requests(&self) -> u64 {
        self.started.as_ref().unwrap().upstream_requests()
    }

    pub async fn stop(mut self) {
        self.started.take().unwrap().stop().await.unwrap();
    }

    /// Stops the server and hands over its data directory.
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        self.started.take().unwrap().stop().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    /// Sends a request with `token`, returning the status and the JSON body (Null if none).
    pub async fn send(&self, token: &str, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Sends raw bytes with a content type.
    pub async fn send_raw(&self, token: &str, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(&self.admin.clone(), Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(&self.admin.clone(), Method::POST, path, Some(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(&self.admin.clone(), Method::PUT, path, Some(&body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(&self.admin.clone(), Method::DELETE, path, None).await
    }

    /// Creates a namespace, asserting it worked.
    pub async fn namespace(&self, name: &str) {
        let (status, body) = self.post("/api/v1/namespaces", json!({"metadata": {"name": name}})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Creates an empty image stream as the cluster admin, asserting it worked: a push or
    /// a tag by an editor needs the stream to exist (`streams.implicitCreate`).
    pub async fn create_stream(&self, ns: &str, name: &str) {
        let (status, body) = self.post(&format!("{IMAGE_API}/namespaces/{ns}/imagestreams"), stream_body(name, json!([]))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Creates a token and returns the bearer token.
    pub async fn token(&self, name: &str, role: &str, namespaces: &[&str]) -> String {
        let body = json!({"apiVersion": "berth.dev/v1", "kind": "Token", "metadata": {"name": name}, "spec": {"role": role, "namespaces": namespaces}});
        let (status, created) = self.post("/apis/berth.dev/v1/tokens", body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["status"]["token"].as_str().unwrap().to_string()
    }

    /// The store's current revision, read from a list.
    /// What `/v2/token` issues for `scope` (`repository:ns/name:pull,push`) to a client
    /// that logs in with the berth token `token` as its Basic password, as Docker clients do.
    pub async fn registry_token(&self, token: &str, scope: &str) -> Value {
        let issued = self.http.get(format!("{}/v2/token?service=berth&scope={scope}", self.base)).basic_auth("me", Some(token)).send();
        issued.await.unwrap().json().await.unwrap()
    }

    pub async fn revision(&self) -> u64 {
        let (_, list) = self.get("/api/v1/namespaces").await;
        list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
    }

    /// Points `stream:tag` in `ns` at a new image made from `seed`; returns its digest.
    pub async fn map(&self, ns: &str, stream: &str, tag: &str, seed: &str) -> String {
        let manifest = format!("{{\"schemaVersion\":2,\"seed\":\"{seed}\"}}");
        let digest = sha256(&manifest);
        let body = json!({
            "kind": "ImageStreamMapping",
            "apiVersion": "image.openshift.io/v1",
            "metadata": {"name": stream},
            "tag": tag,
            "image": {
                "metadata": {"name": digest},
                "dockerImageReference": format!("registry.example.com/{ns}/{stream}@{digest}"),
                "dockerImageManifest": manifest,
                "dockerImageLayers": [{"name": sha256(seed), "size": 1024, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}],
            }
        });
        let (status, reply) = self.post(&format!("{IMAGE_API}/namespaces/{ns}/imagestreammappings"), body).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        digest
    }

    /// Waits until the import of `stream:tag` in `ns` settles: the tag's image is at its
    /// spec generation, or an import failure at that generation is recorded. Returns the
    /// ImageStreamTag.
    pub async fn settled_tag(&self, ns: &str, name: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, istag) = self.get(&istag_path(ns, name)).await;
            assert_eq!(status, StatusCode::OK, "{istag}");
            let wanted = istag["tag"]["generation"].as_i64().unwrap();
            let imported = istag["generation"].as_i64().unwrap_or(0) >= wanted;
            let failed = istag["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["generation"].as_i64() >= Some(wanted)));
            if imported || failed {
                return istag;
            }
            assert!(std::time::Instant::now() < deadline, "the import of {name} did not settle: {istag}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stream(&self, ns: &str, name: &str) -> Value {
        let (status, body) = self.get(&format!("{IMAGE_API}/namespaces/{ns}/imagestreams/{name}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

/// Streams watch events into a channel as they arrive.
pub fn watch_events(response: reqwest::Response) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buffer = Vec::new();
        let mut stream = futures::StreamExt::boxed(response.bytes_stream());
        while let Some(Ok(chunk)) = futures::StreamExt::next(&mut stream).await {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                if sender.send(serde_json::from_slice(&line).unwrap()).is_err() {
                    return;
                }
            }
        }
    });
    receiver
}

/// The path of ImageStreamTag `stream:tag` in `ns`.
pub fn istag_path(ns: &str, name: &str) -> String {
    format!("{IMAGE_API}/namespaces/{ns}/imagestreamtags/{name}")
}

pub fn sha256(text: &str) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(text.as_bytes())))
}

/// The history of `tag` in a stream: `(image, generation)` newest first.
pub fn history(stream: &Value, tag: &str) -> Vec<(String, i64)> {
    stream["status"]["tags"]
        .as_array()
        .and_then(|tags| tags.iter().find(|t| t["tag"] == tag))
        .and_then(|t| t["items"].as_array())
        .map(|items| {
            items.iter().map(|e| (e["image"].as_str().unwrap_or_default().to_string(), e["generation"].as_i64().unwrap())).collect()
        })
        .unwrap_or_default()
}

pub fn spec_tag<'a>(stream: &'a Value, tag: &str) -> &'a Value {
    stream["spec"]["tags"].as_array().and_then(|tags| tags.iter().find(|t| t["name"] == tag)).unwrap_or(&Value::Null)
}

pub fn stream_body(name: &str, tags: Value) -> Value {
    json!({"kind": "ImageStream", "apiVersion": "image.openshift.io/v1", "metadata": {"name": name}, "spec": {"tags": tags}})
}

/// A webhook receiver on loopback that keeps the CloudEvents it gets.
#[derive(Clone, Default)]
pub struct Hook {
    got: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Hook {
    /// Starts the receiver; returns it and its URL.
    pub async fn start() -> (Hook, String) {
        let hook = Hook::default();
        let sink = hook.got.clone();
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(serde_json::from_slice::<Value>(&body).unwrap());
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (hook, url)
    }

    pub fn events(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }

    /// Waits for at least `count` events (for up to 10 s), then a little longer for any
    /// that should not come.
    pub async fn wait_for(&self, count: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.events().len() < count {
            assert!(std::time::Instant::now() < deadline, "{} of {count} events arrived: {:?}", self.events().len(), self.events());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.events()
    }
}
