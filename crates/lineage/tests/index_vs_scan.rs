//! The index against a brute-force scan over random populations, with insertions and
//! removals interleaved: the answers must be identical after every step.

use berth_lineage::{ImageFacts, Index, Related, scan};
use berth_model::Digest;
use proptest::prelude::*;

fn d(name: &str) -> Digest {
    Digest::sha256_of(name.as_bytes())
}

/// One candidate image, before names are given: a list of candidate indexes, or layers
/// that extend another candidate's layers (so that prefixes are shared), and maybe a base
/// annotation naming a candidate.
#[derive(Clone, Debug)]
enum Shape {
    Image { extend: Option<usize>, extra: Vec<u8> },
    List { children: Vec<(usize, u8)> },
}

fn shapes() -> impl Strategy<Value = Vec<(Shape, Option<usize>)>> {
    let shape = prop_oneof![
        4 => (proptest::option::of(0usize..12), proptest::collection::vec(0u8..5, 0..3))
            .prop_map(|(extend, extra)| Shape::Image { extend, extra }),
        1 => proptest::collection::vec((0usize..12, 0u8..3), 1..3).prop_map(|children| Shape::List { children }),
    ];
    proptest::collection::vec((shape, proptest::option::weighted(0.2, 0usize..12)), 12)
}

fn build(shapes: &[(Shape, Option<usize>)]) -> Vec<ImageFacts> {
    let mut facts: Vec<ImageFacts> = Vec::new();
    for (i, (shape, base)) in shapes.iter().enumerate() {
        let mut image = ImageFacts::new(d(&format!("image{i}")));
        match shape {
            Shape::Image { extend, extra } => {
                // Only earlier candidates can be extended, so layers stay finite.
                if let Some(parent) = extend.filter(|&p| p < i) {
                    image.layers = facts[parent].layers.clone();
                }
                image.layers.extend(extra.iter().map(|l| d(&format!("layer{l}"))));
            }
            Shape::List { children } => {
                image.manifests = children
                    .iter()
                    .filter(|(child, _)| *child != i)
                    .map(|(child, platform)| (d(&format!("image{child}")), format!("linux/arch{platform}")))
                    .collect();
            }
        }
        image.base = base.filter(|&b| b != i).map(|b| d(&format!("image{b}")));
        facts.push(image);
    }
    facts
}

fn sorted(mut related: Vec<Related>) -> Vec<Related> {
    related.sort_by(|a, b| (&a.platform, &a.image).cmp(&(&b.platform, &b.image)));
    related
}

proptest! {
    #[test]
    fn the_index_answers_as_the_scan_does(shapes in shapes(), steps in proptest::collection::vec((any::<bool>(), 0usize..12), 1..40)) {
        let candidates = build(&shapes);
        let mut index = Index::new();
        let mut present: Vec<bool> = vec![false; candidates.len()];
        for (insert, which) in steps {
            if insert {
                prop_assert_eq!(index.insert(&candidates[which]), !present[which]);
                present[which] = true;
            } else {
                prop_assert_eq!(index.remove(&candidates[which].digest), present[which]);
                present[which] = false;
            }
            let population: Vec<ImageFacts> =
                candidates.iter().zip(&present).filter(|(_, p)| **p).map(|(c, _)| c.clone()).collect();
            prop_assert_eq!(index.len(), population.len());
            for candidate in &candidates {
                for descendants in [true, false] {
                    let got = if descendants { index.descendants(&candidate.digest) } else { index.ancestors(&candidate.digest) };
                    let expect = scan::related(&population, &candidate.digest, descendants);
                    prop_assert_eq!(got.map(sorted), expect.map(sorted), "descendants: {}, of {}", descendants, candidate.digest);
                }
            }
            for layer in 0..5 {
                let layer = d(&format!("layer{layer}"));
                let mut got = index.with_layer(&layer);
                got.sort();
                let mut expect: Vec<Digest> =
                    population.iter().filter(|image| image.layers.contains(&layer)).map(|image| image.digest.clone()).collect();
                expect.sort();
                prop_assert_eq!(got, expect);
            }
        }
    }
}
