//! The Live screen's model: which run of the list it shows, and how its adapters panel shows
//! them. ←/→ step through the runs; pgup/pgdn scroll the adapters, `[`/`]` the layers, `s` sorts
//! the adapters, `m` shows the modules together, apart or one at a time. The run shown can be
//! cancelled, exported, or given a random-init or base-model twin.

use super::{Ctx, run_ops};
use crate::ui::keymap::Action;
use crate::ui::request::Resubmit;
use crate::ui::runs::RunList;

/// The order of the adapters panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdapterSort {
    /// Largest Σ|f(c)| first.
    #[default]
    Weight,
    /// Best screening score first (exact match, then lower loss).
    Screening,
    Name,
}

impl AdapterSort {
    pub fn name(self) -> &'static str {
        match self {
            AdapterSort::Weight => "Σ|f(c)|",
            AdapterSort::Screening => "screening score",
            AdapterSort::Name => "name",
        }
    }

    fn next(self) -> Self {
        match self {
            AdapterSort::Weight => AdapterSort::Screening,
            AdapterSort::Screening => AdapterSort::Name,
            AdapterSort::Name => AdapterSort::Weight,
        }
    }
}

/// How the heat map treats a layer's modules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ModuleView {
    /// One column per layer: the mean |f(c)| over its modules.
    #[default]
    Together,
    /// One column per layer and module.
    Apart,
    /// One column per layer, of this module alone.
    Only(String),
}

impl ModuleView {
    /// The view after this one, given the modules the run's groups name.
    pub fn next(&self, modules: &[String]) -> ModuleView {
        match self {
            ModuleView::Together => ModuleView::Apart,
            ModuleView::Apart => modules
                .first()
                .map_or(ModuleView::Together, |m| ModuleView::Only(m.clone())),
            ModuleView::Only(m) => {
                let i = modules.iter().position(|x| x == m);
                match i.and_then(|i| modules.get(i + 1)) {
                    Some(next) => ModuleView::Only(next.clone()),
                    None => ModuleView::Together,
                }
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ModuleView::Together => "modules together".into(),
            ModuleView::Apart => "modules apart".into(),
            ModuleView::Only(m) => format!("{m} alone"),
        }
    }
}

/// A coefficient group's layer and module (`layer 3 q_proj` → (3, q_proj)); the module is
/// empty for a group of a whole layer, and the layer is None for a group of no layer (`all`).
pub fn group_parts(group: &str) -> (Option<usize>, &str) {
    let Some(rest) = group.strip_prefix("layer ") else {
        return (None, "");
    };
    let (n, module) = rest.split_once(' ').unwrap_or((rest, ""));
    (n.parse().ok(), module.trim())
}

/// The modules that `groups` name, in the order they first appear.
pub fn modules_of(groups: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for g in groups {
        let (_, m) = group_parts(g);
        if !m.is_empty() && !out.iter().any(|x| x == m) {
            out.push(m.to_string());
        }
    }
    out
}

#[derive(Debug, Clone, Default)]
pub struct LiveScreen {
    /// The run shown, as an index into the run list.
    pub run: usize,
    /// The first adapter row shown in the adapters panel.
    pub offset: usize,
    /// The first heat-map column shown.
    pub column_offset: usize,
    pub sort: AdapterSort,
    pub modules: ModuleView,
}

impl LiveScreen {
    /// Shows run `i` and asks for its history if it has not been read.
    pub fn show(&mut self, i: usize, runs: &mut RunList, cx: &mut Ctx) {
        if i != self.run {
            self.offset = 0;
            self.column_offset = 0;
        }
        self.run = i;
        run_ops::ensure_loaded(runs, i, cx);
    }

    /// Keeps the index inside a list that shrank.
    pub fn clamp(&mut self, n: usize) {
        self.run = self.run.min(n.saturating_sub(1));
    }

    pub fn on_action(&mut self, a: Action, runs: &mut RunList, cx: &mut Ctx) {
        let n = runs.len();
        let adapters = runs
            .get(self.run)
            .map_or(0, |r| r.columns.len().max(r.chosen.len()));
        match a {
            Action::Left | Action::Up => self.show(self.run.saturating_sub(1), runs, cx),
            Action::Right | Action::Down => {
                self.show((self.run + 1).min(n.saturating_sub(1)), runs, cx)
            }
            // The renderer keeps the last page whole; here the offset only stays in range.
            Action::PageDown => self.offset = (self.offset + 5).min(adapters.saturating_sub(1)),
            Action::PageUp => self.offset = self.offset.saturating_sub(5),
            Action::Top => self.offset = 0,
            Action::Bottom => self.offset = adapters.saturating_sub(1),
            Action::ScrollRight => {
                let groups = runs.get(self.run).map_or(0, |r| r.groups.len());
                self.column_offset = (self.column_offset + 4).min(groups.saturating_sub(1));
            }
            Action::ScrollLeft => self.column_offset = self.column_offset.saturating_sub(4),
            Action::CycleSort => {
                self.sort = self.sort.next();
                self.offset = 0;
                cx.say(format!("adapters sorted by {}", self.sort.name()));
            }
            Action::ToggleModules => {
                let modules = runs
                    .get(self.run)
                    .map(|r| modules_of(&r.groups))
                    .unwrap_or_default();
                if modules.is_empty() {
                    cx.say("this run's coefficients are not per module: nothing to toggle");
                } else {
                    self.modules = self.modules.next(&modules);
                    self.column_offset = 0;
                    cx.say(format!("heat map: {}", self.modules.describe()));
                }
            }
            Action::Cancel => run_ops::cancel(runs, self.run, cx),
            Action::RandomTwin => run_ops::resubmit_run(runs, self.run, Resubmit::RandomTwin, cx),
            Action::BaseTwin => run_ops::resubmit_run(runs, self.run, Resubmit::BaseTwin, cx),
            Action::Export => run_ops::export(runs, self.run, cx),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_split_into_layer_and_module() {
        assert_eq!(group_parts("layer 3 q_proj"), (Some(3), "q_proj"));
        assert_eq!(group_parts("layer 12"), (Some(12), ""));
        assert_eq!(group_parts("all"), (None, ""));
        let groups: Vec<String> = ["layer 0 q_proj", "layer 0 v_proj", "layer 1 q_proj"]
            .map(String::from)
            .to_vec();
        let modules = modules_of(&groups);
        assert_eq!(modules, ["q_proj", "v_proj"]);
        let mut v = ModuleView::Together;
        let mut seen = Vec::new();
        for _ in 0..5 {
            v = v.next(&modules);
            seen.push(v.describe());
        }
        assert_eq!(
            seen,
            [
                "modules apart",
                "q_proj alone",
                "v_proj alone",
                "modules together",
                "modules apart"
            ]
        );
    }
}
