//! `ImageLineage` (berth.dev/v1): the answer to "what is this image built on" and "what is
//! built on it", in terms of image streams and tags. The index that answers is in the
//! `lineage` crate; these are the shapes of the API.

use serde::{Deserialize, Serialize};

/// Which question an `ImageLineage` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Relation {
    /// The images the asked image is built on, nearest first.
    Ancestors,
    /// The images built on the asked image (on any version of the tag, with
    /// `allVersions`), nearest first.
    Descendants,
    /// The images that hold the asked layer.
    Layer,
    /// The images of an ImageClass: built on its target tag's current image (`current`)
    /// or on an earlier one (`outdated`).
    Class,
}

impl Relation {
    pub fn parse(text: &str) -> Option<Relation> {
        match text {
            "ancestors" => Some(Relation::Ancestors),
            "descendants" => Some(Relation::Descendants),
            "layer" => Some(Relation::Layer),
            _ => None,
        }
    }
}

/// `GET /apis/berth.dev/v1/lineage/{ancestors|descendants|layer}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageLineage {
    pub kind: String,
    pub api_version: String,
    pub relation: Relation,
    /// What was asked about: the image's digest (or the layer's, for `Layer`).
    pub images: Vec<String>,
    /// The tag that was asked about, as `namespace/stream:tag`, when one was.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_stream_tag: String,
    pub items: Vec<RelatedImage>,
}

/// One image of an answer, with the stream tags the caller may read that point or
/// pointed at it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelatedImage {
    pub image: String,
    /// What the relation rests on: `Layers`, `Annotation` (the OCI
    /// `org.opencontainers.image.base.digest` annotation) or `Both`. Empty for `Layer`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub evidence: String,
    /// The image has exactly the asked image's layers (only its config differs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub same_layers: bool,
    /// When the asked image is a manifest list: the platform through which the relation
    /// runs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
    /// Which of the asked images this one relates to (with `allVersions`, the version of
    /// the tag).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub of: String,
    /// Descendants: the nearest image of this answer (or the asked image) it is built
    /// on, which makes the answer a tree.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub built_on: String,
    /// For a class's images: `current` (built on the class's current version) or
    /// `outdated`, and how many versions behind the current one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub class_state: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub versions_behind: usize,
    #[serde(default)]
    pub tags: Vec<TagPointer>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A stream tag that points at an image now (`current`) or did before.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagPointer {
    pub namespace: String,
    /// `stream:tag`.
    pub name: String,
    pub current: bool,
    /// When the tag points at a manifest list holding the image: the list's digest.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub list: String,
}

/// The default label domain of class labels: an image descending from a version of class
/// `X` is shown with the label `class.berth.dev/X` set to `current` or `outdated`.
pub const CLASS_LABEL_DOMAIN: &str = "class.berth.dev";

/// The label an image of class (or class group) `class` carries, under `domain`.
pub fn class_label(domain: &str, class: &str) -> String {
    format!("{domain}/{class}")
}

/// Whether `key` is a class label under `domain`.
pub fn is_class_label(domain: &str, key: &str) -> bool {
    key.strip_prefix(domain).is_some_and(|rest| rest.starts_with('/'))
}

/// `berth.dev/v1` ImageClass (cluster-scoped): the images built on a stream tag (the
/// seed's "VENDOR" image), on its current image or on any image it has had.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageClass {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: crate::ObjectMeta,
    #[serde(default)]
    pub spec: ImageClassSpec,
    #[serde(default)]
    pub status: ImageClassStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageClassSpec {
    /// The stream tag whose images define the class.
    pub target: ClassTarget,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClassTarget {
    pub namespace: String,
    /// `stream:tag`.
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageClassStatus {
    /// The target tag's current image and its chains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<ClassVersion>,
    /// Every earlier image of the target tag, newest first, kept even after the images
    /// themselves are gone, so that "built on an old version" stays answerable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ClassVersion>,
    /// Why the class has no current version, when it has none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One image the target tag has pointed at, with the chains of each of its platform
/// images.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClassVersion {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<crate::Time>,
    pub chains: Vec<ImageChain>,
}

/// The seed's ImageChain: the chains of one image (OCI ChainIDs over its layer digests,
/// first to last), and its last layer, which finds the last chain in the index again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageChain {
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
    pub last_layer: String,
    pub chains: Vec<String>,
}

/// `berth.dev/v1` ImageClassGroup (cluster-scoped): a key over classes, so that key=value
/// questions work. The images of every class the selector matches are shown with the
/// label `class.berth.dev/<group>=<value>`, the value being the class's own label named
/// like the group (or the class's name when it has none): a group `os` selecting the
/// classes labelled `os` labels images `class.berth.dev/os=rhel7`. An image built on
/// several of the group's classes takes the value of the nearest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageClassGroup {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: crate::ObjectMeta,
    #[serde(default)]
    pub spec: ImageClassGroupSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageClassGroupSpec {
    /// Which ImageClasses belong to the group, by their labels.
    #[serde(default)]
    pub selector: crate::selector::LabelSelectorSpec,
}

impl ImageClassGroup {
    pub fn validate(&self) -> Vec<crate::FieldError> {
        let mut errors: Vec<crate::FieldError> =
            crate::names::check_dns_label("metadata.name", &self.metadata.name).err().into_iter().collect();
        errors.extend(self.spec.selector.validate("spec.selector"));
        errors
    }

    /// The value this group gives the images of `class`, when it selects the class.
    pub fn value_for(&self, class: &ImageClass) -> Option<String> {
        if !self.spec.selector.matches(&class.metadata.labels) {
            return None;
        }
        Some(class.metadata.labels.get(&self.metadata.name).cloned().unwrap_or_else(|| class.metadata.name.clone()))
    }
}

impl ImageClass {
    /// Checks a submitted class.
    pub fn validate(&self) -> Vec<crate::FieldError> {
        let mut errors = Vec::new();
        // The name is part of a label key, so it must be a DNS label.
        if let Err(err) = crate::names::check_dns_label("metadata.name", &self.metadata.name) {
            errors.push(err);
        }
        if let Err(err) = crate::names::check_dns_label("spec.target.namespace", &self.spec.target.namespace) {
            errors.push(err);
        }
        match crate::names::split_stream_tag(&self.spec.target.name) {
            Some((stream, tag)) => {
                if let Err(err) = crate::names::check_stream_name("spec.target.name", &self.spec.target.namespace, stream) {
                    errors.push(err);
                }
                if let Err(err) = crate::names::check_tag("spec.target.name", tag) {
                    errors.push(err);
                }
            }
            None => errors.push(crate::FieldError::new(
                "spec.target.name",
                format!("{:?} must be STREAM:TAG, the stream tag whose images define the class", self.spec.target.name),
            )),
        }
        errors
    }

    /// Every version, current first, with how many versions behind the current it is.
    pub fn versions(&self) -> impl Iterator<Item = (usize, &ClassVersion)> {
        self.status.current.iter().chain(&self.status.history).enumerate()
    }
}
