//! What the index needs to know of an Image, read from it once.

use berth_model::Digest;
use berth_model::image::Image;
use berth_model::manifest::LAYERS_ORDER_ANNOTATION;
use serde::Deserialize;

/// The OCI annotation naming the digest of the manifest an image was built on.
pub const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";
/// The OCI annotation naming the reference of the image an image was built on.
pub const BASE_NAME_ANNOTATION: &str = "org.opencontainers.image.base.name";

/// An image as the index sees it: its layers base first, the children of a manifest list
/// with their platforms, and the base its manifest's annotations name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFacts {
    pub digest: Digest,
    /// Layer digests, base first.
    pub layers: Vec<Digest>,
    /// A manifest list's children, each with its platform (`os/arch[/variant]`).
    pub manifests: Vec<(Digest, String)>,
    /// `org.opencontainers.image.base.digest` of the manifest.
    pub base: Option<Digest>,
}

#[derive(Deserialize)]
struct Annotated {
    #[serde(default)]
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

impl ImageFacts {
    /// An image with no layers, no children and no base yet.
    pub fn new(digest: Digest) -> ImageFacts {
        ImageFacts { digest, layers: Vec::new(), manifests: Vec::new(), base: None }
    }

    /// The facts of a stored Image, or `None` when its name is not a digest. Layers and
    /// children whose digests do not parse are left out (the store only holds checked
    /// images, so this happens only to images an admin wrote by hand). The base
    /// annotation is read from the manifest bytes, which never change, and never from the
    /// Image's own annotations, which can.
    pub fn of(image: &Image) -> Option<ImageFacts> {
        let digest: Digest = image.metadata.name.parse().ok()?;
        let mut layers: Vec<Digest> = image.docker_image_layers.iter().filter_map(|l| l.name.parse().ok()).collect();
        if image.metadata.annotations.get(LAYERS_ORDER_ANNOTATION).map(String::as_str) == Some("descending") {
            layers.reverse();
        }
        let manifests = image
            .docker_image_manifests
            .iter()
            .filter_map(|m| {
                let digest = m.digest.parse().ok()?;
                let mut platform = format!("{}/{}", m.os, m.architecture);
                if !m.variant.is_empty() {
                    platform = format!("{platform}/{}", m.variant);
                }
                Some((digest, platform))
            })
            .collect();
        let base = serde_json::from_str::<Annotated>(&image.docker_image_manifest)
            .ok()
            .and_then(|m| m.annotations)
            .and_then(|a| a.get(BASE_DIGEST_ANNOTATION).and_then(|d| d.parse().ok()))
            .filter(|base| *base != digest);
        Some(ImageFacts { digest, layers, manifests, base })
    }
}
