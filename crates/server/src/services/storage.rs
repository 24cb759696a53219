//! Storage: what each namespace, stream and Image holds, counted on unique layers, kept in
//! memory and moved forward by the store's event log (as the lineage index is), so that
//! `adm top`, a namespace's figures, quotas and the prune plan never rebuild the world.
//!
//! A namespace holds every Image its streams' tag histories name (a manifest list holds
//! its children too), and its storage is the sum of the sizes of the distinct layers of
//! those Images: a layer two of its images share counts once; a layer other namespaces
//! also hold counts here as well (the footprint is the namespace's own, whoever else
//! holds it: otherwise what one tenant may store would depend on what others delete).
//! The index is rebuilt from a scan of the Images and streams when first needed, so the
//! figures after a restart are the figures before it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use berth_model::image::Image;
use berth_model::imagestream::ImageStream;
use berth_model::prune::{PruneImage, TagHistory};
use berth_model::quota::ImageLimits;
use berth_store::{EventType, ListQuery, MetadataStore, StoreError, StoredObject, WriteTxn};

use crate::services::quotas::image_limits_in;
use crate::services::registry::MANAGED_ANNOTATION;
use crate::services::{Catalog, Error, Resource, Result};

/// Events read from the log at a time.
const EVENT_BATCH: usize = 1000;

/// The storage figures of every namespace, stream and Image, as of a store revision.
#[derive(Default)]
pub struct StorageIndex {
    state: RwLock<State>,
    /// Bytes of layers that writes the index has not seen yet added to each namespace,
    /// with the revision of each write: a quota check counts them until the index
    /// reaches that revision (writes committed together in one group otherwise each
    /// see the namespace without the others).
    pending: Mutex<HashMap<String, Vec<(u64, u64)>>>,
}

#[derive(Default)]
pub(crate) struct State {
    loaded: bool,
    /// The revisions the Images and the streams are read to.
    images_revision: u64,
    streams_revision: u64,
    layer_ids: HashMap<Arc<str>, u32>,
    pub(crate) layer_sizes: Vec<u64>,
    pub(crate) layer_names: Vec<Arc<str>>,
    /// Every stored Image.
    pub(crate) images: HashMap<Arc<str>, PruneImage>,
    /// Images deleted while a namespace still held them (their layers are still counted).
    pub(crate) gone: HashMap<Arc<str>, PruneImage>,
    /// Every stream's tag histories, by namespace and name.
    pub(crate) streams: HashMap<(Arc<str>, Arc<str>), Vec<TagHistory>>,
    namespaces: HashMap<Arc<str>, Holdings>,
    /// How many namespaces hold each Image (stored or not), so that no change looks at
    /// every namespace to learn whether one still holds it.
    holders: HashMap<Arc<str>, u32>,
}

/// What one namespace holds.
#[derive(Default)]
struct Holdings {
    streams: u64,
    /// Images, with how many of the namespace's streams (or held lists) name each.
    images: HashMap<Arc<str>, u32>,
    /// Layers, with how many held Images have each.
    layers: HashMap<u32, u32>,
    bytes: u64,
}

/// A namespace's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceStorage {
    pub imagestreams: u64,
    pub images: u64,
    pub layers: u64,
    /// Bytes of its distinct layers.
    pub storage: u64,
}

impl StorageIndex {
    /// Brings the index up to the store's current revision.
    pub fn sync(&self, store: &dyn MetadataStore) -> Result<()> {
        let current = store.current_revision()?;
        {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if state.loaded && state.images_revision >= current && state.streams_revision >= current {
                return Ok(());
            }
        }
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if !state.loaded {
            load(&mut state, store)?;
        }
        match follow(&mut state, store, current) {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::info!("the event log moved past the storage index; reloading it");
                load(&mut state, store)?;
                follow(&mut state, store, current).map(|_| ())
            }
            Err(err) => Err(err),
        }
    }

    /// Runs `f` over the index as it is now (call `sync` first).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn namespace(&self, namespace: &str) -> NamespaceStorage {
        self.read(|state| state.namespace(namespace))
    }

    /// Bytes written to `namespace` that the index has not seen yet.
    fn pending(&self, namespace: &str) -> u64 {
        let seen = self.read(|state| state.streams_revision);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|_, writes| {
            writes.retain(|(revision, _)| *revision > seen);
            !writes.is_empty()
        });
        pending.get(namespace).map_or(0, |writes| writes.iter().map(|(_, bytes)| bytes).sum())
    }

    fn reserve(&self, namespace: &str, revision: u64, bytes: u64) {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).entry(namespace.to_string()).or_default().push((revision, bytes));
    }
}

/// Quotas and limits, checked on every stream write (`streams::put_stream`) in its
/// transaction: the ResourceQuotas and LimitRanges of the namespace as the transaction
/// sees them, the stream before and after, the Images the write adds as the transaction
/// sees them, and what the namespace holds from the index (synced first) plus what
/// writes not yet in it added. A namespace without quotas or limits costs two indexed
/// reads.
#[derive(Clone)]
pub(crate) struct QuotaGate {
    index: Arc<StorageIndex>,
    store: Arc<dyn MetadataStore>,
}

impl Catalog {
    pub(crate) fn quota_gate(&self) -> QuotaGate {
        QuotaGate { index: Arc::clone(&self.storage), store: Arc::clone(self.store()) }
    }
}

impl QuotaGate {
    /// Refuses (403) a write of `new` (over `old`) that goes over a quota or limit of its
    /// namespace; otherwise returns the bytes of layers it adds to the namespace, which
    /// the caller reserves once written ([`QuotaGate::written`]).
    pub(crate) fn check(&self, txn: &mut dyn WriteTxn, old: Option<&ImageStream>, new: &ImageStream, cause: &str) -> Result<u64> {
        let limits = image_limits_in(txn, &new.metadata.namespace)?;
        self.check_within(txn, &limits, old, new, cause, &|_| None)
    }

    /// [`QuotaGate::check`] against `limits` already read, with `unstored` giving the
    /// layers of Images the transaction has not stored yet (an import's).
    pub(crate) fn check_within(
        &self,
        txn: &mut dyn WriteTxn,
        limits: &ImageLimits,
        old: Option<&ImageStream>,
        new: &ImageStream,
        cause: &str,
        unstored: &dyn Fn(&str) -> Option<Layers>,
    ) -> Result<u64> {
        let namespace = new.metadata.namespace.as_str();
        if limits.is_empty() {
            return Ok(0);
        }
        if old.is_none() && limits.imagestreams.is_some() {
            let count = txn.list(ImageStream::RESOURCE, Some(namespace))?.len() as u64 + 1;
            limits.check_streams(namespace, &new.metadata.name, count).map_err(Error::forbidden)?;
        }
        let before: HashSet<&str> = old.map(|o| o.referenced_images().into_iter().collect()).unwrap_or_default();
        let mut added: Vec<(String, Vec<(String, u64)>)> = Vec::new();
        for image in new.referenced_images().into_iter().filter(|image| !before.contains(image)) {
            let layers = match unstored(image) {
                Some(layers) => layers,
                None => layers_in(txn, image)?,
            };
            added.push((image.to_string(), layers));
        }
        let sizes: Vec<(String, u64)> = added
            .iter()
            .map(|(image, layers)| {
                let distinct: HashMap<&str, u64> = layers.iter().map(|(digest, size)| (digest.as_str(), *size)).collect();
                (image.clone(), distinct.values().sum())
            })
            .collect();
        limits.check_stream(old, new, &sizes).map_err(Error::forbidden)?;
        if limits.storage.is_none() || added.is_empty() {
            return Ok(0);
        }
        self.index.sync(&*self.store)?;
        let (used, adds) = self.index.read(|state| {
            let mut seen = HashSet::new();
            let adds: u64 = added
                .iter()
                .flat_map(|(_, layers)| layers)
                .filter(|(digest, _)| seen.insert(digest.as_str()))
                .filter(|(digest, _)| !state.layer_ids.get(digest.as_str()).is_some_and(|&id| state.holds_layer(namespace, id)))
                .map(|(_, size)| size)
                .sum();
            (state.namespace(namespace).storage, adds)
        });
        let what = format!("this write to image stream {namespace}/{} ({cause})", new.metadata.name);
        limits.check_storage(namespace, &what, used + self.index.pending(namespace), adds).map_err(Error::forbidden)?;
        Ok(adds)
    }

    /// Counts what a write added (see [`QuotaGate::check`]) until the index sees it.
    pub(crate) fn written(&self, namespace: &str, revision: u64, added: u64) {
        if added > 0 {
            self.index.reserve(namespace, revision, added);
        }
    }
}

/// Layers by digest, with their sizes.
pub(crate) type Layers = Vec<(String, u64)>;

/// The layers of an Image as a transaction sees it, and of the Images it lists.
fn layers_in(txn: &mut dyn WriteTxn, digest: &str) -> Result<Layers> {
    let mut read = |digest: &str| -> Result<Option<Image>> { txn.get(&Image::key("", digest))?.map(|s| Image::decode(&s)).transpose() };
    let Some(image) = read(digest)? else { return Ok(Vec::new()) };
    layers_with_children(&image, |child| read(child))
}

/// An Image's layers with their sizes, and those of the Images it lists (found with
/// `child`), as the quota counts them.
pub(crate) fn layers_with_children(image: &Image, mut child: impl FnMut(&str) -> Result<Option<Image>>) -> Result<Layers> {
    let own = |image: &Image| image.docker_image_layers.iter().map(|l| (l.name.clone(), l.size.max(0) as u64)).collect::<Layers>();
    let mut layers = own(image);
    for listed in &image.docker_image_manifests {
        if let Some(listed) = child(&listed.digest)? {
            layers.extend(own(&listed));
        }
    }
    Ok(layers)
}

impl State {
    pub(crate) fn namespace(&self, namespace: &str) -> NamespaceStorage {
        match self.namespaces.get(namespace) {
            Some(held) => NamespaceStorage {
                imagestreams: held.streams,
                images: held.images.len() as u64,
                layers: held.layers.len() as u64,
                storage: held.bytes,
            },
            None => NamespaceStorage::default(),
        }
    }

    pub(crate) fn namespace_names(&self) -> impl Iterator<Item = &str> {
        self.namespaces.keys().map(|ns| &**ns)
    }

    /// Whether the namespace's Images have the layer `id`.
    fn holds_layer(&self, namespace: &str, layer: u32) -> bool {
        self.namespaces.get(namespace).is_some_and(|held| held.layers.contains_key(&layer))
    }

    /// The layers of an Image (and of the Images it lists), each once.
    pub(crate) fn layers_of(&self, digest: &str) -> Vec<u32> {
        let mut layers = Vec::new();
        if let Some(image) = self.images.get(digest).or_else(|| self.gone.get(digest)) {
            layers.extend(&image.layers);
            for child in &image.children {
                if let Some(child) = self.images.get(child).or_else(|| self.gone.get(child)) {
                    layers.extend(&child.layers);
                }
            }
        }
        layers.sort_unstable();
        layers.dedup();
        layers
    }

    pub(crate) fn size_of_layers(&self, layers: &[u32]) -> u64 {
        layers.iter().map(|&l| self.layer_sizes[l as usize]).sum()
    }

    fn layer_id(&mut self, digest: &str, size: u64) -> u32 {
        if let Some(&id) = self.layer_ids.get(digest) {
            return id;
        }
        let id = self.layer_sizes.len() as u32;
        let name: Arc<str> = digest.into();
        self.layer_ids.insert(Arc::clone(&name), id);
        self.layer_sizes.push(size);
        self.layer_names.push(name);
        id
    }

    /// Interns an Image's digest (the one the index already has, when it has it).
    fn name(&self, digest: &str) -> Arc<str> {
        match self.images.get_key_value(digest) {
            Some((name, _)) => Arc::clone(name),
            None => digest.into(),
        }
    }

    fn add_image(&mut self, image: &Image) {
        let layers = image.docker_image_layers.iter().map(|l| self.layer_id(&l.name, l.size.max(0) as u64)).collect();
        let entry = PruneImage {
            created: image.metadata.creation_timestamp,
            managed: image.metadata.annotations.get(MANAGED_ANNOTATION).is_some_and(|v| v == "true"),
            layers,
            children: image.docker_image_manifests.iter().map(|m| Arc::from(m.digest.as_str())).collect(),
            config: crate::services::registry::config_digest(image).map(Arc::from),
        };
        let name: Arc<str> = image.metadata.name.as_str().into();
        let known = self.images.contains_key(&name) || self.gone.contains_key(&name);
        self.gone.remove(&name);
        self.images.insert(Arc::clone(&name), entry);
        if known || !self.holders.contains_key(&name) {
            return;
        }
        // Namespaces that named it before it was stored now hold its layers (and its children).
        let holders: Vec<Arc<str>> =
            self.namespaces.iter().filter(|(_, held)| held.images.contains_key(&name)).map(|(ns, _)| Arc::clone(ns)).collect();
        for namespace in holders {
            let children = self.images[&name].children.clone();
            self.add_layers(&namespace, &name);
            for child in children {
                self.hold(&namespace, &child);
            }
        }
    }

    fn remove_image(&mut self, digest: &str) {
        if let Some((name, image)) = self.images.remove_entry(digest)
            && self.holders.contains_key(&name)
        {
            self.gone.insert(name, image);
        }
    }

    /// Adds a reference from `namespace` to an Image (and to its children).
    fn hold(&mut self, namespace: &Arc<str>, digest: &str) {
        let name = self.name(digest);
        let held = self.namespaces.entry(Arc::clone(namespace)).or_default();
        let count = held.images.entry(Arc::clone(&name)).or_insert(0);
        *count += 1;
        if *count > 1 {
            return;
        }
        *self.holders.entry(Arc::clone(&name)).or_insert(0) += 1;
        self.add_layers(namespace, &name);
        let children = self.images.get(&name).map(|i| i.children.clone()).unwrap_or_default();
        for child in children {
            self.hold(namespace, &child);
        }
    }

    fn release(&mut self, namespace: &str, digest: &str) {
        let Some(held) = self.namespaces.get_mut(namespace) else { return };
        let Some(count) = held.images.get_mut(digest) else { return };
        *count -= 1;
        if *count > 0 {
            return;
        }
        held.images.remove(digest);
        for layer in own_layers(&self.images, &self.gone, digest) {
            if let Some(n) = held.layers.get_mut(&layer) {
                *n -= 1;
                if *n == 0 {
                    held.layers.remove(&layer);
                    held.bytes -= self.layer_sizes[layer as usize];
                }
            }
        }
        let children = self.images.get(digest).or_else(|| self.gone.get(digest)).map(|i| i.children.clone()).unwrap_or_default();
        for child in children {
            self.release(namespace, &child);
        }
        if let Some(holders) = self.holders.get_mut(digest) {
            *holders -= 1;
            if *holders == 0 {
                self.holders.remove(digest);
                self.gone.remove(digest);
            }
        }
    }

    fn add_layers(&mut self, namespace: &str, digest: &str) {
        let layers = own_layers(&self.images, &self.gone, digest);
        let Some(held) = self.namespaces.get_mut(namespace) else { return };
        for layer in layers {
            let n = held.layers.entry(layer).or_insert(0);
            *n += 1;
            if *n == 1 {
                held.bytes += self.layer_sizes[layer as usize];
            }
        }
    }

    fn set_stream(&mut self, namespace: &str, name: &str, stream: Option<&ImageStream>) {
        let namespace: Arc<str> = match self.namespaces.get_key_value(namespace) {
            Some((ns, _)) => Arc::clone(ns),
            None => namespace.into(),
        };
        let key = (Arc::clone(&namespace), Arc::from(name));
        let new: Option<Vec<TagHistory>> = stream.map(|s| {
            s.status
                .tags
                .iter()
                .map(|t| {
                    let mut history = TagHistory::of(t);
                    for item in &mut history.items {
                        item.0 = self.name(&item.0);
                    }
                    history
                })
                .collect()
        });
        let old = match &new {
            Some(new) => self.streams.insert(key, new.clone()),
            None => self.streams.remove(&key),
        };
        let images = |tags: Option<&Vec<TagHistory>>| -> HashSet<Arc<str>> {
            tags.into_iter().flatten().flat_map(|t| t.items.iter().map(|(image, _)| Arc::clone(image))).filter(|i| !i.is_empty()).collect()
        };
        let (before, after) = (images(old.as_ref()), images(new.as_ref()));
        let held = self.namespaces.entry(Arc::clone(&namespace)).or_default();
        match (old.is_some(), new.is_some()) {
            (false, true) => held.streams += 1,
            (true, false) => held.streams -= 1,
            _ => {}
        }
        for image in after.difference(&before) {
            self.hold(&namespace, image);
        }
        for image in before.difference(&after) {
            self.release(&namespace, image);
        }
        if self.namespaces.get(&namespace).is_some_and(|h| h.streams == 0 && h.images.is_empty()) {
            self.namespaces.remove(&namespace);
        }
    }
}

/// An Image's own layers (not its children's).
fn own_layers(images: &HashMap<Arc<str>, PruneImage>, gone: &HashMap<Arc<str>, PruneImage>, digest: &str) -> Vec<u32> {
    let mut layers = images.get(digest).or_else(|| gone.get(digest)).map(|i| i.layers.clone()).unwrap_or_default();
    layers.sort_unstable();
    layers.dedup();
    layers
}

fn load(state: &mut State, store: &dyn MetadataStore) -> Result<()> {
    let started = std::time::Instant::now();
    *state = State::default();
    let images = store.scan(&ListQuery { resource: Image::RESOURCE.to_string(), ..ListQuery::default() })?;
    state.images_revision = images.revision;
    for stored in images.items {
        if let Ok(image) = Image::decode(&stored?) {
            state.add_image(&image);
        }
    }
    let streams = store.scan(&ListQuery { resource: ImageStream::RESOURCE.to_string(), ..ListQuery::default() })?;
    state.streams_revision = streams.revision;
    for stored in streams.items {
        let stored = stored?;
        if let Ok(stream) = ImageStream::decode(&stored) {
            state.set_stream(&stored.key.namespace, &stored.key.name, Some(&stream));
        }
    }
    state.loaded = true;
    tracing::info!(images = state.images.len(), streams = state.streams.len(), elapsed = ?started.elapsed(), "storage index loaded");
    Ok(())
}

/// Applies the events after the index's revisions. `Ok(false)` when the log was compacted
/// past them (the index must be loaded again).
fn follow(state: &mut State, store: &dyn MetadataStore, current: u64) -> Result<bool> {
    for resource in [Image::RESOURCE, ImageStream::RESOURCE] {
        loop {
            let after = if resource == Image::RESOURCE { state.images_revision } else { state.streams_revision };
            let events = match store.events_since(resource, None, after, EVENT_BATCH) {
                Ok(events) => events,
                Err(StoreError::Compacted { .. }) => return Ok(false),
                Err(err) => return Err(err.into()),
            };
            let mut newest = after;
            for event in &events {
                apply(state, resource, event.event_type, &event.object);
                newest = newest.max(event.object.revision);
            }
            if resource == Image::RESOURCE {
                state.images_revision = newest;
            } else {
                state.streams_revision = newest;
            }
            if events.len() < EVENT_BATCH {
                break;
            }
        }
    }
    state.images_revision = state.images_revision.max(current);
    state.streams_revision = state.streams_revision.max(current);
    Ok(true)
}

fn apply(state: &mut State, resource: &str, event: EventType, object: &StoredObject) {
    let key = &object.key;
    if resource == Image::RESOURCE {
        match event {
            EventType::Deleted => state.remove_image(&key.name),
            EventType::Added | EventType::Modified => {
                if let Ok(image) = Image::decode(object) {
                    state.add_image(&image);
                }
            }
        }
        return;
    }
    match event {
        EventType::Deleted => state.set_stream(&key.namespace, &key.name, None),
        EventType::Added | EventType::Modified => {
            if let Ok(stream) = ImageStream::decode(object) {
                state.set_stream(&key.namespace, &key.name, Some(&stream));
            }
        }
    }
}
