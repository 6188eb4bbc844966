//! Zero-step Arrow against PEFT's `create_arrow_model`: three same-shape adapters on the tiny Llama
//! (rank 4, all seven modules, three different scales), per-example answer losses for three
//! (top_k, temperature) settings; and a mixed case PEFT refuses (ranks 8, 4 and 2 on different
//! module sets) against the fixture script's hand-written reference, which it checks against PEFT
//! first. Made by tests/fixtures/make_arrow.py.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

const TOL: f64 = 1e-4;

fn golden() -> Value {
    serde_json::from_str(&std::fs::read_to_string("tests/fixtures/arrow/golden.json").unwrap())
        .unwrap()
}

/// `loracycle eval --route arrow` over `adapters`: the per-example losses and the JSON report.
fn arrow_eval(adapters: &[String], top_k: u64, temperature: f64) -> (Vec<f64>, Value) {
    let mut args: Vec<String> = [
        "eval",
        "--model",
        "tests/fixtures/tiny",
        "--data",
        "tests/fixtures/data.jsonl",
        "--template",
        "raw",
        "--device",
        "cpu",
        "--dtype",
        "f32",
        "--json",
        "--route",
        "arrow",
    ]
    .map(String::from)
    .to_vec();
    args.extend(["--top-k".into(), top_k.to_string()]);
    args.extend(["--temperature".into(), temperature.to_string()]);
    for a in adapters {
        args.extend(["--adapter".into(), a.clone()]);
    }
    let out = Command::cargo_bin("loracycle")
        .unwrap()
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let losses = v["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loss"].as_f64().unwrap())
        .collect();
    (losses, v)
}

fn assert_close(case: &str, ours: &[f64], reference: &Value) {
    let reference: Vec<f64> = reference
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(ours.len(), reference.len(), "{case}");
    for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
        assert!(
            (a - b).abs() <= TOL * b.abs(),
            "{case} example {i}: loracycle {a} vs reference {b}"
        );
    }
}

#[test]
fn zero_step_arrow_matches_peft_create_arrow_model() {
    let g = golden();
    let adapters: Vec<String> = g["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| format!("tests/fixtures/arrow/adapters/{}", n.as_str().unwrap()))
        .collect();
    let mut seen = Vec::new();
    for (name, s) in g["settings"].as_object().unwrap() {
        let (losses, report) = arrow_eval(
            &adapters,
            s["top_k"].as_u64().unwrap(),
            s["temperature"].as_f64().unwrap(),
        );
        assert_close(name, &losses, &g["losses"][name]);
        // The routing weights are reported per adapter and sum to 1 over the adapters.
        let total: f64 = report["routing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["mean_weight"].as_f64().unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-6, "{name}: {total}");
        seen.push(name.clone());
    }
    assert_eq!(seen, ["top1-t1", "top2-t1", "top3-t0.5"]);
}

#[test]
fn mixed_ranks_and_module_sets_route_as_the_reference_does() {
    let g = golden();
    let m = &g["mixed"];
    let adapters: Vec<String> = m["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            Path::new("tests/fixtures/adapters")
                .join(n.as_str().unwrap())
                .display()
                .to_string()
        })
        .collect();
    let (losses, report) = arrow_eval(
        &adapters,
        m["top_k"].as_u64().unwrap(),
        m["temperature"].as_f64().unwrap(),
    );
    assert_close("mixed", &losses, &g["losses"]["mixed-top2-t1"]);
    let names: Vec<&str> = report["routing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["adapter"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
}

#[test]
fn arrow_refuses_weights_and_an_empty_pool() {
    let run = |extra: &[&str]| {
        let out = Command::cargo_bin("loracycle")
            .unwrap()
            .args([
                "eval",
                "--model",
                "tests/fixtures/tiny",
                "--data",
                "tests/fixtures/data.jsonl",
                "--route",
                "arrow",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert_eq!(
        run(&[]),
        "error: --route arrow routes over adapters: give at least one --adapter\n"
    );
    assert_eq!(
        run(&[
            "--adapter",
            "tests/fixtures/adapters/qv-r4",
            "--weights",
            "0.5"
        ]),
        "error: --weights does not apply with --route arrow: the router weighs each token\n"
    );
}

/// A route trace counts real tokens only: routing a right-padded batch gives the same summed
/// weights and token counts as routing its rows one at a time.
#[test]
fn a_route_trace_leaves_padding_out() {
    use std::sync::{Arc, Mutex};

    use candle_core::{DType, Device};
    use loracycle::adapter::Adapter;
    use loracycle::model::branch::RouteTrace;
    use loracycle::model::{Batch, Llama};
    use loracycle::tune::arrow::ArrowBranches;

    let dev = Device::Cpu;
    let tiny = Path::new("tests/fixtures/tiny");
    let model = Llama::load(tiny, DType::F32, &dev).unwrap();
    let cfg = model.config().clone();
    let adapters: Vec<Adapter> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            Adapter::load(
                &Path::new("tests/fixtures/arrow/adapters").join(n),
                Some((&cfg, None)),
            )
            .unwrap()
        })
        .collect();
    let refs: Vec<&Adapter> = adapters.iter().collect();
    let arrow = ArrowBranches::new(&refs, cfg.num_hidden_layers, 2, 1.0, DType::F32, &dev).unwrap();
    let prototypes = arrow.initial_prototypes(&refs).unwrap();
    let rows: Vec<Vec<u32>> = vec![(1..12).collect(), (3..7).collect(), (5..14).collect()];
    let traced = |rows: &[Vec<u32>]| {
        let mut branches = arrow.branches(&prototypes);
        let trace = Arc::new(Mutex::new(RouteTrace::default()));
        branches.trace = Some(trace.clone());
        model
            .forward(&Batch::new(rows, 0, &dev).unwrap(), Some(&branches))
            .unwrap();
        trace.lock().unwrap().clone()
    };
    let batched = traced(&rows);
    let mut alone = RouteTrace::default();
    for r in &rows {
        for ((l, m), (sums, n)) in traced(std::slice::from_ref(r)).sums {
            alone.add(l, m, sums, n);
        }
    }
    assert_eq!(batched.sums.len(), alone.sums.len());
    for (key, (sums, n)) in &batched.sums {
        let (want, want_n) = &alone.sums[key];
        assert_eq!((*n, *want_n), (24, 24), "{key:?}");
        for (a, b) in sums.iter().zip(want) {
            assert!((a - b).abs() < 1e-4, "{key:?}: batched {a} vs alone {b}");
        }
    }
    let (w, w_alone) = (arrow.mean_weights(&batched), arrow.mean_weights(&alone));
    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{w:?}");
    for (a, b) in w.iter().zip(&w_alone) {
        assert!((a - b).abs() < 1e-5, "{w:?} vs {w_alone:?}");
    }
}
