//! Blob storage: layers, configs and manifests named by their digest, on `object_store`:
//! the local filesystem by default, or S3-compatible storage shared by several servers
//! ([`BlobStore::open_s3`]). The layout is the same on both.
//!
//! Layout under the store's root:
//! - `blobs/<algorithm>/<first two hex>/<hex>`: content, written once, visible only after
//!   its digest was checked (an upload is renamed into place).
//! - `uploads/<id>/info` and `uploads/<id>/<offset>`: an upload in progress, one object
//!   per chunk received, so that an upload survives a restart and resumes at its size.
//! - `links/<repository>/<hex>`: the blobs and manifests pushed to (or mounted into) a
//!   repository; a repository sees only what is linked to it or what its images name.
//! - `unlinked/<repository>/<hex>`: blobs deleted from a repository, which it no longer
//!   serves even where one of its images names them (until they are linked again).
//! - `referrers/<repository>/<subject hex>/<referrer hex>`: the descriptor of a manifest
//!   whose `subject` is the subject (the OCI referrers API).
//! - `touched/<algorithm>/<hex>` (S3 only): when a blob was last found present by a
//!   client, which the sweep's grace window counts from (on the filesystem the blob
//!   file's own time is set instead).
//!
//! Blobs being mirrored from another registry ([`MirrorSink`]) are written, on the
//! filesystem, to `uploads/mirror-<id>`, which readers follow as it grows and which is
//! renamed into place when its digest checks out; on S3, straight to the blob's own name
//! as a multipart upload, which S3 shows only once it is completed (after the check):
//! nothing of a download is kept on the server's own disk.
//!
//! Nothing here knows image streams or HTTP: callers pass repository names they have
//! validated and streams of bytes.
//!
//! `sweep.rs` removes what nothing uses any more (an online garbage collection, safe
//! beside this process's own requests) and holds the checks `berth adm fsck` runs.

mod sweep;

pub use sweep::{BlobCheck, SWEEP_LISTED, SweepOptions, SweepReport};

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_model::Digest;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::Digest as _;

/// Bytes gathered into one part of a write, and parts written at once: an upload holds at
/// most about their product in memory (object_store's default, 5 MiB parts, would hold
/// 20 MiB per upload). S3 takes no part smaller than 5 MiB but the last.
const WRITE_PART: usize = 1 << 20;
const WRITE_PART_S3: usize = 5 << 20;
const WRITES_IN_FLIGHT: usize = 2;

/// Bytes of a blob sent per slice of its mapping (no memory of its own: the slices are
/// the page cache's).
const READ_CHUNK: usize = 2 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("upload {0} is not known: it was finished, cancelled or cleaned up; start a new upload")]
    UnknownUpload(String),
    #[error("the chunk starts at byte {start} but the upload has {size} bytes: resume at byte {size}")]
    OutOfOrder { start: u64, size: u64 },
    #[error("the content hashes to {actual}, not {expected}: nothing was stored")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("the request body broke off: {0}")]
    Body(String),
    #[error("blob storage failed: {0}")]
    Storage(String),
}

impl From<object_store::Error> for BlobError {
    fn from(err: object_store::Error) -> BlobError {
        BlobError::Storage(err.to_string())
    }
}

impl From<std::io::Error> for BlobError {
    fn from(err: std::io::Error) -> BlobError {
        BlobError::Storage(err.to_string())
    }
}

pub type Result<T, E = BlobError> = std::result::Result<T, E>;

/// A stream of bytes going in or out.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// A blob being read: its whole size, the range sent, and the bytes.
pub struct BlobRead {
    pub size: u64,
    pub range: std::ops::Range<u64>,
    pub body: ByteStream,
}

/// An upload in progress.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Upload {
    pub id: String,
    /// The repository the upload was started in.
    pub repository: String,
    /// Bytes received so far.
    #[serde(skip)]
    pub size: u64,
}

/// Hashing state for the algorithm of a digest (sha256 or sha512).
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn for_algorithm(algorithm: &str) -> Hasher {
        match algorithm {
            "sha512" => Hasher::Sha512(sha2::Sha512::new()),
            _ => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let text = match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        };
        text.parse().expect("a computed digest is valid")
    }
}

/// What this process knows of an upload, behind the upload's own lock: every write to an
/// upload (a chunk, the finish, a cancel) holds it from its first look at the upload to
/// its last change, so two requests can never both write at one offset, and the running
/// hash is always the hash of exactly the chunks stored (it is advanced with the bytes
/// handed to the chunk's writer, and kept only when that chunk was stored whole).
#[derive(Default)]
struct UploadState {
    /// Bytes stored so far, once this process has counted them.
    size: Option<u64>,
    /// The sha256 of those bytes, when this process saw all of them arrive (not after a
    /// restart: then finishing hashes the stored chunks).
    sha256: Option<Hasher>,
    /// On shared storage, the chunks this process stored, each with its entity tag: the
    /// hash is trusted at the finish only when the stored chunks are exactly these (a
    /// client may send one upload's chunks to several servers).
    stored: Vec<StoredChunk>,
}

/// A chunk as the store describes it: where, how long, which version.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StoredChunk {
    path: Path,
    size: u64,
    e_tag: Option<String>,
}

type UploadLock = Arc<tokio::sync::Mutex<UploadState>>;

/// The blob store. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    backend: Arc<Backend>,
    uploads: Arc<Mutex<HashMap<String, UploadLock>>>,
    reads: ReadPool,
    /// The blobs asked about while a sweep runs (see [`BlobStore::sweep`]).
    guard: Arc<sweep::SweepGuard>,
}

/// Where the bytes are.
enum Backend {
    /// Files under `root`, this server's alone (the data directory is locked).
    Local { root: PathBuf },
    /// An S3 bucket, under `prefix`, which other servers may share.
    S3 { s3: AmazonS3, prefix: Path },
}

/// A blob mirrored from another registry, being written as it downloads. The caller
/// checks the digest of what it wrote, then [`publishes`](MirrorSink::publish) it, or
/// [`discards`](MirrorSink::discard) it; until then no reader sees it as the blob.
pub struct MirrorSink {
    store: BlobStore,
    digest: Digest,
    to: MirrorTo,
}

enum MirrorTo {
    /// A file under `uploads/`, which readers may follow as it grows, renamed into place.
    File { name: String, file: PathBuf, out: tokio::fs::File },
    /// A multipart upload to the blob's own name (S3 shows it only when completed).
    Object { writer: WriteMultipart },
}

impl MirrorSink {
    /// The local file that holds what was written so far, for readers to follow (on the
    /// filesystem; on S3 there is none).
    pub fn file(&self) -> Option<&FsPath> {
        match &self.to {
            MirrorTo::File { file, .. } => Some(file),
            MirrorTo::Object { .. } => None,
        }
    }

    /// Adds `bytes` (a file's readers may read them once this returns).
    pub async fn write(&mut self, bytes: Bytes) -> Result<()> {
        match &mut self.to {
            MirrorTo::File { out, .. } => {
                tokio::io::AsyncWriteExt::write_all(out, &bytes).await?;
                // tokio hands writes to a blocking thread: flush so that readers can read
                // every byte announced.
                tokio::io::AsyncWriteExt::flush(out).await?;
            }
            MirrorTo::Object { writer } => {
                writer.wait_for_capacity(WRITES_IN_FLIGHT).await?;
                writer.put(bytes);
            }
        }
        Ok(())
    }

    /// Makes what was written the blob (its digest checked by the caller). A file is
    /// synced and renamed into place (readers that opened it keep reading it); an upload
    /// is completed.
    pub async fn publish(self) -> Result<()> {
        let _touch = self.store.guard.touch(&self.digest).await;
        match self.to {
            MirrorTo::File { name, out, .. } => {
                out.sync_all().await?;
                drop(out);
                self.store.store.rename(&Path::from(format!("uploads/{name}")), &blob_path(&self.digest)).await?;
            }
            MirrorTo::Object { writer } => {
                writer.finish().await?;
            }
        }
        Ok(())
    }

    /// Drops what was written: the file is removed, the upload aborted.
    pub async fn discard(self) {
        match self.to {
            MirrorTo::File { file, out, .. } => {
                drop(out);
                let _ = tokio::fs::remove_file(file).await;
            }
            MirrorTo::Object { writer } => {
                let _ = writer.abort().await;
            }
        }
    }
}

fn blob_path(digest: &Digest) -> Path {
    let hex = digest.encoded();
    Path::from(format!("blobs/{}/{}/{hex}", digest.algorithm(), &hex[..2]))
}

fn link_path(repository: &str, digest: &Digest) -> Path {
    Path::from(format!("links/{repository}/{}", digest.encoded()))
}

fn touched_path(digest: &Digest) -> Path {
    Path::from(format!("touched/{}/{}", digest.algorithm(), digest.encoded()))
}

fn unlinked_path(repository: &str, digest: &Digest) -> Path {
    Path::from(format!("unlinked/{repository}/{}", digest.encoded()))
}

fn upload_dir(id: &str) -> Path {
    Path::from(format!("uploads/{id}"))
}

fn chunk_path(id: &str, offset: u64) -> Path {
    Path::from(format!("uploads/{id}/{offset:020}"))
}

fn is_upload_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id)
}

impl BlobStore {
    /// Blob storage in a local directory. With `fsync`, every blob is on disk before it
    /// is acknowledged.
    pub fn open_local(root: &FsPath, fsync: bool) -> Result<BlobStore> {
        std::fs::create_dir_all(root.join("uploads"))?;
        let store = LocalFileSystem::new_with_prefix(root)?.with_fsync(fsync);
        BlobStore::new(Arc::new(store), Backend::Local { root: root.to_path_buf() })
    }

    /// Blob storage in an S3 bucket (`s3://bucket/prefix`), which several servers may
    /// share. The connection is configured as AWS tools are, from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL` for
    /// another S3-compatible server, `AWS_ALLOW_HTTP` for one on plain HTTP), with
    /// `options` (the same keys, in lower case) over it.
    pub fn open_s3(url: &str, options: &[(String, String)]) -> Result<BlobStore> {
        let parsed = url::Url::parse(url).map_err(|err| BlobError::Storage(format!("the blob store URL {url:?}: {err}")))?;
        if parsed.scheme() != "s3" || parsed.host_str().is_none_or(str::is_empty) {
            return Err(BlobError::Storage(format!("the blob store URL {url:?} is not s3://BUCKET[/PREFIX]")));
        }
        let mut builder = AmazonS3Builder::from_env().with_url(url);
        for (key, value) in options {
            let key: AmazonS3ConfigKey = key.to_ascii_lowercase().parse()?;
            builder = builder.with_config(key, value);
        }
        let s3 = builder.build()?;
        let prefix = Path::from(parsed.path().trim_matches('/'));
        let store = PrefixStore::new(s3.clone(), prefix.clone());
        BlobStore::new(Arc::new(store), Backend::S3 { s3, prefix })
    }

    fn new(store: Arc<dyn ObjectStore>, backend: Backend) -> Result<BlobStore> {
        Ok(BlobStore { store, backend: Arc::new(backend), uploads: Arc::default(), reads: ReadPool::start()?, guard: Arc::default() })
    }

    /// Whether other servers may write here too (S3), so that what this process
    /// remembers of an upload may be out of date.
    fn shared(&self) -> bool {
        matches!(*self.backend, Backend::S3 { .. })
    }

    fn part_size(&self) -> usize {
        if self.shared() { WRITE_PART_S3 } else { WRITE_PART }
    }

    /// Whether the storage answers: a look at one name (absent or not), for readiness.
    pub async fn probe(&self) -> Result<()> {
        match self.store.head(&Path::from("probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// A URL that lets its holder GET the blob `digest` straight from the object store
    /// for `expires_in` (an S3 presigned URL), or `None` where the storage has no such URLs
    /// (the filesystem). The caller checks access first: the URL is the permission.
    pub async fn signed_url(&self, digest: &Digest, expires_in: Duration) -> Result<Option<String>> {
        let Backend::S3 { s3, prefix } = &*self.backend else {
            return Ok(None);
        };
        let path: Path = prefix.parts().chain(blob_path(digest).parts()).collect();
        let url = s3.signed_url(object_store::signer::Method::GET, &path, expires_in).await?;
        Ok(Some(url.to_string()))
    }

    /// The size of a stored blob, or `None`.
    pub async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        let _touch = self.guard.touch(digest).await;
        match self.store.head(&blob_path(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Marks a stored blob as just written when it was last written longer ago than
    /// `older_than`, so that a sweep's grace window covers a client that found it present
    /// (a HEAD before skipping an upload, a mount) and pushes its manifest later. Cheap
    /// for blobs written recently: one look at the file's time. Returns whether it was
    /// refreshed.
    pub async fn refresh(&self, digest: &Digest, older_than: Duration) -> Result<bool> {
        let _touch = self.guard.touch(digest).await;
        let root = match &*self.backend {
            Backend::Local { root } => root,
            Backend::S3 { .. } => {
                // An object cannot be given a new time without writing it again: a small
                // object beside it says when it was last found present.
                let Some((_, written)) = self.last_written(digest).await? else {
                    return Ok(false);
                };
                if sweep::age_of(written, std::time::SystemTime::now()) <= older_than {
                    return Ok(false);
                }
                self.store.put(&touched_path(digest), PutPayload::default()).await?;
                return Ok(true);
            }
        };
        let file = root.join(blob_path(digest).as_ref());
        tokio::task::spawn_blocking(move || {
            let now = std::time::SystemTime::now();
            let modified = match std::fs::metadata(&file).and_then(|meta| meta.modified()) {
                Ok(modified) => modified,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(err) => return Err(err),
            };
            if now.duration_since(modified).unwrap_or_default() <= older_than {
                return Ok(false);
            }
            std::fs::File::options().write(true).open(&file)?.set_modified(now)?;
            Ok(true)
        })
        .await
        .map_err(|err| BlobError::Storage(err.to_string()))?
        .map_err(Into::into)
    }

    /// The size of the blob `digest` and when it was last written or (on S3) found
    /// present, or `None` when it is not stored.
    async fn last_written(&self, digest: &Digest) -> Result<Option<(u64, chrono::DateTime<chrono::Utc>)>> {
        let blob = match self.store.head(&blob_path(digest)).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        if !self.shared() {
            return Ok(Some((blob.size, blob.last_modified)));
        }
        match self.store.head(&touched_path(digest)).await {
            Ok(touched) => Ok(Some((blob.size, blob.last_modified.max(touched.last_modified)))),
            Err(object_store::Error::NotFound { .. }) => Ok(Some((blob.size, blob.last_modified))),
            Err(err) => Err(err.into()),
        }
    }

    /// Reads a stored blob, the whole of it or `range` (`start..end`, clamped to the
    /// blob). `None` when the blob is not stored.
    pub async fn read(&self, digest: &Digest, range: Option<std::ops::Range<u64>>) -> Result<Option<BlobRead>> {
        // Once the file is open, a sweep removing its name no longer takes its bytes away.
        let _touch = self.guard.touch(digest).await;
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let result = match self.store.get_opts(&blob_path(digest), options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let (size, range) = (result.meta.size, result.range.clone());
        let body = match result.payload {
            GetResultPayload::File(file, _) => self.reads.stream(file, range.clone()),
            GetResultPayload::Stream(stream) => stream.map_err(std::io::Error::other).boxed(),
        };
        Ok(Some(BlobRead { size, range, body }))
    }

    /// Reads a whole small blob (an image config) into memory.
    pub async fn read_all(&self, digest: &Digest, max: u64) -> Result<Option<Bytes>> {
        // Noted across both looks, so that no sweep removes the blob between them.
        let _touch = self.guard.touch(digest).await;
        match self.size(digest).await? {
            None => Ok(None),
            Some(size) if size > max => {
                Err(BlobError::Storage(format!("the blob {digest} has {size} bytes, more than {max} allowed here")))
            }
            Some(_) => Ok(Some(self.store.get(&blob_path(digest)).await?.bytes().await?)),
        }
    }

    /// Stores content whose digest the caller knows: hashed as it is written, and visible
    /// only when it matches. Returns its size. (A running sweep notes the digest as it is
    /// published, in [`BlobStore::finish`].)
    pub async fn put(&self, digest: &Digest, body: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static) -> Result<u64> {
        let upload = self.start_upload("").await?;
        self.append(&upload.id, "", None, body).await?;
        self.finish(&upload.id, "", digest).await
    }

    /// Whether `digest` was pushed to or mounted into `repository`.
    pub async fn is_linked(&self, repository: &str, digest: &Digest) -> Result<bool> {
        let _touch = self.guard.touch(digest).await;
        self.exists(&link_path(repository, digest)).await
    }

    /// Whether `digest` was deleted from `repository` (and not pushed or mounted there
    /// again since): the repository no longer serves it, even where one of its images
    /// names it.
    pub async fn is_unlinked(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.exists(&unlinked_path(repository, digest)).await
    }

    async fn exists(&self, path: &Path) -> Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Links `digest` into `repository` (a push or a mount).
    pub async fn link(&self, repository: &str, digest: &Digest) -> Result<()> {
        let _touch = self.guard.touch(digest).await;
        self.store.put(&link_path(repository, digest), PutPayload::default()).await?;
        self.remove_if_present(&unlinked_path(repository, digest)).await
    }

    /// Forgets `digest` in `repository` (a manifest deleted by digest).
    pub async fn unlink(&self, repository: &str, digest: &Digest) -> Result<()> {
        self.remove_if_present(&link_path(repository, digest)).await
    }

    /// Deletes a blob from `repository`: it is unlinked and no longer served there. Its
    /// bytes stay for the other repositories that link it (pruning removes bytes nothing
    /// links). Returns whether the repository had it linked.
    pub async fn delete_from(&self, repository: &str, digest: &Digest) -> Result<bool> {
        let linked = self.is_linked(repository, digest).await?;
        self.store.put(&unlinked_path(repository, digest), PutPayload::default()).await?;
        self.unlink(repository, digest).await?;
        Ok(linked)
    }

    async fn remove_if_present(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Starts an upload into `repository`.
    pub async fn start_upload(&self, repository: &str) -> Result<Upload> {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let upload = Upload { id: id.clone(), repository: repository.to_string(), size: 0 };
        let info = serde_json::to_vec(&upload).expect("an upload serialises");
        self.store.put(&Path::from(format!("uploads/{id}/info")), PutPayload::from(info)).await?;
        let state = UploadState { size: Some(0), sha256: Some(Hasher::for_algorithm("sha256")), stored: Vec::new() };
        self.uploads.lock().expect("upload map lock").insert(id, Arc::new(tokio::sync::Mutex::new(state)));
        Ok(upload)
    }

    /// The lock of upload `id` (made when this process has none yet).
    fn upload_lock(&self, id: &str) -> UploadLock {
        Arc::clone(self.uploads.lock().expect("upload map lock").entry(id.to_string()).or_default())
    }

    fn forget_upload(&self, id: &str) {
        self.uploads.lock().expect("upload map lock").remove(id);
    }

    /// An upload of `repository` and how many bytes it has stored, or `None` when that
    /// repository has no such upload. While a chunk is arriving the size is the one before it.
    pub async fn upload(&self, id: &str, repository: &str) -> Result<Option<Upload>> {
        if !self.is_upload_of(id, repository).await? {
            return Ok(None);
        }
        let known = self.uploads.lock().expect("upload map lock").get(id).and_then(|lock| lock.try_lock().ok().and_then(|s| s.size));
        let size = match known {
            Some(size) => size,
            None => self.stored_size(id).await?,
        };
        Ok(Some(Upload { id: id.to_string(), repository: repository.to_string(), size }))
    }

    async fn stored_size(&self, id: &str) -> Result<u64> {
        Ok(self.chunks(id).await?.iter().map(|chunk| chunk.size).sum())
    }

    /// Whether `id` is an upload started in `repository` (an upload is known only in the
    /// repository it was started in).
    async fn is_upload_of(&self, id: &str, repository: &str) -> Result<bool> {
        if !is_upload_id(id) {
            return Ok(false);
        }
        let info = match self.store.get(&Path::from(format!("uploads/{id}/info"))).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(err) => return Err(err.into()),
        };
        let upload: Upload = serde_json::from_slice(&info).map_err(|err| BlobError::Storage(format!("upload {id}: {err}")))?;
        Ok(upload.repository == repository)
    }

    /// Takes upload `id`'s lock once it is checked to be an upload of `repository`.
    async fn lock_upload(&self, id: &str, repository: &str) -> Result<tokio::sync::OwnedMutexGuard<UploadState>> {
        if !is_upload_id(id) {
            return Err(BlobError::UnknownUpload(id.to_string()));
        }
        let guard = self.upload_lock(id).lock_owned().await;
        // Checked under the lock: a finish or cancel that held it may have removed the upload.
        if !self.is_upload_of(id, repository).await? {
            drop(guard);
            self.forget_upload(id);
            return Err(BlobError::UnknownUpload(id.to_string()));
        }
        Ok(guard)
    }

    /// The chunks of an upload, in order.
    async fn chunks(&self, id: &str) -> Result<Vec<StoredChunk>> {
        let mut chunks: Vec<StoredChunk> = self
            .store
            .list(Some(&upload_dir(id)))
            .try_filter_map(|meta| async move {
                let is_chunk = meta.location.filename().is_some_and(|name| name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()));
                Ok(is_chunk.then_some(StoredChunk { path: meta.location, size: meta.size, e_tag: meta.e_tag }))
            })
            .try_collect()
            .await?;
        chunks.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(chunks)
    }

    /// Appends a chunk to an upload. `start`, when given (a `Content-Range`), must be the
    /// upload's size. Returns the new size. A chunk that breaks off is not kept. Chunks of
    /// one upload are written one at a time: a second request waits for the first, then
    /// finds the upload at its new size.
    pub async fn append(
        &self,
        id: &str,
        repository: &str,
        start: Option<u64>,
        body: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    ) -> Result<u64> {
        let mut state = self.lock_upload(id, repository).await?;
        let size = match state.size {
            Some(size) if !self.shared() => size,
            remembered => {
                // On shared storage another server may have taken chunks of this upload
                // since: the stored chunks say where it stands.
                let size = self.stored_size(id).await?;
                if remembered != Some(size) {
                    state.sha256 = None;
                }
                state.size = Some(size);
                size
            }
        };
        if let Some(start) = start
            && start != size
        {
            return Err(BlobError::OutOfOrder { start, size });
        }
        // The hash advances on a copy, kept only once the chunk is stored whole.
        let mut hasher = state.sha256.clone();
        let mut writer: Option<WriteMultipart> = None;
        let mut written = 0u64;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(err) => {
                    if let Some(writer) = writer {
                        let _ = writer.abort().await;
                    }
                    return Err(BlobError::Body(err.to_string()));
                }
            };
            if chunk.is_empty() {
                continue;
            }
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&chunk);
            }
            if writer.is_none() {
                writer =
                    Some(WriteMultipart::new_with_chunk_size(self.store.put_multipart(&chunk_path(id, size)).await?, self.part_size()));
            }
            let writer = writer.as_mut().expect("the writer was just made");
            writer.wait_for_capacity(WRITES_IN_FLIGHT).await?;
            written += chunk.len() as u64;
            writer.put(chunk);
        }
        if let Some(writer) = writer {
            let stored = writer.finish().await?;
            if self.shared() {
                state.stored.push(StoredChunk { path: chunk_path(id, size), size: written, e_tag: stored.e_tag });
            }
        }
        state.size = Some(size + written);
        state.sha256 = hasher;
        Ok(size + written)
    }

    /// Finishes an upload: the bytes stored must hash to `digest`; then they become the
    /// blob (replacing whatever was stored under that digest: only bytes just checked are
    /// ever published) and the upload is gone. Returns the blob's size. On a mismatch the
    /// upload is removed and nothing is stored.
    pub async fn finish(&self, id: &str, repository: &str, digest: &Digest) -> Result<u64> {
        let state = self.lock_upload(id, repository).await?;
        let result = self.publish_upload(id, digest, &state).await;
        // Finished or refused, the upload is over.
        let removed = self.remove_upload(id).await;
        drop(state);
        self.forget_upload(id);
        let size = result?;
        removed?;
        Ok(size)
    }

    async fn publish_upload(&self, id: &str, digest: &Digest, state: &UploadState) -> Result<u64> {
        let chunks = self.chunks(id).await?;
        let size: u64 = chunks.iter().map(|chunk| chunk.size).sum();
        // The running hash covers exactly the stored chunks (see `UploadState`); on shared
        // storage only when they are the very chunks this process stored.
        let hashed = state.size == Some(size) && (!self.shared() || (state.stored == chunks && chunks.iter().all(|c| c.e_tag.is_some())));
        let actual = match &state.sha256 {
            Some(sha256) if hashed && digest.algorithm() == "sha256" => sha256.clone().finish(),
            _ => {
                let mut hasher = Hasher::for_algorithm(digest.algorithm());
                for chunk in &chunks {
                    let mut stream = self.store.get(&chunk.path).await?.into_stream();
                    while let Some(bytes) = stream.next().await {
                        hasher.update(&bytes?);
                    }
                }
                hasher.finish()
            }
        };
        if actual != *digest {
            return Err(BlobError::DigestMismatch { expected: digest.clone(), actual });
        }
        let staged = match chunks.as_slice() {
            [] => None,
            [only] => Some(only.path.clone()),
            many => {
                let assembled = Path::from(format!("uploads/{id}/assembled"));
                let mut writer = WriteMultipart::new_with_chunk_size(self.store.put_multipart(&assembled).await?, self.part_size());
                for chunk in many {
                    let mut stream = self.store.get(&chunk.path).await?.into_stream();
                    while let Some(bytes) = stream.next().await {
                        writer.wait_for_capacity(WRITES_IN_FLIGHT).await?;
                        writer.put(bytes?);
                    }
                }
                writer.finish().await?;
                Some(assembled)
            }
        };
        // Noted just before the blob appears, not earlier: a sweep starting waits for
        // what it did not see noted, and should not wait for the hashing above.
        let _touch = self.guard.touch(digest).await;
        let target = blob_path(digest);
        match staged {
            None => {
                self.store.put(&target, PutPayload::default()).await?;
            }
            Some(staged) => self.store.rename(&staged, &target).await?,
        }
        Ok(size)
    }

    /// Cancels an upload. Returns whether there was one.
    pub async fn cancel(&self, id: &str, repository: &str) -> Result<bool> {
        let state = match self.lock_upload(id, repository).await {
            Ok(state) => state,
            Err(BlobError::UnknownUpload(_)) => return Ok(false),
            Err(err) => return Err(err),
        };
        let removed = self.remove_upload(id).await;
        drop(state);
        self.forget_upload(id);
        removed.map(|()| true)
    }

    async fn remove_upload(&self, id: &str) -> Result<()> {
        let paths: Vec<Path> = self.store.list(Some(&upload_dir(id))).map_ok(|meta| meta.location).try_collect().await?;
        for path in paths {
            self.remove_if_present(&path).await?;
        }
        // The local filesystem keeps the emptied directory (and staging files of chunks
        // that broke off); both go with it.
        if let Backend::Local { root } = &*self.backend {
            let _ = std::fs::remove_dir_all(root.join("uploads").join(id));
        }
        Ok(())
    }

    /// Removes uploads (and abandoned mirror downloads) untouched for longer than `age`.
    /// An upload receiving a chunk now is left alone. Returns how many were removed.
    pub async fn remove_abandoned(&self, age: Duration) -> Result<usize> {
        let stale = self.abandoned(age).await?;
        let mut removed = 0;
        for (name, is_dir) in stale {
            if is_dir && is_upload_id(&name) {
                let Ok(state) = self.upload_lock(&name).try_lock_owned() else {
                    continue;
                };
                self.remove_upload(&name).await?;
                drop(state);
                self.forget_upload(&name);
                removed += 1;
            } else if let (false, true, Backend::Local { root }) = (is_dir, name.starts_with("mirror-"), &*self.backend) {
                let _ = std::fs::remove_file(root.join("uploads").join(&name));
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The uploads and mirror downloads untouched for longer than `age`: their names
    /// (an upload's id, a mirror file's name), and whether each is an upload.
    async fn abandoned(&self, age: Duration) -> Result<Vec<(String, bool)>> {
        let local = match &*self.backend {
            Backend::Local { root } => Some(root.join("uploads")),
            Backend::S3 { .. } => None,
        };
        let mut stale = tokio::task::spawn_blocking(move || {
            let mut stale = Vec::new();
            let now = std::time::SystemTime::now();
            for entry in local.iter().flat_map(std::fs::read_dir).flatten().flatten() {
                let newest = newest_change(&entry.path()).unwrap_or(now);
                if now.duration_since(newest).unwrap_or_default() > age {
                    let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                    stale.push((entry.file_name().to_string_lossy().into_owned(), is_dir));
                }
            }
            Ok::<_, std::io::Error>(stale)
        })
        .await
        .map_err(|err| BlobError::Storage(err.to_string()))??;
        if self.shared() {
            // Uploads are objects: each upload's newest one says when it was last touched.
            let mut newest: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
            let mut listing = self.store.list(Some(&Path::from("uploads")));
            while let Some(meta) = listing.next().await {
                let meta = meta?;
                if let Some(id) = meta.location.parts().nth(1) {
                    let time = newest.entry(id.as_ref().to_string()).or_insert(meta.last_modified);
                    *time = (*time).max(meta.last_modified);
                }
            }
            let now = std::time::SystemTime::now();
            stale.extend(newest.into_iter().filter(|(_, time)| sweep::age_of(*time, now) > age).map(|(id, _)| (id, true)));
        }
        Ok(stale)
    }

    /// Records that the manifest `referrer` (described by `descriptor`, a JSON OCI
    /// descriptor) refers to `subject` in `repository`.
    pub async fn add_referrer(&self, repository: &str, subject: &Digest, referrer: &Digest, descriptor: Vec<u8>) -> Result<()> {
        let path = Path::from(format!("referrers/{repository}/{}/{}", subject.encoded(), referrer.encoded()));
        self.store.put(&path, PutPayload::from(descriptor)).await?;
        Ok(())
    }

    pub async fn remove_referrer(&self, repository: &str, subject: &Digest, referrer: &Digest) -> Result<()> {
        let path = Path::from(format!("referrers/{repository}/{}/{}", subject.encoded(), referrer.encoded()));
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// The descriptors of the manifests that refer to `subject` in `repository`.
    pub async fn referrers(&self, repository: &str, subject: &Digest) -> Result<Vec<Bytes>> {
        let prefix = Path::from(format!("referrers/{repository}/{}", subject.encoded()));
        let mut paths: Vec<Path> = self.store.list(Some(&prefix)).map_ok(|meta| meta.location).try_collect().await?;
        paths.sort();
        let mut descriptors = Vec::with_capacity(paths.len());
        for path in paths {
            match self.store.get(&path).await {
                Ok(result) => descriptors.push(result.bytes().await?),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(descriptors)
    }

    /// Starts writing the blob `digest`, mirrored from another registry: see [`MirrorSink`].
    pub async fn mirror(&self, digest: &Digest) -> Result<MirrorSink> {
        let to = match &*self.backend {
            Backend::Local { root } => {
                let name = format!("mirror-{}", uuid::Uuid::new_v4());
                let file = root.join("uploads").join(&name);
                let out = tokio::fs::File::create(&file).await?;
                MirrorTo::File { name, file, out }
            }
            Backend::S3 { .. } => MirrorTo::Object {
                writer: WriteMultipart::new_with_chunk_size(self.store.put_multipart(&blob_path(digest)).await?, self.part_size()),
            },
        };
        Ok(MirrorSink { store: self.clone(), digest: digest.clone(), to })
    }
}

/// When anything under `path` last changed.
fn newest_change(path: &FsPath) -> std::io::Result<std::time::SystemTime> {
    let meta = std::fs::metadata(path)?;
    let mut newest = meta.modified()?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)?.flatten() {
            if let Ok(changed) = entry.metadata().and_then(|m| m.modified()) {
                newest = newest.max(changed);
            }
        }
    }
    Ok(newest)
}

/// Reads of stored blobs from local files. A blob file is mapped into memory (one
/// mapping per file, shared by every download of it) and sent in slices of the mapping,
/// so the bytes go from the page cache to the connection with no copy in between. The
/// pages of each slice are read in by a few threads of their own, which take one slice at
/// a time from a first-come queue: every download asks for its next slice only when its
/// connection took the previous one (and one ahead), so under many downloads each
/// advances in turn and none starves; a blob that is not in the page cache never stalls a
/// connection's worker; the threads never exceed [`READ_THREADS`] however many clients
/// pull; and the runtime's blocking threads (which the catalog's writes need) are never
/// held by a download.
#[derive(Clone)]
struct ReadPool {
    jobs: std::sync::mpsc::Sender<ReadJob>,
    mappings: Arc<Mutex<HashMap<FileId, std::sync::Weak<memmap2::Mmap>>>>,
}

/// A file's device and inode.
type FileId = (u64, u64);

struct ReadJob {
    map: Bytes,
    offset: usize,
    len: usize,
    reply: tokio::sync::oneshot::Sender<Bytes>,
}

/// Threads reading blob pages in, shared by every download.
const READ_THREADS: usize = 4;

/// A shared mapping as the owner of the `Bytes` that slice it.
struct Mapped(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl ReadPool {
    fn start() -> std::io::Result<ReadPool> {
        let (jobs, queue) = std::sync::mpsc::channel::<ReadJob>();
        let queue = Arc::new(Mutex::new(queue));
        for idx in 0..READ_THREADS {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new().name(format!("berth-blob-read-{idx}")).spawn(move || {
                loop {
                    // The lock is held only to take the next job, never while reading.
                    let job = match queue.lock().expect("blob read queue lock").recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    let _ = job.reply.send(resident(&job.map, job.offset, job.len));
                }
            })?;
        }
        Ok(ReadPool { jobs, mappings: Arc::default() })
    }

    /// The mapping of `file`, shared with every download of the same file.
    fn map(&self, file: &std::fs::File) -> std::io::Result<Bytes> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata()?;
        // A file's inode is not reused while a mapping of it lives, so (device, inode)
        // names its bytes for as long as the shared mapping exists.
        let key = (meta.dev(), meta.ino());
        let mut mappings = self.mappings.lock().expect("blob mapping lock");
        if let Some(shared) = mappings.get(&key).and_then(std::sync::Weak::upgrade) {
            return Ok(Bytes::from_owner(Mapped(shared)));
        }
        // SAFETY: a blob file is written once and made visible by a rename; it is never
        // written or truncated afterwards (a replacement is another file renamed over the
        // name, a removal unlinks it), so the mapping always holds the bytes that were
        // checked against the blob's digest.
        let shared = Arc::new(unsafe { memmap2::Mmap::map(file)? });
        mappings.retain(|_, mapping| mapping.strong_count() > 0);
        mappings.insert(key, Arc::downgrade(&shared));
        Ok(Bytes::from_owner(Mapped(shared)))
    }

    /// The bytes of `range` of `file`, a slice at a time as the consumer takes them.
    fn stream(&self, file: std::fs::File, range: std::ops::Range<u64>) -> ByteStream {
        if range.is_empty() {
            return futures::stream::empty().boxed();
        }
        let map = match self.map(&file) {
            Ok(map) if map.len() as u64 >= range.end => map,
            Ok(_) => {
                let short = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the blob file is shorter than its size");
                return futures::stream::once(async move { Err(short) }).boxed();
            }
            Err(err) => return futures::stream::once(async move { Err(err) }).boxed(),
        };
        let reader = Reader { pool: self.clone(), map, next: range.start as usize, end: range.end as usize, ahead: None };
        futures::stream::unfold(reader, |mut reader| async move { reader.next_chunk().await.map(|chunk| (chunk, reader)) }).boxed()
    }
}

/// One download's place in its blob, and the slice requested ahead of the consumer.
struct Reader {
    pool: ReadPool,
    map: Bytes,
    /// The first byte not yet requested.
    next: usize,
    end: usize,
    ahead: Option<tokio::sync::oneshot::Receiver<Bytes>>,
}

impl Reader {
    fn request(&mut self) -> Option<tokio::sync::oneshot::Receiver<Bytes>> {
        if self.next >= self.end {
            return None;
        }
        let len = (self.end - self.next).min(READ_CHUNK);
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = ReadJob { map: self.map.clone(), offset: self.next, len, reply };
        self.next += len;
        // A send fails only when the pool's threads are gone; the answer then says so.
        let _ = self.pool.jobs.send(job);
        Some(answer)
    }

    async fn next_chunk(&mut self) -> Option<std::io::Result<Bytes>> {
        let pending = match self.ahead.take() {
            Some(pending) => pending,
            None => self.request()?,
        };
        match pending.await {
            Ok(chunk) => {
                self.ahead = self.request();
                Some(Ok(chunk))
            }
            Err(_) => {
                self.next = self.end;
                Some(Err(std::io::Error::other("the blob reader stopped")))
            }
        }
    }
}

/// `len` bytes of `map` at `offset`, with their pages read in: one byte of each page is
/// touched, which brings a page from disk when the page cache does not have it.
fn resident(map: &Bytes, offset: usize, len: usize) -> Bytes {
    let chunk = map.slice(offset..offset + len);
    let mut touched = 0u8;
    for page in (0..len).step_by(4096) {
        touched ^= chunk[page];
    }
    std::hint::black_box(touched);
    chunk
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(bytes: &[u8]) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let chunks: Vec<std::io::Result<Bytes>> = bytes.chunks(7000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        futures::stream::iter(chunks)
    }

    async fn read_all(store: &BlobStore, digest: &Digest, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
        let read = store.read(digest, range).await.unwrap().expect("the blob is stored");
        read.body
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
            .unwrap()
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Where a test's blobs are: a local directory, or a bucket of a real S3 server.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Kind {
        Local,
        S3,
    }

    /// Storage for one test, which [`Fixture::open`] opens as many times as the test
    /// needs (another process after a restart, or another replica).
    struct Fixture {
        dir: tempfile::TempDir,
        bucket: Option<berth_testkit::s3::Bucket>,
    }

    impl Fixture {
        fn new(kind: Kind) -> Fixture {
            let bucket = match kind {
                Kind::Local => None,
                Kind::S3 => Some(berth_testkit::s3::bucket().expect("an S3 server for the tests")),
            };
            Fixture { dir: tempfile::tempdir().unwrap(), bucket }
        }

        fn open(&self) -> BlobStore {
            match &self.bucket {
                None => BlobStore::open_local(self.dir.path(), false).unwrap(),
                Some(bucket) => BlobStore::open_s3(&bucket.url, &bucket.options()).unwrap(),
            }
        }
    }

    async fn uploads_left(store: &BlobStore) -> usize {
        store.store.list(Some(&Path::from("uploads"))).try_collect::<Vec<_>>().await.unwrap().len()
    }

    /// Each test of both backends, as `<test>::local` and `<test>::s3`.
    macro_rules! on_both {
        ($($test:ident),* $(,)?) => {$(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn local() {
                    super::$test(super::Kind::Local).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn s3() {
                    super::$test(super::Kind::S3).await
                }
            }
        )*};
    }

    on_both!(
        content_is_visible_only_under_the_digest_it_hashes_to,
        an_upload_resumes_in_another_process_at_its_size,
        racing_chunks_at_one_offset_never_mix_the_stored_bytes_and_the_hash,
        a_verified_upload_replaces_bytes_stored_wrongly_under_its_digest,
        a_blob_deleted_from_a_repository_is_forgotten_there_until_linked_again,
        many_downloads_of_one_large_blob_each_get_every_byte,
        abandoned_uploads_are_removed_and_fresh_ones_kept,
        links_and_referrers_are_per_repository,
        a_mirror_download_becomes_the_blob_only_when_published,
    );

    async fn content_is_visible_only_under_the_digest_it_hashes_to(kind: Kind) {
        let fixture = Fixture::new(kind);
        let store = fixture.open();
        let bytes = content(600_000);
        let digest = Digest::sha256_of(&bytes);
        assert_eq!(store.put(&digest, body(&bytes)).await.unwrap(), 600_000);
        assert_eq!(read_all(&store, &digest, None).await, bytes);
        assert_eq!(read_all(&store, &digest, Some(1000..1010)).await, &bytes[1000..1010]);
        let wrong = Digest::sha256_of(b"something else");
        match store.put(&wrong, body(&bytes)).await {
            Err(BlobError::DigestMismatch { expected, actual }) => assert_eq!((expected, actual), (wrong.clone(), digest)),
            other => panic!("expected a digest mismatch, got {other:?}"),
        }
        assert_eq!(store.size(&wrong).await.unwrap(), None);
        assert_eq!(uploads_left(&store).await, 0, "the refused upload is gone");
    }

    async fn an_upload_resumes_in_another_process_at_its_size(kind: Kind) {
        let fixture = Fixture::new(kind);
        let bytes = content(300_000);
        let digest = Digest::sha256_of(&bytes);
        let id = {
            let first = fixture.open();
            let upload = first.start_upload("team/app").await.unwrap();
            assert_eq!(first.append(&upload.id, "team/app", Some(0), body(&bytes[..100_000])).await.unwrap(), 100_000);
            upload.id
        };
        // A new store on the same storage knows nothing in memory, as after a restart.
        let second = fixture.open();
        let upload = second.upload(&id, "team/app").await.unwrap().unwrap();
        assert_eq!(upload.size, 100_000);
        assert!(second.upload(&id, "team/other").await.unwrap().is_none(), "an upload is known only in its repository");
        match second.append(&id, "team/app", Some(50), body(b"x")).await {
            Err(BlobError::OutOfOrder { start: 50, size: 100_000 }) => {}
            other => panic!("expected an out-of-order chunk, got {other:?}"),
        }
        second.append(&id, "team/app", Some(100_000), body(&bytes[100_000..])).await.unwrap();
        assert_eq!(second.size(&digest).await.unwrap(), None, "not visible before it is finished");
        assert_eq!(second.finish(&id, "team/app", &digest).await.unwrap(), 300_000);
        assert_eq!(read_all(&second, &digest, None).await, bytes);
        assert!(second.upload(&id, "team/app").await.unwrap().is_none());
    }

    async fn racing_chunks_at_one_offset_never_mix_the_stored_bytes_and_the_hash(kind: Kind) {
        let fixture = Fixture::new(kind);
        let store = fixture.open();
        let (first, second) = (vec![1u8; 300_000], vec![2u8; 300_000]);
        for _ in 0..20 {
            let upload = store.start_upload("team/app").await.unwrap();
            let (a, b) = (store.clone(), store.clone());
            let (id_a, id_b) = (upload.id.clone(), upload.id.clone());
            let (bytes_a, bytes_b) = (first.clone(), second.clone());
            let racing_a = tokio::spawn(async move { a.append(&id_a, "team/app", Some(0), body(&bytes_a)).await });
            let racing_b = tokio::spawn(async move { b.append(&id_b, "team/app", Some(0), body(&bytes_b)).await });
            let (result_a, result_b) = (racing_a.await.unwrap(), racing_b.await.unwrap());
            // Exactly one chunk is taken at offset 0; the other finds the upload moved on.
            let won = match (result_a, result_b) {
                (Ok(300_000), Err(BlobError::OutOfOrder { start: 0, size: 300_000 })) => &first,
                (Err(BlobError::OutOfOrder { start: 0, size: 300_000 }), Ok(300_000)) => &second,
                other => panic!("expected one chunk taken and one refused, got {other:?}"),
            };
            let lost = if won == &first { &second } else { &first };
            // Finishing under the loser's digest stores nothing; under the winner's, its bytes.
            let retry = store.start_upload("team/app").await.unwrap();
            store.append(&retry.id, "team/app", Some(0), body(won)).await.unwrap();
            match store.finish(&retry.id, "team/app", &Digest::sha256_of(lost)).await {
                Err(BlobError::DigestMismatch { .. }) => {}
                other => panic!("expected a digest mismatch, got {other:?}"),
            }
            let digest = Digest::sha256_of(won);
            store.finish(&upload.id, "team/app", &digest).await.unwrap();
            assert_eq!(read_all(&store, &digest, None).await, *won);
        }
    }

    async fn a_verified_upload_replaces_bytes_stored_wrongly_under_its_digest(kind: Kind) {
        let fixture = Fixture::new(kind);
        let store = fixture.open();
        let bytes = content(70_000);
        let digest = Digest::sha256_of(&bytes);
        // Bytes that do not hash to the digest, as an older berth could have stored them.
        store.store.put(&blob_path(&digest), PutPayload::from_static(b"poison")).await.unwrap();
        store.put(&digest, body(&bytes)).await.unwrap();
        assert_eq!(read_all(&store, &digest, None).await, bytes, "the checked bytes replaced the wrong ones");
    }

    async fn a_blob_deleted_from_a_repository_is_forgotten_there_until_linked_again(kind: Kind) {
        let fixture = Fixture::new(kind);
        let store = fixture.open();
        let digest = Digest::sha256_of(b"layer");
        store.link("team/app", &digest).await.unwrap();
        store.link("team/other", &digest).await.unwrap();
        assert!(store.delete_from("team/app", &digest).await.unwrap());
        assert!(!store.is_linked("team/app", &digest).await.unwrap());
        assert!(store.is_unlinked("team/app", &digest).await.unwrap());
        assert!(store.is_linked("team/other", &digest).await.unwrap(), "other repositories keep it");
        assert!(!store.is_unlinked("team/other", &digest).await.unwrap());
        store.link("team/app", &digest).await.unwrap();
        assert!(!store.is_unlinked("team/app", &digest).await.unwrap(), "a new push brings it back");
    }

    async fn many_downloads_of_one_large_blob_each_get_every_byte(kind: Kind) {
        let fixture = Fixture::new(kind);
        let store = fixture.open();
        let bytes = content(3 * READ_CHUNK + 12_345);
        let digest = Digest::sha256_of(&bytes);
        store.put(&digest, body(&bytes)).await.unwrap();
        let downloads = (0..24).map(|i| {
            let (store, digest) = (store.clone(), digest.clone());
            let range = if i % 2 == 0 { None } else { Some(100..(2 * READ_CHUNK as u64 + 7)) };
            async move { (range.clone(), read_all(&store, &digest, range).await) }
        });
        for (range, got) in futures::future::join_all(downloads).await {
            match range {
                None => assert_eq!(got, bytes),
                Some(range) => assert_eq!(got, &bytes[range.start as usize..range.end as usize]),
            }
        }
    }

    async fn abandoned_uploads_are_removed_and_fresh_ones_kept(kind: Kind) {
        let fixture = Fixture::new(kind);
        let store = fixture.open();
        let old = store.start_upload("team/app").await.unwrap();
        store.append(&old.id, "team/app", None, body(b"partial")).await.unwrap();
        // S3 gives times to the second: the margins are wider than that.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let fresh = store.start_upload("team/app").await.unwrap();
        assert_eq!(store.remove_abandoned(Duration::from_secs(2)).await.unwrap(), 1);
        assert!(store.upload(&old.id, "team/app").await.unwrap().is_none());
        assert!(store.upload(&fresh.id, "team/app").await.unwrap().is_some());
    }

    async fn links_and_referrers_are_per_repository(kind: Kind) {
        let fixture = Fixture::new(kind);
        let store = fixture.open();
        let (blob, subject, referrer) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"s"), Digest::sha256_of(b"r"));
        store.link("team/app", &blob).await.unwrap();
        assert!(store.is_linked("team/app", &blob).await.unwrap());
        assert!(!store.is_linked("team/other", &blob).await.unwrap());
        store.unlink("team/app", &blob).await.unwrap();
        assert!(!store.is_linked("team/app", &blob).await.unwrap());
        store.add_referrer("team/app", &subject, &referrer, b"{\"d\":1}".to_vec()).await.unwrap();
        assert_eq!(store.referrers("team/app", &subject).await.unwrap(), vec![Bytes::from_static(b"{\"d\":1}")]);
        assert!(store.referrers("team/other", &subject).await.unwrap().is_empty());
        store.remove_referrer("team/app", &subject, &referrer).await.unwrap();
        assert!(store.referrers("team/app", &subject).await.unwrap().is_empty());
    }

    async fn a_mirror_download_becomes_the_blob_only_when_published(kind: Kind) {
        let fixture = Fixture::new(kind);
        let store = fixture.open();
        let bytes = content(WRITE_PART_S3 + 4321);
        let digest = Digest::sha256_of(&bytes);
        let mut sink = store.mirror(&digest).await.unwrap();
        for piece in bytes.chunks(300_000) {
            sink.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        assert_eq!(sink.file().is_some(), kind == Kind::Local, "a file to follow on the filesystem only");
        let file = sink.file().map(FsPath::to_path_buf);
        if let Some(file) = &file {
            assert_eq!(std::fs::read(file).unwrap(), bytes, "readers may follow the file");
        }
        assert_eq!(store.size(&digest).await.unwrap(), None, "not the blob before it is published");
        sink.publish().await.unwrap();
        assert_eq!(read_all(&fixture.open(), &digest, None).await, bytes, "another server reads it");
        assert!(file.is_none_or(|file| !file.exists()), "the download's file is gone");

        // A discarded one leaves nothing.
        let other = content(70_000);
        let other_digest = Digest::sha256_of(&other);
        let mut sink = store.mirror(&other_digest).await.unwrap();
        sink.write(Bytes::from(other)).await.unwrap();
        let file = sink.file().map(FsPath::to_path_buf);
        sink.discard().await;
        assert_eq!(store.size(&other_digest).await.unwrap(), None);
        assert!(file.is_none_or(|file| !file.exists()));
        assert_eq!(uploads_left(&store).await, 0);
    }

    /// On shared storage a client may send an upload's chunks to different servers in
    /// turn: each server finds where the upload stands, and the finish checks the stored
    /// bytes, not the hash of the chunks one server saw.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upload_whose_chunks_go_to_several_servers_is_stored_whole() {
        let fixture = Fixture::new(Kind::S3);
        let (a, b) = (fixture.open(), fixture.open());
        let bytes = content(90_000);
        let digest = Digest::sha256_of(&bytes);
        let upload = a.start_upload("team/app").await.unwrap();
        assert_eq!(a.append(&upload.id, "team/app", None, body(&bytes[..30_000])).await.unwrap(), 30_000);
        assert_eq!(b.append(&upload.id, "team/app", None, body(&bytes[30_000..60_000])).await.unwrap(), 60_000);
        // a remembers 30,000 bytes, but the upload has 60,000: the next chunk goes after them.
        assert_eq!(a.append(&upload.id, "team/app", None, body(&bytes[60_000..])).await.unwrap(), 90_000);
        assert_eq!(a.finish(&upload.id, "team/app", &digest).await.unwrap(), 90_000);
        assert_eq!(read_all(&b, &digest, None).await, bytes);
        // The same with a wrong digest stores nothing, whichever server finishes.
        let wrong = a.start_upload("team/app").await.unwrap();
        a.append(&wrong.id, "team/app", None, body(&bytes[..30_000])).await.unwrap();
        b.append(&wrong.id, "team/app", None, body(b"not these")).await.unwrap();
        let claimed = Digest::sha256_of(&bytes[..30_000]);
        match a.finish(&wrong.id, "team/app", &claimed).await {
            Err(BlobError::DigestMismatch { .. }) => {}
            other => panic!("expected a digest mismatch, got {other:?}"),
        }
        assert_eq!(b.size(&claimed).await.unwrap(), None);
    }

    /// A presigned URL lets its holder GET the blob straight from S3 and nothing else; the
    /// filesystem has none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_signed_url_reads_exactly_its_blob() {
        let fixture = Fixture::new(Kind::S3);
        let store = fixture.open();
        let bytes = content(50_000);
        let digest = Digest::sha256_of(&bytes);
        store.put(&digest, body(&bytes)).await.unwrap();
        let url = store.signed_url(&digest, Duration::from_secs(60)).await.unwrap().expect("S3 signs URLs");
        let other = Digest::sha256_of(b"another blob");
        let (got, tampered) = tokio::task::spawn_blocking(move || {
            let client = reqwest::blocking::Client::new();
            let got = client.get(&url).send().unwrap();
            let tampered = client.get(url.replace(digest.encoded(), other.encoded())).send().unwrap().status();
            (got.bytes().unwrap().to_vec(), tampered)
        })
        .await
        .unwrap();
        assert_eq!(got, bytes);
        assert_eq!(tampered, reqwest::StatusCode::FORBIDDEN, "the signature covers the blob's name");
        let local = Fixture::new(Kind::Local).open();
        assert_eq!(local.signed_url(&Digest::sha256_of(b"x"), Duration::from_secs(60)).await.unwrap(), None);
    }
}
