//! The bridge's two loops and what they share.
//!
//! `regd-mqtt-export` owns what the broker should show: a consumer of every register
//! (one long poll with `index=`, coalesced per name, so a burst never queues without
//! bound and the last value always arrives) and the table of exported registers. It
//! publishes state, metadata, availability and discovery, republishes everything after
//! each connect, answers `<topic>/get`, and cleans up retained topics of registers that
//! went away while the bridge was not looking.
//!
//! `regd-mqtt-inbound` takes the session's events: change requests (`<topic>/set`) go
//! to regd as `PUT /consumer`; imported topics become registers of its own provider
//! (with the import ttl, batched per burst); and it hands the export loop what it must
//! publish through [`Control`], which never blocks. That is what keeps the session's
//! reading thread (which feeds this loop) from ever waiting on a publisher that waits
//! for an acknowledgement the reading thread has to read.
//!
//! Invariants: a register is exported unless it was imported (by any bridge: the
//! `mqtt_topic` marker), so nothing loops; nothing is published for a name without a
//! topic; imported registers live only while the broker is connected — on disconnect
//! they are forgotten (not deleted) and expire after the import ttl.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use parking_lot::Mutex;
use regd::client::{Client, Consumer, Json, Provider, ProviderEvent, Register, Update};

use crate::codec::QoS;
use crate::discovery::{self, Component, Gateway};
use crate::session::{Event, Session};
use crate::topics::{self, Attribute, Topics};
use crate::warnings::Warnings;

/// Session events waiting for the inbound loop, at most (then the session's reader
/// waits, and TCP holds the broker back).
pub const EVENT_QUEUE: usize = 1024;

/// Messages the inbound loop takes into one batch before writing imports to regd.
const BATCH: usize = 512;

/// What the bridge is configured to do (the parts the loops need).
pub struct Plan {
    pub topics: Topics,
    pub gateway: Option<Gateway>,
    pub discovery_remove_after: Duration,
    pub imports: Vec<String>,
    pub import_ttl: Duration,
}

/// Work for the export loop, coalesced: each kind is a flag or a set, so pushing never
/// blocks and never grows beyond the number of names.
#[derive(Default)]
struct Work {
    republish: bool,
    discovery: bool,
    gets: BTreeSet<String>,
    reconcile: Option<Retained>,
    /// Change requests for imported registers: `<topic>/set` → payload (latest wins).
    commands: BTreeMap<String, Vec<u8>>,
}

pub struct Control {
    work: Mutex<Work>,
    doorbell: Sender<()>,
}

impl Control {
    fn new() -> (Control, Receiver<()>) {
        let (doorbell, rings) = crossbeam_channel::bounded(1);
        (
            Control {
                work: Mutex::new(Work::default()),
                doorbell,
            },
            rings,
        )
    }

    fn push(&self, apply: impl FnOnce(&mut Work)) {
        apply(&mut self.work.lock());
        let _ = self.doorbell.try_send(());
    }

    fn take(&self) -> Work {
        std::mem::take(&mut self.work.lock())
    }
}

/// What the broker held under the bridge's own topics when it connected (the retained
/// messages that came before the echo of its `online`).
#[derive(Default, Debug)]
struct Retained {
    /// Names with a retained state, metadata or `online` availability.
    registers: BTreeSet<String>,
    /// This gateway's discovery configs.
    configs: Vec<(Component, String)>,
}

/// The running loops.
pub struct Bridge {
    session: Arc<Session>,
    stop: Option<Sender<()>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Bridge {
    pub fn start(
        plan: Plan,
        client: Client,
        session: Session,
        events: Receiver<Event>,
        warnings: Arc<Warnings>,
    ) -> std::io::Result<Bridge> {
        let plan = Arc::new(plan);
        let session = Arc::new(session);
        let (control, rings) = Control::new();
        let control = Arc::new(control);
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let consumer = client.consumer();
        consumer.subscribe_all();
        let export = {
            let mut export = Export {
                plan: plan.clone(),
                client: client.with_own_connection(),
                session: session.clone(),
                warnings: warnings.clone(),
                table: BTreeMap::new(),
                gone: BTreeMap::new(),
            };
            let control = control.clone();
            let stopped = stopped.clone();
            thread::Builder::new()
                .name("regd-mqtt-export".to_string())
                .spawn(move || export.run(&consumer, &control, &rings, &stopped))?
        };
        let inbound = {
            let mut inbound = Inbound {
                provider: client.provider(),
                plan,
                client,
                control,
                warnings,
                imports: BTreeMap::new(),
                syncing: None,
                batch: BTreeSet::new(),
            };
            thread::Builder::new()
                .name("regd-mqtt-inbound".to_string())
                .spawn(move || inbound.run(&events, &stopped))?
        };
        Ok(Bridge {
            session,
            stop: Some(stop),
            threads: vec![export, inbound],
        })
    }

    /// Stops both loops, then says goodbye to the broker (`offline`) and disconnects.
    pub fn shutdown(mut self) {
        self.session.refuse_publishes();
        drop(self.stop.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        match Arc::try_unwrap(self.session) {
            Ok(session) => session.shutdown(),
            Err(_) => log::error!(
                "the MQTT session is still shared at shutdown; leaving without the goodbye"
            ),
        }
    }
}

/// One exported register.
struct Exported {
    register: Register,
    topic: String,
    /// The component its discovery config was published under.
    component: Option<Component>,
}

struct Export {
    plan: Arc<Plan>,
    client: Client,
    session: Arc<Session>,
    warnings: Arc<Warnings>,
    table: BTreeMap<String, Exported>,
    /// Registers that went away, whose discovery config waits for
    /// `--discovery-remove-after`.
    gone: BTreeMap<String, (Instant, Component)>,
}

impl Export {
    fn run(
        &mut self,
        consumer: &Consumer,
        control: &Control,
        rings: &Receiver<()>,
        stop: &Receiver<()>,
    ) {
        loop {
            let next_removal = self
                .gone
                .values()
                .map(|(since, _)| *since + self.plan.discovery_remove_after)
                .min();
            let timeout = next_removal.map_or(Duration::from_secs(3600), |at| {
                at.saturating_duration_since(Instant::now())
            });
            select! {
                recv(consumer.updates()) -> update => match update {
                    Ok(update) => self.update(update),
                    Err(_) => return,
                },
                recv(rings) -> _ => self.work(control.take()),
                recv(stop) -> _ => return,
                default(timeout) => self.remove_gone_configs(),
            }
        }
    }

    fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        if !topics::is_publishable(topic) {
            // The mapping never produces one; this guard keeps it that way.
            self.warnings.warn("mqtt-topic-invalid", || {
                format!("not publishing to invalid topic {topic:?}")
            });
            return;
        }
        if let Err(error) = self
            .session
            .publish(topic, payload, QoS::AtLeastOnce, retain, false)
        {
            log::debug!("not published to {topic}: {error:?}");
        }
    }

    fn update(&mut self, update: Update) {
        match update {
            Update::Changed { name, register } => self.changed(name, register),
            Update::Removed { name } => self.removed(&name),
            Update::Failed(error) => self.warnings.warn("regd-consumer", || {
                format!("cannot follow regd's registers: {error} (retrying)")
            }),
            Update::Recovered => log::info!("regd answers again; following its registers"),
        }
    }

    fn changed(&mut self, name: String, register: Register) {
        if discovery::is_imported(register.metadata.as_ref()) {
            // Imported by a bridge: exporting it again would loop.
            self.removed(&name);
            return;
        }
        let topic = match self.plan.topics.topic(&name) {
            Ok(topic) => topic,
            Err(unmappable) => {
                self.warnings
                    .warn("unmappable-name", || format!("{unmappable}; not exported"));
                return;
            }
        };
        let previous = self.table.remove(&name);
        let connected = self.session.is_connected();
        let value_changed = previous
            .as_ref()
            .is_none_or(|exported| exported.register.value != register.value);
        let metadata_changed = previous
            .as_ref()
            .is_none_or(|exported| exported.register.metadata != register.metadata);
        if connected && value_changed {
            self.publish(&topic, register.value.as_str().as_bytes(), true);
        }
        if connected && metadata_changed {
            let metadata = register.metadata.as_ref().map_or("", Json::as_str);
            self.publish(
                &Topics::attribute(&topic, topics::METADATA),
                metadata.as_bytes(),
                true,
            );
        }
        if connected && previous.is_none() {
            self.publish(
                &Topics::attribute(&topic, topics::AVAILABILITY),
                b"online",
                true,
            );
        }
        let mut exported = Exported {
            register,
            topic,
            component: previous.and_then(|exported| exported.component),
        };
        self.gone.remove(&name);
        if connected
            && (metadata_changed
                || exported.component != Some(discovery::component(&exported.register)))
        {
            self.announce(&name, &mut exported);
        }
        self.table.insert(name, exported);
    }

    fn removed(&mut self, name: &str) {
        let Some(exported) = self.table.remove(name) else {
            return;
        };
        if self.session.is_connected() {
            self.publish(&exported.topic, b"", true);
            self.publish(
                &Topics::attribute(&exported.topic, topics::AVAILABILITY),
                b"offline",
                true,
            );
            if exported.register.metadata.is_some() {
                self.publish(
                    &Topics::attribute(&exported.topic, topics::METADATA),
                    b"",
                    true,
                );
            }
        }
        if let Some(component) = exported.component {
            self.gone
                .insert(name.to_string(), (Instant::now(), component));
        }
    }

    /// Publishes a register's discovery config (clearing one under another component).
    fn announce(&self, name: &str, exported: &mut Exported) {
        let Some(gateway) = &self.plan.gateway else {
            return;
        };
        let component = discovery::component(&exported.register);
        if let Some(old) = exported.component.filter(|old| *old != component) {
            self.publish(&gateway.config_topic(old, name), b"", true);
        }
        let config = discovery::config(
            gateway,
            &self.plan.topics,
            name,
            &exported.topic,
            &exported.register,
        );
        self.publish(
            &gateway.config_topic(component, name),
            config.as_bytes(),
            true,
        );
        exported.component = Some(component);
    }

    fn remove_gone_configs(&mut self) {
        let Some(gateway) = &self.plan.gateway else {
            self.gone.clear();
            return;
        };
        let now = Instant::now();
        let due: Vec<String> = self
            .gone
            .iter()
            .filter(|(_, (since, _))| now >= *since + self.plan.discovery_remove_after)
            .map(|(name, _)| name.clone())
            .collect();
        if !self.session.is_connected() {
            return;
        }
        for name in due {
            if let Some((_, component)) = self.gone.remove(&name) {
                log::info!(
                    "register {name:?} has been gone for {:?}: removing its Home Assistant entity",
                    self.plan.discovery_remove_after
                );
                self.publish(&gateway.config_topic(component, &name), b"", true);
            }
        }
    }

    fn work(&mut self, work: Work) {
        if work.republish {
            self.republish();
        } else if work.discovery {
            self.announce_all();
        }
        for name in &work.gets {
            if let Some(exported) = self.table.get(name) {
                self.publish(
                    &exported.topic,
                    exported.register.value.as_str().as_bytes(),
                    true,
                );
            }
        }
        for (topic, payload) in &work.commands {
            if let Err(error) = self
                .session
                .publish(topic, payload, QoS::AtLeastOnce, false, true)
            {
                self.warnings.warn("mqtt-command", || {
                    format!("change request for {topic:?} not sent: the broker is not connected ({error:?})")
                });
            }
        }
        if let Some(retained) = work.reconcile {
            self.reconcile(retained);
        }
    }

    /// Everything again, after a connect: state, metadata, availability, discovery.
    fn republish(&mut self) {
        let names: Vec<String> = self.table.keys().cloned().collect();
        log::info!("publishing {} registers", names.len());
        for name in names {
            let Some(mut exported) = self.table.remove(&name) else {
                continue;
            };
            self.publish(
                &exported.topic,
                exported.register.value.as_str().as_bytes(),
                true,
            );
            let metadata = exported.register.metadata.as_ref().map_or("", Json::as_str);
            self.publish(
                &Topics::attribute(&exported.topic, topics::METADATA),
                metadata.as_bytes(),
                true,
            );
            self.publish(
                &Topics::attribute(&exported.topic, topics::AVAILABILITY),
                b"online",
                true,
            );
            self.announce(&name, &mut exported);
            self.table.insert(name, exported);
        }
    }

    fn announce_all(&mut self) {
        let names: Vec<String> = self.table.keys().cloned().collect();
        for name in names {
            if let Some(mut exported) = self.table.remove(&name) {
                self.announce(&name, &mut exported);
                self.table.insert(name, exported);
            }
        }
    }

    /// Clears what the broker retained for registers regd no longer has (they went
    /// away while the bridge was stopped or cut off). Best effort: names regd cannot be
    /// asked about now are left for the next connect.
    fn reconcile(&mut self, retained: Retained) {
        let mut candidates: BTreeSet<String> = retained
            .registers
            .into_iter()
            .filter(|name| !self.table.contains_key(name))
            .collect();
        candidates.extend(
            retained
                .configs
                .iter()
                .filter(|(_, name)| !self.table.contains_key(name))
                .map(|(_, name)| name.clone()),
        );
        let candidates: Vec<String> = candidates.into_iter().collect();
        if candidates.is_empty() {
            return;
        }
        let existing = match self.client.get(&candidates) {
            Ok(existing) => existing,
            Err(error) => {
                self.warnings.warn("reconcile", || {
                    format!(
                        "cannot ask regd about {} retained topics, leaving them for now: {error}",
                        candidates.len()
                    )
                });
                return;
            }
        };
        let mut cleared = 0;
        for name in candidates
            .iter()
            .filter(|name| !existing.contains_key(*name))
        {
            let Ok(topic) = self.plan.topics.topic(name) else {
                continue;
            };
            self.publish(&topic, b"", true);
            self.publish(&Topics::attribute(&topic, topics::METADATA), b"", true);
            self.publish(
                &Topics::attribute(&topic, topics::AVAILABILITY),
                b"offline",
                true,
            );
            cleared += 1;
        }
        for (component, name) in retained.configs {
            match self.table.get(&name) {
                Some(exported) if exported.component == Some(component) => {}
                // A live register's entity under another component: the old one goes.
                Some(_) => {
                    if let Some(gateway) = &self.plan.gateway {
                        self.publish(&gateway.config_topic(component, &name), b"", true);
                    }
                }
                None if !existing.contains_key(&name) => {
                    self.gone.entry(name).or_insert((Instant::now(), component));
                }
                None => {}
            }
        }
        if cleared > 0 {
            log::info!("cleared the retained topics of {cleared} registers that are gone");
        }
    }
}

/// An imported register.
struct Imported {
    /// The topic it came from (its state topic).
    topic: String,
    value: Option<Json>,
    metadata: Option<Json>,
}

struct Inbound {
    plan: Arc<Plan>,
    client: Client,
    provider: Provider,
    control: Arc<Control>,
    warnings: Arc<Warnings>,
    imports: BTreeMap<String, Imported>,
    /// While the retained messages of a fresh connection arrive.
    syncing: Option<Retained>,
    /// Imports to write to regd at the end of this batch.
    batch: BTreeSet<String>,
}

impl Inbound {
    fn run(&mut self, events: &Receiver<Event>, stop: &Receiver<()>) {
        loop {
            select! {
                recv(events) -> event => {
                    let Ok(event) = event else { break };
                    self.event(event);
                    // Take what else is waiting, then write the imports in one request.
                    for _ in 0..BATCH {
                        match events.try_recv() {
                            Ok(event) => self.event(event),
                            Err(_) => break,
                        }
                    }
                    self.flush();
                }
                recv(self.provider.events()) -> event => match event {
                    Ok(event) => self.provider_event(event),
                    Err(_) => break,
                },
                recv(stop) -> _ => break,
            }
        }
        // Imported registers expire in regd, as a dead provider's would.
        let names: Vec<String> = self.imports.keys().cloned().collect();
        self.provider.forget(&names);
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                self.syncing = Some(Retained::default());
                self.control.push(|work| work.republish = true);
            }
            Event::Disconnected => {
                self.flush();
                self.syncing = None;
                let names: Vec<String> = std::mem::take(&mut self.imports).into_keys().collect();
                if !names.is_empty() {
                    log::info!(
                        "the broker is gone: {} imported registers will expire in {:?}",
                        names.len(),
                        self.plan.import_ttl
                    );
                    self.provider.forget(&names);
                }
            }
            Event::Message {
                topic,
                payload,
                retain,
            } => self.message(&topic, &payload, retain),
        }
    }

    fn message(&mut self, topic: &str, payload: &[u8], retain: bool) {
        let plan = self.plan.clone();
        if let Some(retained) = &mut self.syncing {
            if topic == plan.topics.bridge_state() && !retain && payload == b"online" {
                // The echo of this connection's `online`: every retained message came
                // before it.
                let retained = self.syncing.take().unwrap_or_default();
                self.control.push(|work| work.reconcile = Some(retained));
                return;
            }
            if retain && !payload.is_empty() {
                if let Some((name, attribute)) = plan.topics.classify(topic) {
                    if attribute != Attribute::Availability || payload == b"online" {
                        retained.registers.insert(name);
                    }
                } else if let Some(config) = plan
                    .gateway
                    .as_ref()
                    .and_then(|gateway| gateway.parse_config_topic(topic))
                {
                    retained.configs.push(config);
                }
            }
        }
        if topic.starts_with(plan.topics.prefix())
            && topic[plan.topics.prefix().len()..].starts_with('/')
        {
            // The bridge's own tree: change requests and gets; never imported.
            match plan.topics.classify(topic) {
                // A retained change request is one sent who knows when, handed to every
                // new subscription: applying it at each connect would invent requests.
                // (Sent while the bridge is connected, it arrives without the flag.)
                Some((_, Attribute::Set | Attribute::Get)) if retain && !payload.is_empty() => {
                    self.warnings.warn("set-retained", || {
                        format!("ignoring the retained message on {topic:?}: a change request is an event, not a state; publish it without the retain flag")
                    });
                }
                Some((name, Attribute::Set)) => self.change_request(&name, payload),
                Some((name, Attribute::Get)) => {
                    self.control.push(|work| {
                        work.gets.insert(name);
                    });
                }
                None if matches!(
                    topics::split_attribute(topic).1,
                    Attribute::Set | Attribute::Get
                ) =>
                {
                    self.warnings.warn("set-unmapped", || {
                        format!("ignoring {topic:?}: no register name maps to it (a '.' inside a level, or a '%' that is not an escape; see docs/mqtt.md)")
                    });
                }
                _ => {}
            }
            return;
        }
        if let Some(gateway) = &plan.gateway {
            if topic == gateway.status_topic() {
                if payload == b"online" {
                    log::info!("Home Assistant is online: sending discovery again");
                    self.control.push(|work| work.discovery = true);
                }
                return;
            }
            if gateway.parse_config_topic(topic).is_some() {
                return;
            }
        }
        if plan
            .imports
            .iter()
            .any(|filter| topics::matches_filter(filter, topic))
        {
            self.import(topic, payload);
        }
    }

    fn change_request(&mut self, name: &str, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            self.warnings.warn("set-utf8", || {
                format!("change request for {name:?} skipped: the payload is not UTF-8")
            });
            return;
        };
        // ON/OFF become booleans for a boolean register; only then is it worth a read.
        let current =
            if text.trim().eq_ignore_ascii_case("on") || text.trim().eq_ignore_ascii_case("off") {
                self.client
                    .get(&[name])
                    .ok()
                    .and_then(|mut found| found.remove(name))
                    .map(|register| register.value)
            } else {
                None
            };
        let value = discovery::requested_value(text, current.as_ref());
        if let Err(error) = self.client.request(name, &value) {
            self.warnings.warn("set-failed", || match error.status() {
                Some(413) => format!("change request for {name:?} refused by regd: {error} (the value is larger than regd's --max-body)"),
                _ => format!("change request for {name:?} not delivered to regd: {error}"),
            });
        }
    }

    fn import(&mut self, topic: &str, payload: &[u8]) {
        let (base, attribute) = topics::split_attribute(topic);
        if attribute == Attribute::State {
            if let Some(source) = base
                .strip_suffix(topics::BRIDGE_STATE)
                .and_then(|rest| rest.strip_suffix('/'))
            {
                // Another bridge's state: `offline` (its will) takes its registers away.
                if payload == b"offline" {
                    self.remove_under(&format!("{source}/"));
                }
                return;
            }
        }
        let Some(name) = topics::decode(base) else {
            self.warnings.warn("import-unnamed", || {
                format!("not importing {topic:?}: no register name maps to it (a '.' inside a level, or a '%' that is not an escape; see docs/mqtt.md)")
            });
            return;
        };
        let Ok(text) = std::str::from_utf8(payload) else {
            self.warnings.warn("import-utf8", || {
                format!("not importing a message on {topic:?}: the payload is not UTF-8")
            });
            return;
        };
        match attribute {
            Attribute::Set | Attribute::Get => {}
            Attribute::Availability => {
                if is_offline(text) {
                    self.remove(&name);
                }
            }
            Attribute::Metadata => {
                let metadata = match Json::parse(text) {
                    Ok(metadata) if metadata.is_object() => Some(metadata),
                    _ if text.is_empty() => None,
                    _ => {
                        self.warnings.warn("import-metadata", || {
                            format!("ignoring metadata on {topic:?}: not a JSON object")
                        });
                        return;
                    }
                };
                let entry = self
                    .imports
                    .entry(name.clone())
                    .or_insert_with(|| Imported {
                        topic: base.to_string(),
                        value: None,
                        metadata: None,
                    });
                entry.metadata = metadata;
                if entry.value.is_some() {
                    self.batch.insert(name);
                }
            }
            Attribute::State if text.is_empty() => self.remove(&name),
            Attribute::State => {
                let value = Json::parse(text).unwrap_or_else(|_| Json::string(text));
                let entry = self
                    .imports
                    .entry(name.clone())
                    .or_insert_with(|| Imported {
                        topic: topic.to_string(),
                        value: None,
                        metadata: None,
                    });
                entry.value = Some(value);
                self.batch.insert(name);
            }
        }
    }

    fn remove(&mut self, name: &str) {
        self.batch.remove(name);
        if self
            .imports
            .remove(name)
            .is_some_and(|imported| imported.value.is_some())
        {
            if let Err(error) = self.provider.remove(&[name]) {
                self.warnings.warn("import-remove", || {
                    format!("cannot remove imported register {name:?} from regd: {error}")
                });
            }
        }
    }

    fn remove_under(&mut self, prefix: &str) {
        let names: Vec<String> = self
            .imports
            .iter()
            .filter(|(_, imported)| imported.topic.starts_with(prefix))
            .map(|(name, _)| name.clone())
            .collect();
        if !names.is_empty() {
            log::info!(
                "the bridge under {prefix} went offline: removing its {} imported registers",
                names.len()
            );
        }
        for name in names {
            self.remove(&name);
        }
    }

    /// Writes this batch's imports to regd, in one request.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let registers: Vec<(String, Json, Option<Json>, Duration)> = batch
            .into_iter()
            .filter_map(|name| {
                let imported = self.imports.get(&name)?;
                let value = imported.value.clone()?;
                let metadata =
                    discovery::imported_metadata(imported.metadata.as_ref(), &imported.topic);
                Some((name, value, Some(metadata), self.plan.import_ttl))
            })
            .collect();
        let count = registers.len();
        if let Err(error) = self.provider.publish_many(registers) {
            self.warnings.warn("import-write", || match error.status() {
                // The client library writes each refused register alone, so only the
                // ones regd will not take are left out; the others are imported.
                Some(413) => format!("regd refused one of {count} imported registers: {error} (a payload is larger than regd's --max-body; lower --max-payload); the others are imported"),
                Some(400 | 414 | 431) => format!("regd refused one of {count} imported registers: {error}; the others are imported"),
                _ => format!("cannot write {count} imported registers to regd: {error} (retrying)"),
            });
        }
    }

    fn provider_event(&mut self, event: ProviderEvent) {
        match event {
            ProviderEvent::Request { name, value } => match self.imports.get(&name) {
                Some(imported) => {
                    let topic = Topics::attribute(&imported.topic, topics::SET);
                    let payload = value.as_str().as_bytes().to_vec();
                    self.control.push(|work| {
                        work.commands.insert(topic, payload);
                    });
                }
                None => log::debug!("change request for {name:?}, no longer imported"),
            },
            ProviderEvent::Failed(error) => self.warnings.warn("import-provider", || {
                format!("imported registers: {error} (retrying)")
            }),
            ProviderEvent::Recovered => {}
        }
    }
}

/// `offline`, or zigbee2mqtt's `{"state":"offline"}`.
fn is_offline(text: &str) -> bool {
    let text = text.trim();
    text.eq_ignore_ascii_case("offline") || text.replace(' ', "") == r#"{"state":"offline"}"#
}
