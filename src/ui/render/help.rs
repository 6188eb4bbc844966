//! The help screen, generated from the keymap: what the keys do is what this lists.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::block;
use crate::ui::app::App;
use crate::ui::keymap::Scope;

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let b = block(app, " help · keys (any key closes) ");
    let inner = b.inner(area);
    f.render_widget(b, area);
    let cols = ((inner.width as usize) / 62).clamp(1, 3);
    let desc_w = (inner.width as usize / cols).saturating_sub(15);
    let mut lines = Vec::new();
    // The screen help was opened from comes first, then the global keys, then the rest.
    let first = app.help_from().scope();
    let mut scopes = vec![first];
    for s in [
        Scope::Global,
        Scope::Pool,
        Scope::NewRun,
        Scope::Live,
        Scope::Runs,
        Scope::Compare,
    ] {
        if s != first {
            scopes.push(s);
        }
    }
    for s in scopes {
        lines.push(Line::styled(
            s.title(),
            t.accent().add_modifier(Modifier::UNDERLINED),
        ));
        for b in app.keymap.bindings.iter().filter(|b| b.scope == s) {
            let keys = b
                .keys
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            lines.push(Line::from(vec![
                Span::styled(format!("  {keys:<11} "), t.accent()),
                Span::raw(super::short(b.description, desc_w)),
            ]));
        }
    }
    // As many columns as fit side by side; ↑/↓ scroll what does not fit.
    let height = inner.height.max(1) as usize;
    // Scrolling stops once the last line is in view.
    let most = lines.len().saturating_sub(height * cols);
    let lines: Vec<Line> = lines
        .into_iter()
        .skip((app.help.scroll as usize).min(most))
        .collect();
    let areas = ratatui::layout::Layout::horizontal(vec![Constraint::Fill(1); cols]).split(inner);
    for (c, chunk) in lines.chunks(height).take(cols).enumerate() {
        f.render_widget(Paragraph::new(chunk.to_vec()), areas[c]);
    }
}
