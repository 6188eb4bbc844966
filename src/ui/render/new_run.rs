//! The New run screen: the form, one field per line, problems shown beside their field, and a
//! preview of what starting will queue.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::{block, short};
use crate::ui::app::App;
use crate::ui::form::{FIELDS, FieldId, Form};

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let form = &app.form;
    let wide = area.width >= 120;
    let (form_area, side) = if wide {
        let [a, b] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
            .areas(area);
        (a, Some(b))
    } else {
        (area, None)
    };
    let b = block(app, " new run ");
    let inner = b.inner(form_area);
    f.render_widget(b, form_area);
    let label_w = 22usize;
    let mut lines = Vec::new();
    for (i, &fid) in FIELDS.iter().enumerate() {
        if fid == FieldId::TwinRandom {
            lines.push(Line::styled("queue beside it:", t.dim()));
        }
        let focused = i == form.cursor;
        let applies = form.applies(fid);
        let value = match (&form.editing, focused) {
            (Some(text), true) => format!("{text}▏"),
            _ => form.value(fid),
        };
        let mut spans = vec![Span::styled(
            format!(
                "{}{:<w$}",
                if focused { "▸ " } else { "  " },
                form.label(fid),
                w = label_w - 2
            ),
            if applies { t.base() } else { t.dim() },
        )];
        let choice = !Form::is_text(fid) && fid != FieldId::Start;
        let shown = if choice && focused && applies {
            format!("‹ {value} ›")
        } else {
            value
        };
        let style = match (focused, applies) {
            (true, _) if form.editing.is_some() => t.accent(),
            (true, _) => t.highlight().add_modifier(Modifier::BOLD),
            (false, true) => t.base(),
            (false, false) => t.dim(),
        };
        spans.push(Span::styled(
            if applies { shown } else { "–".into() },
            style,
        ));
        if let Some(p) = form.problem(fid) {
            spans.push(Span::styled(format!("  ✗ {p}"), t.fg(t.bad)));
        } else if let Some(origin) = (fid == FieldId::Task).then(|| form.task_origin()).flatten() {
            spans.push(Span::styled(format!("  {origin}"), t.dim()));
        }
        lines.push(Line::from(spans));
    }
    let height = inner.height as usize;
    let skip = (form.cursor + 3).saturating_sub(height);
    f.render_widget(
        Paragraph::new(lines.into_iter().skip(skip).collect::<Vec<_>>()),
        inner,
    );
    if let Some(side) = side {
        preview(f, app, side);
    }
}

/// What starting the form would queue, or why it cannot.
fn preview(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let mut lines = Vec::new();
    match app.form.specs(&app.context.model, &app.context.source) {
        Ok(specs) => {
            for (i, s) in specs.iter().enumerate() {
                let role = if i == 0 { "run" } else { "control" };
                lines.push(Line::from(vec![
                    Span::styled(format!("{role:<8}"), t.dim()),
                    Span::raw(s.label()),
                ]));
            }
            lines.push(Line::raw(""));
            lines.push(Line::styled("spec of the run:", t.dim()));
            for l in specs[0].to_toml().lines().take(area.height as usize) {
                lines.push(Line::raw(short(l, area.width as usize - 2)));
            }
        }
        Err(e) => lines.push(Line::styled(format!("cannot start yet: {e}"), t.fg(t.bad))),
    }
    f.render_widget(
        Paragraph::new(lines)
            .block(block(app, " will queue "))
            .wrap(Wrap { trim: false }),
        area,
    );
}
