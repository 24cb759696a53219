//! Blob uploads: monolithic (POST with the digest, or POST then PUT), chunked (PATCH with
//! `Content-Range`, resumable after a restart at the size the upload status reports),
//! cross-repository mounts, and cancellation. The bytes go to the blob store, which
//! makes a blob visible only when its digest matched.

use berth_model::Digest;
use berth_store::ByteStream;
use tokio::sync::OwnedSemaphorePermit;

use super::{Code, Need, Registry, RegistryError, Repo, Result};
use crate::services::Caller;

/// Where an upload stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadState {
    pub id: String,
    pub size: u64,
}

impl Registry {
    /// A place among the uploads sending bytes now, or TOOMANYREQUESTS.
    pub fn upload_permit(&self) -> Result<OwnedSemaphorePermit> {
        std::sync::Arc::clone(&self.inner.uploads).try_acquire_owned().map_err(|_| {
            RegistryError::new(
                Code::TooManyRequests,
                format!(
                    "berth is receiving {} uploads already (registry.maxConcurrentUploads): retry shortly",
                    self.inner.settings.max_concurrent_uploads
                ),
            )
        })
    }

    pub async fn start_upload(&self, caller: &Caller, repo: &Repo) -> Result<UploadState> {
        self.authorize(caller, repo, Need::Push).await?;
        let upload = self.inner.blobs.start_upload(&repo.name()).await?;
        Ok(UploadState { id: upload.id, size: 0 })
    }

    /// Links a blob of another repository into `repo` without sending it again. Returns
    /// `false` (and the client uploads) when the caller may not read `from` or the blob
    /// is not there.
    pub async fn mount(&self, caller: &Caller, repo: &Repo, digest: &Digest, from: &str) -> Result<bool> {
        self.authorize(caller, repo, Need::Push).await?;
        let Ok(source) = Repo::parse(from) else {
            return Ok(false);
        };
        if self.authorize(caller, &source, Need::Pull).await.is_err() || self.inner.blobs.size(digest).await?.is_none() {
            return Ok(false);
        }
        let visible = self.inner.blobs.is_linked(&source.name(), digest).await?
            || match self.find_stream(&source).await? {
                Some(stream) => self.in_stream(digest, &stream).await?.is_some(),
                None => false,
            };
        if visible {
            self.inner.blobs.link(&repo.name(), digest).await?;
        }
        Ok(visible)
    }

    /// An upload of `repo`, or BLOB_UPLOAD_UNKNOWN.
    async fn upload_of(&self, repo: &Repo, id: &str) -> Result<UploadState> {
        match self.inner.blobs.upload(id).await? {
            Some(upload) if upload.repository == repo.name() => Ok(UploadState { id: upload.id, size: upload.size }),
            _ => Err(RegistryError::new(
                Code::BlobUploadUnknown,
                format!("{} has no upload {id:?}: it was finished, cancelled or cleaned up; start a new upload", repo.name()),
            )),
        }
    }

    pub async fn upload_status(&self, caller: &Caller, repo: &Repo, id: &str) -> Result<UploadState> {
        self.authorize(caller, repo, Need::Push).await?;
        self.upload_of(repo, id).await
    }

    /// Appends a chunk; `start` (from `Content-Range`) must be the upload's size.
    pub async fn append(&self, caller: &Caller, repo: &Repo, id: &str, start: Option<u64>, body: ByteStream) -> Result<UploadState> {
        self.authorize(caller, repo, Need::Push).await?;
        self.upload_of(repo, id).await?;
        let size = self.inner.blobs.append(id, start, body).await?;
        Ok(UploadState { id: id.to_string(), size })
    }

    /// Finishes an upload with its last chunk (if any): the bytes must hash to `digest`.
    /// The blob is then linked to `repo`. Returns its size.
    pub async fn finish_upload(&self, caller: &Caller, repo: &Repo, id: &str, digest: &Digest, last: Option<ByteStream>) -> Result<u64> {
        self.authorize(caller, repo, Need::Push).await?;
        self.upload_of(repo, id).await?;
        if let Some(last) = last {
            self.inner.blobs.append(id, None, last).await?;
        }
        let size = self.inner.blobs.finish(id, digest).await?;
        self.inner.blobs.link(&repo.name(), digest).await?;
        Ok(size)
    }

    pub async fn cancel_upload(&self, caller: &Caller, repo: &Repo, id: &str) -> Result<()> {
        self.authorize(caller, repo, Need::Push).await?;
        self.upload_of(repo, id).await?;
        self.inner.blobs.cancel(id).await?;
        Ok(())
    }

    /// A whole blob in one request (`POST …/blobs/uploads/?digest=`).
    pub async fn put_blob(&self, caller: &Caller, repo: &Repo, digest: &Digest, body: ByteStream) -> Result<u64> {
        let upload = self.start_upload(caller, repo).await?;
        self.finish_upload(caller, repo, &upload.id, digest, Some(body)).await
    }
}
