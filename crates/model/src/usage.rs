//! Where images run: what admission saw (ImageUsage, one per image, kept by berth), and the
//! answer to "what does a mark on this image reach" (ImageImpact).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Time;
use crate::lineage::{RelatedImage, TagPointer};

/// `berth.dev/v1` ImageUsage (cluster-scoped, named by the image's digest): the workloads
/// admission has admitted with this image, written by berth behind its decisions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageUsage {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: crate::ObjectMeta,
    #[serde(default)]
    pub workloads: Vec<WorkloadSeen>,
}

/// A workload admission saw with an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSeen {
    pub cluster: String,
    pub namespace: String,
    /// `Deployment`, `Pod`, `CronJob`, ...: for a Pod a controller made, its controller
    /// (a ReplicaSet's Deployment where the pod's labels say which).
    pub kind: String,
    pub name: String,
    pub first_seen: Time,
    /// Kept to the minute: a workload admitted again within a minute is not written again.
    pub last_seen: Time,
    /// The image, in answers about several (set on reads, not stored).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
}

impl WorkloadSeen {
    pub fn key(&self) -> (&str, &str, &str, &str) {
        (&self.cluster, &self.namespace, &self.kind, &self.name)
    }
}

/// The most workloads one image's record keeps; past it, those seen longest ago go. A
/// namespace that creates pods under endless new names cannot grow a record without end.
pub const MAX_WORKLOADS_PER_IMAGE: usize = 1000;
/// How far `lastSeen` must advance before it is written again.
pub const LAST_SEEN_RESOLUTION_SECONDS: i64 = 60;

impl ImageUsage {
    /// Adds what admission saw; returns whether the record changed enough to be written.
    pub fn merge(&mut self, seen: impl IntoIterator<Item = WorkloadSeen>) -> bool {
        let mut changed = false;
        for workload in seen {
            match self.workloads.iter_mut().find(|w| w.key() == workload.key()) {
                Some(known) => {
                    if workload.last_seen.0 - known.last_seen.0 >= chrono::Duration::seconds(LAST_SEEN_RESOLUTION_SECONDS) {
                        known.last_seen = workload.last_seen;
                        changed = true;
                    }
                }
                None => {
                    self.workloads.push(workload);
                    changed = true;
                }
            }
        }
        if self.workloads.len() > MAX_WORKLOADS_PER_IMAGE {
            self.workloads.sort_by_key(|w| std::cmp::Reverse(w.last_seen));
            self.workloads.truncate(MAX_WORKLOADS_PER_IMAGE);
        }
        if changed {
            self.workloads.sort_by(|a, b| a.key().cmp(&b.key()));
        }
        changed
    }
}

/// `GET /apis/berth.dev/v1/imageimpact`: what a mark on an image reaches. The images
/// asked about, their marks, the tags pointing at them, every image built on them with
/// its tags, and the workloads admission saw running any of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageImpact {
    pub kind: String,
    pub api_version: String,
    pub images: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_stream_tag: String,
    /// The marks of the images asked about (`images.openshift.io/deny-execution`,
    /// `quality.images.openshift.io/*`), by image.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub marks: BTreeMap<String, BTreeMap<String, String>>,
    /// The tags pointing (or that pointed) at the images asked about.
    #[serde(default)]
    pub tags: Vec<TagPointer>,
    #[serde(default)]
    pub descendants: Vec<RelatedImage>,
    #[serde(default)]
    pub workloads: Vec<WorkloadSeen>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(name: &str, at: i64) -> WorkloadSeen {
        let at = Time::from_datetime(chrono::DateTime::from_timestamp(1_790_000_000 + at, 0).unwrap());
        WorkloadSeen {
            cluster: "prod".into(),
            namespace: "team".into(),
            kind: "Pod".into(),
            name: name.into(),
            first_seen: at,
            last_seen: at,
            image: String::new(),
        }
    }

    #[test]
    fn a_sighting_is_written_again_only_a_minute_later() {
        let mut usage = ImageUsage::default();
        assert!(usage.merge([seen("web", 0)]));
        assert!(!usage.merge([seen("web", 59)]), "within the minute nothing changes");
        assert!(usage.merge([seen("web", 60)]));
        assert_eq!(usage.workloads.len(), 1);
        assert_eq!(usage.workloads[0].first_seen, seen("web", 0).first_seen);
        assert_eq!(usage.workloads[0].last_seen, seen("web", 60).last_seen);
    }

    #[test]
    fn endless_new_workload_names_cannot_grow_a_record_past_its_bound() {
        let mut usage = ImageUsage::default();
        for idx in 0..(MAX_WORKLOADS_PER_IMAGE as i64 + 500) {
            usage.merge([seen(&format!("pod-{idx}"), idx)]);
        }
        assert_eq!(usage.workloads.len(), MAX_WORKLOADS_PER_IMAGE);
        // Those seen longest ago went; the newest stayed.
        assert!(usage.workloads.iter().any(|w| w.name == format!("pod-{}", MAX_WORKLOADS_PER_IMAGE + 499)));
        assert!(!usage.workloads.iter().any(|w| w.name == "pod-0"));
    }
}

/// A row of `berth adm top images` (OpenShift's `oc adm top images` columns).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageTop {
    pub name: String,
    /// The stream tags whose history names it, `namespace/stream:tag`, with `(latest)`
    /// where it is the tag's current image.
    pub image_stream_tags: Vec<String>,
    /// The images it is built on, nearest first.
    pub parents: Vec<String>,
    /// The workloads admission saw with it, `cluster/namespace/Kind/name`.
    pub usage: Vec<String>,
    /// Pushed to berth (rather than imported).
    pub managed: bool,
    /// Bytes of its layers.
    pub storage: u64,
    pub layers: u64,
}

/// A row of `berth adm top imagestreams` (OpenShift's columns).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamTop {
    pub namespace: String,
    pub name: String,
    /// Bytes of the distinct layers of the images its history names.
    pub storage: u64,
    pub images: u64,
    pub layers: u64,
}

/// A namespace's figures (`berth describe namespace`, `GET .../top/namespaces`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceTop {
    pub name: String,
    pub imagestreams: u64,
    pub images: u64,
    pub layers: u64,
    /// Bytes of the distinct layers of the images its streams' histories name.
    pub storage: u64,
}

/// A usage report: rows of one kind (`ImageTopList` or `ImageStreamTopList`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopList<T> {
    pub kind: String,
    pub api_version: String,
    pub items: Vec<T>,
}
