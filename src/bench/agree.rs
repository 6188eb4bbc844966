//! Whether a device computes what the CPU computes: per-example answer losses of the committed
//! fixtures (the tiny Llama with PEFT's reference losses from `tests/fixtures/golden.json`, base
//! and three adapters at fixed weights) and of the lab (its base with three pool adapters on
//! caesar-5), in f32 on `--device` against f32 on the CPU (tolerance 1e-4 relative) and against
//! PEFT's losses, and in bf16 on `--device` against f32 on the CPU (tolerance 3e-2 relative: bf16
//! keeps 8 bits of mantissa). Run from the repository root (it reads `tests/fixtures`).
//!
//! loracycle bench agree [--device cuda]
//!
//! Each comparison prints one line with PASS or FAIL and one JSON line; any FAIL makes the
//! command fail.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::support::BenchArgs;
use crate::adapter::{Adapter, branches_for};
use crate::eval::{EvalOptions, Example, Metric, evaluate, read_jsonl};
use crate::model::device::device_label;
use crate::model::weights::{model_identity, read_config};
use crate::model::{Llama, Template, TextCodec};

pub const F32_TOLERANCE: f64 = 1e-4;
pub const BF16_TOLERANCE: f64 = 3e-2;

/// One model, its data and its adapters at their weights.
struct Case {
    name: &'static str,
    model: PathBuf,
    data: PathBuf,
    template: Template,
    adapters: Vec<(String, f64)>,
    /// PEFT's per-example losses, where the fixtures have them.
    reference: Option<Vec<f64>>,
}

fn losses(
    case: &Case,
    examples: &[Example],
    dtype: DType,
    dev: &Device,
) -> Result<Vec<f64>, String> {
    let dir = case.model.as_path();
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", case.name);
    let cfg = read_config(dir).map_err(|e| err(&e))?;
    let identity = model_identity(dir, &cfg);
    let adapters: Vec<Adapter> = case
        .adapters
        .iter()
        .map(|(p, _)| Adapter::load(Path::new(p), Some((&cfg, identity.as_deref()))))
        .collect::<Result<_, _>>()
        .map_err(|e| err(&e))?;
    let codec = TextCodec::load(dir, case.template, &cfg).map_err(|e| err(&e))?;
    let mut model = Llama::load(dir, dtype, dev).map_err(|e| err(&e))?;
    if !adapters.is_empty() {
        let sources: Vec<(&Adapter, f64)> = adapters
            .iter()
            .zip(case.adapters.iter().map(|(_, w)| *w))
            .collect();
        let br = branches_for(&sources, model.config(), dtype, dev).map_err(|e| err(&e))?;
        model = model.fold(&br).map_err(|e| err(&e))?;
    }
    let opts = EvalOptions {
        metric: Metric::Loss,
        batch_size: 8,
        // Losses only: the scoring of generations does not enter.
        scoring: crate::eval::Scoring {
            max_new_tokens: 1,
            extract: crate::eval::answer::Extract::Whole,
            normalize: crate::eval::answer::Normalize::Exact,
            max_prompt_tokens: None,
        },
    };
    let report =
        evaluate(&model, &codec, examples, None, opts, &mut |_, _| {}).map_err(|e| err(&e))?;
    report
        .examples
        .iter()
        .map(|e| {
            e.loss
                .ok_or_else(|| format!("{}: an example has no loss", case.name))
        })
        .collect()
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) / y.abs().max(1e-6)).abs())
        .fold(0.0, f64::max)
}

fn cases() -> Result<Vec<Case>, String> {
    let golden: serde_json::Value = std::fs::read_to_string("tests/fixtures/golden.json")
        .map_err(|e| format!("tests/fixtures/golden.json: {e} (run from the repository root)"))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))?;
    let reference = |template: &str, case: &str| -> Option<Vec<f64>> {
        golden["losses"][template][case]["losses"]
            .as_array()
            .map(|v| v.iter().filter_map(|x| x.as_f64()).collect())
    };
    let weights = &golden["adapter_weights"];
    let weighted: Vec<(String, f64)> = golden["adapter_order"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|n| n.as_str())
                .map(|n| {
                    (
                        format!("tests/fixtures/adapters/{n}"),
                        weights[n].as_f64().unwrap_or(1.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let lab = crate::lab::dir().map_err(|e| e.to_string())?;
    let lab_pool = |n: &str| lab.join("pool").join(n).display().to_string();
    Ok(vec![
        Case {
            name: "fixture tiny llama, base (raw)",
            model: "tests/fixtures/tiny".into(),
            data: "tests/fixtures/data.jsonl".into(),
            template: Template::Raw,
            adapters: Vec::new(),
            reference: reference("raw", "base"),
        },
        Case {
            name: "fixture tiny llama, 3 adapters weighted (raw)",
            model: "tests/fixtures/tiny".into(),
            data: "tests/fixtures/data.jsonl".into(),
            template: Template::Raw,
            adapters: weighted,
            reference: reference("raw", "weighted"),
        },
        Case {
            name: "lab base + 3 pool adapters, caesar-5",
            model: lab.join("base"),
            data: lab.join("tasks/caesar-5/validation.jsonl"),
            template: Template::Lab,
            adapters: ["caesar-4", "next-5", "rotate-3"]
                .iter()
                .map(|n| (lab_pool(n), 1.0))
                .collect(),
            reference: None,
        },
    ])
}

/// Runs the comparisons with the flags on the command line; Err when any fails.
pub fn check(a: &BenchArgs) -> Result<(), String> {
    println!("{}", crate::process::machine_line());
    let dev = a.device()?;
    let label = device_label(&dev);
    println!(
        "agree: per-example answer losses on {label} against the CPU (f32 tolerance {F32_TOLERANCE:e}, \
         bf16 {BF16_TOLERANCE:e}, relative) and against PEFT's"
    );
    let mut failed = 0;
    let mut report = |case: &str, what: &str, diff: f64, tol: f64| {
        let ok = diff <= tol;
        failed += usize::from(!ok);
        println!(
            "  {:<48} {what:<26} max rel diff {diff:9.2e} (tolerance {tol:.0e}) {}",
            case,
            if ok { "PASS" } else { "FAIL" }
        );
        println!(
            "{}",
            serde_json::json!({"case": case, "compare": what, "max_rel_diff": diff, "tolerance": tol, "pass": ok})
        );
    };
    for case in cases()? {
        let examples =
            read_jsonl(&case.data).map_err(|e| format!("{}: {e}", case.data.display()))?;
        let cpu = losses(&case, &examples, DType::F32, &Device::Cpu)?;
        if let Some(r) = &case.reference {
            report(
                case.name,
                "cpu f32 vs PEFT",
                max_rel(&cpu, r),
                F32_TOLERANCE,
            );
        }
        if !dev.is_cpu() {
            let f32_dev = losses(&case, &examples, DType::F32, &dev)?;
            report(
                case.name,
                &format!("{label} f32 vs cpu f32"),
                max_rel(&f32_dev, &cpu),
                F32_TOLERANCE,
            );
            if let Some(r) = &case.reference {
                report(
                    case.name,
                    &format!("{label} f32 vs PEFT"),
                    max_rel(&f32_dev, r),
                    F32_TOLERANCE,
                );
            }
        }
        let bf16 = losses(&case, &examples, DType::BF16, &dev)?;
        report(
            case.name,
            &format!("{label} bf16 vs cpu f32"),
            max_rel(&bf16, &cpu),
            BF16_TOLERANCE,
        );
    }
    if failed > 0 {
        return Err(format!("{failed} comparisons out of tolerance"));
    }
    Ok(())
}
