//! The browser's state: the register table with each register's timing and expiry
//! marker, the flat or tree layout and its collapsed branches, the filter, the
//! selection, the editor and the last change request's outcome, and the connection
//! state. Invariants: the model does no I/O and reads no clock — time comes in as an
//! `Instant`, keys as [`Key`], news from regd as plain calls — and what it wants done
//! goes out as an [`Action`]; the selection is a register or branch *name*, so it stays
//! on the same row across updates, filtering and layout changes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use regd::client::{Detailed, Json, Register};

/// How long a register that expired or was deleted stays on screen, marked.
pub const GONE_FOR: Duration = Duration::from_secs(5);

/// How long a change request may take to show in the register before it is reported
/// as not applied.
pub const APPLY_WITHIN: Duration = Duration::from_secs(3);

/// A removal this close to (or after) the expected expiry counts as an expiry; a
/// register removed earlier was deleted. The expected expiry is at most one details
/// poll old, hence the slack.
const EXPIRY_SLACK: Duration = Duration::from_millis(1500);

/// A key press, as the model understands it (no terminal library types here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// A character typed with Control held.
    Ctrl(char),
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Backspace.
    Backspace,
    /// Delete.
    Delete,
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
    /// Arrow left.
    Left,
    /// Arrow right.
    Right,
    /// Home.
    Home,
    /// End.
    End,
    /// Page up.
    PageUp,
    /// Page down.
    PageDown,
    /// Tab.
    Tab,
}

/// What the model asks the event loop to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave the browser.
    Quit,
    /// Send a change request (docs/protocol.md A8).
    Send {
        /// The register.
        name: String,
        /// The value asked for.
        value: Json,
    },
}

/// How registers are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One row per register, sorted by name.
    Flat,
    /// Names split on `.` into branches that expand and collapse.
    Tree,
}

/// Why a register left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    /// Its ttl ran out.
    Expired,
    /// It was removed before its ttl ran out (deleted, or its regd restarted).
    Deleted,
}

/// One register as the browser knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Value and metadata, as last seen.
    pub register: Register,
    /// The ttl of its last publish, once details arrived.
    pub ttl: Option<Duration>,
    /// When it expires unless refreshed, once details arrived.
    pub expires_at: Option<Instant>,
    /// The revision of its last change, once details arrived.
    pub index: Option<u64>,
    /// Set while it is shown after leaving: why, and when it left.
    pub gone: Option<(Gone, Instant)>,
}

impl Row {
    /// Its time to expiry as shown: a countdown, `gone` markers, or `…` before details.
    pub fn time_left_text(&self, now: Instant) -> String {
        match (self.gone, self.expires_at) {
            (Some((Gone::Expired, _)), _) => "EXPIRED".to_string(),
            (Some((Gone::Deleted, _)), _) => "DELETED".to_string(),
            (None, Some(at)) => format_left(at.saturating_duration_since(now)),
            (None, None) => "…".to_string(),
        }
    }
}

/// A duration left, short: `4.2s` under 10 s, `42s`, `3m05s`, `2h07m`.
pub fn format_left(left: Duration) -> String {
    let secs = left.as_secs();
    if left < Duration::from_secs(10) {
        format!("{}.{}s", secs, left.subsec_millis() / 100)
    } else if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs / 60 % 60)
    }
}

/// Whether regd answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Nothing heard yet.
    Connecting,
    /// The last exchange worked.
    Connected,
    /// The last exchange failed; the client retries by itself.
    Lost {
        /// Why, in words.
        reason: String,
    },
}

/// The value editor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Editor {
    /// The register edited.
    pub name: String,
    /// The JSON text being edited.
    pub text: String,
    /// The cursor, in characters from the start.
    pub cursor: usize,
    /// Why the last submission was refused.
    pub error: Option<String>,
}

impl Editor {
    fn new(name: &str, value: &Json) -> Editor {
        let text = value.to_string();
        Editor {
            name: name.to_string(),
            cursor: text.chars().count(),
            text,
            error: None,
        }
    }

    fn byte_at(&self, cursor: usize) -> usize {
        self.text
            .char_indices()
            .nth(cursor)
            .map_or(self.text.len(), |(at, _)| at)
    }

    fn len(&self) -> usize {
        self.text.chars().count()
    }
}

/// What became of the last change request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Sent; the register has not taken the value yet.
    Waiting,
    /// The register took the value.
    Applied,
    /// The register already held the value when the request was sent.
    Unchanged,
    /// The register did not take the value within [`APPLY_WITHIN`]; what it holds.
    NotApplied {
        /// Its value then, if it exists.
        current: Option<Json>,
    },
    /// Sending failed.
    Failed(String),
}

/// The last change request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRequest {
    /// The register.
    pub name: String,
    /// The value asked for.
    pub value: Json,
    /// When it was sent.
    pub sent_at: Instant,
    /// What became of it.
    pub outcome: Outcome,
}

/// What keys do at the moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Moving around the list.
    Browse,
    /// Typing the filter.
    Filter,
    /// Editing a value.
    Edit(Editor),
}

/// One line of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The full name: a register's name, or a branch's prefix (`a.b`).
    pub key: String,
    /// What to show: the full name (flat) or the last segment (tree).
    pub label: String,
    /// Nesting depth (0 in the flat layout).
    pub depth: usize,
    /// Whether a register has this name.
    pub register: bool,
    /// Whether it has (shown) children in the tree.
    pub branch: bool,
    /// Whether its children are shown.
    pub expanded: bool,
}

/// The browser's whole state.
#[derive(Debug)]
pub struct Model {
    rows: BTreeMap<String, Row>,
    layout: Layout,
    collapsed: BTreeSet<String>,
    filter: String,
    mode: Mode,
    selected: Option<String>,
    position: usize,
    details_pane: bool,
    connection: Connection,
    request: Option<ChangeRequest>,
    notice: Option<String>,
    page: usize,
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

impl Model {
    /// An empty browser: flat layout, no filter, details pane shown.
    pub fn new() -> Model {
        Model {
            rows: BTreeMap::new(),
            layout: Layout::Flat,
            collapsed: BTreeSet::new(),
            filter: String::new(),
            mode: Mode::Browse,
            selected: None,
            position: 0,
            details_pane: true,
            connection: Connection::Connecting,
            request: None,
            notice: None,
            page: 10,
        }
    }

    // ---- news from regd ----

    /// A register was created or changed (or reappeared).
    pub fn changed(&mut self, name: &str, register: Register) {
        self.connection = Connection::Connected;
        if let Some(request) = &mut self.request
            && request.name == name
            && request.value == register.value
            && matches!(
                request.outcome,
                Outcome::Waiting | Outcome::NotApplied { .. }
            )
        {
            request.outcome = Outcome::Applied;
        }
        match self.rows.get_mut(name) {
            Some(row) => {
                if row.gone.take().is_some() {
                    // Back from the dead: its old timing no longer holds.
                    row.expires_at = None;
                    row.ttl = None;
                }
                row.register = register;
            }
            None => {
                self.rows.insert(
                    name.to_string(),
                    Row {
                        register,
                        ttl: None,
                        expires_at: None,
                        index: None,
                        gone: None,
                    },
                );
            }
        }
        self.reselect();
    }

    /// A register expired or was deleted: it stays, marked, for [`GONE_FOR`].
    pub fn removed(&mut self, name: &str, now: Instant) {
        self.connection = Connection::Connected;
        if let Some(row) = self.rows.get_mut(name)
            && row.gone.is_none()
        {
            let expired = row.expires_at.is_some_and(|at| at <= now + EXPIRY_SLACK);
            let why = if expired {
                Gone::Expired
            } else {
                Gone::Deleted
            };
            row.gone = Some((why, now));
        }
    }

    /// Details of registers (docs/protocol.md B7) read at `now`: their timing and revision. Only
    /// registers the consumer reported are updated; the consumer alone decides what
    /// exists, so a details answer that crossed a removal cannot bring a register back.
    pub fn details(&mut self, details: &BTreeMap<String, Detailed>, now: Instant) {
        self.connection = Connection::Connected;
        for (name, detailed) in details {
            let Some(row) = self.rows.get_mut(name) else {
                continue;
            };
            // Answers arrive in the order they were read, so a lower revision than
            // the row's is not stale: regd restarted and counts from elsewhere.
            if row.gone.is_some() {
                continue;
            }
            row.ttl = detailed.ttl;
            row.expires_at = Some(now + detailed.expires_in);
            row.index = Some(detailed.index);
        }
    }

    /// Talking to regd failed; the client retries by itself.
    pub fn failed(&mut self, reason: &str) {
        self.connection = Connection::Lost {
            reason: reason.to_string(),
        };
    }

    /// regd answers again.
    pub fn recovered(&mut self) {
        self.connection = Connection::Connected;
    }

    /// Sending the change request for `name` failed.
    pub fn request_failed(&mut self, name: &str, reason: &str) {
        if let Some(request) = &mut self.request
            && request.name == name
        {
            request.outcome = Outcome::Failed(reason.to_string());
        }
    }

    /// Time passes: removed registers leave after [`GONE_FOR`]; a request not applied
    /// within [`APPLY_WITHIN`] is reported.
    pub fn tick(&mut self, now: Instant) {
        let before = self.rows.len();
        self.rows.retain(|_, row| {
            row.gone
                .is_none_or(|(_, at)| now.saturating_duration_since(at) < GONE_FOR)
        });
        if let Some(request) = &mut self.request
            && request.outcome == Outcome::Waiting
            && now.saturating_duration_since(request.sent_at) >= APPLY_WITHIN
        {
            let current = self
                .rows
                .get(&request.name)
                .filter(|row| row.gone.is_none())
                .map(|row| row.register.value.clone());
            request.outcome = Outcome::NotApplied { current };
        }
        if self.rows.len() != before {
            self.reselect();
        }
    }

    /// How many rows a page is (set from the terminal's size).
    pub fn set_page(&mut self, rows: usize) {
        self.page = rows.max(1);
    }

    // ---- keys ----

    /// A key press at `now`; returns what the event loop must do, if anything.
    pub fn key(&mut self, key: Key, now: Instant) -> Option<Action> {
        if key == Key::Ctrl('c') {
            return Some(Action::Quit);
        }
        match self.mode {
            Mode::Browse => self.browse_key(key, now),
            Mode::Filter => {
                self.filter_key(key);
                None
            }
            Mode::Edit(_) => self.edit_key(key, now),
        }
    }

    fn browse_key(&mut self, key: Key, now: Instant) -> Option<Action> {
        self.notice = None;
        match key {
            Key::Char('q') => return Some(Action::Quit),
            Key::Esc if self.filter.is_empty() => return Some(Action::Quit),
            Key::Esc => self.filter.clear(),
            Key::Up | Key::Char('k') => self.move_by(-1),
            Key::Down | Key::Char('j') => self.move_by(1),
            Key::PageUp => self.move_by(-(self.page as isize)),
            Key::PageDown => self.move_by(self.page as isize),
            Key::Home | Key::Char('g') => self.move_by(isize::MIN / 2),
            Key::End | Key::Char('G') => self.move_by(isize::MAX / 2),
            Key::Char('/') | Key::Char('f') => self.mode = Mode::Filter,
            Key::Char('v') | Key::Tab => {
                self.layout = match self.layout {
                    Layout::Flat => Layout::Tree,
                    Layout::Tree => Layout::Flat,
                };
            }
            Key::Char('d') => self.details_pane = !self.details_pane,
            Key::Left | Key::Char('-') | Key::Char('h') => self.collapse(),
            Key::Right | Key::Char('+') | Key::Char('l') => self.expand(),
            Key::Enter => return self.enter(),
            Key::Char(' ') | Key::Char('t') => return self.toggle(now),
            _ => {}
        }
        self.reselect();
        None
    }

    fn filter_key(&mut self, key: Key) {
        match key {
            Key::Char(ch) => self.filter.push(ch),
            Key::Backspace => {
                self.filter.pop();
            }
            Key::Ctrl('u') => self.filter.clear(),
            Key::Enter => self.mode = Mode::Browse,
            Key::Esc => {
                self.filter.clear();
                self.mode = Mode::Browse;
            }
            Key::Up => self.move_by(-1),
            Key::Down => self.move_by(1),
            _ => {}
        }
        self.reselect();
    }

    fn edit_key(&mut self, key: Key, now: Instant) -> Option<Action> {
        let Mode::Edit(editor) = &mut self.mode else {
            return None;
        };
        match key {
            Key::Esc => {
                self.mode = Mode::Browse;
                return None;
            }
            Key::Enter => {
                return match Json::parse(&editor.text) {
                    Ok(value) => {
                        let name = editor.name.clone();
                        self.mode = Mode::Browse;
                        Some(self.send(name, value, now))
                    }
                    Err(error) => {
                        editor.error = Some(format!("not sent: {error}"));
                        None
                    }
                };
            }
            Key::Char(' ') if matches!(editor.text.trim(), "true" | "false") => {
                editor.text = if editor.text.trim() == "true" {
                    "false"
                } else {
                    "true"
                }
                .to_string();
                editor.cursor = editor.len();
            }
            Key::Char(ch) => {
                let at = editor.byte_at(editor.cursor);
                editor.text.insert(at, ch);
                editor.cursor += 1;
            }
            Key::Backspace if editor.cursor > 0 => {
                editor.cursor -= 1;
                let at = editor.byte_at(editor.cursor);
                editor.text.remove(at);
            }
            Key::Delete if editor.cursor < editor.len() => {
                let at = editor.byte_at(editor.cursor);
                editor.text.remove(at);
            }
            Key::Ctrl('u') => {
                editor.text.clear();
                editor.cursor = 0;
            }
            Key::Left => editor.cursor = editor.cursor.saturating_sub(1),
            Key::Right => editor.cursor = (editor.cursor + 1).min(editor.len()),
            Key::Home | Key::Ctrl('a') => editor.cursor = 0,
            Key::End | Key::Ctrl('e') => editor.cursor = editor.len(),
            _ => return None,
        }
        editor.error = None;
        None
    }

    /// Enter: edit the selected register, or open or close the selected branch.
    fn enter(&mut self) -> Option<Action> {
        let entries = self.visible();
        let entry = self.selection_in(&entries).map(|at| entries[at].clone())?;
        match self.rows.get(&entry.key) {
            Some(row) if row.gone.is_none() => {
                self.mode = Mode::Edit(Editor::new(&entry.key, &row.register.value));
            }
            Some(_) => self.notice = Some(format!("{} is gone; nothing to edit", entry.key)),
            None if entry.branch => self.toggle_branch(&entry.key),
            None => {}
        }
        None
    }

    /// Space or `t`: ask for the opposite of the selected boolean register.
    fn toggle(&mut self, now: Instant) -> Option<Action> {
        let name = self.selected.clone()?;
        let row = self.rows.get(&name).filter(|row| row.gone.is_none());
        match row.and_then(|row| row.register.value.as_bool()) {
            Some(value) => Some(self.send(name, Json::from(!value), now)),
            None => {
                self.notice = Some(format!("{name} is not a boolean; Enter edits its value"));
                None
            }
        }
    }

    fn send(&mut self, name: String, value: Json, now: Instant) -> Action {
        let unchanged = self
            .rows
            .get(&name)
            .is_some_and(|row| row.gone.is_none() && row.register.value == value);
        self.request = Some(ChangeRequest {
            name: name.clone(),
            value: value.clone(),
            sent_at: now,
            outcome: if unchanged {
                Outcome::Unchanged
            } else {
                Outcome::Waiting
            },
        });
        Action::Send { name, value }
    }

    fn collapse(&mut self) {
        if self.layout != Layout::Tree {
            return;
        }
        let entries = self.visible();
        let Some(at) = self.selection_in(&entries) else {
            return;
        };
        let entry = &entries[at];
        if entry.branch && entry.expanded {
            self.collapsed.insert(entry.key.clone());
        } else if let Some((parent, _)) = entry.key.rsplit_once('.') {
            // Already closed (or a leaf): go to the parent branch.
            self.selected = Some(parent.to_string());
        }
    }

    fn expand(&mut self) {
        if self.layout != Layout::Tree {
            return;
        }
        if let Some(key) = &self.selected {
            self.collapsed.remove(key);
        }
    }

    fn toggle_branch(&mut self, key: &str) {
        if !self.collapsed.remove(key) {
            self.collapsed.insert(key.to_string());
        }
    }

    fn move_by(&mut self, delta: isize) {
        let entries = self.visible();
        if entries.is_empty() {
            return;
        }
        let at = self.selection_in(&entries).unwrap_or(0) as isize;
        let to = at
            .saturating_add(delta)
            .clamp(0, entries.len() as isize - 1) as usize;
        self.selected = Some(entries[to].key.clone());
        self.position = to;
    }

    /// Keeps the selection on a visible entry: the same name if it is still shown,
    /// else the entry now at the same position.
    fn reselect(&mut self) {
        let entries = self.visible();
        match self.selection_in(&entries) {
            Some(at) => {
                self.selected = Some(entries[at].key.clone());
                self.position = at;
            }
            None => self.selected = None,
        }
    }

    fn selection_in(&self, entries: &[Entry]) -> Option<usize> {
        if entries.is_empty() {
            return None;
        }
        self.selected
            .as_ref()
            .and_then(|key| entries.iter().position(|entry| &entry.key == key))
            .or(Some(self.position.min(entries.len() - 1)))
    }

    // ---- what is shown ----

    /// The lines of the list, in order.
    pub fn visible(&self) -> Vec<Entry> {
        match self.layout {
            Layout::Flat => self
                .rows
                .keys()
                .filter(|name| self.matches(name))
                .map(|name| Entry {
                    key: name.clone(),
                    label: name.clone(),
                    depth: 0,
                    register: true,
                    branch: false,
                    expanded: false,
                })
                .collect(),
            Layout::Tree => {
                let mut root = Node::default();
                for name in self.rows.keys() {
                    let mut node = &mut root;
                    let mut end = 0;
                    for segment in name.split('.') {
                        end += segment.len();
                        node = node.children.entry(segment.to_string()).or_default();
                        node.key = name[..end].to_string();
                        end += 1;
                    }
                    node.register = true;
                }
                let mut entries = Vec::new();
                for child in root.children.values() {
                    self.walk(child, 0, &mut entries);
                }
                entries
            }
        }
    }

    /// Adds `node` and (when expanded) its descendants to `out` if any register in its
    /// subtree matches the filter; returns whether it did.
    fn walk(&self, node: &Node, depth: usize, out: &mut Vec<Entry>) -> bool {
        let at = out.len();
        let expanded = !self.collapsed.contains(&node.key);
        let mut shown_children = false;
        let mut scratch = Vec::new();
        for child in node.children.values() {
            let target = if expanded { &mut *out } else { &mut scratch };
            shown_children |= self.walk(child, depth + 1, target);
        }
        let matches = node.register && self.matches(&node.key);
        if !(matches || shown_children) {
            return false;
        }
        let label = node.key.rsplit('.').next().unwrap_or("").to_string();
        out.insert(
            at,
            Entry {
                key: node.key.clone(),
                label,
                depth,
                register: node.register,
                branch: shown_children,
                expanded,
            },
        );
        true
    }

    fn matches(&self, name: &str) -> bool {
        self.filter.is_empty() || name.to_lowercase().contains(&self.filter.to_lowercase())
    }

    /// The filter counter: registers (not gone) that match the filter, and all of them.
    pub fn counter(&self) -> (usize, usize) {
        let present = self.rows.iter().filter(|(_, row)| row.gone.is_none());
        let total = present.clone().count();
        let shown = present.filter(|(name, _)| self.matches(name)).count();
        (shown, total)
    }

    /// The selected entry's index in [`visible`](Self::visible).
    pub fn selection(&self, entries: &[Entry]) -> Option<usize> {
        self.selection_in(entries)
    }

    /// The selected name (register or branch).
    pub fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    /// A register by name.
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.get(name)
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The filter text.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// What keys do now.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// Whether the details pane is shown.
    pub fn details_pane(&self) -> bool {
        self.details_pane
    }

    /// Whether regd answers.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The last change request.
    pub fn request(&self) -> Option<&ChangeRequest> {
        self.request.as_ref()
    }

    /// A short message for the user, cleared by the next key.
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }
}

#[derive(Default)]
struct Node {
    key: String,
    register: bool,
    children: BTreeMap<String, Node>,
}

#[cfg(test)]
mod tests;
