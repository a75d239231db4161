//! What is on screen for the key scenarios, drawn on ratatui's `TestBackend`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

use super::*;
use crate::browse::model::Key;
use regd::client::{Detailed, Json, Register};

const COLOR: Theme = Theme { color: true };

fn register(value: &str, metadata: Option<&str>) -> Register {
    Register {
        value: Json::parse(value).unwrap(),
        metadata: metadata.map(|text| Json::parse(text).unwrap()),
    }
}

/// A connected model with a few registers and their details at `now`.
fn model(now: Instant) -> Model {
    let mut model = Model::new();
    let registers = [
        ("hall.lamp", "true", None),
        ("hall.temp", "21.5", Some(r#"{"unit":"°C"}"#)),
        ("yard", r#"{"wind":[3,4],"gust":null}"#, None),
    ];
    let mut details = BTreeMap::new();
    for (index, (name, value, metadata)) in registers.into_iter().enumerate() {
        model.changed(name, register(value, metadata));
        details.insert(
            name.to_string(),
            Detailed {
                register: register(value, metadata),
                ttl: Some(Duration::from_secs(10)),
                expires_in: Duration::from_millis(4000 + 1000 * index as u64),
                index: 7 + index as u64,
            },
        );
    }
    model.details(&details, now);
    model.key(Key::Home, now);
    model
}

fn draw_on(model: &Model, now: Instant, theme: Theme, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| draw(frame, model, now, theme, "http://gw:8080"))
        .unwrap();
    terminal.backend().buffer().clone()
}

fn text(buffer: &Buffer) -> Vec<String> {
    let area = buffer.area;
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect()
}

fn screen(model: &Model, now: Instant) -> Vec<String> {
    text(&draw_on(model, now, COLOR, 80, 24))
}

#[track_caller]
fn shows(screen: &[String], expected: &str) -> usize {
    screen
        .iter()
        .position(|line| line.contains(expected))
        .unwrap_or_else(|| panic!("{expected:?} is not on screen:\n{}", screen.join("\n")))
}

#[test]
fn list_shows_names_values_and_time_left() {
    let now = Instant::now();
    let screen = screen(&model(now), now + Duration::from_millis(1500));
    assert_eq!(
        screen[0],
        "regd browse  connected  flat  3 of 3  http://gw:8080"
    );
    let columns = [
        (1, "NAME      VALUE", "EXPIRES"),
        (2, "hall.lamp true ", "2.5s"),
        (3, "hall.temp 21.5 ", "3.5s"),
        (4, r#"yard      {"wind":[3,4],"gust":null} "#, "4.5s"),
    ];
    for (line, start, end) in columns {
        let text = &screen[line];
        assert!(text.starts_with(start) && text.ends_with(end), "{text:?}");
        assert_eq!(text.find(end), Some(72), "{text:?}");
    }
    assert!(
        screen[23].starts_with("↑↓ move  / filter  v tree"),
        "{}",
        screen[23]
    );
    assert!(screen[23].contains("q quit"));
}

#[test]
fn long_values_are_cut_to_fit_80_columns_and_small_terminals_do_not_break() {
    let now = Instant::now();
    let mut model = model(now);
    let long = format!("\"{}\"", "x".repeat(200));
    model.changed("hall.temp", register(&long, None));
    let screen = screen(&model, now);
    let line = &screen[shows(&screen, "hall.temp")];
    assert!(line.contains("xxx…"), "{line}");
    assert!(line.ends_with("5.0s"), "{line}");
    for (width, height) in [(40, 12), (20, 5), (1, 1), (0, 0)] {
        draw_on(&model, now, COLOR, width, height);
    }
}

#[test]
fn tree_shows_branches_with_fold_marks() {
    let now = Instant::now();
    let mut model = model(now);
    model.key(Key::Char('v'), now);
    let screen = screen(&model, now);
    shows(&screen, "flat".replace("flat", "tree").as_str());
    assert!(screen[2].starts_with("▾ hall"), "{}", screen[2]);
    assert!(screen[3].starts_with("    lamp true"), "{}", screen[3]);
    assert!(screen[4].starts_with("    temp 21.5"), "{}", screen[4]);
    assert!(screen[5].starts_with("yard"), "{}", screen[5]);
    model.key(Key::Up, now);
    model.key(Key::Left, now);
    let screen = self::screen(&model, now);
    assert!(screen[2].starts_with("▸ hall"), "{}", screen[2]);
    assert!(screen[3].starts_with("yard"), "{}", screen[3]);
    shows(&screen, "hall is a branch");
}

#[test]
fn filter_shows_its_text_and_the_counter() {
    let now = Instant::now();
    let mut model = model(now);
    for key in "/LAMP".chars() {
        model.key(Key::Char(key), now);
    }
    let screen = screen(&model, now);
    assert!(screen[0].contains("  1 of 3  "), "{}", screen[0]);
    shows(&screen, "filter: LAMP");
    shows(&screen, "⏎ keep filter  Esc clear filter");
    assert!(screen[2].starts_with("hall.lamp"));
    assert!(!screen[3].contains("hall.temp"));
    model.key(Key::Char('x'), now);
    shows(&self::screen(&model, now), "nothing matches the filter");
}

#[test]
fn details_pane_shows_value_metadata_ttl_and_revision() {
    let now = Instant::now();
    let mut model = model(now);
    model.key(Key::Down, now);
    let screen = screen(&model, now + Duration::from_secs(1));
    let title = shows(&screen, " hall.temp ");
    assert!(
        screen[title + 1].starts_with("revision 8   ttl 10s   expires in 4.0s"),
        "{}",
        screen[title + 1]
    );
    assert_eq!(screen[title + 2], r#"metadata {"unit":"°C"}"#);
    assert_eq!(screen[title + 4], "  21.5");
    model.key(Key::Down, now);
    let screen = self::screen(&model, now);
    let title = shows(&screen, " yard ");
    assert_eq!(
        screen[title + 4..title + 10],
        [
            "  {",
            r#"    "wind": ["#,
            "      3,",
            "      4",
            "    ],",
            r#"    "gust": null"#
        ]
    );
    // d hides the pane.
    model.key(Key::Char('d'), now);
    assert!(
        !self::screen(&model, now)
            .iter()
            .any(|line| line.contains("revision"))
    );
}

#[test]
fn an_expired_register_is_red_and_says_so() {
    let now = Instant::now();
    let mut model = model(now);
    model.removed("hall.lamp", now + Duration::from_secs(4));
    model.removed("yard", now + Duration::from_secs(4));
    let later = now + Duration::from_secs(6);
    let buffer = draw_on(&model, later, COLOR, 80, 24);
    let screen = text(&buffer);
    assert!(
        screen[2].starts_with("hall.lamp") && screen[2].ends_with("EXPIRED"),
        "{}",
        screen[2]
    );
    assert!(
        screen[4].starts_with("yard") && screen[4].ends_with("DELETED"),
        "{}",
        screen[4]
    );
    assert_eq!(buffer[(0, 2)].fg, Color::Red);
    assert_eq!(buffer[(79, 4)].fg, Color::Red);
    assert_ne!(buffer[(0, 3)].fg, Color::Red);
    assert!(screen[0].contains("  1 of 1  "), "{}", screen[0]);
    shows(&screen, "EXPIRED 2s ago");
}

#[test]
fn the_editor_explains_invalid_json_in_place() {
    let now = Instant::now();
    let mut model = model(now);
    model.key(Key::Enter, now);
    let screen = screen(&model, now);
    shows(&screen, "edit hall.lamp: true");
    shows(&screen, "⏎ send  Esc cancel");
    model.key(Key::Ctrl('u'), now);
    for key in "on".chars() {
        model.key(Key::Char(key), now);
    }
    model.key(Key::Enter, now);
    let screen = self::screen(&model, now);
    shows(&screen, "edit hall.lamp: on");
    shows(&screen, "not sent: invalid JSON");
}

#[test]
fn request_outcomes_are_reported() {
    let now = Instant::now();
    let mut model = model(now);
    model.key(Key::Char('t'), now);
    shows(
        &screen(&model, now),
        "sent hall.lamp = false; waiting for the provider",
    );
    model.tick(now + Duration::from_secs(5));
    shows(
        &screen(&model, now),
        "NOT APPLIED: hall.lamp is still true, not false",
    );
    model.changed("hall.lamp", register("false", None));
    shows(&screen(&model, now), "applied: hall.lamp = false");
}

#[test]
fn connection_state_is_in_the_header() {
    let mut model = Model::new();
    let now = Instant::now();
    shows(&screen(&model, now), "connecting…");
    shows(&screen(&model, now), "no registers yet");
    model.failed("cannot reach regd at http://gw:8080: connection refused");
    let screen = screen(&model, now);
    assert!(
        screen[0].starts_with("regd browse  DISCONNECTED, retrying"),
        "{}",
        screen[0]
    );
    shows(
        &screen,
        "cannot reach regd at http://gw:8080: connection refused",
    );
}

#[test]
fn no_color_uses_no_colour_but_says_everything() {
    let now = Instant::now();
    let mut model = model(now);
    model.removed("hall.lamp", now);
    model.key(Key::Char('t'), now);
    model.tick(now + Duration::from_secs(4));
    model.failed("connection refused");
    let buffer = draw_on(&model, now, Theme { color: false }, 80, 24);
    for cell in buffer.content() {
        assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
    }
    let screen = text(&buffer);
    shows(&screen, "DELETED");
    shows(&screen, "DISCONNECTED");
    let mut colored = model;
    colored.recovered();
    let buffer = draw_on(&colored, now, COLOR, 80, 24);
    assert!(buffer.content().iter().any(|cell| cell.fg != Color::Reset));
}
