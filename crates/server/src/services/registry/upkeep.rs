//! The blob store's upkeep: prunes with the sweep that follows them (asked for, or on the
//! ImagePruner's schedule), and `berth adm fsck`, the blob store checked against the
//! Images that name its content and repaired where it can be.
//!
//! A check reads the Images from one scan on a blocking thread and checks them as they
//! arrive, so that a store of any size is checked in bounded memory (but for the set of
//! blobs already looked at, each looked at once however many images share it).

use std::collections::HashSet;

use berth_model::access::Action;
use berth_model::access::Grant;
use berth_model::image::Image;
use berth_model::imagestream::ImageStream;
use berth_model::prune::{ImagePrune, PrunerRun, StoreCheck, StoreProblem};
use berth_model::{BERTH_API_VERSION, Digest, Time};
use berth_store::{BlobCheck, ListQuery};
use futures::StreamExt;

use super::{MANAGED_ANNOTATION, Registry, Repo, config_digest};
use crate::services::prune::PrunerDue;
use crate::services::{Caller, Error, Resource};

/// Problems listed at most (all are counted).
const LISTED: usize = 1000;

/// What the check needs of one Image.
struct Item {
    name: String,
    manifest: String,
    managed: bool,
    config: Option<String>,
    layers: Vec<(String, i64)>,
}

impl Registry {
    /// A prune: its plan and, unless `dry_run`, its removals, then (cluster-wide) the
    /// sweep of the blob store.
    pub async fn prune(&self, caller: &Caller, prune: ImagePrune, dry_run: bool) -> crate::services::Result<ImagePrune> {
        let catalog = self.catalog().clone();
        let owned = caller.clone();
        let mut done = tokio::task::spawn_blocking(move || catalog.prune_images(&owned, prune, dry_run))
            .await
            .map_err(|err| Error::internal(format!("the prune stopped: {err}")))??;
        if !dry_run && done.spec.namespace.is_empty() {
            done.status.sweep = Some(self.sweep_after_prune().await?);
            done.status.finished = Some(Time::now());
        }
        Ok(done)
    }

    /// Keeps a blob a client found present out of the next sweeps for the grace window
    /// (see `BlobStore::refresh`): refreshed once it is half the window old.
    pub(super) async fn refresh(&self, digest: &Digest) {
        let half = std::time::Duration::from_secs(self.inner.settings.blob_grace_seconds / 2);
        if let Err(err) = self.inner.blobs.refresh(digest, half).await {
            tracing::warn!(%digest, %err, "a blob's time could not be refreshed; a sweep may take it from a client that found it");
        }
    }

    /// `berth adm fsck`.
    pub async fn check_store(&self, caller: &Caller, mut check: StoreCheck) -> crate::services::Result<StoreCheck> {
        caller.require(Action::AdministerCluster, "create", "storechecks.berth.dev")?;
        let started = std::time::Instant::now();
        let spec = check.spec.clone();
        let (sender, mut items) = tokio::sync::mpsc::channel::<crate::services::Result<Item>>(256);
        let store = self.catalog().store().clone();
        let reader = tokio::task::spawn_blocking(move || {
            let scan = match store.scan(&ListQuery { resource: Image::RESOURCE.to_string(), ..ListQuery::default() }) {
                Ok(scan) => scan,
                Err(err) => return sender.blocking_send(Err(err.into())).ok(),
            };
            for stored in scan.items {
                let item = stored.map_err(Error::from).and_then(|stored| Image::decode(&stored)).map(|image| Item {
                    managed: image.metadata.annotations.get(MANAGED_ANNOTATION).is_some_and(|v| v == "true"),
                    config: config_digest(&image),
                    layers: image.docker_image_layers.iter().map(|l| (l.name.clone(), l.size)).collect(),
                    manifest: image.docker_image_manifest,
                    name: image.metadata.name,
                });
                sender.blocking_send(item).ok()?;
            }
            Some(())
        });
        let mut report = Report { listed: Vec::new(), count: 0, repaired: 0 };
        let mut seen: HashSet<String> = HashSet::new();
        let (mut images, mut blobs_checked, mut blobs_hashed) = (0u64, 0u64, 0u64);
        while let Some(item) = items.recv().await {
            let item = item?;
            images += 1;
            if !item.manifest.is_empty() {
                if let Ok(digest) = item.name.parse::<Digest>()
                    && digest.recompute(item.manifest.as_bytes()) != digest
                {
                    report.add(problem("ManifestMismatch", &item.name, "", "", "the stored manifest does not hash to the image's name"));
                }
            } else if item.managed {
                report.add(problem("ManifestMissing", &item.name, "", "", "an image pushed to berth has no manifest stored"));
            }
            let blobs = item
                .config
                .iter()
                .map(|c| (c.clone(), -1, true))
                .chain(item.layers.iter().map(|(l, size)| (l.clone(), *size, spec.verify_layers)));
            for (blob, size, hash) in blobs {
                if !seen.insert(blob.clone()) {
                    continue;
                }
                let Ok(digest) = blob.parse::<Digest>() else { continue };
                blobs_checked += 1;
                let found = if hash {
                    blobs_hashed += 1;
                    self.inner.blobs.verify(&digest).await?
                } else {
                    match self.inner.blobs.size(&digest).await? {
                        Some(size) => BlobCheck::Intact { size },
                        None => BlobCheck::Missing,
                    }
                };
                match found {
                    // An imported image's blobs are fetched when first pulled.
                    BlobCheck::Missing if !item.managed => {}
                    BlobCheck::Missing => report.add(problem(
                        "BlobMissing",
                        &item.name,
                        &blob,
                        "",
                        "a blob of an image pushed to berth is not stored: push the image again",
                    )),
                    BlobCheck::Intact { size: stored } if size > 0 && stored != size as u64 => report.add(problem(
                        "BlobSizeMismatch",
                        &item.name,
                        &blob,
                        "",
                        &format!("the image says {size} bytes, the store holds {stored}"),
                    )),
                    BlobCheck::Intact { .. } => {}
                    BlobCheck::Corrupt { actual, .. } => {
                        let mut found = problem("BlobCorrupt", &item.name, &blob, "", &format!("the stored bytes hash to {actual}"));
                        if spec.repair {
                            found.repair = self.repair_blob(caller, &item, &digest).await?;
                            report.repaired += 1;
                        }
                        report.add(found);
                    }
                }
            }
        }
        reader.await.map_err(|err| Error::internal(format!("the image scan stopped: {err}")))?;
        let mut dangling = Box::pin(self.inner.blobs.dangling_links());
        while let Some(link) = dangling.next().await {
            let (repository, hex) = link?;
            // Manifests are linked too, and live in the metadata store, not as blobs.
            let manifest = format!("sha256:{hex}");
            if self.catalog().store().get(&Image::key("", &manifest))?.is_some() {
                continue;
            }
            let mut found = problem("DanglingLink", "", &hex, &repository, "the repository links a blob that is not stored");
            if spec.repair
                && let Ok(digest) = format!("sha256:{hex}").parse::<Digest>()
            {
                self.inner.blobs.unlink(&repository, &digest).await?;
                found.repair = "removed the link".to_string();
                report.repaired += 1;
            }
            report.add(found);
        }
        check.kind = "StoreCheck".to_string();
        check.api_version = BERTH_API_VERSION.to_string();
        let status = &mut check.status;
        status.images = images;
        status.blobs_checked = blobs_checked;
        status.blobs_hashed = blobs_hashed;
        status.problem_count = report.count;
        status.problems_truncated = report.count > report.listed.len() as u64;
        status.problems = report.listed;
        status.repaired = report.repaired;
        status.seconds = started.elapsed().as_secs_f64();
        tracing::info!(token = %caller.token, images, blobs_checked, problems = report.count, repaired = report.repaired, "store check");
        Ok(check)
    }

    /// Sweeps the blob store after a prune: removes the blobs no Image holds that were
    /// last written before the grace window, the links to them, and abandoned uploads.
    pub async fn sweep_after_prune(&self) -> crate::services::Result<berth_model::prune::SweepSummary> {
        let catalog = self.catalog().clone();
        let live = tokio::task::spawn_blocking(move || catalog.live_blobs())
            .await
            .map_err(|err| crate::services::Error::internal(format!("the blob sweep's live set: {err}")))??;
        let options = berth_store::SweepOptions {
            grace: std::time::Duration::from_secs(self.inner.settings.blob_grace_seconds),
            upload_age: std::time::Duration::from_secs(self.inner.settings.abandoned_upload_seconds),
            dry_run: false,
        };
        let is_live = move |digest: &Digest| live.contains(digest.as_str());
        let report =
            self.inner.blobs.sweep(&is_live, &options).await.map_err(|err| {
                crate::services::Error::internal(format!("the blob sweep failed: {err}; run the prune again to finish it"))
            })?;
        let manifest_links = self.unlink_removed_manifests().await?;
        tracing::info!(removed = report.blobs_removed, bytes = report.bytes_freed, manifest_links, "blob sweep");
        Ok(berth_model::prune::SweepSummary {
            blobs_removed: report.blobs_removed,
            bytes_freed: report.bytes_freed,
            blobs_young: report.kept_young,
            blobs_used_meanwhile: report.kept_in_use,
            links_removed: report.links_removed + report.unlinked_removed + manifest_links,
            uploads_removed: report.uploads_removed,
        })
    }

    /// Removes the repositories' links to manifests whose Image is gone (a push links a
    /// manifest only once its Image is stored, so a link naming neither a blob nor an
    /// Image is one a prune left).
    async fn unlink_removed_manifests(&self) -> crate::services::Result<u64> {
        let mut removed = 0;
        let mut dangling = Box::pin(self.inner.blobs.dangling_links());
        while let Some(link) = dangling.next().await {
            let (repository, hex) = link?;
            let Ok(digest) = format!("sha256:{hex}").parse::<Digest>() else { continue };
            if self.catalog().store().get(&Image::key("", digest.as_str()))?.is_none() {
                self.inner.blobs.unlink(&repository, &digest).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Runs the ImagePruner's prunes when its schedule says, until `stopping`: looks at
    /// the pruner at least once a minute (and when the store changes), runs a prune of
    /// the whole store that is due, records it in the pruner's status.
    pub async fn run_pruner(self, mut stopping: tokio::sync::watch::Receiver<bool>) {
        let mut revisions = self.catalog().store().subscribe();
        loop {
            let catalog = self.catalog().clone();
            let due = tokio::task::spawn_blocking(move || catalog.pruner_due(Time::now())).await;
            let mut wait = std::time::Duration::from_secs(60);
            match due {
                Ok(Ok(PrunerDue::Now(pruner))) => {
                    let started = Time::now();
                    let system = Caller { token: "system:image-pruner".to_string(), grant: Grant::cluster_admin() };
                    let prune = ImagePrune { spec: pruner.prune_options(), ..ImagePrune::default() };
                    let run = match self.prune(&system, prune, false).await {
                        Ok(done) => PrunerRun {
                            started,
                            finished: Time::now(),
                            succeeded: true,
                            removed_revisions: done.status.removed_revisions,
                            removed_images: done.status.removed_images,
                            freed_bytes: done.status.sweep.map_or(0, |s| s.bytes_freed),
                            message: String::new(),
                        },
                        Err(err) => PrunerRun {
                            started,
                            finished: Time::now(),
                            succeeded: false,
                            removed_revisions: 0,
                            removed_images: 0,
                            freed_bytes: 0,
                            message: err.message,
                        },
                    };
                    tracing::info!(
                        succeeded = run.succeeded,
                        revisions = run.removed_revisions,
                        images = run.removed_images,
                        freed = run.freed_bytes,
                        "scheduled prune"
                    );
                    let catalog = self.catalog().clone();
                    match tokio::task::spawn_blocking(move || catalog.record_pruner_run(run)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => tracing::warn!(error = %err.message, "the pruner's run could not be recorded"),
                        Err(err) => tracing::warn!(%err, "the pruner's run could not be recorded"),
                    }
                    continue;
                }
                Ok(Ok(PrunerDue::At(next))) => {
                    let until = (next.0 - chrono::Utc::now()).to_std().unwrap_or_default();
                    wait = wait.min(until);
                }
                Ok(Ok(PrunerDue::Idle)) => {}
                Ok(Err(err)) => tracing::warn!(error = %err.message, "the image pruner could not be read; will retry"),
                Err(err) => tracing::warn!(%err, "the image pruner could not be read; will retry"),
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = revisions.changed() => if changed.is_err() { return },
                _ = stopping.wait_for(|stop| *stop) => return,
            }
            // A burst of writes is looked at once.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Removes a corrupt blob; for an imported image, fetches it again through pull-through
    /// (from a stream that names the image). Says what was done.
    async fn repair_blob(&self, caller: &Caller, item: &Item, digest: &Digest) -> crate::services::Result<String> {
        self.inner.blobs.remove_blob(digest).await?;
        if item.managed {
            return Ok("removed the corrupt blob: push the image again".to_string());
        }
        let holders = self.catalog().store().referrers(ImageStream::RESOURCE, &item.name)?;
        for key in holders {
            let repo = Repo { namespace: key.namespace.clone(), stream: key.name.clone() };
            if let Ok(content) = self.blob(caller, &repo, digest, None, false).await
                && let Some(mut body) = content.body
            {
                let mut complete = true;
                while let Some(chunk) = body.next().await {
                    complete &= chunk.is_ok();
                }
                if complete && self.inner.blobs.size(digest).await?.is_some() {
                    return Ok(format!("removed the corrupt blob and fetched it again through {}", repo.name()));
                }
            }
        }
        Ok("removed the corrupt blob: it is fetched again when the image is pulled".to_string())
    }
}

struct Report {
    listed: Vec<StoreProblem>,
    count: u64,
    repaired: u64,
}

impl Report {
    fn add(&mut self, problem: StoreProblem) {
        self.count += 1;
        if self.listed.len() < LISTED {
            self.listed.push(problem);
        }
    }
}

fn problem(reason: &str, image: &str, blob: &str, repository: &str, message: &str) -> StoreProblem {
    StoreProblem {
        reason: reason.to_string(),
        image: image.to_string(),
        blob: blob.to_string(),
        repository: repository.to_string(),
        message: message.to_string(),
        repair: String::new(),
    }
}
