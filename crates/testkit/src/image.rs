//! Deterministic test images and indexes: the same inputs always give the same bytes, so
//! tests can compute the digests they expect before pushing anything.

use rand::{RngCore, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The `created` time of every test image, fixed so that digests never depend on the clock.
const CREATED: &str = "2026-01-01T00:00:00Z";

/// The digest (`sha256:<hex>`) of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Which family of media types a manifest and its blobs use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The OCI image spec.
    Oci,
    /// Docker's image manifest V2, schema 2.
    Docker,
}

impl Format {
    /// The media type of an image manifest.
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.manifest.v1+json",
            Format::Docker => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }

    /// The media type of an image config blob.
    pub fn config_media_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.config.v1+json",
            Format::Docker => "application/vnd.docker.container.image.v1+json",
        }
    }

    /// The media type of a layer blob.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.layer.v1.tar+gzip",
            Format::Docker => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        }
    }

    /// The media type of a multi-platform index (OCI image index, Docker manifest list).
    pub fn index_media_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.index.v1+json",
            Format::Docker => "application/vnd.docker.distribution.manifest.list.v2+json",
        }
    }
}

/// A single-platform image: its layers and its config. The manifest is derived from them
/// on demand, so a test may change `config` (or `layers`) after [`TestImage::new`].
#[derive(Clone, Debug)]
pub struct TestImage {
    /// The media types of the manifest and its blobs.
    pub format: Format,
    /// The layer blobs, in order. They are not real gzip archives: the distribution
    /// registry stores blobs without looking inside.
    pub layers: Vec<Vec<u8>>,
    /// The image config, serialized as the config blob.
    pub config: Value,
}

impl TestImage {
    /// An image of `layers` layers of `layer_size` pseudo-random bytes derived from `seed`,
    /// for `linux` and `architecture` (`"amd64"`, or with a variant, `"arm64/v8"`).
    ///
    /// Layer `i` depends only on `seed`, `i` and `layer_size`, so images with the same seed
    /// share their layers (useful to test blob reuse); the config names the seed, so
    /// different seeds always give different digests.
    pub fn new(format: Format, seed: u64, layers: usize, layer_size: usize, architecture: &str) -> TestImage {
        let mut random = StdRng::seed_from_u64(seed);
        let layers: Vec<Vec<u8>> = (0..layers)
            .map(|_| {
                let mut layer = vec![0; layer_size];
                random.fill_bytes(&mut layer);
                layer
            })
            .collect();
        let diff_ids: Vec<String> = layers.iter().map(|layer| digest_of(layer)).collect();
        let mut config = json!({
            "created": CREATED,
            "architecture": architecture,
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/bin", format!("SEED={seed}")],
                "ExposedPorts": {"8080/tcp": {}},
                "User": "1001",
                "Labels": {"seed": seed.to_string()},
                "WorkingDir": "/app",
                "Entrypoint": ["/app/run"],
                "Cmd": ["--serve"],
                "Volumes": {"/data": {}},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        if let Some((architecture, variant)) = architecture.split_once('/') {
            config["architecture"] = json!(architecture);
            config["variant"] = json!(variant);
        }
        TestImage { format, layers, config }
    }

    /// An image on this one's layers with `extra` layers of its own (seeded by `seed`),
    /// as a `FROM` of this image builds.
    pub fn built_on(&self, seed: u64, extra: usize) -> TestImage {
        let own = TestImage::new(self.format, seed, extra, 128, self.config["architecture"].as_str().unwrap_or("amd64"));
        let mut image = self.clone();
        image.layers.extend(own.layers);
        image.config = own.config;
        image
    }

    /// The config blob.
    pub fn config_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.config).expect("a JSON value serializes")
    }

    /// The image manifest, with `mediaType`, the config and each layer.
    pub fn manifest_bytes(&self) -> Vec<u8> {
        let layers: Vec<Value> = self.layers.iter().map(|layer| descriptor(self.format.layer_media_type(), layer)).collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": self.format.manifest_media_type(),
            "config": descriptor(self.format.config_media_type(), &self.config_bytes()),
            "layers": layers,
        });
        serde_json::to_vec(&manifest).expect("a JSON value serializes")
    }

    /// The digest of [`TestImage::manifest_bytes`].
    pub fn digest(&self) -> String {
        digest_of(&self.manifest_bytes())
    }

    /// The platform of an index entry, read from the config (`os`, `architecture`, `variant`).
    fn platform(&self) -> Value {
        let mut platform = json!({"architecture": self.config["architecture"], "os": self.config["os"]});
        if let Some(variant) = self.config.get("variant") {
            platform["variant"] = variant.clone();
        }
        platform
    }

    /// This image's entry in an index.
    fn index_entry(&self) -> Value {
        let mut entry = descriptor(self.format.manifest_media_type(), &self.manifest_bytes());
        entry["platform"] = self.platform();
        entry
    }
}

/// A multi-platform index of images.
#[derive(Clone, Debug)]
pub struct TestIndex {
    /// OCI image index or Docker manifest list, and the format of the attestation.
    pub format: Format,
    /// The platform images, each listed with the platform of its config.
    pub children: Vec<TestImage>,
    /// Whether to list, after the children, an attestation-like image for the platform
    /// `unknown/unknown`, as BuildKit does, which clients choosing a platform must skip.
    pub with_attestation: bool,
}

impl TestIndex {
    /// The media type of the index.
    pub fn media_type(&self) -> &'static str {
        self.format.index_media_type()
    }

    /// The attestation-like image when `with_attestation` is set: one small layer, platform
    /// `unknown/unknown`, derived from the children so that different indexes get
    /// different attestations.
    pub fn attestation(&self) -> Option<TestImage> {
        if !self.with_attestation {
            return None;
        }
        let children: String = self.children.iter().map(TestImage::digest).collect();
        let seed = u64::from_be_bytes(Sha256::digest(children.as_bytes())[..8].try_into().expect("a SHA-256 has 8 bytes"));
        let mut attestation = TestImage::new(self.format, seed, 1, 256, "unknown");
        attestation.config["os"] = json!("unknown");
        Some(attestation)
    }

    /// The index: each child with its platform, then the attestation, annotated as BuildKit
    /// does with the digest of the image it describes (the first child).
    pub fn manifest_bytes(&self) -> Vec<u8> {
        let mut manifests: Vec<Value> = self.children.iter().map(TestImage::index_entry).collect();
        if let Some(attestation) = self.attestation() {
            let mut entry = attestation.index_entry();
            let subject = self.children.first().map(TestImage::digest).unwrap_or_default();
            entry["annotations"] = json!({
                "vnd.docker.reference.type": "attestation-manifest",
                "vnd.docker.reference.digest": subject,
            });
            manifests.push(entry);
        }
        let index = json!({"schemaVersion": 2, "mediaType": self.media_type(), "manifests": manifests});
        serde_json::to_vec(&index).expect("a JSON value serializes")
    }

    /// The digest of [`TestIndex::manifest_bytes`].
    pub fn digest(&self) -> String {
        digest_of(&self.manifest_bytes())
    }
}

/// A content descriptor of `bytes`.
fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": digest_of(bytes), "size": bytes.len()})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn images_are_deterministic_and_seeds_tell_them_apart() {
        let image = TestImage::new(Format::Oci, 7, 2, 1024, "amd64");
        assert_eq!(image.digest(), TestImage::new(Format::Oci, 7, 2, 1024, "amd64").digest());
        assert_ne!(image.digest(), TestImage::new(Format::Oci, 8, 2, 1024, "amd64").digest());
        assert_ne!(image.digest(), TestImage::new(Format::Oci, 7, 0, 1024, "amd64").digest());
        assert_ne!(image.digest(), TestImage::new(Format::Docker, 7, 2, 1024, "amd64").digest());
        assert_ne!(image.layers[0], image.layers[1]);
        assert_eq!(image.layers[0], TestImage::new(Format::Docker, 7, 1, 1024, "arm64").layers[0], "layers depend on the seed only");
    }

    #[test]
    fn manifests_describe_their_blobs() {
        let image = TestImage::new(Format::Docker, 1, 2, 100, "arm64/v8");
        let manifest = parse(&image.manifest_bytes());
        assert_eq!(manifest["mediaType"], Format::Docker.manifest_media_type());
        assert_eq!(manifest["config"]["mediaType"], Format::Docker.config_media_type());
        assert_eq!(manifest["config"]["digest"], digest_of(&image.config_bytes()));
        assert_eq!(manifest["layers"][1]["digest"], digest_of(&image.layers[1]));
        assert_eq!(manifest["layers"][1]["size"], 100);
        assert_eq!((image.config["architecture"].as_str(), image.config["variant"].as_str()), (Some("arm64"), Some("v8")));
        assert_eq!(image.config["rootfs"]["diff_ids"][0], digest_of(&image.layers[0]));
        assert_eq!(image.config["config"]["Labels"]["seed"], "1");
    }

    #[test]
    fn indexes_list_children_with_platforms_then_the_attestation() {
        let children = vec![TestImage::new(Format::Oci, 1, 1, 10, "amd64"), TestImage::new(Format::Oci, 2, 1, 10, "arm/v7")];
        let index = TestIndex { format: Format::Oci, children, with_attestation: true };
        let manifest = parse(&index.manifest_bytes());
        assert_eq!(manifest["mediaType"], Format::Oci.index_media_type());
        let entries = manifest["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0]["digest"], index.children[0].digest());
        assert_eq!(entries[0]["platform"], json!({"architecture": "amd64", "os": "linux"}));
        assert_eq!(entries[1]["platform"], json!({"architecture": "arm", "os": "linux", "variant": "v7"}));
        assert_eq!(entries[2]["platform"], json!({"architecture": "unknown", "os": "unknown"}));
        assert_eq!(entries[2]["digest"], index.attestation().unwrap().digest());
        assert_eq!(entries[2]["annotations"]["vnd.docker.reference.digest"], index.children[0].digest());
        let without = TestIndex { with_attestation: false, ..index };
        assert_eq!(parse(&without.manifest_bytes())["manifests"].as_array().unwrap().len(), 2);
    }
}
