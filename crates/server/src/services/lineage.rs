//! Lineage: the image chain index (the `lineage` crate) kept up to date from the store's
//! event log, and the questions it answers, put in terms of image streams and tags and
//! filtered by what the caller may read.
//!
//! The index follows the store: loaded from a scan of every Image the first time it is
//! needed (and again when the event log was compacted past it), then moved forward by
//! the Image events after its revision. Every query first brings it up to the store's
//! current revision, so an answer always includes the writes acknowledged before it was
//! asked, and a second replica on the same store builds the same index.

use std::collections::{HashMap, HashSet};
use std::sync::{PoisonError, RwLock};

use berth_lineage::{ImageFacts, Index, Related};
use berth_model::access::Action;
use berth_model::image::Image;
use berth_model::imagestream::{ImageStream, NamedTagEventList};
use berth_model::lineage::{ImageLineage, RelatedImage, Relation, TagPointer};
use berth_model::names::split_stream_tag;
use berth_model::{BERTH_API_VERSION, Digest};
use berth_store::{EventType, ListQuery, MetadataStore, StoreError, StoredObject};

use crate::services::{Caller, Catalog, Error, Resource, Result};

/// Image events read from the log at a time.
const EVENT_BATCH: usize = 1000;

/// The chain index of every stored Image, and the store revision it reflects.
#[derive(Default)]
pub struct LineageIndex {
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    index: Index,
    revision: u64,
    loaded: bool,
}

impl LineageIndex {
    /// Brings the index up to the store's current revision.
    pub fn sync(&self, store: &dyn MetadataStore) -> Result<()> {
        let current = store.current_revision()?;
        {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if state.loaded && state.revision >= current {
                return Ok(());
            }
        }
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if !state.loaded {
            load(&mut state, store)?;
        }
        loop {
            let events = match store.events_since(Image::RESOURCE, None, state.revision, EVENT_BATCH) {
                Ok(events) => events,
                Err(StoreError::Compacted { .. }) => {
                    tracing::info!(revision = state.revision, "the event log moved past the lineage index; reloading it");
                    load(&mut state, store)?;
                    continue;
                }
                Err(err) => return Err(err.into()),
            };
            for event in &events {
                match event.event_type {
                    // Images never change but for labels and annotations: indexing one
                    // again changes nothing.
                    EventType::Added | EventType::Modified => {
                        if let Some(facts) = facts_of(&event.object) {
                            state.index.insert(&facts);
                        }
                    }
                    EventType::Deleted => {
                        if let Ok(digest) = event.object.key.name.parse::<Digest>() {
                            state.index.remove(&digest);
                        }
                    }
                }
                state.revision = state.revision.max(event.object.revision);
            }
            if events.len() < EVENT_BATCH {
                break;
            }
        }
        state.revision = state.revision.max(current);
        Ok(())
    }

    /// Runs `f` over the index as it is now.
    pub fn read<T>(&self, f: impl FnOnce(&Index) -> T) -> T {
        f(&self.state.read().unwrap_or_else(PoisonError::into_inner).index)
    }
}

/// Keeps the index loaded and current in the background, so that the first question after
/// a start or a burst of pushes does not pay for it: at start-up, then after each commit,
/// at most ten times a second, with what the classes look like (`Catalog::follow_classes`).
/// Every server runs it (each has its own index and class labels).
pub async fn follow(catalog: Catalog, stop: tokio::sync::watch::Receiver<bool>) {
    after_each_commit(catalog, stop, "the lineage index could not follow the store; queries will retry", |catalog| {
        catalog.follow_classes().map(drop)
    })
    .await
}

/// The class controller (`Catalog::update_classes`, which syncs the index first), after
/// each commit as [`follow`] does. It writes classes' status and outbox entries, so one
/// server runs it (under a lease on a shared database).
pub async fn label_classes(catalog: Catalog, stop: tokio::sync::watch::Receiver<bool>) {
    after_each_commit(catalog, stop, "the class controller could not follow the store; it will retry", |catalog| catalog.update_classes())
        .await
}

async fn after_each_commit(
    catalog: Catalog,
    mut stop: tokio::sync::watch::Receiver<bool>,
    failed: &'static str,
    pass: fn(&Catalog) -> Result<()>,
) {
    let mut revisions = catalog.store().subscribe();
    loop {
        let syncing = catalog.clone();
        match tokio::task::spawn_blocking(move || pass(&syncing)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err.message, "{failed}"),
            Err(err) => tracing::error!(%err, "a pass after a commit was interrupted"),
        }
        tokio::select! {
            changed = revisions.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn load(state: &mut State, store: &dyn MetadataStore) -> Result<()> {
    let started = std::time::Instant::now();
    let scan = store.scan(&ListQuery { resource: Image::RESOURCE.to_string(), ..ListQuery::default() })?;
    let mut index = Index::new();
    for stored in scan.items {
        if let Some(facts) = facts_of(&stored?) {
            index.insert(&facts);
        }
    }
    tracing::info!(images = index.len(), chains = index.chain_count(), elapsed = ?started.elapsed(), "lineage index loaded");
    *state = State { index, revision: scan.revision, loaded: true };
    Ok(())
}

fn facts_of(stored: &StoredObject) -> Option<ImageFacts> {
    Image::decode(stored).ok().as_ref().and_then(ImageFacts::of)
}

/// What a lineage request asks.
#[derive(Clone, Debug)]
pub struct LineageQuery {
    pub relation: Relation,
    /// An image digest (a layer digest, for [`Relation::Layer`]).
    pub image: Option<String>,
    /// `stream:tag` in `namespace`.
    pub image_stream_tag: Option<String>,
    pub namespace: Option<String>,
    /// Every image the tag has pointed at, not only the current one.
    pub all_versions: bool,
}

impl Catalog {
    pub fn lineage_index(&self) -> &LineageIndex {
        &self.lineage
    }

    /// Answers a lineage question. An image is answered only through the streams the
    /// caller may read (cluster readers see every image, tagged or not), as everywhere
    /// else: a tenant learns nothing of another namespace's images.
    pub fn lineage(&self, caller: &Caller, query: LineageQuery) -> Result<ImageLineage> {
        let (asked, tag_name) = self.asked_images(caller, &query)?;
        self.lineage.sync(&**self.store())?;
        let answers: Vec<(String, Vec<Related>)> = self.lineage.read(|index| {
            let mut answers = Vec::new();
            for digest in &asked {
                let related = match query.relation {
                    Relation::Ancestors => index.ancestors(digest),
                    Relation::Descendants => index.descendants(digest),
                    // Class answers come from `Catalog::class_images`.
                    Relation::Class => None,
                    Relation::Layer => Some(
                        index
                            .with_layer(digest)
                            .into_iter()
                            .map(|image| Related { image, evidence: berth_lineage::Evidence::Layers, same_layers: false, platform: None })
                            .collect(),
                    ),
                };
                // A tag's image that the index does not hold (an image deleted since)
                // relates to nothing.
                answers.push((digest.to_string(), related.unwrap_or_default()));
            }
            answers
        });
        let mut seen: HashSet<String> = HashSet::new();
        let mut related: Vec<RelatedImage> = Vec::new();
        for (of, answer) in answers {
            for r in answer {
                if asked.contains(&r.image) || !seen.insert(r.image.to_string()) {
                    continue;
                }
                let evidence = if query.relation == Relation::Layer { String::new() } else { format!("{:?}", r.evidence) };
                related.push(RelatedImage {
                    image: r.image.to_string(),
                    evidence,
                    same_layers: r.same_layers,
                    platform: r.platform.unwrap_or_default(),
                    of: if asked.len() > 1 { of.clone() } else { String::new() },
                    built_on: String::new(),
                    class_state: String::new(),
                    versions_behind: 0,
                    tags: Vec::new(),
                });
            }
        }
        if query.relation == Relation::Descendants {
            self.set_built_on(&asked, &mut related);
        }
        let mut streams = StreamCache::default();
        let sees_all = caller.grant.allows(Action::ReadCluster);
        let mut items = Vec::with_capacity(related.len());
        for mut item in related {
            item.tags = self.tags_of(caller, &item.image, &mut streams)?;
            if sees_all || !item.tags.is_empty() {
                items.push(item);
            }
        }
        Ok(ImageLineage {
            kind: "ImageLineage".to_string(),
            api_version: BERTH_API_VERSION.to_string(),
            relation: query.relation,
            images: asked.iter().map(Digest::to_string).collect(),
            image_stream_tag: tag_name,
            items,
        })
    }

    /// The images a query is about, and the tag it named (`namespace/stream:tag`).
    fn asked_images(&self, caller: &Caller, query: &LineageQuery) -> Result<(Vec<Digest>, String)> {
        match (&query.image, &query.image_stream_tag) {
            (Some(_), Some(_)) => Err(Error::bad_request("give an image or an imageStreamTag, not both")),
            (None, None) => Err(Error::bad_request(
                "say what to ask about: ?image=sha256:... (a layer digest for /lineage/layer) or ?namespace=NS&imageStreamTag=STREAM:TAG",
            )),
            (Some(image), None) => {
                let digest: Digest =
                    image.parse().map_err(|err: berth_model::digest::DigestError| Error::bad_request(format!("image: {err}")))?;
                // A layer is not an image: anyone may ask which of the images they can
                // see hold it.
                if query.relation != Relation::Layer && !self.can_see_image(caller, digest.as_str())? {
                    return Err(Error::not_found(Image::QUALIFIED, digest.as_str()));
                }
                Ok((vec![digest], String::new()))
            }
            (None, Some(name)) => {
                if query.relation == Relation::Layer {
                    return Err(Error::bad_request("/lineage/layer takes a layer digest (?image=sha256:...), not a tag"));
                }
                let namespace = query
                    .namespace
                    .as_deref()
                    .filter(|ns| !ns.is_empty())
                    .ok_or_else(|| Error::bad_request("imageStreamTag needs the namespace of its stream: add &namespace=NS"))?;
                caller.require(Action::Read(namespace), "get", "imagestreamtags.image.openshift.io")?;
                let (stream_name, tag) =
                    split_stream_tag(name).ok_or_else(|| Error::bad_request(format!("imageStreamTag {name:?} must be STREAM:TAG")))?;
                let stream: ImageStream = self.require(namespace, stream_name)?;
                let history = stream.status_tag(tag).map(|t| t.items.as_slice()).unwrap_or_default();
                if history.is_empty() {
                    return Err(Error::not_found("imagestreamtags.image.openshift.io", name).with_message(format!(
                        "imagestreamtags.image.openshift.io {name:?} not found: the tag points at no image yet (see `berth describe istag {name} -n {namespace}`)"
                    )));
                }
                let versions = if query.all_versions { history } else { &history[..1] };
                let mut digests: Vec<Digest> = Vec::new();
                for event in versions {
                    if let Ok(digest) = event.image.parse::<Digest>()
                        && !digests.contains(&digest)
                    {
                        digests.push(digest);
                    }
                }
                Ok((digests, format!("{namespace}/{name}")))
            }
        }
    }

    /// Sets each descendant's `builtOn`: the nearest of its ancestors that is in the
    /// answer, or the asked image it relates to.
    fn set_built_on(&self, asked: &[Digest], related: &mut [RelatedImage]) {
        let in_answer: HashSet<String> = related.iter().map(|r| r.image.clone()).collect();
        self.lineage.read(|index| {
            // An asked manifest list stands for its children.
            let mut roots: HashMap<String, String> = HashMap::new();
            for digest in asked {
                roots.insert(digest.to_string(), digest.to_string());
                for (child, _) in index.list_children(digest) {
                    roots.insert(child.to_string(), digest.to_string());
                }
            }
            for item in related.iter_mut() {
                let Ok(digest) = item.image.parse::<Digest>() else { continue };
                let ancestors = index.ancestors(&digest).unwrap_or_default();
                item.built_on = ancestors
                    .iter()
                    .find_map(|a| {
                        let a = a.image.to_string();
                        if in_answer.contains(&a) { Some(a) } else { roots.get(&a).cloned() }
                    })
                    .unwrap_or_else(|| if item.of.is_empty() { asked[0].to_string() } else { item.of.clone() });
            }
        });
    }

    /// The stream tags the caller may read that point or pointed at `image`, or at a
    /// manifest list holding it.
    pub(crate) fn tags_of(&self, caller: &Caller, image: &str, streams: &mut StreamCache) -> Result<Vec<TagPointer>> {
        let mut pointers = Vec::new();
        let may_read = |namespace: &str| caller.grant.allows(Action::Read(namespace));
        self.visit_tags_of(image, streams, &may_read, &mut |stream, tag, holder| {
            if tag.items.iter().any(|event| event.image == holder) {
                pointers.push(TagPointer {
                    namespace: stream.metadata.namespace.clone(),
                    name: format!("{}:{}", stream.metadata.name, tag.tag),
                    current: tag.items.first().is_some_and(|event| event.image == holder),
                    list: if holder == image { String::new() } else { holder.to_string() },
                });
            }
        })?;
        pointers.sort();
        pointers.dedup();
        Ok(pointers)
    }

    /// Calls `visit` with every tag of every stream in a namespace `may_read` allows that
    /// names `image`, or a manifest list holding it, in its history (the `holder` it names).
    pub(crate) fn visit_tags_of(
        &self,
        image: &str,
        streams: &mut StreamCache,
        may_read: &dyn Fn(&str) -> bool,
        visit: &mut dyn FnMut(&ImageStream, &NamedTagEventList, &str),
    ) -> Result<()> {
        let mut holders: Vec<String> = vec![image.to_string()];
        if let Ok(digest) = image.parse::<Digest>() {
            holders.extend(self.lineage.read(|index| index.lists_containing(&digest)).into_iter().map(|(list, _)| list.to_string()));
        }
        for holder in &holders {
            for key in self.store().referrers(ImageStream::RESOURCE, holder)? {
                if !may_read(&key.namespace) {
                    continue;
                }
                let Some(stream) = streams.get(self, &key.namespace, &key.name)? else { continue };
                for tag in &stream.status.tags {
                    visit(stream, tag, holder);
                }
            }
        }
        Ok(())
    }
}

/// The streams one answer reads, each read once.
#[derive(Default)]
pub(crate) struct StreamCache(HashMap<(String, String), Option<ImageStream>>);

impl StreamCache {
    fn get(&mut self, catalog: &Catalog, namespace: &str, name: &str) -> Result<Option<&ImageStream>> {
        let key = (namespace.to_string(), name.to_string());
        if !self.0.contains_key(&key) {
            let stream = catalog.load::<ImageStream>(namespace, name)?;
            self.0.insert(key.clone(), stream);
        }
        Ok(self.0.get(&key).and_then(Option::as_ref))
    }
}
