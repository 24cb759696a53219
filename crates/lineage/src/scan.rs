//! The same questions answered by scanning every image, by the definitions the index
//! documents and nothing else: the property tests hold the index to these answers.

use berth_model::Digest;

use crate::{Evidence, ImageFacts, Related};

/// Ancestors or descendants of `digest` with their evidence, by the definitions the index
/// documents, computed from nothing but the list of images (quadratic; for tests).
pub fn related(images: &[ImageFacts], digest: &Digest, descendants: bool) -> Option<Vec<Related>> {
    let asked = images.iter().find(|image| image.digest == *digest)?;
    let find = |d: &Digest| images.iter().find(|image| image.digest == *d);
    let starts: Vec<(&ImageFacts, Option<String>)> = if asked.manifests.is_empty() {
        vec![(asked, None)]
    } else {
        asked.manifests.iter().filter_map(|(child, platform)| find(child).map(|c| (c, Some(platform.clone())))).collect()
    };
    // A layer relation: `low` is built on by `high`.
    let layer_edge =
        |low: &ImageFacts, high: &ImageFacts| low.digest != high.digest && !low.layers.is_empty() && high.layers.starts_with(&low.layers);
    let lists_containing = |d: &Digest| -> Vec<&Digest> {
        images.iter().filter(|list| list.manifests.iter().any(|(child, _)| child == d)).map(|list| &list.digest).collect()
    };
    // An annotation relation: `high` names `low` (or a list holding `low`) as its base.
    let annotation_edge = |low: &ImageFacts, high: &ImageFacts| {
        high.base.as_ref().is_some_and(|base| *base == low.digest || lists_containing(&low.digest).contains(&base))
    };
    let mut answer = Vec::new();
    for (start, platform) in starts {
        let edge_layers = |a: &ImageFacts, b: &ImageFacts| if descendants { layer_edge(a, b) } else { layer_edge(b, a) };
        let edge_annotation =
            |a: &ImageFacts, b: &ImageFacts| if descendants { annotation_edge(a, b) } else { a.base.as_ref() == Some(&b.digest) };
        let by_layers: Vec<&ImageFacts> = images.iter().filter(|other| edge_layers(start, other)).collect();
        // Images reached by a path with at least one annotation step.
        let mut sources: Vec<&ImageFacts> = vec![start, asked];
        sources.extend(by_layers.iter().copied());
        let mut by_annotation: Vec<&ImageFacts> = Vec::new();
        let mut frontier: Vec<&ImageFacts> = Vec::new();
        for source in &sources {
            for other in images {
                if edge_annotation(source, other) && !frontier.iter().any(|f| f.digest == other.digest) {
                    frontier.push(other);
                }
            }
        }
        while let Some(next) = frontier.pop() {
            if by_annotation.iter().any(|seen| seen.digest == next.digest) {
                continue;
            }
            by_annotation.push(next);
            for other in images {
                if edge_layers(next, other) || edge_annotation(next, other) {
                    frontier.push(other);
                }
            }
        }
        let mut related: Vec<Related> = Vec::new();
        for other in images {
            if other.digest == start.digest || other.digest == asked.digest {
                continue;
            }
            let layers = by_layers.iter().any(|b| b.digest == other.digest);
            let annotation = by_annotation.iter().any(|b| b.digest == other.digest);
            let evidence = match (layers, annotation) {
                (true, true) => Evidence::Both,
                (true, false) => Evidence::Layers,
                (false, true) => Evidence::Annotation,
                (false, false) => continue,
            };
            related.push(Related {
                image: other.digest.clone(),
                evidence,
                same_layers: layers && other.layers == start.layers,
                platform: platform.clone(),
            });
        }
        answer.extend(related);
    }
    Some(answer)
}
