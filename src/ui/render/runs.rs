//! The Runs screen: queue and history in one table, newest last, with state, progress and
//! the test metrics of finished runs.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::{block, note, state_style};
use crate::ui::app::RunView;

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
    let start = app.runs_cursor.saturating_sub(height.saturating_sub(1));
    let end = (start + height).min(app.runs.len());
    // Where each run runs, when some run is another host's or Slurm's.
    let places = app.runs.iter().any(|r| r.remote());
    let rows: Vec<Row> = (start..end)
        .map(|i| {
            let r = &app.runs[i];
            let progress = match (&r.stage, r.curve.last()) {
                (Some(s), _) => format!("{} {}/{}", s.name, s.done, s.total),
                (None, Some(p)) => format!("step {}", p.step),
                (None, None) => String::new(),
            };
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
            cells.push(Cell::from(Span::styled(r.id.0.clone(), t.dim())));
            let row = Row::new(cells);
            if i == app.runs_cursor {
                row.style(t.highlight())
            } else {
                row
            }
        })
        .collect();
    let mut names = vec!["", "run", "state", "progress", "exact", "loss"];
    let mut widths = vec![
        Constraint::Length(1),
        Constraint::Fill(3),
        Constraint::Length(11),
        Constraint::Fill(2),
        Constraint::Length(6),
        Constraint::Length(7),
    ];
    if places {
        let widest = app.runs[start..end]
            .iter()
            .map(|r| {
                if r.remote() {
                    r.place().chars().count()
                } else {
                    4
                }
            })
            .max()
            .unwrap_or(5);
        names.push("where");
        widths.push(Constraint::Length(widest.clamp(5, 32) as u16));
    }
    names.push("id");
    widths.push(Constraint::Fill(2));
    let header = Row::new(names).style(t.dim().add_modifier(Modifier::BOLD));
    f.render_widget(Table::new(rows, widths).header(header), table_area);
    if let Some(r) = app.runs.get(app.runs_cursor) {
        let line = match (&r.error, r.log.back()) {
            (Some(e), _) => Line::from(vec![
                Span::styled("error: ", t.fg(t.bad)),
                Span::raw(e.clone()),
            ]),
            (None, Some(l)) => Line::styled(l.clone(), t.dim()),
            (None, None) => Line::styled(format!("submitted {}", r.submitted), t.dim()),
        };
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
