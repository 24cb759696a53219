//! Admission: the `admission.k8s.io/v1` AdmissionReview documents the Kubernetes API
//! server sends to webhooks (in the shape of the Kubernetes API reference), where the
//! container images of each kind of workload are, and the JSON patch that rewrites them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `admission.k8s.io/v1` AdmissionReview: a request in, the same kind with a response out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<AdmissionRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<AdmissionResponse>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub resource: String,
}

/// What the API server asks about.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    pub uid: String,
    #[serde(default)]
    pub kind: GroupVersionKind,
    #[serde(default)]
    pub resource: GroupVersionResource,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sub_resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_kind: Option<GroupVersionKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_resource: Option<GroupVersionResource>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub user_info: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_object: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
}

/// berth's answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    /// Base64 of a JSON patch (RFC 6902).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
}

/// The API version of Kubernetes' ImagePolicyWebhook documents.
pub const IMAGE_REVIEW_VERSION: &str = "imagepolicy.k8s.io/v1alpha1";

/// `imagepolicy.k8s.io/v1alpha1` ImageReview: what the ImagePolicyWebhook admission plugin
/// sends for each pod, and the answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReview {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub spec: ImageReviewSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ImageReviewStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReviewSpec {
    #[serde(default)]
    pub containers: Vec<ImageReviewContainerSpec>,
    /// The pod's annotations that match `*.image-policy.k8s.io/*`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub namespace: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageReviewContainerSpec {
    #[serde(default)]
    pub image: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReviewStatus {
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
}

/// One container image of an object: where it is (a JSON pointer) and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageAt {
    pub pointer: String,
    pub image: String,
}

/// Where the pod spec of each workload kind is, as a JSON pointer.
pub fn pod_spec_pointer(group: &str, kind: &str) -> Option<&'static str> {
    match (group, kind) {
        ("", "Pod") => Some("/spec"),
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("", "ReplicationController")
        | ("batch", "Job")
        | ("apps.openshift.io", "DeploymentConfig") => Some("/spec/template/spec"),
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// The container images of `object`, a `kind` of `group`: every container, init container
/// and ephemeral container of its pod spec, or a BuildConfig's builder image (`from` of a
/// DockerImage kind). Other kinds have none.
pub fn images_of(group: &str, kind: &str, object: &Value) -> Vec<ImageAt> {
    let mut found = Vec::new();
    if let Some(spec) = pod_spec_pointer(group, kind) {
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            let pointer = format!("{spec}/{list}");
            for (idx, container) in object.pointer(&pointer).and_then(Value::as_array).into_iter().flatten().enumerate() {
                if let Some(image) = container.get("image").and_then(Value::as_str) {
                    found.push(ImageAt { pointer: format!("{pointer}/{idx}/image"), image: image.to_string() });
                }
            }
        }
    } else if (group, kind) == ("build.openshift.io", "BuildConfig") {
        for strategy in ["sourceStrategy", "dockerStrategy", "customStrategy"] {
            let from = format!("/spec/strategy/{strategy}/from");
            if object.pointer(&format!("{from}/kind")).and_then(Value::as_str) == Some("DockerImage")
                && let Some(image) = object.pointer(&format!("{from}/name")).and_then(Value::as_str)
            {
                found.push(ImageAt { pointer: format!("{from}/name"), image: image.to_string() });
            }
        }
    }
    found
}

/// The JSON patch (RFC 6902) that sets each pointer to its new image. Each operation first
/// tests the value it replaces, so a patch applied to anything but the object it was made
/// for fails rather than rewriting the wrong field.
pub fn image_patch(rewrites: &[(ImageAt, String)]) -> Value {
    let mut operations = Vec::new();
    for (at, image) in rewrites {
        operations.push(json!({"op": "test", "path": at.pointer, "value": at.image}));
        operations.push(json!({"op": "replace", "path": at.pointer, "value": image}));
    }
    Value::Array(operations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_found_where_each_kind_keeps_its_pod_spec() {
        let containers = json!({"initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "web", "image": "app:1"}, {"name": "side", "image": "proxy"}]});
        let pod = json!({"spec": containers});
        let deployment = json!({"spec": {"template": {"spec": containers}}});
        let cron = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": containers}}}}});
        for (group, kind, object, prefix) in [
            ("", "Pod", &pod, "/spec"),
            ("apps", "Deployment", &deployment, "/spec/template/spec"),
            ("apps.openshift.io", "DeploymentConfig", &deployment, "/spec/template/spec"),
            ("batch", "CronJob", &cron, "/spec/jobTemplate/spec/template/spec"),
        ] {
            let found = images_of(group, kind, object);
            let pointers: Vec<String> = found.iter().map(|at| at.pointer.clone()).collect();
            assert_eq!(
                pointers,
                [
                    format!("{prefix}/initContainers/0/image"),
                    format!("{prefix}/containers/0/image"),
                    format!("{prefix}/containers/1/image")
                ],
                "{kind}"
            );
            assert_eq!(found[1].image, "app:1");
        }
        assert!(images_of("", "Service", &pod).is_empty());
        let build = json!({"spec": {"strategy": {"sourceStrategy": {"from": {"kind": "DockerImage", "name": "ruby:3.3"}}}}});
        assert_eq!(images_of("build.openshift.io", "BuildConfig", &build)[0].pointer, "/spec/strategy/sourceStrategy/from/name");
    }
}
