//! Rollback: pointing a tag back at an earlier image of its history, as a new history
//! entry that says so; and the pause that keeps an import from upstream from moving the
//! tag forward again until someone resumes it.
//!
//! Revisions number a tag's history from the oldest entry (revision 1) to the current one
//! (revision N, the number of entries); a rollback adds revision N+1.

use crate::Time;
use crate::imagestream::{ImageStream, TagEvent};
use crate::tags::{KIND_DOCKER_IMAGE, status_tag_mut, update_tracking_tags};

/// The spec tag annotation that pauses its imports, saying why: `rollback by token alice
/// at 2026-12-02T18:00:00Z`. The importer, the scheduler and registry webhooks skip a
/// paused tag; `berth tag --resume` (or removing the annotation) lifts it.
pub const PAUSED_ANNOTATION: &str = "berth.dev/paused";

/// Where a rollback points the tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackTarget {
    /// The image the tag pointed at before its current one.
    Previous,
    /// A revision of the tag's history (1 is the oldest).
    Revision(usize),
    /// An image of the tag's history, by digest or a unique prefix of one.
    Image(String),
}

/// What a rollback did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolledBack {
    /// The revision rolled back to, and the image it has.
    pub to_revision: usize,
    pub image: String,
    /// The revision the rollback is recorded as.
    pub revision: usize,
    /// Whether the tag's imports are now paused (it imports from upstream).
    pub paused: bool,
}

/// The revision number of each entry of a history of `len` entries, newest first.
pub fn revision_of(len: usize, index: usize) -> usize {
    len - index
}

/// Points `tag` of `stream` back at an earlier image of its history: a new history entry
/// (caused by `cause`, e.g. `rollback by token alice`, and naming the revision), followed
/// by the tags that track it; a tag that imports from another registry is paused. The
/// error says what to do instead.
pub fn rollback(stream: &mut ImageStream, tag: &str, target: &RollbackTarget, cause: &str, now: Time) -> Result<RolledBack, String> {
    let name = format!("{}:{tag}", stream.metadata.name);
    let items = stream.status_tag(tag).map(|s| s.items.as_slice()).unwrap_or_default();
    let Some(current) = items.first() else {
        return Err(format!("{name} has no history to roll back to: it never had an image"));
    };
    let len = items.len();
    let index = match target {
        RollbackTarget::Previous if len < 2 => {
            return Err(format!("{name} has had one image only: there is nothing before it to roll back to"));
        }
        RollbackTarget::Previous => 1,
        RollbackTarget::Revision(revision) if *revision == 0 || *revision > len => {
            return Err(format!("{name} has revisions 1 to {len}: `berth describe istag {name}` lists them"));
        }
        RollbackTarget::Revision(revision) => len - revision,
        RollbackTarget::Image(id) => {
            let matching: Vec<usize> =
                (0..len).filter(|i| !items[*i].image.is_empty() && items[*i].image.starts_with(id.as_str())).collect();
            let distinct: std::collections::BTreeSet<&str> = matching.iter().map(|i| items[*i].image.as_str()).collect();
            match (matching.first(), distinct.len()) {
                (None, _) => return Err(format!("image {id} is not in the history of {name}: roll back to an image the tag had")),
                (Some(_), n) if n > 1 => return Err(format!("{id} matches more than one image of {name}: give more of the digest")),
                (Some(index), _) => *index,
            }
        }
    };
    let target_event = &items[index];
    if target_event.image == current.image && target_event.docker_image_reference == current.docker_image_reference {
        return Err(format!(
            "{name} points at revision {}'s image ({}) already: nothing to roll back",
            revision_of(len, index),
            target_event.image
        ));
    }
    let to_revision = revision_of(len, index);
    let generation = stream.spec_tag(tag).and_then(|t| t.generation).unwrap_or(current.generation);
    let event = TagEvent {
        created: now,
        docker_image_reference: target_event.docker_image_reference.clone(),
        image: target_event.image.clone(),
        generation,
        cause: format!("{cause} to revision {to_revision}"),
    };
    let list = status_tag_mut(stream, tag);
    list.items.insert(0, event.clone());
    list.conditions.clear();
    update_tracking_tags(stream, tag, &event, now);
    let imports = stream
        .spec
        .tags
        .iter_mut()
        .find(|t| t.name == tag)
        .filter(|t| !t.reference && t.from.as_ref().is_some_and(|f| f.kind == KIND_DOCKER_IMAGE));
    let paused = imports.is_some();
    if let Some(spec) = imports {
        spec.annotations.get_or_insert_default().insert(PAUSED_ANNOTATION.to_string(), format!("{cause} at {now}"));
        stream.metadata.generation = Some(stream.metadata.generation.unwrap_or(1) + 1);
    }
    Ok(RolledBack { to_revision, image: event.image, revision: len + 1, paused })
}

/// Lifts the pause of `tag`'s imports: the tag asks for an import at a new generation, so
/// the importer brings it up to date with upstream at once.
pub fn resume(stream: &mut ImageStream, tag: &str) -> Result<(), String> {
    let name = format!("{}:{tag}", stream.metadata.name);
    let generation = stream.metadata.generation.unwrap_or(1) + 1;
    let Some(spec) = stream.spec.tags.iter_mut().find(|t| t.name == tag) else {
        return Err(format!("{name} has no spec tag, so nothing imports into it to pause or resume"));
    };
    let removed = spec.annotations.as_mut().and_then(|a| a.remove(PAUSED_ANNOTATION));
    if removed.is_none() {
        return Err(format!("the imports of {name} are not paused: nothing to resume"));
    }
    if spec.annotations.as_ref().is_some_and(|a| a.is_empty()) {
        spec.annotations = None;
    }
    spec.generation = Some(generation);
    stream.metadata.generation = Some(generation);
    Ok(())
}
