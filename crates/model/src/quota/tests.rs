use serde_json::json;

use super::*;

fn quota(namespace: &str, name: &str, hard: &[(&str, &str)]) -> ResourceQuota {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hard": hard.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()},
    }))
    .unwrap()
}

fn range(namespace: &str, name: &str, limits: serde_json::Value) -> LimitRange {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": namespace}, "spec": {"limits": limits}})).unwrap()
}

fn limit(value: u64, source: &str) -> Option<Limit> {
    Some(Limit { value, source: source.to_string() })
}

#[test]
fn the_lowest_limit_of_each_is_in_force_and_names_its_source() {
    let quotas = [
        quota("team", "images", &[(IMAGESTREAMS, "10"), (IMAGE_STORAGE, "10Gi")]),
        quota("team", "strict", &[(IMAGESTREAMS, "3"), (IMAGE_STORAGE, "20Gi"), ("pods", "4")]),
        quota("team", "same", &[(IMAGESTREAMS, "3")]),
    ];
    let ranges = [
        range(
            "team",
            "limits",
            json!([
                {"type": LIMIT_TYPE_IMAGESTREAM, "max": {IMAGE_TAGS: "20", IMAGES: "50"}},
                {"type": LIMIT_TYPE_IMAGE, "max": {STORAGE: "1Gi"}},
                {"type": "Container", "max": {"cpu": "2"}},
            ]),
        ),
        range("team", "tighter", json!([{"type": LIMIT_TYPE_IMAGESTREAM, "max": {IMAGES: "5"}}])),
    ];
    assert_eq!(
        ImageLimits::of(&quotas, &ranges),
        ImageLimits {
            imagestreams: limit(3, "ResourceQuota team/strict"),
            storage: limit(10 << 30, "ResourceQuota team/images"),
            tags_per_stream: limit(20, "LimitRange team/limits"),
            images_per_stream: limit(5, "LimitRange team/tighter"),
            image_storage: limit(1 << 30, "LimitRange team/limits"),
        }
    );
}

#[test]
fn nothing_is_limited_without_quotas_or_ranges_that_name_image_resources() {
    assert!(ImageLimits::of(&[], &[]).is_empty());
    let quotas = [quota("team", "pods", &[("pods", "4"), ("requests.cpu", "2")])];
    // min and default do not limit; only max does.
    let ranges = [range("team", "limits", json!([{"type": LIMIT_TYPE_IMAGE, "min": {STORAGE: "1Mi"}, "default": {STORAGE: "1Gi"}}]))];
    assert!(ImageLimits::of(&quotas, &ranges).is_empty());
}

#[test]
fn a_zero_limit_is_a_limit() {
    let limits = ImageLimits::of(&[quota("team", "none", &[(IMAGESTREAMS, "0")])], &[]);
    assert_eq!(limits.imagestreams, limit(0, "ResourceQuota team/none"));
}

#[test]
fn quotas_name_each_value_that_is_not_a_quantity() {
    let mut bad = quota("team", "images", &[(IMAGESTREAMS, "ten"), (IMAGE_STORAGE, "-1Gi"), ("pods", "4")]);
    let errors = bad.validate();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["spec.hard[berth.dev/image-storage]", "spec.hard[openshift.io/imagestreams]"]);
    assert!(errors[0].message.contains("negative"), "{}", errors[0].message);
    assert!(errors[1].message.contains("\"ten\" is not a quantity"), "{}", errors[1].message);
    bad.metadata.name = "Not_A_Label".to_string();
    bad.spec.hard.clear();
    assert_eq!(bad.validate().iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["metadata.name"]);
}

#[test]
fn limit_ranges_name_each_bad_value_a_missing_type_and_a_min_above_its_max() {
    let bad = range(
        "team",
        "limits",
        json!([
            {"type": LIMIT_TYPE_IMAGE, "max": {STORAGE: "1Gi"}, "min": {STORAGE: "2Gi"}},
            {"max": {IMAGES: "5x"}},
        ]),
    );
    let fields: Vec<String> = bad.validate().into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["spec.limits[0].min[storage]", "spec.limits[1].type", "spec.limits[1].max[openshift.io/images]"]);
}

#[test]
fn keys_berth_does_not_enforce_are_kept_and_named() {
    let quota = quota("team", "mixed", &[(IMAGESTREAMS, "3"), ("pods", "4"), ("requests.storage", "1Gi")]);
    assert_eq!(quota.unenforced().collect::<Vec<_>>(), ["pods", "requests.storage"]);
    let range = range(
        "team",
        "mixed",
        json!([
            {"type": LIMIT_TYPE_IMAGESTREAM, "max": {IMAGE_TAGS: "3", STORAGE: "1Gi"}},
            {"type": "Container", "max": {"cpu": "2"}},
        ]),
    );
    assert_eq!(range.unenforced().collect::<Vec<_>>(), [(LIMIT_TYPE_IMAGESTREAM, STORAGE), ("Container", "cpu")]);
}

#[test]
fn status_shows_hard_from_the_spec_and_used_for_the_keys_of_hard() {
    let usage: BTreeMap<String, String> = [(IMAGESTREAMS.to_string(), "2".to_string()), ("other".to_string(), "9".to_string())].into();
    let read = quota("team", "images", &[(IMAGESTREAMS, "10"), (IMAGE_STORAGE, "1Gi")]).with_status(&usage);
    assert_eq!(read.status.hard, read.spec.hard);
    assert_eq!(read.status.used, [(IMAGESTREAMS.to_string(), "2".to_string())].into());
}

#[test]
fn the_kubernetes_shape_round_trips() {
    let document = json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "images", "namespace": "team"},
        "spec": {
            "hard": {IMAGESTREAMS: "10"},
            "scopes": ["NotTerminating"],
            "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]},
        },
        "status": {"hard": {IMAGESTREAMS: "10"}, "used": {IMAGESTREAMS: "1"}},
    });
    let quota: ResourceQuota = serde_json::from_value(document.clone()).unwrap();
    assert_eq!(serde_json::to_value(&quota).unwrap(), document);
    let document = json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "limits", "namespace": "team"},
        "spec": {"limits": [{
            "type": "Container",
            "max": {"cpu": "2"},
            "min": {"cpu": "100m"},
            "default": {"cpu": "1"},
            "defaultRequest": {"cpu": "500m"},
            "maxLimitRequestRatio": {"cpu": "4"},
        }]},
    });
    let range: LimitRange = serde_json::from_value(document.clone()).unwrap();
    assert_eq!(serde_json::to_value(&range).unwrap(), document);
}
