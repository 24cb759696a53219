//! Images: cluster-scoped, named by digest, content immutable. An Image is visible to a
//! caller with cluster read access, or to one who may read a stream that references it;
//! to anyone else it does not exist (404, so that digests do not leak across namespaces).

use std::collections::BTreeMap;

use berth_model::access::Action;
use berth_model::image::Image;
use berth_model::imagestream::ImageStream;
use berth_model::notify::{ChangeType, TagChange};
use berth_model::policy::{DENY_EXECUTION, QUALITY_PREFIX, is_mark};
use berth_model::{Digest, Time};
use berth_store::{Precondition, transact};

use crate::services::lineage::StreamCache;

use crate::services::{Caller, Catalog, Error, LazyList, ListOptions, Resource, Result, keep_server_fields, precondition, stamp_new};

const IMAGES: &str = Image::QUALIFIED;

/// An Image berth may store: one it built from bytes it checked against the digest (a
/// push, an import, a tenant's mapping read the way an import reads it), or one a
/// cluster admin wrote. An Image is shared by every namespace and the first one stored
/// under a digest stays, so what a tenant says about an image (its layers, config,
/// labels) is never taken as it: that is what this type stands for.
#[derive(Clone, Debug)]
pub struct TrustedImage(Image);

impl TrustedImage {
    /// An Image built from manifest and config bytes whose digests were checked.
    pub(crate) fn verified(image: Image) -> TrustedImage {
        TrustedImage(image)
    }

    /// An Image as a client wrote it, which only a cluster admin may vouch for.
    pub fn vouched(caller: &Caller, image: Image) -> Result<TrustedImage> {
        caller.require(Action::WriteImages, "create", IMAGES)?;
        Ok(TrustedImage(image))
    }

    pub fn image(&self) -> &Image {
        &self.0
    }

    pub(crate) fn into_image(self) -> Image {
        self.0
    }
}

impl Catalog {
    pub(crate) fn can_see_image(&self, caller: &Caller, digest: &str) -> Result<bool> {
        if caller.grant.allows(Action::ReadCluster) {
            return Ok(true);
        }
        let referrers = self.store().referrers(ImageStream::RESOURCE, digest)?;
        Ok(referrers.iter().any(|key| caller.grant.allows(Action::Read(&key.namespace))))
    }

    pub fn get_image(&self, caller: &Caller, name: &str) -> Result<Image> {
        if !self.can_see_image(caller, name)? {
            return Err(Error::not_found(IMAGES, name));
        }
        self.with_class_labels(self.require("", name)?)
    }

    /// Images with their class labels; a label selector sees those too.
    pub fn list_images(&self, caller: &Caller, options: &ListOptions) -> Result<LazyList<Image>> {
        let selector = options.label_selector.clone();
        let stored_options = ListOptions { label_selector: Default::default(), ..options.clone() };
        let list = self.list_objects::<Image>(None, &stored_options, |_| true)?;
        // A namespaced caller sees the images its namespaces' streams reference.
        let (catalog, caller) = (self.clone(), caller.clone());
        let sees_all = caller.grant.allows(Action::ReadCluster);
        let labelled = self.class_labeller()?;
        Ok(list.view(move |image| {
            if !sees_all && !catalog.can_see_image(&caller, &image.metadata.name)? {
                return Ok(None);
            }
            let image = labelled(image);
            Ok(selector.matches(&image.metadata.labels).then_some(image))
        }))
    }

    pub fn create_image(&self, caller: &Caller, mut image: Image) -> Result<Image> {
        caller.require(Action::WriteImages, "create", IMAGES)?;
        let name = image.metadata.name.clone();
        image.validate("").map_err(|causes| Error::invalid(IMAGES, &name, causes))?;
        image.metadata.namespace.clear();
        image.metadata.labels.retain(|key, _| !self.is_class_label(key));
        stamp_new(&mut image.metadata, Time::now());
        let (key, body) = (Image::key("", &name), image.encode());
        let revision = transact(&**self.store(), move |txn| txn.put(&key, &body, &[], Precondition::Absent))
            .map_err(|err| Error::from_store(err, IMAGES, &name))?;
        image.metadata.resource_version = revision.to_string();
        image.set_type();
        Ok(image)
    }

    /// Stores an image pushed by digest to stream `stream` of `namespace` (the registry
    /// checked the push), unless berth already has it, and creates the stream (with no
    /// tag) when it does not exist yet, as a push by tag would.
    pub fn store_pushed_image(&self, caller: &Caller, namespace: &str, stream: &str, image: TrustedImage) -> Result<()> {
        caller.require(Action::Write(namespace), "push", IMAGES)?;
        let mut image = image.into_image();
        let name = image.metadata.name.clone();
        image.validate("").map_err(|causes| Error::invalid(IMAGES, &name, causes))?;
        berth_model::names::check_stream_name("metadata.name", namespace, stream)
            .map_err(|err| Error::invalid(ImageStream::QUALIFIED, stream, vec![err]))?;
        let now = Time::now();
        image.metadata.namespace.clear();
        stamp_new(&mut image.metadata, now);
        let (key, body) = (Image::key("", &name), image.encode());
        let (namespace, stream) = (namespace.to_string(), stream.to_string());
        let cause = caller.cause("push");
        let (caller, creation) = (caller.clone(), self.config().streams.implicit_create);
        let gate = self.quota_gate();
        transact(&**self.store(), move |txn| {
            crate::services::ensure_namespace(txn, &namespace)?;
            if crate::services::streams::read_stream(txn, &namespace, &stream)?.is_none() {
                let mut created = crate::services::streams::implicit_stream(&caller, creation, &namespace, &stream, "pushing to it", now)?;
                crate::services::streams::put_stream(txn, &gate, &mut created, Precondition::Absent, &cause)?;
            }
            if txn.get(&key)?.is_none() {
                txn.put(&key, &body, &[], Precondition::Absent)?;
            }
            Ok::<_, Error>(())
        })
    }

    /// Replaces an image's labels and annotations; any other change is refused. A
    /// scanner token changes only the image's marks. A change of marks is announced, in
    /// the same transaction, to the subscriptions of every tag whose current image is the
    /// image or built on it (`ImageMarked`).
    pub fn update_image(&self, caller: &Caller, name: &str, update: Image) -> Result<Image> {
        let marks_only = !caller.grant.allows(Action::WriteImages);
        caller.require(if marks_only { Action::MarkImages } else { Action::WriteImages }, "update", IMAGES)?;
        if !update.metadata.name.is_empty() && update.metadata.name != name {
            return Err(Error::bad_request(format!(
                "the name of the object ({:?}) does not match the name in the URL ({name:?})",
                update.metadata.name
            )));
        }
        let expect = precondition(&update.metadata)?;
        // What the marks were and what they become decide the announcements, worked out
        // before the write (they need the lineage index) and checked again inside it.
        let before = self.require::<Image>("", name)?;
        let (marks_before, marks_after) = (marks_of(&before.metadata.annotations), marks_of(&update.metadata.annotations));
        let announcements = if marks_before == marks_after { Vec::new() } else { self.marked_changes(name, &marks_after)? };
        let name = name.to_string();
        let domain = self.config().classes.label_domain.clone();
        transact(&**self.store(), move |txn| {
            let name = name.as_str();
            let key = Image::key("", name);
            let stored = txn.get(&key)?.ok_or_else(|| Error::not_found(IMAGES, name))?;
            let mut image = Image::decode(&stored)?;
            let errors = image.immutable_changes(&update);
            if !errors.is_empty() {
                return Err(Error::invalid(IMAGES, name, errors));
            }
            if marks_of(&image.metadata.annotations) != marks_before {
                return Err(Error::conflict(IMAGES, name)
                    .with_message(format!("the marks of image {name} changed while this update was prepared: read it again and retry")));
            }
            let mut meta = update.metadata.clone();
            // Class labels are computed on every read, never stored (see classes.rs).
            meta.labels.retain(|key, _| !berth_model::lineage::is_class_label(&domain, key));
            if marks_only && (meta.labels != image.metadata.labels || unmarked(&meta.annotations) != unmarked(&image.metadata.annotations))
            {
                return Err(Error::forbidden(format!(
                    "a scanner token may change only an image's marks ({DENY_EXECUTION} and {QUALITY_PREFIX}* annotations): leave its labels and other annotations as they are"
                )));
            }
            keep_server_fields(&mut meta, &image.metadata);
            meta.name = name.to_string();
            meta.namespace.clear();
            image.metadata = meta;
            let revision = txn.put(&key, &image.encode(), &[], expect).map_err(|err| Error::from_store(err, IMAGES, name))?;
            crate::services::subscriptions::record_changes(txn, announcements, revision)?;
            image.metadata.resource_version = revision.to_string();
            Ok(image)
        })
    }

    /// The `ImageMarked` changes for a change of `digest`'s marks to `marks`: one per tag
    /// whose current image is `digest` or built on it.
    fn marked_changes(&self, digest: &str, marks: &BTreeMap<String, String>) -> Result<Vec<TagChange>> {
        let Ok(marked) = digest.parse::<Digest>() else { return Ok(Vec::new()) };
        self.lineage_index().sync(&**self.store())?;
        let mut images = vec![marked.clone()];
        images.extend(self.lineage_index().read(|index| index.descendants(&marked)).unwrap_or_default().into_iter().map(|r| r.image));
        let message = if marks.is_empty() {
            format!("image {digest} is no longer marked")
        } else {
            let list: Vec<String> =
                marks.keys().map(|k| if k == DENY_EXECUTION { format!("{k}={}", marks[k]) } else { k.clone() }).collect();
            format!("image {digest} is marked: {}", list.join(", "))
        };
        let (mut changes, mut streams, now) = (Vec::new(), StreamCache::default(), Time::now());
        let everyone = |_: &str| true;
        for image in &images {
            self.visit_tags_of(image.as_str(), &mut streams, &everyone, &mut |stream, tag, holder| {
                let Some(latest) = tag.items.first().filter(|event| event.image == holder) else { return };
                changes.push(TagChange {
                    image: latest.image.clone(),
                    pull_spec: latest.docker_image_reference.clone(),
                    message: message.clone(),
                    marked_image: digest.to_string(),
                    marks: marks.clone(),
                    ..TagChange::of(ChangeType::ImageMarked, stream, &tag.tag, now)
                });
            })?;
        }
        changes.sort_by(|a, b| (&a.metadata.namespace, &a.stream, &a.tag).cmp(&(&b.metadata.namespace, &b.stream, &b.tag)));
        changes.dedup_by(|a, b| (&a.metadata.namespace, &a.stream, &a.tag) == (&b.metadata.namespace, &b.stream, &b.tag));
        Ok(changes)
    }

    pub fn delete_image(&self, caller: &Caller, name: &str) -> Result<Image> {
        caller.require(Action::AdministerCluster, "delete", IMAGES)?;
        let name = name.to_string();
        transact(&**self.store(), move |txn| {
            let name = name.as_str();
            let key = Image::key("", name);
            let stored = txn.get(&key)?.ok_or_else(|| Error::not_found(IMAGES, name))?;
            txn.delete(&key, Precondition::Any)?;
            Image::decode(&stored)
        })
    }
}

/// An image's marks: its annotations that are marks.
fn marks_of(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    annotations.iter().filter(|(key, _)| is_mark(key)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// An image's annotations other than its marks.
fn unmarked(annotations: &BTreeMap<String, String>) -> BTreeMap<&String, &String> {
    annotations.iter().filter(|(key, _)| !is_mark(key)).collect()
}
