//! Watches: the event log read as a stream of `ADDED|MODIFIED|DELETED` events after a
//! revision, filtered to what the caller may see. Because the store commits in revision
//! order and announces each commit after it is visible, reading the log from the last
//! revision seen never skips or repeats an event.

use std::marker::PhantomData;

use berth_model::access::Action;
use berth_model::core::{Namespace, Secret, Token};
use berth_model::image::Image;
use berth_model::imagestream::ImageStream;
use berth_store::EventType;
use serde_json::Value;

use crate::services::{Caller, Catalog, Error, ListOptions, Resource, Result};

/// How many events one read of the log returns at most.
pub const WATCH_PAGE: usize = 500;

/// A kind that can be watched, with the view of it a caller may see.
pub trait Watchable: Resource {
    /// Fails unless `caller` may watch this kind in `namespace` (all namespaces if `None`).
    fn authorize(caller: &Caller, namespace: Option<&str>) -> Result<()> {
        match namespace {
            Some(ns) if Self::NAMESPACED => caller.require(Action::Read(ns), "watch", Self::QUALIFIED),
            _ => caller.require(Action::ReadCluster, "watch", Self::QUALIFIED),
        }
    }

    /// The object as `caller` may see it, or `None` when it must not see it at all.
    fn view(catalog: &Catalog, caller: &Caller, object: Self) -> Result<Option<Self>>;
}

impl Watchable for ImageStream {
    fn view(catalog: &Catalog, _caller: &Caller, object: Self) -> Result<Option<Self>> {
        Ok(Some(catalog.with_repositories(object)))
    }
}

impl Watchable for berth_model::notify::Subscription {
    fn view(_catalog: &Catalog, _caller: &Caller, object: Self) -> Result<Option<Self>> {
        Ok(Some(object))
    }
}

/// A quota's status is filled on every read, watch events too.
impl Watchable for berth_model::quota::ResourceQuota {
    fn view(catalog: &Catalog, _caller: &Caller, object: Self) -> Result<Option<Self>> {
        let usage = catalog.quota_usage(&object.metadata.namespace)?;
        Ok(Some(catalog.quota_view(object, &usage)?))
    }
}

impl Watchable for berth_model::quota::LimitRange {
    fn view(_catalog: &Catalog, _caller: &Caller, object: Self) -> Result<Option<Self>> {
        Ok(Some(object))
    }
}

impl Watchable for Secret {
    fn view(catalog: &Catalog, caller: &Caller, object: Self) -> Result<Option<Self>> {
        Ok(Some(catalog.secret_for(caller, object)))
    }
}

impl Watchable for Namespace {
    fn authorize(_caller: &Caller, _namespace: Option<&str>) -> Result<()> {
        Ok(())
    }

    fn view(_catalog: &Catalog, caller: &Caller, object: Self) -> Result<Option<Self>> {
        Ok(caller.grant.allows(Action::SeeNamespace(&object.metadata.name)).then_some(object))
    }
}

impl Watchable for Image {
    fn authorize(_caller: &Caller, _namespace: Option<&str>) -> Result<()> {
        Ok(())
    }

    fn view(catalog: &Catalog, caller: &Caller, object: Self) -> Result<Option<Self>> {
        if !catalog.can_see_image(caller, &object.metadata.name)? {
            return Ok(None);
        }
        Ok(Some(catalog.with_class_labels(object)?))
    }
}

impl Watchable for berth_model::lineage::ImageClassGroup {
    fn authorize(_caller: &Caller, _namespace: Option<&str>) -> Result<()> {
        Ok(())
    }

    fn view(_catalog: &Catalog, _caller: &Caller, object: Self) -> Result<Option<Self>> {
        Ok(Some(object))
    }
}

impl Watchable for berth_model::policy::ImagePolicy {
    fn authorize(_caller: &Caller, _namespace: Option<&str>) -> Result<()> {
        Ok(())
    }

    fn view(_catalog: &Catalog, _caller: &Caller, object: Self) -> Result<Option<Self>> {
        Ok(Some(object))
    }
}

impl Watchable for berth_model::prune::ImagePruner {
    fn authorize(caller: &Caller, _namespace: Option<&str>) -> Result<()> {
        caller.require(berth_model::access::Action::ReadCluster, "watch", Self::QUALIFIED)
    }

    fn view(_catalog: &Catalog, _caller: &Caller, object: Self) -> Result<Option<Self>> {
        Ok(Some(object))
    }
}

impl Watchable for berth_model::lineage::ImageClass {
    fn authorize(_caller: &Caller, _namespace: Option<&str>) -> Result<()> {
        Ok(())
    }

    fn view(catalog: &Catalog, caller: &Caller, object: Self) -> Result<Option<Self>> {
        Ok(Some(catalog.class_view(caller, object)))
    }
}

impl Watchable for Token {
    fn authorize(caller: &Caller, _namespace: Option<&str>) -> Result<()> {
        caller.require(Action::AdministerCluster, "watch", Self::QUALIFIED)
    }

    fn view(_catalog: &Catalog, _caller: &Caller, mut object: Self) -> Result<Option<Self>> {
        object.secret_sha256.clear();
        Ok(Some(object))
    }
}

/// One event of a watch, ready to be written as a line.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchEvent {
    pub event_type: &'static str,
    pub object: Value,
}

/// A watch in progress: where it is in the log and what it filters on.
pub struct Watch<T> {
    caller: Caller,
    namespace: Option<String>,
    options: ListOptions,
    /// The last revision delivered (or skipped as not matching).
    pub revision: u64,
    kind: PhantomData<T>,
}

impl Catalog {
    /// Starts a watch after `resource_version`; without one, the watch starts with an
    /// `ADDED` event for every current object, read at one revision, and goes on from there.
    pub fn start_watch<T: Watchable>(
        &self,
        caller: &Caller,
        namespace: Option<&str>,
        options: ListOptions,
        resource_version: Option<u64>,
    ) -> Result<(Watch<T>, Vec<WatchEvent>)> {
        T::authorize(caller, namespace)?;
        let (revision, initial) = match resource_version {
            Some(revision) => {
                // Fails with 410 Gone now, before streaming, when the revision is compacted.
                self.store().events_since(T::RESOURCE, namespace, revision, 1).map_err(|err| Error::from_store(err, T::QUALIFIED, ""))?;
                (revision, Vec::new())
            }
            None => {
                let list = self
                    .list_objects::<T>(namespace, &ListOptions { limit: None, continue_token: None, ..options.clone() }, |_| true)?
                    .collect()?;
                let mut initial = Vec::new();
                for object in list.items {
                    if let Some(object) = T::view(self, caller, object)? {
                        initial.push(WatchEvent { event_type: EventType::Added.as_str(), object: to_value(&object) });
                    }
                }
                (list.metadata.resource_version.parse().unwrap_or(0), initial)
            }
        };
        let watch = Watch { caller: caller.clone(), namespace: namespace.map(str::to_string), options, revision, kind: PhantomData };
        Ok((watch, initial))
    }

    /// The next events of a watch, at most [`WATCH_PAGE`]; empty when it is up to date.
    /// `committed` is a revision known to be committed before this call: once the log
    /// holds no more events of this kind, the watch has seen everything up to it.
    pub fn next_events<T: Watchable>(&self, watch: &mut Watch<T>, committed: u64) -> Result<Vec<WatchEvent>> {
        let events = self
            .store()
            .events_since(T::RESOURCE, watch.namespace.as_deref(), watch.revision, WATCH_PAGE)
            .map_err(|err| Error::from_store(err, T::QUALIFIED, ""))?;
        let complete = events.len() < WATCH_PAGE;
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            watch.revision = event.object.revision;
            let object = T::decode(&event.object)?;
            if !watch.options.matches(object.meta()) {
                continue;
            }
            if let Some(object) = T::view(self, &watch.caller, object)? {
                out.push(WatchEvent { event_type: event.event_type.as_str(), object: to_value(&object) });
            }
        }
        if complete {
            watch.revision = watch.revision.max(committed);
        }
        Ok(out)
    }
}

fn to_value<T: Resource>(object: &T) -> Value {
    serde_json::to_value(object).expect("API objects always serialise")
}
