//! Image streams and the views and actions built on them: ImageStreamTag, ImageTag,
//! ImageStreamImage and ImageStreamMapping.

use berth_model::access::{Action, Grant, Role};
use berth_model::core::Namespace;
use berth_model::image::Image;
use berth_model::imagestream::{FindImageError, ImageStream, ImageStreamImage, ImageStreamMapping, ImageStreamTag, ImageTag, TagReference};
use berth_model::names::{check_stream_name, check_tag, split_stream_image, split_stream_tag};
use berth_model::reference::ImageReference;
use berth_model::tags::immutable::{self, ImmutableTags};
use berth_model::tags::{self, SourceStreams};
use berth_model::{FieldError, ObjectMeta, Time};
use berth_store::{ObjectKey, Precondition, WriteTxn, transact};

use crate::services::images::TrustedImage;
use crate::services::storage::QuotaGate;
use crate::services::subscriptions;
use crate::services::{
    Caller, Catalog, Error, LazyList, ListOptions, ListResult, Resource, Result, ensure_namespace, keep_server_fields, place_in_namespace,
    precondition, stamp_new,
};

const ISIMAGE: &str = "imagestreamimages.image.openshift.io";
const ISM: &str = "imagestreammappings.image.openshift.io";
const STREAMS: &str = ImageStream::QUALIFIED;

/// The server config's `streams:` block.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamSettings {
    /// Who may create a stream by writing into one that does not exist (a push, a tag, an
    /// ImageStreamMapping, an import); creating one explicitly needs only the edit role.
    #[serde(default)]
    pub implicit_create: ImplicitCreate,
}

/// Who may create an image stream implicitly (OpenShift's seeds: "prevent images from
/// being tagged into image repositories that don't already exist, for non-administrators").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ImplicitCreate {
    /// A namespace admin or a cluster admin: a typo in a push or a tag creates nothing.
    #[default]
    Admins,
    /// Anyone who may write the namespace.
    Editors,
}

impl ImplicitCreate {
    /// The role it takes in the namespace.
    fn role(self) -> Role {
        match self {
            ImplicitCreate::Admins => Role::Admin,
            ImplicitCreate::Editors => Role::Edit,
        }
    }

    pub fn allows(self, grant: &Grant, namespace: &str) -> bool {
        grant.holds_in(namespace, self.role())
    }
}

/// Whether a stream write may remove tags an immutable tag rule pins: only a cluster
/// admin's deletion may (as Harbor lets only its admins delete immutable tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PinnedRemovals {
    Refuse,
    Allow,
}

impl PinnedRemovals {
    fn of(caller: &Caller) -> PinnedRemovals {
        if caller.grant.allows(Action::AdministerCluster) { PinnedRemovals::Allow } else { PinnedRemovals::Refuse }
    }
}

/// A virtual kind that shows one tag of a stream, named `stream:tag`: ImageStreamTag or
/// ImageTag. Both are read, listed, created, updated and deleted the same way.
pub trait TagView: Sized + Send + 'static {
    const RESOURCE: &'static str;
    /// `resource.group`, for messages.
    const QUALIFIED: &'static str;
    const KIND: &'static str;
    /// The field of the submitted view that holds the spec tag, for messages.
    const SPEC_FIELD: &'static str;
    /// Whether list items carry the tag's image (OpenShift leaves it out of ImageTag lists).
    const LISTS_IMAGES: bool;

    /// The view of `tag` of `stream`, or `None` when the stream has no such tag.
    fn of(stream: &ImageStream, tag: &str, image: Option<&Image>) -> Option<Self>;
    fn meta(&self) -> &ObjectMeta;
    /// The metadata and the spec tag of a submitted view.
    fn into_parts(self) -> (ObjectMeta, Option<TagReference>);
}

impl TagView for ImageStreamTag {
    const RESOURCE: &'static str = "imagestreamtags";
    const QUALIFIED: &'static str = "imagestreamtags.image.openshift.io";
    const KIND: &'static str = "ImageStreamTag";
    const SPEC_FIELD: &'static str = "tag";
    const LISTS_IMAGES: bool = true;

    fn of(stream: &ImageStream, tag: &str, image: Option<&Image>) -> Option<Self> {
        stream.image_stream_tag(tag, image)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn into_parts(self) -> (ObjectMeta, Option<TagReference>) {
        (self.metadata, self.tag)
    }
}

impl TagView for ImageTag {
    const RESOURCE: &'static str = "imagetags";
    const QUALIFIED: &'static str = "imagetags.image.openshift.io";
    const KIND: &'static str = "ImageTag";
    const SPEC_FIELD: &'static str = "spec";
    const LISTS_IMAGES: bool = false;

    fn of(stream: &ImageStream, tag: &str, image: Option<&Image>) -> Option<Self> {
        stream.image_tag(tag, image)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn into_parts(self) -> (ObjectMeta, Option<TagReference>) {
        (self.metadata, self.spec)
    }
}

/// The tag a change is about, owned so that the change can run on the store's writer.
struct TagTarget {
    namespace: String,
    name: String,
    stream: String,
    tag: String,
}

/// What a change to one stream's tags is, for [`Catalog::change_tag`].
enum TagChange {
    /// Create the tag; fail if the stream already has it.
    Create(TagReference),
    /// Create or replace the tag.
    Set(TagReference),
    /// Remove the tag's spec and history.
    Delete,
}

impl Catalog {
    pub(crate) fn with_repositories(&self, mut stream: ImageStream) -> ImageStream {
        let path = format!("{}/{}", stream.metadata.namespace, stream.metadata.name);
        stream.status.docker_image_repository = format!("{}/{path}", self.config().registry_hostname);
        stream.status.public_docker_image_repository =
            self.config().public_registry_hostnames.first().map(|host| format!("{host}/{path}")).unwrap_or_default();
        stream
    }

    pub fn get_stream(&self, caller: &Caller, namespace: &str, name: &str) -> Result<ImageStream> {
        caller.require(Action::Read(namespace), "get", STREAMS)?;
        Ok(self.with_repositories(self.require(namespace, name)?))
    }

    pub fn list_streams(&self, caller: &Caller, namespace: Option<&str>, options: &ListOptions) -> Result<LazyList<ImageStream>> {
        match namespace {
            Some(ns) => caller.require(Action::Read(ns), "list", STREAMS)?,
            None => caller.require(Action::ReadCluster, "list", STREAMS)?,
        }
        let catalog = self.clone();
        Ok(self.list_objects::<ImageStream>(namespace, options, |_| true)?.view(move |s| Ok(Some(catalog.with_repositories(s)))))
    }

    pub fn create_stream(&self, caller: &Caller, namespace: &str, mut stream: ImageStream) -> Result<ImageStream> {
        caller.require(Action::Write(namespace), "create", STREAMS)?;
        place_in_namespace(&mut stream.metadata, namespace)?;
        let name = stream.metadata.name.clone();
        check_valid(&stream)?;
        let now = Time::now();
        stamp_new(&mut stream.metadata, now);
        let (owned_namespace, caller) = (namespace.to_string(), caller.clone());
        let gate = self.quota_gate();
        let stored = transact(&**self.store(), move |txn| {
            let (namespace, caller) = (owned_namespace.as_str(), &caller);
            ensure_namespace(txn, namespace)?;
            let sources = load_sources(txn, caller, None, &stream)?;
            tags::prepare_create(&mut stream, &sources, now).map_err(|causes| Error::invalid(STREAMS, &name, causes))?;
            put_stream(txn, &gate, &mut stream, Precondition::Absent, &caller.cause("tag"))?;
            Ok::<_, Error>(stream)
        })?;
        Ok(self.with_repositories(stored))
    }

    pub fn update_stream(&self, caller: &Caller, namespace: &str, name: &str, mut stream: ImageStream) -> Result<ImageStream> {
        caller.require(Action::Write(namespace), "update", STREAMS)?;
        place_in_namespace(&mut stream.metadata, namespace)?;
        name_matches(&stream.metadata, name)?;
        check_valid(&stream)?;
        let expect = precondition(&stream.metadata)?;
        let (owned_namespace, owned, caller) = (namespace.to_string(), name.to_string(), caller.clone());
        let gate = self.quota_gate();
        let stored = transact(&**self.store(), move |txn| {
            let (namespace, name, caller) = (owned_namespace.as_str(), owned.as_str(), &caller);
            let old = read_stream(txn, namespace, name)?.ok_or_else(|| Error::not_found(STREAMS, name))?;
            keep_server_fields(&mut stream.metadata, &old.metadata);
            let sources = load_sources(txn, caller, Some(&old), &stream)?;
            tags::prepare_update(&old, &mut stream, &sources, Time::now()).map_err(|causes| Error::invalid(STREAMS, name, causes))?;
            put_stream(txn, &gate, &mut stream, expect, &caller.cause("tag"))?;
            Ok::<_, Error>(stream)
        })?;
        Ok(self.with_repositories(stored))
    }

    pub fn delete_stream(&self, caller: &Caller, namespace: &str, name: &str) -> Result<ImageStream> {
        caller.require(Action::Write(namespace), "delete", STREAMS)?;
        let (owned_namespace, owned) = (namespace.to_string(), name.to_string());
        let removals = PinnedRemovals::of(caller);
        let deleted = transact(&**self.store(), move |txn| {
            let (namespace, name) = (owned_namespace.as_str(), owned.as_str());
            let stream = read_stream(txn, namespace, name)?.ok_or_else(|| Error::not_found(STREAMS, name))?;
            if removals == PinnedRemovals::Refuse {
                let rules = immutable_tags(txn, namespace, &[&stream])?;
                if let Some(pinned) = immutable::pinned_changes(&stream, None, &rules).first() {
                    return Err(Error::forbidden(format!(
                        "{STREAMS} {name:?} is forbidden: deleting it would delete a pinned tag: {}",
                        pinned.message()
                    )));
                }
            }
            let revision = txn.delete(&ImageStream::key(namespace, name), Precondition::Any)?;
            if subscriptions::has_subscriptions(txn, namespace)? {
                subscriptions::record_tag_changes(txn, namespace, Some(&stream), None, revision)?;
            }
            Ok::<_, Error>(stream)
        })?;
        Ok(self.with_repositories(deleted))
    }

    /// The Image a stream's tag points at now, if berth has it.
    fn current_image(&self, stream: &ImageStream, tag: &str) -> Result<Option<Image>> {
        match stream.latest_event(tag) {
            Some(event) if !event.image.is_empty() => self.load::<Image>("", &event.image),
            _ => Ok(None),
        }
    }

    /// Reads one tag of a stream as the view `V` (`stream:tag`).
    pub fn get_tag_view<V: TagView>(&self, caller: &Caller, namespace: &str, name: &str) -> Result<V> {
        caller.require(Action::Read(namespace), "get", V::QUALIFIED)?;
        let (stream_name, tag) = split_tag_name(V::QUALIFIED, name)?;
        let stream = self.load::<ImageStream>(namespace, stream_name)?.ok_or_else(|| Error::not_found(V::QUALIFIED, name))?;
        let stream = self.with_repositories(stream);
        let image = self.current_image(&stream, tag)?;
        V::of(&stream, tag, image.as_ref()).ok_or_else(|| Error::not_found(V::QUALIFIED, name))
    }

    /// Lists every tag of every stream of a namespace as the view `V`.
    pub fn list_tag_views<V: TagView>(&self, caller: &Caller, namespace: &str, options: &ListOptions) -> Result<ListResult<V>> {
        caller.require(Action::Read(namespace), "list", V::QUALIFIED)?;
        let all = ListOptions { limit: None, continue_token: None, ..ListOptions::default() };
        let streams = self.list_objects::<ImageStream>(Some(namespace), &all, |_| true)?.collect()?;
        let mut items = Vec::new();
        for stream in streams.items {
            let stream = &self.with_repositories(stream);
            for tag in stream.tag_names() {
                let image = if V::LISTS_IMAGES { self.current_image(stream, tag)? } else { None };
                if let Some(view) = V::of(stream, tag, image.as_ref())
                    && options.field_selector.matches(view.meta())
                    && options.label_selector.matches(&view.meta().labels)
                {
                    items.push(view);
                }
            }
        }
        Ok(ListResult { items, metadata: streams.metadata })
    }

    /// Creates a tag from a submitted view; fails when the stream already has the tag.
    pub fn create_tag_view<V: TagView>(&self, caller: &Caller, namespace: &str, view: V) -> Result<V> {
        let (meta, spec) = view.into_parts();
        let name = meta.name.clone();
        let spec = required_spec::<V>(&name, spec)?;
        self.change_tag::<V>(caller, namespace, &name, &meta, TagChange::Create(spec))?;
        self.get_tag_view(caller, namespace, &name)
    }

    /// Creates or replaces a tag from a submitted view.
    pub fn update_tag_view<V: TagView>(&self, caller: &Caller, namespace: &str, name: &str, view: V) -> Result<V> {
        let (meta, spec) = view.into_parts();
        name_matches(&meta, name)?;
        let spec = required_spec::<V>(name, spec)?;
        self.change_tag::<V>(caller, namespace, name, &meta, TagChange::Set(spec))?;
        self.get_tag_view(caller, namespace, name)
    }

    /// Removes a tag's spec and history.
    pub fn delete_tag_view<V: TagView>(&self, caller: &Caller, namespace: &str, name: &str) -> Result<()> {
        self.change_tag::<V>(caller, namespace, name, &ObjectMeta::default(), TagChange::Delete)
    }

    /// Changes one tag of a stream through the view `V`. A create or set makes the stream
    /// when it does not exist yet, as OpenShift does.
    fn change_tag<V: TagView>(&self, caller: &Caller, namespace: &str, name: &str, meta: &ObjectMeta, change: TagChange) -> Result<()> {
        let verb = match change {
            TagChange::Create(_) => "create",
            TagChange::Set(_) => "update",
            TagChange::Delete => "delete",
        };
        caller.require(Action::Write(namespace), verb, V::QUALIFIED)?;
        place_in_namespace(&mut meta.clone(), namespace)?;
        let (stream_name, tag) = split_tag_name(V::QUALIFIED, name)?;
        let expect = precondition(meta)?;
        let now = Time::now();
        let target =
            TagTarget { namespace: namespace.to_string(), name: name.to_string(), stream: stream_name.to_string(), tag: tag.to_string() };
        let caller = caller.clone();
        let creation = self.config().streams.implicit_create;
        let gate = self.quota_gate();
        transact(&**self.store(), move |txn| {
            let TagTarget { namespace, name, stream: stream_name, tag } = &target;
            ensure_namespace(txn, namespace)?;
            let old = read_stream(txn, namespace, stream_name)?;
            let spec = match change {
                TagChange::Delete => {
                    let mut stream = old.ok_or_else(|| Error::not_found(V::QUALIFIED, name))?;
                    if !tags::remove_tag(&mut stream, tag) {
                        return Err(Error::not_found(V::QUALIFIED, name));
                    }
                    return put_stream_with(txn, &gate, &mut stream, expect, &caller.cause("untag"), PinnedRemovals::of(&caller));
                }
                TagChange::Create(_) if old.as_ref().is_some_and(|s| s.spec_tag(tag).is_some() || s.status_tag(tag).is_some()) => {
                    return Err(Error::already_exists(V::QUALIFIED, name));
                }
                TagChange::Create(spec) | TagChange::Set(spec) => spec,
            };
            let spec = TagReference { name: tag.clone(), ..spec };
            let mut stream = match &old {
                Some(old) => old.clone(),
                None => implicit_stream(&caller, creation, namespace, stream_name, "tagging into it", now)?,
            };
            tags::set_spec_tag(&mut stream, spec);
            check_valid(&stream).map_err(|err| Error { resource: V::QUALIFIED.to_string(), name: name.clone(), ..err })?;
            let sources = load_sources(txn, &caller, old.as_ref(), &stream)?;
            let prepared = match &old {
                Some(old) => tags::prepare_update(old, &mut stream, &sources, now),
                None => tags::prepare_create(&mut stream, &sources, now),
            };
            prepared.map_err(|causes| Error::invalid(V::QUALIFIED, name, causes))?;
            let expect = if old.is_none() { Precondition::Absent } else { expect };
            put_stream(txn, &gate, &mut stream, expect, &caller.cause("tag"))
        })
    }

    pub fn get_stream_image(&self, caller: &Caller, namespace: &str, name: &str) -> Result<ImageStreamImage> {
        caller.require(Action::Read(namespace), "get", ISIMAGE)?;
        let Some((stream_name, id)) = split_stream_image(name) else {
            return Err(Error::bad_request(format!("{name:?} is not an image stream image name: use STREAM@DIGEST")));
        };
        let stream = self.load::<ImageStream>(namespace, stream_name)?.ok_or_else(|| Error::not_found(ISIMAGE, name))?;
        let event = match stream.find_image(id) {
            Ok(event) => event,
            Err(FindImageError::NotFound) => return Err(Error::not_found(ISIMAGE, name)),
            Err(FindImageError::Ambiguous) => {
                return Err(Error::bad_request(format!(
                    "{id:?} matches more than one image in {}: give more of the digest",
                    stream.describe()
                )));
            }
        };
        let image = self.load::<Image>("", &event.image)?.ok_or_else(|| Error::not_found(ISIMAGE, name))?;
        Ok(stream.image_stream_image(&image))
    }

    /// Removes the tags of a stream that point at `digest` now (a registry manifest
    /// delete). Returns how many were removed.
    pub fn untag_image(&self, caller: &Caller, namespace: &str, name: &str, digest: &berth_model::Digest) -> Result<usize> {
        caller.require(Action::Write(namespace), "delete", ImageStreamTag::QUALIFIED)?;
        let (namespace, name, digest) = (namespace.to_string(), name.to_string(), digest.to_string());
        let cause = caller.cause("untag");
        let removals = PinnedRemovals::of(caller);
        let gate = self.quota_gate();
        transact(&**self.store(), move |txn| {
            let Some(mut stream) = read_stream(txn, &namespace, &name)? else {
                return Ok(0);
            };
            let tagged: Vec<String> =
                stream.status.tags.iter().filter(|t| t.items.first().is_some_and(|e| e.image == digest)).map(|t| t.tag.clone()).collect();
            for tag in &tagged {
                tags::remove_tag(&mut stream, tag);
            }
            if !tagged.is_empty() {
                put_stream_with(txn, &gate, &mut stream, Precondition::Any, &cause, removals)?;
            }
            Ok::<_, Error>(tagged.len())
        })
    }

    /// Fails with 403 when `namespace/name` does not exist and the caller may not create
    /// it by `how` ("pushing to it"): said before work that would be wasted (blob uploads,
    /// reading a mapping's image); the write that creates the stream checks it again.
    pub fn check_stream_creation(&self, caller: &Caller, namespace: &str, name: &str, how: &str) -> Result<()> {
        let creation = self.config().streams.implicit_create;
        if creation.allows(&caller.grant, namespace) || self.load::<ImageStream>(namespace, name)?.is_some() {
            return Ok(());
        }
        check_implicit_create(caller, creation, namespace, name, how)
    }

    /// Checks an ImageStreamMapping as received: the stream, tag and image names and the
    /// image's pull spec (`image.dockerImageReference`, which becomes the tag event's).
    pub fn check_mapping(&self, namespace: &str, mapping: &ImageStreamMapping) -> Result<()> {
        let stream_name = &mapping.metadata.name;
        let mut errors: Vec<FieldError> = Vec::new();
        errors.extend(check_stream_name("metadata.name", namespace, stream_name).err());
        errors.extend(check_tag("tag", &mapping.tag).err());
        if let Err(image_errors) = mapping.image.validate("image.") {
            errors.extend(image_errors);
        }
        if mapping.image.docker_image_reference.is_empty() {
            errors.push(FieldError::new("image.dockerImageReference", "the pull spec of the image is required"));
        } else if let Err(message) = ImageReference::parse(&mapping.image.docker_image_reference) {
            errors.push(FieldError::new("image.dockerImageReference", message));
        }
        if !errors.is_empty() {
            return Err(Error::invalid(ISM, stream_name, errors));
        }
        Ok(())
    }

    /// Stores `image` (unless berth already has it) and points the mapping's tag at it,
    /// with the mapping's pull spec in the tag's history, creating the stream when it is
    /// missing. The mapping's own copy of the image is not read: `image` is what berth
    /// read from checked bytes or what a cluster admin vouched for. `via` names the way
    /// in for the tag's history (`push`, `mapping`).
    pub fn create_mapping(
        &self,
        caller: &Caller,
        namespace: &str,
        mut mapping: ImageStreamMapping,
        image: TrustedImage,
        via: &str,
    ) -> Result<()> {
        caller.require(Action::Write(namespace), "create", ISM)?;
        place_in_namespace(&mut mapping.metadata, namespace)?;
        self.check_mapping(namespace, &mapping)?;
        let stream_name = mapping.metadata.name.clone();
        if image.image().metadata.name != mapping.image.metadata.name {
            return Err(Error::invalid(
                ISM,
                &stream_name,
                vec![FieldError::new("image.metadata.name", "the image read does not have the digest the mapping names")],
            ));
        }
        let now = Time::now();
        let tag = mapping.tag.clone();
        let mut image = image.into_image();
        image.docker_image_reference = mapping.image.docker_image_reference;
        let owned_namespace = namespace.to_string();
        let cause = caller.cause(via);
        let (caller, creation) = (caller.clone(), self.config().streams.implicit_create);
        let how = if via == "push" { "pushing to it" } else { "mapping an image into it" };
        let gate = self.quota_gate();
        transact(&**self.store(), move |txn| {
            let namespace = owned_namespace.as_str();
            ensure_namespace(txn, namespace)?;
            let image_key = Image::key("", &image.metadata.name);
            match txn.get(&image_key)? {
                Some(stored) => {
                    let known = Image::decode(&stored)?;
                    image.metadata = known.metadata;
                }
                None => {
                    image.metadata.namespace.clear();
                    stamp_new(&mut image.metadata, now);
                    txn.put(&image_key, &image.encode(), &[], Precondition::Absent)?;
                }
            }
            let old = read_stream(txn, namespace, &stream_name)?;
            let expect = if old.is_some() { Precondition::Any } else { Precondition::Absent };
            let mut stream = match old {
                Some(old) => old,
                None => implicit_stream(&caller, creation, namespace, &stream_name, how, now)?,
            };
            if tags::map_image(&mut stream, &tag, &image, now) {
                put_stream(txn, &gate, &mut stream, expect, &cause)?;
            }
            Ok(())
        })
    }
}

/// A new stream for a write into `namespace/name`, which does not exist (`how` says what
/// the write is: "pushing to it"), when the server's `streams.implicitCreate` lets the
/// caller create one that way; else 403, saying how to create it.
pub(crate) fn implicit_stream(
    caller: &Caller,
    creation: ImplicitCreate,
    namespace: &str,
    name: &str,
    how: &str,
    now: Time,
) -> Result<ImageStream> {
    check_implicit_create(caller, creation, namespace, name, how)?;
    Ok(new_stream(namespace, name, now))
}

/// Fails with 403 unless the caller may create the missing stream `namespace/name` by
/// `how` (see [`implicit_stream`]).
pub(crate) fn check_implicit_create(caller: &Caller, creation: ImplicitCreate, namespace: &str, name: &str, how: &str) -> Result<()> {
    if creation.allows(&caller.grant, namespace) {
        return Ok(());
    }
    Err(Error::forbidden(format!(
        "image stream {namespace}/{name} does not exist, and token {:?} ({}) may not create it by {how}: \
         only a namespace admin may (the server setting streams.implicitCreate is {creation:?}). \
         Create the stream first with `berth create imagestream {name} -n {namespace}` and try again \
         (or have the server's operator set streams.implicitCreate: Editors)",
        caller.token,
        caller.grant.describe(),
    )))
}

pub(crate) fn new_stream(namespace: &str, name: &str, now: Time) -> ImageStream {
    let mut stream = ImageStream {
        metadata: ObjectMeta { name: name.to_string(), namespace: namespace.to_string(), generation: Some(1), ..ObjectMeta::default() },
        ..ImageStream::default()
    };
    stamp_new(&mut stream.metadata, now);
    stream
}

fn check_valid(stream: &ImageStream) -> Result<()> {
    let errors = tags::validate_stream(stream);
    if errors.is_empty() { Ok(()) } else { Err(Error::invalid(STREAMS, &stream.metadata.name, errors)) }
}

fn name_matches(meta: &ObjectMeta, name: &str) -> Result<()> {
    if !meta.name.is_empty() && meta.name != name {
        return Err(Error::bad_request(format!("the name of the object ({:?}) does not match the name in the URL ({name:?})", meta.name)));
    }
    Ok(())
}

fn split_tag_name<'a>(resource: &str, name: &'a str) -> Result<(&'a str, &'a str)> {
    split_stream_tag(name)
        .ok_or_else(|| Error::invalid(resource, name, vec![FieldError::new("metadata.name", format!("{name:?} must be STREAM:TAG"))]))
}

fn required_spec<V: TagView>(name: &str, spec: Option<TagReference>) -> Result<TagReference> {
    spec.ok_or_else(|| {
        Error::invalid(
            V::QUALIFIED,
            name,
            vec![FieldError::new(V::SPEC_FIELD, "the tag's spec is required: say where the tag comes from in `from`")],
        )
    })
}

pub(crate) fn read_stream(txn: &mut dyn WriteTxn, namespace: &str, name: &str) -> Result<Option<ImageStream>> {
    match txn.get(&ImageStream::key(namespace, name))? {
        Some(stored) => Ok(Some(ImageStream::decode(&stored)?)),
        None => Ok(None),
    }
}

/// Writes a stream and what follows from it: subscriptions' change records, and the
/// streams waiting for one of its tags. New tag history says it was caused by `cause`.
/// Every stream write comes here, so this is where immutable tags are kept: a write that
/// moves or removes a tag pinned by the namespace's or the stream's (old or new)
/// `berth.dev/immutable-tags` is refused with 403, and nothing of it is stored.
pub(crate) fn put_stream(
    txn: &mut dyn WriteTxn,
    gate: &QuotaGate,
    stream: &mut ImageStream,
    expect: Precondition,
    cause: &str,
) -> Result<()> {
    put_stream_with(txn, gate, stream, expect, cause, PinnedRemovals::Refuse)
}

/// [`put_stream`], for a write that may remove pinned tags when `removals` allows it (a
/// cluster admin's deletion); moving one is refused all the same.
pub(crate) fn put_stream_with(
    txn: &mut dyn WriteTxn,
    gate: &QuotaGate,
    stream: &mut ImageStream,
    expect: Precondition,
    cause: &str,
    removals: PinnedRemovals,
) -> Result<()> {
    let key = ImageStream::key(&stream.metadata.namespace, &stream.metadata.name);
    // The repositories in status are derived on read, never stored.
    stream.status.docker_image_repository.clear();
    stream.status.public_docker_image_repository.clear();
    let subscribed = subscriptions::has_subscriptions(txn, &key.namespace)?;
    let unattributed = stream.status.tags.iter().any(|list| list.items.first().is_some_and(|event| event.cause.is_empty()));
    let old = read_stream(txn, &key.namespace, &key.name)?;
    if let Some(old) = &old {
        let rules = immutable_tags(txn, &key.namespace, &[old, stream])?;
        let refused = immutable::pinned_changes(old, Some(stream), &rules)
            .into_iter()
            .find(|pinned| !(pinned.is_removal() && removals == PinnedRemovals::Allow));
        if let Some(pinned) = refused {
            return Err(Error::forbidden(pinned.message()));
        }
    }
    if unattributed {
        tags::attribute_changes(old.as_ref(), stream, cause);
    }
    let added = gate.check(txn, old.as_ref(), stream, cause)?;
    let revision = txn.put(&key, &stream.encode(), &stream.refs(), expect).map_err(|err| Error::from_store(err, STREAMS, &key.name))?;
    gate.written(&key.namespace, revision, added);
    if subscribed {
        subscriptions::record_tag_changes(txn, &key.namespace, old.as_ref(), Some(stream), revision)?;
    }
    stream.metadata.resource_version = revision.to_string();
    stream.set_type();
    resolve_waiting_streams(txn, gate, stream, cause)
}

/// Sets the tags of other streams that wait for a tag of `stream` (an ImageStreamTag
/// source that did not exist when they were set) once that tag has an image, in the
/// same transaction; their own waiters follow in turn. A stream nobody waits for costs
/// one index look-up.
fn resolve_waiting_streams(txn: &mut dyn WriteTxn, gate: &QuotaGate, stream: &ImageStream, cause: &str) -> Result<()> {
    let prefix = format!("{}{}/{}:", tags::WAITING_PREFIX, stream.metadata.namespace, stream.metadata.name);
    let mut waiting: Vec<ObjectKey> = txn.referrers_with_prefix(ImageStream::RESOURCE, &prefix)?.into_iter().map(|(_, key)| key).collect();
    waiting.dedup();
    for key in waiting {
        let Some(mut follower) = read_stream(txn, &key.namespace, &key.name)? else {
            continue;
        };
        let rules = immutable_tags(txn, &key.namespace, &[&follower])?;
        if tags::resolve_waiting(&mut follower, stream, &rules, Time::now()) {
            put_stream(txn, gate, &mut follower, Precondition::Any, cause)?;
        }
    }
    Ok(())
}

/// Loads the other streams the changed tags of `stream` read from, checking the caller
/// may read each.
fn load_sources(txn: &mut dyn WriteTxn, caller: &Caller, old: Option<&ImageStream>, stream: &ImageStream) -> Result<SourceStreams> {
    let mut sources = SourceStreams::new();
    for (namespace, name) in tags::source_streams_needed(old, stream) {
        caller.require(Action::Read(&namespace), "get", STREAMS)?;
        if let Some(source) = read_stream(txn, &namespace, &name)? {
            sources.insert((namespace, name), source);
        }
    }
    Ok(sources)
}

/// The immutable tag rules of `namespace` and of the given versions of one of its streams.
pub(crate) fn immutable_tags(txn: &mut dyn WriteTxn, namespace: &str, streams: &[&ImageStream]) -> Result<ImmutableTags> {
    let namespace = match txn.get(&Namespace::key("", namespace))? {
        Some(stored) => Some(Namespace::decode(&stored)?),
        None => None,
    };
    Ok(ImmutableTags::of(namespace.as_ref(), streams))
}
