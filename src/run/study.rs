//! `loracycle study`: the paper's comparison on the lab in one command.
//!
//! For every task and seed: the base model, a new LoRA, and each merging method (simple average,
//! TIES, LoraHub, the gradient recipe) on the real pool and on the random-init pool, with and
//! without the task's own (oracle) adapter; the paper's other methods (TSV, AdaMerging, Arrow,
//! π-Tuning) on both pools; and selection ablations (random 30; top 5, 10, 20). Results are written as per-run rows (CSV, JSON) and a
//! Markdown table of means with bootstrap 95% intervals over (task, seed).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::event::RunEvent;
use super::execute::{RunError, Workbench};
use super::lifecycle::run_in_folder;
use super::protocol::Protocol;
use super::record::{RunRecord, now_rfc3339};
use super::spec::{
    ControlKind, ControlSpec, MethodSpec, NamedTask, NewLoraSpec, Parent, RunSpec, TaskSpec,
};
use super::store::{Annotations, RunState, RunStore};
use crate::adapter::random::RandomInit;
use crate::atomic_write::write_atomic;
use crate::eval::{Estimate, bootstrap_mean};
use crate::merge::{MergeMethod, SignElection};
use crate::select::{ScoreMetric, Selection};
use crate::tune::coef::GradientSpec;
use crate::tune::lorahub::LorahubSpec;
use crate::tune::settings::{AdaMergingSpec, ArrowSpec, Objective, PiTuningSpec};

/// One arm of the comparison.
#[derive(Debug, Clone)]
pub struct Arm {
    pub label: String,
    pub method: MethodSpec,
    pub selection: Selection,
    pub controls: ControlSpec,
}

/// A study's comparison: its arms and the protocol of every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The paper's comparison at the lab's scale and settings (DESIGN.md), on lab tasks.
    #[default]
    LabPaper,
    /// The paper's arms and protocol (`protocol = "paper"`), on any model, pool and tasks.
    Paper,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::LabPaper => "lab-paper",
            Preset::Paper => "paper",
        }
    }

    pub fn arms(self) -> Vec<Arm> {
        match self {
            Preset::LabPaper => lab_paper_arms(),
            Preset::Paper => paper_arms(),
        }
    }

    pub fn protocol(self) -> Protocol {
        match self {
            Preset::LabPaper => Protocol::Lab,
            Preset::Paper => Protocol::Paper,
        }
    }
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lab-paper" => Ok(Preset::LabPaper),
            "paper" => Ok(Preset::Paper),
            _ => Err(format!("unknown preset {s:?} (use lab-paper or paper)")),
        }
    }
}

/// Each arm on the real pool and on the random-init pool, and with the task's own adapter when
/// `oracle`.
fn with_controls(methods: Vec<(&str, MethodSpec, Selection)>, oracle: bool) -> Vec<Arm> {
    let mut arms = Vec::new();
    for (name, method, selection) in methods {
        for random in [false, true] {
            for with_oracle in [false, true] {
                if with_oracle && !oracle {
                    continue;
                }
                let mut label = name.to_string();
                if random {
                    label.push_str(RANDOM_INIT);
                }
                if with_oracle {
                    label.push_str(" · +oracle");
                }
                arms.push(Arm {
                    label,
                    method: method.clone(),
                    selection: selection.clone(),
                    controls: ControlSpec {
                        random_init: if random {
                            RandomInit::Pooled
                        } else {
                            RandomInit::Off
                        },
                        oracle: with_oracle,
                        ..Default::default()
                    },
                });
            }
        }
    }
    arms
}

/// The base model and a new LoRA, first in every preset.
fn base_and_new_lora(top: &Selection, new_lora: NewLoraSpec) -> Vec<Arm> {
    vec![
        Arm {
            label: BASE_ARM.into(),
            method: MethodSpec::Base,
            selection: top.clone(),
            controls: ControlSpec::default(),
        },
        Arm {
            label: NEW_LORA_ARM.into(),
            method: MethodSpec::NewLora(new_lora),
            selection: top.clone(),
            controls: ControlSpec::default(),
        },
    ]
}

const RANDOM_INIT: &str = " · random-init";
const BASE_ARM: &str = "base";
const NEW_LORA_ARM: &str = "new LoRA";

/// How the run of arm `label` links to the other arms of its (task, seed): a random-init arm
/// is the twin of the arm without it; an arm on pool adapters is answered by the base and
/// new-LoRA arms. The links go into the records (`parent`, `controls.reused`), so that Compare
/// and `runs compare` pair a study's runs as they pair runs queued with their controls.
fn link(label: &str, ids: &std::collections::BTreeMap<String, String>) -> Annotations {
    let mut a = Annotations::default();
    if label.contains(RANDOM_INIT) {
        if let Some(id) = ids.get(&label.replacen(RANDOM_INIT, "", 1)) {
            a.parent = Some(Parent {
                id: id.clone(),
                role: ControlKind::RandomInit,
            });
        }
    } else if label != BASE_ARM && label != NEW_LORA_ARM {
        for (arm, role) in [
            (BASE_ARM, ControlKind::Base),
            (NEW_LORA_ARM, ControlKind::NewLora),
        ] {
            if let Some(id) = ids.get(arm) {
                a.controls.insert(role.name().to_string(), id.clone());
            }
        }
    }
    a
}

/// Simple average: every module divided by the N adapters merged.
fn average() -> MethodSpec {
    MethodSpec::Merge(MergeMethod::Average {
        over: Default::default(),
    })
}

/// Simple average (1/N) and TIES (density 0.2, sign by total, weights 1) over `top`.
fn average_and_ties(top: &Selection) -> Vec<(&'static str, MethodSpec, Selection)> {
    vec![
        ("average", average(), top.clone()),
        (
            "TIES",
            MethodSpec::Merge(MergeMethod::Ties {
                density: 0.2,
                sign: SignElection::Total,
                lambda: 1.0,
                weights: crate::merge::Weights::One,
            }),
            top.clone(),
        ),
    ]
}

/// The arms of the `paper` preset: the base model, a new LoRA (best checkpoint by validation
/// loss, cosine to 0), and simple average, TIES, TSV, LoraHub and the gradient recipe over the
/// top 30 adapters by generated exact match, each also on the random-init pool. Every run takes
/// the paper's protocol for what the arm leaves unset.
pub fn paper_arms() -> Vec<Arm> {
    let top30 = Selection::TopK {
        k: 30,
        by: ScoreMetric::Generated,
    };
    let mut arms = base_and_new_lora(
        &top30,
        NewLoraSpec {
            checkpoint_every: 10,
            final_lr_frac: 0.0,
            ..NewLoraSpec::default()
        },
    );
    let mut methods = average_and_ties(&top30);
    methods.extend([
        ("TSV", tsv(), top30.clone()),
        (
            "LoraHub",
            MethodSpec::Lorahub(LorahubSpec {
                budget: 100,
                objective: Objective::TrainValidation,
                ..LorahubSpec::default()
            }),
            top30.clone(),
        ),
        (
            "gradient",
            MethodSpec::Gradient(GradientSpec::default()),
            top30.clone(),
        ),
    ]);
    methods.extend(other_methods(&top30));
    arms.extend(with_controls(methods, false));
    arms
}

/// TSV as the paper runs it: 8 singular directions per adapter, λ 1, equal weights.
fn tsv() -> MethodSpec {
    MethodSpec::Merge(MergeMethod::Tsv {
        m: 8,
        lambda: 1.0,
        weights: crate::merge::Weights::Equal,
    })
}

/// The paper's other methods over `top`: AdaMerging, zero-step Arrow (top-4 routing, T = 1)
/// and π-Tuning (its own selection: the 20 adapters closest to the task's own adapter by
/// quasi-FIM, with a fresh LoRA slot).
fn other_methods(top: &Selection) -> Vec<(&'static str, MethodSpec, Selection)> {
    vec![
        (
            "AdaMerging",
            MethodSpec::Adamerging(Default::default()),
            top.clone(),
        ),
        ("Arrow", MethodSpec::Arrow(Default::default()), top.clone()),
        (
            "π-Tuning",
            MethodSpec::PiTuning(Default::default()),
            Selection::Similar {
                to: crate::select::TASK_REFERENCE.into(),
                k: 20,
                measure: crate::select::selection::Closeness::QuasiFim,
                aggregate: crate::select::selection::Aggregate::Macro,
            },
        ),
    ]
}

/// The selection ablations of the lab-paper preset, on the real pool only: average, TIES and
/// the gradient recipe over 30 random adapters, and average and the gradient recipe over the
/// top 5, 10 and 20 (the main arms take the top 30).
fn selection_ablations() -> Vec<Arm> {
    let random30 = Selection::Random { k: 30, seed: None };
    let mut methods: Vec<(String, MethodSpec, Selection)> = average_and_ties(&random30)
        .into_iter()
        .map(|(name, m, sel)| (format!("{name} · random 30"), m, sel))
        .collect();
    let gradient = MethodSpec::Gradient(GradientSpec::default());
    methods.push(("gradient · random 30".into(), gradient.clone(), random30));
    for (name, m) in [("average", average()), ("gradient", gradient)] {
        for k in [5, 10, 20] {
            methods.push((
                format!("{name} · top-{k}"),
                m.clone(),
                Selection::TopK {
                    k,
                    by: ScoreMetric::ExactMatch,
                },
            ));
        }
    }
    methods
        .into_iter()
        .map(|(label, method, selection)| Arm {
            label,
            method,
            selection,
            controls: ControlSpec::default(),
        })
        .collect()
}

/// The arms of the `lab-paper` preset.
pub fn lab_paper_arms() -> Vec<Arm> {
    let top30 = Selection::TopK {
        k: 30,
        by: ScoreMetric::ExactMatch,
    };
    // The lab pool's own LoRA recipe scale (rank 8, lr 3e-3) with DESIGN's other settings.
    let mut arms = base_and_new_lora(
        &top30,
        NewLoraSpec {
            rank: 8,
            alpha: 16.0,
            lr: 3e-3,
            ..NewLoraSpec::default()
        },
    );
    let mut methods = average_and_ties(&top30);
    methods.extend([
        (
            "LoraHub",
            // LoraHub's own recipe: 20 random adapters, a few (5) examples.
            MethodSpec::Lorahub(LorahubSpec {
                examples: Some(5),
                ..LorahubSpec::default()
            }),
            Selection::Random { k: 20, seed: None },
        ),
        (
            "gradient",
            MethodSpec::Gradient(GradientSpec::default()),
            top30.clone(),
        ),
    ]);
    arms.extend(with_controls(methods, true));
    // The paper's other methods, each with its random-init twin (no oracle variants: the
    // recipe's arms above already show what the oracle adds).
    let mut others = vec![("TSV", tsv(), top30.clone())];
    others.extend(other_methods(&top30));
    arms.extend(with_controls(others, false));
    arms.extend(selection_ablations());
    arms
}

/// One finished run of the study.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyRow {
    pub task: String,
    pub has_relative: bool,
    pub seed: u64,
    pub arm: String,
    pub exact_match: f64,
    pub loss: f64,
    pub seconds: f64,
    pub run_id: String,
}

/// An arm's means over (task, seed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArmSummary {
    pub arm: String,
    pub exact_match: Estimate,
    pub loss: Estimate,
    /// Exact match on tasks that have a close relative in the pool, and on those that do not.
    pub exact_match_related: Estimate,
    pub exact_match_unrelated: Estimate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyReport {
    pub preset: String,
    pub tasks: Vec<String>,
    pub seeds: usize,
    pub wall_s: f64,
    pub summary: Vec<ArmSummary>,
    pub rows: Vec<StudyRow>,
}

/// Which cells a study has: tasks × seeds × arms, and how its runs are set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyOptions {
    #[serde(default)]
    pub preset: Preset,
    /// Lab task names, or (preset `paper`) task folders holding train.jsonl, validation.jsonl
    /// and test.jsonl.
    pub tasks: Vec<String>,
    /// The base model: `lab`, a folder or a Hub id in the HF cache (preset `paper`).
    #[serde(default = "lab_name")]
    pub model: String,
    /// The pool: `lab`, `cache`, `hub` or `dir:PATH` (preset `paper`).
    #[serde(default = "lab_name")]
    pub pool: String,
    pub seeds: usize,
    /// Arm labels to keep (see [`select_arms`]); empty keeps every arm of the preset.
    #[serde(default)]
    pub arms: Vec<String>,
    /// Tuning steps / search budget scale-down for quick checks (1.0 = the preset as is).
    pub scale: f64,
    /// The device every run asks for (`auto`, `cpu`, `cuda`, `cuda:N`).
    pub device: String,
}

fn lab_name() -> String {
    "lab".into()
}

/// One cell of the study: a task, a seed and an arm, run as one RunSpec named
/// "TASK / ARM / seed N" (the name is how [`collect`] finds its record again).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub index: usize,
    pub task: String,
    pub seed: u64,
    pub arm: String,
}

impl Cell {
    pub fn name(&self) -> String {
        format!("{} / {} / seed {}", self.task, self.arm, self.seed)
    }

    /// The cell a run's spec name stands for.
    pub fn parse(name: &str) -> Option<(String, String, u64)> {
        let parts: Vec<&str> = name.split(" / ").collect();
        let [task, arm, seed] = parts[..] else {
            return None;
        };
        let seed = seed.strip_prefix("seed ")?.parse().ok()?;
        Some((task.to_string(), arm.to_string(), seed))
    }
}

/// An arm label reduced to its letters and digits, lower case: `average/random-init` and
/// `average · random-init` are one arm.
fn arm_key(label: &str) -> String {
    label
        .replace('π', "pi")
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The preset's arms that `wanted` names (all of them when it is empty), in the preset's order.
pub fn select_arms(preset: Preset, wanted: &[String]) -> Result<Vec<Arm>, String> {
    let arms = preset.arms();
    if wanted.is_empty() {
        return Ok(arms);
    }
    for w in wanted {
        if !arms.iter().any(|a| arm_key(&a.label) == arm_key(w)) {
            let names: Vec<String> = arms.iter().map(|a| a.label.clone()).collect();
            return Err(format!(
                "no arm {w:?} in the {} preset; the arms are: {}",
                preset.name(),
                names.join(", ")
            ));
        }
    }
    Ok(arms
        .into_iter()
        .filter(|a| wanted.iter().any(|w| arm_key(w) == arm_key(&a.label)))
        .collect())
}

/// Every cell of the study with its RunSpec, tasks outermost, then seeds, then arms.
pub fn cells(opts: &StudyOptions) -> Result<Vec<(Cell, RunSpec)>, String> {
    let arms = select_arms(opts.preset, &opts.arms)?;
    let tasks: Vec<TaskSpec> = opts
        .tasks
        .iter()
        .map(|t| task_spec(opts.preset, t))
        .collect::<Result<_, _>>()?;
    if opts.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    let pool: crate::pool::PoolSource = opts.pool.parse()?;
    let paper = opts.preset == Preset::Paper;
    let mut out = Vec::new();
    for (task, task_spec) in opts.tasks.iter().zip(&tasks) {
        for seed in 0..opts.seeds as u64 {
            for arm in &arms {
                if !arm_fits(arm, task_spec) {
                    if opts.arms.is_empty() {
                        continue;
                    }
                    return Err(format!(
                        "arm {} selects by closeness to the task's own adapter, and {task} has none: put it in {task}/{OWN_ADAPTER_DIR} or leave the arm out of --arms",
                        arm.label
                    ));
                }
                let cell = Cell {
                    index: out.len(),
                    task: task.clone(),
                    seed,
                    arm: arm.label.clone(),
                };
                let spec = RunSpec {
                    protocol: opts.preset.protocol(),
                    name: cell.name(),
                    seed,
                    device: opts.device.clone(),
                    // The lab's tiny model in f32; a real model in the device's dtype.
                    dtype: if opts.model == "lab" { "f32" } else { "auto" }.into(),
                    model: super::spec::ModelSpec {
                        base: opts.model.clone(),
                        ..Default::default()
                    },
                    pool: super::spec::PoolSpec {
                        source: pool.clone(),
                        filter: String::new(),
                    },
                    task: TaskSpec {
                        examples: paper.then_some(super::protocol::PAPER_EXAMPLES),
                        ..task_spec.clone()
                    },
                    selection: arm.selection.clone(),
                    method: scaled(&arm.method, opts.scale),
                    controls: arm.controls.clone(),
                    eval: Default::default(),
                    parent: None,
                };
                spec.validate()
                    .map_err(|e| format!("{}: {e}", cell.name()))?;
                out.push((cell, spec));
            }
        }
    }
    Ok(out)
}

/// A study task: a held-out lab task by name, or (preset `paper`) a folder with train.jsonl,
/// validation.jsonl and test.jsonl.
fn task_spec(preset: Preset, task: &str) -> Result<TaskSpec, String> {
    let catalogue = crate::run::task::catalogue();
    let named = catalogue.resolve(task);
    if preset == Preset::LabPaper && !matches!(named, NamedTask::Lab(_)) {
        return Err(format!(
            "{task:?} is not a held-out lab task; they are: {}",
            catalogue.lab.join(", ")
        ));
    }
    // An imported task goes into the cell specs as its folder, so a Slurm node whose tasks
    // folder is not this machine's reads the same files.
    let named = catalogue.resolve_checked(task)?;
    Ok(match named.dir() {
        Some(dir) => with_own_adapter(named.portable_spec(), dir),
        None => named.spec(),
    })
}

/// A task folder's own adapter (`adapter/` beside its splits), when it has one: the reference
/// of arms that select by closeness to the task's adapter (π-Tuning).
pub const OWN_ADAPTER_DIR: &str = "adapter";

fn with_own_adapter(mut spec: TaskSpec, dir: &Path) -> TaskSpec {
    let own = dir.join(OWN_ADAPTER_DIR);
    if own.join("adapter_config.json").is_file() {
        spec.oracle_adapter = Some(own);
    }
    spec
}

/// Whether `arm` can run on `task`: an arm that selects by closeness to the task's own adapter
/// needs one (a lab task has its own; a task folder needs `adapter/`).
fn arm_fits(arm: &Arm, task: &TaskSpec) -> bool {
    let to_task = matches!(&arm.selection, Selection::Similar { to, .. } if to == crate::select::TASK_REFERENCE);
    !to_task || task.lab.is_some() || task.oracle_adapter.is_some()
}

/// The (task, arm) pairs a study leaves out, as lines for the user: arms that select by
/// closeness to the task's own adapter, on task folders without one. Naming such an arm in
/// `--arms` is an error instead (see [`cells`]).
pub fn left_out(opts: &StudyOptions) -> Vec<String> {
    // Arms named in --arms are never left out (cells refuses them instead).
    if !opts.arms.is_empty() {
        return Vec::new();
    }
    let arms = opts.preset.arms();
    let mut lines = Vec::new();
    for t in &opts.tasks {
        let Ok(spec) = task_spec(opts.preset, t) else {
            continue;
        };
        for arm in arms.iter().filter(|a| !arm_fits(a, &spec)) {
            lines.push(format!(
                "{t} / {}: left out (it selects by closeness to the task's own adapter; put that adapter in {t}/{OWN_ADAPTER_DIR})",
                arm.label
            ));
        }
    }
    lines
}

fn scaled(method: &MethodSpec, scale: f64) -> MethodSpec {
    let s = |n: usize| ((n as f64 * scale).round() as usize).max(1);
    match method {
        MethodSpec::NewLora(n) => MethodSpec::NewLora(NewLoraSpec {
            steps: s(n.steps),
            ..n.clone()
        }),
        MethodSpec::Gradient(g) => MethodSpec::Gradient(GradientSpec {
            steps: s(g.steps),
            eval_every: s(g.eval_every),
            ..g.clone()
        }),
        MethodSpec::Lorahub(h) => MethodSpec::Lorahub(LorahubSpec {
            budget: s(h.budget).max(h.population + 1),
            ..h.clone()
        }),
        MethodSpec::Adamerging(a) => MethodSpec::Adamerging(AdaMergingSpec {
            steps: s(a.steps),
            eval_every: s(a.eval_every),
            ..a.clone()
        }),
        MethodSpec::PiTuning(p) => MethodSpec::PiTuning(PiTuningSpec {
            steps: s(p.steps),
            eval_every: s(p.eval_every),
            ..p.clone()
        }),
        MethodSpec::Arrow(a) if a.train => MethodSpec::Arrow(ArrowSpec {
            steps: s(a.steps),
            eval_every: s(a.eval_every),
            ..a.clone()
        }),
        m => m.clone(),
    }
}

/// Sees (run index, total runs, label) before each run, then that run's events.
pub type StudyProgress<'a> = dyn FnMut(usize, usize, &str, Option<&RunEvent>) + 'a;

fn row_of(cell_task: &str, seed: u64, arm: &str, record: &RunRecord) -> StudyRow {
    StudyRow {
        task: cell_task.to_string(),
        has_relative: crate::lab::tasks::relative_of(cell_task).is_some(),
        seed,
        arm: arm.to_string(),
        exact_match: record.metrics.exact_match.mean,
        loss: record.metrics.loss.mean,
        seconds: record.timings.total_s,
        run_id: record.id.clone(),
    }
}

/// Runs the study here, one cell after another, each a run in the run store `runs` (status,
/// curve and record, like `loracycle run`), then writes the table into `out`.
/// `on` sees (run index, total runs, label) before each run and every run event.
pub fn run_study(
    opts: &StudyOptions,
    runs: &Path,
    out: &Path,
    on: &mut StudyProgress<'_>,
) -> Result<StudyReport, RunError> {
    let t0 = std::time::Instant::now();
    let cells = cells(opts).map_err(RunError::Other)?;
    let store = RunStore::open(runs)?;
    // The plan tells `--collect` which cells this study has.
    let plan = Plan::new(
        opts,
        std::path::absolute(runs).unwrap_or_else(|_| runs.to_path_buf()),
        &cells,
    );
    std::fs::create_dir_all(out)
        .and_then(|()| plan.write(out))
        .map_err(|e| {
            RunError::Other(format!(
                "cannot write the study into {}: {e}",
                out.display()
            ))
        })?;
    let total = cells.len();
    let mut rows = Vec::with_capacity(total);
    let mut bench: Option<Workbench> = None;
    // The run ids of the arms of the current (task, seed), for the links between them.
    let mut ids: std::collections::BTreeMap<String, String> = Default::default();
    let mut group = None;
    for (cell, spec) in &cells {
        let index = cell.index + 1;
        if group.as_ref() != Some(&(cell.task.clone(), cell.seed)) {
            group = Some((cell.task.clone(), cell.seed));
            ids.clear();
        }
        let mut spec = spec.clone();
        let links = link(&cell.arm, &ids);
        spec.parent = links.parent;
        spec.controls.reused.extend(links.controls);
        let spec = &spec;
        on(index, total, &spec.name, None);
        if !bench.as_ref().is_some_and(|b| b.serves(spec)) {
            // Free the old model before loading the next.
            drop(bench.take());
            bench = Some(Workbench::open(spec)?);
        }
        let bench = bench.as_mut().expect("opened above");
        let mut folder = store.create(spec)?;
        let record = run_in_folder(
            bench,
            spec,
            &mut folder,
            &mut |e| on(index, total, "", Some(&e)),
            None,
        )?;
        ids.insert(cell.arm.clone(), record.id.clone());
        rows.push(row_of(&cell.task, cell.seed, &cell.arm, &record));
    }
    let arms = select_arms(opts.preset, &opts.arms).map_err(RunError::Other)?;
    let report = StudyReport {
        preset: opts.preset.name().into(),
        tasks: opts.tasks.clone(),
        seeds: opts.seeds,
        wall_s: t0.elapsed().as_secs_f64(),
        summary: summarise(&rows, &arms),
        rows,
    };
    write_outputs(out, &report).map_err(|e| {
        RunError::Other(format!(
            "cannot write the study into {}: {e}",
            out.display()
        ))
    })?;
    Ok(report)
}

/// A study handed to a scheduler: its cells, where their specs and logs are, and its jobs.
/// Written as `plan.json` in the study folder; `--collect` reads it to know every cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub preset: String,
    pub options: StudyOptions,
    pub runs_dir: PathBuf,
    pub emitted: String,
    pub cells: Vec<Cell>,
    /// Jobs submitted for the plan, oldest first.
    #[serde(default)]
    pub jobs: Vec<Submission>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    pub job_id: String,
    pub submitted: String,
}

pub const PLAN_FILE: &str = "plan.json";
pub const SCRIPT_FILE: &str = "study.sbatch";

impl Plan {
    /// The plan of `cells`, written now, with no job submitted yet.
    pub fn new(opts: &StudyOptions, runs_dir: PathBuf, cells: &[(Cell, RunSpec)]) -> Plan {
        Plan {
            preset: opts.preset.name().into(),
            options: opts.clone(),
            runs_dir,
            emitted: now_rfc3339(),
            cells: cells.iter().map(|(c, _)| c.clone()).collect(),
            jobs: Vec::new(),
        }
    }

    pub fn read(study: &Path) -> Option<Plan> {
        let text =
            crate::untrusted::read_text(&study.join(PLAN_FILE), crate::untrusted::LARGE).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn write(&self, study: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).expect("a plan always serialises");
        write_atomic(&study.join(PLAN_FILE), json.as_bytes())
    }
}

/// What `study --emit slurm` wrote.
#[derive(Debug)]
pub struct Emitted {
    pub plan: Plan,
    pub script: PathBuf,
    pub cells_dir: PathBuf,
    pub logs_dir: PathBuf,
}

/// Writes one RunSpec per cell (`STUDY/cells/NNNN.toml`), the plan and an sbatch job-array
/// script (`STUDY/study.sbatch`) whose task `i` runs cell `i` into `runs` with the binary `exe`.
/// Both folders are made absolute: the array tasks run wherever Slurm puts them.
pub fn emit_slurm(
    opts: &StudyOptions,
    runs: &Path,
    study: &Path,
    batch: &crate::slurm::BatchOptions,
    exe: &Path,
) -> Result<Emitted, String> {
    crate::slurm::check_options(batch)?;
    let cells = cells(opts)?;
    let abs = |p: &Path| std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()));
    let (runs, study) = (abs(runs)?, abs(study)?);
    let cells_dir = study.join("cells");
    let logs_dir = study.join("logs");
    crate::slurm::log_folder_ok(&logs_dir)?;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| format!("{}: {e}", p.display())
    };
    for d in [&runs, &cells_dir, &logs_dir] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    for (cell, spec) in &cells {
        let path = cells_dir.join(crate::slurm::cell_file(cell.index));
        write_atomic(&path, spec.to_toml().as_bytes()).map_err(io(&path))?;
    }
    // Cell files of an earlier, larger plan would be run by nobody; remove them.
    if let Ok(rd) = std::fs::read_dir(&cells_dir) {
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = name
                .strip_suffix(".toml")
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|i| i >= cells.len());
            if stale {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let script = crate::slurm::batch_script(batch, cells.len(), exe, &cells_dir, &runs, &logs_dir);
    let script_path = study.join(SCRIPT_FILE);
    write_atomic(&script_path, script.as_bytes()).map_err(io(&script_path))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755))
        .map_err(io(&script_path))?;
    let plan = Plan::new(opts, runs, &cells);
    plan.write(&study).map_err(io(&study.join(PLAN_FILE)))?;
    Ok(Emitted {
        plan,
        script: script_path,
        cells_dir,
        logs_dir,
    })
}

/// A cell with no finished run: why, and what its last attempt left.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellProblem {
    pub cell: String,
    /// The cell's index in the plan (its Slurm array task), when there is a plan.
    pub index: Option<usize>,
    /// `missing` (no run at all), or the state of its latest run (failed, interrupted, running, ...).
    pub state: String,
    pub run_id: Option<String>,
    pub error: Option<String>,
    /// The Slurm state of the cell's array task, when Slurm knows it.
    pub slurm: Option<String>,
    pub log: Option<PathBuf>,
    pub log_tail: Vec<String>,
}

/// One run of the store that names a study cell.
struct Attempt {
    id: String,
    task: String,
    arm: String,
    seed: u64,
    submitted: String,
    state: RunState,
    error: Option<String>,
    slurm: Option<crate::slurm::SlurmJob>,
    record: Option<RunRecord>,
}

fn attempts(runs: &Path) -> std::io::Result<Vec<Attempt>> {
    let store = RunStore {
        root: runs.to_path_buf(),
    };
    // A runs folder that is not there is an error, not an empty study.
    std::fs::read_dir(runs)?;
    let mut out = Vec::new();
    for id in store.ids() {
        let Ok((summary, record)) = store.summary_and_record(&id) else {
            continue;
        };
        // Its cell from the name it was submitted under (a renamed run stays in its cell).
        let submitted_as = store
            .run_dir(&id)
            .ok()
            .and_then(|d| RunStore::read_status(&d))
            .map_or_else(|| summary.label.clone(), |s| s.label);
        let Some((task, arm, seed)) = Cell::parse(&submitted_as) else {
            continue;
        };
        let record = record.filter(|_| summary.state == RunState::Finished);
        out.push(Attempt {
            id,
            task,
            arm,
            seed,
            submitted: summary.submitted,
            state: summary.state,
            error: summary.error,
            slurm: summary.slurm,
            record,
        });
    }
    // Oldest first, so that later attempts of a cell win below.
    out.sort_by(|a, b| a.submitted.cmp(&b.submitted).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Rebuilds a study's table from the run records in `runs`. Its cells are those of the plan in
/// `out` (written by `--emit slurm`) when there is one, else every (task, arm, seed) the records
/// name. Each cell counts its latest finished run; cells without one are returned as problems with
/// their latest run's state and error, their Slurm state and the tail of their log.
/// `slurm_states` maps array task keys ("JOB_TASK") to Slurm states.
pub fn collect(
    runs: &Path,
    out: &Path,
    slurm_states: &dyn Fn(&[&str]) -> std::collections::HashMap<String, String>,
) -> std::io::Result<(StudyReport, Vec<CellProblem>)> {
    let plan = Plan::read(out);
    let attempts = attempts(runs)?;
    let preset = plan.as_ref().map(|p| p.options.preset).unwrap_or_default();
    let all_arms = preset.arms();
    let (arms, grid): (Vec<Arm>, Vec<Cell>) = match &plan {
        Some(p) => (
            select_arms(preset, &p.options.arms).unwrap_or_else(|_| all_arms.clone()),
            p.cells.clone(),
        ),
        None => {
            let mut tasks: Vec<String> = Vec::new();
            let mut seeds = 0;
            for a in attempts.iter().filter(|a| a.record.is_some()) {
                if !all_arms.iter().any(|x| x.label == a.arm) {
                    continue;
                }
                if !tasks.contains(&a.task) {
                    tasks.push(a.task.clone());
                }
                seeds = seeds.max(a.seed as usize + 1);
            }
            let held = crate::lab::tasks::held_out();
            tasks.sort_by_key(|t| held.iter().position(|h| h == t).unwrap_or(usize::MAX));
            let mut grid = Vec::new();
            for t in &tasks {
                for seed in 0..seeds as u64 {
                    for a in &all_arms {
                        grid.push(Cell {
                            index: grid.len(),
                            task: t.clone(),
                            seed,
                            arm: a.label.clone(),
                        });
                    }
                }
            }
            (all_arms.clone(), grid)
        }
    };
    let study_jobs: Vec<&str> = plan
        .as_ref()
        .map(|p| p.jobs.iter().map(|j| j.job_id.as_str()).collect())
        .unwrap_or_default();
    let mut query: Vec<&str> = study_jobs.clone();
    query.extend(
        attempts
            .iter()
            .filter_map(|a| a.slurm.as_ref().map(|s| s.query_id())),
    );
    let states = if query.is_empty() {
        Default::default()
    } else {
        slurm_states(&query)
    };
    let logs_dir = out.join("logs");
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut tasks: Vec<String> = Vec::new();
    let mut span: Option<(std::time::SystemTime, std::time::SystemTime)> = None;
    for cell in &grid {
        if !tasks.contains(&cell.task) {
            tasks.push(cell.task.clone());
        }
        let mine: Vec<&Attempt> = attempts
            .iter()
            .filter(|a| a.task == cell.task && a.arm == cell.arm && a.seed == cell.seed)
            .collect();
        if let Some(r) = mine.iter().rev().find_map(|a| a.record.as_ref()) {
            rows.push(row_of(&cell.task, cell.seed, &cell.arm, r));
            if let Ok(t) = humantime::parse_rfc3339_weak(&r.started) {
                let end = t + std::time::Duration::from_secs_f64(r.timings.total_s.max(0.0));
                span = Some(match span {
                    Some((a, b)) => (t.min(a), end.max(b)),
                    None => (t, end),
                });
            }
            continue;
        }
        let last = mine.last();
        let index = plan.as_ref().map(|_| cell.index);
        // The Slurm state: the latest attempt's own job, else the cell's array task in the
        // latest submission.
        let slurm = last
            .and_then(|a| a.slurm.as_ref())
            .and_then(|j| states.get(&j.key()).cloned())
            .or_else(|| {
                let i = index?;
                study_jobs
                    .iter()
                    .rev()
                    .find_map(|j| states.get(&format!("{j}_{i}")).cloned())
            });
        let log = index.and_then(|i| crate::slurm::cell_logs(&logs_dir, i).into_iter().next());
        problems.push(CellProblem {
            cell: cell.name(),
            index,
            state: last.map_or("missing", |a| a.state.name()).to_string(),
            run_id: last.map(|a| a.id.clone()),
            error: last.and_then(|a| a.error.clone()),
            slurm,
            log_tail: log
                .as_deref()
                .map(|l| crate::slurm::tail(l, 8))
                .unwrap_or_default(),
            log,
        });
    }
    link_cells(runs, &rows, &attempts);
    let seeds = grid.iter().map(|c| c.seed as usize + 1).max().unwrap_or(0);
    let report = StudyReport {
        preset: preset.name().into(),
        summary: summarise(&rows, &arms),
        tasks,
        seeds,
        // From the first run's start to the last run's end.
        wall_s: span
            .and_then(|(a, b)| b.duration_since(a).ok())
            .map_or(0.0, |d| d.as_secs_f64()),
        rows,
    };
    write_outputs(out, &report)?;
    Ok((report, problems))
}

/// Links the runs of a study whose cells ran apart (a Slurm array: no cell knew the others'
/// ids) as `run_study` links them as it goes, by annotating the runs that lack the links.
fn link_cells(runs: &Path, rows: &[StudyRow], attempts: &[Attempt]) {
    let Ok(store) = RunStore::open(runs) else {
        return;
    };
    let mut groups: std::collections::BTreeMap<
        (&str, u64),
        std::collections::BTreeMap<String, String>,
    > = Default::default();
    for r in rows {
        groups
            .entry((r.task.as_str(), r.seed))
            .or_default()
            .insert(r.arm.clone(), r.run_id.clone());
    }
    for r in rows {
        let ids = &groups[&(r.task.as_str(), r.seed)];
        let want = link(&r.arm, ids);
        if want.is_empty() {
            continue;
        }
        // The record as `attempts` read it (annotations applied), not read again.
        let Some(record) = attempts
            .iter()
            .find(|a| a.id == r.run_id)
            .and_then(|a| a.record.as_ref())
        else {
            continue;
        };
        let has_parent = record.spec.parent.is_some();
        let missing: Vec<(String, String)> = want
            .controls
            .iter()
            .filter(|(k, _)| !record.spec.controls.reused.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if (has_parent || want.parent.is_none()) && missing.is_empty() {
            continue;
        }
        let _ = store.annotate(&r.run_id, |a| {
            if !has_parent && a.parent.is_none() {
                a.parent = want.parent.clone();
            }
            a.controls.extend(missing);
        });
    }
}

pub fn summarise(rows: &[StudyRow], arms: &[Arm]) -> Vec<ArmSummary> {
    arms.iter()
        .map(|arm| {
            let mine: Vec<&StudyRow> = rows.iter().filter(|r| r.arm == arm.label).collect();
            let em: Vec<f64> = mine.iter().map(|r| r.exact_match).collect();
            let loss: Vec<f64> = mine.iter().map(|r| r.loss).collect();
            let part = |rel: bool| -> Vec<f64> {
                mine.iter()
                    .filter(|r| r.has_relative == rel)
                    .map(|r| r.exact_match)
                    .collect()
            };
            ArmSummary {
                arm: arm.label.clone(),
                exact_match: bootstrap_mean(&em, 2000, 11),
                loss: bootstrap_mean(&loss, 2000, 12),
                exact_match_related: bootstrap_mean(&part(true), 2000, 13),
                exact_match_unrelated: bootstrap_mean(&part(false), 2000, 14),
            }
        })
        .collect()
}

/// The Markdown table of an arm summary.
pub fn markdown(report: &StudyReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Preset `{}` · {} tasks × {} seed(s) · wall time {:.0} s\n\n",
        report.preset,
        report.tasks.len(),
        report.seeds,
        report.wall_s
    ));
    s.push_str("| arm | exact match (95% CI) | tasks with a relative | tasks without | test loss (95% CI) |\n");
    s.push_str("| --- | --- | --- | --- | --- |\n");
    for a in &report.summary {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            a.arm,
            a.exact_match.display(3),
            a.exact_match_related.display(3),
            a.exact_match_unrelated.display(3),
            a.loss.display(3)
        ));
    }
    s.push_str("\nPer task (exact match, mean over seeds):\n\n");
    let arms: Vec<&str> = report.summary.iter().map(|a| a.arm.as_str()).collect();
    s.push_str(&format!("| task | {} |\n", arms.join(" | ")));
    s.push_str(&format!("| --- |{}\n", " --- |".repeat(arms.len())));
    for task in &report.tasks {
        let cells: Vec<String> = arms
            .iter()
            .map(|arm| {
                let v: Vec<f64> = report
                    .rows
                    .iter()
                    .filter(|r| &r.task == task && r.arm == *arm)
                    .map(|r| r.exact_match)
                    .collect();
                if v.is_empty() {
                    "–".to_string()
                } else {
                    format!("{:.2}", v.iter().sum::<f64>() / v.len() as f64)
                }
            })
            .collect();
        let rel = if crate::lab::tasks::relative_of(task).is_some() {
            " (relative in pool)"
        } else {
            ""
        };
        s.push_str(&format!("| {task}{rel} | {} |\n", cells.join(" | ")));
    }
    s
}

fn csv(report: &StudyReport) -> String {
    let mut s = String::from("task,has_relative,seed,arm,exact_match,loss,seconds,run_id\n");
    for r in &report.rows {
        s.push_str(&format!(
            "{},{},{},\"{}\",{:.6},{:.6},{:.3},{}\n",
            r.task, r.has_relative, r.seed, r.arm, r.exact_match, r.loss, r.seconds, r.run_id
        ));
    }
    s
}

pub fn write_outputs(out: &Path, report: &StudyReport) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    write_atomic(&out.join("study.md"), markdown(report).as_bytes())?;
    write_atomic(&out.join("study.csv"), csv(report).as_bytes())?;
    let json = serde_json::to_string_pretty(report).expect("a report always serialises");
    write_atomic(&out.join("study.json"), json.as_bytes())
}
