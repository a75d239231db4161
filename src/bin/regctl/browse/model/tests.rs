//! The browser model without a terminal: a fake clock, keys as values, news from regd
//! as plain calls.

use super::*;

fn json(text: &str) -> Json {
    Json::parse(text).expect("test JSON")
}

fn register(value: &str) -> Register {
    Register {
        value: json(value),
        metadata: None,
    }
}

fn detailed(value: &str, expires_in_ms: u64, index: u64) -> Detailed {
    Detailed {
        register: register(value),
        ttl: Some(Duration::from_secs(10)),
        expires_in: Duration::from_millis(expires_in_ms),
        index,
    }
}

/// A model holding these registers (name, JSON value).
fn model(registers: &[(&str, &str)]) -> Model {
    let mut model = Model::new();
    for (name, value) in registers {
        model.changed(name, register(value));
    }
    // The selection stays on the first register that arrived; start at the top.
    model.key(Key::Home, Instant::now());
    model
}

/// The visible lines as `KEY` (flat) or indented `label` with `+`/`-` for branches and
/// `*` for the selection.
fn lines(model: &Model) -> Vec<String> {
    let entries = model.visible();
    let selected = model.selection(&entries);
    entries
        .iter()
        .enumerate()
        .map(|(at, entry)| {
            let mark = match (entry.branch, entry.expanded) {
                (false, _) => " ",
                (true, true) => "-",
                (true, false) => "+",
            };
            let star = if Some(at) == selected { "*" } else { "" };
            let kind = if entry.register { "" } else { "/" };
            format!(
                "{}{mark}{}{kind}{star}",
                "  ".repeat(entry.depth),
                entry.label
            )
        })
        .collect()
}

#[track_caller]
fn check(model: &Model, expected: &[&str]) {
    assert_eq!(lines(model), expected);
}

fn press(model: &mut Model, keys: &[Key], now: Instant) -> Vec<Action> {
    keys.iter().filter_map(|key| model.key(*key, now)).collect()
}

fn typing(text: &str) -> Vec<Key> {
    text.chars().map(Key::Char).collect()
}

#[test]
fn flat_list_is_sorted_and_selection_follows_the_name() {
    let t0 = Instant::now();
    let mut model = model(&[("b", "1"), ("a", "2"), ("c", "3")]);
    check(&model, &[" a*", " b", " c"]);
    press(&mut model, &[Key::Down], t0);
    check(&model, &[" a", " b*", " c"]);
    // A new register before the selection: the selection stays on b.
    model.changed("0", register("0"));
    check(&model, &[" 0", " a", " b*", " c"]);
    press(&mut model, &[Key::End], t0);
    check(&model, &[" 0", " a", " b", " c*"]);
    press(&mut model, &[Key::Home, Key::Char('j'), Key::Char('k')], t0);
    check(&model, &[" 0*", " a", " b", " c"]);
    model.set_page(2);
    press(&mut model, &[Key::PageDown], t0);
    check(&model, &[" 0", " a", " b*", " c"]);
    press(&mut model, &[Key::PageDown, Key::PageDown, Key::Down], t0);
    check(&model, &[" 0", " a", " b", " c*"]);
    press(&mut model, &[Key::PageUp], t0);
    check(&model, &[" 0", " a*", " b", " c"]);
}

#[test]
fn an_empty_model_has_no_selection() {
    let mut model = Model::new();
    assert_eq!(model.visible(), []);
    assert_eq!(model.selected(), None);
    assert_eq!(
        press(
            &mut model,
            &[Key::Down, Key::Enter, Key::Char('t')],
            Instant::now()
        ),
        []
    );
    assert_eq!(model.counter(), (0, 0));
    assert_eq!(model.connection(), &Connection::Connecting);
}

#[test]
fn tree_splits_names_on_dots_and_a_register_can_be_a_branch() {
    let t0 = Instant::now();
    let mut model = model(&[
        ("a.b", "1"),
        ("a.b.c", "2"),
        ("a.d", "3"),
        ("z", "4"),
        ("x.y", "5"),
    ]);
    press(&mut model, &[Key::Char('v')], t0);
    assert_eq!(model.layout(), Layout::Tree);
    check(
        &model,
        &["-a/", "  -b*", "     c", "   d", "-x/", "   y", " z"],
    );
    // Collapse a.b (a register and a branch), then a.
    press(&mut model, &[Key::Left], t0);
    check(&model, &["-a/", "  +b*", "   d", "-x/", "   y", " z"]);
    // Left on a closed branch goes to its parent; Left again closes it.
    press(&mut model, &[Key::Left], t0);
    check(&model, &["-a/*", "  +b", "   d", "-x/", "   y", " z"]);
    press(&mut model, &[Key::Left], t0);
    check(&model, &["+a/*", "-x/", "   y", " z"]);
    // Enter on a branch without a register opens it; its children kept their state.
    press(&mut model, &[Key::Enter], t0);
    check(&model, &["-a/*", "  +b", "   d", "-x/", "   y", " z"]);
    press(&mut model, &[Key::Down, Key::Right], t0);
    check(
        &model,
        &["-a/", "  -b*", "     c", "   d", "-x/", "   y", " z"],
    );
    // Back to flat and again to the tree: the selection and branch state hold.
    press(&mut model, &[Key::Char('h'), Key::Tab], t0);
    assert_eq!(model.layout(), Layout::Flat);
    check(&model, &[" a.b*", " a.b.c", " a.d", " x.y", " z"]);
    press(&mut model, &[Key::Tab], t0);
    check(&model, &["-a/", "  +b*", "   d", "-x/", "   y", " z"]);
}

#[test]
fn branch_state_survives_updates_and_filtering() {
    let t0 = Instant::now();
    let mut model = model(&[
        ("hall.lamp", "true"),
        ("hall.temp", "21"),
        ("yard.lamp", "false"),
    ]);
    press(&mut model, &[Key::Char('v')], t0);
    check(
        &model,
        &["-hall/", "   lamp*", "   temp", "-yard/", "   lamp"],
    );
    // On a leaf, - goes to its branch; again, it closes it.
    press(&mut model, &[Key::Char('-'), Key::Char('-')], t0);
    check(&model, &["+hall/*", "-yard/", "   lamp"]);
    model.changed("hall.door", register("\"open\""));
    model.changed("hall.temp", register("22"));
    check(&model, &["+hall/*", "-yard/", "   lamp"]);
    press(&mut model, &typing("/lamp"), t0);
    press(&mut model, &[Key::Enter], t0);
    check(&model, &["+hall/*", "-yard/", "   lamp"]);
    assert_eq!(model.counter(), (2, 4));
    press(&mut model, &[Key::Char('+')], t0);
    check(&model, &["-hall/*", "   lamp", "-yard/", "   lamp"]);
    press(&mut model, &[Key::Esc], t0);
    check(
        &model,
        &[
            "-hall/*", "   door", "   lamp", "   temp", "-yard/", "   lamp",
        ],
    );
}

#[test]
fn filter_is_a_case_insensitive_substring_with_a_counter() {
    let t0 = Instant::now();
    let mut model = model(&[("Hall.Lamp", "1"), ("hall.temp", "2"), ("yard", "3")]);
    assert_eq!(model.counter(), (3, 3));
    press(&mut model, &[Key::Char('f')], t0);
    assert_eq!(model.mode(), &Mode::Filter);
    press(&mut model, &typing("HALL"), t0);
    assert_eq!(model.filter(), "HALL");
    check(&model, &[" Hall.Lamp*", " hall.temp"]);
    assert_eq!(model.counter(), (2, 3));
    // Keys that mean something while browsing are text while filtering.
    press(&mut model, &typing(".tq"), t0);
    check(&model, &[]);
    assert_eq!(model.counter(), (0, 3));
    assert_eq!(model.selected(), None);
    press(&mut model, &[Key::Backspace], t0);
    check(&model, &[" hall.temp*"]);
    press(&mut model, &[Key::Enter], t0);
    assert_eq!(model.mode(), &Mode::Browse);
    assert_eq!(model.filter(), "HALL.t");
    // A new match appears live.
    model.changed("hall.tv", register("4"));
    check(&model, &[" hall.temp*", " hall.tv"]);
    // Esc while browsing clears the filter first, and quits only then.
    assert_eq!(press(&mut model, &[Key::Esc], t0), []);
    check(&model, &[" Hall.Lamp", " hall.temp*", " hall.tv", " yard"]);
    assert_eq!(press(&mut model, &[Key::Esc], t0), [Action::Quit]);
    // Esc while typing clears it too; Ctrl-U empties it.
    press(
        &mut model,
        &[Key::Char('/'), Key::Char('y'), Key::Ctrl('u')],
        t0,
    );
    assert_eq!(model.filter(), "");
    press(&mut model, &[Key::Char('y'), Key::Esc], t0);
    assert_eq!((model.filter(), model.mode()), ("", &Mode::Browse));
}

#[test]
fn quitting() {
    let t0 = Instant::now();
    for keys in [vec![Key::Char('q')], vec![Key::Esc], vec![Key::Ctrl('c')]] {
        let mut model = model(&[("a", "1")]);
        assert_eq!(press(&mut model, &keys, t0), [Action::Quit], "{keys:?}");
    }
    // Ctrl-C quits from the editor too; q there is text.
    let mut model = model(&[("a", "1")]);
    press(&mut model, &[Key::Enter, Key::Char('q')], t0);
    assert!(matches!(model.mode(), Mode::Edit(editor) if editor.text == "1q"));
    assert_eq!(press(&mut model, &[Key::Ctrl('c')], t0), [Action::Quit]);
}

#[test]
fn removed_registers_are_marked_then_leave_and_can_come_back() {
    let t0 = Instant::now();
    let mut model = model(&[("a", "1"), ("b", "2"), ("c", "3")]);
    // a expires on time (details said 2 s left); b is deleted early.
    let details = BTreeMap::from([
        ("a".to_string(), detailed("1", 2000, 5)),
        ("b".to_string(), detailed("2", 9000, 6)),
    ]);
    model.details(&details, t0);
    assert_eq!(model.row("a").unwrap().time_left_text(t0), "2.0s");
    assert_eq!(
        model
            .row("a")
            .unwrap()
            .time_left_text(t0 + Duration::from_millis(1250)),
        "0.7s"
    );
    assert_eq!(model.row("c").unwrap().time_left_text(t0), "…");
    press(&mut model, &[Key::Down], t0);
    let t1 = t0 + Duration::from_secs(2);
    model.removed("a", t1);
    model.removed("b", t1);
    assert_eq!(model.row("a").unwrap().gone, Some((Gone::Expired, t1)));
    assert_eq!(model.row("b").unwrap().gone, Some((Gone::Deleted, t1)));
    assert_eq!(model.row("a").unwrap().time_left_text(t1), "EXPIRED");
    assert_eq!(model.row("b").unwrap().time_left_text(t1), "DELETED");
    check(&model, &[" a", " b*", " c"]);
    assert_eq!(model.counter(), (1, 1));
    // A second removal does not restart the marker.
    model.removed("a", t1 + Duration::from_secs(1));
    model.tick(t1 + GONE_FOR - Duration::from_millis(1));
    check(&model, &[" a", " b*", " c"]);
    // b comes back before its marker runs out: normal again, timing unknown.
    model.changed("b", register("7"));
    assert_eq!(model.row("b").unwrap().gone, None);
    assert_eq!(model.row("b").unwrap().expires_at, None);
    model.tick(t1 + GONE_FOR);
    check(&model, &[" b*", " c"]);
    // The selected register leaves: the selection moves to what is now in its place.
    model.removed("b", t1 + GONE_FOR);
    model.tick(t1 + GONE_FOR * 2);
    check(&model, &[" c*"]);
    // Removing an unknown register changes nothing.
    model.removed("zzz", t1);
    check(&model, &[" c*"]);
}

#[test]
fn details_set_timing_but_never_resurrect() {
    let t0 = Instant::now();
    let mut model = model(&[("a", "1"), ("b", "2")]);
    model.removed("b", t0);
    let details = BTreeMap::from([
        ("a".to_string(), detailed("1", 4000, 9)),
        ("b".to_string(), detailed("2", 4000, 8)),
        ("new".to_string(), detailed("3", 4000, 10)),
    ]);
    model.details(&details, t0);
    let a = model.row("a").unwrap();
    assert_eq!((a.index, a.ttl), (Some(9), Some(Duration::from_secs(10))));
    assert_eq!(a.expires_at, Some(t0 + Duration::from_secs(4)));
    assert_eq!(model.row("b").unwrap().index, None);
    assert!(
        model.row("new").is_none(),
        "only the consumer adds registers"
    );
    // The countdown runs locally and stops at zero.
    let a = model.row("a").unwrap();
    assert_eq!(a.time_left_text(t0 + Duration::from_secs(3)), "1.0s");
    assert_eq!(a.time_left_text(t0 + Duration::from_secs(30)), "0.0s");
    // regd restarted (its revisions start elsewhere) and the provider published again:
    // the new answer counts even with a lower revision.
    let restarted = BTreeMap::from([("a".to_string(), detailed("1", 5000, 3))]);
    model.details(&restarted, t0 + Duration::from_secs(30));
    let a = model.row("a").unwrap();
    assert_eq!(a.index, Some(3));
    assert_eq!(a.time_left_text(t0 + Duration::from_secs(31)), "4.0s");
}

#[test]
fn time_left_is_short() {
    let cases = [
        (0, "0.0s"),
        (950, "0.9s"),
        (9_999, "9.9s"),
        (10_000, "10s"),
        (59_999, "59s"),
        (60_000, "1m00s"),
        (185_000, "3m05s"),
        (3_600_000, "1h00m"),
        (7_620_000, "2h07m"),
    ];
    for (ms, text) in cases {
        assert_eq!(format_left(Duration::from_millis(ms)), text, "{ms} ms");
    }
}

#[test]
fn connection_state_follows_the_news() {
    let mut model = Model::new();
    assert_eq!(model.connection(), &Connection::Connecting);
    model.failed("cannot reach regd at http://x: connection refused");
    assert!(
        matches!(model.connection(), Connection::Lost { reason } if reason.contains("refused"))
    );
    model.recovered();
    assert_eq!(model.connection(), &Connection::Connected);
    model.failed("x");
    model.details(&BTreeMap::new(), Instant::now());
    assert_eq!(model.connection(), &Connection::Connected);
    model.failed("x");
    model.changed("a", register("1"));
    assert_eq!(model.connection(), &Connection::Connected);
}

#[test]
fn editor_edits_and_sends_valid_json_only() {
    let t0 = Instant::now();
    let mut model = model(&[("temp", "21.5"), ("other", "1")]);
    press(&mut model, &typing("/temp"), t0);
    press(&mut model, &[Key::Enter, Key::Enter], t0);
    let editor = |model: &Model| match model.mode() {
        Mode::Edit(editor) => editor.clone(),
        other => panic!("not editing: {other:?}"),
    };
    assert_eq!(editor(&model).name, "temp");
    assert_eq!(
        (editor(&model).text.as_str(), editor(&model).cursor),
        ("21.5", 4)
    );
    // Cursor movement and editing in the middle, over multi-byte characters.
    press(&mut model, &[Key::Ctrl('u')], t0);
    press(&mut model, &typing("\"°C\""), t0);
    press(
        &mut model,
        &[Key::Left, Key::Left, Key::Backspace, Key::Char('F')],
        t0,
    );
    assert_eq!(editor(&model).text, "\"FC\"");
    press(
        &mut model,
        &[Key::Home, Key::Delete, Key::End, Key::Backspace],
        t0,
    );
    assert_eq!(editor(&model).text, "FC");
    press(
        &mut model,
        &[Key::Right, Key::Ctrl('a'), Key::Right, Key::Ctrl('e')],
        t0,
    );
    assert_eq!(editor(&model).cursor, 2);
    // Invalid JSON is explained and not sent; the next edit clears the message.
    assert_eq!(press(&mut model, &[Key::Enter], t0), []);
    let error = editor(&model).error.expect("an error");
    assert!(error.starts_with("not sent: invalid JSON"), "{error}");
    press(&mut model, &[Key::Ctrl('u')], t0);
    assert_eq!(editor(&model).error, None);
    press(&mut model, &typing("{\"a\": [1, 2]}"), t0);
    let actions = press(&mut model, &[Key::Enter], t0);
    assert_eq!(
        actions,
        [Action::Send {
            name: "temp".to_string(),
            value: json(r#"{"a":[1,2]}"#)
        }]
    );
    assert_eq!(model.mode(), &Mode::Browse);
    assert_eq!(model.request().unwrap().outcome, Outcome::Waiting);
    // Esc leaves the editor without sending.
    press(&mut model, &[Key::Enter, Key::Char('9')], t0);
    assert_eq!(press(&mut model, &[Key::Esc], t0), []);
    assert_eq!(model.mode(), &Mode::Browse);
}

#[test]
fn booleans_toggle_with_one_key() {
    let t0 = Instant::now();
    let mut model = model(&[("lamp", "false"), ("temp", "20")]);
    let send = |value: &str| Action::Send {
        name: "lamp".to_string(),
        value: json(value),
    };
    assert_eq!(press(&mut model, &[Key::Char(' ')], t0), [send("true")]);
    assert_eq!(press(&mut model, &[Key::Char('t')], t0), [send("true")]);
    // In the editor, space flips a boolean text.
    press(&mut model, &[Key::Enter, Key::Char(' ')], t0);
    assert!(matches!(model.mode(), Mode::Edit(editor) if editor.text == "true"));
    press(&mut model, &[Key::Char(' '), Key::Char(' ')], t0);
    assert_eq!(press(&mut model, &[Key::Enter], t0), [send("true")]);
    // Not a boolean: explained, nothing sent.
    assert_eq!(press(&mut model, &[Key::Down, Key::Char('t')], t0), []);
    assert!(model.notice().unwrap().contains("not a boolean"));
    press(&mut model, &[Key::Up], t0);
    assert_eq!(model.notice(), None);
}

#[test]
fn a_request_is_reported_applied_or_not() {
    let t0 = Instant::now();
    let mut model = model(&[("lamp", "false")]);
    press(&mut model, &[Key::Char('t')], t0);
    // Another value arriving is not the answer.
    model.changed("other", register("true"));
    model.changed("lamp", register("false"));
    assert_eq!(model.request().unwrap().outcome, Outcome::Waiting);
    model.tick(t0 + APPLY_WITHIN - Duration::from_millis(1));
    assert_eq!(model.request().unwrap().outcome, Outcome::Waiting);
    model.changed("lamp", register("true"));
    assert_eq!(model.request().unwrap().outcome, Outcome::Applied);
    model.tick(t0 + APPLY_WITHIN * 2);
    assert_eq!(model.request().unwrap().outcome, Outcome::Applied);

    // Not applied in time: says what the register holds; a late change still counts.
    let t1 = t0 + Duration::from_secs(60);
    press(&mut model, &[Key::Char('t')], t1);
    assert_eq!(model.request().unwrap().value, json("false"));
    model.tick(t1 + APPLY_WITHIN);
    assert_eq!(
        model.request().unwrap().outcome,
        Outcome::NotApplied {
            current: Some(json("true"))
        }
    );
    model.changed("lamp", register("false"));
    assert_eq!(model.request().unwrap().outcome, Outcome::Applied);

    // Sending failed.
    press(&mut model, &[Key::Char('t')], t1);
    model.request_failed("lamp", "cannot reach regd");
    assert_eq!(
        model.request().unwrap().outcome,
        Outcome::Failed("cannot reach regd".to_string())
    );
    model.tick(t1 + APPLY_WITHIN * 3);
    assert!(matches!(
        model.request().unwrap().outcome,
        Outcome::Failed(_)
    ));

    // Asking for the value it already has.
    press(&mut model, &[Key::Enter, Key::Enter], t1);
    assert_eq!(model.request().unwrap().outcome, Outcome::Unchanged);
}

#[test]
fn gone_registers_cannot_be_edited() {
    let t0 = Instant::now();
    let mut model = model(&[("lamp", "false")]);
    model.removed("lamp", t0);
    assert_eq!(press(&mut model, &[Key::Enter, Key::Char('t')], t0), []);
    assert_eq!(model.mode(), &Mode::Browse);
    assert!(model.notice().unwrap().contains("not a boolean"));
    press(&mut model, &[Key::Enter], t0);
    assert_eq!(model.notice(), Some("lamp is gone; nothing to edit"));
}

#[test]
fn details_pane_toggles() {
    let mut model = Model::new();
    assert!(model.details_pane());
    model.key(Key::Char('d'), Instant::now());
    assert!(!model.details_pane());
}
