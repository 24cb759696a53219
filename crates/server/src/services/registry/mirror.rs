//! Blob reads, and pull-through. A blob is served from the blob store when berth has it.
//! Otherwise, when an image of the stream names it and came from another registry, it
//! is fetched from there with the namespace's pull secrets, once per digest however many
//! clients ask at the same time. On the filesystem the download writes a local file and
//! every client follows that file as it grows; on S3 it writes straight to the blob's
//! multipart upload (nothing on the server's disk): the client whose request started it
//! gets the bytes as they arrive, others wait for the stored blob. When the download's
//! digest checks out it becomes the stored blob, so later pulls (and pulls while the
//! upstream is down) are local. Digests are never fetched again once stored.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_model::Digest;
use berth_model::imagestream::ImageStream;
use berth_model::reference::ImageReference;
use berth_store::{BlobStore, ByteStream, Hasher, MirrorSink};
use berth_upstream::{Repository, Session};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use super::content::InStream;
use super::{Code, Need, Registry, RegistryError, Repo, Result};
use crate::services::Caller;

/// Bytes gathered before a download writes to its file (and wakes its followers).
const WRITE_CHUNK: usize = 256 * 1024;
/// Bytes a follower reads at a time.
const READ_CHUNK: usize = 256 * 1024;
/// Chunks of [`WRITE_CHUNK`] waiting for the client that started a download without a
/// file (S3), and how long the download waits for that client when they are all waiting:
/// a client this slow (under about 200 KB/s) is cut off (it resumes from the stored blob),
/// so that no client, of any namespace, can hold a download others wait for.
const LIVE_CHUNKS: usize = 4;
const LIVE_STALL: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// The file being written, for clients to follow (on the filesystem; on S3 there is none).
    file: Option<PathBuf>,
    state: watch::Receiver<State>,
}

/// The bytes of a download as they arrive, for the client whose request started it when
/// there is no file to follow (S3); an error ends them when the download fails.
type Live = tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>;

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
            Some((download, live)) => self.serve_download(digest, download, live, range, head).await,
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
    async fn download(
        &self,
        repo: &Repo,
        stream: &ImageStream,
        found: &InStream,
        digest: &Digest,
    ) -> Result<Option<(Download, Option<Live>)>> {
        if let Some(download) = self.inner.mirrors.find(digest) {
            return Ok(Some((download, None)));
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

    /// Serves a download in flight to one client: follows its file, or on S3 takes its
    /// bytes as they arrive (`live`, the client that started it, asking for the whole
    /// blob) or waits for the stored blob.
    async fn serve_download(
        &self,
        digest: &Digest,
        download: Download,
        live: Option<Live>,
        range: Option<&RangeRequest>,
        head: bool,
    ) -> Result<BlobContent> {
        let size = size_once(&download.state, false).await?;
        // A range needs the size; a blob whose size neither its registry nor its manifest
        // gives is sent whole.
        let resolved = match (range, size) {
            (Some(asked), Some(size)) => asked.resolve(size)?,
            _ => None,
        };
        if head {
            return Ok(BlobContent { size, range: resolved, body: None, redirect: None });
        }
        if let Some(file) = &download.file {
            return follow(file, download.state, size, resolved).await;
        }
        match live {
            Some(live) if range.is_none() => {
                let body = futures::stream::unfold(live, |mut live| async move { live.recv().await.map(|chunk| (chunk, live)) });
                Ok(BlobContent { size, range: None, body: Some(body.boxed()), redirect: None })
            }
            _ => {
                let size = size_once(&download.state, true).await?.unwrap_or_default();
                self.local(digest, size, range, false).await
            }
        }
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

    /// Starts downloading `digest` unless a download already runs (then joins it), with
    /// the bytes as they arrive for the caller where there is no file to follow.
    /// `expected` is the blob's size as the manifest gives it; no more than `limit` bytes
    /// are taken.
    async fn start(
        &self,
        digest: &Digest,
        blobs: BlobStore,
        session: Arc<Session>,
        expected: Option<u64>,
        limit: u64,
    ) -> Result<(Download, Option<Live>)> {
        let sink = blobs.mirror(digest).await?;
        let (sender, state) = watch::channel(State::Connecting);
        let download = Download { file: sink.file().map(std::path::Path::to_path_buf), state };
        let (live_sender, live) = match download.file {
            Some(_) => (None, None),
            None => {
                let (sender, receiver) = tokio::sync::mpsc::channel(LIVE_CHUNKS);
                (Some(sender), Some(receiver))
            }
        };
        let running = {
            let mut active = self.active.lock().expect("mirror map lock");
            let running = active.get(digest).cloned();
            if running.is_none() {
                active.insert(digest.clone(), download.clone());
            }
            running
        };
        if let Some(running) = running {
            sink.discard().await;
            return Ok((running, None));
        }
        let (mirrors, digest) = (self.clone(), digest.clone());
        tokio::spawn(async move {
            let result = fetch(sink, &session, &digest, (expected, limit), &sender, live_sender).await;
            let counted = if result.is_ok() { "mirrored" } else { "failed" };
            metrics::counter!(crate::metrics::PULL_THROUGH, "result" => counted).increment(1);
            match result {
                Ok(size) => {
                    tracing::info!(%digest, size, registry = %session.repository().name(), "mirrored a blob");
                    sender.send_replace(State::Done { size });
                }
                Err(err) => {
                    tracing::warn!(%digest, registry = %session.repository().name(), error = %err.message, "pull-through failed");
                    sender.send_replace(State::Failed(err));
                }
            }
            mirrors.active.lock().expect("mirror map lock").remove(&digest);
        });
        Ok((download, live))
    }
}

/// Downloads a blob into `sink`, telling followers how far it got (and handing the bytes
/// to `live` while its receiver wants them), checks its digest and publishes it; or
/// discards it. Returns its size. No more than `limit` bytes are read, whatever the
/// registry sends.
async fn fetch(
    mut sink: MirrorSink,
    session: &Session,
    digest: &Digest,
    sizes: (Option<u64>, u64),
    progress: &watch::Sender<State>,
    mut live: Option<tokio::sync::mpsc::Sender<std::io::Result<Bytes>>>,
) -> Result<u64> {
    let result = match receive(&mut sink, session, digest, sizes, progress, &mut live).await {
        Ok(written) => sink.publish().await.map(|()| written).map_err(RegistryError::from),
        Err(err) => {
            sink.discard().await;
            Err(err)
        }
    };
    if let (Err(err), Some(live)) = (&result, live) {
        let _ = live.send(Err(std::io::Error::other(err.message.clone()))).await;
    }
    result
}

/// The download itself: the bytes into `sink` (and `live`), checked against `digest`.
async fn receive(
    sink: &mut MirrorSink,
    session: &Session,
    digest: &Digest,
    (expected, limit): (Option<u64>, u64),
    progress: &watch::Sender<State>,
    live: &mut Option<tokio::sync::mpsc::Sender<std::io::Result<Bytes>>>,
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
            let bytes = buffer.split().freeze();
            written += bytes.len() as u64;
            sink.write(bytes.clone()).await?;
            progress.send_modify(|state| {
                if let State::Receiving { written: w, .. } = state {
                    *w = written;
                }
            });
            if let Some(sender) = live.as_ref()
                && !matches!(tokio::time::timeout(LIVE_STALL, sender.send(Ok(bytes))).await, Ok(Ok(())))
            {
                // The client that started the download is gone, or too slow: its body ends
                // short of its length; the download goes on.
                *live = None;
            }
        }
        if end {
            break;
        }
    }
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
    Ok(written)
}

/// Waits until a download knows the blob's size (with `stored`, until it is stored), or
/// failed. The size is `None` when neither its registry nor its manifest gives it (never
/// once stored).
async fn size_once(state: &watch::Receiver<State>, stored: bool) -> Result<Option<u64>> {
    let mut state = state.clone();
    let reached = state
        .wait_for(|current| match current {
            State::Connecting => false,
            State::Receiving { .. } => !stored,
            State::Done { .. } | State::Failed(_) => true,
        })
        .await
        .map_err(|_| RegistryError::new(Code::Unavailable, "the pull-through download stopped"))?;
    match &*reached {
        State::Connecting => Ok(None),
        State::Receiving { size, .. } => Ok(*size),
        State::Done { size } => Ok(Some(*size)),
        State::Failed(err) => Err(err.clone()),
    }
}

/// Streams the `range` of a download's file (all of it for `None`) to one client as the
/// file grows.
async fn follow(
    file: &std::path::Path,
    state: watch::Receiver<State>,
    size: Option<u64>,
    range: Option<Range<u64>>,
) -> Result<BlobContent> {
    let mut file =
        tokio::fs::File::open(file).await.map_err(|err| RegistryError::new(Code::Unknown, format!("opening the mirror file: {err}")))?;
    let start = range.as_ref().map_or(0, |r| r.start);
    let end = range.as_ref().map(|r| r.end);
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await.map_err(|err| RegistryError::new(Code::Unknown, err.to_string()))?;
    }
    let follower = Follower { file, pos: start, end, state, closed: false };
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
