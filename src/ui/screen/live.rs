//! The Live screen's model: which run of the list it shows. ←/→ step through the runs; the run
//! shown can be cancelled, exported, or given a random-init or base-model twin.

use super::{Ctx, run_ops};
use crate::ui::keymap::Action;
use crate::ui::request::Resubmit;
use crate::ui::runs::RunList;

#[derive(Debug, Clone, Default)]
pub struct LiveScreen {
    /// The run shown, as an index into the run list.
    pub run: usize,
}

impl LiveScreen {
    /// Shows run `i` and asks for its history if it has not been read.
    pub fn show(&mut self, i: usize, runs: &mut RunList, cx: &mut Ctx) {
        self.run = i;
        run_ops::ensure_loaded(runs, i, cx);
    }

    /// Keeps the index inside a list that shrank.
    pub fn clamp(&mut self, n: usize) {
        self.run = self.run.min(n.saturating_sub(1));
    }

    pub fn on_action(&mut self, a: Action, runs: &mut RunList, cx: &mut Ctx) {
        let n = runs.len();
        match a {
            Action::Left | Action::Up => self.show(self.run.saturating_sub(1), runs, cx),
            Action::Right | Action::Down => {
                self.show((self.run + 1).min(n.saturating_sub(1)), runs, cx)
            }
            Action::Cancel => run_ops::cancel(runs, self.run, cx),
            Action::RandomTwin => run_ops::resubmit_run(runs, self.run, Resubmit::RandomTwin, cx),
            Action::BaseTwin => run_ops::resubmit_run(runs, self.run, Resubmit::BaseTwin, cx),
            Action::Export => run_ops::export(runs, self.run, cx),
            _ => {}
        }
    }
}
