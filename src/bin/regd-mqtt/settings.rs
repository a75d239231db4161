//! regd-mqtt's settings as data: each one's flag, environment variable, default and
//! help in [`SETTINGS`] (the one source that `--help`, the man page test and the
//! packaged /etc/default/regd-mqtt are checked against), and their parsing into a
//! [`Config`]. Invariants: a flag wins over its variable, which wins over the default;
//! secrets come only from files (a token file any user may read is refused, a password
//! file taken with a warning).

use std::time::Duration;

use log::LevelFilter;

use crate::session::Broker;
use crate::topics::Topics;

/// One setting.
pub struct Setting {
    pub flag: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub value: &'static str,
    pub help: &'static str,
}

pub const SETTINGS: &[Setting] = &[
    Setting {
        flag: "--registry",
        env: "REGD_MQTT_REGISTRY",
        default: "http://localhost:8080",
        value: "URL",
        help: "the regd to bridge; without this flag or variable, $REGISTRY if set, as for regctl",
    },
    Setting {
        flag: "--token-file",
        env: "REGD_MQTT_TOKEN_FILE",
        default: "",
        value: "PATH",
        help: "regd's access token (an admin token: the bridge reads, provides and requests), the first word of the file",
    },
    Setting {
        flag: "--broker",
        env: "REGD_MQTT_BROKER",
        default: "mqtt://localhost:1883",
        value: "URL",
        help: "the MQTT broker, mqtt://[USER@]HOST[:PORT]",
    },
    Setting {
        flag: "--username",
        env: "REGD_MQTT_USERNAME",
        default: "",
        value: "NAME",
        help: "user name for the broker",
    },
    Setting {
        flag: "--password-file",
        env: "REGD_MQTT_PASSWORD_FILE",
        default: "",
        value: "PATH",
        help: "file whose first line is the broker password (never on the command line); keep it readable by its owner only",
    },
    Setting {
        flag: "--gateway-id",
        env: "REGD_MQTT_GATEWAY_ID",
        default: "",
        value: "ID",
        help: "this gateway's name in topics and in Home Assistant; empty: the host name",
    },
    Setting {
        flag: "--prefix",
        env: "REGD_MQTT_PREFIX",
        default: "",
        value: "TOPIC",
        help: "topic under which registers are published; empty: regd/<gateway-id>. The MQTT client id is derived from it",
    },
    Setting {
        flag: "--discovery",
        env: "REGD_MQTT_DISCOVERY",
        default: "",
        value: "KIND",
        help: "homeassistant: publish Home Assistant MQTT discovery; empty: none",
    },
    Setting {
        flag: "--discovery-prefix",
        env: "REGD_MQTT_DISCOVERY_PREFIX",
        default: "homeassistant",
        value: "TOPIC",
        help: "Home Assistant's discovery prefix",
    },
    Setting {
        flag: "--discovery-remove-after",
        env: "REGD_MQTT_DISCOVERY_REMOVE_AFTER",
        default: "10m",
        value: "DURATION",
        help: "how long a register must be gone before its Home Assistant entity is removed (it shows unavailable meanwhile)",
    },
    Setting {
        flag: "--import",
        env: "REGD_MQTT_IMPORT",
        default: "",
        value: "FILTER",
        help: "MQTT topic filter whose messages become registers, such as 'zigbee2mqtt/#'; repeatable (the variable takes a space-separated list)",
    },
    Setting {
        flag: "--import-ttl",
        env: "REGD_MQTT_IMPORT_TTL",
        default: "30s",
        value: "DURATION",
        help: "ttl of imported registers; they are refreshed while the broker is connected and expire after it goes away",
    },
    Setting {
        flag: "--keepalive",
        env: "REGD_MQTT_KEEPALIVE",
        default: "30s",
        value: "DURATION",
        help: "MQTT keep-alive; a broker silent for 1.5 times this is taken as gone",
    },
    Setting {
        flag: "--max-payload",
        env: "REGD_MQTT_MAX_PAYLOAD",
        default: "1048576",
        value: "BYTES",
        help: "largest MQTT message taken (topic and payload); larger ones are skipped with a warning. Keep it at or below regd's --max-body",
    },
    Setting {
        flag: "--log-level",
        env: "REGD_MQTT_LOG_LEVEL",
        default: "info",
        value: "LEVEL",
        help: "error, warn, info or debug",
    },
];

/// Everything the bridge needs to run.
pub struct Config {
    pub registry: String,
    pub token: Option<String>,
    pub broker: Broker,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub gateway_id: String,
    pub topics: Topics,
    pub client_id: String,
    pub discovery: Option<String>,
    pub discovery_prefix: String,
    pub discovery_remove_after: Duration,
    pub imports: Vec<String>,
    pub import_ttl: Duration,
    pub keep_alive: Duration,
    pub max_payload: usize,
    pub log_level: LevelFilter,
    /// Problems worth a warning once the logger runs.
    pub warnings: Vec<String>,
}

/// A usage problem: the message names the flag and what it expects.
#[derive(Debug)]
pub struct Usage(pub String);

/// Reads every setting from `args` and the environment; `env` is the environment
/// (a parameter so that tests need not change the process's own).
pub fn parse(
    args: &mut pico_args::Arguments,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Usage> {
    let mut read = Reader { args, env };
    let registry = match read.explicit("--registry")? {
        Some(url) => url,
        None => env(regd::client::ENV_VAR)
            .map(|url| url.trim().to_string())
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| default("--registry").to_string()),
    };
    let mut warnings = Vec::new();
    let token = match read.text("--token-file")? {
        path if path.is_empty() => None,
        path => {
            let text = read_secret(&path, "--token-file", Readable::Refuse, &mut warnings)?;
            Some(first_word(&text, &path)?)
        }
    };
    let broker = Broker::parse(&read.text("--broker")?).map_err(Usage)?;
    let username = match read.text("--username")? {
        name if name.is_empty() => broker.username.clone(),
        name => Some(name),
    };
    let password = match read.text("--password-file")? {
        path if path.is_empty() => None,
        path => {
            // Taken with a warning: the broker's answer to a wrong password is the
            // clearer lesson, and a bridge that will not start is no bridge at all.
            let text = read_secret(&path, "--password-file", Readable::Warn, &mut warnings)?;
            Some(text.lines().next().unwrap_or("").as_bytes().to_vec())
        }
    };
    if password.is_some() && username.is_none() {
        return Err(Usage(
            "--password-file needs --username (MQTT sends no password without a user name)"
                .to_string(),
        ));
    }
    let gateway_id = match read.text("--gateway-id")? {
        id if id.is_empty() => host_name(),
        id => id,
    };
    // One topic level of the default prefix, and the name of the Home Assistant device.
    if gateway_id.contains(['/', '+', '#']) || gateway_id.chars().any(char::is_control) {
        return Err(Usage(format!(
            "--gateway-id {gateway_id:?} must be a single topic level: no '/', '+', '#' or control characters (use --prefix for a deeper topic)"
        )));
    }
    let prefix = match read.text("--prefix")? {
        prefix if prefix.is_empty() => format!("regd/{gateway_id}"),
        prefix => prefix,
    };
    let topics = Topics::new(&prefix).map_err(Usage)?;
    let discovery = match read.text("--discovery")?.as_str() {
        "" | "none" | "off" => None,
        "homeassistant" => Some("homeassistant".to_string()),
        other => {
            return Err(Usage(format!(
                "--discovery takes homeassistant (or nothing), got {other:?}"
            )));
        }
    };
    let discovery_prefix = read.text("--discovery-prefix")?;
    Topics::new(&discovery_prefix)
        .map_err(|error| Usage(error.replace("--prefix", "--discovery-prefix")))?;
    let discovery_remove_after = read.duration("--discovery-remove-after")?;
    let mut imports: Vec<String> = read.all("--import")?;
    if imports.is_empty() {
        imports = env("REGD_MQTT_IMPORT")
            .map(|list| list.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
    }
    for filter in &imports {
        check_filter(filter)?;
    }
    let import_ttl = read.duration("--import-ttl")?;
    let keep_alive = read.duration("--keepalive")?;
    if keep_alive < Duration::from_secs(1) || keep_alive > Duration::from_secs(65_535) {
        return Err(Usage(
            "--keepalive must be from 1s to 18h12m15s (MQTT counts it in whole seconds)"
                .to_string(),
        ));
    }
    let max_payload = read.number("--max-payload")?;
    let log_level = match read.text("--log-level")?.to_ascii_lowercase().as_str() {
        "error" => LevelFilter::Error,
        "warn" | "warning" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        other => {
            return Err(Usage(format!(
                "--log-level must be error, warn, info or debug, got {other:?}"
            )));
        }
    };
    Ok(Config {
        registry,
        token,
        client_id: client_id(topics.prefix()),
        broker,
        username,
        password,
        gateway_id,
        topics,
        discovery,
        discovery_prefix,
        discovery_remove_after,
        imports,
        import_ttl,
        keep_alive,
        max_payload,
        log_level,
        warnings,
    })
}

fn default(flag: &str) -> &'static str {
    SETTINGS
        .iter()
        .find(|setting| setting.flag == flag)
        .map(|setting| setting.default)
        .unwrap_or("")
}

struct Reader<'a> {
    args: &'a mut pico_args::Arguments,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Reader<'_> {
    fn setting(flag: &str) -> &'static Setting {
        SETTINGS
            .iter()
            .find(|setting| setting.flag == flag)
            .expect("every flag read is in SETTINGS")
    }

    /// The flag's value, else its variable's (when not empty).
    fn explicit(&mut self, flag: &'static str) -> Result<Option<String>, Usage> {
        let setting = Self::setting(flag);
        let from_flag: Option<String> = self
            .args
            .opt_value_from_str(flag)
            .map_err(|error| Usage(format!("{flag}: {error}")))?;
        Ok(from_flag.or_else(|| (self.env)(setting.env).filter(|value| !value.is_empty())))
    }

    fn text(&mut self, flag: &'static str) -> Result<String, Usage> {
        Ok(self
            .explicit(flag)?
            .unwrap_or_else(|| Self::setting(flag).default.to_string()))
    }

    fn all(&mut self, flag: &'static str) -> Result<Vec<String>, Usage> {
        self.args
            .values_from_str(flag)
            .map_err(|error| Usage(format!("{flag}: {error}")))
    }

    fn duration(&mut self, flag: &'static str) -> Result<Duration, Usage> {
        let text = self.text(flag)?;
        match humantime::parse_duration(text.trim()) {
            Ok(duration) if !duration.is_zero() => Ok(duration),
            Ok(_) => Err(Usage(format!("{flag} must be longer than 0"))),
            Err(error) => Err(Usage(format!(
                "{flag} must be a duration such as 30s or 5m, got {text:?} ({error})"
            ))),
        }
    }

    fn number(&mut self, flag: &'static str) -> Result<usize, Usage> {
        let text = self.text(flag)?;
        match text.trim().parse() {
            Ok(0) | Err(_) => Err(Usage(format!(
                "{flag} must be a whole number of at least 1, got {text:?}"
            ))),
            Ok(number) => Ok(number),
        }
    }
}

/// An MQTT topic filter: non-empty, `#` only as a whole last level, `+` only as a
/// whole level.
fn check_filter(filter: &str) -> Result<(), Usage> {
    let levels: Vec<&str> = filter.split('/').collect();
    let valid = !filter.is_empty()
        && filter.len() <= 65_535
        && !filter.contains('\0')
        && levels.iter().enumerate().all(|(position, level)| {
            (*level == "#" && position == levels.len() - 1)
                || *level == "+"
                || !level.contains(['+', '#'])
        });
    if valid {
        Ok(())
    } else {
        Err(Usage(format!(
            "--import {filter:?} is not an MQTT topic filter; + and # stand for whole levels, # only at the end, as in zigbee2mqtt/#"
        )))
    }
}

/// The client id: unique per prefix, so two bridges on one host (or two hosts with one
/// configuration) never take over each other's session, and stable across restarts.
/// Brokers accept 23 characters at least; Mosquitto, EMQX and HiveMQ take longer ones.
pub fn client_id(prefix: &str) -> String {
    let readable: String = prefix
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '-' {
                ch
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    // FNV-1a: the readable part can collide (`a/b`, `a_b`); the hash of the exact
    // prefix keeps ids apart.
    let hash = prefix.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("regd-mqtt-{readable}-{:08x}", hash as u32)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "gateway".to_string())
}

/// A secret file's text. One that every user may read is refused (`Refuse`), as regd
/// refuses its own token file, or taken with a warning (`Warn`), as Mosquitto takes its
/// password files.
fn read_secret(
    path: &str,
    flag: &str,
    readable_by_all: Readable,
    warnings: &mut Vec<String>,
) -> Result<String, Usage> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path)
        .map_err(|error| Usage(format!("{flag}: cannot read {path}: {error}")))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        let problem = format!("{flag}: {path} is readable by every user (mode {mode:o})");
        match readable_by_all {
            Readable::Refuse => {
                return Err(Usage(format!(
                    "{problem}; run `chmod 600 {path}` and start again"
                )));
            }
            Readable::Warn => warnings.push(format!(
                "{problem}; run `chmod 600 {path}` so that only its owner can read the password"
            )),
        }
    }
    std::fs::read_to_string(path)
        .map_err(|error| Usage(format!("{flag}: cannot read {path}: {error}")))
}

/// What to do with a secret file that every user may read.
#[derive(Clone, Copy)]
enum Readable {
    Refuse,
    Warn,
}

fn first_word(text: &str, path: &str) -> Result<String, Usage> {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .and_then(|line| line.split_whitespace().next())
        .map(str::to_string)
        .ok_or_else(|| {
            Usage(format!(
                "--token-file: {path} holds no token; put the token on a line of its own"
            ))
        })
}

/// `--help`.
pub fn help() -> String {
    let mut text = format!(
        "regd-mqtt {} — bridges a regd and an MQTT broker\n\n\
         Usage: regd-mqtt [OPTIONS]\n\n\
         Publishes every register to MQTT (retained), turns <topic>/set messages into change\n\
         requests, imports topics as registers, and optionally announces registers to Home\n\
         Assistant (docs/mqtt.md). Prints `connected to mqtt://HOST:PORT` each time the broker\n\
         accepts it. Every option may also be set through its environment variable.\n\nOptions:\n",
        env!("CARGO_PKG_VERSION")
    );
    for setting in SETTINGS {
        let flag = format!("{} {}", setting.flag, setting.value);
        text.push_str(&format!(
            "  {flag:<34} {}\n  {:<34} [env {}] [default {}]\n",
            setting.help, "", setting.env, setting.default
        ));
    }
    text.push_str(&format!(
        "  {:<34} print this help\n  {:<34} print the version\n",
        "-h, --help", "-V, --version"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Config, Usage> {
        let mut arguments =
            pico_args::Arguments::from_vec(args.iter().map(OsString::from).collect());
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let config = parse(&mut arguments, &lookup)?;
        assert!(arguments.finish().is_empty());
        Ok(config)
    }

    #[test]
    fn defaults_and_their_sources() {
        let config = parse_with(&["--gateway-id", "gw1"], &[]).unwrap();
        assert_eq!(config.registry, "http://localhost:8080");
        assert_eq!(config.broker.url(), "mqtt://localhost:1883");
        assert_eq!(config.topics.prefix(), "regd/gw1");
        assert_eq!(config.import_ttl, Duration::from_secs(30));
        assert_eq!(config.keep_alive, Duration::from_secs(30));
        assert!(config.discovery.is_none());
        assert_eq!(config.discovery_prefix, "homeassistant");
        let config = parse_with(
            &[],
            &[("REGISTRY", "http://r:1"), ("REGD_MQTT_GATEWAY_ID", "g")],
        )
        .unwrap();
        assert_eq!(config.registry, "http://r:1");
        assert_eq!(config.topics.prefix(), "regd/g");
        let config = parse_with(
            &["--registry", "http://flag:3"],
            &[
                ("REGISTRY", "http://r:1"),
                ("REGD_MQTT_REGISTRY", "http://var:2"),
            ],
        )
        .unwrap();
        assert_eq!(config.registry, "http://flag:3");
        let config = parse_with(
            &[],
            &[
                ("REGISTRY", "http://r:1"),
                ("REGD_MQTT_REGISTRY", "http://var:2"),
            ],
        )
        .unwrap();
        assert_eq!(config.registry, "http://var:2");
    }

    #[test]
    fn imports_repeat_or_come_as_a_list() {
        let config = parse_with(
            &["--import", "a/#", "--import", "b/+/c"],
            &[("REGD_MQTT_IMPORT", "x/#")],
        )
        .unwrap();
        assert_eq!(config.imports, ["a/#", "b/+/c"]);
        let config = parse_with(&[], &[("REGD_MQTT_IMPORT", "x/# y/z")]).unwrap();
        assert_eq!(config.imports, ["x/#", "y/z"]);
        for bad in ["", "a/#/b", "a#", "a/b+"] {
            assert!(parse_with(&["--import", bad], &[]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn usage_errors_name_the_setting() {
        let cases: &[(&[&str], &str)] = &[
            (&["--broker", "mqtt://u:secret@h"], "--password-file"),
            (&["--broker", "mqtts://h"], "TLS"),
            (&["--broker", "http://h"], "mqtt://HOST:PORT"),
            (&["--prefix", "a/+"], "--prefix"),
            (
                &["--gateway-id", "a/b"],
                "--gateway-id \"a/b\" must be a single topic level",
            ),
            (&["--gateway-id", "+"], "--gateway-id"),
            (&["--discovery", "openhab"], "--discovery"),
            (&["--keepalive", "0s"], "--keepalive"),
            (&["--import-ttl", "10"], "--import-ttl"),
            (&["--max-payload", "0"], "--max-payload"),
            (
                &["--password-file", "/nonexistent", "--username", "u"],
                "cannot read",
            ),
        ];
        for (args, mentions) in cases {
            let error = parse_with(args, &[])
                .err()
                .unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(error.0.contains(mentions), "{args:?}: {}", error.0);
        }
    }

    #[test]
    fn client_ids_differ_per_prefix_and_stay_put() {
        let a = client_id("regd/a/b");
        assert_eq!(a, client_id("regd/a/b"));
        assert_ne!(a, client_id("regd/a_b"));
        assert!(a.starts_with("regd-mqtt-regd_a_b-"));
    }

    #[test]
    fn broker_urls() {
        let cases = [
            ("mqtt://h", Some(("h", 1883, None))),
            ("mqtt://h:1884/", Some(("h", 1884, None))),
            ("mqtt://user@h:1", Some(("h", 1, Some("user")))),
            ("mqtt://[::1]:1883", Some(("::1", 1883, None))),
            ("mqtt://h:0", None),
            ("mqtt://h:x", None),
            ("mqtt://", None),
            ("mqtt://h/path", None),
        ];
        for (url, expected) in cases {
            let parsed = Broker::parse(url).ok();
            assert_eq!(
                parsed
                    .as_ref()
                    .map(|b| (b.host.as_str(), b.port, b.username.as_deref())),
                expected,
                "{url}"
            );
        }
    }
}
