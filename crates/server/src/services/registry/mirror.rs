//! Blob reads, and pull-through. A blob is served from the blob store when berth has it.
//! Otherwise, when an image of the stream names it and came from another registry, it
//! is fetched from there with the namespace's pull secrets, once per digest however many
//! clients ask at the same time: one download writes a local file and every client
//! follows that file as it grows. When the download's digest checks out the file
//! becomes the stored blob, so later pulls (and pulls while the upstream is down) are
//! local. Digests are never fetched again once stored.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_model::Digest;
use berth_model::imagestream::ImageStream;
use berth_model::reference::ImageReference;
use berth_store::{BlobStore, ByteStream, Hasher};
use berth_upstream::{Repository, Session};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;

use super::content::InStream;
use super::{Code, Need, Registry, RegistryError, Repo, Result};
use crate::services::Caller;

/// Bytes gathered before a download writes to its file (and wakes its followers).
const WRITE_CHUNK: usize = 256 * 1024;
/// Bytes a follower reads at a time.
const READ_CHUNK: usize = 256 * 1024;

/// A blob to send: its size when known, the range sent, and the bytes (none for HEAD);
/// or a presigned URL to send the client to instead.
pub struct BlobContent {
    pub size: Option<u64>,
    pub range: Option<Range<u64>>,
    pub body: Option<ByteStream>,
    pub redirect: Option<String>,
}

/// Downloads in flight, by digest.
#[derive(Clone, Default)]
pub(super) struct Mirrors {
    active: Arc<Mutex<HashMap<Digest, Download>>>,
}

#[derive(Clone)]
struct Download {
    file: PathBuf,
    state: watch::Receiver<State>,
}

#[derive(Clone, Debug)]
enum State {
    Connecting,
    Receiving { size: Option<u64>, written: u64 },
    Done { size: u64 },
    Failed(RegistryError),
}

impl Registry {
    /// A blob of `repo`, or the `range` of it. With `head`, only its size.
    pub async fn blob(
        &self,
        caller: &Caller,
        repo: &Repo,
        digest: &Digest,
        range: Option<&RangeRequest>,
        head: bool,
    ) -> Result<BlobContent> {
        self.authorize(caller, repo, Need::Pull).await?;
        let unknown = || RegistryError::new(Code::BlobUnknown, format!("{} has no blob {digest}", repo.name()));
        let name = repo.name();
        let source = if self.inner.blobs.is_linked(&name, digest).await? {
            None
        } else {
            let stream = self.find_stream(repo)?.ok_or_else(unknown)?;
            let found = self.in_stream(digest, &stream).await?.ok_or_else(unknown)?;
            if self.inner.blobs.is_unlinked(&name, digest).await? {
                return Err(unknown());
            }
            Some((stream, found))
        };
        if let Some(size) = self.inner.blobs.size(digest).await? {
            self.refresh(digest).await;
            return self.local(digest, size, range, head).await;
        }
        let Some((stream, found)) = source else {
            return Err(unknown());
        };
        match self.download(repo, &stream, &found, digest).await? {
            Some(download) => follow(download, range, head).await,
            // Mirrored since this request looked.
            None => {
                let size = self.inner.blobs.size(digest).await?.ok_or_else(unknown)?;
                self.local(digest, size, range, head).await
            }
        }
    }

    /// Deletes a blob from `repo` (edit role): the repository unlinks it and no longer
    /// serves it; its bytes stay while other repositories link it, and pruning removes
    /// bytes nothing links.
    pub async fn delete_blob(&self, caller: &Caller, repo: &Repo, digest: &Digest) -> Result<()> {
        self.authorize(caller, repo, Need::Push).await?;
        let name = repo.name();
        let known = self.inner.blobs.is_linked(&name, digest).await?
            || match self.find_stream(repo)? {
                Some(stream) => self.in_stream(digest, &stream).await?.is_some() && !self.inner.blobs.is_unlinked(&name, digest).await?,
                None => false,
            };
        if !known {
            return Err(RegistryError::new(Code::BlobUnknown, format!("{name} has no blob {digest}")));
        }
        self.inner.blobs.delete_from(&name, digest).await?;
        tracing::info!(repository = %name, %digest, token = %caller.token, "deleted a blob from a repository");
        Ok(())
    }

    async fn local(&self, digest: &Digest, size: u64, range: Option<&RangeRequest>, head: bool) -> Result<BlobContent> {
        let range = match range {
            None => None,
            Some(asked) => asked.resolve(size)?,
        };
        if head {
            return Ok(BlobContent { size: Some(size), range, body: None, redirect: None });
        }
        let lifetime = self.inner.settings.blob_redirect_seconds;
        if lifetime > 0
            && let Some(url) = self.inner.blobs.signed_url(digest, std::time::Duration::from_secs(lifetime)).await?
        {
            metrics::counter!(crate::metrics::BLOB_REDIRECTS).increment(1);
            return Ok(BlobContent { size: Some(size), range: None, body: None, redirect: Some(url) });
        }
        let read = self
            .inner
            .blobs
            .read(digest, range.clone())
            .await?
            .ok_or_else(|| RegistryError::new(Code::BlobUnknown, format!("blob {digest} was removed while it was being read")))?;
        Ok(BlobContent { size: Some(read.size), range, body: Some(read.body), redirect: None })
    }

    /// The download of `digest` in flight, or a new one from where the stream's history
    /// says the image came from; `None` when the blob was stored meanwhile. (A download
    /// publishes the blob before it leaves the map, so looking in the map, then the store,
    /// then starting one can only start a second download if a whole one ran between the
    /// first two looks.)
    async fn download(&self, repo: &Repo, stream: &ImageStream, found: &InStream, digest: &Digest) -> Result<Option<Download>> {
        if let Some(download) = self.inner.mirrors.find(digest) {
            return Ok(Some(download));
        }
        if self.inner.blobs.size(digest).await?.is_some() {
            return Ok(None);
        }
        let session = self.session_for(repo, stream, found).await?;
        // A blob is never taken longer than the manifest says it is (a config, which the
        // Image does not size, no longer than a config may be).
        let expected = found.image.docker_image_layers.iter().find(|l| l.name == digest.as_str()).map(|l| l.size.max(0) as u64);
        let limit = expected.unwrap_or(self.inner.upstream.settings().max_config_bytes as u64);
        let blobs = self.inner.blobs.clone();
        let mirrors = self.inner.mirrors.clone();
        mirrors.start(digest, blobs, session, expected, limit).await.map(Some)
    }

    /// A session for a registry the stream's own history imported the image from, with
    /// the namespace's pull secrets: the newest of those pull specs whose registry the
    /// server allows (`import.allowedRegistries`). Never the registry another namespace
    /// named for the same digest, and never berth itself.
    async fn session_for(&self, repo: &Repo, stream: &ImageStream, found: &InStream) -> Result<Arc<Session>> {
        let config = self.catalog().config();
        let settings = self.inner.upstream.settings();
        let mut refused = Vec::new();
        let mut chosen = None;
        for pull_spec in &found.sources {
            let Ok(reference) = ImageReference::parse(pull_spec) else {
                continue;
            };
            if reference.registry == config.registry_hostname || config.public_registry_hostnames.contains(&reference.registry) {
                continue;
            }
            let insecure = settings.is_insecure(&reference.registry)
                || stream.spec.tags.iter().any(|t| t.import_policy.insecure)
                || stream.metadata.annotations.get("openshift.io/image.insecureRepository").is_some_and(|v| v == "true");
            if self.inner.upstream.allows(&reference.registry, insecure).is_ok() {
                chosen = Some((reference, insecure));
                break;
            }
            refused.push(reference.registry.clone());
        }
        let Some((reference, insecure)) = chosen else {
            let why = if refused.is_empty() {
                "nor another registry its image stream imported it from".to_string()
            } else {
                format!("and the server does not allow pulling through from {} (import.allowedRegistries)", refused.join(", "))
            };
            return Err(RegistryError::new(
                Code::BlobUnknown,
                format!("berth has not stored the blobs of image {} {why}", found.image.metadata.name),
            ));
        };
        let repository = Repository::of(&reference, insecure);
        let namespace = repo.namespace.clone();
        let keyring = self.blocking(move |catalog| catalog.pull_keyring(&namespace).map_err(Into::into)).await?;
        let credentials = keyring.lookup(&repository.registry, &repository.path);
        Ok(Arc::new(self.inner.upstream.session(repository, credentials)))
    }
}

/// A `Range` a client asked for, resolved against the blob's size once that is known.
#[derive(Clone, Debug)]
pub enum RangeRequest {
    Bytes(http_range_header::ParsedRanges),
    /// A `bytes=` range that does not parse.
    Malformed(String),
}

impl RangeRequest {
    /// The request's `Range` header: `None` when it asks for no byte range (another unit
    /// is ignored, as RFC 9110 says).
    pub fn parse(text: &str) -> Option<RangeRequest> {
        if !text.trim_start().starts_with("bytes=") {
            return None;
        }
        Some(match http_range_header::parse_range_header(text.trim()) {
            Ok(ranges) => RangeRequest::Bytes(ranges),
            Err(_) => RangeRequest::Malformed(text.to_string()),
        })
    }

    /// The bytes to send of a blob of `size` bytes: `None` for the whole blob (several
    /// ranges are answered with the whole of it, which RFC 9110 allows).
    pub fn resolve(&self, size: u64) -> Result<Option<Range<u64>>> {
        let unsatisfiable = |why: String| RegistryError::new(Code::RangeNotSatisfiable { size }, why);
        match self {
            RangeRequest::Malformed(text) => Err(unsatisfiable(format!("the Range {text:?} is not bytes=START-[END] or bytes=-SUFFIX"))),
            RangeRequest::Bytes(ranges) => match ranges.validate(size) {
                Ok(ranges) if ranges.len() == 1 => Ok(Some(*ranges[0].start()..ranges[0].end() + 1)),
                Ok(_) => Ok(None),
                Err(_) => Err(unsatisfiable(format!("the blob has {size} bytes: the range asked for is outside it"))),
            },
        }
    }
}

impl Mirrors {
    fn find(&self, digest: &Digest) -> Option<Download> {
        self.active.lock().expect("mirror map lock").get(digest).cloned()
    }

    /// Starts downloading `digest` unless a download already runs (then joins it).
    /// `expected` is the blob's size as the manifest gives it; no more than `limit` bytes
    /// are taken.
    async fn start(&self, digest: &Digest, blobs: BlobStore, session: Arc<Session>, expected: Option<u64>, limit: u64) -> Result<Download> {
        let file = blobs.mirror_file();
        tokio::fs::File::create(&file)
            .await
            .map_err(|err| RegistryError::new(Code::Unknown, format!("creating {}: {err}", file.display())))?;
        let (sender, state) = watch::channel(State::Connecting);
        let download = Download { file: file.clone(), state };
        {
            let mut active = self.active.lock().expect("mirror map lock");
            if let Some(running) = active.get(digest) {
                let _ = std::fs::remove_file(&file);
                return Ok(running.clone());
            }
            active.insert(digest.clone(), download.clone());
        }
        let (mirrors, digest) = (self.clone(), digest.clone());
        tokio::spawn(async move {
            let result = fetch(&blobs, &session, &digest, &file, (expected, limit), &sender).await;
            let counted = if result.is_ok() { "mirrored" } else { "failed" };
            metrics::counter!(crate::metrics::PULL_THROUGH, "result" => counted).increment(1);
            match result {
                Ok(size) => {
                    tracing::info!(%digest, size, registry = %session.repository().name(), "mirrored a blob");
                    sender.send_replace(State::Done { size });
                }
                Err(err) => {
                    tracing::warn!(%digest, registry = %session.repository().name(), error = %err.message, "pull-through failed");
                    let _ = tokio::fs::remove_file(&file).await;
                    sender.send_replace(State::Failed(err));
                }
            }
            mirrors.active.lock().expect("mirror map lock").remove(&digest);
        });
        Ok(download)
    }
}

/// Downloads a blob into `file`, telling followers how far it got, checks its digest and
/// publishes it. Returns its size. No more than `limit` bytes are read, whatever the
/// registry sends.
async fn fetch(
    blobs: &BlobStore,
    session: &Session,
    digest: &Digest,
    file: &std::path::Path,
    (expected, limit): (Option<u64>, u64),
    progress: &watch::Sender<State>,
) -> Result<u64> {
    let io = |err: std::io::Error| RegistryError::new(Code::Unavailable, format!("mirroring blob {digest}: {err}"));
    let too_long = || {
        RegistryError::new(
            Code::Unavailable,
            format!("{} sends more than the {limit} bytes blob {digest} has: nothing was kept", session.repository().name()),
        )
    };
    let (announced, mut body) = session.open_blob(digest).await?;
    if announced.is_some_and(|announced| announced > limit) {
        return Err(too_long());
    }
    let size = announced.or(expected);
    progress.send_replace(State::Receiving { size, written: 0 });
    let mut out = tokio::fs::OpenOptions::new().write(true).open(file).await.map_err(io)?;
    let mut hasher = Hasher::for_algorithm(digest.algorithm());
    let mut buffer = BytesMut::with_capacity(WRITE_CHUNK);
    let mut written = 0u64;
    loop {
        let chunk = body.next().await.transpose().map_err(io)?;
        let end = chunk.is_none();
        if let Some(chunk) = chunk {
            if written + (buffer.len() + chunk.len()) as u64 > limit {
                return Err(too_long());
            }
            hasher.update(&chunk);
            buffer.extend_from_slice(&chunk);
        }
        if buffer.len() >= WRITE_CHUNK || (end && !buffer.is_empty()) {
            out.write_all(&buffer).await.map_err(io)?;
            // tokio hands writes to a blocking thread: flush so that followers can read
            // every byte announced.
            out.flush().await.map_err(io)?;
            written += buffer.len() as u64;
            buffer.clear();
            progress.send_modify(|state| {
                if let State::Receiving { written: w, .. } = state {
                    *w = written;
                }
            });
        }
        if end {
            break;
        }
    }
    out.sync_all().await.map_err(io)?;
    let actual = hasher.finish();
    if actual != *digest {
        return Err(RegistryError::new(
            Code::Unavailable,
            format!("{} sent bytes for blob {digest} that hash to {actual}: nothing was kept", session.repository().name()),
        ));
    }
    if size.is_some_and(|size| size != written) {
        return Err(RegistryError::new(
            Code::Unavailable,
            format!("{} sent {written} bytes of blob {digest}, not {}", session.repository().name(), size.unwrap_or_default()),
        ));
    }
    blobs.publish_mirror(file, digest).await?;
    Ok(written)
}

/// Serves a download to one client: waits until the size is known (or the download
/// failed), then streams the file as it grows.
async fn follow(download: Download, range: Option<&RangeRequest>, head: bool) -> Result<BlobContent> {
    let mut state = download.state.clone();
    let size = loop {
        let current = state.borrow_and_update().clone();
        match current {
            State::Connecting => {}
            State::Receiving { size, .. } => break size,
            State::Done { size } => break Some(size),
            State::Failed(err) => return Err(err),
        }
        if state.changed().await.is_err() {
            return Err(RegistryError::new(Code::Unavailable, "the pull-through download stopped"));
        }
    };
    // A range needs the size; a blob whose size neither its registry nor its manifest
    // gives is sent whole.
    let range = match (range, size) {
        (Some(asked), Some(size)) => asked.resolve(size)?,
        _ => None,
    };
    if head {
        return Ok(BlobContent { size, range, body: None, redirect: None });
    }
    let mut file = tokio::fs::File::open(&download.file)
        .await
        .map_err(|err| RegistryError::new(Code::Unknown, format!("opening the mirror file: {err}")))?;
    let start = range.as_ref().map_or(0, |r| r.start);
    let end = range.as_ref().map(|r| r.end);
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await.map_err(|err| RegistryError::new(Code::Unknown, err.to_string()))?;
    }
    let follower = Follower { file, pos: start, end, state: download.state, closed: false };
    let body = futures::stream::unfold(follower, |mut f| async move { f.next_chunk().await.map(|chunk| (chunk, f)) });
    Ok(BlobContent { size, range, body: Some(body.boxed()), redirect: None })
}

struct Follower {
    file: tokio::fs::File,
    pos: u64,
    end: Option<u64>,
    state: watch::Receiver<State>,
    closed: bool,
}

impl Follower {
    async fn next_chunk(&mut self) -> Option<std::io::Result<Bytes>> {
        loop {
            let (available, finished) = match &*self.state.borrow_and_update() {
                State::Connecting => (0, false),
                State::Receiving { written, .. } => (*written, false),
                State::Done { size } => (*size, true),
                State::Failed(err) => return Some(Err(std::io::Error::other(err.message.clone()))),
            };
            let limit = self.end.map_or(available, |end| end.min(available));
            if self.pos < limit {
                let want = (limit - self.pos).min(READ_CHUNK as u64) as usize;
                let mut buffer = vec![0u8; want];
                return match self.file.read_exact(&mut buffer).await {
                    Ok(_) => {
                        self.pos += want as u64;
                        Some(Ok(Bytes::from(buffer)))
                    }
                    Err(err) => Some(Err(err)),
                };
            }
            if finished || self.end.is_some_and(|end| self.pos >= end) {
                return None;
            }
            if self.closed {
                return Some(Err(std::io::Error::other("the pull-through download stopped")));
            }
            if self.state.changed().await.is_err() {
                self.closed = true;
            }
        }
    }
}
