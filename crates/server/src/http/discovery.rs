//! What the API serves, as one table ([`RESOURCES`]): the discovery documents (`/api`,
//! `/apis` and each group-version's resource list, which kubectl reads to find kinds,
//! short names and verbs) and the OpenAPI documents are both made from it.

use berth_model::core::{Namespace, Secret, Token};
use berth_model::image::Image;
use berth_model::imagestream::{ImageStream, ImageStreamImage, ImageStreamMapping, ImageStreamTag, ImageTag};
use berth_model::imagestreamimport::ImageStreamImport;
use berth_model::notify::Subscription;
use berth_model::quota::{LimitRange, ResourceQuota};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Value, json};

/// How a kind's schema is made (`None` for views that have none of their own).
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// One resource of the API.
pub struct ApiResource {
    /// The API group; empty for the core group (`/api/v1`).
    pub group: &'static str,
    pub version: &'static str,
    /// The plural name in URLs.
    pub name: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub schema: Option<SchemaFn>,
}

impl ApiResource {
    pub fn group_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The path of the group-version: `/api/v1` or `/apis/<group>/<version>`.
    pub fn root(&self) -> String {
        if self.group.is_empty() { format!("/api/{}", self.version) } else { format!("/apis/{}/{}", self.group, self.version) }
    }

    /// The path of the resource's collection (in `{namespace}` when namespaced).
    pub fn collection(&self) -> String {
        match self.namespaced {
            true => format!("{}/namespaces/{{namespace}}/{}", self.root(), self.name),
            false => format!("{}/{}", self.root(), self.name),
        }
    }
}

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// The verbs of a kind with the full set.
const ALL: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
/// The verbs of ImageStreamTag and ImageTag (views of one tag of a stream).
const TAG_VERBS: &[&str] = &["create", "delete", "get", "list", "patch", "update"];

/// Every resource berth serves.
pub const RESOURCES: &[ApiResource] = &[
    ApiResource {
        group: "",
        version: "v1",
        name: "namespaces",
        kind: "Namespace",
        namespaced: false,
        verbs: ALL,
        short_names: &["ns"],
        schema: Some(schema_of::<Namespace>),
    },
    ApiResource {
        group: "",
        version: "v1",
        name: "secrets",
        kind: "Secret",
        namespaced: true,
        verbs: ALL,
        short_names: &[],
        schema: Some(schema_of::<Secret>),
    },
    ApiResource {
        group: "",
        version: "v1",
        name: "resourcequotas",
        kind: "ResourceQuota",
        namespaced: true,
        verbs: ALL,
        short_names: &["quota"],
        schema: Some(schema_of::<ResourceQuota>),
    },
    ApiResource {
        group: "",
        version: "v1",
        name: "limitranges",
        kind: "LimitRange",
        namespaced: true,
        verbs: ALL,
        short_names: &["limits"],
        schema: Some(schema_of::<LimitRange>),
    },
    ApiResource {
        group: "image.openshift.io",
        version: "v1",
        name: "images",
        kind: "Image",
        namespaced: false,
        verbs: ALL,
        short_names: &[],
        schema: Some(schema_of::<Image>),
    },
    ApiResource {
        group: "image.openshift.io",
        version: "v1",
        name: "imagestreams",
        kind: "ImageStream",
        namespaced: true,
        verbs: ALL,
        short_names: &["is"],
        schema: Some(schema_of::<ImageStream>),
    },
    ApiResource {
        group: "image.openshift.io",
        version: "v1",
        name: "imagestreamtags",
        kind: "ImageStreamTag",
        namespaced: true,
        verbs: TAG_VERBS,
        short_names: &["istag"],
        schema: Some(schema_of::<ImageStreamTag>),
    },
    ApiResource {
        group: "image.openshift.io",
        version: "v1",
        name: "imagetags",
        kind: "ImageTag",
        namespaced: true,
        verbs: TAG_VERBS,
        short_names: &["itag"],
        schema: Some(schema_of::<ImageTag>),
    },
    ApiResource {
        group: "image.openshift.io",
        version: "v1",
        name: "imagestreamimages",
        kind: "ImageStreamImage",
        namespaced: true,
        verbs: &["get"],
        short_names: &["isimage"],
        schema: Some(schema_of::<ImageStreamImage>),
    },
    ApiResource {
        group: "image.openshift.io",
        version: "v1",
        name: "imagestreammappings",
        kind: "ImageStreamMapping",
        namespaced: true,
        verbs: &["create"],
        short_names: &[],
        schema: Some(schema_of::<ImageStreamMapping>),
    },
    ApiResource {
        group: "image.openshift.io",
        version: "v1",
        name: "imagestreamimports",
        kind: "ImageStreamImport",
        namespaced: true,
        verbs: &["create"],
        short_names: &[],
        schema: Some(schema_of::<ImageStreamImport>),
    },
    ApiResource {
        group: "berth.dev",
        version: "v1",
        name: "tokens",
        kind: "Token",
        namespaced: false,
        verbs: &["create", "delete", "get", "list", "watch"],
        short_names: &[],
        schema: Some(schema_of::<Token>),
    },
    ApiResource {
        group: "berth.dev",
        version: "v1",
        name: "subscriptions",
        kind: "Subscription",
        namespaced: true,
        verbs: &["create", "delete", "get", "list", "update", "watch"],
        short_names: &["sub"],
        schema: Some(schema_of::<Subscription>),
    },
    ApiResource {
        group: "berth.dev",
        version: "v1",
        name: "imageclasses",
        kind: "ImageClass",
        namespaced: false,
        verbs: &["create", "delete", "get", "list", "update", "watch"],
        short_names: &["ic"],
        schema: Some(schema_of::<berth_model::lineage::ImageClass>),
    },
    ApiResource {
        group: "berth.dev",
        version: "v1",
        name: "imageclassgroups",
        kind: "ImageClassGroup",
        namespaced: false,
        verbs: &["create", "delete", "get", "list", "update", "watch"],
        short_names: &["icg"],
        schema: Some(schema_of::<berth_model::lineage::ImageClassGroup>),
    },
    ApiResource {
        group: "berth.dev",
        version: "v1",
        name: "imagepolicies",
        kind: "ImagePolicy",
        namespaced: false,
        verbs: &["create", "delete", "get", "list", "update", "watch"],
        short_names: &["ipol"],
        schema: Some(schema_of::<berth_model::policy::ImagePolicy>),
    },
    ApiResource {
        group: "berth.dev",
        version: "v1",
        name: "imagepruners",
        kind: "ImagePruner",
        namespaced: false,
        verbs: &["create", "delete", "get", "list", "update", "watch"],
        short_names: &[],
        schema: Some(schema_of::<berth_model::prune::ImagePruner>),
    },
    ApiResource {
        group: "berth.dev",
        version: "v1",
        name: "scheduledimports",
        kind: "ScheduledImport",
        namespaced: true,
        verbs: &["list"],
        short_names: &[],
        schema: None,
    },
];

/// The group-versions served, as `(group, version)`, core first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for resource in RESOURCES {
        if !seen.contains(&(resource.group, resource.version)) {
            seen.push((resource.group, resource.version));
        }
    }
    seen
}

/// `/api/<version>` or `/apis/<group>/<version>`: the APIResourceList.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            let mut entry = json!({
                "name": r.name,
                "singularName": r.kind.to_ascii_lowercase(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": r.verbs,
            });
            if !r.short_names.is_empty() {
                entry["shortNames"] = json!(r.short_names);
            }
            entry
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}

/// `/api`: the core group's versions.
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

/// `/apis`: the named groups.
pub fn groups() -> Value {
    let groups: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, version)| {
            let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
            json!({"name": group, "versions": [gv], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_version_lists_its_resources_with_short_names() {
        let image = resource_list("image.openshift.io", "v1").unwrap();
        let streams = image["resources"].as_array().unwrap().iter().find(|r| r["name"] == "imagestreams").unwrap();
        assert_eq!(streams["shortNames"], json!(["is"]));
        assert_eq!(streams["singularName"], "imagestream");
        assert!(resource_list("image.openshift.io", "v2").is_none());
        assert_eq!(groups()["groups"].as_array().unwrap().len(), 2);
        let names: Vec<&str> = RESOURCES.iter().map(|r| r.name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "one entry per resource");
    }
}
