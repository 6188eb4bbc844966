//! Keys to actions. Every action has a name (the config file's `[keys]` table uses it), a
//! description and the screen it belongs to; the help screen is generated from this table, so
//! the keys it shows are the keys that work.

use std::collections::BTreeMap;
use std::fmt;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Where a binding applies. Screen bindings win over global ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Global,
    Pool,
    NewRun,
    Live,
    Runs,
    Compare,
}

impl Scope {
    pub fn title(self) -> &'static str {
        match self {
            Scope::Global => "everywhere",
            Scope::Pool => "Pool",
            Scope::NewRun => "New run",
            Scope::Live => "Live",
            Scope::Runs => "Runs",
            Scope::Compare => "Compare",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    Help,
    NextScreen,
    PrevScreen,
    ScreenPool,
    ScreenNewRun,
    ScreenLive,
    ScreenRuns,
    ScreenCompare,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Left,
    Right,
    Enter,
    Back,
    Search,
    Select,
    CycleStatus,
    CycleSort,
    ClearSelection,
    NewRunWithSelection,
    Download,
    StartRun,
    SaveSpec,
    LoadSpec,
    Cancel,
    RandomTwin,
    BaseTwin,
    Export,
    Retry,
    Delete,
    SwitchPair,
    ExportTable,
    Rename,
    ScrollLeft,
    ScrollRight,
    ToggleModules,
}

/// One key: a code and its modifiers (shift is folded into the character for letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub fn from_event(e: &KeyEvent) -> Key {
        let code = match e.code {
            // Some terminals send shift-tab as BackTab, others as Tab with shift.
            KeyCode::Tab if e.modifiers.contains(KeyModifiers::SHIFT) => KeyCode::BackTab,
            c => c,
        };
        Key {
            code,
            ctrl: e.modifiers.contains(KeyModifiers::CONTROL),
            alt: e.modifiers.contains(KeyModifiers::ALT),
        }
    }

    pub fn plain(code: KeyCode) -> Key {
        Key {
            code,
            ctrl: false,
            alt: false,
        }
    }
}

impl std::str::FromStr for Key {
    type Err = String;

    /// `q`, `?`, `G`, `ctrl-c`, `alt-x`, `enter`, `esc`, `tab`, `backtab`, `space`, `up`, `down`,
    /// `left`, `right`, `pgup`, `pgdn`, `home`, `end`, `backspace`, `delete`, `f1`…`f12`.
    fn from_str(s: &str) -> Result<Key, String> {
        let mut rest = s;
        let (mut ctrl, mut alt) = (false, false);
        loop {
            if let Some(r) = rest.strip_prefix("ctrl-") {
                ctrl = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("alt-") {
                alt = true;
                rest = r;
            } else {
                break;
            }
        }
        let code = match rest {
            "enter" => KeyCode::Enter,
            "esc" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" | "shift-tab" => KeyCode::BackTab,
            "space" => KeyCode::Char(' '),
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pgup" | "pageup" => KeyCode::PageUp,
            "pgdn" | "pagedown" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "backspace" => KeyCode::Backspace,
            "delete" => KeyCode::Delete,
            f if f.len() >= 2 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
                let n: u8 = f[1..].parse().expect("checked");
                if !(1..=12).contains(&n) {
                    return Err(format!("{s:?}: function keys go from f1 to f12"));
                }
                KeyCode::F(n)
            }
            c if c.chars().count() == 1 => KeyCode::Char(c.chars().next().expect("one char")),
            _ => {
                return Err(format!(
                    "{s:?} is not a key (examples: q, G, ctrl-c, enter, pgdn, f1)"
                ));
            }
        };
        Ok(Key { code, ctrl, alt })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("ctrl-")?;
        }
        if self.alt {
            f.write_str("alt-")?;
        }
        match self.code {
            KeyCode::Enter => f.write_str("enter"),
            KeyCode::Esc => f.write_str("esc"),
            KeyCode::Tab => f.write_str("tab"),
            KeyCode::BackTab => f.write_str("shift-tab"),
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Up => f.write_str("↑"),
            KeyCode::Down => f.write_str("↓"),
            KeyCode::Left => f.write_str("←"),
            KeyCode::Right => f.write_str("→"),
            KeyCode::PageUp => f.write_str("pgup"),
            KeyCode::PageDown => f.write_str("pgdn"),
            KeyCode::Home => f.write_str("home"),
            KeyCode::End => f.write_str("end"),
            KeyCode::Backspace => f.write_str("backspace"),
            KeyCode::Delete => f.write_str("delete"),
            KeyCode::F(n) => write!(f, "f{n}"),
            KeyCode::Char(c) => write!(f, "{c}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// The default bindings: scope, keys, action, config name, description.
const DEFAULTS: &[(Scope, &[&str], Action, &str, &str)] = &[
    (
        Scope::Global,
        &["q", "ctrl-c"],
        Action::Quit,
        "quit",
        "quit (asks first while runs are going)",
    ),
    (
        Scope::Global,
        &["?", "f1"],
        Action::Help,
        "help",
        "this help; any key closes it",
    ),
    (
        Scope::Global,
        &["tab"],
        Action::NextScreen,
        "next-screen",
        "next screen",
    ),
    (
        Scope::Global,
        &["backtab"],
        Action::PrevScreen,
        "prev-screen",
        "previous screen",
    ),
    (
        Scope::Global,
        &["1"],
        Action::ScreenPool,
        "screen-pool",
        "Pool: browse and select adapters",
    ),
    (
        Scope::Global,
        &["2"],
        Action::ScreenNewRun,
        "screen-new-run",
        "New run: set up and start a run",
    ),
    (
        Scope::Global,
        &["3"],
        Action::ScreenLive,
        "screen-live",
        "Live: curves and coefficients of a run",
    ),
    (
        Scope::Global,
        &["4"],
        Action::ScreenRuns,
        "screen-runs",
        "Runs: queue and history",
    ),
    (
        Scope::Global,
        &["5"],
        Action::ScreenCompare,
        "screen-compare",
        "Compare: runs side by side",
    ),
    (Scope::Global, &["up", "k"], Action::Up, "up", "move up"),
    (
        Scope::Global,
        &["down", "j"],
        Action::Down,
        "down",
        "move down",
    ),
    (
        Scope::Global,
        &["pgup", "ctrl-u"],
        Action::PageUp,
        "page-up",
        "page up",
    ),
    (
        Scope::Global,
        &["pgdn", "ctrl-d"],
        Action::PageDown,
        "page-down",
        "page down",
    ),
    (
        Scope::Global,
        &["home", "g"],
        Action::Top,
        "top",
        "first row",
    ),
    (
        Scope::Global,
        &["end", "G"],
        Action::Bottom,
        "bottom",
        "last row",
    ),
    (
        Scope::Global,
        &["enter"],
        Action::Enter,
        "enter",
        "open / confirm",
    ),
    (
        Scope::Global,
        &["esc"],
        Action::Back,
        "back",
        "close, cancel an edit",
    ),
    (
        Scope::Pool,
        &["/"],
        Action::Search,
        "search",
        "search ids and cards, or filter: rank<=16,modules=q+v",
    ),
    (
        Scope::Pool,
        &["space"],
        Action::Select,
        "select",
        "select / unselect the adapter for a manual run",
    ),
    (
        Scope::Pool,
        &["f"],
        Action::CycleStatus,
        "filter-status",
        "filter: all, usable, rejected, not downloaded",
    ),
    (
        Scope::Pool,
        &["s"],
        Action::CycleSort,
        "sort",
        "sort: name, rank, ‖ΔW‖, downloads, likes",
    ),
    (
        Scope::Pool,
        &["u"],
        Action::ClearSelection,
        "clear-selection",
        "clear the selection",
    ),
    (
        Scope::Pool,
        &["n"],
        Action::NewRunWithSelection,
        "new-run",
        "new run (manual selection when adapters are selected)",
    ),
    (
        Scope::Pool,
        &["d"],
        Action::Download,
        "download",
        "download the adapter (Hub entries)",
    ),
    (
        Scope::NewRun,
        &["left", "h"],
        Action::Left,
        "previous-value",
        "previous value of the field",
    ),
    (
        Scope::NewRun,
        &["right", "l"],
        Action::Right,
        "next-value",
        "next value of the field",
    ),
    (
        Scope::NewRun,
        &["enter"],
        Action::Enter,
        "edit",
        "edit the field / press the button",
    ),
    (
        Scope::NewRun,
        &["s"],
        Action::StartRun,
        "start",
        "start the run and the controls chosen beside it",
    ),
    (
        Scope::NewRun,
        &["w"],
        Action::SaveSpec,
        "save-spec",
        "save the run spec (TOML) to the spec file",
    ),
    (
        Scope::NewRun,
        &["o"],
        Action::LoadSpec,
        "load-spec",
        "load a run spec from the spec file",
    ),
    (
        Scope::Live,
        &["left", "h"],
        Action::Left,
        "previous-run",
        "previous run",
    ),
    (
        Scope::Live,
        &["right", "l"],
        Action::Right,
        "next-run",
        "next run",
    ),
    (
        Scope::Live,
        &["c"],
        Action::Cancel,
        "cancel",
        "cancel the run (after the step in flight)",
    ),
    (
        Scope::Live,
        &["r"],
        Action::RandomTwin,
        "random-twin",
        "queue its random-init control",
    ),
    (
        Scope::Live,
        &["b"],
        Action::BaseTwin,
        "base-twin",
        "queue the base-model baseline on its task",
    ),
    (
        Scope::Live,
        &["s"],
        Action::CycleSort,
        "sort-adapters",
        "sort the adapters: Σ|f(c)|, screening score, name",
    ),
    (
        Scope::Live,
        &["m"],
        Action::ToggleModules,
        "modules",
        "heat map: modules together, apart, or one alone",
    ),
    (
        Scope::Live,
        &["["],
        Action::ScrollLeft,
        "layers-left",
        "heat map: earlier layers",
    ),
    (
        Scope::Live,
        &["]"],
        Action::ScrollRight,
        "layers-right",
        "heat map: later layers",
    ),
    (
        Scope::Live,
        &["pgdn", "ctrl-d"],
        Action::PageDown,
        "adapters-down",
        "scroll the adapters down",
    ),
    (
        Scope::Live,
        &["pgup", "ctrl-u"],
        Action::PageUp,
        "adapters-up",
        "scroll the adapters up",
    ),
    (
        Scope::Live,
        &["x"],
        Action::Export,
        "export",
        "export the adapter: the merge, or the new LoRA (finished runs)",
    ),
    (
        Scope::Runs,
        &["enter"],
        Action::Enter,
        "open",
        "open the run in Live",
    ),
    (
        Scope::Runs,
        &["space"],
        Action::Select,
        "mark",
        "mark / unmark for Compare",
    ),
    (
        Scope::Runs,
        &["/"],
        Action::Search,
        "filter-runs",
        "filter: text, or KEY OP VALUE (k>=10,by=loss,state=finished)",
    ),
    (
        Scope::Runs,
        &["n"],
        Action::Rename,
        "rename",
        "name the run (empty: back to its label)",
    ),
    (
        Scope::Runs,
        &["c"],
        Action::Cancel,
        "cancel-run",
        "cancel a queued or running run",
    ),
    (
        Scope::Runs,
        &["R"],
        Action::Retry,
        "retry",
        "run the same spec again",
    ),
    (
        Scope::Runs,
        &["D"],
        Action::Delete,
        "delete",
        "delete the run's folder (asks first)",
    ),
    (
        Scope::Runs,
        &["x"],
        Action::Export,
        "export-run",
        "export the adapter: the merge, or the new LoRA",
    ),
    (
        Scope::Compare,
        &["p"],
        Action::SwitchPair,
        "switch-pair",
        "next pair of runs for the example diff",
    ),
    (
        Scope::Compare,
        &["e"],
        Action::ExportTable,
        "export-table",
        "write the table as Markdown and CSV",
    ),
    (
        Scope::Compare,
        &["enter"],
        Action::Enter,
        "open-run",
        "open the highlighted run in Live",
    ),
];

/// One binding, as the help screen lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub scope: Scope,
    pub keys: Vec<Key>,
    pub action: Action,
    pub name: &'static str,
    pub description: &'static str,
}

#[derive(Debug, Clone)]
pub struct Keymap {
    pub bindings: Vec<Binding>,
}

impl Default for Keymap {
    fn default() -> Self {
        Keymap {
            bindings: DEFAULTS
                .iter()
                .map(|(scope, keys, action, name, description)| Binding {
                    scope: *scope,
                    keys: keys
                        .iter()
                        .map(|k| k.parse().expect("default keys parse"))
                        .collect(),
                    action: *action,
                    name,
                    description,
                })
                .collect(),
        }
    }
}

impl Keymap {
    /// The defaults with `[keys]` overrides from the config file: name → keys.
    pub fn with_overrides(overrides: &BTreeMap<String, Vec<String>>) -> Result<Keymap, String> {
        let mut map = Keymap::default();
        for (name, keys) in overrides {
            let parsed: Vec<Key> = keys
                .iter()
                .map(|k| k.parse())
                .collect::<Result<_, String>>()
                .map_err(|e| format!("[keys] {name}: {e}"))?;
            let b = map
                .bindings
                .iter_mut()
                .find(|b| b.name == name)
                .ok_or_else(|| format!("[keys]: no action named {name:?} (see the help screen)"))?;
            b.keys = parsed;
        }
        Ok(map)
    }

    /// The action of a key on a screen: the screen's bindings first, then the global ones.
    pub fn action(&self, scope: Scope, key: Key) -> Option<Action> {
        let find = |s: Scope| {
            self.bindings
                .iter()
                .find(|b| b.scope == s && b.keys.contains(&key))
                .map(|b| b.action)
        };
        find(scope).or_else(|| find(Scope::Global))
    }

    /// The first key of an action on a screen (falling back to global), for hints.
    pub fn key_of(&self, scope: Scope, action: Action) -> String {
        self.bindings
            .iter()
            .find(|b| b.scope == scope && b.action == action)
            .or_else(|| {
                self.bindings
                    .iter()
                    .find(|b| b.scope == Scope::Global && b.action == action)
            })
            .and_then(|b| b.keys.first())
            .map_or_else(|| "–".into(), |k| k.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_print() {
        for s in [
            "q", "?", "G", "ctrl-c", "enter", "pgdn", "f1", "space", "alt-x",
        ] {
            let k: Key = s.parse().unwrap();
            let back = k.to_string();
            assert_eq!(back.parse::<Key>().ok().or(Some(k)), Some(k), "{s}");
        }
        assert_eq!(
            "ctrl-".parse::<Key>().unwrap_err(),
            "\"ctrl-\" is not a key (examples: q, G, ctrl-c, enter, pgdn, f1)"
        );
        assert_eq!(
            "f13".parse::<Key>().unwrap_err(),
            "\"f13\": function keys go from f1 to f12"
        );
    }

    #[test]
    fn screen_bindings_win_and_overrides_apply() {
        let map = Keymap::default();
        let enter = Key::plain(KeyCode::Enter);
        assert_eq!(map.action(Scope::Runs, enter), Some(Action::Enter));
        let c = Key::plain(KeyCode::Char('c'));
        assert_eq!(map.action(Scope::Live, c), Some(Action::Cancel));
        assert_eq!(map.action(Scope::Pool, c), None);
        let mut o = BTreeMap::new();
        o.insert("quit".to_string(), vec!["x".to_string()]);
        let map = Keymap::with_overrides(&o).unwrap();
        assert_eq!(
            map.action(Scope::Pool, Key::plain(KeyCode::Char('x'))),
            Some(Action::Quit)
        );
        assert_eq!(
            map.action(Scope::Pool, Key::plain(KeyCode::Char('q'))),
            None
        );
        o.insert("fly".to_string(), vec!["y".to_string()]);
        assert_eq!(
            Keymap::with_overrides(&o).unwrap_err(),
            "[keys]: no action named \"fly\" (see the help screen)"
        );
    }

    #[test]
    fn every_name_is_unique() {
        let map = Keymap::default();
        let mut names: Vec<_> = map.bindings.iter().map(|b| b.name).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
