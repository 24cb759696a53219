//! What every backend's writes share: the rules of a write (preconditions, writing the
//! same bytes is no change, one event and one revision per change, references updated by
//! difference) over the few statements a backend runs ([`Statements`]), and the writer
//! thread that commits waiting writes together ([`GroupWriter`], [`spawn_writer`]).
//! A backend brings its SQL; the behaviour lives here once.

use std::sync::mpsc;

use tokio::sync::watch;

use crate::{EventType, ObjectKey, Precondition, StoreError, StoredObject, WriteJob, WriteTxn};

/// The statements a write transaction runs, in one backend's SQL.
pub(crate) trait Statements {
    fn get(&mut self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError>;
    fn list(&mut self, resource: &str, namespace: Option<&str>) -> Result<Vec<StoredObject>, StoreError>;
    fn insert_event(&mut self, revision: u64, key: &ObjectKey, kind: EventType, body: &[u8]) -> Result<(), StoreError>;
    /// Inserts the object, or replaces its revision and body when `exists`.
    fn store_object(&mut self, key: &ObjectKey, revision: u64, body: &[u8], exists: bool) -> Result<(), StoreError>;
    fn delete_object(&mut self, key: &ObjectKey) -> Result<(), StoreError>;
    /// The references the object declares now.
    fn references(&mut self, key: &ObjectKey) -> Result<Vec<String>, StoreError>;
    fn add_reference(&mut self, key: &ObjectKey, reference: &str) -> Result<(), StoreError>;
    fn remove_reference(&mut self, key: &ObjectKey, reference: &str) -> Result<(), StoreError>;
    fn clear_references(&mut self, key: &ObjectKey) -> Result<(), StoreError>;
    /// The references of `resource` in `[from, to)`, with the objects declaring them.
    fn references_between(&mut self, resource: &str, from: &str, to: &str) -> Result<Vec<(String, ObjectKey)>, StoreError>;
}

/// One job's view of the group's transaction: the rules of a write over a backend's
/// statements, counting revisions from the one the group started at.
pub(crate) struct Rules<S> {
    pub statements: S,
    pub revision: u64,
}

impl<S: Statements> Rules<S> {
    fn check(key: &ObjectKey, current: Option<&StoredObject>, expect: Precondition) -> Result<(), StoreError> {
        match (expect, current) {
            (Precondition::Any, _) | (Precondition::Absent, None) => Ok(()),
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
        self.statements.insert_event(self.revision, key, kind, body)?;
        Ok(self.revision)
    }

    /// Makes the object's references exactly `refs`, touching only those that changed
    /// (a stream's update usually adds one image to dozens it already names).
    fn replace_refs(&mut self, key: &ObjectKey, refs: &[String], existed: bool) -> Result<(), StoreError> {
        let mut wanted: Vec<&str> = refs.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let existing = if existed { self.statements.references(key)? } else { Vec::new() };
        for reference in existing.iter().filter(|r| wanted.binary_search(&r.as_str()).is_err()) {
            self.statements.remove_reference(key, reference)?;
        }
        for reference in wanted.iter().filter(|r| !existing.iter().any(|e| e == *r)) {
            self.statements.add_reference(key, reference)?;
        }
        Ok(())
    }
}

impl<S: Statements> WriteTxn for Rules<S> {
    fn get(&mut self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        self.statements.get(key)
    }

    fn list(&mut self, resource: &str, namespace: Option<&str>) -> Result<Vec<StoredObject>, StoreError> {
        self.statements.list(resource, namespace)
    }

    fn put(&mut self, key: &ObjectKey, body: &[u8], refs: &[String], expect: Precondition) -> Result<u64, StoreError> {
        let current = self.statements.get(key)?;
        Self::check(key, current.as_ref(), expect)?;
        if let Some(current) = &current
            && current.body == body
        {
            // Writing the same bytes again is no change: no event, no new revision.
            return Ok(current.revision);
        }
        let kind = if current.is_some() { EventType::Modified } else { EventType::Added };
        let revision = self.record_event(key, kind, body)?;
        self.statements.store_object(key, revision, body, current.is_some())?;
        self.replace_refs(key, refs, current.is_some())?;
        Ok(revision)
    }

    fn delete(&mut self, key: &ObjectKey, expect: Precondition) -> Result<u64, StoreError> {
        let Some(current) = self.statements.get(key)? else {
            return Err(StoreError::NotFound(key.clone()));
        };
        Self::check(key, Some(&current), expect)?;
        let revision = self.record_event(key, EventType::Deleted, &current.body)?;
        self.statements.delete_object(key)?;
        self.statements.clear_references(key)?;
        Ok(revision)
    }

    fn referrers_with_prefix(&mut self, resource: &str, prefix: &str) -> Result<Vec<(String, ObjectKey)>, StoreError> {
        // A range of the index: every reference from the prefix up to the prefix with its
        // last character raised (the prefixes berth uses are ASCII).
        let mut end = prefix.to_string();
        let last = end.pop().map_or('\u{1}', |c| char::from_u32(c as u32 + 1).unwrap_or(char::MAX));
        end.push(last);
        self.statements.references_between(resource, prefix, &end)
    }
}

/// A backend's connection as the writer thread drives it: one transaction per group of
/// writes, each write in a savepoint of its own.
pub(crate) trait GroupWriter {
    /// Begins a group's transaction, taking what keeps commits in revision order, and
    /// returns the revision it starts from.
    fn begin(&mut self) -> Result<u64, StoreError>;
    /// Runs one statement without parameters (savepoints, rollbacks).
    fn execute(&mut self, sql: &str) -> Result<(), StoreError>;
    /// Runs `job` over [`Rules`] from `revision`; returns the revision after it.
    fn run(&mut self, revision: u64, job: WriteJob) -> Result<u64, StoreError>;
    /// Commits the group; `revision` is its new revision, `None` when nothing changed.
    fn commit(&mut self, revision: Option<u64>) -> Result<(), StoreError>;
    /// Drops event-log entries so that at most `keep` remain; returns the new floor.
    fn compact(&mut self, keep: u64) -> Result<u64, StoreError>;
    /// Commits a row no reader sees, as a readiness check.
    fn probe(&mut self) -> Result<(), StoreError>;
    /// Takes or renews a lease for `ttl` (whether `holder` holds it after), or releases it
    /// when `ttl` is `None`.
    fn lease(&mut self, name: &str, holder: &str, ttl: Option<std::time::Duration>) -> Result<bool, StoreError>;
}

/// What the writer thread is asked to do.
enum WriterMsg {
    Write { job: WriteJob, done: Reply },
    Compact { keep: u64, done: Reply },
    Probe { done: Reply },
    Lease { name: String, holder: String, ttl: Option<std::time::Duration>, done: Reply },
}

type Reply = mpsc::SyncSender<Result<u64, StoreError>>;

/// The most writes committed together. Each still runs in its own savepoint.
const MAX_GROUP: usize = 64;

/// The way to a backend's writer thread.
pub(crate) struct Writer {
    inbox: mpsc::Sender<WriterMsg>,
}

impl Writer {
    fn ask(&self, msg: impl FnOnce(Reply) -> WriterMsg) -> Result<u64, StoreError> {
        let (done, result) = mpsc::sync_channel(1);
        self.inbox.send(msg(done)).map_err(|_| StoreError::Backend("the writer thread has stopped".into()))?;
        result.recv().map_err(|_| StoreError::Backend("the writer thread stopped during a write".into()))?
    }

    pub fn write(&self, job: WriteJob) -> Result<u64, StoreError> {
        self.ask(|done| WriterMsg::Write { job, done })
    }

    pub fn compact(&self, keep: u64) -> Result<u64, StoreError> {
        self.ask(|done| WriterMsg::Compact { keep, done })
    }

    pub fn probe(&self) -> Result<(), StoreError> {
        self.ask(|done| WriterMsg::Probe { done }).map(|_| ())
    }

    pub fn lease(&self, name: &str, holder: &str, ttl: Option<std::time::Duration>) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.ask(|done| WriterMsg::Lease { name, holder, ttl, done }).map(|held| held == 1)
    }
}

/// Raises the revision subscribers see to `revision`, never lowering it (another
/// replica's later commit may have been announced first).
pub(crate) fn raise(committed: &watch::Sender<u64>, revision: u64) {
    committed.send_if_modified(|seen| {
        let newer = revision > *seen;
        *seen = (*seen).max(revision);
        newer
    });
}

/// Starts the writer thread over `conn`; it announces each commit's revision on
/// `committed` before answering the writes in it, and ends when the [`Writer`] is dropped.
pub(crate) fn spawn_writer<W: GroupWriter + Send + 'static>(
    name: &str,
    conn: W,
    committed: watch::Sender<u64>,
) -> Result<Writer, StoreError> {
    let (inbox, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || write_forever(conn, receiver, committed))
        .map_err(|err| StoreError::Backend(err.to_string()))?;
    Ok(Writer { inbox })
}

/// The writer thread: takes every write waiting (up to [`MAX_GROUP`]), runs each in its
/// own savepoint inside one transaction, commits once, and only then answers each. One
/// commit (and one fsync) serves the whole group, and revisions stay in commit order.
fn write_forever<W: GroupWriter>(mut conn: W, inbox: mpsc::Receiver<WriterMsg>, committed: watch::Sender<u64>) {
    while let Ok(first) = inbox.recv() {
        let mut writes = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Write { job, done } => writes.push((job, done)),
                WriterMsg::Compact { keep, done } => {
                    commit_group(&mut conn, std::mem::take(&mut writes), &committed);
                    let _ = done.send(conn.compact(keep));
                }
                WriterMsg::Probe { done } => {
                    commit_group(&mut conn, std::mem::take(&mut writes), &committed);
                    let _ = done.send(conn.probe().map(|()| 0));
                }
                WriterMsg::Lease { name, holder, ttl, done } => {
                    commit_group(&mut conn, std::mem::take(&mut writes), &committed);
                    let _ = done.send(conn.lease(&name, &holder, ttl).map(u64::from));
                }
            }
            if writes.len() < MAX_GROUP {
                next = inbox.try_recv().ok();
            }
        }
        commit_group(&mut conn, writes, &committed);
    }
}

fn commit_group<W: GroupWriter>(conn: &mut W, writes: Vec<(WriteJob, Reply)>, committed: &watch::Sender<u64>) {
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
    let start = match conn.begin() {
        Ok(start) => start,
        Err(err) => {
            let _ = conn.execute("ROLLBACK");
            return fail_all(writes.into_iter().map(|(_, done)| done).collect(), err);
        }
    };
    // Every commit up to `start` is done (the group holds the counter), whichever replica
    // made it: what this group's writes check against (a quota's storage index, say)
    // follows the store up to there, not only up to the last announcement heard.
    raise(committed, start);
    let mut revision = start;
    let mut answers = Vec::with_capacity(writes.len());
    for (job, done) in writes {
        let outcome = conn.execute("SAVEPOINT job").and_then(|()| {
            // A panicking job must not take the writer thread, and every other write, with it.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| conn.run(revision, job))) {
                Ok(result) => result,
                Err(_) => Err(StoreError::Backend("a write panicked and was rolled back".into())),
            }
        });
        let answer = match outcome {
            Ok(after) => conn.execute("RELEASE job").map(|()| {
                revision = after;
                after
            }),
            Err(err) => {
                let _ = conn.execute("ROLLBACK TO job").and_then(|()| conn.execute("RELEASE job"));
                Err(err)
            }
        };
        answers.push((done, answer));
    }
    let commit = conn.commit((revision != start).then_some(revision));
    metrics::histogram!(crate::metrics::COMMIT_DURATION).record(began.elapsed().as_secs_f64());
    metrics::histogram!(crate::metrics::COMMIT_GROUP_SIZE).record(group_size as f64);
    match commit {
        Ok(()) => {
            if revision != start {
                raise(committed, revision);
            }
            for (done, answer) in answers {
                let _ = done.send(answer);
            }
        }
        Err(err) => {
            let _ = conn.execute("ROLLBACK");
            fail_all(answers.into_iter().map(|(done, _)| done).collect(), err);
        }
    }
}
