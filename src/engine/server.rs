//! `loracycle serve`: the engine as its own process behind a Unix socket, so queued and running
//! work outlives the SSH session; clients (the TUI, `loracycle run --attach`) send commands and
//! receive every event as JSON lines.
//!
//! The socket lives in the user's runtime dir with mode 0600, and both ends check the other's
//! user id (SO_PEERCRED): a connection from another user is refused, and a client refuses a socket
//! that other users could reach.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::protocol::{Command, Event};
use crate::run::store::RunStore;

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
    #[error("the server on {path} runs as user {server}, not as you ({me})")]
    OtherUser { path: PathBuf, server: u32, me: u32 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn my_uid() -> u32 {
    rustix::process::geteuid().as_raw()
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

/// The user id of the process at the other end of `stream`.
pub fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    let cred = rustix::net::sockopt::socket_peercred(stream)?;
    Ok(cred.uid.as_raw())
}

/// Accepts a peer only when it runs as `me`.
pub fn peer_allowed(peer: u32, me: u32) -> bool {
    peer == me
}

/// Checks that a socket file belongs to this user and no one else can open it.
pub fn check_socket_file(path: &Path) -> Result<(), ServerError> {
    let meta = std::fs::metadata(path).map_err(|_| ServerError::NotRunning(path.to_path_buf()))?;
    let me = my_uid();
    if meta.uid() != me {
        return Err(ServerError::Unsafe {
            path: path.to_path_buf(),
            why: format!("it belongs to user {}", meta.uid()),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ServerError::Unsafe {
            path: path.to_path_buf(),
            why: format!("its mode is {mode:04o}"),
        });
    }
    Ok(())
}

/// A connection to a running server.
pub struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Self, ServerError> {
        check_socket_file(path)?;
        let stream =
            UnixStream::connect(path).map_err(|_| ServerError::NotRunning(path.to_path_buf()))?;
        let server = peer_uid(&stream).map_err(io(path))?;
        let me = my_uid();
        if !peer_allowed(server, me) {
            return Err(ServerError::OtherUser {
                path: path.to_path_buf(),
                server,
                me,
            });
        }
        let reader = BufReader::new(stream.try_clone().map_err(io(path))?);
        Ok(Self {
            writer: stream,
            reader,
        })
    }

    pub fn send(&mut self, c: &Command) -> std::io::Result<()> {
        let mut line = serde_json::to_string(c).expect("commands serialise");
        line.push('\n');
        self.writer.write_all(line.as_bytes())
    }

    /// The next event; `None` when the server closed the connection.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {
                    if let Ok(e) = serde_json::from_str(&line) {
                        return Some(e);
                    }
                }
            }
        }
    }
}

/// Runs the engine behind the socket until a client sends `Shutdown`.
pub fn serve(
    path: &Path,
    store: RunStore,
    on_ready: &mut dyn FnMut(&Path),
) -> Result<(), ServerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
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

    let hello = {
        let mut line = serde_json::to_string(&Event::Hello {
            runs_dir: store.root.clone(),
        })
        .expect("events serialise");
        line.push('\n');
        line
    };
    let engine = super::spawn(store);
    let commands = engine.commands.clone();
    let clients: Arc<Mutex<Vec<UnixStream>>> = Arc::new(Mutex::new(Vec::new()));
    let broadcast = clients.clone();
    let events = engine.events;
    let socket = path.to_path_buf();
    // Every engine event goes to every connected client; a client that cannot take it is dropped.
    let fanout = std::thread::spawn(move || {
        for e in events.iter() {
            let mut line = serde_json::to_string(&e).expect("events serialise");
            line.push('\n');
            let mut cs = broadcast.lock().expect("no panics while holding");
            cs.retain_mut(|c| c.write_all(line.as_bytes()).is_ok());
            if matches!(e, Event::Stopped) {
                break;
            }
        }
        let _ = std::fs::remove_file(&socket);
        std::process::exit(0);
    });
    on_ready(path);
    let me = my_uid();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        match peer_uid(&stream) {
            Ok(uid) if peer_allowed(uid, me) => {}
            _ => {
                let _ = stream.write_all(b"{\"event\":\"log\",\"line\":\"refused: the engine serves its own user only\"}\n");
                continue;
            }
        }
        // Before the client joins the broadcast, so it is the first line the client reads.
        if stream.write_all(hello.as_bytes()).is_err() {
            continue;
        }
        let Ok(reader) = stream.try_clone() else {
            continue;
        };
        clients
            .lock()
            .expect("no panics while holding")
            .push(stream);
        let commands = commands.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Command>(&line) {
                    Ok(c) => {
                        if commands.send(c).is_err() {
                            break;
                        }
                    }
                    Err(_) => continue,
                }
            }
        });
    }
    let _ = fanout.join();
    Ok(())
}
