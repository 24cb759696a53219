//! Image manifests as registries serve them (Docker schema 2, Docker manifest lists, OCI
//! image manifests and indexes) and the Images berth builds from them.
//!
//! Manifest bytes are the truth: they are kept exactly as received and named by their
//! digest. The types here only read fields out of them; nothing is re-serialised.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::image::{Image, ImageLayer, ImageManifest};
use crate::{Digest, ObjectMeta};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The manifest media types berth reads, for `Accept` headers.
pub const ACCEPTED: [&str; 4] = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// The annotation OpenShift puts on images whose layers are listed base first.
pub const LAYERS_ORDER_ANNOTATION: &str = "image.openshift.io/dockerLayersOrder";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is not valid JSON of a known kind: {0}")]
    Malformed(String),
    #[error(
        "the manifest is Docker schema 1 ({0}), which berth does not import: push the image again with a current client to get a schema 2 or OCI manifest"
    )]
    Schema1(String),
    #[error("the media type {0:?} is not an image manifest or index")]
    UnknownMediaType(String),
    #[error("the image config is not valid JSON: {0}")]
    MalformedConfig(String),
}

/// A content descriptor: what a manifest says about a blob or a child manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub platform: Option<Platform>,
    /// Where a non-distributable layer can be fetched instead of the registry.
    #[serde(default)]
    pub urls: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: String,
}

/// A parsed manifest: one image, or a list of per-platform images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Manifest {
    Image { media_type: String, config: Descriptor, layers: Vec<Descriptor> },
    List { media_type: String, manifests: Vec<Descriptor> },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

impl Manifest {
    /// Parses manifest bytes. `content_type` is what the registry said the bytes are; the
    /// document's own `mediaType` wins when it has one.
    pub fn parse(content_type: &str, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = serde_json::from_slice(bytes).map_err(|err| ManifestError::Malformed(err.to_string()))?;
        let content_type = content_type.split(';').next().unwrap_or("").trim();
        if raw.schema_version == Some(1) || content_type == DOCKER_SCHEMA1 || content_type == DOCKER_SCHEMA1_SIGNED {
            return Err(ManifestError::Schema1(content_type.to_string()));
        }
        let media_type = match raw.media_type.as_deref().filter(|m| !m.is_empty()) {
            Some(declared) => declared.to_string(),
            None if matches!(content_type, OCI_INDEX | DOCKER_MANIFEST_LIST | OCI_MANIFEST | DOCKER_MANIFEST) => content_type.to_string(),
            // An OCI document may leave mediaType out; its shape says what it is.
            None if raw.manifests.is_some() => OCI_INDEX.to_string(),
            None => OCI_MANIFEST.to_string(),
        };
        match media_type.as_str() {
            OCI_INDEX | DOCKER_MANIFEST_LIST => {
                let manifests = raw.manifests.ok_or_else(|| ManifestError::Malformed(format!("a {media_type} needs `manifests`")))?;
                check_digests(&manifests)?;
                Ok(Manifest::List { media_type, manifests })
            }
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let config = raw.config.ok_or_else(|| ManifestError::Malformed(format!("a {media_type} needs `config`")))?;
                let layers = raw.layers.unwrap_or_default();
                check_digests(std::slice::from_ref(&config))?;
                check_digests(&layers)?;
                Ok(Manifest::Image { media_type, config, layers })
            }
            other => Err(ManifestError::UnknownMediaType(other.to_string())),
        }
    }

    pub fn media_type(&self) -> &str {
        match self {
            Manifest::Image { media_type, .. } | Manifest::List { media_type, .. } => media_type,
        }
    }
}

fn check_digests(descriptors: &[Descriptor]) -> Result<(), ManifestError> {
    for descriptor in descriptors {
        if let Err(err) = descriptor.digest.parse::<Digest>() {
            return Err(ManifestError::Malformed(format!("descriptor digest {:?}: {err}", descriptor.digest)));
        }
        if descriptor.size < 0 {
            return Err(ManifestError::Malformed(format!("descriptor {} has a negative size", descriptor.digest)));
        }
    }
    Ok(())
}

/// A platform asked for when one image must be chosen from a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlatformPreference {
    /// Empty matches any.
    pub os: String,
    /// Empty matches any.
    pub architecture: String,
    pub variant: String,
}

impl PlatformPreference {
    /// Parses `os/arch[/variant]`.
    pub fn parse(text: &str) -> Result<PlatformPreference, String> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => {
                Ok(PlatformPreference { os: os.to_string(), architecture: arch.to_string(), variant: String::new() })
            }
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() => {
                Ok(PlatformPreference { os: os.to_string(), architecture: arch.to_string(), variant: variant.to_string() })
            }
            _ => Err(format!("{text:?} is not a platform: write OS/ARCH or OS/ARCH/VARIANT, such as linux/amd64")),
        }
    }

    fn matches(&self, platform: &Platform) -> bool {
        (self.os.is_empty() || self.os == platform.os)
            && (self.architecture.is_empty() || self.architecture == platform.architecture)
            && (self.variant.is_empty() || self.variant == platform.variant)
    }
}

/// Chooses the one child of a list that `importMode: Legacy` keeps: the first preference
/// that some child matches, else the first child that is a runnable image (attestations
/// and other artifacts, `unknown/unknown`, are skipped).
pub fn choose_child<'a>(manifests: &'a [Descriptor], preferences: &[PlatformPreference]) -> Option<&'a Descriptor> {
    let runnable = |d: &&Descriptor| d.platform.as_ref().is_none_or(|p| p.os != "unknown" && p.architecture != "unknown");
    for preference in preferences {
        if let Some(found) = manifests.iter().filter(runnable).find(|d| d.platform.as_ref().is_some_and(|p| preference.matches(p))) {
            return Some(found);
        }
    }
    manifests.iter().find(runnable)
}

/// The image configuration (the config blob), as far as berth reads it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ImageConfig {
    /// The config's `architecture`, `os` and `variant`, read as a descriptor's platform is.
    #[serde(flatten)]
    pub platform: Platform,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub docker_version: Option<String>,
    #[serde(default)]
    pub config: Option<Map<String, Value>>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, ManifestError> {
        serde_json::from_slice(bytes).map_err(|err| ManifestError::MalformedConfig(err.to_string()))
    }
}

/// The config fields OpenShift's `docker10.DockerConfig` carries, in its spelling.
const CONFIG_FIELDS: [&str; 11] =
    ["User", "ExposedPorts", "Env", "Cmd", "Entrypoint", "Volumes", "WorkingDir", "Labels", "StopSignal", "OnBuild", "Shell"];

/// Builds the Image of a single-image manifest: `pull_spec` is where it can be pulled by
/// digest, `config` the config blob's bytes.
pub fn image_from_manifest(
    digest: &Digest,
    manifest_bytes: &[u8],
    manifest: &Manifest,
    config: Option<&[u8]>,
    pull_spec: &str,
) -> Result<Image, ManifestError> {
    let manifest_text =
        std::str::from_utf8(manifest_bytes).map_err(|_| ManifestError::Malformed("the manifest is not UTF-8 text".to_string()))?;
    let mut image = Image {
        metadata: ObjectMeta { name: digest.to_string(), ..ObjectMeta::default() },
        docker_image_reference: pull_spec.to_string(),
        docker_image_manifest: manifest_text.to_string(),
        docker_image_manifest_media_type: manifest.media_type().to_string(),
        ..Image::default()
    };
    match manifest {
        Manifest::List { manifests, .. } => {
            image.docker_image_manifests = manifests
                .iter()
                .map(|d| {
                    let platform = d.platform.clone().unwrap_or_default();
                    ImageManifest {
                        digest: d.digest.clone(),
                        media_type: d.media_type.clone(),
                        manifest_size: d.size,
                        architecture: platform.architecture,
                        os: platform.os,
                        variant: platform.variant,
                    }
                })
                .collect();
        }
        Manifest::Image { config: config_descriptor, layers, .. } => {
            image.docker_image_layers =
                layers.iter().map(|l| ImageLayer { name: l.digest.clone(), size: l.size, media_type: l.media_type.clone() }).collect();
            image.metadata.annotations.insert(LAYERS_ORDER_ANNOTATION.to_string(), "ascending".to_string());
            let config_bytes = config.unwrap_or(b"{}");
            let parsed = ImageConfig::parse(config_bytes)?;
            let config_text = std::str::from_utf8(config_bytes)
                .map_err(|_| ManifestError::MalformedConfig("the image config is not UTF-8 text".to_string()))?;
            if config.is_some() {
                image.docker_image_config = config_text.to_string();
            }
            let layers_size: i64 = layers.iter().map(|l| l.size).sum();
            image.docker_image_metadata =
                Some(docker_image_metadata(&config_descriptor.digest, &parsed, layers_size + config_descriptor.size));
            image.docker_image_metadata_version = "1.0".to_string();
        }
    }
    Ok(image)
}

/// `dockerImageMetadata` in OpenShift's `docker10.DockerImage` shape.
fn docker_image_metadata(config_digest: &str, config: &ImageConfig, size: i64) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!("DockerImage"));
    out.insert("apiVersion".into(), json!("1.0"));
    out.insert("Id".into(), json!(config_digest));
    if let Some(created) = &config.created {
        out.insert("Created".into(), json!(created));
    }
    out.insert("ContainerConfig".into(), json!({}));
    let mut fields = Map::new();
    if let Some(source) = &config.config {
        for name in CONFIG_FIELDS {
            if let Some(value) = source.get(name).filter(|v| !v.is_null()) {
                fields.insert(name.to_string(), value.clone());
            }
        }
    }
    out.insert("Config".into(), Value::Object(fields));
    if let Some(version) = config.docker_version.as_ref().filter(|v| !v.is_empty()) {
        out.insert("DockerVersion".into(), json!(version));
    }
    if let Some(author) = config.author.as_ref().filter(|v| !v.is_empty()) {
        out.insert("Author".into(), json!(author));
    }
    if !config.platform.architecture.is_empty() {
        out.insert("Architecture".into(), json!(config.platform.architecture));
    }
    if !config.platform.os.is_empty() {
        out.insert("Os".into(), json!(config.platform.os));
    }
    if !config.platform.variant.is_empty() {
        out.insert("Variant".into(), json!(config.platform.variant));
    }
    out.insert("Size".into(), json!(size));
    Value::Object(out)
}

/// The platform of an image for display: `os/arch[/variant]` from its metadata, or the
/// platforms of a list's children.
pub fn platforms(image: &Image) -> Vec<String> {
    if !image.docker_image_manifests.is_empty() {
        return image
            .docker_image_manifests
            .iter()
            .filter(|m| m.os != "unknown")
            .map(|m| join_platform(&m.os, &m.architecture, &m.variant))
            .collect();
    }
    let Some(meta) = &image.docker_image_metadata else {
        return Vec::new();
    };
    let text = |key: &str| meta.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let (os, arch, variant) = (text("Os"), text("Architecture"), text("Variant"));
    if os.is_empty() && arch.is_empty() { Vec::new() } else { vec![join_platform(&os, &arch, &variant)] }
}

fn join_platform(os: &str, arch: &str, variant: &str) -> String {
    if variant.is_empty() { format!("{os}/{arch}") } else { format!("{os}/{arch}/{variant}") }
}

/// Orders a repository's tags the way OpenShift's `PrioritizeTags` does, most wanted
/// first: `latest`; then minor versions (`5.1`, `v5.1`, `5.1-rc1`) newest first; then full
/// semantic versions newest first; then the rest alphabetically. Among equal versions the
/// unprefixed tag comes before the `v` one.
pub fn prioritize_tags(tags: &mut [String]) {
    tags.sort_by_cached_key(|tag| TagRank::of(tag));
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TagRank {
    Latest,
    Minor(std::cmp::Reverse<semver::Version>, bool, String),
    Full(std::cmp::Reverse<semver::Version>, bool, String),
    Other(String),
}

impl TagRank {
    fn of(tag: &str) -> TagRank {
        if tag == "latest" {
            return TagRank::Latest;
        }
        let prefixed = tag.starts_with('v');
        let short = tag.strip_prefix('v').unwrap_or(tag);
        let minor = |text: &str| -> Option<semver::Version> {
            let (major, minor) = text.split_once('.')?;
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(major) || !digits(minor) {
                return None;
            }
            semver::Version::parse(&format!("{major}.{minor}.0")).ok()
        };
        if let Some(version) = minor(short) {
            return TagRank::Minor(std::cmp::Reverse(version), prefixed, tag.to_string());
        }
        if let Some((base, suffix)) = short.split_once('-')
            && !suffix.is_empty()
            && suffix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && let Some(version) = minor(base)
        {
            return TagRank::Minor(std::cmp::Reverse(version), prefixed, tag.to_string());
        }
        if let Ok(version) = semver::Version::parse(short) {
            return TagRank::Full(std::cmp::Reverse(version), prefixed, tag.to_string());
        }
        TagRank::Other(tag.to_string())
    }
}

/// Labels of an image config, for display and diffs.
pub fn labels(image: &Image) -> BTreeMap<String, String> {
    let labels = image.docker_image_metadata.as_ref().and_then(|m| m.get("Config")).and_then(|c| c.get("Labels"));
    match labels.and_then(Value::as_object) {
        Some(map) => map.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect(),
        None => BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_ordered_as_openshift_orders_them() {
        let mut tags: Vec<String> =
            ["v5", "other", "5.1.3", "v5.1", "5.2-rc1", "latest", "5.1", "v5.3.6", "v5.3", "alpha", "5.10"].map(String::from).to_vec();
        prioritize_tags(&mut tags);
        assert_eq!(tags, ["latest", "5.10", "v5.3", "5.2-rc1", "5.1", "v5.1", "v5.3.6", "5.1.3", "alpha", "other", "v5"]);
    }

    #[test]
    fn a_schema2_manifest_becomes_an_image_with_metadata() {
        let config = br#"{"architecture":"arm64","os":"linux","created":"2026-01-02T03:04:05Z","config":{"Env":["A=1"],"ExposedPorts":{"80/tcp":{}},"User":"app","Labels":{"tier":"web"},"WorkingDir":"/srv","Entrypoint":["/run"],"Cmd":["serve"],"Volumes":{"/data":{}}}}"#;
        let config_digest = Digest::sha256_of(config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{}","size":100}},{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{}","size":50}}]}}"#,
            config.len(),
            Digest::sha256_of(b"one"),
            Digest::sha256_of(b"two")
        );
        let digest = Digest::sha256_of(manifest.as_bytes());
        let parsed = Manifest::parse("application/json", manifest.as_bytes()).unwrap();
        let image = image_from_manifest(&digest, manifest.as_bytes(), &parsed, Some(config), "r.example/app@x").unwrap();
        assert_eq!(image.validate(""), Ok(digest));
        assert_eq!(image.docker_image_layers.len(), 2);
        assert_eq!(image.size(), 150 + config.len() as i64);
        let meta = image.docker_image_metadata.as_ref().unwrap();
        assert_eq!(meta["Config"]["User"], "app");
        assert_eq!(meta["Config"]["ExposedPorts"]["80/tcp"], json!({}));
        assert_eq!(meta["Config"]["Env"][0], "A=1");
        assert_eq!(meta["Created"], "2026-01-02T03:04:05Z");
        assert_eq!(meta["Id"], config_digest.to_string());
        assert_eq!(platforms(&image), ["linux/arm64"]);
        assert_eq!(labels(&image)["tier"], "web");
    }

    #[test]
    fn schema1_and_junk_are_refused_with_reasons() {
        assert!(matches!(Manifest::parse("", br#"{"schemaVersion":1,"fsLayers":[]}"#), Err(ManifestError::Schema1(_))));
        assert!(matches!(Manifest::parse("", b"not json"), Err(ManifestError::Malformed(_))));
        assert!(matches!(Manifest::parse("", br#"{"mediaType":"text/plain"}"#), Err(ManifestError::UnknownMediaType(_))));
        let bad_digest = br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:zz","size":1}}"#;
        assert!(matches!(Manifest::parse("", bad_digest), Err(ManifestError::Malformed(_))));
    }

    #[test]
    fn legacy_mode_prefers_the_asked_platform_then_the_first_runnable_child() {
        let child = |os: &str, arch: &str| Descriptor {
            digest: Digest::sha256_of(format!("{os}/{arch}").as_bytes()).to_string(),
            platform: Some(Platform { os: os.into(), architecture: arch.into(), variant: String::new() }),
            ..Descriptor::default()
        };
        let list = [child("unknown", "unknown"), child("linux", "arm64"), child("linux", "amd64")];
        let amd64 = PlatformPreference::parse("linux/amd64").unwrap();
        let s390x = PlatformPreference::parse("linux/s390x").unwrap();
        let arm = PlatformPreference { architecture: "arm64".into(), ..PlatformPreference::default() };
        assert_eq!(choose_child(&list, &[s390x.clone(), amd64.clone()]), Some(&list[2]));
        assert_eq!(choose_child(&list, &[arm, amd64]), Some(&list[1]));
        assert_eq!(choose_child(&list, &[s390x]), Some(&list[1]));
        assert!(PlatformPreference::parse("amd64").is_err());
    }
}
