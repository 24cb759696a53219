//! ImageClasses (berth.dev/v1, cluster-scoped, managed by cluster admins): the images
//! built on a stream tag, on its current image or on any image it has had.
//!
//! The class controller (run by `lineage::follow` after each sync of the index) keeps
//! each class's status: the chains of the target tag's current image and of every image
//! it has had, kept even when those images are gone. Class labels are computed, not
//! stored: an Image is shown with `class.berth.dev/<class>=current|outdated` when it holds
//! the last chain of a version of the class. Computing them on read costs one walk up the
//! image's chains; storing them would mean rewriting every image built on a base each
//! time the base's tag moves (a million writes for a popular base), and could drift from
//! the index. So a tag move relabels every descendant at once, and every replica shows
//! the same labels from the same store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use berth_lineage::{ChainRef, Index};
use berth_model::access::Action;
use berth_model::image::Image;
use berth_model::imagestream::ImageStream;
use berth_model::lineage::{
    CLASS_LABEL_DOMAIN, ClassVersion, ImageChain, ImageClass, ImageClassGroup, ImageClassStatus, ImageLineage, RelatedImage, Relation,
    class_label, is_class_label,
};
use berth_model::names::split_stream_tag;
use berth_model::notify::{ChangeType, TagChange};
use berth_model::{BERTH_API_VERSION, Digest, Time};
use berth_store::{ListQuery, Precondition, transact};

use crate::services::lineage::StreamCache;
use crate::services::{Caller, Catalog, Error, LazyList, ListOptions, Resource, Result, keep_server_fields, precondition, stamp_new};

const CLASSES: &str = ImageClass::QUALIFIED;
/// Versions a class keeps at most (the target tag's history is bounded the same way).
const MAX_VERSIONS: usize = 1000;
pub const CURRENT: &str = "current";
pub const OUTDATED: &str = "outdated";

/// The chains of every class version as the index holds them now, resolved again
/// whenever the index or a class changes.
#[derive(Default)]
pub struct ClassMarks {
    state: RwLock<Marks>,
    /// What the classes and groups looked like when last read (after each commit, on
    /// every server: [`Catalog::follow_classes`]).
    classes_seen: Mutex<ClassesSeen>,
}

/// Enough of the classes and groups to tell that one changed: the newest revision among
/// them, and how many there are (a deletion lowers no revision).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ClassesSeen {
    newest: u64,
    classes: usize,
    groups: usize,
}

#[derive(Default)]
struct Marks {
    /// `Index::changes` when the marks were resolved.
    index_changes: u64,
    /// The classes and groups they were resolved from.
    classes_seen: ClassesSeen,
    resolved: bool,
    /// For each chain a version of a class ends in: the class and how many versions
    /// behind its current one that version is.
    by_chain: HashMap<ChainRef, Vec<(Arc<str>, usize)>>,
    /// For each class: the groups that select it, with the value each gives its images.
    groups: HashMap<Arc<str>, Vec<(String, String)>>,
}

impl Catalog {
    pub fn get_class(&self, caller: &Caller, name: &str) -> Result<ImageClass> {
        let class = self.require::<ImageClass>("", name)?;
        Ok(self.class_view(caller, class))
    }

    /// Any token may list classes (their names are what a selector uses, as with
    /// Kubernetes' StorageClasses); a class's status is shown only to those who may read
    /// its target's namespace, since it names that tag's images.
    pub fn list_classes(&self, caller: &Caller, options: &ListOptions) -> Result<LazyList<ImageClass>> {
        let (catalog, caller) = (self.clone(), caller.clone());
        Ok(self.list_objects::<ImageClass>(None, options, |_| true)?.view(move |class| Ok(Some(catalog.class_view(&caller, class)))))
    }

    pub(crate) fn class_view(&self, caller: &Caller, mut class: ImageClass) -> ImageClass {
        if !caller.grant.allows(Action::Read(&class.spec.target.namespace)) {
            class.status = ImageClassStatus::default();
        }
        class
    }

    /// Creates (`name` is `None`) or replaces a class's spec; the status is the
    /// controller's.
    pub fn put_class(&self, caller: &Caller, name: Option<&str>, mut class: ImageClass) -> Result<ImageClass> {
        let verb = if name.is_some() { "update" } else { "create" };
        caller.require(Action::AdministerCluster, verb, CLASSES)?;
        crate::services::name_from_url(&mut class.metadata, name)?;
        class.metadata.namespace.clear();
        let name = class.metadata.name.clone();
        let errors = class.validate();
        if !errors.is_empty() {
            return Err(Error::invalid(CLASSES, &name, errors));
        }
        let expect = if verb == "create" { Precondition::Absent } else { precondition(&class.metadata)? };
        let stored = transact(&**self.store(), move |txn| {
            let key = ImageClass::key("", &name);
            match txn.get(&key)? {
                Some(existing) => {
                    let stored = ImageClass::decode(&existing)?;
                    keep_server_fields(&mut class.metadata, &stored.metadata);
                    // A new target is a new class: its history starts again.
                    if stored.spec == class.spec {
                        class.status = stored.status;
                    } else {
                        class.status = ImageClassStatus::default();
                    }
                }
                None if verb == "update" => return Err(Error::not_found(CLASSES, &name)),
                None => {
                    stamp_new(&mut class.metadata, Time::now());
                    class.status = ImageClassStatus::default();
                }
            }
            let revision = txn.put(&key, &class.encode(), &[], expect).map_err(|err| Error::from_store(err, CLASSES, &name))?;
            class.metadata.resource_version = revision.to_string();
            class.set_type();
            Ok::<_, Error>(class)
        })?;
        // The status follows at once rather than at the controller's next pass.
        self.update_classes()?;
        match self.load::<ImageClass>("", &stored.metadata.name)? {
            Some(class) => Ok(class),
            None => Ok(stored),
        }
    }

    pub fn delete_class(&self, caller: &Caller, name: &str) -> Result<ImageClass> {
        caller.require(Action::AdministerCluster, "delete", CLASSES)?;
        let owned = name.to_string();
        transact(&**self.store(), move |txn| {
            let key = ImageClass::key("", &owned);
            let stored = txn.get(&key)?.ok_or_else(|| Error::not_found(CLASSES, &owned))?;
            txn.delete(&key, Precondition::Any)?;
            ImageClass::decode(&stored)
        })
        .and_then(|class| {
            self.update_classes()?;
            Ok(class)
        })
    }

    pub fn get_class_group(&self, _caller: &Caller, name: &str) -> Result<ImageClassGroup> {
        self.require::<ImageClassGroup>("", name)
    }

    pub fn list_class_groups(&self, _caller: &Caller, options: &ListOptions) -> Result<LazyList<ImageClassGroup>> {
        self.list_objects::<ImageClassGroup>(None, options, |_| true)
    }

    /// Creates (`name` is `None`) or replaces a group (cluster admins).
    pub fn put_class_group(&self, caller: &Caller, name: Option<&str>, group: ImageClassGroup) -> Result<ImageClassGroup> {
        let stored = self.put_cluster_object(caller, name, group, ImageClassGroup::validate)?;
        self.update_classes()?;
        Ok(stored)
    }

    pub fn delete_class_group(&self, caller: &Caller, name: &str) -> Result<ImageClassGroup> {
        let deleted = self.delete_cluster_object::<ImageClassGroup>(caller, name)?;
        self.update_classes()?;
        Ok(deleted)
    }

    /// Brings the lineage index up to the store and reads every class, noting what the
    /// classes and groups look like so that class labels are resolved again when one
    /// changes. Every server runs it after each commit (class labels follow a change made
    /// through any server); the class controller as its first step.
    pub fn follow_classes(&self) -> Result<Vec<ImageClass>> {
        self.lineage_index().sync(&**self.store())?;
        let scan = self.store().scan(&ListQuery { resource: ImageClass::RESOURCE.to_string(), ..ListQuery::default() })?;
        let mut classes = Vec::new();
        let mut newest = 0;
        for stored in scan.items {
            let stored = stored?;
            newest = newest.max(stored.revision);
            classes.push(ImageClass::decode(&stored)?);
        }
        let groups = self.store().scan(&ListQuery { resource: ImageClassGroup::RESOURCE.to_string(), ..ListQuery::default() })?;
        let mut group_count = 0;
        for stored in groups.items {
            newest = newest.max(stored?.revision);
            group_count += 1;
        }
        *self.classes.classes_seen.lock().unwrap_or_else(PoisonError::into_inner) =
            ClassesSeen { newest, classes: classes.len(), groups: group_count };
        Ok(classes)
    }

    /// The class controller's pass: brings every class's status up to its target tag's
    /// history and the index. Idempotent; a class that did not change is not written.
    pub fn update_classes(&self) -> Result<()> {
        let classes = self.follow_classes()?;
        for class in classes {
            let status = self.class_status(&class)?;
            if status == class.status {
                continue;
            }
            let revision: u64 = class.metadata.resource_version.parse().unwrap_or(0);
            let moved = match (&class.status.current, &status.current) {
                (Some(before), Some(after)) if before.image != after.image => Some((before.image.clone(), after.image.clone())),
                _ => None,
            };
            let mut updated = class.clone();
            updated.status = status;
            // When the target moved, every tag built on the class but not on its new
            // version is told, in the same transaction as the new status.
            let changes = match &moved {
                Some((before, after)) => self.class_update_changes(&updated, before, after)?,
                None => Vec::new(),
            };
            let (key, body) = (ImageClass::key("", &class.metadata.name), updated.encode());
            // A class changed since it was read is brought up to date on the next pass.
            let write = move |txn: &mut dyn berth_store::WriteTxn| -> Result<()> {
                let revision = txn.put(&key, &body, &[], Precondition::Revision(revision))?;
                crate::services::subscriptions::record_changes(txn, changes, revision)
            };
            match transact(&**self.store(), write) {
                Ok(()) => {}
                Err(err) if matches!(err.kind, crate::services::ErrorKind::Conflict | crate::services::ErrorKind::NotFound) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// The `ClassUpdated` changes of a move of `class`'s target from `before` to `after`:
    /// one per stream tag whose current image is built on the class, but not on its new
    /// version.
    pub(crate) fn class_update_changes(&self, class: &ImageClass, before: &str, after: &str) -> Result<Vec<TagChange>> {
        let mut changes = Vec::new();
        let mut streams = StreamCache::default();
        let now = Time::now();
        for item in self.class_members(class)? {
            if item.1 == 0 {
                continue;
            }
            let everyone = |_: &str| true;
            self.visit_tags_of(item.0.as_str(), &mut streams, &everyone, &mut |stream, tag, holder| {
                let Some(latest) = tag.items.first().filter(|event| event.image == holder) else { return };
                changes.push(TagChange {
                    image: latest.image.clone(),
                    pull_spec: latest.docker_image_reference.clone(),
                    message: format!("the target of class {} moved to {after}", class.metadata.name),
                    class: class.metadata.name.clone(),
                    class_image: after.to_string(),
                    class_previous_image: before.to_string(),
                    ..TagChange::of(ChangeType::ClassUpdated, stream, &tag.tag, now)
                });
            })?;
        }
        changes.sort_by(|a, b| (&a.metadata.namespace, &a.stream, &a.tag).cmp(&(&b.metadata.namespace, &b.stream, &b.tag)));
        changes.dedup_by(|a, b| (&a.metadata.namespace, &a.stream, &a.tag) == (&b.metadata.namespace, &b.stream, &b.tag));
        Ok(changes)
    }

    /// Every indexed image of a class, with how many versions behind the current one the
    /// newest version it is built on is (0: current).
    fn class_members(&self, class: &ImageClass) -> Result<Vec<(Digest, usize)>> {
        self.lineage_index().sync(&**self.store())?;
        let mut found: Vec<(Digest, usize)> = Vec::new();
        let mut seen: std::collections::HashSet<Digest> = std::collections::HashSet::new();
        self.lineage_index().read(|index| {
            for (behind, version) in class.versions() {
                for chain in &version.chains {
                    let (Ok(layer), Some(last)) = (chain.last_layer.parse::<Digest>(), chain.chains.last()) else { continue };
                    let Some(found_chain) = index.find_chain(&layer, last) else { continue };
                    for image in index.images_with_chain(found_chain) {
                        if seen.insert(image.clone()) {
                            found.push((image, behind));
                        }
                    }
                }
            }
        });
        Ok(found)
    }

    /// What a class's status should be now.
    fn class_status(&self, class: &ImageClass) -> Result<ImageClassStatus> {
        let target = &class.spec.target;
        let known: Vec<&ClassVersion> = class.status.current.iter().chain(&class.status.history).collect();
        let mut versions: Vec<ClassVersion> = Vec::new();
        let mut message = String::new();
        let history = match split_stream_tag(&target.name) {
            Some((stream, tag)) => match self.load::<ImageStream>(&target.namespace, stream)? {
                Some(stream) => stream.status_tag(tag).map(|t| t.items.clone()).unwrap_or_default(),
                None => {
                    message = format!("the target stream {}/{stream} does not exist", target.namespace);
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        if history.is_empty() && message.is_empty() {
            message = format!("the target tag {}/{} points at no image yet", target.namespace, target.name);
        }
        for event in &history {
            if versions.iter().any(|v| v.image == event.image) {
                continue;
            }
            if let Some(version) = known.iter().find(|v| v.image == event.image) {
                versions.push((*version).clone());
                continue;
            }
            let Ok(digest) = event.image.parse::<Digest>() else { continue };
            if let Some(chains) = self.lineage_index().read(|index| chains_of(index, &digest)) {
                versions.push(ClassVersion { image: event.image.clone(), created: Some(event.created), chains });
            }
        }
        let current_image = history.first().map(|event| event.image.as_str());
        let current = match versions.first() {
            Some(first) if Some(first.image.as_str()) == current_image => Some(versions.remove(0)),
            _ => {
                if message.is_empty() {
                    message = format!("the image of {}/{} is not known to berth yet", target.namespace, target.name);
                }
                None
            }
        };
        // Versions the tag's history no longer holds stay, after those it does.
        for version in known {
            let listed = current.as_ref().is_some_and(|c| c.image == version.image) || versions.iter().any(|v| v.image == version.image);
            if !listed {
                versions.push(version.clone());
            }
        }
        versions.truncate(MAX_VERSIONS);
        Ok(ImageClassStatus { current, history: versions, message })
    }

    /// The class labels of an image, computed from the classes and the index now.
    pub fn class_labels(&self, image: &Image) -> Result<BTreeMap<String, String>> {
        match image.metadata.name.parse::<Digest>() {
            Ok(digest) => self.class_labels_of(&digest),
            Err(_) => Ok(BTreeMap::new()),
        }
    }

    /// The class labels of the image `digest`.
    pub fn class_labels_of(&self, digest: &Digest) -> Result<BTreeMap<String, String>> {
        self.refresh_marks()?;
        Ok(self.class_labels_now(digest))
    }

    /// The class labels of an image from the marks as they are (a list refreshes them
    /// once, not once per image).
    fn class_labels_now(&self, digest: &Digest) -> BTreeMap<String, String> {
        let marks = self.classes.state.read().unwrap_or_else(PoisonError::into_inner);
        let domain = self.config().classes.label_domain.as_str();
        let mut nearest: BTreeMap<String, usize> = BTreeMap::new();
        let mut grouped: BTreeMap<String, String> = BTreeMap::new();
        if marks.by_chain.is_empty() {
            return BTreeMap::new();
        }
        self.lineage_index().read(|index| {
            let mut images = vec![digest.clone()];
            images.extend(index.list_children(digest).into_iter().map(|(child, _)| child));
            for one in &images {
                for chain in index.chain_refs(one) {
                    for (class, behind) in marks.by_chain.get(&chain).map(Vec::as_slice).unwrap_or_default() {
                        let entry = nearest.entry(class.to_string()).or_insert(*behind);
                        *entry = (*entry).min(*behind);
                        // Chains come nearest first: the first class of a group wins.
                        for (group, value) in marks.groups.get(class).map(Vec::as_slice).unwrap_or_default() {
                            grouped.entry(class_label(domain, group)).or_insert_with(|| value.clone());
                        }
                    }
                }
            }
        });
        // A class's own label wins over a group's of the same name.
        grouped.extend(
            nearest
                .into_iter()
                .map(|(class, behind)| (class_label(domain, &class), if behind == 0 { CURRENT } else { OUTDATED }.to_string())),
        );
        grouped
    }

    /// An image as the API shows it: its stored labels with its class labels.
    pub(crate) fn with_class_labels(&self, mut image: Image) -> Result<Image> {
        let labels = self.class_labels(&image)?;
        image.metadata.labels.extend(labels);
        Ok(image)
    }

    /// A function that adds class labels to each image of a list, from marks brought up
    /// to date once.
    pub(crate) fn class_labeller(&self) -> Result<impl Fn(Image) -> Image + Send + 'static> {
        self.refresh_marks()?;
        let catalog = self.clone();
        Ok(move |mut image: Image| {
            let labels = match image.metadata.name.parse::<Digest>() {
                Ok(digest) => catalog.class_labels_now(&digest),
                Err(_) => BTreeMap::new(),
            };
            image.metadata.labels.extend(labels);
            image
        })
    }

    /// Resolves the class versions' chains again when the index or a class changed.
    fn refresh_marks(&self) -> Result<()> {
        self.lineage_index().sync(&**self.store())?;
        let index_changes = self.lineage_index().read(Index::changes);
        let classes_seen = *self.classes.classes_seen.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let marks = self.classes.state.read().unwrap_or_else(PoisonError::into_inner);
            if marks.resolved && marks.index_changes == index_changes && marks.classes_seen == classes_seen {
                return Ok(());
            }
        }
        let scan = self.store().scan(&ListQuery { resource: ImageClass::RESOURCE.to_string(), ..ListQuery::default() })?;
        let mut classes = Vec::new();
        for stored in scan.items {
            classes.push(ImageClass::decode(&stored?)?);
        }
        let group_scan = self.store().scan(&ListQuery { resource: ImageClassGroup::RESOURCE.to_string(), ..ListQuery::default() })?;
        let mut all_groups = Vec::new();
        for stored in group_scan.items {
            all_groups.push(ImageClassGroup::decode(&stored?)?);
        }
        let mut groups: HashMap<Arc<str>, Vec<(String, String)>> = HashMap::new();
        for class in &classes {
            let values: Vec<(String, String)> =
                all_groups.iter().filter_map(|g| g.value_for(class).map(|v| (g.metadata.name.clone(), v))).collect();
            if !values.is_empty() {
                groups.insert(Arc::from(class.metadata.name.as_str()), values);
            }
        }
        let (by_chain, index_changes) = self.lineage_index().read(|index| {
            let mut by_chain: HashMap<ChainRef, Vec<(Arc<str>, usize)>> = HashMap::new();
            for class in &classes {
                let name: Arc<str> = Arc::from(class.metadata.name.as_str());
                for (behind, version) in class.versions() {
                    for chain in &version.chains {
                        let (Ok(layer), Some(last)) = (chain.last_layer.parse::<Digest>(), chain.chains.last()) else { continue };
                        if let Some(found) = index.find_chain(&layer, last) {
                            by_chain.entry(found).or_default().push((Arc::clone(&name), behind));
                        }
                    }
                }
            }
            (by_chain, index.changes())
        });
        *self.classes.state.write().unwrap_or_else(PoisonError::into_inner) =
            Marks { index_changes, classes_seen, resolved: true, by_chain, groups };
        Ok(())
    }

    /// The images of a class with their state, as lineage answers are: by the stream tags
    /// the caller may read. `state` keeps only `current` or `outdated` ones.
    pub fn class_images(&self, caller: &Caller, name: &str, state: Option<&str>) -> Result<ImageLineage> {
        if let Some(state) = state.filter(|s| *s != CURRENT && *s != OUTDATED) {
            return Err(Error::bad_request(format!("state={state:?} must be {CURRENT} or {OUTDATED}")));
        }
        let class = self.require::<ImageClass>("", name)?;
        let found = self.class_members(&class)?;
        let sees_all = caller.grant.allows(Action::ReadCluster);
        let mut streams = StreamCache::default();
        let mut items = Vec::new();
        for (image, behind) in found {
            let class_state = if behind == 0 { CURRENT } else { OUTDATED };
            if state.is_some_and(|s| s != class_state) {
                continue;
            }
            let tags = self.tags_of(caller, image.as_str(), &mut streams)?;
            if !sees_all && tags.is_empty() {
                continue;
            }
            items.push(RelatedImage {
                image: image.to_string(),
                evidence: "Layers".to_string(),
                same_layers: false,
                platform: String::new(),
                of: String::new(),
                built_on: String::new(),
                class_state: class_state.to_string(),
                versions_behind: behind,
                tags,
            });
        }
        let images = if caller.grant.allows(Action::Read(&class.spec.target.namespace)) {
            class.status.current.iter().map(|c| c.image.clone()).collect()
        } else {
            Vec::new()
        };
        Ok(ImageLineage {
            kind: "ImageLineage".to_string(),
            api_version: BERTH_API_VERSION.to_string(),
            relation: Relation::Class,
            images,
            image_stream_tag: format!("{}/{}", class.spec.target.namespace, class.spec.target.name),
            items,
        })
    }
}

/// The chains of an indexed image, one entry per platform image of a list.
fn chains_of(index: &Index, digest: &Digest) -> Option<Vec<ImageChain>> {
    if !index.contains(digest) {
        return None;
    }
    let children = index.list_children(digest);
    let images: Vec<(Digest, String)> = if children.is_empty() { vec![(digest.clone(), String::new())] } else { children };
    let mut chains = Vec::new();
    for (image, platform) in images {
        let Some(layers) = index.layers(&image) else { continue };
        let Some(last_layer) = layers.last() else { continue };
        chains.push(ImageChain {
            image: image.to_string(),
            platform,
            last_layer: last_layer.to_string(),
            chains: berth_lineage::chain_ids(&layers),
        });
    }
    Some(chains)
}

/// The server config's `classes:` block.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClassSettings {
    /// The domain of class labels: images get `<labelDomain>/<class>=current|outdated`.
    #[serde(default = "default_label_domain")]
    pub label_domain: String,
}

fn default_label_domain() -> String {
    CLASS_LABEL_DOMAIN.to_string()
}

impl Default for ClassSettings {
    fn default() -> Self {
        ClassSettings { label_domain: default_label_domain() }
    }
}

impl ClassSettings {
    pub fn validate(&self) -> std::result::Result<(), String> {
        berth_model::names::check_dns_subdomain("classes.labelDomain", &self.label_domain)
            .map_err(|err| format!("{}: {} (a label key's prefix is a DNS subdomain)", err.field, err.message))
    }
}

impl Catalog {
    /// Whether a label key is one the class controller owns (never stored on an Image).
    pub(crate) fn is_class_label(&self, key: &str) -> bool {
        is_class_label(&self.config().classes.label_domain, key)
    }
}
