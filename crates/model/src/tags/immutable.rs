//! Immutable tags (Harbor's and Quay's; the immutable-image-identifier seed's "a tag that
//! is meant to never change"): an image stream or a namespace names tag patterns in the
//! annotation `berth.dev/immutable-tags` (globs with `*` and `?`, comma-separated), and a
//! tag that matches one, once it points at an image, keeps pointing at that image.
//!
//! The rule is a comparison of two versions of a stream ([`pinned_changes`]): whatever
//! made the new version (a push, a tag, a mapping, an import, a tag following another),
//! a pinned tag whose newest history entry names another image, or that is gone, is a
//! change the write may not make. Writing the same image again is no change, and a tag
//! with no image yet is not pinned. Imports do not refuse the whole write: the tag that
//! would move records the failure instead ([`apply_unless_pinned`]).

use std::collections::BTreeMap;

use crate::core::Namespace;
use crate::imagestream::ImageStream;
use crate::{FieldError, Time};

/// The annotation, on an ImageStream or a Namespace, that lists immutable tag patterns.
pub const IMMUTABLE_TAGS_ANNOTATION: &str = "berth.dev/immutable-tags";
/// The reason of the `ImportSuccess=False` condition of a pinned tag an import would move.
pub const IMMUTABLE_TAG_REASON: &str = "ImmutableTag";

/// Where a pattern is declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Declared {
    /// On the image stream `namespace/name`: its editors' own rule.
    Stream { namespace: String, name: String },
    /// On the namespace: a cluster admin's pin (only cluster admins change namespaces).
    Namespace(String),
}

/// One immutable tag pattern and where it is declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub pattern: String,
    pub declared: Declared,
}

impl Rule {
    /// Says which annotation holds the pattern, for messages.
    pub fn describe(&self) -> String {
        match &self.declared {
            Declared::Stream { namespace, name } => {
                format!("pattern {:?} in the annotation {IMMUTABLE_TAGS_ANNOTATION} of image stream {namespace}/{name}", self.pattern)
            }
            Declared::Namespace(namespace) => format!(
                "pattern {:?} in the annotation {IMMUTABLE_TAGS_ANNOTATION} of namespace {namespace}, set by a cluster admin",
                self.pattern
            ),
        }
    }
}

/// The immutable tag patterns that apply to one stream: its namespace's, then the
/// stream's (of each version a write compares, so that a write cannot drop a pattern and
/// move the tag it pinned at once).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImmutableTags {
    rules: Vec<Rule>,
}

impl ImmutableTags {
    /// The rules of `namespace` and of the given versions of one stream.
    pub fn of(namespace: Option<&Namespace>, streams: &[&ImageStream]) -> ImmutableTags {
        let mut rules: Vec<Rule> = Vec::new();
        if let Some(namespace) = namespace {
            for pattern in patterns_of(&namespace.metadata.annotations) {
                rules.push(Rule { pattern: pattern.to_string(), declared: Declared::Namespace(namespace.metadata.name.clone()) });
            }
        }
        for stream in streams {
            for pattern in patterns_of(&stream.metadata.annotations) {
                let declared = Declared::Stream { namespace: stream.metadata.namespace.clone(), name: stream.metadata.name.clone() };
                let rule = Rule { pattern: pattern.to_string(), declared };
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
        ImmutableTags { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule that pins `tag` (the namespace's before the stream's), if any.
    pub fn rule_for(&self, tag: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| glob_matches(&rule.pattern, tag))
    }
}

/// The patterns an annotation value lists: comma-separated, blanks ignored.
pub fn patterns(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|p| !p.is_empty())
}

fn patterns_of(annotations: &BTreeMap<String, String>) -> impl Iterator<Item = &str> {
    annotations.get(IMMUTABLE_TAGS_ANNOTATION).map(String::as_str).into_iter().flat_map(patterns)
}

/// Checks the immutable tags annotation among `annotations` (of an object whose
/// annotations are at `metadata.annotations`): each pattern is made of the characters of
/// a tag, `*` and `?`.
pub fn check_annotation(annotations: &BTreeMap<String, String>) -> Option<FieldError> {
    let value = annotations.get(IMMUTABLE_TAGS_ANNOTATION)?;
    let field = format!("metadata.annotations[{IMMUTABLE_TAGS_ANNOTATION}]");
    for pattern in patterns(value) {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*' | '?');
        if pattern.len() > 128 || !pattern.chars().all(allowed) {
            return Some(FieldError::new(
                field,
                format!(
                    "{pattern:?} is not a tag pattern: use tag characters (letters, digits, '_', '.', '-') with '*' for any run of them and '?' for one, e.g. \"v*.*.*, release-*\""
                ),
            ));
        }
    }
    None
}

/// Whether `tag` matches the glob `pattern`: `*` is any run of characters (also none),
/// `?` exactly one, anything else itself.
pub fn glob_matches(pattern: &str, tag: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(tag)
}

/// What a write would do to a pinned tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Point it at another image (a digest), or at a pull spec with no image.
    MovedTo(String),
    /// Remove it.
    Removed,
}

/// A pinned tag a write would move or remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedTag {
    pub namespace: String,
    pub stream: String,
    pub tag: String,
    /// The image the tag is pinned to.
    pub image: String,
    pub change: Change,
    pub rule: Rule,
}

impl PinnedTag {
    pub fn is_removal(&self) -> bool {
        self.change == Change::Removed
    }

    /// What was refused, the rule that refused it, and what to do instead.
    pub fn message(&self) -> String {
        let what =
            format!("tag {:?} of image stream {}/{} is immutable and points at {}", self.tag, self.namespace, self.stream, self.image);
        match &self.change {
            Change::MovedTo(to) => {
                format!("{what}: it may not move to {to} ({}). Push or tag the new image under a new tag instead", self.rule.describe())
            }
            Change::Removed => {
                format!("{what}: it may not be deleted ({}); only a cluster admin may delete it", self.rule.describe())
            }
        }
    }
}

/// The pinned tags of `old` that `new` (`None`: the stream deleted) moves to another
/// image or removes, in tag order. A tag is pinned when a rule matches it and its newest
/// history entry names an image.
pub fn pinned_changes(old: &ImageStream, new: Option<&ImageStream>, rules: &ImmutableTags) -> Vec<PinnedTag> {
    if rules.is_empty() {
        return Vec::new();
    }
    let mut changes = Vec::new();
    for list in &old.status.tags {
        let Some(head) = list.items.first().filter(|event| !event.image.is_empty()) else {
            continue;
        };
        let Some(rule) = rules.rule_for(&list.tag) else {
            continue;
        };
        let change = match new.and_then(|new| new.latest_event(&list.tag)) {
            None => Change::Removed,
            Some(next) if next.image == head.image => continue,
            Some(next) if next.image.is_empty() => Change::MovedTo(next.docker_image_reference.clone()),
            Some(next) => Change::MovedTo(next.image.clone()),
        };
        changes.push(PinnedTag {
            namespace: old.metadata.namespace.clone(),
            stream: old.metadata.name.clone(),
            tag: list.tag.clone(),
            image: head.image.clone(),
            change,
            rule: rule.clone(),
        });
    }
    changes
}

/// Applies `change`, a change that sets `tag` (an import's result, a tag following
/// another stream's), unless it would move or remove a pinned tag (`tag` itself or a tag
/// that follows it): then the stream keeps its history, `tag` records the import failure
/// [`IMMUTABLE_TAG_REASON`] at `generation`, and the refused change is returned.
pub fn apply_unless_pinned<T>(
    stream: &mut ImageStream,
    tag: &str,
    generation: i64,
    rules: &ImmutableTags,
    now: Time,
    change: impl FnOnce(&mut ImageStream) -> T,
) -> Result<T, Box<PinnedTag>> {
    if rules.is_empty() {
        return Ok(change(stream));
    }
    let mut changed = stream.clone();
    let result = change(&mut changed);
    match pinned_changes(stream, Some(&changed), rules).into_iter().next() {
        None => {
            *stream = changed;
            Ok(result)
        }
        Some(pinned) => {
            super::record_import_failure(stream, tag, generation, IMMUTABLE_TAG_REASON, &pinned.message(), now);
            Err(Box::new(pinned))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imagestream::{NamedTagEventList, TagEvent};
    use crate::tags::{KIND_IMAGE_STREAM_TAG, record_import, update_tracking_tags};
    use crate::{ObjectMeta, imagestream::TagReference, meta::ObjectReference};

    fn at(second: u32) -> Time {
        Time::from_datetime(chrono::DateTime::from_timestamp(1_800_000_000 + i64::from(second), 0).unwrap())
    }

    fn annotated(value: Option<&str>) -> BTreeMap<String, String> {
        value.map(|v| BTreeMap::from([(IMMUTABLE_TAGS_ANNOTATION.to_string(), v.to_string())])).unwrap_or_default()
    }

    fn event(image: &str) -> TagEvent {
        TagEvent {
            created: at(0),
            docker_image_reference: format!("registry.local/team/app@{image}"),
            image: image.to_string(),
            generation: 1,
            cause: String::new(),
        }
    }

    /// A stream `team/app` with `tags` pointing at images (`""`: a tag with no image yet).
    fn stream(annotation: Option<&str>, tags: &[(&str, &str)]) -> ImageStream {
        let mut stream = ImageStream {
            metadata: ObjectMeta {
                name: "app".into(),
                namespace: "team".into(),
                annotations: annotated(annotation),
                ..ObjectMeta::default()
            },
            ..ImageStream::default()
        };
        for (tag, image) in tags {
            let items = if image.is_empty() { Vec::new() } else { vec![event(image)] };
            stream.status.tags.push(NamedTagEventList { tag: tag.to_string(), items, conditions: Vec::new() });
        }
        // Status tags are kept in name order.
        stream.status.tags.sort_by(|a, b| a.tag.cmp(&b.tag));
        stream
    }

    fn namespace(annotation: Option<&str>) -> Namespace {
        Namespace {
            metadata: ObjectMeta { name: "team".into(), annotations: annotated(annotation), ..ObjectMeta::default() },
            ..Namespace::default()
        }
    }

    #[test]
    fn globs_match_whole_tags() {
        let table = [
            ("v*.*.*", "v1.2.3", true),
            ("v*.*.*", "v10.20.30-rc1", true),
            ("v*.*.*", "v1.2", false),
            ("v*.*.*", "1.2.3", false),
            ("release-?", "release-1", true),
            ("release-?", "release-12", false),
            ("*", "anything", true),
            ("latest", "latest", true),
            ("latest", "latest2", false),
            ("*-stable", "1.0-stable", true),
            ("*-stable", "1.0-stable-2", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYc2", false),
            ("", "", true),
            ("**", "", true),
        ];
        for (pattern, tag, expected) in table {
            assert_eq!(glob_matches(pattern, tag), expected, "{pattern} ~ {tag}");
        }
    }

    #[test]
    fn patterns_are_comma_separated_and_checked() {
        assert_eq!(patterns(" v*.*.* ,release-*,, ").collect::<Vec<_>>(), ["v*.*.*", "release-*"]);
        assert!(check_annotation(&annotated(Some("v*.*.*, release-?"))).is_none());
        assert!(check_annotation(&annotated(None)).is_none());
        let error = check_annotation(&annotated(Some("v*, a/b"))).unwrap();
        assert_eq!(error.field, format!("metadata.annotations[{IMMUTABLE_TAGS_ANNOTATION}]"));
        assert!(error.message.contains("\"a/b\""), "{}", error.message);
        assert!(check_annotation(&annotated(Some("[abc]"))).is_some());
    }

    #[test]
    fn namespace_rules_come_first_and_the_stream_versions_join() {
        let old = stream(Some("v*"), &[]);
        let new = stream(Some("release-*, v*"), &[]);
        let rules = ImmutableTags::of(Some(&namespace(Some("v1.*"))), &[&old, &new]);
        let rule = rules.rule_for("v1.0").unwrap();
        assert_eq!(rule.declared, Declared::Namespace("team".into()));
        assert!(rule.describe().contains("namespace team, set by a cluster admin"), "{}", rule.describe());
        let rule = rules.rule_for("v2.0").unwrap();
        assert_eq!(rule.declared, Declared::Stream { namespace: "team".into(), name: "app".into() });
        assert!(rules.rule_for("release-1").is_some(), "the new version's patterns count");
        assert!(rules.rule_for("latest").is_none());
        assert!(ImmutableTags::of(None, &[&stream(None, &[])]).is_empty());
    }

    #[test]
    fn pinned_tags_may_not_move_or_go_and_others_may() {
        let a = "sha256:aaa";
        let b = "sha256:bbb";
        let old = stream(Some("v*"), &[("v1", a), ("v2", ""), ("latest", a)]);
        let rules = ImmutableTags::of(None, &[&old]);
        // (what the write does, the refused changes)
        let cases: Vec<(ImageStream, Vec<(&str, Change)>)> = vec![
            (stream(Some("v*"), &[("v1", a), ("v2", ""), ("latest", a)]), vec![]),
            // The same image again, a tag with no image set once, another tag moved.
            (stream(Some("v*"), &[("v1", a), ("v2", b), ("latest", b)]), vec![]),
            (stream(Some("v*"), &[("v1", b), ("v2", ""), ("latest", a)]), vec![("v1", Change::MovedTo(b.into()))]),
            (stream(Some("v*"), &[("v2", ""), ("latest", a)]), vec![("v1", Change::Removed)]),
        ];
        for (new, expected) in cases {
            let found: Vec<(String, Change)> = pinned_changes(&old, Some(&new), &rules).into_iter().map(|p| (p.tag, p.change)).collect();
            let expected: Vec<(String, Change)> = expected.into_iter().map(|(t, c)| (t.to_string(), c)).collect();
            assert_eq!(found, expected);
        }
        // A reference with no image is a move too; deleting the stream removes the tag.
        let mut reference = old.clone();
        let v1 = reference.status.tags.iter_mut().find(|t| t.tag == "v1").unwrap();
        v1.items.insert(0, TagEvent { image: String::new(), docker_image_reference: "quay.io/x/app:1".into(), ..event("") });
        let refused = pinned_changes(&old, Some(&reference), &rules);
        assert_eq!(refused[0].change, Change::MovedTo("quay.io/x/app:1".into()));
        assert_eq!(pinned_changes(&old, None, &rules).len(), 1);
        assert!(pinned_changes(&old, None, &ImmutableTags::default()).is_empty(), "no rule, nothing pinned");
    }

    #[test]
    fn the_message_names_the_tag_its_image_the_rule_and_what_to_do() {
        let old = stream(None, &[("v1.0.0", "sha256:aaa")]);
        let new = stream(None, &[("v1.0.0", "sha256:bbb")]);
        let rules = ImmutableTags::of(Some(&namespace(Some("v*.*.*"))), &[&old]);
        let moved = pinned_changes(&old, Some(&new), &rules).remove(0).message();
        for words in [
            "tag \"v1.0.0\" of image stream team/app is immutable and points at sha256:aaa",
            "may not move to sha256:bbb",
            "pattern \"v*.*.*\" in the annotation berth.dev/immutable-tags of namespace team",
            "under a new tag",
        ] {
            assert!(moved.contains(words), "{words:?} in {moved}");
        }
        let removed = pinned_changes(&old, None, &rules).remove(0).message();
        assert!(removed.contains("may not be deleted") && removed.contains("only a cluster admin"), "{removed}");
    }

    #[test]
    fn an_import_that_would_move_a_pinned_tag_records_why_and_keeps_history() {
        let mut s = stream(Some("v*"), &[("v1", "sha256:aaa"), ("latest", "sha256:aaa")]);
        s.spec.tags.push(TagReference {
            name: "v1".into(),
            from: Some(ObjectReference { kind: KIND_IMAGE_STREAM_TAG.into(), name: "latest".into(), ..Default::default() }),
            generation: Some(1),
            ..TagReference::default()
        });
        let rules = ImmutableTags::of(None, &[&s]);
        let before = s.clone();
        // v1 follows latest: importing a new latest would move v1.
        let refused = apply_unless_pinned(&mut s, "latest", 2, &rules, at(5), |s| record_import(s, "latest", event("sha256:bbb"), at(5)));
        let refused = refused.unwrap_err();
        assert_eq!(refused.tag, "v1");
        assert_eq!(
            s.status.tags.iter().map(|t| &t.items).collect::<Vec<_>>(),
            before.status.tags.iter().map(|t| &t.items).collect::<Vec<_>>()
        );
        let condition = &s.status_tag("latest").unwrap().conditions[0];
        assert_eq!((condition.reason.as_str(), condition.status.as_str(), condition.generation), (IMMUTABLE_TAG_REASON, "False", 2));
        assert!(condition.message.contains("\"v1\""), "{}", condition.message);
        // The same image again is no move; without the follower the tag moves.
        assert!(apply_unless_pinned(&mut s, "v1", 2, &rules, at(6), |s| record_import(s, "v1", event("sha256:aaa"), at(6))).is_ok());
        s.spec.tags.clear();
        let moved = apply_unless_pinned(&mut s, "latest", 2, &rules, at(7), |s| {
            let moved = record_import(s, "latest", event("sha256:bbb"), at(7));
            update_tracking_tags(s, "latest", &event("sha256:bbb"), at(7));
            moved
        });
        assert_eq!(moved, Ok(true));
        assert_eq!(s.latest_event("latest").unwrap().image, "sha256:bbb");
        assert!(s.status_tag("latest").unwrap().conditions.is_empty());
    }
}
