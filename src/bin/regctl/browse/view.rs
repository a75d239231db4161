//! Drawing the browser: one function from the model (and the time) to a frame. It owns
//! layout, wording and styles; invariants: it reads the model and never changes it,
//! does no I/O, and with colour off (`NO_COLOR`) uses no colour at all — emphasis
//! is bold and reverse video, and every state is also said in words.

use std::time::Instant;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout as Split, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row as TableRow, Table, TableState, Wrap};

use super::model::{Connection, Entry, Gone, Layout, Mode, Model, Outcome};

/// Colour or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    /// Whether colours may be used.
    pub color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to anything but the empty string (no-color.org).
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty()),
        }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    /// Bad news: red, or bold without colour.
    fn bad(self) -> Style {
        if self.color {
            Style::new().fg(Color::Red)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }
}

/// Rows the list shows on a terminal `height` rows high (for paging).
pub fn page_rows(height: u16, model: &Model) -> usize {
    let (list, _) = list_and_pane(Rect::new(0, 0, 80, height.saturating_sub(3)), model);
    usize::from(list.height.saturating_sub(1)).max(1)
}

/// Splits the middle of the screen between the list and the details pane.
fn list_and_pane(area: Rect, model: &Model) -> (Rect, Option<Rect>) {
    if !model.details_pane() || area.height < 8 {
        return (area, None);
    }
    // Room for the selected register's facts and whole value, up to half the screen.
    let wanted = model
        .selected()
        .and_then(|name| model.row(name))
        .map_or(2, |row| 4 + row.register.value.pretty().lines().count());
    let pane = (wanted as u16).clamp(4, (area.height / 2).max(4));
    let [list, pane] = Split::vertical([Constraint::Fill(1), Constraint::Length(pane)]).areas(area);
    (list, Some(pane))
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, model: &Model, now: Instant, theme: Theme, url: &str) {
    let [header, middle, status, footer] = Split::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(2),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let entries = model.visible();
    let selected = model.selection(&entries);
    frame.render_widget(Paragraph::new(header_line(model, theme, url)), header);
    let (list, pane) = list_and_pane(middle, model);
    draw_list(frame, list, model, &entries, selected, now, theme);
    if let Some(pane) = pane {
        let entry = selected.map(|at| &entries[at]);
        draw_details(frame, pane, model, entry, now, theme);
    }
    frame.render_widget(
        Paragraph::new(status_lines(model, theme)).wrap(Wrap { trim: false }),
        status,
    );
    let keys = match model.mode() {
        Mode::Browse => "↑↓ move  / filter  v tree  ←→ fold  ⏎ edit  t toggle  d details  q quit",
        Mode::Filter => "type to filter  ↑↓ move  ⏎ keep filter  Esc clear filter",
        Mode::Edit(_) => "⏎ send  Esc cancel  space flips true/false  ^U clear  ←→ move",
    };
    frame.render_widget(
        Paragraph::new(keys).style(Style::new().add_modifier(Modifier::REVERSED)),
        footer,
    );
}

fn header_line<'a>(model: &Model, theme: Theme, url: &'a str) -> Line<'a> {
    let (shown, total) = model.counter();
    let layout = match model.layout() {
        Layout::Flat => "flat",
        Layout::Tree => "tree",
    };
    let connection = match model.connection() {
        Connection::Connecting => Span::styled("connecting…", theme.fg(Color::Yellow)),
        Connection::Connected => Span::styled("connected", theme.fg(Color::Green)),
        Connection::Lost { .. } => Span::styled(
            "DISCONNECTED, retrying",
            theme.bad().add_modifier(Modifier::BOLD),
        ),
    };
    Line::from(vec![
        Span::styled("regd browse  ", Style::new().add_modifier(Modifier::BOLD)),
        connection,
        Span::raw(format!("  {layout}  {shown} of {total}  {url}")),
    ])
}

fn draw_list(
    frame: &mut Frame,
    area: Rect,
    model: &Model,
    entries: &[Entry],
    selected: Option<usize>,
    now: Instant,
    theme: Theme,
) {
    const LEFT: u16 = 8;
    let labels: Vec<String> = entries.iter().map(label).collect();
    let widest = labels
        .iter()
        .map(|label| label.chars().count())
        .max()
        .unwrap_or(4);
    let name_width = (widest as u16).clamp(4, (area.width * 2 / 5).max(4));
    let value_width = area.width.saturating_sub(name_width + LEFT + 2) as usize;
    let rows = entries.iter().zip(labels).map(|(entry, label)| {
        let label = truncate(&label, name_width as usize);
        match model.row(&entry.key) {
            Some(row) => {
                let left = row.time_left_text(now);
                let cells = vec![
                    label,
                    truncate(row.register.value.as_str(), value_width),
                    left,
                ];
                let style = if row.gone.is_some() {
                    theme.bad()
                } else {
                    Style::new()
                };
                TableRow::new(cells).style(style)
            }
            None => TableRow::new(vec![label, String::new(), String::new()])
                .style(theme.fg(Color::Blue)),
        }
    });
    let empty = if entries.is_empty() {
        if model.filter().is_empty() {
            " no registers yet "
        } else {
            " nothing matches the filter "
        }
    } else {
        ""
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(name_width),
            Constraint::Fill(1),
            Constraint::Length(LEFT),
        ],
    )
    .header(
        TableRow::new(vec!["NAME", "VALUE", "EXPIRES"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut state);
    if !empty.is_empty() && area.height > 2 {
        let line = Rect::new(area.x, area.y + 1, area.width, 1);
        frame.render_widget(Paragraph::new(empty), line);
    }
}

/// A list label: the full name (flat), or the indented last segment with a fold mark.
fn label(entry: &Entry) -> String {
    if entry.depth == 0 && !entry.branch && entry.label == entry.key {
        return entry.key.clone();
    }
    let mark = match (entry.branch, entry.expanded) {
        (false, _) => "  ",
        (true, true) => "▾ ",
        (true, false) => "▸ ",
    };
    format!("{}{mark}{}", "  ".repeat(entry.depth), entry.label)
}

fn draw_details(
    frame: &mut Frame,
    area: Rect,
    model: &Model,
    entry: Option<&Entry>,
    now: Instant,
    theme: Theme,
) {
    let title = entry.map_or(" details ".to_string(), |entry| format!(" {} ", entry.key));
    let block = Block::new().borders(Borders::TOP).title(title);
    let mut lines: Vec<Line> = Vec::new();
    match entry.and_then(|entry| Some((entry, model.row(&entry.key)?))) {
        Some((_, row)) => {
            let mut facts = vec![Span::raw(format!(
                "revision {}   ttl {}   ",
                row.index.map_or("…".to_string(), |index| index.to_string()),
                row.ttl.map_or("…".to_string(), |ttl| {
                    regd::client::duration::format(ttl)
                }),
            ))];
            facts.push(match row.gone {
                Some((why, at)) => Span::styled(
                    format!(
                        "{} {}s ago",
                        match why {
                            Gone::Expired => "EXPIRED",
                            Gone::Deleted => "DELETED",
                        },
                        now.saturating_duration_since(at).as_secs()
                    ),
                    theme.bad().add_modifier(Modifier::BOLD),
                ),
                None => Span::raw(format!("expires in {}", row.time_left_text(now))),
            });
            lines.push(Line::from(facts));
            lines.push(Line::from(format!(
                "metadata {}",
                row.register
                    .metadata
                    .as_ref()
                    .map_or("none".to_string(), |metadata| metadata.to_string())
            )));
            lines.push(Line::from("value"));
            lines.extend(
                row.register
                    .value
                    .pretty()
                    .lines()
                    .map(|line| Line::from(format!("  {line}"))),
            );
        }
        None => match entry {
            Some(entry) => lines.push(Line::from(format!(
                "{} is a branch; ⏎ or ←→ open and close it",
                entry.key
            ))),
            None => lines.push(Line::from("nothing selected")),
        },
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn status_lines(model: &Model, theme: Theme) -> Vec<Line<'static>> {
    match model.mode() {
        Mode::Filter => vec![Line::from(vec![
            Span::styled("filter: ", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(model.filter().to_string()),
            Span::styled(" ", Style::new().add_modifier(Modifier::REVERSED)),
        ])],
        Mode::Edit(editor) => {
            let (before, rest) = editor.text.split_at(
                editor
                    .text
                    .char_indices()
                    .nth(editor.cursor)
                    .map_or(editor.text.len(), |(at, _)| at),
            );
            let mut chars = rest.chars();
            let under = chars.next().map_or(" ".to_string(), String::from);
            let mut lines = vec![Line::from(vec![
                Span::styled(
                    format!("edit {}: ", editor.name),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(before.to_string()),
                Span::styled(under, Style::new().add_modifier(Modifier::REVERSED)),
                Span::raw(chars.as_str().to_string()),
            ])];
            if let Some(error) = &editor.error {
                lines.push(Line::styled(error.clone(), theme.bad()));
            }
            lines
        }
        Mode::Browse => {
            let mut lines = Vec::new();
            if let Connection::Lost { reason } = model.connection() {
                lines.push(Line::styled(reason.clone(), theme.bad()));
            }
            if !model.filter().is_empty() {
                lines.push(Line::from(format!(
                    "filter: {}  (Esc clears)",
                    model.filter()
                )));
            }
            if let Some(notice) = model.notice() {
                lines.push(Line::from(notice.to_string()));
            } else if let Some(request) = model.request() {
                let (text, style) = match &request.outcome {
                    Outcome::Waiting => (
                        format!(
                            "sent {} = {}; waiting for the provider…",
                            request.name, request.value
                        ),
                        Style::new(),
                    ),
                    Outcome::Applied => (
                        format!("applied: {} = {}", request.name, request.value),
                        theme.fg(Color::Green),
                    ),
                    Outcome::Unchanged => (
                        format!(
                            "sent {} = {}; it already had that value",
                            request.name, request.value
                        ),
                        Style::new(),
                    ),
                    Outcome::NotApplied { current } => (
                        match current {
                            Some(current) => format!(
                                "NOT APPLIED: {} is still {current}, not {} (is its provider running, and not read-only?)",
                                request.name, request.value
                            ),
                            None => format!(
                                "NOT APPLIED: {} does not exist; the request waits for a provider",
                                request.name
                            ),
                        },
                        theme.bad(),
                    ),
                    Outcome::Failed(reason) => (format!("NOT SENT: {reason}"), theme.bad()),
                };
                lines.push(Line::styled(text, style));
            }
            lines
        }
    }
}

/// At most `width` characters, the last one `…` when cut.
fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests;
