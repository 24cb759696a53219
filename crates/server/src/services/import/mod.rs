//! The importer: turns images in other registries into Images and TagEvents.
//!
//! Two ways in, one engine:
//! - the import controller (with the scheduler, [`Importer::run_imports`]) watches the
//!   event log for streams whose DockerImage tags are ahead of their status and imports them;
//! - `ImageStreamImport` ([`Importer::create_import`]) imports (or, as a dry run, only
//!   looks up) the images and repositories it names, on request.
//!
//! The engine does the least work it can: a tag whose manifest digest (HEAD) is the one
//! it already points at costs one request; an Image berth already has is never fetched
//! again; within one run a manifest or config blob wanted by several tags is fetched once;
//! the tags of a run are fetched concurrently under each registry's gate. A failure leaves
//! history as it was and sets `ImportSuccess=False` with a reason.
//!
//! Unlike the catalog's services, the importer is async (it waits on registries); its store
//! work runs on blocking threads.

mod controller;
mod lookup;
mod registry_events;
mod request;
mod schedule;
mod store;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_model::Time;
use berth_model::access::Action;
use berth_model::image::Image;
use berth_model::imagestream::{ImageStream, TagReference};
use berth_model::imagestreamimport::{ImageStreamImport, RepositoryImportStatus};
use berth_model::manifest::{self};
use berth_model::meta::Status;
use berth_model::reference::ImageReference;
use berth_model::tags::{self, PendingImport};
use berth_upstream::{ErrorKind as UpstreamKind, Keyring, Upstream, UpstreamError};
use futures::StreamExt;

use crate::services::images::TrustedImage;
use crate::services::{Caller, Catalog, Error, Result, namespace_not_found};

use lookup::{Lookup, Outcome, Patience, Run, lookup_all};
use request::{Wanted, WantedRepository, image_status, validate_import};
pub use schedule::ScheduledImport;

const ISI: &str = "imagestreamimports.image.openshift.io";
const ISM: &str = "imagestreammappings.image.openshift.io";
/// Tag annotations that choose the platform `Legacy` import mode keeps.
const PREFER_ARCH: &str = "importer.image.openshift.io/prefer-arch";
const PREFER_OS: &str = "importer.image.openshift.io/prefer-os";
/// How many images of one run are looked up at once; each registry's gate caps the
/// requests actually in flight.
const LOOKUPS_IN_FLIGHT: usize = 64;
/// How often a long import commits what it has so far, so that watchers see progress.
const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// How many streams the controller imports at once.
const STREAMS_IN_FLIGHT: usize = 16;

/// How one tag's check ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// The tag's digest did not move.
    Unchanged,
    /// The tag now points at this image.
    Imported(String),
    /// The reason and message of the failure.
    Failed(String, String),
}

impl CheckResult {
    fn of(checked: &Checked) -> CheckResult {
        match (&checked.outcome, &checked.pinned) {
            (_, Some(message)) => CheckResult::Failed(tags::immutable::IMMUTABLE_TAG_REASON.to_string(), message.clone()),
            (Ok(found), None) if checked.lookup.current.as_deref() == Some(found.image.metadata.name.as_str()) => CheckResult::Unchanged,
            (Ok(found), None) => CheckResult::Imported(found.image.metadata.name.clone()),
            (Err(err), None) => CheckResult::Failed(err.reason().to_string(), err.message.clone()),
        }
    }
}

/// One lookup of an import and how it ended: what the registry answered, and, when the
/// tag is immutable and what was found would have moved it, why it was left where it was.
struct Checked {
    lookup: Lookup,
    outcome: Outcome,
    pinned: Option<String>,
}

/// `(namespace, stream)`.
type StreamKey = (String, String);

/// Tags registry webhooks said changed in one stream, each with the digest named (`None`:
/// look it up), and which webhook said so last.
#[derive(Default)]
struct NotifiedTags {
    tags: std::collections::BTreeMap<String, Option<berth_model::Digest>>,
    cause: String,
}

/// Streams the controller is asked to look at again.
type Nudges = tokio::sync::mpsc::UnboundedReceiver<StreamKey>;

/// The importer, shared by the controller and the API. Cheap to clone.
#[derive(Clone)]
pub struct Importer {
    catalog: Catalog,
    upstream: Upstream,
    /// Tags an import is working on, `(namespace, stream, tag)`: the controller leaves
    /// them alone.
    claims: Arc<Mutex<HashSet<(String, String, String)>>>,
    /// Streams the controller should look at again, sent when claims are released.
    nudges: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    nudged: Arc<Mutex<Option<Nudges>>>,
    /// Tags registry webhooks asked to check, per stream, waiting out the coalescing window.
    coalescing: Arc<Mutex<HashMap<StreamKey, NotifiedTags>>>,
    /// Scheduled tags and when each is checked next.
    schedule: Arc<Mutex<std::collections::BTreeMap<schedule::TagKey, schedule::Scheduled>>>,
}

impl Importer {
    pub fn new(catalog: Catalog, upstream: Upstream) -> Importer {
        let (nudges, nudged) = tokio::sync::mpsc::unbounded_channel();
        Importer {
            catalog,
            upstream,
            claims: Arc::default(),
            nudges,
            nudged: Arc::new(Mutex::new(Some(nudged))),
            coalescing: Arc::default(),
            schedule: Arc::default(),
        }
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Creates an `ImageStreamImport`: looks up `spec.images` and `spec.repository` and,
    /// unless `spec.import` is false, imports them into the stream (creating it).
    pub async fn create_import(&self, caller: &Caller, namespace: &str, mut isi: ImageStreamImport) -> Result<ImageStreamImport> {
        caller.require(Action::Write(namespace), "create", ISI)?;
        let stream_name = isi.metadata.name.clone();
        let requested = validate_import(namespace, &isi)?;
        let (catalog, owned) = (self.catalog.clone(), namespace.to_string());
        let (keyring, existing) = blocking(move || {
            if catalog.load::<berth_model::core::Namespace>("", &owned)?.is_none() {
                return Err(namespace_not_found(&owned));
            }
            Ok((catalog.pull_keyring(&owned)?, catalog.load::<ImageStream>(&owned, &stream_name)?))
        })
        .await?;
        let stream_name = isi.metadata.name.clone();
        if isi.spec.import && existing.is_none() {
            // Said before any registry is asked; checked again where the stream is made.
            let creation = self.catalog.config().streams.implicit_create;
            crate::services::streams::check_implicit_create(caller, creation, namespace, &stream_name, "importing into it")?;
        }
        let run = Arc::new(self.run(keyring, caller.cause("import"), Patience::Patient));

        // A repository import becomes one lookup per tag, by OpenShift's priority, capped.
        let mut wanted: Vec<Wanted> = requested.images;
        let mut repository_status = None;
        if let Some(repository) = &requested.repository {
            match self.repository_tags(&run, repository).await {
                Ok((tags, additional)) => {
                    repository_status =
                        Some(RepositoryImportStatus { status: Status::success(), images: Vec::new(), additional_tags: additional });
                    wanted.extend(tags.into_iter().map(|tag| Wanted {
                        tag: tag.clone(),
                        reference: ImageReference { tag: Some(tag), digest: None, ..repository.reference.clone() },
                        import_policy: repository.import_policy.clone(),
                        reference_policy: repository.reference_policy.clone(),
                        include_manifest: repository.include_manifest,
                        from_repository: true,
                    }));
                }
                Err(err) => {
                    repository_status = Some(RepositoryImportStatus {
                        status: Status::failure(err.reason(), err.code(), err.message.clone()),
                        ..Default::default()
                    })
                }
            }
        }

        let results: Vec<(Wanted, Outcome, Option<String>)> = if isi.spec.import {
            self.import_wanted(caller, namespace, &stream_name, &run, wanted).await?
        } else {
            let lookups: Vec<Lookup> = wanted.iter().map(|w| w.lookup(existing.as_ref())).collect();
            // Results arrive in completion order; pair them with what was asked by tag.
            let mut outcomes: HashMap<String, Outcome> = lookup_all(&run, lookups).map(|(l, outcome)| (l.tag, outcome)).collect().await;
            wanted
                .into_iter()
                .map(|want| {
                    let outcome = outcomes.remove(&want.tag).expect("every lookup has an outcome");
                    (want, outcome, None)
                })
                .collect()
        };

        let mut images_status = Vec::new();
        let mut repository_images = Vec::new();
        for (want, outcome, pinned) in results {
            let status = image_status(&want, outcome, pinned);
            if want.from_repository { repository_images.push(status) } else { images_status.push(status) }
        }
        if let Some(repository) = &mut repository_status {
            repository.images = repository_images;
        }
        isi.status.images = images_status;
        isi.status.repository = repository_status;
        isi.status.import = if isi.spec.import {
            let (catalog, owned, name) = (self.catalog.clone(), namespace.to_string(), isi.metadata.name.clone());
            blocking(move || Ok(catalog.load::<ImageStream>(&owned, &name)?.map(|s| catalog.with_repositories(s)))).await?
        } else {
            None
        };
        isi.metadata.namespace = namespace.to_string();
        isi.metadata.creation_timestamp = Some(Time::now());
        isi.kind = "ImageStreamImport".to_string();
        isi.api_version = berth_model::IMAGE_API_VERSION.to_string();
        Ok(isi)
    }

    /// Lists a repository's tags, ordered by priority and split at the server's cap.
    async fn repository_tags(
        &self,
        run: &Run,
        repository: &WantedRepository,
    ) -> std::result::Result<(Vec<String>, Vec<String>), UpstreamError> {
        let session = run.session(&repository.reference, repository.import_policy.insecure);
        let mut tags = session.tags().await?;
        if tags.is_empty() {
            return Err(UpstreamError::new(UpstreamKind::NotFound, format!("the repository {} has no tags", session.repository().name())));
        }
        manifest::prioritize_tags(&mut tags);
        let cap = self.upstream.settings().max_images_bulk_imported_per_repository;
        let additional = if cap >= 0 && tags.len() > cap as usize { tags.split_off(cap as usize) } else { Vec::new() };
        Ok((tags, additional))
    }

    /// Imports `wanted` into the stream: the spec tags are written first (all at one new
    /// generation, so a watcher can see what is coming), then results are committed as
    /// they arrive. Each result comes with why its tag was left where it was, if it was
    /// (an immutable tag).
    async fn import_wanted(
        &self,
        caller: &Caller,
        namespace: &str,
        stream_name: &str,
        run: &Arc<Run>,
        wanted: Vec<Wanted>,
    ) -> Result<Vec<(Wanted, Outcome, Option<String>)>> {
        let tag_names: Vec<String> = wanted.iter().map(|w| w.tag.clone()).collect();
        let (_claim, _) = self.claim(namespace, stream_name, tag_names.clone(), Holders::TakeOver);
        let specs: Vec<TagReference> = wanted.iter().map(Wanted::spec_tag).collect();
        let (catalog, owned_namespace, owned_name) = (self.catalog.clone(), namespace.to_string(), stream_name.to_string());
        let (cause, caller) = (run.cause.clone(), caller.clone());
        let stream = blocking(move || catalog.set_import_tags(&caller, &owned_namespace, &owned_name, specs, &cause)).await?;
        let pending: HashMap<String, PendingImport> = tags::pending_imports(&stream).into_iter().map(|p| (p.tag.clone(), p)).collect();
        let lookups: Vec<Lookup> = wanted.iter().map(|w| w.lookup(Some(&stream))).collect();
        let mut checked: HashMap<String, Checked> = self
            .look_up_and_record(namespace, stream_name, run, lookups, pending)
            .await?
            .into_iter()
            .map(|checked| (checked.lookup.tag.clone(), checked))
            .collect();
        // Statuses follow the order of the request, not of completion.
        Ok(wanted
            .into_iter()
            .map(|want| {
                let checked = checked.remove(&want.tag).expect("every lookup has an outcome");
                (want, checked.outcome, checked.pinned)
            })
            .collect())
    }

    /// Looks every lookup up and records the outcomes of the `pending` tags on the stream,
    /// committing what has arrived every [`COMMIT_EVERY`] so that watchers see progress.
    /// Returns every lookup's outcome, in completion order.
    async fn look_up_and_record(
        &self,
        namespace: &str,
        stream_name: &str,
        run: &Arc<Run>,
        lookups: Vec<Lookup>,
        pending: HashMap<String, PendingImport>,
    ) -> Result<Vec<Checked>> {
        let mut results = Vec::new();
        let mut batch = Vec::new();
        let mut refused = BTreeMap::new();
        let mut last_commit = Instant::now();
        let mut outcomes = lookup_all(run, lookups);
        while let Some((lookup, outcome)) = outcomes.next().await {
            if let Some(pending) = pending.get(&lookup.tag).filter(|_| run.records(&outcome)) {
                batch.push((pending.clone(), outcome.clone()));
            }
            results.push((lookup, outcome));
            if last_commit.elapsed() >= COMMIT_EVERY {
                refused.extend(self.commit(namespace, stream_name, run, std::mem::take(&mut batch)).await?);
                last_commit = Instant::now();
            }
        }
        refused.extend(self.commit(namespace, stream_name, run, batch).await?);
        // Counted once recorded: a result an immutable tag refused is a failure.
        Ok(results
            .into_iter()
            .map(|(lookup, outcome)| {
                let pinned = refused.remove(&lookup.tag);
                let checked = Checked { lookup, outcome, pinned };
                let result = match CheckResult::of(&checked) {
                    CheckResult::Imported(_) => "imported",
                    CheckResult::Unchanged => "unchanged",
                    CheckResult::Failed(..) => "failed",
                };
                let registry = checked.lookup.reference.registry.clone();
                metrics::counter!(crate::metrics::IMPORTS, "registry" => registry, "result" => result).increment(1);
                checked
            })
            .collect())
    }

    /// Imports the pending DockerImage tags of one stream (the controller's work).
    pub async fn import_pending(&self, namespace: &str, stream_name: &str) -> Result<()> {
        let cause = "import after the tag was set";
        self.import_selected(namespace, stream_name, None, cause, Patience::Patient).await.map(|_| ())
    }

    /// Looks `tags` of a stream up again now, at their current spec (scheduled imports and
    /// registry webhooks): a tag whose digest did not move costs one request and keeps its
    /// history; one that moved gets a new TagEvent, caused by `cause`. Returns each tag's
    /// result (a [`Patience::Quick`] check records nothing on a tag whose registry failed
    /// transiently; its result still says it failed).
    async fn check_tags(
        &self,
        namespace: &str,
        stream_name: &str,
        tags: Vec<String>,
        cause: &str,
        patience: Patience,
    ) -> Result<Vec<(String, CheckResult)>> {
        self.import_selected(namespace, stream_name, Some(tags), cause, patience).await
    }

    /// Imports the chosen tags of one stream (`None`: the pending ones), skipping tags
    /// another import is working on, and commits results as they arrive.
    async fn import_selected(
        &self,
        namespace: &str,
        stream_name: &str,
        chosen: Option<Vec<String>>,
        cause: &str,
        patience: Patience,
    ) -> Result<Vec<(String, CheckResult)>> {
        let (catalog, owned_namespace, owned_name) = (self.catalog.clone(), namespace.to_string(), stream_name.to_string());
        let loaded = blocking(move || {
            let Some(stream) = catalog.load::<ImageStream>(&owned_namespace, &owned_name)? else {
                return Ok(None);
            };
            Ok(Some((catalog.pull_keyring(&owned_namespace)?, stream)))
        })
        .await?;
        let Some((keyring, stream)) = loaded else {
            return Ok(Vec::new());
        };
        let pending_only = chosen.is_none();
        let selected = match chosen {
            None => tags::pending_imports(&stream),
            Some(names) => names.iter().filter_map(|tag| tags::import_of(&stream, tag)).collect(),
        };
        // Tags another import holds are left to it; the rest are held by this one.
        let (_claim, held) = self.claim(namespace, stream_name, selected.iter().map(|p| p.tag.clone()).collect(), Holders::LeaveAlone);
        let pending: Vec<PendingImport> = selected.into_iter().filter(|p| held.contains(&p.tag)).collect();
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        // The stream was read before the claim: an import that just finished may have
        // settled some of these tags meanwhile. Read it again now that nobody else can.
        let (catalog, owned_namespace, owned_name) = (self.catalog.clone(), namespace.to_string(), stream_name.to_string());
        let Some(stream) = blocking(move || catalog.load::<ImageStream>(&owned_namespace, &owned_name)).await? else {
            return Ok(Vec::new());
        };
        let pending: Vec<PendingImport> = if pending_only {
            let still = tags::pending_imports(&stream);
            pending.into_iter().filter(|p| still.contains(p)).collect()
        } else {
            pending.into_iter().filter(|p| tags::still_pending(&stream, p)).collect()
        };
        let run = Arc::new(self.run(keyring, cause.to_string(), patience));
        let lookups: Vec<Lookup> = pending
            .iter()
            .map(|p| {
                let policy = stream.spec_tag(&p.tag).map(|t| t.import_policy.clone()).unwrap_or_default();
                Lookup::new(Some(&stream), &p.tag, p.reference.clone(), &policy)
            })
            .collect();
        let by_tag: HashMap<String, PendingImport> = pending.into_iter().map(|p| (p.tag.clone(), p)).collect();
        let outcomes = self.look_up_and_record(namespace, stream_name, &run, lookups, by_tag).await?;
        Ok(outcomes.into_iter().map(|checked| (checked.lookup.tag.clone(), CheckResult::of(&checked))).collect())
    }

    /// Stores the images fetched for `results` and records each result on its tag, in one
    /// transaction. A result whose tag changed meanwhile is dropped. Returns the tags left
    /// where they were because they are immutable, with why.
    async fn commit(
        &self,
        namespace: &str,
        stream_name: &str,
        run: &Run,
        results: Vec<(PendingImport, Outcome)>,
    ) -> Result<BTreeMap<String, String>> {
        if results.is_empty() {
            return Ok(BTreeMap::new());
        }
        for (pending, outcome) in &results {
            match outcome {
                Ok(found) => {
                    tracing::debug!(namespace, stream = stream_name, tag = %pending.tag, image = %found.image.metadata.name, "looked up")
                }
                Err(err) => {
                    tracing::warn!(namespace, stream = stream_name, tag = %pending.tag, reason = err.reason(), error = %err.message, "import failed")
                }
            }
        }
        let mut images: Vec<Image> = Vec::new();
        {
            let mut fetched = run.fetched.lock().expect("fetched images lock");
            for (_, outcome) in &results {
                if let Ok(found) = outcome {
                    for image in std::iter::once(&found.image).chain(&found.manifests) {
                        if let Some(new) = fetched.remove(&image.metadata.name) {
                            images.push(new);
                        }
                    }
                }
            }
            // A Legacy import keeps the list it chose from too, so that the next HEAD
            // that finds the same list needs no further request.
            let lists: Vec<String> =
                fetched.iter().filter(|(_, image)| !image.docker_image_manifests.is_empty()).map(|(name, _)| name.clone()).collect();
            images.extend(lists.into_iter().filter_map(|name| fetched.remove(&name)));
        }
        let (catalog, owned_namespace, owned_name, cause) =
            (self.catalog.clone(), namespace.to_string(), stream_name.to_string(), run.cause.clone());
        blocking(move || catalog.record_imports(&owned_namespace, &owned_name, images, results, &cause)).await
    }

    /// The Image an ImageStreamMapping from a tenant names, read the way an import reads
    /// it: berth's own copy when it has the digest; else the manifest (the one the mapping
    /// carries, when it hashes to the digest, or fetched by digest) and its config from the
    /// registry of the mapping's `dockerImageReference`, with the namespace's pull secrets
    /// and under the server's registry settings. Nothing else the mapping says of the
    /// image (layers, metadata, labels) is taken.
    pub async fn read_mapped_image(&self, namespace: &str, claimed: &Image) -> Result<TrustedImage> {
        let invalid =
            |field: &str, message: String| Error::invalid(ISM, &claimed.metadata.name, vec![berth_model::FieldError::new(field, message)]);
        let digest: berth_model::Digest = claimed
            .metadata
            .name
            .parse()
            .map_err(|err| invalid("image.metadata.name", format!("{err}: the name of an image is its digest")))?;
        let reference = ImageReference::parse(&claimed.docker_image_reference).map_err(|err| invalid("image.dockerImageReference", err))?;
        let (catalog, owned) = (self.catalog.clone(), namespace.to_string());
        let keyring = blocking(move || catalog.pull_keyring(&owned)).await?;
        let run = self.run(keyring, String::new(), Patience::Patient);
        let read = async {
            if let Some(known) = run.known(&digest)? {
                return Ok(known);
            }
            let session = run.session(&reference, false);
            if claimed.docker_image_manifest.is_empty() {
                return run.image(&session, &digest).await;
            }
            let bytes = bytes::Bytes::from(claimed.docker_image_manifest.clone().into_bytes());
            let actual = digest.recompute(&bytes);
            if actual != digest {
                return Err(UpstreamError::new(
                    UpstreamKind::DigestMismatch,
                    format!("image.dockerImageManifest hashes to {actual}, not {digest}"),
                ));
            }
            let media_type = claimed.docker_image_manifest_media_type.clone();
            run.build(&session, berth_upstream::FetchedManifest { digest: digest.clone(), media_type, bytes }).await
        };
        match read.await {
            Ok(image) => Ok(TrustedImage::verified(image)),
            Err(err) if err.kind == UpstreamKind::Forbidden => Err(Error::forbidden(err.message)),
            Err(err) if err.is_transient() => Err(Error::new(
                crate::services::ErrorKind::Unavailable,
                format!("berth could not read image {digest} from {}: {}; try again", reference.registry, err.message),
            )),
            Err(err) => Err(invalid(
                "image.dockerImageReference",
                format!("berth reads the image a mapping names itself, and could not: {}", err.message),
            )),
        }
    }

    fn run(&self, keyring: Keyring, cause: String, patience: Patience) -> Run {
        Run {
            cause,
            patience,
            upstream: self.upstream.clone(),
            catalog: self.catalog.clone(),
            keyring,
            sessions: Mutex::default(),
            images: Mutex::default(),
            configs: Mutex::default(),
            fetched: Mutex::default(),
        }
    }

    /// Marks `tags` as being imported until the guard drops (then the controller looks at
    /// the stream again in case something is still pending). Returns the guard and the
    /// tags it holds: all of them, or with [`Holders::LeaveAlone`] those no other import
    /// holds.
    fn claim(&self, namespace: &str, stream: &str, tags: Vec<String>, holders: Holders) -> (ClaimGuard, Vec<String>) {
        let mut claims = self.claims.lock().expect("claims lock");
        let key = |tag: &String| (namespace.to_string(), stream.to_string(), tag.clone());
        let held: Vec<String> = match holders {
            Holders::TakeOver => tags,
            Holders::LeaveAlone => tags.into_iter().filter(|t| !claims.contains(&key(t))).collect(),
        };
        let keys: Vec<(String, String, String)> = held.iter().map(key).collect();
        claims.extend(keys.iter().cloned());
        (ClaimGuard { claims: Arc::clone(&self.claims), keys, nudges: self.nudges.clone(), nudged: Arc::clone(&self.nudged) }, held)
    }
}

/// What a claim does about tags another import already holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holders {
    /// Hold them too: an ImageStreamImport must answer for every tag it was asked for.
    TakeOver,
    /// Leave them to that import.
    LeaveAlone,
}

/// Releases claimed tags and nudges the controller, when it runs in this server.
struct ClaimGuard {
    claims: Arc<Mutex<HashSet<(String, String, String)>>>,
    keys: Vec<(String, String, String)>,
    nudges: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    /// Empty while the controller holds the receiver (it runs here).
    nudged: Arc<Mutex<Option<Nudges>>>,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let mut claims = self.claims.lock().expect("claims lock");
        for key in &self.keys {
            claims.remove(key);
        }
        let controller_runs = self.nudged.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_none();
        if let Some((namespace, stream, _)) = self.keys.first().filter(|_| controller_runs) {
            let _ = self.nudges.send((namespace.clone(), stream.clone()));
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|err| Error::internal(format!("the import was interrupted: {err}")))?
}
