//! One client connection of the server. Events go out through the connection's own bounded
//! queue, which a writer thread drains into the socket, so a client that stops reading holds up
//! no one but itself: when its queue is full the server drops it. Commands come in as lines of
//! at most [`MAX_LINE`] bytes; a line that is no command gets an error reply and the connection
//! reads on.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError, sync_channel};

use crate::engine::protocol::{Command, Event};

/// Events a client may leave unread before it is dropped.
pub const QUEUE: usize = 1024;
/// The longest command line read; a spec is a few kilobytes.
pub const MAX_LINE: usize = 1 << 20;
/// Clients served at a time; each has two threads and three descriptors, and one more is told
/// the server is full.
pub const MAX_CLIENTS: usize = 64;

/// An event as one JSON line, serialised once for every client.
pub fn event_line(e: &Event) -> Arc<str> {
    let mut line = serde_json::to_string(e).expect("events serialise");
    line.push('\n');
    line.into()
}

/// What became of an event offered to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// Its queue is full: it has left [`QUEUE`] events unread.
    Full,
    /// Its connection has ended.
    Gone,
}

/// A connection's outgoing side: the queue and the writer thread draining it.
pub struct Outbox {
    /// Who the client is, for the server's log: "client N (pid P)".
    pub name: String,
    /// None once the server has stopped queueing.
    queue: std::sync::Mutex<Option<SyncSender<Arc<str>>>>,
    stream: UnixStream,
    writer: std::thread::JoinHandle<()>,
}

impl Outbox {
    pub fn open(stream: &UnixStream, name: String) -> std::io::Result<Self> {
        let (queue, lines) = sync_channel::<Arc<str>>(QUEUE);
        let out = stream.try_clone()?;
        let writer = std::thread::spawn(move || write_lines(out, lines));
        Ok(Self {
            name,
            queue: std::sync::Mutex::new(Some(queue)),
            stream: stream.try_clone()?,
            writer,
        })
    }

    /// Queues a line without waiting.
    pub fn offer(&self, line: Arc<str>) -> Offer {
        let queue = self.queue.lock().expect("no panics while holding");
        match queue.as_ref().map(|q| q.try_send(line)) {
            Some(Ok(())) => Offer::Queued,
            Some(Err(TrySendError::Full(_))) => Offer::Full,
            Some(Err(TrySendError::Disconnected(_))) | None => Offer::Gone,
        }
    }

    /// Ends the connection both ways; a write blocked on a client that does not read returns.
    pub fn close(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// The client hung up: the writer sends what is queued (a client that closed only its
    /// sending side may still read it) and ends; no write waits longer than the server's
    /// `LAST_WORDS` on a client that reads none of it.
    pub fn hang_up(&self) {
        let _ = self.stream.set_write_timeout(Some(super::LAST_WORDS));
        self.finish();
    }

    /// Stops queueing: the writer sends what is queued and ends.
    pub fn finish(&self) {
        self.queue.lock().expect("no panics while holding").take();
    }

    /// Whether the writer has ended (after [`Outbox::finish`], once all is sent).
    pub fn finished(&self) -> bool {
        self.writer.is_finished()
    }
}

fn write_lines(stream: UnixStream, lines: Receiver<Arc<str>>) {
    let mut out = BufWriter::new(&stream);
    'lines: while let Ok(line) = lines.recv() {
        if out.write_all(line.as_bytes()).is_err() {
            break;
        }
        // Whatever else is queued goes in the same write.
        while let Ok(more) = lines.try_recv() {
            if out.write_all(more.as_bytes()).is_err() {
                break 'lines;
            }
        }
        if out.flush().is_err() {
            break;
        }
    }
    drop(out);
    // A client that cannot be written to is gone: its reader stops too.
    let _ = stream.shutdown(Shutdown::Both);
}

/// A line read with [`read_line`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Text(Vec<u8>),
    /// A line longer than the limit, skipped without keeping it: its length in bytes.
    TooLong(usize),
}

/// Reads one line (without its newline) of at most `max` bytes; a longer line is read to its
/// end but not kept, so memory stays bounded whatever a client sends. None at the end of input
/// (a last line without a newline still counts).
pub fn read_line(r: &mut impl BufRead, max: usize) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut len = 0usize;
    let mut read_any = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            if !read_any {
                return Ok(None);
            }
            break;
        }
        read_any = true;
        let (take, newline) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        len += take;
        if len <= max {
            line.extend_from_slice(&chunk[..take]);
        } else if !line.is_empty() {
            line = Vec::new();
        }
        r.consume(take + usize::from(newline));
        if newline {
            break;
        }
    }
    Ok(Some(if len > max {
        Line::TooLong(len)
    } else {
        Line::Text(line)
    }))
}

/// The answer to a line that is no command: a submission (one that names a ticket) is rejected
/// under its ticket, so the client waiting on it hears why; anything else gets a log line.
pub fn refusal(line: &[u8], error: &serde_json::Error) -> Event {
    let value: Option<serde_json::Value> = serde_json::from_slice(line).ok();
    let submit = value
        .as_ref()
        .filter(|v| v["command"] == "submit")
        .and_then(|v| Some((v["ticket"].as_u64()?, v)));
    match submit {
        Some((ticket, v)) => Event::Rejected {
            ticket,
            label: v["spec"]["name"].as_str().unwrap_or_default().to_string(),
            error: format!("the server cannot read this submission: {error}"),
        },
        None => Event::Log {
            run: None,
            line: format!("ignored a line that is not a command: {error}"),
        },
    }
}

/// Reads a connection's commands into the engine until the client hangs up; bad lines are
/// answered on `outbox` alone.
pub fn read_commands(stream: UnixStream, outbox: Arc<Outbox>, commands: Sender<Command>) {
    let mut reader = BufReader::new(stream);
    let reply = |e: Event| {
        if outbox.offer(event_line(&e)) == Offer::Full {
            outbox.close();
        }
    };
    while let Ok(Some(line)) = read_line(&mut reader, MAX_LINE) {
        let line = match line {
            Line::TooLong(len) => {
                reply(Event::Log {
                    run: None,
                    line: format!(
                        "ignored a line of {len} bytes: a command line is at most {MAX_LINE} bytes"
                    ),
                });
                continue;
            }
            Line::Text(l) => l,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Command>(&line) {
            Ok(c) => {
                if commands.send(c).is_err() {
                    break;
                }
            }
            Err(e) => reply(refusal(&line, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn an_over_long_line_is_skipped_and_the_next_one_read() {
        let huge = std::io::repeat(b'x').take(3 * MAX_LINE as u64);
        let rest: &[u8] = b"\n{\"command\":\"shutdown\"}\nlast";
        let mut r = BufReader::new(huge.chain(rest));
        assert_eq!(
            read_line(&mut r, MAX_LINE).unwrap(),
            Some(Line::TooLong(3 * MAX_LINE))
        );
        assert_eq!(
            read_line(&mut r, MAX_LINE).unwrap(),
            Some(Line::Text(b"{\"command\":\"shutdown\"}".to_vec()))
        );
        assert_eq!(
            read_line(&mut r, MAX_LINE).unwrap(),
            Some(Line::Text(b"last".to_vec()))
        );
        assert_eq!(read_line(&mut r, MAX_LINE).unwrap(), None);
        // Exactly at the limit is still a line.
        let mut r = BufReader::new(std::io::repeat(b'y').take(8).chain(&b"\n"[..]));
        assert_eq!(
            read_line(&mut r, 8).unwrap(),
            Some(Line::Text(b"yyyyyyyy".to_vec()))
        );
    }

    #[test]
    fn a_bad_submission_is_rejected_under_its_ticket() {
        let line = br#"{"command":"submit","ticket":7,"spec":{"name":"x","method":3}}"#;
        let e = serde_json::from_slice::<Command>(line).unwrap_err();
        let Event::Rejected {
            ticket,
            label,
            error,
        } = refusal(line, &e)
        else {
            panic!("a submission with a ticket is rejected under it");
        };
        assert_eq!((ticket, label.as_str()), (7, "x"));
        assert_eq!(
            error,
            format!("the server cannot read this submission: {e}")
        );
        let garbage = b"\xff\xfe not json";
        let e = serde_json::from_slice::<Command>(garbage).unwrap_err();
        assert_eq!(
            refusal(garbage, &e),
            Event::Log {
                run: None,
                line: "ignored a line that is not a command: expected value at line 1 column 1"
                    .into()
            }
        );
    }
}
