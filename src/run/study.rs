//! `loracycle study`: the paper's comparison on the lab in one command.
//!
//! For every task and seed: the base model, a new LoRA, and each merging method (simple average,
//! TIES, LoraHub, the gradient recipe) on the real pool and on the random-init pool, with and
//! without the task's own (oracle) adapter. Results are written as per-run rows (CSV, JSON) and a
//! Markdown table of means with bootstrap 95% intervals over (task, seed).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::execute::{RunEvent, Workbench, execute};
use super::record::{RunRecord, runs_dir, save};
use super::spec::{ControlSpec, MethodSpec, NewLoraSpec, RunSpec, TaskSpec};
use crate::adapter::random::RandomInit;
use crate::adapter::write::write_atomic;
use crate::eval::{Estimate, bootstrap_mean};
use crate::merge::{MergeMethod, SignElection};
use crate::select::{ScoreMetric, Selection};
use crate::tune::coef::GradientSpec;
use crate::tune::lorahub::LorahubSpec;

/// One arm of the comparison.
#[derive(Debug, Clone)]
pub struct Arm {
    pub label: String,
    pub method: MethodSpec,
    pub selection: Selection,
    pub controls: ControlSpec,
}

/// The arms of the `lab-paper` preset.
pub fn lab_paper_arms() -> Vec<Arm> {
    let top30 = Selection::TopK {
        k: 30,
        by: ScoreMetric::ExactMatch,
    };
    let mut arms = vec![
        Arm {
            label: "base".into(),
            method: MethodSpec::Base,
            selection: top30.clone(),
            controls: ControlSpec::default(),
        },
        Arm {
            label: "new LoRA".into(),
            // The lab pool's own LoRA recipe scale (rank 8, lr 3e-3) with DESIGN's other settings.
            method: MethodSpec::NewLora(NewLoraSpec {
                rank: 8,
                alpha: 16.0,
                lr: 3e-3,
                ..NewLoraSpec::default()
            }),
            selection: top30.clone(),
            controls: ControlSpec::default(),
        },
    ];
    let methods: [(&str, MethodSpec, Selection); 4] = [
        (
            "average",
            MethodSpec::Merge(MergeMethod::Average),
            top30.clone(),
        ),
        (
            "TIES",
            MethodSpec::Merge(MergeMethod::Ties {
                density: 0.2,
                sign: SignElection::Total,
                lambda: 1.0,
            }),
            top30.clone(),
        ),
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
            top30,
        ),
    ];
    for (name, method, selection) in methods {
        for random in [false, true] {
            for oracle in [false, true] {
                let mut label = name.to_string();
                if random {
                    label.push_str(" · random-init");
                }
                if oracle {
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
                        oracle,
                    },
                });
            }
        }
    }
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

pub struct StudyOptions<'a> {
    pub tasks: Vec<String>,
    pub seeds: usize,
    pub out: &'a Path,
    pub runs: Option<&'a Path>,
    /// Tuning steps / search budget scale-down for quick checks (1.0 = the preset as is).
    pub scale: f64,
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
        m => m.clone(),
    }
}

/// Sees (run index, total runs, label) before each run, then that run's events.
pub type StudyProgress<'a> = dyn FnMut(usize, usize, &str, Option<&RunEvent>) + 'a;

/// Runs the study; `on` sees (run index, total runs, label) before each run and every run event.
pub fn run_study(
    opts: &StudyOptions<'_>,
    on: &mut StudyProgress<'_>,
) -> Result<StudyReport, super::RunError> {
    let t0 = std::time::Instant::now();
    let arms = lab_paper_arms();
    let total = opts.tasks.len() * opts.seeds * arms.len();
    let mut rows = Vec::with_capacity(total);
    let template = RunSpec {
        name: String::new(),
        seed: 0,
        device: "cpu".into(),
        dtype: "f32".into(),
        model: Default::default(),
        pool: Default::default(),
        task: TaskSpec {
            lab: Some(opts.tasks.first().cloned().unwrap_or_default()),
            ..Default::default()
        },
        selection: Selection::All,
        method: MethodSpec::Base,
        controls: ControlSpec::default(),
        eval: Default::default(),
    };
    let mut bench = Workbench::open(&template)?;
    let runs = runs_dir(opts.runs);
    let mut index = 0;
    for task in &opts.tasks {
        for seed in 0..opts.seeds as u64 {
            for arm in &arms {
                index += 1;
                let spec = RunSpec {
                    name: format!("{task} / {} / seed {seed}", arm.label),
                    seed,
                    task: TaskSpec {
                        lab: Some(task.clone()),
                        ..Default::default()
                    },
                    selection: arm.selection.clone(),
                    method: scaled(&arm.method, opts.scale),
                    controls: arm.controls.clone(),
                    ..template.clone()
                };
                on(index, total, &spec.name, None);
                let record: RunRecord = execute(
                    &mut bench,
                    &spec,
                    &mut |e| on(index, total, "", Some(&e)),
                    None,
                )?;
                save(&runs, &record).map_err(|e| {
                    super::RunError::Task(format!(
                        "cannot save run record in {}: {e}",
                        runs.display()
                    ))
                })?;
                rows.push(StudyRow {
                    task: task.clone(),
                    has_relative: crate::lab::tasks::relative_of(task).is_some(),
                    seed,
                    arm: arm.label.clone(),
                    exact_match: record.metrics.exact_match.mean,
                    loss: record.metrics.loss.mean,
                    seconds: record.timings.total_s,
                    run_id: record.id.clone(),
                });
            }
        }
    }
    let summary = summarise(&rows, &arms);
    let report = StudyReport {
        preset: "lab-paper".into(),
        tasks: opts.tasks.clone(),
        seeds: opts.seeds,
        wall_s: t0.elapsed().as_secs_f64(),
        summary,
        rows,
    };
    write_outputs(opts.out, &report).map_err(|e| {
        super::RunError::Task(format!(
            "cannot write the study into {}: {e}",
            opts.out.display()
        ))
    })?;
    Ok(report)
}

/// Rebuilds a study's table from the run records in `runs` (the study names every run
/// "TASK / ARM / seed N"); cells with no finished record are listed as missing.
pub fn collect(
    runs: &Path,
    out: &Path,
    wall_s: f64,
) -> std::io::Result<(StudyReport, Vec<String>)> {
    let arms = lab_paper_arms();
    let mut rows = Vec::new();
    let mut tasks: Vec<String> = Vec::new();
    let mut seeds = 0;
    for entry in std::fs::read_dir(runs)?.filter_map(|e| e.ok()) {
        let Ok(text) = std::fs::read_to_string(entry.path().join("record.json")) else {
            continue;
        };
        let Ok(r) = serde_json::from_str::<RunRecord>(&text) else {
            continue;
        };
        let parts: Vec<&str> = r.spec.name.split(" / ").collect();
        let [task, arm, seed] = parts[..] else {
            continue;
        };
        let Some(seed) = seed
            .strip_prefix("seed ")
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if !arms.iter().any(|a| a.label == arm) {
            continue;
        }
        if !tasks.iter().any(|t| t == task) {
            tasks.push(task.to_string());
        }
        seeds = seeds.max(seed as usize + 1);
        rows.push(StudyRow {
            task: task.to_string(),
            has_relative: crate::lab::tasks::relative_of(task).is_some(),
            seed,
            arm: arm.to_string(),
            exact_match: r.metrics.exact_match.mean,
            loss: r.metrics.loss.mean,
            seconds: r.timings.total_s,
            run_id: r.id.clone(),
        });
    }
    let held: Vec<&str> = crate::lab::tasks::held_out();
    tasks.sort_by_key(|t| held.iter().position(|h| h == t).unwrap_or(usize::MAX));
    let mut missing = Vec::new();
    for t in &tasks {
        for seed in 0..seeds as u64 {
            for a in &arms {
                if !rows
                    .iter()
                    .any(|r| &r.task == t && r.seed == seed && r.arm == a.label)
                {
                    missing.push(format!("{t} / {} / seed {seed}", a.label));
                }
            }
        }
    }
    let report = StudyReport {
        preset: "lab-paper".into(),
        summary: summarise(&rows, &arms),
        tasks,
        seeds,
        wall_s,
        rows,
    };
    write_outputs(out, &report)?;
    Ok((report, missing))
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
                format!("{:.2}", v.iter().sum::<f64>() / v.len().max(1) as f64)
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
