//! Looking images up in other registries: one [`Run`] per import, which fetches each
//! manifest and config blob at most once and never what berth already has.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use berth_model::Digest;
use berth_model::image::Image;
use berth_model::imagestream::{ImageStream, TagImportPolicy};
use berth_model::manifest::{self, Manifest, ManifestError, PlatformPreference};
use berth_model::reference::ImageReference;
use berth_upstream::{ErrorKind as UpstreamKind, Keyring, Repository, Session, Upstream, UpstreamError};
use futures::StreamExt;
use tokio::sync::OnceCell;

use crate::services::Catalog;

use super::{LOOKUPS_IN_FLIGHT, PREFER_ARCH, PREFER_OS};

/// How a manifest list is imported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ImportMode {
    /// One platform's image.
    Legacy,
    /// The list and every child.
    PreserveOriginal,
}

impl ImportMode {
    pub(super) fn of(policy: &TagImportPolicy) -> ImportMode {
        if policy.import_mode == "PreserveOriginal" { ImportMode::PreserveOriginal } else { ImportMode::Legacy }
    }
}

/// Whether a run tries a registry's transient failures again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Patience {
    /// Tries again as `import.retries` says (with backoff, or as `Retry-After` asks), and
    /// records the failure on the tag when the tries are used up.
    Patient,
    /// One try per request, and a transient failure is not recorded: for a tag a registry
    /// just notified, whose own short schedule looks again in milliseconds (a registry may
    /// answer 500 while it links the tag it notified).
    Quick,
}

/// One image to look up.
#[derive(Clone, Debug)]
pub(super) struct Lookup {
    pub(super) tag: String,
    pub(super) reference: ImageReference,
    pub(super) insecure: bool,
    pub(super) mode: ImportMode,
    pub(super) preferences: Vec<PlatformPreference>,
    /// The image the tag points at now, if any: a result that finds it again is "Unchanged".
    pub(super) current: Option<String>,
}

/// What a lookup found.
#[derive(Clone, Debug)]
pub(super) struct Found {
    /// The image the tag will point at.
    pub(super) image: Image,
    /// The children of a list kept with `PreserveOriginal`.
    pub(super) manifests: Vec<Image>,
    /// Where the image can be pulled by digest.
    pub(super) pull_spec: String,
}

pub(super) type Outcome = std::result::Result<Found, UpstreamError>;

/// The state of one run: sessions per repository, and what was fetched, once each.
pub(super) struct Run {
    pub(super) upstream: Upstream,
    pub(super) catalog: Catalog,
    pub(super) keyring: Keyring,
    pub(super) sessions: Mutex<HashMap<(String, bool), Arc<Session>>>,
    pub(super) images: Memo<Image>,
    pub(super) configs: Memo<bytes::Bytes>,
    /// Images fetched in this run, to be stored with the results.
    pub(super) fetched: Mutex<BTreeMap<String, Image>>,
    /// What started the run, for the tag history it writes (`scheduled import`).
    pub(super) cause: String,
    pub(super) patience: Patience,
}

/// What one run fetched by digest, each fetched once however many tags want it.
pub(super) type Memo<T> = Mutex<HashMap<String, Arc<OnceCell<Fetch<T>>>>>;

/// Looks up every lookup, concurrently, yielding results as they complete.
pub(super) fn lookup_all(run: &Arc<Run>, lookups: Vec<Lookup>) -> impl futures::Stream<Item = (Lookup, Outcome)> + Send + 'static {
    let run = Arc::clone(run);
    futures::stream::iter(lookups)
        .map(move |lookup| {
            let run = Arc::clone(&run);
            async move {
                let outcome = run.resolve(&lookup).await;
                (lookup, outcome)
            }
        })
        .buffer_unordered(LOOKUPS_IN_FLIGHT)
}

impl Run {
    pub(super) fn session(&self, reference: &ImageReference, insecure: bool) -> Arc<Session> {
        let insecure = insecure || self.upstream.settings().is_insecure(&reference.registry);
        let repository = Repository::of(reference, insecure);
        let mut sessions = self.sessions.lock().expect("sessions lock");
        Arc::clone(sessions.entry((repository.name(), insecure)).or_insert_with(|| {
            let credentials = self.keyring.lookup(&repository.registry, &repository.path);
            let session = self.upstream.session(repository, credentials);
            Arc::new(if self.patience == Patience::Quick { session.without_retries() } else { session })
        }))
    }

    /// Finds the image `lookup` names now.
    pub(super) async fn resolve(&self, lookup: &Lookup) -> Outcome {
        let session = self.session(&lookup.reference, lookup.insecure);
        let digest = match &lookup.reference.digest {
            Some(digest) => Some(digest.clone()),
            None => session.manifest_digest(lookup.reference.tag.as_deref().unwrap_or("latest")).await?,
        };
        // An image berth has (the one the tag points at when nothing moved) costs no
        // further request.
        let top = match digest {
            Some(digest) => self.image(&session, &digest).await?,
            None => {
                let fetched = session.manifest(lookup.reference.tag.as_deref().unwrap_or("latest")).await?;
                self.build(&session, fetched).await?
            }
        };
        let top_digest: Digest = top.metadata.name.parse().map_err(|_| invalid_manifest(&session, "its digest is not valid"))?;
        if top.docker_image_manifests.is_empty() {
            return Ok(Found { pull_spec: session.repository().pull_spec(&top_digest), image: top, manifests: Vec::new() });
        }
        let manifest = Manifest::parse(&top.docker_image_manifest_media_type, top.docker_image_manifest.as_bytes())
            .map_err(|err| manifest_error(&session, err))?;
        let Manifest::List { manifests: children, .. } = manifest else {
            return Err(invalid_manifest(&session, "it was stored as a list but is not one"));
        };
        match lookup.mode {
            ImportMode::PreserveOriginal => {
                let lookups = children.iter().map(|child| async {
                    let digest: Digest = child.digest.parse().map_err(|_| invalid_manifest(&session, "a child digest is not valid"))?;
                    self.image(&session, &digest).await
                });
                let manifests = futures::future::try_join_all(lookups).await?;
                Ok(Found { pull_spec: session.repository().pull_spec(&top_digest), image: top, manifests })
            }
            ImportMode::Legacy => {
                let preferences = lookup.platform_order(&self.upstream.settings().default_platform);
                let chosen = manifest::choose_child(&children, &preferences).ok_or_else(|| {
                    UpstreamError::new(
                        UpstreamKind::Invalid,
                        format!("the manifest list {} has no image for a platform berth can run", lookup.reference),
                    )
                })?;
                let digest: Digest = chosen.digest.parse().map_err(|_| invalid_manifest(&session, "a child digest is not valid"))?;
                let image = self.image(&session, &digest).await?;
                Ok(Found { pull_spec: session.repository().pull_spec(&digest), image, manifests: Vec::new() })
            }
        }
    }

    /// The Image berth already has for `digest`, if any.
    pub(super) fn known(&self, digest: &Digest) -> std::result::Result<Option<Image>, UpstreamError> {
        self.catalog
            .load::<Image>("", digest.as_str())
            .map_err(|err| UpstreamError::new(UpstreamKind::Unavailable, format!("reading image {digest}: {}", err.message)))
    }

    /// The Image for `digest`: berth's own copy, else fetched; either once per run (500
    /// tags over 100 images read 100 Images, not 500).
    pub(super) async fn image(&self, session: &Session, digest: &Digest) -> Fetch<Image> {
        let cell = Arc::clone(self.images.lock().expect("image memo lock").entry(digest.to_string()).or_default());
        cell.get_or_init(|| async {
            if let Some(image) = self.known(digest)? {
                return Ok(image);
            }
            let fetched = session.manifest(digest.as_str()).await?;
            self.build(session, fetched).await
        })
        .await
        .clone()
    }

    /// Builds the Image of a fetched manifest, fetching its config blob (once per run).
    pub(super) async fn build(&self, session: &Session, fetched: berth_upstream::FetchedManifest) -> Fetch<Image> {
        let parsed = Manifest::parse(&fetched.media_type, &fetched.bytes).map_err(|err| manifest_error(session, err))?;
        let config = match &parsed {
            Manifest::Image { config, .. } => {
                let config_digest: Digest =
                    config.digest.parse().map_err(|_| invalid_manifest(session, "its config digest is not valid"))?;
                Some(self.config(session, &config_digest).await?)
            }
            Manifest::List { .. } => None,
        };
        let pull_spec = session.repository().pull_spec(&fetched.digest);
        let image = manifest::image_from_manifest(&fetched.digest, &fetched.bytes, &parsed, config.as_deref(), &pull_spec)
            .map_err(|err| manifest_error(session, err))?;
        self.fetched.lock().expect("fetched images lock").insert(image.metadata.name.clone(), image.clone());
        Ok(image)
    }

    pub(super) async fn config(&self, session: &Session, digest: &Digest) -> Fetch<bytes::Bytes> {
        let cell = Arc::clone(self.configs.lock().expect("config memo lock").entry(digest.to_string()).or_default());
        let max = self.upstream.settings().max_config_bytes;
        cell.get_or_init(|| session.blob(digest, max)).await.clone()
    }
}

pub(super) type Fetch<T> = std::result::Result<T, UpstreamError>;

impl Run {
    /// Whether `outcome` is recorded on its tag: everything, except a quick run's
    /// transient failures (the next look is moments away).
    pub(super) fn records(&self, outcome: &Outcome) -> bool {
        self.patience == Patience::Patient || !outcome.as_ref().is_err_and(UpstreamError::is_transient)
    }
}

pub(super) fn manifest_error(session: &Session, err: ManifestError) -> UpstreamError {
    let kind = if matches!(err, ManifestError::Schema1(_)) { UpstreamKind::Unsupported } else { UpstreamKind::Invalid };
    UpstreamError::new(kind, format!("{}: {err}", session.repository().name()))
}

pub(super) fn invalid_manifest(session: &Session, what: &str) -> UpstreamError {
    UpstreamError::new(UpstreamKind::Invalid, format!("a manifest of {} cannot be read: {what}", session.repository().name()))
}

impl Lookup {
    /// The lookup for `tag` of `stream` (if it exists yet), importing `reference`.
    pub(super) fn new(stream: Option<&ImageStream>, tag: &str, reference: ImageReference, policy: &TagImportPolicy) -> Lookup {
        let annotations = stream.and_then(|s| s.spec_tag(tag)).and_then(|t| t.annotations.clone()).unwrap_or_default();
        let (os, arch) = (annotations.get(PREFER_OS), annotations.get(PREFER_ARCH));
        let preferences = if os.is_some() || arch.is_some() {
            vec![PlatformPreference {
                os: os.cloned().unwrap_or_default(),
                architecture: arch.cloned().unwrap_or_default(),
                variant: String::new(),
            }]
        } else {
            Vec::new()
        };
        Lookup {
            tag: tag.to_string(),
            reference,
            insecure: policy.insecure,
            mode: ImportMode::of(policy),
            preferences,
            current: stream.and_then(|s| s.latest_event(tag)).map(|e| e.image.clone()).filter(|i| !i.is_empty()),
        }
    }

    /// Platform preferences in OpenShift's order: the tag's annotations, then the server's
    /// default platform, then linux/amd64 (then, in `choose_child`, the first runnable).
    pub(super) fn platform_order(&self, default_platform: &str) -> Vec<PlatformPreference> {
        let mut order = self.preferences.clone();
        order.extend(PlatformPreference::parse(default_platform).ok());
        order.push(PlatformPreference { os: "linux".into(), architecture: "amd64".into(), variant: String::new() });
        order
    }
}
