//! The Compare screen: each run with its own controls under it (random-init twin, new LoRA,
//! base), exact match with its bootstrap interval, loss, Δ vs the twin and vs the base with
//! paired intervals, a bar where there is room, then the test examples on which a run and its
//! twin (or any two runs, `p`) disagree.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::{block, note, short};
use crate::run::compare::setting_heading;
use crate::ui::app::App;
use crate::ui::screen::compare::{common_task, name};

/// A horizontal bar of `v` in [0, 1] over `width` cells, in eighths.
pub fn bar(v: f64, width: usize) -> String {
    let eighths = (v.clamp(0.0, 1.0) * width as f64 * 8.0).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    let part = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"][eighths % 8];
    s.push_str(part);
    s
}

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let rows = app.compared();
    let task = common_task(&app.runs, rows);
    let n_test = rows
        .iter()
        .find_map(|&i| app.runs[i].record.as_ref().map(|r| r.task.test));
    let title = match (&task, n_test) {
        (Some(task), Some(n)) => format!(" compare · {task} · test n={n} "),
        (Some(task), None) => format!(" compare · {task} "),
        _ => " compare ".into(),
    };
    if rows.is_empty() {
        let b = block(app, title);
        let inner = b.inner(area);
        f.render_widget(b, area);
        f.render_widget(
            note(
                app,
                "nothing to compare yet: finished runs on the task of the run under the Runs \
                 cursor appear here, or the runs marked with space on Runs",
            ),
            inner,
        );
        return;
    }
    let table_h = (rows.len() as u16 + 3).min(area.height / 2).max(5);
    let [top, bottom] =
        Layout::vertical([Constraint::Length(table_h), Constraint::Min(3)]).areas(area);
    // Wide: Δ twin and Δ base each with its paired interval, and a bar; at 80 columns the
    // intervals of Δ twin only.
    let wide = top.width >= 120;
    let delta_w: u16 = 20;
    // Config columns, as an hparams table has: the settings in which the compared runs differ,
    // as many as fit beside a run column of 28; what is left goes to the bar.
    let fixed = 20 + 7 + delta_w as usize + if wide { delta_w as usize } else { 7 } + 8;
    let mut spare = (top.width as usize).saturating_sub(fixed + 28);
    let all_settings: Vec<_> = rows.iter().map(|&i| &app.runs[i].settings).collect();
    let differ = app.compare.differ();
    let mut config: Vec<(String, String, usize)> = Vec::new();
    if wide {
        for key in differ {
            let heading = setting_heading(key, differ);
            let w = all_settings
                .iter()
                .map(|s| s.get(key).map_or(1, |v| v.chars().count()))
                .max()
                .unwrap_or(1)
                .max(heading.chars().count())
                .min(16);
            if w + 1 > spare {
                break;
            }
            spare -= w + 1;
            config.push((key.clone(), heading, w));
        }
    }
    let bar_w = if wide {
        spare.saturating_sub(1).min(30)
    } else {
        0
    };
    let with_ci = |d: Option<f64>, ci: Option<[f64; 2]>, full: bool| match (d, ci) {
        (Some(d), Some([lo, hi])) if full => format!("{d:+.2} [{lo:+.2},{hi:+.2}]"),
        (Some(d), _) => format!("{d:+.3}"),
        _ => "–".into(),
    };
    let table = app.compare.table();
    let table_rows: Vec<Row> = rows
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let r = &app.runs[i];
            let line = table.get(k).and_then(|x| x.as_ref());
            let (em, loss) = match &r.record {
                Some(rec) => (
                    rec.metrics.exact_match.display(2),
                    format!("{:.4}", rec.metrics.loss.mean),
                ),
                None => (
                    r.exact_match.map_or("–".into(), |v| format!("{v:.3}")),
                    r.loss.map_or("–".into(), |v| format!("{v:.4}")),
                ),
            };
            let mean = r.exact_match.unwrap_or(0.0);
            // A control sits under its run, named by its role.
            let shown = match line {
                Some(l) if l.group != l.id => {
                    format!("  ↳ {}", l.role.map_or("control", |k| k.name()))
                }
                // Runs of one label are told apart by what differs (selection, seed, …).
                Some(l) => match &task {
                    Some(t) => l
                        .label
                        .strip_prefix(t.as_str())
                        .map(|s| s.trim_start_matches(" / ").replace(" / ", " · "))
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| l.label.clone()),
                    None => l.label.replace(" / ", " · "),
                },
                None => name(r, task.as_deref()),
            };
            let (dt, db) = match line {
                Some(l) => (
                    with_ci(l.delta_twin, l.delta_twin_ci, true),
                    with_ci(l.delta_base, l.delta_base_ci, wide),
                ),
                None => ("–".into(), "–".into()),
            };
            let mut cells = vec![
                Cell::from(shown),
                Cell::from(em),
                Cell::from(loss),
                Cell::from(dt),
                Cell::from(db),
            ];
            for (key, _, w) in &config {
                let v = r
                    .settings
                    .get(key)
                    .map_or("–".to_string(), |v| short(v, *w));
                cells.push(Cell::from(Span::styled(v, t.dim())));
            }
            if bar_w > 0 {
                cells.push(Cell::from(Span::styled(bar(mean, bar_w), t.fg(t.bar))));
            }
            let row = Row::new(cells);
            if k == app.compare.cursor {
                row.style(t.highlight())
            } else {
                row
            }
        })
        .collect();
    let head = vec![
        "run",
        "exact match [95% CI]",
        "loss",
        "Δ twin [paired CI]",
        if wide {
            "Δ base [paired CI]"
        } else {
            "Δ base"
        },
    ];
    let mut widths = vec![
        Constraint::Fill(1),
        Constraint::Length(20),
        Constraint::Length(7),
        Constraint::Length(delta_w),
        Constraint::Length(if wide { delta_w } else { 7 }),
    ];
    let mut head: Vec<String> = head.into_iter().map(String::from).collect();
    for (_, heading, w) in &config {
        head.push(heading.clone());
        widths.push(Constraint::Length(*w as u16));
    }
    if bar_w > 0 {
        head.push(String::new());
        widths.push(Constraint::Length(bar_w as u16));
    }
    let header = Row::new(head).style(t.dim().add_modifier(Modifier::BOLD));
    f.render_widget(
        Table::new(table_rows, widths)
            .header(header)
            .block(block(app, title)),
        top,
    );
    diff(f, app, &task, bottom);
}

fn diff(f: &mut Frame, app: &App, task: &Option<String>, area: Rect) {
    let t = &app.theme;
    let Some((a, b)) = app.diff_pair() else {
        let bl = block(app, " examples ");
        let inner = bl.inner(area);
        f.render_widget(bl, area);
        let why = if app.compare.with_examples().len() < 2 {
            "two finished runs with per-example results are needed for a diff"
        } else {
            "these runs answer different test examples (other tasks or splits); mark runs of one task on Runs to see where they differ"
        };
        f.render_widget(note(app, why), inner);
        return;
    };
    let (ra, rb) = (&app.runs[a], &app.runs[b]);
    let (ea, eb) = (
        &ra.record.as_ref().expect("diff_pair checks").examples,
        &rb.record.as_ref().expect("diff_pair checks").examples,
    );
    let differ: Vec<usize> = (0..ea.len().min(eb.len()))
        .filter(|&k| ea[k].correct != eb[k].correct || ea[k].prediction != eb[k].prediction)
        .collect();
    let (na, nb) = (name(ra, task.as_deref()), name(rb, task.as_deref()));
    let title = format!(
        " examples where A = {} and B = {} differ ({}) ",
        short(&na, 24),
        short(&nb, 24),
        differ.len()
    );
    let bl = block(app, title);
    let inner = bl.inner(area);
    f.render_widget(bl, area);
    if differ.is_empty() {
        f.render_widget(
            note(app, "the two runs answer every test example alike"),
            inner,
        );
        return;
    }
    // prompt · expected answer · A's answer · B's answer; a wrong answer ends at its first wrong
    // token (greedy decoding is checked by teacher forcing, which stops there), marked "…".
    let w = inner.width as usize;
    let col = w.saturating_sub(12) / 4;
    let mark = |ok: bool| {
        if ok {
            Span::styled(" ✓", t.fg(t.ok))
        } else {
            Span::styled(" ✗", t.fg(t.bad))
        }
    };
    let shown = |e: &crate::run::record::ExampleOutcome| {
        let mut p = e.prediction.clone();
        if e.truncated {
            p.push('…');
        }
        p
    };
    let rows: Vec<usize> = differ
        .iter()
        .copied()
        .take((inner.height as usize).saturating_sub(1))
        .collect();
    // Each column as wide as its longest entry: the answers at most a quarter of the pane, the
    // prompt whatever they leave.
    let width = |f: &dyn Fn(usize) -> String, head: &str, most: usize| {
        rows.iter()
            .map(|&k| f(k).chars().count())
            .chain([head.chars().count()])
            .max()
            .unwrap_or(0)
            .min(most)
    };
    let answer = width(&|k| ea[k].answer.clone(), "answer", col);
    let a = width(&|k| shown(&ea[k]), "A", col);
    let b = width(&|k| shown(&eb[k]), "B", col);
    let prompt = width(
        &|k| ea[k].prompt.clone(),
        "prompt",
        w.saturating_sub(answer + a + b + 10).max(col),
    );
    let widths = [prompt, answer, a, b];
    let cell = |text: &str, i: usize| format!("{:<w$}", short(text, widths[i]), w = widths[i]);
    let mut lines: Vec<Line> = vec![Line::styled(
        format!(
            "{}  {}  {}    {}",
            cell("prompt", 0),
            cell("answer", 1),
            cell("A", 2),
            cell("B", 3)
        ),
        t.dim(),
    )];
    lines.extend(rows.iter().map(|&k| {
        Line::from(vec![
            Span::raw(format!("{}  ", cell(&ea[k].prompt, 0))),
            Span::styled(format!("{}  ", cell(&ea[k].answer, 1)), t.dim()),
            Span::raw(cell(&shown(&ea[k]), 2)),
            mark(ea[k].correct),
            Span::raw("  "),
            Span::raw(cell(&shown(&eb[k]), 3)),
            mark(eb[k].correct),
        ])
    }));
    f.render_widget(Paragraph::new(lines), inner);
}

#[cfg(test)]
mod tests {
    use super::bar;

    #[test]
    fn bars_in_eighths() {
        assert_eq!(bar(0.0, 10), "");
        assert_eq!(bar(1.0, 4), "████");
        assert_eq!(bar(0.5, 3), "█▌");
    }
}
