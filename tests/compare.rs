//! Runs paired with their own controls: a spec queuing a random-init twin and the base model
//! runs all three, each control's record names its run, `runs compare --json` pairs them and its
//! Δs and paired intervals equal what the records' per-example results give, and a second run
//! of the same spec reuses the base model's run instead of running it again.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

use loracycle::run::RunRecord;
use loracycle::run::compare::{RESAMPLES, SEED};

const SPEC: &str = "seed = 1\n[task]\nlab = \"which-is-smaller\"\n[selection]\nstrategy = \"top-k\"\n\
k = 5\nby = \"loss\"\n[method]\nkind = \"gradient\"\nsteps = 30\n[controls]\nqueue = [\"random-init\", \"base\"]\n\
[eval]\nbootstrap = 200\n";

fn records(runs: &Path) -> Vec<RunRecord> {
    let mut v: Vec<RunRecord> = std::fs::read_dir(runs)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path().join("record.json");
            p.is_file()
                .then(|| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        })
        .collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

fn loracycle(args: &[&str]) -> (bool, String, String) {
    let o = Command::cargo_bin("loracycle")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

fn paired(
    a: &RunRecord,
    b: &RunRecord,
    f: impl Fn(&loracycle::run::record::ExampleOutcome) -> f64,
) -> (f64, [f64; 2]) {
    let x: Vec<f64> = a.examples.iter().map(&f).collect();
    let y: Vec<f64> = b.examples.iter().map(&f).collect();
    let d = loracycle::eval::paired_delta(&x, &y, RESAMPLES, SEED).unwrap();
    let mean = x.iter().zip(&y).map(|(p, q)| p - q).sum::<f64>() / x.len() as f64;
    assert!((d.mean - mean).abs() < 1e-12);
    (mean, [d.lo, d.hi])
}

fn close(v: &Value, want: f64) {
    assert!((v.as_f64().unwrap() - want).abs() < 1e-9, "{v} vs {want}");
}

#[test]
fn a_run_and_its_queued_controls_are_paired_with_intervals() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("spec.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let (ok, out, err) = loracycle(&["run", spec.to_str().unwrap(), "--runs-dir", runs_s]);
    assert!(ok, "{err}");
    // The run's summary, each control's, then the run against its controls.
    assert!(out.contains("\n  ↳ random-init "), "{out}");
    assert!(out.contains("\n  ↳ base "), "{out}");
    // Which adapters carried the merge.
    assert!(out.contains("  Σ|f(c)| by adapter over "), "{out}");

    let recs = records(&runs);
    assert_eq!(recs.len(), 3);
    let main = recs.iter().find(|r| r.spec.parent.is_none()).unwrap();
    let child = |role: &str| {
        recs.iter()
            .find(|r| {
                r.spec
                    .parent
                    .as_ref()
                    .is_some_and(|p| p.id == main.id && p.role.name() == role)
            })
            .unwrap_or_else(|| panic!("no {role} control"))
    };
    let (twin, base) = (child("random-init"), child("base"));
    assert_eq!(twin.label, "which-is-smaller / gradient / random-init");
    assert_eq!(base.label, "which-is-smaller / base");
    assert_eq!(main.spec.controls.queue.len(), 2);

    let (ok, out, err) = loracycle(&["runs", "compare", "--json", "--runs-dir", runs_s]);
    assert!(ok, "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 3, "{out}");
    let head = &rows[0];
    assert_eq!(head["id"], main.id.as_str());
    assert_eq!(head["twin"], twin.id.as_str());
    assert_eq!(head["base"], base.id.as_str());
    assert_eq!(head["role"], Value::Null);
    assert_eq!(rows[1]["id"], twin.id.as_str());
    assert_eq!(rows[1]["role"], "random-init");
    assert_eq!(rows[1]["group"], main.id.as_str());
    assert_eq!(rows[2]["id"], base.id.as_str());
    assert_eq!(rows[2]["twin"], Value::Null);
    close(&head["exact_match"], main.metrics.exact_match.mean);
    close(&head["ci"][0], main.metrics.exact_match.lo);
    close(&head["loss"], main.metrics.loss.mean);
    let correct = |e: &loracycle::run::record::ExampleOutcome| if e.correct { 1.0 } else { 0.0 };
    let (d, ci) = paired(main, twin, correct);
    close(&head["delta_twin"], d);
    close(&head["delta_twin_ci"][0], ci[0]);
    close(&head["delta_twin_ci"][1], ci[1]);
    assert!(ci[0] <= d && d <= ci[1]);
    let (d, ci) = paired(main, base, correct);
    close(&head["delta_base"], d);
    close(&head["delta_base_ci"][0], ci[0]);
    close(&head["delta_base_ci"][1], ci[1]);
    // The losses differ example by example: a paired interval with width, strictly below 0 (the
    // tuned run's answer loss is lower than the random-init twin's on this task).
    let (d, ci) = paired(main, twin, |e| e.loss);
    close(&head["delta_loss_twin"], d);
    close(&head["delta_loss_twin_ci"][0], ci[0]);
    close(&head["delta_loss_twin_ci"][1], ci[1]);
    assert!(ci[0] < ci[1] && ci[1] < 0.0, "{ci:?}");

    // The same spec again: the base model's run answers it already and is not run again.
    let (ok, _, err) = loracycle(&["run", spec.to_str().unwrap(), "--runs-dir", runs_s]);
    assert!(ok, "{err}");
    let recs = records(&runs);
    assert_eq!(recs.len(), 5);
    let bases = recs
        .iter()
        .filter(|r| r.label == "which-is-smaller / base")
        .count();
    assert_eq!(bases, 1);
    let second = recs
        .iter()
        .filter(|r| r.spec.parent.is_none() && r.label == "which-is-smaller / gradient")
        .nth(1)
        .unwrap();
    assert_eq!(second.spec.controls.reused["base"], base.id);
    let (ok, out, _) = loracycle(&[
        "runs",
        "compare",
        &second.id,
        "--json",
        "--runs-dir",
        runs_s,
    ]);
    assert!(ok);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["base"], base.id.as_str());
    assert_ne!(rows[0]["twin"], twin.id.as_str());

    // --out writes the same table as Markdown and CSV.
    let dir = tmp.path().join("table");
    let (ok, _, err) = loracycle(&[
        "runs",
        "compare",
        "--out",
        dir.to_str().unwrap(),
        "--runs-dir",
        runs_s,
    ]);
    assert!(ok, "{err}");
    let csv = std::fs::read_to_string(dir.join("compare.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 6, "{csv}");
    assert!(csv.starts_with("id,label,task,role,group,exact_match,ci_low,ci_high,loss,"));
    let md = std::fs::read_to_string(dir.join("compare.md")).unwrap();
    assert!(
        md.contains("| ↳ random-init (which-is-smaller / gradient / random-init) |"),
        "{md}"
    );
}

#[test]
fn a_queue_that_does_not_apply_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("spec.toml");
    std::fs::write(
        &spec,
        "[task]\nlab = \"caesar-5\"\n[method]\nkind = \"base\"\n[controls]\nqueue = [\"base\"]\n",
    )
    .unwrap();
    let (ok, _, err) = loracycle(&[
        "run",
        spec.to_str().unwrap(),
        "--runs-dir",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("controls.queue: base: this run is the base model"),
        "{err}"
    );
    std::fs::write(
        &spec,
        "[task]\nlab = \"caesar-5\"\n[controls]\nqueue = [\"base\", \"base\"]\n",
    )
    .unwrap();
    let (_, _, err) = loracycle(&[
        "run",
        spec.to_str().unwrap(),
        "--runs-dir",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(
        err.contains("controls.queue: base is listed twice"),
        "{err}"
    );
}

#[test]
fn runs_of_one_label_are_told_apart_by_what_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    for (k, by) in [(3, "loss"), (5, "exact-match")] {
        let spec = tmp.path().join(format!("k{k}.toml"));
        std::fs::write(
            &spec,
            format!(
                "[task]\nlab = \"caesar-5\"\n[selection]\nstrategy = \"top-k\"\nk = {k}\nby = \"{by}\"\n\
                 [method]\nkind = \"gradient\"\nsteps = 5\n[eval]\nbootstrap = 10\n"
            ),
        )
        .unwrap();
        let (ok, _, err) = loracycle(&[
            "run",
            spec.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
    }
    let (ok, out, _) = loracycle(&[
        "runs",
        "compare",
        "--json",
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    assert!(ok);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let labels: Vec<&str> = rows.iter().map(|r| r["label"].as_str().unwrap()).collect();
    assert_eq!(
        labels,
        [
            "caesar-5 / gradient · selection.by=loss · selection.k=3",
            "caesar-5 / gradient · selection.by=exact-match · selection.k=5"
        ]
    );
    let runs_s = runs.to_str().unwrap();
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    // `runs list` names the settings in which the listed runs differ, under each run.
    let (ok, out, _) = loracycle(&["runs", "list", "--runs-dir", runs_s]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with("id  (settings that differ)"), "{out}");
    assert_eq!(lines[2].trim(), "by=loss k=3", "{out}");
    assert_eq!(lines[4].trim(), "by=exact-match k=5", "{out}");
    // --filter keeps the runs a condition holds for, by a setting's full key or its end.
    let listed = |filter: &str| -> Vec<String> {
        let (ok, out, err) = loracycle(&[
            "runs",
            "list",
            "--filter",
            filter,
            "--json",
            "--runs-dir",
            runs_s,
        ]);
        assert!(ok, "{err}");
        let v: Vec<Value> = serde_json::from_str(&out).unwrap();
        v.iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed("k>3"), [ids[1].clone()]);
    assert_eq!(
        listed("selection.by=loss, state=finished"),
        [ids[0].clone()]
    );
    assert_eq!(listed("CAESAR"), ids);
    assert!(listed("by=loss, k=5").is_empty());
    let (ok, _, err) = loracycle(&["runs", "list", "--filter", "=3", "--runs-dir", runs_s]);
    assert!(!ok);
    assert_eq!(
        err,
        "error: filter condition \"=3\": expected KEY OP VALUE (e.g. k>=10, by=loss) or text\n"
    );
    // A name shows in place of the label, in the list and in the comparison.
    let (ok, out, err) = loracycle(&[
        "runs",
        "rename",
        &ids[0],
        "top-3 by loss",
        "--runs-dir",
        runs_s,
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("renamed {} to \"top-3 by loss\"\n", ids[0]));
    assert_eq!(listed("label=top-3 by loss"), [ids[0].clone()]);
    let (_, out, _) = loracycle(&["runs", "compare", "--json", "--runs-dir", runs_s]);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["label"], "top-3 by loss");
    assert_eq!(rows.len(), 2);
    let (ok, _, err) = loracycle(&[
        "runs",
        "rename",
        &ids[0],
        &"x".repeat(121),
        "--runs-dir",
        runs_s,
    ]);
    assert!(!ok);
    assert_eq!(
        err,
        "error: a run name has at most 120 characters; this one has 121\n"
    );
    // Each run kept every pool adapter's screening score (why top-k chose what it chose).
    let screening: Value =
        serde_json::from_slice(&std::fs::read(runs.join(&ids[0]).join("screening.json")).unwrap())
            .unwrap();
    assert_eq!(screening["task"], "caesar-5");
    assert_eq!(screening["scores"].as_array().unwrap().len(), 119);
    let record: RunRecord =
        serde_json::from_slice(&std::fs::read(runs.join(&ids[0]).join("record.json")).unwrap())
            .unwrap();
    // The three chosen by loss are the three lowest losses screened.
    let mut losses: Vec<(f64, String)> = screening["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["loss"].as_f64().unwrap(),
                s["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    losses.sort_by(|a, b| a.0.total_cmp(&b.0));
    let chosen: Vec<&str> = record.chosen.iter().map(|c| c.name.as_str()).collect();
    let lowest: Vec<&str> = losses[..3].iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(chosen, lowest);
}

/// A new-LoRA run keeps the LoRA it trained, and `runs export` writes it out: merged back into
/// the base model as the only adapter of a `sum`, it gives the run's own test losses.
#[test]
fn a_new_lora_run_exports_the_lora_it_trained() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let spec = tmp.path().join("new.toml");
    std::fs::write(
        &spec,
        "[task]\nlab = \"caesar-5\"\n[method]\nkind = \"new-lora\"\nrank = 4\nalpha = 8.0\nsteps = 12\n\
         lr = 0.003\n[eval]\nbootstrap = 10\n",
    )
    .unwrap();
    let (ok, _, err) = loracycle(&["run", spec.to_str().unwrap(), "--runs-dir", runs_s]);
    assert!(ok, "{err}");
    let trained = records(&runs).remove(0);
    let pool = tmp.path().join("pool");
    let out = pool.join("caesar-5-new");
    let (ok, text, err) = loracycle(&[
        "runs",
        "export",
        &trained.id,
        "--out",
        out.to_str().unwrap(),
        "--runs-dir",
        runs_s,
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        text,
        format!(
            "exported run {} to {} (rank 4, the LoRA it trained)\n",
            trained.id,
            out.display()
        )
    );
    let config: Value =
        serde_json::from_slice(&std::fs::read(out.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 8.0);
    // The exported LoRA, summed into the base model, answers the test set as the run did.
    let again = tmp.path().join("again.toml");
    std::fs::write(
        &again,
        format!(
            "[pool]\nsource = \"dir:{}\"\n[task]\nlab = \"caesar-5\"\n[selection]\nstrategy = \"all\"\n\
             [method]\nkind = \"sum\"\n[eval]\nbootstrap = 10\n",
            pool.display()
        ),
    )
    .unwrap();
    let (ok, _, err) = loracycle(&["run", again.to_str().unwrap(), "--runs-dir", runs_s]);
    assert!(ok, "{err}");
    let merged = records(&runs)
        .into_iter()
        .find(|r| r.id != trained.id)
        .unwrap();
    assert_eq!(merged.examples.len(), trained.examples.len());
    for (a, b) in merged.examples.iter().zip(&trained.examples) {
        assert!(
            (a.loss - b.loss).abs() < 1e-4 * b.loss.abs().max(1.0),
            "{} vs {}",
            a.loss,
            b.loss
        );
        assert_eq!(a.prediction, b.prediction);
    }
}

/// A study run here links its arms as queued controls are linked: each random-init arm names
/// the arm it is the twin of, and each arm on pool adapters the base and new-LoRA runs of its
/// cell, so `runs compare` pairs them.
#[test]
fn a_study_links_each_arm_to_its_twin_and_base() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let (ok, _, err) = loracycle(&[
        "study",
        "--tasks",
        "caesar-5",
        "--arms",
        "base,average,average · random-init",
        "--device",
        "cpu",
        "--runs-dir",
        runs_s,
    ]);
    assert!(ok, "{err}");
    let recs = records(&runs);
    let by_label = |l: &str| {
        recs.iter()
            .find(|r| r.label == l)
            .unwrap_or_else(|| panic!("{l}"))
    };
    let base = by_label("caesar-5 / base / seed 0");
    let avg = by_label("caesar-5 / average / seed 0");
    let twin = by_label("caesar-5 / average · random-init / seed 0");
    assert_eq!(twin.spec.parent.as_ref().unwrap().id, avg.id);
    assert_eq!(avg.spec.controls.reused["base"], base.id);
    let (ok, out, _) = loracycle(&["runs", "compare", &avg.id, "--json", "--runs-dir", runs_s]);
    assert!(ok);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["twin"], twin.id.as_str());
    assert_eq!(rows[0]["base"], base.id.as_str());
    let correct = |e: &loracycle::run::record::ExampleOutcome| if e.correct { 1.0 } else { 0.0 };
    let (d, _) = paired(avg, twin, correct);
    close(&rows[0]["delta_twin"], d);
}

/// `similar` by each closeness measure and `rank` choose from the lab pool as the library's
/// measures rank it; an unknown measure is refused with the ones there are.
#[test]
fn selection_by_closeness_measure_and_by_rank() {
    use loracycle::adapter::Adapter;
    use loracycle::select::closeness::{Aggregate, Measure, score_pool};
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    std::fs::create_dir_all(&runs).unwrap();
    let spec = |name: &str, selection: &str| {
        let p = tmp.path().join(format!("{name}.toml"));
        std::fs::write(
            &p,
            format!(
                "[task]\nlab = \"caesar-5\"\n[selection]\n{selection}\n[method]\nkind = \"average\"\n\
                 [eval]\nbootstrap = 10\n"
            ),
        )
        .unwrap();
        p
    };
    let chosen = |p: &Path| -> Vec<String> {
        let before: Vec<String> = records(&runs).into_iter().map(|r| r.id).collect();
        let (ok, _, err) = loracycle(&["run", p.to_str().unwrap(), "--runs-dir", runs_s]);
        assert!(ok, "{err}");
        let r = records(&runs)
            .into_iter()
            .find(|r| !before.contains(&r.id))
            .unwrap();
        r.chosen.into_iter().map(|c| c.name).collect()
    };
    let got = chosen(&spec(
        "qfim",
        "strategy = \"similar\"\nto = \"caesar-4\"\nk = 3\nmeasure = \"quasi-fim\"\naggregate = \"micro\"",
    ));
    // What the measure gives on the pool, computed here from the adapters themselves.
    let lab = loracycle::lab::dir().unwrap().join("pool");
    let mut names: Vec<String> = std::fs::read_dir(&lab)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let pool: Vec<Adapter> = names
        .iter()
        .map(|n| Adapter::load(&lab.join(n), None).unwrap())
        .collect();
    let refs: Vec<&Adapter> = pool.iter().collect();
    let target = &pool[names.iter().position(|n| n == "caesar-4").unwrap()];
    let scores = score_pool(target, &refs, Measure::QuasiFim, Aggregate::Micro).unwrap();
    let mut order: Vec<usize> = (0..pool.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let want: Vec<String> = order[..3].iter().map(|&i| names[i].clone()).collect();
    assert_eq!(got, want);
    assert_eq!(got[0], "caesar-4");
    // rank: the highest PEFT r.
    let got = chosen(&spec("rank", "strategy = \"rank\"\nk = 4"));
    let top = pool.iter().map(|a| a.config.r).max().unwrap();
    assert_eq!(got.len(), 4);
    for n in &got {
        assert_eq!(
            pool[names.iter().position(|x| x == n).unwrap()].config.r,
            top,
            "{n}"
        );
    }
    let bad = spec(
        "bad",
        "strategy = \"similar\"\nto = \"caesar-4\"\nk = 3\nmeasure = \"dot\"",
    );
    let (ok, _, err) = loracycle(&["run", bad.to_str().unwrap(), "--runs-dir", runs_s]);
    assert!(!ok);
    assert!(
        err.contains("unknown variant `dot`, expected one of `cosine`, `clamp`, `abs`, `clamp-per-module`, `quasi-fim`, `l2`"),
        "{err}"
    );
}
