//! Model-based test of the core: random sequences of publish, delete, request, take,
//! restore, polls, cancels, reads, clock advances and restarts (clean, or after a crash)
//! run against both the registry and
//! a deliberately simple reference model; every observable result must agree (values,
//! metadata, expiry, delivery exactly once, who is woken, `index` answers).

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use proptest::prelude::*;

use super::*;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const VALUES: [&str; 3] = ["1", "2", "\"x\""];
const STEP: Duration = Duration::from_millis(500);

#[derive(Clone, Debug)]
enum Op {
    Publish {
        name: usize,
        value: usize,
        metadata: bool,
        ttl_steps: u32,
    },
    Delete(Vec<usize>),
    Request {
        name: usize,
        value: usize,
    },
    Take(Vec<usize>),
    TakeAndRestore(Vec<usize>),
    WaitChange(Vec<usize>),
    WaitRequest(Vec<usize>),
    Cancel(usize),
    Read(Vec<usize>),
    ChangedSince {
        names: Vec<usize>,
        back: u64,
    },
    Advance(u32),
    Expire,
    /// Save, stop and restore: cleanly, or after a crash that lost nothing since the save.
    Restart {
        clean: bool,
    },
}

fn names() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..NAMES.len(), 0..3)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..NAMES.len(), 0..VALUES.len(), any::<bool>(), 1..6u32).prop_map(
            |(name, value, metadata, ttl_steps)| Op::Publish { name, value, metadata, ttl_steps }
        ),
        1 => names().prop_map(Op::Delete),
        2 => (0..NAMES.len(), 0..VALUES.len()).prop_map(|(name, value)| Op::Request { name, value }),
        1 => names().prop_map(Op::Take),
        1 => names().prop_map(Op::TakeAndRestore),
        2 => names().prop_map(Op::WaitChange),
        2 => names().prop_map(Op::WaitRequest),
        1 => (0..8usize).prop_map(Op::Cancel),
        2 => names().prop_map(Op::Read),
        2 => (names(), 0..6u64).prop_map(|(names, back)| Op::ChangedSince { names, back }),
        3 => (0..5u32).prop_map(Op::Advance),
        1 => Just(Op::Expire),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
    ]
}

#[derive(Clone, Debug, PartialEq)]
struct ModelRegister {
    value: String,
    metadata: Option<String>,
    deadline: Instant,
    revision: u64,
}

struct ModelWaiter {
    id: WaiterId,
    token: u32,
    names: Option<BTreeSet<String>>,
    consumer: bool,
}

#[derive(Default)]
struct Model {
    registers: BTreeMap<String, ModelRegister>,
    pending: BTreeMap<String, String>,
    revision: u64,
    /// Indexes below it answer at once (before the first revision, or a crash).
    trusted_from: u64,
    /// Every removal with its revision; nothing is forgotten in the model.
    removals: Vec<(u64, String)>,
    waiters: Vec<ModelWaiter>,
    woken: BTreeSet<u32>,
}

impl Model {
    fn wakes(&mut self, name: &str, consumer: bool) {
        let woken: Vec<u32> = self
            .waiters
            .iter()
            .filter(|waiter| {
                waiter.consumer == consumer
                    && waiter
                        .names
                        .as_ref()
                        .is_none_or(|names| names.contains(name))
            })
            .map(|waiter| waiter.token)
            .collect();
        self.waiters.retain(|waiter| !woken.contains(&waiter.token));
        self.woken.extend(woken);
    }

    fn expire(&mut self, now: Instant) {
        let due: Vec<(Instant, String)> = self
            .registers
            .iter()
            .filter(|(_, register)| register.deadline <= now)
            .map(|(name, register)| (register.deadline, name.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for (_, name) in due {
            self.remove(&name);
        }
    }

    fn remove(&mut self, name: &str) {
        if self.registers.remove(name).is_some() {
            self.revision += 1;
            self.removals.push((self.revision, name.to_string()));
            self.wakes(name, true);
        }
    }
}

fn selection(indexes: &[usize]) -> (Selection, Option<BTreeSet<String>>) {
    let chosen: Vec<&str> = indexes.iter().map(|index| NAMES[*index]).collect();
    let selection = Selection::from_names(&chosen);
    let set = match &selection {
        Selection::All => None,
        Selection::Names(names) => Some(names.iter().map(|name| name.to_string()).collect()),
    };
    (selection, set)
}

fn selected(set: &Option<BTreeSet<String>>, name: &str) -> bool {
    set.as_ref().is_none_or(|names| names.contains(name))
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let start = Instant::now();
    let mut now = start;
    let first_revision = 100;
    let mut registry: Registry<u32> = Registry::new(Limits::default(), first_revision);
    let mut model = Model {
        revision: first_revision,
        trusted_from: first_revision,
        ..Model::default()
    };
    let mut next_token = 0u32;

    for op in ops {
        match op {
            Op::Publish {
                name,
                value,
                metadata,
                ttl_steps,
            } => {
                let name = NAMES[name];
                let metadata = metadata.then(|| "{\"m\":1}".to_string());
                let ttl = STEP * ttl_steps;
                registry
                    .publish(
                        now,
                        vec![(
                            Name::from(name),
                            Publish {
                                value: Value::new(VALUES[value]),
                                metadata: metadata.clone().map(Value::new),
                                ttl,
                            },
                        )],
                    )
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
                model.expire(now);
                let deadline = now + ttl;
                match model.registers.get_mut(name) {
                    Some(register)
                        if register.value == VALUES[value] && register.metadata == metadata =>
                    {
                        register.deadline = deadline;
                    }
                    _ => {
                        model.revision += 1;
                        model.registers.insert(
                            name.to_string(),
                            ModelRegister {
                                value: VALUES[value].to_string(),
                                metadata,
                                deadline,
                                revision: model.revision,
                            },
                        );
                        model.wakes(name, true);
                    }
                }
            }
            Op::Delete(indexes) => {
                let names: Vec<Name> = indexes.iter().map(|i| Name::from(NAMES[*i])).collect();
                let removed = registry.delete(now, &names);
                model.expire(now);
                let mut expected = 0;
                let mut seen = BTreeSet::new();
                for name in &names {
                    if seen.insert(name.to_string()) && model.registers.contains_key(&**name) {
                        expected += 1;
                    }
                    model.remove(name);
                }
                prop_assert_eq!(removed, expected);
            }
            Op::Request { name, value } => {
                let name = NAMES[name];
                registry
                    .request(vec![(Name::from(name), Value::new(VALUES[value]))])
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
                // The latest request replaces a pending one.
                model
                    .pending
                    .insert(name.to_string(), VALUES[value].to_string());
                model.wakes(name, false);
            }
            Op::Take(indexes) => {
                let (selection, set) = selection(&indexes);
                let taken = registry.take_requests(&selection);
                let expected: BTreeMap<String, String> = model
                    .pending
                    .iter()
                    .filter(|(name, _)| selected(&set, name))
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect();
                model.pending.retain(|name, _| !selected(&set, name));
                let got: BTreeMap<String, String> = taken
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.as_str().to_string()))
                    .collect();
                prop_assert_eq!(got.len(), taken.len(), "no name twice");
                // Taken exactly as pending, and removed: a second take cannot see them.
                prop_assert_eq!(&got, &expected);
            }
            Op::TakeAndRestore(indexes) => {
                let (selection, _) = selection(&indexes);
                let taken = registry.take_requests(&selection);
                registry.restore_requests(taken.clone());
                // Restoring into an untouched registry gives the same pending set; the
                // providers of those names are woken.
                for (name, _) in &taken {
                    model.wakes(name, false);
                }
            }
            Op::WaitChange(indexes) => {
                let (selection, names) = selection(&indexes);
                next_token += 1;
                let id = registry.wait_for_change(&selection, next_token);
                model.waiters.push(ModelWaiter {
                    id,
                    token: next_token,
                    names,
                    consumer: true,
                });
            }
            Op::WaitRequest(indexes) => {
                let (selection, names) = selection(&indexes);
                next_token += 1;
                let id = registry.wait_for_request(&selection, next_token);
                model.waiters.push(ModelWaiter {
                    id,
                    token: next_token,
                    names,
                    consumer: false,
                });
            }
            Op::Cancel(position) => {
                if !model.waiters.is_empty() {
                    let waiter = model.waiters.remove(position % model.waiters.len());
                    prop_assert!(registry.cancel_wait(waiter.id), "a waiting poll cancels");
                    prop_assert!(!registry.cancel_wait(waiter.id), "only once");
                }
            }
            Op::Read(indexes) => {
                let (selection, set) = selection(&indexes);
                let snapshot = registry.read(now, &selection);
                model.expire(now);
                let got: Vec<(String, String, Option<String>, u64, Duration)> = snapshot
                    .registers
                    .iter()
                    .map(|view| {
                        (
                            view.name.to_string(),
                            view.value.as_str().to_string(),
                            view.metadata.as_ref().map(|m| m.as_str().to_string()),
                            view.revision,
                            view.expires_in,
                        )
                    })
                    .collect();
                let order: Vec<String> = match &selection {
                    Selection::All => model.registers.keys().cloned().collect(),
                    Selection::Names(names) => names.iter().map(|n| n.to_string()).collect(),
                };
                let expected: Vec<(String, String, Option<String>, u64, Duration)> = order
                    .into_iter()
                    .filter(|name| selected(&set, name))
                    .filter_map(|name| {
                        let register = model.registers.get(&name)?;
                        Some((
                            name.clone(),
                            register.value.clone(),
                            register.metadata.clone(),
                            register.revision,
                            register.deadline - now,
                        ))
                    })
                    .collect();
                prop_assert_eq!(got, expected);
                prop_assert_eq!(snapshot.revision, model.revision);
            }
            Op::ChangedSince { names, back } => {
                let (selection, set) = selection(&names);
                let index = model.revision.saturating_sub(back);
                let got = registry.changed_since(now, &selection, index);
                model.expire(now);
                let changed = model
                    .registers
                    .iter()
                    .any(|(name, register)| selected(&set, name) && register.revision > index)
                    || model
                        .removals
                        .iter()
                        .any(|(revision, name)| *revision > index && selected(&set, name));
                // Below the first revision (or a crash) the registry cannot know: it
                // answers early.
                let expected = changed || index < model.trusted_from;
                prop_assert_eq!(got, expected, "index {}", index);
            }
            Op::Advance(steps) => now += STEP * steps,
            Op::Expire => {
                registry.expire(now);
                model.expire(now);
            }
            Op::Restart { clean } => {
                let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
                let saved = registry.export(now, wall);
                model.expire(now);
                // A save expires what is due, waking its polls in the stopping process.
                let mut woken = registry.take_wakeups();
                woken.sort_unstable();
                let expected: Vec<u32> = std::mem::take(&mut model.woken).into_iter().collect();
                prop_assert_eq!(woken, expected, "woken by the save");
                let last_run = if clean {
                    LastRun::Stopped {
                        revision: saved.revision,
                    }
                } else {
                    LastRun::Running {
                        reserved: registry.reservation(),
                    }
                };
                let limits = Limits::default();
                (registry, _) =
                    Registry::restore(limits, Some(saved), Some(last_run), 1, now, wall);
                // Held polls end with the process.
                model.waiters.clear();
                if !clean {
                    model.revision += REVISION_RESERVATION;
                    model.trusted_from = model.revision;
                }
                prop_assert_eq!(registry.revision(), model.revision);
            }
        }
        let mut woken: Vec<u32> = registry.take_wakeups();
        woken.sort_unstable();
        let expected: Vec<u32> = std::mem::take(&mut model.woken).into_iter().collect();
        prop_assert_eq!(woken, expected, "woken after the operation");
        let stats = registry.stats();
        prop_assert_eq!(stats.pending_requests, model.pending.len());
        prop_assert_eq!(
            stats.consumer_waiters + stats.provider_waiters,
            model.waiters.len()
        );
    }
    // Whatever was never taken is still pending, exactly once.
    let remaining: BTreeMap<String, String> = registry
        .take_requests(&Selection::All)
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.as_str().to_string()))
        .collect();
    prop_assert_eq!(remaining, model.pending);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_registry_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
