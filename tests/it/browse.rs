//! `regctl browse` end to end: the real binary in a tmux pane (100×30) against the real
//! regd and a real `regctl provide`, driven by `send-keys` and read by `capture-pane`.
//! Skipped with a message when tmux is missing, unless `REGD_REQUIRE_TMUX` is set.

use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in a detached 100×30 session, or `None` (with a message) when
    /// tmux is not installed and not required.
    fn start(command: &str) -> Option<Tmux> {
        if !tool_or_skip("tmux", &["-V"], "REGD_REQUIRE_TMUX", "apt-get install tmux") {
            return None;
        }
        static SESSIONS: AtomicUsize = AtomicUsize::new(0);
        let tmux = Tmux {
            socket: format!(
                "regd-browse-{}-{}",
                std::process::id(),
                SESSIONS.fetch_add(1, Ordering::SeqCst)
            ),
        };
        let output = tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "30",
            "-s",
            "browse",
            command,
        ]);
        assert!(output.status.success(), "tmux new-session: {output:?}");
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> Output {
        program("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    /// Presses keys by tmux name (`Enter`, `C-u`, `q`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "browse"];
        args.extend(keys);
        assert!(self.run(&args).status.success());
    }

    /// Types text literally.
    fn type_text(&self, text: &str) {
        assert!(
            self.run(&["send-keys", "-t", "browse", "-l", text])
                .status
                .success()
        );
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "browse"]).stdout)
            .to_string()
    }

    /// Waits until the screen satisfies `condition`; returns it.
    #[track_caller]
    fn wait(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if condition(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            thread::sleep(Duration::from_millis(20)); // sleep-ok: polling a deadline
        }
    }

    #[track_caller]
    fn wait_for(&self, text: &str) -> String {
        self.wait(&format!("{text:?}"), |screen| screen.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- the pane ---\n{}", self.screen());
        }
        let _ = self.run(&["kill-server"]);
    }
}

/// A child process killed and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The line of the list that starts with `name`.
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen.lines().find(|line| line.starts_with(name))
}

#[test]
fn browse_filters_edits_and_quits_in_a_real_terminal() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/provider",
            r#"{"registers":{"hall.temp":{"value":21.5,"ttl":"60s"}}}"#,
        )
        .assert(204, "");
    // A provider that applies change requests; its stdin stays open while it runs.
    let provider = Killed(
        program(env!("CARGO_BIN_EXE_regctl"))
            .args(["--registry", &daemon.url()])
            .args(["provide", "lamp", "false", "--ttl", "5s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start regctl provide"),
    );
    let command = format!(
        "REGISTRY={} {} browse; echo BROWSE-EXITED-$?; exec cat",
        daemon.url(),
        env!("CARGO_BIN_EXE_regctl")
    );
    let Some(tmux) = Tmux::start(&command) else {
        return;
    };

    // Both registers appear, with a countdown for the lamp.
    let screen = tmux.wait("the lamp row", |screen| {
        row(screen, "lamp").is_some_and(|line| line.contains("false") && line.ends_with('s'))
            && screen.contains("connected  flat  2 of 2")
    });
    assert!(row(&screen, "hall.temp").is_some_and(|line| line.contains("21.5")));

    // Filter down to the lamp.
    tmux.keys(&["/"]);
    tmux.type_text("lam");
    tmux.keys(&["Enter"]);
    // The counter changes while the filter is typed; the filter line once Enter is read.
    let screen = tmux.wait("the filter applied", |screen| {
        screen.contains("1 of 2") && screen.contains("filter: lam")
    });
    assert!(row(&screen, "hall.temp").is_none(), "{screen}");
    assert!(screen.contains("filter: lam"), "{screen}");

    // Edit: invalid JSON is explained and not sent; then a valid value is sent.
    tmux.keys(&["Enter"]);
    tmux.wait_for("edit lamp: false");
    tmux.keys(&["C-u"]);
    tmux.type_text("tru");
    tmux.keys(&["Enter"]);
    tmux.wait_for("not sent: invalid JSON");
    tmux.type_text("e");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait("the applied value", |screen| {
        screen.contains("applied: lamp = true")
            && row(screen, "lamp").is_some_and(|line| line.contains("true"))
    });
    assert!(screen.contains("revision "), "{screen}");
    assert_eq!(
        daemon.get("/consumer?name=lamp").json()["registers"]["lamp"]["value"],
        true
    );

    // q quits with status 0 and leaves the alternate screen.
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("BROWSE-EXITED-0");
    assert!(!screen.contains("regd browse"), "{screen}");
    drop(provider);
}

#[test]
fn browse_needs_a_terminal() {
    let output = program(env!("CARGO_BIN_EXE_regctl"))
        .args(["--registry", "http://127.0.0.1:9", "browse"])
        .stdin(Stdio::null())
        .output()
        .expect("run regctl");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("browse needs a terminal"), "{stderr}");
}

#[test]
fn browse_reconnects_when_regd_restarts_and_quits_on_sigterm() {
    let daemon = Daemon::start(&[]);
    let address = daemon.address.to_string();
    daemon
        .put("/provider", r#"{"registers":{"before":{"value":1}}}"#)
        .assert(204, "");
    let command = format!(
        "REGISTRY={} {} browse; echo BROWSE-EXITED-$?; exec cat",
        daemon.url(),
        env!("CARGO_BIN_EXE_regctl")
    );
    let Some(tmux) = Tmux::start(&command) else {
        return;
    };
    tmux.wait("the register", |screen| {
        row(screen, "before").is_some() && screen.contains("connected")
    });
    drop(daemon);
    tmux.wait_for("DISCONNECTED, retrying");
    let daemon = Daemon::start(&["--addr", &address]);
    daemon
        .put("/provider", r#"{"registers":{"after":{"value":2}}}"#)
        .assert(204, "");
    // The old register is marked (regd forgot it), the new one appears.
    let screen = tmux.wait("the new register", |screen| {
        row(screen, "after").is_some() && screen.contains("browse  connected")
    });
    assert!(
        row(&screen, "before").is_none_or(|line| line.ends_with("DELETED")),
        "{screen}"
    );

    // SIGTERM ends it like q: the terminal is restored and the status is 0.
    let shell = tmux.run(&["display-message", "-p", "-t", "browse", "#{pane_pid}"]);
    let shell = String::from_utf8_lossy(&shell.stdout).trim().to_string();
    let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
        .expect("the pane's children");
    let browse = children
        .split_whitespace()
        .next()
        .expect("regctl browse runs");
    send_signal(browse.parse().expect("a pid"), "TERM");
    let screen = tmux.wait_for("BROWSE-EXITED-0");
    assert!(!screen.contains("regd browse"), "{screen}");
}
