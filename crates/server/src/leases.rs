//! Controllers that must run once across the replicas of one catalog (the import
//! controller, the scheduler, the notifier, the class labeller, the pruner) run only while
//! their server holds a lease in the shared store, as Kubernetes controllers do with
//! leader election. A lease
//! lasts [`TTL`] and is renewed every [`RENEW_EVERY`]; when its holder dies, another
//! replica takes it within a TTL and a renewal interval. A holder whose renewal is refused
//! or fails stops the controller at once (a renewal fails long before the TTL runs out,
//! so two replicas overlap only if a controller takes longer than that to stop; every
//! controller's work is idempotent, so such an overlap repeats work and never loses it).
//! A server that stops releases its leases, so a successor need not wait.
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
/// How often a holder renews its lease, and a replica without it tries to take it.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

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

async fn take(store: &Arc<dyn MetadataStore>, name: &'static str, holder: &Arc<str>) -> bool {
    let (store, holder_id) = (Arc::clone(store), Arc::clone(holder));
    match tokio::task::spawn_blocking(move || store.lease(name, &holder_id, TTL)).await {
        Ok(Ok(held)) => held,
        Ok(Err(err)) => {
            tracing::warn!(lease = name, %err, "could not take or renew a lease");
            false
        }
        Err(_) => false,
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
        if !take(&store, name, &holder).await {
            tokio::select! {
                _ = stop.changed() => {}
                () = tokio::time::sleep(RENEW_EVERY) => {}
            }
            continue;
        }
        tracing::info!(lease = name, %holder, "took the lease: this server runs it now");
        let (lost, lost_seen) = watch::channel(false);
        let mut running = tokio::spawn(controller(lost_seen));
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
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
                    if !take(&store, name, &holder).await {
                        tracing::warn!(lease = name, %holder, "lost the lease: stopping here, another server takes over");
                        break false;
                    }
                }
            }
        };
        lost.send_replace(true);
        if !ended {
            let _ = running.await;
        }
        if stopping {
            let (store, holder) = (Arc::clone(&store), Arc::clone(&holder));
            let _ = tokio::task::spawn_blocking(move || store.release(name, &holder)).await;
            return;
        }
    }
}
