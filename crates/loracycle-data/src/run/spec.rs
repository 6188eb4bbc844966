//! `RunSpec`: everything that defines one run, as TOML.
//!
//! ```toml
//! name = "caesar-5 / gradient"
//! seed = 0
//! [model]
//! base = "lab"                  # "lab", a model folder, or a Hub id found in the HF cache
//! [pool]
//! source = "lab"                # "lab" or "dir:PATH"
//! filter = "rank<=16"
//! [task]
//! lab = "caesar-5"              # or train/validation/test JSONL paths
//! [selection]
//! strategy = "top-k"
//! k = 30
//! [method]
//! kind = "gradient"             # base, new-lora, gradient, lorahub, or a merge (average, ties, ...)
//! [controls]
//! random_init = "off"           # off, pooled, per-adapter
//! oracle = false
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::adapter::random_init::RandomInit;
use crate::eval::answer::{Extract, Normalize, TaskSettings};
use crate::merge::method::MergeMethod;
use crate::model::module::Module;
use crate::model::pref::{DevicePref, DtypePref};
use crate::model::template::kind::Template;
use crate::pool::filter::Filter;
use crate::pool::source::PoolSource;
use crate::run::protocol::Protocol;
use crate::run::setting::{BadSetting, Fields, MAX_BATCH, MAX_BOOTSTRAP, MAX_RANK, MAX_STEPS};
use crate::select::selection::Selection;
use crate::tune::settings::{AdaMergingSpec, ArrowSpec, GradientSpec, LorahubSpec, PiTuningSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `lab`, a model folder, or a Hub id (`org/name`) resolved from the HF cache.
    #[serde(default = "lab")]
    pub base: String,
    #[serde(default)]
    pub template: TemplateName,
}

fn lab() -> String {
    "lab".into()
}

/// A template as written in TOML (`auto`, `raw`, `llama3`, `lab`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TemplateName(pub Template);

impl Serialize for TemplateName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TemplateName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map(TemplateName)
            .map_err(serde::de::Error::custom)
    }
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            base: lab(),
            template: TemplateName::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    #[serde(default = "lab_source")]
    pub source: PoolSource,
    /// A pool filter, e.g. `rank<=16,modules=all` (see `loracycle run --help`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter: String,
}

fn lab_source() -> PoolSource {
    PoolSource::Lab
}

impl Default for PoolSpec {
    fn default() -> Self {
        Self {
            source: PoolSource::Lab,
            filter: String::new(),
        }
    }
}

/// The target task: a lab task by name, a task imported by `loracycle task import` (by name,
/// from the tasks folder), or JSONL files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<String>,
    /// An imported task: the folder of that name in the tasks folder (`LORACYCLE_TASKS_DIR`,
    /// else ~/.local/share/loracycle/tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<PathBuf>,
    /// Use only the first N training examples (the validation file stays whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_examples: Option<usize>,
    /// Use N examples of train + validation in all, as the paper's `data_size` does: the first
    /// N/5 (rounded down) rows of the validation file, and as many first rows of the training
    /// file as make N with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<usize>,
    /// Merge train and validation into one set, used both to train and to choose the checkpoint
    /// (the paper's low-data setting).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub combine: bool,
    /// The task's own adapter, for the oracle control with non-lab tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle_adapter: Option<PathBuf>,
}

/// Where a task given by name is (on the command line, in a study, in the New run form): the
/// one resolution of a task name, over a [`TaskCatalogue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedTask {
    /// A held-out task of the lab.
    Lab(String),
    /// An imported task (`loracycle task import`): its name and folder.
    Imported { name: String, dir: PathBuf },
    /// A folder holding train.jsonl, validation.jsonl and test.jsonl.
    Folder(PathBuf),
}

/// The task names a resolution knows: the lab's held-out tasks, then the imported ones with
/// their folders. Made from the disk by the main crate (`run::task::catalogue`) or from the
/// lists the UI already holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskCatalogue {
    pub lab: Vec<String>,
    pub imported: Vec<(String, PathBuf)>,
}

impl TaskCatalogue {
    /// A lab task first, then an imported one, else a folder (made absolute where it can be,
    /// so a spec written from it reads the same files from another working folder). Reads no
    /// file: [`NamedTask::checked`] looks for a folder's files.
    pub fn resolve(&self, name: &str) -> NamedTask {
        if self.lab.iter().any(|t| t == name) {
            return NamedTask::Lab(name.to_string());
        }
        if let Some((n, dir)) = self.imported.iter().find(|(n, _)| n == name) {
            return NamedTask::Imported {
                name: n.clone(),
                dir: dir.clone(),
            };
        }
        NamedTask::Folder(std::path::absolute(name).unwrap_or_else(|_| PathBuf::from(name)))
    }

    /// [`TaskCatalogue::resolve`], with a folder's files looked for: a name that is no task is
    /// an error listing the ones there are.
    pub fn resolve_checked(&self, name: &str) -> Result<NamedTask, String> {
        let t = self.resolve(name);
        if let NamedTask::Folder(dir) = &t
            && let Some(missing) = TaskSpec::missing_files(dir).first()
        {
            let imported: Vec<&str> = self.imported.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!(
                "{name:?} is neither a held-out lab task ({}), an imported task ({}), nor a task \
                 folder: {} is missing",
                self.lab.join(", "),
                if imported.is_empty() {
                    "there are none".to_string()
                } else {
                    imported.join(", ")
                },
                dir.join(missing).display()
            ));
        }
        Ok(t)
    }
}

impl NamedTask {
    /// The `[task]` table naming it: a lab task or an imported one by name, a folder by its
    /// files.
    pub fn spec(&self) -> TaskSpec {
        match self {
            NamedTask::Lab(name) => TaskSpec {
                lab: Some(name.clone()),
                ..Default::default()
            },
            NamedTask::Imported { name, .. } => TaskSpec {
                name: Some(name.clone()),
                ..Default::default()
            },
            NamedTask::Folder(dir) => TaskSpec::folder(dir),
        }
    }

    /// As [`NamedTask::spec`], but an imported task by its folder's files: for specs read on
    /// another machine (a Slurm node), whose tasks folder is not this one.
    pub fn portable_spec(&self) -> TaskSpec {
        match self {
            NamedTask::Imported { dir, .. } => TaskSpec::folder(dir),
            t => t.spec(),
        }
    }

    /// The folder of an imported task or a task folder (None for a lab task).
    pub fn dir(&self) -> Option<&Path> {
        match self {
            NamedTask::Lab(_) => None,
            NamedTask::Imported { dir, .. } | NamedTask::Folder(dir) => Some(dir),
        }
    }
}

/// The three files a task folder holds.
pub const TASK_FILES: [&str; 3] = ["train.jsonl", "validation.jsonl", "test.jsonl"];

impl TaskSpec {
    /// The task in folder `dir`: its train, validation and test files.
    pub fn folder(dir: &Path) -> TaskSpec {
        let [train, validation, test] = TASK_FILES.map(|f| dir.join(f));
        TaskSpec {
            train: Some(train),
            validation: Some(validation),
            test: Some(test),
            ..Default::default()
        }
    }

    /// The task files that `dir` does not hold.
    pub fn missing_files(dir: &Path) -> Vec<String> {
        TASK_FILES
            .iter()
            .filter(|f| !dir.join(f).is_file())
            .map(|f| f.to_string())
            .collect()
    }

    /// A short name for records and tables.
    pub fn display_name(&self) -> String {
        match (&self.lab, &self.train) {
            (Some(l), _) => l.clone(),
            (None, _) if self.name.is_some() => self.name.clone().unwrap_or_default(),
            (None, Some(p)) => p
                .parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
            _ => "task".into(),
        }
    }
}

fn r64() -> usize {
    64
}
fn a16() -> f64 {
    16.0
}
fn lr_new() -> f64 {
    3e-4
}
fn s400() -> usize {
    400
}
fn d01() -> f64 {
    0.1
}
fn b8() -> usize {
    8
}
fn all_modules() -> Vec<String> {
    Module::ALL
        .iter()
        .map(|m| m.peft_name().to_string())
        .collect()
}
fn warm() -> f64 {
    0.1
}

/// The new-LoRA baseline: a fresh LoRA trained on the same training split (DESIGN's settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLoraSpec {
    #[serde(default = "r64")]
    pub rank: usize,
    #[serde(default = "a16")]
    pub alpha: f64,
    #[serde(default = "lr_new")]
    pub lr: f64,
    #[serde(default = "s400")]
    pub steps: usize,
    #[serde(default = "d01")]
    pub dropout: f64,
    #[serde(default = "b8")]
    pub batch_size: usize,
    #[serde(default = "all_modules")]
    pub modules: Vec<String>,
    #[serde(default = "warm")]
    pub warmup_frac: f64,
    /// Measure the validation loss every this many steps (and at the last) and keep the best
    /// checkpoint; 0 keeps the last step.
    #[serde(default)]
    pub checkpoint_every: usize,
    /// The cosine schedule decays to this fraction of `lr` (the paper's: 0).
    #[serde(default = "final_frac")]
    pub final_lr_frac: f64,
}

fn final_frac() -> f64 {
    0.1
}

impl Default for NewLoraSpec {
    fn default() -> Self {
        Self {
            rank: r64(),
            alpha: a16(),
            lr: lr_new(),
            steps: s400(),
            dropout: d01(),
            batch_size: b8(),
            modules: all_modules(),
            warmup_frac: warm(),
            checkpoint_every: 0,
            final_lr_frac: final_frac(),
        }
    }
}

impl NewLoraSpec {
    /// Checks every setting is finite and in range, and every module known.
    pub fn check(&self, f: Fields<'_>) -> Result<(), BadSetting> {
        f.count("rank", self.rank, 1, MAX_RANK)?;
        f.above("alpha", self.alpha, 0.0)?;
        f.at_least("lr", self.lr, 0.0)?;
        f.count("steps", self.steps, 1, MAX_STEPS)?;
        f.within("dropout", self.dropout, 0.0, 1.0, true)?;
        f.count("batch_size", self.batch_size, 1, MAX_BATCH)?;
        f.non_empty("modules", &self.modules)?;
        if let Some(m) = self
            .modules
            .iter()
            .find(|m| Module::from_peft_name(m).is_none())
        {
            return Err(BadSetting {
                field: format!("{}modules", f.0),
                rule: "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj".into(),
                got: format!("{m:?}"),
            });
        }
        f.within("warmup_frac", self.warmup_frac, 0.0, 1.0, false)?;
        f.count("checkpoint_every", self.checkpoint_every, 0, MAX_STEPS)?;
        f.within("final_lr_frac", self.final_lr_frac, 0.0, 1.0, false)
    }
}

/// What a run does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MethodSpec {
    /// The base model alone (prompting).
    Base,
    /// A new LoRA trained on the training split.
    NewLora(NewLoraSpec),
    /// Gradient-based merging coefficients.
    Gradient(GradientSpec),
    /// LoraHub: gradient-free coefficients of the A/B sum.
    Lorahub(LorahubSpec),
    /// AdaMerging: gradient-tuned coefficients, identity activation, equal init.
    Adamerging(AdaMergingSpec),
    /// π-Tuning: softmax coefficients trained with the adapters' A and B and a fresh LoRA slot.
    PiTuning(PiTuningSpec),
    /// Arrow: per-token routing to the top-k adapters of each module.
    Arrow(ArrowSpec),
    /// A non-adaptive merge with unit weights.
    #[serde(untagged)]
    Merge(MergeMethod),
}

impl MethodSpec {
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Whether the method merges pool adapters (and so needs a pool and a selection).
    pub fn uses_pool(&self) -> bool {
        !matches!(self, MethodSpec::Base | MethodSpec::NewLora(_))
    }
}

impl Default for MethodSpec {
    fn default() -> Self {
        MethodSpec::Gradient(GradientSpec::default())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ControlSpec {
    /// Replace every selected adapter (but the oracle) by a random one of the same shapes.
    #[serde(default)]
    pub random_init: RandomInit,
    /// Put the target task's own adapter in the pool, and keep it in the selection.
    #[serde(default)]
    pub oracle: bool,
    /// Controls queued with this run, each a run of its own whose record names this one as its
    /// parent: `random-init` (the same run on random-init LoRAs), `base`, `new-lora`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queue: Vec<ControlKind>,
    /// Written by the engine: the queued controls an identical run already answered (control
    /// name → that run's id), which were not run again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reused: BTreeMap<String, String>,
}

/// A control queued with a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlKind {
    /// The same run with every selected adapter replaced by a random-init one of its shapes.
    RandomInit,
    /// The base model alone.
    Base,
    /// A new LoRA trained on the task.
    NewLora,
}

impl ControlKind {
    pub const ALL: [ControlKind; 3] = [
        ControlKind::RandomInit,
        ControlKind::Base,
        ControlKind::NewLora,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ControlKind::RandomInit => "random-init",
            ControlKind::Base => "base",
            ControlKind::NewLora => "new-lora",
        }
    }
}

/// The run a control was queued with, and which control it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parent {
    pub id: String,
    pub role: ControlKind,
}

fn bootstrap() -> usize {
    1000
}
fn eval_batch() -> usize {
    32
}

/// The test stage's settings. `max_new_tokens`, `extract`, `normalize` and `max_prompt_tokens`
/// set here win over the task's `task.toml`, which wins over the protocol's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// Bootstrap resamples for the 95% intervals.
    #[serde(default = "bootstrap")]
    pub bootstrap: usize,
    #[serde(default = "eval_batch")]
    pub batch_size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
    /// `none`, or `####`: compare the text after the last `####` (chain-of-thought answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<Extract>,
    /// `exact`, `whitespace` or `paper`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalize>,
    /// Test prompts of this many tokens or more are dropped (and counted); 0 keeps every prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prompt_tokens: Option<usize>,
}

impl Default for EvalSpec {
    fn default() -> Self {
        Self {
            bootstrap: bootstrap(),
            batch_size: eval_batch(),
            max_new_tokens: None,
            extract: None,
            normalize: None,
            max_prompt_tokens: None,
        }
    }
}

impl EvalSpec {
    /// Checks the sizes are in range. No resamples is refused: it reported the mean as its own
    /// interval, [m, m], which reads as certainty.
    pub fn check(&self, f: Fields<'_>) -> Result<(), BadSetting> {
        f.count("bootstrap", self.bootstrap, 1, MAX_BOOTSTRAP)?;
        self.settings().check(f)?;
        f.count("batch_size", self.batch_size, 1, MAX_BATCH)
    }

    /// The scoring settings this table gives (each unset one left to the task and protocol).
    pub fn settings(&self) -> TaskSettings {
        TaskSettings {
            max_new_tokens: self.max_new_tokens,
            extract: self.extract,
            normalize: self.normalize,
            max_prompt_tokens: self.max_prompt_tokens,
        }
    }
}

fn default_selection() -> Selection {
    Selection::TopK {
        k: 30,
        by: Default::default(),
    }
}

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Whose defaults the unset settings take: `lab` or `paper` (see README).
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "auto_device")]
    pub device: String,
    #[serde(default = "auto_device")]
    pub dtype: String,
    #[serde(default)]
    pub model: ModelSpec,
    #[serde(default)]
    pub pool: PoolSpec,
    pub task: TaskSpec,
    #[serde(default = "default_selection")]
    pub selection: Selection,
    #[serde(default)]
    pub method: MethodSpec,
    #[serde(default)]
    pub controls: ControlSpec,
    #[serde(default)]
    pub eval: EvalSpec,
    /// Set on a control queued with another run (`controls.queue`): that run and the control's
    /// role. Never written by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
}

fn auto_device() -> String {
    "auto".into()
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Setting(#[from] BadSetting),
}

impl RunSpec {
    /// A run of `task` with every other setting at its default: what a spec holding only its
    /// `[task]` table reads as.
    pub fn for_task(task: TaskSpec) -> RunSpec {
        RunSpec {
            name: String::new(),
            protocol: Protocol::default(),
            seed: 0,
            device: auto_device(),
            dtype: auto_device(),
            model: ModelSpec::default(),
            pool: PoolSpec::default(),
            task,
            selection: default_selection(),
            method: MethodSpec::default(),
            controls: ControlSpec::default(),
            eval: EvalSpec::default(),
            parent: None,
        }
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Self, SpecError> {
        let mut spec: RunSpec = toml::from_str(text).map_err(|e| SpecError::Parse {
            path: path.to_path_buf(),
            message: explain_toml_error(&e, text),
        })?;
        // An internally tagged enum's unit variant takes any other keys silently, and one
        // flattened into another does not see `deny_unknown_fields`: every key a table gives
        // must be one its parsed value writes back.
        for (table, tag, parsed) in [
            ("method", "kind", toml::Value::try_from(&spec.method)),
            (
                "selection",
                "strategy",
                toml::Value::try_from(&spec.selection),
            ),
        ] {
            let parsed = parsed.expect("settings serialise");
            if let Some(why) = ignored_settings(text, table, tag, &parsed) {
                return Err(SpecError::Parse {
                    path: path.to_path_buf(),
                    message: format!("[{table}]: {why}"),
                });
            }
        }
        let doc: toml::Table = text.parse().unwrap_or_default();
        spec.protocol.fill(&mut spec, &doc);
        spec.validate()?;
        Ok(spec)
    }

    pub fn read(path: &Path) -> Result<Self, SpecError> {
        let text = crate::untrusted::read_text(path, crate::untrusted::SMALL).map_err(|e| {
            SpecError::Io {
                path: path.to_path_buf(),
                source: e.into_io(),
            }
        })?;
        Self::from_toml(&text, path)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a RunSpec always serialises")
    }

    pub fn device_pref(&self) -> Result<DevicePref, SpecError> {
        self.device
            .parse()
            .map_err(|e: String| SpecError::Invalid(format!("device: {e}")))
    }

    pub fn dtype_pref(&self) -> Result<DtypePref, SpecError> {
        self.dtype
            .parse()
            .map_err(|e: String| SpecError::Invalid(format!("dtype: {e}")))
    }

    /// Checks what serde cannot: a task is named exactly one way, settings are in range.
    pub fn validate(&self) -> Result<(), SpecError> {
        let bad = |m: String| Err(SpecError::Invalid(m));
        let t = &self.task;
        let ways = [t.lab.is_some(), t.name.is_some(), t.train.is_some()]
            .iter()
            .filter(|w| **w)
            .count();
        if ways > 1 {
            return bad(
                "task: give one of lab = NAME, name = NAME (an imported task) or train/validation/test files".into(),
            );
        }
        if ways == 0 {
            return bad(
                "task: give lab = NAME, name = NAME (an imported task) or train = FILE (with validation and test)".into(),
            );
        }
        if t.train.is_some() && (t.validation.is_none() || t.test.is_none()) {
            return bad("task: train needs validation and test files too".into());
        }
        if t.train_examples == Some(0) {
            return bad("task: train_examples must be at least 1".into());
        }
        match t.examples {
            Some(0) => return bad("task: examples must be at least 1".into()),
            Some(_) if t.train_examples.is_some() => {
                return bad(
                    "task: give examples (train + validation) or train_examples, not both".into(),
                );
            }
            Some(n) if n < 5 && !t.combine => {
                return bad(format!(
                    "task: examples = {n} leaves no validation example (a fifth of them, rounded down); give at least 5, or combine = true"
                ));
            }
            _ => {}
        }
        let mut seen = std::collections::BTreeSet::new();
        for &k in &self.controls.queue {
            if !seen.insert(k) {
                return bad(format!("controls.queue: {} is listed twice", k.name()));
            }
            let why = match k {
                ControlKind::RandomInit if !self.method.uses_pool() => {
                    Some("needs a method that merges pool adapters")
                }
                ControlKind::RandomInit if self.controls.random_init != RandomInit::Off => {
                    Some("this run is on random-init LoRAs already")
                }
                ControlKind::Base if self.method.name() == "base" => {
                    Some("this run is the base model")
                }
                ControlKind::NewLora if self.method.name() == "new-lora" => {
                    Some("this run is a new LoRA")
                }
                _ => None,
            };
            if let Some(why) = why {
                return bad(format!("controls.queue: {}: {why}", k.name()));
            }
        }
        if self.parent.is_some() && !self.controls.queue.is_empty() {
            return bad("controls.queue: a control queues no controls of its own".into());
        }
        self.selection.validate()?;
        let f = Fields("method.");
        match &self.method {
            MethodSpec::Base => {}
            MethodSpec::NewLora(n) => n.check(f)?,
            MethodSpec::Gradient(g) => g.check(f)?,
            MethodSpec::Lorahub(h) => h.check(f)?,
            MethodSpec::Adamerging(a) => a.check(f)?,
            MethodSpec::PiTuning(p) => p.check(f)?,
            MethodSpec::Arrow(a) => a.check(f)?,
            MethodSpec::Merge(m) => {
                m.check(f)?;
                if let (Some(ws), Some(k)) = (m.listed_weights(), self.selection.k())
                    && ws.len() != k
                {
                    return bad(format!(
                        "method.weights lists {} weights but the selection picks k = {k} adapters",
                        ws.len()
                    ));
                }
            }
        }
        let init = match &self.method {
            MethodSpec::Gradient(g) => Some(g.init),
            MethodSpec::Adamerging(a) => Some(a.init),
            _ => None,
        };
        if init == Some(crate::tune::settings::Init::Target) && !self.controls.oracle {
            return bad(
                "method.init = \"target\" starts the task's own adapter at 1: set controls.oracle = true"
                    .into(),
            );
        }
        self.eval.check(Fields("eval."))?;
        self.device_pref()?;
        self.dtype_pref()?;
        self.pool
            .filter
            .parse::<Filter>()
            .map_err(|e| SpecError::Invalid(format!("pool: {e}")))?;
        Ok(())
    }

    /// The same run on the random-init pool (each selected adapter's A and B resampled), named
    /// after this one; `None` for a method that uses no pool or a run already on it.
    pub fn random_init_twin(&self) -> Option<RunSpec> {
        if !self.method.uses_pool() || self.controls.random_init != RandomInit::Off {
            return None;
        }
        let mut twin = self.clone();
        twin.controls.random_init = RandomInit::Pooled;
        if !twin.name.is_empty() {
            twin.name.push_str(" / random-init");
        }
        Some(twin)
    }

    /// A control of another kind on the same task, model and split (the base model, a new LoRA),
    /// without this run's pool controls; its label says what it is, whatever this run's name.
    pub fn control_twin(&self, method: MethodSpec) -> RunSpec {
        let mut twin = self.clone();
        twin.method = method;
        twin.controls = ControlSpec::default();
        twin.name.clear();
        // The new method's settings take the protocol's defaults; the rest is this run's.
        twin.protocol.fill_method(&mut twin.method, |_| false);
        twin
    }

    /// The controls `controls.queue` asks for, as run specs (without a parent yet): each is
    /// this run's twin on random-init LoRAs, or the base model or a new LoRA on its task.
    pub fn queued_controls(&self) -> Vec<(ControlKind, RunSpec)> {
        let mut out = Vec::new();
        for &kind in &self.controls.queue {
            let twin = match kind {
                ControlKind::RandomInit => self.random_init_twin(),
                ControlKind::Base => {
                    (self.method.name() != "base").then(|| self.control_twin(MethodSpec::Base))
                }
                ControlKind::NewLora => (self.method.name() != "new-lora")
                    .then(|| self.control_twin(MethodSpec::NewLora(Default::default()))),
            };
            if let Some(mut t) = twin {
                t.controls.queue.clear();
                t.controls.reused.clear();
                t.parent = None;
                out.push((kind, t));
            }
        }
        out
    }

    /// What decides a run's answer: two specs with equal keys give the same record up to
    /// timing (its name, its queued controls and its parent left out; without pool adapters,
    /// the pool and the selection too).
    pub fn answer_key(&self) -> RunSpec {
        let mut k = self.clone();
        k.name.clear();
        k.parent = None;
        k.controls.queue.clear();
        k.controls.reused.clear();
        if !k.method.uses_pool() {
            k.pool = PoolSpec::default();
            k.selection = default_selection();
            k.controls = ControlSpec::default();
        }
        k
    }

    /// Every setting as a dotted key and its value (`selection.k` = `12`), for tables that show
    /// runs by what they differ in (Runs' and Compare's config columns, `runs list`, labels).
    /// What names a run or links it to others is left out: the name, the parent, the queue and
    /// the reused controls.
    pub fn settings(&self) -> BTreeMap<String, String> {
        fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, x) in m {
                        let key = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(&key, x, out);
                    }
                }
                serde_json::Value::String(s) => {
                    out.insert(prefix.to_string(), s.clone());
                }
                other => {
                    out.insert(prefix.to_string(), other.to_string());
                }
            }
        }
        let mut out = BTreeMap::new();
        if let Ok(v) = serde_json::to_value(self) {
            walk("", &v, &mut out);
        }
        out.retain(|k, _| {
            !(k == "name"
                || k.starts_with("parent")
                || k.starts_with("controls.queue")
                || k.starts_with("controls.reused"))
        });
        out
    }

    /// A label for tables: the name, or method + controls.
    pub fn label(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        let mut s = format!("{} / {}", self.task.display_name(), self.method.name());
        if self.method.uses_pool() {
            if self.controls.random_init != RandomInit::Off {
                s.push_str(" / random-init");
            }
            if self.controls.oracle {
                s.push_str(" / oracle");
            }
        }
        s
    }
}

/// What `table` of `text` gives that `parsed` (the value read from it) does not take: a key the
/// deserializer passed over.
fn ignored_settings(text: &str, table: &str, tag: &str, parsed: &toml::Value) -> Option<String> {
    let doc: toml::Table = text.parse().ok()?;
    let given = doc.get(table)?.as_table()?;
    let kept = parsed.as_table()?;
    let ignored: Vec<&str> = given
        .keys()
        .filter(|k| !kept.contains_key(*k))
        .map(String::as_str)
        .collect();
    if ignored.is_empty() {
        return None;
    }
    let name = kept.get(tag).and_then(|v| v.as_str()).unwrap_or("?");
    let takes: Vec<&str> = kept
        .keys()
        .filter(|k| *k != tag)
        .map(String::as_str)
        .collect();
    Some(if takes.is_empty() {
        format!(
            "{tag} {name} takes no settings (got {})",
            ignored.join(", ")
        )
    } else {
        format!(
            "{tag} {name} does not take {} (it takes {})",
            ignored.join(", "),
            takes.join(", ")
        )
    })
}

/// The method table's `kind` is matched against several variant sets, and serde's message for
/// any problem in it ("did not match any variant") names none: the table is read again as its
/// kind's settings to say what is wrong, at which line.
fn explain_toml_error(e: &toml::de::Error, text: &str) -> String {
    if !e.message().contains("did not match any variant") {
        return e.to_string().trim_end().to_string();
    }
    let at = e
        .span()
        .map(|s| {
            let before = text.get(..s.start).unwrap_or(text);
            format!(" (line {})", before.matches('\n').count() + 1)
        })
        .unwrap_or_default();
    match method_problem(text) {
        Some(why) => format!("[method]{at}: {why}"),
        None => {
            format!(
                "[method]{at}: unknown kind or a setting it does not take (kinds: {})",
                method_kinds()
            )
        }
    }
}

/// Every `kind` a `[method]` table may name, for error messages.
fn method_kinds() -> String {
    super::method::MethodKind::names(super::method::MethodKind::ALL)
}

/// What is wrong with the `[method]` table of `text`, read as its kind's settings.
fn method_problem(text: &str) -> Option<String> {
    use serde::de::Deserialize;
    let table: toml::Table = text.parse().ok()?;
    let method = table.get("method")?.as_table()?;
    let kind = method.get("kind")?.as_str()?;
    let mut settings = method.clone();
    settings.remove("kind");
    let settings = toml::Value::Table(settings);
    let why = |e: toml::de::Error| Some(format!("kind {kind}: {}", e.message().trim_end()));
    match kind {
        "base" => (method.len() > 1).then(|| {
            let keys: Vec<&str> = method
                .keys()
                .filter(|k| *k != "kind")
                .map(String::as_str)
                .collect();
            format!("kind base takes no settings (got {})", keys.join(", "))
        }),
        "new-lora" => NewLoraSpec::deserialize(settings).err().and_then(why),
        "gradient" => GradientSpec::deserialize(settings).err().and_then(why),
        "lorahub" => LorahubSpec::deserialize(settings).err().and_then(why),
        _ => match MergeMethod::deserialize(toml::Value::Table(method.clone())) {
            Err(e) if e.message().contains("unknown variant") => {
                Some(format!("unknown kind {kind:?} (kinds: {})", method_kinds()))
            }
            Err(e) => why(e),
            Ok(_) => None,
        },
    }
}

#[cfg(test)]
mod task_name_tests {
    use super::*;

    #[test]
    fn a_spec_for_a_task_is_what_its_task_table_alone_reads_as() {
        let read = RunSpec::from_toml("[task]\nlab = \"caesar-5\"\n", Path::new("t.toml")).unwrap();
        assert_eq!(
            RunSpec::for_task(TaskSpec {
                lab: Some("caesar-5".into()),
                ..Default::default()
            }),
            read
        );
    }

    #[test]
    fn a_task_name_is_a_lab_task_an_imported_one_or_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let cat = TaskCatalogue {
            lab: vec!["caesar-5".into()],
            imported: vec![("banking77".into(), dir.path().join("banking77"))],
        };
        assert_eq!(cat.resolve("caesar-5"), NamedTask::Lab("caesar-5".into()));
        let imported = cat.resolve("banking77");
        assert_eq!(imported.spec().name.as_deref(), Some("banking77"));
        assert_eq!(
            imported.portable_spec().train,
            Some(dir.path().join("banking77/train.jsonl"))
        );
        let folder = dir.path().join("mine");
        std::fs::create_dir_all(&folder).unwrap();
        let name = folder.to_str().unwrap();
        assert_eq!(
            cat.resolve_checked(name).unwrap_err(),
            format!(
                "{name:?} is neither a held-out lab task (caesar-5), an imported task \
                 (banking77), nor a task folder: {} is missing",
                folder.join("train.jsonl").display()
            )
        );
        for f in TASK_FILES {
            std::fs::write(folder.join(f), "").unwrap();
        }
        assert_eq!(
            cat.resolve_checked(name).unwrap().spec(),
            TaskSpec::folder(&folder)
        );
    }
}

#[cfg(test)]
mod twin_tests {
    use super::*;

    #[test]
    fn twins_are_named_for_what_they_are() {
        let spec = RunSpec::from_toml(
            "name = \"table-m / lorahub\"\n[task]\nlab = \"table-m\"\n[method]\nkind = \"lorahub\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let random = spec.random_init_twin().unwrap();
        assert_eq!(random.label(), "table-m / lorahub / random-init");
        assert_eq!(random.controls.random_init, RandomInit::Pooled);
        assert!(
            random.random_init_twin().is_none(),
            "already on the random-init pool"
        );
        let base = spec.control_twin(MethodSpec::Base);
        assert_eq!(base.label(), "table-m / base");
        assert_eq!(base.controls, ControlSpec::default());
        assert!(
            base.random_init_twin().is_none(),
            "the base model uses no pool"
        );
        // Unnamed specs get the derived labels.
        let mut unnamed = spec.clone();
        unnamed.name.clear();
        assert_eq!(
            unnamed.random_init_twin().unwrap().label(),
            "table-m / lorahub / random-init"
        );
    }
}

#[cfg(test)]
mod protocol_tests {
    use super::*;
    use crate::select::selection::ScoreMetric;
    use crate::tune::settings::Objective;

    fn read(text: &str) -> RunSpec {
        RunSpec::from_toml(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn the_paper_protocol_fills_what_a_spec_leaves_unset() {
        let spec = read(
            "protocol = \"paper\"\n[task]\nlab = \"caesar-5\"\n[method]\nkind = \"new-lora\"\n",
        );
        assert_eq!(spec.protocol, Protocol::Paper);
        assert_eq!(
            spec.selection,
            Selection::TopK {
                k: 30,
                by: ScoreMetric::Generated
            }
        );
        let MethodSpec::NewLora(n) = &spec.method else {
            panic!("{:?}", spec.method)
        };
        assert_eq!((n.checkpoint_every, n.final_lr_frac), (10, 0.0));
        assert_eq!((spec.task.examples, spec.task.combine), (Some(100), false));
        // What a spec sets stays; the written spec reads back the same.
        let spec = read(
            "protocol = \"paper\"\n[task]\nlab = \"caesar-5\"\ntrain_examples = 10\n[selection]\nstrategy = \"top-k\"\nk = 5\nby = \"loss\"\n[method]\nkind = \"lorahub\"\nbudget = 40\n",
        );
        assert_eq!(
            spec.selection,
            Selection::TopK {
                k: 5,
                by: ScoreMetric::Loss
            }
        );
        let MethodSpec::Lorahub(h) = &spec.method else {
            panic!("{:?}", spec.method)
        };
        assert_eq!((h.budget, h.objective), (40, Objective::TrainValidation));
        // The low-data setting: 10 examples of train + validation, merged.
        assert_eq!(
            (
                spec.task.train_examples,
                spec.task.examples,
                spec.task.combine
            ),
            (None, Some(10), true)
        );
        assert_eq!(read(&spec.to_toml()), spec);
        // The lab protocol keeps the lab's defaults.
        let lab = read("[task]\nlab = \"caesar-5\"\n[method]\nkind = \"lorahub\"\n");
        let MethodSpec::Lorahub(h) = &lab.method else {
            panic!()
        };
        assert_eq!(
            (lab.protocol, h.budget, h.objective),
            (Protocol::Lab, 320, Objective::Train)
        );
        assert_eq!(lab.task.examples, None);
    }

    #[test]
    fn example_counts_that_leave_no_validation_are_refused() {
        let err = RunSpec::from_toml(
            "[task]\nlab = \"caesar-5\"\nexamples = 4\n",
            Path::new("t.toml"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "task: examples = 4 leaves no validation example (a fifth of them, rounded down); give at least 5, or combine = true"
        );
        let err = RunSpec::from_toml(
            "[task]\nlab = \"caesar-5\"\nexamples = 20\ntrain_examples = 8\n",
            Path::new("t.toml"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "task: give examples (train + validation) or train_examples, not both"
        );
        read("[task]\nlab = \"caesar-5\"\nexamples = 4\ncombine = true\n");
        for (text, want) in [
            (
                "[task]\nlab = \"caesar-5\"\nexamples = 0\n",
                "task: examples must be at least 1",
            ),
            (
                "protocol = \"paper\"\n[task]\nlab = \"caesar-5\"\ntrain_examples = 0\n",
                "task: train_examples must be at least 1",
            ),
        ] {
            let err = RunSpec::from_toml(text, Path::new("t.toml")).unwrap_err();
            assert_eq!(err.to_string(), want, "{text}");
        }
    }
}
