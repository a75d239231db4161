//! Reading the members of a JSON object the client sent — a method's `params` or a
//! tool's `arguments` — one typed member at a time. Invariant: every refusal names the
//! member by its path (`params.uri`, `arguments.ttl`) and says what would be accepted;
//! members stay raw JSON text until read, so a register value keeps its form.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

/// A refused member, with a message naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid(pub String);

/// The members of one JSON object.
pub struct Members {
    /// The object's path in messages: `params` or `arguments`.
    path: &'static str,
    members: BTreeMap<String, Box<RawValue>>,
}

impl Members {
    /// The members of `raw`, which must be an object; absent or `null` is an empty one.
    pub fn of(raw: Option<&RawValue>, path: &'static str) -> Result<Members, Invalid> {
        let members = match raw {
            None => BTreeMap::new(),
            Some(raw) if raw.get() == "null" => BTreeMap::new(),
            Some(raw) => serde_json::from_str(raw.get()).map_err(|_| {
                Invalid(format!(
                    "{path} must be an object, got {}",
                    shown(raw.get())
                ))
            })?,
        };
        Ok(Members { path, members })
    }

    /// The member `key` as an object of its own (`arguments` inside `params`).
    pub fn object(&self, key: &str, path: &'static str) -> Result<Members, Invalid> {
        Members::of(self.raw(key), path)
    }

    /// The raw JSON text of `key`, if present.
    pub fn raw(&self, key: &str) -> Option<&RawValue> {
        self.members.get(key).map(|raw| &**raw)
    }

    /// An optional string member.
    pub fn string(&self, key: &str) -> Result<Option<String>, Invalid> {
        self.typed(key, "a string")
    }

    /// A string member that must be there; `what` says what it is, for the message.
    pub fn required_string(&self, key: &str, what: &str) -> Result<String, Invalid> {
        self.string(key)?.ok_or_else(|| {
            Invalid(format!(
                "{}.{key} is missing: it is {what} (a string)",
                self.path
            ))
        })
    }

    /// An optional whole number from `min` to `max`.
    pub fn count(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, Invalid> {
        let Some(raw) = self.raw(key) else {
            return Ok(None);
        };
        match serde_json::from_str::<u64>(raw.get()) {
            Ok(number) if (min..=max).contains(&number) => Ok(Some(number)),
            _ => Err(Invalid(format!(
                "{}.{key} must be a whole number from {min} to {max}, got {}",
                self.path,
                shown(raw.get())
            ))),
        }
    }

    /// An optional array of strings.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, Invalid> {
        self.typed(key, "an array of strings")
    }

    /// Refuses members other than `known`; a misspelt argument (`tll` for `ttl`) must
    /// not be ignored by a tool that acts on devices.
    pub fn only(&self, known: &[&str], owner: &str) -> Result<(), Invalid> {
        match self
            .members
            .keys()
            .find(|key| !known.contains(&key.as_str()))
        {
            None => Ok(()),
            Some(key) => Err(Invalid(format!(
                "{}.{key} is not an input of {owner}; its inputs are {}",
                self.path,
                match known {
                    [] => "none".to_string(),
                    _ => known.join(", "),
                }
            ))),
        }
    }

    fn typed<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        kind: &str,
    ) -> Result<Option<T>, Invalid> {
        match self.raw(key) {
            None => Ok(None),
            Some(raw) => serde_json::from_str(raw.get()).map(Some).map_err(|_| {
                Invalid(format!(
                    "{}.{key} must be {kind}, got {}",
                    self.path,
                    shown(raw.get())
                ))
            }),
        }
    }
}

/// The most characters of a refused input that a message quotes.
pub const SHOWN: usize = 60;

/// JSON text for a message, shortened: a refusal must not flood the model's context
/// with the value it refuses.
pub fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str) -> Members {
        let raw = RawValue::from_string(text.to_string()).unwrap();
        Members::of(Some(&raw), "arguments").unwrap()
    }

    #[test]
    fn members_are_read_by_type_and_named_when_refused() {
        let args = members(r#"{"name":"a","limit":5,"names":["x","y"],"bad":7,"neg":-1}"#);
        assert_eq!(args.string("name"), Ok(Some("a".to_string())));
        assert_eq!(args.string("missing"), Ok(None));
        assert_eq!(
            args.string("bad"),
            Err(Invalid("arguments.bad must be a string, got 7".to_string()))
        );
        assert_eq!(
            args.required_string("missing", "the register's name"),
            Err(Invalid(
                "arguments.missing is missing: it is the register's name (a string)".to_string()
            ))
        );
        assert_eq!(args.count("limit", 1, 10), Ok(Some(5)));
        assert_eq!(
            args.count("neg", 1, 10),
            Err(Invalid(
                "arguments.neg must be a whole number from 1 to 10, got -1".to_string()
            ))
        );
        assert_eq!(
            args.strings("names"),
            Ok(Some(vec!["x".to_string(), "y".to_string()]))
        );
        assert_eq!(
            args.only(&["name"], "get_register").unwrap_err().0,
            "arguments.bad is not an input of get_register; its inputs are name"
        );
        let raw = RawValue::from_string("[1]".to_string()).unwrap();
        assert_eq!(
            Members::of(Some(&raw), "params").err(),
            Some(Invalid("params must be an object, got [1]".to_string()))
        );
        assert_eq!(
            shown(&format!("\"{}\"", "é".repeat(100))),
            format!("\"{}…", "é".repeat(59))
        );
    }
}
