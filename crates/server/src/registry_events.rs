//! Inbound registry webhooks: who may send them and what they say changed.
//!
//! A registry that supports notifications POSTs to `/webhooks/{name}` when something is
//! pushed; berth then re-imports the image stream tags that track the repository and tag
//! the payload names (DESIGN.md, data flow 2). This module is the pure part of that: the
//! config of one endpoint ([`WebhookEndpoint`]), the check that a request comes from
//! whoever holds the endpoint's secret ([`WebhookEndpoint::verify`]), and the reading of
//! each registry's payload into [`UpstreamChange`]s ([`WebhookEndpoint::parse`]). It does
//! no I/O and knows nothing of routes or stores.
//!
//! Formats ([`WebhookFormat`]):
//! - `distribution`: the CNCF distribution registry's notification envelope
//!   (`{"events":[...]}`, sent as `application/vnd.docker.distribution.events.v1+json`
//!   or `.v2+json`). Only pushes of manifests count: an event whose `action` is `push` and
//!   whose target has a tag or a manifest media type. Blob pushes, pulls, mounts and
//!   deletes are read and ignored, because one envelope may mix unrelated events.
//! - `dockerhub`: Docker Hub's repository webhook. It has one event, a push, and names the
//!   tag but never the digest.
//! - `harbor`: Harbor's `Default` payload (`"type":"PUSH_ARTIFACT"`) and its CloudEvents
//!   payload (`"type":"harbor.artifact.pushed"`); other event types are ignored.
//! - `quay`: Quay's "Push to Repository" notification: one change per entry of
//!   `updated_tags`, no digest.
//! - `berth`: berth's own payload for scripts and CI, `{"registry","repository","tag",
//!   "digest","metadata"}` or `{"changes":[...]}` of those; only `repository` is required.
//!
//! Which registry a change names: for the formats registries send, always the endpoint's
//! `registry`, never a host found in the payload. Those hosts are the registry's own idea
//! of its name (distribution's `request.host` is whatever Host header the pushing client
//! used; Harbor's `resource_url` and Quay's `docker_url` come from their external-URL
//! settings) and may be an internal name, a different port or a load balancer, whereas
//! the endpoint's `registry` is written as image stream tags name the registry. It also
//! means that an endpoint's secret only ever speaks for one registry. The payload's host is
//! kept in the change's metadata (`requestHost`, `resourceUrl`, `dockerUrl`) for logs. The
//! `berth` format names its registry explicitly and falls back to the endpoint's.
//!
//! A change without a digest (Docker Hub, Quay) or without a tag is still a change: it is a
//! "look again now" signal, and the importer learns the digest from the registry itself.
//!
//! Suggested HTTP mapping for the edge: [`WebhookError::Unverified`] is 401,
//! [`WebhookError::Malformed`] 400, [`WebhookError::TooLarge`] 413. An empty list of changes
//! (a pull, a blob push, a scan result) is a success: registries retry, and some (Quay,
//! Harbor) give up on an endpoint after a few failures.

use std::fmt;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use berth_model::Digest;
use berth_model::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, OCI_INDEX, OCI_MANIFEST};
use berth_model::reference::{ImageReference, canonical_path};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// The header that carries `sha256=<hex of HMAC-SHA256(key, body)>`.
pub const SIGNATURE_HEADER: &str = "x-berth-signature";
/// GitHub's name for the same signature, accepted so that senders written for GitHub-style
/// hooks work unchanged.
pub const HUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The largest body an endpoint accepts unless its `maxBodyBytes` says otherwise.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// The shortest `token` or `hmacSecret` accepted: a shorter one could be guessed by a
/// sender that can try many times.
pub const MIN_SECRET_CHARS: usize = 16;

/// The media types of manifests and indexes: a distribution push of one of these is a
/// change, a push of anything else is a blob.
const MANIFEST_MEDIA_TYPES: [&str; 6] =
    [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, OCI_MANIFEST, OCI_INDEX];
/// How much of a payload's value an error message quotes.
const MAX_QUOTED_CHARS: usize = 100;

/// One endpoint of the server config file's `webhooks:` list, served at
/// `POST /webhooks/{name}`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// The URL path segment: a DNS label (lowercase letters, digits and `-`).
    pub name: String,
    /// Which registry's payload the endpoint reads.
    pub format: WebhookFormat,
    /// The registry host as image stream tags name it (`127.0.0.1:5000`, `quay.io`,
    /// `docker.io`). Every change a registry sends here names this registry, whatever host
    /// the payload carries (see the module documentation); the `berth` format uses it when
    /// a change names none.
    pub registry: String,
    /// A shared secret the request must carry as `Authorization: Bearer <token>` or as
    /// `Authorization: <token>` (Harbor sends its configured auth header verbatim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// An HMAC-SHA256 key: the request must carry `X-Berth-Signature: sha256=<hex>` (or
    /// GitHub's `X-Hub-Signature-256`) computed over the body. With both `token` and
    /// `hmacSecret` set, a request must pass both checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret: Option<String>,
    /// The largest body accepted, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

/// The secrets are named, never shown, so that the config can be logged.
impl fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("WebhookEndpoint")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("registry", &self.registry)
            .field("token", &redacted(&self.token))
            .field("hmac_secret", &redacted(&self.hmac_secret))
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// The payload format of an endpoint, named in the config in lowercase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The CNCF distribution registry's notification envelope.
    Distribution,
    /// Docker Hub's repository webhook.
    Dockerhub,
    /// Harbor's Default or CloudEvents payload.
    Harbor,
    /// Quay's "Push to Repository" notification.
    Quay,
    /// berth's own payload.
    Berth,
}

impl fmt::Display for WebhookFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WebhookFormat::Distribution => "distribution",
            WebhookFormat::Dockerhub => "dockerhub",
            WebhookFormat::Harbor => "harbor",
            WebhookFormat::Quay => "quay",
            WebhookFormat::Berth => "berth",
        })
    }
}

/// What a payload says changed upstream: a repository, usually one tag of it, sometimes the
/// digest the tag now points at.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamChange {
    /// `host[:port]` as image stream tags name the registry.
    pub registry: String,
    /// The repository path; Docker Hub's single-component names get `library/`, as the
    /// importer names them.
    pub repository: String,
    /// The tag that moved; `None` when the payload names none (a push by digest, an old
    /// Docker Hub payload), meaning any tag of the repository may have moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The manifest digest, when the payload carries one (distribution, Harbor, berth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// What else the payload said, for logs and events: event ids, times, who pushed, the
    /// host the payload itself named. The keys are camelCase and depend on the format.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// `registry/repository[:tag][@digest]`, as log lines name the change.
impl fmt::Display for UpstreamChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Why a webhook request was refused. Messages say what was wrong and what to do; they
/// never contain the endpoint's secrets or the credentials a request offered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The request does not prove it knows the endpoint's secret.
    #[error("{0}")]
    Unverified(String),
    /// The body is not a payload of the endpoint's format; the message names the field.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The body is larger than the endpoint's `maxBodyBytes`, which this carries.
    #[error(
        "the request body is larger than this endpoint's limit of {0} bytes: raise the webhook's maxBodyBytes if the registry sends payloads this large"
    )]
    TooLarge(usize),
}

impl WebhookEndpoint {
    /// Checks the endpoint's config, naming the endpoint and the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        berth_model::names::check_dns_label("name", &self.name)
            .map_err(|err| format!("webhook name: {} (it becomes the path /webhooks/{{name}})", err.message))?;
        let context = format!("webhook {:?}", self.name);
        check_registry(&self.registry).map_err(|err| format!("{context}: registry {err}"))?;
        if self.token.is_none() && self.hmac_secret.is_none() {
            return Err(format!("{context}: set token, hmacSecret or both, so that only the registry can trigger imports"));
        }
        if let Some(token) = &self.token {
            check_secret(token).map_err(|err| format!("{context}: token {err}"))?;
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("{context}: token must be printable ASCII without spaces, because it is sent in an HTTP header"));
            }
        }
        if let Some(secret) = &self.hmac_secret {
            check_secret(secret).map_err(|err| format!("{context}: hmacSecret {err}"))?;
        }
        if self.max_body_bytes == 0 {
            return Err(format!("{context}: maxBodyBytes must be at least 1 (the default is {DEFAULT_MAX_BODY_BYTES})"));
        }
        Ok(())
    }

    /// Checks that the request may be acted on: first that the body fits the endpoint's
    /// limit, then the token and the HMAC signature the endpoint requires. An endpoint with
    /// neither secret refuses every request.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), WebhookError> {
        if body.len() > self.max_body_bytes {
            return Err(WebhookError::TooLarge(self.max_body_bytes));
        }
        if self.token.is_none() && self.hmac_secret.is_none() {
            return Err(WebhookError::Unverified(format!(
                "webhook {:?} has neither a token nor an hmacSecret configured, so no request can be verified: set one in the server config",
                self.name
            )));
        }
        if let Some(token) = &self.token {
            verify_token(token, headers)?;
        }
        if let Some(secret) = &self.hmac_secret {
            verify_signature(secret, headers, body)?;
        }
        Ok(())
    }

    /// Verifies the request (see [`verify`](Self::verify)), so that no caller can act on an
    /// unverified payload, then reads what it says changed. Events that are not pushes are
    /// skipped, so the list may be empty.
    pub fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<UpstreamChange>, WebhookError> {
        self.verify(headers, body)?;
        let value: Value = serde_json::from_slice(body).map_err(|err| WebhookError::Malformed(format!("the body is not JSON: {err}")))?;
        let root = Field { value: &value, path: String::new() };
        root.object()?;
        match self.format {
            WebhookFormat::Distribution => self.distribution(&root),
            WebhookFormat::Dockerhub => self.dockerhub(&root),
            WebhookFormat::Harbor => self.harbor(&root),
            WebhookFormat::Quay => self.quay(&root),
            WebhookFormat::Berth => self.berth(&root),
        }
    }

    fn distribution(&self, root: &Field<'_>) -> Result<Vec<UpstreamChange>, WebhookError> {
        let mut changes = Vec::new();
        for event in root.required("events")?.items()? {
            if event.required_text("action")?.text != "push" {
                continue;
            }
            let target = event.required("target")?;
            let tag = target.text("tag")?;
            let media_type = target.text("mediaType")?;
            if tag.is_none() && !media_type.is_some_and(|media_type| MANIFEST_MEDIA_TYPES.contains(&media_type.text)) {
                continue;
            }
            let mut metadata = Map::new();
            copy(&mut metadata, "eventId", event.get("id"));
            copy(&mut metadata, "timestamp", event.get("timestamp"));
            copy(&mut metadata, "mediaType", target.get("mediaType"));
            copy(&mut metadata, "size", target.get("size").or_else(|| target.get("length")));
            copy(&mut metadata, "actor", event.get("actor").and_then(|actor| actor.get("name")));
            copy(&mut metadata, "requestHost", event.get("request").and_then(|request| request.get("host")));
            let repository = target.required_text("repository")?;
            changes.push(self.change(None, repository, tag, target.text("digest")?, metadata)?);
        }
        Ok(changes)
    }

    fn dockerhub(&self, root: &Field<'_>) -> Result<Vec<UpstreamChange>, WebhookError> {
        let push_data = root.required("push_data")?;
        let repository = root.required("repository")?.required_text("repo_name")?;
        let mut metadata = Map::new();
        copy(&mut metadata, "pusher", push_data.get("pusher"));
        copy(&mut metadata, "pushedAt", push_data.get("pushed_at"));
        Ok(vec![self.change(None, repository, push_data.text("tag")?, None, metadata)?])
    }

    fn harbor(&self, root: &Field<'_>) -> Result<Vec<UpstreamChange>, WebhookError> {
        let kind = root.required_text("type")?;
        let mut metadata = Map::new();
        copy(&mut metadata, "operator", root.get("operator"));
        // CloudEvents (structured mode) carry `specversion` and put the event data in `data`.
        let data = if root.get("specversion").is_some() {
            if kind.text != "harbor.artifact.pushed" {
                return Ok(Vec::new());
            }
            copy(&mut metadata, "eventId", root.get("id"));
            copy(&mut metadata, "time", root.get("time"));
            root.required("data")?
        } else {
            if kind.text != "PUSH_ARTIFACT" {
                return Ok(Vec::new());
            }
            copy(&mut metadata, "occurAt", root.get("occur_at"));
            root.required("event_data")?
        };
        let repository = data.required("repository")?.required_text("repo_full_name")?;
        let mut changes = Vec::new();
        for resource in data.required("resources")?.items()? {
            let mut metadata = metadata.clone();
            copy(&mut metadata, "resourceUrl", resource.get("resource_url"));
            // Harbor writes the digest in `tag` when an artifact was pushed by digest.
            let tag = resource.text("tag")?.filter(|tag| tag.text.parse::<Digest>().is_err());
            changes.push(self.change(None, repository.clone(), tag, resource.text("digest")?, metadata)?);
        }
        Ok(changes)
    }

    fn quay(&self, root: &Field<'_>) -> Result<Vec<UpstreamChange>, WebhookError> {
        let repository = root.required_text("repository")?;
        let Some(updated) = root.get("updated_tags") else {
            return Err(WebhookError::Malformed(
                "updated_tags is required: point only Quay's \"Push to Repository\" notifications at this endpoint".to_string(),
            ));
        };
        // Quay sends a list of tags; early versions sent an object of tag → image id.
        let tags = match updated.value {
            Value::Object(tags) => tags.keys().map(|tag| Text { path: format!("updated_tags.{tag}"), text: tag }).collect(),
            _ => updated.items()?.iter().map(Field::as_text).collect::<Result<Vec<_>, _>>()?,
        };
        let mut metadata = Map::new();
        copy(&mut metadata, "dockerUrl", root.get("docker_url"));
        tags.into_iter().map(|tag| self.change(None, repository.clone(), Some(tag), None, metadata.clone())).collect()
    }

    fn berth(&self, root: &Field<'_>) -> Result<Vec<UpstreamChange>, WebhookError> {
        let Some(list) = root.get("changes") else {
            return Ok(vec![self.berth_change(root)?]);
        };
        root.only(&["changes"])?;
        list.items()?.iter().map(|item| self.berth_change(item)).collect()
    }

    fn berth_change(&self, item: &Field<'_>) -> Result<UpstreamChange, WebhookError> {
        item.only(&["registry", "repository", "tag", "digest", "metadata"])?;
        let metadata = match item.get("metadata") {
            Some(metadata) => metadata.object()?.clone(),
            None => Map::new(),
        };
        self.change(item.text("registry")?, item.required_text("repository")?, item.text("tag")?, item.text("digest")?, metadata)
    }

    /// Checks the parts a payload named and builds the change; `registry` is `None` for the
    /// formats registries send, which always name the endpoint's registry.
    fn change(
        &self,
        registry: Option<Text<'_>>,
        repository: Text<'_>,
        tag: Option<Text<'_>>,
        digest: Option<Text<'_>>,
        metadata: Map<String, Value>,
    ) -> Result<UpstreamChange, WebhookError> {
        let registry = match registry {
            Some(registry) => {
                check_registry(registry.text).map_err(|err| WebhookError::Malformed(format!("{}: {err}", registry.path)))?;
                registry.text
            }
            None => self.registry.as_str(),
        };
        // Docker Hub's official images live under `library/`, where the importer looks for them.
        let path = canonical_path(registry, repository.text);
        let repository_ok = ImageReference::parse(&format!("{registry}/{path}"))
            .is_ok_and(|parsed| parsed.registry == registry && parsed.path == path && parsed.tag.is_none() && parsed.digest.is_none());
        if !repository_ok {
            return Err(
                repository.malformed("is not a repository path: use lowercase letters and digits separated by '/', '.', '_', '__' or '-'")
            );
        }
        if let Some(tag) = &tag {
            berth_model::names::check_tag("", tag.text).map_err(|_| {
                tag.malformed("is not a valid tag: use up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'")
            })?;
        }
        let digest = match &digest {
            Some(digest) => Some(
                digest
                    .text
                    .parse::<Digest>()
                    .map_err(|_| digest.malformed("is not a digest: expected ALGORITHM:HEX such as sha256:<64 lowercase hex digits>"))?,
            ),
            None => None,
        };
        Ok(UpstreamChange { registry: registry.to_string(), repository: path, tag: tag.map(|tag| tag.text.to_string()), digest, metadata })
    }
}

/// The HMAC signature of `body` as senders put it in [`SIGNATURE_HEADER`]:
/// `sha256=<lowercase hex>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_of(secret, body).finalize().into_bytes()))
}

/// A MAC over `body`, keyed with `secret`.
fn hmac_of(secret: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (long ones are hashed first), so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac
}

fn verify_token(token: &str, headers: &HeaderMap) -> Result<(), WebhookError> {
    let offered: Vec<&[u8]> = headers.get_all(AUTHORIZATION).iter().map(|value| value.as_bytes()).collect();
    if offered.is_empty() {
        return Err(WebhookError::Unverified(
            "the request has no Authorization header: configure the registry to send \"Authorization: Bearer <token>\" with this webhook's token".to_string(),
        ));
    }
    // Compare digests rather than the secrets themselves, so that neither the time taken nor
    // an early length check tells a sender how much of the token it got right.
    let expected = Sha256::digest(token.as_bytes());
    let mut matched = subtle::Choice::from(0);
    for value in offered {
        let credentials = strip_bearer(value).unwrap_or(value);
        matched |= Sha256::digest(credentials).as_slice().ct_eq(expected.as_slice());
        matched |= Sha256::digest(value).as_slice().ct_eq(expected.as_slice());
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(WebhookError::Unverified(
            "the Authorization header does not carry this webhook's token: check the token the registry is configured to send".to_string(),
        ))
    }
}

/// The credentials of `Bearer <credentials>` (the scheme is case-insensitive).
fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| value[7..].trim_ascii_start())
}

fn verify_signature(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), WebhookError> {
    let Some((name, value)) =
        [SIGNATURE_HEADER, HUB_SIGNATURE_HEADER].into_iter().find_map(|name| headers.get(name).map(|value| (name, value)))
    else {
        return Err(WebhookError::Unverified(format!(
            "the request has no {SIGNATURE_HEADER} header: the sender must sign the body with this webhook's hmacSecret and send \"{SIGNATURE_HEADER}: sha256=<hex of HMAC-SHA256>\""
        )));
    };
    let signature = value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("sha256="))
        .and_then(|encoded| hex::decode(encoded).ok())
        .ok_or_else(|| WebhookError::Unverified(format!("the {name} header must be \"sha256=<hex of HMAC-SHA256 of the body>\"")))?;
    hmac_of(secret, body).verify_slice(&signature).map_err(|_| {
        WebhookError::Unverified(format!(
            "the {name} header does not match the body: the sender must sign the exact body with this webhook's hmacSecret"
        ))
    })
}

/// Checks a registry host as image stream tags name it: `host[:port]` whose host has a `.`
/// or a port, or is `localhost`; otherwise a reference would read it as a repository
/// component.
fn check_registry(host: &str) -> Result<(), String> {
    if host.contains("://") {
        return Err(format!("{} must be host[:port] without a scheme, such as quay.io or 127.0.0.1:5000", quoted(host)));
    }
    let names_registry = ImageReference::parse(&format!("{host}/probe")).is_ok_and(|parsed| parsed.registry == host);
    if !names_registry {
        return Err(format!(
            "{} is not a registry host as image references name it: use host[:port] whose host has a '.' or a port, or is localhost",
            quoted(host)
        ));
    }
    Ok(())
}

fn check_secret(secret: &str) -> Result<(), String> {
    if secret.chars().count() < MIN_SECRET_CHARS {
        return Err(format!("must be at least {MIN_SECRET_CHARS} characters long: generate one with `openssl rand -hex 32`"));
    }
    Ok(())
}

/// Copies a payload value into a change's metadata under berth's name for it.
fn copy(metadata: &mut Map<String, Value>, key: &str, field: Option<Field<'_>>) {
    if let Some(field) = field {
        metadata.insert(key.to_string(), field.value.clone());
    }
}

/// `text` in quotes, cut short so that a payload cannot make a message arbitrarily long.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// A JSON value with the path that reached it (`events[0].target.repository`), so that
/// every complaint about a payload names the field.
struct Field<'a> {
    value: &'a Value,
    path: String,
}

/// A string a payload gave, with the path that reached it.
#[derive(Clone)]
struct Text<'a> {
    path: String,
    text: &'a str,
}

impl<'a> Field<'a> {
    fn describe(&self) -> &str {
        if self.path.is_empty() { "the body" } else { &self.path }
    }

    fn malformed(&self, expected: &str) -> WebhookError {
        let found = match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "an object",
        };
        WebhookError::Malformed(format!("{} must be {expected}, not {found}", self.describe()))
    }

    fn child(&self, key: &str, value: &'a Value) -> Field<'a> {
        let path = if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) };
        Field { value, path }
    }

    fn object(&self) -> Result<&'a Map<String, Value>, WebhookError> {
        self.value.as_object().ok_or_else(|| self.malformed("an object"))
    }

    /// The field `key`, or `None` when it is absent or null (senders differ on which).
    fn get(&self, key: &str) -> Option<Field<'a>> {
        let value = self.value.as_object()?.get(key).filter(|value| !value.is_null())?;
        Some(self.child(key, value))
    }

    fn required(&self, key: &str) -> Result<Field<'a>, WebhookError> {
        self.object()?;
        self.get(key).ok_or_else(|| WebhookError::Malformed(format!("{} is required", self.child(key, &Value::Null).path)))
    }

    fn items(&self) -> Result<Vec<Field<'a>>, WebhookError> {
        let items = self.value.as_array().ok_or_else(|| self.malformed("a list"))?;
        Ok(items.iter().enumerate().map(|(idx, value)| Field { value, path: format!("{}[{idx}]", self.path) }).collect())
    }

    fn as_text(&self) -> Result<Text<'a>, WebhookError> {
        let text = self.value.as_str().ok_or_else(|| self.malformed("a string"))?;
        Ok(Text { path: self.path.clone(), text })
    }

    /// The string field `key`, or `None` when it is absent, null or empty (Go senders write
    /// `""` for a field they have no value for).
    fn text(&self, key: &str) -> Result<Option<Text<'a>>, WebhookError> {
        match self.get(key) {
            Some(field) => Ok(Some(field.as_text()?).filter(|text| !text.text.is_empty())),
            None => Ok(None),
        }
    }

    fn required_text(&self, key: &str) -> Result<Text<'a>, WebhookError> {
        let text = self.required(key)?.as_text()?;
        if text.text.is_empty() {
            return Err(WebhookError::Malformed(format!("{} must not be empty", text.path)));
        }
        Ok(text)
    }

    /// Refuses fields other than `allowed`, for berth's own format, where an unknown field
    /// is a typo rather than a newer sender.
    fn only(&self, allowed: &[&str]) -> Result<(), WebhookError> {
        match self.object()?.keys().find(|key| !allowed.contains(&key.as_str())) {
            Some(key) => Err(WebhookError::Malformed(format!(
                "{} is not a field of a berth webhook payload: use {}",
                self.child(key, &Value::Null).path,
                allowed.join(", ")
            ))),
            None => Ok(()),
        }
    }
}

impl Text<'_> {
    fn malformed(&self, problem: &str) -> WebhookError {
        WebhookError::Malformed(format!("{}: {} {problem}", self.path, quoted(self.text)))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const TOKEN: &str = "tok-3f9a1c0e5b7d2468ace";
    const HMAC_SECRET: &str = "hmac-7e1d0b9c4a2f8e6d5c3b";
    const MANIFEST: &str = "sha256:05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f";
    const INDEX: &str = "sha256:1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6";
    const HARBOR: &str = "sha256:c1d64b2d4cb30f1be788cc4d246ddd9fc1fe85a3eb3a85a3de33829dfaf6ce7d";

    /// What `skopeo copy` to a `docker-registry` 2.8 produces: the layer and config blobs,
    /// then the manifest by tag. A pull, a delete and a mount share the envelope, as the
    /// registry batches unrelated events.
    const DISTRIBUTION_PUSH: &str = r#"{"events":[
      {"id":"8c1d1f6e-3a7b-4e0f-9d57-0f5a2f0e7a11","timestamp":"2026-03-02T10:15:04.118712412Z","action":"push",
       "target":{"mediaType":"application/octet-stream","size":2811,"digest":"sha256:dac1d7cfa95021764849fd102524e141488c5e3a90f861dbb5a12d9ac8584f85","length":2811,
         "repository":"team/app","url":"http://localhost:5000/v2/team/app/blobs/sha256:dac1d7cfa95021764849fd102524e141488c5e3a90f861dbb5a12d9ac8584f85"},
       "request":{"id":"b1f0c2d4-6e8a-4c1b-9f3d-5a7e9c1b3d5f","addr":"127.0.0.1:53422","host":"localhost:5000","method":"PUT","useragent":"skopeo/1.13.3"},
       "actor":{},"source":{"addr":"builder:5000","instanceID":"0f2c5a1e-7b3d-4f9a-8c6e-2d4b6f8a0c1e"}},
      {"id":"2a4c6e8f-0b1d-4f3a-8c5e-7a9b1d3f5e70","timestamp":"2026-03-02T10:15:04.131522935Z","action":"push",
       "target":{"mediaType":"application/vnd.oci.image.config.v1+json","size":584,"digest":"sha256:b79606fb3afea5bd1609ed40b622142f1c98125abcfe89a76a661b0e8e343910","length":584,
         "repository":"team/app","url":"http://localhost:5000/v2/team/app/blobs/sha256:b79606fb3afea5bd1609ed40b622142f1c98125abcfe89a76a661b0e8e343910"},
       "request":{"id":"c2a1d3e5-7f9b-4d2c-8e4a-6b8d0f2a4c6e","addr":"127.0.0.1:53422","host":"localhost:5000","method":"PUT","useragent":"skopeo/1.13.3"},
       "actor":{},"source":{"addr":"builder:5000","instanceID":"0f2c5a1e-7b3d-4f9a-8c6e-2d4b6f8a0c1e"}},
      {"id":"6e8a0c2e-4f6b-4d8a-9c1e-3b5d7f9a1c3e","timestamp":"2026-03-02T10:15:04.152904511Z","action":"push",
       "target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":401,"digest":"sha256:05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f","length":401,
         "repository":"team/app","url":"http://localhost:5000/v2/team/app/manifests/sha256:05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f","tag":"1.0"},
       "request":{"id":"d4f6a8c0-2e4b-4a6c-8e0a-1c3e5a7c9e1b","addr":"127.0.0.1:53422","host":"localhost:5000","method":"PUT","useragent":"skopeo/1.13.3"},
       "actor":{"name":"ci"},"source":{"addr":"builder:5000","instanceID":"0f2c5a1e-7b3d-4f9a-8c6e-2d4b6f8a0c1e"}},
      {"id":"9b1d3f5a-7c9e-4b1d-8f3a-5c7e9b1d3f5a","timestamp":"2026-03-02T10:15:05.004417230Z","action":"pull",
       "target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":401,"digest":"sha256:05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f","length":401,
         "repository":"team/app","url":"http://localhost:5000/v2/team/app/manifests/1.0","tag":"1.0"},
       "request":{"id":"e5a7c9e1-3b5d-4f7a-9c1e-2d4f6a8c0e2b","addr":"10.0.0.7:40112","host":"registry.lan:5000","method":"GET","useragent":"containerd/1.7.13"},
       "actor":{},"source":{"addr":"builder:5000","instanceID":"0f2c5a1e-7b3d-4f9a-8c6e-2d4b6f8a0c1e"}},
      {"id":"0c2e4a6c-8e0a-4c2e-9a4c-6e8a0c2e4a6c","timestamp":"2026-03-02T10:16:11.250000000Z","action":"delete",
       "target":{"digest":"sha256:1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6","repository":"team/old"},
       "request":{"id":"f6b8d0f2-4c6e-4a8c-8e2a-3e5a7c9e1b3d","addr":"127.0.0.1:53430","host":"localhost:5000","method":"DELETE","useragent":"curl/8.5.0"},
       "actor":{},"source":{"addr":"builder:5000","instanceID":"0f2c5a1e-7b3d-4f9a-8c6e-2d4b6f8a0c1e"}},
      {"id":"1d3f5b7d-9f1b-4d3f-8b5d-7f9b1d3f5b7d","timestamp":"2026-03-02T10:16:12.000000000Z","action":"mount",
       "target":{"mediaType":"application/octet-stream","size":2811,"digest":"sha256:dac1d7cfa95021764849fd102524e141488c5e3a90f861dbb5a12d9ac8584f85","length":2811,
         "repository":"team/copy","fromRepository":"team/app","url":"http://localhost:5000/v2/team/copy/blobs/sha256:dac1d7cfa95021764849fd102524e141488c5e3a90f861dbb5a12d9ac8584f85"},
       "request":{"id":"a7c9e1b3-5d7f-4a9c-8e1b-4f6a8c0e2a4c","addr":"127.0.0.1:53431","host":"localhost:5000","method":"POST","useragent":"skopeo/1.13.3"},
       "actor":{},"source":{"addr":"builder:5000","instanceID":"0f2c5a1e-7b3d-4f9a-8c6e-2d4b6f8a0c1e"}}
    ]}"#;

    /// Docker Hub's documented example, with the fields a current payload carries.
    const DOCKERHUB_PUSH: &str = r#"{
      "callback_url":"https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
      "push_data":{"pushed_at":1417566161,"pusher":"trustedbuilder","tag":"latest"},
      "repository":{"comment_count":0,"date_created":1417494799,"description":"","dockerfile":"FROM ubuntu\n",
        "full_description":"Docker Hub based automated build from a GitHub repo","is_official":false,"is_private":true,
        "is_trusted":true,"name":"testhook","namespace":"svendowideit","owner":"svendowideit",
        "repo_name":"svendowideit/testhook","repo_url":"https://registry.hub.docker.com/u/svendowideit/testhook/",
        "star_count":0,"status":"Active"}}"#;

    /// Harbor's Default payload for a push (`src/pkg/notifier/model/event.go`).
    const HARBOR_PUSH: &str = r#"{"type":"PUSH_ARTIFACT","occur_at":1680501893,"operator":"admin",
      "event_data":{"resources":[{"digest":"sha256:c1d64b2d4cb30f1be788cc4d246ddd9fc1fe85a3eb3a85a3de33829dfaf6ce7d","tag":"3.8",
        "resource_url":"harbor.example.com/library/alpine:3.8"}],
      "repository":{"date_created":1680501893,"name":"alpine","namespace":"library","repo_full_name":"library/alpine","repo_type":"private"}}}"#;

    /// Harbor's CloudEvents payload for a push (`src/pkg/notifier/formats/cloudevents.go`).
    const HARBOR_CLOUDEVENTS_PUSH: &str = r#"{"specversion":"1.0","requestid":"2eedfab8-61d3-4f3c-8ec3-8f82d1ec4c84",
      "id":"4b2f89a6-548d-4c12-9993-a1f5790b97d2","source":"/projects/1/webhook/policies/3","type":"harbor.artifact.pushed",
      "datacontenttype":"application/json","time":"2026-03-06T06:08:43Z",
      "data":{"resources":[{"digest":"sha256:c1d64b2d4cb30f1be788cc4d246ddd9fc1fe85a3eb3a85a3de33829dfaf6ce7d","tag":"1.36",
          "resource_url":"harbor.example.com/library/busybox:1.36"}],
        "repository":{"date_created":1677053165,"name":"busybox","namespace":"library","repo_full_name":"library/busybox","repo_type":"public"}},
      "operator":"robot$library+ci"}"#;

    /// Quay's "Push to Repository" notification (`notifications/notificationevent.py`).
    const QUAY_PUSH: &str = r#"{"repository":"acme/app","namespace":"acme","name":"app","docker_url":"quay.io/acme/app",
      "homepage":"https://quay.io/repository/acme/app","updated_tags":["latest","1.0"]}"#;

    fn endpoint(format: WebhookFormat, registry: &str) -> WebhookEndpoint {
        WebhookEndpoint {
            name: "hook".to_string(),
            format,
            registry: registry.to_string(),
            token: Some(TOKEN.to_string()),
            hmac_secret: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn authorized() -> HeaderMap {
        headers(&[("authorization", &format!("Bearer {TOKEN}"))])
    }

    /// The changes an endpoint of `format` reads from `body`, as log lines name them.
    fn changes(format: WebhookFormat, registry: &str, body: &str) -> Vec<String> {
        let changes = endpoint(format, registry).parse(&authorized(), body.as_bytes()).unwrap();
        changes.iter().map(ToString::to_string).collect()
    }

    /// The message of the `Malformed` error an endpoint of `format` gives for `body`.
    fn malformed(format: WebhookFormat, body: &str) -> String {
        match endpoint(format, "registry.example.com").parse(&authorized(), body.as_bytes()) {
            Err(WebhookError::Malformed(message)) => message,
            other => panic!("{body}: expected Malformed, got {other:?}"),
        }
    }

    fn unverified(endpoint: &WebhookEndpoint, headers: &HeaderMap, body: &[u8]) -> String {
        match endpoint.verify(headers, body) {
            Err(WebhookError::Unverified(message)) => message,
            other => panic!("expected Unverified, got {other:?}"),
        }
    }

    #[test]
    fn distribution_counts_only_manifest_pushes_and_names_the_endpoint_registry() {
        let parsed = endpoint(WebhookFormat::Distribution, "127.0.0.1:5000").parse(&authorized(), DISTRIBUTION_PUSH.as_bytes()).unwrap();
        assert_eq!(parsed.len(), 1, "{parsed:?}");
        assert_eq!(parsed[0].to_string(), format!("127.0.0.1:5000/team/app:1.0@{MANIFEST}"));
        let metadata = Value::Object(parsed[0].metadata.clone());
        assert_eq!(
            metadata,
            serde_json::json!({
                "eventId": "6e8a0c2e-4f6b-4d8a-9c1e-3b5d7f9a1c3e", "timestamp": "2026-03-02T10:15:04.152904511Z",
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 401, "actor": "ci",
                "requestHost": "localhost:5000",
            })
        );
    }

    #[test]
    fn distribution_push_by_digest_of_an_index_is_a_change_without_a_tag() {
        let body = format!(
            r#"{{"events":[{{"id":"x","action":"push","target":{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{INDEX}","repository":"team/multi"}}}}]}}"#
        );
        assert_eq!(changes(WebhookFormat::Distribution, "registry.lan:5000", &body), [format!("registry.lan:5000/team/multi@{INDEX}")]);
    }

    #[test]
    fn distribution_envelope_of_pulls_deletes_mounts_and_blobs_is_no_change() {
        let value: Value = serde_json::from_str(DISTRIBUTION_PUSH).unwrap();
        let events = value["events"].as_array().unwrap();
        let ignored: Vec<&Value> = events.iter().filter(|event| event["target"]["tag"].is_null() || event["action"] != "push").collect();
        let body = serde_json::json!({ "events": ignored }).to_string();
        assert!(changes(WebhookFormat::Distribution, "127.0.0.1:5000", &body).is_empty());
        assert!(changes(WebhookFormat::Distribution, "127.0.0.1:5000", r#"{"events":[]}"#).is_empty());
    }

    #[test]
    fn dockerhub_push_names_the_tag_and_no_digest() {
        assert_eq!(changes(WebhookFormat::Dockerhub, "docker.io", DOCKERHUB_PUSH), ["docker.io/svendowideit/testhook:latest"]);
        let parsed = endpoint(WebhookFormat::Dockerhub, "docker.io").parse(&authorized(), DOCKERHUB_PUSH.as_bytes()).unwrap();
        assert_eq!(Value::Object(parsed[0].metadata.clone()), serde_json::json!({"pusher": "trustedbuilder", "pushedAt": 1417566161}));
        // Official images have one-component names; the importer knows them as library/<name>.
        let official = r#"{"push_data":{"tag":"8.4"},"repository":{"repo_name":"mysql","name":"mysql","namespace":"library"}}"#;
        assert_eq!(changes(WebhookFormat::Dockerhub, "docker.io", official), ["docker.io/library/mysql:8.4"]);
        // Old payloads carried no tag: any tag of the repository may have moved.
        let untagged =
            r#"{"push_data":{"pushed_at":1417566161,"pusher":"svendowideit"},"repository":{"repo_name":"svendowideit/busybox"}}"#;
        assert_eq!(changes(WebhookFormat::Dockerhub, "docker.io", untagged), ["docker.io/svendowideit/busybox"]);
    }

    #[test]
    fn harbor_default_and_cloudevents_pushes() {
        assert_eq!(
            changes(WebhookFormat::Harbor, "harbor.example.com", HARBOR_PUSH),
            [format!("harbor.example.com/library/alpine:3.8@{HARBOR}")]
        );
        let parsed =
            endpoint(WebhookFormat::Harbor, "harbor.example.com").parse(&authorized(), HARBOR_CLOUDEVENTS_PUSH.as_bytes()).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].to_string(), format!("harbor.example.com/library/busybox:1.36@{HARBOR}"));
        assert_eq!(
            Value::Object(parsed[0].metadata.clone()),
            serde_json::json!({"operator": "robot$library+ci", "eventId": "4b2f89a6-548d-4c12-9993-a1f5790b97d2",
                "time": "2026-03-06T06:08:43Z", "resourceUrl": "harbor.example.com/library/busybox:1.36"})
        );
    }

    #[test]
    fn harbor_push_by_digest_has_no_tag() {
        let body = HARBOR_PUSH.replace(r#""tag":"3.8""#, &format!(r#""tag":"{HARBOR}""#));
        assert_eq!(changes(WebhookFormat::Harbor, "harbor.example.com", &body), [format!("harbor.example.com/library/alpine@{HARBOR}")]);
        let body = HARBOR_PUSH.replace(r#""tag":"3.8""#, r#""tag":"""#);
        assert_eq!(changes(WebhookFormat::Harbor, "harbor.example.com", &body), [format!("harbor.example.com/library/alpine@{HARBOR}")]);
    }

    #[test]
    fn harbor_events_other_than_pushes_are_no_change() {
        for (kind, replacement) in [
            (r#""type":"PUSH_ARTIFACT""#, r#""type":"PULL_ARTIFACT""#),
            (r#""type":"PUSH_ARTIFACT""#, r#""type":"DELETE_ARTIFACT""#),
            (r#""type":"PUSH_ARTIFACT""#, r#""type":"SCANNING_COMPLETED""#),
        ] {
            assert!(
                changes(WebhookFormat::Harbor, "harbor.example.com", &HARBOR_PUSH.replace(kind, replacement)).is_empty(),
                "{replacement}"
            );
        }
        for kind in ["harbor.artifact.pulled", "harbor.artifact.deleted", "harbor.scan.completed", "harbor.quota.warned"] {
            let body = HARBOR_CLOUDEVENTS_PUSH.replace("harbor.artifact.pushed", kind);
            assert!(changes(WebhookFormat::Harbor, "harbor.example.com", &body).is_empty(), "{kind}");
        }
    }

    #[test]
    fn quay_push_is_one_change_per_updated_tag() {
        assert_eq!(changes(WebhookFormat::Quay, "quay.io", QUAY_PUSH), ["quay.io/acme/app:latest", "quay.io/acme/app:1.0"]);
        let legacy = r#"{"repository":"devtable/ubuntu","docker_url":"quay.io/devtable/ubuntu",
          "updated_tags":{"latest":"b750fe79269d2ec9a3c593ef05b4332b1d1a02a62b4accb2c21d589ff2f5f2dc"}}"#;
        assert_eq!(changes(WebhookFormat::Quay, "quay.io", legacy), ["quay.io/devtable/ubuntu:latest"]);
        assert!(changes(WebhookFormat::Quay, "quay.io", r#"{"repository":"acme/app","updated_tags":[]}"#).is_empty());
        let parsed = endpoint(WebhookFormat::Quay, "quay.internal:8443").parse(&authorized(), QUAY_PUSH.as_bytes()).unwrap();
        assert_eq!(parsed[0].registry, "quay.internal:8443");
        assert_eq!(parsed[0].metadata["dockerUrl"], "quay.io/acme/app");
    }

    #[test]
    fn berth_payload_single_list_and_default_registry() {
        let single = format!(
            r#"{{"registry":"quay.io","repository":"acme/app","tag":"1.0","digest":"{MANIFEST}","metadata":{{"pipeline":"release-42"}}}}"#
        );
        let parsed = endpoint(WebhookFormat::Berth, "127.0.0.1:5000").parse(&authorized(), single.as_bytes()).unwrap();
        assert_eq!(parsed[0].to_string(), format!("quay.io/acme/app:1.0@{MANIFEST}"));
        assert_eq!(Value::Object(parsed[0].metadata.clone()), serde_json::json!({"pipeline": "release-42"}));
        let list = r#"{"changes":[{"repository":"team/app","tag":"2.0"},{"registry":"docker.io","repository":"nginx","tag":"1.27"}]}"#;
        assert_eq!(changes(WebhookFormat::Berth, "127.0.0.1:5000", list), ["127.0.0.1:5000/team/app:2.0", "docker.io/library/nginx:1.27"]);
        assert!(changes(WebhookFormat::Berth, "127.0.0.1:5000", r#"{"changes":[]}"#).is_empty());
    }

    #[test]
    fn malformed_payloads_name_the_field() {
        use WebhookFormat::*;
        let cases = [
            (Berth, "not json", "the body is not JSON: expected ident at line 1 column 2"),
            (Berth, "[1]", "the body must be an object, not a list"),
            (Distribution, r#"{}"#, "events is required"),
            (Distribution, r#"{"events":{}}"#, "events must be a list, not an object"),
            (Distribution, r#"{"events":[{"action":"push"}]}"#, "events[0].target is required"),
            (Distribution, r#"{"events":[{"action":7}]}"#, "events[0].action must be a string, not a number"),
            (
                Distribution,
                r#"{"events":[{"action":"push","target":{"tag":"1.0","repository":"team/app","digest":"sha256:abc"}}]}"#,
                r#"events[0].target.digest: "sha256:abc" is not a digest: expected ALGORITHM:HEX such as sha256:<64 lowercase hex digits>"#,
            ),
            (
                Distribution,
                r#"{"events":[{"action":"push","target":{"tag":"1.0","repository":""}}]}"#,
                "events[0].target.repository must not be empty",
            ),
            (Dockerhub, r#"{"push_data":{"tag":"x"},"repository":{}}"#, "repository.repo_name is required"),
            (
                Dockerhub,
                r#"{"push_data":{"tag":"-bad"},"repository":{"repo_name":"a/b"}}"#,
                r#"push_data.tag: "-bad" is not a valid tag: use up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"#,
            ),
            (Harbor, r#"{"occur_at":1}"#, "type is required"),
            (Harbor, r#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[]}}"#, "event_data.repository is required"),
            (
                Harbor,
                r#"{"specversion":"1.0","type":"harbor.artifact.pushed","data":{"repository":{"repo_full_name":"Library/App"},"resources":[{}]}}"#,
                r#"data.repository.repo_full_name: "Library/App" is not a repository path: use lowercase letters and digits separated by '/', '.', '_', '__' or '-'"#,
            ),
            (
                Quay,
                r#"{"repository":"acme/app","docker_url":"quay.io/acme/app","vulnerability":{"id":"CVE-2026-1"}}"#,
                r#"updated_tags is required: point only Quay's "Push to Repository" notifications at this endpoint"#,
            ),
            (Quay, r#"{"repository":"acme/app","updated_tags":["ok",3]}"#, "updated_tags[1] must be a string, not a number"),
            (Berth, r#"{"tag":"1.0"}"#, "repository is required"),
            (
                Berth,
                r#"{"repository":"a/b","tags":["1.0"]}"#,
                "tags is not a field of a berth webhook payload: use registry, repository, tag, digest, metadata",
            ),
            (Berth, r#"{"changes":[{"repository":"a/b","metadata":[]}]}"#, "changes[0].metadata must be an object, not a list"),
            (Berth, r#"{"changes":[],"repository":"a/b"}"#, "repository is not a field of a berth webhook payload: use changes"),
            (
                Berth,
                r#"{"registry":"https://quay.io","repository":"a/b"}"#,
                r#"registry: "https://quay.io" must be host[:port] without a scheme, such as quay.io or 127.0.0.1:5000"#,
            ),
        ];
        for (format, body, want) in cases {
            assert_eq!(malformed(format, body), want, "{format} {body}");
        }
        assert_eq!(WebhookError::Malformed("events is required".to_string()).to_string(), "malformed payload: events is required");
    }

    #[test]
    fn long_values_are_quoted_short() {
        let message = malformed(WebhookFormat::Berth, &format!(r#"{{"repository":"{}"}}"#, "A".repeat(5000)));
        assert!(message.len() < 300, "{message}");
        assert!(message.starts_with(r#"repository: "AAAA"#), "{message}");
    }

    #[test]
    fn token_must_be_offered_and_right() {
        let endpoint = endpoint(WebhookFormat::Berth, "127.0.0.1:5000");
        let missing = unverified(&endpoint, &HeaderMap::new(), b"{}");
        assert!(missing.contains("no Authorization header"), "{missing}");
        for wrong in ["Bearer not-the-token-at-all", "Bearer", "Basic dXNlcjpwYXNz", &format!("Bearer {TOKEN}x"), &TOKEN[1..]] {
            let message = unverified(&endpoint, &headers(&[("authorization", wrong)]), b"{}");
            assert!(message.contains("does not carry this webhook's token"), "{wrong}: {message}");
        }
        for right in [format!("Bearer {TOKEN}"), format!("bearer  {TOKEN}"), TOKEN.to_string()] {
            assert_eq!(endpoint.verify(&headers(&[("authorization", &right)]), b"{}"), Ok(()), "{right}");
        }
        // One right value among several Authorization headers is enough.
        let several = headers(&[("authorization", "Bearer stale"), ("authorization", &format!("Bearer {TOKEN}"))]);
        assert_eq!(endpoint.verify(&several, b"{}"), Ok(()));
    }

    #[test]
    fn hmac_signature_must_match_the_body() {
        let endpoint =
            WebhookEndpoint { token: None, hmac_secret: Some(HMAC_SECRET.to_string()), ..endpoint(WebhookFormat::Berth, "127.0.0.1:5000") };
        let body = br#"{"repository":"team/app","tag":"1.0"}"#;
        let signed = signature(HMAC_SECRET, body);
        assert_eq!(endpoint.verify(&headers(&[(SIGNATURE_HEADER, &signed)]), body), Ok(()));
        assert_eq!(endpoint.verify(&headers(&[(HUB_SIGNATURE_HEADER, &signed)]), body), Ok(()));
        assert_eq!(endpoint.verify(&headers(&[("X-Berth-Signature", &signed.to_uppercase().replace("SHA256=", "sha256="))]), body), Ok(()));
        assert_eq!(endpoint.parse(&headers(&[(SIGNATURE_HEADER, &signed)]), body).unwrap().len(), 1);

        let missing = unverified(&endpoint, &authorized(), body);
        assert!(missing.contains("no x-berth-signature header"), "{missing}");
        let other_body = unverified(&endpoint, &headers(&[(SIGNATURE_HEADER, &signed)]), br#"{"repository":"team/evil"}"#);
        assert!(other_body.contains("does not match the body"), "{other_body}");
        let other_key = unverified(&endpoint, &headers(&[(SIGNATURE_HEADER, &signature("some-other-secret-key", body))]), body);
        assert!(other_key.contains("does not match the body"), "{other_key}");
        for bad in ["sha1=0123abcd", "sha256=not-hex", &signed[7..]] {
            let message = unverified(&endpoint, &headers(&[(SIGNATURE_HEADER, bad)]), body);
            assert!(message.contains("must be \"sha256=<hex"), "{bad}: {message}");
        }
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        // `printf hello | openssl dgst -sha256 -hmac key-of-at-least-16-chars`
        assert_eq!(
            signature("key-of-at-least-16-chars", b"hello"),
            "sha256=25925492262ffd1a3e3944be5dd98214f5c8d8c11c419206e50ca7ebbbd62502"
        );
    }

    #[test]
    fn token_and_hmac_together_both_must_pass() {
        let endpoint = WebhookEndpoint { hmac_secret: Some(HMAC_SECRET.to_string()), ..endpoint(WebhookFormat::Berth, "127.0.0.1:5000") };
        let body = b"{}";
        let signed = signature(HMAC_SECRET, body);
        let bearer = format!("Bearer {TOKEN}");
        assert_eq!(endpoint.verify(&headers(&[("authorization", &bearer), (SIGNATURE_HEADER, &signed)]), body), Ok(()));
        assert!(unverified(&endpoint, &headers(&[(SIGNATURE_HEADER, &signed)]), body).contains("Authorization"));
        assert!(unverified(&endpoint, &headers(&[("authorization", &bearer)]), body).contains(SIGNATURE_HEADER));
        let wrong_token = headers(&[("authorization", "Bearer wrong-token-value-123"), (SIGNATURE_HEADER, &signed)]);
        assert!(unverified(&endpoint, &wrong_token, body).contains("token"));
    }

    #[test]
    fn oversize_body_is_refused_before_anything_else() {
        let endpoint = WebhookEndpoint {
            max_body_bytes: 16,
            hmac_secret: Some(HMAC_SECRET.to_string()),
            ..endpoint(WebhookFormat::Berth, "127.0.0.1:5000")
        };
        let body = [b'x'; 17];
        // No credentials and no JSON: the size is what is reported.
        assert_eq!(endpoint.verify(&HeaderMap::new(), &body), Err(WebhookError::TooLarge(16)));
        assert_eq!(endpoint.parse(&HeaderMap::new(), &body), Err(WebhookError::TooLarge(16)));
        assert!(WebhookError::TooLarge(16).to_string().contains("raise the webhook's maxBodyBytes"));
        assert_eq!(endpoint.verify(&HeaderMap::new(), &body[..16]).map_err(|err| matches!(err, WebhookError::Unverified(_))), Err(true));
    }

    #[test]
    fn parse_refuses_unverified_requests() {
        let endpoint = endpoint(WebhookFormat::Berth, "127.0.0.1:5000");
        let result = endpoint.parse(&HeaderMap::new(), br#"{"repository":"team/app"}"#);
        assert!(matches!(result, Err(WebhookError::Unverified(_))), "{result:?}");
        let unsecured = WebhookEndpoint { token: None, ..endpoint };
        let message = unverified(&unsecured, &authorized(), b"{}");
        assert!(message.contains("neither a token nor an hmacSecret"), "{message}");
    }

    #[test]
    fn secrets_never_reach_messages_or_debug_output() {
        let endpoint =
            WebhookEndpoint { hmac_secret: Some(HMAC_SECRET.to_string()), ..endpoint(WebhookFormat::Harbor, "harbor.example.com") };
        let offered = "Bearer offered-credential-987654";
        let body = HARBOR_PUSH.as_bytes();
        let mut messages = vec![
            unverified(&endpoint, &HeaderMap::new(), body),
            unverified(&endpoint, &headers(&[("authorization", offered)]), body),
            unverified(&endpoint, &headers(&[("authorization", &format!("Bearer {TOKEN}"))]), body),
            unverified(&endpoint, &headers(&[("authorization", TOKEN), (SIGNATURE_HEADER, "sha256=00")]), body),
            unverified(&endpoint, &headers(&[("authorization", TOKEN), (HUB_SIGNATURE_HEADER, HMAC_SECRET)]), body),
            format!("{endpoint:?}"),
        ];
        let signed = headers(&[("authorization", TOKEN), (SIGNATURE_HEADER, &signature(HMAC_SECRET, b"{}"))]);
        messages.push(endpoint.parse(&signed, b"{}").unwrap_err().to_string());
        let short = WebhookEndpoint { token: Some("short".to_string()), hmac_secret: Some("tiny".to_string()), ..endpoint.clone() };
        messages.push(short.validate().unwrap_err());
        let spaced = WebhookEndpoint { token: Some(format!("{TOKEN} {TOKEN}")), ..endpoint.clone() };
        messages.push(spaced.validate().unwrap_err());
        for message in &messages {
            for secret in [TOKEN, HMAC_SECRET, "offered-credential-987654", "short", "tiny"] {
                assert!(!message.contains(secret), "{message:?} shows {secret:?}");
            }
        }
        assert!(format!("{endpoint:?}").contains("token: Some(\"<redacted>\")"));
    }

    proptest::proptest! {
        /// Whatever a registry (or anyone holding the token) sends, each format reads it
        /// or refuses it as malformed, with a message: payloads of the right shape with
        /// values of every kind, and bytes that are not JSON at all.
        #[test]
        fn every_payload_is_read_or_refused_as_malformed(
            format in proptest::sample::select(vec![WebhookFormat::Distribution, WebhookFormat::Dockerhub, WebhookFormat::Harbor, WebhookFormat::Quay, WebhookFormat::Berth]),
            document in payload_like(),
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let endpoint = endpoint(format, "registry.example.com");
            let authorized = headers(&[("authorization", &format!("Bearer {TOKEN}"))]);
            for body in [serde_json::to_vec(&document).unwrap(), bytes] {
                match endpoint.parse(&authorized, &body) {
                    Ok(changes) => proptest::prop_assert!(changes.iter().all(|c| c.registry == "registry.example.com")),
                    Err(WebhookError::Malformed(message)) => proptest::prop_assert!(!message.is_empty()),
                    Err(other) => proptest::prop_assert!(false, "a verified payload was refused as {other:?}"),
                }
            }
        }
    }

    /// JSON with the keys registry payloads use, and values of every kind.
    fn payload_like() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z0-9:./@-]{0,40}".prop_map(Value::from),
            "[0-9a-f]{64}".prop_map(|hex| Value::from(format!("sha256:{hex}"))),
        ];
        let keys = "(events|action|target|repository|tag|digest|mediaType|url|push_data|tag|repo_name|repo|updated_tags|docker_url|type|data|resources|resource_url|event_data|registry|specversion|occur_at|[a-z]{1,5})";
        leaf.prop_recursive(4, 40, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(keys, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn endpoint_config_reads_from_yaml_with_defaults() {
        let yaml = "name: harbor-prod\nformat: harbor\nregistry: harbor.example.com\ntoken: tok-3f9a1c0e5b7d2468ace\n";
        let endpoint: WebhookEndpoint = yaml_serde::from_str(yaml).unwrap();
        assert_eq!(endpoint.format, WebhookFormat::Harbor);
        assert_eq!(endpoint.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(endpoint.hmac_secret, None);
        assert_eq!(endpoint.validate(), Ok(()));
        let camel = "name: ci\nformat: berth\nregistry: 127.0.0.1:5000\nhmacSecret: hmac-7e1d0b9c4a2f8e6d5c3b\nmaxBodyBytes: 4096\n";
        let endpoint: WebhookEndpoint = yaml_serde::from_str(camel).unwrap();
        assert_eq!((endpoint.max_body_bytes, endpoint.hmac_secret.as_deref()), (4096, Some(HMAC_SECRET)));
        assert!(yaml_serde::from_str::<WebhookEndpoint>(&format!("{yaml}secret: x\n")).is_err());
        assert!(yaml_serde::from_str::<WebhookEndpoint>(&yaml.replace("harbor\n", "Harbor\n")).is_err());
    }

    #[test]
    fn validate_names_what_is_wrong() {
        let good = endpoint(WebhookFormat::Distribution, "127.0.0.1:5000");
        assert_eq!(good.validate(), Ok(()));
        for registry in ["quay.io", "docker.io", "localhost", "localhost:5000", "[::1]:5000", "harbor.example.com:8443"] {
            assert_eq!(WebhookEndpoint { registry: registry.to_string(), ..good.clone() }.validate(), Ok(()), "{registry}");
        }
        let check = |endpoint: WebhookEndpoint, want: &str| {
            let message = endpoint.validate().unwrap_err();
            assert!(message.contains(want), "{message:?} lacks {want:?}");
        };
        check(WebhookEndpoint { name: "Hook_1".to_string(), ..good.clone() }, "webhook name: \"Hook_1\" is not a valid name");
        check(WebhookEndpoint { name: String::new(), ..good.clone() }, "webhook name: name is required");
        check(WebhookEndpoint { registry: "https://quay.io".to_string(), ..good.clone() }, "without a scheme");
        check(
            WebhookEndpoint { registry: "registry".to_string(), ..good.clone() },
            "webhook \"hook\": registry \"registry\" is not a registry host",
        );
        check(WebhookEndpoint { registry: "quay.io/acme".to_string(), ..good.clone() }, "is not a registry host");
        check(WebhookEndpoint { token: None, ..good.clone() }, "set token, hmacSecret or both");
        check(WebhookEndpoint { token: Some("short".to_string()), ..good.clone() }, "token must be at least 16 characters");
        check(WebhookEndpoint { hmac_secret: Some("short".to_string()), ..good.clone() }, "hmacSecret must be at least 16 characters");
        check(WebhookEndpoint { token: Some(format!("{TOKEN}\u{e9}")), ..good.clone() }, "printable ASCII");
        check(WebhookEndpoint { max_body_bytes: 0, ..good }, "maxBodyBytes must be at least 1");
    }
}
