//! `loracycle run` and `loracycle merge` end to end on the shipped lab: a few-step gradient run
//! with its record, a base run agreeing with `loracycle eval`, a merge written as a PEFT adapter,
//! and the exact messages for bad specs.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::cargo_bin("loracycle").unwrap();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn write_spec(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn a_gradient_run_on_the_lab_writes_its_record() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(
        tmp.path(),
        "grad.toml",
        r#"
name = "ci gradient"
seed = 3
[task]
lab = "caesar-5"
train_examples = 24
[selection]
strategy = "random"
k = 4
[method]
kind = "gradient"
steps = 6
eval_every = 3
batch_size = 4
[eval]
bootstrap = 200
"#,
    );
    let runs = tmp.path().join("runs");
    let (code, out, err) = run(
        &["run", &spec, "--json", "--runs-dir", runs.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    // Without a terminal, progress comes as plain lines: each stage, then every tenth of it.
    let stage = |name: &str| -> Vec<&str> {
        err.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
            .collect()
    };
    assert_eq!(
        stage("tuning coefficients"),
        ["0/6", "1/6", "2/6", "3/6", "4/6", "5/6", "6/6"]
    );
    // The test split is scored 32 examples at a time: a line per batch, each past a tenth.
    assert_eq!(
        stage("evaluating on test"),
        ["0/100", "32/100", "64/100", "96/100", "100/100"]
    );
    let pool = stage("loading pool");
    assert_eq!(pool.len(), 11, "{pool:?}");
    let rec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rec["status"], "finished");
    assert_eq!(rec["label"], "ci gradient");
    assert_eq!(rec["task"]["name"], "caesar-5");
    assert_eq!(rec["task"]["train"], 24);
    assert_eq!(rec["task"]["validation"], 20);
    assert_eq!(rec["task"]["test"], 100);
    // Four pool adapters, all real, all lab pool folders.
    let chosen = rec["chosen"].as_array().unwrap();
    assert_eq!(chosen.len(), 4);
    for c in chosen {
        let name = c["name"].as_str().unwrap();
        assert!(Path::new("assets/lab/pool").join(name).is_dir(), "{name}");
        assert_eq!(c["random"], false);
        assert_eq!(c["oracle"], false);
    }
    // Six steps, validation at 3 and 6, the best of the two kept.
    let curve = rec["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 6);
    let vals: Vec<f64> = curve
        .iter()
        .filter_map(|p| p["val_loss"].as_f64())
        .collect();
    assert_eq!(vals.len(), 2);
    let best = rec["best_step"].as_u64().unwrap();
    assert!(best == 3 || best == 6);
    let best_val = vals[(best / 3 - 1) as usize];
    assert_eq!(rec["metrics"]["val_loss"].as_f64().unwrap(), best_val);
    assert!(best_val <= vals[0].min(vals[1]));
    // Coefficients: one row per (layer, module), one column per adapter.
    let coef = &rec["coefficients"];
    assert_eq!(coef["granularity"], "module");
    assert_eq!(coef["groups"].as_array().unwrap().len(), 4 * 7);
    assert_eq!(coef["columns"].as_array().unwrap().len(), 4);
    assert_eq!(rec["coefficient_curve"].as_array().unwrap().len(), 2);
    let em = &rec["metrics"]["exact_match"];
    assert_eq!(em["n"], 100);
    let (lo, mean, hi) = (
        em["lo"].as_f64().unwrap(),
        em["mean"].as_f64().unwrap(),
        em["hi"].as_f64().unwrap(),
    );
    assert!(0.0 <= lo && lo <= mean && mean <= hi && hi <= 1.0);
    // The record on disk is the one printed, and its spec reads back.
    let folder = runs.join(rec["id"].as_str().unwrap());
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("record.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk, rec);
    let spec_back = loracycle::run::RunSpec::read(&folder.join("spec.toml")).unwrap();
    let spec_given: loracycle::run::RunSpec = serde_json::from_value(rec["spec"].clone()).unwrap();
    assert_eq!(spec_back, spec_given);
    assert_eq!(
        spec_back,
        loracycle::run::RunSpec::read(Path::new(&spec)).unwrap()
    );
    // `runs show` takes the run's time stamp alone when it names one run; `runs rm` names what
    // it cannot remove.
    let id = rec["id"].as_str().unwrap();
    let runs_s = runs.to_str().unwrap();
    let (code, out, err) = run(&["runs", "show", &id[..16], "--runs-dir", runs_s], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().next().unwrap(),
        format!("ci gradient · finished · {id}")
    );
    let (code, _, err) = run(&["runs", "rm", "nosuch", "--runs-dir", runs_s], &[]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: no run \"nosuch\" in the runs directory\nerror: 1 of 1 runs not removed\n"
    );
}

#[test]
fn a_base_run_agrees_with_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(
        tmp.path(),
        "base.toml",
        "[task]\nlab = \"which-is-smaller\"\n[method]\nkind = \"base\"\n[eval]\nbootstrap = 1\n",
    );
    let (code, out, err) = run(
        &[
            "run",
            &spec,
            "--json",
            "--runs-dir",
            tmp.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let rec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rec["label"], "which-is-smaller / base");
    assert!(rec["chosen"].as_array().unwrap().is_empty());
    let (code, out, err) = run(
        &[
            "eval",
            "--model",
            "assets/lab/base",
            "--data",
            "assets/lab/tasks/which-is-smaller/test.jsonl",
            "--metric",
            "both",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let ev: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        rec["metrics"]["exact_match"]["mean"].as_f64().unwrap(),
        ev["exact_match"].as_f64().unwrap()
    );
    let (a, b) = (
        rec["metrics"]["loss"]["mean"].as_f64().unwrap(),
        ev["mean_loss"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-5, "run loss {a} vs eval loss {b}");
}

#[test]
fn bad_specs_get_a_message_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[task]\nlab = \"caesar-5\"\n[method]\nkind = \"magic\"\n",
            "[method] (line 3): unknown kind \"magic\" (kinds: base, new-lora, gradient, lorahub, adamerging, pi-tuning, arrow, sum, average, task-arithmetic, ties, dare, tsv, svd, lorahub-sum)",
        ),
        (
            "[task]\nlab = \"caesar-5\"\n[method]\nkind = \"gradient\"\nsteps = -1\n",
            "[method] (line 3): kind gradient: invalid value: integer `-1`, expected usize",
        ),
        (
            "[task]\nlab = \"caesar-5\"\n[method]\nkind = \"base\"\nsteps = 10\n",
            "[method]: kind base takes no settings (got steps)",
        ),
        (
            "[task]\nlab = \"caesar-5\"\n\n[method]\nkind = \"lorahub\"\nbugdet = 100\n",
            "[method] (line 4): kind lorahub: unknown field `bugdet`, expected one of",
        ),
        (
            "[task]\nlab = \"caesar-5\"\ntrain = \"t.jsonl\"\n",
            "task: give one of lab = NAME, name = NAME (an imported task) or train/validation/test files",
        ),
        (
            "[task]\nlab = \"nope\"\n[method]\nkind = \"base\"\n",
            "task: the lab has no held-out task \"nope\" (it has add-mod-9, caesar-5, contains-e, interleave, mirror, reverse-uppercase, rotate-4, run-length, table-m, table-n, table-o, table-p, table-q, which-is-smaller)",
        ),
        (
            "[task]\nlab = \"caesar-5\"\n[method]\nkind = \"ties\"\ndensity = 0\n",
            "method.density: must be in (0, 1], got 0",
        ),
        (
            "[task]\nlab = \"caesar-5\"\n[pool]\nfilter = \"size<3\"\n",
            "pool: filter condition \"size<3\": unknown key \"size\" (use name, rank, alpha or modules)",
        ),
        (
            "[task]\nlab = \"caesar-5\"\n[selection]\nstrategy = \"random\"\nk = 100000\n[method]\nkind = \"average\"\n",
            "selection random: k = 100000 but the pool holds",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let spec = write_spec(tmp.path(), &format!("bad{i}.toml"), text);
        let (code, _, err) = run(
            &["run", &spec, "--runs-dir", tmp.path().to_str().unwrap()],
            &[],
        );
        assert_eq!(code, 1, "case {i}");
        assert!(
            err.contains(want),
            "case {i}: stderr {err:?} lacks {want:?}"
        );
    }
    // Spec errors stop before a run exists; runtime errors leave a failed run with its message.
    let (code, out, _) = run(
        &[
            "runs",
            "list",
            "--json",
            "--runs-dir",
            tmp.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0);
    let runs: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(runs.len(), 2, "{out}");
    for r in &runs {
        assert_eq!(r["state"], "failed");
    }
    assert!(runs.iter().any(|r| {
        r["error"]
            .as_str()
            .unwrap()
            .contains("the lab has no held-out task \"nope\"")
    }));
}

/// Settings out of range, and settings a method or strategy does not take: refused when the spec
/// is read, before any run exists, naming the field (and the method).
#[test]
fn settings_out_of_range_or_not_taken_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let head = "[task]\nlab = \"caesar-5\"\n";
    let cases = [
        (
            "[method]\nkind = \"gradient\"\nlr = nan\n",
            "method.lr: must be a finite number ≥ 0, got nan",
        ),
        (
            "[method]\nkind = \"gradient\"\nlr = -0.1\n",
            "method.lr: must be a finite number ≥ 0, got -0.1",
        ),
        (
            "[method]\nkind = \"gradient\"\nwarmup_frac = nan\n",
            "method.warmup_frac: must be in [0, 1], got nan",
        ),
        (
            "[method]\nkind = \"new-lora\"\nwarmup_frac = 1.5\n",
            "method.warmup_frac: must be in [0, 1], got 1.5",
        ),
        (
            "[method]\nkind = \"gradient\"\nbatch_size = 0\n",
            "method.batch_size: must be between 1 and 65536, got 0",
        ),
        (
            "[method]\nkind = \"gradient\"\nsteps = 100000000000\n",
            "method.steps: must be between 1 and 1000000, got 100000000000",
        ),
        (
            "[method]\nkind = \"gradient\"\nl1 = inf\n",
            "method.l1: must be a finite number ≥ 0, got inf",
        ),
        (
            "[method]\nkind = \"lorahub\"\nbudget = 0\n",
            "method.budget: must be between 1 and 1000000, got 0",
        ),
        (
            "[method]\nkind = \"lorahub\"\nsigma = 0\n",
            "method.sigma: must be a finite number > 0, got 0",
        ),
        (
            "[method]\nkind = \"lorahub\"\nexamples = 0\n",
            "method.examples: must be at least 1, got 0",
        ),
        (
            "[method]\nkind = \"new-lora\"\nmodules = []\n",
            "method.modules: must be a non-empty list, got []",
        ),
        (
            "[method]\nkind = \"new-lora\"\nrank = 100000000000\n",
            "method.rank: must be between 1 and 65536, got 100000000000",
        ),
        (
            "[method]\nkind = \"task-arithmetic\"\nlambda = nan\n",
            "method.lambda: must be a finite number, got nan",
        ),
        (
            "[method]\nkind = \"ties\"\ndensity = nan\n",
            "method.density: must be in (0, 1], got nan",
        ),
        (
            "[selection]\nstrategy = \"manual\"\nadapters = []\n",
            "selection.adapters: must be a non-empty list, got []",
        ),
        (
            "[selection]\nstrategy = \"top-k\"\nk = 0\n",
            "selection.k: must be between 1 and 100000, got 0",
        ),
        (
            "[eval]\nbootstrap = 100000000000\n",
            "eval.bootstrap: must be between 1 and 1000000, got 100000000000",
        ),
        (
            "[eval]\nbatch_size = 0\n",
            "eval.batch_size: must be between 1 and 65536, got 0",
        ),
        (
            "[eval]\nmax_new_tokens = 0\n",
            "eval.max_new_tokens: must be between 1 and 32768, got 0",
        ),
        (
            "[selection]\nstrategy = \"top-k\"\nk = 3\n[method]\nkind = \"tsv\"\nweights = [1.0, 0.5]\n",
            "method.weights lists 2 weights but the selection picks k = 3 adapters",
        ),
        (
            "[method]\nkind = \"ties\"\nweights = [1.0, inf]\n",
            "method.weights: must be a finite number, got inf",
        ),
    ];
    // Settings a kind does not take were silently ignored: refused, naming them and the kind.
    let ignored = [
        (
            "[method]\nkind = \"sum\"\nextra = 1\n",
            "[method]: kind sum takes no settings (got extra)",
        ),
        (
            "[method]\nkind = \"average\"\nlambda = 2.0\n",
            "[method] (line 3): kind average: unknown field `lambda`, expected `over`",
        ),
        (
            "[method]\nkind = \"ties\"\nseed = 3\n",
            "[method] (line 3): kind ties: unknown field `seed`, expected one of `density`, `sign`, `lambda`, `weights`",
        ),
        (
            "[selection]\nstrategy = \"all\"\nk = 3\n",
            "[selection]: strategy all takes no settings (got k)",
        ),
    ];
    // Range errors name the field; parse errors (the ignored keys) name the spec file too.
    let all = cases
        .iter()
        .map(|c| (c, false))
        .chain(ignored.iter().map(|c| (c, true)));
    for (i, ((text, want), parse)) in all.enumerate() {
        let spec = write_spec(tmp.path(), &format!("s{i}.toml"), &format!("{head}{text}"));
        let (code, _, err) = run(
            &["run", &spec, "--runs-dir", tmp.path().to_str().unwrap()],
            &[],
        );
        let want = if parse {
            format!("error: {spec}: {want}\n")
        } else {
            format!("error: {want}\n")
        };
        assert_eq!((code, err.as_str()), (1, want.as_str()), "case {i}");
    }
    let store = loracycle::run::store::RunStore::open(tmp.path()).unwrap();
    assert!(store.list().is_empty(), "no run was created");
}

#[test]
fn merge_writes_an_adapter_that_loads_and_matches_the_exact_sum() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let a = "tests/fixtures/adapters/qv-r4";
    let b = "tests/fixtures/adapters/all-r8-rslora";
    let (code, stdout, err) = run(
        &[
            "merge",
            "--model",
            "tests/fixtures/tiny",
            "--adapter",
            a,
            "--adapter",
            b,
            "--weights",
            "0.7,-0.4",
            "--method",
            "sum",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        stdout.trim(),
        format!(
            "merged 2 adapters with sum into {} (rank 12, exact)",
            out.display()
        )
    );
    // The merged adapter gives the same losses as the two applied with those weights.
    let eval = |extra: &[&str]| -> Value {
        let mut args = vec![
            "eval",
            "--model",
            "tests/fixtures/tiny",
            "--data",
            "tests/fixtures/data.jsonl",
            "--template",
            "raw",
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = run(&args, &[]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let merged = eval(&["--adapter", out.to_str().unwrap()]);
    let both = eval(&["--adapter", a, "--adapter", b, "--weights", "0.7,-0.4"]);
    let (x, y) = (
        merged["mean_loss"].as_f64().unwrap(),
        both["mean_loss"].as_f64().unwrap(),
    );
    assert!((x - y).abs() < 1e-5, "merged {x} vs weighted {y}");
    // TIES is dense: written truncated, with the error printed.
    let ties = tmp.path().join("ties");
    let (code, stdout, err) = run(
        &[
            "merge",
            "--model",
            "tests/fixtures/tiny",
            "--adapter",
            a,
            "--adapter",
            b,
            "--method",
            "ties",
            "--density",
            "0.2",
            "--rank",
            "4",
            "--out",
            ties.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("(rank 4, rank-4 truncation, relative error 0."),
        "{stdout}"
    );
    let (code, _, err) = run(&["inspect", ties.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(
        &[
            "merge",
            "--model",
            "tests/fixtures/tiny",
            "--adapter",
            a,
            "--method",
            "average",
            "--density",
            "0.3",
            "--out",
            ties.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "error: --density applies to ties, dare and dare-ties only"
    );
}

#[test]
fn peft_loads_what_merge_writes() {
    // tests/fixtures/merged-by-loracycle/sum was written by this command and checked with peft
    // (make_golden.py --check-written ... --out peft_check_merge.json): the same bytes today mean
    // the check still holds.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sum");
    let a = "tests/fixtures/adapters";
    let (code, _, err) = run(
        &[
            "merge",
            "--model",
            "tests/fixtures/tiny",
            "--adapter",
            &format!("{a}/qv-r4"),
            "--adapter",
            &format!("{a}/all-r8-rslora"),
            "--adapter",
            &format!("{a}/mlp-r2"),
            "--weights",
            "0.7,-0.4,1.3",
            "--method",
            "sum",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let committed = Path::new("tests/fixtures/merged-by-loracycle/sum");
    for f in ["adapter_model.safetensors", "adapter_config.json"] {
        assert!(
            std::fs::read(out.join(f)).unwrap() == std::fs::read(committed.join(f)).unwrap(),
            "{f} differs from the committed, peft-checked one"
        );
    }
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/peft_check_merge.json").unwrap(),
    )
    .unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["adapter_dir"], "tests/fixtures/merged-by-loracycle/sum");
}

#[test]
fn every_example_spec_parses() {
    let mut n = 0;
    for entry in std::fs::read_dir("examples").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let spec = loracycle::run::RunSpec::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // Serialising and reading back gives the same spec.
            let again = loracycle::run::RunSpec::from_toml(&spec.to_toml(), &path).unwrap();
            assert_eq!(spec, again, "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 4, "{n} example specs");
}

#[test]
fn a_study_runs_its_cells_into_the_run_store_and_is_collected_again() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let base_row =
        "| base | 0.000 [0.000, 0.000] | 0.000 [0.000, 0.000] | – | 10.271 [10.271, 10.271] |";
    let (code, out, err) = run(
        &[
            "study",
            "--tasks",
            "caesar-5",
            "--arms",
            "base",
            "--device",
            "cpu",
            "--runs-dir",
            runs_s,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(base_row), "{out}");
    assert!(
        out.ends_with(&format!("written: {runs_s}/study/study.{{md,csv,json}}\n")),
        "{out}"
    );
    // The cell is a run of the store, like `loracycle run`: status, record, this host.
    let (code, out, err) = run(&["runs", "list", "--json", "--runs-dir", runs_s], &[]);
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let runs_listed = list.as_array().unwrap();
    assert_eq!(runs_listed.len(), 1, "{out}");
    assert_eq!(runs_listed[0]["label"], "caesar-5 / base / seed 0");
    assert_eq!(runs_listed[0]["state"], "finished");
    assert!(!runs_listed[0]["host"].as_str().unwrap().is_empty());
    // --collect knows the study had one cell.
    let (code, out, err) = run(&["study", "--collect", "--runs-dir", runs_s], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(base_row), "{out}");
    assert!(
        out.ends_with(&format!(
            "1 of 1 cells finished; written: {runs_s}/study/study.{{md,csv,json}}\n"
        )),
        "{out}"
    );
    // A study without --runs-dir cannot go to Slurm: the nodes need a shared folder.
    let (code, _, err) = run(&["study", "--emit", "slurm"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--emit slurm needs --runs-dir: a folder on a filesystem that every node of the cluster sees"),
        "{err}"
    );
}

/// A model in the HF cache is found wherever the Python tools would put it: under
/// `$XDG_CACHE_HOME/huggingface/hub` when HF_HOME is unset, and under `$HF_HUB_CACHE` over HF_HOME.
#[test]
fn a_cached_hub_model_is_found_where_the_pool_looks() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(
        tmp.path(),
        "cached.toml",
        "[model]\nbase = \"acme/lab-base\"\n[task]\nlab = \"which-is-smaller\"\n[method]\nkind = \"base\"\n[eval]\nbootstrap = 1\n",
    );
    let cache_at = |hub: &Path| {
        let repo = hub.join("models--acme--lab-base");
        let snap = repo.join("snapshots").join("0123abcd");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            std::fs::copy(Path::new("assets/lab/base").join(f), snap.join(f)).unwrap();
        }
    };
    let xdg = tmp.path().join("xdg");
    cache_at(&xdg.join("huggingface/hub"));
    let hub_cache = tmp.path().join("hub-cache");
    cache_at(&hub_cache);
    let runs = tmp.path().join("runs");
    let runs = runs.to_str().unwrap();
    let home = tmp.path().join("home");
    let cases: [(&str, Vec<(&str, &Path)>); 2] = [
        ("XDG_CACHE_HOME", vec![("XDG_CACHE_HOME", &xdg)]),
        (
            "HF_HUB_CACHE",
            vec![("HF_HUB_CACHE", &hub_cache), ("HF_HOME", &home)],
        ),
    ];
    for (name, env) in cases {
        let mut cmd = Command::cargo_bin("loracycle").unwrap();
        cmd.env_remove("HF_HOME")
            .env_remove("HF_HUB_CACHE")
            .env_remove("XDG_CACHE_HOME")
            .env("HOME", &home);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd
            .args(["run", &spec, "--json", "--runs-dir", runs])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rec["status"], "finished", "{name}");
    }
    // Nowhere: the message names the cache folder it looked in.
    let out = Command::cargo_bin("loracycle")
        .unwrap()
        .env_remove("HF_HOME")
        .env_remove("XDG_CACHE_HOME")
        .env("HF_HUB_CACHE", tmp.path().join("empty"))
        .args(["run", &spec, "--json", "--runs-dir", runs])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "\"acme/lab-base\" not found; looked in acme/lab-base (a folder with config.json) and {} (the HF cache)",
            tmp.path().join("empty/models--acme--lab-base").display()
        )),
        "{err}"
    );
}

/// A run under the paper's protocol: the low-data setting's 10 examples merged into one set,
/// top-k by generated exact match (with the tie it broke reported), and the test split judged
/// the paper's way, long prompts dropped and counted.
#[test]
fn a_paper_protocol_run_selects_by_generation_and_judges_the_papers_way() {
    use loracycle::model::{Template, TextCodec};
    let lab = loracycle::lab::dir().unwrap();
    let cfg = loracycle::model::weights::read_config(&lab.join("base")).unwrap();
    let codec = TextCodec::load(&lab.join("base"), Template::default(), &cfg).unwrap();
    let test = loracycle::eval::read_jsonl(&lab.join("tasks/caesar-5/test.jsonl")).unwrap();
    let mut lengths: Vec<usize> = test
        .iter()
        .map(|e| codec.encode_prompt(None, &e.prompt).unwrap().len())
        .collect();
    lengths.sort();
    // A cap inside the range of prompt lengths, so some prompts reach it.
    let cap = lengths[70];
    let dropped = lengths.iter().filter(|&&n| n >= cap).count();
    assert!(dropped > 0 && dropped < 100, "{lengths:?}");

    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(
        tmp.path(),
        "paper.toml",
        &format!(
            r#"
protocol = "paper"
[pool]
filter = "name~caesar"
[task]
lab = "caesar-5"
train_examples = 10
[selection]
strategy = "top-k"
k = 2
[method]
kind = "average"
[eval]
bootstrap = 100
max_prompt_tokens = {cap}
"#
        ),
    );
    let runs = tmp.path().join("runs");
    let (code, out, err) = run(
        &["run", &spec, "--json", "--runs-dir", runs.to_str().unwrap()],
        &[(
            "LORACYCLE_CACHE_DIR",
            tmp.path().join("cache").to_str().unwrap(),
        )],
    );
    assert_eq!(code, 0, "{err}");
    let rec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rec["spec"]["protocol"], "paper");
    assert_eq!(rec["spec"]["task"]["examples"], 10);
    assert_eq!(rec["spec"]["task"]["combine"], true);
    assert_eq!(rec["spec"]["selection"]["by"], "generated-exact-match");
    // 8 training and 2 validation examples, merged: one set of 10 for both.
    assert_eq!(rec["task"]["train"], 10);
    assert_eq!(rec["task"]["validation"], 10);
    assert_eq!(rec["task"]["matching"], "paper");
    assert_eq!(
        rec["task"]["scoring"],
        serde_json::json!({
            "max_new_tokens": 30,
            "extract": "####",
            "normalize": "paper",
            "max_prompt_tokens": cap,
        })
    );
    assert_eq!(rec["task"]["dropped"], dropped);
    assert_eq!(rec["examples"].as_array().unwrap().len(), 100 - dropped);
    assert_eq!(rec["metrics"]["exact_match"]["n"], 100 - dropped);
    assert!(
        err.contains(&format!(
            "{dropped} of 100 test examples dropped: their prompt has {cap} tokens or more"
        )),
        "{err}"
    );
    // Every candidate was judged on the 10 examples; the ones teacher forcing did not decide
    // were generated.
    let pool = rec["pool"]["usable"].as_u64().unwrap();
    assert!(
        err.contains(&format!("generating answers to select by: {pool}/{pool}")),
        "{err}"
    );
    // The 8 + 2 examples, less those whose prompt reaches the cap (the paper's evaluation
    // filters every split it judges).
    let train = loracycle::eval::read_jsonl(&lab.join("tasks/caesar-5/train.jsonl")).unwrap();
    let val = loracycle::eval::read_jsonl(&lab.join("tasks/caesar-5/validation.jsonl")).unwrap();
    let judged = train[..8]
        .iter()
        .chain(&val[..2])
        .filter(|e| codec.encode_prompt(None, &e.prompt).unwrap().len() < cap)
        .count();
    let generated: usize = err
        .lines()
        .find_map(|l| {
            l.strip_prefix("generated ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no count of generated answers in {err}"));
    assert!(
        err.contains(&format!(
            "generated {generated} of {} answers ({pool} adapters × {judged} examples); teacher forcing decided the rest",
            pool as usize * judged
        )),
        "{err}"
    );
    assert!(generated > 0 && generated <= pool as usize * judged);
    let chosen = rec["chosen"].as_array().unwrap();
    assert_eq!(chosen.len(), 2);
    for c in chosen {
        let em = c["exact_match"].as_f64().unwrap();
        assert_eq!((em * 10.0).round(), em * 10.0, "a count of 10: {em}");
    }
    // No caesar adapter solves caesar-5's examples alone: the whole pool ties at the cut.
    let ties = rec["pool"]["ties"].as_str().unwrap();
    assert_eq!(
        ties,
        format!(
            "warning: most of the pool ties — {pool} of {pool} adapters tie at generated exact match 0.000; the tie-break (answer loss, lower first) chose 2 of the top 2 among them"
        )
    );
    assert!(err.contains(ties), "{err}");
}

/// The paper's other methods as `loracycle run` kinds on the lab, over three pool adapters of
/// mixed ranks (4, 8, 8): zero-step Arrow's test loss equals `loracycle eval --route arrow` over
/// the same adapters, and its coefficient view holds routing weights that sum to 1 where every
/// adapter is a candidate; AdaMerging starts every coefficient at 1/√N; π-Tuning's softmax
/// coefficients span the adapters and the fresh slot and its tuned LoRA is written into the run.
#[test]
fn arrow_adamerging_and_pi_tuning_run_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap().to_string();
    let adapters = ["caesar-11", "caesar-4", "add-mod-10"];
    let selection = format!(
        "[selection]\nstrategy = \"manual\"\nadapters = {adapters:?}\n[eval]\nbootstrap = 50\n"
    );
    let go = |name: &str, method: &str| -> Value {
        let spec = write_spec(
            tmp.path(),
            &format!("{name}.toml"),
            &format!(
                "name = \"{name}\"\nseed = 1\n[task]\nlab = \"caesar-5\"\ntrain_examples = 16\n{selection}[method]\n{method}"
            ),
        );
        let (code, out, err) = run(&["run", &spec, "--json", "--runs-dir", &runs_s], &[]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };

    let arrow = go("arrow", "kind = \"arrow\"\ntop_k = 2\n");
    assert_eq!(arrow["status"], "finished");
    let ranks: Vec<u64> = arrow["chosen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rank"].as_u64().unwrap())
        .collect();
    assert_eq!(ranks, [4, 8, 8]);
    let coef = &arrow["coefficients"];
    assert_eq!(coef["granularity"], "routing");
    assert_eq!(coef["columns"], serde_json::json!(adapters));
    let rows = coef["values"].as_array().unwrap();
    assert_eq!(rows.len(), 4 * 7);
    let mut every_adapter = 0;
    for row in rows {
        let w: Vec<f64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        if w.iter().all(|&x| x > 0.0) {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{w:?}");
            every_adapter += 1;
        }
    }
    assert!(every_adapter > 0, "no module routes to all three adapters");
    let model = arrow["model"]["path"].as_str().unwrap();
    let test = Path::new(model)
        .parent()
        .unwrap()
        .join("tasks/caesar-5/test.jsonl");
    let mut args = vec!["eval", "--model", "lab", "--template", "lab", "--json"];
    args.extend(["--route", "arrow", "--top-k", "2"]);
    args.extend(["--data", test.to_str().unwrap()]);
    for a in &adapters {
        args.extend(["--adapter", a]);
    }
    let (code, out, err) = run(&args, &[]);
    assert_eq!(code, 0, "{err}");
    let eval: Value = serde_json::from_str(&out).unwrap();
    let (run_loss, eval_loss) = (
        arrow["metrics"]["loss"]["mean"].as_f64().unwrap(),
        eval["mean_loss"].as_f64().unwrap(),
    );
    assert!(
        (run_loss - eval_loss).abs() < 1e-5 * eval_loss,
        "run {run_loss} vs eval {eval_loss}"
    );
    let routed: f64 = eval["routing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mean_weight"].as_f64().unwrap())
        .sum();
    assert!((routed - 1.0).abs() < 0.05, "{routed}");

    // A learning rate too small to move them: the coefficients stay at their init, 1/√3.
    let ada = go(
        "adamerging",
        "kind = \"adamerging\"\nsteps = 2\neval_every = 1\nbatch_size = 4\nlr = 1e-9\n",
    );
    assert_eq!(ada["coefficients"]["granularity"], "module");
    let mut at_init = 0;
    for row in ada["coefficients"]["values"].as_array().unwrap() {
        for v in row.as_array().unwrap() {
            let v = v.as_f64().unwrap();
            // 0 where an adapter lacks the module.
            assert!(v == 0.0 || (v - 1.0 / 3f64.sqrt()).abs() < 1e-6, "{v}");
            at_init += usize::from(v != 0.0);
        }
    }
    assert!(at_init >= 4 * 7, "{at_init}");

    let pi = go(
        "pi",
        "kind = \"pi-tuning\"\nsteps = 2\neval_every = 1\nbatch_size = 4\n",
    );
    let coef = &pi["coefficients"];
    let mut columns = adapters.to_vec();
    columns.push("fresh");
    assert_eq!(coef["columns"], serde_json::json!(columns));
    for row in coef["values"].as_array().unwrap() {
        let s: f64 = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!((s - 1.0).abs() < 1e-4, "{row}");
    }
    let lora = runs.join(pi["id"].as_str().unwrap()).join("lora");
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(lora.join("adapter_config.json")).unwrap())
            .unwrap();
    // Every adapter's rank side by side, and the fresh slot's 16.
    assert_eq!(cfg["r"], 4 + 8 + 8 + 16);
    assert!(lora.join("adapter_model.safetensors").is_file());
}
