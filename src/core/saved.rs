//! The registry's state across a restart: what a save keeps ([`SavedState`]: registers
//! with their remaining lifetime, pending change requests, the revision counter and the
//! deletion log), what a run records about itself ([`LastRun`]), and how a restore turns
//! both back into a registry. No I/O and no clock here either: the caller reads and
//! writes the files and passes in both the monotonic and the wall-clock time.
//!
//! The revision rule across restarts (docs/state-file.md tells users):
//! - after a *clean* stop (the last run saved at its end and changed nothing after), the
//!   revision goes on exactly where it stopped and the deletion log is kept, so an
//!   `index` from before the restart is judged as if there had been no restart: restored
//!   registers wake nobody, and neither does a provider's identical refresh;
//! - after an *unclean* stop (crash, kill, power cut; changes after the last save are
//!   lost), the revision goes on above every revision the last run may have issued — it
//!   recorded a reservation before issuing them — and every older `index` answers at once;
//! - a register whose lifetime ran out while regd was down is not restored: it is removed
//!   as an expiry at once, so its consumers' old indexes answer at once and no one ever
//!   reads it;
//! - the revision never goes back and a number is never reused for different content
//!   (with the one exception of a lost run file *and* state file: then the run starts at an
//!   unpredictable revision, as without a state directory); it stays below 2^53, which
//!   JavaScript clients hold exactly.

use std::time::{Duration, Instant, SystemTime};

use super::{Limits, Name, Register, RegisterView, Registry, Selection, Value, deadline_after};

/// How far above its revision a run reserves revisions before issuing them: after a crash
/// the next run starts above the reservation. A run renews it (to `revision +
/// REVISION_RESERVATION`) once half of it is used, so the guarantee holds as long as a run
/// issues fewer than 2^31 revisions between two renewals (the saver renews every minute;
/// that is 35 million changes a second). 2^53 leaves room for over a million crashes.
pub const REVISION_RESERVATION: u64 = 1 << 32;

/// The highest revision JavaScript clients hold exactly (2^53 − 1).
pub const MAX_REVISION: u64 = (1 << 53) - 1;

/// Everything a restart keeps, as [`Registry::export`] took it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedState {
    /// The wall-clock time of the save: a restore subtracts the time since (the downtime)
    /// from every lifetime.
    pub saved_at: SystemTime,
    /// The revision at the save.
    pub revision: u64,
    /// The lowest `index` the registry could judge at the save.
    pub trusted_from: u64,
    /// Every register, `expires_in` being its lifetime left at the save.
    pub registers: Vec<RegisterView>,
    /// Every pending change request.
    pub requests: Vec<(Name, Value)>,
    /// The deletion log: removals the registry still remembers, oldest first.
    pub deletions: Vec<(u64, Name)>,
}

/// What a run records about itself, so the next start knows how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastRun {
    /// It saved at its stop, at `revision`, and issued nothing after.
    Stopped {
        /// The revision of its final save.
        revision: u64,
    },
    /// It was running (and may have crashed): it issued no revision at or above
    /// `reserved`.
    Running {
        /// The first revision it had not reserved.
        reserved: u64,
    },
}

/// What a restore did, for the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Registers restored.
    pub registers: usize,
    /// Registers whose lifetime ran out while regd was down (not restored).
    pub expired_while_down: usize,
    /// Registers beyond `--max-registers` (not restored).
    pub over_register_limit: usize,
    /// Change requests restored.
    pub requests: usize,
    /// Change requests beyond `--max-pending` (not restored).
    pub over_request_limit: usize,
    /// Time between the save and the restore, by the wall clock (zero when the clock says
    /// the save lies in the future).
    pub downtime: Duration,
    /// The wall clock is behind the save's time (no real-time clock, NTP not synced yet).
    pub clock_behind: bool,
    /// The last run stopped cleanly: indexes from before the restart are judged exactly.
    pub clean: bool,
    /// The revision would have come too close to 2^53 and starts over.
    pub renumbered: bool,
}

impl<W> Registry<W> {
    /// A copy of everything a restart keeps, taken at `now` (expiring what is due first).
    /// Cheap enough to take under the lock: names, values and metadata are shared texts,
    /// so a copy is a reference count each.
    pub fn export(&mut self, now: Instant, wall_now: SystemTime) -> SavedState {
        let reading = self.read(now, &Selection::All);
        SavedState {
            saved_at: wall_now,
            revision: reading.revision,
            trusted_from: self.trusted_from,
            registers: reading.registers,
            requests: self
                .pending
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            deletions: self.deletions.iter().cloned().collect(),
        }
    }

    /// How many operations changed what a save would write, since the start; a save is
    /// due when this differs from its value at the last save.
    pub fn edits(&self) -> u64 {
        self.edits
    }

    /// A registry restored from what the last run saved and recorded (either may be
    /// missing: never written, or unreadable). `fresh_revision` is where a registry with no
    /// history starts (unpredictable in the daemon, see [`Registry::new`]). `now` and
    /// `wall_now` are the monotonic and wall-clock times of the restore.
    pub fn restore(
        limits: Limits,
        saved: Option<SavedState>,
        last_run: Option<LastRun>,
        fresh_revision: u64,
        now: Instant,
        wall_now: SystemTime,
    ) -> (Self, Restored) {
        let Some(saved) = saved else {
            // The state is lost (or there never was one): nothing to judge an index by,
            // so the revision goes on above whatever the last run issued.
            let first = match last_run {
                None => fresh_revision,
                Some(LastRun::Stopped { revision }) => revision.saturating_add(1),
                Some(LastRun::Running { reserved }) => reserved,
            };
            let (first, renumbered) = within_bounds(first, fresh_revision);
            let restored = Restored {
                renumbered,
                ..Restored::default()
            };
            return (Registry::new(limits, first), restored);
        };
        let clean = last_run
            == Some(LastRun::Stopped {
                revision: saved.revision,
            });
        let first = match last_run {
            _ if clean => saved.revision,
            Some(LastRun::Running { reserved }) => reserved.max(saved.revision + 1),
            // A state saved after the last recorded stop: the run that saved it could
            // not record its own run (its run file was unwritable), so it may have issued
            // revisions above its save, with no reservation to say how far. As with no
            // record at all, assume it reserved, and renewed once.
            Some(LastRun::Stopped { revision }) if saved.revision > revision => {
                saved.revision.saturating_add(2 * REVISION_RESERVATION)
            }
            // Stopped after the state's revision: the files do not belong together (a
            // copied backup?); go on above both.
            Some(LastRun::Stopped { revision }) => revision + 1,
            // No record of the last run: assume it reserved, and renewed once.
            None => saved.revision.saturating_add(2 * REVISION_RESERVATION),
        };
        let (first, renumbered) = within_bounds(first.max(1), fresh_revision);
        let mut registry = Registry::new(limits, first);
        if clean && !renumbered {
            registry.restore_deletions(&saved);
        }

        let downtime = wall_now
            .duration_since(saved.saved_at)
            .unwrap_or(Duration::ZERO);
        let mut restored = Restored {
            downtime,
            clock_behind: saved.saved_at > wall_now,
            clean: clean && !renumbered,
            renumbered,
            ..Restored::default()
        };
        let mut removed: Vec<Name> = Vec::new();
        for view in saved.registers {
            // Never longer than its own ttl, whatever the file says.
            let left = view.expires_in.min(view.ttl).saturating_sub(downtime);
            if left.is_zero() {
                restored.expired_while_down += 1;
                removed.push(view.name);
                continue;
            }
            if registry.registers.len() >= limits.max_registers {
                restored.over_register_limit += 1;
                removed.push(view.name);
                continue;
            }
            let revision = if renumbered || view.revision > saved.revision {
                first
            } else {
                view.revision
            };
            let deadline = deadline_after(now, left);
            if let Some(old) = registry.registers.insert(
                view.name.clone(),
                Register {
                    value: view.value,
                    metadata: view.metadata,
                    ttl: view.ttl,
                    deadline,
                    revision,
                },
            ) {
                // A name twice in the file: the later entry wins.
                registry
                    .deadlines
                    .remove(&(old.deadline, view.name.clone()));
            }
            registry.deadlines.insert((deadline, view.name));
        }
        restored.registers = registry.registers.len();
        // Expired while down (or beyond the limit): removed now, as an expiry, so old
        // indexes of their consumers answer at once.
        for name in removed {
            if !registry.registers.contains_key(&name) {
                registry.record_removal(name);
            }
        }
        registry.expirations = restored.expired_while_down as u64;
        for (name, value) in saved.requests {
            if registry.pending.len() >= limits.max_pending_requests
                && !registry.pending.contains_key(&name)
            {
                restored.over_request_limit += 1;
                continue;
            }
            registry.pending.insert(name, value);
        }
        restored.requests = registry.pending.len();
        (registry, restored)
    }

    /// The deletion log and the trusted range of a clean save, sanitised (a file may lie).
    fn restore_deletions(&mut self, saved: &SavedState) {
        let trusted_from = saved.trusted_from.clamp(1, saved.revision);
        let mut deletions: Vec<(u64, Name)> = saved
            .deletions
            .iter()
            .filter(|(revision, _)| (trusted_from..=saved.revision).contains(revision))
            .cloned()
            .collect();
        deletions.sort_by_key(|(revision, _)| *revision);
        self.trusted_from = trusted_from;
        self.deletions = deletions.into();
        while self.deletions.len() > self.limits.deletion_memory {
            if let Some((revision, _)) = self.deletions.pop_front() {
                self.trusted_from = self.trusted_from.max(revision);
            }
        }
    }

    /// Moves the revision forward by `count` and forgets the history below it (every
    /// older index answers at once). For a run that could not record its reservation: its
    /// revisions then lie above what a later run, trusting an older record, would issue.
    pub fn skip_revisions(&mut self, count: u64) {
        self.revision = self.revision.saturating_add(count).min(MAX_REVISION);
        self.trusted_from = self.revision;
        self.deletions.clear();
    }

    /// The reservation to record now: no revision at or above it is issued before the
    /// next record.
    pub fn reservation(&self) -> u64 {
        self.revision.saturating_add(REVISION_RESERVATION)
    }

    /// Whether the recorded reservation must be renewed (half of it is used).
    pub fn needs_reservation(&self, reserved: u64) -> bool {
        self.revision.saturating_add(REVISION_RESERVATION / 2) > reserved
    }
}

/// `first`, unless it comes too close to 2^53 to leave room for reservations: then the
/// numbering starts over at `fresh`, and every index a client holds is above it (so it
/// answers at once).
fn within_bounds(first: u64, fresh: u64) -> (u64, bool) {
    if first > MAX_REVISION - 4 * REVISION_RESERVATION {
        (fresh.max(1), true)
    } else {
        (first, false)
    }
}

#[cfg(test)]
mod tests;
