//! The process's allocator, as the binary that chose it describes it ([`Allocator`]): how
//! many bytes Rust code holds (for `/metrics`), and how a thread gives the allocator's free
//! memory back to the system. Allocators such as mimalloc keep freed pages with the thread
//! that used them until it allocates again; a runtime thread that goes idle after a burst
//! (an import, a fan-out of notifications) would keep them for as long as it stays idle.
//! So every runtime's threads release when they park, at most once per [`RELEASE_EVERY`]
//! (parks are frequent under load, a release is not free), and when they stop.
//!
//! What a thread gives back goes to the allocator's shared arenas, which return it to the
//! system a moment later, at the next call into the allocator; and the store keeps page
//! caches in every connection. A process gone quiet makes no such call and reads nothing,
//! so once it has been quiet for a whole [`RELEASE_EVERY`] after running, a thread of its
//! own empties the store's idle caches and has the allocator return every free page of the
//! process (`release_when_quiet`). Blocking threads, which do not park, stop after
//! [`BLOCKING_KEEP_ALIVE`] idle and release then.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, Weak};
use std::time::{Duration, Instant};

use berth_store::MetadataStore;

/// The allocator's side: both functions act for the calling thread or the whole process,
/// never block, and may be called from any thread.
#[derive(Clone, Copy, Debug)]
pub struct Allocator {
    /// The bytes Rust code has allocated and not freed.
    pub live: fn() -> u64,
    /// Gives the calling thread's free memory back to the system.
    pub release: fn(),
    /// Gives every free page of the process back to the system (the allocator's arenas, and
    /// the C heap that SQLite allocates from): costlier, for when the process is quiet.
    pub release_all: fn(),
}

static ALLOCATOR: OnceLock<Allocator> = OnceLock::new();

/// The least time between two releases on one thread.
pub const RELEASE_EVERY: Duration = Duration::from_secs(1);

/// Tells the server about the process's allocator (once, before the runtimes start).
pub fn use_allocator(allocator: Allocator) {
    let _ = ALLOCATOR.set(allocator);
}

/// The bytes Rust code holds, when the binary said how to count them.
pub fn live_bytes() -> Option<u64> {
    ALLOCATOR.get().map(|allocator| (allocator.live)())
}

thread_local! {
    /// When this thread last released, and whether it ran since.
    static LAST_RELEASE: Cell<Option<Instant>> = const { Cell::new(None) };
    static RAN_SINCE: Cell<bool> = const { Cell::new(false) };
}

/// How many times runtime threads have woken up to work.
static UNPARKS: AtomicU64 = AtomicU64::new(0);
/// Wake-ups in a [`RELEASE_EVERY`] that still count as quiet: an idle server's own timers
/// (lease renewals, pollers) wake it a few times a second.
const QUIET_UNPARKS: u64 = 100;

/// For a runtime's `on_thread_unpark`: the thread is at work again.
fn thread_unparked() {
    RAN_SINCE.with(|ran| ran.set(true));
    UNPARKS.fetch_add(1, Ordering::Relaxed);
}

/// Starts the thread that gives memory back once the process has gone quiet: after a
/// whole [`RELEASE_EVERY`] without a commit to `store` in which runtime threads woke fewer
/// than [`QUIET_UNPARKS`] times, following one with work, it empties the idle caches of
/// `store` and has the allocator return every free page. It does nothing while the
/// process works or stays quiet, and ends with the store.
pub fn release_when_quiet(store: Weak<dyn MetadataStore>) {
    let Some(allocator) = ALLOCATOR.get().copied() else { return };
    let spawned = std::thread::Builder::new().name("berth-memory".into()).spawn(move || {
        let (mut worked, mut unparks, mut revision) = (true, UNPARKS.load(Ordering::Relaxed), None);
        loop {
            std::thread::sleep(RELEASE_EVERY);
            let Some(store) = store.upgrade() else { return };
            let (now_unparks, now_revision) = (UNPARKS.load(Ordering::Relaxed), store.current_revision().ok());
            let woken = now_unparks - std::mem::replace(&mut unparks, now_unparks);
            if woken >= QUIET_UNPARKS || std::mem::replace(&mut revision, now_revision) != now_revision {
                worked = true;
            } else if worked {
                worked = false;
                store.release_memory();
                (allocator.release_all)();
                tracing::debug!("the server went quiet: gave its idle caches and free memory back");
            }
        }
    });
    if let Err(err) = spawned {
        tracing::warn!(%err, "memory is not given back when the server goes quiet: its thread did not start");
    }
}

/// For a runtime's `on_thread_park`: releases what the thread freed while it ran, unless it
/// released less than [`RELEASE_EVERY`] ago.
fn thread_parked() {
    let Some(allocator) = ALLOCATOR.get() else { return };
    if !RAN_SINCE.with(Cell::get) {
        return;
    }
    let now = Instant::now();
    if LAST_RELEASE.with(Cell::get).is_some_and(|last| now.duration_since(last) < RELEASE_EVERY) {
        return;
    }
    (allocator.release)();
    LAST_RELEASE.with(|last| last.set(Some(now)));
    RAN_SINCE.with(|ran| ran.set(false));
}

/// For a runtime's `on_thread_stop`: releases before the thread's memory is left behind.
fn thread_stopped() {
    if let Some(allocator) = ALLOCATOR.get() {
        (allocator.release)();
    }
}

/// How long an idle blocking thread is kept. Blocking threads have no park hook: what
/// they freed goes back only when they stop (tokio's default of 10 s kept a fan-out's
/// 30 MiB resident that long); starting a thread again after a pause costs microseconds.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(2);

/// Builds a multi-threaded runtime whose threads release memory as this module says.
pub fn runtime_builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .on_thread_park(thread_parked)
        .on_thread_unpark(thread_unparked)
        .on_thread_stop(thread_stopped)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE);
    builder
}
