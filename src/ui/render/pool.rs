//! The Pool screen: search and filter line, the adapter table (only the rows in view are built,
//! so thousands scroll at the cost of a screenful), and a detail pane.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::{block, note, short};
use crate::pool::entry::{EntryStatus, PoolEntry, human_size, short_modules};
use crate::ui::app::App;

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let wide = area.width >= 140;
    let (list_area, detail_area) = if wide {
        let [l, d] = Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)])
            .areas(area);
        (l, d)
    } else {
        let detail_h = if area.height >= 30 { 10 } else { 7 };
        let [l, d] =
            Layout::vertical([Constraint::Min(5), Constraint::Length(detail_h)]).areas(area);
        (l, d)
    };
    table(f, app, list_area);
    detail(f, app, detail_area);
}

fn table(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let p = &app.pool;
    let title = format!(
        " pool · {} of {} · {} selected{} ",
        p.visible.len(),
        p.entries.len(),
        p.selected.len(),
        p.scores
            .as_ref()
            .map(|(task, _)| format!(" · scores on {task}"))
            .unwrap_or_default()
    );
    let b = block(app, title);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let [bar, rows_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let search = if p.searching {
        Span::styled(format!("/ {}▏", p.search), t.accent())
    } else if p.search.is_empty() {
        Span::styled(
            "/ search (text, or a filter: rank<=16,modules=all)",
            t.dim(),
        )
    } else {
        Span::raw(format!("/ {}", p.search))
    };
    if let Some(e) = &p.search_error {
        f.render_widget(
            Line::from(vec![search, Span::styled(format!("  {e}"), t.fg(t.bad))]),
            bar,
        );
        f.render_widget(note(app, "the search reads as a filter expression: KEY OP VALUE, comma-separated; keys name, rank, alpha, modules; ops = != < <= > >= ~ !~"), rows_area);
        return;
    }
    f.render_widget(
        Line::from(vec![
            search,
            Span::styled("   filter: ", t.dim()),
            Span::raw(p.status.name()),
            Span::styled("   sort: ", t.dim()),
            Span::raw(p.sort_label()),
        ]),
        bar,
    );
    if let Some((what, done, total)) = &p.loading {
        let text = if *total > 0 {
            format!("{what}… {done}/{total}")
        } else {
            format!("{what}…")
        };
        f.render_widget(note(app, text), rows_area);
        return;
    }
    if let Some(e) = &p.error {
        f.render_widget(
            Paragraph::new(e.as_str())
                .style(t.fg(t.bad))
                .wrap(Wrap { trim: true }),
            rows_area,
        );
        return;
    }
    if p.visible.is_empty() {
        f.render_widget(
            note(
                app,
                "no adapter matches (esc clears the search, f the filter)",
            ),
            rows_area,
        );
        return;
    }
    // Only the rows in view: the window follows the cursor.
    let height = rows_area.height.saturating_sub(1) as usize;
    let start = p.cursor.saturating_sub(height.saturating_sub(1));
    let end = (start + height).min(p.visible.len());
    let rows: Vec<Row> = (start..end)
        .map(|pos| {
            let e = &p.entries[p.visible[pos]];
            let mark = if p.selected.contains(&e.id) {
                "●"
            } else {
                " "
            };
            let mut cells = vec![
                Cell::from(Span::styled(mark, t.fg(t.marked))),
                Cell::from(crate::untrusted::printable(&e.id).into_owned()),
                Cell::from(e.rank.map_or("–".into(), |r| r.to_string())),
                Cell::from(e.alpha.map_or("–".into(), |a| format!("{a}"))),
                Cell::from(short_modules(&e.target_modules)),
                Cell::from(human_size(e.size_bytes)),
                Cell::from(e.norm.map_or("–".into(), |n| format!("{n:.2}"))),
            ];
            if let Some((_, scores)) = &p.scores {
                cells.push(Cell::from(
                    scores
                        .get(&e.id)
                        .map_or("–".into(), |(em, loss)| format!("{em:.2} {loss:.3}")),
                ));
            }
            cells.push(status_cell(app, &e.status));
            let row = Row::new(cells);
            if pos == p.cursor {
                row.style(t.highlight())
            } else {
                row
            }
        })
        .collect();
    let mut names: Vec<String> = ["", "id", "r", "α", "modules", "size", "‖ΔW‖"]
        .map(String::from)
        .to_vec();
    let mut widths = vec![
        Constraint::Length(1),
        Constraint::Fill(3),
        Constraint::Length(3),
        Constraint::Length(4),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(6),
    ];
    // The score on the task a run of this UI screened the pool for: exact match, then loss.
    if p.scores.is_some() {
        names.push("em loss".into());
        widths.push(Constraint::Length(10));
    }
    names.push("status".into());
    widths.push(Constraint::Fill(1));
    let header = Row::new(names).style(t.dim().add_modifier(Modifier::BOLD));
    f.render_widget(Table::new(rows, widths).header(header), rows_area);
}

fn status_cell<'a>(app: &App, s: &EntryStatus) -> Cell<'a> {
    let t = &app.theme;
    match s {
        EntryStatus::Usable => Cell::from(Span::styled("usable", t.fg(t.ok))),
        EntryStatus::NotDownloaded => Cell::from(Span::styled("remote", t.dim())),
        EntryStatus::Rejected { rule, .. } => {
            Cell::from(Span::styled(format!("✗ {}", rule.name()), t.fg(t.bad)))
        }
    }
}

fn detail(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let Some(e) = app.pool.current() else {
        f.render_widget(block(app, " details "), area);
        return;
    };
    let id = crate::untrusted::printable(&e.id);
    let b = block(app, format!(" {} ", short(&id, area.width as usize - 4)));
    let mut lines = vec![config_line(e)];
    let mut facts = Vec::new();
    if let Some(b) = &e.base_model {
        facts.push(format!("base {}", short(b, 40)));
    }
    if let Some(n) = e.norm {
        facts.push(format!("‖ΣΔW‖ {n:.3}"));
    }
    if let Some(d) = e.downloads {
        facts.push(format!("{d} downloads"));
    }
    if let Some(l) = e.likes {
        facts.push(format!("{l} likes"));
    }
    if let Some(m) = &e.last_modified {
        facts.push(format!("modified {}", m.get(..10).unwrap_or(m)));
    }
    if !facts.is_empty() {
        lines.push(Line::styled(facts.join(" · "), t.dim()));
    }
    if let Some((task, scores)) = &app.pool.scores
        && let Some(&(em, loss)) = scores.get(&e.id)
    {
        // Its place among the screened adapters, as top-k by exact match (then loss) ranks them.
        let better = scores
            .values()
            .filter(|&&(x, l)| x > em || (x == em && l < loss))
            .count();
        lines.push(Line::styled(
            format!(
                "#{} of {} on {task}: exact match {em:.3}, loss {loss:.4}",
                better + 1,
                scores.len()
            ),
            t.accent(),
        ));
    }
    match &e.status {
        EntryStatus::Rejected { rule, reason } => lines.push(Line::from(vec![
            Span::styled(format!("rejected by {}: ", rule.name()), t.fg(t.bad)),
            Span::raw(reason.clone()),
        ])),
        EntryStatus::NotDownloaded => lines.push(Line::styled(
            "not downloaded: d downloads it into the HF cache",
            t.fg(t.warn),
        )),
        EntryStatus::Usable => {}
    }
    if let Some((_, state)) = app.pool.downloads.iter().find(|(id, _)| *id == e.id) {
        lines.push(Line::styled(format!("download: {state}"), t.accent()));
    }
    if let Some(card) = &e.card {
        lines.push(Line::raw(card.clone()));
    }
    if let Some(p) = &e.path {
        lines.push(Line::styled(p.display().to_string(), t.dim()));
    }
    f.render_widget(
        Paragraph::new(lines).block(b).wrap(Wrap { trim: true }),
        area,
    );
}

fn config_line(e: &PoolEntry) -> Line<'static> {
    let mut s = format!(
        "rank {} · alpha {}{} · modules {}",
        e.rank.map_or("–".into(), |r| r.to_string()),
        e.alpha.map_or("–".into(), |a| format!("{a}")),
        if e.rslora { " (rsLoRA)" } else { "" },
        if e.target_modules.is_empty() {
            "–".into()
        } else {
            e.target_modules
                .iter()
                .map(|m| m.trim_end_matches("_proj"))
                .collect::<Vec<_>>()
                .join(",")
        }
    );
    if let Some(size) = e.size_bytes {
        s.push_str(&format!(" · {}", human_size(Some(size))));
    }
    Line::raw(s)
}
