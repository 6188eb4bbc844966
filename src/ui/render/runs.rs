//! The Runs screen: queue and history in one table, newest last, with state, progress and
//! the test metrics of finished runs.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::{block, note, short, state_style};
use crate::run::compare::setting_heading;
use crate::ui::runs::RunView;
use crate::ui::screen::runs::Typing;

/// Slurm states that ended badly in the warning colour, the rest dim.
fn slurm_style(app: &App, r: &RunView) -> ratatui::style::Style {
    let t = &app.theme;
    match r.slurm_state.as_deref() {
        Some("COMPLETED") | Some("RUNNING") | Some("PENDING") | None => t.dim(),
        Some(s) if crate::slurm::state_ended(s) => t.fg(t.bad),
        Some(_) => t.dim(),
    }
}
use crate::ui::app::App;

/// A run id as the table shows it: its time stamp and its random suffix, which tell runs apart
/// (the label between them is the run column's); the whole id is on the line below the table.
pub fn short_id(id: &str) -> String {
    match (id.split_once('-'), id.rsplit_once('-')) {
        (Some((stamp, _)), Some((_, suffix))) if stamp.len() + suffix.len() + 1 < id.len() => {
            format!("{stamp}…{suffix}")
        }
        _ => id.to_string(),
    }
}

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let rs = &app.runs_screen;
    let marked = app.runs.iter().filter(|r| r.marked).count();
    let shown_ix = &rs.shown;
    let count = if rs.filter.is_empty() {
        format!("{}", app.runs.len())
    } else {
        format!("{} of {}", shown_ix.len(), app.runs.len())
    };
    let b = block(
        app,
        format!(" runs · {count} · {marked} marked for Compare "),
    );
    let inner = b.inner(area);
    f.render_widget(b, area);
    if app.runs.is_empty() {
        f.render_widget(
            note(
                app,
                "no runs yet: press 2 to set one up, then s to start it",
            ),
            inner,
        );
        return;
    }
    let typing = rs.typing.is_some();
    let line_h = u16::from(typing || !rs.filter_text.is_empty());
    let [line_area, table_area, detail_area] = Layout::vertical([
        Constraint::Length(line_h),
        Constraint::Min(3),
        Constraint::Length(3),
    ])
    .areas(inner);
    if line_h > 0 {
        let line = match &rs.typing {
            Some(Typing::Name(id)) => Line::from(vec![
                Span::styled(format!("name for {}: ", short_id(&id.0)), t.dim()),
                Span::styled(format!("{}▏", rs.name), t.accent()),
                Span::styled("  enter keeps · esc leaves it", t.dim()),
            ]),
            Some(Typing::Filter) => Line::from(vec![Span::styled(
                format!("/ {}▏", rs.filter_text),
                t.accent(),
            )]),
            None => Line::from(vec![
                Span::raw(format!("/ {}", rs.filter_text)),
                Span::styled("  esc clears", t.dim()),
            ]),
        };
        let line = match &rs.filter_error {
            Some(e) if !matches!(rs.typing, Some(Typing::Name(_))) => {
                let mut spans = line.spans;
                spans.push(Span::styled(format!("  {e}"), t.fg(t.bad)));
                Line::from(spans)
            }
            _ => line,
        };
        f.render_widget(Paragraph::new(line), line_area);
    }
    if shown_ix.is_empty() {
        f.render_widget(
            note(app, "no run matches the filter (esc clears it)"),
            table_area,
        );
        return;
    }
    let height = table_area.height.saturating_sub(1) as usize;
    let at = shown_ix.iter().position(|&i| i == rs.cursor).unwrap_or(0);
    let start = at.saturating_sub(height.saturating_sub(1));
    let end = (start + height).min(shown_ix.len());
    // Where each run runs, when some run is another host's or Slurm's.
    let places = app.runs.iter().any(|r| r.remote());
    let progress_of = |r: &crate::ui::runs::RunView| match (&r.stage, r.curve.last()) {
        (Some(s), _) => format!("{} {}/{}", s.name, s.done, s.total),
        (None, Some(p)) => format!("step {}", p.step),
        // A run not opened yet: the step count its summary gave.
        (None, None) if r.steps > 0 => format!("step {}", r.steps),
        (None, None) => String::new(),
    };
    let shown: Vec<&RunView> = shown_ix[start..end].iter().map(|&i| &app.runs[i]).collect();
    let widest = |f: &dyn Fn(&RunView) -> usize| shown.iter().map(|r| f(r)).max();
    let progress_width = widest(&|r| progress_of(r).chars().count())
        .unwrap_or(0)
        .clamp(8, 30);
    let place_width = places.then(|| {
        widest(&|r| {
            if r.remote() {
                r.place().chars().count()
            } else {
                4
            }
        })
        .unwrap_or(5)
        .clamp(5, 32)
    });
    let id_width = widest(&|r| short_id(&r.id.0).chars().count()).unwrap_or(2);
    // Ids only where whole labels (up to 40 characters) still fit beside them; the selected
    // run's full id is on the line below the table anyway.
    let label_width = widest(&|r| r.label.chars().count()).unwrap_or(3).min(40);
    let mut others = 1 + 11 + progress_width + 6 + 7 + place_width.map_or(0, |w| w + 1) + 5;
    // Config columns, as an hparams table has: the settings in which the listed runs differ,
    // as many as fit beside whole labels (up to 40 characters).
    let differ = &rs.differ;
    let mut config: Vec<(String, String, usize)> = Vec::new();
    for key in differ {
        let heading = setting_heading(key, differ);
        let w = shown
            .iter()
            .map(|r| r.settings.get(key).map_or(1, |v| v.chars().count()))
            .max()
            .unwrap_or(1)
            .max(heading.chars().count())
            .min(24);
        if (table_area.width as usize) < others + w + 1 + label_width {
            break;
        }
        others += w + 1;
        config.push((key.clone(), heading, w));
    }
    let ids = (table_area.width as usize) > others + label_width + id_width;
    let rows: Vec<Row> = shown
        .iter()
        .enumerate()
        .map(|(j, r)| {
            let progress = progress_of(r);
            let mut cells = vec![
                Cell::from(Span::styled(
                    if r.marked { "●" } else { " " },
                    t.fg(t.marked),
                )),
                Cell::from(r.label.clone()),
                Cell::from(Span::styled(r.state.name(), state_style(app, r.state))),
                Cell::from(progress),
                Cell::from(r.exact_match.map_or("–".into(), |v| format!("{v:.3}"))),
                Cell::from(r.loss.map_or("–".into(), |v| format!("{v:.4}"))),
            ];
            for (key, _, w) in &config {
                let v = r
                    .settings
                    .get(key)
                    .map_or("–".to_string(), |v| short(v, *w));
                cells.push(Cell::from(v));
            }
            if places {
                let place = match () {
                    _ if r.remote() => r.place(),
                    _ if r.host.is_empty() => String::new(),
                    _ => "here".into(),
                };
                cells.push(Cell::from(Span::styled(place, slurm_style(app, r))));
            }
            if ids {
                cells.push(Cell::from(Span::styled(short_id(&r.id.0), t.dim())));
            }
            let row = Row::new(cells);
            if shown_ix[start + j] == rs.cursor {
                row.style(t.highlight())
            } else {
                row
            }
        })
        .collect();
    let mut names: Vec<String> = ["", "run", "state", "progress", "exact", "loss"]
        .map(String::from)
        .to_vec();
    let mut widths = vec![
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(11),
        Constraint::Length(progress_width as u16),
        Constraint::Length(6),
        Constraint::Length(7),
    ];
    for (_, heading, w) in &config {
        names.push(heading.clone());
        widths.push(Constraint::Length(*w as u16));
    }
    if let Some(w) = place_width {
        names.push("where".into());
        widths.push(Constraint::Length(w as u16));
    }
    if ids {
        names.push("id".into());
        widths.push(Constraint::Length(id_width as u16));
    }
    let header = Row::new(names).style(t.dim().add_modifier(Modifier::BOLD));
    f.render_widget(Table::new(rows, widths).header(header), table_area);
    if let Some(r) = app.runs.get(rs.cursor) {
        let line = match (&r.error, r.log.back()) {
            (Some(e), _) => Line::from(vec![
                Span::styled("error: ", t.fg(t.bad)),
                Span::raw(e.clone()),
            ]),
            (None, Some(l)) => Line::styled(l.clone(), t.dim()),
            (None, None) => Line::styled(format!("submitted {}", r.submitted), t.dim()),
        };
        let line = Line::from(
            [Span::styled(format!("{} · ", r.id.0), t.dim())]
                .into_iter()
                .chain(line.spans)
                .collect::<Vec<_>>(),
        );
        let line = if r.remote() {
            let mut spans = vec![Span::styled(
                format!("on {} · updated {} · ", r.place(), r.updated),
                t.dim(),
            )];
            spans.extend(line.spans);
            Line::from(spans)
        } else {
            line
        };
        f.render_widget(Paragraph::new(line).wrap(Wrap { trim: true }), detail_area);
    }
}
