//! Blob uploads: monolithic (POST with the digest, or POST then PUT), chunked (PATCH with
//! `Content-Range`, resumable after a restart at the size the upload status reports),
//! cross-repository mounts, and cancellation. The bytes go to the blob store, which
//! makes a blob visible only when its digest matched.

use berth_model::Digest;
use berth_store::{ByteStream, Upload};
use tokio::sync::OwnedSemaphorePermit;

use super::{Code, Need, Registry, RegistryError, Repo, Result};
use crate::services::Caller;

/// BLOB_UPLOAD_UNKNOWN for an upload `repo` does not have.
fn unknown_upload(repo: &Repo, id: &str) -> RegistryError {
    RegistryError::new(
        Code::BlobUploadUnknown,
        format!("{} has no upload {id:?}: it was finished, cancelled or cleaned up; start a new upload", repo.name()),
    )
}

/// The store's error, with an unknown upload said in the repository's words.
fn upload_error(repo: &Repo, id: &str, err: berth_store::BlobError) -> RegistryError {
    match err {
        berth_store::BlobError::UnknownUpload(_) => unknown_upload(repo, id),
        other => other.into(),
    }
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

    pub async fn start_upload(&self, caller: &Caller, repo: &Repo) -> Result<Upload> {
        self.authorize(caller, repo, Need::Push).await?;
        self.require_namespace(repo)?;
        self.require_stream_or_creator(caller, repo)?;
        Ok(self.inner.blobs.start_upload(&repo.name()).await?)
    }

    /// Links a blob of another repository into `repo` without sending it again. Returns
    /// `false` (and the client uploads) when the caller may not read `from` or the blob
    /// is not there.
    pub async fn mount(&self, caller: &Caller, repo: &Repo, digest: &Digest, from: &str) -> Result<bool> {
        self.authorize(caller, repo, Need::Push).await?;
        self.require_namespace(repo)?;
        self.require_stream_or_creator(caller, repo)?;
        let Ok(source) = Repo::parse(from) else {
            return Ok(false);
        };
        if self.authorize(caller, &source, Need::Pull).await.is_err() || self.inner.blobs.size(digest).await?.is_none() {
            return Ok(false);
        }
        let visible = self.inner.blobs.is_linked(&source.name(), digest).await?
            || match self.find_stream(&source)? {
                Some(stream) => {
                    self.in_stream(digest, &stream).await?.is_some() && !self.inner.blobs.is_unlinked(&source.name(), digest).await?
                }
                None => false,
            };
        if visible {
            self.inner.blobs.link(&repo.name(), digest).await?;
            self.refresh(digest).await;
        }
        Ok(visible)
    }

    pub async fn upload_status(&self, caller: &Caller, repo: &Repo, id: &str) -> Result<Upload> {
        self.authorize(caller, repo, Need::Push).await?;
        self.inner.blobs.upload(id, &repo.name()).await?.ok_or_else(|| unknown_upload(repo, id))
    }

    /// Appends a chunk; `start` (from `Content-Range`) must be the upload's size. Returns
    /// the upload's new size.
    pub async fn append(&self, caller: &Caller, repo: &Repo, id: &str, start: Option<u64>, body: ByteStream) -> Result<u64> {
        self.authorize(caller, repo, Need::Push).await?;
        self.inner.blobs.append(id, &repo.name(), start, body).await.map_err(|err| upload_error(repo, id, err))
    }

    /// Finishes an upload with its last chunk (if any): the bytes must hash to `digest`.
    /// The blob is then linked to `repo`. Returns its size.
    pub async fn finish_upload(&self, caller: &Caller, repo: &Repo, id: &str, digest: &Digest, last: Option<ByteStream>) -> Result<u64> {
        self.authorize(caller, repo, Need::Push).await?;
        let name = repo.name();
        if let Some(last) = last {
            self.inner.blobs.append(id, &name, None, last).await.map_err(|err| upload_error(repo, id, err))?;
        }
        let finished = self.inner.blobs.finish(id, &name, digest).await;
        let result = if finished.is_ok() { "completed" } else { "failed" };
        metrics::counter!(crate::metrics::REGISTRY_UPLOADS, "result" => result).increment(1);
        let size = finished.map_err(|err| upload_error(repo, id, err))?;
        self.inner.blobs.link(&name, digest).await?;
        Ok(size)
    }

    pub async fn cancel_upload(&self, caller: &Caller, repo: &Repo, id: &str) -> Result<()> {
        self.authorize(caller, repo, Need::Push).await?;
        if !self.inner.blobs.cancel(id, &repo.name()).await? {
            return Err(unknown_upload(repo, id));
        }
        Ok(())
    }

    /// A whole blob in one request (`POST …/blobs/uploads/?digest=`).
    pub async fn put_blob(&self, caller: &Caller, repo: &Repo, digest: &Digest, body: ByteStream) -> Result<u64> {
        let upload = self.start_upload(caller, repo).await?;
        self.finish_upload(caller, repo, &upload.id, digest, Some(body)).await
    }
}
