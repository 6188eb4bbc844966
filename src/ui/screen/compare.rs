//! The Compare screen's model: which runs are compared, which of them hold per-example results,
//! and which pairs of those answer the same test examples. Deriving these reads every example
//! prompt of every compared record, so it happens once per change of the runs (their version)
//! or of the run under the Runs cursor, never while drawing.

use super::{Ctx, Nav, move_cursor};
use crate::run::spec::MethodSpec;
use crate::run::store::RunState;
use crate::ui::keymap::Action;
use crate::ui::request::Request;
use crate::ui::runs::{RunList, RunView};

#[derive(Debug, Clone, Default)]
pub struct CompareScreen {
    pub cursor: usize,
    /// Which of `pairs` is diffed (taken modulo their number).
    pub pair: usize,
    rows: Vec<usize>,
    with_examples: Vec<usize>,
    pairs: Vec<(usize, usize)>,
    /// The runs' version and the anchor the rows were derived for.
    seen: Option<(u64, usize)>,
    derivations: u64,
}

impl CompareScreen {
    /// The compared runs, as indexes into the run list.
    pub fn rows(&self) -> &[usize] {
        &self.rows
    }

    /// The compared runs whose records hold per-example results.
    pub fn with_examples(&self) -> &[usize] {
        &self.with_examples
    }

    /// The pair of compared runs whose examples are diffed.
    pub fn diff_pair(&self) -> Option<(usize, usize)> {
        (!self.pairs.is_empty()).then(|| self.pairs[self.pair % self.pairs.len()])
    }

    /// How many times the rows were derived: a test's way to see that drawing derives nothing.
    pub fn derivations(&self) -> u64 {
        self.derivations
    }

    /// Derives the rows again if the runs or the anchor (the Runs cursor) changed since.
    pub fn refresh(&mut self, runs: &RunList, anchor: usize) {
        let key = (runs.version(), anchor);
        if self.seen == Some(key) {
            return;
        }
        self.seen = Some(key);
        self.derivations += 1;
        self.rows = compared(runs, anchor);
        self.with_examples = self
            .rows
            .iter()
            .copied()
            .filter(|&i| {
                runs[i]
                    .record
                    .as_ref()
                    .is_some_and(|r| !r.examples.is_empty())
            })
            .collect();
        // Only runs answering the same test examples pair up (the same task and split).
        let same = |a: usize, b: usize| {
            let (Some(ra), Some(rb)) = (&runs[a].record, &runs[b].record) else {
                return false;
            };
            ra.task.name == rb.task.name
                && ra.examples.len() == rb.examples.len()
                && ra
                    .examples
                    .iter()
                    .zip(&rb.examples)
                    .all(|(x, y)| x.prompt == y.prompt)
        };
        let rows = &self.with_examples;
        self.pairs = (0..rows.len())
            .flat_map(|a| (a + 1..rows.len()).map(move |b| (rows[a], rows[b])))
            .filter(|&(a, b)| same(a, b))
            .collect();
        self.cursor = self.cursor.min(self.rows.len().saturating_sub(1));
    }

    pub fn on_action(&mut self, a: Action, runs: &RunList, cx: &mut Ctx) -> Option<Nav> {
        if move_cursor(&mut self.cursor, self.rows.len(), a, 5) {
            return None;
        }
        match a {
            Action::SwitchPair => self.pair += 1,
            Action::Enter => return self.rows.get(self.cursor).map(|&i| Nav::Live(i)),
            Action::ExportTable => {
                let (md, csv) = table_text(runs, &self.rows);
                cx.push(Request::WriteTable { md, csv });
            }
            _ => {}
        }
        None
    }
}

/// The runs on Compare: the marked ones, else every finished run on the task of the run at
/// `anchor` (the run with its controls), or of the last run.
fn compared(runs: &RunList, anchor: usize) -> Vec<usize> {
    let marked: Vec<usize> = (0..runs.len()).filter(|&i| runs[i].marked).collect();
    if !marked.is_empty() {
        return marked;
    }
    let Some(anchor) = runs.get(anchor).or(runs.last()) else {
        return Vec::new();
    };
    let task = anchor.label.split(" / ").next().unwrap_or("");
    (0..runs.len())
        .filter(|&i| {
            let r = &runs[i];
            r.state == RunState::Finished && r.label.split(" / ").next() == Some(task)
        })
        .collect()
}

/// The task shared by the runs' labels, if they share one.
pub fn common_task(runs: &RunList, rows: &[usize]) -> Option<String> {
    let tasks: Vec<&str> = rows
        .iter()
        .map(|&i| runs[i].label.split(" / ").next().unwrap_or(""))
        .collect();
    let first = *tasks.first()?;
    tasks.iter().all(|t| *t == first).then(|| first.to_string())
}

/// A run's name on this screen: its label without the shared task.
pub fn name(run: &RunView, task: Option<&str>) -> String {
    match task {
        Some(t) => run
            .label
            .strip_prefix(t)
            .map(|s| s.trim_start_matches(" / ").replace(" / ", " · "))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| run.label.clone()),
        None => run.label.replace(" / ", " · "),
    }
}

pub fn base_exact(runs: &RunList, rows: &[usize]) -> Option<f64> {
    rows.iter().find_map(|&i| {
        let r = runs[i].record.as_ref()?;
        matches!(r.spec.method, MethodSpec::Base).then_some(r.metrics.exact_match.mean)
    })
}

/// The compared runs as Markdown and CSV tables.
pub fn table_text(runs: &RunList, rows: &[usize]) -> (String, String) {
    let task = common_task(runs, rows);
    let base = base_exact(runs, rows);
    // What was compared: the task(s) of the records and their test sizes.
    let mut tasks: Vec<String> = rows
        .iter()
        .filter_map(|&i| runs[i].record.as_ref())
        .map(|r| format!("{} ({} test examples)", r.task.name, r.task.test))
        .collect();
    tasks.sort();
    tasks.dedup();
    let mut md = format!(
        "Test exact match (bootstrap 95% interval) and answer loss on {}.\n\n",
        tasks.join(", ")
    );
    md.push_str(
        "| run | exact match | 95% CI | loss | Δ vs base | run id |\n|---|---|---|---|---|---|\n",
    );
    let mut csv = String::from("run,id,exact_match,ci_low,ci_high,loss,delta_vs_base\n");
    for &i in rows {
        let r = &runs[i];
        let Some(rec) = &r.record else { continue };
        let em = &rec.metrics.exact_match;
        let delta = base
            .filter(|_| !matches!(rec.spec.method, MethodSpec::Base))
            .map(|b| em.mean - b);
        let n = name(r, task.as_deref());
        md.push_str(&format!(
            "| {n} | {:.3} | [{:.3}, {:.3}] | {:.4} | {} | {} |\n",
            em.mean,
            em.lo,
            em.hi,
            rec.metrics.loss.mean,
            delta.map_or("–".into(), |d| format!("{d:+.3}")),
            r.id
        ));
        csv.push_str(&format!(
            "\"{}\",{},{},{},{},{},{}\n",
            n.replace('"', "\"\""),
            r.id,
            em.mean,
            em.lo,
            em.hi,
            rec.metrics.loss.mean,
            delta.map_or(String::new(), |d| d.to_string())
        ));
    }
    (md, csv)
}
