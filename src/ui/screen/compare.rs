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
    table: Vec<Option<crate::run::compare::Row>>,
    /// The settings in which the compared runs differ (the config columns).
    differ: Vec<String>,
    /// The runs' version and the anchor the rows were derived for.
    seen: Option<(u64, usize)>,
    derivations: u64,
}

impl CompareScreen {
    /// The settings in which the compared runs differ.
    pub fn differ(&self) -> &[String] {
        &self.differ
    }

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

    /// Each compared run's line of the comparison (its group, Δ twin and Δ base), in the order
    /// of `rows`; `None` for a run without a record.
    pub fn table(&self) -> &[Option<crate::run::compare::Row>] {
        &self.table
    }

    /// Derives the rows again if the runs or the anchor (the Runs cursor) changed since.
    pub fn refresh(&mut self, runs: &RunList, anchor: usize) {
        let key = (runs.version(), anchor);
        if self.seen == Some(key) {
            return;
        }
        self.seen = Some(key);
        self.derivations += 1;
        let chosen = compared(runs, anchor);
        // Runs with records, grouped: each run, then the controls queued with it or reused.
        let with_record: Vec<usize> = chosen
            .iter()
            .copied()
            .filter(|&i| runs[i].record.is_some())
            .collect();
        // Borrowed, not copied: records hold every test example.
        let recs: Vec<&crate::run::RunRecord> = with_record
            .iter()
            .map(|&i| &**runs[i].record.as_ref().expect("filtered"))
            .collect();
        let grouped = crate::run::compare::rows(&recs, &(0..recs.len()).collect::<Vec<_>>());
        self.rows.clear();
        self.table.clear();
        for row in grouped {
            if let Some(k) = recs.iter().position(|r| r.id == row.id) {
                self.rows.push(with_record[k]);
                self.table.push(Some(row));
            }
        }
        for &i in &chosen {
            if !self.rows.contains(&i) {
                self.rows.push(i);
                self.table.push(None);
            }
        }
        let settings: Vec<_> = self.rows.iter().map(|&i| &runs[i].settings).collect();
        self.differ = crate::run::compare::differing_settings(&settings);
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
        // Only runs answering the same test examples pair up (the same task and split); a run
        // and its own twin come first, then a run and its base, then any other two.
        let same = |a: usize, b: usize| match (&runs[a].record, &runs[b].record) {
            (Some(ra), Some(rb)) => crate::run::compare::same_examples(ra, rb),
            _ => false,
        };
        let index = |id: &Option<String>| {
            id.as_ref()
                .and_then(|id| self.rows.iter().copied().find(|&i| runs[i].id.0 == *id))
        };
        let mut pairs = Vec::new();
        for (k, row) in self.table.iter().enumerate() {
            let Some(row) = row else { continue };
            for other in [index(&row.twin), index(&row.base)] {
                if let Some(j) = other
                    && same(self.rows[k], j)
                {
                    pairs.push((self.rows[k], j));
                }
            }
        }
        let rows = &self.with_examples;
        for a in 0..rows.len() {
            for b in a + 1..rows.len() {
                let p = (rows[a], rows[b]);
                if same(p.0, p.1) && !pairs.contains(&p) && !pairs.contains(&(p.1, p.0)) {
                    pairs.push(p);
                }
            }
        }
        self.pairs = pairs;
        self.cursor = self.cursor.min(self.rows.len().saturating_sub(1));
    }

    pub fn on_action(&mut self, a: Action, _runs: &RunList, cx: &mut Ctx) -> Option<Nav> {
        if move_cursor(&mut self.cursor, self.rows.len(), a, 5) {
            return None;
        }
        match a {
            Action::SwitchPair => self.pair += 1,
            Action::Enter => return self.rows.get(self.cursor).map(|&i| Nav::Live(i)),
            Action::ExportTable => {
                let (md, csv) = table_text(&self.table);
                cx.push(Request::WriteTable { md, csv });
            }
            _ => {}
        }
        None
    }
}

/// The runs on Compare: the marked ones, else every finished run on the task of the run at
/// `anchor` (the run with its controls), or of the last run. A run's task is its record's (a
/// named run's label does not say it), else its label's first part.
fn compared(runs: &RunList, anchor: usize) -> Vec<usize> {
    let marked: Vec<usize> = (0..runs.len()).filter(|&i| runs[i].marked).collect();
    if !marked.is_empty() {
        return marked;
    }
    let Some(anchor) = runs.get(anchor).or(runs.last()) else {
        return Vec::new();
    };
    let task = task_of(anchor);
    (0..runs.len())
        .filter(|&i| {
            let r = &runs[i];
            r.state == RunState::Finished && task_of(r) == task
        })
        .collect()
}

/// A run's task: its record's, else the first part of its label.
pub fn task_of(r: &RunView) -> String {
    match &r.record {
        Some(rec) => rec.task.name.clone(),
        None => r.label.split(" / ").next().unwrap_or("").to_string(),
    }
}

/// The task shared by the runs' labels, if they share one.
pub fn common_task(runs: &RunList, rows: &[usize]) -> Option<String> {
    let tasks: Vec<String> = rows.iter().map(|&i| task_of(&runs[i])).collect();
    let first = tasks.first()?;
    tasks.iter().all(|t| t == first).then(|| first.clone())
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

/// The compared runs as Markdown and CSV tables: each run with its controls, Δ twin and Δ base
/// with their paired intervals (as `loracycle runs compare --out` writes them).
pub fn table_text(table: &[Option<crate::run::compare::Row>]) -> (String, String) {
    let rows: Vec<crate::run::compare::Row> = table.iter().flatten().cloned().collect();
    (
        crate::run::compare::markdown(&rows),
        crate::run::compare::csv(&rows),
    )
}
