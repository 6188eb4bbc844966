//! `loracycle serve`: the engine as its own process behind a Unix socket, so queued and running
//! work outlives the SSH session; clients (the TUI, `loracycle run --attach`) send commands and
//! receive every event as JSON lines.
//!
//! The socket lives in a folder of the user's with mode 0700 and is itself 0600, and both ends
//! check the other's user id (SO_PEERCRED): a connection from another user is refused, and a
//! client refuses a socket that other users could reach. A client cannot hold up the others: each
//! has its own bounded queue of events (one that leaves it full is dropped), a command line is
//! at most a mebibyte, and a line that is no command gets an error reply (`connection.rs`).
//! A client that hangs up leaves at once, threads and sockets with it, and at most
//! [`MAX_CLIENTS`] are served at a time. Runs still queued at a `shutdown` are kept for the
//! next start on the same runs directory (`kept.rs`).

mod client;
mod connection;
pub mod kept;
mod socket;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use client::Client;
pub use connection::{MAX_CLIENTS, MAX_LINE, QUEUE};
pub use socket::{
    check_socket_dir, check_socket_file, peer_allowed, peer_cred, peer_uid, prepare_socket_dir,
};

use super::protocol::Event;
use crate::run::store::RunStore;
use connection::{Offer, Outbox, event_line, read_commands};
use socket::my_uid;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a loracycle server is already listening on {0}")]
    AlreadyRunning(PathBuf),
    #[error("no loracycle server on {0} (start one with `loracycle serve`)")]
    NotRunning(PathBuf),
    #[error(
        "refusing {path}: {why}; the engine socket must belong to you with mode 0600 (remove it and restart `loracycle serve`)"
    )]
    Unsafe { path: PathBuf, why: String },
    #[error(
        "refusing the socket folder {path}: {why}; it must belong to you with mode 0700 (remove it, or `chmod 700` it if it is yours, or set LORACYCLE_SOCKET to a path in a folder of your own)"
    )]
    UnsafeDir { path: PathBuf, why: String },
    #[error("the server on {path} runs as user {server}, not as you ({me})")]
    OtherUser { path: PathBuf, server: u32, me: u32 },
    /// The server's own words, or what it did instead of greeting.
    #[error("{path}: {why}")]
    Refused { path: PathBuf, why: String },
    #[error("{path}: not a list of kept runs ({reason}); none was taken up")]
    KeptList { path: PathBuf, reason: String },
    #[error("kept run {id} was not taken up: {reason}")]
    KeptRun { id: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `LORACYCLE_SOCKET`, else `$XDG_RUNTIME_DIR/loracycle/engine.sock`, else
/// `/tmp/loracycle-$UID/engine.sock`.
pub fn socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LORACYCLE_SOCKET") {
        return PathBuf::from(p);
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("loracycle").join("engine.sock"),
        None => PathBuf::from(format!("/tmp/loracycle-{}", my_uid())).join("engine.sock"),
    }
}

/// How long the clients' writers get to send the last events (`Stopped` among them) once the
/// engine has stopped; a client that reads none of them does not keep the server up.
const LAST_WORDS: Duration = Duration::from_secs(5);

/// Runs the engine behind the socket until a client sends `Shutdown` (the run in flight
/// finishes first, the queued ones are kept for the next start). `on_ready` hears the socket and
/// how many kept runs were taken up.
pub fn serve(
    path: &Path,
    store: RunStore,
    on_ready: &mut dyn FnMut(&Path, usize),
) -> Result<(), ServerError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    prepare_socket_dir(dir)?;
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ServerError::AlreadyRunning(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(io(path))?;
    }
    // Bind under a umask that leaves the socket 0600 from its first moment.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let listener = UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = listener.map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;

    let hello = event_line(&Event::Hello {
        runs_dir: store.root.clone(),
    });
    let full = event_line(&Event::Log {
        run: None,
        line: format!(
            "refused: the server is full ({MAX_CLIENTS} clients); try again once one has disconnected"
        ),
    });
    // Only now that the socket is ours: a second server on the same socket has been refused
    // above and takes up nothing.
    let taken = kept::take_up(&store);
    for e in &taken.problems {
        eprintln!("loracycle serve: {e}");
    }
    let resumed = taken.queue.len();
    let root = store.root.clone();
    let engine = super::spawn_with(store, taken.queue);
    let commands = engine.commands.clone();
    let clients: Arc<Mutex<Vec<Arc<Outbox>>>> = Arc::new(Mutex::new(Vec::new()));
    let broadcast = clients.clone();
    let events = engine.events;
    let socket = path.to_path_buf();
    // Every engine event goes into every client's queue; nothing here waits on a socket.
    let fanout = std::thread::spawn(move || {
        for e in events.iter() {
            // Listed before any client hears of it, so that once a client has read `Stopped`
            // the list is on disk.
            if let Event::Kept { runs } = &e
                && let Err(err) = kept::keep(&root, runs)
            {
                eprintln!(
                    "loracycle serve: {err}; its {} queued runs stay on disk, but the next start will not take them up",
                    runs.len()
                );
            }
            let line = event_line(&e);
            broadcast
                .lock()
                .expect("no panics while holding")
                .retain(|c| match c.offer(line.clone()) {
                    Offer::Queued => true,
                    Offer::Full => {
                        eprintln!(
                            "loracycle serve: disconnected {}: it left {QUEUE} events unread",
                            c.name
                        );
                        c.close();
                        false
                    }
                    Offer::Gone => false,
                });
            if matches!(e, Event::Stopped) {
                break;
            }
        }
        let _ = std::fs::remove_file(&socket);
        let last: Vec<Arc<Outbox>> =
            std::mem::take(&mut *broadcast.lock().expect("no panics while holding"));
        last.iter().for_each(|c| c.finish());
        let deadline = Instant::now() + LAST_WORDS;
        while Instant::now() < deadline && !last.iter().all(|c| c.finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::process::exit(0);
    });
    on_ready(path, resumed);
    let me = my_uid();
    let mut joined = 0u64;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let pid = match peer_cred(&stream) {
            Ok((uid, pid)) if peer_allowed(uid, me) => pid,
            _ => {
                // Never wait on a peer that is refused.
                let _ = stream.set_nonblocking(true);
                let _ = stream.write_all(b"{\"event\":\"log\",\"line\":\"refused: the engine serves its own user only\"}\n");
                continue;
            }
        };
        if clients.lock().expect("no panics while holding").len() >= MAX_CLIENTS {
            let _ = stream.set_nonblocking(true);
            let _ = stream.write_all(full.as_bytes());
            continue;
        }
        joined += 1;
        let Ok(outbox) = Outbox::open(&stream, format!("client {joined} (pid {pid})")) else {
            continue;
        };
        // Before the client joins the broadcast, so it is the first line the client reads.
        outbox.offer(hello.clone());
        let outbox = Arc::new(outbox);
        clients
            .lock()
            .expect("no panics while holding")
            .push(outbox.clone());
        let commands = commands.clone();
        let clients = clients.clone();
        std::thread::spawn(move || {
            read_commands(stream, outbox.clone(), commands);
            // Gone at once, not when some later event finds its socket closed: until then its
            // writer thread and its sockets would stay.
            outbox.hang_up();
            clients
                .lock()
                .expect("no panics while holding")
                .retain(|c| !Arc::ptr_eq(c, &outbox));
        });
    }
    let _ = fanout.join();
    Ok(())
}
