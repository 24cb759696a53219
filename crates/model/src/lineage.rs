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
    #[serde(default)]
    pub tags: Vec<TagPointer>,
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
