//! The Compare screen's model: which runs are compared, which of them hold per-example results,
//! and which pairs of those answer the same test examples. Deriving these reads every example
//! prompt of every compared record, so it happens once per change of the runs (their version)
//! or of the run under the Runs cursor, never while drawing.

use crate::run::store::RunState;
use crate::ui::runs::RunList;

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
