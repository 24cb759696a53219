//! The registry client: one [`Upstream`] per server (HTTP clients, per-registry gates),
//! and one [`Session`] per repository being read (the credentials to try and the
//! authorization that worked).
//!
//! Every request goes through the registry's gate (a concurrency cap and a rate limit),
//! answers a `WWW-Authenticate` challenge (Basic, or Bearer through the token endpoint)
//! with each matching credential in turn and then anonymously, and is tried again on 429,
//! 5xx, broken connections and truncated bodies, waiting as `Retry-After` asks.

use std::collections::HashMap;
use std::num::NonZeroU32;

use backon::{ExponentialBuilder, Retryable};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_model::Digest;
use berth_model::manifest::ACCEPTED;
use berth_model::reference::{ImageReference, canonical_path, canonical_registry};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::credentials::Credential;
use crate::error::{ErrorKind, Result, UpstreamError};
use crate::hosts::{HostPolicy, PolicyResolver};
use crate::settings::ImportSettings;

/// Talks to other registries on behalf of the whole server. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ImportSettings,
    /// Which registries may be reached (`import.allowedRegistries`).
    policy: Arc<HostPolicy>,
    verified: reqwest::Client,
    unverified: reqwest::Client,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    /// For insecure registries: whether HTTPS (unverified) or plain HTTP answered.
    schemes: Mutex<HashMap<String, &'static str>>,
    requests: AtomicU64,
}

/// The limits on one registry.
struct Gate {
    permits: Arc<Semaphore>,
    limiter: Option<DefaultDirectRateLimiter>,
}

/// A repository in another registry, as berth contacts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    /// The registry as the reference names it (`docker.io` for Docker Hub).
    pub registry: String,
    /// `host[:port]` to connect to.
    pub endpoint: String,
    pub path: String,
    pub insecure: bool,
}

impl Repository {
    /// The repository of `reference`. Docker Hub names (`mysql`, `docker.io/mysql`) get
    /// Docker Hub's endpoint and the `library/` prefix.
    pub fn of(reference: &ImageReference, insecure: bool) -> Repository {
        let registry = canonical_registry(&reference.registry);
        let path = canonical_path(&registry, &reference.path);
        let endpoint = if registry == "docker.io" { "registry-1.docker.io".to_string() } else { registry.clone() };
        Repository { registry, endpoint, path, insecure }
    }

    /// `registry/path`, as pull specs and messages write it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.path)
    }

    /// The pull spec of an image of this repository by digest.
    pub fn pull_spec(&self, digest: &Digest) -> String {
        format!("{}@{digest}", self.name())
    }
}

/// The bytes of a blob as they arrive from a registry.
pub type BlobBody = std::pin::Pin<Box<dyn futures::Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A manifest as the registry sent it, checked against its digest.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

impl Upstream {
    pub fn new(settings: ImportSettings) -> Result<Upstream, String> {
        settings.validate()?;
        let policy = Arc::new(settings.registry_policy());
        let mut verified = client_builder(&settings, &policy);
        for path in &settings.additional_trusted_ca {
            let pem = std::fs::read(path).map_err(|err| format!("import.additionalTrustedCA: reading {path}: {err}"))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|err| format!("import.additionalTrustedCA: {path} is not a PEM certificate bundle: {err}"))?;
            for certificate in certificates {
                verified = verified.add_root_certificate(certificate);
            }
        }
        let verified = verified.build().map_err(|err| format!("building the HTTP client: {err}"))?;
        let unverified = client_builder(&settings, &policy)
            .danger_accept_invalid_certs(true)
            .build()
            .map_err(|err| format!("building the HTTP client: {err}"))?;
        Ok(Upstream {
            inner: Arc::new(Inner {
                settings,
                policy,
                verified,
                unverified,
                gates: Mutex::default(),
                schemes: Mutex::default(),
                requests: AtomicU64::new(0),
            }),
        })
    }

    pub fn settings(&self) -> &ImportSettings {
        &self.inner.settings
    }

    /// Whether berth may import and pull through from `registry` (as a reference names
    /// it), and if not, why, in words for the user.
    pub fn allows(&self, registry: &str, insecure: bool) -> Result<(), UpstreamError> {
        let registry = if registry.is_empty() { "docker.io" } else { registry };
        let default_port = if insecure || self.inner.settings.is_insecure(registry) { 80 } else { 443 };
        self.inner.policy.check(registry, default_port).map_err(|refusal| {
            UpstreamError::new(
                ErrorKind::Forbidden,
                format!("importing from {}; or import from an allowed registry", self.inner.policy.explain(registry, &refusal)),
            )
        })
    }

    /// How many HTTP requests berth has sent to registries (for tests and benchmarks).
    pub fn request_count(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// A session for reading `repository`, trying `credentials` in order, then anonymous.
    pub fn session(&self, repository: Repository, credentials: Vec<Credential>) -> Session {
        let retries = self.inner.settings.retries as usize;
        Session { upstream: self.clone(), repository, credentials, auth: Mutex::new(AuthState::default()), retries }
    }

    fn gate(&self, endpoint: &str) -> Arc<Gate> {
        let mut gates = self.inner.gates.lock().expect("gate map lock");
        let limits = self.inner.settings.limits_for(endpoint);
        Arc::clone(gates.entry(endpoint.to_string()).or_insert_with(|| {
            let limiter = NonZeroU32::new(limits.requests_per_second).map(|rate| {
                let burst = NonZeroU32::new(limits.burst).unwrap_or(rate);
                RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
            });
            Arc::new(Gate { permits: Arc::new(Semaphore::new(limits.max_concurrent_requests as usize)), limiter })
        }))
    }

    /// Sends one request through the registry's gate. The permit is held until the body
    /// has been read.
    async fn execute(
        &self,
        repository: &Repository,
        method: &Method,
        path: &str,
        accept: Option<&str>,
        authorization: Option<&HeaderValue>,
        timeout: Option<Duration>,
    ) -> Result<(reqwest::Response, OwnedSemaphorePermit)> {
        // The one place every registry request passes: nothing reaches a registry the
        // server does not allow.
        self.allows(&repository.registry, repository.insecure)?;
        let gate = self.gate(&repository.endpoint);
        let permit = Arc::clone(&gate.permits).acquire_owned().await.expect("gates are never closed");
        if let Some(limiter) = &gate.limiter {
            limiter.until_ready().await;
        }
        let known_scheme = if repository.insecure {
            self.inner.schemes.lock().expect("scheme map lock").get(&repository.endpoint).copied()
        } else {
            Some("https")
        };
        let client = if repository.insecure { &self.inner.unverified } else { &self.inner.verified };
        let send = |scheme: &str| {
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let mut request = client.request(method.clone(), format!("{scheme}://{}{path}", repository.endpoint));
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(value) = authorization {
                request = request.header(AUTHORIZATION, value.clone());
            }
            if let Some(timeout) = timeout {
                request = request.timeout(timeout);
            }
            request.send()
        };
        let response = match known_scheme {
            Some(scheme) => send(scheme).await.map_err(|err| transport_error(repository, &err))?,
            // An insecure registry may speak HTTPS with a certificate nobody signed, or
            // plain HTTP: try HTTPS first and remember which one answered.
            None => {
                let (scheme, response) = match send("https").await {
                    Ok(response) => ("https", response),
                    Err(err) if err.is_timeout() => return Err(transport_error(repository, &err)),
                    Err(_) => ("http", send("http").await.map_err(|err| transport_error(repository, &err))?),
                };
                self.inner.schemes.lock().expect("scheme map lock").insert(repository.endpoint.clone(), scheme);
                response
            }
        };
        Ok((response, permit))
    }
}

/// Registries redirect blob downloads to storage (S3, a CDN), so redirects are followed,
/// each to an address the policy allows: names are resolved by the policy's resolver,
/// and a literal address must be one a registry could have.
fn client_builder(settings: &ImportSettings, policy: &Arc<HostPolicy>) -> reqwest::ClientBuilder {
    let redirects = Arc::clone(policy);
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(settings.connect_timeout_seconds))
        .timeout(settings.request_timeout())
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(PolicyResolver::new(Arc::clone(policy))))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            let refused = attempt.url().host_str().and_then(|host| redirects.check_address(host).err());
            match refused {
                Some(refusal) => {
                    let message = redirects.explain(attempt.url().host_str().unwrap_or_default(), &refusal);
                    attempt.error(message)
                }
                None if attempt.previous().len() >= 5 => attempt.error("too many redirects"),
                None => attempt.follow(),
            }
        }))
}

fn transport_error(repository: &Repository, err: &reqwest::Error) -> UpstreamError {
    let host = &repository.endpoint;
    if err.is_timeout() {
        return UpstreamError::new(ErrorKind::Timeout, format!("{host} did not answer in time"));
    }
    let detail = error_chain(err);
    let tls_failed =
        ["certificate", "UnknownIssuer", "corrupt message", "InvalidContentType", "handshake"].iter().any(|s| detail.contains(s));
    if tls_failed && !repository.insecure {
        return UpstreamError::new(
            ErrorKind::Unavailable,
            format!(
                "TLS with {host} failed ({detail}): if its certificate is signed by your own CA, add the CA to import.additionalTrustedCA; if it is a test registry without TLS or with a self-signed certificate, list it in import.insecureRegistries or set importPolicy.insecure on the tag"
            ),
        );
    }
    if err.is_connect() {
        return UpstreamError::new(ErrorKind::Unavailable, format!("cannot connect to {host}: {detail}"));
    }
    UpstreamError::new(ErrorKind::Unavailable, format!("the request to {host} failed: {detail}"))
}

/// The error and its causes in one line; URLs in reqwest errors carry no credentials
/// because berth never puts any in a URL.
pub use berth_model::error_chain;

/// Reading one repository: the credentials to try and the authorization that works.
pub struct Session {
    upstream: Upstream,
    repository: Repository,
    credentials: Vec<Credential>,
    auth: Mutex<AuthState>,
    /// How many times a transient failure is tried again (`import.retries`, or none).
    retries: usize,
}

#[derive(Default)]
struct AuthState {
    /// Which credential is being used; `credentials.len()` is anonymous.
    candidate: usize,
    /// The `Authorization` value that answers the registry's challenge for `candidate`.
    header: Option<HeaderValue>,
    /// Whether some credential was rejected, for the final message.
    rejected: Vec<String>,
}

/// A successful (2xx) reply with its body.
struct Reply {
    headers: HeaderMap,
    body: Bytes,
}

/// Why one try failed, and whether (and when) another may succeed.
struct Failure {
    error: UpstreamError,
    retry_after: Option<Duration>,
}

impl From<UpstreamError> for Failure {
    fn from(error: UpstreamError) -> Failure {
        Failure { error, retry_after: None }
    }
}

impl Session {
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// This session, failing at the first transient failure instead of trying again: for
    /// a caller with its own, shorter schedule of tries (a notified tag looked at again
    /// after 10, 20, 40 ms ...).
    pub fn without_retries(mut self) -> Session {
        self.retries = 0;
        self
    }

    /// The digest the registry gives for `reference` (a tag or digest) without sending
    /// the manifest (HEAD). `None` when the registry does not say.
    pub async fn manifest_digest(&self, reference: &str) -> Result<Option<Digest>> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository.path);
        let reply = self.fetch(Method::HEAD, &path, Some(&ACCEPTED.join(", ")), 0, "manifest").await?;
        Ok(header_text(&reply.headers, "docker-content-digest").and_then(|d| d.parse().ok()))
    }

    /// The manifest for `reference` (a tag or digest), checked against its digest: the
    /// one asked for, else the one the registry announced.
    pub async fn manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository.path);
        let max = self.upstream.inner.settings.max_manifest_bytes;
        let reply = self.fetch(Method::GET, &path, Some(&ACCEPTED.join(", ")), max, "manifest").await?;
        let media_type = header_text(&reply.headers, CONTENT_TYPE.as_str()).unwrap_or_default();
        let announced = match reference.parse::<Digest>() {
            Ok(asked) => Some(asked),
            Err(_) => header_text(&reply.headers, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok()),
        };
        let digest = match announced {
            Some(expected) => {
                let actual = expected.recompute(&reply.body);
                if actual != expected {
                    return Err(UpstreamError::new(
                        ErrorKind::DigestMismatch,
                        format!(
                            "the manifest {}:{reference} sent by the registry hashes to {actual}, not {expected} as the registry said: the registry or something between it and berth changed the bytes; nothing was imported",
                            self.repository.name()
                        ),
                    ));
                }
                expected
            }
            None => Digest::sha256_of(&reply.body),
        };
        Ok(FetchedManifest { digest, media_type, bytes: reply.body })
    }

    /// A blob (an image config), checked against its digest, at most `max` bytes.
    pub async fn blob(&self, digest: &Digest, max: usize) -> Result<Bytes> {
        let path = format!("/v2/{}/blobs/{digest}", self.repository.path);
        let reply = self.fetch(Method::GET, &path, None, max, "blob").await?;
        let actual = digest.recompute(&reply.body);
        if actual != *digest {
            return Err(UpstreamError::new(
                ErrorKind::DigestMismatch,
                format!(
                    "the blob {digest} of {} hashes to {actual}: the registry sent other bytes; nothing was imported",
                    self.repository.name()
                ),
            ));
        }
        Ok(reply.body)
    }

    /// Every tag of the repository, following the registry's pagination.
    pub async fn tags(&self) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        let mut path = format!("/v2/{}/tags/list?n=1000", self.repository.path);
        for _ in 0..1000 {
            let reply = self.fetch(Method::GET, &path, Some("application/json"), 16 << 20, "tag list").await?;
            let page: TagList = serde_json::from_slice(&reply.body).map_err(|err| {
                UpstreamError::new(ErrorKind::Invalid, format!("the tag list of {} is not valid JSON: {err}", self.repository.name()))
            })?;
            tags.extend(page.tags.unwrap_or_default());
            match header_text(&reply.headers, "link").and_then(|link| next_link(&link)) {
                Some(next) => path = next,
                None => return Ok(tags),
            }
        }
        Err(UpstreamError::new(ErrorKind::Invalid, format!("the tag list of {} did not end after 1000 pages", self.repository.name())))
    }

    /// One request, tried again on transient failures.
    async fn fetch(&self, method: Method, path: &str, accept: Option<&str>, max_body: usize, what: &str) -> Result<Reply> {
        self.retrying(|| async {
            let (response, permit) = self.respond(&method, path, accept, None, what).await?;
            let headers = response.headers().clone();
            let body = if method == Method::HEAD { Bytes::new() } else { read_body(response, max_body, &self.repository, what).await? };
            drop(permit);
            Ok(Reply { headers, body })
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are used up,
    /// waiting between tries with exponential backoff and jitter, or as `Retry-After`
    /// asks (up to `import.maxRetryAfterSeconds`: a longer wait fails at once).
    async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let settings = &self.upstream.inner.settings;
        let longest = Duration::from_secs(settings.max_retry_after_seconds);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(settings.retry_base_millis))
            .with_max_delay(longest)
            .with_jitter()
            .with_max_times(self.retries);
        attempt
            .retry(backoff)
            .when(|failure: &Failure| failure.error.is_transient() && failure.retry_after.is_none_or(|wait| wait <= longest))
            .adjust(|failure: &Failure, backoff| backoff.map(|backoff| failure.retry_after.unwrap_or(backoff)))
            .notify(|failure: &Failure, wait: Duration| {
                tracing::debug!(registry = %self.repository.endpoint, wait_ms = wait.as_millis() as u64, error = %failure.error, "retrying");
            })
            .await
            .map_err(|failure| match failure.retry_after.filter(|wait| *wait > longest) {
                Some(wait) => UpstreamError::new(
                    failure.error.kind,
                    format!(
                        "{} (the registry asks to wait {} s, longer than import.maxRetryAfterSeconds)",
                        failure.error.message,
                        wait.as_secs()
                    ),
                ),
                None => failure.error,
            })
    }

    /// One try up to the response headers: authorization challenges are answered here
    /// (each credential, then anonymous); statuses other than 2xx become failures. The
    /// gate's permit comes back with the response, to be held while the body is read.
    async fn respond(
        &self,
        method: &Method,
        path: &str,
        accept: Option<&str>,
        timeout: Option<Duration>,
        what: &str,
    ) -> Result<(reqwest::Response, OwnedSemaphorePermit), Failure> {
        loop {
            let (candidate, header) = {
                let state = self.auth.lock().expect("auth state lock");
                (state.candidate, state.header.clone())
            };
            let (response, permit) = self.upstream.execute(&self.repository, method, path, accept, header.as_ref(), timeout).await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED {
                let challenge = Challenge::of(response.headers());
                drop(permit);
                self.answer_challenge(candidate, header.is_some(), challenge).await?;
                continue;
            }
            if !status.is_success() {
                let retry_after = retry_after(response.headers());
                let body = read_capped(response, MAX_ERROR_BODY).await;
                drop(permit);
                return Err(self.status_failure(status, &body, retry_after, what));
            }
            return Ok((response, permit));
        }
    }

    /// Opens a blob for streaming (pull-through): its size as the registry announced it
    /// and its bytes as they arrive. Transient failures are retried until the body
    /// starts; the caller checks the digest of what it reads. Long transfers are allowed
    /// an hour instead of the request timeout.
    pub async fn open_blob(&self, digest: &Digest) -> Result<(Option<u64>, BlobBody)> {
        let path = format!("/v2/{}/blobs/{digest}", self.repository.path);
        let (response, permit) = self.retrying(|| self.respond(&Method::GET, &path, None, Some(Duration::from_secs(3600)), "blob")).await?;
        let size = response.content_length();
        let repository = self.repository.clone();
        let body = response.bytes_stream().map(move |chunk| {
            let _held = &permit;
            chunk.map_err(|err| std::io::Error::other(format!("{} stopped sending the blob: {}", repository.endpoint, error_chain(&err))))
        });
        Ok((size, Box::pin(body)))
    }

    /// Moves the session on after a 401 for `candidate`: first answer the challenge with
    /// that candidate's credential, and when that was rejected move to the next one, ending
    /// with anonymous access. Fails when nothing is left to try.
    async fn answer_challenge(&self, candidate: usize, had_header: bool, challenge: Challenge) -> Result<(), Failure> {
        let credential = self.credentials.get(candidate);
        let answer = if had_header {
            None
        } else {
            match (&challenge, credential) {
                (Challenge::Bearer(params), _) => match self.token(params, credential).await {
                    Ok(token) => Some(bearer(&token)),
                    Err(err) if err.kind == ErrorKind::Unauthorized => None,
                    Err(err) => return Err(err.into()),
                },
                (Challenge::Basic, Some(credential)) => Some(basic(credential)),
                (Challenge::Basic | Challenge::Other, None) | (Challenge::Other, Some(_)) => None,
            }
        };
        let mut state = self.auth.lock().expect("auth state lock");
        if state.candidate != candidate {
            // Another request of this session already moved on.
            return Ok(());
        }
        match answer {
            Some(header) => state.header = Some(header),
            None if candidate < self.credentials.len() => {
                // The registry rejected this credential: a broken pull secret must not
                // break a public image, so go on to the next one and then anonymous.
                state.rejected.push(self.credentials[candidate].source.clone());
                state.candidate += 1;
                state.header = None;
                tracing::debug!(registry = %self.repository.endpoint, "credentials rejected; trying the next, then anonymous");
            }
            None => return Err(self.unauthorized(&state.rejected).into()),
        }
        Ok(())
    }

    fn unauthorized(&self, rejected: &[String]) -> UpstreamError {
        let registry = &self.repository.registry;
        let message = if rejected.is_empty() {
            format!(
                "{registry} requires credentials to read {}: add a pull secret (type kubernetes.io/dockerconfigjson) for {registry} to the namespace",
                self.repository.path
            )
        } else {
            format!(
                "{registry} rejected the credentials of pull secret(s) {} and anonymous access to {}: check the username and password in those secrets",
                rejected.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "),
                self.repository.path
            )
        };
        UpstreamError::new(ErrorKind::Unauthorized, message)
    }

    /// Gets a bearer token from the challenge's realm, with `credential` (or anonymously).
    async fn token(&self, params: &[(String, String)], credential: Option<&Credential>) -> Result<String> {
        #[derive(serde::Deserialize)]
        struct TokenReply {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let Some(realm) = challenge_param(params, "realm") else {
            return Err(UpstreamError::new(
                ErrorKind::Invalid,
                format!("{} asked for a bearer token without saying where to get one", self.repository.endpoint),
            ));
        };
        let mut url = url::Url::parse(&realm).map_err(|_| {
            UpstreamError::new(ErrorKind::Invalid, format!("{} named a token service that is not a URL", self.repository.endpoint))
        })?;
        // The token service is where the registry sends berth: it may be on another host,
        // but never on an address the server keeps berth away from.
        let policy = &self.upstream.inner.policy;
        if let Some(refusal) = url.host_str().and_then(|host| policy.check_address(host).err()) {
            return Err(UpstreamError::new(
                ErrorKind::Forbidden,
                format!("{} sent berth to a token service: {}", self.repository.endpoint, policy.explain(&realm, &refusal)),
            ));
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge_param(params, "service") {
                query.append_pair("service", &service);
            }
            let scope = challenge_param(params, "scope").unwrap_or_else(|| format!("repository:{}:pull", self.repository.path));
            query.append_pair("scope", &scope);
        }
        let client = if self.repository.insecure { &self.upstream.inner.unverified } else { &self.upstream.inner.verified };
        let mut request = client.get(url);
        if let Some(credential) = credential {
            request = request.header(AUTHORIZATION, basic(credential));
        }
        self.upstream.inner.requests.fetch_add(1, Ordering::Relaxed);
        let response = request.send().await.map_err(|err| transport_error(&self.repository, &err))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(UpstreamError::new(ErrorKind::Unauthorized, "the token service rejected the credentials"));
        }
        if !status.is_success() {
            return Err(UpstreamError::new(
                ErrorKind::Unavailable,
                format!("the token service of {} answered {status}", self.repository.endpoint),
            ));
        }
        let body = read_capped(response, MAX_TOKEN_REPLY).await;
        let reply: TokenReply = serde_json::from_slice(&body).map_err(|_| {
            UpstreamError::new(ErrorKind::Invalid, format!("the token service of {} sent no token", self.repository.endpoint))
        })?;
        reply.token.or(reply.access_token).filter(|t| !t.is_empty()).ok_or_else(|| {
            UpstreamError::new(ErrorKind::Invalid, format!("the token service of {} sent no token", self.repository.endpoint))
        })
    }

    fn status_failure(&self, status: StatusCode, body: &[u8], retry_after: Option<Duration>, what: &str) -> Failure {
        let detail = registry_message(body);
        let name = self.repository.name();
        let (kind, message) = match status {
            StatusCode::NOT_FOUND => (ErrorKind::NotFound, format!("{name}: {what} not found{detail}")),
            StatusCode::FORBIDDEN => (ErrorKind::Forbidden, format!("{} refused access to {name}{detail}", self.repository.registry)),
            StatusCode::TOO_MANY_REQUESTS => {
                (ErrorKind::TooManyRequests, format!("{} is limiting requests (429 Too Many Requests){detail}", self.repository.registry))
            }
            status if status.is_server_error() => (
                ErrorKind::Unavailable,
                format!("{} failed with {status} while sending the {what} of {name}{detail}", self.repository.registry),
            ),
            status => (ErrorKind::Invalid, format!("{} answered {status} for the {what} of {name}{detail}", self.repository.registry)),
        };
        Failure { error: UpstreamError::new(kind, message), retry_after }
    }
}

/// Reads a body of at most `max` bytes, failing clearly when it is larger or breaks off.
async fn read_body(response: reqwest::Response, max: usize, repository: &Repository, what: &str) -> Result<Bytes> {
    let announced = response.content_length();
    if announced.is_some_and(|len| len > max as u64) {
        return Err(too_large(repository, what, max));
    }
    let mut body = BytesMut::with_capacity(announced.unwrap_or(0) as usize);
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| {
            if err.is_timeout() {
                UpstreamError::new(
                    ErrorKind::Timeout,
                    format!("{} stopped sending the {what} of {}", repository.endpoint, repository.name()),
                )
            } else {
                incomplete(repository, what, body.len(), announced)
            }
        })?;
        if body.len() + chunk.len() > max {
            return Err(too_large(repository, what, max));
        }
        body.extend_from_slice(&chunk);
    }
    if announced.is_some_and(|len| len != body.len() as u64) {
        return Err(incomplete(repository, what, body.len(), announced));
    }
    Ok(body.freeze())
}

fn incomplete(repository: &Repository, what: &str, received: usize, announced: Option<u64>) -> UpstreamError {
    let of = announced.map(|len| format!(" of {len}")).unwrap_or_default();
    UpstreamError::new(
        ErrorKind::Incomplete,
        format!("the connection to {} closed after {received}{of} bytes of the {what} of {}", repository.endpoint, repository.name()),
    )
}

fn too_large(repository: &Repository, what: &str, max: usize) -> UpstreamError {
    UpstreamError::new(ErrorKind::TooLarge, format!("the {what} of {} is larger than berth accepts ({max} bytes)", repository.name()))
}

/// The registry's own words from an OCI error body, as `: message`.
fn registry_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(Errors { errors }) if !errors.is_empty() => {
            let first = &errors[0];
            let text: String = format!("{} {}", first.code, first.message).trim().chars().take(200).collect();
            format!(" ({text})")
        }
        _ => String::new(),
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// The `next` target of a `Link` header, as a path (and query) on the same registry.
fn next_link(link: &str) -> Option<String> {
    let links = parse_link_header::parse_with_rel(link).ok()?;
    let target = links.get("next")?.raw_uri.as_str();
    match url::Url::parse(target) {
        Ok(absolute) => Some(format!("{}{}", absolute.path(), absolute.query().map(|q| format!("?{q}")).unwrap_or_default())),
        Err(_) if target.starts_with('/') => Some(target.to_string()),
        Err(_) => None,
    }
}

/// What a 401 asked for.
enum Challenge {
    Basic,
    /// A bearer token, with the challenge's parameters (names lowercase, values unquoted).
    Bearer(Vec<(String, String)>),
    Other,
}

impl Challenge {
    /// The first challenge of the `WWW-Authenticate` headers that berth can answer, read
    /// by a parser of RFC 9110's grammar (quoted values with escapes, several challenges
    /// in one header).
    fn of(headers: &HeaderMap) -> Challenge {
        for value in headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()) {
            let Ok(challenges) = http_auth::parse_challenges(value) else {
                continue;
            };
            for challenge in challenges {
                if challenge.scheme.eq_ignore_ascii_case("bearer") {
                    let params = challenge.params.iter().map(|(name, value)| (name.to_ascii_lowercase(), value.to_unescaped())).collect();
                    return Challenge::Bearer(params);
                }
                if challenge.scheme.eq_ignore_ascii_case("basic") {
                    return Challenge::Basic;
                }
            }
        }
        Challenge::Other
    }
}

fn challenge_param(params: &[(String, String)], name: &str) -> Option<String> {
    params.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone())
}

/// The most of an error reply and of a token service's reply that is read.
const MAX_ERROR_BODY: usize = 64 * 1024;
const MAX_TOKEN_REPLY: usize = 64 * 1024;

/// Up to `max` bytes of a reply's body (the rest is never read); what arrived before a
/// broken connection.
async fn read_capped(response: reqwest::Response, max: usize) -> Bytes {
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = max - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= max {
            break;
        }
    }
    body.freeze()
}

fn basic(credential: &Credential) -> HeaderValue {
    let encoded = STANDARD.encode(format!("{}:{}", credential.username, credential.password));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

fn bearer(token: &str) -> HeaderValue {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(values: &[&str]) -> Challenge {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(WWW_AUTHENTICATE, HeaderValue::from_str(value).unwrap());
        }
        Challenge::of(&headers)
    }

    #[test]
    fn bearer_challenges_are_parsed() {
        let Challenge::Bearer(params) =
            challenge(&[r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#])
        else {
            panic!("a bearer challenge")
        };
        assert_eq!(challenge_param(&params, "realm").as_deref(), Some("https://auth.example/token"));
        assert_eq!(challenge_param(&params, "service").as_deref(), Some("registry.example"));
        assert_eq!(challenge_param(&params, "scope").as_deref(), Some("repository:a/b:pull,push"));
        let Challenge::Bearer(params) = challenge(&[r#"bearer realm=x, service="a \"quoted\" name""#]) else { panic!("lowercase scheme") };
        assert_eq!(challenge_param(&params, "service").as_deref(), Some(r#"a "quoted" name"#));
        // Several challenges: the one berth answers is found, in one header or several.
        assert!(matches!(challenge(&[r#"Negotiate, Basic realm="r""#]), Challenge::Basic));
        assert!(matches!(challenge(&["Negotiate", r#"Bearer realm="r""#]), Challenge::Bearer(_)));
        assert!(matches!(challenge(&["Bearer realm=\"unterminated"]), Challenge::Other));
    }

    proptest::proptest! {
        /// Whatever a registry sends as `WWW-Authenticate` or `Link`, reading it does not
        /// panic, and a bearer challenge's realm is the value as sent, unquoted.
        #[test]
        fn challenges_and_links_from_registries_never_panic(
            value in "[ -~]{0,120}",
            realm in "[a-zA-Z0-9:/._-]{1,40}",
            quoted in "[ -~]{0,30}",
        ) {
            if let Ok(header) = HeaderValue::from_str(&value) {
                let mut headers = HeaderMap::new();
                headers.insert(WWW_AUTHENTICATE, header);
                let _ = Challenge::of(&headers);
            }
            let _ = next_link(&value);
            let escaped = quoted.replace('\\', "\\\\").replace('"', "\\\"");
            let Challenge::Bearer(params) = challenge(&[&format!(r#"Bearer realm="{realm}",service="{escaped}""#)]) else {
                return Err(proptest::test_runner::TestCaseError::fail("a bearer challenge"));
            };
            proptest::prop_assert_eq!(challenge_param(&params, "realm"), Some(realm));
            proptest::prop_assert_eq!(challenge_param(&params, "service"), Some(quoted));
        }
    }

    #[test]
    fn link_headers_give_the_next_page() {
        assert_eq!(next_link(r#"</v2/app/tags/list?last=b&n=2>; rel="next""#).as_deref(), Some("/v2/app/tags/list?last=b&n=2"));
        assert_eq!(next_link(r#"<https://r.example/v2/app/tags/list?last=b>; rel="next""#).as_deref(), Some("/v2/app/tags/list?last=b"));
        assert_eq!(next_link(r#"</v2/app/tags/list?last=b>; rel="prev""#), None);
    }

    #[test]
    fn docker_hub_names_get_its_endpoint_and_library_prefix() {
        let hub = Repository::of(&ImageReference::parse("mysql:5.6").unwrap(), false);
        assert_eq!(
            (hub.endpoint.as_str(), hub.path.as_str(), hub.name().as_str()),
            ("registry-1.docker.io", "library/mysql", "docker.io/library/mysql")
        );
        let other = Repository::of(&ImageReference::parse("127.0.0.1:5000/team/app:1").unwrap(), true);
        assert_eq!((other.endpoint.as_str(), other.path.as_str()), ("127.0.0.1:5000", "team/app"));
    }

    #[test]
    fn retry_after_takes_seconds_or_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    }
}
