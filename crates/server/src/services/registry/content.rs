//! Manifests, tags, the catalog and referrers: what `/v2/<name>/manifests`, `/tags/list`,
//! `/_catalog` and `/referrers` serve. Manifests are the Images' bytes, exactly as pushed or
//! imported; a tag is the latest entry of the stream's history.

use berth_model::access::{Action, Scope};
use berth_model::core::Namespace;
use berth_model::image::Image;
use berth_model::imagestream::{ImageStream, ImageStreamMapping, ImageStreamTag};
use berth_model::manifest::{self, Descriptor, Manifest, PlatformPreference};
use berth_model::{Digest, ObjectMeta};
use bytes::Bytes;
use serde_json::{Value, json};

use super::{Code, MANAGED_ANNOTATION, Need, Reference, Registry, RegistryError, Repo, Result};
use crate::services::images::TrustedImage;
use crate::services::{Caller, Resource};
use berth_store::ListQuery;

/// Repositories `_catalog` lists when the client names no `n`, and the most it lists.
const CATALOG_PAGE: usize = 1000;
const MAX_CATALOG_PAGE: usize = 10_000;

/// The largest image config read to build an Image's metadata.
const MAX_CONFIG_BYTES: u64 = 8 << 20;
const IMAGE_CONFIG_TYPES: [&str; 2] = ["application/vnd.docker.container.image.v1+json", "application/vnd.oci.image.config.v1+json"];

/// A manifest as served.
#[derive(Clone, Debug)]
pub struct ManifestContent {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// What a manifest push stored.
#[derive(Clone, Debug)]
pub struct PushedManifest {
    pub digest: Digest,
    /// The manifest's `subject`, for the `OCI-Subject` header.
    pub subject: Option<Digest>,
}

/// A page of a tag or repository list, and where the next one starts.
#[derive(Clone, Debug)]
pub struct Page {
    pub items: Vec<String>,
    /// The last item, when more follow.
    pub next_after: Option<String>,
}

fn content_of(image: &Image) -> Result<ManifestContent> {
    if image.docker_image_manifest.is_empty() {
        return Err(RegistryError::new(
            Code::ManifestUnknown,
            format!("berth keeps no manifest bytes for image {}: import it again to serve it", image.metadata.name),
        ));
    }
    let digest = image.metadata.name.parse::<Digest>().map_err(|err| RegistryError::new(Code::Unknown, err.to_string()))?;
    let media_type = if image.docker_image_manifest_media_type.is_empty() {
        manifest::OCI_MANIFEST.to_string()
    } else {
        image.docker_image_manifest_media_type.clone()
    };
    Ok(ManifestContent { digest, media_type, bytes: Bytes::from(image.docker_image_manifest.clone()) })
}

fn page(mut items: Vec<String>, n: Option<usize>, last: Option<&str>) -> Page {
    items.sort();
    items.dedup();
    if let Some(last) = last {
        items.retain(|item| item.as_str() > last);
    }
    match n {
        Some(n) if items.len() > n => {
            items.truncate(n);
            let next_after = items.last().cloned();
            Page { items, next_after }
        }
        _ => Page { items, next_after: None },
    }
}

/// An image of a stream's history that is or names a digest, with the pull specs the
/// stream's history recorded it under (its own tag events', or those of the lists that
/// hold it), newest first: where this stream says the image came from.
pub(super) struct InStream {
    pub(super) image: Image,
    pub(super) sources: Vec<String>,
}

impl InStream {
    fn find(stream: &ImageStream, images: &[Image], digest: &Digest) -> Option<InStream> {
        let image = images.iter().find(|image| names(image, digest))?.clone();
        let name = image.metadata.name.as_str();
        let lists: Vec<&str> = images
            .iter()
            .filter(|list| list.docker_image_manifests.iter().any(|child| child.digest == name))
            .map(|list| list.metadata.name.as_str())
            .collect();
        let mut events: Vec<_> = stream
            .status
            .tags
            .iter()
            .flat_map(|tag| tag.items.iter())
            .filter(|event| event.image == name || lists.contains(&event.image.as_str()))
            .collect();
        events.sort_by_key(|event| std::cmp::Reverse(event.created));
        let mut sources: Vec<String> = Vec::new();
        for event in events {
            if !sources.contains(&event.docker_image_reference) {
                sources.push(event.docker_image_reference.clone());
            }
        }
        Some(InStream { image, sources })
    }
}

impl Registry {
    /// The image of the stream's history that is or names `digest` (a manifest, a layer or
    /// a config), if any, and where the stream says it came from.
    pub(super) async fn in_stream(&self, digest: &Digest, stream: &ImageStream) -> Result<Option<InStream>> {
        Ok(InStream::find(stream, &self.stream_images(stream).await?, digest))
    }

    /// The manifest `reference` names in `repo`. `accept` lists the media types the client
    /// takes; a client that takes no manifest lists gets, by tag, the linux/amd64 image of
    /// a list (as distribution does), never rewritten bytes.
    pub async fn manifest(&self, caller: &Caller, repo: &Repo, reference: &Reference, accept: &[String]) -> Result<ManifestContent> {
        self.authorize(caller, repo, Need::Pull).await?;
        let stream = self.stream(repo)?;
        match reference {
            Reference::Tag(tag) => {
                let Some(event) = stream.latest_event(tag).filter(|e| !e.image.is_empty()) else {
                    let why = if stream.spec_tag(tag).is_some() {
                        format!(
                            "tag {tag:?} of {} has no image yet (its import may be pending or failed: `berth describe istag {}:{tag} -n {}`)",
                            repo.name(),
                            repo.stream,
                            repo.namespace
                        )
                    } else {
                        format!("{} has no tag {tag:?}", repo.name())
                    };
                    return Err(RegistryError::new(Code::ManifestUnknown, why));
                };
                let digest = super::parse_digest(&event.image)?;
                let image = self.image(&digest)?.ok_or_else(|| {
                    RegistryError::new(Code::ManifestUnknown, format!("berth does not have image {digest} that tag {tag:?} points at"))
                })?;
                let content = content_of(&image)?;
                self.negotiate(content, accept).await
            }
            Reference::Digest(digest) => match self.manifest_in(repo, &stream, digest).await? {
                Some(image) => content_of(&image),
                None => Err(RegistryError::new(Code::ManifestUnknown, format!("{} has no manifest {digest}", repo.name()))),
            },
        }
    }

    /// The Image of manifest `digest` in `repo`: one its stream's history points at (read
    /// from the stream already in hand: no look-up elsewhere), one pushed or mounted there,
    /// or a child of a list of its history.
    async fn manifest_in(&self, repo: &Repo, stream: &ImageStream, digest: &Digest) -> Result<Option<Image>> {
        let image = if stream.status.tags.iter().flat_map(|t| t.items.iter()).any(|event| event.image == digest.as_str())
            || self.inner.blobs.is_linked(&repo.name(), digest).await?
        {
            self.image(digest)?
        } else {
            self.in_stream(digest, stream).await?.map(|found| found.image)
        };
        Ok(image.filter(|image| image.metadata.name == digest.as_str()))
    }

    async fn negotiate(&self, content: ManifestContent, accept: &[String]) -> Result<ManifestContent> {
        let is_list = matches!(content.media_type.as_str(), manifest::OCI_INDEX | manifest::DOCKER_MANIFEST_LIST);
        let accepts = |t: &str| accept.iter().any(|a| a == t || a == "*/*");
        if !is_list || accept.is_empty() || accepts(manifest::OCI_INDEX) || accepts(manifest::DOCKER_MANIFEST_LIST) {
            return Ok(content);
        }
        let Ok(Manifest::List { manifests, .. }) = Manifest::parse(&content.media_type, &content.bytes) else {
            return Ok(content);
        };
        let linux_amd64 = PlatformPreference::parse("linux/amd64").expect("a valid platform");
        let child: Option<&Descriptor> = manifest::choose_child(&manifests, &[linux_amd64]);
        let Some(child) = child else {
            return Ok(content);
        };
        let digest = super::parse_digest(&child.digest)?;
        match self.image(&digest)? {
            Some(image) => content_of(&image),
            None => Err(RegistryError::new(
                Code::ManifestUnknown,
                format!("the tag is a manifest list and the client takes none; berth does not have its linux/amd64 image {digest}"),
            )),
        }
    }

    /// Stores a pushed manifest. By tag, the Image is mapped to the stream's tag (the
    /// stream is created when missing, by a caller `streams.implicitCreate` allows) with
    /// the history, events and notifications of any tag move, and an immutable tag that
    /// would move is refused; by digest, only the Image is stored.
    pub async fn put_manifest(
        &self,
        caller: &Caller,
        repo: &Repo,
        reference: &Reference,
        content_type: &str,
        bytes: Bytes,
    ) -> Result<PushedManifest> {
        self.authorize(caller, repo, Need::Push).await?;
        self.require_namespace(repo)?;
        self.require_stream_or_creator(caller, repo)?;
        let max = self.inner.settings.max_manifest_bytes;
        if bytes.len() > max {
            return Err(RegistryError::new(
                Code::ManifestTooLarge,
                format!("the manifest has {} bytes; berth accepts at most {max}", bytes.len()),
            ));
        }
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = expected.recompute(&bytes);
                if actual != *expected {
                    return Err(RegistryError::new(
                        Code::DigestInvalid,
                        format!("the manifest hashes to {actual}, not {expected} as the URL says: nothing was stored"),
                    ));
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256_of(&bytes),
        };
        let parsed = Manifest::parse(content_type, &bytes).map_err(|err| RegistryError::new(Code::ManifestInvalid, err.to_string()))?;
        let document: Value = serde_json::from_slice(&bytes)
            .map_err(|err| RegistryError::new(Code::ManifestInvalid, format!("the manifest is not JSON: {err}")))?;
        let stream = self.find_stream(repo)?;
        let config = match &parsed {
            Manifest::Image { config, layers, .. } => {
                // Non-distributable layers (with `urls`) are fetched from those URLs by
                // clients and need not be in the registry.
                let all: Vec<&Descriptor> = std::iter::once(config).chain(layers.iter().filter(|l| l.urls.is_empty())).collect();
                self.require_in_repository(repo, stream.as_ref(), &all).await?;
                if IMAGE_CONFIG_TYPES.contains(&config.media_type.as_str()) {
                    let config_digest = super::parse_digest(&config.digest)?;
                    self.inner.blobs.read_all(&config_digest, MAX_CONFIG_BYTES).await?
                } else {
                    None
                }
            }
            Manifest::List { manifests, .. } => {
                self.require_in_repository(repo, stream.as_ref(), &manifests.iter().collect::<Vec<_>>()).await?;
                None
            }
        };
        let pull_spec = format!("{}/{}@{digest}", self.catalog().config().registry_hostname, repo.name());
        let mut image = manifest::image_from_manifest(&digest, &bytes, &parsed, config.as_deref(), &pull_spec)
            .map_err(|err| RegistryError::new(Code::ManifestInvalid, err.to_string()))?;
        image.metadata.annotations.insert(MANAGED_ANNOTATION.to_string(), "true".to_string());
        let subject = match document.pointer("/subject/digest").and_then(Value::as_str) {
            Some(text) => Some(super::parse_digest(text)?),
            None => None,
        };
        let caller_name = caller.token.clone();
        let (caller, namespace, stream_name) = (caller.clone(), repo.namespace.clone(), repo.stream.clone());
        match reference {
            Reference::Tag(tag) => {
                let mapping = ImageStreamMapping {
                    metadata: ObjectMeta { name: stream_name, namespace: namespace.clone(), ..ObjectMeta::default() },
                    image: image.clone(),
                    tag: tag.clone(),
                    ..ImageStreamMapping::default()
                };
                let image = TrustedImage::verified(image);
                self.blocking(move |catalog| catalog.create_mapping(&caller, &namespace, mapping, image, "push").map_err(Into::into))
                    .await?;
            }
            Reference::Digest(_) => {
                self.blocking(move |catalog| {
                    catalog.store_pushed_image(&caller, &namespace, &stream_name, TrustedImage::verified(image)).map_err(Into::into)
                })
                .await?;
            }
        }
        // Linked only once the catalog has the image, so that a refused push leaves nothing.
        self.inner.blobs.link(&repo.name(), &digest).await?;
        tracing::info!(repository = %repo.name(), reference = %reference, %digest, token = %caller_name, "pushed a manifest");
        if let Some(subject) = &subject {
            let artifact_type = document
                .get("artifactType")
                .and_then(Value::as_str)
                .or_else(|| document.pointer("/config/mediaType").and_then(Value::as_str))
                .unwrap_or_default();
            let mut descriptor = json!({
                "mediaType": parsed.media_type(),
                "digest": digest.as_str(),
                "size": bytes.len(),
            });
            if !artifact_type.is_empty() {
                descriptor["artifactType"] = json!(artifact_type);
            }
            if let Some(annotations) = document.get("annotations").filter(|a| a.is_object()) {
                descriptor["annotations"] = annotations.clone();
            }
            let descriptor = serde_json::to_vec(&descriptor).expect("a descriptor serialises");
            self.inner.blobs.add_referrer(&repo.name(), subject, &digest, descriptor).await?;
        }
        Ok(PushedManifest { digest, subject })
    }

    /// MANIFEST_BLOB_UNKNOWN unless the blob or manifest each descriptor names is in `repo`:
    /// pushed or mounted there, or named by an image of the stream and stored. The
    /// stream's images are read at most once, and only when something is not linked.
    async fn require_in_repository(&self, repo: &Repo, stream: Option<&ImageStream>, descriptors: &[&Descriptor]) -> Result<()> {
        let mut images: Option<Vec<Image>> = None;
        for descriptor in descriptors {
            let digest = super::parse_digest(&descriptor.digest)?;
            if self.inner.blobs.is_linked(&repo.name(), &digest).await? {
                continue;
            }
            if let Some(stream) = stream {
                if images.is_none() {
                    images = Some(self.stream_images(stream).await?);
                }
                let named = images.iter().flatten().any(|image| names(image, &digest));
                if named && (self.inner.blobs.size(&digest).await?.is_some() || self.image(&digest)?.is_some()) {
                    continue;
                }
            }
            return Err(RegistryError::new(
                Code::ManifestBlobUnknown,
                format!("{digest} was not pushed to {}: push it before the manifest that refers to it", repo.name()),
            ));
        }
        Ok(())
    }

    /// Deletes a tag (the tag and its history, as `berth tag -d`), or a manifest by digest:
    /// the stream's tags that point at it now are removed and the repository forgets it.
    /// The Image itself stays until pruning.
    pub async fn delete_manifest(&self, caller: &Caller, repo: &Repo, reference: &Reference) -> Result<()> {
        self.authorize(caller, repo, Need::Push).await?;
        let stream = self.stream(repo)?;
        let (owned_caller, namespace) = (caller.clone(), repo.namespace.clone());
        let deleted = match reference {
            Reference::Tag(tag) => {
                let name = format!("{}:{tag}", repo.stream);
                let unknown = format!("{} has no tag {tag:?}", repo.name());
                self.blocking(move |catalog| {
                    catalog.delete_tag_view::<ImageStreamTag>(&owned_caller, &namespace, &name).map_err(|err| match err.kind {
                        crate::services::ErrorKind::NotFound => RegistryError::new(Code::ManifestUnknown, unknown),
                        _ => err.into(),
                    })
                })
                .await
            }
            Reference::Digest(digest) => {
                let Some(image) = self.manifest_in(repo, &stream, digest).await? else {
                    return Err(RegistryError::new(Code::ManifestUnknown, format!("{} has no manifest {digest}", repo.name())));
                };
                let (stream_name, owned_digest) = (repo.stream.clone(), digest.clone());
                self.blocking(move |catalog| {
                    catalog.untag_image(&owned_caller, &namespace, &stream_name, &owned_digest).map_err(Into::into)
                })
                .await?;
                self.inner.blobs.unlink(&repo.name(), digest).await?;
                let document: Option<Value> = serde_json::from_str(&image.docker_image_manifest).ok();
                if let Some(subject) = document.as_ref().and_then(|d| d.pointer("/subject/digest")).and_then(Value::as_str)
                    && let Ok(subject) = subject.parse::<Digest>()
                {
                    self.inner.blobs.remove_referrer(&repo.name(), &subject, digest).await?;
                }
                Ok(())
            }
        };
        if deleted.is_ok() {
            tracing::info!(repository = %repo.name(), reference = %reference, token = %caller.token, "deleted a manifest");
        }
        deleted
    }

    /// The tags of `repo` that point at an image, in order, `n` at most after `last`.
    pub async fn tags(&self, caller: &Caller, repo: &Repo, n: Option<usize>, last: Option<&str>) -> Result<Page> {
        self.authorize(caller, repo, Need::Pull).await?;
        let stream = self.stream(repo)?;
        let tags =
            stream.status.tags.iter().filter(|t| t.items.first().is_some_and(|e| !e.image.is_empty())).map(|t| t.tag.clone()).collect();
        Ok(page(tags, n, last))
    }

    /// The repositories (streams) the caller may pull from, in order, `n` at most (the
    /// default page is [`CATALOG_PAGE`], as distribution's) after `last`. Read from the
    /// store's keys, never from the streams themselves.
    pub async fn repositories(&self, caller: &Caller, n: Option<usize>, last: Option<&str>) -> Result<Page> {
        let caller = caller.clone();
        let n = n.unwrap_or(CATALOG_PAGE).min(MAX_CATALOG_PAGE);
        let after = last.map(|last| match last.split_once('/') {
            Some((namespace, stream)) => (namespace.to_string(), stream.to_string()),
            None => (last.to_string(), String::new()),
        });
        self.blocking(move |catalog| {
            let store = catalog.store();
            let keys = |namespace: Option<String>, after: Option<(String, String)>, limit: usize| {
                let query = ListQuery { resource: ImageStream::RESOURCE.to_string(), namespace, after, limit: Some(limit) };
                store.list_keys(&query).map_err(crate::services::Error::from)
            };
            let mut names: Vec<String> = Vec::new();
            let mut more = false;
            if caller.grant.allows(Action::ReadCluster) {
                let page = keys(None, after, n)?;
                names = page.keys.iter().map(|key| format!("{}/{}", key.namespace, key.name)).collect();
                more = page.more;
            } else {
                let mut namespaces: Vec<String> = match &caller.grant.scope {
                    Scope::Namespaces(namespaces) if !super::auth::is_anonymous(&caller) => namespaces.clone(),
                    _ => Vec::new(),
                };
                if super::auth::is_anonymous(&caller) {
                    let all = crate::services::ListOptions::default();
                    for namespace in catalog.list_objects::<Namespace>(None, &all, |_| true)?.items {
                        let namespace = namespace?;
                        if namespace.metadata.annotations.get(super::ANONYMOUS_PULL_ANNOTATION).is_some_and(|v| v == "true") {
                            namespaces.push(namespace.metadata.name);
                        }
                    }
                }
                namespaces.sort();
                namespaces.dedup();
                for namespace in namespaces {
                    let start = match &after {
                        Some((after_ns, _)) if namespace < *after_ns => continue,
                        Some((after_ns, after_name)) if namespace == *after_ns => Some((namespace.clone(), after_name.clone())),
                        _ => None,
                    };
                    let page = keys(Some(namespace.clone()), start, n - names.len())?;
                    names.extend(page.keys.iter().map(|key| format!("{}/{}", key.namespace, key.name)));
                    if names.len() >= n {
                        more = true;
                        break;
                    }
                }
            }
            let next_after = if more { names.last().cloned() } else { None };
            Ok(Page { items: names, next_after })
        })
        .await
    }

    /// A repository or subject with no referrers (not even a stream yet) has an empty
    /// index, as the spec asks: never a 404.
    pub async fn referrers(&self, caller: &Caller, repo: &Repo, subject: &Digest, artifact_type: Option<&str>) -> Result<Value> {
        self.authorize(caller, repo, Need::Pull).await?;
        let mut manifests = Vec::new();
        for descriptor in self.inner.blobs.referrers(&repo.name(), subject).await? {
            let Ok(descriptor) = serde_json::from_slice::<Value>(&descriptor) else {
                continue;
            };
            if artifact_type.is_some_and(|wanted| descriptor.get("artifactType").and_then(Value::as_str) != Some(wanted)) {
                continue;
            }
            manifests.push(descriptor);
        }
        Ok(json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": manifests}))
    }
}

/// Whether `image` is, or has as a layer or its config, the content `digest`.
fn names(image: &Image, digest: &Digest) -> bool {
    image.metadata.name == digest.as_str()
        || image.docker_image_layers.iter().any(|l| l.name == digest.as_str())
        || config_digest(image).as_deref() == Some(digest.as_str())
}

/// The config digest of an image (`dockerImageMetadata.Id` for schema 2 and OCI images).
pub(crate) fn config_digest(image: &Image) -> Option<String> {
    image.docker_image_metadata.as_ref()?.get("Id")?.as_str().filter(|id| id.contains(':')).map(str::to_string)
}
