//! berth's own registry: the OCI Distribution API over the catalog. Repositories are
//! `<namespace>/<stream>`; a tag is read from the stream's status (never from another
//! registry), a push by tag is an ImageStreamMapping, blobs live in the [`BlobStore`],
//! and blobs of imported images are pulled through from their registry with the
//! namespace's pull secrets and mirrored as they stream.
//!
//! Like the importer this service is async (it streams blobs); its catalog work runs on
//! blocking threads. Errors are [`RegistryError`]s, whose codes are the OCI error codes.

mod auth;
mod content;
mod error;
mod mirror;
mod upkeep;
mod uploads;

use std::sync::Arc;

use berth_model::Digest;
use berth_model::access::Action;
use berth_model::core::Namespace;
use berth_model::image::Image;
use berth_model::imagestream::ImageStream;
use berth_store::BlobStore;
use berth_upstream::Upstream;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::services::{Caller, Catalog};

pub use auth::{Credential, RegistryTokenIssued};
pub(crate) use content::config_digest;
pub use content::{ManifestContent, Page, PushedManifest};
pub use error::{Code, RegistryError};
pub use mirror::{BlobContent, RangeRequest};

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// The namespace annotation that lets anyone pull from a namespace's streams.
pub const ANONYMOUS_PULL_ANNOTATION: &str = "berth.dev/anonymous-pull";
/// The annotation berth puts on images pushed to it, as OpenShift's registry does.
pub const MANAGED_ANNOTATION: &str = "openshift.io/image.managed";

/// The config file's `registry` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RegistrySettings {
    /// The largest manifest accepted by a push (bytes).
    pub max_manifest_bytes: usize,
    /// How many uploads may send bytes at the same time; more get 429.
    pub max_concurrent_uploads: usize,
    /// Uploads untouched for this long are removed.
    pub abandoned_upload_seconds: u64,
    /// A blob no Image holds is swept only once it was last written longer ago than
    /// this (Harbor's window is the same two hours): see `BlobStore::sweep`.
    pub blob_grace_seconds: u64,
    /// How long the tokens of `/v2/token` last.
    pub token_lifetime_seconds: u64,
    /// On S3 (`--blob-store`), blob GETs are answered with a redirect to a presigned URL
    /// valid this long, once the caller's access is checked, and the client downloads
    /// from the object store; 0 sends the bytes through berth.
    pub blob_redirect_seconds: u64,
}

impl Default for RegistrySettings {
    fn default() -> RegistrySettings {
        RegistrySettings {
            max_manifest_bytes: 4 << 20,
            max_concurrent_uploads: 64,
            abandoned_upload_seconds: 24 * 3600,
            blob_grace_seconds: 2 * 3600,
            token_lifetime_seconds: 300,
            blob_redirect_seconds: 0,
        }
    }
}

impl RegistrySettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_manifest_bytes == 0 || self.max_concurrent_uploads == 0 || self.token_lifetime_seconds == 0 {
            return Err("registry: maxManifestBytes, maxConcurrentUploads and tokenLifetimeSeconds must be at least 1".to_string());
        }
        Ok(())
    }
}

/// A repository of berth's registry: one image stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repo {
    pub namespace: String,
    pub stream: String,
}

impl Repo {
    /// Parses and checks a repository name as it appears in a `/v2/` path.
    pub fn parse(name: &str) -> Result<Repo> {
        let invalid = |why: &str| RegistryError::new(Code::NameInvalid, format!("invalid repository name {name:?}: {why}"));
        if !is_distribution_name(name) {
            return Err(invalid(
                "a name is lowercase letters and digits separated by '.', '_', '__', '-' and '/', as the OCI distribution spec says",
            ));
        }
        let Some((namespace, stream)) = name.split_once('/').filter(|(_, stream)| !stream.contains('/')) else {
            return Err(invalid(
                "berth's repositories are NAMESPACE/STREAM (one image stream of one namespace): push to <namespace>/<stream>",
            ));
        };
        if let Err(err) = berth_model::names::check_dns_label("", namespace) {
            return Err(invalid(&format!("the namespace part {}", err.message)));
        }
        if let Err(err) = berth_model::names::check_stream_name("", namespace, stream) {
            return Err(invalid(&format!("the stream part {}", err.message)));
        }
        Ok(Repo { namespace: namespace.to_string(), stream: stream.to_string() })
    }

    pub fn name(&self) -> String {
        format!("{}/{}", self.namespace, self.stream)
    }
}

/// The OCI distribution spec's repository name grammar:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
fn is_distribution_name(name: &str) -> bool {
    name.len() <= 255
        && name.split('/').all(|component| {
            let bytes = component.as_bytes();
            let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
                return false;
            }
            let mut idx = 0;
            while idx < bytes.len() {
                if alnum(bytes[idx]) {
                    idx += 1;
                    continue;
                }
                let start = idx;
                while idx < bytes.len() && !alnum(bytes[idx]) {
                    idx += 1;
                }
                let separator = &component[start..idx];
                if !(separator == "." || separator == "_" || separator == "__" || separator.bytes().all(|b| b == b'-')) {
                    return false;
                }
            }
            true
        })
}

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference> {
        if text.contains(':') {
            return text
                .parse::<Digest>()
                .map(Reference::Digest)
                .map_err(|err| RegistryError::new(Code::DigestInvalid, format!("invalid digest {text:?}: {err}")));
        }
        berth_model::names::check_tag("", text)
            .map_err(|err| RegistryError::new(Code::ManifestInvalid, format!("invalid tag {text:?}: {}", err.message)))?;
        Ok(Reference::Tag(text.to_string()))
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(tag) => f.write_str(tag),
            Reference::Digest(digest) => write!(f, "{digest}"),
        }
    }
}

/// Parses a digest from a URL or query, as a precise DIGEST_INVALID.
pub fn parse_digest(text: &str) -> Result<Digest> {
    text.parse::<Digest>().map_err(|err| RegistryError::new(Code::DigestInvalid, format!("invalid digest {text:?}: {err}")))
}

/// What a request needs to do in a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Pull,
    Push,
}

/// The registry service. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Catalog,
    blobs: BlobStore,
    upstream: Upstream,
    settings: RegistrySettings,
    /// Uploads sending bytes now.
    uploads: Arc<Semaphore>,
    mirrors: mirror::Mirrors,
    /// Signs the tokens `/v2/token` issues.
    token_key: [u8; 32],
}

impl Registry {
    pub fn new(catalog: Catalog, blobs: BlobStore, upstream: Upstream, settings: RegistrySettings, token_key: [u8; 32]) -> Registry {
        let uploads = Arc::new(Semaphore::new(settings.max_concurrent_uploads));
        Registry { inner: Arc::new(Inner { catalog, blobs, upstream, settings, uploads, mirrors: mirror::Mirrors::default(), token_key }) }
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    pub fn settings(&self) -> &RegistrySettings {
        &self.inner.settings
    }

    fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// Checks the caller may pull from or push to `repo`. Anonymous callers may pull from
    /// namespaces annotated `berth.dev/anonymous-pull: "true"` and are otherwise asked to
    /// log in (401); a known caller without the role gets DENIED.
    pub async fn authorize(&self, caller: &Caller, repo: &Repo, need: Need) -> Result<()> {
        let action = match need {
            Need::Pull => Action::Read(&repo.namespace),
            Need::Push => Action::Write(&repo.namespace),
        };
        if caller.grant.allows(action) {
            return Ok(());
        }
        if auth::is_anonymous(caller) {
            if need == Need::Pull && self.allows_anonymous_pull(&repo.namespace)? {
                return Ok(());
            }
            return Err(RegistryError::new(
                Code::Unauthorized,
                format!("authentication required to {} {}: log in with a berth token as the password", verb(need), repo.name()),
            ));
        }
        Err(RegistryError::new(
            Code::Denied,
            format!(
                "token {:?} ({}) may not {} {}: {} needs the {} role in namespace {:?}",
                caller.token,
                caller.grant.describe(),
                verb(need),
                repo.name(),
                verb(need),
                if need == Need::Pull { "view" } else { "edit" },
                repo.namespace
            ),
        ))
    }

    /// NAME_UNKNOWN, with the command that makes it, when `repo`'s namespace does not
    /// exist: checked where a push starts (an upload, a mount, a manifest).
    fn require_namespace(&self, repo: &Repo) -> Result<()> {
        if self.catalog().load::<Namespace>("", &repo.namespace)?.is_none() {
            return Err(RegistryError::new(
                Code::NameUnknown,
                format!("namespace {:?} does not exist: create it first with `berth create namespace {}`", repo.namespace, repo.namespace),
            ));
        }
        Ok(())
    }

    /// DENIED, saying how to create it, when `repo`'s stream does not exist and the caller
    /// may not create it by pushing (`streams.implicitCreate`): checked where a push
    /// starts, so that a client hears it before it sends any layer. The manifest push,
    /// which creates the stream, checks it again.
    fn require_stream_or_creator(&self, caller: &Caller, repo: &Repo) -> Result<()> {
        Ok(self.catalog().check_stream_creation(caller, &repo.namespace, &repo.stream, "pushing to it")?)
    }

    fn allows_anonymous_pull(&self, namespace: &str) -> Result<bool> {
        let found: Option<Namespace> = self.catalog().load::<Namespace>("", namespace)?;
        Ok(found.is_some_and(|ns| ns.metadata.annotations.get(ANONYMOUS_PULL_ANNOTATION).is_some_and(|v| v == "true")))
    }

    /// Runs catalog work on a blocking thread. Single-object reads run inline instead:
    /// an indexed read from SQLite's read pool costs less than the hand-off (as the image
    /// API's `call_inline`).
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Catalog) -> Result<T> + Send + 'static,
    {
        let catalog = self.catalog().clone();
        tokio::task::spawn_blocking(move || f(&catalog))
            .await
            .map_err(|err| RegistryError::new(Code::Unknown, format!("the request was interrupted: {err}")))?
    }

    /// The stream of `repo`, or NAME_UNKNOWN.
    fn stream(&self, repo: &Repo) -> Result<ImageStream> {
        self.find_stream(repo)?.ok_or_else(|| {
            RegistryError::new(
                Code::NameUnknown,
                format!("repository {} is not known: no image stream {} exists", repo.name(), repo.name()),
            )
        })
    }

    fn find_stream(&self, repo: &Repo) -> Result<Option<ImageStream>> {
        Ok(self.catalog().load::<ImageStream>(&repo.namespace, &repo.stream)?)
    }

    fn image(&self, digest: &Digest) -> Result<Option<Image>> {
        Ok(self.catalog().load::<Image>("", digest.as_str())?)
    }

    /// The images of a stream's history, each once, with the lists' children
    /// that berth stored.
    async fn stream_images(&self, stream: &ImageStream) -> Result<Vec<Image>> {
        let mut digests: Vec<String> = stream.referenced_images().into_iter().map(str::to_string).collect();
        self.blocking(move |catalog| {
            let mut images = Vec::new();
            let mut idx = 0;
            while idx < digests.len() {
                if let Some(image) = catalog.load::<Image>("", &digests[idx])? {
                    for child in &image.docker_image_manifests {
                        if !digests.contains(&child.digest) {
                            digests.push(child.digest.clone());
                        }
                    }
                    images.push(image);
                }
                idx += 1;
            }
            Ok(images)
        })
        .await
    }

    /// Removes uploads untouched for longer than the configured age, every hour (or
    /// sooner for short ages) until `stopping`.
    pub async fn run_upload_cleanup(self, mut stopping: tokio::sync::watch::Receiver<bool>) {
        let age = std::time::Duration::from_secs(self.inner.settings.abandoned_upload_seconds);
        let every = (age / 2).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(3600));
        loop {
            match self.inner.blobs.remove_abandoned(age).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "removed abandoned uploads"),
                Err(err) => tracing::warn!(%err, "removing abandoned uploads failed; will retry"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stopping.wait_for(|stop| *stop) => return,
            }
        }
    }
}

fn verb(need: Need) -> &'static str {
    match need {
        Need::Pull => "pull from",
        Need::Push => "push to",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_spec_and_are_namespace_slash_stream() {
        assert_eq!(Repo::parse("team/app").unwrap(), Repo { namespace: "team".into(), stream: "app".into() });
        assert_eq!(Repo::parse("team/my.app-2").unwrap().stream, "my.app-2");
        assert!(Repo::parse("team/my_app").unwrap_err().message.contains("the stream part"), "the spec allows it, image streams do not");
        for bad in ["team", "team/a/b", "Team/app", "team/../x", "team/.hidden", "team//app", "team/app-", "/app", "team/a%2fb", ""] {
            let err = Repo::parse(bad).unwrap_err();
            assert_eq!(err.code, Code::NameInvalid, "{bad}");
        }
        assert!(Repo::parse("team/a/b").unwrap_err().message.contains("NAMESPACE/STREAM"));
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(Reference::parse("v1.0").unwrap(), Reference::Tag("v1.0".into()));
        assert!(matches!(Reference::parse(&format!("sha256:{}", "a".repeat(64))).unwrap(), Reference::Digest(_)));
        assert_eq!(Reference::parse("sha256:abc").unwrap_err().code, Code::DigestInvalid);
        assert_eq!(Reference::parse("-bad").unwrap_err().code, Code::ManifestInvalid);
    }
}
