//! The sweep (an online garbage collection of blobs) and the checks `berth adm fsck` runs.
//!
//! The sweep never holds the store's listing: it walks `blobs/`, `links/` and `unlinked/`
//! as `object_store` lists them and decides one entry at a time. What it keeps in memory
//! grows only with what it removes (the digests of the blobs removed, 32 or 64 bytes
//! each, so that the links to exactly those can go after them) and with the digests this
//! process is asked about while it runs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use berth_model::Digest;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use super::{BlobError, BlobStore, Hasher, Result, blob_path, is_upload_id, touched_path};

/// How many removed blobs a [`SweepReport`] names; the counts cover all of them.
pub const SWEEP_LISTED: usize = 1000;

/// How a sweep runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepOptions {
    /// Blobs written more recently than this are kept even when nothing uses them.
    pub grace: Duration,
    /// Uploads and mirror downloads untouched for longer than this are removed.
    pub upload_age: Duration,
    /// Report what would be removed and change nothing.
    pub dry_run: bool,
}

/// What a sweep removed (or, in a dry run, would remove) and what it kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Blobs removed, and the bytes they held.
    pub blobs_removed: u64,
    pub bytes_freed: u64,
    /// The first [`SWEEP_LISTED`] blobs removed, with their sizes, in the order removed.
    pub removed: Vec<(Digest, u64)>,
    /// Whether more blobs were removed than `removed` names.
    pub removed_truncated: bool,
    /// Blobs still used (the caller's `live` said so).
    pub kept_live: u64,
    /// Blobs nothing uses, kept because they were written within the grace window.
    pub kept_young: u64,
    pub kept_young_bytes: u64,
    /// Blobs nothing uses, kept because this process was asked about them while the
    /// sweep ran.
    pub kept_in_use: u64,
    /// `links/<repository>/<hex>` entries removed with their blobs.
    pub links_removed: u64,
    /// `unlinked/<repository>/<hex>` entries removed with their blobs.
    pub unlinked_removed: u64,
    /// Abandoned uploads and mirror downloads removed.
    pub uploads_removed: u64,
}

/// What [`BlobStore::verify`] found of a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobCheck {
    Missing,
    /// Its bytes hash to its digest.
    Intact {
        size: u64,
    },
    /// Its bytes hash to `actual`.
    Corrupt {
        size: u64,
        actual: Digest,
    },
}

/// The digests this process is asked about while a sweep runs, and the lock that makes
/// each of the sweep's deletions and each of those questions exclude each other.
#[derive(Default)]
pub(super) struct SweepGuard {
    /// Whether a sweep runs. Without one, a question costs two atomic operations.
    sweeping: AtomicBool,
    /// Questions that found no sweep running and are not answered yet: a sweep starts
    /// deleting only once there are none (they were not noted).
    unguarded: AtomicUsize,
    /// The digests asked about since the running sweep began. Its lock is held across
    /// each decision of the sweep to delete something and that deletion, never longer.
    touched: tokio::sync::Mutex<HashSet<Digest>>,
    /// Held for the whole of a sweep: a second sweep waits for the first.
    running: tokio::sync::Mutex<()>,
}

/// A question about a blob being answered. While it lives, a sweep that began after it
/// found none running has not begun deleting.
pub(super) struct Touch<'a>(Option<&'a SweepGuard>);

impl Drop for Touch<'_> {
    fn drop(&mut self) {
        if let Some(guard) = self.0 {
            guard.unguarded.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl SweepGuard {
    /// Notes that `digest` is being asked about; the caller holds the answer until it has
    /// looked (or written).
    pub(super) async fn touch(&self, digest: &Digest) -> Touch<'_> {
        // Counted before the flag is read, and the sweep sets the flag before it reads
        // the count (both sequentially consistent): either this question sees the sweep
        // and is noted, or the sweep sees this question and waits for its answer.
        self.unguarded.fetch_add(1, Ordering::SeqCst);
        if !self.sweeping.load(Ordering::SeqCst) {
            return Touch(Some(self));
        }
        self.unguarded.fetch_sub(1, Ordering::SeqCst);
        self.touched.lock().await.insert(digest.clone());
        Touch(None)
    }

    /// Begins noting questions, once the questions asked before are answered.
    async fn begin(&self) -> Sweeping<'_> {
        self.touched.lock().await.clear();
        self.sweeping.store(true, Ordering::SeqCst);
        let sweeping = Sweeping(self);
        while self.unguarded.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sweeping
    }
}

/// A sweep running; questions stop being noted when it ends (or is dropped midway).
struct Sweeping<'a>(&'a SweepGuard);

impl Drop for Sweeping<'_> {
    fn drop(&mut self) {
        self.0.sweeping.store(false, Ordering::SeqCst);
    }
}

/// What became of one blob the sweep meant to remove.
enum Decision {
    Removed(u64),
    /// Asked about while the sweep ran.
    InUse,
    /// Written again within the grace window since it was listed.
    Young(u64),
    /// Gone already.
    Gone,
}

/// The digests of the blobs a sweep removed, by their encoded part.
#[derive(Default)]
struct Removed {
    sha256: HashSet<[u8; 32]>,
    sha512: HashSet<[u8; 64]>,
}

impl Removed {
    fn insert(&mut self, digest: &Digest) {
        let hex = digest.encoded();
        let mut sha256 = [0u8; 32];
        let mut sha512 = [0u8; 64];
        if hex::decode_to_slice(hex, &mut sha256).is_ok() {
            self.sha256.insert(sha256);
        } else if hex::decode_to_slice(hex, &mut sha512).is_ok() {
            self.sha512.insert(sha512);
        }
    }

    fn contains(&self, hex: &str) -> bool {
        let mut sha256 = [0u8; 32];
        let mut sha512 = [0u8; 64];
        if hex::decode_to_slice(hex, &mut sha256).is_ok() {
            self.sha256.contains(&sha256)
        } else if hex::decode_to_slice(hex, &mut sha512).is_ok() {
            self.sha512.contains(&sha512)
        } else {
            false
        }
    }
}

/// The digest a path under `blobs/` stores, when it is one (`blobs/<alg>/<2 hex>/<hex>`).
fn blob_digest(location: &Path) -> Option<Digest> {
    let parts: Vec<_> = location.parts().collect();
    let [blobs, algorithm, fan, hex] = parts.as_slice() else {
        return None;
    };
    if blobs.as_ref() != "blobs" || !hex.as_ref().starts_with(fan.as_ref()) {
        return None;
    }
    format!("{}:{}", algorithm.as_ref(), hex.as_ref()).parse().ok()
}

/// The repository and encoded digest of an entry `<top>/<repository>/<hex>`.
fn repository_entry(location: &Path, top: &str) -> Option<(String, String)> {
    let parts: Vec<String> = location.parts().map(|part| part.as_ref().to_string()).collect();
    match parts.as_slice() {
        [first, repository @ .., hex] if first == top && !repository.is_empty() => Some((repository.join("/"), hex.clone())),
        _ => None,
    }
}

/// The digests whose encoded part is `hex` (a path under `links/` names no algorithm; the
/// length tells it).
fn digests_of(hex: &str) -> impl Iterator<Item = Digest> + '_ {
    ["sha256", "sha512"].into_iter().filter_map(move |algorithm| format!("{algorithm}:{hex}").parse().ok())
}

/// How long ago `meta` was last written, to the millisecond (none when its time is ahead
/// of the clock).
fn age(meta: &ObjectMeta, now: SystemTime) -> Duration {
    age_of(meta.last_modified, now)
}

/// How long before `now` the time `then` is (zero when it is later).
pub(super) fn age_of(then: chrono::DateTime<chrono::Utc>, now: SystemTime) -> Duration {
    let now = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    Duration::from_millis(now.saturating_sub(then.timestamp_millis()).max(0) as u64)
}

impl BlobStore {
    /// Removes the blobs nothing uses any more, then the links and deletion marks of those
    /// blobs, then abandoned uploads and mirror downloads. Called by the pruner once it has
    /// removed Images; `live` answers whether a digest is still used (the layers and
    /// configs of every Image kept). A blob goes when `live` says no, it was last written
    /// longer than `options.grace` ago, and this process was not asked about it while the
    /// sweep ran. With `options.dry_run` nothing changes and the report says what would
    /// have gone.
    ///
    /// Why a grace window: a blob nothing names yet is not necessarily garbage. A client
    /// pushes its layers first and its manifest afterwards, and one that found a layer
    /// present (a HEAD, or a mount) may push the manifest naming it minutes later; another
    /// replica or process sharing the storage asks about blobs this process never hears
    /// of. Neither is visible here, so only what has been left alone for a long time is
    /// taken (Harbor waits two hours by default). The window is judged on the time the
    /// blob file was last written, and judged again just before the deletion.
    ///
    /// Why a guard on top: the window says nothing of an old blob that this process's own
    /// clients use again while the sweep runs (a push that finds the layer present and
    /// skips its upload, a mount, a pull). While a sweep runs, every digest asked about
    /// through [`BlobStore::size`], [`BlobStore::read`], [`BlobStore::read_all`],
    /// [`BlobStore::put`] and [`BlobStore::finish`] (the digest published),
    /// [`BlobStore::link`], [`BlobStore::is_linked`] and [`MirrorSink::publish`](super::MirrorSink::publish) is
    /// noted, and each deletion decides and deletes under the same lock as the noting. So
    /// either the question came first and the blob is kept, or the deletion came first
    /// and the question finds no blob (a client then uploads it again): never "present"
    /// and then deleted. Questions already under way when the sweep starts are waited for
    /// before anything is deleted. The lock is held for one blob's decision and deletion,
    /// never across the sweep. The guard covers this process only; other processes rely
    /// on the grace window.
    ///
    /// Links: a link is removed only with the blob this sweep removed, never merely
    /// because no blob is stored under its digest, because manifests are linked into their
    /// repositories too and are stored in the metadata store, not here. A link is kept
    /// when its digest was asked about during the sweep or its blob was stored again.
    /// Referrers (`referrers/<repository>/<subject>/<referrer>`) are never touched: a
    /// referrer is a manifest, which lives in the metadata store, so no blob's absence says
    /// anything about it.
    ///
    /// A second sweep waits for the first to end.
    pub async fn sweep(&self, live: &(dyn Fn(&Digest) -> bool + Send + Sync), options: &SweepOptions) -> Result<SweepReport> {
        let _running = self.guard.running.lock().await;
        let _sweeping = self.guard.begin().await;
        let mut report = SweepReport::default();
        let mut removed = Removed::default();
        let started = SystemTime::now();
        let mut listing = self.store.list(Some(&Path::from("blobs")));
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(err) => return Err(err.into()),
            };
            let Some(digest) = blob_digest(&meta.location) else {
                continue;
            };
            if live(&digest) {
                report.kept_live += 1;
                continue;
            }
            if age(&meta, started) <= options.grace {
                report.kept_young += 1;
                report.kept_young_bytes += meta.size;
                continue;
            }
            match self.remove_unused(&digest, options).await? {
                Decision::Removed(size) => {
                    report.blobs_removed += 1;
                    report.bytes_freed += size;
                    if report.removed.len() < SWEEP_LISTED {
                        report.removed.push((digest.clone(), size));
                    } else {
                        report.removed_truncated = true;
                    }
                    removed.insert(&digest);
                }
                Decision::InUse => report.kept_in_use += 1,
                Decision::Young(size) => {
                    report.kept_young += 1;
                    report.kept_young_bytes += size;
                }
                Decision::Gone => {}
            }
        }
        if report.blobs_removed > 0 {
            report.links_removed = self.remove_entries_of("links", &removed, options).await?;
            report.unlinked_removed = self.remove_entries_of("unlinked", &removed, options).await?;
        }
        report.uploads_removed = if options.dry_run {
            let abandoned = self.abandoned(options.upload_age).await?;
            abandoned.iter().filter(|(name, is_dir)| if *is_dir { is_upload_id(name) } else { name.starts_with("mirror-") }).count() as u64
        } else {
            self.remove_abandoned(options.upload_age).await? as u64
        };
        Ok(report)
    }

    /// Removes the blob `digest` unless it was asked about during the sweep or written
    /// again since it was listed: one decision and one deletion under the guard's lock.
    async fn remove_unused(&self, digest: &Digest, options: &SweepOptions) -> Result<Decision> {
        let touched = self.guard.touched.lock().await;
        if touched.contains(digest) {
            return Ok(Decision::InUse);
        }
        let path = blob_path(digest);
        // Looked at again: the listing may be a while old, and another process may have
        // stored the blob again since (or, on S3, found it present).
        let Some((size, written)) = self.last_written(digest).await? else {
            return Ok(Decision::Gone);
        };
        if age_of(written, SystemTime::now()) <= options.grace {
            return Ok(Decision::Young(size));
        }
        if !options.dry_run {
            match self.store.delete(&path).await {
                Ok(()) => {}
                Err(object_store::Error::NotFound { .. }) => return Ok(Decision::Gone),
                Err(err) => return Err(err.into()),
            }
            if self.shared() {
                self.remove_if_present(&touched_path(digest)).await?;
            }
        }
        drop(touched);
        Ok(Decision::Removed(size))
    }

    /// Removes the entries `<top>/<repository>/<hex>` of the blobs removed, unless their
    /// digest was asked about during the sweep or their blob is stored again. Returns how
    /// many were removed (would be, in a dry run).
    async fn remove_entries_of(&self, top: &str, removed: &Removed, options: &SweepOptions) -> Result<u64> {
        let mut count = 0;
        let mut listing = self.store.list(Some(&Path::from(top)));
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(err) => return Err(err.into()),
            };
            let Some((_, hex)) = repository_entry(&meta.location, top) else {
                continue;
            };
            if !removed.contains(&hex) {
                continue;
            }
            let touched = self.guard.touched.lock().await;
            if digests_of(&hex).any(|digest| touched.contains(&digest)) {
                continue;
            }
            if options.dry_run {
                count += 1;
                continue;
            }
            if self.stored(&hex).await? {
                continue;
            }
            match self.store.delete(&meta.location).await {
                Ok(()) => count += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(err.into()),
            }
            drop(touched);
        }
        Ok(count)
    }

    /// Whether a blob with the encoded digest `hex` is stored, under either algorithm.
    async fn stored(&self, hex: &str) -> Result<bool> {
        for digest in digests_of(hex) {
            if self.exists(&blob_path(&digest)).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reads the blob `digest` whole and hashes it with the digest's algorithm.
    pub async fn verify(&self, digest: &Digest) -> Result<BlobCheck> {
        let Some(read) = self.read(digest, None).await? else {
            return Ok(BlobCheck::Missing);
        };
        let mut hasher = Hasher::for_algorithm(digest.algorithm());
        let mut body = read.body;
        while let Some(chunk) = body.next().await {
            hasher.update(&chunk?);
        }
        let actual = hasher.finish();
        Ok(if actual == *digest { BlobCheck::Intact { size: read.size } } else { BlobCheck::Corrupt { size: read.size, actual } })
    }

    /// The links (`links/<repository>/<hex>`) under which no blob is stored, as
    /// (repository, encoded digest), as the listing yields them. Manifests are linked too
    /// and are not stored here: a caller reporting broken links drops the ones that name a
    /// manifest the metadata store has.
    pub fn dangling_links(&self) -> impl Stream<Item = Result<(String, String)>> + Send + 'static {
        let this = self.clone();
        self.store.list(Some(&Path::from("links"))).map_err(BlobError::from).try_filter_map(move |meta| {
            let this = this.clone();
            async move {
                let Some((repository, hex)) = repository_entry(&meta.location, "links") else {
                    return Ok(None);
                };
                Ok(if this.stored(&hex).await? { None } else { Some((repository, hex)) })
            }
        })
    }

    /// Removes the blob `digest` whatever uses it (fsck's repair of a corrupt blob: a
    /// pull-through repository fetches it again). The deletion holds the sweep guard's
    /// lock, so a question during a sweep comes wholly before or after it. Returns whether
    /// a blob was stored.
    pub async fn remove_blob(&self, digest: &Digest) -> Result<bool> {
        let _decision = self.guard.touched.lock().await;
        match self.store.delete(&blob_path(digest)).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// How many blobs are stored and their bytes, counted as the listing streams by.
    pub async fn blobs_total(&self) -> Result<(u64, u64)> {
        let mut listing = self.store.list(Some(&Path::from("blobs")));
        let (mut count, mut bytes) = (0u64, 0u64);
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(err) => return Err(err.into()),
            };
            if blob_digest(&meta.location).is_some() {
                count += 1;
                bytes += meta.size;
            }
        }
        Ok((count, bytes))
    }
}

#[cfg(test)]
mod tests;
