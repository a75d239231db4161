//! The systemd notification protocol (`sd_notify`) over std's `UnixDatagram`:
//! readiness, status, stopping, and watchdog keep-alives. Invariant: without
//! `NOTIFY_SOCKET` every call is a no-op, so regd runs the same outside systemd.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one notification (`READY=1`, `WATCHDOG=1`, `STATUS=…`, `STOPPING=1`).
/// Returns whether a notification socket was there to send to.
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        None => Ok(false),
        Some(path) => notify_to(&path.to_string_lossy(), state).map(|()| true),
    }
}

/// Sends to a socket path; `@name` is a Linux abstract socket.
fn notify_to(path: &str, state: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    if let Some(abstract_name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
        socket.send_to_addr(state.as_bytes(), &address)?;
    } else {
        socket.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

/// How often systemd expects a watchdog keep-alive, if it does (`WATCHDOG_USEC`, for
/// this process when `WATCHDOG_PID` names one).
pub fn watchdog_interval() -> Option<Duration> {
    interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn interval_from(micros: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if pid.is_some_and(|pid| pid.trim() != own_pid.to_string()) {
        return None;
    }
    let micros: u64 = micros?.trim().parse().ok()?;
    (micros > 0).then(|| Duration::from_micros(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_path_and_abstract_sockets() {
        let directory = std::env::temp_dir().join(format!("regd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        notify_to(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buffer = [0u8; 64];
        let length = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"READY=1");
        let _ = std::fs::remove_dir_all(&directory);

        use std::os::linux::net::SocketAddrExt;
        let name = format!("regd-notify-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let receiver = UnixDatagram::bind_addr(&address).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        notify_to(&format!("@{name}"), "WATCHDOG=1").unwrap();
        let length = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"WATCHDOG=1");
    }

    #[test]
    fn watchdog_interval_follows_the_environment() {
        let second = Some(Duration::from_secs(1));
        assert_eq!(interval_from(Some("1000000"), None, 7), second);
        assert_eq!(interval_from(Some("1000000"), Some("7"), 7), second);
        assert_eq!(interval_from(Some("1000000"), Some("8"), 7), None);
        assert_eq!(interval_from(Some("0"), None, 7), None);
        assert_eq!(interval_from(Some("x"), None, 7), None);
        assert_eq!(interval_from(None, Some("7"), 7), None);
    }
}
