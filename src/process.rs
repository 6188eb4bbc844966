//! Facts about this process and its machine that the run store and the UI ask for (host name,
//! whether a process is alive), and process-wide settings applied once at the start of `main`.
//!
//! The numeric half (thread count, allocator) is in [`numeric`]: it needs candle, and the run
//! data layer reaches this file for the host name without linking the tensor code.

pub mod numeric;

use std::path::Path;

pub use numeric::{cpu_model, gemm_isa, machine_line, prepare, set_threads, threads_set_by_user};

/// This machine's host name (empty where it cannot be read).
pub fn host_name() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    })
    .clone()
}

/// Whether process `pid` is alive (Linux: /proc; elsewhere assumed alive).
pub fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Lets a closed stdout end the process quietly, as it does `cat` or `ls`: `loracycle pool list
/// | head` stops when `head` has read enough, instead of panicking on the failed print (Rust
/// ignores SIGPIPE and turns the write error into a panic in `println!`).
///
/// Only for commands whose one peer is the terminal or a pipe: a process that talks to sockets
/// (the engine server, a client attached to it) must see a closed peer as an error, not die.
///
/// # Safety
/// Changes a process-wide signal disposition: call it before the process starts any thread.
pub unsafe fn end_quietly_on_closed_pipe() {
    // SAFETY: restoring the default disposition of one signal; the caller guarantees no other
    // thread runs yet.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}
