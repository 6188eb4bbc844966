//! A client's end of the engine socket: it checks the socket and the server's user before
//! sending anything, then sends commands and reads events as JSON lines.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::socket::{check_socket_file, my_uid, peer_allowed, peer_uid};
use super::{ServerError, io};
use crate::engine::protocol::{Command, Event, RunId};

/// A connection to a running server.
pub struct Client {
    path: PathBuf,
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
            path: path.to_path_buf(),
            writer: stream,
            reader,
        })
    }

    /// Stops the server (`loracycle serve --stop`) and waits until it has: the run in flight
    /// finishes first, and `on_wait` hears of it once. Returns the runs it kept for its next
    /// start, in queue order.
    pub fn stop(mut self, on_wait: &mut dyn FnMut(&RunId)) -> Result<Vec<RunId>, ServerError> {
        // A server that is full says so instead of greeting, then hangs up.
        match self.next_event() {
            Some(Event::Hello { .. }) => {}
            Some(Event::Log { line, .. }) => {
                return Err(ServerError::Refused {
                    path: self.path,
                    why: line,
                });
            }
            Some(e) => {
                return Err(ServerError::Refused {
                    path: self.path,
                    why: format!("the server did not greet first (it sent {e:?})"),
                });
            }
            None => {
                return Err(ServerError::Refused {
                    path: self.path,
                    why: "the server closed the connection before greeting".into(),
                });
            }
        }
        self.send(&Command::Shutdown).map_err(io(&self.path))?;
        let mut kept = Vec::new();
        let mut waited = false;
        // The socket closing counts as stopped too: the server exits once its clients have had
        // a few seconds for its last events.
        while let Some(e) = self.next_event() {
            match e {
                Event::Stopped => break,
                Event::Kept { runs } => kept = runs,
                // A run's progress before it ends is the run in flight; a queued one is not.
                e if e.is_terminal() || matches!(e, Event::Queued { .. }) => {}
                e => {
                    if let Some(run) = e.run().filter(|_| !waited) {
                        waited = true;
                        on_wait(run);
                    }
                }
            }
        }
        Ok(kept)
    }

    pub fn send(&mut self, c: &Command) -> std::io::Result<()> {
        let mut line = serde_json::to_string(c).expect("commands serialise");
        line.push('\n');
        self.writer.write_all(line.as_bytes())
    }

    /// Sends raw bytes as they are (a test of what the server makes of a line that is no
    /// command).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
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

    /// Gives up a [`Client::next_event`] that waits longer than `limit` (it then returns None).
    pub fn set_read_timeout(&self, limit: Option<std::time::Duration>) -> std::io::Result<()> {
        self.reader.get_ref().set_read_timeout(limit)
    }
}
