//! The Kubernetes core kinds that carry berth's image quotas, in their `v1` shapes:
//! ResourceQuota (a namespace's totals: how many image streams, how many bytes of
//! layers) and LimitRange (per object: tags and images of one stream, the size of one
//! image), and the limits in force in a namespace ([`ImageLimits::of`]), the lowest of
//! each across them.
//!
//! The resource names are OpenShift's (`openshift.io/imagestreams`, `openshift.io/ImageStream`
//! with `openshift.io/image-tags` and `openshift.io/images`, `openshift.io/Image` with
//! `storage`) except the namespace's storage, which OpenShift does not limit and berth
//! names `berth.dev/image-storage`. Other keys are kept as written and not enforced.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::names::check_dns_label;
use crate::quantity::parse_quantity;
use crate::{FieldError, ObjectMeta};

/// ResourceQuota `hard` key: how many image streams a namespace may hold.
pub const IMAGESTREAMS: &str = "openshift.io/imagestreams";
/// ResourceQuota `hard` key: bytes of the namespace's unique layers.
pub const IMAGE_STORAGE: &str = "berth.dev/image-storage";
/// The ResourceQuota keys berth enforces.
pub const ENFORCED_QUOTA_KEYS: [&str; 2] = [IMAGESTREAMS, IMAGE_STORAGE];

/// LimitRange item `type` limiting one image stream.
pub const LIMIT_TYPE_IMAGESTREAM: &str = "openshift.io/ImageStream";
/// LimitRange item `type` limiting one image.
pub const LIMIT_TYPE_IMAGE: &str = "openshift.io/Image";
/// `max` key of an `openshift.io/ImageStream` item: distinct references in a stream's spec.
pub const IMAGE_TAGS: &str = "openshift.io/image-tags";
/// `max` key of an `openshift.io/ImageStream` item: distinct images in a stream's status.
pub const IMAGES: &str = "openshift.io/images";
/// `max` key of an `openshift.io/Image` item: an image's size in bytes.
pub const STORAGE: &str = "storage";

/// A ResourceQuota (`v1`): totals a namespace may not exceed. The status is the server's:
/// `hard` as the spec says, `used` as the namespace stands when read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceQuota {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ResourceQuotaSpec,
    #[serde(default)]
    pub status: ResourceQuotaStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceQuotaSpec {
    /// Resource name → Kubernetes quantity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hard: BTreeMap<String, String>,
    /// Kept as given; berth's quotas apply to the whole namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Kept as given; berth's quotas apply to the whole namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_selector: Option<ScopeSelector>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeSelector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<ScopedResourceSelectorRequirement>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopedResourceSelectorRequirement {
    pub scope_name: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResourceQuotaStatus {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hard: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub used: BTreeMap<String, String>,
}

impl ResourceQuota {
    /// Checks the name and that every `hard` value is a quantity.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = check_dns_label("metadata.name", &self.metadata.name).err().into_iter().collect();
        errors.extend(check_quantities("spec.hard", &self.spec.hard));
        errors
    }

    /// The `hard` keys berth keeps but does not enforce.
    pub fn unenforced(&self) -> impl Iterator<Item = &str> {
        self.spec.hard.keys().map(String::as_str).filter(|key| !ENFORCED_QUOTA_KEYS.contains(key))
    }

    /// The status a reader sees: `hard` from the spec, and `used` for each key of `hard`
    /// that `usage` (what the namespace uses, by resource name) has a figure for.
    pub fn with_status(mut self, usage: &BTreeMap<String, String>) -> ResourceQuota {
        self.status.used = self.spec.hard.keys().filter_map(|key| usage.get_key_value(key)).map(|(k, v)| (k.clone(), v.clone())).collect();
        self.status.hard = self.spec.hard.clone();
        self
    }
}

/// A LimitRange (`v1`): bounds on each object of a type in a namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitRange {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: LimitRangeSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LimitRangeSpec {
    #[serde(default)]
    pub limits: Vec<LimitRangeItem>,
}

/// The bounds on one type of object; each map is resource name → Kubernetes quantity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitRangeItem {
    /// `openshift.io/ImageStream` and `openshift.io/Image` are enforced; other types
    /// (`Container`, `Pod`, `PersistentVolumeClaim`) are kept as written.
    #[serde(rename = "type", default)]
    pub limit_type: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub min: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default_request: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_limit_request_ratio: BTreeMap<String, String>,
}

impl LimitRangeItem {
    /// Whether berth enforces `max[key]` of this item.
    pub fn enforces(&self, key: &str) -> bool {
        match self.limit_type.as_str() {
            LIMIT_TYPE_IMAGESTREAM => key == IMAGE_TAGS || key == IMAGES,
            LIMIT_TYPE_IMAGE => key == STORAGE,
            _ => false,
        }
    }
}

impl LimitRange {
    /// Checks the name, that every item has a type, that every value is a quantity and
    /// that no `min` is above its `max`.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = check_dns_label("metadata.name", &self.metadata.name).err().into_iter().collect();
        for (idx, item) in self.spec.limits.iter().enumerate() {
            let at = format!("spec.limits[{idx}]");
            if item.limit_type.is_empty() {
                errors.push(FieldError::new(
                    format!("{at}.type"),
                    format!("type is required: {LIMIT_TYPE_IMAGESTREAM} or {LIMIT_TYPE_IMAGE} for the limits berth enforces"),
                ));
            }
            for (name, map) in [
                ("max", &item.max),
                ("min", &item.min),
                ("default", &item.default),
                ("defaultRequest", &item.default_request),
                ("maxLimitRequestRatio", &item.max_limit_request_ratio),
            ] {
                errors.extend(check_quantities(&format!("{at}.{name}"), map));
            }
            for (key, min) in &item.min {
                if let (Some(max), Ok(low)) = (item.max.get(key), parse_quantity(min))
                    && let Ok(high) = parse_quantity(max)
                    && low > high
                {
                    errors.push(FieldError::new(format!("{at}.min[{key}]"), format!("min {min} is above max {max}")));
                }
            }
        }
        errors
    }

    /// The `(type, key)` pairs of `max` that berth keeps but does not enforce.
    pub fn unenforced(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spec.limits.iter().flat_map(|item| {
            item.max.keys().filter(move |key| !item.enforces(key)).map(move |key| (item.limit_type.as_str(), key.as_str()))
        })
    }
}

/// One error per value of `map` that is not a quantity, named `field[key]`.
fn check_quantities(field: &str, map: &BTreeMap<String, String>) -> Vec<FieldError> {
    map.iter()
        .filter_map(|(key, value)| parse_quantity(value).err().map(|message| FieldError::new(format!("{field}[{key}]"), message)))
        .collect()
}

/// One limit in force, and the object that sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub value: u64,
    /// The object it comes from, as messages name it: `ResourceQuota team-a/images`,
    /// `LimitRange team-a/limits`.
    pub source: String,
}

/// The image limits in force in a namespace: the lowest of each across its
/// ResourceQuotas and LimitRanges (`None`: nothing limits it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageLimits {
    /// ResourceQuota `hard[openshift.io/imagestreams]`: image streams in the namespace.
    pub imagestreams: Option<Limit>,
    /// ResourceQuota `hard[berth.dev/image-storage]`: bytes of the namespace's unique layers.
    pub storage: Option<Limit>,
    /// LimitRange `openshift.io/ImageStream` `max[openshift.io/image-tags]`: distinct
    /// references in one stream's spec.
    pub tags_per_stream: Option<Limit>,
    /// LimitRange `openshift.io/ImageStream` `max[openshift.io/images]`: distinct images
    /// in one stream's status.
    pub images_per_stream: Option<Limit>,
    /// LimitRange `openshift.io/Image` `max[storage]`: bytes of one image.
    pub image_storage: Option<Limit>,
}

impl ImageLimits {
    /// The lowest of each limit across `quotas` and `ranges` (of one namespace). On a tie
    /// the first object given names the limit. Values that are not quantities (none are
    /// stored: writes are validated) limit nothing.
    pub fn of(quotas: &[ResourceQuota], ranges: &[LimitRange]) -> ImageLimits {
        let mut limits = ImageLimits::default();
        for quota in quotas {
            let source = || format!("ResourceQuota {}/{}", quota.metadata.namespace, quota.metadata.name);
            lower(&mut limits.imagestreams, quota.spec.hard.get(IMAGESTREAMS), source);
            lower(&mut limits.storage, quota.spec.hard.get(IMAGE_STORAGE), source);
        }
        for range in ranges {
            let source = || format!("LimitRange {}/{}", range.metadata.namespace, range.metadata.name);
            for item in &range.spec.limits {
                match item.limit_type.as_str() {
                    LIMIT_TYPE_IMAGESTREAM => {
                        lower(&mut limits.tags_per_stream, item.max.get(IMAGE_TAGS), source);
                        lower(&mut limits.images_per_stream, item.max.get(IMAGES), source);
                    }
                    LIMIT_TYPE_IMAGE => lower(&mut limits.image_storage, item.max.get(STORAGE), source),
                    _ => {}
                }
            }
        }
        limits
    }

    /// Whether nothing is limited.
    pub fn is_empty(&self) -> bool {
        *self == ImageLimits::default()
    }
}

/// Replaces `limit` with `value` when `value` is a quantity lower than it (or it is unset).
fn lower(limit: &mut Option<Limit>, value: Option<&String>, source: impl Fn() -> String) {
    let Some(value) = value.and_then(|v| parse_quantity(v).ok()) else { return };
    if limit.as_ref().is_none_or(|current| value < current.value) {
        *limit = Some(Limit { value, source: source() });
    }
}

#[cfg(test)]
mod tests;
