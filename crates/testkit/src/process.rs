//! Servers the tests start, tied to the test process's life.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command};

/// Starts `command` so that it receives `signal` when the test process ends, however it
/// ends (a panic, a kill, nextest's timeout): no server outlives its test.
pub(crate) fn spawn_tied(mut command: Command, signal: libc::c_int) -> std::io::Result<Child> {
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The death signal follows the thread that spawned the child, so spawn it from a
    // thread that lives as long as the process.
    let (spawned, child) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("berth-test-server".into()).spawn(move || {
        let _ = spawned.send(command.spawn());
        loop {
            std::thread::park();
        }
    })?;
    child.recv().map_err(std::io::Error::other)?
}
