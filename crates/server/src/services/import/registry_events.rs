//! Registry webhooks in: a registry says `repository:tag` changed, and every stream tag
//! that imports it is checked at once. Streams are found through the `from:` references
//! they declare (no scan); a payload whose digest is the one a tag already has costs no
//! request; notifications that arrive while a stream is being checked coalesce into one
//! follow-up check, which only runs for tags not already at the notified digest.
//!
//! A registry may notify before its tag shows the new digest (distribution sends a push's
//! event before it links the tag). Then the notified digest is fetched by digest at once
//! (content-addressed, so checked against the digest; a digest that does not check out is
//! refused on the tag with the reason, and the tag is not looked at again for it), and the
//! tag is looked at again on a short schedule until the registry's tag shows it. The tag
//! moves only to what the registry's tag says, so a late notification of an older image
//! never moves a tag back, and the move costs no fetch (the image is already stored).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use berth_model::Digest;
use berth_model::imagestream::ImageStream;
use berth_model::reference::{ImageReference, tracking_key};
use berth_model::tags;
use berth_upstream::{ErrorKind as UpstreamKind, UpstreamError};

use super::{Importer, Lookup, NotifiedTags, Patience, StreamKey, blocking};
use crate::registry_events::UpstreamChange;
use crate::services::{Resource, Result};

/// The waits before looking again at a tag that a registry notified but had not moved yet:
/// short at first (a registry links the tag moments after it notifies), bounded in all
/// (about 4.5 s, ten looks).
const LAGGING_TAG_RETRIES: [Duration; 9] = [
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(40),
    Duration::from_millis(80),
    Duration::from_millis(160),
    Duration::from_millis(320),
    Duration::from_millis(640),
    Duration::from_millis(1280),
    Duration::from_millis(2000),
];
/// How often a check waits for another import of its tags to finish.
const CLAIM_POLL: Duration = Duration::from_millis(50);
/// How long a check waits for another import of the same tags to finish.
const CLAIM_WAIT: Duration = Duration::from_secs(30);

impl Importer {
    /// Starts a check of every tag that imports one of `changes`, which `cause` (the
    /// webhook) reported. Returns how many tags that is (0: nobody tracks them, and no
    /// registry is asked anything).
    pub async fn upstream_changed(&self, changes: Vec<UpstreamChange>, cause: &str) -> Result<usize> {
        let catalog = self.catalog.clone();
        let targets = blocking(move || {
            let mut targets: BTreeMap<StreamKey, Vec<(String, Option<Digest>)>> = BTreeMap::new();
            for change in &changes {
                let Some(tag) = &change.tag else {
                    continue;
                };
                let key = tracking_key(&change.registry, &change.repository, tag);
                for stream_key in catalog.store().referrers(ImageStream::RESOURCE, &format!("from:{key}"))? {
                    let Some(stream) = catalog.load::<ImageStream>(&stream_key.namespace, &stream_key.name)? else {
                        continue;
                    };
                    for spec in &stream.spec.tags {
                        let tracks =
                            spec.from.as_ref().filter(|f| f.kind == "DockerImage").and_then(|f| ImageReference::parse(&f.name).ok());
                        if tracks.and_then(|r| r.tracking_key()).as_deref() != Some(key.as_str()) {
                            continue;
                        }
                        let current = stream.latest_event(&spec.name).map(|e| e.image.as_str());
                        if change.digest.as_ref().is_some_and(|d| current == Some(d.as_str())) {
                            continue;
                        }
                        targets
                            .entry((stream_key.namespace.clone(), stream_key.name.clone()))
                            .or_default()
                            .push((spec.name.clone(), change.digest.clone()));
                    }
                }
            }
            Ok(targets)
        })
        .await?;
        let count = targets.values().map(Vec::len).sum();
        for ((namespace, stream), tags) in targets {
            self.request_check(namespace, stream, tags, cause);
        }
        Ok(count)
    }

    /// Checks `tags` of a stream now. Notifications that arrive while a check of the
    /// stream is running are merged into one follow-up check, which is skipped for tags
    /// that already point at the digest they were notified with.
    fn request_check(&self, namespace: String, stream: String, tags: Vec<(String, Option<Digest>)>, cause: &str) {
        let key = (namespace, stream);
        {
            let mut waiting = self.coalescing.lock().expect("coalescing lock");
            let running = waiting.contains_key(&key);
            let queued = waiting.entry(key.clone()).or_default();
            merge(&mut queued.tags, tags);
            queued.cause = cause.to_string();
            if running {
                return;
            }
        }
        let importer = self.clone();
        tokio::spawn(async move {
            loop {
                let NotifiedTags { tags: queued, cause } = std::mem::take(
                    importer.coalescing.lock().expect("coalescing lock").get_mut(&key).expect("the entry stays while its task runs"),
                );
                let wanted = importer.still_wanted(&key, queued.clone()).await;
                if !wanted.is_empty() {
                    // A tag notified with a digest has the short schedule below behind
                    // it: its looks try once each (the last one as patiently as any).
                    let (quick, patient): (Vec<String>, Vec<String>) =
                        wanted.into_iter().partition(|tag| queued.get(tag).is_some_and(Option::is_some));
                    importer.check_when_free(&key, patient, &cause, Patience::Patient).await;
                    importer.check_when_free(&key, quick, &cause, Patience::Quick).await;
                    // A registry may notify before it has moved the tag (distribution sends
                    // the manifest's event before it links the tag): the notified digest
                    // is fetched now, and a tag not yet at it is looked at again, a few
                    // times, unless its digest was refused.
                    let mut notified: BTreeMap<String, Option<Digest>> = queued.into_iter().filter(|(_, d)| d.is_some()).collect();
                    let lagging = importer.still_wanted(&key, notified.clone()).await;
                    if !lagging.is_empty() {
                        let early =
                            notified.iter().filter(|(tag, _)| lagging.contains(tag)).filter_map(|(t, d)| Some((t.clone(), d.clone()?)));
                        let refused = importer.fetch_notified(&key, early.collect(), &cause).await;
                        notified.retain(|tag, _| !refused.contains(tag));
                    }
                    for (look, delay) in LAGGING_TAG_RETRIES.into_iter().enumerate() {
                        let lagging = importer.still_wanted(&key, notified.clone()).await;
                        if lagging.is_empty() {
                            break;
                        }
                        tokio::time::sleep(delay).await;
                        let last = look + 1 == LAGGING_TAG_RETRIES.len();
                        let patience = if last { Patience::Patient } else { Patience::Quick };
                        importer.check_when_free(&key, lagging, &cause, patience).await;
                    }
                }
                let mut waiting = importer.coalescing.lock().expect("coalescing lock");
                if waiting.get(&key).is_none_or(|queued| queued.tags.is_empty()) {
                    waiting.remove(&key);
                    return;
                }
            }
        });
    }

    /// Drops queued tags that already point at the digest they were notified with.
    async fn still_wanted(&self, key: &StreamKey, queued: BTreeMap<String, Option<Digest>>) -> Vec<String> {
        let (catalog, namespace, name) = (self.catalog.clone(), key.0.clone(), key.1.clone());
        let stream = blocking(move || catalog.load::<ImageStream>(&namespace, &name)).await.ok().flatten();
        queued
            .into_iter()
            .filter(|(tag, digest)| match (digest, stream.as_ref().and_then(|s| s.latest_event(tag))) {
                (Some(digest), Some(event)) => event.image != digest.as_str(),
                _ => true,
            })
            .map(|(tag, _)| tag)
            .collect()
    }

    /// Checks `tags`; a tag another import holds is checked once that import is done, so
    /// that a notification never falls between two imports.
    async fn check_when_free(&self, key: &StreamKey, mut tags: Vec<String>, cause: &str, patience: Patience) {
        let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
        while !tags.is_empty() && tokio::time::Instant::now() < deadline {
            let held: Vec<String> = tags.iter().filter(|t| self.is_claimed(&key.0, &key.1, t)).cloned().collect();
            let free: Vec<String> = tags.iter().filter(|t| !held.contains(t)).cloned().collect();
            if !free.is_empty()
                && let Err(err) = self.check_tags(&key.0, &key.1, free, cause, patience).await
            {
                tracing::warn!(namespace = %key.0, stream = %key.1, error = %err.message, "a notified check failed");
                return;
            }
            tags = held;
            if !tags.is_empty() {
                tokio::time::sleep(CLAIM_POLL).await;
            }
        }
    }

    /// Fetches each tag's notified digest from the repository the tag imports from, before
    /// the registry's tag shows it: the manifest (checked against the digest), its config,
    /// a list's images, stored as Images without moving any tag. A digest whose content
    /// does not check out (or that berth cannot read) is recorded as the tag's import
    /// failure, saying what was notified and why it was refused; those tags are returned.
    /// Failures that may pass (a timeout, a 404 before the registry has the manifest) are
    /// left to the checks that follow.
    async fn fetch_notified(&self, key: &StreamKey, notified: BTreeMap<String, Digest>, cause: &str) -> BTreeSet<String> {
        let (catalog, namespace, name) = (self.catalog.clone(), key.0.clone(), key.1.clone());
        let loaded = blocking(move || {
            let Some(stream) = catalog.load::<ImageStream>(&namespace, &name)? else {
                return Ok(None);
            };
            Ok(Some((catalog.pull_keyring(&namespace)?, stream)))
        })
        .await;
        let Ok(Some((keyring, stream))) = loaded else {
            return BTreeSet::new();
        };
        // Quick: a failure that may pass is left to the looks that follow.
        let run = Arc::new(self.run(keyring, cause.to_string(), Patience::Quick));
        let mut refused = Vec::new();
        for (tag, digest) in notified {
            let Some(pending) = tags::import_of(&stream, &tag) else {
                continue;
            };
            let policy = stream.spec_tag(&tag).map(|t| t.import_policy.clone()).unwrap_or_default();
            let mut reference = pending.reference.clone();
            reference.digest = Some(digest.clone());
            match run.resolve(&Lookup::new(Some(&stream), &tag, reference, &policy)).await {
                Ok(_) => {}
                Err(err)
                    if matches!(
                        err.kind,
                        UpstreamKind::DigestMismatch | UpstreamKind::Invalid | UpstreamKind::Unsupported | UpstreamKind::TooLarge
                    ) =>
                {
                    let message = format!(
                        "the registry notified {digest} for this tag, and berth refused it: {}; the tag stays where the registry's tag points",
                        err.message
                    );
                    tracing::warn!(namespace = %key.0, stream = %key.1, tag, %digest, reason = err.reason(), error = %err.message, "refused a notified digest");
                    refused.push((pending, Err(UpstreamError::new(err.kind, message))));
                }
                Err(_) => {}
            }
        }
        let images: Vec<_> = std::mem::take(&mut *run.fetched.lock().expect("fetched images lock")).into_values().collect();
        let tags: BTreeSet<String> = refused.iter().map(|(pending, _): &(tags::PendingImport, _)| pending.tag.clone()).collect();
        if images.is_empty() && refused.is_empty() {
            return tags;
        }
        let (catalog, namespace, name, cause) = (self.catalog.clone(), key.0.clone(), key.1.clone(), cause.to_string());
        if let Err(err) = blocking(move || catalog.record_imports(&namespace, &name, images, refused, &cause)).await {
            tracing::warn!(namespace = %key.0, stream = %key.1, error = %err.message, "could not store a notified image");
        }
        tags
    }

    fn is_claimed(&self, namespace: &str, stream: &str, tag: &str) -> bool {
        self.claims.lock().expect("claims lock").contains(&(namespace.to_string(), stream.to_string(), tag.to_string()))
    }
}

/// Merges notified tags into a queue: a notification without a digest ("look it up")
/// wins over one with a digest; otherwise the latest digest does.
fn merge(queued: &mut BTreeMap<String, Option<Digest>>, tags: Vec<(String, Option<Digest>)>) {
    for (tag, digest) in tags {
        match queued.get_mut(&tag) {
            Some(existing) if existing.is_none() => {}
            Some(existing) => *existing = digest,
            None => {
                queued.insert(tag, digest);
            }
        }
    }
}
