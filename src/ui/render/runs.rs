//! The Runs screen: queue and history in one table, newest last, with state, progress and
//! the test metrics of finished runs.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::{block, note, state_style};
use crate::ui::runs::RunView;

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
    let marked = app.runs.iter().filter(|r| r.marked).count();
    let b = block(
        app,
        format!(" runs · {} · {marked} marked for Compare ", app.runs.len()),
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
    let [table_area, detail_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(3)]).areas(inner);
    let height = table_area.height.saturating_sub(1) as usize;
    let start = app
        .runs_screen
        .cursor
        .saturating_sub(height.saturating_sub(1));
    let end = (start + height).min(app.runs.len());
    // Where each run runs, when some run is another host's or Slurm's.
    let places = app.runs.iter().any(|r| r.remote());
    let progress_of = |r: &crate::ui::runs::RunView| match (&r.stage, r.curve.last()) {
        (Some(s), _) => format!("{} {}/{}", s.name, s.done, s.total),
        (None, Some(p)) => format!("step {}", p.step),
        // A run not opened yet: the step count its summary gave.
        (None, None) if r.steps > 0 => format!("step {}", r.steps),
        (None, None) => String::new(),
    };
    let shown = &app.runs[start..end];
    let widest = |f: &dyn Fn(&crate::ui::runs::RunView) -> usize| shown.iter().map(f).max();
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
    let others = 1 + 11 + progress_width + 6 + 7 + place_width.map_or(0, |w| w + 1) + 5;
    let ids = (table_area.width as usize) > others + label_width + id_width;
    let rows: Vec<Row> = (start..end)
        .map(|i| {
            let r = &app.runs[i];
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
            if i == app.runs_screen.cursor {
                row.style(t.highlight())
            } else {
                row
            }
        })
        .collect();
    let mut names = vec!["", "run", "state", "progress", "exact", "loss"];
    let mut widths = vec![
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(11),
        Constraint::Length(progress_width as u16),
        Constraint::Length(6),
        Constraint::Length(7),
    ];
    if let Some(w) = place_width {
        names.push("where");
        widths.push(Constraint::Length(w as u16));
    }
    if ids {
        names.push("id");
        widths.push(Constraint::Length(id_width as u16));
    }
    let header = Row::new(names).style(t.dim().add_modifier(Modifier::BOLD));
    f.render_widget(Table::new(rows, widths).header(header), table_area);
    if let Some(r) = app.runs.get(app.runs_screen.cursor) {
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
