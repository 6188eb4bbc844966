//! The form as run specs: the main run's spec and its controls' (`specs`, which refuses while
//! a field is invalid), and the form filled from a saved spec (`load_spec`).

use std::path::PathBuf;

use super::Form;
use crate::adapter::random_init::RandomInit;
use crate::pool::PoolSource;
use crate::run::spec::{
    ControlKind, ControlSpec, EvalSpec, MethodSpec, ModelSpec, PoolSpec, RunSpec, TaskCatalogue,
    TaskSpec,
};
use crate::select::Selection;

impl Form {
    /// The task field as a `[task]` table, resolved over the names the form lists (the
    /// worker checks a folder's files, off this thread).
    fn task_spec(&self) -> TaskSpec {
        let catalogue = TaskCatalogue {
            lab: (self.tasks.iter())
                .filter(|t| !self.imported.contains(t))
                .cloned()
                .collect(),
            // A name is all an imported task's spec holds; its folder is found when it runs.
            imported: (self.imported.iter())
                .map(|t| (t.clone(), PathBuf::new()))
                .collect(),
        };
        catalogue.resolve(&self.task).spec()
    }

    /// The keys of the method table the form sets (the protocol fills in the others).
    fn method_keys(&self, steps: usize) -> &'static [&'static str] {
        match self.method_spec(steps) {
            MethodSpec::Gradient(_) | MethodSpec::Adamerging(_) => {
                &["kind", "steps", "granularity"]
            }
            MethodSpec::Lorahub(_) => &["kind", "budget"],
            MethodSpec::NewLora(_) | MethodSpec::PiTuning(_) => &["kind", "steps"],
            MethodSpec::Arrow(a) if !a.train => &["kind", "train"],
            MethodSpec::Arrow(_) => &["kind", "train", "steps"],
            MethodSpec::Base | MethodSpec::Merge(_) => &["kind"],
        }
    }

    /// The method the form describes: its kind at its defaults, with the settings the form
    /// has fields for.
    fn method_spec(&self, steps: usize) -> MethodSpec {
        let mut m = self.method.default_spec();
        match &mut m {
            MethodSpec::Gradient(g) => {
                g.steps = steps;
                g.granularity = self.granularity;
            }
            MethodSpec::Adamerging(a) => {
                a.steps = steps;
                a.granularity = self.granularity;
            }
            MethodSpec::Lorahub(l) => l.budget = steps,
            MethodSpec::NewLora(n) => n.steps = steps,
            MethodSpec::PiTuning(p) => p.steps = steps,
            MethodSpec::Arrow(a) => {
                a.train = steps > 0;
                if a.train {
                    a.steps = steps;
                }
            }
            MethodSpec::Base | MethodSpec::Merge(_) => {}
        }
        m
    }

    /// The main run's spec and those of the controls queued beside it.
    pub fn specs(&self, model: &str, source: &PoolSource) -> Result<Vec<RunSpec>, String> {
        if let Some((f, p)) = self.first_problem() {
            return Err(format!("{}: {p}", self.label(f)));
        }
        let k: usize = self.k.parse().unwrap_or(1);
        let steps: usize = self.steps.trim().parse().unwrap_or(1);
        let seed: u64 = self.seed.parse().unwrap_or(0);
        let selection = match &self.selection {
            Selection::Manual { .. } => Selection::Manual {
                adapters: self.manual.clone(),
            },
            s => s.clone().with_k(k),
        };
        let mut main = RunSpec {
            protocol: self.protocol,
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
                random_init: self.pool_kind,
                oracle: self.oracle,
                ..Default::default()
            },
            eval: EvalSpec::default(),
            parent: None,
        };
        // The protocol's defaults for what the form does not set: the method's other settings
        // and the task's example counts.
        let set = self.method_keys(steps);
        main.protocol
            .fill_method(&mut main.method, |k| set.contains(&k));
        main.protocol.fill_task(&mut main.task, |_| false);
        // The controls ride with the run (`controls.queue`): the engine queues each as a run
        // whose record names this one, or reuses an identical run that already answered it.
        let method = main.method.name();
        let uses_pool = main.method.uses_pool() && main.controls.random_init == RandomInit::Off;
        main.controls.queue = [
            (self.twin_random && uses_pool, ControlKind::RandomInit),
            (
                self.twin_new_lora && method != "new-lora",
                ControlKind::NewLora,
            ),
            (self.twin_base && method != "base", ControlKind::Base),
        ]
        .into_iter()
        .filter_map(|(on, k)| on.then_some(k))
        .collect();
        main.validate().map_err(|e| e.to_string())?;
        let mut out = vec![main.clone()];
        out.extend(main.queued_controls().into_iter().map(|(_, c)| c));
        Ok(out)
    }

    /// Fills the form from a spec (loading a saved one).
    pub fn load_spec(&mut self, spec: &RunSpec) {
        self.protocol = spec.protocol;
        if let Some(l) = spec.task.lab.as_ref().or(spec.task.name.as_ref()) {
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
        self.method = spec.method.kind();
        match &spec.method {
            MethodSpec::Gradient(g) => {
                self.steps = g.steps.to_string();
                self.granularity = g.granularity;
            }
            MethodSpec::Adamerging(a) => {
                self.steps = a.steps.to_string();
                self.granularity = a.granularity;
            }
            MethodSpec::Lorahub(h) => self.steps = h.budget.to_string(),
            MethodSpec::NewLora(n) => self.steps = n.steps.to_string(),
            MethodSpec::PiTuning(p) => self.steps = p.steps.to_string(),
            MethodSpec::Arrow(a) if !a.train => self.steps = "0".into(),
            MethodSpec::Arrow(a) => self.steps = a.steps.to_string(),
            _ => {}
        }
        self.seed = spec.seed.to_string();
        self.pool_kind = spec.controls.random_init;
        self.oracle = spec.controls.oracle;
    }
}
