//! Blob storage: layers, configs and manifests named by their digest, on `object_store`
//! (the local filesystem by default; the layout is the same on S3).
//!
//! Layout under the store's root:
//! - `blobs/<algorithm>/<first two hex>/<hex>`: content, written once, visible only after
//!   its digest was checked (an upload is renamed into place).
//! - `uploads/<id>/info` and `uploads/<id>/<offset>`: an upload in progress, one object
//!   per chunk received, so that an upload survives a restart and resumes at its size.
//! - `links/<repository>/<hex>`: the blobs and manifests pushed to (or mounted into) a
//!   repository; a repository sees only what is linked to it or what its images name.
//! - `referrers/<repository>/<subject hex>/<referrer hex>`: the descriptor of a manifest
//!   whose `subject` is the subject (the OCI referrers API).
//! - `uploads/mirror-<id>`: blobs being mirrored from another registry (local files, so
//!   that several readers can follow one download).
//!
//! Nothing here knows image streams or HTTP: callers pass repository names they have
//! validated and streams of bytes.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_model::Digest;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::Digest as _;

/// Bytes gathered into one part of a write, and parts written at once: an upload holds at
/// most about their product in memory (object_store's default, 5 MiB parts, would hold
/// 20 MiB per upload).
const WRITE_PART: usize = 1 << 20;
const WRITES_IN_FLIGHT: usize = 2;

/// Bytes read from disk per chunk when a blob is streamed out.
const READ_CHUNK: usize = 256 * 1024;

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

/// What this process knows of an upload it has been receiving: its size and the sha256
/// of its bytes so far, so that finishing it needs no second read.
struct Progress {
    size: u64,
    sha256: Hasher,
}

/// The blob store. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    root: PathBuf,
    progress: Arc<Mutex<HashMap<String, Progress>>>,
}

fn blob_path(digest: &Digest) -> Path {
    let hex = digest.encoded();
    Path::from(format!("blobs/{}/{}/{hex}", digest.algorithm(), &hex[..2]))
}

fn link_path(repository: &str, digest: &Digest) -> Path {
    Path::from(format!("links/{repository}/{}", digest.encoded()))
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
        Ok(BlobStore { store: Arc::new(store), root: root.to_path_buf(), progress: Arc::default() })
    }

    /// The size of a stored blob, or `None`.
    pub async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.store.head(&blob_path(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Reads a stored blob, the whole of it or `range` (`start..end`, clamped to the
    /// blob). `None` when the blob is not stored.
    pub async fn read(&self, digest: &Digest, range: Option<std::ops::Range<u64>>) -> Result<Option<BlobRead>> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let result = match self.store.get_opts(&blob_path(digest), options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let (size, range) = (result.meta.size, result.range.clone());
        let body = match result.payload {
            GetResultPayload::File(file, _) => read_file(file, range.clone()),
            GetResultPayload::Stream(stream) => stream.map_err(std::io::Error::other).boxed(),
        };
        Ok(Some(BlobRead { size, range, body }))
    }

    /// Reads a whole small blob (an image config) into memory.
    pub async fn read_all(&self, digest: &Digest, max: u64) -> Result<Option<Bytes>> {
        match self.size(digest).await? {
            None => Ok(None),
            Some(size) if size > max => {
                Err(BlobError::Storage(format!("the blob {digest} has {size} bytes, more than {max} allowed here")))
            }
            Some(_) => Ok(Some(self.store.get(&blob_path(digest)).await?.bytes().await?)),
        }
    }

    /// Stores content whose digest the caller knows (a manifest, a mirrored blob): hashed
    /// as it is written, and visible only when it matches. Returns its size.
    pub async fn put(&self, digest: &Digest, body: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static) -> Result<u64> {
        let upload = self.start_upload("").await?;
        self.append(&upload.id, "", None, body).await?;
        self.finish(&upload.id, "", digest).await
    }

    /// Whether `digest` was pushed to or mounted into `repository`.
    pub async fn is_linked(&self, repository: &str, digest: &Digest) -> Result<bool> {
        match self.store.head(&link_path(repository, digest)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    pub async fn link(&self, repository: &str, digest: &Digest) -> Result<()> {
        self.store.put(&link_path(repository, digest), PutPayload::default()).await?;
        Ok(())
    }

    pub async fn unlink(&self, repository: &str, digest: &Digest) -> Result<()> {
        match self.store.delete(&link_path(repository, digest)).await {
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
        self.progress
            .lock()
            .expect("upload progress lock")
            .insert(id.clone(), Progress { size: 0, sha256: Hasher::for_algorithm("sha256") });
        Ok(upload)
    }

    /// An upload of `repository` and how many bytes it has, or `None` when that
    /// repository has no such upload.
    pub async fn upload(&self, id: &str, repository: &str) -> Result<Option<Upload>> {
        if !self.is_upload_of(id, repository).await? {
            return Ok(None);
        }
        let size = match self.known_size(id) {
            Some(size) => size,
            None => self.chunks(id).await?.iter().map(|(_, size)| size).sum(),
        };
        Ok(Some(Upload { id: id.to_string(), repository: repository.to_string(), size }))
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

    fn known_size(&self, id: &str) -> Option<u64> {
        self.progress.lock().expect("upload progress lock").get(id).map(|p| p.size)
    }

    /// The chunks of an upload, in order, with their sizes.
    async fn chunks(&self, id: &str) -> Result<Vec<(Path, u64)>> {
        let mut chunks: Vec<(Path, u64)> = self
            .store
            .list(Some(&upload_dir(id)))
            .try_filter_map(|meta| async move {
                let is_chunk = meta.location.filename().is_some_and(|name| name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()));
                Ok(is_chunk.then_some((meta.location, meta.size)))
            })
            .try_collect()
            .await?;
        chunks.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(chunks)
    }

    /// Appends a chunk to an upload. `start`, when given (a `Content-Range`), must be the
    /// upload's size. Returns the new size. A chunk that breaks off is not kept.
    pub async fn append(
        &self,
        id: &str,
        repository: &str,
        start: Option<u64>,
        body: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    ) -> Result<u64> {
        let upload = self.upload(id, repository).await?.ok_or_else(|| BlobError::UnknownUpload(id.to_string()))?;
        if let Some(start) = start
            && start != upload.size
        {
            return Err(BlobError::OutOfOrder { start, size: upload.size });
        }
        let mut hasher = self.progress.lock().expect("upload progress lock").get(id).map(|p| p.sha256.clone());
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
                    Some(WriteMultipart::new_with_chunk_size(self.store.put_multipart(&chunk_path(id, upload.size)).await?, WRITE_PART));
            }
            let writer = writer.as_mut().expect("the writer was just made");
            writer.wait_for_capacity(WRITES_IN_FLIGHT).await?;
            written += chunk.len() as u64;
            writer.put(chunk);
        }
        if let Some(writer) = writer {
            writer.finish().await?;
        }
        let size = upload.size + written;
        let mut progress = self.progress.lock().expect("upload progress lock");
        match hasher {
            Some(sha256) => {
                progress.insert(id.to_string(), Progress { size, sha256 });
            }
            None => {
                progress.remove(id);
            }
        }
        Ok(size)
    }

    /// Finishes an upload: its bytes must hash to `digest`; then the blob becomes visible
    /// (or is already there) and the upload is gone. Returns the blob's size. On a
    /// mismatch the upload is removed and nothing is stored.
    pub async fn finish(&self, id: &str, repository: &str, digest: &Digest) -> Result<u64> {
        if !self.is_upload_of(id, repository).await? {
            return Err(BlobError::UnknownUpload(id.to_string()));
        }
        let chunks = self.chunks(id).await?;
        let size: u64 = chunks.iter().map(|(_, size)| size).sum();
        let known = self.progress.lock().expect("upload progress lock").remove(id);
        let actual = match known {
            Some(progress) if progress.size == size && digest.algorithm() == "sha256" => progress.sha256.finish(),
            _ => {
                let mut hasher = Hasher::for_algorithm(digest.algorithm());
                for (path, _) in &chunks {
                    let mut stream = self.store.get(path).await?.into_stream();
                    while let Some(bytes) = stream.next().await {
                        hasher.update(&bytes?);
                    }
                }
                hasher.finish()
            }
        };
        if actual != *digest {
            self.remove_upload(id).await?;
            return Err(BlobError::DigestMismatch { expected: digest.clone(), actual });
        }
        let target = blob_path(digest);
        if self.size(digest).await?.is_none() {
            match chunks.as_slice() {
                [] => {
                    self.store.put(&target, PutPayload::default()).await?;
                }
                [(only, _)] => self.store.rename(only, &target).await?,
                many => {
                    let assembled = Path::from(format!("uploads/{id}/assembled"));
                    let mut writer = WriteMultipart::new_with_chunk_size(self.store.put_multipart(&assembled).await?, WRITE_PART);
                    for (path, _) in many {
                        let mut stream = self.store.get(path).await?.into_stream();
                        while let Some(bytes) = stream.next().await {
                            writer.wait_for_capacity(WRITES_IN_FLIGHT).await?;
                            writer.put(bytes?);
                        }
                    }
                    writer.finish().await?;
                    self.store.rename(&assembled, &target).await?;
                }
            }
        }
        self.remove_upload(id).await?;
        Ok(size)
    }

    /// Cancels an upload. Returns whether there was one.
    pub async fn cancel(&self, id: &str, repository: &str) -> Result<bool> {
        if !self.is_upload_of(id, repository).await? {
            return Ok(false);
        }
        self.progress.lock().expect("upload progress lock").remove(id);
        self.remove_upload(id).await?;
        Ok(true)
    }

    async fn remove_upload(&self, id: &str) -> Result<()> {
        let paths: Vec<Path> = self.store.list(Some(&upload_dir(id))).map_ok(|meta| meta.location).try_collect().await?;
        for path in paths {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        // The local filesystem keeps the emptied directory (and staging files of chunks
        // that broke off); both go with it.
        let _ = std::fs::remove_dir_all(self.root.join("uploads").join(id));
        Ok(())
    }

    /// Removes uploads (and abandoned mirror downloads) untouched for longer than `age`.
    /// Returns how many were removed.
    pub async fn remove_abandoned(&self, age: Duration) -> Result<usize> {
        let root = self.root.join("uploads");
        let stale: Vec<(String, bool)> = tokio::task::spawn_blocking(move || {
            let mut stale = Vec::new();
            let now = std::time::SystemTime::now();
            for entry in std::fs::read_dir(&root)?.flatten() {
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
        let mut removed = 0;
        for (name, is_dir) in stale {
            if is_dir && is_upload_id(&name) {
                self.progress.lock().expect("upload progress lock").remove(&name);
                self.remove_upload(&name).await?;
                removed += 1;
            } else if !is_dir && name.starts_with("mirror-") {
                let _ = std::fs::remove_file(self.root.join("uploads").join(&name));
                removed += 1;
            }
        }
        Ok(removed)
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

    /// A new local file to download a mirrored blob into (see [`BlobStore::publish_mirror`]).
    pub fn mirror_file(&self) -> PathBuf {
        self.root.join("uploads").join(format!("mirror-{}", uuid::Uuid::new_v4()))
    }

    /// Makes a downloaded mirror file the blob `digest`, which the caller has checked.
    /// The file is renamed into place: readers that opened it keep reading it.
    pub async fn publish_mirror(&self, file: &FsPath, digest: &Digest) -> Result<()> {
        let name = file.file_name().and_then(|n| n.to_str()).filter(|n| n.starts_with("mirror-"));
        let Some(name) = name else {
            return Err(BlobError::Storage(format!("{} is not a mirror file of this store", file.display())));
        };
        self.store.rename(&Path::from(format!("uploads/{name}")), &blob_path(digest)).await?;
        Ok(())
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

/// Streams `range` of a local file in large chunks from a thread of its own, so that a
/// long download holds none of the runtime's few blocking threads (the catalog's writes
/// need them) and pays no hand-off per chunk; object_store reads 8 KiB per blocking task,
/// which halves throughput. Small reads (configs, small layers) are one blocking task.
fn read_file(mut file: std::fs::File, range: std::ops::Range<u64>) -> ByteStream {
    use std::io::{Read, Seek, SeekFrom};
    let length = range.end - range.start;
    if length <= READ_CHUNK as u64 {
        let read = tokio::task::spawn_blocking(move || {
            file.seek(SeekFrom::Start(range.start))?;
            let mut buffer = Vec::with_capacity(length as usize);
            file.take(length).read_to_end(&mut buffer)?;
            if buffer.len() as u64 != length {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the blob file is shorter than its size"));
            }
            Ok(Bytes::from(buffer))
        });
        return futures::stream::once(async move { read.await.map_err(std::io::Error::other)? }).boxed();
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let spawned = std::thread::Builder::new().name("berth-blob-read".into()).spawn(move || {
        let send = |item| sender.blocking_send(item).is_ok();
        if let Err(err) = file.seek(SeekFrom::Start(range.start)) {
            send(Err(err));
            return;
        }
        let mut remaining = length;
        while remaining > 0 {
            let want = remaining.min(READ_CHUNK as u64);
            let mut buffer = Vec::with_capacity(want as usize);
            match file.by_ref().take(want).read_to_end(&mut buffer) {
                Ok(0) => {
                    send(Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the blob file is shorter than its size")));
                    return;
                }
                Ok(read) => {
                    remaining -= read as u64;
                    if !send(Ok(Bytes::from(buffer))) {
                        return;
                    }
                }
                Err(err) => {
                    send(Err(err));
                    return;
                }
            }
        }
    });
    if let Err(err) = spawned {
        return futures::stream::once(async move { Err(err) }).boxed();
    }
    futures::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) }).boxed()
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

    #[tokio::test]
    async fn content_is_visible_only_under_the_digest_it_hashes_to() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_local(dir.path(), false).unwrap();
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
        assert_eq!(std::fs::read_dir(dir.path().join("uploads")).unwrap().count(), 0, "the refused upload is gone");
    }

    #[tokio::test]
    async fn an_upload_resumes_in_another_process_at_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = content(300_000);
        let digest = Digest::sha256_of(&bytes);
        let id = {
            let first = BlobStore::open_local(dir.path(), false).unwrap();
            let upload = first.start_upload("team/app").await.unwrap();
            assert_eq!(first.append(&upload.id, "team/app", Some(0), body(&bytes[..100_000])).await.unwrap(), 100_000);
            upload.id
        };
        // A new store on the same directory knows nothing in memory, as after a restart.
        let second = BlobStore::open_local(dir.path(), false).unwrap();
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

    #[tokio::test]
    async fn abandoned_uploads_are_removed_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_local(dir.path(), false).unwrap();
        let old = store.start_upload("team/app").await.unwrap();
        store.append(&old.id, "team/app", None, body(b"partial")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let fresh = store.start_upload("team/app").await.unwrap();
        assert_eq!(store.remove_abandoned(Duration::from_secs(1)).await.unwrap(), 1);
        assert!(store.upload(&old.id, "team/app").await.unwrap().is_none());
        assert!(store.upload(&fresh.id, "team/app").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn links_and_referrers_are_per_repository() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_local(dir.path(), false).unwrap();
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
}
