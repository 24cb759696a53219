//! The model's parsers take anything a client or a registry sends without panicking:
//! digests, image references, manifests (of any shape, with any config), names and
//! selectors. Each rejection carries a message. Property tests, bounded by default;
//! `PROPTEST_CASES=100000 cargo nextest run -p berth-model --test parsers` runs a long
//! campaign.

use berth_model::Digest;
use berth_model::manifest::{self, Manifest};
use berth_model::reference::ImageReference;
use berth_model::selector::{FieldSelector, LabelSelector};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Text that looks like what the parser expects, often enough to reach its deeper rules.
fn reference_like() -> impl Strategy<Value = String> {
    let part = "[a-zA-Z0-9._:/@-]{0,20}";
    prop_oneof![
        any::<String>(),
        part,
        (part, part, part).prop_map(|(a, b, c)| format!("{a}/{b}:{c}")),
        (part, "[0-9a-f]{0,70}").prop_map(|(a, hex)| format!("{a}@sha256:{hex}")),
    ]
}

/// JSON values shaped like manifests: the right keys with arbitrary values.
fn manifest_like() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9:./+-]{0,80}".prop_map(Value::from),
        "[0-9a-f]{64}".prop_map(|hex| Value::from(format!("sha256:{hex}"))),
    ];
    let value = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("(mediaType|digest|size|urls|platform|os|architecture|[a-z]{1,6})", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let media_type = prop_oneof![
        Just(Value::from(manifest::OCI_MANIFEST)),
        Just(Value::from(manifest::OCI_INDEX)),
        Just(Value::from(manifest::DOCKER_MANIFEST)),
        Just(Value::from(manifest::DOCKER_MANIFEST_LIST)),
        Just(Value::Null),
        value.clone(),
    ];
    (media_type, prop::option::of(value.clone()), prop::option::of(value.clone()), prop::option::of(value), any::<Option<i64>>()).prop_map(
        |(media_type, config, layers, manifests, schema_version)| {
            let mut document = json!({"mediaType": media_type});
            for (key, field) in [("config", config), ("layers", layers), ("manifests", manifests)] {
                if let Some(field) = field {
                    document[key] = field;
                }
            }
            if let Some(version) = schema_version {
                document["schemaVersion"] = json!(version);
            }
            document
        },
    )
}

proptest! {
    #[test]
    fn digests_parse_or_say_why(text in reference_like()) {
        match text.parse::<Digest>() {
            Ok(digest) => prop_assert_eq!(digest.to_string(), text),
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }

    #[test]
    fn image_references_parse_or_say_why(text in reference_like()) {
        match ImageReference::parse(&text) {
            Ok(reference) => {
                // What parses prints as a reference that parses to the same thing.
                let again = ImageReference::parse(&reference.to_string());
                prop_assert_eq!(again, Ok(reference));
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }

    #[test]
    fn any_bytes_are_a_manifest_or_a_reason(bytes in prop::collection::vec(any::<u8>(), 0..512), content_type in "[a-z./+-]{0,60}") {
        if let Err(err) = Manifest::parse(&content_type, &bytes) {
            prop_assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn manifest_shaped_documents_become_images_or_reasons(document in manifest_like(), config in prop::option::of(manifest_like())) {
        let bytes = serde_json::to_vec(&document).unwrap();
        let config = config.map(|c| serde_json::to_vec(&c).unwrap());
        match Manifest::parse("", &bytes) {
            Ok(parsed) => {
                let digest = Digest::sha256_of(&bytes);
                match manifest::image_from_manifest(&digest, &bytes, &parsed, config.as_deref(), "registry.example/app@x") {
                    Ok(image) => prop_assert_eq!(image.metadata.name, digest.to_string()),
                    Err(err) => prop_assert!(!err.to_string().is_empty()),
                }
            }
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }

    #[test]
    fn selectors_parse_or_say_why(text in "[a-z0-9=!,() .-]{0,40}|\\PC{0,40}") {
        if let Err(message) = LabelSelector::parse(&text) {
            prop_assert!(!message.is_empty());
        }
        if let Err(message) = FieldSelector::parse(&text) {
            prop_assert!(!message.is_empty());
        }
    }
}

/// A pod with containers of the given images.
fn pod_with(images: &[String]) -> serde_json::Value {
    let containers: Vec<serde_json::Value> =
        images.iter().enumerate().map(|(i, image)| serde_json::json!({"name": format!("c{i}"), "image": image})).collect();
    serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
}

proptest! {
    /// The image patch applies cleanly to the object it was made for and changes exactly
    /// the images it names; applied to an object whose image changed since, it fails.
    #[test]
    fn the_image_patch_applies_to_its_object_and_to_no_other(
        images in proptest::collection::vec("[a-z][a-z0-9/~._-]{0,20}(:[a-z0-9]{1,8})?", 1..6),
        rewrite in proptest::collection::vec(any::<bool>(), 6),
    ) {
        use berth_model::admission::{image_patch, images_of};
        let pod = pod_with(&images);
        let found = images_of("", "Pod", &pod);
        prop_assert_eq!(found.len(), images.len());
        let rewrites: Vec<_> = found
            .iter()
            .zip(&rewrite)
            .filter(|(_, r)| **r)
            .map(|(at, _)| (at.clone(), format!("registry.example/x@sha256:{}", "a".repeat(64))))
            .collect();
        let patch: json_patch::Patch = serde_json::from_value(image_patch(&rewrites)).unwrap();
        let mut patched = pod.clone();
        json_patch::patch(&mut patched, &patch).unwrap();
        let mut expected = images.clone();
        for (idx, r) in rewrite.iter().take(images.len()).enumerate() {
            if *r {
                expected[idx] = format!("registry.example/x@sha256:{}", "a".repeat(64));
            }
        }
        prop_assert_eq!(patched, pod_with(&expected));
        if !rewrites.is_empty() {
            let mut other = images.clone();
            let first = found.iter().zip(&rewrite).position(|(_, r)| *r).unwrap();
            other[first].push_str("-changed");
            let mut moved = pod_with(&other);
            prop_assert!(json_patch::patch(&mut moved, &patch).is_err());
        }
    }
}

/// JSON shaped like the objects admission reviews carry: the keys where images live, with
/// arbitrary values (strings, objects, arrays, nulls) at any depth.
fn workload_like() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9:./@~_-]{0,30}".prop_map(Value::from),
        "DockerImage".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                "(spec|template|jobTemplate|containers|initContainers|ephemeralContainers|image|strategy|sourceStrategy|dockerStrategy|from|kind|name|metadata|[a-z]{1,5})",
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Whatever object a review carries, finding its images never panics, every pointer
    /// found leads to the image string it names, and the patch rewriting all of them
    /// applies to that object.
    #[test]
    fn images_are_found_in_any_workload_and_the_patch_applies(
        object in workload_like(),
        kind in "(Pod|Deployment|StatefulSet|DaemonSet|ReplicaSet|ReplicationController|Job|CronJob|DeploymentConfig|BuildConfig|Service)",
    ) {
        use berth_model::admission::{image_patch, images_of};
        let group = match kind.as_str() {
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps",
            "Job" | "CronJob" => "batch",
            "DeploymentConfig" => "apps.openshift.io",
            "BuildConfig" => "build.openshift.io",
            _ => "",
        };
        let found = images_of(group, &kind, &object);
        for at in &found {
            prop_assert_eq!(object.pointer(&at.pointer).and_then(Value::as_str), Some(at.image.as_str()));
        }
        let rewrites: Vec<_> = found.iter().map(|at| (at.clone(), format!("{}@sha256:{}", at.image, "b".repeat(64)))).collect();
        let patch: json_patch::Patch = serde_json::from_value(image_patch(&rewrites)).unwrap();
        let mut patched = object.clone();
        prop_assert!(json_patch::patch(&mut patched, &patch).is_ok());
    }

    /// An AdmissionReview or ImageReview body of any bytes parses or is refused; never a panic.
    #[test]
    fn review_bodies_parse_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..256), object in workload_like()) {
        let _ = serde_json::from_slice::<berth_model::admission::AdmissionReview>(&bytes);
        let _ = serde_json::from_slice::<berth_model::admission::ImageReview>(&bytes);
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": object});
        let _ = serde_json::from_value::<berth_model::admission::AdmissionReview>(review);
    }

    /// A policy judges any image it is given: a Deny rule refuses exactly the images it
    /// matches, a rule with no requirements passes everything, and every refusal names
    /// the rule and the image.
    #[test]
    fn policies_judge_any_image(
        registry in "[a-z.]{0,12}(:[0-9]{1,4})?",
        repository in "[a-z/]{1,16}",
        pattern in "[a-z.*?]{0,8}",
        by_digest in any::<bool>(),
        known in any::<bool>(),
    ) {
        use berth_model::policy::{ImageFacts, ImagePolicy, KnownImage, Rule, Verdict};
        let facts = ImageFacts {
            written: format!("{registry}/{repository}:1"),
            registry: registry.clone(),
            repository: repository.clone(),
            by_digest,
            image: Ok(known.then(|| std::sync::Arc::new(KnownImage::default()))),
            classes: Default::default(),
        };
        let policy = |name: &str, spec: Value| -> Rule {
            Rule::new(serde_json::from_value::<ImagePolicy>(json!({"metadata": {"name": name}, "spec": spec})).unwrap())
        };
        let deny = policy("deny", json!({"action": "Deny", "images": {"registries": [pattern.clone()]}}));
        let matched = wildmatch::WildMatch::new(&pattern).matches(&registry);
        match deny.judge(&facts) {
            Verdict::Deny(reason) => {
                prop_assert!(matched);
                prop_assert!(reason.contains("rule deny") && reason.contains(&facts.written), "{}", reason);
            }
            Verdict::Pass => prop_assert!(!matched),
            Verdict::CannotDecide(why) => prop_assert!(false, "a Deny rule by registry needs no facts: {}", why),
        }
        prop_assert_eq!(policy("empty", json!({})).judge(&facts), Verdict::Pass);
        let strict = policy("strict", json!({"require": {"digest": true, "known": true}}));
        prop_assert_eq!(strict.judge(&facts) == Verdict::Pass, by_digest && known);
    }
}
