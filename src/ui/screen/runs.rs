//! The Runs screen's model: a cursor over the runs the filter keeps, marks for Compare, a name
//! typed for a run, and the run operations (cancel, retry, delete after a y/n, export).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{Confirm, Ctx, Nav, move_cursor, run_ops};
use crate::run::filter::RunFilter;
use crate::ui::keymap::Action;
use crate::ui::request::{Request, Resubmit};
use crate::ui::runs::RunList;

/// The line being typed, if any.
#[derive(Debug, Clone, PartialEq)]
pub enum Typing {
    /// The filter (`/`); it applies as it is typed.
    Filter,
    /// A name for the run under the cursor (`n`).
    Name(crate::engine::RunId),
}

#[derive(Debug, Clone, Default)]
pub struct RunsScreen {
    /// An index into the run list (not into the rows shown): Live and Compare read it.
    pub cursor: usize,
    /// The filter as typed, and what it parsed to (the last text that parsed stays in force).
    pub filter_text: String,
    pub filter: RunFilter,
    pub filter_error: Option<String>,
    pub typing: Option<Typing>,
    /// The name being typed.
    pub name: String,
    /// What the table shows, derived when the runs or the filter change (never while drawing):
    /// the rows the filter keeps, the settings in which they differ, and what they came from.
    pub shown: Vec<usize>,
    pub differ: Vec<String>,
    derived_from: Option<(u64, String)>,
}

impl RunsScreen {
    /// Keeps the cursor inside a list that shrank.
    pub fn clamp(&mut self, n: usize) {
        self.cursor = self.cursor.min(n.saturating_sub(1));
    }

    /// The indexes of the runs the filter keeps, in list order.
    pub fn visible(&self, runs: &RunList) -> Vec<usize> {
        (0..runs.len())
            .filter(|&i| self.filter.matches(&runs[i].fields()))
            .collect()
    }

    /// Brings `shown` and `differ` up to date with the runs and the filter.
    pub fn refresh(&mut self, runs: &RunList) {
        let key = (runs.version(), self.filter_text.clone());
        if self.derived_from.as_ref() == Some(&key) {
            return;
        }
        self.shown = self.visible(runs);
        let settings: Vec<_> = self.shown.iter().map(|&i| &runs[i].settings).collect();
        self.differ = crate::run::compare::differing_settings(&settings);
        self.derived_from = Some(key);
    }

    fn set_filter(&mut self) {
        match self.filter_text.parse::<RunFilter>() {
            Ok(f) => {
                self.filter = f;
                self.filter_error = None;
            }
            Err(e) => self.filter_error = Some(e),
        }
    }

    /// Takes a key while a line is being typed; whether it did.
    pub fn text_key(&mut self, e: KeyEvent, runs: &mut RunList, cx: &mut Ctx) -> bool {
        let Some(typing) = self.typing.clone() else {
            return false;
        };
        let line = match typing {
            Typing::Filter => &mut self.filter_text,
            Typing::Name(_) => &mut self.name,
        };
        match e.code {
            KeyCode::Enter => {
                self.typing = None;
                if let Typing::Name(run) = typing.clone() {
                    cx.say(format!("renaming {run}…"));
                    cx.push(Request::Rename {
                        run,
                        name: std::mem::take(&mut self.name),
                    });
                }
            }
            KeyCode::Esc => {
                self.typing = None;
                if typing == Typing::Filter {
                    self.filter_text.clear();
                    self.set_filter();
                } else {
                    self.name.clear();
                    cx.say("kept the name");
                }
            }
            KeyCode::Backspace => {
                line.pop();
            }
            KeyCode::Char(c) if !e.modifiers.contains(KeyModifiers::CONTROL) => line.push(c),
            _ => {}
        }
        if typing == Typing::Filter {
            self.set_filter();
            self.snap(runs);
        }
        true
    }

    /// Puts the cursor on a run the filter keeps.
    fn snap(&mut self, runs: &RunList) {
        let shown = self.visible(runs);
        if !shown.contains(&self.cursor)
            && let Some(&i) = shown.iter().find(|&&i| i >= self.cursor).or(shown.last())
        {
            self.cursor = i;
        }
    }

    pub fn on_action(&mut self, a: Action, runs: &mut RunList, cx: &mut Ctx) -> Option<Nav> {
        let shown = self.visible(runs);
        let mut at = shown.iter().position(|&i| i == self.cursor).unwrap_or(0);
        if move_cursor(&mut at, shown.len(), a, 10) {
            self.cursor = shown[at];
            return None;
        }
        match a {
            Action::Search => {
                self.typing = Some(Typing::Filter);
                return None;
            }
            Action::Back if !self.filter_text.is_empty() => {
                self.filter_text.clear();
                self.set_filter();
                return None;
            }
            _ => {}
        }
        if !shown.contains(&self.cursor) {
            return None;
        }
        let i = self.cursor;
        let run = runs.get(i)?;
        match a {
            Action::Enter => return Some(Nav::Live(i)),
            Action::Select => {
                let marked = !run.marked;
                runs.set_marked(i, marked);
                if let Some(&next) = shown.get(at + 1) {
                    self.cursor = next;
                }
            }
            Action::Rename => {
                self.name = run.label.clone();
                self.typing = Some(Typing::Name(run.id.clone()));
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
