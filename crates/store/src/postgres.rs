//! The scale-out backend: one PostgreSQL database shared by every replica.
//!
//! - **Commit order is revision order across replicas.** Each replica's writer thread
//!   commits its waiting writes together (group commit, as on SQLite), and a group's
//!   transaction starts by locking the revision counter's row (`FOR UPDATE`), held to
//!   `COMMIT`: groups of all replicas commit one at a time, each numbering its changes
//!   from the revision the last one left. A watcher reading the event log by revision
//!   therefore never sees a gap fill in later.
//! - **Every replica follows every commit.** A group's commit sends the new revision on
//!   the `berth_commits` channel (`NOTIFY`, delivered at commit); each replica `LISTEN`s
//!   and raises the revision its subscribers see, and reads the revision again every
//!   second in case a notification was lost with its connection.
//! - **Reads are the database's.** A read goes to the database (never a replica's
//!   cache), so a write acknowledged by one replica is seen by a read on any other right
//!   after. A list reads its items and the revision they are at in one statement (one
//!   snapshot); a scan holds a repeatable-read transaction. `current_revision` is the
//!   revision this replica has followed (no round trip: caches ask it on every request),
//!   behind another replica's commit only until its notification arrives.
//! - **Migrations run on start-up under an advisory lock**, so replicas starting together
//!   migrate once; the schema's version is in `meta`, and a database a newer berth
//!   migrated is refused.
//!
//! tokio-postgres drives the connections on a small runtime of the store's own; the
//! store's synchronous methods wait for their answers, from any thread (the server calls
//! the store from its async workers as well as from blocking threads).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::executor::block_on;
use tokio::sync::{oneshot, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, Config, Row, SimpleQueryMessage, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use berth_model::error_chain;

use crate::write::{GroupWriter, Rules, Statements, Writer, raise, spawn_writer};
use crate::{Event, EventType, KeyPage, ListPage, ListQuery, MetadataStore, ObjectKey, Scan, StoreError, StoredObject, WriteJob};
use crate::{event_code, event_type};

/// The table every version of the schema has: counters, the schema's version among them.
const META: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key TEXT COLLATE "C" PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0) ON CONFLICT (key) DO NOTHING;
"#;

/// The schema's migrations, in order: a database at version N has had the first N. A
/// change to the schema is a new entry at the end (never an edit of one that shipped),
/// run once, in a transaction, by the first server of the new version to start.
const MIGRATIONS: &[&str] = &[SCHEMA_1];

/// Text columns compare byte by byte (`COLLATE "C"`), as SQLite's do: lists are in the
/// same order on both backends, whatever the database's locale.
const SCHEMA_1: &str = r#"
CREATE TABLE IF NOT EXISTS objects (
    resource TEXT COLLATE "C" NOT NULL,
    namespace TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL,
    PRIMARY KEY (resource, namespace, name)
);
CREATE TABLE IF NOT EXISTS refs (
    resource TEXT COLLATE "C" NOT NULL,
    reference TEXT COLLATE "C" NOT NULL,
    namespace TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (resource, reference, namespace, name)
);
CREATE INDEX IF NOT EXISTS refs_by_object ON refs (resource, namespace, name);
CREATE TABLE IF NOT EXISTS events (
    revision BIGINT PRIMARY KEY,
    resource TEXT COLLATE "C" NOT NULL,
    namespace TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    kind SMALLINT NOT NULL,
    body BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_resource ON events (resource, revision);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT COLLATE "C" PRIMARY KEY,
    holder TEXT NOT NULL,
    expires TIMESTAMPTZ NOT NULL
);
"#;

/// The advisory lock migrations run under ("berth" in ASCII).
const MIGRATION_LOCK: i64 = 0x0062_6572_7468;
/// The channel commits are announced on.
const CHANNEL: &str = "berth_commits";
/// Read connections per replica, and how long a read waits for one before it is refused
/// as busy (429), as on SQLite.
const READERS: usize = 16;
const READER_WAIT: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A statement running longer than this is cancelled by the server.
const STATEMENT_TIMEOUT: &str = "30s";
/// How often a replica reads the revision again, besides being told of commits.
const REVISION_POLL: Duration = Duration::from_secs(1);
/// Rows a scan reads at a time.
const SCAN_PAGE: i64 = 256;

/// tokio-postgres keeps the server's message and the OS error in an error's source.
fn backend(err: impl std::error::Error) -> StoreError {
    StoreError::Backend(error_chain(&err))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The runtime that drives every PostgreSQL connection of this process.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("berth-postgres")
            .enable_all()
            .build()
            .expect("the PostgreSQL connections' runtime starts")
    })
}

/// Where `config` points, for messages (never the password).
fn target(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(config.get_user().unwrap_or("")))
}

/// What a connection is made with: the URL's settings and the TLS its `sslmode` asks for.
#[derive(Clone)]
struct Database {
    config: Config,
    tls: MakeRustlsConnect,
}

/// A connection's stream: TLS or plain, as `sslmode` says and the server answers.
type Stream = <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream;

impl Database {
    async fn connect(&self) -> Result<(Client, tokio_postgres::Connection<tokio_postgres::Socket, Stream>), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }
}

/// One connection and the statements prepared on it.
struct Conn {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
}

fn connect(database: &Database) -> Result<Conn, StoreError> {
    let to = database.clone();
    let client = block_on(runtime().spawn(async move {
        let (client, connection) = to.connect().await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(%err, "a PostgreSQL connection ended");
            }
        });
        Ok::<_, tokio_postgres::Error>(client)
    }))
    .map_err(backend)?
    .map_err(|err| {
        StoreError::Backend(format!(
            "cannot connect to PostgreSQL at {}: {}; check the address (--database or BERTH_DATABASE) and that the database \
             server is up and reachable",
            target(&database.config),
            error_chain(&err)
        ))
    })?;
    Ok(Conn { client, prepared: HashMap::new() })
}

impl Conn {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = block_on(self.client.prepare(sql)).map_err(backend)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }

    fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        block_on(self.client.query(&statement, params)).map_err(backend)
    }

    fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<(), StoreError> {
        let statement = self.statement(sql)?;
        block_on(self.client.execute(&statement, params)).map(|_| ()).map_err(backend)
    }

    /// Runs statements without parameters (transaction control), one round trip.
    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        block_on(self.client.batch_execute(sql)).map_err(backend)
    }

    /// The first column of the first row `sql` returns, as a number.
    fn number(&self, sql: &str) -> Result<u64, StoreError> {
        let messages = block_on(self.client.simple_query(sql)).map_err(backend)?;
        messages
            .iter()
            .find_map(|message| match message {
                SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
                _ => None,
            })
            .ok_or_else(|| StoreError::Backend(format!("no number from {sql:?}")))
    }
}

/// The read connections: opened as needed up to [`READERS`], reused, and dropped when
/// the server closed them.
struct Pool {
    config: Database,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Conn>,
    open: usize,
}

/// A read connection, back to the pool when dropped.
struct Pooled {
    conn: Option<Conn>,
    pool: Arc<Pool>,
}

impl std::ops::Deref for Pooled {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("a pooled connection is present until dropped")
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("a pooled connection is present until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut state = lock(&self.pool.state);
        match self.conn.take() {
            Some(conn) if !conn.client.is_closed() => state.idle.push(conn),
            _ => state.open -= 1,
        }
        self.pool.freed.notify_one();
    }
}

impl Pool {
    fn get(self: &Arc<Self>) -> Result<Pooled, StoreError> {
        let deadline = Instant::now() + READER_WAIT;
        let mut state = lock(&self.state);
        loop {
            if let Some(conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Pooled { conn: Some(conn), pool: Arc::clone(self) });
            }
            if state.open < READERS {
                state.open += 1;
                drop(state);
                return match connect(&self.config) {
                    Ok(conn) => Ok(Pooled { conn: Some(conn), pool: Arc::clone(self) }),
                    Err(err) => {
                        lock(&self.state).open -= 1;
                        self.freed.notify_one();
                        Err(err)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!("every PostgreSQL read connection stayed busy");
                return Err(StoreError::Busy);
            }
            state = self.freed.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

/// The metadata store on PostgreSQL (`berth serve --database postgres://…`).
pub struct PostgresStore {
    pool: Arc<Pool>,
    writer: Writer,
    committed: watch::Sender<u64>,
    /// Ends the listener when the store is dropped.
    _listening: oneshot::Sender<()>,
}

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://user:password@host:port/db`),
    /// creating or upgrading the schema.
    pub fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let (mut config, tls) = crate::postgres_tls::parse(url)?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("berth");
        config.options(format!("-c statement_timeout={STATEMENT_TIMEOUT}"));
        let config = Database { config, tls };
        let conn = connect(&config)?;
        migrate(&conn)?;
        let revision = conn.number("SELECT value FROM meta WHERE key = 'revision'")?;
        tracing::info!(database = %target(&config.config), revision, "the catalog is in PostgreSQL");
        let (committed, _) = watch::channel(revision);
        let (listening, stop) = oneshot::channel();
        runtime().spawn(listen(config.clone(), committed.clone(), stop));
        let writer = spawn_writer("berth-pg-writer", PgWriter { config: config.clone(), conn: Some(conn) }, committed.clone())?;
        let pool = Arc::new(Pool { config, state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }), freed: Condvar::new() });
        Ok(PostgresStore { pool, writer, committed, _listening: listening })
    }
}

/// Brings the schema to this version's, under an advisory lock (replicas starting
/// together migrate once). A database a newer berth migrated is refused: this server
/// would not know its tables.
fn migrate(conn: &Conn) -> Result<(), StoreError> {
    conn.batch(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
    let migrated = run_migrations(conn);
    let unlocked = conn.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    migrated?;
    unlocked
}

fn run_migrations(conn: &Conn) -> Result<(), StoreError> {
    let failed = |err: StoreError| StoreError::Backend(format!("creating berth's tables: {err}"));
    conn.batch(META).map_err(failed)?;
    let at = conn.number("SELECT COALESCE((SELECT value FROM meta WHERE key = 'schema'), 0)").map_err(failed)? as usize;
    if at > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database's schema is version {at}, made by a newer berth; this berth knows versions up to {}: run a berth as new as \
             the one that migrated it",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(at) {
        let version = index + 1;
        conn.batch(&format!(
            "BEGIN; {migration}; INSERT INTO meta (key, value) VALUES ('schema', {version}) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value; COMMIT"
        ))
        .map_err(|err| {
            let _ = conn.batch("ROLLBACK");
            StoreError::Backend(format!("migrating the schema to version {version}: {err}"))
        })?;
        tracing::info!(version, "migrated the database's schema");
    }
    Ok(())
}

/// Follows the commits of every replica: `LISTEN` on a connection of its own (again after
/// it is lost), and the revision read every [`REVISION_POLL`] besides.
async fn listen(config: Database, committed: watch::Sender<u64>, mut stop: oneshot::Receiver<()>) {
    loop {
        let session = async {
            let (client, mut connection) = config.connect().await?;
            let announce = committed.clone();
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            let mut driver = tokio::spawn(async move {
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(note)) => {
                            if let Ok(revision) = note.payload().parse() {
                                raise(&announce, revision);
                            }
                        }
                        Ok(_) => {}
                        Err(err) => return Err(err),
                    }
                }
                Ok(())
            });
            client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
            loop {
                let row = client.query_one("SELECT value FROM meta WHERE key = 'revision'", &[]).await?;
                raise(&committed, row.get::<_, i64>(0) as u64);
                tokio::select! {
                    ended = &mut driver => {
                        return match ended {
                            Ok(result) => result,
                            Err(_) => Ok(()),
                        };
                    }
                    () = tokio::time::sleep(REVISION_POLL) => {}
                }
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            ended = session => {
                if let Err(err) = ended {
                    tracing::warn!(%err, "lost the PostgreSQL connection that follows commits; reconnecting");
                }
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(REVISION_POLL) => {}
        }
    }
}

fn row_to_object(resource: &str, row: &Row, first: usize) -> StoredObject {
    StoredObject {
        key: ObjectKey { resource: resource.to_string(), namespace: row.get(first), name: row.get(first + 1) },
        revision: row.get::<_, i64>(first + 2) as u64,
        body: row.get(first + 3),
    }
}

/// An unbounded list's limit: `LIMIT NULL` is no limit.
fn sql_limit(limit: Option<usize>) -> Option<i64> {
    limit.map(|l| l as i64 + 1)
}

/// The objects of `query` (one more than its limit, to tell whether more follow).
fn list_objects(conn: &mut Conn, query: &ListQuery, limit: Option<i64>) -> Result<Vec<StoredObject>, StoreError> {
    let (after_ns, after_name) = query.after.clone().unwrap_or_default();
    let rows = match &query.namespace {
        Some(namespace) => conn.query(
            "SELECT namespace, name, revision, body FROM objects WHERE resource = $1 AND namespace = $2 AND name > $3 \
             ORDER BY name LIMIT $4",
            &[&query.resource, namespace, &after_name, &limit],
        )?,
        None => conn.query(
            "SELECT namespace, name, revision, body FROM objects WHERE resource = $1 AND (namespace, name) > ($2, $3) \
             ORDER BY namespace, name LIMIT $4",
            &[&query.resource, &after_ns, &after_name, &limit],
        )?,
    };
    Ok(rows.iter().map(|row| row_to_object(&query.resource, row, 0)).collect())
}

/// A scan: a repeatable-read transaction on one read connection, read a page at a time.
struct PgScan {
    conn: Pooled,
    query: ListQuery,
    page: std::vec::IntoIter<StoredObject>,
    done: bool,
}

impl Iterator for PgScan {
    type Item = Result<StoredObject, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.page.next() {
            return Some(Ok(item));
        }
        if self.done {
            return None;
        }
        match list_objects(&mut self.conn, &self.query, Some(SCAN_PAGE + 1)) {
            Ok(mut rows) => {
                self.done = rows.len() as i64 <= SCAN_PAGE;
                rows.truncate(SCAN_PAGE as usize);
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

impl Drop for PgScan {
    fn drop(&mut self) {
        // Ends the read transaction before the connection goes back to the pool.
        let _ = self.conn.batch("COMMIT");
    }
}

impl MetadataStore for PostgresStore {
    fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        PgStatements(&mut *self.pool.get()?).get(key)
    }

    fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        let mut conn = self.pool.get()?;
        let (after_ns, after_name) = query.after.clone().unwrap_or_default();
        let limit = sql_limit(query.limit);
        // One statement, one snapshot: the items and the revision they are at.
        let rows = match &query.namespace {
            Some(namespace) => conn.query(
                "SELECT m.value, o.namespace, o.name, o.revision, o.body FROM meta m LEFT JOIN LATERAL \
                 (SELECT namespace, name, revision, body FROM objects WHERE resource = $1 AND namespace = $2 AND name > $3 \
                 ORDER BY name LIMIT $4) o ON true WHERE m.key = 'revision'",
                &[&query.resource, namespace, &after_name, &limit],
            )?,
            None => conn.query(
                "SELECT m.value, o.namespace, o.name, o.revision, o.body FROM meta m LEFT JOIN LATERAL \
                 (SELECT namespace, name, revision, body FROM objects WHERE resource = $1 AND (namespace, name) > ($2, $3) \
                 ORDER BY namespace, name LIMIT $4) o ON true WHERE m.key = 'revision'",
                &[&query.resource, &after_ns, &after_name, &limit],
            )?,
        };
        let revision = rows.first().map_or(0, |row| row.get::<_, i64>(0) as u64);
        let mut items: Vec<StoredObject> =
            rows.iter().filter(|row| row.get::<_, Option<String>>(1).is_some()).map(|row| row_to_object(&query.resource, row, 1)).collect();
        let more = query.limit.is_some_and(|limit| items.len() > limit);
        if let Some(limit) = query.limit {
            items.truncate(limit);
        }
        Ok(ListPage { items, revision, more })
    }

    fn scan(&self, query: &ListQuery) -> Result<Scan, StoreError> {
        let conn = self.pool.get()?;
        conn.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        // The first read fixes the snapshot every page is read from.
        let revision = match conn.number("SELECT value FROM meta WHERE key = 'revision'") {
            Ok(revision) => revision,
            Err(err) => {
                let _ = conn.batch("ROLLBACK");
                return Err(err);
            }
        };
        let scan = PgScan { conn, query: query.clone(), page: Vec::new().into_iter(), done: false };
        Ok(Scan { revision, items: Box::new(scan) })
    }

    fn list_keys(&self, query: &ListQuery) -> Result<KeyPage, StoreError> {
        let mut conn = self.pool.get()?;
        let (after_ns, after_name) = query.after.clone().unwrap_or_default();
        let limit = sql_limit(query.limit);
        let rows = match &query.namespace {
            Some(namespace) => conn.query(
                "SELECT namespace, name FROM objects WHERE resource = $1 AND namespace = $2 AND name > $3 ORDER BY name LIMIT $4",
                &[&query.resource, namespace, &after_name, &limit],
            )?,
            None => conn.query(
                "SELECT namespace, name FROM objects WHERE resource = $1 AND (namespace, name) > ($2, $3) \
                 ORDER BY namespace, name LIMIT $4",
                &[&query.resource, &after_ns, &after_name, &limit],
            )?,
        };
        let mut keys: Vec<ObjectKey> =
            rows.iter().map(|row| ObjectKey { resource: query.resource.clone(), namespace: row.get(0), name: row.get(1) }).collect();
        let more = query.limit.is_some_and(|limit| keys.len() > limit);
        if let Some(limit) = query.limit {
            keys.truncate(limit);
        }
        Ok(KeyPage { keys, more })
    }

    fn count(&self, query: &ListQuery) -> Result<u64, StoreError> {
        let mut conn = self.pool.get()?;
        let (after_ns, after_name) = query.after.clone().unwrap_or_default();
        let rows = match &query.namespace {
            Some(namespace) => conn.query(
                "SELECT COUNT(*) FROM objects WHERE resource = $1 AND namespace = $2 AND name > $3",
                &[&query.resource, namespace, &after_name],
            )?,
            None => conn.query(
                "SELECT COUNT(*) FROM objects WHERE resource = $1 AND (namespace, name) > ($2, $3)",
                &[&query.resource, &after_ns, &after_name],
            )?,
        };
        Ok(rows.first().map_or(0, |row| row.get::<_, i64>(0) as u64))
    }

    fn referrers(&self, resource: &str, reference: &str) -> Result<Vec<ObjectKey>, StoreError> {
        let rows = self.pool.get()?.query(
            "SELECT namespace, name FROM refs WHERE resource = $1 AND reference = $2 ORDER BY namespace, name",
            &[&resource, &reference],
        )?;
        Ok(rows.iter().map(|row| ObjectKey { resource: resource.to_string(), namespace: row.get(0), name: row.get(1) }).collect())
    }

    fn write(&self, job: WriteJob) -> Result<u64, StoreError> {
        self.writer.write(job)
    }

    fn events_since(&self, resource: &str, namespace: Option<&str>, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        // One statement, one snapshot: the compaction floor and the events above `after`.
        let rows = self.pool.get()?.query(
            "SELECT c.value, e.namespace, e.name, e.revision, e.body, e.kind FROM meta c LEFT JOIN LATERAL \
             (SELECT namespace, name, revision, body, kind FROM events WHERE resource = $1 AND revision > $2 \
             AND ($3::text IS NULL OR namespace = $3) ORDER BY revision LIMIT $4) e ON true WHERE c.key = 'compacted'",
            &[&resource, &(after as i64), &namespace, &(limit as i64)],
        )?;
        let floor = rows.first().map_or(0, |row| row.get::<_, i64>(0) as u64);
        if after < floor {
            return Err(StoreError::Compacted { requested: after, oldest: floor + 1 });
        }
        Ok(rows
            .iter()
            .filter(|row| row.get::<_, Option<String>>(1).is_some())
            .map(|row| Event { event_type: event_type(row.get(5)), object: row_to_object(resource, row, 1) })
            .collect())
    }

    fn current_revision(&self) -> Result<u64, StoreError> {
        // The commits this replica has followed: its own at once, others' as their
        // notification arrives. Caches ask on every request (admission, quotas), so this
        // is no round trip; reads of objects, and a list's revision, are the database's.
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
}

/// The writer thread's connection, opened again at the start of a group when it was
/// lost (never in the middle of one: a group's statements all run in its transaction).
struct PgWriter {
    config: Database,
    conn: Option<Conn>,
}

impl PgWriter {
    fn reconnected(&mut self) -> Result<&mut Conn, StoreError> {
        if self.conn.as_ref().is_none_or(|conn| conn.client.is_closed()) {
            self.conn = None;
            self.conn = Some(connect(&self.config)?);
        }
        self.current()
    }

    fn current(&mut self) -> Result<&mut Conn, StoreError> {
        self.conn.as_mut().ok_or_else(|| StoreError::Backend("the connection to PostgreSQL was lost during a write".into()))
    }
}

impl GroupWriter for PgWriter {
    fn begin(&mut self) -> Result<u64, StoreError> {
        // The row lock on the revision counter, held to COMMIT, puts every replica's
        // groups one after another: commit order is revision order.
        self.reconnected()?.number("BEGIN; SELECT value FROM meta WHERE key = 'revision' FOR UPDATE")
    }

    fn execute(&mut self, sql: &str) -> Result<(), StoreError> {
        self.current()?.batch(sql)
    }

    fn run(&mut self, revision: u64, job: WriteJob) -> Result<u64, StoreError> {
        let mut txn = Rules { statements: PgStatements(self.current()?), revision };
        job(&mut txn).map(|()| txn.revision)
    }

    fn commit(&mut self, revision: Option<u64>) -> Result<(), StoreError> {
        let conn = self.current()?;
        match revision {
            // One round trip: the counter, the announcement (sent at commit), the commit.
            Some(revision) => {
                conn.batch(&format!("UPDATE meta SET value = {revision} WHERE key = 'revision'; NOTIFY {CHANNEL}, '{revision}'; COMMIT"))
            }
            None => conn.batch("COMMIT"),
        }
    }

    fn compact(&mut self, keep: u64) -> Result<u64, StoreError> {
        let conn = self.reconnected()?;
        // The floor's row is locked, not the revision's: compaction never holds up writes.
        let floor = conn.number("BEGIN; SELECT value FROM meta WHERE key = 'compacted' FOR UPDATE")?;
        let result = conn.number("SELECT value FROM meta WHERE key = 'revision'").and_then(|revision| {
            let target = revision.saturating_sub(keep);
            if target <= floor {
                return conn.batch("COMMIT").map(|()| floor);
            }
            conn.batch(&format!(
                "DELETE FROM events WHERE revision <= {target}; UPDATE meta SET value = {target} WHERE key = 'compacted'; COMMIT"
            ))
            .map(|()| target)
        });
        if result.is_err() {
            let _ = conn.batch("ROLLBACK");
        }
        result
    }

    fn lease(&mut self, name: &str, holder: &str, ttl: Option<Duration>) -> Result<bool, StoreError> {
        let conn = self.reconnected()?;
        let Some(ttl) = ttl else {
            return conn.execute("DELETE FROM leases WHERE name = $1 AND holder = $2", &[&name, &holder]).map(|()| false);
        };
        // The database's clock decides, in one statement: a row comes back only when the
        // lease was free, expired, or already this holder's.
        let rows = conn.query(
            "INSERT INTO leases (name, holder, expires) VALUES ($1, $2, now() + make_interval(secs => $3)) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires \
             WHERE leases.holder = excluded.holder OR leases.expires < now() RETURNING holder",
            &[&name, &holder, &ttl.as_secs_f64()],
        )?;
        Ok(!rows.is_empty())
    }

    fn probe(&mut self) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        self.reconnected()?
            .execute("INSERT INTO meta (key, value) VALUES ('probe', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value", &[&now])
    }
}

/// The statements of a write (and of single reads), on one connection.
struct PgStatements<'a>(&'a mut Conn);

impl Statements for PgStatements<'_> {
    fn get(&mut self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        let rows = self.0.query(
            "SELECT namespace, name, revision, body FROM objects WHERE resource = $1 AND namespace = $2 AND name = $3",
            &[&key.resource, &key.namespace, &key.name],
        )?;
        Ok(rows.first().map(|row| row_to_object(&key.resource, row, 0)))
    }

    fn list(&mut self, resource: &str, namespace: Option<&str>) -> Result<Vec<StoredObject>, StoreError> {
        let query = ListQuery { resource: resource.to_string(), namespace: namespace.map(str::to_string), ..ListQuery::default() };
        list_objects(self.0, &query, None)
    }

    fn insert_event(&mut self, revision: u64, key: &ObjectKey, kind: EventType, body: &[u8]) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO events (revision, resource, namespace, name, kind, body) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&(revision as i64), &key.resource, &key.namespace, &key.name, &event_code(kind), &body],
        )
    }

    fn store_object(&mut self, key: &ObjectKey, revision: u64, body: &[u8], exists: bool) -> Result<(), StoreError> {
        let sql = if exists {
            "UPDATE objects SET revision = $4, body = $5 WHERE resource = $1 AND namespace = $2 AND name = $3"
        } else {
            "INSERT INTO objects (resource, namespace, name, revision, body) VALUES ($1, $2, $3, $4, $5)"
        };
        self.0.execute(sql, &[&key.resource, &key.namespace, &key.name, &(revision as i64), &body])
    }

    fn delete_object(&mut self, key: &ObjectKey) -> Result<(), StoreError> {
        self.0.execute(
            "DELETE FROM objects WHERE resource = $1 AND namespace = $2 AND name = $3",
            &[&key.resource, &key.namespace, &key.name],
        )
    }

    fn references(&mut self, key: &ObjectKey) -> Result<Vec<String>, StoreError> {
        let rows = self.0.query(
            "SELECT reference FROM refs WHERE resource = $1 AND namespace = $2 AND name = $3",
            &[&key.resource, &key.namespace, &key.name],
        )?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn add_reference(&mut self, key: &ObjectKey, reference: &str) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO refs (resource, reference, namespace, name) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&key.resource, &reference, &key.namespace, &key.name],
        )
    }

    fn remove_reference(&mut self, key: &ObjectKey, reference: &str) -> Result<(), StoreError> {
        self.0.execute(
            "DELETE FROM refs WHERE resource = $1 AND reference = $2 AND namespace = $3 AND name = $4",
            &[&key.resource, &reference, &key.namespace, &key.name],
        )
    }

    fn clear_references(&mut self, key: &ObjectKey) -> Result<(), StoreError> {
        self.0.execute("DELETE FROM refs WHERE resource = $1 AND namespace = $2 AND name = $3", &[&key.resource, &key.namespace, &key.name])
    }

    fn references_between(&mut self, resource: &str, from: &str, to: &str) -> Result<Vec<(String, ObjectKey)>, StoreError> {
        let rows = self.0.query(
            "SELECT reference, namespace, name FROM refs WHERE resource = $1 AND reference >= $2 AND reference < $3",
            &[&resource, &from, &to],
        )?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), ObjectKey { resource: resource.to_string(), namespace: row.get(1), name: row.get(2) }))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Precondition, transact};

    fn open_temp() -> (String, PostgresStore) {
        let url = berth_testkit::postgres::database().expect("a PostgreSQL database for the test");
        let store = PostgresStore::connect(&url).unwrap();
        (url, store)
    }

    crate::store_test_suite!(open_temp);

    fn put(store: &PostgresStore, name: &str) -> u64 {
        let key = ObjectKey::new("things", "ns", name);
        transact(store, move |txn| txn.put(&key, b"v", &[], Precondition::Absent)).unwrap()
    }

    /// Two replicas on one database: their writes interleave into one gap-free sequence
    /// of revisions, each hears of the other's commits, and a write acknowledged by one is
    /// read at once by the other.
    #[test]
    fn replicas_share_one_revision_order_and_hear_each_others_commits() {
        let (url, first) = open_temp();
        let second = Arc::new(PostgresStore::connect(&url).unwrap());
        let first = Arc::new(first);
        let mut heard = first.subscribe();
        let threads: Vec<_> = [&first, &second]
            .into_iter()
            .enumerate()
            .map(|(replica, store)| {
                let store = Arc::clone(store);
                std::thread::spawn(move || (0..100).map(|idx| put(&store, &format!("{replica}-{idx}"))).collect::<Vec<_>>())
            })
            .collect();
        let mut revisions: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        revisions.sort_unstable();
        assert_eq!(revisions, (1..=200).collect::<Vec<_>>(), "one gap-free sequence across both");
        let events = first.events_since("things", None, 0, 1000).unwrap();
        assert_eq!(events.iter().map(|e| e.object.revision).collect::<Vec<_>>(), revisions);

        let acknowledged = put(&second, "late");
        assert_eq!(first.get(&ObjectKey::new("things", "ns", "late")).unwrap().unwrap().revision, acknowledged, "read your writes");
        let deadline = Instant::now() + Duration::from_secs(5);
        while *heard.borrow_and_update() < acknowledged {
            assert!(Instant::now() < deadline, "the first replica was told of the second's commit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The schema's version is recorded; servers starting on a migrated database change
    /// nothing; a database a newer berth migrated is refused, unchanged.
    #[test]
    fn the_schema_is_versioned_and_a_newer_one_is_refused() {
        let (url, store) = open_temp();
        let schema = || berth_testkit::postgres::psql(&url, "SELECT value FROM meta WHERE key = 'schema'").unwrap();
        assert_eq!(schema(), MIGRATIONS.len().to_string());
        let revision = put(&store, "kept");
        drop(store);
        let again = PostgresStore::connect(&url).unwrap();
        assert_eq!(again.get(&ObjectKey::new("things", "ns", "kept")).unwrap().unwrap().revision, revision);
        drop(again);
        let newer = MIGRATIONS.len() + 1;
        berth_testkit::postgres::psql(&url, &format!("UPDATE meta SET value = {newer} WHERE key = 'schema'")).unwrap();
        let message = PostgresStore::connect(&url).err().unwrap().to_string();
        assert!(message.contains(&format!("schema is version {newer}, made by a newer berth")), "{message}");
        assert_eq!(schema(), newer.to_string(), "left as it was");
    }

    /// `sslmode` as libpq reads it: `verify-full` checks the CA and the name,
    /// `verify-ca` the CA only, `require` encrypts without checking, `disable` does not
    /// encrypt. (The test server's certificate names 127.0.0.1, not localhost.)
    #[test]
    fn tls_to_the_database_as_sslmode_asks() {
        let url = berth_testkit::postgres::database().unwrap();
        let ca = berth_testkit::postgres::ca_file().unwrap();
        let ca = ca.display();
        let on_localhost = url.replace("127.0.0.1", "localhost");
        // Whether each of berth's connections is encrypted, as the server sees them.
        let encrypted = || {
            berth_testkit::postgres::psql(
                &url,
                "SELECT string_agg(DISTINCT s.ssl::text, ',') FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = 'berth'",
            )
            .unwrap()
        };
        for (address, expected) in [
            (format!("{url}?sslmode=verify-full&sslrootcert={ca}"), "true"),
            (format!("{on_localhost}?sslmode=verify-ca&sslrootcert={ca}"), "true"),
            (format!("{on_localhost}?sslmode=require"), "true"),
            (format!("{url}?sslmode=disable"), "false"),
        ] {
            let store = PostgresStore::connect(&address).unwrap_or_else(|err| panic!("{address}: {err}"));
            put(&store, &format!("{}", expected.len() + address.len()));
            assert_eq!(encrypted(), expected, "{address}");
            drop(store);
            std::thread::sleep(Duration::from_millis(200)); // its connections close
        }
        let refused = |address: String| PostgresStore::connect(&address).err().unwrap_or_else(|| panic!("{address} connected")).to_string();
        let message = refused(format!("{on_localhost}?sslmode=verify-full&sslrootcert={ca}"));
        assert!(message.contains("cannot connect to PostgreSQL at localhost:") && message.contains("certificate"), "{message}");
        let message = refused(format!("{url}?sslmode=verify-full"));
        assert!(message.contains("certificate"), "not signed by a CA the system trusts: {message}");
        let message = refused(format!("{url}?sslmode=verify-full&sslrootcert=/nonexistent.pem"));
        assert!(message.contains("sslrootcert /nonexistent.pem"), "{message}");
        let message = refused(format!("{url}?sslmode=verify-everything"));
        assert!(message.contains("sslmode=verify-everything is none of"), "{message}");
    }

    #[test]
    fn a_database_that_does_not_answer_is_a_clear_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = PostgresStore::connect(&format!("postgres://berth:secret@127.0.0.1:{port}/catalog")).err().unwrap();
        let message = err.to_string();
        assert!(message.contains(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port}/catalog")), "{message}");
        assert!(!message.contains("secret"), "never the password: {message}");
        let err = PostgresStore::connect("mysql://nowhere").err().unwrap();
        assert!(err.to_string().contains("not a PostgreSQL URL"), "{err}");
    }
}
