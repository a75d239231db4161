//! The stdio transport of MCP: messages are lines. Reading takes one line at a time
//! with a bound on its length; writing is one named thread that owns stdout, fed by a
//! channel, so the session's threads never hold a lock while they write. Invariants:
//! stdout carries only whole protocol messages, one per line; a line longer than
//! [`MAX_MESSAGE`] is skipped to its end without being held in memory; a closed stdout
//! ends the writer quietly and never blocks a sender.

use std::io::{self, BufRead, Write};
use std::thread;

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// The longest message read, in bytes. regd's default body limit is 1 MiB, so no
/// register value a tool could publish comes near it.
pub const MAX_MESSAGE: usize = 4 << 20;

/// Messages waiting for the writer at most; a sender waits while the client does not
/// read (the pipe is full), rather than buffering without bound.
const QUEUE: usize = 1024;

/// What reading stdin gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// One line, without its line ending.
    Message(Vec<u8>),
    /// A line of this many bytes (more than [`MAX_MESSAGE`]), skipped.
    TooLong(usize),
    /// The end of the input.
    End,
}

/// Reads the next line, keeping at most [`MAX_MESSAGE`] bytes of it. A last line
/// without a newline still counts.
pub fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<Line> {
    line.clear();
    let mut length = 0usize;
    loop {
        let buffer = match input.fill_buf() {
            Ok(buffer) => buffer,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if buffer.is_empty() {
            return Ok(match length {
                0 => Line::End,
                _ if length > MAX_MESSAGE => Line::TooLong(length),
                _ => Line::Message(std::mem::take(line)),
            });
        }
        let (chunk, newline) = match buffer.iter().position(|&byte| byte == b'\n') {
            Some(at) => (&buffer[..at], true),
            None => (buffer, false),
        };
        length += chunk.len();
        if length <= MAX_MESSAGE {
            line.extend_from_slice(chunk);
        } else {
            line.clear();
        }
        let used = chunk.len() + usize::from(newline);
        input.consume(used);
        if newline {
            if length > MAX_MESSAGE {
                return Ok(Line::TooLong(length));
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Line::Message(std::mem::take(line)));
        }
    }
}

/// Where the session's threads send messages for stdout. Cheap to clone.
#[derive(Clone)]
pub struct Output {
    queue: Sender<String>,
}

impl Output {
    /// Queues one message (one line of JSON, without its newline). After stdout was
    /// closed, messages are dropped: nobody can read them.
    pub fn send(&self, message: String) {
        match self.queue.try_send(message) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(message)) => {
                let _ = self.queue.send(message);
            }
        }
    }
}

/// Starts the writer thread over `out`; it ends when every [`Output`] is dropped (after
/// writing what was queued) or when `out` fails.
pub fn start_writer(
    out: impl Write + Send + 'static,
) -> io::Result<(Output, thread::JoinHandle<()>)> {
    let (queue, messages) = crossbeam_channel::bounded(QUEUE);
    let writer = thread::Builder::new()
        .name("regctl-mcp-writer".to_string())
        .spawn(move || write_all(out, &messages))?;
    Ok((Output { queue }, writer))
}

fn write_all(mut out: impl Write, messages: &Receiver<String>) {
    for message in messages {
        let written = out
            .write_all(message.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            // Flush once the queue is empty: a burst of notifications costs one write.
            .and_then(|()| {
                if messages.is_empty() {
                    out.flush()
                } else {
                    Ok(())
                }
            });
        if let Err(error) = written {
            if error.kind() != io::ErrorKind::BrokenPipe {
                eprintln!("regctl mcp: cannot write to stdout: {error}");
            }
            // Dropping the receiver makes every later send fail at once.
            return;
        }
    }
}

/// An output that keeps what is written, for tests: clones share the bytes.
#[cfg(test)]
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().clone()).expect("UTF-8 output")
    }
}

#[cfg(test)]
impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded() {
        let long = "x".repeat(MAX_MESSAGE + 1);
        let text = format!("one\r\n\n{long}\ntwo\n{}\nlast", "y".repeat(MAX_MESSAGE));
        // A small buffer makes lines span many reads.
        let mut input = io::BufReader::with_capacity(7, text.as_bytes());
        let mut line = Vec::new();
        let mut lines = Vec::new();
        loop {
            match read_line(&mut input, &mut line).unwrap() {
                Line::End => break,
                Line::Message(bytes) if bytes.len() > 100 => {
                    lines.push(format!("{} bytes", bytes.len()))
                }
                Line::Message(bytes) => lines.push(String::from_utf8(bytes).unwrap()),
                Line::TooLong(length) => lines.push(format!("too long: {length}")),
            }
        }
        assert_eq!(
            lines,
            [
                "one".to_string(),
                String::new(),
                format!("too long: {}", MAX_MESSAGE + 1),
                "two".to_string(),
                format!("{MAX_MESSAGE} bytes"),
                "last".to_string(),
            ]
        );
    }

    #[test]
    fn the_writer_writes_lines_in_order_and_stops_on_a_closed_output() {
        let captured = Captured::default();
        let (output, writer) = start_writer(captured.clone()).unwrap();
        output.send("a".to_string());
        output.send("b".to_string());
        drop(output);
        writer.join().unwrap();
        assert_eq!(captured.text(), "a\nb\n");

        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (output, writer) = start_writer(Closed).unwrap();
        output.send("a".to_string());
        writer.join().unwrap();
        // Far more than the queue holds: none of these may block.
        for _ in 0..QUEUE * 2 {
            output.send("lost".to_string());
        }
    }
}
