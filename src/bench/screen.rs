//! Pool screening on the lab: every pool adapter (119, ranks 4–16, all modules or q,v) scored
//! alone on one task's 100 train + validation examples — one adapter at a time (folded into the
//! weights, 64 rows per forward) against many adapters per forward (each adapter's rows through
//! its own side branch). Scores are checked equal before timing.
//!
//! `cargo bench --bench screen [-- --task caesar-5 --rows 256,512,1024 --iters 3]`
//! `cargo bench --bench screen --features cuda -- --device cuda [--dtype bf16]` on a GPU (f32 by
//! default, so the paths' scores can be compared exactly; in bf16 differing verdicts are counted).

use crate::model::ResolveDtype;
use std::time::Instant;

use candle_core::DType;

use crate::adapter::Adapter;
use crate::eval::read_jsonl;
use crate::lab::dir as lab_dir;
use crate::model::device::device_label;
use crate::model::{Llama, Template, TextCodec};
use crate::select::{Score, score_adapters, screen_adapters};

use super::support::BenchArgs;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the benchmark with the flags on the command line; prints what `cargo bench` prints.
pub fn run(a: &BenchArgs) -> Result<(), String> {
    println!("{}", crate::process::machine_line());
    let task = a.task.clone().unwrap_or_else(|| "caesar-5".into());
    let iters = a.iters(3);
    let rows: Vec<usize> = if a.rows.is_empty() {
        vec![256, 512, 1024]
    } else {
        a.rows.clone()
    };
    let dir = lab_dir().unwrap();
    let base = dir.join("base");
    let cfg = crate::model::weights::read_config(&base).unwrap();
    let codec = TextCodec::load(&base, Template::Lab, &cfg).unwrap();
    let device = a.device()?;
    let dtype = match a.dtype {
        Some(d) => d.resolve(&device),
        None => DType::F32,
    };
    let model = Llama::load(&base, dtype, &device).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(dir.join("pool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let adapters: Vec<Adapter> = names
        .iter()
        .map(|p| Adapter::load(p, Some((&cfg, None))).unwrap())
        .collect();
    let refs: Vec<&Adapter> = adapters.iter().collect();
    let t = dir.join("tasks").join(&task);
    let mut data = read_jsonl(&t.join("train.jsonl")).unwrap();
    data.extend(read_jsonl(&t.join("validation.jsonl")).unwrap());
    let enc: Vec<_> = codec
        .encode_examples(
            data.iter()
                .map(|e| (e.system.as_deref(), e.prompt.as_str(), e.answer.as_str())),
        )
        .unwrap();
    println!(
        "screening {} lab adapters on {task} ({} examples) on {} in {dtype:?}, {iters} iterations, medians:",
        refs.len(),
        enc.len(),
        device_label(&device)
    );
    let mut reference = Vec::new();
    let seq = median(
        (0..iters)
            .map(|_| {
                let t = Instant::now();
                reference =
                    score_adapters(&model, codec.pad_id(), &refs, &enc, &mut |_, _| {}, None)
                        .unwrap();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    println!(
        "  one adapter at a time      {seq:7.2} s  {:6.1} adapters/s",
        refs.len() as f64 / seq
    );
    println!(
        "{}",
        serde_json::json!({"case": "one adapter at a time", "seconds": seq})
    );
    for r in rows {
        let mut got: Vec<Option<Score>> = vec![None; refs.len()];
        let secs = median(
            (0..iters)
                .map(|_| {
                    let t = Instant::now();
                    screen_adapters(
                        &model,
                        codec.pad_id(),
                        &refs,
                        &enc,
                        r,
                        &mut |i, s| got[i] = Some(s),
                        None,
                    )
                    .unwrap();
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        );
        let mut differ = 0;
        for (a, b) in reference.iter().zip(&got) {
            let b = b.unwrap();
            if dtype == DType::F32 {
                assert_eq!(a.exact_match, b.exact_match);
                assert!((a.loss - b.loss).abs() <= 1e-4 * a.loss.abs().max(1.0));
            } else if a.exact_match != b.exact_match {
                differ += 1;
            }
        }
        if differ > 0 {
            println!("  ({differ} adapters' exact match differs from one-at-a-time in {dtype:?})");
        }
        println!(
            "  batched, {r:>5} rows/forward {secs:7.2} s  {:6.1} adapters/s  {:.2}x",
            refs.len() as f64 / secs,
            seq / secs
        );
        println!(
            "{}",
            serde_json::json!({"case": format!("batched, {r} rows/forward"), "seconds": secs, "speedup": seq / secs})
        );
    }
    Ok(())
}
