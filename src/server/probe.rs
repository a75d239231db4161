//! The daemon's probe of its own health, for the systemd watchdog: a real
//! `GET /healthz` through the listener, a connection thread, the router and the
//! registry lock, its answer read with the same HTTP parser the server uses. A wedged
//! daemon fails it, so the keep-alives stop and systemd restarts regd.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Probes the daemon listening at `address` (an unspecified address is probed on
/// loopback). Ok when it answers 200, or 503 at its connection limit — which still
/// proves the accept loop alive.
pub fn health(address: SocketAddr, timeout: Duration) -> io::Result<()> {
    let target = match address {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, v4.port()))
        }
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, v6.port()))
        }
        other => other,
    };
    let mut stream = TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: regd\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::with_capacity(256);
    let mut buffer = [0u8; 256];
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed before a complete answer head",
            ));
        }
        answer.extend_from_slice(&buffer[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&answer) {
            Ok(httparse::Status::Complete(_)) => {
                return match response.code {
                    Some(200 | 503) => Ok(()),
                    code => Err(io::Error::other(format!("GET /healthz answered {code:?}"))),
                };
            }
            Ok(httparse::Status::Partial) if answer.len() < 16 * 1024 => continue,
            Ok(httparse::Status::Partial) => {
                return Err(io::Error::other("the answer head is too long"));
            }
            Err(error) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not an HTTP answer: {error}"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A one-shot server that answers the probe with `answer`.
    fn answering(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 512];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(answer);
        });
        address
    }

    #[test]
    fn healthy_answers_pass_and_others_fail() {
        let timeout = Duration::from_secs(5);
        assert!(
            health(
                answering(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
                timeout
            )
            .is_ok()
        );
        assert!(
            health(
                answering(b"HTTP/1.1 503 Service Unavailable\r\n\r\n"),
                timeout
            )
            .is_ok()
        );
        assert!(health(answering(b"HTTP/1.1 500 Oops\r\n\r\n"), timeout).is_err());
        assert!(health(answering(b"HTTP/1.1 200"), timeout).is_err());
        assert!(health(answering(b"SSH-2.0-OpenSSH\r\n\r\n"), timeout).is_err());
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(health(closed, timeout).is_err());
    }
}
