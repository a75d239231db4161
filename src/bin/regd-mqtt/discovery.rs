//! Every JSON document the bridge itself reads or writes (register values pass through
//! untouched as `Json` text): Home Assistant's MQTT discovery configs, the metadata keys
//! the bridge reads (`writable`, `unit`, `device_class`, `state_class`, `icon`, `min`,
//! `max`, `step`), and the `mqtt_topic` key that marks an imported register.
//!
//! Discovery follows Home Assistant's MQTT discovery documentation: one retained config
//! per register at `<discovery-prefix>/<component>/<object_id>/config` (the object id is
//! the entity's `unique_id`, as that documentation advises), with
//! one `device` for the gateway, the register's own availability topic together with
//! the bridge's state (`availability_mode: all`), and a `command_topic` for registers
//! whose metadata says `"writable": true`. Invariants: the ids derived from names are
//! injective and use only `[A-Za-z0-9_-]`; a config is a pure function of the gateway,
//! the name and the register, so an unchanged register never needs its config again.

use regd::client::{Json, Register};
use serde_json::{Map, Value, json};

use crate::topics::{self, Topics};

/// The metadata key that records where an imported register came from. A register
/// that has it is never exported again, by any bridge: that is what keeps two bridges
/// on one broker (or one bridge importing its own prefix) from looping.
pub const IMPORT_MARKER: &str = "mqtt_topic";

/// The kinds of entity a register becomes, chosen from its value and `writable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Sensor,
    BinarySensor,
    Switch,
    Number,
    Text,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Sensor => "sensor",
            Component::BinarySensor => "binary_sensor",
            Component::Switch => "switch",
            Component::Number => "number",
            Component::Text => "text",
        }
    }

    pub const ALL: [Component; 5] = [
        Component::Sensor,
        Component::BinarySensor,
        Component::Switch,
        Component::Number,
        Component::Text,
    ];

    pub fn parse(text: &str) -> Option<Component> {
        Component::ALL
            .into_iter()
            .find(|component| component.as_str() == text)
    }
}

/// The bridge's identity in Home Assistant.
#[derive(Clone, Debug)]
pub struct Gateway {
    pub id: String,
    pub discovery_prefix: String,
    /// The bridge's topic prefix: what tells two bridges apart, as it does for their
    /// client ids (two bridges on one host share the host name, the default id).
    pub prefix: String,
}

impl Gateway {
    /// The bridge's part of unique ids and of its device's identifier: the prefix,
    /// escaped as [`entity_id`] does (`regd/gw` → `regd-2fgw`).
    pub fn node_id(&self) -> String {
        entity_id(&self.prefix)
    }

    /// A register's `unique_id`, which is also the `<object_id>` of its config topic
    /// (Home Assistant's advice for entities with a unique id: no `<node_id>` level).
    /// Injective: an [`entity_id`] never holds `--` (a `-` is followed by hex digits),
    /// so the first `--` after `regd--` ends the bridge's part.
    pub fn unique_id(&self, name: &str) -> String {
        format!("regd--{}--{}", self.node_id(), entity_id(name))
    }

    /// The filters under which this gateway's configs are: one per component the
    /// bridge publishes (the object id, not a topic level, tells whose a config is).
    pub fn filters(&self) -> Vec<String> {
        Component::ALL
            .iter()
            .map(|component| format!("{}/{}/+/config", self.discovery_prefix, component.as_str()))
            .collect()
    }

    /// Home Assistant's birth topic; `online` there asks for every config again.
    pub fn status_topic(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }

    /// `<discovery-prefix>/<component>/<object_id>/config`.
    pub fn config_topic(&self, component: Component, name: &str) -> String {
        format!(
            "{}/{}/{}/config",
            self.discovery_prefix,
            component.as_str(),
            self.unique_id(name)
        )
    }

    /// The component and register name of one of this gateway's config topics.
    pub fn parse_config_topic(&self, topic: &str) -> Option<(Component, String)> {
        let rest = topic
            .strip_prefix(&self.discovery_prefix)?
            .strip_prefix('/')?;
        let mut levels = rest.split('/');
        let component = Component::parse(levels.next()?)?;
        let object = levels
            .next()?
            .strip_prefix("regd--")?
            .strip_prefix(&self.node_id())?
            .strip_prefix("--")?;
        let name = name_of_entity_id(object)?;
        (levels.next()? == "config" && levels.next().is_none()).then_some((component, name))
    }
}

/// An entity id Home Assistant takes as it is (`default_entity_id`): the domain, a dot,
/// and lower-case letters, digits and single inner `_`. Not injective, and need not be:
/// Home Assistant appends `_2` to a taken one; the `unique_id` is what identifies.
fn default_entity_id(component: Component, id: &str) -> String {
    let mut slug = String::with_capacity(id.len());
    for ch in id.chars() {
        if ch.is_ascii_alphanumeric() {
            slug.push(ch.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('_') {
            slug.push('_');
        }
    }
    while slug.ends_with('_') {
        slug.pop();
    }
    format!("{}.{slug}", component.as_str())
}

/// An id of `[A-Za-z0-9_-]` for a name, injective: letters and digits stay, `.`
/// becomes `_` (so `hall.temperature` reads `hall_temperature`), every other byte
/// `-xx` in lower-case hex.
pub fn entity_id(name: &str) -> String {
    let mut id = String::with_capacity(name.len() + 4);
    for byte in name.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => id.push(byte as char),
            b'.' => id.push('_'),
            _ => id.push_str(&format!("-{byte:02x}")),
        }
    }
    if id.is_empty() {
        // Home Assistant needs a non-empty id; no other name gives a lone `-`.
        id.push('-');
    }
    id
}

/// The inverse of [`entity_id`].
pub fn name_of_entity_id(id: &str) -> Option<String> {
    if id == "-" {
        return Some(String::new());
    }
    let bytes = id.as_bytes();
    let mut name = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'_' => name.push(b'.'),
            b'-' => {
                let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
                if hex.bytes().any(|digit| digit.is_ascii_uppercase()) {
                    return None;
                }
                name.push(u8::from_str_radix(hex, 16).ok()?);
                index += 2;
            }
            byte => name.push(byte),
        }
        index += 1;
    }
    let name = String::from_utf8(name).ok()?;
    (entity_id(&name) == id).then_some(name)
}

fn metadata_object(metadata: Option<&Json>) -> Map<String, Value> {
    match metadata.map(|metadata| serde_json::from_str(metadata.as_str())) {
        Some(Ok(Value::Object(object))) => object,
        _ => Map::new(),
    }
}

/// Whether the register's metadata says its provider takes change requests.
pub fn is_writable(metadata: Option<&Json>) -> bool {
    metadata.is_some_and(|metadata| metadata.as_str().contains("\"writable\""))
        && metadata_object(metadata).get("writable") == Some(&Value::Bool(true))
}

/// Whether the register was imported from MQTT by some bridge.
pub fn is_imported(metadata: Option<&Json>) -> bool {
    metadata.is_some_and(|metadata| metadata.as_str().contains(IMPORT_MARKER))
        && metadata_object(metadata).contains_key(IMPORT_MARKER)
}

/// The metadata of an imported register: what `<topic>/metadata` said (when it is a
/// JSON object), with [`IMPORT_MARKER`] set to the topic it came from.
pub fn imported_metadata(metadata: Option<&Json>, topic: &str) -> Json {
    let mut object = metadata_object(metadata);
    object.insert(IMPORT_MARKER.to_string(), Value::String(topic.to_string()));
    Json::parse(&Value::Object(object).to_string()).expect("serde_json writes valid JSON")
}

/// The component a register becomes.
pub fn component(register: &Register) -> Component {
    let writable = is_writable(register.metadata.as_ref());
    match (register.value.as_str().as_bytes().first(), writable) {
        (Some(b't' | b'f'), false) => Component::BinarySensor,
        (Some(b't' | b'f'), true) => Component::Switch,
        (Some(b'-' | b'0'..=b'9'), true) => Component::Number,
        (Some(b'"'), true) => Component::Text,
        _ => Component::Sensor,
    }
}

/// The retained discovery config for one register (its component from [`component`]).
pub fn config(
    gateway: &Gateway,
    topics: &Topics,
    name: &str,
    topic: &str,
    register: &Register,
) -> String {
    let component = component(register);
    let metadata = metadata_object(register.metadata.as_ref());
    let node = gateway.node_id();
    let object = entity_id(name);
    // Entity ids read well (`sensor.regd_gw_hall_temperature`) and need not be unique:
    // Home Assistant appends `_2` to a taken one; the unique id is what identifies.
    let readable = format!("regd_{}_{object}", entity_id(&gateway.id));
    let mut config = json!({
        "name": name,
        "unique_id": gateway.unique_id(name),
        // `object_id` for Home Assistant before 2025.10, which knows no
        // `default_entity_id`; later ones take `default_entity_id` and, when it is
        // there, do not warn about the deprecated `object_id`.
        "object_id": readable,
        "default_entity_id": default_entity_id(component, &readable),
        "state_topic": topic,
        "json_attributes_topic": Topics::attribute(topic, topics::METADATA),
        "availability": [
            {"topic": Topics::attribute(topic, topics::AVAILABILITY)},
            {"topic": topics.bridge_state()},
        ],
        "availability_mode": "all",
        "device": {
            "identifiers": [format!("regd--{node}")],
            "name": format!("regd {}", gateway.id),
            "manufacturer": "regd",
            "model": "regd-mqtt",
            "sw_version": env!("CARGO_PKG_VERSION"),
        },
        "origin": {"name": "regd-mqtt", "sw_version": env!("CARGO_PKG_VERSION")},
    });
    let entry = config.as_object_mut().expect("an object");
    let command_topic = Value::String(Topics::attribute(topic, topics::SET));
    let copy = |entry: &mut Map<String, Value>, from: &str, to: &str| {
        if let Some(value) = metadata.get(from) {
            entry.insert(to.to_string(), value.clone());
        }
    };
    copy(entry, "icon", "icon");
    match component {
        Component::BinarySensor | Component::Switch => {
            // The state payload is the register's JSON text: `true` or `false`.
            entry.insert("payload_on".into(), "true".into());
            entry.insert("payload_off".into(), "false".into());
            copy(entry, "device_class", "device_class");
            if component == Component::Switch {
                entry.insert("state_on".into(), "true".into());
                entry.insert("state_off".into(), "false".into());
                entry.insert("command_topic".into(), command_topic);
            }
        }
        Component::Sensor | Component::Number => {
            entry.insert("value_template".into(), "{{ value_json }}".into());
            copy(entry, "unit", "unit_of_measurement");
            copy(entry, "device_class", "device_class");
            if component == Component::Sensor {
                copy(entry, "state_class", "state_class");
            } else {
                entry.insert("command_topic".into(), command_topic);
                entry.insert("mode".into(), "box".into());
                // Home Assistant's own defaults (1 to 100) would refuse most readings.
                entry.insert(
                    "min".into(),
                    metadata.get("min").cloned().unwrap_or(json!(-1e9)),
                );
                entry.insert(
                    "max".into(),
                    metadata.get("max").cloned().unwrap_or(json!(1e9)),
                );
                copy(entry, "step", "step");
            }
        }
        Component::Text => {
            entry.insert("value_template".into(), "{{ value_json }}".into());
            entry.insert("command_topic".into(), command_topic);
            // Typed text stays a string, even `42` or `true`.
            entry.insert("command_template".into(), "{{ value | tojson }}".into());
        }
    }
    config.to_string()
}

/// What a `<topic>/set` payload asks for: JSON as it is; anything else as a JSON
/// string (zigbee2mqtt style `ON`). `ON`/`OFF` (any case) for a register whose value is
/// a boolean become `true`/`false`, so switches of other systems round-trip too.
pub fn requested_value(payload: &str, current: Option<&Json>) -> Json {
    if current.and_then(Json::as_bool).is_some() {
        match payload.trim().to_ascii_lowercase().as_str() {
            "on" => return Json::from(true),
            "off" => return Json::from(false),
            _ => {}
        }
    }
    Json::parse(payload).unwrap_or_else(|_| Json::string(payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn register(value: &str, metadata: Option<&str>) -> Register {
        Register {
            value: Json::parse(value).unwrap(),
            metadata: metadata.map(|text| Json::parse(text).unwrap()),
        }
    }

    #[test]
    fn components_follow_the_value_and_writable() {
        let writable = Some(r#"{"writable":true}"#);
        let cases = [
            ("21.5", None, Component::Sensor),
            ("-3", writable, Component::Number),
            ("true", None, Component::BinarySensor),
            ("false", writable, Component::Switch),
            ("\"closed\"", None, Component::Sensor),
            ("\"closed\"", writable, Component::Text),
            ("{\"a\":1}", writable, Component::Sensor),
            ("null", None, Component::Sensor),
            (
                "true",
                Some(r#"{"writable":"yes"}"#),
                Component::BinarySensor,
            ),
        ];
        for (value, metadata, expected) in cases {
            assert_eq!(
                component(&register(value, metadata)),
                expected,
                "{value} {metadata:?}"
            );
        }
    }

    #[test]
    fn a_switch_config_has_what_home_assistant_needs() {
        let gateway = Gateway {
            id: "gw.1".to_string(),
            discovery_prefix: "homeassistant".to_string(),
            prefix: "regd/gw.1".to_string(),
        };
        let topics = Topics::new("regd/gw.1").unwrap();
        let register = register(
            "false",
            Some(r#"{"writable":true,"device_class":"outlet","icon":"mdi:lamp"}"#),
        );
        let text = config(
            &gateway,
            &topics,
            "hall.lamp",
            "regd/gw.1/hall/lamp",
            &register,
        );
        let config: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(config["unique_id"], "regd--regd-2fgw_1--hall_lamp");
        assert_eq!(config["object_id"], "regd_gw_1_hall_lamp");
        assert_eq!(config["default_entity_id"], "switch.regd_gw_1_hall_lamp");
        assert_eq!(config["state_topic"], "regd/gw.1/hall/lamp");
        assert_eq!(config["command_topic"], "regd/gw.1/hall/lamp/set");
        assert_eq!(config["payload_on"], "true");
        assert_eq!(config["state_off"], "false");
        assert_eq!(config["device_class"], "outlet");
        assert_eq!(config["icon"], "mdi:lamp");
        assert_eq!(
            config["availability"][0]["topic"],
            "regd/gw.1/hall/lamp/availability"
        );
        assert_eq!(config["availability"][1]["topic"], "regd/gw.1/bridge/state");
        assert_eq!(config["availability_mode"], "all");
        assert_eq!(config["device"]["identifiers"][0], "regd--regd-2fgw_1");
        assert_eq!(
            gateway.config_topic(Component::Switch, "hall.lamp"),
            "homeassistant/switch/regd--regd-2fgw_1--hall_lamp/config"
        );
        assert_eq!(
            gateway.parse_config_topic("homeassistant/switch/regd--regd-2fgw_1--hall_lamp/config"),
            Some((Component::Switch, "hall.lamp".to_string()))
        );
        for other in [
            "homeassistant/switch/regd--other--hall_lamp/config",
            "homeassistant/switch/regd--regd-2fgw_1-2d--x/config",
            "homeassistant/switch/gw_1/hall_lamp/config",
            "homeassistant/switch/regd--regd-2fgw_1--hall_lamp/config/x",
            "homeassistant/light/regd--regd-2fgw_1--hall_lamp/config",
        ] {
            assert_eq!(gateway.parse_config_topic(other), None, "{other}");
        }
        assert!(
            gateway
                .filters()
                .iter()
                .all(|filter| crate::topics::matches_filter(
                    filter,
                    &gateway.config_topic(Component::Text, "a")
                ) == filter.contains("/text/"))
        );
    }

    #[test]
    fn sensor_metadata_maps_to_home_assistant_keys() {
        let gateway = Gateway {
            id: "gw".to_string(),
            discovery_prefix: "ha".to_string(),
            prefix: "regd/gw".to_string(),
        };
        let topics = Topics::new("regd/gw").unwrap();
        let register = register(
            "21.5",
            Some(r#"{"unit":"°C","device_class":"temperature","state_class":"measurement"}"#),
        );
        let config: Value =
            serde_json::from_str(&config(&gateway, &topics, "t", "regd/gw/t", &register)).unwrap();
        assert_eq!(config["unit_of_measurement"], "°C");
        assert_eq!(config["device_class"], "temperature");
        assert_eq!(config["state_class"], "measurement");
        assert_eq!(config["value_template"], "{{ value_json }}");
        assert!(config.get("command_topic").is_none());
    }

    #[test]
    fn set_payloads() {
        let on = Json::from(true);
        let cases = [
            ("21.5", None, "21.5"),
            ("true", None, "true"),
            ("{\"state\":\"ON\"}", None, "{\"state\":\"ON\"}"),
            ("ON", None, "\"ON\""),
            ("ON", Some(&on), "true"),
            ("off", Some(&on), "false"),
            ("\"ON\"", Some(&on), "\"ON\""),
            ("hello world", None, "\"hello world\""),
            ("", None, "\"\""),
        ];
        for (payload, current, expected) in cases {
            assert_eq!(
                requested_value(payload, current).as_str(),
                expected,
                "{payload:?}"
            );
        }
    }

    #[test]
    fn the_import_marker() {
        let metadata =
            imported_metadata(Some(&Json::parse(r#"{"unit":"W"}"#).unwrap()), "z2m/plug");
        // serde_json (without `preserve_order`) writes keys sorted.
        assert_eq!(metadata.as_str(), r#"{"mqtt_topic":"z2m/plug","unit":"W"}"#);
        assert!(is_imported(Some(&metadata)));
        assert!(!is_imported(Some(
            &Json::parse(r#"{"note":"mqtt_topic"}"#).unwrap()
        )));
        assert!(!is_imported(None));
        assert_eq!(
            imported_metadata(None, "a").as_str(),
            r#"{"mqtt_topic":"a"}"#
        );
    }

    #[test]
    fn default_entity_ids_are_what_home_assistant_takes() {
        let cases = [
            (
                Component::Sensor,
                "regd_gw_hall_temperature",
                "sensor.regd_gw_hall_temperature",
            ),
            (
                Component::Switch,
                "regd_Gw-2d1_a__b",
                "switch.regd_gw_2d1_a_b",
            ),
            (Component::Text, "regd_gw_-", "text.regd_gw"),
        ];
        for (component, id, expected) in cases {
            assert_eq!(default_entity_id(component, id), expected);
        }
    }

    proptest! {
        #[test]
        fn entity_ids_are_injective_and_reversible(name in "\\PC{0,20}") {
            let id = entity_id(&name);
            prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            prop_assert_eq!(name_of_entity_id(&id), Some(name.clone()));
            let gateway = Gateway {
                id: "gw".to_string(),
                discovery_prefix: "ha".to_string(),
                prefix: "regd/gw".to_string(),
            };
            for component in Component::ALL {
                prop_assert_eq!(
                    gateway.parse_config_topic(&gateway.config_topic(component, &name)),
                    Some((component, name.clone()))
                );
            }
        }
    }
}
