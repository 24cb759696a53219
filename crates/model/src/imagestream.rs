//! ImageStream and the virtual kinds built from it: ImageStreamTag, ImageTag,
//! ImageStreamImage and ImageStreamMapping, in OpenShift's `image.openshift.io/v1` shapes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::contract::{Overrides, TagContract};
use crate::image::Image;
use crate::meta::ObjectReference;
use crate::{IMAGE_API_VERSION, ObjectMeta, Time};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStream {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ImageStreamSpec,
    #[serde(default)]
    pub status: ImageStreamStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamSpec {
    #[serde(default)]
    pub lookup_policy: ImageLookupPolicy,
    /// Deprecated in OpenShift since 3.7; kept so old manifests apply unchanged.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_image_repository: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<TagReference>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageLookupPolicy {
    #[serde(default)]
    pub local: bool,
}

/// Where a tag comes from and how it is imported and referenced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagReference {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ObjectReference>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reference: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default)]
    pub import_policy: TagImportPolicy,
    #[serde(default)]
    pub reference_policy: TagReferencePolicy,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagImportPolicy {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scheduled: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub import_mode: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TagReferencePolicy {
    /// `Source` or `Local`; left out or empty, `Source`, as OpenShift defaults it.
    #[serde(rename = "type", default = "source_policy", deserialize_with = "source_if_empty")]
    pub policy_type: String,
}

impl Default for TagReferencePolicy {
    fn default() -> TagReferencePolicy {
        TagReferencePolicy { policy_type: source_policy() }
    }
}

fn source_policy() -> String {
    "Source".to_string()
}

fn source_if_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let policy = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
    Ok(if policy.is_empty() { source_policy() } else { policy })
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamStatus {
    #[serde(default)]
    pub docker_image_repository: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub public_docker_image_repository: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<NamedTagEventList>,
}

/// One tag's history, newest first, and its conditions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamedTagEventList {
    pub tag: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub items: Vec<TagEvent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<TagEventCondition>,
}

/// A moment in a tag's history: at `created` the tag pointed at `image`, pullable as
/// `dockerImageReference`, as of spec generation `generation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagEvent {
    pub created: Time,
    pub docker_image_reference: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub generation: i64,
    /// berth's own: who or what moved the tag (`push by token ci`, `scheduled import`,
    /// `registry webhook quay`, ...). OpenShift clients ignore it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cause: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagEventCondition {
    #[serde(rename = "type")]
    pub condition_type: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default)]
    pub generation: i64,
}

/// `imagestreamtags/<stream>:<tag>`: the tag's spec and its current image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamTag {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub tag: Option<TagReference>,
    #[serde(default)]
    pub generation: i64,
    #[serde(default)]
    pub lookup_policy: ImageLookupPolicy,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<TagEventCondition>,
    /// Absent while the tag has no image yet (for example while it waits to be imported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// berth's own, read-only: the tag's deployment contract: what the image says, the
    /// stream's and tag's `berth.dev/overrides`, and the effective result. `image` is left
    /// as the image says (OpenShift clients see the image as it is); absent while the tag
    /// has no image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<TagContract>,
}

/// `imagetags/<stream>:<tag>`: spec, status and image of one tag together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageTag {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<TagReference>,
    #[serde(default)]
    pub status: Option<NamedTagEventList>,
    #[serde(default)]
    pub image: Option<Image>,
}

/// `imagestreamimages/<stream>@<digest>`: an image as seen through a stream that has it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamImage {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub image: Image,
}

/// `imagestreammappings` (create only): store `image` and point `tag` of the stream named
/// by `metadata.name` at it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamMapping {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub image: Image,
    #[serde(default)]
    pub tag: String,
}

impl ImageStream {
    pub fn spec_tag(&self, tag: &str) -> Option<&TagReference> {
        self.spec.tags.iter().find(|t| t.name == tag)
    }

    pub fn status_tag(&self, tag: &str) -> Option<&NamedTagEventList> {
        self.status.tags.iter().find(|t| t.tag == tag)
    }

    /// The event a tag points at now.
    pub fn latest_event(&self, tag: &str) -> Option<&TagEvent> {
        self.status_tag(tag).and_then(|t| t.items.first())
    }

    /// Every tag named in spec or status, sorted.
    pub fn tag_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> =
            self.spec.tags.iter().map(|t| t.name.as_str()).chain(self.status.tags.iter().map(|t| t.tag.as_str())).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Every image digest anywhere in the stream's history: the stream's references to
    /// images, which decide who may read an Image.
    pub fn referenced_images(&self) -> Vec<&str> {
        let mut images: Vec<&str> =
            self.status.tags.iter().flat_map(|t| t.items.iter()).map(|e| e.image.as_str()).filter(|i| !i.is_empty()).collect();
        images.sort_unstable();
        images.dedup();
        images
    }

    /// The tracking keys (`ImageReference::tracking_key`) of the external tags this stream
    /// imports, as `from:<key>` references: how a registry's "tag changed" finds it.
    pub fn tracked_sources(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .spec
            .tags
            .iter()
            .filter(|t| !t.reference)
            .filter_map(|t| t.from.as_ref())
            .filter(|f| f.kind == "DockerImage")
            .filter_map(|f| crate::reference::ImageReference::parse(&f.name).ok())
            .filter_map(|r| r.tracking_key())
            .map(|key| format!("from:{key}"))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Finds an image in the stream's history by digest or by a unique digest prefix, as
    /// OpenShift resolves `stream@id`.
    pub fn find_image(&self, id: &str) -> Result<&TagEvent, FindImageError> {
        let mut found: Option<&TagEvent> = None;
        for event in self.status.tags.iter().flat_map(|t| t.items.iter()) {
            if event.image.is_empty() || !event.image.starts_with(id) {
                continue;
            }
            if event.image == id {
                return Ok(event);
            }
            match found {
                Some(previous) if previous.image != event.image => return Err(FindImageError::Ambiguous),
                _ => found = Some(event),
            }
        }
        found.ok_or(FindImageError::NotFound)
    }

    /// The ImageStreamTag view of `tag`, or `None` when the stream has no such tag.
    /// `image` is the Image the tag points at now, when it is known.
    pub fn image_stream_tag(&self, tag: &str, image: Option<&Image>) -> Option<ImageStreamTag> {
        let spec = self.spec_tag(tag);
        let status = self.status_tag(tag);
        if spec.is_none() && status.is_none() {
            return None;
        }
        let latest = status.and_then(|s| s.items.first());
        let mut annotations = image.map(|i| i.metadata.annotations.clone()).unwrap_or_default();
        if let Some(tag_annotations) = spec.and_then(|s| s.annotations.as_ref()) {
            annotations.extend(tag_annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Some(ImageStreamTag {
            kind: "ImageStreamTag".to_string(),
            api_version: IMAGE_API_VERSION.to_string(),
            metadata: ObjectMeta {
                name: format!("{}:{tag}", self.metadata.name),
                namespace: self.metadata.namespace.clone(),
                uid: self.metadata.uid.clone(),
                resource_version: self.metadata.resource_version.clone(),
                creation_timestamp: latest.map(|e| e.created).or(self.metadata.creation_timestamp),
                annotations,
                ..ObjectMeta::default()
            },
            tag: spec.cloned(),
            generation: latest.map_or(0, |e| e.generation),
            lookup_policy: self.spec.lookup_policy,
            conditions: status.map(|s| s.conditions.clone()).unwrap_or_default(),
            image: image.map(|i| self.image_as_referenced(tag, i, latest)),
            contract: image.map(|i| TagContract::of(i, Overrides::of_tag(self, tag))),
        })
    }

    /// The ImageTag view of `tag`, or `None` when the stream has no such tag.
    pub fn image_tag(&self, tag: &str, image: Option<&Image>) -> Option<ImageTag> {
        let spec = self.spec_tag(tag);
        let status = self.status_tag(tag);
        if spec.is_none() && status.is_none() {
            return None;
        }
        Some(ImageTag {
            kind: "ImageTag".to_string(),
            api_version: IMAGE_API_VERSION.to_string(),
            metadata: ObjectMeta {
                name: format!("{}:{tag}", self.metadata.name),
                namespace: self.metadata.namespace.clone(),
                uid: self.metadata.uid.clone(),
                resource_version: self.metadata.resource_version.clone(),
                creation_timestamp: self.metadata.creation_timestamp,
                ..ObjectMeta::default()
            },
            spec: spec.cloned(),
            status: status.cloned(),
            image: image.map(|i| self.image_as_referenced(tag, i, status.and_then(|s| s.items.first()))),
        })
    }

    /// The ImageStreamImage view of `image`, which the caller found in this stream.
    pub fn image_stream_image(&self, image: &Image) -> ImageStreamImage {
        ImageStreamImage {
            kind: "ImageStreamImage".to_string(),
            api_version: IMAGE_API_VERSION.to_string(),
            metadata: ObjectMeta {
                name: format!("{}@{}", self.metadata.name, image.metadata.name),
                namespace: self.metadata.namespace.clone(),
                uid: image.metadata.uid.clone(),
                resource_version: image.metadata.resource_version.clone(),
                creation_timestamp: image.metadata.creation_timestamp,
                ..ObjectMeta::default()
            },
            image: image.without_raw_content(),
        }
    }

    /// The pull spec a tag's event resolves to: with `referencePolicy: Local` (and the
    /// stream's registry known) berth's own `dockerImageRepository@digest`, so that pulls
    /// go through berth; otherwise the pull spec the history recorded.
    pub fn resolved_pull_spec(&self, tag: &str, event: &TagEvent) -> String {
        let local = self.spec_tag(tag).is_some_and(|t| t.reference_policy.policy_type == "Local");
        if local && !self.status.docker_image_repository.is_empty() && !event.image.is_empty() {
            return format!("{}@{}", self.status.docker_image_repository, event.image);
        }
        event.docker_image_reference.clone()
    }

    /// An image as a tag sees it: the pull spec is the tag's resolved one.
    fn image_as_referenced(&self, tag: &str, image: &Image, latest: Option<&TagEvent>) -> Image {
        let mut view = image.without_raw_content();
        if let Some(event) = latest {
            view.docker_image_reference = self.resolved_pull_spec(tag, event);
        }
        view
    }

    /// Describes the stream for messages: `namespace/name`.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.metadata.namespace, self.metadata.name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindImageError {
    NotFound,
    Ambiguous,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
