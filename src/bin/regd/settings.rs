//! regd's settings as data: every flag with its `REGD_*` variable, help and default,
//! and how they become a `Config`. A flag wins over its variable, which wins over the
//! default. Every default is read from `Config::default()` (or, for the log level, the
//! one constant here), so `--help`, the man page and `/etc/default/regd` — which tests
//! compare with `--help` — cannot drift from what regd does.

use std::ffi::OsString;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use log::LevelFilter;
use regd::server::{Config, access};

use crate::error::{Error, TokenProblem};

/// One setting: its flag, environment variable, help and default.
pub struct Setting {
    pub flag: &'static str,
    pub env: &'static str,
    pub help: &'static str,
    /// The default as written on the command line, read from the default config.
    pub default: fn(&Config) -> String,
}

/// The log level when none is given.
const DEFAULT_LOG_LEVEL: &str = "info";

fn duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

pub const SETTINGS: &[Setting] = &[
    Setting {
        flag: "--addr",
        env: "REGD_ADDR",
        help: "listen address, HOST:PORT; :PORT listens on every interface, port 0 picks a free one",
        default: |config| config.address.clone(),
    },
    Setting {
        flag: "--log-level",
        env: "REGD_LOG_LEVEL",
        help: "error, warn, info or debug (debug logs every request)",
        default: |_| DEFAULT_LOG_LEVEL.to_string(),
    },
    Setting {
        flag: "--default-ttl",
        env: "REGD_DEFAULT_TTL",
        help: "ttl of registers published without one",
        default: |config| duration(config.service.default_ttl),
    },
    Setting {
        flag: "--max-wait",
        env: "REGD_MAX_WAIT",
        help: "longest long poll honoured; longer waits are shortened",
        default: |config| duration(config.service.max_wait),
    },
    Setting {
        flag: "--read-timeout",
        env: "REGD_READ_TIMEOUT",
        help: "time a client has to send a request head or body, and how long an idle keep-alive connection is kept",
        default: |config| duration(config.http.read_timeout),
    },
    Setting {
        flag: "--write-timeout",
        env: "REGD_WRITE_TIMEOUT",
        help: "time an answer may take to write",
        default: |config| duration(config.http.write_timeout),
    },
    Setting {
        flag: "--max-connections",
        env: "REGD_MAX_CONNECTIONS",
        help: "connections served at once (one thread each); more are answered 503",
        default: |config| config.max_connections.to_string(),
    },
    Setting {
        flag: "--max-polls",
        env: "REGD_MAX_POLLS",
        help: "long polls held at once; more are answered 503",
        default: |config| config.service.max_polls.to_string(),
    },
    Setting {
        flag: "--max-registers",
        env: "REGD_MAX_REGISTERS",
        help: "registers that may exist at once",
        default: |config| config.service.limits.max_registers.to_string(),
    },
    Setting {
        flag: "--max-pending",
        env: "REGD_MAX_PENDING",
        help: "change requests that may wait for providers at once",
        default: |config| config.service.limits.max_pending_requests.to_string(),
    },
    Setting {
        flag: "--max-body",
        env: "REGD_MAX_BODY",
        help: "largest request body, in bytes",
        default: |config| config.http.max_body_bytes.to_string(),
    },
    Setting {
        flag: "--max-head",
        env: "REGD_MAX_HEAD",
        help: "largest request head (request line and headers), in bytes",
        default: |config| config.http.max_head_bytes.to_string(),
    },
    Setting {
        flag: "--max-uri",
        env: "REGD_MAX_URI",
        help: "longest request target (path and query), in bytes",
        default: |config| config.http.max_uri_bytes.to_string(),
    },
    Setting {
        flag: "--max-name",
        env: "REGD_MAX_NAME",
        help: "longest register name, in bytes",
        default: |config| config.service.name_limits.max_name_bytes.to_string(),
    },
    Setting {
        flag: "--max-names",
        env: "REGD_MAX_NAMES",
        help: "most register names in one request",
        default: |config| config.service.name_limits.max_names.to_string(),
    },
    Setting {
        flag: "--token-file",
        env: "REGD_TOKEN_FILE",
        help: "turns access control on: a file of `TOKEN ROLE [LABEL]` lines (roles provider, consumer, admin); must not be world-readable",
        default: |_| String::new(),
    },
    Setting {
        flag: "--trust-loopback",
        env: "REGD_TRUST_LOOPBACK",
        help: "with tokens, requests from a loopback peer need none (decided by the TCP peer address)",
        default: |config| config.service.access.trust_loopback.to_string(),
    },
    Setting {
        flag: "--open-metrics",
        env: "REGD_OPEN_METRICS",
        help: "with tokens, /metrics needs none",
        default: |config| config.service.access.open_metrics.to_string(),
    },
    Setting {
        flag: "--state-dir",
        env: "REGD_STATE_DIR",
        help: "keeps registers, change requests and revisions across restarts in this directory (created if missing); by default $STATE_DIRECTORY when systemd sets it (StateDirectory=), else none: memory only. '' or --no-state switches it off",
        default: |config| {
            (config.state.directory.as_ref())
                .map_or_else(String::new, |directory| directory.display().to_string())
        },
    },
    Setting {
        flag: "--save-interval",
        env: "REGD_SAVE_INTERVAL",
        help: "with a state directory, how often the state is saved when something changed (and at every clean stop)",
        default: |config| duration(config.state.save_interval),
    },
    Setting {
        flag: "--web",
        env: "REGD_WEB",
        help: "serve the web dashboard at / (true or false); --no-web is --web false",
        default: |config| config.service.web.to_string(),
    },
];

/// `regd --help`.
pub fn help() -> String {
    let defaults = Config::default();
    let mut text = format!(
        "regd {} — the register daemon\n\n\
         Usage: regd [OPTIONS]\n\n\
         Serves registers over HTTP (see README.md). Prints `listening on http://ADDR` once bound.\n\
         Every option may also be set through its environment variable.\n\nOptions:\n",
        env!("CARGO_PKG_VERSION")
    );
    for setting in SETTINGS {
        text.push_str(&format!(
            "  {:<18} {}\n  {:<18} [env {}] [default {}]\n",
            setting.flag,
            setting.help,
            "",
            setting.env,
            (setting.default)(&defaults)
        ));
    }
    text.push_str("  -h, --help         print this help\n  -V, --version      print the version\n");
    text
}

/// The command line and environment, read setting by setting.
pub struct Settings {
    args: pico_args::Arguments,
    defaults: Config,
}

impl Settings {
    pub fn new(args: pico_args::Arguments) -> Settings {
        Settings {
            args,
            defaults: Config::default(),
        }
    }

    /// Refuses whatever the command line still holds.
    pub fn finish(self) -> Result<(), Error> {
        match self.args.finish().first() {
            Some(extra) => Err(Error::Usage(format!(
                "unexpected argument {:?}",
                extra.to_string_lossy()
            ))),
            None => Ok(()),
        }
    }

    /// A flag's value, else its environment variable, else its default.
    fn raw(&mut self, flag: &'static str) -> Result<String, Error> {
        let setting = SETTINGS
            .iter()
            .find(|setting| setting.flag == flag)
            .ok_or_else(|| Error::Usage(format!("unknown setting {flag}")))?;
        let from_flag: Option<String> = self
            .args
            .opt_value_from_str(flag)
            .map_err(|error| Error::Usage(format!("{flag}: {error}")))?;
        Ok(from_flag
            .or_else(|| {
                std::env::var(setting.env)
                    .ok()
                    .filter(|value| !value.is_empty())
            })
            .unwrap_or_else(|| (setting.default)(&self.defaults)))
    }

    /// A boolean flag: present, or its variable set to true/1/yes.
    fn switch(&mut self, flag: &'static str) -> Result<bool, Error> {
        Ok(self.args.contains(flag) || self.boolean_value(flag)?)
    }

    fn number<T: FromStr>(&mut self, flag: &'static str) -> Result<T, Error> {
        let text = self.raw(flag)?;
        text.trim()
            .parse()
            .map_err(|_| Error::Usage(format!("{flag} must be a whole number, got {text:?}")))
    }

    fn positive(&mut self, flag: &'static str) -> Result<usize, Error> {
        match self.number(flag)? {
            0 => Err(Error::Usage(format!("{flag} must be at least 1"))),
            value => Ok(value),
        }
    }

    fn duration(&mut self, flag: &'static str) -> Result<Duration, Error> {
        let text = self.raw(flag)?;
        match humantime::parse_duration(text.trim()) {
            Ok(duration) if !duration.is_zero() => Ok(duration),
            Ok(_) => Err(Error::Usage(format!("{flag} must be longer than 0"))),
            Err(error) => Err(Error::Usage(format!(
                "{flag} must be a duration such as 10s or 5m, got {text:?} ({error})"
            ))),
        }
    }

    /// A boolean setting that takes a value: `--web false`, or its variable.
    fn boolean_value(&mut self, flag: &'static str) -> Result<bool, Error> {
        let text = self.raw(flag)?;
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(true),
            "false" | "off" | "no" | "0" => Ok(false),
            _ => Err(Error::Usage(format!(
                "{flag} (or its variable) must be true or false, got {text:?}"
            ))),
        }
    }

    pub fn log_level(&mut self) -> Result<LevelFilter, Error> {
        let text = self.raw("--log-level")?;
        match text.to_ascii_lowercase().as_str() {
            "error" => Ok(LevelFilter::Error),
            "warn" | "warning" => Ok(LevelFilter::Warn),
            "info" => Ok(LevelFilter::Info),
            "debug" => Ok(LevelFilter::Debug),
            "trace" => Ok(LevelFilter::Trace),
            "off" => Ok(LevelFilter::Off),
            _ => Err(Error::Usage(format!(
                "--log-level must be error, warn, info or debug, got {text:?}"
            ))),
        }
    }

    pub fn config(&mut self) -> Result<Config, Error> {
        let mut config = Config {
            address: self.raw("--addr")?,
            ..Config::default()
        };
        config.service.default_ttl = self.duration("--default-ttl")?;
        config.service.max_wait = self.duration("--max-wait")?;
        config.http.read_timeout = self.duration("--read-timeout")?;
        config.http.write_timeout = self.duration("--write-timeout")?;
        config.max_connections = self.positive("--max-connections")?;
        config.service.max_polls = self.positive("--max-polls")?;
        config.service.limits.max_registers = self.positive("--max-registers")?;
        config.service.limits.max_pending_requests = self.positive("--max-pending")?;
        config.http.max_body_bytes = self.number("--max-body")?;
        config.http.max_head_bytes = self.positive("--max-head")?;
        config.http.max_uri_bytes = self.positive("--max-uri")?;
        config.service.name_limits.max_name_bytes = self.positive("--max-name")?;
        config.service.name_limits.max_names = self.positive("--max-names")?;
        config.service.first_revision = unpredictable_revision();
        config.service.access.trust_loopback = self.switch("--trust-loopback")?;
        config.service.access.open_metrics = self.switch("--open-metrics")?;
        let token_file = self.raw("--token-file")?;
        if !token_file.is_empty() {
            config.service.access.tokens = load_tokens(&token_file)?;
        }
        // `--no-web` wins over `--web` and REGD_WEB: it is the one way to say "off"
        // without a value.
        let no_web = self.args.contains("--no-web");
        config.service.web = !no_web && self.boolean_value("--web")?;
        config.state.save_interval = self.duration("--save-interval")?;
        config.state.directory = self.state_directory()?;
        Ok(config)
    }

    /// `--no-state` (off), else `--state-dir`, else `REGD_STATE_DIR`, else the first of
    /// systemd's `$STATE_DIRECTORY`. An empty one is off: unlike other settings, an empty
    /// `REGD_STATE_DIR=` counts, as the way to say "off" in /etc/default/regd.
    fn state_directory(&mut self) -> Result<Option<PathBuf>, Error> {
        let no_state = self.args.contains("--no-state");
        let usage = |error: pico_args::Error| Error::Usage(format!("--state-dir: {error}"));
        // `--state-dir DIR` takes any path, UTF-8 or not; `--state-dir=DIR`, as every
        // other flag accepts it, only a UTF-8 one (pico-args reads that form as text,
        // and refuses an empty one, which here means off as `--state-dir ''` does).
        let from_flag: Option<OsString> = if self.args.contains("--state-dir=") {
            Some(OsString::new())
        } else {
            match self
                .args
                .opt_value_from_os_str("--state-dir", |text| {
                    Ok::<_, std::convert::Infallible>(text.to_os_string())
                })
                .map_err(usage)?
            {
                Some(directory) => Some(directory),
                None => (self.args.opt_value_from_str::<_, String>("--state-dir"))
                    .map_err(usage)?
                    .map(OsString::from),
            }
        };
        let chosen = from_flag
            .or_else(|| std::env::var_os("REGD_STATE_DIR"))
            .or_else(|| {
                let systemd = std::env::var_os("STATE_DIRECTORY")?;
                // Several StateDirectory= entries arrive colon-separated.
                let first = systemd.to_string_lossy().split(':').next()?.to_string();
                Some(first.into())
            });
        Ok(chosen
            .filter(|directory| !no_state && !directory.is_empty())
            .map(PathBuf::from))
    }
}

/// Reads the token file, refusing one that every user could read.
fn load_tokens(path: &str) -> Result<Vec<access::Token>, Error> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |problem| Error::TokenFile {
        path: path.to_string(),
        problem,
    };
    let metadata =
        std::fs::metadata(path).map_err(|error| fail(TokenProblem::Unreadable(error)))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        return Err(fail(TokenProblem::WorldReadable(mode)));
    }
    let text =
        std::fs::read_to_string(path).map_err(|error| fail(TokenProblem::Unreadable(error)))?;
    access::parse_tokens(&text).map_err(|error| fail(TokenProblem::Invalid(error)))
}

/// A starting revision that differs from run to run, so that an `index` a client kept
/// from an earlier run is (almost surely) outside this run's range and answered at
/// once. Kept below 2^50 so JavaScript clients hold it exactly.
fn unpredictable_revision() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(std::process::id().into());
    (hasher.finish() >> 14) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_named_once_and_shows_its_default() {
        let mut flags = std::collections::HashSet::new();
        let mut variables = std::collections::HashSet::new();
        let help = help();
        let defaults = Config::default();
        for setting in SETTINGS {
            assert!(flags.insert(setting.flag), "{} twice", setting.flag);
            assert!(variables.insert(setting.env), "{} twice", setting.env);
            assert!(setting.env.starts_with("REGD_"), "{}", setting.env);
            let shown = format!(
                "[env {}] [default {}]",
                setting.env,
                (setting.default)(&defaults)
            );
            assert!(help.contains(&shown), "{shown}");
        }
        // The defaults the daemon serves with, as the help shows them.
        assert!(help.contains("[env REGD_MAX_NAME] [default 1024]"));
        assert!(help.contains("[env REGD_MAX_WAIT] [default 10m]"));
    }
}
