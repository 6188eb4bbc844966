//! Facts about this process and its machine that the run store and the UI ask for (host name,
//! whether a process is alive), and process-wide settings applied once at the start of `main`.
//!
//! The numeric half (thread count, allocator) is the main crate's `process::numeric`: it needs
//! candle, and this crate has none.

use std::path::Path;

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

/// When process `pid` started, in clock ticks since boot (Linux: field 22 of /proc/<pid>/stat);
/// None where it cannot be read. A pid alone names a process only until the kernel reuses it:
/// the pair (pid, start time) names one process for the machine's uptime.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    start_ticks_of_stat(&stat)
}

/// Field 22 of a /proc/<pid>/stat line. The command name (field 2) is in parentheses and may
/// itself hold spaces and parentheses, so the fields are counted from the last `)`.
fn start_ticks_of_stat(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (the state) onwards: field 22 is the 20th of them.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// This process's start time, read once.
pub fn own_start_ticks() -> Option<u64> {
    static OWN: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *OWN.get_or_init(|| process_start_ticks(std::process::id()))
}

/// Whether process `pid`, started at `started` clock ticks since boot when that is known, is
/// alive (Linux: /proc; elsewhere assumed alive). A live pid with another start time is another
/// process that got the dead one's pid.
pub fn process_alive(pid: u32, started: Option<u64>) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let now = if pid == std::process::id() {
        own_start_ticks()
    } else if Path::new("/proc").join(pid.to_string()).exists() {
        process_start_ticks(pid)
    } else {
        return false;
    };
    match (started, now) {
        (Some(then), Some(now)) => then == now,
        // An old status file without a start time: the pid is all there is to go by.
        (None, _) => true,
        // The pid's stat vanished between the two reads: it has just exited.
        (Some(_), None) => pid == std::process::id(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_field_22_even_when_the_name_holds_parentheses() {
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 120 0 0 0 3 1 0 0 20 0 1 0 987654 \
                    12345 67 18446744073709551615";
        assert_eq!(start_ticks_of_stat(stat), Some(987654));
        assert_eq!(start_ticks_of_stat("4242 (a) S 1 2"), None);
        assert_eq!(start_ticks_of_stat("no name here"), None);
    }

    #[test]
    fn a_live_pid_is_alive_only_with_its_own_start_time() {
        let me = std::process::id();
        let started = own_start_ticks().expect("/proc/self/stat reads on Linux");
        assert_eq!(process_start_ticks(me), Some(started));
        assert!(process_alive(me, Some(started)));
        assert!(process_alive(me, None));
        assert!(!process_alive(me, Some(started + 1)));
        // pid 1 is alive, but not as a process that started when this one did.
        assert!(process_alive(1, None));
        assert!(!process_alive(1, Some(started + 1)));
        assert!(!process_alive(u32::MAX - 1, None));
    }
}
