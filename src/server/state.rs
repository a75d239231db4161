//! Persistence: the state directory (`--state-dir`), restoring from it at start, the
//! `regd-state` thread that saves every `--save-interval` when something changed, and the
//! final save at a clean stop (docs/state-file.md). Invariants: the registry lock is held
//! only to copy the state (reference counts), never while encoding or writing; a file is
//! replaced only by a complete, synced one (temporary file, fsync, rename, fsync of the
//! directory), so a half-written file is never read back; a damaged file never stops regd
//! from starting (it is moved aside and regd starts empty); a failing save never stops it
//! from serving (it is logged, counted and retried).
//!
//! Two files: `state.json` (the [`crate::core::SavedState`]) and `run.json` (the [`LastRun`]: "running,
//! no revision at or above R issued" while a run is on, "stopped at revision R" after a
//! clean stop). The run file is written before the address is announced, so the next start
//! can tell a clean stop from a crash even when the crashed run restored a clean save.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::core::{LastRun, REVISION_RESERVATION, Registry};
use crate::protocol::state_file::{self, StateFileError};

use super::service::{Service, ServiceConfig};

/// Where and how often the state is saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateConfig {
    /// The state directory, created if missing; `None` keeps everything in memory only.
    pub directory: Option<PathBuf>,
    /// How often the state is saved when something changed.
    pub save_interval: Duration,
}

impl Default for StateConfig {
    /// In memory only; with a directory, saved every 5 minutes: a crash loses at most
    /// that much, and an SD card sees 12 writes an hour however often providers refresh
    /// (docs/state-file.md).
    fn default() -> Self {
        StateConfig {
            directory: None,
            save_interval: Duration::from_secs(300),
        }
    }
}

/// The saved state.
pub const STATE_FILE: &str = "state.json";
/// How the last run ended.
pub const RUN_FILE: &str = "run.json";
/// Damaged files kept for a post-mortem, per file (`state.json.bad.1` is the newest).
const KEPT_ASIDE: usize = 3;
/// The run file's reservation is checked at least this often, whatever the interval.
const RESERVATION_CHECK: Duration = Duration::from_secs(60);
/// After the first warning, a failing save is logged again at most this often.
const WARNING_PERIOD: Duration = Duration::from_secs(3600);

/// The saver: what it last wrote, and its complaints. Owned by the `regd-state` thread
/// while the server runs, and handed back for the final save.
pub(super) struct Saver {
    directory: PathBuf,
    save_interval: Duration,
    /// The reservation the run file records; `None` when it could not be written.
    reserved: Option<u64>,
    /// [`Registry::edits`] at the last save.
    saved_edits: u64,
    complaints: Complaints,
}

impl Saver {
    /// Restores the service's registry from the state directory (creating it if
    /// missing) and records that a run is on. Never fails: problems are logged, and
    /// regd starts with what it could read.
    pub(super) fn open(
        directory: &Path,
        config: &StateConfig,
        service: &Service,
        settings: &ServiceConfig,
    ) -> Saver {
        let directory = directory.to_path_buf();
        service.metrics().state_enabled();
        if let Err(error) = create_directory(&directory) {
            log::warn!(
                "cannot create the state directory {}: {error}; regd keeps registers in memory only until it can write there",
                directory.display()
            );
        }
        for name in [STATE_FILE, RUN_FILE] {
            // A temporary file is a write that did not finish: never read, just removed.
            let _ = fs::remove_file(temporary(&directory, name));
        }
        let reading = Instant::now();
        let last_run = read_file(&directory, RUN_FILE, state_file::decode_run);
        let saved = read_file(&directory, STATE_FILE, state_file::decode_state);
        let read_in = reading.elapsed();
        let had_state = saved.is_some();
        let wall_now = service.wall_now();
        // Nobody waits yet: the registry is replaced before the address is announced.
        let restoring = Instant::now();
        let (restored, reservation) = service.with_state(|state, now| {
            let (registry, restored) = Registry::restore(
                settings.limits,
                saved,
                last_run,
                settings.first_revision,
                now,
                wall_now,
            );
            *state = registry;
            (restored, state.reservation())
        });
        if had_state {
            log::info!(
                "restored {} registers and {} change requests from {} (read in {read_in:.1?}, restored in {:.1?}); {}",
                restored.registers,
                restored.requests,
                directory.join(STATE_FILE).display(),
                restoring.elapsed(),
                if restored.clean {
                    "the last run stopped cleanly: indexes from before stay valid"
                } else {
                    "the last run did not stop cleanly: changes after its last save are lost, and older indexes answer at once"
                }
            );
            if restored.clock_behind {
                log::warn!(
                    "the wall clock is behind the time of the last save (no real-time clock, or NTP has not synced yet); regd counts the downtime as zero"
                );
            } else {
                log::info!("regd was down for {:?}", restored.downtime);
            }
            if restored.expired_while_down > 0 {
                log::info!(
                    "{} registers expired while regd was down",
                    restored.expired_while_down
                );
            }
            if restored.over_register_limit + restored.over_request_limit > 0 {
                log::warn!(
                    "{} registers and {} change requests beyond --max-registers and --max-pending were not restored",
                    restored.over_register_limit,
                    restored.over_request_limit
                );
            }
        }
        if restored.renumbered {
            log::warn!("revisions came near 2^53 and start over; clients' indexes answer at once");
        }
        let reserved = match write_file(
            &directory,
            RUN_FILE,
            state_file::encode_run(&LastRun::Running {
                reserved: reservation,
            })
            .as_bytes(),
        ) {
            Ok(()) => Some(reservation),
            Err(error) => {
                // Unrecorded, this run's revisions must lie above anything a later run
                // could issue from the files as they are, and apart from those of the
                // next unrecorded run from the same files (a read-only directory,
                // restart after restart): by a reservation and an unpredictable part of
                // another, as a fresh start is.
                let skip = REVISION_RESERVATION + settings.first_revision % REVISION_RESERVATION;
                service.with_state(|state, _| state.skip_revisions(skip));
                log::warn!(
                    "cannot write {}: {error}; saves will be retried, older indexes answer at once",
                    directory.join(RUN_FILE).display()
                );
                None
            }
        };
        let saved_edits = service.with_state(|state, _| state.edits());
        Saver {
            directory,
            save_interval: config.save_interval,
            reserved,
            saved_edits,
            complaints: Complaints::default(),
        }
    }

    /// The `regd-state` thread: saves every interval when something changed, renews the
    /// reservation, and returns itself when `stop` is dropped (or sends).
    pub(super) fn run(mut self, service: &Service, stop: &mpsc::Receiver<()>) -> Saver {
        let mut next_save = Instant::now() + self.save_interval;
        loop {
            let now = Instant::now();
            let wait = next_save
                .saturating_duration_since(now)
                .min(RESERVATION_CHECK);
            match stop.recv_timeout(wait) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return self,
            }
            if Instant::now() >= next_save {
                // A failed save is retried at the next interval, not at once.
                next_save = Instant::now() + self.save_interval;
                self.save_if_changed(service);
            }
            self.renew_reservation(service);
        }
    }

    /// The final save, after every connection thread has ended. `clean` when they all
    /// ended (nothing can change the registry any more): then the run file says so.
    pub(super) fn finish(mut self, service: &Service, clean: bool) {
        let Some(revision) = self.save(service) else {
            log::warn!(
                "the final state save failed; the next start restores the last save that succeeded"
            );
            return;
        };
        if !clean {
            log::warn!(
                "connections were still busy at exit; the next start treats this stop as unclean (older indexes answer at once)"
            );
            return;
        }
        let stopped = state_file::encode_run(&LastRun::Stopped { revision });
        match write_file(&self.directory, RUN_FILE, stopped.as_bytes()) {
            Ok(()) => log::info!("state saved to {}", self.directory.display()),
            Err(error) => log::warn!(
                "cannot record the clean stop in {}: {error}; the next start treats it as unclean",
                self.directory.join(RUN_FILE).display()
            ),
        }
    }

    /// Saves when anything changed since the last save (a deadline-only refresh too).
    /// Returns whether it tried.
    fn save_if_changed(&mut self, service: &Service) -> bool {
        let edits = service.with_state(|state, _| state.edits());
        if edits == self.saved_edits {
            return false;
        }
        self.save(service);
        true
    }

    /// Copies the state under the lock, writes it outside. Returns the saved revision.
    fn save(&mut self, service: &Service) -> Option<u64> {
        let started = Instant::now();
        let wall = service.wall_now();
        let (saved, edits, lock_held) = service.with_state(|state, now| {
            let copying = Instant::now();
            let saved = state.export(now, wall);
            (saved, state.edits(), copying.elapsed())
        });
        let revision = saved.revision;
        let encoding = Instant::now();
        let text = state_file::encode_state(&saved);
        drop(saved);
        let encoded_in = encoding.elapsed();
        match write_state(&self.directory, text.as_bytes()) {
            Ok(()) => {
                let took = started.elapsed();
                service.metrics().state_saved(wall, took, lock_held);
                self.saved_edits = edits;
                self.complaints.recovered("saving state");
                log::debug!(
                    "state saved: {} bytes in {took:?} (the lock held {lock_held:?}, encoding {encoded_in:?}, the rest writing and syncing)",
                    text.len()
                );
                Some(revision)
            }
            Err(error) => {
                service.metrics().state_save_failed();
                let what = format!(
                    "cannot save the state to {} ({error}); regd keeps serving from memory and retries every {}",
                    self.directory.join(STATE_FILE).display(),
                    humantime::format_duration(self.save_interval)
                );
                self.complaints.failed(&what);
                None
            }
        }
    }

    /// Records a new reservation once half of the recorded one is used (or none is).
    fn renew_reservation(&mut self, service: &Service) {
        let reserved = self.reserved;
        let renewal = service.with_state(|state, _| {
            reserved
                .is_none_or(|reserved| state.needs_reservation(reserved))
                .then(|| state.reservation())
        });
        let Some(reservation) = renewal else {
            return;
        };
        let running = state_file::encode_run(&LastRun::Running {
            reserved: reservation,
        });
        match write_file(&self.directory, RUN_FILE, running.as_bytes()) {
            Ok(()) => self.reserved = Some(reservation),
            Err(error) => self.complaints.failed(&format!(
                "cannot write {} ({error}); retrying",
                self.directory.join(RUN_FILE).display()
            )),
        }
    }
}

/// A rate-limited warning: the first failure, then at most one per [`WARNING_PERIOD`].
#[derive(Default)]
struct Complaints {
    failures: u64,
    last_warned: Option<Instant>,
}

impl Complaints {
    fn failed(&mut self, what: &str) {
        self.failures += 1;
        if self
            .last_warned
            .is_none_or(|at| at.elapsed() >= WARNING_PERIOD)
        {
            if self.failures == 1 {
                log::warn!("{what}");
            } else {
                log::warn!("{what} ({} failures so far)", self.failures);
            }
            self.last_warned = Some(Instant::now());
        }
    }

    fn recovered(&mut self, what: &str) {
        if self.failures > 0 {
            log::info!("{what} works again after {} failures", self.failures);
        }
        *self = Complaints::default();
    }
}

/// Creates the state directory (and its parents) if missing, readable by regd's user
/// only: register values may be private.
fn create_directory(directory: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory)
}

fn temporary(directory: &Path, name: &str) -> PathBuf {
    directory.join(format!("{name}.tmp"))
}

/// Reads and decodes a file of the state directory. A missing file is `None`; a damaged
/// or unreadable one is logged, moved aside, and `None`.
fn read_file<T>(
    directory: &Path,
    name: &str,
    decode: fn(&str) -> Result<T, StateFileError>,
) -> Option<T> {
    let path = directory.join(name);
    let problem = match fs::read(&path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
        Err(error) => format!("cannot be read ({error})"),
        Ok(bytes) => match String::from_utf8(bytes) {
            Err(_) => StateFileError::NotJson("it is not UTF-8 text".into()).to_string(),
            Ok(text) => match decode(&text) {
                Ok(decoded) => return Some(decoded),
                Err(error) => error.to_string(),
            },
        },
    };
    match move_aside(directory, name) {
        Ok(aside) => log::warn!(
            "{} is not usable: {problem}; moved it to {} and starting without it",
            path.display(),
            aside.display()
        ),
        Err(error) => log::warn!(
            "{} is not usable: {problem}; starting without it (it could not be moved aside: {error})",
            path.display()
        ),
    }
    None
}

/// Renames `name` to `name.bad.1`, shifting older ones up to `name.bad.3` (the oldest
/// goes), so damaged files are kept for a post-mortem but never pile up.
fn move_aside(directory: &Path, name: &str) -> io::Result<PathBuf> {
    let aside = |number: usize| directory.join(format!("{name}.bad.{number}"));
    let _ = fs::remove_file(aside(KEPT_ASIDE));
    for number in (1..KEPT_ASIDE).rev() {
        let _ = fs::rename(aside(number), aside(number + 1));
    }
    fs::rename(directory.join(name), aside(1))?;
    Ok(aside(1))
}

/// Writes the state file, through the test hook that can stall it half-way.
fn write_state(directory: &Path, bytes: &[u8]) -> io::Result<()> {
    #[cfg(debug_assertions)]
    test_hooks::maybe_stall(directory, bytes);
    write_file(directory, STATE_FILE, bytes)
}

/// Replaces `directory/name` with `bytes`, crash-safe: a temporary file is written and
/// synced, renamed over the old one, and the directory is synced so the rename lasts.
/// At any moment the file is the old one or the new one, whole.
fn write_file(directory: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    // The directory may have been removed while regd runs; saving recreates it.
    create_directory(directory)?;
    let temporary = temporary(directory, name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, directory.join(name))?;
        File::open(directory)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// The test hook `REGD_TEST_SAVE_STALL=N`, compiled only into debug builds (which is
/// what `cargo test` runs; docs/state-file.md): the Nth state save of the process writes
/// half of the temporary file, logs `test hook: save stalled`, and stops there for good,
/// so a test can `kill -9` regd in the middle of a save. (The wall clock's hook,
/// `REGD_TEST_CLOCK_OFFSET`, is the system clock's, in `super::registry`.)
#[cfg(debug_assertions)]
mod test_hooks {
    use std::io::Write;
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};

    pub(super) fn maybe_stall(directory: &Path, bytes: &[u8]) {
        static SAVES: AtomicU64 = AtomicU64::new(0);
        let save = SAVES.fetch_add(1, Ordering::Relaxed) + 1;
        let stall_at: Option<u64> = std::env::var("REGD_TEST_SAVE_STALL")
            .ok()
            .and_then(|text| text.parse().ok());
        if stall_at != Some(save) {
            return;
        }
        let path = super::temporary(directory, super::STATE_FILE);
        if let Ok(mut file) = std::fs::File::create(&path) {
            let _ = file.write_all(&bytes[..bytes.len() / 2]);
            let _ = file.sync_all();
        }
        log::warn!(
            "test hook: save stalled half-way through {} (REGD_TEST_SAVE_STALL={save})",
            path.display()
        );
        loop {
            std::thread::park();
        }
    }
}

#[cfg(test)]
mod tests;
