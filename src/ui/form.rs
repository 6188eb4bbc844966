//! The New run form: fields for a `RunSpec` and the controls to queue beside it, with inline
//! validation. The form turns into specs only through `specs()`, which refuses while a field
//! is invalid.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::adapter::random::RandomInit;
use crate::pool::PoolSource;
use crate::run::method::MethodKind;
use crate::run::spec::{ControlSpec, EvalSpec, MethodSpec, ModelSpec, PoolSpec, RunSpec, TaskSpec};
use crate::select::Selection;

/// The method kinds in the order the form cycles through them (the recipe first, the controls
/// last); the kinds and their names are `run::method::MethodKind`'s.
pub const METHODS: [MethodKind; 12] = [
    MethodKind::Gradient,
    MethodKind::Lorahub,
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
pub const GRANULARITIES: [&str; 5] = ["module", "layer", "sublayer", "lora", "rank"];
pub const POOLS: [&str; 2] = ["real", "random-init"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldId {
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

pub const FIELDS: [FieldId; 14] = [
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
    pub task: String,
    /// Lab task names offered by ←/→ on the task field.
    pub tasks: Vec<String>,
    /// The selection strategy; its k is the `k` text field until `specs` parses it.
    pub selection: Selection,
    pub k: String,
    pub method: usize,
    pub steps: String,
    pub granularity: usize,
    pub seed: String,
    pub pool_kind: usize,
    pub oracle: bool,
    pub twin_random: bool,
    pub twin_new_lora: bool,
    pub twin_base: bool,
    pub spec_file: String,
    /// Adapters selected on the Pool screen (for the manual strategy).
    pub manual: Vec<String>,
    /// Usable adapters in the pool, for checking k.
    pub pool_size: Option<usize>,
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
            cursor: 0,
            editing: None,
            task,
            tasks,
            selection: Selection::form_choices()[0].clone(),
            k: "30".into(),
            method: 0,
            steps: "100".into(),
            granularity: 0,
            seed: "0".into(),
            pool_kind: 0,
            oracle: false,
            twin_random: true,
            twin_new_lora: false,
            twin_base: true,
            spec_file: "run.toml".into(),
            manual: Vec::new(),
            pool_size: None,
        }
    }

    pub fn field(&self) -> FieldId {
        FIELDS[self.cursor]
    }

    pub fn method_name(&self) -> &'static str {
        METHODS[self.method].name()
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
            FieldId::Steps => matches!(self.method_name(), "gradient" | "lorahub" | "new-lora"),
            FieldId::Granularity => self.method_name() == "gradient",
            _ => true,
        }
    }

    pub fn label(&self, f: FieldId) -> &'static str {
        match f {
            FieldId::Task => "task",
            FieldId::Strategy => "selection",
            FieldId::K => "k",
            FieldId::Method => "method",
            FieldId::Steps => match self.method_name() {
                "lorahub" => "budget",
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
            FieldId::Task => self.task.clone(),
            FieldId::Strategy => match &self.selection {
                Selection::Manual { .. } => format!("manual ({} selected)", self.manual.len()),
                s => s.describe().to_string(),
            },
            FieldId::K => self.k.clone(),
            FieldId::Method => self.method_name().to_string(),
            FieldId::Steps => self.steps.clone(),
            FieldId::Granularity => GRANULARITIES[self.granularity].to_string(),
            FieldId::Seed => self.seed.clone(),
            FieldId::PoolKind => POOLS[self.pool_kind].to_string(),
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
        let step = |i: usize, n: usize| {
            if forward {
                (i + 1) % n
            } else {
                (i + n - 1) % n
            }
        };
        let bump = |s: &mut String, lo: i64| {
            let v: i64 = s.parse().unwrap_or(lo);
            *s = (if forward { v + 1 } else { v - 1 }).max(lo).to_string();
        };
        match self.field() {
            FieldId::Task if !self.tasks.is_empty() => {
                let i = self.tasks.iter().position(|t| *t == self.task);
                let next = match i {
                    Some(i) => step(i, self.tasks.len()),
                    None => 0,
                };
                self.task = self.tasks[next].clone();
            }
            FieldId::Strategy => {
                let choices = Selection::form_choices();
                let now = self.selection.describe();
                // A strategy the form does not offer (similar, from a spec) steps to the first.
                self.selection = match choices.iter().position(|c| c.describe() == now) {
                    Some(i) => choices[step(i, choices.len())].clone(),
                    None => choices[0].clone(),
                };
            }
            FieldId::Method => {
                self.method = step(self.method, METHODS.len());
                self.steps = match self.method_name() {
                    "lorahub" => "200",
                    "new-lora" => "400",
                    _ => "100",
                }
                .into();
            }
            FieldId::Granularity => self.granularity = step(self.granularity, GRANULARITIES.len()),
            FieldId::PoolKind => self.pool_kind = step(self.pool_kind, POOLS.len()),
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
                    Some("name a lab task or a folder with train/validation/test.jsonl".into())
                } else if self.tasks.contains(&self.task) {
                    None
                } else {
                    let dir = Path::new(&self.task);
                    let missing: Vec<&str> = ["train.jsonl", "validation.jsonl", "test.jsonl"]
                        .into_iter()
                        .filter(|f| !dir.join(f).is_file())
                        .collect();
                    (!missing.is_empty()).then(|| {
                        format!("not a lab task, nor a folder with {}", missing.join(", "))
                    })
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

    fn task_spec(&self) -> TaskSpec {
        if self.tasks.contains(&self.task) {
            TaskSpec {
                lab: Some(self.task.clone()),
                ..Default::default()
            }
        } else {
            let dir = PathBuf::from(&self.task);
            TaskSpec {
                train: Some(dir.join("train.jsonl")),
                validation: Some(dir.join("validation.jsonl")),
                test: Some(dir.join("test.jsonl")),
                ..Default::default()
            }
        }
    }

    fn method_spec(&self, steps: usize) -> MethodSpec {
        let kind = self.method_name();
        let value = match kind {
            "gradient" => {
                json!({"kind": kind, "steps": steps, "granularity": GRANULARITIES[self.granularity]})
            }
            "lorahub" => json!({"kind": kind, "budget": steps}),
            "new-lora" => json!({"kind": kind, "steps": steps}),
            _ => json!({"kind": kind}),
        };
        serde_json::from_value(value).expect("the form's methods are valid method tables")
    }

    /// The main run's spec and those of the controls queued beside it.
    pub fn specs(&self, model: &str, source: &PoolSource) -> Result<Vec<RunSpec>, String> {
        if let Some((f, p)) = self.first_problem() {
            return Err(format!("{}: {p}", self.label(f)));
        }
        let k: usize = self.k.parse().unwrap_or(1);
        let steps: usize = self.steps.parse().unwrap_or(1);
        let seed: u64 = self.seed.parse().unwrap_or(0);
        let selection = match &self.selection {
            Selection::Manual { .. } => Selection::Manual {
                adapters: self.manual.clone(),
            },
            s => s.clone().with_k(k),
        };
        let main = RunSpec {
            name: String::new(),
            seed,
            device: "auto".into(),
            dtype: "auto".into(),
            model: ModelSpec {
                base: model.into(),
                ..Default::default()
            },
            pool: PoolSpec {
                source: source.clone(),
                filter: String::new(),
            },
            task: self.task_spec(),
            selection,
            method: self.method_spec(steps),
            controls: ControlSpec {
                random_init: if self.pool_kind == 1 {
                    RandomInit::Pooled
                } else {
                    RandomInit::Off
                },
                oracle: self.oracle,
            },
            eval: EvalSpec::default(),
        };
        main.validate().map_err(|e| e.to_string())?;
        let mut out = vec![main.clone()];
        if self.twin_random
            && let Some(twin) = main.random_init_twin()
        {
            out.push(twin);
        }
        if self.twin_new_lora && main.method.name() != "new-lora" {
            out.push(main.control_twin(MethodSpec::NewLora(Default::default())));
        }
        if self.twin_base && main.method.name() != "base" {
            out.push(main.control_twin(MethodSpec::Base));
        }
        Ok(out)
    }

    /// Fills the form from a spec (loading a saved one).
    pub fn load_spec(&mut self, spec: &RunSpec) {
        if let Some(l) = &spec.task.lab {
            self.task = l.clone();
        } else if let Some(t) = &spec.task.train {
            self.task = t
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
        }
        self.selection = spec.selection.clone();
        if let Selection::Manual { adapters } = &spec.selection {
            self.manual = adapters.clone();
        }
        if let Some(k) = spec.selection.k() {
            self.k = k.to_string();
        }
        self.method = METHODS
            .iter()
            .position(|&m| m == spec.method.kind())
            .unwrap_or(0);
        match &spec.method {
            MethodSpec::Gradient(g) => {
                self.steps = g.steps.to_string();
                let name = serde_json::to_value(g.granularity)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                self.granularity = GRANULARITIES.iter().position(|g| *g == name).unwrap_or(0);
            }
            MethodSpec::Lorahub(h) => self.steps = h.budget.to_string(),
            MethodSpec::NewLora(n) => self.steps = n.steps.to_string(),
            _ => {}
        }
        self.seed = spec.seed.to_string();
        self.pool_kind = usize::from(spec.controls.random_init != RandomInit::Off);
        self.oracle = spec.controls.oracle;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_offers_every_method_kind_once() {
        for k in MethodKind::ALL {
            assert_eq!(
                METHODS.iter().filter(|&&m| m == k).count(),
                1,
                "{}",
                k.name()
            );
        }
    }
    use crate::select::ScoreMetric;

    fn form() -> Form {
        let mut f = Form::new(vec!["caesar-5".into(), "table-m".into()]);
        f.pool_size = Some(119);
        f
    }

    #[test]
    fn default_form_makes_the_paper_recipe_and_two_controls() {
        let specs = form().specs("lab", &PoolSource::Lab).unwrap();
        let labels: Vec<String> = specs.iter().map(|s| s.label()).collect();
        assert_eq!(
            labels,
            [
                "caesar-5 / gradient",
                "caesar-5 / gradient / random-init",
                "caesar-5 / base"
            ]
        );
        assert_eq!(
            specs[0].selection,
            Selection::TopK {
                k: 30,
                by: ScoreMetric::ExactMatch
            }
        );
        let MethodSpec::Gradient(g) = &specs[0].method else {
            panic!("gradient expected")
        };
        assert_eq!(g, &crate::tune::coef::GradientSpec::default());
    }

    #[test]
    fn inline_validation_blocks_bad_values() {
        let mut f = form();
        f.k = "200".into();
        assert_eq!(
            f.specs("lab", &PoolSource::Lab).unwrap_err(),
            "k: the pool has 119 usable adapters"
        );
        f.k = "x".into();
        assert_eq!(f.problem(FieldId::K).unwrap(), "a whole number ≥ 1");
        f.k = "5".into();
        f.selection = Selection::Manual {
            adapters: Vec::new(),
        };
        assert_eq!(
            f.problem(FieldId::Strategy).unwrap(),
            "select adapters on the Pool screen (space)"
        );
        f.task = "/nowhere".into();
        assert_eq!(
            f.problem(FieldId::Task).unwrap(),
            "not a lab task, nor a folder with train.jsonl, validation.jsonl, test.jsonl"
        );
    }

    #[test]
    fn a_spec_round_trips_through_the_form() {
        let mut f = form();
        f.method = 1;
        f.steps = "64".into();
        f.selection = Selection::Random { k: 0, seed: None };
        f.k = "7".into();
        f.seed = "3".into();
        let spec = f.specs("lab", &PoolSource::Lab).unwrap().remove(0);
        let mut g = form();
        g.load_spec(&spec);
        assert_eq!(g.specs("lab", &PoolSource::Lab).unwrap()[0], spec);
        // A strategy the form does not offer survives a load and a save.
        let similar = Selection::Similar {
            to: "caesar-4".into(),
            k: 5,
        };
        let mut h = form();
        h.load_spec(&RunSpec {
            selection: similar.clone(),
            ..spec
        });
        assert_eq!(h.value(FieldId::K), "5");
        assert_eq!(
            h.specs("lab", &PoolSource::Lab).unwrap()[0].selection,
            similar
        );
    }
}
