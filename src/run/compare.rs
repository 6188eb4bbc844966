//! Runs judged against their own controls: each run of interest leads a group holding the
//! controls queued with it (`controls.queue`, found by their records' `parent`) or reused for it
//! (`controls.reused`), and gets Δ exact match and Δ loss against its random-init twin and its
//! base model with *paired* bootstrap 95% intervals over the same test examples (what both runs
//! solve, or both miss, does not widen the interval).

use std::collections::BTreeMap;

use serde::Serialize;

use super::record::RunRecord;
use super::spec::{ControlKind, MethodSpec};
use crate::eval::paired_delta;

/// Bootstrap resamples of the paired intervals.
pub const RESAMPLES: usize = 2000;
/// Their seed (the intervals are the same every time the table is built).
pub const SEED: u64 = 0x5eed;

/// One run's line of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub id: String,
    pub label: String,
    pub task: String,
    /// For a control: which one, and the run of its group.
    pub role: Option<ControlKind>,
    pub group: String,
    pub exact_match: f64,
    pub ci: [f64; 2],
    pub loss: f64,
    pub loss_ci: [f64; 2],
    /// The run's random-init twin, base and new-LoRA control (run ids).
    pub twin: Option<String>,
    pub base: Option<String>,
    pub new_lora: Option<String>,
    pub delta_twin: Option<f64>,
    pub delta_twin_ci: Option<[f64; 2]>,
    pub delta_base: Option<f64>,
    pub delta_base_ci: Option<[f64; 2]>,
    /// Δ answer loss (lower is better) against the twin and the base.
    pub delta_loss_twin: Option<f64>,
    pub delta_loss_twin_ci: Option<[f64; 2]>,
    pub delta_loss_base: Option<f64>,
    pub delta_loss_base_ci: Option<[f64; 2]>,
    /// Test examples compared.
    pub n: usize,
}

/// The controls of `lead` among `all`: its children by role, then what it reused.
pub fn controls_of<'a>(
    lead: &RunRecord,
    all: &[&'a RunRecord],
) -> BTreeMap<ControlKind, &'a RunRecord> {
    let mut out = BTreeMap::new();
    for &r in all {
        if let Some(p) = &r.spec.parent
            && p.id == lead.id
        {
            out.entry(p.role).or_insert(r);
        }
    }
    for k in ControlKind::ALL {
        if let Some(id) = lead.spec.controls.reused.get(k.name())
            && let Some(&r) = all.iter().find(|r| &r.id == id)
        {
            out.entry(k).or_insert(r);
        }
    }
    out
}

/// Whether two records answer the same test examples (same task, same prompts in order).
pub fn same_examples(a: &RunRecord, b: &RunRecord) -> bool {
    a.task.name == b.task.name
        && !a.examples.is_empty()
        && a.examples.len() == b.examples.len()
        && a.examples
            .iter()
            .zip(&b.examples)
            .all(|(x, y)| x.prompt == y.prompt && x.answer == y.answer)
}

/// Paired Δ (a − b) of exact match and of loss, when both answer the same examples.
fn deltas(a: &RunRecord, b: &RunRecord) -> Option<([f64; 3], [f64; 3])> {
    if !same_examples(a, b) {
        return None;
    }
    let em = |r: &RunRecord| -> Vec<f64> {
        r.examples
            .iter()
            .map(|e| if e.correct { 1.0 } else { 0.0 })
            .collect()
    };
    let loss = |r: &RunRecord| -> Vec<f64> { r.examples.iter().map(|e| e.loss).collect() };
    let d = paired_delta(&em(a), &em(b), RESAMPLES, SEED)?;
    let l = paired_delta(&loss(a), &loss(b), RESAMPLES, SEED)?;
    Some(([d.mean, d.lo, d.hi], [l.mean, l.lo, l.hi]))
}

fn row(r: &RunRecord, role: Option<ControlKind>, group: &str) -> Row {
    let em = &r.metrics.exact_match;
    let loss = &r.metrics.loss;
    Row {
        id: r.id.clone(),
        label: r.label.clone(),
        task: r.task.name.clone(),
        role,
        group: group.to_string(),
        exact_match: em.mean,
        ci: [em.lo, em.hi],
        loss: loss.mean,
        loss_ci: [loss.lo, loss.hi],
        twin: None,
        base: None,
        new_lora: None,
        delta_twin: None,
        delta_twin_ci: None,
        delta_base: None,
        delta_base_ci: None,
        delta_loss_twin: None,
        delta_loss_twin_ci: None,
        delta_loss_base: None,
        delta_loss_base_ci: None,
        n: r.examples.len(),
    }
}

fn set_base(row: &mut Row, r: &RunRecord, base: &RunRecord) {
    row.base = Some(base.id.clone());
    if let Some((d, l)) = deltas(r, base) {
        row.delta_base = Some(d[0]);
        row.delta_base_ci = Some([d[1], d[2]]);
        row.delta_loss_base = Some(l[0]);
        row.delta_loss_base_ci = Some([l[1], l[2]]);
    }
}

/// The comparison of the runs `chosen` (ids; indexes into `all`) with their controls, which are
/// looked for among `all`. Each run that is not itself a control of another chosen run leads a
/// group; its controls follow it (random-init twin, new LoRA, base).
pub fn rows(all: &[&RunRecord], chosen: &[usize]) -> Vec<Row> {
    let chosen_ids: Vec<&str> = chosen.iter().map(|&i| all[i].id.as_str()).collect();
    let mut out = Vec::new();
    let mut placed = std::collections::HashSet::new();
    for &i in chosen {
        let lead = all[i];
        // A control whose run is compared too is shown in that run's group.
        let parent_shown = lead
            .spec
            .parent
            .as_ref()
            .is_some_and(|p| chosen_ids.contains(&p.id.as_str()));
        let reused_by_shown = chosen.iter().any(|&j| {
            all[j]
                .spec
                .controls
                .reused
                .values()
                .any(|id| *id == lead.id)
                && j != i
        });
        if parent_shown || reused_by_shown || placed.contains(&lead.id) {
            continue;
        }
        let controls = controls_of(lead, all);
        let mut head = row(lead, lead.spec.parent.as_ref().map(|p| p.role), &lead.id);
        let base = controls.get(&ControlKind::Base).copied();
        if let Some(t) = controls.get(&ControlKind::RandomInit) {
            head.twin = Some(t.id.clone());
            if let Some((d, l)) = deltas(lead, t) {
                head.delta_twin = Some(d[0]);
                head.delta_twin_ci = Some([d[1], d[2]]);
                head.delta_loss_twin = Some(l[0]);
                head.delta_loss_twin_ci = Some([l[1], l[2]]);
            }
        }
        if let Some(b) = base {
            set_base(&mut head, lead, b);
        }
        head.new_lora = controls.get(&ControlKind::NewLora).map(|r| r.id.clone());
        placed.insert(lead.id.clone());
        out.push(head);
        for kind in [
            ControlKind::RandomInit,
            ControlKind::NewLora,
            ControlKind::Base,
        ] {
            let Some(c) = controls.get(&kind) else {
                continue;
            };
            let mut r = row(c, Some(kind), &lead.id);
            if kind != ControlKind::Base
                && let Some(b) = base
                && !matches!(c.spec.method, MethodSpec::Base)
            {
                set_base(&mut r, c, b);
            }
            placed.insert(c.id.clone());
            out.push(r);
        }
    }
    // Runs that share a label are told apart by what differs between them.
    let recs: Vec<&RunRecord> = out
        .iter()
        .filter_map(|row| all.iter().copied().find(|r| r.id == row.id))
        .collect();
    for (row, label) in out.iter_mut().zip(distinct_labels(&recs)) {
        row.label = label;
    }
    out
}

/// A spec as dotted keys and their values (`selection.k` → `30`), for telling runs apart.
/// The settings in which `runs` differ (a setting one run lacks differs too), in key order: the
/// config columns of the Runs and Compare screens and of `runs list`, as an hparams table has.
/// Settings whose value differs among the runs that have them come first; those that differ
/// only in being there (a base run has no `method.lr`) after.
pub fn differing_settings(runs: &[&BTreeMap<String, String>]) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = runs.iter().flat_map(|s| s.keys()).collect();
    let mut out: Vec<(bool, String)> = keys
        .into_iter()
        .filter(|k| {
            let first = runs.first().and_then(|s| s.get(*k));
            runs.iter().any(|s| s.get(*k) != first)
        })
        .map(|k| {
            let mut values = runs.iter().filter_map(|s| s.get(k));
            let first = values.next();
            let varies = values.any(|v| Some(v) != first);
            (!varies, k.clone())
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, k)| k).collect()
}

/// A setting's column heading: the last part of its key (`selection.k` → `k`), or the last two
/// where the last alone names several of `keys` (`method.lr` and `method.new_lora.lr`).
pub fn setting_heading(key: &str, keys: &[String]) -> String {
    let last = key.rsplit('.').next().unwrap_or(key);
    let tail = format!(".{last}");
    let shared = keys
        .iter()
        .filter(|k| k.as_str() == last || k.ends_with(&tail))
        .count();
    if shared < 2 {
        return last.to_string();
    }
    let parts: Vec<&str> = key.rsplitn(3, '.').collect();
    match parts.as_slice() {
        [last, second, ..] => format!("{second}.{last}"),
        _ => key.to_string(),
    }
}

/// Labels that tell runs apart: each run's own label, and where several runs share one, the
/// settings in which they differ (`caesar-5 / gradient · selection.k=12 · selection.by=loss`).
/// For display only: runs are known by their ids.
pub fn distinct_labels(records: &[&RunRecord]) -> Vec<String> {
    let flats: Vec<BTreeMap<String, String>> = records.iter().map(|r| r.spec.settings()).collect();
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let same: Vec<usize> = (0..records.len())
                .filter(|&j| records[j].label == r.label)
                .collect();
            if same.len() < 2 {
                return r.label.clone();
            }
            let keys: std::collections::BTreeSet<&String> =
                same.iter().flat_map(|&j| flats[j].keys()).collect();
            let differ: Vec<String> = keys
                .into_iter()
                .filter(|k| {
                    let v = flats[i].get(*k);
                    same.iter().any(|&j| flats[j].get(*k) != v)
                })
                .map(|k| format!("{k}={}", flats[i].get(k).map_or("–", |v| v.as_str())))
                .collect();
            if differ.is_empty() {
                r.label.clone()
            } else {
                format!("{} · {}", r.label, differ.join(" · "))
            }
        })
        .collect()
}

fn ci(c: Option<[f64; 2]>, d: usize) -> String {
    c.map_or("–".into(), |[lo, hi]| format!("[{lo:+.d$}, {hi:+.d$}]"))
}

fn signed(v: Option<f64>, d: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:+.d$}"))
}

/// The table as Markdown: one line per run, each control under its run.
pub fn markdown(rows: &[Row]) -> String {
    let mut md = String::from(
        "Test exact match and answer loss with bootstrap 95% intervals; Δ against the run's own \
         random-init twin and base model, paired over the same test examples.\n\n\
         | run | exact match | 95% CI | loss | Δ twin | 95% CI | Δ base | 95% CI | Δ loss twin | Δ loss base | n | id |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let name = match r.role {
            Some(k) if r.group != r.id => format!("↳ {} ({})", k.name(), r.label),
            _ => r.label.clone(),
        };
        md.push_str(&format!(
            "| {name} | {:.3} | [{:.3}, {:.3}] | {:.4} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.exact_match,
            r.ci[0],
            r.ci[1],
            r.loss,
            signed(r.delta_twin, 3),
            ci(r.delta_twin_ci, 3),
            signed(r.delta_base, 3),
            ci(r.delta_base_ci, 3),
            signed(r.delta_loss_twin, 4),
            signed(r.delta_loss_base, 4),
            r.n,
            r.id
        ));
    }
    md
}

/// The table as CSV, one column per field of `Row`.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "id,label,task,role,group,exact_match,ci_low,ci_high,loss,loss_ci_low,loss_ci_high,twin,base,new_lora,\
         delta_twin,delta_twin_ci_low,delta_twin_ci_high,delta_base,delta_base_ci_low,delta_base_ci_high,\
         delta_loss_twin,delta_loss_twin_ci_low,delta_loss_twin_ci_high,delta_loss_base,delta_loss_base_ci_low,\
         delta_loss_base_ci_high,n\n",
    );
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let o = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let lo = |c: Option<[f64; 2]>| c.map_or(String::new(), |c| c[0].to_string());
    let hi = |c: Option<[f64; 2]>| c.map_or(String::new(), |c| c[1].to_string());
    for r in rows {
        let fields = [
            r.id.clone(),
            q(&r.label),
            q(&r.task),
            r.role.map_or(String::new(), |k| k.name().to_string()),
            r.group.clone(),
            r.exact_match.to_string(),
            r.ci[0].to_string(),
            r.ci[1].to_string(),
            r.loss.to_string(),
            r.loss_ci[0].to_string(),
            r.loss_ci[1].to_string(),
            r.twin.clone().unwrap_or_default(),
            r.base.clone().unwrap_or_default(),
            r.new_lora.clone().unwrap_or_default(),
            o(r.delta_twin),
            lo(r.delta_twin_ci),
            hi(r.delta_twin_ci),
            o(r.delta_base),
            lo(r.delta_base_ci),
            hi(r.delta_base_ci),
            o(r.delta_loss_twin),
            lo(r.delta_loss_twin_ci),
            hi(r.delta_loss_twin_ci),
            o(r.delta_loss_base),
            lo(r.delta_loss_base_ci),
            hi(r.delta_loss_base_ci),
            r.n.to_string(),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// The table for a terminal: run, exact match with its interval, loss, Δ twin and Δ base with
/// theirs.
pub fn text(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<48} {:>6} {:<16} {:>7} {:>7} {:<18} {:>7} {:<18} id\n",
        "run", "exact", "95% CI", "loss", "Δ twin", "95% CI", "Δ base", "95% CI"
    );
    for r in rows {
        let name = match r.role {
            Some(k) if r.group != r.id => format!("  ↳ {}", k.name()),
            _ => r.label.clone(),
        };
        let name: String = name.chars().take(48).collect();
        s.push_str(&format!(
            "{name:<48} {:>6.3} {:<16} {:>7.4} {:>7} {:<18} {:>7} {:<18} {}\n",
            r.exact_match,
            format!("[{:.3}, {:.3}]", r.ci[0], r.ci[1]),
            r.loss,
            signed(r.delta_twin, 3),
            ci(r.delta_twin_ci, 3),
            signed(r.delta_base, 3),
            ci(r.delta_base_ci, 3),
            r.id
        ));
    }
    s
}
