//! The audit trail: one `audit.k8s.io/v1` Event per write, appended as a JSON line to
//! `<data-dir>/audit/audit.log`, which rotates by size (`audit.log.1` is the newest
//! backup). An event is on disk (in the page cache) before its response is sent, so a
//! write the server acknowledged is audited even if the process is killed right after.
//! Cluster admins read the trail back, filtered (`GET /apis/berth.dev/v1/auditevents`).
//!
//! The rotation is berth's own rather than a crate's: the crates at hand drop writes
//! silently when the file cannot be opened, and an audit log must say when it fails.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_model::access::Action;
use berth_model::audit::{Event, EventList};
use berth_model::time::MicroTime;
use serde::{Deserialize, Serialize};

use crate::services::{Caller, Error, Result};

const FILE_NAME: &str = "audit.log";
/// How many events a read returns when it does not say, and at most.
pub const DEFAULT_LIMIT: usize = 500;
pub const MAX_LIMIT: usize = 10_000;

/// The server config's `audit:` block, named as kube-apiserver's `--audit-log-*` flags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditSettings {
    /// The size at which `audit.log` is rotated.
    #[serde(default = "default_max_size")]
    pub max_size_megabytes: u64,
    /// How many rotated files are kept; older ones are deleted.
    #[serde(default = "default_max_backups")]
    pub max_backups: usize,
}

fn default_max_size() -> u64 {
    100
}

fn default_max_backups() -> usize {
    5
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { max_size_megabytes: default_max_size(), max_backups: default_max_backups() }
    }
}

impl AuditSettings {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.max_size_megabytes == 0 {
            return Err("audit.maxSizeMegabytes must be at least 1".to_string());
        }
        Ok(())
    }
}

/// Which events a read wants; every field that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub namespace: Option<String>,
    pub user: Option<String>,
    /// The plural resource (`imagestreamtags`).
    pub resource: Option<String>,
    pub name: Option<String>,
    pub verb: Option<String>,
    /// Events whose request arrived at or after this.
    pub since: Option<MicroTime>,
    /// Events whose request arrived before this.
    pub until: Option<MicroTime>,
    /// The newest this many of the matching events.
    pub limit: Option<usize>,
}

impl AuditQuery {
    fn matches(&self, event: &Event) -> bool {
        let object = event.object_ref.as_ref();
        let field = |wanted: &Option<String>, actual: Option<&str>| wanted.as_deref().is_none_or(|w| actual == Some(w));
        field(&self.user, Some(&event.user.username))
            && field(&self.verb, Some(&event.verb))
            && field(&self.namespace, object.map(|o| o.namespace.as_str()))
            && field(&self.resource, object.map(|o| o.resource.as_str()))
            && field(&self.name, object.map(|o| o.name.as_str()))
            && self.since.is_none_or(|since| event.request_received_timestamp >= since)
            && self.until.is_none_or(|until| event.request_received_timestamp < until)
    }
}

/// The audit file and its backups.
pub struct AuditLog {
    dir: PathBuf,
    settings: AuditSettings,
    current: Mutex<Current>,
}

struct Current {
    file: Option<File>,
    size: u64,
}

impl AuditLog {
    /// Opens (creating) `dir/audit.log` for appending.
    pub fn open(dir: &Path, settings: AuditSettings) -> std::io::Result<AuditLog> {
        std::fs::create_dir_all(dir)?;
        let log = AuditLog { dir: dir.to_path_buf(), settings, current: Mutex::new(Current { file: None, size: 0 }) };
        let mut current = log.current.lock().expect("audit lock");
        log.reopen(&mut current)?;
        drop(current);
        Ok(log)
    }

    fn path(&self, backup: usize) -> PathBuf {
        match backup {
            0 => self.dir.join(FILE_NAME),
            n => self.dir.join(format!("{FILE_NAME}.{n}")),
        }
    }

    /// Opens `audit.log` for appending. A last line torn by a crash is ended first, so
    /// that the next event starts a line of its own.
    fn reopen(&self, current: &mut Current) -> std::io::Result<()> {
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(self.path(0))?;
        let mut size = file.metadata()?.len();
        if size > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                size += 1;
            }
        }
        current.size = size;
        current.file = Some(file);
        Ok(())
    }

    /// Appends one event as a line, rotating first when the line would take the file past
    /// its size. The line is written with one `write` call, so a crash leaves at most a
    /// torn last line, which reads skip.
    pub fn record(&self, event: &Event) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut current = self.current.lock().expect("audit lock");
        let limit = self.settings.max_size_megabytes.saturating_mul(1 << 20);
        if current.size > 0 && current.size + line.len() as u64 > limit {
            self.rotate(&mut current)?;
        }
        if current.file.is_none() {
            self.reopen(&mut current)?;
        }
        let file = current.file.as_mut().expect("opened above");
        file.write_all(&line)?;
        current.size += line.len() as u64;
        Ok(())
    }

    /// `audit.log` becomes `audit.log.1`, `.1` becomes `.2`, and so on; the oldest beyond
    /// `maxBackups` is deleted.
    fn rotate(&self, current: &mut Current) -> std::io::Result<()> {
        current.file = None;
        let keep = self.settings.max_backups;
        remove_if_present(&self.path(keep.max(1)))?;
        if keep > 0 {
            for backup in (1..keep).rev() {
                rename_if_present(&self.path(backup), &self.path(backup + 1))?;
            }
            rename_if_present(&self.path(0), &self.path(1))?;
        } else {
            remove_if_present(&self.path(0))?;
        }
        self.reopen(current)
    }

    /// The newest events that match `query`, oldest first. Cluster admins only.
    pub fn read(&self, caller: &Caller, query: &AuditQuery) -> Result<EventList> {
        caller.require(Action::AdministerCluster, "list", "auditevents")?;
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let mut kept: VecDeque<Event> = VecDeque::with_capacity(limit.min(1024));
        for backup in (0..=self.settings.max_backups).rev() {
            let file = match File::open(self.path(backup)) {
                Ok(file) => file,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(Error::internal(format!("reading the audit log: {err}"))),
            };
            for line in BufReader::new(file).split(b'\n') {
                let line = line.map_err(|err| Error::internal(format!("reading the audit log: {err}")))?;
                // A line torn by a crash, or from a newer version, is skipped.
                let Ok(event) = serde_json::from_slice::<Event>(&line) else {
                    continue;
                };
                if query.matches(&event) {
                    if kept.len() == limit {
                        kept.pop_front();
                    }
                    kept.push_back(event);
                }
            }
        }
        Ok(EventList::new(kept.into()))
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::access::Grant;
    use berth_model::audit::{ObjectReference, UserInfo};

    fn event(user: &str, name: &str) -> Event {
        Event {
            kind: "Event".into(),
            api_version: berth_model::audit::AUDIT_API_VERSION.into(),
            level: "Metadata".into(),
            audit_id: uuid::Uuid::new_v4().to_string(),
            stage: "ResponseComplete".into(),
            request_uri: format!("/apis/image.openshift.io/v1/namespaces/team/imagestreams/{name}"),
            verb: "update".into(),
            user: UserInfo { username: user.into() },
            source_ips: vec!["127.0.0.1".into()],
            user_agent: String::new(),
            object_ref: Some(ObjectReference {
                resource: "imagestreams".into(),
                namespace: "team".into(),
                name: name.into(),
                ..ObjectReference::default()
            }),
            response_status: None,
            request_received_timestamp: MicroTime::now(),
            stage_timestamp: MicroTime::now(),
        }
    }

    fn admin() -> Caller {
        Caller { token: "admin".into(), grant: Grant::cluster_admin() }
    }

    #[test]
    fn rotates_by_size_keeps_the_newest_backups_and_reads_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), AuditSettings { max_size_megabytes: 1, max_backups: 2 }).unwrap();
        // Each event is a few hundred bytes: 12,000 of them fill more than three files.
        for n in 0..12_000 {
            log.record(&event("ci", &format!("s{n}"))).unwrap();
        }
        assert!(dir.path().join("audit.log.2").exists());
        assert!(!dir.path().join("audit.log.3").exists(), "only two backups are kept");
        for file in ["audit.log", "audit.log.1", "audit.log.2"] {
            assert!(std::fs::metadata(dir.path().join(file)).unwrap().len() <= 1 << 20, "{file} stays within its size");
        }
        let all = log.read(&admin(), &AuditQuery { limit: Some(MAX_LIMIT), ..AuditQuery::default() }).unwrap().items;
        let names: Vec<usize> = all.iter().map(|e| e.object_ref.as_ref().unwrap().name.trim_start_matches('s').parse().unwrap()).collect();
        assert!(names.windows(2).all(|w| w[1] == w[0] + 1), "events read back in order, none lost within the kept files");
        assert_eq!(*names.last().unwrap(), 11_999);
    }

    #[test]
    fn reads_filter_limit_and_skip_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), AuditSettings::default()).unwrap();
        log.record(&event("ci", "a")).unwrap();
        log.record(&event("dev", "b")).unwrap();
        log.record(&event("ci", "c")).unwrap();
        // A crash in the middle of a line.
        std::fs::OpenOptions::new().append(true).open(dir.path().join("audit.log")).unwrap().write_all(b"{\"kind\":\"Ev").unwrap();
        let log = AuditLog::open(dir.path(), AuditSettings::default()).unwrap();
        log.record(&event("ci", "d")).unwrap();
        let read = |query: AuditQuery| -> Vec<String> {
            log.read(&admin(), &query).unwrap().items.into_iter().map(|e| e.object_ref.unwrap().name).collect()
        };
        assert_eq!(
            read(AuditQuery { user: Some("ci".into()), ..AuditQuery::default() }),
            ["a", "c", "d"],
            "the torn line is skipped, the next event kept"
        );
        assert_eq!(read(AuditQuery { user: Some("dev".into()), ..AuditQuery::default() }), ["b"]);
        assert_eq!(read(AuditQuery { limit: Some(1), ..AuditQuery::default() }), ["d"], "the newest");
        let viewer = Caller {
            token: "viewer".into(),
            grant: Grant { role: berth_model::access::Role::View, scope: berth_model::access::Scope::Cluster },
        };
        assert_eq!(log.read(&viewer, &AuditQuery::default()).unwrap_err().kind, crate::services::ErrorKind::Forbidden);
    }
}
