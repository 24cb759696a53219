//! The behavioural contract of [`MetadataStore`]: every backend runs this suite through
//! [`store_test_suite!`](crate::store_test_suite), and a backend is done when all of it
//! passes.

use std::sync::Arc;

use crate::{EventType, ListQuery, MetadataStore, ObjectKey, Precondition, StoreError, transact};

/// Expands to one `#[test]` per behaviour, each on a fresh store from `$open`, a function
/// returning `(guard, store)` where the guard keeps the store's resources alive.
#[macro_export]
macro_rules! store_test_suite {
    ($open:path) => {
        $crate::store_test_suite!(@tests $open;
            create_read_update_delete,
            preconditions_protect_concurrent_changes,
            revisions_are_global_and_one_per_change,
            lists_are_ordered_filtered_and_paged,
            references_follow_the_latest_write,
            an_aborted_transaction_leaves_nothing,
            events_record_every_change_in_order,
            compaction_makes_old_revisions_unwatchable,
            subscribers_hear_each_commit,
            writing_the_same_bytes_changes_nothing,
            concurrent_writers_get_contiguous_revisions,
            scans_read_everything_at_the_revision_they_started,
            keys_are_listed_in_pages_without_bodies,
            references_are_found_by_prefix_inside_a_write,
            a_write_probe_changes_nothing_readers_see,
            a_lease_has_one_holder_until_it_expires_or_is_released,
        );
    };
    (@tests $open:path; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (_guard, store) = $open();
                $crate::suite::$name(std::sync::Arc::new(store));
            }
        )*
    };
}

fn key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey::new("things", namespace, name)
}

fn put(store: &dyn MetadataStore, key: &ObjectKey, body: &str, expect: Precondition) -> Result<u64, StoreError> {
    let (key, body) = (key.clone(), body.to_string());
    transact(store, move |txn| txn.put(&key, body.as_bytes(), &[], expect))
}

fn delete(store: &dyn MetadataStore, key: &ObjectKey, expect: Precondition) -> Result<u64, StoreError> {
    let key = key.clone();
    transact(store, move |txn| txn.delete(&key, expect))
}

pub fn create_read_update_delete(store: Arc<dyn MetadataStore>) {
    let a = key("ns", "a");
    assert_eq!(store.get(&a).unwrap(), None);
    let created = put(&*store, &a, "v1", Precondition::Absent).unwrap();
    let stored = store.get(&a).unwrap().unwrap();
    assert_eq!((stored.body.as_slice(), stored.revision), (b"v1".as_slice(), created));
    let updated = put(&*store, &a, "v2", Precondition::Revision(created)).unwrap();
    assert!(updated > created);
    assert_eq!(store.get(&a).unwrap().unwrap().body, b"v2");
    delete(&*store, &a, Precondition::Revision(updated)).unwrap();
    assert_eq!(store.get(&a).unwrap(), None);
}

pub fn preconditions_protect_concurrent_changes(store: Arc<dyn MetadataStore>) {
    let a = key("ns", "a");
    let first = put(&*store, &a, "v1", Precondition::Absent).unwrap();
    assert_eq!(put(&*store, &a, "again", Precondition::Absent), Err(StoreError::AlreadyExists(a.clone())));
    let second = put(&*store, &a, "v2", Precondition::Revision(first)).unwrap();
    assert_eq!(
        put(&*store, &a, "stale", Precondition::Revision(first)),
        Err(StoreError::Conflict { key: a.clone(), expected: first, actual: second })
    );
    assert_eq!(store.get(&a).unwrap().unwrap().body, b"v2", "a failed write changes nothing");
    let missing = key("ns", "missing");
    assert_eq!(delete(&*store, &missing, Precondition::Any), Err(StoreError::NotFound(missing.clone())));
    assert_eq!(put(&*store, &missing, "x", Precondition::Revision(1)), Err(StoreError::NotFound(missing)));
}

pub fn revisions_are_global_and_one_per_change(store: Arc<dyn MetadataStore>) {
    let start = store.current_revision().unwrap();
    let after = transact(&*store, |txn| {
        let one = txn.put(&key("a", "x"), b"1", &[], Precondition::Absent)?;
        let two = txn.put(&ObjectKey::new("others", "", "y"), b"2", &[], Precondition::Absent)?;
        Ok::<_, StoreError>((one, two))
    })
    .unwrap();
    assert_eq!(after, (start + 1, start + 2));
    assert_eq!(store.current_revision().unwrap(), start + 2);
}

pub fn lists_are_ordered_filtered_and_paged(store: Arc<dyn MetadataStore>) {
    for (namespace, name) in [("b", "2"), ("a", "3"), ("b", "1"), ("a", "1")] {
        put(&*store, &key(namespace, name), name, Precondition::Absent).unwrap();
    }
    put(&*store, &ObjectKey::new("others", "a", "9"), "x", Precondition::Absent).unwrap();
    let names = |query: &ListQuery| -> Vec<(String, String)> {
        store.list(query).unwrap().items.into_iter().map(|o| (o.key.namespace, o.key.name)).collect()
    };
    let all = ListQuery { resource: "things".into(), ..ListQuery::default() };
    let pairs = |list: &[(&str, &str)]| list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
    assert_eq!(names(&all), pairs(&[("a", "1"), ("a", "3"), ("b", "1"), ("b", "2")]));
    let in_b = ListQuery { namespace: Some("b".into()), ..all.clone() };
    assert_eq!(names(&in_b), pairs(&[("b", "1"), ("b", "2")]));

    let first = store.list(&ListQuery { limit: Some(3), ..all.clone() }).unwrap();
    assert!(first.more);
    assert_eq!(first.revision, store.current_revision().unwrap());
    let last = first.items.last().unwrap();
    let rest = ListQuery { after: Some((last.key.namespace.clone(), last.key.name.clone())), limit: Some(3), ..all.clone() };
    let second = store.list(&rest).unwrap();
    assert!(!second.more);
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].key, key("b", "2"));

    // Counting takes the same query, without the limit.
    assert_eq!(store.count(&all).unwrap(), 4);
    assert_eq!(store.count(&ListQuery { after: Some(("b".into(), "1".into())), limit: Some(1), ..in_b }).unwrap(), 1);
    assert_eq!(store.count(&rest).unwrap(), 1);
}

pub fn references_follow_the_latest_write(store: Arc<dyn MetadataStore>) {
    let a = key("ns", "a");
    let b = key("other", "b");
    let (a2, b2) = (a.clone(), b.clone());
    transact(&*store, move |txn| {
        txn.put(&a2, b"a", &["img1".into(), "img2".into()], Precondition::Absent)?;
        txn.put(&b2, b"b", &["img1".into()], Precondition::Absent)
    })
    .unwrap();
    assert_eq!(store.referrers("things", "img1").unwrap(), vec![a.clone(), b.clone()]);
    let a2 = a.clone();
    transact(&*store, move |txn| txn.put(&a2, b"a2", &["img2".into()], Precondition::Any)).unwrap();
    assert_eq!(store.referrers("things", "img1").unwrap(), vec![b.clone()]);
    delete(&*store, &b, Precondition::Any).unwrap();
    assert!(store.referrers("things", "img1").unwrap().is_empty());
    assert!(store.referrers("others", "img2").unwrap().is_empty());
}

pub fn an_aborted_transaction_leaves_nothing(store: Arc<dyn MetadataStore>) {
    let start = store.current_revision().unwrap();
    let result: Result<(), StoreError> = transact(&*store, |txn| {
        txn.put(&key("ns", "a"), b"a", &["r".into()], Precondition::Absent)?;
        Err(StoreError::Backend("the rules said no".to_string()))
    });
    assert_eq!(result, Err(StoreError::Backend("the rules said no".to_string())));
    assert_eq!(store.get(&key("ns", "a")).unwrap(), None);
    assert_eq!(store.current_revision().unwrap(), start);
    assert!(store.referrers("things", "r").unwrap().is_empty());
    assert!(store.events_since("things", None, start, 10).unwrap().is_empty());
}

pub fn events_record_every_change_in_order(store: Arc<dyn MetadataStore>) {
    let start = store.current_revision().unwrap();
    let a = key("ns", "a");
    put(&*store, &a, "v1", Precondition::Absent).unwrap();
    put(&*store, &key("other", "b"), "b", Precondition::Absent).unwrap();
    put(&*store, &a, "v2", Precondition::Any).unwrap();
    delete(&*store, &a, Precondition::Any).unwrap();
    let events = store.events_since("things", Some("ns"), start, 100).unwrap();
    let seen: Vec<(EventType, &[u8], u64)> = events.iter().map(|e| (e.event_type, e.object.body.as_slice(), e.object.revision)).collect();
    assert_eq!(
        seen,
        vec![
            (EventType::Added, b"v1".as_slice(), start + 1),
            (EventType::Modified, b"v2".as_slice(), start + 3),
            (EventType::Deleted, b"v2".as_slice(), start + 4),
        ]
    );
    assert_eq!(store.events_since("things", None, start + 1, 1).unwrap()[0].object.key, key("other", "b"));
}

pub fn compaction_makes_old_revisions_unwatchable(store: Arc<dyn MetadataStore>) {
    for idx in 0..10 {
        put(&*store, &key("ns", &idx.to_string()), "x", Precondition::Absent).unwrap();
    }
    let now = store.current_revision().unwrap();
    let floor = store.compact(3).unwrap();
    assert_eq!(floor, now - 3);
    assert_eq!(store.events_since("things", None, floor, 100).unwrap().len(), 3);
    assert_eq!(store.events_since("things", None, floor - 1, 100), Err(StoreError::Compacted { requested: floor - 1, oldest: floor + 1 }));
    assert_eq!(store.compact(5).unwrap(), floor, "compaction never moves the floor back");
}

pub fn subscribers_hear_each_commit(store: Arc<dyn MetadataStore>) {
    let mut rx = store.subscribe();
    let revision = put(&*store, &key("ns", "a"), "x", Precondition::Absent).unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), revision);
    let _ = transact(&*store, |_txn| Err::<(), _>(StoreError::Aborted));
    assert!(!rx.has_changed().unwrap(), "a rolled-back transaction announces nothing");
}

pub fn concurrent_writers_get_contiguous_revisions(store: Arc<dyn MetadataStore>) {
    let start = store.current_revision().unwrap();
    let threads: Vec<_> = (0..8)
        .map(|writer| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..50)
                    .map(|idx| put(&*store, &key("ns", &format!("{writer}-{idx}")), "x", Precondition::Absent).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut revisions: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    revisions.sort_unstable();
    assert_eq!(revisions, (start + 1..=start + 400).collect::<Vec<_>>());
    let events = store.events_since("things", None, start, 1000).unwrap();
    assert_eq!(events.iter().map(|e| e.object.revision).collect::<Vec<_>>(), revisions);
}

pub fn writing_the_same_bytes_changes_nothing(store: Arc<dyn MetadataStore>) {
    let a = key("ns", "a");
    let put_refs = |body: &'static [u8], reference: &str, expect: Precondition| {
        let (key, reference) = (a.clone(), reference.to_string());
        transact(&*store, move |txn| txn.put(&key, body, &[reference], expect))
    };
    let first = put_refs(b"same", "r1", Precondition::Absent).unwrap();
    let again = put_refs(b"same", "r1", Precondition::Revision(first)).unwrap();
    assert_eq!(again, first);
    assert_eq!(store.current_revision().unwrap(), first);
    assert_eq!(store.events_since("things", None, first, 10).unwrap(), vec![]);
    let changed = put_refs(b"other", "r2", Precondition::Revision(first)).unwrap();
    assert_eq!(changed, first + 1);
    assert_eq!(store.referrers("things", "r2").unwrap(), vec![a.clone()]);
    assert!(store.referrers("things", "r1").unwrap().is_empty());
}

pub fn scans_read_everything_at_the_revision_they_started(store: Arc<dyn MetadataStore>) {
    // More objects than a page of any backend reads at a time.
    for idx in 0..700 {
        put(&*store, &key(if idx % 2 == 0 { "a" } else { "b" }, &format!("{idx:04}")), "v", Precondition::Absent).unwrap();
    }
    let all = ListQuery { resource: "things".into(), ..ListQuery::default() };
    let scan = store.scan(&all).unwrap();
    let started = scan.revision;
    // Writes while the scan runs are not seen by it.
    put(&*store, &key("a", "0000"), "changed", Precondition::Any).unwrap();
    put(&*store, &key("c", "late"), "v", Precondition::Absent).unwrap();
    let items: Vec<_> = scan.items.map(Result::unwrap).collect();
    assert_eq!(items.len(), 700);
    assert!(items.windows(2).all(|w| (&w[0].key.namespace, &w[0].key.name) < (&w[1].key.namespace, &w[1].key.name)), "in key order");
    assert_eq!(items[0].body, b"v", "the object as it was when the scan started");
    assert!(items.iter().all(|i| i.revision <= started));
    // One namespace, continuing after a key.
    let namespace = ListQuery {
        resource: "things".into(),
        namespace: Some("b".into()),
        after: Some(("b".into(), "0599".into())),
        ..ListQuery::default()
    };
    let names: Vec<String> = store.scan(&namespace).unwrap().items.map(|i| i.unwrap().key.name).collect();
    assert_eq!(names.len(), 50);
    assert_eq!(names.first().map(String::as_str), Some("0601"));
}

pub fn keys_are_listed_in_pages_without_bodies(store: Arc<dyn MetadataStore>) {
    for name in ["c", "a", "b"] {
        put(&*store, &key("ns", name), "a large body", Precondition::Absent).unwrap();
    }
    put(&*store, &key("other", "a"), "v", Precondition::Absent).unwrap();
    let first = store.list_keys(&ListQuery { resource: "things".into(), limit: Some(2), ..ListQuery::default() }).unwrap();
    assert_eq!(first.keys, vec![key("ns", "a"), key("ns", "b")]);
    assert!(first.more);
    let rest = store
        .list_keys(&ListQuery { resource: "things".into(), after: Some(("ns".into(), "b".into())), limit: Some(2), ..ListQuery::default() })
        .unwrap();
    assert_eq!(rest.keys, vec![key("ns", "c"), key("other", "a")]);
    assert!(!rest.more);
    let one = store.list_keys(&ListQuery { resource: "things".into(), namespace: Some("other".into()), ..ListQuery::default() }).unwrap();
    assert_eq!(one.keys, vec![key("other", "a")]);
}

pub fn references_are_found_by_prefix_inside_a_write(store: Arc<dyn MetadataStore>) {
    let (a, b, c) = (key("ns", "a"), key("ns", "b"), key("other", "c"));
    let refs = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    transact(&*store, {
        let (a, b, c) = (a.clone(), b.clone(), c.clone());
        move |txn| {
            txn.put(&a, b"a", &refs(&["waits:ns/x:1", "from:q"]), Precondition::Absent)?;
            txn.put(&b, b"b", &refs(&["waits:ns/x:2", "waits:ns/xy:1"]), Precondition::Absent)?;
            txn.put(&c, b"c", &refs(&["waits:ns/y:1"]), Precondition::Absent)?;
            // The transaction sees its own writes.
            let mut found = txn.referrers_with_prefix("things", "waits:ns/x:")?;
            found.sort();
            assert_eq!(found, vec![("waits:ns/x:1".to_string(), a.clone()), ("waits:ns/x:2".to_string(), b.clone())]);
            assert!(txn.referrers_with_prefix("things", "waits:ns/z:")?.is_empty());
            assert!(txn.referrers_with_prefix("other-things", "waits:")?.is_empty());
            Ok::<_, StoreError>(())
        }
    })
    .unwrap();
}

pub fn a_write_probe_changes_nothing_readers_see(store: Arc<dyn MetadataStore>) {
    let a = key("ns", "a");
    let revision = put(&*store, &a, "v1", Precondition::Absent).unwrap();
    let mut commits = store.subscribe();
    commits.mark_unchanged();
    store.probe_write().unwrap();
    store.probe_write().unwrap();
    assert_eq!(store.current_revision().unwrap(), revision);
    assert!(!commits.has_changed().unwrap(), "a probe is no commit subscribers hear of");
    assert_eq!(store.events_since("things", None, 0, 10).unwrap().len(), 1);
    assert_eq!(put(&*store, &key("ns", "b"), "v1", Precondition::Absent).unwrap(), revision + 1);
}

pub fn a_lease_has_one_holder_until_it_expires_or_is_released(store: Arc<dyn MetadataStore>) {
    use std::time::Duration;
    let long = Duration::from_secs(60);
    let revision = store.current_revision().unwrap();
    assert!(store.lease("scheduler", "a", long).unwrap(), "a free lease is taken");
    assert!(!store.lease("scheduler", "b", long).unwrap(), "another's running lease is not");
    assert!(store.lease("scheduler", "a", long).unwrap(), "the holder renews it");
    assert!(store.lease("notifier", "b", long).unwrap(), "leases are independent");
    store.release("scheduler", "b").unwrap();
    assert!(!store.lease("scheduler", "b", long).unwrap(), "only the holder releases");
    store.release("scheduler", "a").unwrap();
    assert!(store.lease("scheduler", "b", long).unwrap(), "a released lease is free at once");

    let short = Duration::from_millis(200);
    assert!(store.lease("pruner", "a", short).unwrap());
    assert!(!store.lease("pruner", "b", short).unwrap());
    std::thread::sleep(short + Duration::from_millis(100));
    assert!(store.lease("pruner", "b", long).unwrap(), "an expired lease is taken over");
    assert!(!store.lease("pruner", "a", short).unwrap(), "and its old holder has lost it");
    assert_eq!(store.current_revision().unwrap(), revision, "leases are no catalog change");
}
