//! Work that yields the CPU to the API: a runtime whose threads run at a lower OS priority
//! (nice +[`NICE`]) than the API's, for work that may take every core for a while without
//! anyone waiting on each step (notification delivery). When the machine is busy the
//! scheduler gives the API's threads and the store's writer most of the CPU, so tag reads
//! and writes keep their pace while events fan out; when it is not, background work gets
//! all of it.

use std::sync::OnceLock;

/// How much lower the background threads' priority is (Linux nice values: each step is
/// about 1.25× less CPU under contention; +5 is about a third of a normal thread's share,
/// so notifications still move on a server kept busy).
pub const NICE: i32 = 5;
/// Threads for blocking work (store reads) on the background runtime: as many as the
/// store has read connections.
const BLOCKING_THREADS: usize = 16;

/// The runtime background work is spawned on: as many worker threads as the machine has
/// cores, made once per process and kept for its life.
pub fn handle() -> tokio::runtime::Handle {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            crate::memory::runtime_builder()
                .thread_name("berth-background")
                .max_blocking_threads(BLOCKING_THREADS)
                .on_thread_start(lower_priority)
                .enable_all()
                .build()
                .expect("the background runtime starts")
        })
        .handle()
        .clone()
}

/// Lowers the calling thread's priority by [`NICE`] from the process's (on Linux the nice
/// value is a thread's own, and a new thread starts with its creator's).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let lowered = getpriority_process(None).and_then(|now| setpriority_process(None, (now + NICE).min(19)));
        if let Err(err) = lowered {
            tracing::debug!(%err, "could not lower a background thread's priority");
        }
    }
}
