//! The import controller: imports every DockerImage tag whose spec is ahead of its
//! status, first all of them at start-up, then each as the event log shows it change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_model::imagestream::ImageStream;
use berth_model::tags::{self};
use berth_store::{EventType, ListQuery, StoreError};

use crate::services::{Resource, Result};

use super::{Importer, STREAMS_IN_FLIGHT, blocking};

/// Streams being imported, each with whether it must be looked at again afterwards.
type Active = Arc<Mutex<HashMap<(String, String), bool>>>;

impl Importer {
    /// The import controller and the scheduler, until `stop` turns true. They run together
    /// (under one lease on a shared database): the scheduler checks the schedule the
    /// controller keeps. Each start begins from an empty schedule, filled from the store.
    pub async fn run_imports(self, stop: tokio::sync::watch::Receiver<bool>) {
        self.schedule.lock().expect("schedule lock").clear();
        tokio::join!(self.clone().run_controller(stop.clone()), self.run_scheduler(stop));
    }

    /// Imports pending tags until `stop` turns true, and keeps the schedule of scheduled
    /// tags: first from every stream, then from each stream the event log shows changing.
    /// One reader of the log serves both, so each stream change is decoded once.
    async fn run_controller(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let store = Arc::clone(self.catalog.store());
        let mut revisions = store.subscribe();
        let Some(mut nudged) = HeldNudges::take(&self.nudged) else {
            tracing::error!("an import controller is already running in this server");
            return;
        };
        let workers = Arc::new(tokio::sync::Semaphore::new(STREAMS_IN_FLIGHT));
        let active: Arc<Mutex<HashMap<(String, String), bool>>> = Arc::default();
        let mut after = self.scan_all(&workers, &active).await.unwrap_or_else(|err| {
            tracing::error!(error = %err.message, "the import controller could not read the image streams; it will start from now");
            store.current_revision().unwrap_or(0)
        });
        loop {
            tokio::select! {
                changed = revisions.changed() => if changed.is_err() { return },
                key = nudged.receiver().recv() => match key {
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
                        let key = &event.object.key;
                        match event.event_type {
                            EventType::Deleted => self.unschedule_stream(&key.namespace, &key.name),
                            _ => match ImageStream::decode(&event.object) {
                                Ok(stream) => self.observe(&stream, &workers, &active),
                                Err(err) => tracing::error!(error = %err.message, "the import controller could not read a stream change"),
                            },
                        }
                    }
                }
                Ok(Err(StoreError::Compacted { .. })) => match self.scan_all(&workers, &active).await {
                    Ok(revision) => after = revision,
                    Err(err) => tracing::error!(error = %err.message, "the import controller could not rescan the image streams"),
                },
                Ok(Err(err)) => tracing::error!(%err, "the import controller could not read the event log"),
                Err(_) => return,
            }
        }
    }

    /// Reads every stream that has pending or scheduled tags; returns the revision the read
    /// began at.
    async fn scan_all(&self, workers: &Arc<tokio::sync::Semaphore>, active: &Active) -> Result<u64> {
        let needs_us =
            |stream: &ImageStream| !tags::pending_imports(stream).is_empty() || stream.spec.tags.iter().any(|t| t.import_policy.scheduled);
        let (revision, streams) = self.streams_where(needs_us).await?;
        for stream in &streams {
            self.observe(stream, workers, active);
        }
        Ok(revision)
    }

    /// Acts on the current state of a stream: imports its pending tags and brings its
    /// scheduled tags into the schedule.
    fn observe(&self, stream: &ImageStream, workers: &Arc<tokio::sync::Semaphore>, active: &Active) {
        if !tags::pending_imports(stream).is_empty() {
            self.schedule((stream.metadata.namespace.clone(), stream.metadata.name.clone()), workers, active);
        }
        self.sync_schedule(stream);
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
    fn schedule(&self, key: (String, String), workers: &Arc<tokio::sync::Semaphore>, active: &Active) {
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

/// The controller's hold on the nudges: given back when the controller stops, however it
/// stops, so that it can start again (when its lease comes back). While nobody holds them,
/// nothing is sent (see [`super::ClaimGuard`]): the controller scans every stream when it starts.
struct HeldNudges {
    slot: Arc<Mutex<Option<super::Nudges>>>,
    nudges: Option<super::Nudges>,
}

impl HeldNudges {
    fn take(slot: &Arc<Mutex<Option<super::Nudges>>>) -> Option<HeldNudges> {
        let mut nudges = slot.lock().expect("nudge receiver lock").take()?;
        while nudges.try_recv().is_ok() {}
        Some(HeldNudges { slot: Arc::clone(slot), nudges: Some(nudges) })
    }

    fn receiver(&mut self) -> &mut super::Nudges {
        self.nudges.as_mut().expect("held until dropped")
    }
}

impl Drop for HeldNudges {
    fn drop(&mut self) {
        *self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = self.nudges.take();
    }
}
