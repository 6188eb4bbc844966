//! Drawing: one function per screen region, all reading `App` and nothing else. Rendering never
//! changes state and never waits, so a frame costs only layout and text.

pub mod compare;
mod help;
mod live;
mod new_run;
mod pool;
mod runs;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::app::{App, Screen, TABS};
use crate::run::store::RunState;

pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    f.render_widget(Block::new().style(app.theme.base()), area);
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    tabs(f, app, top);
    match app.screen {
        Screen::Pool => pool::draw(f, app, body),
        Screen::NewRun => new_run::draw(f, app, body),
        Screen::Live => live::draw(f, app, body),
        Screen::Runs => runs::draw(f, app, body),
        Screen::Compare => compare::draw(f, app, body),
        Screen::Help => help::draw(f, app, body),
    }
    status(f, app, bottom);
    // Run labels, errors, adapter names and cards come from files, the Hub and the socket: no
    // control character among them reaches the terminal, whichever widget drew it.
    for cell in f.buffer_mut().content.iter_mut() {
        if cell.symbol().chars().any(char::is_control) {
            let clean = crate::untrusted::printable(cell.symbol()).into_owned();
            cell.set_symbol(&clean);
        }
    }
}

fn tabs(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let mut spans = vec![Span::styled(" loracycle ", t.accent())];
    for (i, (screen, name)) in TABS.iter().enumerate() {
        let text = format!(" {} {name} ", i + 1);
        let on = *screen == app.screen;
        spans.push(if on {
            Span::styled(text, t.highlight().add_modifier(Modifier::BOLD))
        } else {
            Span::styled(text, t.dim())
        });
    }
    f.render_widget(Line::from(spans), area);
    let right = format!(
        "{} · {} ",
        match &app.context.model[..] {
            "lab" => "lab".to_string(),
            m => short(m, 24),
        },
        app.context.device
    );
    let w = right.chars().count() as u16;
    if area.width > w + 60 {
        let r = Rect::new(area.right() - w, area.y, w, 1);
        f.render_widget(Span::styled(right, t.dim()), r);
    }
}

/// Engine state, pool size, and the latest message or the screen's key hints. A pending
/// question takes the whole line; a message keeps its full text and the engine summary before it
/// gives way first when the line is too narrow for both.
fn status(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    if let Some(c) = &app.confirm {
        let text = match c {
            super::app::Confirm::Quit => {
                "runs are going and stop when loracycle quits: quit anyway? y/n".to_string()
            }
            _ => app.message.clone().unwrap_or_else(|| "y/n".into()),
        };
        f.render_widget(Clear, area);
        f.render_widget(
            Line::from(Span::styled(
                format!("  {text}"),
                t.highlight().add_modifier(Modifier::BOLD),
            ))
            .style(t.highlight()),
            area,
        );
        return;
    }
    let mut engine = match app.running() {
        Some(r) => {
            let mut s = format!("running {}", short(&r.label, 28));
            if let Some(st) = &r.stage {
                s.push_str(&format!(" · {} {}/{}", st.name, st.done, st.total));
                if let Some(e) = st.eta() {
                    s.push_str(&format!(" · ETA {}", clock(e)));
                }
            }
            if let Some(tp) = r.throughput {
                s.push_str(&format!(" · {tp:.1} it/s"));
            }
            s
        }
        None if app.engine_stopped => "engine stopped".into(),
        None => "idle".into(),
    };
    let queued = app
        .runs
        .iter()
        .filter(|r| r.local && r.state == RunState::Queued)
        .count();
    let remote = app
        .runs
        .iter()
        .filter(|r| !r.local && r.state == RunState::Running)
        .count();
    let mut counts = String::new();
    if queued > 0 {
        counts.push_str(&format!(" · {queued} queued"));
    }
    if remote > 0 {
        counts.push_str(&format!(" · {remote} running elsewhere"));
    }
    let mut pool = format!(" · pool {}", app.pool.entries.len());
    let tail = match &app.message {
        Some(m) => {
            let width = area.width as usize;
            let tail = format!(" │ {m}");
            let need = |e: &str, c: &str, p: &str| {
                1 + [e, c, p, &tail]
                    .map(|s| s.chars().count())
                    .iter()
                    .sum::<usize>()
            };
            if need(&engine, &counts, &pool) > width {
                pool.clear();
            }
            if need(&engine, &counts, &pool) > width {
                counts.clear();
            }
            let over = need(&engine, &counts, &pool).saturating_sub(width);
            if over > 0 {
                engine = short(&engine, engine.chars().count().saturating_sub(over).max(4));
            }
            Span::styled(tail, t.fg(t.warn))
        }
        None => Span::styled(format!(" │ {}", hints(app, area.width < 120)), t.dim()),
    };
    let spans = vec![
        Span::styled(format!(" {engine}"), t.accent()),
        Span::raw(counts),
        Span::styled(pool, t.dim()),
        tail,
    ];
    f.render_widget(Line::from(spans), area);
}

/// The screen's key hints: in full on a wide terminal, k9s-style short ones (that fit 80
/// columns beside the engine state) on a narrow one; `?` lists every key.
fn hints(app: &App, narrow: bool) -> String {
    use super::keymap::{Action as A, Scope as S};
    let k = |s, a| app.keymap.key_of(s, a);
    // (key or fixed text, its word in full, its word when narrow): `None` leaves the hint out,
    // `Some("")` shows the text alone.
    let items: Vec<(String, Option<&str>, Option<&str>)> = match app.screen {
        Screen::Pool => vec![
            (k(S::Pool, A::Search), Some("search"), Some("find")),
            (k(S::Pool, A::Select), Some("select"), Some("pick")),
            (k(S::Pool, A::CycleStatus), Some("filter"), Some("filter")),
            (k(S::Pool, A::CycleSort), Some("sort"), Some("sort")),
            (
                k(S::Pool, A::NewRunWithSelection),
                Some("new run"),
                Some("run"),
            ),
            ("?".into(), Some("help"), Some("all")),
        ],
        Screen::NewRun => vec![
            ("↑↓".into(), Some("field"), None),
            ("←→".into(), Some("value"), None),
            ("enter".into(), Some("edit"), None),
            ("↑↓ ←→ enter".into(), None, Some("")),
            (k(S::NewRun, A::StartRun), Some("start"), Some("start")),
            (k(S::NewRun, A::SaveSpec), Some("save"), Some("save")),
            (k(S::NewRun, A::LoadSpec), Some("load"), Some("load")),
            ("?".into(), Some("help"), Some("all")),
        ],
        Screen::Live => vec![
            (k(S::Live, A::Cancel), Some("cancel"), Some("cancel")),
            (
                k(S::Live, A::RandomTwin),
                Some("random-init twin"),
                Some("twin"),
            ),
            (k(S::Live, A::BaseTwin), Some("base"), Some("base")),
            (k(S::Live, A::Export), Some("export"), Some("export")),
            ("←→".into(), Some("runs"), Some("runs")),
            (k(S::Live, A::CycleSort), Some("sort"), None),
            (k(S::Live, A::ToggleModules), Some("modules"), None),
            ("?".into(), None, Some("all")),
        ],
        Screen::Runs => vec![
            ("enter".into(), Some("open"), Some("open")),
            (k(S::Runs, A::Select), Some("mark"), Some("mark")),
            (k(S::Runs, A::Search), Some("filter"), Some("find")),
            (k(S::Runs, A::Rename), Some("rename"), None),
            (k(S::Runs, A::Cancel), Some("cancel"), Some("cancel")),
            (k(S::Runs, A::Retry), Some("retry"), Some("retry")),
            (k(S::Runs, A::Delete), Some("delete"), Some("del")),
            ("?".into(), None, Some("all")),
        ],
        Screen::Compare => vec![
            ("enter".into(), Some("open run"), Some("open")),
            (
                k(S::Compare, A::SwitchPair),
                Some("next pair"),
                Some("pair"),
            ),
            (
                k(S::Compare, A::ExportTable),
                Some("export table"),
                Some("export"),
            ),
            ("marks from Runs".into(), Some(""), None),
            ("?".into(), None, Some("all")),
        ],
        Screen::Help => return "↑↓ scroll · any other key closes the help".into(),
    };
    items
        .iter()
        .filter_map(|(key, long, short)| {
            let word = if narrow { short } else { long };
            word.map(|w| {
                if w.is_empty() {
                    key.clone()
                } else {
                    format!("{key} {w}")
                }
            })
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Text cut to `n` characters with an ellipsis.
pub fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars()
            .take(n.saturating_sub(1))
            .chain(std::iter::once('…'))
            .collect()
    }
}

/// Seconds as m:ss or h:mm:ss.
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// A bordered block with a title in the accent style.
pub fn block<'a>(app: &App, title: impl Into<Line<'a>>) -> Block<'a> {
    Block::bordered()
        .border_style(app.theme.dim())
        .title(title.into().style(app.theme.accent()))
}

/// A paragraph of dim text, for empty states.
pub fn note<'a>(app: &App, text: impl Into<String>) -> Paragraph<'a> {
    Paragraph::new(text.into())
        .style(Style::new().fg(app.theme.dim))
        .wrap(ratatui::widgets::Wrap { trim: true })
}

pub fn state_style(app: &App, s: RunState) -> Style {
    let t = &app.theme;
    match s {
        RunState::Finished => t.fg(t.ok),
        RunState::Running => t.accent(),
        RunState::Queued => t.dim(),
        RunState::Failed | RunState::Interrupted => t.fg(t.bad),
        RunState::Cancelled => t.fg(t.warn),
    }
}
