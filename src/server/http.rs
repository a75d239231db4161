//! HTTP/1.1 on one connection: reads requests (heads parsed by httparse, bodies by
//! Content-Length or chunked), hands each to the service, writes the answer, and keeps
//! the connection alive while the client wants it. Invariants: nothing here grows
//! without a limit (head, URI, body) and no read waits longer than the read timeout, so
//! a silent or dribbling client cannot pin the thread; one request is served at a time
//! (pipelined requests wait in the buffer).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::os::fd::{AsRawFd, RawFd};

use crate::protocol::ApiError;

use super::hangups::{Hangups, Nudge, Watch};

use super::exchange::{Peer, Request, Response};
use super::service::Service;

/// Size and time limits of the connection layer (docs/protocol.md B4).
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Largest request head (request line and headers), in bytes.
    pub max_head_bytes: usize,
    /// Longest request target (path and query), in bytes.
    pub max_uri_bytes: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a client may take to send a complete request head or body, and how
    /// long an idle keep-alive connection is kept.
    pub read_timeout: Duration,
    /// How long writing one answer may take.
    pub write_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_head_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
        }
    }
}

const MAX_HEADERS: usize = 64;
const READ_CHUNK: usize = 4096;

/// Why reading a request stopped.
enum ReadError {
    /// The client closed, timed out while idle, or the socket failed: close quietly.
    Closed,
    /// The request is bad: answer this error, then close.
    Refuse(ApiError),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Closed
    }
}

/// The byte stream under a connection: a TCP socket, or memory (for fuzzing).
trait Transport {
    /// Reads what is available, waiting no later than `deadline`; 0 at the end.
    fn read_before(&self, buffer: &mut [u8], deadline: Instant) -> io::Result<usize>;
    fn write_all(&self, bytes: &[u8]) -> io::Result<()>;
    /// Whether the client is still there (see [`peer_is_connected`]).
    fn is_connected(&self) -> bool;
    /// The socket's descriptor, to watch for hang-ups; `None` in memory.
    fn descriptor(&self) -> Option<RawFd>;
    /// Closes without resetting: stop sending, then drain briefly what the client
    /// still sends, so it reads our answer instead of a connection reset.
    fn close_gently(&self);
}

impl Transport for TcpStream {
    fn read_before(&self, buffer: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.set_read_timeout(Some(remaining))?;
        loop {
            match (&*self).read(buffer) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let mut writer: &TcpStream = self;
        Write::write_all(&mut writer, bytes)
    }

    fn is_connected(&self) -> bool {
        peer_is_connected(self)
    }

    fn descriptor(&self) -> Option<RawFd> {
        Some(self.as_raw_fd())
    }

    fn close_gently(&self) {
        let _ = self.shutdown(Shutdown::Write);
        let _ = self.set_read_timeout(Some(Duration::from_millis(200)));
        let mut sink = [0u8; 1024];
        for _ in 0..64 {
            match (&*self).read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// A connection whose client sent `input` and then went quiet: answers accumulate.
struct Memory<'a> {
    input: std::cell::Cell<&'a [u8]>,
    /// At most this many bytes per read, so requests arrive split as on a network.
    read_size: usize,
    output: std::cell::RefCell<Vec<u8>>,
}

impl Transport for Memory<'_> {
    fn read_before(&self, buffer: &mut [u8], _deadline: Instant) -> io::Result<usize> {
        let input = self.input.get();
        let count = input.len().min(buffer.len()).min(self.read_size);
        buffer[..count].copy_from_slice(&input[..count]);
        self.input.set(&input[count..]);
        Ok(count)
    }

    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        self.output.borrow_mut().extend_from_slice(bytes);
        Ok(())
    }

    fn is_connected(&self) -> bool {
        true
    }

    fn descriptor(&self) -> Option<RawFd> {
        None
    }

    fn close_gently(&self) {}
}

struct Connection<'a, T: Transport> {
    /// Shared with the server, which shuts it down at exit.
    stream: T,
    peer_address: SocketAddr,
    buffer: Vec<u8>,
    limits: &'a HttpLimits,
    hangups: Option<&'a Hangups>,
}

/// Serves requests on `stream` until the client leaves, asks to close, misbehaves, or
/// the service shuts down.
pub fn serve(
    stream: Arc<TcpStream>,
    peer_address: SocketAddr,
    service: &Service,
    limits: &HttpLimits,
    hangups: &Hangups,
) {
    let _ = stream.set_nodelay(true);
    if stream
        .set_write_timeout(Some(limits.write_timeout))
        .is_err()
    {
        return;
    }
    serve_on(
        Connection {
            stream: &*stream,
            peer_address,
            buffer: Vec::new(),
            limits,
            hangups: Some(hangups),
        },
        service,
    );
}

/// Serves one client's bytes from memory and returns everything answered: the whole
/// connection layer and router without a socket, for fuzzing and tests. Input is
/// delivered `read_size` bytes at a time.
pub fn serve_bytes(
    input: &[u8],
    read_size: usize,
    service: &Service,
    limits: &HttpLimits,
) -> Vec<u8> {
    let memory = Memory {
        input: std::cell::Cell::new(input),
        read_size: read_size.max(1),
        output: std::cell::RefCell::new(Vec::new()),
    };
    serve_on(
        Connection {
            stream: &memory,
            peer_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            buffer: Vec::new(),
            limits,
            hangups: None,
        },
        service,
    );
    memory.output.into_inner()
}

impl<T: Transport + ?Sized> Transport for &T {
    fn read_before(&self, buffer: &mut [u8], deadline: Instant) -> io::Result<usize> {
        (**self).read_before(buffer, deadline)
    }

    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        (**self).write_all(bytes)
    }

    fn is_connected(&self) -> bool {
        (**self).is_connected()
    }

    fn descriptor(&self) -> Option<RawFd> {
        (**self).descriptor()
    }

    fn close_gently(&self) {
        (**self).close_gently()
    }
}

fn serve_on<T: Transport>(mut connection: Connection<'_, T>, service: &Service) {
    loop {
        let request = match connection.read_request() {
            Ok(request) => request,
            Err(ReadError::Closed) => return,
            Err(ReadError::Refuse(error)) => {
                service.count_refused_request(&error);
                let response = Response::error(&error);
                let _ = connection.write_response(&response, false, true);
                connection.close_gently();
                return;
            }
        };
        // A long poll may hold this thread for minutes, and an idle keep-alive
        // connection for the read timeout: neither keeps more buffer than it holds
        // bytes. With nothing pipelined the buffer is empty here; the next request
        // allocates a fresh one, sized to what arrives.
        if connection.buffer.is_empty() {
            connection.buffer = Vec::new();
        } else {
            connection.buffer.shrink_to(READ_CHUNK);
        }
        let started = Instant::now();
        let mut response = service.handle(&request, &connection);
        let close = request.wants_close || service.is_shutting_down() || response.close;
        if !close && request.http_1_0 {
            // An HTTP/1.0 client assumes close unless told otherwise.
            response
                .headers
                .push(("Connection", "keep-alive".to_string()));
        }
        let written = connection.write_response(&response, request.method == "HEAD", close);
        log::debug!(
            "{} {} {} {}{}{} {} in {:?}",
            connection.peer_address,
            if written.is_ok() { "answered" } else { "lost" },
            request.method,
            request.path,
            if request.query.is_empty() { "" } else { "?" },
            request.query,
            response.status,
            started.elapsed()
        );
        if written.is_err() {
            // The client left before it got its change requests: they stay pending.
            let undelivered = std::mem::take(&mut response.undelivered);
            if !undelivered.is_empty() {
                service.restore_requests(undelivered);
            }
            return;
        }
        if close {
            connection.close_gently();
            return;
        }
    }
}

impl<T: Transport> Connection<'_, T> {
    fn read_request(&mut self) -> Result<Request, ReadError> {
        let deadline = Instant::now() + self.limits.read_timeout;
        let head = self.read_head(deadline)?;
        let mut request = head.request;
        if let Some(expectation) = &head.expect {
            if !expectation.eq_ignore_ascii_case("100-continue") {
                return Err(ReadError::Refuse(ApiError::with_status(
                    417,
                    format!("expectation {expectation:?} is not supported; only 100-continue is"),
                )));
            }
        }
        let body_length = match head.framing {
            Framing::None => return Ok(request),
            Framing::Length(length) => Some(length),
            Framing::Chunked => None,
        };
        if let Some(length) = body_length {
            if length > self.limits.max_body_bytes {
                return Err(ReadError::Refuse(ApiError::body_too_large(
                    self.limits.max_body_bytes,
                )));
            }
        }
        if head.expect.is_some() && self.buffer.is_empty() {
            self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        // The body gets a fresh read timeout of its own.
        let deadline = Instant::now() + self.limits.read_timeout;
        request.body = match body_length {
            Some(length) => {
                self.fill_to(length, deadline)?;
                self.buffer.drain(..length).collect()
            }
            None => self.read_chunked(deadline)?,
        };
        Ok(request)
    }

    fn read_head(&mut self, deadline: Instant) -> Result<Head, ReadError> {
        loop {
            if !self.buffer.is_empty() {
                if let Some(head) = self.parse_head()? {
                    return Ok(head);
                }
            }
            if self.buffer.len() >= self.limits.max_head_bytes {
                let line_ended = self.buffer.windows(2).any(|pair| pair == b"\r\n");
                return Err(ReadError::Refuse(if line_ended {
                    ApiError::with_status(
                        431,
                        format!(
                            "request headers larger than {} bytes",
                            self.limits.max_head_bytes
                        ),
                    )
                } else {
                    uri_too_long(self.limits.max_uri_bytes)
                }));
            }
            let room = self.limits.max_head_bytes - self.buffer.len();
            if self.read_more(room.min(READ_CHUNK), deadline)? == 0 {
                return Err(ReadError::Closed);
            }
        }
    }

    /// `Ok(None)` while the head is incomplete.
    fn parse_head(&mut self) -> Result<Option<Head>, ReadError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let head_length = match parsed.parse(&self.buffer) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => {
                // A request line longer than the URI limit is refused before it ends.
                if parsed.path.is_none()
                    && !self.buffer.contains(&b'\n')
                    && self.buffer.len() > self.limits.max_uri_bytes + 32
                {
                    return Err(ReadError::Refuse(uri_too_long(self.limits.max_uri_bytes)));
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ReadError::Refuse(ApiError::with_status(
                    431,
                    format!("a request may carry at most {MAX_HEADERS} headers"),
                )));
            }
            Err(error) => {
                return Err(ReadError::Refuse(ApiError::bad_request(format!(
                    "malformed HTTP request head: {error}"
                ))));
            }
        };
        let target = origin_form(parsed.path.unwrap_or("/"));
        if target.len() > self.limits.max_uri_bytes {
            return Err(ReadError::Refuse(uri_too_long(self.limits.max_uri_bytes)));
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let version_minor = parsed.version.unwrap_or(1);
        let mut head = Head {
            request: Request {
                method: parsed.method.unwrap_or("GET").to_string(),
                path: path.to_string(),
                query: query.to_string(),
                headers: Vec::new(),
                body: Vec::new(),
                wants_close: version_minor == 0,
                http_1_0: version_minor == 0,
                peer_address: Some(self.peer_address),
            },
            framing: Framing::None,
            expect: None,
        };
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        for header in parsed.headers.iter() {
            let value = std::str::from_utf8(header.value)
                .map_err(|_| refuse(format!("header {} is not valid text", header.name)))?
                .trim();
            let name = header.name.to_ascii_lowercase();
            match name.as_str() {
                "content-length" => {
                    let length: usize = value.parse().map_err(|_| {
                        refuse(format!(
                            "Content-Length must be a whole number of bytes, got {value:?}"
                        ))
                    })?;
                    if content_length.is_some_and(|seen| seen != length) {
                        return Err(refuse("conflicting Content-Length headers".to_string()));
                    }
                    content_length = Some(length);
                }
                "transfer-encoding" => {
                    if !value.eq_ignore_ascii_case("chunked") {
                        return Err(ReadError::Refuse(ApiError::with_status(
                            501,
                            format!(
                                "Transfer-Encoding {value:?} is not supported; send chunked or a Content-Length"
                            ),
                        )));
                    }
                    chunked = true;
                }
                "connection" => {
                    for token in value.split(',').map(str::trim) {
                        if token.eq_ignore_ascii_case("close") {
                            head.request.wants_close = true;
                        } else if token.eq_ignore_ascii_case("keep-alive") && version_minor == 0 {
                            head.request.wants_close = false;
                        }
                    }
                }
                "expect" => head.expect = Some(value.to_string()),
                _ => {}
            }
            head.request.headers.push((name, value.to_string()));
        }
        head.framing = match (content_length, chunked) {
            (Some(_), true) => {
                return Err(refuse(
                    "a request may not carry both Content-Length and Transfer-Encoding".to_string(),
                ));
            }
            (Some(0) | None, false) => Framing::None,
            (Some(length), false) => Framing::Length(length),
            (None, true) => Framing::Chunked,
        };
        self.buffer.drain(..head_length);
        Ok(Some(head))
    }

    fn read_chunked(&mut self, deadline: Instant) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let (line_length, size) = loop {
                match httparse::parse_chunk_size(&self.buffer) {
                    Ok(httparse::Status::Complete((consumed, size))) => break (consumed, size),
                    Ok(httparse::Status::Partial) if self.buffer.len() < 1024 => {
                        if self.read_more(READ_CHUNK, deadline)? == 0 {
                            return Err(ReadError::Closed);
                        }
                    }
                    _ => return Err(refuse("malformed chunked request body".to_string())),
                }
            };
            self.buffer.drain(..line_length);
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size > self.limits.max_body_bytes.saturating_sub(body.len()) {
                return Err(ReadError::Refuse(ApiError::body_too_large(
                    self.limits.max_body_bytes,
                )));
            }
            if size == 0 {
                self.skip_trailers(deadline)?;
                return Ok(body);
            }
            self.fill_to(size + 2, deadline)?;
            if &self.buffer[size..size + 2] != b"\r\n" {
                return Err(refuse("malformed chunked request body".to_string()));
            }
            body.extend(self.buffer.drain(..size));
            self.buffer.drain(..2);
        }
    }

    fn skip_trailers(&mut self, deadline: Instant) -> Result<(), ReadError> {
        loop {
            match self.buffer.windows(2).position(|pair| pair == b"\r\n") {
                Some(0) => {
                    self.buffer.drain(..2);
                    return Ok(());
                }
                Some(end) => {
                    self.buffer.drain(..end + 2);
                }
                None if self.buffer.len() < self.limits.max_head_bytes => {
                    if self.read_more(READ_CHUNK, deadline)? == 0 {
                        return Err(ReadError::Closed);
                    }
                }
                None => return Err(refuse("chunked trailers too large".to_string())),
            }
        }
    }

    fn fill_to(&mut self, length: usize, deadline: Instant) -> Result<(), ReadError> {
        while self.buffer.len() < length {
            let wanted = length - self.buffer.len();
            if self.read_more(wanted, deadline)? == 0 {
                return Err(ReadError::Closed);
            }
        }
        Ok(())
    }

    /// Reads up to `wanted` more bytes, waiting no later than `deadline`. Returns 0 at
    /// the end of the stream; a timeout is an error.
    fn read_more(&mut self, wanted: usize, deadline: Instant) -> io::Result<usize> {
        // Read straight into the heap buffer, which `serve_on` gives back before a long
        // poll. (Reading into a 4 KiB stack array instead touched one more stack page
        // per thread for good: measured +4 KiB resident per held poll.)
        let start = self.buffer.len();
        self.buffer.resize(start + wanted.min(READ_CHUNK), 0);
        let result = self.stream.read_before(&mut self.buffer[start..], deadline);
        let read = *result.as_ref().unwrap_or(&0);
        self.buffer.truncate(start + read);
        result
    }

    fn write_response(
        &mut self,
        response: &Response,
        head_only: bool,
        close: bool,
    ) -> io::Result<()> {
        let mut out = Vec::with_capacity(160 + response.body.len());
        write!(
            out,
            "HTTP/1.1 {} {}\r\n",
            response.status,
            reason(response.status)
        )?;
        let has_body = !matches!(response.status, 204 | 304);
        if has_body && !response.body.is_empty() {
            write!(out, "Content-Type: {}\r\n", response.content_type)?;
        }
        if has_body {
            write!(out, "Content-Length: {}\r\n", response.body.len())?;
        }
        for (name, value) in &response.headers {
            write!(out, "{name}: {value}\r\n")?;
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if has_body && !head_only {
            out.extend_from_slice(&response.body);
        }
        self.stream.write_all(&out)
    }

    fn close_gently(&mut self) {
        self.stream.close_gently();
    }
}

impl<T: Transport> Peer for Connection<'_, T> {
    fn is_connected(&self) -> bool {
        // A pipelined request waiting in the buffer proves the client is there.
        !self.buffer.is_empty() || self.stream.is_connected()
    }

    fn watch_hangup(&self, nudge: Arc<dyn Nudge>) -> Option<Watch<'_>> {
        self.hangups?.watch(self.stream.descriptor()?, nudge)
    }
}

/// Whether the client is still there: a closed or reset socket reads as end of stream
/// or an error at once; a live one has nothing to read (or its next request).
fn peer_is_connected(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut probe = [0u8; 1];
    let connected = match stream.peek(&mut probe) {
        Ok(0) => false,
        Ok(_) => true,
        Err(error) => error.kind() == io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).is_ok() && connected
}

struct Head {
    request: Request,
    framing: Framing,
    expect: Option<String>,
}

enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// The path and query of a request target; an absolute-form target (as sent to
/// proxies, `http://host/consumer`) loses its scheme and authority.
fn origin_form(target: &str) -> &str {
    let Some(after_scheme) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    else {
        return target;
    };
    match after_scheme.find(['/', '?']) {
        Some(start) if after_scheme[start..].starts_with('/') => &after_scheme[start..],
        // `http://host?query` has no path: such a target names no resource.
        _ => "/",
    }
}

fn refuse(message: String) -> ReadError {
    ReadError::Refuse(ApiError::bad_request(message))
}

fn uri_too_long(limit: usize) -> ApiError {
    ApiError::with_status(414, format!("request target longer than {limit} bytes"))
}

/// A minimal answer written without reading the request: used when the connection
/// limit is reached.
pub(super) fn refusal_bytes(error: &ApiError) -> Vec<u8> {
    let body = error.body();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        error.status,
        reason(error.status),
        body.len()
    );
    if let Some(seconds) = error.retry_after {
        out.push_str(&format!("Retry-After: {seconds}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServiceConfig;

    fn answers(input: &[u8], read_size: usize) -> String {
        let service = Service::new(ServiceConfig::default());
        let output = serve_bytes(input, read_size, &service, &HttpLimits::default());
        String::from_utf8(output).unwrap()
    }

    #[test]
    fn a_connection_served_from_memory_answers_in_order_however_it_is_split() {
        let input = b"PUT /provider HTTP/1.1\r\nContent-Length: 31\r\n\r\n{\"registers\":{\"a\":{\"value\":1}}}\
            GET /consumer?name=a HTTP/1.1\r\n\r\n\
            POST /consumer HTTP/1.1\r\nConnection: close\r\n\r\n";
        for read_size in [1, 2, 7, 64, 4096] {
            let output = answers(input, read_size);
            let statuses: Vec<&str> = output
                .split("HTTP/1.1 ")
                .skip(1)
                .map(|answer| &answer[..3])
                .collect();
            assert_eq!(statuses, ["204", "200", "405"], "read size {read_size}");
            assert!(output.contains(r#"{"registers":{"a":{"value":1}}}"#));
            assert!(
                output.ends_with(
                    r#""error":"method POST is not allowed on /consumer; use GET, PUT"}"#
                )
            );
        }
    }

    #[test]
    fn a_truncated_request_gets_no_answer() {
        assert_eq!(answers(b"GET /consumer HTTP/1.1\r\nHost: x", 5), "");
        assert_eq!(
            answers(b"PUT /provider HTTP/1.1\r\nContent-Length: 10\r\n\r\n{", 5),
            ""
        );
    }
}
