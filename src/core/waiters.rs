//! The index of waiting polls: which poll waits on which names, so a change to one
//! register finds exactly the polls that asked for it (or for everything) without
//! looking at any other. Invariant: a waiter is in `by_name` under each of its names,
//! or in `everything`, exactly as long as it is in `entries`.

use std::collections::{HashMap, HashSet};

use super::{Name, Selection};

/// Identifies a registered waiter, to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WaiterId(pub(super) u64);

struct Entry<W> {
    names: Option<Vec<Name>>,
    waker: W,
}

pub(super) struct Waiters<W> {
    entries: HashMap<WaiterId, Entry<W>>,
    by_name: HashMap<Name, HashSet<WaiterId>>,
    everything: HashSet<WaiterId>,
}

impl<W> Default for Waiters<W> {
    fn default() -> Self {
        Waiters {
            entries: HashMap::new(),
            by_name: HashMap::new(),
            everything: HashSet::new(),
        }
    }
}

impl<W> Waiters<W> {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn add(&mut self, id: WaiterId, selection: &Selection, waker: W) {
        let names = match selection {
            Selection::All => {
                self.everything.insert(id);
                None
            }
            Selection::Names(names) => {
                for name in names {
                    self.by_name.entry(name.clone()).or_default().insert(id);
                }
                Some(names.clone())
            }
        };
        self.entries.insert(id, Entry { names, waker });
    }

    pub(super) fn remove(&mut self, id: WaiterId) -> Option<W> {
        let entry = self.entries.remove(&id)?;
        match &entry.names {
            None => {
                self.everything.remove(&id);
            }
            Some(names) => {
                for name in names {
                    if let Some(ids) = self.by_name.get_mut(&**name) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            self.by_name.remove(&**name);
                        }
                    }
                }
            }
        }
        Some(entry.waker)
    }

    /// Moves the waiters of `name`, and those waiting on everything, into `out`.
    pub(super) fn take_for(&mut self, name: &str, out: &mut Vec<W>) {
        if let Some(ids) = self.by_name.remove(name) {
            for id in ids {
                out.extend(self.remove(id));
            }
        }
        for id in std::mem::take(&mut self.everything) {
            out.extend(self.remove(id));
        }
    }

    pub(super) fn take_all(&mut self, out: &mut Vec<W>) {
        self.by_name.clear();
        self.everything.clear();
        out.extend(self.entries.drain().map(|(_, entry)| entry.waker));
    }
}
