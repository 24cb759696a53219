//! The cluster-scoped `Image`: immutable content named by its manifest digest.

use serde::{Deserialize, Serialize};

use crate::{Digest, FieldError, ObjectMeta};

/// `image.openshift.io/v1` Image. Everything but `metadata.labels` and
/// `metadata.annotations` is fixed once stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_image_reference: String,
    /// The image configuration in OpenShift's `docker10` shape, kept as submitted so that
    /// fields berth does not read survive a round trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image_metadata: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_image_metadata_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_image_manifest: String,
    #[serde(default)]
    pub docker_image_layers: Vec<ImageLayer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker_image_signatures: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_image_manifest_media_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_image_config: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker_image_manifests: Vec<ImageManifest>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageLayer {
    pub name: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub media_type: String,
}

/// One entry of a manifest list or OCI index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub digest: String,
    #[serde(default)]
    pub media_type: String,
    #[serde(default)]
    pub manifest_size: i64,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Image {
    /// Checks a submitted image: its name must be a digest, and when the raw manifest is
    /// present its bytes must hash to that digest (manifest bytes are the truth).
    pub fn validate(&self, field: &str) -> Result<Digest, Vec<FieldError>> {
        let name_field = format!("{field}metadata.name");
        let digest: Digest = match self.metadata.name.parse() {
            Ok(digest) => digest,
            Err(err) => return Err(vec![FieldError::new(name_field, err.to_string())]),
        };
        let mut errors = Vec::new();
        if !self.docker_image_manifest.is_empty() {
            let actual = digest.recompute(self.docker_image_manifest.as_bytes());
            if actual != digest {
                errors.push(FieldError::new(
                    format!("{field}dockerImageManifest"),
                    format!("the manifest's digest is {actual}, not {digest}: name the image by the digest of its manifest bytes"),
                ));
            }
        }
        for (idx, layer) in self.docker_image_layers.iter().enumerate() {
            if let Err(err) = layer.name.parse::<Digest>() {
                errors.push(FieldError::new(format!("{field}dockerImageLayers[{idx}].name"), err.to_string()));
            }
            if layer.size < 0 {
                errors.push(FieldError::new(format!("{field}dockerImageLayers[{idx}].size"), "size must not be negative"));
            }
        }
        for (idx, manifest) in self.docker_image_manifests.iter().enumerate() {
            if let Err(err) = manifest.digest.parse::<Digest>() {
                errors.push(FieldError::new(format!("{field}dockerImageManifests[{idx}].digest"), err.to_string()));
            }
        }
        if errors.is_empty() { Ok(digest) } else { Err(errors) }
    }

    /// Total size in bytes: `dockerImageMetadata.Size` when known, else the sum of layers.
    pub fn size(&self) -> i64 {
        let from_metadata = self.docker_image_metadata.as_ref().and_then(|m| m.get("Size")).and_then(|s| s.as_i64());
        from_metadata.unwrap_or_else(|| self.docker_image_layers.iter().map(|l| l.size).sum())
    }

    /// The copy of this image that virtual views (ImageStreamTag, ImageStreamImage,
    /// ImageTag) embed: the raw manifest and config are left out to keep them small;
    /// `GET images/<digest>` has them.
    pub fn without_raw_content(&self) -> Image {
        Image { docker_image_manifest: String::new(), docker_image_config: String::new(), ..self.clone() }
    }

    /// Applies the only change an update may make: labels and annotations. Returns the
    /// fields the update tried to change otherwise.
    pub fn immutable_changes(&self, update: &Image) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut check = |field: &str, same: bool| {
            if !same {
                errors.push(FieldError::new(
                    field,
                    "field is immutable: an image's content never changes; only labels and annotations may be updated",
                ));
            }
        };
        check(
            "dockerImageReference",
            update.docker_image_reference.is_empty() || update.docker_image_reference == self.docker_image_reference,
        );
        check("dockerImageMetadata", update.docker_image_metadata.is_none() || update.docker_image_metadata == self.docker_image_metadata);
        check("dockerImageManifest", update.docker_image_manifest.is_empty() || update.docker_image_manifest == self.docker_image_manifest);
        check("dockerImageConfig", update.docker_image_config.is_empty() || update.docker_image_config == self.docker_image_config);
        check("dockerImageLayers", update.docker_image_layers.is_empty() || update.docker_image_layers == self.docker_image_layers);
        check(
            "dockerImageManifests",
            update.docker_image_manifests.is_empty() || update.docker_image_manifests == self.docker_image_manifests,
        );
        check(
            "dockerImageManifestMediaType",
            update.docker_image_manifest_media_type.is_empty()
                || update.docker_image_manifest_media_type == self.docker_image_manifest_media_type,
        );
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_named(name: &str, manifest: &str) -> Image {
        Image {
            metadata: ObjectMeta { name: name.to_string(), ..ObjectMeta::default() },
            docker_image_manifest: manifest.to_string(),
            ..Image::default()
        }
    }

    #[test]
    fn a_manifest_must_hash_to_the_image_name() {
        let manifest = r#"{"schemaVersion":2}"#;
        let digest = Digest::sha256_of(manifest.as_bytes());
        assert_eq!(image_named(digest.as_str(), manifest).validate(""), Ok(digest.clone()));
        let errors = image_named(digest.as_str(), "{}").validate("image.").unwrap_err();
        assert_eq!(errors[0].field, "image.dockerImageManifest");
        assert!(errors[0].message.contains(digest.as_str()));
    }

    #[test]
    fn the_name_must_be_a_digest() {
        let errors = image_named("latest", "").validate("").unwrap_err();
        assert_eq!(errors[0].field, "metadata.name");
    }

    #[test]
    fn content_is_immutable_but_labels_are_not() {
        let stored = image_named(&Digest::sha256_of(b"x").to_string(), "x");
        let mut relabelled = stored.clone();
        relabelled.metadata.labels.insert("tier".into(), "gold".into());
        assert!(stored.immutable_changes(&relabelled).is_empty());
        let mut changed = stored.clone();
        changed.docker_image_reference = "elsewhere/x@sha256:1".into();
        assert_eq!(stored.immutable_changes(&changed)[0].field, "dockerImageReference");
    }
}
