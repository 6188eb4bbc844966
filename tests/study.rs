//! The study's cells, `--emit slurm` and `--collect` on a store written by "other hosts": which
//! cells a plan has, what the emitted files hold, which run counts for a cell, and how unfinished
//! cells are reported (state, error, Slurm state, log tail). No model is loaded here; the real
//! cluster is in tests/slurm.rs.

use std::collections::HashMap;
use std::path::Path;

use loracycle::run::store::{RunState, StatusFile};
use loracycle::run::study::{Cell, Preset, StudyOptions, cells, collect, emit_slurm, select_arms};
use loracycle::slurm::{BatchOptions, SlurmJob};

fn options(tasks: &[&str], seeds: usize, arms: &[&str]) -> StudyOptions {
    StudyOptions {
        preset: Preset::LabPaper,
        model: "lab".into(),
        pool: "lab".into(),
        tasks: tasks.iter().map(|s| s.to_string()).collect(),
        seeds,
        arms: arms.iter().map(|s| s.to_string()).collect(),
        scale: 0.1,
        device: "auto".into(),
    }
}

/// A task folder `mytask` in `dir` with one-row train, validation and test splits.
fn task_folder(dir: &Path) -> std::path::PathBuf {
    let task = dir.join("mytask");
    std::fs::create_dir(&task).unwrap();
    for f in ["train", "validation", "test"] {
        std::fs::write(
            task.join(format!("{f}.jsonl")),
            "{\"prompt\": \"a\", \"answer\": \"b\"}\n",
        )
        .unwrap();
    }
    task
}

fn batch() -> BatchOptions {
    BatchOptions {
        job_name: "loracycle-study".into(),
        ..Default::default()
    }
}

#[test]
fn arms_and_cells() {
    let arms: Vec<String> = select_arms(
        Preset::LabPaper,
        &["gradient/random-init".into(), "BASE".into()],
    )
    .unwrap()
    .into_iter()
    .map(|a| a.label)
    .collect();
    assert_eq!(arms, ["base", "gradient · random-init"]);
    assert_eq!(select_arms(Preset::LabPaper, &[]).unwrap().len(), 35);
    let err = select_arms(Preset::LabPaper, &["gradiant".into()])
        .err()
        .unwrap();
    assert!(
        err.starts_with("no arm \"gradiant\" in the lab-paper preset; the arms are: base, new LoRA, average, average · +oracle, "),
        "{err}"
    );
    let c = cells(&options(&["caesar-5", "table-m"], 2, &["base", "gradient"])).unwrap();
    let names: Vec<String> = c.iter().map(|(cell, _)| cell.name()).collect();
    assert_eq!(
        names,
        [
            "caesar-5 / base / seed 0",
            "caesar-5 / gradient / seed 0",
            "caesar-5 / base / seed 1",
            "caesar-5 / gradient / seed 1",
            "table-m / base / seed 0",
            "table-m / gradient / seed 0",
            "table-m / base / seed 1",
            "table-m / gradient / seed 1",
        ]
    );
    // The spec carries the cell: name, seed, task, the scaled recipe.
    let (cell, spec) = &c[3];
    assert_eq!(
        (cell.index, spec.seed, spec.name.as_str()),
        (3, 1, "caesar-5 / gradient / seed 1")
    );
    assert_eq!(spec.task.lab.as_deref(), Some("caesar-5"));
    assert!(
        spec.to_toml().contains("steps = 10\n"),
        "{}",
        spec.to_toml()
    );
    assert_eq!(
        Cell::parse("table-m / TIES · +oracle / seed 4"),
        Some(("table-m".into(), "TIES · +oracle".into(), 4))
    );
    let err = cells(&options(&["caesar-6"], 1, &[])).err().unwrap();
    assert!(
        err.starts_with("\"caesar-6\" is not a held-out lab task; they are: "),
        "{err}"
    );
}

#[test]
fn emit_writes_cells_plan_and_script() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let study = runs.join("study");
    let e = emit_slurm(
        &options(&["caesar-5", "table-m"], 2, &["base", "gradient"]),
        &runs,
        &study,
        &batch(),
        Path::new("/opt/loracycle"),
    )
    .unwrap();
    let mut files: Vec<String> = std::fs::read_dir(&e.cells_dir)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        (0..8).map(|i| format!("{i:04}.toml")).collect::<Vec<_>>()
    );
    let spec = loracycle::run::RunSpec::read(&e.cells_dir.join("0005.toml")).unwrap();
    assert_eq!(spec.name, "table-m / gradient / seed 0");
    let script = std::fs::read_to_string(&e.script).unwrap();
    assert!(script.contains("#SBATCH --array=0-7\n"), "{script}");
    assert!(
        script.ends_with(&format!(
            "exec '/opt/loracycle' run '{}'/\"$cell\".toml --runs-dir '{}'\n",
            e.cells_dir.display(),
            runs.display()
        )),
        "{script}"
    );
    let plan = loracycle::run::study::Plan::read(&study).unwrap();
    assert_eq!(plan.cells.len(), 8);
    assert_eq!(plan.runs_dir, runs);
    // A smaller plan in the same folder leaves no cell file that nobody would run.
    emit_slurm(
        &options(&["caesar-5"], 1, &["base"]),
        &runs,
        &study,
        &batch(),
        Path::new("/x"),
    )
    .unwrap();
    let left: Vec<_> = std::fs::read_dir(&e.cells_dir).unwrap().collect();
    assert_eq!(left.len(), 1);
    assert!(
        std::fs::read_to_string(&e.script)
            .unwrap()
            .contains("#SBATCH --array=0-0\n")
    );
    // Bad scheduler values never reach the script.
    let mut bad = batch();
    bad.time = Some("1 hour".into());
    let err = emit_slurm(
        &options(&["caesar-5"], 1, &["base"]),
        &runs,
        &study,
        &bad,
        Path::new("/x"),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "--time \"1 hour\" is not a plain Slurm value (letters, digits and - _ : . , only)"
    );
}

/// Copies a fixture run as the run of a study cell written by another host under Slurm.
fn fake_run(runs: &Path, fixture: &str, id: &str, cell: &str, submitted: &str, task: u32) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ui/runs")
        .join(fixture);
    let dir = runs.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("record.json")).unwrap()).unwrap();
    record["id"] = id.into();
    record["label"] = cell.into();
    record["spec"]["name"] = cell.into();
    record["started"] = submitted.into();
    std::fs::write(dir.join("record.json"), record.to_string()).unwrap();
    write_status(&dir, id, cell, RunState::Finished, submitted, None, task);
}

fn write_status(
    dir: &Path,
    id: &str,
    cell: &str,
    state: RunState,
    submitted: &str,
    error: Option<&str>,
    task: u32,
) {
    std::fs::create_dir_all(dir).unwrap();
    let s = StatusFile {
        id: id.into(),
        label: cell.into(),
        state,
        pid: 4242,
        pid_start: None,
        host: "gpu-node-7".into(),
        slurm: Some(SlurmJob {
            job_id: format!("{}", 100 + task),
            array_job_id: Some("41".into()),
            array_task_id: Some(task),
        }),
        submitted: submitted.into(),
        updated: submitted.into(),
        stage: None,
        error: error.map(String::from),
    };
    std::fs::write(dir.join("status.json"), serde_json::to_string(&s).unwrap()).unwrap();
}

/// A problem's cell, index, state, Slurm state and error.
type Brief = (
    String,
    Option<usize>,
    String,
    Option<String>,
    Option<String>,
);

#[test]
fn collect_counts_the_latest_finished_run_and_reports_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let study = runs.join("study");
    let mut e = emit_slurm(
        &options(&["caesar-5", "table-m"], 2, &["base", "gradient"]),
        &runs,
        &study,
        &batch(),
        Path::new("/opt/loracycle"),
    )
    .unwrap();
    e.plan.jobs.push(loracycle::run::study::Submission {
        job_id: "41".into(),
        submitted: "2026-11-29T08:00:00Z".into(),
    });
    e.plan.write(&study).unwrap();
    // Cell 0 finished; cell 1 finished twice (the later run, exact match 0.79, counts).
    fake_run(
        &runs,
        "20261129T035014Z-caesar-5-base-1512",
        "a-base",
        "caesar-5 / base / seed 0",
        "2026-11-29T08:01:00Z",
        0,
    );
    fake_run(
        &runs,
        "20261129T035014Z-caesar-5-gradient-random-init-107e",
        "b-old",
        "caesar-5 / gradient / seed 0",
        "2026-11-29T08:01:00Z",
        1,
    );
    fake_run(
        &runs,
        "20261129T035014Z-caesar-5-gradient-b7cf",
        "c-new",
        "caesar-5 / gradient / seed 0",
        "2026-11-29T09:01:00Z",
        1,
    );
    // Cell 2 failed, with a log; cell 3 never started and Slurm still has it pending.
    write_status(
        &runs.join("d-failed"),
        "d-failed",
        "caesar-5 / base / seed 1",
        RunState::Failed,
        "2026-11-29T08:02:00Z",
        Some("CUDA out of memory"),
        2,
    );
    std::fs::write(
        study.join("logs/cell-0002.41.log"),
        "loracycle: cell 0002 on gpu-node-7 as job 102\nscoring 3/119\rscoring 119/119\nerror: CUDA out of memory\n",
    )
    .unwrap();
    let slurm = |ids: &[&str]| -> HashMap<String, String> {
        assert!(ids.contains(&"41"), "{ids:?}");
        [
            ("41_0", "COMPLETED"),
            ("41_1", "COMPLETED"),
            ("41_2", "FAILED"),
            ("41_3", "PENDING"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let (report, problems) = collect(&runs, &study, &slurm).unwrap();
    let rows: Vec<(String, String, u64, f64, String)> = report
        .rows
        .iter()
        .map(|r| {
            (
                r.task.clone(),
                r.arm.clone(),
                r.seed,
                r.exact_match,
                r.run_id.clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("caesar-5".into(), "base".into(), 0, 0.0, "a-base".into()),
            (
                "caesar-5".into(),
                "gradient".into(),
                0,
                0.79,
                "c-new".into()
            ),
        ]
    );
    assert_eq!(report.tasks, ["caesar-5", "table-m"]);
    assert_eq!(report.seeds, 2);
    assert_eq!(
        report
            .summary
            .iter()
            .map(|a| a.arm.as_str())
            .collect::<Vec<_>>(),
        ["base", "gradient"]
    );
    let brief: Vec<Brief> = problems
        .iter()
        .map(|p| {
            (
                p.cell.clone(),
                p.index,
                p.state.clone(),
                p.slurm.clone(),
                p.error.clone(),
            )
        })
        .collect();
    assert_eq!(
        brief[0],
        (
            "caesar-5 / base / seed 1".into(),
            Some(2),
            "failed".into(),
            Some("FAILED".into()),
            Some("CUDA out of memory".into())
        )
    );
    assert_eq!(
        brief[1],
        (
            "caesar-5 / gradient / seed 1".into(),
            Some(3),
            "missing".into(),
            Some("PENDING".into()),
            None
        )
    );
    assert_eq!(
        brief[2],
        (
            "table-m / base / seed 0".into(),
            Some(4),
            "missing".into(),
            None,
            None
        )
    );
    assert_eq!(problems.len(), 6);
    assert_eq!(problems[0].run_id.as_deref(), Some("d-failed"));
    assert_eq!(
        problems[0].log.as_deref(),
        Some(study.join("logs/cell-0002.41.log").as_path())
    );
    assert_eq!(
        problems[0].log_tail,
        [
            "loracycle: cell 0002 on gpu-node-7 as job 102",
            "scoring 119/119",
            "error: CUDA out of memory"
        ]
    );
    assert!(problems[1].log.is_none() && problems[1].log_tail.is_empty());
    // The table files are written, and a per-task cell without runs shows a dash.
    let md = std::fs::read_to_string(study.join("study.md")).unwrap();
    assert!(
        md.contains("| caesar-5 (relative in pool) | 0.00 | 0.79 |\n"),
        "{md}"
    );
    assert!(md.contains("| table-m | – | – |\n"), "{md}");
    let csv = std::fs::read_to_string(study.join("study.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3);
}

/// The paper preset: the paper's arms (TSV among them, each on the random-init pool too, no
/// oracle arms), every run under the paper's protocol, on a task folder and any model.
#[test]
fn the_paper_preset_runs_the_papers_arms_under_its_protocol() {
    let arms: Vec<String> = select_arms(Preset::Paper, &[])
        .unwrap()
        .into_iter()
        .map(|a| a.label)
        .collect();
    assert_eq!(
        arms,
        [
            "base",
            "new LoRA",
            "average",
            "average · random-init",
            "TIES",
            "TIES · random-init",
            "TSV",
            "TSV · random-init",
            "LoraHub",
            "LoraHub · random-init",
            "gradient",
            "gradient · random-init",
            "AdaMerging",
            "AdaMerging · random-init",
            "Arrow",
            "Arrow · random-init",
            "π-Tuning",
            "π-Tuning · random-init",
        ]
    );
    let tmp = tempfile::tempdir().unwrap();
    let task = task_folder(tmp.path());
    let task_arg = task.to_str().unwrap();
    let mut opts = options(&[task_arg, "caesar-5"], 1, &["new LoRA", "TSV"]);
    opts.preset = Preset::Paper;
    opts.model = "meta-llama/Llama-3.1-8B-Instruct".into();
    opts.pool = "cache".into();
    opts.scale = 1.0;
    let c = cells(&opts).unwrap();
    assert_eq!(c.len(), 4);
    let (cell, spec) = &c[1];
    assert_eq!(cell.name(), format!("{task_arg} / TSV / seed 0"));
    let toml = spec.to_toml();
    for line in [
        "protocol = \"paper\"",
        "dtype = \"auto\"",
        "base = \"meta-llama/Llama-3.1-8B-Instruct\"",
        "source = \"cache\"",
        "examples = 100",
        "by = \"generated-exact-match\"",
        "kind = \"tsv\"",
        "weights = \"equal\"",
    ] {
        assert!(toml.lines().any(|l| l == line), "{line} in\n{toml}");
    }
    // The written cell reads back as the same run (what a Slurm array task does).
    let back = loracycle::run::spec::RunSpec::from_toml(&toml, Path::new("cell.toml")).unwrap();
    assert_eq!(&back, spec);
    let (_, lora) = &c[2];
    let toml = lora.to_toml();
    assert!(
        toml.contains("checkpoint_every = 10\n") && toml.contains("final_lr_frac = 0.0\n"),
        "{toml}"
    );
    assert_eq!(lora.task.lab.as_deref(), Some("caesar-5"));
    // A folder without its files.
    let mut bad = opts.clone();
    bad.tasks = vec![tmp.path().to_str().unwrap().to_string()];
    let err = cells(&bad).err().unwrap();
    assert!(
        err.contains("is neither a held-out lab task") && err.ends_with("train.jsonl is missing"),
        "{err}"
    );
    // The lab preset takes lab tasks only.
    let err = cells(&options(&[task_arg], 1, &[])).err().unwrap();
    assert!(err.contains("is not a held-out lab task"), "{err}");
}

/// Cells that ran apart (a Slurm array) knew none of each other's ids: `--collect` links them
/// as a study run here does, beside the records, so Compare pairs each arm with its twin and
/// base.
#[test]
fn collect_links_each_arm_to_its_twin_and_base() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let study = runs.join("study");
    emit_slurm(
        &options(
            &["caesar-5"],
            1,
            &["base", "gradient", "gradient/random-init"],
        ),
        &runs,
        &study,
        &batch(),
        Path::new("/opt/loracycle"),
    )
    .unwrap();
    for (fixture, id, cell, task) in [
        (
            "20261129T035014Z-caesar-5-base-1512",
            "a-base",
            "caesar-5 / base / seed 0",
            0,
        ),
        (
            "20261129T035014Z-caesar-5-gradient-b7cf",
            "b-grad",
            "caesar-5 / gradient / seed 0",
            1,
        ),
        (
            "20261129T035014Z-caesar-5-gradient-random-init-107e",
            "c-twin",
            "caesar-5 / gradient · random-init / seed 0",
            2,
        ),
    ] {
        fake_run(&runs, fixture, id, cell, "2026-11-29T08:01:00Z", task);
        // As a cell writes it: no link to the other cells.
        let path = runs.join(id).join("record.json");
        let mut r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let spec = r["spec"].as_object_mut().unwrap();
        spec.remove("parent");
        spec["controls"].as_object_mut().unwrap().remove("queue");
        std::fs::write(&path, r.to_string()).unwrap();
    }
    let none = |_: &[&str]| HashMap::new();
    let (report, problems) = collect(&runs, &study, &none).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(report.rows.len(), 3);
    let store = loracycle::run::store::RunStore::open(&runs).unwrap();
    let twin = store.read_record("c-twin").unwrap().unwrap();
    let parent = twin.spec.parent.clone().unwrap();
    assert_eq!(
        (parent.id.as_str(), parent.role.name()),
        ("b-grad", "random-init")
    );
    let grad = store.read_record("b-grad").unwrap().unwrap();
    assert_eq!(grad.spec.controls.reused["base"], "a-base");
    // The records stay as the cells wrote them; the links are annotations beside them.
    let on_disk = std::fs::read_to_string(runs.join("c-twin/record.json")).unwrap();
    assert!(!on_disk.contains("\"parent\""));
    let records = [&grad, &twin, &store.read_record("a-base").unwrap().unwrap()];
    let rows = loracycle::run::compare::rows(&records, &[0]);
    assert_eq!(rows[0].twin.as_deref(), Some("c-twin"));
    assert_eq!(rows[0].base.as_deref(), Some("a-base"));
    // A second collect finds them linked and leaves them be.
    let before = std::fs::read_to_string(runs.join("c-twin/annotations.json")).unwrap();
    collect(&runs, &study, &none).unwrap();
    assert_eq!(
        std::fs::read_to_string(runs.join("c-twin/annotations.json")).unwrap(),
        before
    );
}

/// The paper's other methods and the selection ablations as arms: each named as a user types it,
/// with the settings the paper gives it; π-Tuning on a task folder needs the task's own adapter
/// (in `adapter/`): left out of a default study without one (with a line saying so), an error
/// when asked for by name.
#[test]
fn the_other_methods_and_selection_ablations_are_arms() {
    let c = cells(&options(
        &["caesar-5"],
        1,
        &[
            "pi-tuning",
            "arrow/random-init",
            "average/random-30",
            "gradient/top-5",
            "adamerging",
            "tsv",
        ],
    ))
    .unwrap();
    let toml: Vec<(String, String)> = c
        .iter()
        .map(|(cell, spec)| (cell.arm.clone(), spec.to_toml()))
        .collect();
    let arms: Vec<&str> = toml.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        arms,
        [
            "TSV",
            "AdaMerging",
            "Arrow · random-init",
            "π-Tuning",
            "average · random 30",
            "gradient · top-5",
        ]
    );
    let has = |arm: usize, lines: &[&str]| {
        for l in lines {
            assert!(
                toml[arm].1.lines().any(|x| x == *l),
                "{l} in {}:\n{}",
                toml[arm].0,
                toml[arm].1
            );
        }
    };
    has(0, &["kind = \"tsv\"", "k = 30"]);
    // The study's scale (0.1) takes AdaMerging's 100 steps to 10.
    has(
        1,
        &["kind = \"adamerging\"", "init = \"equal\"", "steps = 10"],
    );
    has(
        2,
        &[
            "kind = \"arrow\"",
            "top_k = 4",
            "train = false",
            "random_init = \"pooled\"",
        ],
    );
    has(
        3,
        &[
            "kind = \"pi-tuning\"",
            "strategy = \"similar\"",
            "to = \"task\"",
            "k = 20",
            "measure = \"quasi-fim\"",
            "fresh = true",
        ],
    );
    has(
        4,
        &["strategy = \"random\"", "k = 30", "kind = \"average\""],
    );
    has(5, &["strategy = \"top-k\"", "k = 5", "kind = \"gradient\""]);

    // The paper preset on a task folder without its own adapter.
    let tmp = tempfile::tempdir().unwrap();
    let task = task_folder(tmp.path());
    let t = task.to_str().unwrap();
    let mut opts = options(&[t], 1, &[]);
    opts.preset = Preset::Paper;
    opts.model = "meta-llama/Llama-3.1-8B-Instruct".into();
    opts.pool = "cache".into();
    let names = |opts: &StudyOptions| -> Vec<String> {
        cells(opts)
            .unwrap()
            .into_iter()
            .map(|(c, _)| c.arm)
            .collect()
    };
    assert_eq!(names(&opts).len(), 16);
    assert!(!names(&opts).iter().any(|a| a.contains("π-Tuning")));
    assert_eq!(
        loracycle::run::study::left_out(&opts),
        [
            format!(
                "{t} / π-Tuning: left out (it selects by closeness to the task's own adapter; put that adapter in {t}/adapter)"
            ),
            format!(
                "{t} / π-Tuning · random-init: left out (it selects by closeness to the task's own adapter; put that adapter in {t}/adapter)"
            ),
        ]
    );
    let mut asked = opts.clone();
    asked.arms = vec!["pi-tuning".into()];
    assert_eq!(
        cells(&asked).err().unwrap(),
        format!(
            "arm π-Tuning selects by closeness to the task's own adapter, and {t} has none: put it in {t}/adapter or leave the arm out of --arms"
        )
    );
    // With the adapter beside the splits, π-Tuning is in, measuring closeness to it.
    let own = task.join("adapter");
    std::fs::create_dir(&own).unwrap();
    std::fs::write(own.join("adapter_config.json"), "{}").unwrap();
    assert_eq!(names(&opts).len(), 18);
    assert!(loracycle::run::study::left_out(&opts).is_empty());
    let c = cells(&asked).unwrap();
    assert_eq!(c[0].1.task.oracle_adapter.as_deref(), Some(own.as_path()));
}
