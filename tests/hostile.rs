//! Hostile inputs on the lab, through the real binary and the engine: a model whose numbers are
//! not finite (the run fails with the step and the loss, and leaves no record), `eval` on a loss
//! that is not finite, configs and prompts whose sizes would drive huge allocations, and a cancel
//! while a run scores the pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use candle_core::{Device, Tensor};
use serde_json::Value;

use loracycle::engine::{Command as EngineCommand, Event, spawn};
use loracycle::run::RunSpec;
use loracycle::run::store::RunStore;

const LAB_BASE: &str = "assets/lab/base";

/// Every test of this binary scores into its own screening cache, so that a run scores the pool
/// afresh whatever other runs cached (and leaves nothing in the user's cache).
fn private_cache() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        // SAFETY: set once, before this binary's engine or any child reads it; Rust's own
        // environment lock orders it with the spawns of concurrent tests.
        unsafe { std::env::set_var("LORACYCLE_CACHE_DIR", dir) };
    });
}

fn run(args: &[&str]) -> (i32, String, String) {
    private_cache();
    let out = Command::cargo_bin("loracycle")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A copy of the lab's base model with `edit` applied to its config and weights.
fn lab_model_copy(
    dir: &Path,
    edit_config: impl FnOnce(&mut serde_json::Map<String, Value>),
    edit_weights: impl FnOnce(&mut HashMap<String, Tensor>),
) -> PathBuf {
    let out = dir.join("model");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(
        Path::new(LAB_BASE).join("tokenizer.json"),
        out.join("tokenizer.json"),
    )
    .unwrap();
    let mut cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(LAB_BASE).join("config.json")).unwrap(),
    )
    .unwrap();
    edit_config(cfg.as_object_mut().unwrap());
    std::fs::write(out.join("config.json"), cfg.to_string()).unwrap();
    let mut weights =
        candle_core::safetensors::load(Path::new(LAB_BASE).join("model.safetensors"), &Device::Cpu)
            .unwrap();
    edit_weights(&mut weights);
    candle_core::safetensors::save(&weights, out.join("model.safetensors")).unwrap();
    out
}

/// The lab's base model with one NaN in its final norm.
fn nan_model(dir: &Path) -> PathBuf {
    lab_model_copy(
        dir,
        |_| {},
        |w| {
            let norm = &w["model.norm.weight"];
            let mut v = norm.to_vec1::<f32>().unwrap();
            v[0] = f32::NAN;
            let t = Tensor::from_vec(v, norm.shape(), &Device::Cpu).unwrap();
            w.insert("model.norm.weight".into(), t);
        },
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// The runs of a runs directory as `runs list --json` gives them.
fn listed(runs: &Path) -> Vec<Value> {
    let (code, out, err) = run(&[
        "runs",
        "list",
        "--json",
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn a_run_whose_loss_is_not_finite_fails_with_the_step_and_leaves_no_record() {
    let tmp = tempfile::tempdir().unwrap();
    let model = nan_model(tmp.path());
    let runs = tmp.path().join("runs");
    let cases = [
        (
            "[method]\nkind = \"base\"\n",
            "the test loss of example 1 is NaN, not a finite number",
        ),
        (
            "[selection]\nstrategy = \"random\"\nk = 2\n[method]\nkind = \"gradient\"\nsteps = 3\nbatch_size = 2\n",
            "the training loss at step 1 is NaN, not a finite number",
        ),
    ];
    for (i, (method, want)) in cases.iter().enumerate() {
        let spec = write(
            tmp.path(),
            &format!("nan{i}.toml"),
            &format!(
                "name = \"nan {i}\"\n[model]\nbase = {:?}\n[task]\nlab = \"which-is-smaller\"\ntrain_examples = 8\n{method}[eval]\nbootstrap = 1\n",
                model.display().to_string()
            ),
        );
        let (code, out, err) = run(&["run", &spec, "--json", "--runs-dir", runs.to_str().unwrap()]);
        assert_eq!(code, 1, "case {i}: {out}");
        assert_eq!(
            err.lines().last(),
            Some(format!("error: {want}").as_str()),
            "case {i}"
        );
        let all = listed(&runs);
        let r = all
            .iter()
            .find(|r| r["label"] == format!("nan {i}"))
            .unwrap();
        assert_eq!(
            (r["state"].as_str(), r["error"].as_str()),
            (Some("failed"), Some(*want))
        );
        let dir = runs.join(r["id"].as_str().unwrap());
        assert!(
            !dir.join("record.json").exists(),
            "case {i}: no bogus record"
        );
    }
}

#[test]
fn eval_refuses_a_loss_that_is_not_finite_and_weights_that_are_not_numbers() {
    let data = "assets/lab/tasks/which-is-smaller/test.jsonl";
    let adapter = "assets/lab/pool/add-mod-10";
    let with_weight = |w: &str| {
        run(&[
            "eval",
            "--model",
            LAB_BASE,
            "--adapter",
            adapter,
            "--weights",
            w,
            "--data",
            data,
            "--json",
        ])
    };
    let (code, out, err) = with_weight("1e30");
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        "error: the loss of example 1 is NaN, not a finite number\n"
    );
    let (code, _, err) = with_weight("nan");
    assert_eq!(code, 2);
    assert_eq!(
        err.lines().next(),
        Some(
            "error: invalid value 'nan' for '--weights <WEIGHTS>': must be a finite number, got nan"
        )
    );
    let tmp = tempfile::tempdir().unwrap();
    let model = nan_model(tmp.path());
    let (code, _, err) = run(&["eval", "--model", model.to_str().unwrap(), "--data", data]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: the loss of example 1 is NaN, not a finite number\n"
    );
}

/// `loracycle eval` of the lab's test rows on `model`: (exit code, stderr).
fn eval_on(model: &Path) -> (i32, String) {
    let data = "assets/lab/tasks/which-is-smaller/test.jsonl";
    let (code, _, err) = run(&["eval", "--model", model.to_str().unwrap(), "--data", data]);
    (code, err)
}

#[test]
fn configs_whose_sizes_would_drive_huge_allocations_are_refused() {
    let cases = [
        (
            "num_hidden_layers",
            serde_json::json!(1_000_000_000_000_000_000u64),
            "num_hidden_layers 1000000000000000000 is above the largest supported (1024)",
        ),
        (
            "max_position_embeddings",
            serde_json::json!(1_000_000_000_000u64),
            "max_position_embeddings 1000000000000 is above the largest supported (16777216)",
        ),
        (
            "rope_theta",
            serde_json::json!(0.0),
            "rope_theta must be a finite number > 0, got 0",
        ),
    ];
    for (key, value, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let model = lab_model_copy(
            tmp.path(),
            |c| {
                c.insert(key.into(), value.clone());
            },
            |_| {},
        );
        let (code, err) = eval_on(&model);
        assert_eq!(code, 1, "{key}");
        assert_eq!(
            err,
            format!(
                "error: {}: not a valid model config: {want}\n",
                model.join("config.json").display()
            ),
            "{key}"
        );
    }
    // A vocabulary smaller than the tokenizer's would index past the embedding.
    let tmp = tempfile::tempdir().unwrap();
    let model = lab_model_copy(
        tmp.path(),
        |c| {
            c.insert("vocab_size".into(), serde_json::json!(50));
        },
        |_| {},
    );
    let (code, err) = eval_on(&model);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: the tokenizer has 100 tokens but the model's vocab_size is 50: ids past it have no embedding\n"
    );
}

#[test]
fn a_prompt_longer_than_the_models_positions_is_refused_naming_its_row() {
    let tmp = tempfile::tempdir().unwrap();
    let task = Path::new("assets/lab/tasks/which-is-smaller");
    let test = std::fs::read_to_string(task.join("test.jsonl")).unwrap();
    let long = serde_json::json!({"prompt": "9".repeat(1_000_000), "answer": "1"});
    let first = test.lines().next().unwrap();
    let data = write(tmp.path(), "test.jsonl", &format!("{first}\n{long}\n"));
    let (code, _, err) = run(&["eval", "--model", LAB_BASE, "--data", &data]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: row 2: a sequence of 1000005 tokens is longer than the model takes (96 positions)\n"
    );
    let spec = write(
        tmp.path(),
        "long.toml",
        &format!(
            "[task]\ntrain = {:?}\nvalidation = {:?}\ntest = {data:?}\n[method]\nkind = \"base\"\n",
            task.join("train.jsonl").display().to_string(),
            task.join("validation.jsonl").display().to_string(),
        ),
    );
    let runs = tmp.path().join("runs");
    let (code, _, err) = run(&["run", &spec, "--runs-dir", runs.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        err.lines().last(),
        Some(
            "error: task: test row 2: a sequence of 1000005 tokens is longer than the model takes (96 positions)"
        )
    );
}

fn next_event(events: &std::sync::mpsc::Receiver<Event>) -> Event {
    // A hang guard, far above what any of these runs takes.
    events
        .recv_timeout(Duration::from_secs(300))
        .expect("an event within 5 minutes")
}

#[test]
fn cancel_while_scoring_the_pool_stops_between_adapters() {
    private_cache();
    let tmp = tempfile::tempdir().unwrap();
    let store = RunStore::open(&tmp.path().join("runs")).unwrap();
    let engine = spawn(store.clone());
    // A model whose config would have made the loader panic: the run fails, the engine goes on.
    let bad = lab_model_copy(
        tmp.path(),
        |c| {
            c.insert(
                "num_hidden_layers".into(),
                serde_json::json!(1_000_000_000_000_000_000u64),
            );
        },
        |_| {},
    );
    let spec = |text: &str| Box::new(RunSpec::from_toml(text, Path::new("t.toml")).unwrap());
    engine.send(EngineCommand::Submit {
        spec: spec(&format!(
            "name = \"huge\"\n[model]\nbase = {:?}\n[task]\nlab = \"caesar-5\"\n[method]\nkind = \"base\"\n",
            bad.display().to_string()
        )),
        ticket: 0,
    });
    engine.send(EngineCommand::Submit {
        spec: spec(
            "name = \"scoring\"\n[task]\nlab = \"caesar-5\"\n[selection]\nstrategy = \"top-k\"\nk = 3\n[method]\nkind = \"average\"\n",
        ),
        ticket: 0,
    });
    let mut ids = Vec::new();
    let mut failed = None;
    let (mut scoring_total, mut last_scored, mut cancelled_at) = (None, 0, None);
    loop {
        match next_event(&engine.events) {
            Event::Queued { run, .. } => ids.push(run),
            Event::Failed { run, error } => {
                assert_eq!(Some(&run), ids.first());
                failed = Some(error);
            }
            Event::Stage { name, total, .. } if name == "scoring adapters" => {
                scoring_total = Some(total)
            }
            Event::Advance { run, done } if scoring_total.is_some() && Some(&run) == ids.get(1) => {
                last_scored = done;
                if cancelled_at.is_none() {
                    engine.send(EngineCommand::Cancel { run });
                    cancelled_at = Some(done);
                }
            }
            Event::Cancelled { run } => {
                assert_eq!(Some(&run), ids.get(1));
                break;
            }
            Event::Finished { run, .. } => panic!("{run} finished: the cancel was not seen"),
            _ => {}
        }
    }
    assert_eq!(
        failed.as_deref(),
        Some(
            format!(
                "{}: not a valid model config: num_hidden_layers 1000000000000000000 is above the largest supported (1024)",
                bad.join("config.json").display()
            )
            .as_str()
        )
    );
    let total = scoring_total.unwrap();
    assert_eq!(total, 119, "every lab pool adapter is scored");
    // Scoring stopped between adapters, long before the pool's end.
    assert!(
        last_scored < total,
        "cancelled at {cancelled_at:?}, scored {last_scored} of {total}"
    );
    let states: Vec<(String, &str)> = store
        .list()
        .into_iter()
        .map(|s| (s.label, s.state.name()))
        .collect();
    assert_eq!(
        states,
        [
            ("huge".to_string(), "failed"),
            ("scoring".to_string(), "cancelled")
        ]
    );
    engine.shutdown();
}
