//! Lifecycle: usage reports (`adm top`) and pruning, both from the storage index, never a
//! rebuild of the world.
//!
//! A prune makes its plan (`berth_model::prune::plan`) from the index, then, when
//! confirmed, removes the revisions it names (one transaction per stream, only entries
//! still there and never a tag's current image), then the Images no stream refers to any
//! longer (checked again in the transaction that deletes each), then — cluster-wide prunes
//! only — sweeps the blob store of what no Image holds. Pushes, pulls and imports go on
//! meanwhile: see `berth_store::BlobStore::sweep` for why a blob in use is never lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use berth_model::access::Action;
use berth_model::image::Image;
use berth_model::imagestream::ImageStream;
use berth_model::prune::{
    ImagePrune, ImagePruneStatus, ImagePruner, PRUNER_NAME, PruneFacts, PruneOptions, PrunePlan, PrunerRun, StreamHistory,
};
use berth_model::usage::{ImageStreamTop, ImageTop, ImageUsage, NamespaceTop, TopList};
use berth_model::{BERTH_API_VERSION, Digest, FieldError, Time};
use berth_store::{ListQuery, Precondition, transact};

use crate::services::storage::StorageIndex;
use crate::services::{Caller, Catalog, Error, Resource, Result};

/// What the pruner should do.
pub enum PrunerDue {
    /// No pruner, or suspended.
    Idle,
    Now(Box<ImagePruner>),
    At(Time),
}

/// Images deleted per transaction.
const IMAGE_BATCH: usize = 500;
/// Streams whose history is pruned per transaction.
const STREAM_BATCH: usize = 50;

impl Catalog {
    /// The storage index, brought up to the store's current revision.
    pub fn storage(&self) -> Result<&StorageIndex> {
        self.storage.sync(&**self.store())?;
        Ok(&self.storage)
    }

    /// `berth adm top imagestreams`: each stream the caller may read, with the storage of
    /// its distinct layers, its images and layers.
    pub fn top_imagestreams(&self, caller: &Caller, namespace: Option<&str>) -> Result<TopList<ImageStreamTop>> {
        if let Some(namespace) = namespace {
            caller.require(Action::Read(namespace), "list", "imagestreams.image.openshift.io")?;
        }
        let items = self.storage()?.read(|state| {
            let mut rows = Vec::new();
            for ((ns, name), tags) in &state.streams {
                if namespace.is_some_and(|wanted| wanted != &**ns) || !caller.grant.allows(Action::Read(ns)) {
                    continue;
                }
                let images: HashSet<&str> = tags.iter().flat_map(|t| t.items.iter().map(|(image, _)| &**image)).collect();
                let mut layers: Vec<u32> = images.iter().flat_map(|image| state.layers_of(image)).collect();
                layers.sort_unstable();
                layers.dedup();
                rows.push(ImageStreamTop {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    storage: state.size_of_layers(&layers),
                    images: images.len() as u64,
                    layers: layers.len() as u64,
                });
            }
            rows
        });
        let mut items = items;
        items.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(TopList { kind: "ImageStreamTopList".to_string(), api_version: BERTH_API_VERSION.to_string(), items })
    }

    /// Each namespace the caller may read with its image streams, images, layers and the
    /// storage of its distinct layers (`berth describe namespace`).
    pub fn top_namespaces(&self, caller: &Caller, namespace: Option<&str>) -> Result<TopList<NamespaceTop>> {
        if let Some(namespace) = namespace {
            caller.require(Action::Read(namespace), "get", "namespaces")?;
        }
        let mut items: Vec<NamespaceTop> = self.storage()?.read(|state| {
            state
                .namespace_names()
                .filter(|ns| namespace.is_none_or(|wanted| wanted == *ns) && caller.grant.allows(Action::Read(ns)))
                .map(|ns| {
                    let figures = state.namespace(ns);
                    NamespaceTop {
                        name: ns.to_string(),
                        imagestreams: figures.imagestreams,
                        images: figures.images,
                        layers: figures.layers,
                        storage: figures.storage,
                    }
                })
                .collect()
        });
        items.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(TopList { kind: "NamespaceTopList".to_string(), api_version: BERTH_API_VERSION.to_string(), items })
    }

    /// `berth adm top images`: the Images the caller's streams name (every Image for a
    /// cluster admin, named or not), with their tags, parents, usage and storage.
    pub fn top_images(&self, caller: &Caller, namespace: Option<&str>) -> Result<TopList<ImageTop>> {
        if let Some(namespace) = namespace {
            caller.require(Action::Read(namespace), "list", "imagestreams.image.openshift.io")?;
        }
        let everything = namespace.is_none() && caller.grant.allows(Action::AdministerCluster);
        let usage = self.usage_by_image()?;
        self.lineage_index().sync(&**self.store())?;
        let mut items: Vec<ImageTop> = self.storage()?.read(|state| {
            let mut tags: HashMap<&str, Vec<String>> = HashMap::new();
            for ((ns, name), histories) in &state.streams {
                if namespace.is_some_and(|wanted| wanted != &**ns) || !caller.grant.allows(Action::Read(ns)) {
                    continue;
                }
                for history in histories {
                    for (position, (image, _)) in history.items.iter().enumerate() {
                        let latest = if position == 0 { " (latest)" } else { "" };
                        tags.entry(&**image).or_default().push(format!("{ns}/{name}:{}{latest}", history.tag));
                    }
                }
            }
            let mut rows = Vec::new();
            for (name, image) in &state.images {
                let tags = tags.remove(&**name);
                if tags.is_none() && !everything {
                    continue;
                }
                let layers = state.layers_of(name);
                let parents = match name.parse::<Digest>() {
                    Ok(digest) => self
                        .lineage_index()
                        .read(|index| index.ancestors(&digest).unwrap_or_default().into_iter().map(|r| r.image.to_string()).collect()),
                    Err(_) => Vec::new(),
                };
                let mut image_stream_tags = tags.unwrap_or_default();
                image_stream_tags.sort();
                image_stream_tags.dedup();
                rows.push(ImageTop {
                    name: name.to_string(),
                    image_stream_tags,
                    parents,
                    usage: usage.get(&**name).cloned().unwrap_or_default(),
                    managed: image.managed,
                    storage: state.size_of_layers(&layers),
                    layers: layers.len() as u64,
                });
            }
            rows
        });
        // A tenant sees only the workloads of the namespaces it may read.
        if !caller.grant.allows(Action::AdministerCluster) {
            for row in &mut items {
                row.usage.retain(|w| w.split('/').nth(1).is_some_and(|ns| caller.grant.allows(Action::Read(ns))));
            }
        }
        items.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(TopList { kind: "ImageTopList".to_string(), api_version: BERTH_API_VERSION.to_string(), items })
    }

    /// The workloads admission saw with each image, `cluster/namespace/Kind/name`.
    fn usage_by_image(&self) -> Result<HashMap<String, Vec<String>>> {
        let scan = self.store().scan(&ListQuery { resource: ImageUsage::RESOURCE.to_string(), ..ListQuery::default() })?;
        let mut usage = HashMap::new();
        for stored in scan.items {
            let record = ImageUsage::decode(&stored?)?;
            if !record.workloads.is_empty() {
                let seen = record.workloads.iter().map(|w| format!("{}/{}/{}/{}", w.cluster, w.namespace, w.kind, w.name)).collect();
                usage.insert(record.metadata.name, seen);
            }
        }
        Ok(usage)
    }

    /// Makes a prune's plan and, unless `dry_run`, carries it out (not the blob sweep,
    /// which the HTTP edge runs after it: it is async).
    pub fn prune_images(&self, caller: &Caller, mut prune: ImagePrune, dry_run: bool) -> Result<ImagePrune> {
        let options = prune.spec.clone();
        let scope = options.namespace.clone();
        if scope.is_empty() {
            caller.require(Action::AdministerCluster, "create", "imageprunes.berth.dev")?;
        } else {
            caller.require(Action::Write(&scope), "create", "imageprunes.berth.dev")?;
            self.require::<berth_model::core::Namespace>("", &scope)?;
        }
        let keep = berth_model::duration::parse_duration(&options.keep_younger_than)
            .map_err(|message| Error::invalid("imageprunes.berth.dev", "", vec![FieldError::new("spec.keepYoungerThan", message)]))?;
        let started = Time::now();
        let clock = std::time::Instant::now();
        let plan = self.prune_plan(&options, keep, started)?;
        let plan_seconds = clock.elapsed().as_secs_f64();
        let mut status = ImagePruneStatus { dry_run, started: Some(started), plan_seconds, ..ImagePruneStatus::default() };
        if !dry_run {
            status.removed_revisions = self.remove_revisions(caller, &plan)?;
            status.removed_images = self.remove_images(&plan)?;
            status.finished = Some(Time::now());
        }
        tracing::info!(
            token = %caller.token, namespace = %scope, dry_run, revisions = plan.revisions.len(), images = plan.images.len(),
            freed_bytes = plan.freed_bytes, plan_seconds, "image prune"
        );
        status.plan = plan;
        prune.kind = "ImagePrune".to_string();
        prune.api_version = BERTH_API_VERSION.to_string();
        prune.status = status;
        Ok(prune)
    }

    /// The plan of a prune, from the storage index and the usage records.
    pub fn prune_plan(&self, options: &PruneOptions, keep: std::time::Duration, now: Time) -> Result<PrunePlan> {
        let in_use: HashSet<String> = self.usage_by_image()?.into_keys().collect();
        let limits = self.size_limits(options)?;
        let in_use = |image: &str| in_use.contains(image);
        let size_limit = |namespace: &str| limits.get(namespace).copied();
        Ok(self.storage()?.read(|state| {
            let facts =
                PruneFacts { now, images: &state.images, layer_sizes: &state.layer_sizes, in_use: &in_use, size_limit: &size_limit };
            let streams = state.streams.iter().map(|((namespace, name), tags)| StreamHistory { namespace, name, tags });
            berth_model::prune::plan(options, keep, &facts, streams)
        }))
    }

    /// Each namespace's per-image storage limit, when pruning over it.
    fn size_limits(&self, options: &PruneOptions) -> Result<HashMap<String, u64>> {
        let _ = options;
        Ok(HashMap::new())
    }

    /// Removes the plan's revisions, one transaction per stream: only entries still in
    /// the history, and never a tag's current image (a tag may have moved since).
    fn remove_revisions(&self, caller: &Caller, plan: &PrunePlan) -> Result<u64> {
        type Entries = Vec<(String, String, Time)>;
        let mut by_stream: BTreeMap<(&str, &str), Entries> = BTreeMap::new();
        for r in &plan.revisions {
            by_stream.entry((&r.namespace, &r.stream)).or_default().push((r.tag.clone(), r.image.clone(), r.created));
        }
        let streams: Vec<((String, String), Entries)> =
            by_stream.into_iter().map(|((ns, name), e)| ((ns.to_string(), name.to_string()), e)).collect();
        let mut removed = 0;
        let cause = caller.cause("prune");
        // Several streams per transaction: fewer commits, each still short for the writes
        // that wait behind it.
        for batch in streams.chunks(STREAM_BATCH) {
            let (batch, cause) = (batch.to_vec(), cause.clone());
            removed += transact(&**self.store(), move |txn| {
                let mut count = 0;
                for ((namespace, name), entries) in &batch {
                    let Some(stored) = txn.get(&ImageStream::key(namespace, name))? else { continue };
                    let mut stream = ImageStream::decode(&stored)?;
                    let mut removed_here = 0;
                    for list in &mut stream.status.tags {
                        let before = list.items.len();
                        let mut position = 0;
                        list.items.retain(|event| {
                            let goes = position > 0
                                && entries
                                    .iter()
                                    .any(|(tag, image, created)| *tag == list.tag && *image == event.image && *created == event.created);
                            position += 1;
                            !goes
                        });
                        removed_here += (before - list.items.len()) as u64;
                    }
                    if removed_here > 0 {
                        crate::services::streams::put_stream(txn, &mut stream, Precondition::Revision(stored.revision), &cause)?;
                        count += removed_here;
                    }
                }
                Ok::<_, Error>(count)
            })?;
        }
        Ok(removed)
    }

    /// Deletes the plan's Images that no stream refers to now, in batches.
    fn remove_images(&self, plan: &PrunePlan) -> Result<u64> {
        let mut removed = 0;
        for batch in plan.images.chunks(IMAGE_BATCH) {
            let names: Vec<String> = batch.iter().map(|i| i.name.clone()).collect();
            removed += transact(&**self.store(), move |txn| {
                let mut count = 0;
                for name in &names {
                    if !txn.referrers_with_prefix(ImageStream::RESOURCE, name)?.is_empty() {
                        continue;
                    }
                    let key = Image::key("", name);
                    if txn.get(&key)?.is_some() {
                        txn.delete(&key, Precondition::Any)?;
                        count += 1;
                    }
                }
                Ok::<_, Error>(count)
            })?;
        }
        Ok(removed)
    }

    pub fn get_pruner(&self, caller: &Caller, name: &str) -> Result<ImagePruner> {
        caller.require(Action::ReadCluster, "get", ImagePruner::QUALIFIED)?;
        self.require::<ImagePruner>("", name)
    }

    pub fn list_pruners(&self, caller: &Caller, options: &crate::services::ListOptions) -> Result<crate::services::LazyList<ImagePruner>> {
        caller.require(Action::ReadCluster, "list", ImagePruner::QUALIFIED)?;
        self.list_objects::<ImagePruner>(None, options, |_| true)
    }

    /// Creates or replaces the pruner (cluster admins); its status (next run, past runs)
    /// is the server's.
    pub fn put_pruner(&self, caller: &Caller, name: Option<&str>, pruner: ImagePruner) -> Result<ImagePruner> {
        self.put_cluster_object_keeping(caller, name, pruner, ImagePruner::validate, |written, stored| {
            written.status = stored.status.clone();
        })
    }

    /// Whether the pruner's run is due at `now` or when it will be (after setting its
    /// next run in its status, when that no longer follows from its schedule).
    pub(crate) fn pruner_due(&self, now: Time) -> Result<PrunerDue> {
        let Some(pruner) = self.load::<ImagePruner>("", PRUNER_NAME)? else { return Ok(PrunerDue::Idle) };
        if pruner.spec.suspend {
            return Ok(PrunerDue::Idle);
        }
        let since = pruner.status.runs.first().map(|run| run.started).or(pruner.metadata.creation_timestamp).unwrap_or(now);
        let Ok(next) = berth_model::prune::next_run(&pruner.spec.schedule, since) else { return Ok(PrunerDue::Idle) };
        if next <= now {
            return Ok(PrunerDue::Now(Box::new(pruner)));
        }
        if pruner.status.next_run != Some(next) {
            self.update_pruner_status(move |p| p.status.next_run = Some(next))?;
        }
        Ok(PrunerDue::At(next))
    }

    pub(crate) fn record_pruner_run(&self, run: PrunerRun) -> Result<()> {
        self.update_pruner_status(move |pruner| {
            let next = berth_model::prune::next_run(&pruner.spec.schedule, run.started).ok();
            pruner.record(run.clone());
            pruner.status.next_run = next;
        })
    }

    fn update_pruner_status(&self, change: impl Fn(&mut ImagePruner) + Send + 'static) -> Result<()> {
        transact(&**self.store(), move |txn| {
            let key = ImagePruner::key("", PRUNER_NAME);
            let Some(stored) = txn.get(&key)? else { return Ok::<_, Error>(()) };
            let mut pruner = ImagePruner::decode(&stored)?;
            change(&mut pruner);
            txn.put(&key, &pruner.encode(), &[], Precondition::Revision(stored.revision))?;
            Ok(())
        })
    }

    /// Every blob an Image holds (its layers and config): what the blob sweep keeps.
    pub fn live_blobs(&self) -> Result<HashSet<Arc<str>>> {
        Ok(self.storage()?.read(|state| {
            let mut live: HashSet<Arc<str>> = HashSet::with_capacity(state.layer_sizes.len());
            for image in state.images.values().chain(state.gone.values()) {
                live.extend(image.layers.iter().map(|&layer| Arc::clone(&state.layer_names[layer as usize])));
                live.extend(image.config.iter().cloned());
            }
            live
        }))
    }
}
