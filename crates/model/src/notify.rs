//! Notifications out: the `Subscription` kind (berth.dev/v1), the tag changes that feed
//! it (computed from a stream before and after a write, and stored in the same
//! transaction), and the CloudEvents 1.0 documents delivered to subscribers, with what
//! changed in the image's metadata so that a receiver can tell a compatible update from a
//! breaking one.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::contract::{self, Contract, ContractChanges};
use crate::image::Image;
use crate::imagestream::ImageStream;
use crate::names::check_dns_subdomain;
use crate::tags::CONDITION_IMPORT_SUCCESS;
use crate::{BERTH_API_VERSION, FieldError, ObjectMeta, Time};

/// What happened to a tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ChangeType {
    /// The tag got its first image.
    TagCreated,
    /// The tag moved to another image.
    TagMoved,
    /// The tag (or its stream) was deleted.
    TagDeleted,
    /// An import of the tag failed.
    ImportFailed,
    /// The tag's current image, or an image it is built on, was marked or unmarked
    /// (`images.openshift.io/deny-execution`, `quality.images.openshift.io/*`).
    ImageMarked,
    /// The target of an ImageClass moved, and the tag's image is built on the class: one
    /// event per such tag, so that a CI system rebuilds everything built on it.
    ClassUpdated,
}

impl ChangeType {
    pub const ALL: [ChangeType; 6] = [
        ChangeType::TagCreated,
        ChangeType::TagMoved,
        ChangeType::TagDeleted,
        ChangeType::ImportFailed,
        ChangeType::ImageMarked,
        ChangeType::ClassUpdated,
    ];

    /// The CloudEvents `type`.
    pub fn event_type(self) -> &'static str {
        match self {
            ChangeType::TagCreated => "dev.berth.tag.created",
            ChangeType::TagMoved => "dev.berth.tag.moved",
            ChangeType::TagDeleted => "dev.berth.tag.deleted",
            ChangeType::ImportFailed => "dev.berth.import.failed",
            ChangeType::ImageMarked => "dev.berth.image.marked",
            ChangeType::ClassUpdated => "dev.berth.class.updated",
        }
    }
}

/// One change to one tag, as stored in the outbox (resource `tagchanges`, named by the
/// revision of the stream write that made it, so that names sort in commit order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagChange {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub change: ChangeType,
    pub stream: String,
    pub tag: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub previous_image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub previous_pull_spec: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pull_spec: String,
    /// The stream's labels when the change happened (subscriptions select on them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stream_labels: BTreeMap<String, String>,
    pub time: Time,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// For `ClassUpdated`: the class, and its target's new and previous images
    /// (`previousImage` and `image` are the tag's own, which is built on the class).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub class: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub class_image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub class_previous_image: String,
    /// For `ImageMarked`: the image whose marks changed (the tag's own, or one it is built
    /// on), and its marks now.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub marked_image: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub marks: BTreeMap<String, String>,
    /// For `TagMoved`: the contract diff from the previous image to the new one, over the
    /// stream's overrides, judged when the change was recorded (both images known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractChanges>,
}

impl TagChange {
    /// A change of `change` to `tag` of `stream` at `now`, with nothing else said yet.
    pub fn of(change: ChangeType, stream: &ImageStream, tag: &str, now: Time) -> TagChange {
        TagChange {
            kind: String::new(),
            api_version: String::new(),
            metadata: ObjectMeta { namespace: stream.metadata.namespace.clone(), ..ObjectMeta::default() },
            change,
            stream: stream.metadata.name.clone(),
            tag: tag.to_string(),
            previous_image: String::new(),
            previous_pull_spec: String::new(),
            image: String::new(),
            pull_spec: String::new(),
            stream_labels: stream.metadata.labels.clone(),
            time: now,
            reason: String::new(),
            message: String::new(),
            class: String::new(),
            class_image: String::new(),
            class_previous_image: String::new(),
            marked_image: String::new(),
            marks: BTreeMap::new(),
            contract: None,
        }
    }
}

/// The changes a write made to a stream's tags: `old` before, `new` after (`None` when
/// created or deleted).
pub fn tag_changes(old: Option<&ImageStream>, new: Option<&ImageStream>, now: Time) -> Vec<TagChange> {
    let Some(stream) = new.or(old) else {
        return Vec::new();
    };
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for s in [old, new].into_iter().flatten() {
        names.extend(s.tag_names());
    }
    let base = |change: ChangeType, tag: &str| TagChange::of(change, stream, tag, now);
    let mut changes = Vec::new();
    for tag in names {
        let before = old.and_then(|s| s.latest_event(tag));
        let after = new.and_then(|s| s.latest_event(tag));
        let exists_after = new.is_some_and(|s| s.spec_tag(tag).is_some() || s.status_tag(tag).is_some());
        match (before, after) {
            (None, Some(after)) => changes.push(TagChange {
                image: after.image.clone(),
                pull_spec: after.docker_image_reference.clone(),
                ..base(ChangeType::TagCreated, tag)
            }),
            (Some(before), Some(after))
                if before.image != after.image
                    || (after.image.is_empty() && before.docker_image_reference != after.docker_image_reference) =>
            {
                changes.push(TagChange {
                    previous_image: before.image.clone(),
                    previous_pull_spec: before.docker_image_reference.clone(),
                    image: after.image.clone(),
                    pull_spec: after.docker_image_reference.clone(),
                    ..base(ChangeType::TagMoved, tag)
                })
            }
            (Some(before), None) if !exists_after => changes.push(TagChange {
                previous_image: before.image.clone(),
                previous_pull_spec: before.docker_image_reference.clone(),
                ..base(ChangeType::TagDeleted, tag)
            }),
            _ => {}
        }
        let failure = |s: Option<&ImageStream>| {
            s.and_then(|s| s.status_tag(tag))
                .and_then(|t| t.conditions.iter().find(|c| c.condition_type == CONDITION_IMPORT_SUCCESS && c.status == "False"))
                .map(|c| (c.generation, c.reason.clone(), c.message.clone()))
        };
        if let Some((_, reason, message)) = failure(new).filter(|f| failure(old).as_ref() != Some(f)) {
            let current = after.map(|e| (e.image.clone(), e.docker_image_reference.clone())).unwrap_or_default();
            changes.push(TagChange { image: current.0, pull_spec: current.1, reason, message, ..base(ChangeType::ImportFailed, tag) });
        }
    }
    changes
}

/// `berth.dev/v1` Subscription: where to send which tag changes of a namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: SubscriptionSpec,
    #[serde(default)]
    pub status: SubscriptionStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionSpec {
    /// The receiver: an `http://` or `https://` URL that takes a POST per event.
    #[serde(default)]
    pub url: String,
    /// The changes wanted; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<ChangeType>,
    /// Stream names; empty means every stream of the namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<String>,
    /// `stream:tag` names; empty means every tag of the chosen streams.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Labels the stream must have (all of them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stream_selector: BTreeMap<String, String>,
    /// ImageClasses whose `ClassUpdated` events are wanted; empty means every class.
    /// Other events are not filtered by it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// The Secret (type Opaque, same namespace) and key holding the HMAC-SHA256 key that
    /// signs each body (`X-Berth-Signature: sha256=<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Only tag moves whose contract change is breaking ([`crate::contract::diff`]);
    /// every other change is left out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub breaking_only: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// Where delivery stands. Written by the server only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStatus {
    /// The outbox entry delivered (or skipped as not wanted) last: delivery resumes after it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cursor: String,
    /// The id of the last event delivered, and when.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_delivered_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered_time: Option<Time>,
    /// How many events were delivered since the subscription was made.
    #[serde(default)]
    pub delivered: u64,
    /// Changes not yet delivered (or skipped).
    #[serde(default)]
    pub backlog: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<Time>,
}

impl Subscription {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = check_dns_subdomain("metadata.name", &self.metadata.name).err().into_iter().collect();
        let url = &self.spec.url;
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 || url.chars().any(char::is_whitespace) {
            errors.push(FieldError::new("spec.url", "must be an http:// or https:// URL that takes a POST for each event"));
        }
        for (idx, tag) in self.spec.tags.iter().enumerate() {
            if crate::names::split_stream_tag(tag).is_none() {
                errors.push(FieldError::new(format!("spec.tags[{idx}]"), format!("{tag:?} must be STREAM:TAG")));
            }
        }
        if let Some(secret) = &self.spec.secret_ref
            && (secret.name.is_empty() || secret.key.is_empty())
        {
            errors.push(FieldError::new("spec.secretRef", "name both the Secret and the key in it that holds the signing key"));
        }
        errors
    }

    /// Whether this subscription wants `change`.
    pub fn wants(&self, change: &TagChange) -> bool {
        let spec = &self.spec;
        (spec.events.is_empty() || spec.events.contains(&change.change))
            && (spec.streams.is_empty() || spec.streams.contains(&change.stream))
            && (spec.tags.is_empty() || spec.tags.iter().any(|t| t.split_once(':') == Some((change.stream.as_str(), change.tag.as_str()))))
            && spec.stream_selector.iter().all(|(k, v)| change.stream_labels.get(k) == Some(v))
            && (change.change != ChangeType::ClassUpdated || spec.classes.is_empty() || spec.classes.contains(&change.class))
            && (!spec.breaking_only
                || (change.change == ChangeType::TagMoved && change.contract.as_ref().is_some_and(ContractChanges::is_breaking)))
    }

    pub fn set_type(&mut self) {
        self.kind = "Subscription".to_string();
        self.api_version = BERTH_API_VERSION.to_string();
    }
}

/// The CloudEvents 1.0 document for `change` (outbox entry `id` in `namespace`). The
/// images before and after, when berth has them, give the metadata diff.
pub fn cloud_event(namespace: &str, change: &TagChange, previous: Option<&Image>, current: Option<&Image>) -> Value {
    let id = format!("{namespace}/{}", change.metadata.name);
    let mut data = json!({
        "namespace": namespace,
        "stream": change.stream,
        "tag": change.tag,
        "previousDigest": change.previous_image,
        "digest": change.image,
        "pullSpec": change.pull_spec,
        "previousPullSpec": change.previous_pull_spec,
    });
    if change.change == ChangeType::ImportFailed {
        data["reason"] = json!(change.reason);
        data["message"] = json!(change.message);
    }
    let mut source = format!("/apis/image.openshift.io/v1/namespaces/{namespace}/imagestreams/{}", change.stream);
    if change.change == ChangeType::ImageMarked {
        data["markedDigest"] = json!(change.marked_image);
        data["marks"] = json!(change.marks);
        data["message"] = json!(change.message);
        source = format!("/apis/image.openshift.io/v1/images/{}", change.marked_image);
    }
    if change.change == ChangeType::ClassUpdated || change.change == ChangeType::ImageMarked {
        if change.change == ChangeType::ClassUpdated {
            data["class"] = json!(change.class);
            data["classDigest"] = json!(change.class_image);
            data["classPreviousDigest"] = json!(change.class_previous_image);
            source = format!("/apis/berth.dev/v1/imageclasses/{}", change.class);
        }
        return json!({
            "specversion": "1.0",
            "id": id,
            "type": change.change.event_type(),
            "source": source,
            "subject": format!("{namespace}/{}:{}", change.stream, change.tag),
            "time": change.time,
            "datacontenttype": "application/json",
            "data": data,
        });
    }
    // The contract diff recorded with the change (over the stream's overrides), or else
    // the one between the two images as they are.
    let judged = change.contract.clone().or_else(|| match (previous, current) {
        (Some(previous), Some(current)) => Some(contract::diff(&Contract::of_image(previous), &Contract::of_image(current))),
        _ => None,
    });
    if let Some(judged) = judged {
        data["compatible"] = json!(!judged.is_breaking());
        data["verdict"] = json!(judged.verdict);
        data["changes"] = serde_json::to_value(&judged.changes).expect("contract changes serialise");
    }
    json!({
        "specversion": "1.0",
        "id": id,
        "type": change.change.event_type(),
        "source": source,
        "subject": format!("{}:{}", change.stream, change.tag),
        "time": change.time,
        "datacontenttype": "application/json",
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imagestream::{NamedTagEventList, TagEvent, TagEventCondition};

    fn at(second: i64) -> Time {
        Time::from_datetime(chrono::DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap())
    }

    fn stream_with(tags: &[(&str, &[&str])]) -> ImageStream {
        let mut stream = ImageStream::default();
        stream.metadata.name = "app".into();
        stream.metadata.labels.insert("team".into(), "web".into());
        for (tag, images) in tags {
            let items = images
                .iter()
                .map(|i| TagEvent {
                    created: at(0),
                    docker_image_reference: format!("r.example/app@{i}"),
                    image: i.to_string(),
                    generation: 1,
                    cause: String::new(),
                })
                .collect();
            stream.status.tags.push(NamedTagEventList { tag: tag.to_string(), items, conditions: Vec::new() });
        }
        stream
    }

    fn kinds(changes: &[TagChange]) -> Vec<(ChangeType, &str)> {
        changes.iter().map(|c| (c.change, c.tag.as_str())).collect()
    }

    #[test]
    fn writes_become_created_moved_deleted_and_failed_changes() {
        let before = stream_with(&[("a", &["sha256:1"]), ("b", &["sha256:2"]), ("c", &["sha256:3"])]);
        let mut after = stream_with(&[("a", &["sha256:1"]), ("b", &["sha256:9", "sha256:2"]), ("d", &["sha256:4"])]);
        after.status.tags[0].conditions.push(TagEventCondition {
            condition_type: "ImportSuccess".into(),
            status: "False".into(),
            last_transition_time: None,
            reason: "NotFound".into(),
            message: "gone".into(),
            generation: 2,
        });
        let changes = tag_changes(Some(&before), Some(&after), at(5));
        assert_eq!(
            kinds(&changes),
            [(ChangeType::ImportFailed, "a"), (ChangeType::TagMoved, "b"), (ChangeType::TagDeleted, "c"), (ChangeType::TagCreated, "d")]
        );
        assert_eq!((changes[1].previous_image.as_str(), changes[1].image.as_str()), ("sha256:2", "sha256:9"));
        assert_eq!(changes[0].reason, "NotFound");
        // The same failure again is not news.
        assert!(tag_changes(Some(&after), Some(&after), at(6)).is_empty());
        // Deleting the stream deletes every tag.
        assert_eq!(tag_changes(Some(&after), None, at(7)).len(), 3);
    }

    #[test]
    fn subscriptions_filter_by_event_stream_tag_and_labels() {
        let change = tag_changes(None, Some(&stream_with(&[("1.0", &["sha256:1"])])), at(0)).remove(0);
        let mut subscription = Subscription::default();
        assert!(subscription.wants(&change));
        subscription.spec.events = vec![ChangeType::TagMoved];
        assert!(!subscription.wants(&change));
        subscription.spec.events = vec![ChangeType::TagCreated];
        subscription.spec.tags = vec!["app:1.0".into()];
        subscription.spec.stream_selector.insert("team".into(), "web".into());
        assert!(subscription.wants(&change));
        subscription.spec.stream_selector.insert("team".into(), "db".into());
        assert!(!subscription.wants(&change));
    }

    #[test]
    fn events_carry_the_contract_verdict_and_breaking_only_subscriptions_want_only_breaking_moves() {
        let image = |config: Value| Image { docker_image_metadata: Some(json!({"Config": config})), ..Image::default() };
        let old = image(json!({"Env": ["A=1", "B=2"], "ExposedPorts": {"80/tcp": {}}, "User": "app", "Labels": {"v": "1"}}));
        let compatible = image(json!({"Env": ["A=1", "B=3", "C=1"], "ExposedPorts": {"80/tcp": {}, "443/tcp": {}}, "User": "app"}));
        let breaking = image(json!({"Env": ["A=1"], "User": "root"}));
        let mut change = TagChange::of(ChangeType::TagMoved, &stream_with(&[]), "1.0", at(0));
        let event = cloud_event("ns", &change, Some(&old), Some(&compatible));
        assert_eq!(event["data"]["compatible"], true, "{event}");
        assert_eq!(event["data"]["changes"][0]["key"], "B");
        let event = cloud_event("ns", &change, Some(&old), Some(&breaking));
        assert_eq!((event["data"]["compatible"].clone(), event["data"]["verdict"].clone()), (json!(false), json!("Breaking")));
        let subscription =
            Subscription { spec: SubscriptionSpec { breaking_only: true, ..SubscriptionSpec::default() }, ..Subscription::default() };
        assert!(!subscription.wants(&change), "a move not judged is not known to break");
        change.contract = Some(contract::diff(&Contract::of_image(&old), &Contract::of_image(&compatible)));
        assert!(!subscription.wants(&change));
        change.contract = Some(contract::diff(&Contract::of_image(&old), &Contract::of_image(&breaking)));
        assert!(subscription.wants(&change));
        // The recorded verdict is the event's.
        assert_eq!(cloud_event("ns", &change, None, None)["data"]["verdict"], "Breaking");
    }
}
