//! berth's persistence. All SQL lives in this crate, behind one [`MetadataStore`] trait;
//! this crate never calls services and knows nothing of the objects' contents: it stores
//! each object as opaque bytes under `(resource, namespace, name)` with the global
//! revision of its last change, the references it declares (for reverse look-ups), and
//! one event-log entry per change.
//!
//! Every write runs in one transaction that also appends to the event log and moves the
//! global revision, so a watcher can never miss or invent a change and a crash leaves all
//! of a write or none of it. Writes commit in revision order, which is what lets a
//! watcher stream the log without gaps.
//!
//! The trait is synchronous: the server calls it from blocking threads. That keeps a
//! transaction a plain closure over the pure model rules, for SQLite as for PostgreSQL
//! (which locks the revision counter's row in each write transaction to keep commit
//! order equal to revision order across replicas). The rules of a write live once, in
//! `write.rs`; each backend brings its statements.

pub mod blobs;
/// The names under which a store records its commits (with the `metrics` macros).
pub mod metrics {
    /// Seconds from a group's `BEGIN` to its `COMMIT` returning.
    pub const COMMIT_DURATION: &str = "berth_store_commit_duration_seconds";
    /// Writes committed together.
    pub const COMMIT_GROUP_SIZE: &str = "berth_store_commit_group_size";
}
mod packed;
mod postgres;
mod postgres_tls;
mod sqlite;
pub mod suite;
mod write;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

pub use blobs::{BlobCheck, BlobError, BlobRead, BlobStore, ByteStream, Hasher, MirrorSink, SweepOptions, SweepReport, Upload};
pub use postgres::PostgresStore;
pub use sqlite::{SqliteStore, Synchronous, sqlite_heap_bytes};

/// Names one stored object. Cluster-scoped objects have an empty namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(resource: &str, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey { resource: resource.to_string(), namespace: namespace.to_string(), name: name.to_string() }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {:?}", self.resource, self.name)
        } else {
            write!(f, "{} {:?} in namespace {:?}", self.resource, self.name, self.namespace)
        }
    }
}

/// An object as stored: its bytes and the revision of its last change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub key: ObjectKey,
    pub revision: u64,
    pub body: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// How backends store an event's type.
fn event_code(kind: EventType) -> i16 {
    match kind {
        EventType::Added => 0,
        EventType::Modified => 1,
        EventType::Deleted => 2,
    }
}

fn event_type(code: i16) -> EventType {
    match code {
        0 => EventType::Added,
        1 => EventType::Modified,
        _ => EventType::Deleted,
    }
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One entry of the event log: the object after the change (before it, for a delete),
/// at the change's revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_type: EventType,
    pub object: StoredObject,
}

/// What a write expects to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Whatever is there.
    Any,
    /// Nothing: this is a create.
    Absent,
    /// The object at exactly this revision (optimistic concurrency).
    Revision(u64),
}

/// A page of a list, read at one consistent revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub items: Vec<StoredObject>,
    /// The store's revision when the page was read.
    pub revision: u64,
    /// Whether more objects follow the last item.
    pub more: bool,
}

/// Every object of a list, read one page at a time as they are taken, all at one
/// consistent revision: a list of any size without holding it in memory. A scan holds
/// one of the store's read connections until it is dropped.
pub struct Scan {
    /// The store's revision the scan reads at.
    pub revision: u64,
    pub items: Box<dyn Iterator<Item = Result<StoredObject, StoreError>> + Send>,
}

/// A page of the keys of a list (no bodies), and whether more follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<ObjectKey>,
    pub more: bool,
}

/// Which objects to list: one resource, optionally one namespace, in `(namespace, name)`
/// order, starting after `after` when continuing a paged list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub resource: String,
    pub namespace: Option<String>,
    pub after: Option<(String, String)>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    AlreadyExists(ObjectKey),
    #[error("{0} not found")]
    NotFound(ObjectKey),
    #[error("{key} has been modified: expected revision {expected}, found {actual}")]
    Conflict { key: ObjectKey, expected: u64, actual: u64 },
    #[error("revision {requested} has been compacted: the oldest revision the event log holds is {oldest}")]
    Compacted { requested: u64, oldest: u64 },
    /// The transaction's closure failed; its own error is carried separately by [`transact`].
    #[error("transaction aborted")]
    Aborted,
    /// Every read connection stayed busy for as long as a reader waits for one.
    #[error("every read connection of the store is busy")]
    Busy,
    #[error("storage failure: {0}")]
    Backend(String),
}

/// A unit of work for [`MetadataStore::write`].
pub type WriteJob = Box<dyn FnOnce(&mut dyn WriteTxn) -> Result<(), StoreError> + Send + 'static>;

/// The operations of one write transaction.
pub trait WriteTxn {
    fn get(&mut self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError>;
    /// Every object of `resource` in `namespace` (all namespaces when `None`).
    fn list(&mut self, resource: &str, namespace: Option<&str>) -> Result<Vec<StoredObject>, StoreError>;
    /// Creates or replaces an object, recording `refs` as the references it declares.
    /// Returns the revision of the change.
    fn put(&mut self, key: &ObjectKey, body: &[u8], refs: &[String], expect: Precondition) -> Result<u64, StoreError>;
    /// Deletes an object. Returns the revision of the change.
    fn delete(&mut self, key: &ObjectKey, expect: Precondition) -> Result<u64, StoreError>;
    /// The objects of `resource` that declare a reference starting with `prefix`, with
    /// that reference, as this transaction sees them.
    fn referrers_with_prefix(&mut self, resource: &str, prefix: &str) -> Result<Vec<(String, ObjectKey)>, StoreError>;
}

/// The metadata store: one behavioural contract ([`suite`]) every backend passes.
pub trait MetadataStore: Send + Sync {
    fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError>;
    fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError>;
    /// Every object `query` names (`limit` is ignored), read as the iterator is taken.
    fn scan(&self, query: &ListQuery) -> Result<Scan, StoreError>;
    /// The keys of a page of `query`, without reading any object's body.
    fn list_keys(&self, query: &ListQuery) -> Result<KeyPage, StoreError>;
    /// How many objects `query` would list, all pages together (`limit` is ignored).
    fn count(&self, query: &ListQuery) -> Result<u64, StoreError>;
    /// Keys of the objects of `resource` that declared `reference` when last written.
    fn referrers(&self, resource: &str, reference: &str) -> Result<Vec<ObjectKey>, StoreError>;
    /// Runs `job` atomically and returns once it is committed (durably, as the backend is
    /// configured): all of its changes or, when it returns `Err`, none. A backend may
    /// commit several jobs together (group commit); each still sees the others' changes
    /// only as a whole and in revision order. Returns the revision of the job's last
    /// change (the current revision when it changed nothing).
    fn write(&self, job: WriteJob) -> Result<u64, StoreError>;
    /// Up to `limit` events of `resource` (in `namespace`, when given) with a revision
    /// above `after`, oldest first. Fails with [`StoreError::Compacted`] when events after
    /// `after` may already have been dropped.
    fn events_since(&self, resource: &str, namespace: Option<&str>, after: u64, limit: usize) -> Result<Vec<Event>, StoreError>;
    fn current_revision(&self) -> Result<u64, StoreError>;
    /// Drops event-log entries so that at most `keep` remain. Returns the new floor: the
    /// highest revision that can no longer be watched from.
    fn compact(&self, keep: u64) -> Result<u64, StoreError>;
    /// Receives the revision of each commit, in order, as it becomes visible to reads.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Proves the store takes writes now: writes and commits something no reader sees (no
    /// revision, no event), behind the writes already waiting. Readiness checks call it.
    fn probe_write(&self) -> Result<(), StoreError>;
    /// Takes or renews the lease `name` for `holder` for `ttl`: true when `holder` holds it
    /// now (it was free, expired, or already `holder`'s), false when another holder's
    /// lease runs. The store's clock decides expiry (the database's, on PostgreSQL, so
    /// replicas' clocks need not agree). Leases are no catalog change: no revision, no event.
    fn lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool, StoreError>;
    /// Gives up `holder`'s lease `name`, if it holds it, so that another may take it at once.
    fn release(&self, name: &str, holder: &str) -> Result<(), StoreError>;
    /// Frees the memory the store keeps only to go faster (page caches of connections not
    /// in use), for when the server has gone quiet. Reads after it only go slower, once.
    fn release_memory(&self) {}
}

/// Runs `f` as one write transaction, carrying its own error type through: an `Err`
/// from `f` rolls back and is returned as is.
pub fn transact<T, E, F>(store: &dyn MetadataStore, f: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&mut dyn WriteTxn) -> Result<T, E> + Send + 'static,
{
    let outcome: Arc<Mutex<Option<Result<T, E>>>> = Arc::default();
    let slot = Arc::clone(&outcome);
    let committed = store.write(Box::new(move |txn| {
        let result = f(txn);
        let failed = result.is_err();
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        if failed { Err(StoreError::Aborted) } else { Ok(()) }
    }));
    let outcome = outcome.lock().unwrap_or_else(PoisonError::into_inner).take();
    match (committed, outcome) {
        (Ok(_), Some(result)) => result,
        (Err(StoreError::Aborted), Some(Err(err))) => Err(err),
        (Err(err), _) => Err(err.into()),
        (Ok(_), None) => Err(StoreError::Backend("a transaction committed without running".to_string()).into()),
    }
}
