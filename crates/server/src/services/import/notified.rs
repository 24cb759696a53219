//! Registry webhooks in: a registry says `repository:tag` changed, and every stream tag
//! that imports it is checked at once. Streams are found through the `from:` references
//! they declare (no scan); a payload whose digest is the one a tag already has costs no
//! request; notifications arriving within a short window for the same stream coalesce
//! into one check.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_model::imagestream::ImageStream;
use berth_model::reference::{ImageReference, tracking_key};

use super::{Importer, blocking};
use crate::services::{Resource, Result};
use crate::webhooks::UpstreamChange;

/// Notifications for one stream within this window become one check.
const COALESCE_WINDOW: Duration = Duration::from_millis(100);
/// How long a check waits for another import of the same tags to finish.
const CLAIM_WAIT: Duration = Duration::from_secs(30);

impl Importer {
    /// Starts a check of every tag that imports one of `changes`. Returns how many tags
    /// that is (0: nobody tracks them, and no registry is asked anything).
    pub async fn upstream_changed(&self, changes: Vec<UpstreamChange>) -> Result<usize> {
        let catalog = self.catalog.clone();
        let targets = blocking(move || {
            let mut targets: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
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
                        targets.entry((stream_key.namespace.clone(), stream_key.name.clone())).or_default().push(spec.name.clone());
                    }
                }
            }
            Ok(targets)
        })
        .await?;
        let count = targets.values().map(Vec::len).sum();
        for ((namespace, stream), tags) in targets {
            self.request_check(namespace, stream, tags);
        }
        Ok(count)
    }

    /// Checks `tags` of a stream soon, joining a check of that stream that has not
    /// started yet.
    fn request_check(&self, namespace: String, stream: String, tags: Vec<String>) {
        let key = (namespace, stream);
        {
            let mut waiting = self.coalescing.lock().expect("coalescing lock");
            if let Some(joined) = waiting.get_mut(&key) {
                joined.extend(tags);
                return;
            }
            waiting.insert(key.clone(), tags);
        }
        let importer = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(COALESCE_WINDOW).await;
            let Some(mut tags) = importer.coalescing.lock().expect("coalescing lock").remove(&key) else {
                return;
            };
            tags.sort();
            tags.dedup();
            // A tag another import holds is checked once that import is done, so that a
            // notification never falls between two imports.
            let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
            while !tags.is_empty() && tokio::time::Instant::now() < deadline {
                match importer.check_tags(&key.0, &key.1, tags.clone()).await {
                    Ok(done) => tags.retain(|t| !done.iter().any(|(d, _)| d == t) && importer.is_claimed(&key.0, &key.1, t)),
                    Err(err) => {
                        tracing::warn!(namespace = %key.0, stream = %key.1, error = %err.message, "a notified check failed");
                        return;
                    }
                }
                if !tags.is_empty() {
                    tokio::time::sleep(COALESCE_WINDOW).await;
                }
            }
        });
    }

    fn is_claimed(&self, namespace: &str, stream: &str, tag: &str) -> bool {
        self.claims.lock().expect("claims lock").contains(&(namespace.to_string(), stream.to_string(), tag.to_string()))
    }
}
