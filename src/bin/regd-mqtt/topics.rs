//! The mapping between register names and MQTT topics (docs/mqtt.md, "Topics"). Pure
//! functions, no I/O.
//!
//! A name's dots become topic levels; each level is escaped so that nothing a broker
//! refuses or reads specially (`/`, `+`, `#`, NUL and other control characters, Unicode
//! noncharacters, empty levels) reaches a topic, and so that no name lands on a topic the
//! bridge uses itself (a last level `set`, `get`, `metadata` or `availability`; last
//! levels `bridge/state`). The escape is `%` and two upper-case hex digits per UTF-8
//! byte; an empty level is a lone `%`. A name with more levels than a broker accepts
//! keeps its dots escaped (`%2E`) in one level.
//!
//! Invariants: [`encode`] is injective and [`decode`] is its inverse: `decode(t)` is
//! `Some(name)` exactly when `encode(name) == t`, so every topic names at most one
//! register and every register at most one topic. Nothing [`encode`] returns is a topic
//! Mosquitto refuses.

/// The levels under a register's topic that belong to the bridge.
pub const SET: &str = "set";
pub const GET: &str = "get";
pub const METADATA: &str = "metadata";
pub const AVAILABILITY: &str = "availability";
const ATTRIBUTES: [&str; 4] = [SET, GET, METADATA, AVAILABILITY];

/// The bridge's own state topic under its prefix.
pub const BRIDGE_STATE: &str = "bridge/state";

/// Mosquitto refuses a topic with more than 200 `/` (TOPIC_HIERARCHY_LIMIT); MQTT
/// strings carry at most 65,535 bytes.
pub const MAX_SLASHES: usize = 200;
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// The longest attribute level, counted into every limit so that `<topic>/availability`
/// fits whenever `<topic>` does.
const LONGEST_SUFFIX: usize = "/availability".len();

/// Why a name has no topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmappable {
    pub name: String,
    pub reason: &'static str,
}

impl std::fmt::Display for Unmappable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "register {:?} has no MQTT topic: {}",
            self.name, self.reason
        )
    }
}

/// What a topic under a register's topic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribute {
    State,
    Set,
    Get,
    Metadata,
    Availability,
}

/// A validated prefix (`regd/<gateway-id>`) and the mapping under it.
#[derive(Clone, Debug)]
pub struct Topics {
    prefix: String,
    slashes: usize,
}

impl Topics {
    /// Checks a prefix: one or more non-empty levels without wildcards, NUL or control
    /// characters, not starting with `$` (a broker's own tree), no trailing `/`.
    pub fn new(prefix: &str) -> Result<Topics, String> {
        let explain =
            |why: &str| format!("--prefix {prefix:?} {why}; use a prefix such as regd/gateway-1");
        if prefix.is_empty() {
            return Err(explain("is empty"));
        }
        if prefix.starts_with('$') {
            return Err(explain("starts with $, which brokers keep for themselves"));
        }
        if prefix.split('/').any(str::is_empty) {
            return Err(explain(
                "has an empty level (a leading, trailing or double /)",
            ));
        }
        if prefix
            .chars()
            .any(|ch| matches!(ch, '+' | '#' | '\0') || (ch != '/' && ch != '%' && must_escape(ch)))
        {
            return Err(explain(
                "contains a wildcard (+ or #) or a control character",
            ));
        }
        let slashes = prefix.matches('/').count();
        if slashes + 2 > MAX_SLASHES || prefix.len() > 1024 {
            return Err(explain("is too long"));
        }
        Ok(Topics {
            prefix: prefix.to_string(),
            slashes,
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>/bridge/state`.
    pub fn bridge_state(&self) -> String {
        format!("{}/{BRIDGE_STATE}", self.prefix)
    }

    /// The filter that carries change requests and `get`s (and, by MQTT's rules, the
    /// bridge's own retained topics, which it reads once after connecting).
    pub fn filter(&self) -> String {
        format!("{}/#", self.prefix)
    }

    /// A register's state topic; its attributes are `<topic>/<attribute>`.
    pub fn topic(&self, name: &str) -> Result<String, Unmappable> {
        let budget = Budget {
            slashes: MAX_SLASHES - self.slashes - 2,
            bytes: MAX_TOPIC_BYTES - self.prefix.len() - 1 - LONGEST_SUFFIX,
        };
        Ok(format!("{}/{}", self.prefix, encode_within(name, budget)?))
    }

    /// What a topic under the prefix is: a register's state or attribute (with the
    /// register's name), or `None` (the bridge state, or not a topic of a register).
    pub fn classify(&self, topic: &str) -> Option<(String, Attribute)> {
        let relative = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        if relative == BRIDGE_STATE {
            return None;
        }
        let (base, attribute) = split_attribute(relative);
        let name = unescape(base)?;
        // The base must be the register's canonical topic under this prefix (the level
        // budget depends on the prefix's length).
        let canonical = self.topic(&name).ok()?;
        (canonical[self.prefix.len() + 1..] == *base).then_some((name, attribute))
    }

    pub fn attribute(topic: &str, attribute: &str) -> String {
        format!("{topic}/{attribute}")
    }
}

/// Splits the attribute level off a topic (`a/b/set` → `a/b`, Set); a topic without one
/// is a state topic.
pub fn split_attribute(topic: &str) -> (&str, Attribute) {
    if let Some((base, last)) = topic.rsplit_once('/') {
        let attribute = match last {
            SET => Some(Attribute::Set),
            GET => Some(Attribute::Get),
            METADATA => Some(Attribute::Metadata),
            AVAILABILITY => Some(Attribute::Availability),
            _ => None,
        };
        if let Some(attribute) = attribute {
            return (base, attribute);
        }
    }
    (topic, Attribute::State)
}

#[derive(Clone, Copy)]
struct Budget {
    slashes: usize,
    bytes: usize,
}

/// The topic levels of a name, as a relative topic, with the broker's limits.
pub fn encode(name: &str) -> Result<String, Unmappable> {
    encode_within(
        name,
        Budget {
            slashes: MAX_SLASHES,
            bytes: MAX_TOPIC_BYTES,
        },
    )
}

fn encode_within(name: &str, budget: Budget) -> Result<String, Unmappable> {
    let unmappable = |reason| Unmappable {
        name: name.to_string(),
        reason,
    };
    let levels: Vec<&str> = name.split('.').collect();
    let topic = if levels.len() - 1 <= budget.slashes {
        let mut topic = String::with_capacity(name.len() + 8);
        let mut next_to_last = 0;
        for (position, level) in levels.iter().enumerate() {
            if position > 0 {
                topic.push('/');
            }
            if position + 2 == levels.len() {
                next_to_last = topic.len();
            }
            escape_level(level, position == levels.len() - 1, &mut topic);
        }
        if levels.len() >= 2 && levels[levels.len() - 2..] == ["bridge", "state"] {
            // `bridge.state` would land on the bridge's own state topic, and a name
            // ending so on the state topic of a bridge whose prefix is longer; an
            // importer reads every `…/bridge/state` as a bridge's. The rule looks at the
            // name's end only, so the full topic reads back the same (docs/mqtt.md).
            topic.replace_range(next_to_last..next_to_last + 1, "%62");
        }
        topic
    } else {
        // More levels than a broker takes: one level, dots escaped. An empty level is
        // nothing between two escaped dots (a lone `%` marks an empty level only where
        // it is the whole level).
        let mut topic = String::with_capacity(name.len() * 2);
        for (position, level) in levels.iter().enumerate() {
            if position > 0 {
                topic.push_str("%2E");
            }
            if !level.is_empty() {
                escape_level(level, false, &mut topic);
            }
        }
        topic
    };
    if topic.len() > budget.bytes {
        return Err(unmappable("the topic would be longer than MQTT allows"));
    }
    Ok(topic)
}

/// Whether a character may not appear as itself in a topic level.
fn must_escape(ch: char) -> bool {
    let code = ch as u32;
    matches!(ch, '/' | '+' | '#' | '%')
        || code < 0x20
        || (0x7f..=0x9f).contains(&code)
        || (0xfdd0..=0xfdef).contains(&code)
        || code & 0xfffe == 0xfffe
}

fn escape_level(level: &str, last: bool, out: &mut String) {
    if level.is_empty() {
        out.push('%');
        return;
    }
    let start = out.len();
    for ch in level.chars() {
        if must_escape(ch) {
            let mut buffer = [0u8; 4];
            for byte in ch.encode_utf8(&mut buffer).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(ch);
        }
    }
    if last && ATTRIBUTES.contains(&&out[start..]) {
        // `x.set` must not become the change-request topic of `x`.
        let first = out.as_bytes()[start];
        out.replace_range(start..start + 1, &format!("%{first:02X}"));
    }
}

/// The name a relative topic stands for, if it is the canonical topic of a name (see
/// the module's invariant). Topics of other systems that no name maps to (a `.` inside
/// a level, a `%` that is not an escape, an escape that was not needed) give `None`.
pub fn decode(topic: &str) -> Option<String> {
    let name = unescape(topic)?;
    (encode(&name).ok()? == topic).then_some(name)
}

fn unescape(topic: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(topic.len());
    for (position, level) in topic.split('/').enumerate() {
        if position > 0 {
            bytes.push(b'.');
        }
        if level == "%" {
            continue;
        }
        let raw = level.as_bytes();
        let mut index = 0;
        while index < raw.len() {
            if raw[index] == b'%' {
                let hex = raw.get(index + 1..index + 3)?;
                let text = std::str::from_utf8(hex).ok()?;
                if text.bytes().any(|digit| digit.is_ascii_lowercase()) {
                    return None;
                }
                bytes.push(u8::from_str_radix(text, 16).ok()?);
                index += 3;
            } else {
                bytes.push(raw[index]);
                index += 1;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

/// Whether a topic matches an MQTT filter (`+` one level, `#` the rest, including the
/// parent level; wildcards at the start never match `$` topics).
pub fn matches_filter(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match (level, topic_levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (level, Some(topic_level)) if level == topic_level => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// Whether Mosquitto would accept `topic` for a PUBLISH (used by tests and as a last
/// guard before anything is sent).
pub fn is_publishable(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_BYTES
        && topic.matches('/').count() <= MAX_SLASHES
        && !topic
            .chars()
            .any(|ch| matches!(ch, '+' | '#') || (ch != '/' && ch != '%' && must_escape(ch)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[track_caller]
    fn check(name: &str, topic: &str) {
        assert_eq!(encode(name).as_deref(), Ok(topic), "encode {name:?}");
        assert_eq!(decode(topic).as_deref(), Some(name), "decode {topic:?}");
    }

    #[test]
    fn names_map_to_topics() {
        check("temperature", "temperature");
        check("hall.kitchen.temperature", "hall/kitchen/temperature");
        check("a/b", "a%2Fb");
        check("a.b", "a/b");
        check("50%", "50%25");
        check("x+y#z", "x%2By%23z");
        check("nul\0here", "nul%00here");
        check(
            "tab\tand\nnewline\u{7f}\u{85}",
            "tab%09and%0Anewline%7F%C2%85",
        );
        check("$SYS.uptime", "$SYS/uptime");
        check("", "%");
        check("a..b", "a/%/b");
        check(".a.", "%/a/%");
        check("x.set", "x/%73et");
        check("x.get", "x/%67et");
        check("x.metadata", "x/%6Detadata");
        check("x.availability", "x/%61vailability");
        check("set", "%73et");
        check("set.x", "set/x");
        check("bridge.state", "%62ridge/state");
        check("bridge", "bridge");
        check("bridge.state.x", "bridge/state/x");
        check("Küche.Temperatur °C", "Küche/Temperatur °C");
        check("__proto__", "__proto__");
        check("a:b c", "a:b c");
        check(
            "\u{fdd0}\u{fffe}\u{1ffff}",
            "%EF%B7%90%EF%BF%BE%F0%9F%BF%BF",
        );
    }

    #[test]
    fn too_many_levels_keep_their_dots_in_one_level() {
        let name = vec!["l"; 202].join(".");
        let topic = encode(&name).unwrap();
        assert!(!topic.contains('/'));
        assert_eq!(topic, vec!["l"; 202].join("%2E"));
        assert_eq!(decode(&topic), Some(name));
        // A name with few levels never takes the one-level form.
        assert_eq!(decode("a%2Eb"), None);
    }

    #[test]
    fn deep_names_with_empty_levels_are_reversible() {
        // The one-level form has no level of its own to mark as empty: empty levels
        // are simply nothing between two escaped dots.
        let topics = Topics::new("regd/gw").unwrap();
        for name in [".".repeat(300), ["a", "", "b"].repeat(100).join(".")] {
            let topic = encode(&name).unwrap();
            assert!(!topic.contains('/'), "one level: {topic}");
            assert_eq!(decode(&topic), Some(name.clone()), "{topic}");
            let under = topics.topic(&name).unwrap();
            for (attribute, kind) in [
                ("", Attribute::State),
                ("/set", Attribute::Set),
                ("/get", Attribute::Get),
            ] {
                assert_eq!(
                    topics.classify(&format!("{under}{attribute}")),
                    Some((name.clone(), kind))
                );
            }
        }
        assert_eq!(encode(&".".repeat(201)).unwrap(), "%2E".repeat(201));
    }

    #[test]
    fn names_ending_in_bridge_state_never_look_like_a_bridge() {
        // Under any prefix, and read back from the full topic by an importer (who does
        // not know where the exporting bridge's prefix ends).
        check("x.bridge.state", "x/%62ridge/state");
        check("regd.gw.bridge.state", "regd/gw/%62ridge/state");
        let topics = Topics::new("regd/gw").unwrap();
        for name in ["bridge.state", "x.bridge.state"] {
            let topic = topics.topic(name).unwrap();
            assert!(!topic.ends_with("/bridge/state"), "{topic}");
            assert_eq!(decode(&topic), Some(format!("regd.gw.{name}")), "{topic}");
        }
        assert_eq!(decode("regd/gw/x/bridge/state"), None);
    }

    #[test]
    fn topics_no_name_maps_to_decode_to_nothing() {
        for topic in [
            "a.b", "50%", "%2", "%zz", "%2f", "x%41", "a/%7/b", "x/set%", "%FF", "x/%2E/y",
        ] {
            assert_eq!(decode(topic), None, "{topic:?}");
        }
    }

    #[test]
    fn the_prefix_is_checked() {
        for prefix in ["", "$SYS/x", "a//b", "a/", "/a", "a/+", "a/#", "a\0b"] {
            assert!(Topics::new(prefix).is_err(), "{prefix:?}");
        }
        let topics = Topics::new("regd/gw-1").unwrap();
        assert_eq!(topics.bridge_state(), "regd/gw-1/bridge/state");
        assert_eq!(topics.filter(), "regd/gw-1/#");
        assert_eq!(topics.topic("hall.lamp").unwrap(), "regd/gw-1/hall/lamp");
    }

    #[test]
    fn topics_under_the_prefix_are_classified() {
        let topics = Topics::new("regd/gw").unwrap();
        let cases = [
            ("regd/gw/hall/lamp", Some(("hall.lamp", Attribute::State))),
            ("regd/gw/hall/lamp/set", Some(("hall.lamp", Attribute::Set))),
            ("regd/gw/hall/lamp/get", Some(("hall.lamp", Attribute::Get))),
            (
                "regd/gw/hall/lamp/metadata",
                Some(("hall.lamp", Attribute::Metadata)),
            ),
            (
                "regd/gw/hall/lamp/availability",
                Some(("hall.lamp", Attribute::Availability)),
            ),
            ("regd/gw/x/%73et", Some(("x.set", Attribute::State))),
            ("regd/gw/x/%73et/set", Some(("x.set", Attribute::Set))),
            ("regd/gw/set", None),
            ("regd/gw/bridge/state", None),
            (
                "regd/gw/%62ridge/state",
                Some(("bridge.state", Attribute::State)),
            ),
            ("regd/gw/a.b/set", None),
            ("regd/gwx/a", None),
            ("regd/gw", None),
            ("other/a", None),
        ];
        for (topic, expected) in cases {
            let got = topics.classify(topic);
            assert_eq!(
                got.as_ref()
                    .map(|(name, attribute)| (name.as_str(), *attribute)),
                expected,
                "{topic:?}"
            );
        }
    }

    #[test]
    fn limits_are_kept_with_the_prefix() {
        let topics = Topics::new("regd/gw").unwrap();
        // 198 levels fit with the prefix (2 slashes) and /availability (1 slash).
        let deep = vec!["l"; 198].join(".");
        let topic = topics.topic(&deep).unwrap();
        assert!(is_publishable(&Topics::attribute(&topic, AVAILABILITY)));
        assert_eq!(topic.matches('/').count(), 199);
        let deeper = vec!["l"; 199].join(".");
        let topic = topics.topic(&deeper).unwrap();
        assert_eq!(topic.matches('/').count(), 2, "one level: {topic}");
        assert_eq!(topics.classify(&topic).map(|(name, _)| name), Some(deeper));
        let long = "x".repeat(MAX_TOPIC_BYTES);
        assert!(topics.topic(&long).is_err());
        let fits = "x".repeat(MAX_TOPIC_BYTES - "regd/gw/".len() - LONGEST_SUFFIX);
        assert!(is_publishable(&Topics::attribute(
            &topics.topic(&fits).unwrap(),
            AVAILABILITY
        )));
    }

    #[test]
    fn filters_match_as_mqtt_says() {
        let cases = [
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/+/c", "a/b/c", true),
            ("+/b", "a/b", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/b", "a/b", true),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
            ("a/+", "a/", true),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(matches_filter(filter, topic), expected, "{filter} {topic}");
        }
    }

    proptest! {
        #[test]
        fn the_mapping_is_reversible_and_publishable(name in "(\\PC|[./%+#$\\x00-\\x1f]){0,40}") {
            let topics = Topics::new("regd/gw").unwrap();
            let topic = topics.topic(&name).unwrap();
            prop_assert!(is_publishable(&topic), "{:?}", topic);
            prop_assert!(is_publishable(&Topics::attribute(&topic, AVAILABILITY)));
            prop_assert_eq!(topics.classify(&topic), Some((name.clone(), Attribute::State)));
            for (attribute, kind) in [(SET, Attribute::Set), (METADATA, Attribute::Metadata)] {
                let attribute_topic = Topics::attribute(&topic, attribute);
                prop_assert_eq!(topics.classify(&attribute_topic), Some((name.clone(), kind)));
            }
        }

        #[test]
        fn deep_names_are_reversible_and_publishable(
            levels in proptest::collection::vec("(|a|%|/|set|bridge|state)", 190..260)
        ) {
            let name = levels.join(".");
            let topics = Topics::new("regd/gw").unwrap();
            let topic = topics.topic(&name).unwrap();
            prop_assert!(is_publishable(&Topics::attribute(&topic, AVAILABILITY)));
            prop_assert_eq!(topics.classify(&topic), Some((name.clone(), Attribute::State)));
            let relative = encode(&name).unwrap();
            prop_assert_eq!(decode(&relative), Some(name));
        }

        #[test]
        fn the_mapping_is_injective(a in "[a./%s]{0,8}(set|get)?", b in "[a./%s]{0,8}(set|get)?") {
            if a != b {
                prop_assert_ne!(encode(&a), encode(&b));
            }
        }

        #[test]
        fn any_topic_decodes_to_at_most_the_name_that_encodes_to_it(topic in "[a-c./%0-9A-F]{0,12}") {
            if let Some(name) = decode(&topic) {
                prop_assert_eq!(encode(&name).unwrap(), topic);
            }
        }
    }
}
