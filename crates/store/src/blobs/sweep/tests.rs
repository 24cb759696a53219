use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_model::Digest;
use bytes::Bytes;
use futures::{Stream, TryStreamExt};

use super::super::BlobStore;
use super::{BlobCheck, SweepOptions, SweepReport};

const HOUR: Duration = Duration::from_secs(3600);

fn body(bytes: &[u8]) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::iter(vec![Ok(Bytes::copy_from_slice(bytes))])
}

fn open() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open_local(dir.path(), false).unwrap();
    (dir, store)
}

async fn put(store: &BlobStore, bytes: &[u8]) -> Digest {
    let digest = Digest::sha256_of(bytes);
    store.put(&digest, body(bytes)).await.unwrap();
    digest
}

fn blob_file(root: &FsPath, digest: &Digest) -> std::path::PathBuf {
    let hex = digest.encoded();
    root.join("blobs").join(digest.algorithm()).join(&hex[..2]).join(hex)
}

/// Sets when `path` was last written to `ago` before now.
fn backdate(path: &FsPath, ago: Duration) {
    let file = std::fs::File::open(path).unwrap();
    file.set_modified(SystemTime::now() - ago).unwrap();
}

/// A blob stored two hours ago.
async fn put_old(store: &BlobStore, root: &FsPath, bytes: &[u8]) -> Digest {
    let digest = put(store, bytes).await;
    backdate(&blob_file(root, &digest), 2 * HOUR);
    digest
}

fn options(dry_run: bool) -> SweepOptions {
    SweepOptions { grace: HOUR, upload_age: HOUR, dry_run }
}

/// The report with its list of removed blobs in digest order (the listing's order is the
/// filesystem's).
fn sorted(mut report: SweepReport) -> SweepReport {
    report.removed.sort();
    report
}

#[tokio::test]
async fn a_sweep_removes_old_unused_blobs_and_their_links_and_keeps_live_and_young_ones() {
    let (dir, store) = open();
    let root = dir.path();
    let unused = put_old(&store, root, &[1u8; 1000]).await;
    let linked = put_old(&store, root, &[2u8; 2500]).await;
    for repository in ["team/app", "team/other", "team/gone"] {
        store.link(repository, &linked).await.unwrap();
    }
    store.delete_from("team/gone", &linked).await.unwrap();
    // A sha512 blob: its link names no algorithm, only the encoded digest.
    let sha512_bytes = [5u8; 64];
    let sha512 = format!("sha512:{}", "0".repeat(128)).parse::<Digest>().unwrap().recompute(&sha512_bytes);
    store.put(&sha512, body(&sha512_bytes)).await.unwrap();
    backdate(&blob_file(root, &sha512), 2 * HOUR);
    store.link("team/app", &sha512).await.unwrap();
    let young = put(&store, &[3u8; 700]).await;
    backdate(&blob_file(root, &young), HOUR / 2);
    let live = put_old(&store, root, &[4u8; 300]).await;
    store.link("team/app", &live).await.unwrap();
    // A manifest is linked without a blob here: its link stays.
    let manifest = Digest::sha256_of(b"a manifest");
    store.link("team/app", &manifest).await.unwrap();
    store.add_referrer("team/app", &linked, &manifest, b"{}".to_vec()).await.unwrap();
    let abandoned = store.start_upload("team/app").await.unwrap();
    let upload = root.join("uploads").join(&abandoned.id);
    backdate(&upload.join("info"), 2 * HOUR);
    backdate(&upload, 2 * HOUR);
    let fresh = store.start_upload("team/app").await.unwrap();

    let is_live = |digest: &Digest| *digest == live;
    let planned = store.sweep(&is_live, &options(true)).await.unwrap();
    let expected = SweepReport {
        blobs_removed: 3,
        bytes_freed: 3564,
        removed: {
            let mut removed = vec![(unused.clone(), 1000), (linked.clone(), 2500), (sha512.clone(), 64)];
            removed.sort();
            removed
        },
        removed_truncated: false,
        kept_live: 1,
        kept_young: 1,
        kept_young_bytes: 700,
        kept_in_use: 0,
        links_removed: 3,
        unlinked_removed: 1,
        uploads_removed: 1,
    };
    assert_eq!(sorted(planned), expected);
    for digest in [&unused, &linked, &young, &live] {
        assert!(store.size(digest).await.unwrap().is_some(), "a dry run removes nothing");
    }
    assert!(store.is_linked("team/app", &linked).await.unwrap());
    assert!(store.is_unlinked("team/gone", &linked).await.unwrap());
    assert!(store.upload(&abandoned.id, "team/app").await.unwrap().is_some());

    let done = store.sweep(&is_live, &options(false)).await.unwrap();
    assert_eq!(sorted(done), expected, "the sweep does what the dry run said");
    assert_eq!(store.size(&unused).await.unwrap(), None);
    assert_eq!(store.size(&linked).await.unwrap(), None);
    assert_eq!(store.size(&young).await.unwrap(), Some(700));
    assert_eq!(store.size(&live).await.unwrap(), Some(300));
    assert!(!store.is_linked("team/app", &linked).await.unwrap());
    assert!(!store.is_linked("team/other", &linked).await.unwrap());
    assert!(!store.is_unlinked("team/gone", &linked).await.unwrap());
    assert_eq!(store.size(&sha512).await.unwrap(), None);
    assert!(!store.is_linked("team/app", &sha512).await.unwrap());
    assert!(store.is_linked("team/app", &live).await.unwrap());
    assert!(store.is_linked("team/app", &manifest).await.unwrap(), "links without blobs of their own are not the sweep's");
    assert_eq!(store.referrers("team/app", &linked).await.unwrap(), vec![Bytes::from_static(b"{}")], "referrers are left alone");
    assert!(store.upload(&abandoned.id, "team/app").await.unwrap().is_none());
    assert!(store.upload(&fresh.id, "team/app").await.unwrap().is_some());
    assert_eq!(store.blobs_total().await.unwrap(), (2, 1000));

    let again = store.sweep(&is_live, &options(false)).await.unwrap();
    assert_eq!((again.blobs_removed, again.links_removed, again.kept_live, again.kept_young), (0, 0, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_asked_about_during_the_sweep_is_kept_and_one_removed_first_is_then_absent() {
    let (dir, store) = open();
    let mut old = Vec::new();
    for i in 0..8u8 {
        old.push(put_old(&store, dir.path(), &[i; 100]).await);
    }
    // The sweep asks `live` about each blob just before it decides on it, so the questions
    // below happen while it runs, at known points. The first blob asked about is sized,
    // the second linked; every blob asked about after those finds the earlier ones that
    // were not kept already absent (removed before anyone asked).
    #[derive(Default)]
    struct Seen {
        asked: Vec<Digest>,
        sized: Option<Option<u64>>,
        absent: Vec<(Digest, Option<u64>)>,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let live = {
        let (store, seen) = (store.clone(), Arc::clone(&seen));
        move |digest: &Digest| {
            let (store, digest) = (store.clone(), digest.clone());
            let earlier = seen.lock().unwrap().asked.clone();
            let (sized, absent) = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let mut sized = None;
                    match earlier.len() {
                        0 => sized = Some(store.size(&digest).await.unwrap()),
                        1 => store.link("team/app", &digest).await.unwrap(),
                        _ => {}
                    }
                    let mut absent = Vec::new();
                    for gone in earlier.iter().skip(2) {
                        absent.push((gone.clone(), store.size(gone).await.unwrap()));
                    }
                    (sized, absent)
                })
            });
            let mut seen = seen.lock().unwrap();
            seen.asked.push(digest);
            if sized.is_some() {
                seen.sized = sized;
            }
            seen.absent.extend(absent);
            false
        }
    };
    // On a worker thread of its own, where `live` may block in place.
    let sweeping = store.clone();
    let report = tokio::spawn(async move { sweeping.sweep(&live, &options(false)).await.unwrap() }).await.unwrap();
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    assert_eq!(seen.asked.len(), 8);
    assert_eq!(seen.sized, Some(Some(100)), "the first blob was present when asked about");
    assert_eq!((report.kept_in_use, report.blobs_removed), (2, 6));
    let (sized, linked) = (&seen.asked[0], &seen.asked[1]);
    assert_eq!(store.size(sized).await.unwrap(), Some(100), "a blob sized during the sweep is kept");
    assert_eq!(store.size(linked).await.unwrap(), Some(100), "a blob linked during the sweep is kept");
    assert!(store.is_linked("team/app", linked).await.unwrap());
    assert_eq!(seen.absent.len(), (0..6).sum::<usize>(), "each removed blob was asked about again by every later question");
    for (digest, size) in &seen.absent {
        assert_eq!(*size, None, "{digest} was removed before it was asked about, so it is absent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_racing_a_sweep_never_lose_a_blob_they_saw() {
    let (dir, store) = open();
    const OLD: usize = 800;
    const TASKS: usize = 8;
    let mut old = Vec::new();
    for i in 0..OLD {
        old.push(put_old(&store, dir.path(), format!("old layer {i}").as_bytes()).await);
    }
    let sweep = {
        let store = store.clone();
        tokio::spawn(async move { store.sweep(&|_: &Digest| false, &options(false)).await.unwrap() })
    };
    // The guard covers what is asked while the sweep runs (before it, only the grace
    // window protects a blob), so the pushes start once it has begun.
    while !store.guard.sweeping.load(std::sync::atomic::Ordering::SeqCst) && !sweep.is_finished() {
        tokio::task::yield_now().await;
    }
    // Each task pushes: for an old layer, it links it and checks it is there (re-uploading
    // it when the sweep took it first, as a client would); then it pushes a fresh layer.
    // The first half of the old layers is pushed again; the second half nobody asks about.
    let tasks = (0..TASKS).map(|task| {
        let (store, old) = (store.clone(), old.clone());
        tokio::spawn(async move {
            let mut confirmed = Vec::new();
            for i in (task..OLD / 2).step_by(TASKS) {
                let digest = &old[i];
                let repository = format!("team/app{task}");
                store.link(&repository, digest).await.unwrap();
                if store.size(digest).await.unwrap().is_none() {
                    store.put(digest, body(format!("old layer {i}").as_bytes())).await.unwrap();
                    store.link(&repository, digest).await.unwrap();
                    assert!(store.size(digest).await.unwrap().is_some(), "a blob just stored is present");
                }
                confirmed.push((repository.clone(), digest.clone()));
                let fresh = put(&store, format!("fresh layer {task} {i}").as_bytes()).await;
                store.link(&repository, &fresh).await.unwrap();
                if store.size(&fresh).await.unwrap().is_some() {
                    confirmed.push((repository, fresh));
                }
                tokio::task::yield_now().await;
            }
            confirmed
        })
    });
    let mut confirmed = Vec::new();
    for task in futures::future::join_all(tasks).await {
        confirmed.extend(task.unwrap());
    }
    let report = sweep.await.unwrap();
    assert_eq!(confirmed.len(), OLD, "every push saw its layers");
    for (repository, digest) in &confirmed {
        assert!(store.size(digest).await.unwrap().is_some(), "{digest} was seen present, so it stays");
        assert!(store.is_linked(repository, digest).await.unwrap(), "{digest} was linked into {repository}, so it stays linked");
        assert!(matches!(store.verify(digest).await.unwrap(), BlobCheck::Intact { .. }));
    }
    for digest in &old[OLD / 2..] {
        assert_eq!(store.size(digest).await.unwrap(), None, "nobody asked about {digest}, so it went");
    }
    assert!(report.blobs_removed >= (OLD / 2) as u64, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_stored_again_by_another_process_during_the_sweep_is_kept() {
    let (dir, store) = open();
    let bytes = [7u8; 500];
    let digest = put_old(&store, dir.path(), &bytes).await;
    // Another process on the same storage, whose questions this process never hears of:
    // it stores the blob again after the sweep listed it and before it decides.
    let other = BlobStore::open_local(dir.path(), false).unwrap();
    let live = move |asked: &Digest| {
        let (other, asked) = (other.clone(), asked.clone());
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move { other.put(&asked, body(&bytes)).await.unwrap() })
        });
        false
    };
    let sweeping = store.clone();
    let report = tokio::spawn(async move { sweeping.sweep(&live, &options(false)).await.unwrap() }).await.unwrap();
    assert_eq!((report.blobs_removed, report.kept_in_use, report.kept_young, report.kept_young_bytes), (0, 0, 1, 500));
    assert_eq!(store.size(&digest).await.unwrap(), Some(500));
}

#[tokio::test]
async fn a_second_sweep_waits_for_the_first() {
    let (dir, store) = open();
    for i in 0..50u8 {
        put_old(&store, dir.path(), &[i; 10]).await;
    }
    let nothing_live = |_: &Digest| false;
    let options = options(false);
    let (first, second) = tokio::join!(store.sweep(&nothing_live, &options), store.sweep(&nothing_live, &options));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.blobs_removed + second.blobs_removed, 50);
    assert!(first.blobs_removed == 0 || second.blobs_removed == 0, "one sweep ran after the other: {first:?} {second:?}");
    assert_eq!(store.blobs_total().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn verify_tells_intact_corrupt_and_missing_blobs_apart() {
    let (dir, store) = open();
    let intact = put(&store, &[5u8; 70_000]).await;
    let corrupt = put(&store, &[6u8; 1000]).await;
    // Other bytes renamed over the blob's file, as a disk fault or a hand could leave them.
    let staged = dir.path().join("poison");
    std::fs::write(&staged, b"poison").unwrap();
    std::fs::rename(&staged, blob_file(dir.path(), &corrupt)).unwrap();
    let missing = Digest::sha256_of(b"never stored");
    assert_eq!(store.verify(&intact).await.unwrap(), BlobCheck::Intact { size: 70_000 });
    assert_eq!(store.verify(&corrupt).await.unwrap(), BlobCheck::Corrupt { size: 6, actual: Digest::sha256_of(b"poison") });
    assert_eq!(store.verify(&missing).await.unwrap(), BlobCheck::Missing);
    assert_eq!(store.blobs_total().await.unwrap(), (2, 70_006));
    assert!(store.remove_blob(&corrupt).await.unwrap());
    assert!(!store.remove_blob(&corrupt).await.unwrap(), "nothing left to remove");
    assert_eq!(store.verify(&corrupt).await.unwrap(), BlobCheck::Missing);
    assert_eq!(store.blobs_total().await.unwrap(), (1, 70_000));
}

#[tokio::test]
async fn dangling_links_are_the_links_without_a_blob() {
    let (_dir, store) = open();
    let stored = put(&store, b"stored").await;
    let missing = Digest::sha256_of(b"missing");
    let missing_sha512: Digest = format!("sha512:{}", "ab".repeat(64)).parse().unwrap();
    store.link("team/app", &stored).await.unwrap();
    store.link("team/app", &missing).await.unwrap();
    store.link("team/other", &missing).await.unwrap();
    store.link("team/other", &missing_sha512).await.unwrap();
    let mut dangling: Vec<(String, String)> = store.dangling_links().try_collect().await.unwrap();
    dangling.sort();
    let mut expected = vec![
        ("team/app".to_string(), missing.encoded().to_string()),
        ("team/other".to_string(), missing.encoded().to_string()),
        ("team/other".to_string(), missing_sha512.encoded().to_string()),
    ];
    expected.sort();
    assert_eq!(dangling, expected);
}

/// On S3 an object's time cannot be set: a client finding an old blob present leaves a
/// mark beside it, which the grace window counts from. A sweep keeps the blob while its
/// mark is young, and removes old unused blobs together with their marks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_a_blob_found_present_is_kept_for_the_grace_window_and_old_unused_ones_go() {
    let bucket = berth_testkit::s3::bucket().unwrap();
    let store = BlobStore::open_s3(&bucket.url, &bucket.options()).unwrap();
    // The bucket's objects are files under its directory, with the URL's prefix.
    let objects = bucket.dir.join("blobs");
    let unused = put(&store, &[1u8; 1000]).await;
    let found = put(&store, &[2u8; 2000]).await;
    backdate(&blob_file(&objects, &unused), 2 * HOUR);
    backdate(&blob_file(&objects, &found), 2 * HOUR);
    assert!(store.refresh(&found, HOUR).await.unwrap(), "an old blob found present is marked");
    assert!(!store.refresh(&found, HOUR).await.unwrap(), "and marked once");

    let report = store.sweep(&|_| false, &options(false)).await.unwrap();
    assert_eq!(report.removed, vec![(unused.clone(), 1000)]);
    assert_eq!((report.kept_young, report.kept_young_bytes), (1, 2000));
    assert_eq!(store.size(&unused).await.unwrap(), None);
    assert_eq!(store.size(&found).await.unwrap(), Some(2000));

    let mark = objects.join("touched").join(found.algorithm()).join(found.encoded());
    backdate(&mark, 2 * HOUR);
    let report = store.sweep(&|_| false, &options(false)).await.unwrap();
    assert_eq!(report.removed, vec![(found.clone(), 2000)], "once its mark is old too, it goes");
    assert!(!mark.exists(), "with its mark");
}
