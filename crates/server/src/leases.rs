//! Controllers that must run once across the replicas of one catalog (the importer's
//! controller and scheduler, the notifier, the class labeller, the pruner, the event
//! log's compaction, the removal of abandoned uploads) run only while
//! their server holds a lease in the shared store, as Kubernetes controllers do with
//! leader election, and with its timings: a lease lasts [`TTL`]; its holder renews it
//! every [`RETRY_EVERY`], and a replica without it tries to take it as often. A holder
//! stops the controller at once when a renewal is refused or fails, and when no renewal
//! has succeeded for [`RENEW_DEADLINE`] (a renewal stuck behind a slow database counts as
//! failed), so it has stopped before the lease can expire and another replica take it.
//! When its holder dies, another replica takes the lease within a TTL and a retry. A
//! server that stops releases its leases, so a successor need not wait.
//!
//! The embedded store serves one process (the data directory is locked), so a server on
//! it runs its controllers without leases.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_store::MetadataStore;
use tokio::sync::watch;

/// How long a lease lasts without renewal.
pub const TTL: Duration = Duration::from_secs(15);
/// How long a holder goes on without a successful renewal before it stops its controller
/// (counted from when that renewal was sent, so it is never later than the lease's expiry).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often a holder renews its lease, and a replica without it tries to take it.
pub const RETRY_EVERY: Duration = Duration::from_secs(2);

/// This server as a lease holder: its host name, process id and a random part (a
/// restarted process is a new holder).
pub fn holder_id() -> String {
    format!("{}/{}/{:08x}", crate::serve::hostname(), std::process::id(), rand::random::<u32>())
}

/// Starts the controllers that must run once: under leases on a shared database (`holder`
/// is this server then), directly on the embedded store (this is the only server).
pub struct Controllers {
    pub store: Arc<dyn MetadataStore>,
    pub holder: Option<Arc<str>>,
    pub stop: watch::Receiver<bool>,
}

impl Controllers {
    /// Runs `controller` (given its stop signal) as the lease `name` allows.
    pub fn spawn<F, Fut>(&self, name: &'static str, controller: F)
    where
        F: Fn(watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        match &self.holder {
            Some(holder) => {
                tokio::spawn(run_leased(Arc::clone(&self.store), name, Arc::clone(holder), self.stop.clone(), controller));
            }
            None => {
                tokio::spawn(controller(self.stop.clone()));
            }
        }
    }
}

/// Takes or renews the lease: whether this server holds it now, or `None` when the store
/// could not say.
async fn take(store: &Arc<dyn MetadataStore>, name: &'static str, holder: &Arc<str>) -> Option<bool> {
    let (store, holder_id) = (Arc::clone(store), Arc::clone(holder));
    match tokio::task::spawn_blocking(move || store.lease(name, &holder_id, TTL)).await {
        Ok(Ok(held)) => Some(held),
        Ok(Err(err)) => {
            tracing::warn!(lease = name, %err, "could not take or renew a lease");
            None
        }
        Err(_) => None,
    }
}

/// Runs `controller` only while this server holds the lease `name`: waits for the lease,
/// starts the controller with a stop signal that turns true when the server stops or the
/// lease is lost, and after a loss waits for the lease again. Returns when the server
/// stops, releasing the lease.
pub async fn run_leased<F, Fut>(
    store: Arc<dyn MetadataStore>,
    name: &'static str,
    holder: Arc<str>,
    mut stop: watch::Receiver<bool>,
    controller: F,
) where
    F: Fn(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        if *stop.borrow() {
            return;
        }
        let sent = tokio::time::Instant::now();
        if take(&store, name, &holder).await != Some(true) {
            tokio::select! {
                _ = stop.changed() => {}
                () = tokio::time::sleep(RETRY_EVERY) => {}
            }
            continue;
        }
        tracing::info!(lease = name, %holder, "took the lease: this server runs it now");
        let (lost, lost_seen) = watch::channel(false);
        let mut running = tokio::spawn(controller(lost_seen));
        let mut renewed = sent;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + RETRY_EVERY, RETRY_EVERY);
        let mut ended = false;
        let stopping = loop {
            tokio::select! {
                _ = &mut running => {
                    ended = true;
                    break *stop.borrow();
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break true;
                    }
                }
                _ = renew.tick() => {
                    let sent = tokio::time::Instant::now();
                    match tokio::time::timeout_at(renewed + RENEW_DEADLINE, take(&store, name, &holder)).await {
                        Ok(Some(true)) => renewed = sent,
                        Ok(Some(false)) => {
                            tracing::warn!(lease = name, %holder, "lost the lease: stopping here, another server takes over");
                            break false;
                        }
                        // The store could not say: try again at the next tick, within the deadline.
                        Ok(None) => {}
                        Err(_) => {
                            tracing::warn!(lease = name, %holder, deadline = ?RENEW_DEADLINE, "no renewal of the lease succeeded in time: stopping here, another server takes over");
                            break false;
                        }
                    }
                }
            }
        };
        lost.send_replace(true);
        if !ended {
            let _ = running.await;
        }
        if stopping || ended {
            let (store, holder) = (Arc::clone(&store), Arc::clone(&holder));
            let _ = tokio::task::spawn_blocking(move || store.release(name, &holder)).await;
        }
        if stopping {
            return;
        }
        if ended {
            // It ended on its own (it failed, or has nothing to do here): not at once again.
            tracing::warn!(lease = name, "the controller ended; it starts again where the lease is taken next");
            tokio::select! {
                _ = stop.changed() => {}
                () = tokio::time::sleep(RETRY_EVERY) => {}
            }
        }
    }
}
