//! The New run form: fields for a `RunSpec` and the controls to queue beside it, with inline
//! validation. The form turns into specs only through `specs()`, which refuses while a field
//! is invalid.

use std::path::PathBuf;

use crate::adapter::random::RandomInit;
use crate::run::method::MethodKind;
use crate::run::protocol::Protocol;
use crate::select::Selection;
use crate::tune::settings::Granularity;

/// The method kinds in the order the form cycles through them (the recipe first, the controls
/// last); the kinds and their names are `run::method::MethodKind`'s.
pub const METHODS: [MethodKind; 15] = [
    MethodKind::Gradient,
    MethodKind::Adamerging,
    MethodKind::Lorahub,
    MethodKind::PiTuning,
    MethodKind::Arrow,
    MethodKind::Average,
    MethodKind::Ties,
    MethodKind::TaskArithmetic,
    MethodKind::Dare,
    MethodKind::Tsv,
    MethodKind::Svd,
    MethodKind::LorahubSum,
    MethodKind::Sum,
    MethodKind::NewLora,
    MethodKind::Base,
];
/// The pools a run can draw from: the real adapters, or random-init ones with σ pooled per
/// (layer, module) (the paper's control) or matched per adapter.
pub const POOLS: [RandomInit; 3] = [RandomInit::Off, RandomInit::Pooled, RandomInit::PerAdapter];

/// A pool kind as the form shows it.
pub fn pool_name(p: RandomInit) -> &'static str {
    match p {
        RandomInit::Off => "real",
        RandomInit::Pooled => "random-init",
        RandomInit::PerAdapter => "random-init, σ per adapter",
    }
}

pub use crate::run::spec::TASK_FILES;

/// The next item of `all` after (or before) `now`; the first when `now` is not in it.
fn step<T: Copy + PartialEq>(all: &[T], now: T, forward: bool) -> T {
    let n = all.len();
    match all.iter().position(|&x| x == now) {
        Some(i) if forward => all[(i + 1) % n],
        Some(i) => all[(i + n - 1) % n],
        None => all[0],
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldId {
    Protocol,
    Task,
    Strategy,
    K,
    Method,
    Steps,
    Granularity,
    Seed,
    PoolKind,
    Oracle,
    TwinRandom,
    TwinNewLora,
    TwinBase,
    SpecFile,
    Start,
}

pub const FIELDS: [FieldId; 15] = [
    FieldId::Protocol,
    FieldId::Task,
    FieldId::Strategy,
    FieldId::K,
    FieldId::Method,
    FieldId::Steps,
    FieldId::Granularity,
    FieldId::Seed,
    FieldId::PoolKind,
    FieldId::Oracle,
    FieldId::TwinRandom,
    FieldId::TwinNewLora,
    FieldId::TwinBase,
    FieldId::SpecFile,
    FieldId::Start,
];

#[derive(Debug, Clone)]
pub struct Form {
    pub cursor: usize,
    /// The text being typed into the focused field, when editing.
    pub editing: Option<String>,
    /// Whose defaults the run's unset settings take (lab or the paper's).
    pub protocol: Protocol,
    pub task: String,
    /// Task names offered by ←/→ on the task field: the lab's, then imported ones.
    pub tasks: Vec<String>,
    /// The imported tasks among `tasks` (`loracycle task import`), which specs name by `name`.
    pub imported: Vec<String>,
    /// The selection strategy; its k is the `k` text field until `specs` parses it.
    pub selection: Selection,
    pub k: String,
    pub method: MethodKind,
    pub steps: String,
    pub granularity: Granularity,
    pub seed: String,
    pub pool_kind: RandomInit,
    pub oracle: bool,
    pub twin_random: bool,
    pub twin_new_lora: bool,
    pub twin_base: bool,
    pub spec_file: String,
    /// Adapters selected on the Pool screen (for the manual strategy).
    pub manual: Vec<String>,
    /// Usable adapters in the pool, for checking k.
    pub pool_size: Option<usize>,
    /// A task typed as a folder: the folder last checked and the task files it lacks. The
    /// worker looks (`Request::CheckTask`); the form never touches the disk.
    checked: Option<(String, Vec<String>)>,
    /// The folder whose check was last asked for.
    asked: Option<String>,
}

impl Form {
    pub fn new(tasks: Vec<String>) -> Form {
        let task = tasks
            .iter()
            .find(|t| *t == "caesar-5")
            .or(tasks.first())
            .cloned()
            .unwrap_or_default();
        Form {
            cursor: 1,
            editing: None,
            protocol: Protocol::Lab,
            task,
            tasks,
            selection: Selection::form_choices()[0].clone(),
            k: "30".into(),
            method: METHODS[0],
            steps: "100".into(),
            granularity: Granularity::default(),
            seed: "0".into(),
            pool_kind: RandomInit::Off,
            oracle: false,
            twin_random: true,
            twin_new_lora: false,
            twin_base: true,
            spec_file: "run.toml".into(),
            manual: Vec::new(),
            pool_size: None,
            checked: None,
            asked: None,
            imported: Vec::new(),
        }
    }

    /// Where the task field's task comes from, as the form shows it beside the name.
    pub fn task_origin(&self) -> Option<&'static str> {
        if self.imported.contains(&self.task) {
            Some("imported task")
        } else if self.tasks.contains(&self.task) {
            Some("lab task")
        } else {
            None
        }
    }

    /// Offers imported tasks after the lab's (a name the lab has stays the lab's).
    pub fn add_imported(&mut self, names: Vec<String>) {
        for n in names {
            if !self.tasks.contains(&n) {
                self.tasks.push(n.clone());
                self.imported.push(n);
            }
        }
        if self.task.is_empty() {
            self.task = self.tasks.first().cloned().unwrap_or_default();
        }
    }

    /// The folder of a task typed as a path, when it has not been checked for its task files
    /// yet; marks it asked, so each folder is asked for once.
    pub fn wants_check(&mut self) -> Option<PathBuf> {
        let t = self.task.trim();
        if t.is_empty() || self.tasks.iter().any(|x| x == t) || self.asked.as_deref() == Some(t) {
            return None;
        }
        self.asked = Some(t.to_string());
        Some(PathBuf::from(t))
    }

    /// Forgets the last check, so the folder is looked at again (after a refused start).
    pub fn recheck(&mut self) {
        self.asked = None;
    }

    /// The worker's answer: the task files `folder` lacks.
    pub fn on_task_checked(&mut self, folder: String, missing: Vec<String>) {
        self.checked = Some((folder, missing));
    }

    pub fn field(&self) -> FieldId {
        FIELDS[self.cursor]
    }

    pub fn method_name(&self) -> &'static str {
        self.method.name()
    }

    fn uses_pool(&self) -> bool {
        !matches!(self.method_name(), "base" | "new-lora")
    }

    /// Whether a field means anything with the current method (others are shown dimmed).
    pub fn applies(&self, f: FieldId) -> bool {
        match f {
            FieldId::Strategy | FieldId::PoolKind | FieldId::Oracle | FieldId::TwinRandom => {
                self.uses_pool()
            }
            FieldId::K => self.uses_pool() && self.selection.k().is_some(),
            FieldId::Steps => matches!(
                self.method_name(),
                "gradient" | "adamerging" | "lorahub" | "pi-tuning" | "arrow" | "new-lora"
            ),
            FieldId::Granularity => matches!(self.method_name(), "gradient" | "adamerging"),
            _ => true,
        }
    }

    pub fn label(&self, f: FieldId) -> &'static str {
        match f {
            FieldId::Protocol => "protocol",
            FieldId::Task => "task",
            FieldId::Strategy => "selection",
            FieldId::K => "k",
            FieldId::Method => "method",
            FieldId::Steps => match self.method_name() {
                "lorahub" => "budget",
                "arrow" => "steps (0: zero-step)",
                _ => "steps",
            },
            FieldId::Granularity => "granularity",
            FieldId::Seed => "seed",
            FieldId::PoolKind => "pool",
            FieldId::Oracle => "oracle adapter",
            FieldId::TwinRandom => "+ random-init twin",
            FieldId::TwinNewLora => "+ new LoRA",
            FieldId::TwinBase => "+ base model",
            FieldId::SpecFile => "spec file",
            FieldId::Start => "",
        }
    }

    /// The value as shown.
    pub fn value(&self, f: FieldId) -> String {
        let check = |b: bool| if b { "[x]" } else { "[ ]" }.to_string();
        match f {
            FieldId::Protocol => self.protocol.name().to_string(),
            FieldId::Task => self.task.clone(),
            FieldId::Strategy => match &self.selection {
                Selection::Manual { .. } => format!("manual ({} selected)", self.manual.len()),
                s => s.describe().to_string(),
            },
            FieldId::K => self.k.clone(),
            FieldId::Method => self.method_name().to_string(),
            FieldId::Steps => self.steps.clone(),
            FieldId::Granularity => self.granularity.name().to_string(),
            FieldId::Seed => self.seed.clone(),
            FieldId::PoolKind => pool_name(self.pool_kind).to_string(),
            FieldId::Oracle => check(self.oracle),
            FieldId::TwinRandom => check(self.twin_random),
            FieldId::TwinNewLora => check(self.twin_new_lora),
            FieldId::TwinBase => check(self.twin_base),
            FieldId::SpecFile => self.spec_file.clone(),
            FieldId::Start => "[ start ]".into(),
        }
    }

    /// Whether the field takes typed text (enter starts editing).
    pub fn is_text(f: FieldId) -> bool {
        matches!(
            f,
            FieldId::Task | FieldId::K | FieldId::Steps | FieldId::Seed | FieldId::SpecFile
        )
    }

    /// ←/→ on the focused field.
    pub fn cycle(&mut self, forward: bool) {
        let bump = |s: &mut String, lo: i64| {
            let v: i64 = s.parse().unwrap_or(lo);
            *s = (if forward { v + 1 } else { v - 1 }).max(lo).to_string();
        };
        match self.field() {
            FieldId::Task if !self.tasks.is_empty() => {
                let i = self.tasks.iter().position(|t| *t == self.task);
                let n = self.tasks.len();
                let next = match i {
                    Some(i) if forward => (i + 1) % n,
                    Some(i) => (i + n - 1) % n,
                    None => 0,
                };
                self.task = self.tasks[next].clone();
            }
            FieldId::Strategy => {
                let choices = Selection::form_choices();
                let now = self.selection.describe();
                // A strategy the form does not offer (similar, from a spec) steps to the first.
                let names: Vec<&str> = choices.iter().map(|c| c.describe()).collect();
                let next = step(&names, now, forward);
                self.selection =
                    choices[names.iter().position(|&n| n == next).unwrap_or(0)].clone();
            }
            FieldId::Method => {
                self.method = step(&METHODS, self.method, forward);
                self.steps = match self.method_name() {
                    "lorahub" => "200",
                    "new-lora" => "400",
                    _ => "100",
                }
                .into();
            }
            FieldId::Granularity => {
                self.granularity = step(&Granularity::ALL, self.granularity, forward)
            }
            FieldId::PoolKind => self.pool_kind = step(&POOLS, self.pool_kind, forward),
            FieldId::Protocol => {
                self.protocol = step(&[Protocol::Lab, Protocol::Paper], self.protocol, forward);
                // Top-k follows the protocol's metric: generated exact match for the paper's,
                // teacher-forced for the lab's.
                use crate::select::ScoreMetric as M;
                if let Selection::TopK { by, .. } = &mut self.selection {
                    *by = match (self.protocol, *by) {
                        (Protocol::Paper, M::ExactMatch) => M::Generated,
                        (Protocol::Lab, M::Generated) => M::ExactMatch,
                        (_, b) => b,
                    };
                }
            }
            FieldId::Oracle => self.oracle = !self.oracle,
            FieldId::TwinRandom => self.twin_random = !self.twin_random,
            FieldId::TwinNewLora => self.twin_new_lora = !self.twin_new_lora,
            FieldId::TwinBase => self.twin_base = !self.twin_base,
            FieldId::K => bump(&mut self.k, 1),
            FieldId::Steps => bump(&mut self.steps, 1),
            FieldId::Seed => bump(&mut self.seed, 0),
            _ => {}
        }
    }

    pub fn set_text(&mut self, f: FieldId, text: String) {
        match f {
            FieldId::Task => self.task = text,
            FieldId::K => self.k = text,
            FieldId::Steps => self.steps = text,
            FieldId::Seed => self.seed = text,
            FieldId::SpecFile => self.spec_file = text,
            _ => {}
        }
    }

    /// What is wrong with a field, if anything.
    pub fn problem(&self, f: FieldId) -> Option<String> {
        if !self.applies(f) {
            return None;
        }
        let positive = |s: &str| match s.parse::<usize>() {
            Ok(0) | Err(_) => Some("a whole number ≥ 1".to_string()),
            Ok(_) => None,
        };
        match f {
            FieldId::Task => {
                if self.task.trim().is_empty() {
                    Some(
                        "name a lab or imported task, or a folder with train/validation/test.jsonl"
                            .into(),
                    )
                } else if self.tasks.contains(&self.task) {
                    None
                } else {
                    match &self.checked {
                        Some((folder, missing)) if *folder == self.task.trim() => {
                            (!missing.is_empty()).then(|| {
                                format!(
                                    "not a lab or imported task, nor a folder with {}",
                                    missing.join(", ")
                                )
                            })
                        }
                        _ => Some("looking for the folder's task files…".into()),
                    }
                }
            }
            FieldId::K => positive(&self.k).or_else(|| {
                let k: usize = self.k.parse().ok()?;
                let n = self.pool_size?;
                (k > n).then(|| format!("the pool has {n} usable adapters"))
            }),
            FieldId::Strategy => (matches!(self.selection, Selection::Manual { .. })
                && self.manual.is_empty())
            .then(|| "select adapters on the Pool screen (space)".into()),
            // Arrow at 0 steps routes with the prototypes as computed.
            FieldId::Steps if self.method_name() == "arrow" && self.steps.trim() == "0" => None,
            FieldId::Steps => positive(&self.steps),
            FieldId::Seed => self
                .seed
                .parse::<u64>()
                .err()
                .map(|_| "a whole number ≥ 0".into()),
            FieldId::SpecFile => self
                .spec_file
                .trim()
                .is_empty()
                .then(|| "a file name".into()),
            _ => None,
        }
    }

    /// The first problem of the form, with its field.
    pub fn first_problem(&self) -> Option<(FieldId, String)> {
        FIELDS.iter().find_map(|&f| self.problem(f).map(|p| (f, p)))
    }
}

mod spec;
#[cfg(test)]
mod tests;
