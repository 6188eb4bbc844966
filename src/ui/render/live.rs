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
use crate::ui::screen::live::{AdapterSort, ModuleView, group_parts};

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
    let adapters = run.columns.len().max(run.chosen.len());
    let heat_rows = if adapters == 0 {
        0
    } else {
        let want = adapters as u16 + 4;
        want.min((area.height / 3).max(top_n as u16 + 4))
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
        heat_map(f, app, run, &top, heat);
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

/// The adapters panel's rows: every column of the coefficient matrix (or, before the first
/// snapshot and for methods without one, every chosen adapter), in the screen's sort order.
fn adapter_rows(app: &App, run: &RunView, sums: &[f64]) -> Vec<usize> {
    let n = run.columns.len().max(run.chosen.len());
    let mut rows: Vec<usize> = (0..n).collect();
    let score = |j: usize| {
        let c = chosen_of(run, j);
        (
            c.and_then(|c| c.exact_match).unwrap_or(f64::NEG_INFINITY),
            c.and_then(|c| c.loss).unwrap_or(f64::INFINITY),
        )
    };
    match app.live.sort {
        AdapterSort::Weight => rows.sort_by(|&a, &b| {
            let (x, y) = (sums.get(a).copied(), sums.get(b).copied());
            y.unwrap_or(0.0)
                .total_cmp(&x.unwrap_or(0.0))
                .then(a.cmp(&b))
        }),
        AdapterSort::Screening => rows.sort_by(|&a, &b| {
            let ((ea, la), (eb, lb)) = (score(a), score(b));
            eb.total_cmp(&ea).then(la.total_cmp(&lb)).then(a.cmp(&b))
        }),
        AdapterSort::Name => rows.sort_by_key(|&j| adapter_name(run, j)),
    }
    rows
}

/// What selection knew of adapter row `j`: its rank and screening scores.
fn chosen_of(run: &RunView, j: usize) -> Option<&crate::run::record::ChosenAdapter> {
    match run.columns.get(j) {
        Some(name) => run.chosen.iter().find(|c| &c.name == name),
        None => run.chosen.get(j),
    }
}

fn adapter_name(run: &RunView, j: usize) -> String {
    match run.columns.get(j) {
        Some(n) => n.clone(),
        None => run
            .chosen
            .get(j)
            .map_or_else(|| format!("#{j}"), |c| c.name.clone()),
    }
}

/// A heat-map column: its layer (None for a group of no layer) and module (empty: all of them).
type HeatColumn = (Option<usize>, String);

/// The heat map's columns under the screen's module view: (layer, module) of each column, and
/// for each coefficient group the column it adds to (None: left out).
fn heat_columns(
    run: &RunView,
    view: &ModuleView,
    groups: usize,
) -> (Vec<HeatColumn>, Vec<Option<usize>>) {
    let parts: Vec<(Option<usize>, &str)> = (0..groups)
        .map(|g| run.groups.get(g).map_or((None, ""), |n| group_parts(n)))
        .collect();
    let layered = parts.iter().any(|(l, _)| l.is_some());
    let mut cols: Vec<HeatColumn> = Vec::new();
    let mut of = Vec::with_capacity(groups);
    for (g, &(layer, module)) in parts.iter().enumerate() {
        let key = match (layered, view) {
            (false, _) => (None, run.groups.get(g).cloned().unwrap_or_default()),
            (true, ModuleView::Together) => (layer, String::new()),
            (true, ModuleView::Apart) => (layer, module.to_string()),
            (true, ModuleView::Only(m)) if m == module => (layer, module.to_string()),
            (true, ModuleView::Only(_)) => {
                of.push(None);
                continue;
            }
        };
        let c = match cols.iter().position(|k| *k == key) {
            Some(c) => c,
            None => {
                cols.push(key);
                cols.len() - 1
            }
        };
        of.push(Some(c));
    }
    (cols, of)
}

/// The adapters panel across the whole width: every selected adapter by its full name, in the
/// chosen order and scrolled with pgup/pgdn, each with its screening scores, its Σ|f(c)| and, once
/// coefficients come, its |f(c)| by layer (modules together, apart or one alone; `[`/`]` scroll
/// the layers). Names of the plotted `top` are in their curve's colour.
fn heat_map(f: &mut Frame, app: &App, run: &RunView, top: &[usize], area: Rect) {
    let t = &app.theme;
    let live = &app.live;
    let last = run.coefficients.last();
    let groups = last.map_or(0, |(_, v)| v.len());
    let (cols, col_of) = heat_columns(run, &live.modules, groups);
    let n_adapters = run.columns.len().max(run.chosen.len());
    let mut cells = vec![vec![0f64; cols.len()]; n_adapters];
    let mut counts = vec![0usize; cols.len()];
    let mut sums = vec![0f64; n_adapters];
    if let Some((_, values)) = last {
        for (g, row) in values.iter().enumerate() {
            let Some(c) = col_of.get(g).copied().flatten() else {
                continue;
            };
            counts[c] += 1;
            for (j, v) in row.iter().enumerate().take(n_adapters) {
                let v = v.abs() as f64;
                cells[j][c] += v;
                sums[j] += v;
            }
        }
    }
    for row in &mut cells {
        for (v, &n) in row.iter_mut().zip(&counts) {
            *v /= n.max(1) as f64;
        }
    }
    let rows = adapter_rows(app, run, &sums);
    let max = cells
        .iter()
        .flatten()
        .fold(0f64, |m, &v| m.max(v))
        .max(1e-12);
    let scored = run.chosen.iter().any(|c| c.exact_match.is_some());
    // Borders, the header line and the key line below the rows.
    let fit = (area.height as usize).saturating_sub(4).max(1);
    let offset = live.offset.min(rows.len().saturating_sub(fit.max(1)));
    // The title's parts, most needed first; those that do not fit the width are left out.
    let mut parts = vec![format!("adapters {}", rows.len())];
    if rows.len() > fit {
        parts[0] = format!(
            "adapters {}–{} of {} (pgup/pgdn)",
            offset + 1,
            (offset + fit).min(rows.len()),
            rows.len()
        );
    }
    parts.push(format!("by {}", live.sort.name()));
    if let Some((step, _)) = last {
        parts.push(format!("|f(c)| by layer at step {step}"));
        parts.push(format!("░▒▓█ up to {max:.2}"));
        parts.push(live.modules.describe());
    }
    let mut title = String::from(" ");
    for (i, p) in parts.iter().enumerate() {
        let piece = if i == 0 {
            p.clone()
        } else {
            format!(" · {p}")
        };
        if title.chars().count() + piece.chars().count() + 2 > area.width as usize && i > 0 {
            continue;
        }
        title.push_str(&piece);
    }
    title.push(' ');
    let b = block(app, title);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let longest = rows
        .iter()
        .map(|&j| adapter_name(run, j).chars().count())
        .max()
        .unwrap_or(8);
    let name_w = longest.clamp(8, 40).min((inner.width as usize / 3).max(8));
    // rank (once selection has said), screening exact match and loss, Σ|f(c)|.
    let ranked = !run.chosen.is_empty();
    let rank_w = if ranked { 4 } else { 0 };
    let score_w = if scored { 6 + 7 } else { 0 };
    let fixed = name_w + 1 + rank_w + score_w + 1 + 9;
    let room = (inner.width as usize).saturating_sub(fixed);
    let apart = matches!(live.modules, ModuleView::Apart);
    let first_col = live.column_offset.min(cols.len().saturating_sub(1));
    let avail = cols.len() - first_col.min(cols.len());
    let cell_w = if cols.is_empty() {
        0
    } else {
        (room / avail.max(1)).max(1)
    };
    let shown = room.checked_div(cell_w).map_or(0, |n| n.min(avail));
    // The header: layer numbers above their first cell (each where it fits, else every fifth).
    let mut header = format!("{:<w$} ", "adapter", w = name_w);
    if ranked {
        header.push_str(&format!("{:>3} ", "r"));
    }
    if scored {
        header.push_str(&format!("{:>5} {:>6} ", "em", "loss"));
    }
    // Columns are filled left to right; a label takes the cells it needs and one blank after.
    let mut c = 0;
    let mut prev_layer = None;
    while c < shown {
        let (layer, module) = &cols[first_col + c];
        let label = match layer {
            Some(l) => l.to_string(),
            None => module.clone(),
        };
        let starts = layer.is_none() || *layer != prev_layer;
        prev_layer = *layer;
        let len = label.chars().count();
        let cells_used = len.div_ceil(cell_w.max(1)).max(1);
        let often = cell_w > len || apart || layer.is_none_or(|l| l % 5 == 0);
        if starts && often && c + cells_used <= shown {
            header.push_str(&label);
            header.push_str(&" ".repeat(cells_used * cell_w - len));
            c += cells_used;
            // Cells a long label ran over belong to its layer too.
            if cells_used > 1 {
                prev_layer = cols.get(first_col + c - 1).and_then(|k| k.0);
            }
        } else {
            header.push_str(&" ".repeat(cell_w));
            c += 1;
        }
    }
    let used = header.chars().count();
    let target = fixed - 9 - 1 + shown * cell_w;
    header.push_str(&" ".repeat(target.saturating_sub(used)));
    let sum_w = (inner.width as usize).saturating_sub(header.chars().count() + 1);
    header.push_str(&format!(" {:>w$}", "Σ|f(c)|", w = sum_w));
    let mut lines = vec![Line::styled(short(&header, inner.width as usize), t.dim())];
    for &j in rows.iter().skip(offset).take(fit) {
        let name_style = match top.iter().position(|&x| x == j) {
            Some(i) => t.fg(t.series(i)),
            None => t.base(),
        };
        let c = chosen_of(run, j);
        let mut flags = String::new();
        if c.is_some_and(|c| c.oracle) {
            flags.push('*');
        }
        let mut spans = vec![Span::styled(
            format!("{:<w$} ", short(&adapter_name(run, j), name_w), w = name_w),
            name_style,
        )];
        if ranked {
            spans.push(Span::styled(
                format!(
                    "{:>3}{}",
                    c.map_or("–".into(), |c| c.rank.to_string()),
                    if flags.is_empty() { " " } else { "*" }
                ),
                t.dim(),
            ));
        }
        if scored {
            spans.push(Span::raw(format!(
                "{:>5} {:>6} ",
                c.and_then(|c| c.exact_match)
                    .map_or("–".into(), |v| format!("{v:.2}")),
                c.and_then(|c| c.loss)
                    .map_or("–".into(), |v| format!("{v:.3}")),
            )));
        }
        for &v in cells[j].iter().skip(first_col).take(shown) {
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
        let cut = first_col + shown < cols.len() || first_col > 0;
        spans.push(Span::styled(if cut { "…" } else { " " }, t.dim()));
        let sum = if last.is_some() {
            format!("{:>w$.3}", sums[j], w = sum_w)
        } else {
            format!("{:>w$}", "–", w = sum_w)
        };
        spans.push(Span::raw(sum));
        lines.push(Line::from(spans));
    }
    let foot = match (last.is_some(), run.chosen.iter().any(|c| c.oracle)) {
        (false, _) if run.state.is_live() => {
            "selected so far; |f(c)| comes with the first validation check".to_string()
        }
        (false, _) => {
            "this method keeps no coefficients; the adapters it merged, with their screening scores"
                .to_string()
        }
        (true, oracle) => {
            // Apart, each layer's cells are its modules in this order.
            let order = if apart {
                let modules: Vec<String> = crate::ui::screen::live::modules_of(&run.groups)
                    .iter()
                    .map(|m| m.trim_end_matches("_proj").to_string())
                    .collect();
                format!("cells of a layer: {} · ", modules.join(" "))
            } else {
                String::new()
            };
            format!(
                "{order}s sorts · m modules together/apart/alone · [ ] layers{}",
                if oracle { " · * oracle" } else { "" }
            )
        }
    };
    if lines.len() < inner.height as usize {
        lines.push(Line::styled(short(&foot, inner.width as usize), t.dim()));
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
}
