//! Usage from admission: every workload admission admits is noted with the digests of its
//! images (cluster, namespace, workload kind and name, first and last seen), and what a
//! mark on an image reaches is answered from it with lineage (`berth adm vulnerable`,
//! `berth adm who-runs`).
//!
//! A decision never waits for a write: it notes what it saw in memory, and a background
//! task writes everything noted once a second in one transaction, one ImageUsage per
//! image, and only what changed (a new workload, or a last sighting a minute newer). So a
//! cluster admitting thousands of pods a second costs the store one small write a second.
//! What was noted in the last second before a crash is lost; the next admission of the
//! same workload notes it again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use berth_model::access::Action;
use berth_model::lineage::Relation;
use berth_model::policy::is_mark;
use berth_model::usage::{
    ImageImpact, ImageUsage, LAST_SEEN_RESOLUTION_SECONDS, WorkloadReport, WorkloadReportStatus, WorkloadSeen, digest_of_reference,
};
use berth_model::{BERTH_API_VERSION, Digest, Time};
use berth_store::{Precondition, transact};

use crate::services::lineage::{LineageQuery, StreamCache};
use crate::services::{Caller, Catalog, Error, Resource, Result};

/// Images noted and not yet written; past this many, new sightings are dropped (and
/// counted) until the next write, so a flood of reviews cannot grow memory without end.
const MAX_PENDING_IMAGES: usize = 100_000;

#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<Digest, Vec<WorkloadSeen>>>,
    /// When each sighting was last written, so that one seen again within a minute is
    /// not even noted (the write would change nothing): steady admission costs no write.
    written: Mutex<HashMap<Sighting, Time>>,
    dropped: AtomicU64,
}

/// An image and a workload that ran it.
type Sighting = (Digest, String, String, String, String);

fn sighting(digest: &Digest, w: &WorkloadSeen) -> Sighting {
    (digest.clone(), w.cluster.clone(), w.namespace.clone(), w.kind.clone(), w.name.clone())
}

impl UsageRecorder {
    /// Notes that admission admitted `workload` with image `digest`.
    pub fn note(&self, digest: Digest, workload: WorkloadSeen) {
        let fresh = |at: &Time| workload.last_seen.0 - at.0 < chrono::Duration::seconds(LAST_SEEN_RESOLUTION_SECONDS);
        if self.written.lock().unwrap_or_else(PoisonError::into_inner).get(&sighting(&digest, &workload)).is_some_and(fresh) {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() >= MAX_PENDING_IMAGES && !pending.contains_key(&digest) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let seen = pending.entry(digest).or_default();
        match seen.iter_mut().find(|w| w.key() == workload.key()) {
            Some(known) => known.last_seen = workload.last_seen,
            None => seen.push(workload),
        }
    }

    fn take(&self) -> HashMap<Digest, Vec<WorkloadSeen>> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Remembers what was written (the record's `lastSeen`, which a merge may have kept).
    fn remember(&self, written: Vec<(Sighting, Time)>) {
        let mut known = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() + written.len() > MAX_PENDING_IMAGES {
            known.clear();
        }
        known.extend(written);
    }

    /// Sightings dropped since the last call because too many images were waiting to be
    /// written.
    fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

impl Catalog {
    pub fn usage_recorder(&self) -> &UsageRecorder {
        &self.usage
    }

    /// Notes the workloads a report says run, and writes them before answering (so that
    /// a prune that follows sees them in use). A token that may read the whole cluster
    /// reports (as the API server's token for admission does).
    pub fn report_workloads(&self, caller: &Caller, mut report: WorkloadReport) -> Result<WorkloadReport> {
        caller.require(Action::ReadCluster, "create", "workloadreports.berth.dev")?;
        let cluster = if report.cluster.is_empty() { "default".to_string() } else { report.cluster.clone() };
        let mut status = WorkloadReportStatus::default();
        for workload in &report.workloads {
            for image in &workload.images {
                match digest_of_reference(image) {
                    Some(digest) => {
                        self.usage.note(digest, seen_now(&cluster, &workload.namespace, workload.kind.clone(), workload.name.clone()));
                        status.noted += 1;
                    }
                    None => status.without_digest.push(image.clone()),
                }
            }
        }
        self.write_usage()?;
        report.kind = "WorkloadReport".to_string();
        report.api_version = BERTH_API_VERSION.to_string();
        report.cluster = cluster;
        report.status = status;
        Ok(report)
    }

    /// Writes what admission noted since the last write; returns how many images' records
    /// changed. Sightings that could not be written are noted again for the next try.
    pub fn write_usage(&self) -> Result<usize> {
        let dropped = self.usage.take_dropped();
        if dropped > 0 {
            tracing::warn!(dropped, "admission's sightings came faster than they could be written; these were not recorded");
        }
        let pending = self.usage.take();
        if pending.is_empty() {
            return Ok(0);
        }
        let retry = pending.clone();
        let written = transact(&**self.store(), move |txn| {
            let mut written = 0;
            let mut remembered = Vec::new();
            for (digest, seen) in pending {
                let keys: Vec<Sighting> = seen.iter().map(|w| sighting(&digest, w)).collect();
                let key = ImageUsage::key("", digest.as_str());
                let mut usage = match txn.get(&key)? {
                    Some(stored) => ImageUsage::decode(&stored)?,
                    None => ImageUsage {
                        metadata: berth_model::ObjectMeta { name: digest.to_string(), ..Default::default() },
                        ..ImageUsage::default()
                    },
                };
                if usage.merge(seen) {
                    txn.put(&key, &usage.encode(), &[], Precondition::Any)?;
                    written += 1;
                }
                for key in keys {
                    if let Some(w) =
                        usage.workloads.iter().find(|w| (&w.cluster, &w.namespace, &w.kind, &w.name) == (&key.1, &key.2, &key.3, &key.4))
                    {
                        remembered.push((key, w.last_seen));
                    }
                }
            }
            Ok::<_, Error>((written, remembered))
        });
        let written = written.map(|(written, remembered)| {
            self.usage.remember(remembered);
            written
        });
        if written.is_err() {
            for (digest, seen) in retry {
                for workload in seen {
                    self.usage.note(digest.clone(), workload);
                }
            }
        }
        written
    }

    /// The workloads seen running `digest` that the caller may see (those of namespaces
    /// it reads).
    pub fn workloads_of(&self, caller: &Caller, digest: &Digest) -> Result<Vec<WorkloadSeen>> {
        let Some(usage) = self.load::<ImageUsage>("", digest.as_str())? else { return Ok(Vec::new()) };
        Ok(usage
            .workloads
            .into_iter()
            .filter(|w| caller.grant.allows(Action::Read(&w.namespace)))
            .map(|mut w| {
                w.image = digest.to_string();
                w
            })
            .collect())
    }

    /// What a mark on the images `query` names reaches: their marks and tags, every image
    /// built on them (when `descendants`) with its tags, and the workloads seen running
    /// any of them. A tenant sees only what its namespaces hold, as with lineage.
    pub fn image_impact(&self, caller: &Caller, query: LineageQuery, descendants: bool) -> Result<ImageImpact> {
        let lineage = self.lineage(caller, LineageQuery { relation: Relation::Descendants, ..query })?;
        let mut impact = ImageImpact {
            kind: "ImageImpact".to_string(),
            api_version: BERTH_API_VERSION.to_string(),
            images: lineage.images.clone(),
            image_stream_tag: lineage.image_stream_tag.clone(),
            ..ImageImpact::default()
        };
        let mut streams = StreamCache::default();
        let mut reached: Vec<Digest> = Vec::new();
        for image in &lineage.images {
            let digest: Digest = image.parse().map_err(|_| Error::internal(format!("the lineage index holds {image:?}, not a digest")))?;
            if let Some(stored) = self.load::<berth_model::image::Image>("", image)? {
                let marks: BTreeMap<String, String> = stored.metadata.annotations.into_iter().filter(|(key, _)| is_mark(key)).collect();
                if !marks.is_empty() {
                    impact.marks.insert(image.clone(), marks);
                }
            }
            impact.tags.extend(self.tags_of(caller, image, &mut streams)?);
            reached.push(digest);
        }
        if descendants {
            for item in &lineage.items {
                if let Ok(digest) = item.image.parse() {
                    reached.push(digest);
                }
            }
            impact.descendants = lineage.items;
        }
        for digest in &reached {
            impact.workloads.extend(self.workloads_of(caller, digest)?);
        }
        impact.workloads.sort_by(|a, b| (a.key(), &a.image).cmp(&(b.key(), &b.image)));
        Ok(impact)
    }
}

/// The workload a reviewed object belongs to: the object itself, or for a Pod made by a
/// controller, its controller (a ReplicaSet's Deployment, where the pod's
/// `pod-template-hash` label names the ReplicaSet's suffix).
pub fn workload_of(kind: &str, name: &str, object: &serde_json::Value) -> (String, String) {
    let meta = &object["metadata"];
    let own_name = [name, meta["name"].as_str().unwrap_or(""), meta["generateName"].as_str().unwrap_or("")]
        .into_iter()
        .find(|n| !n.is_empty())
        .unwrap_or("-")
        .trim_end_matches('-')
        .to_string();
    let controller = meta["ownerReferences"].as_array().and_then(|owners| owners.iter().find(|o| o["controller"] == true));
    let Some(owner) = controller else { return (kind.to_string(), own_name) };
    let (owner_kind, owner_name) = (owner["kind"].as_str().unwrap_or(kind), owner["name"].as_str().unwrap_or(&own_name));
    if owner_kind == "ReplicaSet"
        && let Some(hash) = meta["labels"]["pod-template-hash"].as_str()
        && let Some(deployment) = owner_name.strip_suffix(hash).and_then(|n| n.strip_suffix('-'))
    {
        return ("Deployment".to_string(), deployment.to_string());
    }
    (owner_kind.to_string(), owner_name.to_string())
}

/// Writes what admission noted, once a second, until the server stops (and once more
/// then).
pub async fn write_forever(catalog: Catalog, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => false,
            _ = stop.changed() => true,
        };
        let writer = catalog.clone();
        match tokio::task::spawn_blocking(move || writer.write_usage()).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(error = %err.message, "image usage could not be written; it is kept for the next try"),
            Err(err) => tracing::error!(%err, "writing image usage was interrupted"),
        }
        if stopping {
            return;
        }
    }
}

/// A sighting now.
pub fn seen_now(cluster: &str, namespace: &str, kind: String, name: String) -> WorkloadSeen {
    let now = Time::now();
    WorkloadSeen {
        cluster: cluster.to_string(),
        namespace: namespace.to_string(),
        kind,
        name,
        first_seen: now,
        last_seen: now,
        image: String::new(),
    }
}
