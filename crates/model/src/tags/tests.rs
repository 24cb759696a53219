use super::*;
use crate::imagestream::{ImageStream, TagReference};
use crate::meta::ObjectReference;
use crate::{Digest, ObjectMeta};

fn at(second: u32) -> Time {
    Time::from_datetime(chrono::DateTime::from_timestamp(1_800_000_000 + i64::from(second), 0).unwrap())
}

fn stream(tags: Vec<TagReference>) -> ImageStream {
    ImageStream {
        metadata: ObjectMeta { name: "app".into(), namespace: "team".into(), ..ObjectMeta::default() },
        spec: crate::imagestream::ImageStreamSpec { tags, ..Default::default() },
        ..ImageStream::default()
    }
}

fn from(kind: &str, name: &str) -> TagReference {
    TagReference { from: Some(ObjectReference { kind: kind.into(), name: name.into(), ..Default::default() }), ..TagReference::default() }
}

fn tag(name: &str, kind: &str, source: &str) -> TagReference {
    TagReference { name: name.into(), ..from(kind, source) }
}

fn image(seed: &str) -> Image {
    let digest = Digest::sha256_of(seed.as_bytes());
    Image {
        metadata: ObjectMeta { name: digest.to_string(), ..ObjectMeta::default() },
        docker_image_reference: format!("registry.local/team/app@{digest}"),
        ..Image::default()
    }
}

fn history(stream: &ImageStream, tag: &str) -> Vec<(String, i64)> {
    stream.status_tag(tag).map(|t| t.items.iter().map(|e| (e.image.clone(), e.generation)).collect()).unwrap_or_default()
}

fn created(tags: Vec<TagReference>) -> ImageStream {
    let mut s = stream(tags);
    prepare_create(&mut s, &SourceStreams::new(), at(0)).unwrap();
    s
}

#[test]
fn create_stamps_generation_one_and_waits_for_import() {
    let s = created(vec![tag("5.6", KIND_DOCKER_IMAGE, "mysql:5.6")]);
    assert_eq!(s.metadata.generation, Some(1));
    assert_eq!(s.spec.tags[0].generation, Some(1));
    assert!(s.latest_event("5.6").is_none());
    let pending = pending_imports(&s);
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].tag.as_str(), pending[0].reference.to_string(), pending[0].generation), ("5.6", "mysql:5.6".to_string(), 1));
}

#[test]
fn imports_settle_pending_tags_and_failures_keep_history() {
    let mut s = created(vec![tag("5.6", KIND_DOCKER_IMAGE, "mysql:5.6"), tag("current", KIND_IMAGE_STREAM_TAG, "5.6")]);
    let pending = pending_imports(&s).remove(0);
    assert!(still_pending(&s, &pending));
    let first = TagEvent {
        created: at(1),
        docker_image_reference: "docker.io/library/mysql@sha256:a".into(),
        image: "sha256:a".into(),
        generation: 1,
        cause: String::new(),
    };
    assert!(record_import(&mut s, "5.6", first, at(1)));
    assert!(pending_imports(&s).is_empty());
    assert_eq!(history(&s, "current"), [("sha256:a".to_string(), 1)]);

    // A re-import request (generation 0) makes the tag pending again; a failure then
    // keeps history and settles the tag until the next request.
    let old = s.clone();
    s.spec.tags.iter_mut().find(|t| t.name == "5.6").unwrap().generation = Some(0);
    prepare_update(&old, &mut s, &SourceStreams::new(), at(2)).unwrap();
    let pending = pending_imports(&s).remove(0);
    assert_eq!(pending.generation, 2);
    record_import_failure(&mut s, "5.6", pending.generation, "NotFound", "gone", at(2));
    assert!(pending_imports(&s).is_empty());
    assert_eq!(history(&s, "5.6"), [("sha256:a".to_string(), 1)]);
    let condition = &s.status_tag("5.6").unwrap().conditions[0];
    assert_eq!((condition.status.as_str(), condition.reason.as_str(), condition.generation), ("False", "NotFound", 2));

    // Changing the source drops an import that was about the old one.
    let old = s.clone();
    s.spec.tags.iter_mut().find(|t| t.name == "5.6").unwrap().from.as_mut().unwrap().name = "mysql:5.7".into();
    prepare_update(&old, &mut s, &SourceStreams::new(), at(3)).unwrap();
    assert!(!still_pending(&s, &pending));
}

#[test]
fn reference_tags_keep_the_pull_spec_without_import() {
    let s = created(vec![TagReference { reference: true, ..tag("ext", KIND_DOCKER_IMAGE, "quay.io/org/x:1") }]);
    let event = s.latest_event("ext").unwrap();
    assert_eq!(event.docker_image_reference, "quay.io/org/x:1");
    assert_eq!(event.image, "");
    assert!(s.status_tag("ext").unwrap().conditions.is_empty());
}

#[test]
fn history_prepends_only_when_image_and_pull_spec_both_change() {
    let mut s = created(vec![]);
    let (one, two) = (image("one"), image("two"));
    assert!(map_image(&mut s, "latest", &one, at(1)));
    assert!(!map_image(&mut s, "latest", &one, at(2)), "the same image again changes nothing");
    assert!(map_image(&mut s, "latest", &two, at(3)));
    assert_eq!(history(&s, "latest"), vec![(two.metadata.name.clone(), 1), (one.metadata.name.clone(), 1)]);

    // Same pull spec, different image: the head is updated in place.
    let mut same_ref = image("three");
    same_ref.docker_image_reference = two.docker_image_reference.clone();
    assert!(map_image(&mut s, "latest", &same_ref, at(4)));
    assert_eq!(history(&s, "latest").len(), 2);
    assert_eq!(s.latest_event("latest").unwrap().image, same_ref.metadata.name);
    assert_eq!(s.latest_event("latest").unwrap().created, at(3));
}

#[test]
fn spec_changes_move_the_generation_and_label_changes_do_not() {
    let old = created(vec![tag("a", KIND_DOCKER_IMAGE, "x:1")]);
    let mut relabelled = old.clone();
    relabelled.metadata.labels.insert("team".into(), "web".into());
    prepare_update(&old, &mut relabelled, &SourceStreams::new(), at(1)).unwrap();
    assert_eq!(relabelled.metadata.generation, Some(1));

    let mut retargeted = old.clone();
    retargeted.spec.tags[0].from.as_mut().unwrap().name = "x:2".into();
    prepare_update(&old, &mut retargeted, &SourceStreams::new(), at(1)).unwrap();
    assert_eq!(retargeted.metadata.generation, Some(2));
    assert_eq!(retargeted.spec.tags[0].generation, Some(2));
}

#[test]
fn users_cannot_set_tag_generations_except_to_zero() {
    let old = created(vec![tag("a", KIND_DOCKER_IMAGE, "x:1"), tag("b", KIND_DOCKER_IMAGE, "y:1")]);
    let mut forged = old.clone();
    forged.spec.tags[0].generation = Some(42);
    prepare_update(&old, &mut forged, &SourceStreams::new(), at(1)).unwrap();
    assert_eq!(forged.spec.tags[0].generation, Some(1));
    assert_eq!(forged.metadata.generation, Some(1));

    let mut reimport = old.clone();
    reimport.spec.tags[1].generation = Some(0);
    prepare_update(&old, &mut reimport, &SourceStreams::new(), at(1)).unwrap();
    assert_eq!(reimport.metadata.generation, Some(2));
    assert_eq!(reimport.spec.tags[1].generation, Some(2), "0 asks for a re-import at the new generation");
    assert_eq!(reimport.spec.tags[0].generation, Some(1), "other tags keep theirs");
    let pending: Vec<(String, i64)> = pending_imports(&reimport).into_iter().map(|p| (p.tag, p.generation)).collect();
    assert_eq!(pending, [("a".to_string(), 1), ("b".to_string(), 2)]);
}

#[test]
fn a_tag_from_a_tag_of_the_same_stream_follows_it() {
    let mut s = created(vec![tag("stable", KIND_IMAGE_STREAM_TAG, "app:latest")]);
    assert!(s.latest_event("stable").is_none(), "the source has no image yet");
    let (one, two) = (image("one"), image("two"));
    map_image(&mut s, "latest", &one, at(1));
    assert_eq!(s.latest_event("stable").unwrap().image, one.metadata.name);
    map_image(&mut s, "latest", &two, at(2));
    assert_eq!(
        history(&s, "stable").iter().map(|(i, _)| i.clone()).collect::<Vec<_>>(),
        vec![two.metadata.name.clone(), one.metadata.name.clone()]
    );
}

#[test]
fn tracking_follows_chains_and_stops_at_cycles() {
    let mut s = created(vec![
        tag("b", KIND_IMAGE_STREAM_TAG, "a"),
        tag("c", KIND_IMAGE_STREAM_TAG, "app:b"),
        tag("d", KIND_IMAGE_STREAM_TAG, "app:e"),
        tag("e", KIND_IMAGE_STREAM_TAG, "app:d"),
    ]);
    let one = image("one");
    map_image(&mut s, "a", &one, at(1));
    assert_eq!(s.latest_event("c").unwrap().image, one.metadata.name);
    map_image(&mut s, "d", &one, at(2));
    assert_eq!(s.latest_event("e").unwrap().image, one.metadata.name);
    assert_eq!(history(&s, "d").len(), 1);
}

#[test]
fn tagging_from_an_existing_tag_resolves_at_once() {
    let mut old = created(vec![]);
    let one = image("one");
    map_image(&mut old, "latest", &one, at(1));
    let mut new = old.clone();
    set_spec_tag(&mut new, tag("prod", KIND_IMAGE_STREAM_TAG, "app:latest"));
    prepare_update(&old, &mut new, &SourceStreams::new(), at(5)).unwrap();
    let event = new.latest_event("prod").unwrap();
    assert_eq!((event.image.as_str(), event.generation, event.created), (one.metadata.name.as_str(), 2, at(5)));
}

#[test]
fn pins_resolve_from_history_and_unknown_pins_are_invalid() {
    let mut old = created(vec![]);
    let (one, two) = (image("one"), image("two"));
    map_image(&mut old, "latest", &one, at(1));
    map_image(&mut old, "latest", &two, at(2));
    let mut pinned = old.clone();
    set_spec_tag(&mut pinned, tag("pinned", KIND_IMAGE_STREAM_IMAGE, &format!("app@{}", one.metadata.name)));
    prepare_update(&old, &mut pinned, &SourceStreams::new(), at(3)).unwrap();
    assert_eq!(pinned.latest_event("pinned").unwrap().image, one.metadata.name);

    let mut by_prefix = old.clone();
    set_spec_tag(&mut by_prefix, tag("short", KIND_IMAGE_STREAM_IMAGE, &format!("app@{}", &two.metadata.name[..20])));
    prepare_update(&old, &mut by_prefix, &SourceStreams::new(), at(3)).unwrap();
    assert_eq!(by_prefix.latest_event("short").unwrap().image, two.metadata.name);

    let mut unknown = old.clone();
    let missing = Digest::sha256_of(b"missing");
    set_spec_tag(&mut unknown, tag("bad", KIND_IMAGE_STREAM_IMAGE, &format!("app@{missing}")));
    let errors = prepare_update(&old, &mut unknown, &SourceStreams::new(), at(3)).unwrap_err();
    assert!(errors[0].message.contains("not found in image stream team/app"), "{errors:?}");
}

#[test]
fn sources_in_other_streams_come_from_the_loaded_sources() {
    let mut base = stream(vec![]);
    base.metadata.name = "base".into();
    base.metadata.namespace = "shared".into();
    let one = image("one");
    map_image(&mut base, "1.0", &one, at(1));
    let mut s = stream(vec![TagReference {
        name: "base".into(),
        from: Some(ObjectReference { kind: KIND_IMAGE_STREAM_TAG.into(), namespace: "shared".into(), name: "base:1.0".into() }),
        ..TagReference::default()
    }]);
    assert_eq!(source_streams_needed(None, &s), vec![("shared".to_string(), "base".to_string())]);
    // A source that does not exist yet is accepted: the tag waits, and says for what.
    let mut waiting = s.clone();
    prepare_create(&mut waiting, &SourceStreams::new(), at(2)).unwrap();
    assert!(waiting.latest_event("base").is_none());
    let condition = &waiting.status_tag("base").unwrap().conditions[0];
    assert_eq!((condition.reason.as_str(), condition.generation), (WAITING_REASON, 1));
    assert!(condition.message.contains("waiting for image stream tag shared/base:1.0"), "{condition:?}");
    assert_eq!(waiting_sources(&waiting), vec!["waits:shared/base:1.0".to_string()]);
    // When the source gets its image, the waiting tag is set to it and waits no more.
    let unpinned = immutable::ImmutableTags::default();
    assert!(resolve_waiting(&mut waiting, &base, &unpinned, at(3)));
    assert_eq!(waiting.latest_event("base").unwrap().image, one.metadata.name);
    assert!(waiting.status_tag("base").unwrap().conditions.is_empty());
    assert!(waiting_sources(&waiting).is_empty());
    assert!(!resolve_waiting(&mut waiting, &base, &unpinned, at(4)), "resolved once: the tag does not follow later moves");
    let sources = SourceStreams::from([(("shared".into(), "base".into()), base)]);
    prepare_create(&mut s, &sources, at(2)).unwrap();
    assert_eq!(s.latest_event("base").unwrap().image, one.metadata.name);
}

#[test]
fn validation_names_each_bad_field() {
    let mut s = stream(vec![
        tag("ok", KIND_DOCKER_IMAGE, "mysql:5.6"),
        tag("ok", KIND_DOCKER_IMAGE, "mysql:5.7"),
        tag("-bad", KIND_DOCKER_IMAGE, "mysql"),
        tag("self", KIND_IMAGE_STREAM_TAG, "app:self"),
        tag("kind", "Pod", "x"),
        tag("ref", KIND_DOCKER_IMAGE, "UPPER/case"),
    ]);
    s.spec.tags[0].reference_policy.policy_type = "Mirror".into();
    let fields: Vec<String> = validate_stream(&s).into_iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        vec![
            "spec.tags[0].referencePolicy.type",
            "spec.tags[1].name",
            "spec.tags[2].name",
            "spec.tags[3].from.name",
            "spec.tags[4].from",
            "spec.tags[5].from",
        ]
    );
}

#[test]
fn deleting_a_tag_removes_spec_and_history() {
    let mut s = created(vec![tag("a", KIND_DOCKER_IMAGE, "x:1")]);
    map_image(&mut s, "a", &image("one"), at(1));
    assert!(remove_tag(&mut s, "a"));
    assert!(s.tag_names().is_empty());
    assert_eq!(s.metadata.generation, Some(2));
    assert!(!remove_tag(&mut s, "a"));
}

#[test]
fn a_tag_waits_for_an_import_until_history_or_a_failure_reaches_its_generation() {
    let spec =
        |kind: &str, generation: i64, reference: bool| TagReference { generation: Some(generation), reference, ..tag("t", kind, "x:1") };
    let failure = |generation: i64| TagEventCondition {
        condition_type: CONDITION_IMPORT_SUCCESS.into(),
        status: "False".into(),
        reason: "NotFound".into(),
        message: "gone".into(),
        generation,
        last_transition_time: None,
    };
    let older = [failure(1)];
    let current = [failure(2)];
    let cases: Vec<(TagReference, Option<i64>, &[TagEventCondition], ImportState<'_>)> = vec![
        (spec(KIND_DOCKER_IMAGE, 2, false), None, &[], ImportState::Pending),
        (spec(KIND_DOCKER_IMAGE, 2, false), Some(1), &older, ImportState::Pending),
        (spec(KIND_DOCKER_IMAGE, 2, false), Some(2), &[], ImportState::Imported),
        (spec(KIND_DOCKER_IMAGE, 2, false), Some(1), &current, ImportState::Failed { reason: "NotFound", message: "gone" }),
        (spec(KIND_DOCKER_IMAGE, 2, true), None, &[], ImportState::NotImported),
        (spec(KIND_IMAGE_STREAM_TAG, 2, false), None, &[], ImportState::NotImported),
    ];
    for (spec, latest, conditions, expected) in cases {
        assert_eq!(import_state(Some(&spec), latest, conditions), expected, "{spec:?} {latest:?}");
    }
    assert_eq!(import_state(None, None, &[]), ImportState::NotImported);
}

#[test]
fn a_waiting_tag_that_would_move_a_pinned_tag_stays_and_says_why() {
    let mut base = stream(vec![]);
    base.metadata.name = "base".into();
    base.metadata.namespace = "shared".into();
    map_image(&mut base, "1.0", &image("new"), at(1));
    // `v1` of team/app points at an image, and is set to follow shared/base:1.0 before
    // that tag exists: it waits.
    let mut s = created(vec![]);
    map_image(&mut s, "v1", &image("old"), at(1));
    let mut follower = s.clone();
    set_spec_tag(
        &mut follower,
        TagReference {
            name: "v1".into(),
            from: Some(ObjectReference { kind: KIND_IMAGE_STREAM_TAG.into(), namespace: "shared".into(), name: "base:1.0".into() }),
            ..TagReference::default()
        },
    );
    prepare_update(&s, &mut follower, &SourceStreams::new(), at(2)).unwrap();
    assert_eq!(waiting_sources(&follower), vec!["waits:shared/base:1.0".to_string()]);
    follower.metadata.annotations.insert(immutable::IMMUTABLE_TAGS_ANNOTATION.into(), "v*".into());
    let rules = immutable::ImmutableTags::of(None, &[&follower]);
    assert!(resolve_waiting(&mut follower, &base, &rules, at(3)), "the refusal is recorded");
    assert_eq!(history(&follower, "v1"), history(&s, "v1"), "the pinned tag did not move");
    let condition = &follower.status_tag("v1").unwrap().conditions[0];
    assert_eq!((condition.reason.as_str(), condition.generation), (immutable::IMMUTABLE_TAG_REASON, 2));
    assert!(condition.message.contains(&image("old").metadata.name), "{condition:?}");
}

fn imported(s: &mut ImageStream, tag: &str, seed: &str, second: u32) -> String {
    let image = image(seed);
    let generation = s.spec_tag(tag).and_then(|t| t.generation).unwrap_or(1);
    let event = TagEvent {
        created: at(second),
        docker_image_reference: image.docker_image_reference.clone(),
        image: image.metadata.name.clone(),
        generation,
        cause: String::new(),
    };
    record_import(s, tag, event, at(second));
    image.metadata.name
}

#[test]
fn a_rollback_is_a_new_history_entry_that_pauses_imports_until_resumed() {
    use rollback::{RollbackTarget, resume, rollback};
    let mut s = created(vec![tag("1", KIND_DOCKER_IMAGE, "r.example/app:1"), tag("current", KIND_IMAGE_STREAM_TAG, "1")]);
    let first = imported(&mut s, "1", "a", 1);
    let second = imported(&mut s, "1", "b", 2);
    assert!(import_of(&s, "1").is_some());
    let done = rollback(&mut s, "1", &RollbackTarget::Previous, "rollback by token alice", at(3)).unwrap();
    assert_eq!((done.to_revision, done.revision, done.paused, done.image.as_str()), (1, 3, true, first.as_str()));
    assert_eq!(history(&s, "1").iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>(), [&first, &second, &first]);
    assert_eq!(s.latest_event("1").unwrap().cause, "rollback by token alice to revision 1");
    assert_eq!(s.latest_event("current").unwrap().image, first, "tags that track it follow");
    // Paused: no import of any kind picks it up, and the state says who paused it.
    assert!(pending_imports(&s).is_empty() && import_of(&s, "1").is_none());
    assert!(matches!(tag_import_state(&s, "1"), ImportState::Paused { why } if why.starts_with("rollback by token alice at ")));
    // Rolling forward again by revision; then resuming asks for an import.
    assert!(rollback(&mut s, "1", &RollbackTarget::Revision(2), "rollback by token bob", at(4)).is_ok());
    assert_eq!(s.latest_event("1").unwrap().image, second);
    resume(&mut s, "1").unwrap();
    assert_eq!(pending_imports(&s).len(), 1);
    assert!(resume(&mut s, "1").unwrap_err().contains("not paused"));
}

#[test]
fn rollbacks_that_cannot_be_say_why() {
    use rollback::{RollbackTarget, rollback};
    let mut s = created(vec![tag("1", KIND_DOCKER_IMAGE, "r.example/app:1")]);
    assert!(rollback(&mut s, "1", &RollbackTarget::Previous, "c", at(1)).unwrap_err().contains("never had an image"));
    let first = imported(&mut s, "1", "a", 1);
    assert!(rollback(&mut s, "1", &RollbackTarget::Previous, "c", at(2)).unwrap_err().contains("one image only"));
    imported(&mut s, "1", "b", 2);
    assert!(rollback(&mut s, "1", &RollbackTarget::Revision(3), "c", at(3)).unwrap_err().contains("revisions 1 to 2"));
    assert!(rollback(&mut s, "1", &RollbackTarget::Revision(2), "c", at(3)).unwrap_err().contains("already"));
    assert!(rollback(&mut s, "1", &RollbackTarget::Image("sha256:ffff".into()), "c", at(3)).unwrap_err().contains("not in the history"));
    let done = rollback(&mut s, "1", &RollbackTarget::Image(first[..20].to_string()), "c", at(3)).unwrap();
    assert_eq!(done.to_revision, 1);
    // A pushed tag (no spec tag) is rolled back without a pause.
    let mut pushed = created(vec![]);
    map_image(&mut pushed, "latest", &image("a"), at(1));
    map_image(&mut pushed, "latest", &image("b"), at(2));
    assert!(!rollback(&mut pushed, "latest", &RollbackTarget::Previous, "c", at(3)).unwrap().paused);
}
