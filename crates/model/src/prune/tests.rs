use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::*;

fn at(hours_ago: f64) -> Time {
    let now: Time = "2026-12-01T12:00:00Z".parse().unwrap();
    Time::from_datetime(now.0 - chrono::Duration::seconds((hours_ago * 3600.0) as i64))
}

fn image(hours_ago: f64, layers: &[u32]) -> PruneImage {
    PruneImage { created: Some(at(hours_ago)), managed: true, layers: layers.to_vec(), children: Vec::new(), config: None }
}

fn history(tag: &str, items: &[(&str, f64)]) -> TagHistory {
    TagHistory { tag: tag.into(), items: items.iter().map(|(image, hours_ago)| (Arc::from(*image), at(*hours_ago))).collect() }
}

/// Layer sizes by id: 0 is a 100-byte base every image shares; the others are small.
const SIZES: [u64; 10] = [100, 1, 2, 3, 4, 10, 20, 30, 40, 50];

struct World {
    images: HashMap<Arc<str>, PruneImage>,
    in_use: HashSet<String>,
    limits: HashMap<String, u64>,
    streams: Vec<(String, String, Vec<TagHistory>)>,
}

impl World {
    fn plan(&self, options: &PruneOptions) -> PrunePlan {
        let in_use = |image: &str| self.in_use.contains(image);
        let limit = |namespace: &str| self.limits.get(namespace).copied();
        let facts = PruneFacts { now: at(0.0), images: &self.images, layer_sizes: &SIZES, in_use: &in_use, size_limit: &limit };
        let keep = crate::duration::parse_duration(&options.keep_younger_than).unwrap();
        plan(options, keep, &facts, self.streams.iter().map(|(ns, name, tags)| StreamHistory { namespace: ns, name, tags }))
    }
}

fn removed_revisions(plan: &PrunePlan) -> Vec<(String, usize, String)> {
    plan.revisions.iter().map(|r| (r.tag.clone(), r.revision, r.image.clone())).collect()
}

fn removed_images(plan: &PrunePlan) -> Vec<&str> {
    plan.images.iter().map(|i| i.name.as_str()).collect()
}

/// Every keep rule once, with the plan worked out by hand.
#[test]
fn each_keep_rule_keeps_what_it_says_and_the_rest_goes() {
    let mut images: HashMap<Arc<str>, PruneImage> = HashMap::new();
    // The tag's history, newest first: i0 current, i1 and i2 within 3 revisions, i3 old,
    // i4 young (30 minutes), i5 old but in use, i6 old.
    for (name, hours, layer) in
        [("i0", 1.0, 1), ("i1", 2.0, 2), ("i2", 3.0, 3), ("i3", 4.0, 5), ("i4", 0.5, 4), ("i5", 6.0, 7), ("i6", 7.0, 8)]
    {
        images.insert(name.into(), image(hours, &[0, layer]));
    }
    // Images no stream names: young, old, old in use, old but imported, a list that a tag
    // keeps and its children, an old list no tag keeps and its child.
    images.insert("young".into(), image(0.2, &[0, 9]));
    images.insert("old".into(), image(30.0, &[0, 6]));
    images.insert("running".into(), image(30.0, &[0, 9]));
    images.insert("imported".into(), PruneImage { managed: false, ..image(30.0, &[0]) });
    images.insert("list".into(), PruneImage { children: vec!["amd64".into(), "arm64".into()], ..image(30.0, &[]) });
    images.insert("amd64".into(), image(30.0, &[0, 1]));
    images.insert("arm64".into(), image(30.0, &[0, 2]));
    images.insert("old-list".into(), PruneImage { children: vec!["old-child".into()], ..image(30.0, &[]) });
    images.insert("old-child".into(), image(30.0, &[0, 9]));
    let world = World {
        images,
        in_use: ["i5".to_string(), "running".to_string()].into(),
        limits: HashMap::new(),
        streams: vec![(
            "team".into(),
            "app".into(),
            vec![
                history("latest", &[("i0", 1.0), ("i1", 2.0), ("i2", 3.0), ("i3", 4.0), ("i4", 0.5), ("i5", 6.0), ("i6", 7.0)]),
                history("multi", &[("list", 30.0)]),
            ],
        )],
    };
    let options = PruneOptions { all: false, ..PruneOptions::default() };
    let plan = world.plan(&options);
    assert_eq!(removed_revisions(&plan), vec![("latest".to_string(), 3, "i3".to_string()), ("latest".to_string(), 6, "i6".to_string())]);
    assert!(plan.revisions[0].reason.contains("revision 3 of its tag (the newest 3 stay)"), "{}", plan.revisions[0].reason);
    assert_eq!(removed_images(&plan), vec!["i3", "i6", "old", "old-child", "old-list"]);
    assert_eq!(
        plan.kept,
        Kept {
            current: 2,
            recent_revisions: 2,
            young: 2,  // revision i4, and the Image "young"
            in_use: 2, // revision i5, and the Image "running"
            within_limit: 0,
            referenced: 6, // i0 i1 i2 i4 i5 and list
            list_children: 2,
            not_managed: 1,
        }
    );
    // Layers only removed Images hold: 5 (i3), 8 (i6), 6 (old); 9 is held by "young" and
    // "running" too, and the shared base stays.
    assert_eq!(plan.freed_bytes, 10 + 40 + 20);
    // With `all`, the imported Image goes too; a shorter keep window lets i4 go as well.
    let plan = world.plan(&PruneOptions { keep_younger_than: "10m".into(), ..PruneOptions::default() });
    assert!(removed_revisions(&plan).contains(&("latest".to_string(), 4, "i4".to_string())));
    assert!(removed_images(&plan).contains(&"imported"));
    assert!(removed_images(&plan).contains(&"i4"));
}

#[test]
fn over_the_size_limit_goes_whatever_its_place_unless_in_use() {
    let mut images: HashMap<Arc<str>, PruneImage> = HashMap::new();
    images.insert("big".into(), image(1.0, &[0, 5])); // 110 bytes
    images.insert("big-running".into(), image(1.0, &[0, 6])); // 120 bytes
    images.insert("small".into(), image(1.0, &[1])); // 1 byte
    let world = World {
        images,
        in_use: ["big-running".to_string()].into(),
        limits: [("team".to_string(), 50)].into(),
        streams: vec![
            ("team".into(), "app".into(), vec![history("latest", &[("big", 1.0), ("small", 2.0)]), history("v2", &[("big-running", 1.0)])]),
            // Another namespace without a limit keeps the same big image.
            ("other".into(), "app".into(), vec![history("latest", &[("big", 1.0)])]),
        ],
    };
    let plan = world.plan(&PruneOptions { prune_over_size_limit: true, ..PruneOptions::default() });
    assert_eq!(removed_revisions(&plan), vec![("latest".to_string(), 0, "big".to_string())]);
    assert!(plan.revisions[0].reason.contains("110 bytes, over the namespace's limit of 50"), "{}", plan.revisions[0].reason);
    assert_eq!(plan.kept.in_use, 1);
    assert_eq!(plan.kept.within_limit, 2);
    // Still named by the other namespace's stream: the Image stays.
    assert!(plan.images.is_empty());
}

#[test]
fn a_namespace_prune_removes_only_images_its_own_history_named() {
    let mut images: HashMap<Arc<str>, PruneImage> = HashMap::new();
    for (name, layer) in [("a0", 1), ("a1", 2), ("shared", 3), ("stray", 5)] {
        images.insert(name.into(), image(10.0, &[0, layer]));
    }
    let world = World {
        images,
        in_use: HashSet::new(),
        limits: HashMap::new(),
        streams: vec![
            ("team".into(), "app".into(), vec![history("latest", &[("a0", 3.0), ("a1", 4.0), ("shared", 5.0)])]),
            ("other".into(), "app".into(), vec![history("latest", &[("x", 3.0), ("y", 4.0), ("shared", 5.0)])]),
        ],
    };
    let options = PruneOptions { keep_tag_revisions: 1, namespace: "team".into(), ..PruneOptions::default() };
    let plan = world.plan(&options);
    // Only team's history is pruned; "shared" stays for other's stream; "stray" is not team's.
    assert_eq!(
        removed_revisions(&plan),
        vec![("latest".to_string(), 1, "a1".to_string()), ("latest".to_string(), 2, "shared".to_string())]
    );
    assert_eq!(removed_images(&plan), vec!["a1"]);
    assert_eq!(plan.freed_bytes, 2);
    // The whole store: other's old revisions go too, and so does the stray Image.
    let plan = world.plan(&PruneOptions { keep_tag_revisions: 1, ..PruneOptions::default() });
    assert_eq!(removed_images(&plan), vec!["a1", "shared", "stray"]);
}

#[test]
fn keep_younger_than_of_zero_and_no_revisions_keeps_only_current_images() {
    let mut images: HashMap<Arc<str>, PruneImage> = HashMap::new();
    images.insert("new".into(), image(0.0, &[1]));
    images.insert("prev".into(), image(0.0, &[2]));
    let world = World {
        images,
        in_use: HashSet::new(),
        limits: HashMap::new(),
        streams: vec![("team".into(), "app".into(), vec![history("latest", &[("new", 0.0), ("prev", 0.0)])])],
    };
    let plan = world.plan(&PruneOptions { keep_tag_revisions: 0, keep_younger_than: "0s".into(), ..PruneOptions::default() });
    assert_eq!(removed_revisions(&plan), vec![("latest".to_string(), 1, "prev".to_string())]);
    assert_eq!(removed_images(&plan), vec!["prev"]);
    let _ = Duration::ZERO;
}

#[test]
fn the_pruner_runs_when_its_schedule_says_and_keeps_its_history_limits() {
    let after: Time = "2026-12-02T10:15:00Z".parse().unwrap();
    assert_eq!(next_run("0 0 * * *", after).unwrap().to_string(), "2026-12-03T00:00:00Z");
    assert_eq!(next_run("*/30 * * * *", after).unwrap().to_string(), "2026-12-02T10:30:00Z");
    assert_eq!(next_run("*/20 * * * * *", after).unwrap().to_string(), "2026-12-02T10:15:20Z");
    assert!(next_run("every day", after).unwrap_err().contains("is not a cron schedule"));
    let mut pruner = ImagePruner { metadata: crate::ObjectMeta { name: "cluster".into(), ..Default::default() }, ..Default::default() };
    assert!(pruner.validate().is_empty());
    pruner.spec.successful_jobs_history_limit = 2;
    pruner.spec.failed_jobs_history_limit = 1;
    for (i, succeeded) in [true, false, true, false, true].into_iter().enumerate() {
        let at = after.plus(Duration::from_secs(i as u64 * 60));
        pruner.record(PrunerRun {
            started: at,
            finished: at,
            succeeded,
            removed_revisions: i as u64,
            removed_images: 0,
            freed_bytes: 0,
            message: String::new(),
        });
    }
    let kept: Vec<(u64, bool)> = pruner.status.runs.iter().map(|r| (r.removed_revisions, r.succeeded)).collect();
    assert_eq!(kept, vec![(4, true), (3, false), (2, true)]);
    pruner.metadata.name = "nightly".into();
    pruner.spec.schedule = "61 * * * *".into();
    let fields: Vec<String> = pruner.validate().into_iter().map(|e| e.field).collect();
    assert_eq!(fields, vec!["metadata.name", "spec.schedule"]);
}
