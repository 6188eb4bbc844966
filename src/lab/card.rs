//! The texts of the lab: each adapter's model card and the lab card (LAB.md), written from
//! measurements taken on the built assets.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::recipe::AdapterPlan;
use super::tasks::{self, Task};
use crate::tune::LoraTrainSpec;

/// One adapter's measured accuracy on its own task, against the base.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdapterScore {
    pub name: String,
    pub task: String,
    pub family: String,
    pub rank: usize,
    pub alpha: f64,
    pub modules: Vec<String>,
    pub steps: usize,
    pub accuracy: f64,
    pub base_accuracy: f64,
    pub loss: f64,
    pub base_loss: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldOutScore {
    pub task: String,
    pub family: String,
    pub relative_in_pool: Option<String>,
    pub base_test_accuracy: f64,
    pub oracle_test_accuracy: Option<f64>,
}

/// Everything the lab card reports; written as `lab.json` beside the assets.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LabCard {
    pub seed: u64,
    pub quick: bool,
    pub base_tasks: Vec<(String, f64)>,
    pub held_out: Vec<HeldOutScore>,
    pub pool: Vec<AdapterScore>,
    pub oracle: Vec<AdapterScore>,
    pub dropped: Vec<(String, String)>,
}

pub fn model_card(
    task: &Task,
    plan: &AdapterPlan,
    spec: &LoraTrainSpec,
    steps: usize,
    accuracy: f64,
    base_accuracy: f64,
    stamp: &str,
) -> String {
    let modules: Vec<&str> = spec.modules.iter().map(|m| m.peft_name()).collect();
    format!(
        "# {name}\n\nA LoRA of the loracycle lab, trained by `loracycle lab build` on one task.\n\n\
- task: {task}\n- family: {family}\n- instruction: `{instr}`\n- base model: loracycle/lab-base\n\
- rank: {r}, alpha: {alpha}, modules: {modules}\n- learning rate: {lr}, batch: {batch}, \
examples: {n}, max steps: {max}\n- steps: {steps}\n- seed: {seed}\n\
- own-task exact match: {accuracy:.2} (base model: {base_accuracy:.2})\n- {stamp}\n",
        name = plan.name,
        task = task.name,
        family = task.family,
        instr = task.instruction,
        r = spec.rank,
        alpha = spec.alpha,
        modules = modules.join(", "),
        lr = spec.lr,
        batch = spec.batch_size,
        n = plan.train_examples,
        max = spec.steps,
        seed = spec.seed,
    )
}

/// LAB.md: the task list by family, sizes, and the measured numbers.
pub fn render(card: &LabCard) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# The loracycle lab{}\n",
        if card.quick { " (quick build)" } else { "" }
    );
    let _ = writeln!(
        s,
        "Built by `loracycle lab build --seed {}`. Every number below was measured by that command \
on the assets it wrote (teacher-forced exact match on 200 fresh examples per task, or on the \
100-example test split for held-out tasks); `lab.json` holds them in machine-readable form.\n",
        card.seed
    );
    let _ = writeln!(s, "## Tasks by family\n");
    let suite = tasks::suite();
    let held = tasks::held_out();
    let mut families: Vec<&str> = suite.iter().map(|t| t.family.as_str()).collect();
    families.dedup();
    for f in families {
        let names: Vec<String> = suite
            .iter()
            .filter(|t| t.family == f)
            .map(|t| {
                if held.contains(&t.name.as_str()) {
                    format!("{} (held out)", t.name)
                } else {
                    t.name.clone()
                }
            })
            .collect();
        let _ = writeln!(s, "- **{f}**: {}", names.join(", "));
    }
    let _ = writeln!(s, "\n## Base model\n");
    let _ = writeln!(s, "Pretrained on {} tasks:\n", card.base_tasks.len());
    let _ = writeln!(s, "| task | exact match |\n| --- | --- |");
    for (t, a) in &card.base_tasks {
        let _ = writeln!(s, "| {t} | {a:.2} |");
    }
    let _ = writeln!(s, "\n## Held-out target tasks\n");
    let _ = writeln!(
        s,
        "| task | family | relative in the pool | base (test) | oracle LoRA (test) |\n| --- | --- | --- | --- | --- |"
    );
    for h in &card.held_out {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} | {} |",
            h.task,
            h.family,
            h.relative_in_pool.as_deref().unwrap_or("none"),
            h.base_test_accuracy,
            h.oracle_test_accuracy
                .map(|a| format!("{a:.2}"))
                .unwrap_or_else(|| "–".into())
        );
    }
    let _ = writeln!(s, "\n## Pool ({} adapters)\n", card.pool.len());
    let _ = writeln!(
        s,
        "| adapter | family | rank | alpha | modules | steps | own task | base |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for p in &card.pool {
        let modules = if p.modules.len() == 7 {
            "all 7".to_string()
        } else {
            p.modules.join(",")
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.2} | {:.2} |",
            p.name, p.family, p.rank, p.alpha, modules, p.steps, p.accuracy, p.base_accuracy
        );
    }
    if !card.dropped.is_empty() {
        let _ = writeln!(
            s,
            "\n## Dropped (did not clearly beat the base on their own task)\n"
        );
        for (n, why) in &card.dropped {
            let _ = writeln!(s, "- {n}: {why}");
        }
    }
    s
}
