//! Notifications out: delivery of tag changes to subscribers. One worker per Subscription
//! (on the background runtime, below the API's priority) reads the namespace's outbox
//! (`tagchanges`, written in the same transaction as each change) after its cursor, in
//! order, and POSTs each wanted change as a signed CloudEvent. A failed delivery is retried
//! with exponential backoff and jitter, without end and without skipping ahead, so events
//! are delivered at least once and in order; the cursor is kept in the subscription's
//! status (every worker's progress written in one transaction per `status_every`), so
//! delivery resumes where it was after a restart. Outbox entries every subscription has
//! passed are removed. The POSTs go through the
//! `upstream` crate's [`DeliveryClient`] (the server's outbound HTTP, where the hosts
//! subscriptions may reach are enforced), which follows no redirect.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use berth_model::Time;
use berth_model::image::Image;
use berth_model::notify::{Subscription, TagChange, cloud_event};
use berth_store::{EventType, ListQuery, Precondition, StoreError, transact};
use berth_upstream::{DeliveryClient, Target};
use bytes::Bytes;
use hmac::{KeyInit, Mac};
use tokio::sync::{Notify, OnceCell, watch};

use crate::services::{Catalog, Error, Resource, Result};

/// How delivery behaves. `Default` is what `berth serve` uses.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    /// The first retry waits this long, doubling up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub request_timeout: Duration,
    /// How often a busy worker writes its cursor to the subscription's status.
    pub status_every: Duration,
    /// `host[:port]` globs receivers may be at (`notifications.allowedHosts`): empty
    /// allows public hosts only.
    pub allowed_hosts: Vec<String>,
}

/// The config file's `notifications` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NotificationSettings {
    /// `host[:port]` globs subscription URLs may name. Empty (or `*`) allows every host
    /// on a public address; private, loopback and link-local addresses only when a
    /// pattern names them.
    pub allowed_hosts: Vec<String>,
}

impl Default for DeliverySettings {
    fn default() -> DeliverySettings {
        DeliverySettings {
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            status_every: Duration::from_millis(500),
            allowed_hosts: Vec::new(),
        }
    }
}

/// The counters of a worker's deliveries (`berth_subscription_deliveries_total`), looked
/// up once.
struct Outcomes {
    delivered: metrics::Counter,
    failed: metrics::Counter,
}

/// A subscription's signing key (none when it signs nothing), or why it could not be read
/// (each delivery then fails with that reason, and is retried).
type SigningKey = std::result::Result<Option<Vec<u8>>, String>;

/// What a worker delivers with, read once a batch (and again before each retry): the
/// subscription's signing key and its URL as checked against the server's policy, or why
/// either could not be had (each delivery then fails with that reason, and is retried).
struct Prepared {
    key: SigningKey,
    target: std::result::Result<Target, String>,
}

/// The outbox entries a worker reads at a time.
const BATCH: usize = 256;
/// How often entries every subscription has passed are removed.
const GC_EVERY: Duration = Duration::from_secs(10);

/// Delivers the outbox to subscribers. Cheap to clone.
#[derive(Clone)]
pub struct Deliverer {
    catalog: Catalog,
    client: DeliveryClient,
    settings: Arc<DeliverySettings>,
    changes: Arc<Changes>,
    statuses: Arc<Statuses>,
}

struct Worker {
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Deliverer {
    pub fn new(catalog: Catalog, settings: DeliverySettings) -> std::result::Result<Deliverer, String> {
        let client = DeliveryClient::new(&settings.allowed_hosts, settings.request_timeout)?;
        Ok(Deliverer { catalog, client, settings: Arc::new(settings), changes: Arc::default(), statuses: Arc::default() })
    }

    /// Runs a worker per subscription until `stop` turns true, starting and stopping
    /// workers as subscriptions come and go and waking them when their outbox grows.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // The status writer ends (after a last write) when this loop does, however it ends.
        let (finish, finished) = watch::channel(false);
        let statuses = tokio::spawn(self.clone().write_statuses(finished));
        let store = Arc::clone(self.catalog.store());
        let mut revisions = store.subscribe();
        let mut workers: HashMap<(String, String), Worker> = HashMap::new();
        let mut after = store.current_revision().unwrap_or(0);
        self.rescan(&mut workers, &stop).await;
        let mut last_gc = Instant::now();
        loop {
            tokio::select! {
                changed = revisions.changed() => if changed.is_err() { break },
                _ = stop.changed() => break,
                () = tokio::time::sleep(GC_EVERY) => {}
            }
            if last_gc.elapsed() >= GC_EVERY {
                let catalog = self.catalog.clone();
                if let Ok(Err(err)) = tokio::task::spawn_blocking(move || catalog.collect_outbox()).await {
                    tracing::warn!(error = %err.message, "removing delivered notifications failed; will retry");
                }
                last_gc = Instant::now();
            }
            let store = Arc::clone(&store);
            let read = tokio::task::spawn_blocking(move || {
                // Everything up to `revision` is read now; later commits next time.
                let revision = store.current_revision()?;
                let upto = |events: Vec<berth_store::Event>| -> Vec<berth_store::Event> {
                    events.into_iter().filter(|e| e.object.revision <= revision).collect()
                };
                let subscriptions = upto(store.events_since(Subscription::RESOURCE, None, after, 10_000)?);
                let changes = upto(store.events_since(TagChange::RESOURCE, None, after, 100_000)?);
                Ok::<_, StoreError>((subscriptions, changes, revision))
            })
            .await;
            match read {
                Ok(Ok((subscriptions, changes, revision))) => {
                    after = revision;
                    for event in subscriptions {
                        let key = (event.object.key.namespace.clone(), event.object.key.name.clone());
                        match event.event_type {
                            EventType::Deleted => {
                                if let Some(worker) = workers.remove(&key) {
                                    worker.task.abort();
                                }
                            }
                            _ => self.ensure_worker(&mut workers, key, &stop),
                        }
                    }
                    for event in changes.iter().filter(|e| e.event_type == EventType::Added) {
                        for ((namespace, _), worker) in &workers {
                            if *namespace == event.object.key.namespace {
                                worker.wake.notify_one();
                            }
                        }
                    }
                }
                Ok(Err(StoreError::Compacted { .. })) => {
                    after = self.catalog.store().current_revision().unwrap_or(after);
                    self.rescan(&mut workers, &stop).await;
                }
                Ok(Err(err)) => tracing::error!(%err, "the notifier could not read the event log"),
                Err(_) => break,
            }
        }
        for worker in workers.into_values() {
            worker.task.abort();
        }
        let _ = finish.send(true);
        let _ = statuses.await;
    }

    /// Writes the progress the workers recorded into their subscriptions' statuses, all of
    /// it in one transaction every `status_every` (100 busy workers cost 2 writes a second,
    /// not 200), and once more when `finished` turns true.
    async fn write_statuses(self, mut finished: watch::Receiver<bool>) {
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(self.settings.status_every) => false,
                _ = finished.wait_for(|done| *done) => true,
            };
            let batch = self.statuses.take();
            if !batch.is_empty() {
                let catalog = self.catalog.clone();
                let kept = batch.clone();
                match tokio::task::spawn_blocking(move || catalog.save_delivery_progress(kept)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err.message, "saving delivery progress failed; will retry");
                        self.statuses.put_back(batch);
                    }
                    Err(_) => return,
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// Starts a worker for every subscription that has none, and wakes all of them.
    async fn rescan(&self, workers: &mut HashMap<(String, String), Worker>, stop: &watch::Receiver<bool>) {
        let catalog = self.catalog.clone();
        let listed = tokio::task::spawn_blocking(move || {
            catalog.store().list(&ListQuery { resource: Subscription::RESOURCE.into(), ..Default::default() })
        })
        .await;
        match listed {
            Ok(Ok(page)) => {
                for stored in page.items {
                    self.ensure_worker(workers, (stored.key.namespace, stored.key.name), stop);
                }
            }
            Ok(Err(err)) => tracing::error!(%err, "the notifier could not list subscriptions"),
            Err(_) => return,
        }
        for worker in workers.values() {
            worker.wake.notify_one();
        }
    }

    fn ensure_worker(&self, workers: &mut HashMap<(String, String), Worker>, key: (String, String), stop: &watch::Receiver<bool>) {
        if let Some(worker) = workers.get(&key)
            && !worker.task.is_finished()
        {
            worker.wake.notify_one();
            return;
        }
        let wake = Arc::new(Notify::new());
        // Deliveries run at a lower priority than the API (see `background`).
        let task = crate::background::handle().spawn(self.clone().work(key.0.clone(), key.1.clone(), Arc::clone(&wake), stop.clone()));
        wake.notify_one();
        workers.insert(key, Worker { wake, task });
    }

    /// Delivers one subscription's changes, in order, until it is deleted or `stop`.
    async fn work(self, namespace: String, name: String, wake: Arc<Notify>, stop: watch::Receiver<bool>) {
        let mut progress = Progress::default();
        let mut last_status = Instant::now();
        let counter = |result: &'static str| metrics::counter!(crate::metrics::DELIVERIES, "namespace" => namespace.clone(), "subscription" => name.clone(), "result" => result);
        let outcomes = Outcomes { delivered: counter("delivered"), failed: counter("failed") };
        loop {
            if *stop.borrow() {
                break;
            }
            let Some(subscription) = self.load_subscription(&namespace, &name).await else {
                return;
            };
            let cursor = progress.cursor.clone().unwrap_or_else(|| subscription.status.cursor.clone());
            let batch = self.outbox_after(&namespace, &cursor).await;
            if batch.is_empty() {
                if progress.dirty {
                    self.save_progress(&namespace, &name, &mut progress);
                }
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                continue;
            }
            // The signing key and URL are read once a batch (and again before each retry).
            let prepared = self.prepare(&namespace, &subscription).await;
            for change in batch {
                if subscription.wants(&change.change)
                    && !self.deliver_until_done(&namespace, &name, (&prepared, &outcomes), &change, &mut progress, &stop).await
                {
                    return;
                }
                progress.cursor = Some(change.change.metadata.name.clone());
                progress.dirty = true;
                if last_status.elapsed() >= self.settings.status_every {
                    self.save_progress(&namespace, &name, &mut progress);
                    last_status = Instant::now();
                }
            }
        }
        if progress.dirty {
            self.save_progress(&namespace, &name, &mut progress);
        }
    }

    /// Tries to deliver `change` until it is delivered (`true`), or the subscription is
    /// gone or the server stops (`false`): exponential backoff with jitter, without end,
    /// reading the subscription again before each retry (its URL may have been fixed).
    async fn deliver_until_done(
        &self,
        namespace: &str,
        name: &str,
        (prepared, outcomes): (&Prepared, &Outcomes),
        change: &SharedChange,
        progress: &mut Progress,
        stop: &watch::Receiver<bool>,
    ) -> bool {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.settings.retry_base)
            .with_max_delay(self.settings.retry_max)
            .with_jitter()
            .without_max_times();
        // The subscription's key and URL as read again before a retry; the batch's until
        // then (no copy of them for a delivery that succeeds at once).
        let state = tokio::sync::Mutex::new((None::<Prepared>, std::mem::take(progress), None::<Instant>, 0u32));
        let attempt = || async {
            let mut guard = state.lock().await;
            let (fresh, progress, last_saved, attempts) = &mut *guard;
            if *attempts > 0 {
                let Some(reread) = self.load_subscription(namespace, name).await else {
                    return Ok(false);
                };
                *fresh = Some(self.prepare(namespace, &reread).await);
            }
            *attempts += 1;
            let delivered = self.deliver(namespace, fresh.as_ref().unwrap_or(prepared), change).await;
            if delivered.is_ok() { &outcomes.delivered } else { &outcomes.failed }.increment(1);
            match delivered {
                Ok(()) => {
                    progress.delivered += 1;
                    progress.last_delivered = Some((format!("{namespace}/{}", change.change.metadata.name), Time::now()));
                    progress.error = None;
                    Ok(true)
                }
                Err(message) => {
                    // The first failure of a streak is worth an operator's attention; the
                    // retries are not.
                    if *attempts == 1 {
                        tracing::warn!(namespace, subscription = name, %message, "delivery failed; retrying with backoff until it succeeds");
                    } else {
                        tracing::debug!(namespace, subscription = name, %message, attempts = *attempts, "delivery failed again");
                    }
                    progress.error = Some((message.clone(), Time::now()));
                    progress.dirty = true;
                    // The status says why delivery is stuck, without a write per retry.
                    if last_saved.is_none_or(|at| at.elapsed() >= self.settings.status_every) {
                        self.save_progress(namespace, name, progress);
                        *last_saved = Some(Instant::now());
                    }
                    Err(message)
                }
            }
        };
        let mut stop = stop.clone();
        let delivered = tokio::select! {
            outcome = attempt.retry(backoff) => outcome.unwrap_or(false),
            _ = stop.wait_for(|stop| *stop) => false,
        };
        *progress = std::mem::take(&mut state.into_inner().1);
        delivered
    }

    /// One delivery: the CloudEvent as JSON, signed when the subscription has a key.
    async fn deliver(&self, namespace: &str, prepared: &Prepared, shared: &SharedChange) -> std::result::Result<(), String> {
        let target = prepared.target.as_ref().map_err(Clone::clone)?;
        let body = self.event_body(namespace, shared).await?;
        let change = &shared.change;
        let key = prepared.key.as_ref().map_err(Clone::clone)?;
        let mut headers = vec![
            ("content-type", "application/cloudevents+json".to_string()),
            ("x-berth-delivery", format!("{namespace}/{}", change.metadata.name)),
        ];
        if let Some(key) = key {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(&body);
            headers.push(("x-berth-signature", format!("sha256={}", hex::encode(mac.finalize().into_bytes()))));
        }
        self.client.post(target, &headers, body).await.map_err(|err| err.0)
    }

    async fn prepare(&self, namespace: &str, subscription: &Subscription) -> Prepared {
        let target = self.client.target(&subscription.spec.url).map_err(|err| err.0);
        Prepared { key: self.signing_key(namespace, subscription).await, target }
    }

    /// The CloudEvent of `change` as JSON: built once (from the change and the Images it
    /// names) and shared by every subscription that delivers it. The workers of a
    /// namespace's subscriptions are woken together for a new change; one builds its
    /// event, the others wait for that one.
    async fn event_body(&self, namespace: &str, shared: &SharedChange) -> std::result::Result<Bytes, String> {
        let built = shared.body.get_or_try_init(|| async {
            let (catalog, namespace, change) = (self.catalog.clone(), namespace.to_string(), shared.change.clone());
            tokio::task::spawn_blocking(move || -> Result<Bytes> {
                let load = |digest: &str| if digest.is_empty() { Ok(None) } else { catalog.load::<Image>("", digest) };
                let (previous, current) = (load(&change.previous_image)?, load(&change.image)?);
                let event = cloud_event(&namespace, &change, previous.as_ref(), current.as_ref());
                Ok(Bytes::from(serde_json::to_vec(&event).expect("events serialise")))
            })
            .await
            .map_err(|err| format!("preparing the event failed: {err}"))?
            .map_err(|err| err.message)
        });
        built.await.cloned()
    }

    /// The key that signs a subscription's deliveries, read from its Secret.
    async fn signing_key(&self, namespace: &str, subscription: &Subscription) -> SigningKey {
        let Some(reference) = subscription.spec.secret_ref.clone() else {
            return Ok(None);
        };
        let (catalog, namespace) = (self.catalog.clone(), namespace.to_string());
        tokio::task::spawn_blocking(move || catalog.secret_value(&namespace, &reference.name, &reference.key))
            .await
            .map_err(|err| format!("reading the signing key failed: {err}"))?
            .map(Some)
            .map_err(|err| err.message)
    }

    async fn load_subscription(&self, namespace: &str, name: &str) -> Option<Subscription> {
        let (catalog, namespace, name) = (self.catalog.clone(), namespace.to_string(), name.to_string());
        tokio::task::spawn_blocking(move || catalog.load::<Subscription>(&namespace, &name)).await.ok()?.ok()?
    }

    /// The next changes of the namespace's outbox after `cursor`. A namespace's workers
    /// read the same changes: each lists the keys after its cursor (no bodies), and only
    /// the first to reach a change reads and decodes it; the others take it from memory.
    async fn outbox_after(&self, namespace: &str, cursor: &str) -> Vec<SharedChange> {
        let (catalog, changes, namespace, cursor) =
            (self.catalog.clone(), Arc::clone(&self.changes), namespace.to_string(), cursor.to_string());
        let read = tokio::task::spawn_blocking(move || -> Result<Vec<SharedChange>> {
            let query = ListQuery {
                resource: TagChange::RESOURCE.into(),
                namespace: Some(namespace.clone()),
                after: Some((namespace.clone(), cursor)),
                limit: Some(BATCH),
            };
            let keys = catalog.store().list_keys(&query)?.keys;
            if let Some(known) = changes.all_of(&namespace, &keys) {
                return Ok(known);
            }
            let read = catalog.store().list(&query)?.items.iter().map(TagChange::decode).collect::<Result<Vec<_>>>()?;
            Ok(changes.keep(&namespace, read))
        })
        .await;
        match read {
            Ok(Ok(changes)) => changes,
            Ok(Err(err)) => {
                tracing::warn!(error = %err.message, "reading the outbox failed; will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Hands a worker's progress to the status writer ([`Deliverer::write_statuses`]).
    fn save_progress(&self, namespace: &str, name: &str, progress: &mut Progress) {
        self.statuses.record((namespace.to_string(), name.to_string()), progress.clone());
        progress.dirty = false;
        progress.delivered = 0;
    }
}

/// A change of the outbox as the workers share it: decoded once, its CloudEvent built by
/// the first worker to deliver it.
struct OutboxChange {
    change: TagChange,
    body: OnceCell<Bytes>,
}

type SharedChange = Arc<OutboxChange>;

/// The recent changes of the outbox, by namespace and name. Bounded: it starts over when
/// it holds [`KEPT_CHANGES`] (a change's deliveries happen within a few batches of each
/// other, unless a receiver is down, and then reading it again is cheap).
#[derive(Default)]
struct Changes {
    kept: std::sync::Mutex<HashMap<(String, String), SharedChange>>,
}

const KEPT_CHANGES: usize = 8_192;

impl Changes {
    fn kept(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), SharedChange>> {
        self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The changes named by `keys`, when every one is kept.
    fn all_of(&self, namespace: &str, keys: &[berth_store::ObjectKey]) -> Option<Vec<SharedChange>> {
        let kept = self.kept();
        keys.iter().map(|key| kept.get(&(namespace.to_string(), key.name.clone())).cloned()).collect()
    }

    /// Keeps `read` (a change already kept stays as it is, with its event) and returns them shared.
    fn keep(&self, namespace: &str, read: Vec<TagChange>) -> Vec<SharedChange> {
        let mut kept = self.kept();
        if kept.len() + read.len() > KEPT_CHANGES {
            kept.clear();
        }
        read.into_iter()
            .map(|change| {
                let key = (namespace.to_string(), change.metadata.name.clone());
                Arc::clone(kept.entry(key).or_insert_with(|| Arc::new(OutboxChange { change, body: OnceCell::new() })))
            })
            .collect()
    }
}

/// What a worker has done since it last wrote the subscription's status.
#[derive(Clone, Debug, Default)]
struct Progress {
    cursor: Option<String>,
    /// Deliveries not yet counted in the status.
    delivered: u64,
    last_delivered: Option<(String, Time)>,
    error: Option<(String, Time)>,
    dirty: bool,
}

impl Progress {
    /// Adds `later` progress to this: its deliveries counted, its cursor, last delivery
    /// and error (or none: delivery works again) taken.
    fn merge(&mut self, later: Progress) {
        if later.cursor.is_some() {
            self.cursor = later.cursor;
        }
        self.delivered += later.delivered;
        if later.last_delivered.is_some() {
            self.last_delivered = later.last_delivered;
        }
        self.error = later.error;
        self.dirty = true;
    }
}

/// Progress the workers recorded and the status writer has not written yet, by
/// `(namespace, subscription)`.
#[derive(Default)]
struct Statuses {
    pending: std::sync::Mutex<HashMap<(String, String), Progress>>,
}

impl Statuses {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Progress>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, key: (String, String), progress: Progress) {
        self.pending().entry(key).or_default().merge(progress);
    }

    fn take(&self) -> Vec<((String, String), Progress)> {
        self.pending().drain().collect()
    }

    /// Returns a batch that could not be written, under anything recorded since.
    fn put_back(&self, batch: Vec<((String, String), Progress)>) {
        let mut pending = self.pending();
        for (key, mut progress) in batch {
            if let Some(later) = pending.remove(&key) {
                progress.merge(later);
            }
            pending.insert(key, progress);
        }
    }
}

impl Catalog {
    /// Writes workers' progress into their subscriptions' statuses (only the status: the
    /// spec is the user's), in one transaction.
    fn save_delivery_progress(&self, batch: Vec<((String, String), Progress)>) -> Result<()> {
        let store = std::sync::Arc::clone(self.store());
        transact(&**self.store(), move |txn| {
            for ((namespace, name), progress) in &batch {
                save_one(txn, &store, namespace, name, progress)?;
            }
            // (A subscription that cannot be read is skipped in `save_one`: one
            // namespace's object never holds back every other's status.)
            Ok::<_, Error>(())
        })
    }

    /// Removes outbox entries that every subscription of their namespace has passed (all
    /// of a namespace's entries when it has no subscription left).
    pub(crate) fn collect_outbox(&self) -> Result<()> {
        let store = std::sync::Arc::clone(self.store());
        let all = |resource: &str| store.list(&ListQuery { resource: resource.into(), limit: Some(100_000), ..Default::default() });
        let mut floor: HashMap<String, String> = HashMap::new();
        let subscriptions: Vec<Subscription> =
            all(Subscription::RESOURCE)?.items.iter().map(Subscription::decode).collect::<Result<_>>()?;
        for subscription in &subscriptions {
            let entry = floor.entry(subscription.metadata.namespace.clone()).or_insert_with(|| subscription.status.cursor.clone());
            if subscription.status.cursor < *entry {
                *entry = subscription.status.cursor.clone();
            }
        }
        let done: Vec<(String, String)> = all(TagChange::RESOURCE)?
            .items
            .into_iter()
            .filter(|stored| floor.get(&stored.key.namespace).is_none_or(|cursor| stored.key.name <= *cursor))
            .take(5_000)
            .map(|stored| (stored.key.namespace, stored.key.name))
            .collect();
        if done.is_empty() {
            return Ok(());
        }
        transact(&**self.store(), move |txn| {
            for (namespace, name) in &done {
                txn.delete(&TagChange::key(namespace, name), Precondition::Any)?;
            }
            Ok::<_, Error>(())
        })
    }

    /// The decoded value of `key` in Secret `name` of `namespace`.
    pub(crate) fn secret_value(&self, namespace: &str, name: &str, key: &str) -> Result<Vec<u8>> {
        use base64::Engine;
        let secret = self.load::<berth_model::core::Secret>(namespace, name)?.ok_or_else(|| {
            Error::not_found("secrets", name).with_message(format!("the signing Secret {name:?} of namespace {namespace:?} does not exist"))
        })?;
        let encoded = secret.data.as_ref().and_then(|d| d.get(key)).ok_or_else(|| {
            Error::not_found("secrets", name).with_message(format!("Secret {name:?} has no key {key:?} to sign deliveries with"))
        })?;
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| Error::internal(format!("the value of {key:?} in Secret {name:?} is not base64")))
    }
}

/// Writes one worker's progress into its subscription's status, with the backlog counted
/// after the new cursor.
fn save_one(
    txn: &mut dyn berth_store::WriteTxn,
    store: &Arc<dyn berth_store::MetadataStore>,
    namespace: &str,
    name: &str,
    progress: &Progress,
) -> Result<()> {
    let key = Subscription::key(namespace, name);
    let Some(stored) = txn.get(&key)? else {
        return Ok(());
    };
    let mut subscription = match Subscription::decode(&stored) {
        Ok(subscription) => subscription,
        Err(err) => {
            tracing::warn!(namespace, subscription = name, error = %err.message, "a subscription could not be read; its progress is not recorded");
            return Ok(());
        }
    };
    let status = &mut subscription.status;
    if let Some(cursor) = &progress.cursor {
        status.cursor = cursor.clone();
    }
    status.delivered += progress.delivered;
    if let Some((id, at)) = &progress.last_delivered {
        status.last_delivered_id = id.clone();
        status.last_delivered_time = Some(*at);
    }
    match &progress.error {
        Some((message, at)) => {
            status.last_error = message.clone();
            status.last_error_time = Some(*at);
        }
        None => status.last_error.clear(),
    }
    let after = Some((namespace.to_string(), status.cursor.clone()));
    status.backlog =
        store.count(&ListQuery { resource: TagChange::RESOURCE.into(), namespace: Some(namespace.to_string()), after, limit: None })?;
    metrics::gauge!(crate::metrics::DELIVERY_BACKLOG, "namespace" => namespace.to_string(), "subscription" => name.to_string())
        .set(status.backlog as f64);
    txn.put(&key, &subscription.encode(), &[], Precondition::Revision(stored.revision))?;
    Ok(())
}
