//! Registry webhooks in: a registry says `repository:tag` changed, and every stream tag
//! that imports it is checked at once. Streams are found through the `from:` references
//! they declare (no scan); a payload whose digest is the one a tag already has costs no
//! request; notifications that arrive while a stream is being checked coalesce into one
//! follow-up check, which only runs for tags not already at the notified digest.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_model::Digest;
use berth_model::imagestream::ImageStream;
use berth_model::reference::{ImageReference, tracking_key};

use super::{Importer, NotifiedTags, StreamKey, blocking};
use crate::registry_events::UpstreamChange;
use crate::services::{Resource, Result};

/// The waits before looking again at a tag that a registry notified but had not moved yet.
const LAGGING_TAG_RETRIES: [Duration; 5] =
    [Duration::from_millis(50), Duration::from_millis(150), Duration::from_millis(400), Duration::from_secs(1), Duration::from_secs(2)];
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
                    importer.check_when_free(&key, wanted, &cause).await;
                    // A registry may notify before it has moved the tag (distribution sends
                    // the manifest's event before it links the tag): a tag not yet at the
                    // digest it was notified with is looked at again, a few times.
                    let notified: BTreeMap<String, Option<Digest>> = queued.into_iter().filter(|(_, d)| d.is_some()).collect();
                    for delay in LAGGING_TAG_RETRIES {
                        let lagging = importer.still_wanted(&key, notified.clone()).await;
                        if lagging.is_empty() {
                            break;
                        }
                        tokio::time::sleep(delay).await;
                        importer.check_when_free(&key, lagging, &cause).await;
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
    async fn check_when_free(&self, key: &StreamKey, mut tags: Vec<String>, cause: &str) {
        let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
        while !tags.is_empty() && tokio::time::Instant::now() < deadline {
            let held: Vec<String> = tags.iter().filter(|t| self.is_claimed(&key.0, &key.1, t)).cloned().collect();
            let free: Vec<String> = tags.iter().filter(|t| !held.contains(t)).cloned().collect();
            if !free.is_empty()
                && let Err(err) = self.check_tags(&key.0, &key.1, free, cause).await
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
