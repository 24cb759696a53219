//! The import controller: imports every DockerImage tag whose spec is ahead of its
//! status, first all of them at start-up, then each as the event log shows it change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_model::imagestream::ImageStream;
use berth_model::tags::{self};
use berth_store::{EventType, ListQuery, StoreError};

use crate::services::{Resource, Result};

use super::{Importer, STREAMS_IN_FLIGHT, blocking};

impl Importer {
    /// Imports pending tags until `stop` turns true: first every stream that has some, then
    /// each stream the event log shows changing.
    pub async fn run_controller(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let store = Arc::clone(self.catalog.store());
        let mut revisions = store.subscribe();
        let mut nudged = self.nudged.lock().expect("nudge receiver lock").take().expect("the controller runs once");
        let workers = Arc::new(tokio::sync::Semaphore::new(STREAMS_IN_FLIGHT));
        let active: Arc<Mutex<HashMap<(String, String), bool>>> = Arc::default();
        let mut after = match self.scan_all().await {
            Ok((revision, streams)) => {
                for key in streams {
                    self.schedule(key, &workers, &active);
                }
                revision
            }
            Err(err) => {
                tracing::error!(error = %err.message, "the import controller could not read the image streams; it will start from now");
                store.current_revision().unwrap_or(0)
            }
        };
        loop {
            tokio::select! {
                changed = revisions.changed() => if changed.is_err() { return },
                key = nudged.recv() => match key {
                    Some(key) => { self.schedule(key, &workers, &active); continue; }
                    None => return,
                },
                _ = stop.changed() => return,
            }
            let store = Arc::clone(&store);
            let read = tokio::task::spawn_blocking(move || store.events_since(ImageStream::RESOURCE, None, after, 10_000)).await;
            match read {
                Ok(Ok(events)) => {
                    for event in events {
                        after = after.max(event.object.revision);
                        if event.event_type == EventType::Deleted {
                            continue;
                        }
                        if let Ok(stream) = ImageStream::decode(&event.object)
                            && !tags::pending_imports(&stream).is_empty()
                        {
                            self.schedule((stream.metadata.namespace.clone(), stream.metadata.name.clone()), &workers, &active);
                        }
                    }
                }
                Ok(Err(StoreError::Compacted { .. })) => match self.scan_all().await {
                    Ok((revision, streams)) => {
                        after = revision;
                        for key in streams {
                            self.schedule(key, &workers, &active);
                        }
                    }
                    Err(err) => tracing::error!(error = %err.message, "the import controller could not rescan the image streams"),
                },
                Ok(Err(err)) => tracing::error!(%err, "the import controller could not read the event log"),
                Err(_) => return,
            }
        }
    }

    /// Every stream with pending imports, and the revision the scan saw.
    async fn scan_all(&self) -> Result<(u64, Vec<(String, String)>)> {
        let (revision, streams) = self.streams_where(|stream| !tags::pending_imports(stream).is_empty()).await?;
        Ok((revision, streams.into_iter().map(|s| (s.metadata.namespace, s.metadata.name)).collect()))
    }

    /// Every stream that passes `keep`, read page by page, and the revision the read began
    /// at (changes after it come from the event log).
    pub(super) async fn streams_where(&self, keep: fn(&ImageStream) -> bool) -> Result<(u64, Vec<ImageStream>)> {
        let catalog = self.catalog.clone();
        blocking(move || {
            let store = catalog.store();
            let revision = store.current_revision()?;
            let mut found = Vec::new();
            let mut query = ListQuery { resource: ImageStream::RESOURCE.to_string(), limit: Some(500), ..ListQuery::default() };
            loop {
                let page = store.list(&query)?;
                for stored in &page.items {
                    let stream = ImageStream::decode(stored)?;
                    if keep(&stream) {
                        found.push(stream);
                    }
                }
                match (page.more, page.items.last()) {
                    (true, Some(last)) => query.after = Some((last.key.namespace.clone(), last.key.name.clone())),
                    _ => return Ok((revision, found)),
                }
            }
        })
        .await
    }

    /// Runs one stream's import unless one is running; then it runs again afterwards.
    fn schedule(&self, key: (String, String), workers: &Arc<tokio::sync::Semaphore>, active: &Arc<Mutex<HashMap<(String, String), bool>>>) {
        {
            let mut active = active.lock().expect("active imports lock");
            if let Some(again) = active.get_mut(&key) {
                *again = true;
                return;
            }
            active.insert(key.clone(), false);
        }
        let (importer, workers, active) = (self.clone(), Arc::clone(workers), Arc::clone(active));
        tokio::spawn(async move {
            loop {
                let permit = workers.acquire().await;
                if let Err(err) = importer.import_pending(&key.0, &key.1).await {
                    tracing::warn!(namespace = %key.0, stream = %key.1, error = %err.message, "import failed");
                }
                drop(permit);
                let mut active = active.lock().expect("active imports lock");
                match active.get_mut(&key) {
                    Some(again) if *again => *again = false,
                    _ => {
                        active.remove(&key);
                        return;
                    }
                }
            }
        });
    }
}
