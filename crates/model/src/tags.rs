//! The tag rules of OpenShift's image streams (reference/openshift.md §1): validation,
//! spec and tag generations, history (TagEvents newest first), synchronous resolution of
//! tags that come from other tags or pinned images, and tags that track other tags.
//!
//! Every function here is pure: the caller loads the streams a change needs, passes the
//! current time, and stores what comes back.

use std::collections::{BTreeMap, BTreeSet};

use crate::image::Image;
use crate::imagestream::{FindImageError, ImageStream, NamedTagEventList, TagEvent, TagEventCondition, TagReference};
use crate::names::{check_dns_subdomain, check_stream_name, check_tag};
use crate::reference::ImageReference;
use crate::{FieldError, Time};

pub mod immutable;
pub mod rollback;

use immutable::ImmutableTags;

pub const KIND_DOCKER_IMAGE: &str = "DockerImage";
pub const KIND_IMAGE_STREAM_TAG: &str = "ImageStreamTag";
pub const KIND_IMAGE_STREAM_IMAGE: &str = "ImageStreamImage";
pub const CONDITION_IMPORT_SUCCESS: &str = "ImportSuccess";
/// The stream annotation that records when its tags were last checked upstream.
pub const REPOSITORY_CHECK_ANNOTATION: &str = "openshift.io/image.dockerRepositoryCheck";

/// Streams other than the one being changed, keyed by `(namespace, name)`, that its
/// changed tags read from. The caller loads them (checking the user may read them).
pub type SourceStreams = BTreeMap<(String, String), ImageStream>;

/// Where a spec tag's `from` points, once parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagSource {
    DockerImage(ImageReference),
    /// `[stream:]tag` in `namespace`.
    StreamTag {
        namespace: String,
        stream: String,
        tag: String,
    },
    /// `[stream@]id` in `namespace`.
    StreamImage {
        namespace: String,
        stream: String,
        id: String,
    },
}

impl TagSource {
    /// Parses `tag.from` of a tag in `stream`; `None` when the tag has no `from`.
    pub fn of(stream: &ImageStream, tag: &TagReference) -> Option<Result<TagSource, String>> {
        let from = tag.from.as_ref()?;
        let namespace = if from.namespace.is_empty() { stream.metadata.namespace.clone() } else { from.namespace.clone() };
        Some(match from.kind.as_str() {
            KIND_DOCKER_IMAGE => ImageReference::parse(&from.name).map(TagSource::DockerImage),
            KIND_IMAGE_STREAM_TAG => {
                let (other, tag) = split_or_same(&stream.metadata.name, &from.name, ':');
                match check_tag("", tag).and_then(|()| check_dns_subdomain("", other)) {
                    Ok(()) => Ok(TagSource::StreamTag { namespace, stream: other.to_string(), tag: tag.to_string() }),
                    Err(_) => Err(format!("{:?} must be TAG or STREAM:TAG", from.name)),
                }
            }
            KIND_IMAGE_STREAM_IMAGE => {
                let (other, id) = split_or_same(&stream.metadata.name, &from.name, '@');
                match check_dns_subdomain("", other) {
                    Ok(()) if !id.is_empty() => Ok(TagSource::StreamImage { namespace, stream: other.to_string(), id: id.to_string() }),
                    _ => Err(format!("{:?} must be STREAM@DIGEST", from.name)),
                }
            }
            other => Err(format!("kind {other:?} is not supported: use DockerImage, ImageStreamTag or ImageStreamImage")),
        })
    }

    fn stream_key(&self) -> Option<(&str, &str)> {
        match self {
            TagSource::DockerImage(_) => None,
            TagSource::StreamTag { namespace, stream, .. } | TagSource::StreamImage { namespace, stream, .. } => Some((namespace, stream)),
        }
    }
}

fn split_or_same<'a>(own: &'a str, name: &'a str, separator: char) -> (&'a str, &'a str) {
    match name.split_once(separator) {
        Some((stream, rest)) => (stream, rest),
        None => (own, name),
    }
}

/// Checks a submitted stream: names, tags, sources and policies. `metadata.namespace`
/// must already be set.
pub fn validate_stream(stream: &ImageStream) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Err(err) = check_stream_name("metadata.name", &stream.metadata.namespace, &stream.metadata.name) {
        errors.push(err);
    }
    if !stream.spec.docker_image_repository.is_empty()
        && let Err(err) = ImageReference::parse(&stream.spec.docker_image_repository)
    {
        errors.push(FieldError::new("spec.dockerImageRepository", err));
    }
    errors.extend(immutable::check_annotation(&stream.metadata.annotations));
    errors.extend(crate::contract::validate_overrides(stream));
    let mut seen = BTreeSet::new();
    for (idx, tag) in stream.spec.tags.iter().enumerate() {
        let field = format!("spec.tags[{idx}]");
        if let Err(err) = check_tag(&format!("{field}.name"), &tag.name) {
            errors.push(err);
        }
        if !seen.insert(tag.name.as_str()) {
            errors.push(FieldError::new(format!("{field}.name"), format!("tag {:?} appears more than once", tag.name)));
        }
        match TagSource::of(stream, tag) {
            Some(Err(message)) => errors.push(FieldError::new(format!("{field}.from"), message)),
            Some(Ok(TagSource::StreamTag { namespace, stream: other, tag: source_tag }))
                if namespace == stream.metadata.namespace && other == stream.metadata.name && source_tag == tag.name =>
            {
                errors.push(FieldError::new(format!("{field}.from.name"), "a tag cannot come from itself"));
            }
            _ => {}
        }
        if !matches!(tag.reference_policy.policy_type.as_str(), "Source" | "Local") {
            errors.push(FieldError::new(format!("{field}.referencePolicy.type"), "must be Source or Local"));
        }
        if !matches!(tag.import_policy.import_mode.as_str(), "" | "Legacy" | "PreserveOriginal") {
            errors.push(FieldError::new(format!("{field}.importPolicy.importMode"), "must be Legacy or PreserveOriginal"));
        }
        if tag.generation.is_some_and(|g| g < 0) {
            errors.push(FieldError::new(format!("{field}.generation"), "must not be negative: set 0 to ask for a re-import"));
        }
    }
    errors
}

/// The other streams the changed tags of `new` read from. Load these (with the user's
/// access checked) into [`SourceStreams`] before calling [`prepare_create`] or
/// [`prepare_update`].
pub fn source_streams_needed(old: Option<&ImageStream>, new: &ImageStream) -> Vec<(String, String)> {
    let mut needed = BTreeSet::new();
    for tag in &new.spec.tags {
        if old.is_some_and(|old| !tag_changed(old, new, tag)) {
            continue;
        }
        if let Some(Ok(source)) = TagSource::of(new, tag)
            && let Some((namespace, stream)) = source.stream_key()
            && (namespace != new.metadata.namespace || stream != new.metadata.name)
        {
            needed.insert((namespace.to_string(), stream.to_string()));
        }
    }
    needed.into_iter().collect()
}

/// Prepares a stream about to be created: generation 1, every spec tag stamped with it,
/// status built from the tags that resolve at once.
pub fn prepare_create(stream: &mut ImageStream, sources: &SourceStreams, now: Time) -> Result<(), Vec<FieldError>> {
    stream.metadata.generation = Some(1);
    stream.status.tags.clear();
    for tag in &mut stream.spec.tags {
        tag.generation = Some(1);
    }
    stream.spec.tags.sort_by(|a, b| a.name.cmp(&b.name));
    let changed: Vec<String> = stream.spec.tags.iter().map(|t| t.name.clone()).collect();
    resolve_changed_tags(stream, &changed, sources, now)
}

/// Prepares an update of `old` into `stream`: status is the server's, user-set tag
/// generations are ignored except 0 (re-import), the generation moves when the spec
/// does, and changed tags are resolved.
pub fn prepare_update(old: &ImageStream, stream: &mut ImageStream, sources: &SourceStreams, now: Time) -> Result<(), Vec<FieldError>> {
    stream.status = old.status.clone();
    stream.spec.tags.sort_by(|a, b| a.name.cmp(&b.name));
    for tag in &mut stream.spec.tags {
        let reset = tag.generation == Some(0);
        tag.generation = match old.spec_tag(&tag.name) {
            Some(_) if reset => Some(0),
            Some(previous) => previous.generation,
            None => None,
        };
    }
    let old_generation = old.metadata.generation.unwrap_or(1);
    let spec_changed = stream.spec != old.spec;
    let generation = if spec_changed { old_generation + 1 } else { old_generation };
    stream.metadata.generation = Some(generation);
    let changed: Vec<String> = stream.spec.tags.iter().filter(|t| tag_changed(old, stream, t)).map(|t| t.name.clone()).collect();
    for tag in &mut stream.spec.tags {
        if changed.contains(&tag.name) {
            tag.generation = Some(generation);
        }
    }
    resolve_changed_tags(stream, &changed, sources, now)
}

/// Whether `tag` of `new` differs from the same tag of `old` in a way that needs it
/// resolved or imported again (OpenShift's `tagRefChanged`).
fn tag_changed(old: &ImageStream, new: &ImageStream, tag: &TagReference) -> bool {
    let Some(previous) = old.spec_tag(&tag.name) else {
        return true;
    };
    if tag.generation.is_none() || tag.generation == Some(0) || previous.generation != tag.generation {
        return true;
    }
    let namespace_of = |stream: &ImageStream, t: &TagReference| {
        t.from.as_ref().map(|f| if f.namespace.is_empty() { stream.metadata.namespace.clone() } else { f.namespace.clone() })
    };
    previous.from.as_ref().map(|f| (&f.kind, &f.name)) != tag.from.as_ref().map(|f| (&f.kind, &f.name))
        || namespace_of(old, previous) != namespace_of(new, tag)
        || previous.reference != tag.reference
        || previous.import_policy.import_mode != tag.import_policy.import_mode
}

fn resolve_changed_tags(stream: &mut ImageStream, changed: &[String], sources: &SourceStreams, now: Time) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    for name in changed {
        let idx = stream.spec.tags.iter().position(|t| &t.name == name).expect("changed tags come from the spec");
        let tag = stream.spec.tags[idx].clone();
        let generation = tag.generation.unwrap_or(1);
        let field = format!("spec.tags[{idx}].from.name");
        let event = match TagSource::of(stream, &tag) {
            None => continue,
            Some(Err(message)) => {
                errors.push(FieldError::new(field, message));
                continue;
            }
            Some(Ok(TagSource::DockerImage(reference))) if tag.reference => Some(TagEvent {
                created: now,
                docker_image_reference: reference.to_string(),
                image: String::new(),
                generation,
                cause: String::new(),
            }),
            // The importer picks the tag up: its generation is now ahead of its status.
            Some(Ok(TagSource::DockerImage(_))) => continue,
            Some(Ok(source)) => match resolve_source(stream, sources, &source) {
                Ok(Resolution::Now(found)) => Some(TagEvent { created: now, generation, ..found }),
                Ok(Resolution::Later) => None,
                Ok(Resolution::Waiting(message)) => {
                    record_import_failure(stream, name, generation, WAITING_REASON, &message, now);
                    None
                }
                Err(message) => {
                    errors.push(FieldError::new(field, message));
                    continue;
                }
            },
        };
        if let Some(event) = event
            && add_tag_event(stream, name, event.clone())
        {
            update_tracking_tags(stream, name, &event, now);
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// What a StreamTag or StreamImage source gives a tag now.
enum Resolution {
    /// The event the source points at.
    Now(TagEvent),
    /// A tag of the same stream that has no image yet: the tag follows it when it gets one.
    Later,
    /// An image stream tag of another stream that does not exist yet (or has no image):
    /// accepted, as OpenShift does, and resolved when it appears ([`resolve_waiting`]).
    Waiting(String),
}

/// The condition reason of a tag that waits for its source to appear.
pub const WAITING_REASON: &str = "NotFound";

/// Finds the event a StreamTag or StreamImage source points at now.
fn resolve_source(stream: &ImageStream, sources: &SourceStreams, source: &TagSource) -> Result<Resolution, String> {
    let (namespace, other) = source.stream_key().expect("only stream sources are resolved here");
    let same_stream = namespace == stream.metadata.namespace && other == stream.metadata.name;
    let source_stream = if same_stream { Some(stream) } else { sources.get(&(namespace.to_string(), other.to_string())) };
    let waiting = |tag: &str| {
        Resolution::Waiting(format!(
            "waiting for image stream tag {namespace}/{other}:{tag}, which has no image yet: the tag is set when it gets one"
        ))
    };
    let Some(source_stream) = source_stream else {
        return match source {
            TagSource::StreamTag { tag, .. } => Ok(waiting(tag)),
            _ => Err(format!("image stream {namespace}/{other} not found")),
        };
    };
    match source {
        TagSource::StreamTag { tag, .. } => match source_stream.latest_event(tag) {
            Some(event) => Ok(Resolution::Now(event.clone())),
            None if same_stream => Ok(Resolution::Later),
            None => Ok(waiting(tag)),
        },
        TagSource::StreamImage { id, .. } => match source_stream.find_image(id) {
            Ok(event) => Ok(Resolution::Now(event.clone())),
            Err(FindImageError::NotFound) => Err(format!("image {id} not found in image stream {namespace}/{other}")),
            Err(FindImageError::Ambiguous) => {
                Err(format!("{id} matches more than one image in image stream {namespace}/{other}: give the full digest"))
            }
        },
        TagSource::DockerImage(_) => unreachable!("DockerImage sources are handled by the caller"),
    }
}

/// Sets the tags of `follower` that wait for a tag of `source` (another stream) to the
/// image that tag has now, clearing their waiting condition; their own followers in
/// `follower` follow. A tag whose setting would move a tag that `rules` pins stays as it
/// is and records why instead ([`immutable::apply_unless_pinned`]). Returns whether
/// anything changed.
pub fn resolve_waiting(follower: &mut ImageStream, source: &ImageStream, rules: &ImmutableTags, now: Time) -> bool {
    let waiting: Vec<(String, String, i64)> = follower
        .spec
        .tags
        .iter()
        .filter_map(|tag| match TagSource::of(follower, tag) {
            Some(Ok(TagSource::StreamTag { namespace, stream, tag: from_tag }))
                if namespace == source.metadata.namespace && stream == source.metadata.name && waits(follower, tag) =>
            {
                Some((tag.name.clone(), from_tag, tag.generation.unwrap_or(1)))
            }
            _ => None,
        })
        .collect();
    let mut changed = false;
    for (name, from_tag, generation) in waiting {
        let Some(found) = source.latest_event(&from_tag) else {
            continue;
        };
        let event = TagEvent { created: now, generation, ..found.clone() };
        let set = immutable::apply_unless_pinned(follower, &name, generation, rules, now, |follower| {
            let moved = add_tag_event(follower, &name, event.clone());
            if moved {
                update_tracking_tags(follower, &name, &event, now);
            }
            moved
        });
        // A refusal is recorded on the tag: a change too.
        changed |= set.unwrap_or(true);
    }
    changed
}

/// Whether `tag` (of another stream's tag) has no image at its current generation.
fn waits(stream: &ImageStream, tag: &TagReference) -> bool {
    let generation = tag.generation.unwrap_or(1);
    stream.status_tag(&tag.name).and_then(|s| s.items.first()).is_none_or(|e| e.generation < generation)
}

/// The tags of other streams `stream` waits for, as `waits:<namespace>/<stream>:<tag>`
/// references: how a stream that gets such a tag finds the streams to resolve.
pub fn waiting_sources(stream: &ImageStream) -> Vec<String> {
    let mut keys: Vec<String> = stream
        .spec
        .tags
        .iter()
        .filter(|tag| waits(stream, tag))
        .filter_map(|tag| match TagSource::of(stream, tag) {
            Some(Ok(TagSource::StreamTag { namespace, stream: other, tag: from_tag }))
                if namespace != stream.metadata.namespace || other != stream.metadata.name =>
            {
                Some(format!("{WAITING_PREFIX}{namespace}/{other}:{from_tag}"))
            }
            _ => None,
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The prefix of the references [`waiting_sources`] declares.
pub const WAITING_PREFIX: &str = "waits:";

pub(crate) fn status_tag_mut<'a>(stream: &'a mut ImageStream, tag: &str) -> &'a mut NamedTagEventList {
    let idx = match stream.status.tags.binary_search_by(|t| t.tag.as_str().cmp(tag)) {
        Ok(idx) => idx,
        Err(idx) => {
            stream.status.tags.insert(idx, NamedTagEventList { tag: tag.to_string(), ..NamedTagEventList::default() });
            idx
        }
    };
    &mut stream.status.tags[idx]
}

/// A DockerImage tag of a stream that waits to be imported: its spec generation is ahead
/// of both its current image and its last failed import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingImport {
    pub tag: String,
    pub reference: ImageReference,
    pub generation: i64,
}

/// Where the import of a tag from another registry stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportState<'a> {
    /// The tag is not imported: it was pushed, follows a tag of this catalog, or is a
    /// reference (`reference: true`) that is never imported.
    NotImported,
    /// The tag's current spec waits for an import.
    Pending,
    Imported,
    /// The import of the tag's current spec failed.
    Failed {
        reason: &'a str,
        message: &'a str,
    },
    /// The tag was rolled back, and imports skip it until it is resumed; `why` is the
    /// [`rollback::PAUSED_ANNOTATION`] (`rollback by token alice at ...`).
    Paused {
        why: &'a str,
    },
}

/// The one rule of whether a tag waits for an import (OpenShift's import controller
/// condition): a DockerImage tag that is not a reference waits while neither its newest
/// history entry nor an `ImportSuccess=False` condition is at its spec's generation.
/// `latest_generation` is the generation of the tag's newest history entry.
pub fn import_state<'a>(
    spec: Option<&'a TagReference>,
    latest_generation: Option<i64>,
    conditions: &'a [TagEventCondition],
) -> ImportState<'a> {
    let Some(spec) = spec.filter(|s| !s.reference && s.from.as_ref().is_some_and(|f| f.kind == KIND_DOCKER_IMAGE)) else {
        return ImportState::NotImported;
    };
    if let Some(why) = paused(spec) {
        return ImportState::Paused { why };
    }
    let wanted = spec.generation.unwrap_or(1);
    let failure = conditions.iter().find(|c| c.condition_type == CONDITION_IMPORT_SUCCESS && c.status == "False" && c.generation >= wanted);
    if let Some(failure) = failure {
        return ImportState::Failed { reason: &failure.reason, message: &failure.message };
    }
    match latest_generation {
        Some(generation) if generation >= wanted => ImportState::Imported,
        _ => ImportState::Pending,
    }
}

/// Why the imports of a spec tag are paused, if they are ([`rollback::PAUSED_ANNOTATION`]).
pub fn paused(spec: &TagReference) -> Option<&str> {
    spec.annotations.as_ref().and_then(|a| a.get(rollback::PAUSED_ANNOTATION)).map(String::as_str)
}

/// The state of the import of `tag` of `stream`.
pub fn tag_import_state<'a>(stream: &'a ImageStream, tag: &str) -> ImportState<'a> {
    let status = stream.status_tag(tag);
    let latest = status.and_then(|s| s.items.first()).map(|e| e.generation);
    import_state(stream.spec_tag(tag), latest, status.map(|s| s.conditions.as_slice()).unwrap_or_default())
}

/// The DockerImage tags of `stream` that wait for an import ([`import_state`]), in tag
/// order.
pub fn pending_imports(stream: &ImageStream) -> Vec<PendingImport> {
    let mut pending = Vec::new();
    for tag in &stream.spec.tags {
        let Some(Ok(TagSource::DockerImage(reference))) = TagSource::of(stream, tag) else {
            continue;
        };
        if tag_import_state(stream, &tag.name) == ImportState::Pending {
            pending.push(PendingImport { tag: tag.name.clone(), reference, generation: tag.generation.unwrap_or(1) });
        }
    }
    pending
}

/// The import `tag` of `stream` asks for at its current generation, whether or not it is
/// pending: what a scheduled check or a registry webhook looks up again. `None` unless
/// the tag imports a DockerImage.
pub fn import_of(stream: &ImageStream, tag: &str) -> Option<PendingImport> {
    let spec = stream.spec_tag(tag).filter(|t| !t.reference && paused(t).is_none())?;
    match TagSource::of(stream, spec) {
        Some(Ok(TagSource::DockerImage(reference))) => {
            Some(PendingImport { tag: tag.to_string(), reference, generation: spec.generation.unwrap_or(1) })
        }
        _ => None,
    }
}

/// Whether the spec tag `tag` still asks for what `pending` was about: the same source at
/// the same generation. An import whose tag changed meanwhile is dropped.
pub fn still_pending(stream: &ImageStream, pending: &PendingImport) -> bool {
    stream.spec_tag(&pending.tag).is_some_and(|t| {
        t.generation.unwrap_or(1) == pending.generation
            && paused(t).is_none()
            && matches!(TagSource::of(stream, t), Some(Ok(TagSource::DockerImage(ref r))) if *r == pending.reference)
    })
}

/// Records a successful import of `tag`: the event (with the tag's generation) becomes the
/// head when it differs, the import condition is cleared, and tags tracking this one
/// follow. Returns whether the head changed.
pub fn record_import(stream: &mut ImageStream, tag: &str, event: TagEvent, now: Time) -> bool {
    let moved = add_tag_event(stream, tag, event.clone());
    status_tag_mut(stream, tag).conditions.clear();
    if moved {
        update_tracking_tags(stream, tag, &event, now);
    }
    moved
}

/// Records a failed import of `tag` at `generation`: history is left as it is, and the
/// condition `ImportSuccess=False` says why.
pub fn record_import_failure(stream: &mut ImageStream, tag: &str, generation: i64, reason: &str, message: &str, now: Time) {
    let list = status_tag_mut(stream, tag);
    let since = list
        .conditions
        .iter()
        .find(|c| c.condition_type == CONDITION_IMPORT_SUCCESS && c.status == "False" && c.reason == reason)
        .and_then(|c| c.last_transition_time)
        .unwrap_or(now);
    list.conditions = vec![TagEventCondition {
        condition_type: CONDITION_IMPORT_SUCCESS.to_string(),
        status: "False".to_string(),
        last_transition_time: Some(since),
        reason: reason.to_string(),
        message: message.to_string(),
        generation,
    }];
}

/// Records that the stream's tags were checked upstream at `now`.
pub fn mark_repository_checked(stream: &mut ImageStream, now: Time) {
    stream.metadata.annotations.insert(REPOSITORY_CHECK_ANNOTATION.to_string(), now.to_string());
}

/// Records that `tag` now points at `next` (OpenShift's `AddTagEventToImageStream`): a new
/// event is prepended only when both the image and the pull spec differ from the head;
/// otherwise the head is updated in place. Conditions are cleared. Returns whether
/// anything changed.
pub fn add_tag_event(stream: &mut ImageStream, tag: &str, next: TagEvent) -> bool {
    let list = status_tag_mut(stream, tag);
    let Some(head) = list.items.first_mut() else {
        list.items.push(next);
        list.conditions.clear();
        return true;
    };
    let same_reference = head.docker_image_reference == next.docker_image_reference;
    let same_image = head.image == next.image;
    if same_reference && same_image && head.generation == next.generation {
        return false;
    }
    if same_reference || same_image {
        head.docker_image_reference = next.docker_image_reference;
        head.image = next.image;
        head.generation = next.generation;
        head.cause = next.cause;
    } else {
        list.items.insert(0, next);
    }
    list.conditions.clear();
    true
}

/// Says who or what made this write's changes to `new`'s history: every tag whose current
/// event differs from `old`'s, and says nothing of its cause yet, gets `cause`.
pub fn attribute_changes(old: Option<&ImageStream>, new: &mut ImageStream, cause: &str) {
    for list in &mut new.status.tags {
        let Some(head) = list.items.first_mut() else {
            continue;
        };
        let before = old.and_then(|old| old.latest_event(&list.tag));
        if head.cause.is_empty() && before != Some(&*head) {
            head.cause = cause.to_string();
        }
    }
}

/// Copies a new head of `tag` to every tag of the same stream whose `from` is that tag,
/// and on along chains of such tags; a cycle stops where it meets a tag already visited.
pub fn update_tracking_tags(stream: &mut ImageStream, tag: &str, event: &TagEvent, now: Time) {
    let mut pending = vec![tag.to_string()];
    let mut visited: BTreeSet<String> = BTreeSet::from([tag.to_string()]);
    while let Some(source) = pending.pop() {
        let followers: Vec<(String, i64)> = stream
            .spec
            .tags
            .iter()
            .filter(|t| !visited.contains(&t.name))
            // Only an ImageStreamTag can follow a tag; others are not parsed (a stream of
            // 500 DockerImage tags would parse 500 references per tag recorded).
            .filter(|t| t.from.as_ref().is_some_and(|from| from.kind == KIND_IMAGE_STREAM_TAG))
            .filter(|t| {
                matches!(TagSource::of(stream, t), Some(Ok(TagSource::StreamTag { ref namespace, stream: ref other, tag: ref from_tag }))
                if *namespace == stream.metadata.namespace && *other == stream.metadata.name && *from_tag == source)
            })
            .map(|t| (t.name.clone(), t.generation.unwrap_or(1)))
            .collect();
        for (follower, generation) in followers {
            visited.insert(follower.clone());
            let copy = TagEvent { created: now, generation, ..event.clone() };
            if add_tag_event(stream, &follower, copy) {
                pending.push(follower);
            }
        }
    }
}

/// Points `tag` at `image` as an ImageStreamMapping does: a TagEvent at the stream's
/// generation, followed by the tags that track it. Returns whether anything changed.
pub fn map_image(stream: &mut ImageStream, tag: &str, image: &Image, now: Time) -> bool {
    let event = TagEvent {
        created: now,
        docker_image_reference: image.docker_image_reference.clone(),
        image: image.metadata.name.clone(),
        generation: stream.metadata.generation.unwrap_or(1),
        cause: String::new(),
    };
    if !add_tag_event(stream, tag, event.clone()) {
        return false;
    }
    update_tracking_tags(stream, tag, &event, now);
    true
}

/// Removes a tag's spec and history (deleting an ImageStreamTag). Returns whether the
/// stream had the tag. The generation moves when the spec changed.
pub fn remove_tag(stream: &mut ImageStream, tag: &str) -> bool {
    let spec_len = stream.spec.tags.len();
    stream.spec.tags.retain(|t| t.name != tag);
    let spec_removed = stream.spec.tags.len() != spec_len;
    let status_len = stream.status.tags.len();
    stream.status.tags.retain(|t| t.tag != tag);
    if spec_removed {
        stream.metadata.generation = Some(stream.metadata.generation.unwrap_or(1) + 1);
    }
    spec_removed || stream.status.tags.len() != status_len
}

/// Sets (creates or replaces) the spec tag `tag.name`, keeping its generation so that
/// [`prepare_update`] can tell whether it changed.
pub fn set_spec_tag(stream: &mut ImageStream, tag: TagReference) {
    match stream.spec.tags.iter_mut().find(|t| t.name == tag.name) {
        Some(existing) => *existing = tag,
        None => stream.spec.tags.push(tag),
    }
}

#[cfg(test)]
mod tests;
