//! Pruning: which tag history entries and which Images go, and why (`plan`), over facts the
//! server gathers from its indexes. OpenShift's `oc adm prune images` rules, with berth's
//! additions: images seen running by admission are in use, and an Image a kept manifest
//! list names stays with it.
//!
//! A revision (a TagEvent) stays when it is its tag's current image, one of the tag's
//! newest `keep_tag_revisions`, younger than `keep_younger_than`, or its image is in use.
//! With `prune_over_size_limit` those rules are replaced by one: a revision goes when its
//! image is larger than its namespace's `openshift.io/Image` `max.storage` limit and not in
//! use. An Image goes when no stream refers to it any longer (after the revisions that go),
//! it is older than `keep_younger_than`, not in use, not a child of a manifest list that
//! stays, and was pushed to berth (unless `all`). ImageClasses need no Image kept: a class
//! keeps the chains of its versions in its own status.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::Time;
use crate::imagestream::NamedTagEventList;

/// What a prune keeps, as `oc adm prune images` and the ImagePruner CR name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PruneOptions {
    /// The newest revisions of each tag that stay (default 3).
    #[serde(default = "default_keep_tag_revisions")]
    pub keep_tag_revisions: usize,
    /// Revisions and Images younger than this stay (`60m` by default).
    #[serde(default = "default_keep_younger_than")]
    pub keep_younger_than: String,
    /// Prune the images over their namespace's per-image storage limit instead.
    #[serde(default)]
    pub prune_over_size_limit: bool,
    /// Also remove Images berth imported rather than had pushed to it.
    #[serde(default = "default_true")]
    pub all: bool,
    /// Only this namespace's tag history (Images are removed only when no stream anywhere
    /// refers to them).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

fn default_keep_tag_revisions() -> usize {
    3
}

fn default_keep_younger_than() -> String {
    "60m".to_string()
}

fn default_true() -> bool {
    true
}

impl Default for PruneOptions {
    fn default() -> PruneOptions {
        PruneOptions {
            keep_tag_revisions: default_keep_tag_revisions(),
            keep_younger_than: default_keep_younger_than(),
            prune_over_size_limit: false,
            all: true,
            namespace: String::new(),
        }
    }
}

/// An Image as pruning sees it.
#[derive(Clone, Debug, Default)]
pub struct PruneImage {
    pub created: Option<Time>,
    /// Pushed to berth (`openshift.io/image.managed`).
    pub managed: bool,
    /// Its layers, by the caller's ids (shared layers have one id).
    pub layers: Vec<u32>,
    /// The Images a manifest list names.
    pub children: Vec<String>,
}

/// The facts a plan is made from.
pub struct PruneFacts<'a> {
    pub now: Time,
    pub images: &'a HashMap<String, PruneImage>,
    /// The size of each layer id.
    pub layer_sizes: &'a [u64],
    /// Whether admission saw a workload with the image.
    pub in_use: &'a dyn Fn(&str) -> bool,
    /// A namespace's `openshift.io/Image` `max.storage`.
    pub size_limit: &'a dyn Fn(&str) -> Option<u64>,
}

/// One stream's tag history, as the plan reads it.
pub struct StreamHistory<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub tags: &'a [NamedTagEventList],
}

/// A revision that goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrunedRevision {
    pub namespace: String,
    pub stream: String,
    pub tag: String,
    /// Its place in the tag's history, 0 being the current image.
    pub revision: usize,
    pub image: String,
    pub created: Time,
    pub reason: String,
}

/// An Image that goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrunedImage {
    pub name: String,
    /// Bytes of its layers (shared ones included).
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Time>,
}

/// How many revisions and Images stay, by the first rule that keeps each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    /// Revisions that are their tag's current image.
    pub current: u64,
    /// Revisions among their tag's newest `keepTagRevisions`.
    pub recent_revisions: u64,
    /// Revisions and Images younger than `keepYoungerThan`.
    pub young: u64,
    /// Revisions and Images admission saw running.
    pub in_use: u64,
    /// Revisions within their namespace's size limit (`pruneOverSizeLimit`).
    pub within_limit: u64,
    /// Images a stream still refers to.
    pub referenced: u64,
    /// Images a kept manifest list names.
    pub list_children: u64,
    /// Images berth imported, when not pruning `all`.
    pub not_managed: u64,
}

/// What a prune removes, and why; the same plan a dry run shows and a confirmed run does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrunePlan {
    pub revisions: Vec<PrunedRevision>,
    pub images: Vec<PrunedImage>,
    pub kept: Kept,
    /// Bytes of the layers only removed Images hold: what the blob sweep frees.
    pub freed_bytes: u64,
}

/// Works out what a prune removes. `streams` is every stream of the store (the plan needs
/// all of them to know which Images are still referred to), read once.
pub fn plan<'s>(
    options: &PruneOptions,
    keep_younger_than: std::time::Duration,
    facts: &PruneFacts<'_>,
    streams: impl IntoIterator<Item = StreamHistory<'s>>,
) -> PrunePlan {
    let young_since = facts.now.minus(keep_younger_than);
    let mut plan = PrunePlan::default();
    let mut referenced: HashSet<&str> = HashSet::with_capacity(facts.images.len());
    for stream in streams {
        let scoped = options.namespace.is_empty() || options.namespace == stream.namespace;
        let limit = if options.prune_over_size_limit && scoped { (facts.size_limit)(stream.namespace) } else { None };
        for tag in stream.tags {
            for (revision, event) in tag.items.iter().enumerate() {
                let reason = if !scoped {
                    None
                } else if options.prune_over_size_limit {
                    over_limit(facts, &event.image, limit, &mut plan.kept)
                } else {
                    beyond_keep(options, facts, revision, event.created, &event.image, young_since, &mut plan.kept)
                };
                match reason {
                    Some(reason) => plan.revisions.push(PrunedRevision {
                        namespace: stream.namespace.to_string(),
                        stream: stream.name.to_string(),
                        tag: tag.tag.clone(),
                        revision,
                        image: event.image.clone(),
                        created: event.created,
                        reason,
                    }),
                    None => {
                        if let Some((name, _)) = facts.images.get_key_value(event.image.as_str()) {
                            referenced.insert(name.as_str());
                        }
                    }
                }
            }
        }
    }
    // Manifest lists that stay keep the Images they name.
    let mut children: HashSet<&str> = HashSet::new();
    for (name, image) in facts.images {
        if image.children.is_empty() || !(referenced.contains(name.as_str()) || keeps_itself(options, facts, name, image, young_since)) {
            continue;
        }
        children.extend(image.children.iter().map(String::as_str));
    }
    // Within one namespace, only the Images its removed revisions named may go.
    let candidates: Option<HashSet<&str>> =
        (!options.namespace.is_empty()).then(|| plan.revisions.iter().map(|r| r.image.as_str()).collect());
    let mut removed_layers: HashSet<u32> = HashSet::new();
    let mut kept_layers: HashSet<u32> = HashSet::new();
    let mut names: Vec<&String> = facts.images.keys().collect();
    names.sort_unstable();
    for name in names {
        let image = &facts.images[name];
        let keep = if referenced.contains(name.as_str()) {
            Some(&mut plan.kept.referenced)
        } else if candidates.as_ref().is_some_and(|c| !c.contains(name.as_str())) {
            // Not this namespace's to remove: not counted.
            kept_layers.extend(image.layers.iter().copied());
            continue;
        } else if children.contains(name.as_str()) {
            Some(&mut plan.kept.list_children)
        } else if image.created.is_some_and(|created| created > young_since) {
            Some(&mut plan.kept.young)
        } else if (facts.in_use)(name) {
            Some(&mut plan.kept.in_use)
        } else if !options.all && !image.managed {
            Some(&mut plan.kept.not_managed)
        } else {
            None
        };
        match keep {
            Some(count) => {
                *count += 1;
                kept_layers.extend(image.layers.iter().copied());
            }
            None => {
                removed_layers.extend(image.layers.iter().copied());
                plan.images.push(PrunedImage { name: name.clone(), size: size_of(facts, image), created: image.created });
            }
        }
    }
    plan.freed_bytes =
        removed_layers.difference(&kept_layers).map(|&layer| facts.layer_sizes.get(layer as usize).copied().unwrap_or(0)).sum();
    plan
}

/// Whether an Image no stream refers to stays on its own account (a list that does keeps
/// its children).
fn keeps_itself(options: &PruneOptions, facts: &PruneFacts<'_>, name: &str, image: &PruneImage, young_since: Time) -> bool {
    image.created.is_some_and(|created| created > young_since) || (facts.in_use)(name) || (!options.all && !image.managed)
}

/// Why a revision goes under the keep rules, or `None` (counted by the rule that keeps it).
fn beyond_keep(
    options: &PruneOptions,
    facts: &PruneFacts<'_>,
    revision: usize,
    created: Time,
    image: &str,
    young_since: Time,
    kept: &mut Kept,
) -> Option<String> {
    if revision == 0 {
        kept.current += 1;
    } else if revision < options.keep_tag_revisions {
        kept.recent_revisions += 1;
    } else if created > young_since {
        kept.young += 1;
    } else if (facts.in_use)(image) {
        kept.in_use += 1;
    } else {
        return Some(format!(
            "revision {revision} of its tag (the newest {} stay), created {} (before the last {})",
            options.keep_tag_revisions, created, options.keep_younger_than
        ));
    }
    None
}

/// Why a revision goes under `pruneOverSizeLimit`, or `None`.
fn over_limit(facts: &PruneFacts<'_>, image: &str, limit: Option<u64>, kept: &mut Kept) -> Option<String> {
    let size = facts.images.get(image).map(|i| size_of(facts, i));
    match (size, limit) {
        (Some(size), Some(limit)) if size > limit => {
            if (facts.in_use)(image) {
                kept.in_use += 1;
                None
            } else {
                Some(format!("its image has {size} bytes, over the namespace's limit of {limit} per image"))
            }
        }
        _ => {
            kept.within_limit += 1;
            None
        }
    }
}

fn size_of(facts: &PruneFacts<'_>, image: &PruneImage) -> u64 {
    image.layers.iter().map(|&layer| facts.layer_sizes.get(layer as usize).copied().unwrap_or(0)).sum()
}

#[cfg(test)]
mod tests;
