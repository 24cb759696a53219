//! The embedded backend: SQLite in WAL mode, one writer connection and a pool of
//! read-only connections, so writers never fight and readers never wait for writers.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use r2d2_sqlite::rusqlite::{self, Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::watch;

use crate::{Event, EventType, ListPage, ListQuery, MetadataStore, ObjectKey, Precondition, StoreError, StoredObject, WriteJob, WriteTxn};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0), ('schema', 1);
CREATE TABLE IF NOT EXISTS objects (
    id INTEGER PRIMARY KEY,
    resource TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    body BLOB NOT NULL
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS objects_by_key ON objects (resource, namespace, name);
CREATE TABLE IF NOT EXISTS refs (
    resource TEXT NOT NULL,
    reference TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (resource, reference, namespace, name)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_by_object ON refs (resource, namespace, name);
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY,
    resource TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    body BLOB NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS events_by_resource ON events (resource, revision);
"#;

/// The writer's page cache: the pages a write touches (index roots, hot streams) stay in
/// memory instead of being read back from the file.
const WRITER_CACHE_KIB: u32 = 8 * 1024;
/// Checkpoints run on a background thread ([`CHECKPOINT_EVERY`]); this larger threshold is
/// only a safety net that makes a commit checkpoint if the background thread falls behind.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;
/// The WAL file is truncated back to this size after a checkpoint that emptied it.
const WAL_SIZE_LIMIT_BYTES: u64 = 64 * 1024 * 1024;
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
const READERS: u32 = 16;
/// How long a read waits for a free connection before it is refused as busy (429): long
/// enough to ride out a burst, short enough that no request holds a worker for long.
const READER_WAIT: Duration = Duration::from_secs(1);

/// How hard a commit waits for the disk. `Normal` survives a crash of the process (the
/// WAL is in the operating system's hands at commit); `Full` also survives a power cut,
/// at the cost of an fsync per commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synchronous {
    Normal,
    Full,
}

pub struct SqliteStore {
    /// Work for the writer thread, which owns the one read-write connection.
    writer: mpsc::Sender<WriterMsg>,
    readers: r2d2::Pool<SqliteConnectionManager>,
    committed: watch::Sender<u64>,
}

/// What the writer thread is asked to do.
enum WriterMsg {
    Write { job: WriteJob, done: mpsc::SyncSender<Result<u64, StoreError>> },
    Compact { keep: u64, done: mpsc::SyncSender<Result<u64, StoreError>> },
    Probe { done: mpsc::SyncSender<Result<u64, StoreError>> },
}

/// The most writes committed together. Each still runs in its own savepoint.
const MAX_GROUP: usize = 64;

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<SqliteStore, StoreError> {
        let writer = Connection::open(path).map_err(backend)?;
        let sync = match synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                 PRAGMA cache_size = -{WRITER_CACHE_KIB}; PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}; \
                 PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES};"
            ))
            .map_err(backend)?;
        writer.execute_batch(SCHEMA).map_err(backend)?;
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI)
            .with_init(|conn| conn.execute_batch("PRAGMA busy_timeout = 5000;"));
        let readers = r2d2::Pool::builder()
            .max_size(READERS)
            .min_idle(Some(2))
            .connection_timeout(READER_WAIT)
            // A read-only connection to a local file does not go stale; checking it on
            // every checkout would cost a query per request.
            .test_on_check_out(false)
            .build(manager)
            .map_err(backend)?;
        let revision = meta_value(&writer, "revision")?;
        let (committed, _) = watch::channel(revision);
        spawn_checkpointer(path, committed.subscribe())?;
        let (sender, receiver) = mpsc::channel();
        let announcer = committed.clone();
        std::thread::Builder::new()
            .name("berth-writer".into())
            .spawn(move || write_forever(writer, receiver, announcer))
            .map_err(backend)?;
        Ok(SqliteStore { writer: sender, readers, committed })
    }

    fn ask(&self, msg: impl FnOnce(mpsc::SyncSender<Result<u64, StoreError>>) -> WriterMsg) -> Result<u64, StoreError> {
        let (done, result) = mpsc::sync_channel(1);
        self.writer.send(msg(done)).map_err(|_| StoreError::Backend("the writer thread has stopped".into()))?;
        result.recv().map_err(|_| StoreError::Backend("the writer thread stopped during a write".into()))?
    }

    fn reader(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>, StoreError> {
        // r2d2 fails a checkout only when no connection came free in time.
        self.readers.get().map_err(|err| {
            tracing::warn!(%err, "every read connection stayed busy");
            StoreError::Busy
        })
    }
}

/// Copies the WAL back into the database file off the commit path, so that writers never
/// pay for it. PASSIVE checkpoints neither block nor wait for readers or the writer. The
/// thread ends when the store is dropped (its revision channel closes).
fn spawn_checkpointer(path: &Path, mut committed: watch::Receiver<u64>) -> Result<(), StoreError> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.execute_batch("PRAGMA busy_timeout = 5000;").map_err(backend)?;
    std::thread::Builder::new()
        .name("berth-checkpoint".into())
        .spawn(move || {
            loop {
                std::thread::sleep(CHECKPOINT_EVERY);
                match committed.has_changed() {
                    Ok(true) => {
                        committed.mark_unchanged();
                        if let Err(err) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                            tracing::warn!(%err, "WAL checkpoint failed; will retry");
                        }
                    }
                    Ok(false) => {}
                    Err(_) => return,
                }
            }
        })
        .map_err(backend)?;
    Ok(())
}

fn meta_value(conn: &Connection, key: &str) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut stmt| stmt.query_row([key], |row| row.get::<_, i64>(0)))
        .map(|v| v as u64)
        .map_err(backend)
}

fn row_to_object(resource: &str, row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredObject> {
    Ok(StoredObject {
        key: ObjectKey { resource: resource.to_string(), namespace: row.get(0)?, name: row.get(1)? },
        revision: row.get::<_, i64>(2)? as u64,
        body: row.get(3)?,
    })
}

fn get_object(conn: &Connection, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT namespace, name, revision, body FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3")
        .map_err(backend)?;
    stmt.query_row(params![key.resource, key.namespace, key.name], |row| row_to_object(&key.resource, row)).optional().map_err(backend)
}

fn list_objects(conn: &Connection, query: &ListQuery) -> Result<Vec<StoredObject>, StoreError> {
    let (after_ns, after_name) = query.after.clone().unwrap_or_default();
    let limit = query.limit.map_or(-1, |l| l as i64 + 1);
    let mut stmt = match &query.namespace {
        Some(_) => conn.prepare_cached(
            "SELECT namespace, name, revision, body FROM objects WHERE resource = ?1 AND namespace = ?2 AND name > ?4 \
             ORDER BY name LIMIT ?5",
        ),
        None => conn.prepare_cached(
            "SELECT namespace, name, revision, body FROM objects WHERE resource = ?1 AND (namespace, name) > (?3, ?4) \
             ORDER BY namespace, name LIMIT ?5",
        ),
    }
    .map_err(backend)?;
    let namespace = query.namespace.clone().unwrap_or_default();
    let rows = stmt
        .query_map(params![query.resource, namespace, after_ns, after_name, limit], |row| row_to_object(&query.resource, row))
        .map_err(backend)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}

/// The keys of a page of `query` (one more than `limit`, to tell whether more follow).
fn list_keys(conn: &Connection, query: &ListQuery) -> Result<Vec<ObjectKey>, StoreError> {
    let (after_ns, after_name) = query.after.clone().unwrap_or_default();
    let limit = query.limit.map_or(-1, |l| l as i64 + 1);
    let mut stmt = match &query.namespace {
        Some(_) => conn.prepare_cached(
            "SELECT namespace, name FROM objects WHERE resource = ?1 AND namespace = ?2 AND name > ?4 ORDER BY name LIMIT ?5",
        ),
        None => conn.prepare_cached(
            "SELECT namespace, name FROM objects WHERE resource = ?1 AND (namespace, name) > (?3, ?4) ORDER BY namespace, name LIMIT ?5",
        ),
    }
    .map_err(backend)?;
    let namespace = query.namespace.clone().unwrap_or_default();
    let rows = stmt
        .query_map(params![query.resource, namespace, after_ns, after_name, limit], |row| {
            Ok(ObjectKey { resource: query.resource.clone(), namespace: row.get(0)?, name: row.get(1)? })
        })
        .map_err(backend)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}

/// Rows a scan reads from the database at a time.
const SCAN_PAGE: usize = 256;

/// A scan: a read transaction on one pooled connection (so every page is read at the
/// revision the scan started at), read a page at a time by key.
struct SqliteScan {
    conn: r2d2::PooledConnection<SqliteConnectionManager>,
    query: ListQuery,
    page: std::vec::IntoIter<StoredObject>,
    done: bool,
}

impl Iterator for SqliteScan {
    type Item = Result<StoredObject, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.page.next() {
            return Some(Ok(item));
        }
        if self.done {
            return None;
        }
        let query = ListQuery { limit: Some(SCAN_PAGE), ..self.query.clone() };
        match list_objects(&self.conn, &query) {
            Ok(mut rows) => {
                self.done = rows.len() <= SCAN_PAGE;
                rows.truncate(SCAN_PAGE);
                if let Some(last) = rows.last() {
                    self.query.after = Some((last.key.namespace.clone(), last.key.name.clone()));
                }
                self.page = rows.into_iter();
                self.page.next().map(Ok)
            }
            Err(err) => {
                self.done = true;
                Some(Err(err))
            }
        }
    }
}

impl Drop for SqliteScan {
    fn drop(&mut self) {
        // Ends the read transaction before the connection goes back to the pool.
        let _ = self.conn.execute_batch("COMMIT");
    }
}

impl MetadataStore for SqliteStore {
    fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        let conn = self.reader()?;
        get_object(&conn, key)
    }

    fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        let mut conn = self.reader()?;
        let txn = conn.transaction().map_err(backend)?;
        let revision = meta_value(&txn, "revision")?;
        let mut items = list_objects(&txn, query)?;
        txn.commit().map_err(backend)?;
        let more = query.limit.is_some_and(|limit| items.len() > limit);
        if let Some(limit) = query.limit {
            items.truncate(limit);
        }
        Ok(ListPage { items, revision, more })
    }

    fn scan(&self, query: &ListQuery) -> Result<crate::Scan, StoreError> {
        let conn = self.reader()?;
        conn.execute_batch("BEGIN").map_err(backend)?;
        // The first read fixes the snapshot every page is read from.
        let revision = match meta_value(&conn, "revision") {
            Ok(revision) => revision,
            Err(err) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(err);
            }
        };
        let scan = SqliteScan { conn, query: query.clone(), page: Vec::new().into_iter(), done: false };
        Ok(crate::Scan { revision, items: Box::new(scan) })
    }

    fn list_keys(&self, query: &ListQuery) -> Result<crate::KeyPage, StoreError> {
        let conn = self.reader()?;
        let mut keys = list_keys(&conn, query)?;
        let more = query.limit.is_some_and(|limit| keys.len() > limit);
        if let Some(limit) = query.limit {
            keys.truncate(limit);
        }
        Ok(crate::KeyPage { keys, more })
    }

    fn count(&self, query: &ListQuery) -> Result<u64, StoreError> {
        let conn = self.reader()?;
        let (after_ns, after_name) = query.after.clone().unwrap_or_default();
        let count: i64 = match &query.namespace {
            Some(namespace) => conn
                .prepare_cached("SELECT COUNT(*) FROM objects WHERE resource = ?1 AND namespace = ?2 AND name > ?3")
                .and_then(|mut stmt| stmt.query_row(params![query.resource, namespace, after_name], |row| row.get(0))),
            None => conn
                .prepare_cached("SELECT COUNT(*) FROM objects WHERE resource = ?1 AND (namespace, name) > (?2, ?3)")
                .and_then(|mut stmt| stmt.query_row(params![query.resource, after_ns, after_name], |row| row.get(0))),
        }
        .map_err(backend)?;
        Ok(count as u64)
    }

    fn referrers(&self, resource: &str, reference: &str) -> Result<Vec<ObjectKey>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached("SELECT namespace, name FROM refs WHERE resource = ?1 AND reference = ?2 ORDER BY namespace, name")
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![resource, reference], |row| {
                Ok(ObjectKey { resource: resource.to_string(), namespace: row.get(0)?, name: row.get(1)? })
            })
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    fn write(&self, job: WriteJob) -> Result<u64, StoreError> {
        self.ask(|done| WriterMsg::Write { job, done })
    }

    fn events_since(&self, resource: &str, namespace: Option<&str>, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut conn = self.reader()?;
        let txn = conn.transaction().map_err(backend)?;
        let floor = meta_value(&txn, "compacted")?;
        if after < floor {
            return Err(StoreError::Compacted { requested: after, oldest: floor + 1 });
        }
        let mut stmt = txn
            .prepare_cached(
                "SELECT namespace, name, revision, body, kind FROM events WHERE resource = ?1 AND revision > ?2 \
                 AND (?3 IS NULL OR namespace = ?3) ORDER BY revision LIMIT ?4",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![resource, after as i64, namespace, limit as i64], |row| {
                let event_type = match row.get::<_, i64>(4)? {
                    0 => EventType::Added,
                    1 => EventType::Modified,
                    _ => EventType::Deleted,
                };
                Ok(Event { event_type, object: row_to_object(resource, row)? })
            })
            .map_err(backend)?;
        let events = rows.collect::<Result<Vec<_>, _>>().map_err(backend)?;
        drop(stmt);
        txn.commit().map_err(backend)?;
        Ok(events)
    }

    fn current_revision(&self) -> Result<u64, StoreError> {
        Ok(*self.committed.borrow())
    }

    fn compact(&self, keep: u64) -> Result<u64, StoreError> {
        self.ask(|done| WriterMsg::Compact { keep, done })
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    fn probe_write(&self) -> Result<(), StoreError> {
        self.ask(|done| WriterMsg::Probe { done }).map(|_| ())
    }
}

/// The writer thread: takes every write waiting (up to [`MAX_GROUP`]), runs each in its
/// own savepoint inside one transaction, commits once, and only then answers each. One
/// commit (and one fsync) serves the whole group, and revisions stay in commit order.
/// Ends when the store is dropped.
fn write_forever(conn: Connection, inbox: mpsc::Receiver<WriterMsg>, committed: watch::Sender<u64>) {
    while let Ok(first) = inbox.recv() {
        let mut writes = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Write { job, done } => writes.push((job, done)),
                WriterMsg::Compact { keep, done } => {
                    commit_group(&conn, std::mem::take(&mut writes), &committed);
                    let _ = done.send(compact_log(&conn, keep));
                }
                WriterMsg::Probe { done } => {
                    commit_group(&conn, std::mem::take(&mut writes), &committed);
                    let _ = done.send(probe(&conn));
                }
            }
            if writes.len() < MAX_GROUP {
                next = inbox.try_recv().ok();
            }
        }
        commit_group(&conn, writes, &committed);
    }
}

type Reply = mpsc::SyncSender<Result<u64, StoreError>>;

fn commit_group(conn: &Connection, writes: Vec<(WriteJob, Reply)>, committed: &watch::Sender<u64>) {
    if writes.is_empty() {
        return;
    }
    let fail_all = |writes: Vec<Reply>, err: StoreError| {
        for done in writes {
            let _ = done.send(Err(err.clone()));
        }
    };
    let began = std::time::Instant::now();
    let group_size = writes.len();
    let start = match conn.execute_batch("BEGIN IMMEDIATE").map_err(backend).and_then(|()| meta_value(conn, "revision")) {
        Ok(start) => start,
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK");
            return fail_all(writes.into_iter().map(|(_, done)| done).collect(), err);
        }
    };
    let mut revision = start;
    let mut answers = Vec::with_capacity(writes.len());
    for (job, done) in writes {
        let outcome = conn.execute_batch("SAVEPOINT job").map_err(backend).and_then(|()| {
            let mut txn = SqliteTxn { conn, revision };
            // A panicking job must not take the writer thread, and every other write, with it.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut txn))) {
                Ok(result) => result.map(|()| txn.revision),
                Err(_) => Err(StoreError::Backend("a write panicked and was rolled back".into())),
            }
        });
        let answer = match outcome {
            Ok(after) => conn.execute_batch("RELEASE job").map_err(backend).map(|()| {
                revision = after;
                after
            }),
            Err(err) => {
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                Err(err)
            }
        };
        answers.push((done, answer));
    }
    let commit = if revision == start {
        conn.execute_batch("COMMIT").map_err(backend)
    } else {
        conn.execute("UPDATE meta SET value = ?1 WHERE key = 'revision'", [revision as i64])
            .map_err(backend)
            .and_then(|_| conn.execute_batch("COMMIT").map_err(backend))
    };
    metrics::histogram!(crate::metrics::COMMIT_DURATION).record(began.elapsed().as_secs_f64());
    metrics::histogram!(crate::metrics::COMMIT_GROUP_SIZE).record(group_size as f64);
    match commit {
        Ok(()) => {
            if revision != start {
                committed.send_replace(revision);
            }
            for (done, answer) in answers {
                let _ = done.send(answer);
            }
        }
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK");
            fail_all(answers.into_iter().map(|(done, _)| done).collect(), err);
        }
    }
}

/// Writes the probe's row in a transaction of its own: the lock, a page write and a
/// commit, as any write needs.
fn probe(conn: &Connection) -> Result<u64, StoreError> {
    let tx = conn.unchecked_transaction().map_err(backend)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    tx.execute("INSERT INTO meta (key, value) VALUES ('probe', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [now])
        .map_err(backend)?;
    tx.commit().map_err(backend)?;
    Ok(0)
}

fn compact_log(conn: &Connection, keep: u64) -> Result<u64, StoreError> {
    let revision = meta_value(conn, "revision")?;
    let floor = meta_value(conn, "compacted")?;
    let target = revision.saturating_sub(keep);
    if target <= floor {
        return Ok(floor);
    }
    let tx = conn.unchecked_transaction().map_err(backend)?;
    tx.execute("DELETE FROM events WHERE revision <= ?1", [target as i64]).map_err(backend)?;
    tx.execute("UPDATE meta SET value = ?1 WHERE key = 'compacted'", [target as i64]).map_err(backend)?;
    tx.commit().map_err(backend)?;
    Ok(target)
}

struct SqliteTxn<'a> {
    conn: &'a Connection,
    revision: u64,
}

impl SqliteTxn<'_> {
    fn check(&self, key: &ObjectKey, current: Option<&StoredObject>, expect: Precondition) -> Result<(), StoreError> {
        match (expect, current) {
            (Precondition::Any, _) => Ok(()),
            (Precondition::Absent, None) => Ok(()),
            (Precondition::Absent, Some(_)) => Err(StoreError::AlreadyExists(key.clone())),
            (Precondition::Revision(_), None) => Err(StoreError::NotFound(key.clone())),
            (Precondition::Revision(expected), Some(found)) if found.revision != expected => {
                Err(StoreError::Conflict { key: key.clone(), expected, actual: found.revision })
            }
            (Precondition::Revision(_), Some(_)) => Ok(()),
        }
    }

    fn record_event(&mut self, key: &ObjectKey, kind: EventType, body: &[u8]) -> Result<u64, StoreError> {
        self.revision += 1;
        let kind = match kind {
            EventType::Added => 0,
            EventType::Modified => 1,
            EventType::Deleted => 2,
        };
        self.conn
            .prepare_cached("INSERT INTO events (revision, resource, namespace, name, kind, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .and_then(|mut stmt| stmt.execute(params![self.revision as i64, key.resource, key.namespace, key.name, kind, body]))
            .map_err(backend)?;
        Ok(self.revision)
    }

    /// Makes the object's references exactly `refs`, touching only those that changed
    /// (a stream's update usually adds one image to dozens it already names).
    fn replace_refs(&self, key: &ObjectKey, refs: &[String], existed: bool) -> Result<(), StoreError> {
        let mut wanted: Vec<&str> = refs.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let existing: Vec<String> = if existed {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT reference FROM refs WHERE resource = ?1 AND namespace = ?2 AND name = ?3")
                .map_err(backend)?;
            let rows = stmt.query_map(params![key.resource, key.namespace, key.name], |row| row.get(0)).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)?
        } else {
            Vec::new()
        };
        let mut remove = self
            .conn
            .prepare_cached("DELETE FROM refs WHERE resource = ?1 AND reference = ?2 AND namespace = ?3 AND name = ?4")
            .map_err(backend)?;
        for reference in existing.iter().filter(|r| wanted.binary_search(&r.as_str()).is_err()) {
            remove.execute(params![key.resource, reference, key.namespace, key.name]).map_err(backend)?;
        }
        let mut insert = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO refs (resource, reference, namespace, name) VALUES (?1, ?2, ?3, ?4)")
            .map_err(backend)?;
        for reference in wanted.iter().filter(|r| !existing.iter().any(|e| e == *r)) {
            insert.execute(params![key.resource, reference, key.namespace, key.name]).map_err(backend)?;
        }
        Ok(())
    }

    fn clear_refs(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM refs WHERE resource = ?1 AND namespace = ?2 AND name = ?3")
            .and_then(|mut stmt| stmt.execute(params![key.resource, key.namespace, key.name]))
            .map_err(backend)?;
        Ok(())
    }
}

impl WriteTxn for SqliteTxn<'_> {
    fn referrers_with_prefix(&mut self, resource: &str, prefix: &str) -> Result<Vec<(String, ObjectKey)>, StoreError> {
        // A range of the primary key: every reference from the prefix up to the prefix
        // with its last byte raised (the prefixes berth uses are ASCII).
        let mut end = prefix.to_string();
        let last = end.pop().map_or('\u{1}', |c| char::from_u32(c as u32 + 1).unwrap_or(char::MAX));
        end.push(last);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT reference, namespace, name FROM refs WHERE resource = ?1 AND reference >= ?2 AND reference < ?3")
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![resource, prefix, end], |row| {
                Ok((row.get::<_, String>(0)?, ObjectKey { resource: resource.to_string(), namespace: row.get(1)?, name: row.get(2)? }))
            })
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    fn get(&mut self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        get_object(self.conn, key)
    }

    fn list(&mut self, resource: &str, namespace: Option<&str>) -> Result<Vec<StoredObject>, StoreError> {
        let query = ListQuery { resource: resource.to_string(), namespace: namespace.map(str::to_string), ..ListQuery::default() };
        list_objects(self.conn, &query)
    }

    fn put(&mut self, key: &ObjectKey, body: &[u8], refs: &[String], expect: Precondition) -> Result<u64, StoreError> {
        let current = get_object(self.conn, key)?;
        self.check(key, current.as_ref(), expect)?;
        let revision = match &current {
            // Writing the same bytes again is no change: no event, no new revision.
            Some(current) if current.body == body => return Ok(current.revision),
            Some(_) => {
                let revision = self.record_event(key, EventType::Modified, body)?;
                self.conn
                    .prepare_cached("UPDATE objects SET revision = ?4, body = ?5 WHERE resource = ?1 AND namespace = ?2 AND name = ?3")
                    .and_then(|mut stmt| stmt.execute(params![key.resource, key.namespace, key.name, revision as i64, body]))
                    .map_err(backend)?;
                revision
            }
            None => {
                let revision = self.record_event(key, EventType::Added, body)?;
                self.conn
                    .prepare_cached("INSERT INTO objects (resource, namespace, name, revision, body) VALUES (?1, ?2, ?3, ?4, ?5)")
                    .and_then(|mut stmt| stmt.execute(params![key.resource, key.namespace, key.name, revision as i64, body]))
                    .map_err(backend)?;
                revision
            }
        };
        self.replace_refs(key, refs, current.is_some())?;
        Ok(revision)
    }

    fn delete(&mut self, key: &ObjectKey, expect: Precondition) -> Result<u64, StoreError> {
        let Some(current) = get_object(self.conn, key)? else {
            return Err(StoreError::NotFound(key.clone()));
        };
        self.check(key, Some(&current), expect)?;
        let revision = self.record_event(key, EventType::Deleted, &current.body)?;
        self.conn
            .prepare_cached("DELETE FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3")
            .and_then(|mut stmt| stmt.execute(params![key.resource, key.namespace, key.name]))
            .map_err(backend)?;
        self.clear_refs(key)?;
        Ok(revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_temp() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("berth.db"), Synchronous::Normal).unwrap();
        (dir, store)
    }

    crate::store_test_suite!(open_temp);

    #[test]
    fn a_read_waits_briefly_for_a_busy_pool_then_is_refused_as_busy() {
        let (_dir, store) = open_temp();
        let all = ListQuery { resource: "things".into(), ..ListQuery::default() };
        let scans: Vec<_> = (0..READERS).map(|_| store.scan(&all).unwrap()).collect();
        let started = std::time::Instant::now();
        assert_eq!(store.get(&ObjectKey::new("things", "ns", "a")), Err(StoreError::Busy));
        assert!(started.elapsed() >= READER_WAIT && started.elapsed() < READER_WAIT * 3, "{:?}", started.elapsed());
        drop(scans);
        assert_eq!(store.get(&ObjectKey::new("things", "ns", "a")), Ok(None), "the connections came back");
    }

    #[test]
    fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        let key = ObjectKey::new("things", "ns", "a");
        {
            let store = SqliteStore::open(&path, Synchronous::Full).unwrap();
            crate::transact(&store, {
                let key = key.clone();
                move |txn| txn.put(&key, b"one", &[], Precondition::Absent)
            })
            .unwrap();
        }
        let store = SqliteStore::open(&path, Synchronous::Full).unwrap();
        assert_eq!(store.get(&key).unwrap().unwrap().body, b"one");
        assert_eq!(store.current_revision().unwrap(), 1);
    }
}
