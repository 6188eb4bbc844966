//! The Live screen: the selected run's stage and ETA, loss curves, coefficient trajectories of
//! the adapters with the largest |f(c)|, a heat map of |f(c)| by adapter × layer, what is queued
//! beside it, and the log tail.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, LineGauge, Paragraph};

use super::{block, clock, note, short, state_style};
use crate::run::store::RunState;
use crate::ui::app::App;
use crate::ui::runs::RunView;

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let Some(run) = app.live_run() else {
        let b = block(app, " live ");
        let inner = b.inner(area);
        f.render_widget(b, area);
        f.render_widget(
            note(app, "no run yet: press 2 to set one up, then s to start it"),
            inner,
        );
        return;
    };
    let big = area.height >= 36;
    let top_n = if big { 8 } else { 5 };
    // The heat map lists every selected adapter that fits (a third of the screen at most,
    // its top-n at least), with a header line of layer numbers.
    let heat_rows = if run.columns.is_empty() {
        0
    } else {
        let want = run.columns.len() as u16 + 3;
        want.min((area.height / 3).max(top_n as u16 + 3))
    };
    let log_rows = if big { 8 } else { 3 };
    let [head, gauge, charts, heat, log] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(6),
        Constraint::Length(heat_rows),
        Constraint::Length(log_rows),
    ])
    .areas(area);
    header(f, app, run, head);
    progress(f, app, run, gauge);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);
    loss_chart(f, app, run, left);
    let top = top_columns(run, top_n);
    coefficient_chart(f, app, run, &top, right);
    if heat_rows > 0 {
        let all = top_columns(run, run.columns.len());
        heat_map(f, app, run, &all, &top, heat);
    }
    log_tail(f, app, run, log);
}

fn header(f: &mut Frame, app: &App, run: &RunView, area: Rect) {
    let t = &app.theme;
    let pos = app.live.run + 1;
    let mut spans = vec![
        Span::styled(format!(" run {pos}/{} ", app.runs.len()), t.dim()),
        Span::styled(run.label.clone(), t.accent()),
        Span::raw("  "),
        Span::styled(run.state.name(), state_style(app, run.state)),
    ];
    if let Some(r) = &run.record {
        spans.push(Span::raw(format!(
            "  exact match {}  loss {:.4}",
            r.metrics.exact_match.display(2),
            r.metrics.loss.mean
        )));
    } else if let (Some(em), Some(l)) = (run.exact_match, run.loss) {
        spans.push(Span::raw(format!("  exact match {em:.3}  loss {l:.4}")));
    }
    if run.remote() {
        spans.push(Span::styled(format!("  on {}", run.place()), t.dim()));
    }
    f.render_widget(Line::from(spans), area);
}

fn progress(f: &mut Frame, app: &App, run: &RunView, area: Rect) {
    let t = &app.theme;
    let Some(s) = &run.stage else {
        let text = match (run.state, &run.error) {
            (_, Some(e)) => format!(" {}", short(e, area.width as usize - 2)),
            (RunState::Queued, _) => " waiting in the queue".into(),
            (RunState::Finished, _) => match run.curve.last() {
                Some(p) => format!(" done after {} steps", p.step),
                None => " done".into(),
            },
            (s, _) => format!(" {}", s.name()),
        };
        f.render_widget(Span::styled(text, t.dim()), area);
        return;
    };
    let ratio = if s.total == 0 {
        0.0
    } else {
        (s.done as f64 / s.total as f64).clamp(0.0, 1.0)
    };
    let mut label = format!(" {} {}/{}", s.name, s.done, s.total);
    if let Some(tp) = run.throughput {
        label.push_str(&format!(" · {tp:.1} it/s"));
    }
    if let Some(eta) = s.eta() {
        label.push_str(&format!(" · ETA {}", clock(eta)));
    }
    f.render_widget(
        LineGauge::default()
            .ratio(ratio)
            .label(label)
            .filled_style(t.fg(t.accent))
            .unfilled_style(t.dim()),
        area,
    );
}

/// At most `max` points of a series, keeping each bucket's extremes so spikes survive.
pub fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 4 {
        return points.to_vec();
    }
    let buckets = max / 2;
    let per = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(max);
    for chunk in points.chunks(per) {
        let (mut lo, mut hi) = (chunk[0], chunk[0]);
        for &p in chunk {
            if p.1 < lo.1 {
                lo = p;
            }
            if p.1 > hi.1 {
                hi = p;
            }
        }
        if lo.0 <= hi.0 {
            out.push(lo);
            if hi != lo {
                out.push(hi);
            }
        } else {
            out.push(hi);
            out.push(lo);
        }
    }
    out
}

fn bounds(series: &[&[(f64, f64)]]) -> ([f64; 2], [f64; 2]) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for s in series {
        for &(x, y) in *s {
            if y.is_finite() {
                x0 = x0.min(x);
                x1 = x1.max(x);
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
        }
    }
    if x0 > x1 {
        return ([0.0, 1.0], [0.0, 1.0]);
    }
    if x1 - x0 < 1.0 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-6 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    ([x0, x1], [y0, y1])
}

fn axis_labels(b: [f64; 2], digits: usize) -> Vec<Line<'static>> {
    vec![
        Line::raw(format!("{:.*}", digits, b[0])),
        Line::raw(format!("{:.*}", digits, b[1])),
    ]
}

/// One line of a chart, drawn in braille dots.
fn line_series<'a>(name: String, style: Style, data: &'a [(f64, f64)]) -> Dataset<'a> {
    Dataset::default()
        .name(name)
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(style)
        .data(data)
}

/// A line chart in `block` with step on x (whole numbers) and values on y (two decimals).
fn chart<'a>(
    app: &App,
    datasets: Vec<Dataset<'a>>,
    block: Block<'a>,
    xb: [f64; 2],
    yb: [f64; 2],
) -> Chart<'a> {
    let t = &app.theme;
    Chart::new(datasets)
        .block(block)
        .x_axis(
            Axis::default()
                .bounds(xb)
                .labels(axis_labels(xb, 0))
                .style(t.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds(yb)
                .labels(axis_labels(yb, 2))
                .style(t.dim()),
        )
}

fn loss_chart(f: &mut Frame, app: &App, run: &RunView, area: Rect) {
    let t = &app.theme;
    let best = run
        .curve
        .iter()
        .filter_map(|p| p.val_loss.map(|v| (p.step, v)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    // The key is in the title, so no legend box covers the curves; validation is drawn in
    // dots, so the two read apart without colour (NO_COLOR) too.
    let title = match best {
        Some((s, v)) => format!(" loss · ─ train · • val · best val {v:.3} @ {s} "),
        None => " loss · ─ train · • val ".into(),
    };
    let b = block(app, title);
    if run.curve.is_empty() {
        let inner = b.inner(area);
        f.render_widget(b, area);
        let text = match &run.record {
            Some(r)
                if matches!(
                    r.spec.method,
                    crate::run::spec::MethodSpec::Base | crate::run::spec::MethodSpec::Merge(_)
                ) =>
            {
                "no steps: this method trains nothing"
            }
            _ if !run.state.is_live() && run.loaded => "the run ended before its first step",
            _ if !run.state.is_live() => "its curve is read when the run is opened",
            _ => "no steps yet",
        };
        f.render_widget(note(app, text), inner);
        return;
    }
    let max_points = (area.width as usize).saturating_mul(4).max(8);
    let train: Vec<(f64, f64)> = run
        .curve
        .iter()
        .map(|p| (p.step as f64, p.train_loss))
        .collect();
    let val: Vec<(f64, f64)> = run
        .curve
        .iter()
        .filter_map(|p| p.val_loss.map(|v| (p.step as f64, v)))
        .collect();
    let train = thin(&train, max_points);
    let val = thin(&val, max_points);
    let (xb, yb) = bounds(&[&train, &val]);
    let datasets = vec![
        line_series("train".into(), t.fg(t.train), &train),
        Dataset::default()
            .name("val")
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(t.fg(t.val))
            .data(&val),
    ];
    f.render_widget(chart(app, datasets, b, xb, yb).legend_position(None), area);
}

/// Each column's mean f(c) over the groups, per coefficient snapshot.
fn column_means(values: &[Vec<f32>], j: usize) -> f64 {
    let n = values.len().max(1);
    values
        .iter()
        .map(|row| row.get(j).copied().unwrap_or(0.0) as f64)
        .sum::<f64>()
        / n as f64
}

/// The columns with the largest mean |f(c)| at the latest snapshot, largest first.
fn top_columns(run: &RunView, n: usize) -> Vec<usize> {
    let Some((_, last)) = run.coefficients.last() else {
        return Vec::new();
    };
    let cols = last.first().map_or(0, |r| r.len());
    let mut idx: Vec<(usize, f64)> = (0..cols)
        .map(|j| {
            let m = last
                .iter()
                .map(|row| row.get(j).copied().unwrap_or(0.0).abs() as f64)
                .sum::<f64>();
            (j, m)
        })
        .collect();
    idx.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    idx.into_iter().take(n).map(|(j, _)| j).collect()
}

fn column_name(run: &RunView, j: usize) -> String {
    run.columns
        .get(j)
        .cloned()
        .unwrap_or_else(|| format!("#{j}"))
}

fn coefficient_chart(f: &mut Frame, app: &App, run: &RunView, top: &[usize], area: Rect) {
    let t = &app.theme;
    let b = if top.is_empty() {
        block(app, " coefficients ")
    } else {
        block(app, format!(" coefficients · top {} by |f(c)| ", top.len()))
    };
    if top.is_empty() || run.coefficients.len() < 2 {
        let inner = b.inner(area);
        f.render_widget(b, area);
        let text = match run.coefficients.len() {
            1 => "one snapshot so far (they come with each validation check)",
            _ if run
                .record
                .as_ref()
                .and_then(|r| r.coefficients.as_ref())
                .is_some() =>
            {
                "no trajectory recorded (LoraHub keeps only its final coefficients)"
            }
            _ if !run.local && run.state.is_live() => {
                "run by another process: its coefficients come with its record when it ends"
            }
            _ if run.state.is_live() => "coefficients appear at the first validation check",
            _ if run.record.is_some() => "this method has no coefficients",
            // Snapshots travel as events and are kept in the record: a run that stopped
            // without one (cancelled, failed, interrupted) left none behind.
            _ => "no coefficients were kept: the run ended without a record",
        };
        f.render_widget(note(app, text), inner);
        return;
    }
    let series: Vec<Vec<(f64, f64)>> = top
        .iter()
        .map(|&j| {
            run.coefficients
                .iter()
                .map(|(step, v)| (*step as f64, column_means(v, j)))
                .collect()
        })
        .collect();
    let refs: Vec<&[(f64, f64)]> = series.iter().map(|s| s.as_slice()).collect();
    let (xb, yb) = bounds(&refs);
    let datasets: Vec<Dataset> = series
        .iter()
        .zip(top)
        .enumerate()
        .map(|(i, (s, &j))| line_series(short(&column_name(run, j), 16), t.fg(t.series(i)), s))
        .collect();
    // The series are named in the heat map below, in their colours; no legend box on the plot.
    let chart = chart(app, datasets, b, xb, yb).legend_position(None);
    f.render_widget(chart, area);
}

/// The layer a group name belongs to (`layer 3 q_proj` → 3); `None` for `all`.
fn layer_of(group: &str) -> Option<usize> {
    group
        .strip_prefix("layer ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// |f(c)| by adapter × layer at the latest snapshot, across the whole width: every selected
/// adapter by its full name (as many as fit, largest Σ|f(c)| first, named in its curve's colour
/// when it is one of the plotted `top`), a header of layer numbers, and each adapter's Σ|f(c)|.
fn heat_map(f: &mut Frame, app: &App, run: &RunView, rows: &[usize], top: &[usize], area: Rect) {
    let t = &app.theme;
    let Some((step, last)) = run.coefficients.last() else {
        let b = block(app, " heat map ");
        let inner = b.inner(area);
        f.render_widget(b, area);
        f.render_widget(note(app, "no coefficients yet"), inner);
        return;
    };
    // Columns: layers when the groups name them, else the groups themselves.
    let layers: Vec<Option<usize>> = run.groups.iter().map(|g| layer_of(g)).collect();
    let n_layers = layers.iter().flatten().max().map_or(0, |m| m + 1);
    let (n_cols, col_of): (usize, Box<dyn Fn(usize) -> usize>) = if n_layers > 0 {
        (n_layers, Box::new(|g| layers[g].unwrap_or(0)))
    } else {
        (last.len().max(1), Box::new(|g| g))
    };
    let mut cells = vec![vec![0f64; n_cols]; rows.len()];
    let mut sums = vec![0f64; rows.len()];
    let mut counts = vec![0usize; n_cols];
    for (g, row) in last.iter().enumerate() {
        let c = col_of(g).min(n_cols - 1);
        counts[c] += 1;
        for (r, &j) in rows.iter().enumerate() {
            let v = row.get(j).copied().unwrap_or(0.0).abs() as f64;
            cells[r][c] += v;
            sums[r] += v;
        }
    }
    for row in &mut cells {
        for (v, &n) in row.iter_mut().zip(&counts) {
            *v /= n.max(1) as f64;
        }
    }
    let max = cells
        .iter()
        .flatten()
        .fold(0f64, |m, &v| m.max(v))
        .max(1e-12);
    let unit = if n_layers > 0 { "layer" } else { "group" };
    let b = block(
        app,
        format!(
            " |f(c)| by adapter × {unit} at step {step} · {} adapters · ░▒▓█ up to {max:.2} ",
            rows.len()
        ),
    );
    let inner = b.inner(area);
    f.render_widget(b, area);
    let longest = rows
        .iter()
        .map(|&j| column_name(run, j).chars().count())
        .max()
        .unwrap_or(8);
    let name_w = longest.clamp(8, 40).min((inner.width as usize / 3).max(8));
    let sum_w = 9usize;
    let room = (inner.width as usize).saturating_sub(name_w + 1 + sum_w + 1);
    let cell_w = (room / n_cols.max(1)).max(1);
    let shown = (room / cell_w).min(n_cols);
    // Layer numbers above their cells: each where it fits, else every fifth.
    let mut header = format!("{:<w$} ", unit, w = name_w);
    let mut c = 0;
    while c < shown {
        let label = c.to_string();
        let every = if cell_w > label.len() { 1 } else { 5 };
        if c % every == 0 {
            let span = (cell_w * every).min((shown - c) * cell_w);
            header.push_str(&format!("{:<span$}", label));
            c += every;
        } else {
            header.push_str(&" ".repeat(cell_w));
            c += 1;
        }
    }
    let used = header.chars().count();
    let pad = (name_w + 1 + shown * cell_w).saturating_sub(used);
    header.push_str(&" ".repeat(pad));
    // What the cells leave (the remainder of the division too) goes to the Σ column, so the
    // rows end at the border.
    let sum_w = (inner.width as usize).saturating_sub(name_w + 1 + shown * cell_w + 1);
    header.push_str(&format!(" {:>w$}", "Σ|f(c)|", w = sum_w));
    let mut lines = vec![Line::styled(header, t.dim())];
    let fit = (inner.height as usize).saturating_sub(1);
    let more = rows.len().saturating_sub(fit);
    let take = if more > 0 { fit.saturating_sub(1) } else { fit };
    for (r, &j) in rows.iter().enumerate().take(take) {
        let name_style = match top.iter().position(|&x| x == j) {
            Some(i) => t.fg(t.series(i)),
            None => t.base(),
        };
        let mut spans = vec![Span::styled(
            format!("{:<w$} ", short(&column_name(run, j), name_w), w = name_w),
            name_style,
        )];
        for &v in cells[r].iter().take(shown) {
            let x = v / max;
            let ch = match x {
                x if x >= 0.75 => '█',
                x if x >= 0.5 => '▓',
                x if x >= 0.25 => '▒',
                x if x > 0.0 => '░',
                _ => ' ',
            };
            spans.push(Span::styled(ch.to_string().repeat(cell_w), t.fg(t.heat(x))));
        }
        spans.push(Span::styled(
            if shown < n_cols { "…" } else { " " },
            t.dim(),
        ));
        spans.push(Span::raw(format!("{:>w$.3}", sums[r], w = sum_w)));
        lines.push(Line::from(spans));
    }
    if more > 0 {
        lines.push(Line::styled(
            format!(
                "… {} more adapters (runs show lists them all)",
                rows.len() - take
            ),
            t.dim(),
        ));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

fn log_tail(f: &mut Frame, app: &App, run: &RunView, area: Rect) {
    let t = &app.theme;
    let mut lines: Vec<Line> = Vec::new();
    let beside: Vec<String> = app
        .runs
        .iter()
        .filter(|r| r.id != run.id && r.state.is_live())
        .map(|r| format!("{} ({})", r.label, r.state.name()))
        .collect();
    if !beside.is_empty() {
        lines.push(Line::from(vec![
            Span::styled("also queued: ", t.dim()),
            Span::raw(short(&beside.join(" · "), area.width as usize - 14)),
        ]));
    }
    let room = (area.height as usize).saturating_sub(lines.len());
    let skip = run.log.len().saturating_sub(room);
    for l in run.log.iter().skip(skip) {
        lines.push(Line::styled(short(l, area.width as usize), t.dim()));
    }
    f.render_widget(Paragraph::new(lines), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_extremes_in_order() {
        let pts: Vec<(f64, f64)> = (0..1000)
            .map(|i| (i as f64, if i == 500 { 9.0 } else { (i % 7) as f64 }))
            .collect();
        let out = thin(&pts, 100);
        assert!(out.len() <= 100, "{}", out.len());
        assert!(out.contains(&(500.0, 9.0)));
        assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(thin(&pts[..10], 100).len(), 10);
    }

    #[test]
    fn layers_from_group_names() {
        assert_eq!(layer_of("layer 3 q_proj"), Some(3));
        assert_eq!(layer_of("layer 12 attn"), Some(12));
        assert_eq!(layer_of("all"), None);
    }
}
