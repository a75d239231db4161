//! `regctl browse`, the live terminal browser: the event loop that glues a consumer of
//! every register, key and resize events, a worker for details and change requests, and
//! a clock tick to the [`super::model`], and draws it with [`super::view`] after each event. It owns
//! the terminal: raw mode and the alternate screen are entered once and always left —
//! on return, on error, and on panic (a panic hook restores the terminal before the
//! panic message is printed). Invariants: the loop never blocks on the network (HTTP
//! happens on the consumer's and the worker's threads); every thread it starts is named
//! `regctl-browse-…` and joined before `run` returns (the input thread within a grace
//! period: see `Joined::join_within`); SIGTERM, SIGHUP and SIGINT quit
//! like `q`; it talks to regd only through `regd::client`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, IsTerminal, Stdout};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, terminal};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use regd::client::{self, Client, Detailed, Json, Update};

use super::model::{Action, Key, Model};
use super::view;

/// How often details (ttl, time left, revision) are read while nothing changes: a
/// refresh that changes nothing wakes no consumer, so only this notices it.
const DETAILS_EVERY: Duration = Duration::from_secs(1);

/// How often the screen is redrawn while nothing happens (the countdown).
const TICK: Duration = Duration::from_millis(200);

/// How long quitting waits for the input thread, which checks its stop flag every
/// 100 ms.
const INPUT_GRACE: Duration = Duration::from_millis(500);

/// The worker's timeout for one request, so quitting never waits long on a dead regd.
const WORKER_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the browser stopped.
#[derive(Debug)]
pub enum Error {
    /// stdin or stdout is not a terminal.
    NotATerminal,
    /// The terminal could not be set up, read or drawn on.
    Terminal(io::Error),
    /// A thread could not be started.
    Thread(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotATerminal => f.write_str(
                "browse needs a terminal on stdin and stdout; for scripts use list or watch",
            ),
            Error::Terminal(error) => write!(f, "terminal failed: {error}"),
            Error::Thread(error) => write!(f, "cannot start a thread: {error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::NotATerminal => None,
            Error::Terminal(error) | Error::Thread(error) => Some(error),
        }
    }
}

/// Runs the browser against `client`'s regd until the user quits.
pub fn run(client: &Client) -> Result<(), Error> {
    if !io::stdin().is_terminal() || !io::stdout().is_terminal() {
        return Err(Error::NotATerminal);
    }
    install_panic_hook();
    let mut screen = Screen::enter()?;
    let result = browse(client, &mut screen.terminal);
    drop(screen);
    result
}

/// Whether this process has the terminal in raw mode on the alternate screen.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Leaves raw mode and the alternate screen, once, however many times it is called.
fn restore_terminal() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
    }
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
}

/// The terminal in raw mode on the alternate screen; restored on drop.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> Result<Screen, Error> {
        ACTIVE.store(true, Ordering::SeqCst);
        let setup = || -> io::Result<Screen> {
            terminal::enable_raw_mode()?;
            execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
            let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
            terminal.clear()?;
            Ok(Screen { terminal })
        };
        setup().map_err(|error| {
            restore_terminal();
            Error::Terminal(error)
        })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// What the worker thread reports.
enum News {
    Details(Result<BTreeMap<String, Detailed>, client::Error>, Instant),
    RequestFailed(String, client::Error),
}

/// A named thread, joined when dropped.
struct Joined(Option<thread::JoinHandle<()>>);

impl Joined {
    /// Joins the thread if it ends within `grace` (it drops the sender of `done` when
    /// it ends); otherwise leaves it to end with the process.
    ///
    /// For the input thread only: crossterm can spin inside `event::poll` without
    /// returning once the terminal has hung up (the SSH session ended), so it never
    /// sees the stop flag. The process exits right after the browser returns, which
    /// ends the thread; it holds nothing that needs cleaning up.
    fn join_within(mut self, done: &Receiver<()>, grace: Duration) {
        if done.recv_timeout(grace) == Err(crossbeam_channel::RecvTimeoutError::Timeout) {
            drop(self.0.take());
        }
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<Joined, Error> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map(|handle| Joined(Some(handle)))
        .map_err(Error::Thread)
}

fn browse(client: &Client, terminal: &mut Terminal<CrosstermBackend<Stdout>>) -> Result<(), Error> {
    let theme = view::Theme::from_env();
    let url = client.url().to_string();
    let mut model = Model::new();
    let size = terminal.size().map_err(Error::Terminal)?;
    model.set_page(view::page_rows(size.height, &model));

    // Declared before the threads, so they outlive them: dropping the senders and
    // setting `stop` ends the threads, which are joined (dropped) first.
    let stop = Arc::new(AtomicBool::new(false));
    let (requests, requested) = crossbeam_channel::unbounded::<(String, Json)>();
    let (refresh, refreshed) = crossbeam_channel::bounded::<()>(1);
    let (news_out, news) = crossbeam_channel::unbounded();
    let (keys_out, keys) = crossbeam_channel::bounded(64);

    let consumer = client.consumer();
    consumer.subscribe_all();
    let worker_client = client.clone().with_timeout(WORKER_TIMEOUT);
    let worker = spawn("regctl-browse-worker", move || {
        work(&worker_client, &requested, &refreshed, &news_out)
    })?;
    let (input_running, input_done) = crossbeam_channel::bounded::<()>(0);
    let input = {
        let stop = stop.clone();
        spawn("regctl-browse-input", move || {
            let _running = input_running;
            read_input(&stop, &keys_out);
        })?
    };
    // SIGTERM, SIGHUP (the SSH session ended) and SIGINT end the browser like q does,
    // so the terminal is restored.
    let mut signals = Signals::new([SIGTERM, SIGHUP, SIGINT]).map_err(Error::Terminal)?;
    let signals_handle = signals.handle();
    let (signalled_out, signalled) = crossbeam_channel::bounded(1);
    let signal_thread = spawn("regctl-browse-signals", move || {
        for signal in signals.forever() {
            let _ = signalled_out.try_send(signal);
        }
    })?;
    let ticks = crossbeam_channel::tick(TICK);

    let result = (|| -> Result<(), Error> {
        loop {
            let now = Instant::now();
            terminal
                .draw(|frame| view::draw(frame, &model, now, theme, &url))
                .map_err(Error::Terminal)?;
            select! {
                recv(consumer.updates()) -> update => {
                    let Ok(update) = update else { return Ok(()) };
                    apply(&mut model, update, &refresh);
                    // Take whatever else is waiting before drawing again.
                    while let Ok(update) = consumer.updates().try_recv() {
                        apply(&mut model, update, &refresh);
                    }
                }
                recv(keys) -> event => match event {
                    Ok(Ok(Event::Key(key))) => {
                        let Some(key) = translate(key) else { continue };
                        match model.key(key, Instant::now()) {
                            Some(Action::Quit) => return Ok(()),
                            Some(Action::Send { name, value }) => {
                                let _ = requests.send((name, value));
                            }
                            None => {}
                        }
                    }
                    Ok(Ok(Event::Resize(_, height))) => {
                        terminal.autoresize().map_err(Error::Terminal)?;
                        model.set_page(view::page_rows(height, &model));
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Err(Error::Terminal(error)),
                    Err(_) => return Ok(()),
                },
                recv(news) -> news => match news {
                    Ok(News::Details(Ok(details), at)) => model.details(&details, at),
                    Ok(News::Details(Err(error), _)) => model.failed(&error.to_string()),
                    Ok(News::RequestFailed(name, error)) => {
                        model.request_failed(&name, &error.to_string());
                    }
                    Err(_) => return Ok(()),
                },
                recv(ticks) -> _ => model.tick(Instant::now()),
                recv(signalled) -> _ => return Ok(()),
            }
        }
    })();
    stop.store(true, Ordering::SeqCst);
    signals_handle.close();
    drop(signal_thread);
    drop(requests);
    input.join_within(&input_done, INPUT_GRACE);
    drop(worker);
    consumer.close();
    result
}

fn apply(model: &mut Model, update: Update, refresh: &Sender<()>) {
    match update {
        Update::Changed { name, register } => {
            model.changed(&name, register);
            // New registers and changes need their timing; one pending refresh covers
            // any number of changes.
            let _ = refresh.try_send(());
        }
        Update::Removed { name } => model.removed(&name, Instant::now()),
        Update::Failed(error) => model.failed(&error.to_string()),
        Update::Recovered => {
            model.recovered();
            let _ = refresh.try_send(());
        }
    }
}

/// The worker: sends change requests and reads details, on request and every
/// [`DETAILS_EVERY`]; ends when the request channel closes.
fn work(
    client: &Client,
    requests: &Receiver<(String, Json)>,
    refresh: &Receiver<()>,
    news: &Sender<News>,
) {
    loop {
        select! {
            recv(requests) -> request => {
                let Ok((name, value)) = request else { return };
                if let Err(error) = client.request(&name, &value) {
                    let _ = news.send(News::RequestFailed(name, error));
                }
                continue;
            }
            recv(refresh) -> _ => {}
            default(DETAILS_EVERY) => {}
        }
        let details = client.details::<&str>(&[]);
        if news.send(News::Details(details, Instant::now())).is_err() {
            return;
        }
    }
}

/// Reads terminal events until `stop` is set (checked every 100 ms) or the receiver
/// goes away.
fn read_input(stop: &AtomicBool, out: &Sender<io::Result<Event>>) {
    while !stop.load(Ordering::SeqCst) {
        let event = match event::poll(Duration::from_millis(100)) {
            Ok(false) => continue,
            Ok(true) => event::read(),
            Err(error) => Err(error),
        };
        let failed = event.is_err();
        if out.send(event).is_err() || failed {
            return;
        }
    }
}

/// A terminal key as the model knows it; releases and unknown keys are dropped.
fn translate(key: KeyEvent) -> Option<Key> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    Some(match key.code {
        KeyCode::Char(ch) if key.modifiers.contains(KeyModifiers::CONTROL) => Key::Ctrl(ch),
        KeyCode::Char(ch) => Key::Char(ch),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Delete => Key::Delete,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Tab | KeyCode::BackTab => Key::Tab,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_keys_translate() {
        let cases = [
            (KeyCode::Char('q'), KeyModifiers::NONE, Some(Key::Char('q'))),
            (
                KeyCode::Char('c'),
                KeyModifiers::CONTROL,
                Some(Key::Ctrl('c')),
            ),
            (
                KeyCode::Char('Q'),
                KeyModifiers::SHIFT,
                Some(Key::Char('Q')),
            ),
            (KeyCode::Enter, KeyModifiers::NONE, Some(Key::Enter)),
            (KeyCode::BackTab, KeyModifiers::SHIFT, Some(Key::Tab)),
            (KeyCode::F(1), KeyModifiers::NONE, None),
        ];
        for (code, modifiers, expected) in cases {
            assert_eq!(
                translate(KeyEvent::new(code, modifiers)),
                expected,
                "{code:?}"
            );
        }
        let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(translate(release), None);
    }
}
