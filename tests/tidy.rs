//! House rules, checked under `cargo test` so they hold on every machine and not only
//! in CI:
//! - no test sleeps to wait: a pause inside a deadline-bounded polling loop is marked
//!   `// sleep-ok` on its line; any other `sleep(` in test code (under `tests/`, and
//!   the test modules and test files of `src/`) fails;
//! - ARCHITECTURE.md's code map lists every file under `src/` exactly once, and lists
//!   no file that does not exist;
//! - no test skips silently: a test that cannot run here skips through
//!   `support::skip_unless`, naming a `REGD_REQUIRE_*` switch, and every such switch is
//!   exported by `.ci/run`, where a missing tool then fails the test;
//! - the top folder holds only the project's own entries (no stray output committed);
//! - the protocol is cited as `docs/protocol.md`, which users have, never as the
//!   contract outside the repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Folders that hold what builds, package managers and fuzzers write, never the
/// project's own files: not walked.
const GENERATED: &[&str] = &["target", "node_modules", "corpus", "artifacts"];

/// Every file below `dir`, as paths relative to the project root, sorted; generated
/// and hidden folders are left out.
fn files_below(dir: &str) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                if !name.starts_with('.') && !GENERATED.contains(&name.as_ref()) {
                    walk(root, &path, out);
                }
            } else {
                let relative = path.strip_prefix(root).expect("below the root");
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let root = root();
    let mut out = Vec::new();
    walk(&root, &root.join(dir), &mut out);
    out
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The lines of `path` that are test code, numbered from 1: all of a file under
/// `tests/` or named `tests.rs` / `*_tests.rs`; in another file of `src/`, everything
/// from a `#[cfg(test)]` module on (test modules close their file by convention).
fn test_lines(path: &str) -> Vec<(usize, String)> {
    let text = read(path);
    let lines: Vec<&str> = text.lines().collect();
    let file_name = Path::new(path).file_name().unwrap().to_string_lossy();
    let whole =
        path.starts_with("tests/") || file_name == "tests.rs" || file_name.ends_with("_tests.rs");
    let start = if whole {
        0
    } else {
        lines
            .windows(2)
            .position(|pair| {
                pair[0].trim_start().starts_with("#[cfg(test)]")
                    && pair[1].trim_start().starts_with("mod ")
                    && pair[1].trim_end().ends_with('{')
            })
            .unwrap_or(lines.len())
    };
    lines
        .iter()
        .enumerate()
        .skip(start)
        .map(|(index, line)| (index + 1, line.to_string()))
        .collect()
}

fn rust_test_sources() -> Vec<String> {
    files_below("tests")
        .into_iter()
        .chain(files_below("src"))
        .filter(|path| path.ends_with(".rs"))
        .collect()
}

#[track_caller]
fn no_violations(rule: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{rule}:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn tests_never_sleep_to_wait() {
    let mut violations = Vec::new();
    for path in rust_test_sources() {
        for (number, line) in test_lines(&path) {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("sleep(") && !line.contains("// sleep-ok") {
                violations.push(format!("{path}:{number}: {}", line.trim()));
            }
        }
    }
    no_violations(
        "tests must wait on readiness, a channel with a deadline or the core's clock; \
         a pause inside a deadline-bounded polling loop is marked // sleep-ok",
        &violations,
    );
}

/// The paths the code map's first column names, with how often each is named. A cell
/// may name several files: a bare `name.rs` after a full path lies in that path's
/// folder (`src/a/b.rs`, `c.rs` names `src/a/c.rs`).
fn code_map() -> BTreeMap<String, usize> {
    let architecture = read("ARCHITECTURE.md");
    let section = architecture
        .split("\n## Code map")
        .nth(1)
        .expect("ARCHITECTURE.md has a \"## Code map\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut named = BTreeMap::new();
    for row in section.lines().filter(|line| line.starts_with("| `")) {
        let cell = row.split('|').nth(1).unwrap_or("");
        let mut folder = String::new();
        for (position, part) in cell.split('`').enumerate() {
            if position % 2 == 0 || part.is_empty() {
                continue;
            }
            let path = if part.contains('/') {
                part.to_string()
            } else {
                format!("{folder}{part}")
            };
            if let Some(end) = path.rfind('/') {
                folder = path[..=end].to_string();
            }
            *named.entry(path).or_insert(0) += 1;
        }
    }
    named
}

#[test]
fn the_code_map_lists_every_source_file_once() {
    let named = code_map();
    let mut violations = Vec::new();
    for file in files_below("src") {
        match named.get(&file) {
            None => violations.push(format!("{file} is missing")),
            Some(1) => {}
            Some(times) => violations.push(format!("{file} is listed {times} times")),
        }
    }
    for path in named.keys() {
        let is_folder = path.ends_with('/');
        if !is_folder && !root().join(path).exists() {
            violations.push(format!("{path} is listed but does not exist"));
        }
    }
    no_violations(
        "ARCHITECTURE.md's code map must list every file under src/ once",
        &violations,
    );
}

#[test]
fn no_test_skips_without_a_switch_that_ci_sets() {
    let ci = read(".ci/run");
    let mut violations = Vec::new();
    let mut switches = Vec::new();
    let scripts = files_below("tests")
        .into_iter()
        .filter(|path| path.ends_with(".sh"));
    let sources = rust_test_sources().into_iter().chain(scripts);
    for path in sources {
        for (number, line) in test_lines(&path) {
            let lower = line.to_ascii_lowercase();
            let prints = lower.contains("eprintln!") || lower.contains("println!");
            if prints && lower.contains("skip") && path != "tests/it/support.rs" {
                violations.push(format!(
                    "{path}:{number}: skips on its own; use support::skip_unless: {}",
                    line.trim()
                ));
            }
            let mut rest = line.as_str();
            while let Some(at) = rest.find("REGD_REQUIRE_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                if name.len() > "REGD_REQUIRE_".len() {
                    switches.push((path.clone(), number, name));
                }
            }
        }
    }
    for (path, number, name) in switches {
        if !ci.contains(&format!("export {name}=1")) {
            violations.push(format!(
                "{path}:{number}: {name} is never set by .ci/run (add `export {name}=1`)"
            ));
        }
    }
    no_violations(
        "a test that cannot run must fail in CI, not skip",
        &violations,
    );
}

/// What the project's top folder holds. A stray file (a test's output, a scratch list,
/// a tool's cache) fails here before it is committed.
const TOP_LEVEL: &[&str] = &[
    ".ci",
    ".gitignore",
    "ARCHITECTURE.md",
    "Cargo.lock",
    "Cargo.toml",
    "LICENSE",
    "README.md",
    "SECURITY.md",
    "benches",
    "docs",
    "fuzz",
    "packaging",
    "src",
    "systemd",
    "tests",
    "web",
];

#[test]
fn the_top_folder_holds_only_the_projects_own_entries() {
    // What could be committed: tracked files, and untracked ones git does not ignore.
    // Without git (a source archive), every entry but the build's outputs.
    let listed = std::process::Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|output| output.status.success() && root().join(".git").exists());
    let entries: Vec<String> = match listed {
        Some(output) => String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|path| path.split('/').next().unwrap_or(path).to_string())
            .collect(),
        None => std::fs::read_dir(root())
            .expect("the project folder")
            .map(|entry| entry.expect("directory entry").file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .filter(|name| !["target", "dist", ".git"].contains(&name.as_str()))
            .collect(),
    };
    let mut violations: Vec<String> = entries
        .into_iter()
        .filter(|name| !TOP_LEVEL.contains(&name.as_str()))
        .map(|name| {
            format!("{name}: not part of the project (ignore it, or add it to TOP_LEVEL in tests/tidy.rs)")
        })
        .collect();
    violations.sort();
    violations.dedup();
    no_violations("the top folder holds only the project", &violations);
}

/// Every text file of the project that a user reads or runs, below `dir`.
fn project_text_files(dir: &str) -> Vec<String> {
    const TEXT: &[&str] = &[
        ".rs", ".md", ".sh", ".toml", ".yaml", ".py", ".js", ".mjs", ".html", ".css", ".txt",
        ".service", ".socket", ".1", ".8", ".c", ".json",
    ];
    files_below(dir)
        .into_iter()
        .filter(|path| TEXT.iter().any(|extension| path.ends_with(extension)))
        .collect()
}

#[test]
fn the_protocol_is_cited_where_users_can_read_it() {
    // Written in pieces, so this file does not cite what it forbids.
    let contract = ["PROTOCOL", ".md"].concat();
    let rule = ["PROTOCOL", " "].concat();
    let outside = ["..", "/shared"].concat();
    let mut files: Vec<String> = ["README.md", "ARCHITECTURE.md", "SECURITY.md", "Cargo.toml"]
        .iter()
        .map(|name| name.to_string())
        .collect();
    for dir in [
        "src",
        "tests",
        "docs",
        "benches",
        "packaging",
        "fuzz",
        "systemd",
        "web",
    ] {
        files.extend(project_text_files(dir));
    }
    let mut violations = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(root().join(&path)) else {
            continue;
        };
        for (index, line) in text.lines().enumerate() {
            let cites_a_rule = line.match_indices(&rule).any(|(at, _)| {
                let next = &line[at + rule.len()..];
                next.starts_with(['A', 'B']) && next[1..].starts_with(|c: char| c.is_ascii_digit())
            });
            if line.contains(&contract) || line.contains(&outside) || cites_a_rule {
                violations.push(format!(
                    "{path}:{}: cite docs/protocol.md instead: {}",
                    index + 1,
                    line.trim()
                ));
            }
        }
    }
    no_violations(
        "the protocol reference users have is docs/protocol.md",
        &violations,
    );
}
