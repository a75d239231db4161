//! A small logger behind the `log` facade, writing one line per record to stderr.
//! Under systemd (`JOURNAL_STREAM` set) lines carry `<N>` syslog priorities and no
//! timestamps, since the journal adds its own. Invariant: logging never fails loudly:
//! a closed stderr loses lines, never the daemon.

use std::io::Write;
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    journal: bool,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = if self.journal {
            let priority = match record.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            format!("<{priority}>{}\n", record.args())
        } else {
            format!(
                "{} {:5} {}\n",
                humantime::format_rfc3339_millis(SystemTime::now()),
                record.level(),
                record.args()
            )
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger at `level`. Journal style is chosen when `JOURNAL_STREAM` is set.
pub fn init(level: LevelFilter) {
    if log::set_boxed_logger(Box::new(Logger {
        journal: under_journal(),
    }))
    .is_ok()
    {
        log::set_max_level(level);
    }
}

/// Writes the one line that says why the program stops (`regd: …`). Under systemd it
/// carries priority err (`<3>`), so `journalctl -p err` shows it; it goes out whether
/// or not the logger was installed, since a usage error is found before.
pub fn fatal(line: &str) {
    let prefix = if under_journal() { "<3>" } else { "" };
    let _ = writeln!(std::io::stderr().lock(), "{prefix}{line}");
}

/// systemd connects stderr to the journal and says so in `JOURNAL_STREAM`.
fn under_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}
