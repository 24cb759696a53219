//! The embedded backend: SQLite in WAL mode, one writer connection and a pool of
//! read-only connections, so writers never fight and readers never wait for writers.

use std::path::Path;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use r2d2_sqlite::rusqlite::{self, Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::watch;

use crate::write::{GroupWriter, Rules, Statements, Writer, spawn_writer};
use crate::{Event, EventType, ListPage, ListQuery, MetadataStore, ObjectKey, StoreError, StoredObject, WriteJob, event_code, event_type};

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
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
) STRICT;
"#;

/// The writer's page cache: the pages a write touches (index roots, hot streams) stay in
/// memory instead of being read back from the file.
const WRITER_CACHE_KIB: u32 = 8 * 1024;
/// Checkpoints run on a background thread ([`CHECKPOINT_EVERY`]); this larger threshold is
/// only a safety net that makes a commit checkpoint if the background thread falls behind.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;
/// The WAL file is truncated back to this size after a checkpoint that emptied it.
const WAL_SIZE_LIMIT_BYTES: u64 = 64 * 1024 * 1024;
/// How often the background checkpointer looks for new commits. Close behind the writer:
/// the WAL restarts only after a commit finds it all copied back, and when the WAL reaches
/// [`WAL_AUTOCHECKPOINT_PAGES`] that commit copies the rest itself (at 100 ms, the rest
/// was up to 2,500 pages under a load of tag updates, and those commits took 50–100 ms).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(10);
const READERS: u32 = 16;
/// Prepared statements kept per connection: every statement berth runs, with room (the
/// default of 16 was fewer than berth's, so some were parsed again on most uses).
const STATEMENT_CACHE: usize = 64;
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
    /// The writer thread, which owns the one read-write connection.
    writer: Writer,
    readers: r2d2::Pool<SqliteConnectionManager>,
    committed: watch::Sender<u64>,
}

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

/// The bytes SQLite has allocated in this process (every connection's page cache and
/// statements), as `sqlite3_memory_used` says.
pub fn sqlite_heap_bytes() -> u64 {
    // SAFETY: sqlite3_memory_used only reads SQLite's own counter; it is thread-safe.
    u64::try_from(unsafe { rusqlite::ffi::sqlite3_memory_used() }).unwrap_or(0)
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
        writer.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI)
            .with_init(|conn| {
                conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                conn.execute_batch("PRAGMA busy_timeout = 5000;")
            });
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
        let writer = spawn_writer("berth-writer", SqliteWriter { conn: writer }, committed.clone())?;
        Ok(SqliteStore { writer, readers, committed })
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
        body: crate::packed::unpack(row.get(3)?)
            .map_err(|err| rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Blob, Box::new(err)))?,
    })
}

fn get_object(conn: &Connection, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT namespace, name, revision, body FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3")
        .map_err(backend)?;
    stmt.query_row(params![key.resource, key.namespace, key.name], |row| row_to_object(&key.resource, row)).optional().map_err(backend)
}

/// The statement of a page of `query` selecting `columns`, with parameters `?1` resource,
/// `?2` namespace, `?3`/`?4` the key to start after and `?5` the limit. A bound LIMIT makes
/// SQLite plan the statement again on every run, so an unlimited list (every list a write
/// makes) gets a statement without one (`?5` is then NULL).
fn page_sql(columns: &str, query: &ListQuery) -> String {
    let (place, order) = match query.namespace {
        Some(_) => ("namespace = ?2 AND name > ?4", "name"),
        None => ("(namespace, name) > (?3, ?4)", "namespace, name"),
    };
    let limit = if query.limit.is_some() { "LIMIT ?5" } else { "" };
    let unlimited = if query.limit.is_some() { "" } else { " AND ?5 IS NULL" };
    format!("SELECT {columns} FROM objects WHERE resource = ?1 AND {place}{unlimited} ORDER BY {order} {limit}")
}

fn list_objects(conn: &Connection, query: &ListQuery) -> Result<Vec<StoredObject>, StoreError> {
    let (after_ns, after_name) = query.after.clone().unwrap_or_default();
    let mut stmt = conn.prepare_cached(&page_sql("namespace, name, revision, body", query)).map_err(backend)?;
    let limit = query.limit.map(|l| l as i64 + 1);
    let namespace = query.namespace.clone().unwrap_or_default();
    let rows = stmt
        .query_map(params![query.resource, namespace, after_ns, after_name, limit], |row| row_to_object(&query.resource, row))
        .map_err(backend)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}

/// The keys of a page of `query` (one more than `limit`, to tell whether more follow).
fn list_keys(conn: &Connection, query: &ListQuery) -> Result<Vec<ObjectKey>, StoreError> {
    let (after_ns, after_name) = query.after.clone().unwrap_or_default();
    let limit = query.limit.map(|l| l as i64 + 1);
    let mut stmt = conn.prepare_cached(&page_sql("namespace, name", query)).map_err(backend)?;
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
        self.writer.write(job)
    }

    fn events_since(&self, resource: &str, namespace: Option<&str>, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut conn = self.reader()?;
        let txn = conn.transaction().map_err(backend)?;
        let floor = meta_value(&txn, "compacted")?;
        if after < floor {
            return Err(StoreError::Compacted { requested: after, oldest: floor + 1 });
        }
        // The limit is written into the statement: a bound one makes SQLite plan it again on
        // every run, and callers (every follower of the log, after each commit) pass a few
        // constants, so each has its cached statement.
        let sql = format!(
            "SELECT namespace, name, revision, body, kind FROM events WHERE resource = ?1 AND revision > ?2 \
             AND (?3 IS NULL OR namespace = ?3) ORDER BY revision LIMIT {limit}"
        );
        let mut stmt = txn.prepare_cached(&sql).map_err(backend)?;
        let rows = stmt
            .query_map(params![resource, after as i64, namespace], |row| {
                Ok(Event { event_type: event_type(row.get(4)?), object: row_to_object(resource, row)? })
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
        self.writer.compact(keep)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    fn probe_write(&self) -> Result<(), StoreError> {
        self.writer.probe()
    }

    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.writer.lease(name, holder, Some(ttl))
    }

    fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.writer.lease(name, holder, None).map(|_| ())
    }

    /// Empties the page cache and the statement cache of every read connection not in use
    /// (taken from the pool for that moment only: a read that asks meanwhile waits for the
    /// first one back). The writer keeps its cache (at most [`WRITER_CACHE_KIB`]): emptying
    /// it under the writer thread left the next writes waiting on a lock.
    fn release_memory(&self) {
        let idle: Vec<_> = std::iter::from_fn(|| self.readers.try_get()).take(READERS as usize).collect();
        for conn in &idle {
            conn.flush_prepared_statement_cache();
            if let Err(err) = conn.release_memory() {
                tracing::debug!(%err, "a read connection kept its page cache");
            }
        }
    }
}

/// The writer thread's connection: a group is one `BEGIN IMMEDIATE` transaction (SQLite
/// has one writer, so commit order is revision order).
struct SqliteWriter {
    conn: Connection,
}

impl GroupWriter for SqliteWriter {
    fn begin(&mut self) -> Result<u64, StoreError> {
        self.execute("BEGIN IMMEDIATE")?;
        meta_value(&self.conn, "revision")
    }

    /// Runs one of the writer's few fixed statements (BEGIN, SAVEPOINT, RELEASE, COMMIT,
    /// ROLLBACK), each parsed once.
    fn execute(&mut self, sql: &str) -> Result<(), StoreError> {
        self.conn.prepare_cached(sql).and_then(|mut stmt| stmt.execute([])).map(drop).map_err(backend)
    }

    fn run(&mut self, revision: u64, job: WriteJob) -> Result<u64, StoreError> {
        let mut txn = Rules { statements: SqliteStatements(&self.conn, PackedOnce::default()), revision };
        job(&mut txn).map(|()| txn.revision)
    }

    fn commit(&mut self, revision: Option<u64>) -> Result<(), StoreError> {
        if let Some(revision) = revision {
            self.conn
                .prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'revision'")
                .and_then(|mut stmt| stmt.execute([revision as i64]))
                .map_err(backend)?;
        }
        self.execute("COMMIT")
    }

    /// Writes the probe's row in a transaction of its own: the lock, a page write and a
    /// commit, as any write needs.
    fn probe(&mut self) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(backend)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        tx.execute("INSERT INTO meta (key, value) VALUES ('probe', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [now])
            .map_err(backend)?;
        tx.commit().map_err(backend)
    }

    fn lease(&mut self, name: &str, holder: &str, ttl: Option<Duration>) -> Result<bool, StoreError> {
        let Some(ttl) = ttl else {
            self.conn.execute("DELETE FROM leases WHERE name = ?1 AND holder = ?2", params![name, holder]).map_err(backend)?;
            return Ok(false);
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        self.conn
            .prepare_cached(
                "INSERT INTO leases (name, holder, expires_ms) VALUES (?1, ?2, ?3 + ?4) ON CONFLICT (name) DO UPDATE \
                 SET holder = excluded.holder, expires_ms = excluded.expires_ms \
                 WHERE leases.holder = excluded.holder OR leases.expires_ms < ?3 RETURNING holder",
            )
            .and_then(|mut stmt| stmt.query_row(params![name, holder, now, ttl.as_millis() as i64], |_| Ok(())).optional())
            .map(|taken| taken.is_some())
            .map_err(backend)
    }

    fn compact(&mut self, keep: u64) -> Result<u64, StoreError> {
        let conn = &self.conn;
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
}

/// The statements of a write, on the writer's connection.
struct SqliteStatements<'a>(&'a Connection, PackedOnce);

/// The last body packed for an event, with its packed bytes: a write stores the same body
/// as its event and as the object, and packs it once for both.
#[derive(Default)]
struct PackedOnce(Option<(Vec<u8>, Vec<u8>)>);

impl PackedOnce {
    /// `body` packed: taken from the last event's when it is the same body.
    fn pack<'a>(&'a self, body: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match &self.0 {
            Some((last, packed)) if last == body => std::borrow::Cow::Borrowed(packed),
            _ => crate::packed::pack(body),
        }
    }

    fn remember(&mut self, body: &[u8], packed: &[u8]) {
        self.0 = Some((body.to_vec(), packed.to_vec()));
    }
}

impl Statements for SqliteStatements<'_> {
    fn get(&mut self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        get_object(self.0, key)
    }

    fn list(&mut self, resource: &str, namespace: Option<&str>) -> Result<Vec<StoredObject>, StoreError> {
        let query = ListQuery { resource: resource.to_string(), namespace: namespace.map(str::to_string), ..ListQuery::default() };
        list_objects(self.0, &query)
    }

    fn insert_event(&mut self, revision: u64, key: &ObjectKey, kind: EventType, body: &[u8]) -> Result<(), StoreError> {
        self.0
            .prepare_cached("INSERT INTO events (revision, resource, namespace, name, kind, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .and_then(|mut stmt| {
                let packed = crate::packed::pack(body);
                stmt.execute(params![revision as i64, key.resource, key.namespace, key.name, event_code(kind), &*packed])?;
                self.1.remember(body, &packed);
                Ok(())
            })
            .map_err(backend)?;
        Ok(())
    }

    fn store_object(&mut self, key: &ObjectKey, revision: u64, body: &[u8], exists: bool) -> Result<(), StoreError> {
        let sql = if exists {
            "UPDATE objects SET revision = ?4, body = ?5 WHERE resource = ?1 AND namespace = ?2 AND name = ?3"
        } else {
            "INSERT INTO objects (resource, namespace, name, revision, body) VALUES (?1, ?2, ?3, ?4, ?5)"
        };
        self.0
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(params![key.resource, key.namespace, key.name, revision as i64, &*self.1.pack(body)]))
            .map_err(backend)?;
        Ok(())
    }

    fn delete_object(&mut self, key: &ObjectKey) -> Result<(), StoreError> {
        self.by_key("DELETE FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3", key)
    }

    fn references(&mut self, key: &ObjectKey) -> Result<Vec<String>, StoreError> {
        let mut stmt =
            self.0.prepare_cached("SELECT reference FROM refs WHERE resource = ?1 AND namespace = ?2 AND name = ?3").map_err(backend)?;
        let rows = stmt.query_map(params![key.resource, key.namespace, key.name], |row| row.get(0)).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn add_reference(&mut self, key: &ObjectKey, reference: &str) -> Result<(), StoreError> {
        self.with_reference("INSERT OR IGNORE INTO refs (resource, reference, namespace, name) VALUES (?1, ?2, ?3, ?4)", key, reference)
    }

    fn remove_reference(&mut self, key: &ObjectKey, reference: &str) -> Result<(), StoreError> {
        self.with_reference("DELETE FROM refs WHERE resource = ?1 AND reference = ?2 AND namespace = ?3 AND name = ?4", key, reference)
    }

    fn clear_references(&mut self, key: &ObjectKey) -> Result<(), StoreError> {
        self.by_key("DELETE FROM refs WHERE resource = ?1 AND namespace = ?2 AND name = ?3", key)
    }

    fn references_between(&mut self, resource: &str, from: &str, to: &str) -> Result<Vec<(String, ObjectKey)>, StoreError> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT reference, namespace, name FROM refs WHERE resource = ?1 AND reference >= ?2 AND reference < ?3")
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![resource, from, to], |row| {
                Ok((row.get::<_, String>(0)?, ObjectKey { resource: resource.to_string(), namespace: row.get(1)?, name: row.get(2)? }))
            })
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }
}

impl SqliteStatements<'_> {
    fn by_key(&self, sql: &str, key: &ObjectKey) -> Result<(), StoreError> {
        self.0.prepare_cached(sql).and_then(|mut stmt| stmt.execute(params![key.resource, key.namespace, key.name])).map_err(backend)?;
        Ok(())
    }

    fn with_reference(&self, sql: &str, key: &ObjectKey, reference: &str) -> Result<(), StoreError> {
        self.0
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(params![key.resource, reference, key.namespace, key.name]))
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Precondition;

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
