//! Scheduled import: tags with `importPolicy.scheduled` are checked upstream every
//! interval (the server's, or the stream's `berth.dev/scheduled-import-interval`, never
//! below the configured minimum), spread over the interval by a hash of their name so
//! that they do not all fire at once, under a global rate limit. A check that finds the
//! digest unchanged costs one request and writes nothing to history. A tag pinned to a
//! digest stops once it has its image. The schedule is kept in memory, fed by the import
//! controller (from the streams at start-up, then from the event log);
//! [`Importer::scheduled_imports`] shows it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use berth_model::Time;
use berth_model::access::Action;
use berth_model::duration::parse_duration;
use berth_model::imagestream::ImageStream;
use berth_model::tags;
use governor::{Quota, RateLimiter};
use serde::Serialize;

use super::{CheckResult, Importer, Patience};
use crate::services::{Caller, Result};

/// The stream annotation that asks for another check interval (`300`, `90s`, `5m`, `1h30m`).
pub const INTERVAL_ANNOTATION: &str = "berth.dev/scheduled-import-interval";

/// `(namespace, stream, tag)`.
pub(super) type TagKey = (String, String, String);

/// One scheduled tag.
#[derive(Clone, Debug)]
pub(super) struct Scheduled {
    from: String,
    interval: Duration,
    next: Instant,
    running: bool,
    last_check: Option<Time>,
    last_result: Option<CheckResult>,
}

/// A scheduled tag as the API shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledImport {
    pub namespace: String,
    pub stream: String,
    pub tag: String,
    pub from: String,
    pub interval_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_check: Option<Time>,
    pub next_check: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
}

impl Importer {
    /// Checks scheduled tags as they fall due until `stop` turns true. The schedule itself
    /// is kept by the import controller, which reads every stream change.
    pub(super) async fn run_scheduler(self, stop: tokio::sync::watch::Receiver<bool>) {
        let settings = self.upstream.settings();
        if settings.disable_scheduled_import {
            return;
        }
        let limiter = u32::try_from(settings.max_scheduled_imports_per_minute)
            .ok()
            .and_then(NonZeroU32::new)
            .map(|per_minute| RateLimiter::direct(Quota::per_minute(per_minute).allow_burst(NonZeroU32::MIN)));
        self.dispatch_due_checks(limiter, stop).await;
    }

    /// Starts due checks, earliest first, each when the rate limit lets it, until `stop`.
    async fn dispatch_due_checks(self, limiter: Option<governor::DefaultDirectRateLimiter>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let due = {
                let now = Instant::now();
                let schedule = self.schedule.lock().expect("schedule lock");
                schedule.iter().filter(|(_, s)| !s.running && s.next <= now).min_by_key(|(_, s)| s.next).map(|(k, _)| k.clone())
            };
            let Some(key) = due else {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    _ = stop.changed() => return,
                }
            };
            if let Some(limiter) = &limiter {
                tokio::select! {
                    () = limiter.until_ready() => {}
                    _ = stop.changed() => return,
                }
            }
            match self.schedule.lock().expect("schedule lock").get_mut(&key) {
                Some(entry) => {
                    entry.running = true;
                    let lag = Instant::now().saturating_duration_since(entry.next);
                    metrics::histogram!(crate::metrics::SCHEDULED_LAG).record(lag.as_secs_f64());
                }
                None => continue,
            }
            let importer = self.clone();
            tokio::spawn(async move { importer.run_check(key).await });
        }
    }

    /// Checks one scheduled tag and records when and how.
    async fn run_check(&self, key: TagKey) {
        let (namespace, stream, tag) = &key;
        let result = match self.check_tags(namespace, stream, vec![tag.clone()], "scheduled import", Patience::Patient).await {
            Ok(results) => results.into_iter().next().map(|(_, r)| r),
            Err(err) => Some(CheckResult::Failed("InternalError".into(), err.message)),
        };
        let mut schedule = self.schedule.lock().expect("schedule lock");
        if let Some(entry) = schedule.get_mut(&key) {
            entry.running = false;
            entry.next = Instant::now() + entry.interval;
            entry.last_check = Some(Time::now());
            entry.last_result = result;
        }
    }

    /// Brings one stream's entries in line with its spec: scheduled tags are added (spread
    /// over their interval), others removed, pinned tags that have their image dropped.
    pub(super) fn sync_schedule(&self, stream: &ImageStream) {
        let settings = self.upstream.settings();
        if settings.disable_scheduled_import {
            return;
        }
        let interval =
            stream_interval(stream, settings.scheduled_import_interval_seconds, settings.minimum_scheduled_import_interval_seconds);
        let (namespace, name) = (&stream.metadata.namespace, &stream.metadata.name);
        let mut schedule = self.schedule.lock().expect("schedule lock");
        let mut keep = Vec::new();
        for spec in stream.spec.tags.iter().filter(|t| t.import_policy.scheduled) {
            let Some(pending) = tags::import_of(stream, &spec.name) else {
                continue;
            };
            if pending.reference.digest.is_some() && stream.latest_event(&spec.name).is_some() {
                continue;
            }
            let key = (namespace.clone(), name.clone(), spec.name.clone());
            let from = pending.reference.to_string();
            match schedule.get_mut(&key) {
                Some(entry) if entry.from == from && entry.interval == interval => {}
                Some(entry) => {
                    entry.from = from;
                    entry.next = entry.next.min(Instant::now() + interval);
                    entry.interval = interval;
                }
                None => {
                    schedule.insert(
                        key.clone(),
                        Scheduled {
                            from,
                            interval,
                            next: Instant::now() + spread(&key, interval),
                            running: false,
                            last_check: stream.metadata.annotations.get(tags::REPOSITORY_CHECK_ANNOTATION).and_then(|t| t.parse().ok()),
                            last_result: None,
                        },
                    );
                }
            }
            keep.push(key);
        }
        schedule.retain(|key, _| key.0 != *namespace || key.1 != *name || keep.contains(key));
    }

    pub(super) fn unschedule_stream(&self, namespace: &str, name: &str) {
        self.schedule.lock().expect("schedule lock").retain(|key, _| key.0 != namespace || key.1 != name);
    }

    /// The scheduled tags `caller` may see (of `namespace`, or of all namespaces), with
    /// their last and next check and last result.
    pub fn scheduled_imports(&self, caller: &Caller, namespace: Option<&str>) -> Result<Vec<ScheduledImport>> {
        match namespace {
            Some(ns) => caller.require(Action::Read(ns), "list", "scheduledimports.berth.dev")?,
            None => caller.require(Action::ReadCluster, "list", "scheduledimports.berth.dev")?,
        }
        let (now, now_time) = (Instant::now(), Time::now());
        let schedule = self.schedule.lock().expect("schedule lock");
        Ok(schedule
            .iter()
            .filter(|(key, _)| namespace.is_none_or(|ns| key.0 == ns))
            .map(|((namespace, stream, tag), entry)| ScheduledImport {
                namespace: namespace.clone(),
                stream: stream.clone(),
                tag: tag.clone(),
                from: entry.from.clone(),
                interval_seconds: entry.interval.as_secs(),
                last_check: entry.last_check,
                next_check: now_time.plus(entry.next.saturating_duration_since(now)),
                last_result: entry.last_result.as_ref().map(|r| match r {
                    CheckResult::Unchanged => "Unchanged".to_string(),
                    CheckResult::Imported(digest) => format!("Imported {digest}"),
                    CheckResult::Failed(reason, message) => format!("Failed ({reason}): {message}"),
                }),
            })
            .collect())
    }
}

/// Where in its interval a tag's checks fall: a stable spread by the hash of its name.
fn spread(key: &TagKey, interval: Duration) -> Duration {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    let millis = interval.as_millis().max(1) as u64;
    Duration::from_millis(hasher.finish() % millis)
}

/// The stream's check interval: its annotation when valid and not below the minimum,
/// else the server's.
fn stream_interval(stream: &ImageStream, default_seconds: u64, minimum_seconds: u64) -> Duration {
    let asked = stream.metadata.annotations.get(INTERVAL_ANNOTATION).and_then(|text| parse_duration(text).ok()).map(|d| d.as_secs());
    match asked {
        Some(seconds) if seconds >= minimum_seconds => Duration::from_secs(seconds),
        Some(_) => Duration::from_secs(minimum_seconds),
        None => Duration::from_secs(default_seconds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_come_from_the_annotation_but_never_below_the_minimum() {
        let mut stream = ImageStream::default();
        assert_eq!(stream_interval(&stream, 900, 60), Duration::from_secs(900));
        stream.metadata.annotations.insert(INTERVAL_ANNOTATION.into(), "5m".into());
        assert_eq!(stream_interval(&stream, 900, 60), Duration::from_secs(300));
        stream.metadata.annotations.insert(INTERVAL_ANNOTATION.into(), "10".into());
        assert_eq!(stream_interval(&stream, 900, 60), Duration::from_secs(60));
        stream.metadata.annotations.insert(INTERVAL_ANNOTATION.into(), "soon".into());
        assert_eq!(stream_interval(&stream, 900, 60), Duration::from_secs(900));
    }

    #[test]
    fn checks_are_spread_over_the_interval() {
        let interval = Duration::from_secs(900);
        let offsets: Vec<Duration> = (0..200).map(|i| spread(&("ns".into(), "s".into(), format!("t{i}")), interval)).collect();
        assert!(offsets.iter().all(|o| *o < interval));
        let early = offsets.iter().filter(|o| **o < interval / 2).count();
        assert!((60..140).contains(&early), "about half fall in the first half: {early}");
    }
}
