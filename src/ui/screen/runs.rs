//! The Runs screen's model: a cursor over the run list, marks for Compare, and the run
//! operations (cancel, retry, delete after a y/n, export).

use super::{Confirm, Ctx, Nav, move_cursor, run_ops};
use crate::ui::keymap::Action;
use crate::ui::request::Resubmit;
use crate::ui::runs::RunList;

#[derive(Debug, Clone, Default)]
pub struct RunsScreen {
    pub cursor: usize,
}

impl RunsScreen {
    /// Keeps the cursor inside a list that shrank.
    pub fn clamp(&mut self, n: usize) {
        self.cursor = self.cursor.min(n.saturating_sub(1));
    }

    pub fn on_action(&mut self, a: Action, runs: &mut RunList, cx: &mut Ctx) -> Option<Nav> {
        let n = runs.len();
        if move_cursor(&mut self.cursor, n, a, 10) {
            return None;
        }
        let i = self.cursor;
        let run = runs.get(i)?;
        match a {
            Action::Enter => return Some(Nav::Live(i)),
            Action::Select => {
                let marked = !run.marked;
                runs.set_marked(i, marked);
                move_cursor(&mut self.cursor, n, Action::Down, 1);
            }
            Action::Cancel => run_ops::cancel(runs, i, cx),
            Action::Retry => run_ops::resubmit_run(runs, i, Resubmit::Retry, cx),
            Action::Delete => {
                if run.state.is_live() {
                    cx.say(format!(
                        "{} is {}; cancel it first",
                        run.label,
                        run.state.name()
                    ));
                } else {
                    cx.say(format!("delete {} and its folder? y/n", run.id));
                    return Some(Nav::Ask(Confirm::Delete(run.id.clone())));
                }
            }
            Action::Export => run_ops::export(runs, i, cx),
            _ => {}
        }
        None
    }
}
