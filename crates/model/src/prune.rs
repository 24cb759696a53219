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
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Time;

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
    pub children: Vec<Arc<str>>,
    /// Its config blob (`dockerImageMetadata.Id`), which the blob sweep keeps with it.
    pub config: Option<Arc<str>>,
}

/// The facts a plan is made from.
pub struct PruneFacts<'a> {
    pub now: Time,
    pub images: &'a HashMap<Arc<str>, PruneImage>,
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
    pub tags: &'a [TagHistory],
}

/// A tag's history: its images, newest first, with when the tag moved to each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagHistory {
    pub tag: Arc<str>,
    pub items: Vec<(Arc<str>, Time)>,
}

impl TagHistory {
    pub fn of(list: &crate::imagestream::NamedTagEventList) -> TagHistory {
        TagHistory { tag: list.tag.as_str().into(), items: list.items.iter().map(|e| (Arc::from(e.image.as_str()), e.created)).collect() }
    }
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

/// `berth.dev/v1` ImagePrune: a prune asked for (`spec`) and what it did or, as a dry run
/// (`?dryRun=All`, the default of `berth adm prune images`), would do (`status`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePrune {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: crate::ObjectMeta,
    #[serde(default)]
    pub spec: PruneOptions,
    #[serde(default)]
    pub status: ImagePruneStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePruneStatus {
    /// Nothing was changed: the plan is what a confirmed prune would do.
    pub dry_run: bool,
    pub plan: PrunePlan,
    /// What a confirmed prune removed (plan entries that changed meanwhile stay).
    #[serde(default)]
    pub removed_revisions: u64,
    #[serde(default)]
    pub removed_images: u64,
    /// The blob sweep that followed (a cluster-wide prune only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Time>,
    /// Seconds the plan took to make.
    #[serde(default)]
    pub plan_seconds: f64,
}

/// What a sweep of the blob store removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SweepSummary {
    pub blobs_removed: u64,
    pub bytes_freed: u64,
    /// Unreferenced blobs kept because they were written within the grace window.
    pub blobs_young: u64,
    /// Blobs a request used while the sweep ran, kept.
    pub blobs_used_meanwhile: u64,
    pub links_removed: u64,
    pub uploads_removed: u64,
}

/// `berth.dev/v1` ImagePruner (cluster-scoped, named `cluster`): prunes on a schedule,
/// with the settings of OpenShift's ImagePruner CR. Without it, nothing is pruned unless
/// asked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePruner {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: crate::ObjectMeta,
    #[serde(default)]
    pub spec: ImagePrunerSpec,
    #[serde(default)]
    pub status: ImagePrunerStatus,
}

/// The one ImagePruner's name, as OpenShift's.
pub const PRUNER_NAME: &str = "cluster";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ImagePrunerSpec {
    /// When to prune, a cron schedule in UTC (`0 0 * * *`: daily at midnight; six fields
    /// when the first is seconds).
    pub schedule: String,
    pub suspend: bool,
    pub keep_tag_revisions: usize,
    pub keep_younger_than_duration: String,
    /// Runs kept in `status.runs`, those that succeeded and those that failed.
    pub successful_jobs_history_limit: usize,
    pub failed_jobs_history_limit: usize,
}

impl Default for ImagePrunerSpec {
    fn default() -> ImagePrunerSpec {
        ImagePrunerSpec {
            schedule: "0 0 * * *".to_string(),
            suspend: false,
            keep_tag_revisions: default_keep_tag_revisions(),
            keep_younger_than_duration: default_keep_younger_than(),
            successful_jobs_history_limit: 3,
            failed_jobs_history_limit: 3,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePrunerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<Time>,
    /// Past runs, newest first.
    #[serde(default)]
    pub runs: Vec<PrunerRun>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrunerRun {
    pub started: Time,
    pub finished: Time,
    pub succeeded: bool,
    #[serde(default)]
    pub removed_revisions: u64,
    #[serde(default)]
    pub removed_images: u64,
    /// Bytes the blob sweep freed.
    #[serde(default)]
    pub freed_bytes: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl ImagePruner {
    pub fn validate(&self) -> Vec<crate::FieldError> {
        let mut errors = Vec::new();
        if self.metadata.name != PRUNER_NAME {
            errors.push(crate::FieldError::new("metadata.name", format!("the image pruner is named {PRUNER_NAME:?} (there is one)")));
        }
        if let Err(message) = next_run(&self.spec.schedule, Time::now()) {
            errors.push(crate::FieldError::new("spec.schedule", message));
        }
        if let Err(message) = crate::duration::parse_duration(&self.spec.keep_younger_than_duration) {
            errors.push(crate::FieldError::new("spec.keepYoungerThanDuration", message));
        }
        errors
    }

    /// The prune a run does.
    pub fn prune_options(&self) -> PruneOptions {
        PruneOptions {
            keep_tag_revisions: self.spec.keep_tag_revisions,
            keep_younger_than: self.spec.keep_younger_than_duration.clone(),
            ..PruneOptions::default()
        }
    }

    /// Records a run, keeping as many of each outcome as the history limits say.
    pub fn record(&mut self, run: PrunerRun) {
        self.status.runs.insert(0, run);
        let (mut succeeded, mut failed) = (0, 0);
        let (keep_succeeded, keep_failed) = (self.spec.successful_jobs_history_limit, self.spec.failed_jobs_history_limit);
        self.status.runs.retain(|run| {
            let (count, limit) = if run.succeeded { (&mut succeeded, keep_succeeded) } else { (&mut failed, keep_failed) };
            *count += 1;
            *count <= limit
        });
    }
}

/// The first time `schedule` (five cron fields, UTC; a sixth, leading, for seconds) names
/// after `after`.
pub fn next_run(schedule: &str, after: Time) -> Result<Time, String> {
    use croner::parser::{CronParser, Seconds};
    let cron = CronParser::builder().seconds(Seconds::Optional).build().parse(schedule).map_err(|err| {
        format!("{schedule:?} is not a cron schedule ({err}): write five fields, such as \"0 0 * * *\" (daily at midnight UTC)")
    })?;
    cron.find_next_occurrence(&after.0, false).map(Time::from_datetime).map_err(|err| format!("{schedule:?} never comes: {err}"))
}

/// `berth.dev/v1` StoreCheck (`berth adm fsck`): every Image's manifest hashes to its
/// name; the config and layers of images pushed to berth are stored (and, with
/// `verifyLayers`, hash to their digests); every blob that is stored hashes right when
/// read; every repository link names a stored blob. With `repair`, corrupt blobs are
/// removed (those of imported images fetched again through pull-through) and dangling
/// links dropped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreCheck {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: crate::ObjectMeta,
    #[serde(default)]
    pub spec: StoreCheckSpec,
    #[serde(default)]
    pub status: StoreCheckStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreCheckSpec {
    #[serde(default)]
    pub repair: bool,
    /// Hash every layer too (reads every byte of the blob store), not only configs.
    #[serde(default)]
    pub verify_layers: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreCheckStatus {
    pub images: u64,
    /// Distinct blobs looked at, and how many of them were hashed.
    pub blobs_checked: u64,
    pub blobs_hashed: u64,
    pub problems: Vec<StoreProblem>,
    /// More problems were found than `problems` lists (the counts below include them).
    #[serde(default)]
    pub problems_truncated: bool,
    pub problem_count: u64,
    pub repaired: u64,
    pub seconds: f64,
}

/// One thing wrong in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreProblem {
    /// `ManifestMismatch`, `ManifestMissing`, `BlobMissing`, `BlobCorrupt`,
    /// `BlobSizeMismatch` or `DanglingLink`.
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub blob: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repository: String,
    pub message: String,
    /// What `repair` did about it, if anything.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repair: String,
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
            for (revision, (image, created)) in tag.items.iter().enumerate() {
                let reason = if !scoped {
                    None
                } else if options.prune_over_size_limit {
                    over_limit(facts, image, limit, &mut plan.kept)
                } else {
                    beyond_keep(options, facts, revision, *created, image, young_since, &mut plan.kept)
                };
                match reason {
                    Some(reason) => plan.revisions.push(PrunedRevision {
                        namespace: stream.namespace.to_string(),
                        stream: stream.name.to_string(),
                        tag: tag.tag.to_string(),
                        revision,
                        image: image.to_string(),
                        created: *created,
                        reason,
                    }),
                    None => {
                        if let Some((name, _)) = facts.images.get_key_value(&**image) {
                            referenced.insert(name);
                        }
                    }
                }
            }
        }
    }
    // Manifest lists that stay keep the Images they name.
    let mut children: HashSet<&str> = HashSet::new();
    for (name, image) in facts.images {
        if image.children.is_empty() || !(referenced.contains(&**name) || keeps_itself(options, facts, name, image, young_since)) {
            continue;
        }
        children.extend(image.children.iter().map(|child| &**child));
    }
    // Within one namespace, only the Images its removed revisions named may go.
    let candidates: Option<HashSet<&str>> =
        (!options.namespace.is_empty()).then(|| plan.revisions.iter().map(|r| r.image.as_str()).collect());
    let mut removed_layers: HashSet<u32> = HashSet::new();
    let mut kept_layers: HashSet<u32> = HashSet::new();
    let mut names: Vec<&Arc<str>> = facts.images.keys().collect();
    names.sort_unstable();
    for name in names {
        let image = &facts.images[name];
        let keep = if referenced.contains(&**name) {
            Some(&mut plan.kept.referenced)
        } else if candidates.as_ref().is_some_and(|c| !c.contains(&**name)) {
            // Not this namespace's to remove: not counted.
            kept_layers.extend(image.layers.iter().copied());
            continue;
        } else if children.contains(&**name) {
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
                plan.images.push(PrunedImage { name: name.to_string(), size: size_of(facts, image), created: image.created });
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
