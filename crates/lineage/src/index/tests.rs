use berth_model::Digest;

use super::*;
use crate::scan;

fn d(name: &str) -> Digest {
    Digest::sha256_of(name.as_bytes())
}

fn image(name: &str, layers: &[&str]) -> ImageFacts {
    ImageFacts { layers: layers.iter().map(|l| d(l)).collect(), ..ImageFacts::new(d(name)) }
}

fn list(name: &str, children: &[(&str, &str)]) -> ImageFacts {
    ImageFacts { manifests: children.iter().map(|(c, p)| (d(c), p.to_string())).collect(), ..ImageFacts::new(d(name)) }
}

fn index(images: &[ImageFacts]) -> Index {
    let mut index = Index::new();
    for image in images {
        assert!(index.insert(image));
    }
    index
}

/// The answer as `(name, evidence, same_layers, platform)` in name order, names looked up
/// in `names`.
fn check(answer: Option<Vec<Related>>, names: &[&str], expect: &[(&str, Evidence, bool, Option<&str>)]) {
    let name_of = |digest: &Digest| names.iter().find(|n| d(n) == *digest).copied().unwrap_or("?");
    let answer = answer.expect("the image is indexed");
    let mut got: Vec<(&str, Evidence, bool, Option<&str>)> =
        answer.iter().map(|r| (name_of(&r.image), r.evidence, r.same_layers, r.platform.as_deref())).collect();
    got.sort();
    let mut expect = expect.to_vec();
    expect.sort();
    assert_eq!(got, expect);
}

fn names_in_order(answer: Option<Vec<Related>>) -> Vec<Digest> {
    answer.unwrap().into_iter().map(|r| r.image).collect()
}

#[test]
fn answers_come_nearest_first() {
    let index = index(&population());
    assert_eq!(names_in_order(index.descendants(&d("base"))), vec![d("same"), d("app"), d("app2")]);
    let ancestors = names_in_order(index.ancestors(&d("app2")));
    assert_eq!(ancestors[0], d("app"));
}

const NAMES: &[&str] = &["base", "app", "app2", "prefix", "same", "other", "list", "squashed", "base-arm", "app-arm", "app-list"];

fn population() -> Vec<ImageFacts> {
    vec![
        image("base", &["a", "b", "c"]),
        image("app", &["a", "b", "c", "d"]),
        image("app2", &["a", "b", "c", "d", "e"]),
        // Shares only a prefix of the base's layers: not built on it.
        image("prefix", &["a", "b", "x"]),
        // The base's layers with another config.
        image("same", &["a", "b", "c"]),
        image("other", &["z"]),
    ]
}

#[test]
fn descendants_are_the_images_holding_the_last_chain_nearest_first() {
    let index = index(&population());
    check(
        index.descendants(&d("base")),
        NAMES,
        &[("same", Evidence::Layers, true, None), ("app", Evidence::Layers, false, None), ("app2", Evidence::Layers, false, None)],
    );
    check(index.descendants(&d("app2")), NAMES, &[]);
    check(index.descendants(&d("prefix")), NAMES, &[]);
}

#[test]
fn ancestors_are_the_images_whose_last_chain_it_holds_nearest_first() {
    let index = index(&population());
    check(
        index.ancestors(&d("app2")),
        NAMES,
        &[("app", Evidence::Layers, false, None), ("base", Evidence::Layers, false, None), ("same", Evidence::Layers, false, None)],
    );
    check(index.ancestors(&d("prefix")), NAMES, &[]);
    assert_eq!(index.ancestors(&d("unknown")), None);
}

#[test]
fn the_base_annotation_relates_images_that_share_no_layer() {
    let mut images = population();
    let mut squashed = image("squashed", &["q"]);
    squashed.base = Some(d("app"));
    images.push(squashed);
    let mut annotated_app2 = images.remove(2);
    annotated_app2.base = Some(d("app"));
    images.push(annotated_app2);
    let index = index(&images);
    check(
        index.ancestors(&d("squashed")),
        NAMES,
        &[
            ("app", Evidence::Annotation, false, None),
            ("base", Evidence::Annotation, false, None),
            ("same", Evidence::Annotation, false, None),
        ],
    );
    check(index.descendants(&d("app")), NAMES, &[("app2", Evidence::Both, false, None), ("squashed", Evidence::Annotation, false, None)]);
    // Through `app`, the squashed image is built on the base too.
    let descendants = index.descendants(&d("base")).unwrap();
    let squashed = descendants.iter().find(|r| r.image == d("squashed")).expect("squashed is a descendant of base");
    assert_eq!(squashed.evidence, Evidence::Annotation);
}

#[test]
fn manifest_lists_relate_through_their_children_per_platform() {
    let images = vec![
        image("base", &["a"]),
        image("base-arm", &["A"]),
        list("list", &[("base", "linux/amd64"), ("base-arm", "linux/arm64")]),
        image("app", &["a", "b"]),
        image("app-arm", &["A", "B"]),
        list("app-list", &[("app", "linux/amd64"), ("app-arm", "linux/arm64")]),
    ];
    let index = index(&images);
    check(
        index.descendants(&d("list")),
        NAMES,
        &[("app", Evidence::Layers, false, Some("linux/amd64")), ("app-arm", Evidence::Layers, false, Some("linux/arm64"))],
    );
    check(
        index.ancestors(&d("app-list")),
        NAMES,
        &[("base", Evidence::Layers, false, Some("linux/amd64")), ("base-arm", Evidence::Layers, false, Some("linux/arm64"))],
    );
    assert_eq!(index.lists_containing(&d("base-arm")), vec![(d("list"), "linux/arm64".to_string())]);
}

#[test]
fn an_annotation_may_name_the_list() {
    let mut app = image("app", &["x"]);
    app.base = Some(d("list"));
    let images = vec![image("base", &["a"]), list("list", &[("base", "linux/amd64")]), app];
    let index = index(&images);
    check(index.descendants(&d("base")), NAMES, &[("app", Evidence::Annotation, false, None)]);
    check(index.ancestors(&d("app")), NAMES, &[("list", Evidence::Annotation, false, None)]);
}

#[test]
fn images_holding_a_layer_include_those_with_it_anywhere() {
    let index = index(&population());
    let mut holding = index.with_layer(&d("c"));
    holding.sort();
    let mut expect = vec![d("base"), d("app"), d("app2"), d("same")];
    expect.sort();
    assert_eq!(holding, expect);
    assert!(index.with_layer(&d("nowhere")).is_empty());
}

#[test]
fn chains_are_oci_chain_ids_over_the_layer_digests() {
    let index = index(&population());
    let chains = index.chains(&d("base")).unwrap();
    assert_eq!(chains[0], d("a").to_string());
    let second = Digest::sha256_of(format!("{} {}", d("a"), d("b")).as_bytes());
    assert_eq!(chains[1], second.to_string());
    assert_eq!(chains.len(), 3);
    assert_eq!(chains, chain_ids(&[d("a"), d("b"), d("c")]));
    let chain = index.find_chain(&d("c"), &chains[2]).expect("the base's last chain is held");
    assert_eq!(index.chain_refs(&d("app"))[1], chain, "the app holds the base's last chain, one below its own");
    let mut with_chain = index.images_with_chain(chain);
    with_chain.sort();
    let mut expect = vec![d("base"), d("same"), d("app"), d("app2")];
    expect.sort();
    assert_eq!(with_chain, expect);
    assert_eq!(index.find_chain(&d("c"), "sha256:0000"), None);
}

#[test]
fn removal_forgets_the_image_and_chains_nobody_holds() {
    let mut index = index(&population());
    let chains_before = index.chain_count();
    assert!(index.remove(&d("app2")));
    assert!(!index.remove(&d("app2")));
    assert_eq!(index.chain_count(), chains_before - 1);
    assert!(index.with_layer(&d("e")).is_empty());
    check(index.descendants(&d("app")), NAMES, &[]);
    // Inserted again, it is found again.
    assert!(index.insert(&image("app2", &["a", "b", "c", "d", "e"])));
    check(index.descendants(&d("app")), NAMES, &[("app2", Evidence::Layers, false, None)]);
    assert!(!index.insert(&image("app2", &["a", "b", "c", "d", "e"])), "indexing an image twice changes nothing");
    assert_eq!(index.len(), 6);
}

#[test]
fn digests_of_other_algorithms_are_indexed_and_given_back() {
    let sha512: Digest = format!("sha512:{}", "ab".repeat(64)).parse().unwrap();
    let mut facts = image("app", &["a"]);
    facts.layers.push(sha512.clone());
    let mut index = index(&[image("base", &["a"]), facts]);
    assert_eq!(index.with_layer(&sha512), vec![d("app")]);
    assert_eq!(index.chains(&d("app")).unwrap()[0], d("a").to_string());
    assert!(index.remove(&d("app")));
    assert!(index.with_layer(&sha512).is_empty());
    assert!(index.other_digests.is_empty(), "a digest nobody names is forgotten");
}

#[test]
fn the_scan_agrees_on_the_known_shapes() {
    let images = population();
    let index = index(&images);
    for image in &images {
        for descendants in [true, false] {
            let mut expect = scan::related(&images, &image.digest, descendants).unwrap();
            let mut got = if descendants { index.descendants(&image.digest) } else { index.ancestors(&image.digest) }.unwrap();
            expect.sort_by(|a, b| a.image.cmp(&b.image));
            got.sort_by(|a, b| a.image.cmp(&b.image));
            assert_eq!(got, expect);
        }
    }
}
