//! `task import` against goldens from Hugging Face `datasets` (tests/fixtures/tasks/make_tasks.py):
//! small parquet datasets laid out in a temporary HF cache (the Hub's parquet conversion branch
//! and `push_to_hub`'s main branch), a local JSON file, a tasks file in the paper's format; the
//! rows each split picks for several data sizes and seeds, and their rendering, must be exactly
//! what `datasets` and the paper's rules give. Then the CLI end to end, bad input (nothing
//! half-written), the paper's own tasks file, and downloads from a fake Hub.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use assert_cmd::Command;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use loracycle::pool::cache::HfHome;
use loracycle::tasks::import::{self, ImportOptions};
use loracycle::tasks::source::Fetch;
use loracycle::tasks::{define, numpy, value};

const FIX: &str = "tests/fixtures/tasks";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const MAIN: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn golden() -> Value {
    serde_json::from_slice(&std::fs::read(format!("{FIX}/golden.json")).unwrap()).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

fn put(root: &Path, rel: &str, from: &Path) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::copy(from, p).unwrap();
}

/// A temporary HF home: topics and empty as the parquet conversion branch lays them out
/// (`refs/refs/convert/parquet`, `<config>/<split>/0000.parquet`), quiz and pairs as
/// `push_to_hub` does on main (`easy/train-00000-of-00001.parquet`, `data/train_r1-…`).
fn hf_home(dir: &Path) -> PathBuf {
    let hub = dir.join("hf/hub");
    let data = Path::new(FIX).join("data");
    for name in ["topics", "empty"] {
        let repo = hub.join(format!("datasets--lab--{name}"));
        std::fs::create_dir_all(repo.join("refs/refs/convert")).unwrap();
        std::fs::write(repo.join("refs/refs/convert/parquet"), COMMIT).unwrap();
        copy_dir(
            &data.join(format!("lab--{name}")),
            &repo.join("snapshots").join(COMMIT),
        );
    }
    let quiz = hub.join("datasets--lab--quiz");
    std::fs::create_dir_all(quiz.join("refs")).unwrap();
    std::fs::write(quiz.join("refs/main"), MAIN).unwrap();
    // A second config, `hard`, holds the same rows (for combine_subsets).
    for c in ["easy", "hard"] {
        for s in ["train", "validation", "test"] {
            put(
                &quiz.join("snapshots").join(MAIN),
                &format!("{c}/{s}-00000-of-00001.parquet"),
                &data.join(format!("lab--quiz/easy/{s}/0000.parquet")),
            );
        }
    }
    let pairs = hub.join("datasets--lab--pairs");
    std::fs::create_dir_all(pairs.join("refs")).unwrap();
    std::fs::write(pairs.join("refs/main"), MAIN).unwrap();
    for s in ["train_r1", "dev_r1", "test_r1"] {
        put(
            &pairs.join("snapshots").join(MAIN),
            &format!("data/{s}-00000-of-00001.parquet"),
            &data.join(format!("lab--pairs/default/{s}/0000.parquet")),
        );
    }
    dir.join("hf")
}

/// The tasks file and its JSON data, copied beside each other.
fn tasks_file(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("defs/data")).unwrap();
    std::fs::copy(format!("{FIX}/tasks.yaml"), dir.join("defs/tasks.yaml")).unwrap();
    std::fs::copy(
        format!("{FIX}/data/riddles.json"),
        dir.join("defs/data/riddles.json"),
    )
    .unwrap();
    dir.join("defs/tasks.yaml")
}

fn defs(path: &Path) -> Vec<define::TaskDef> {
    define::parse(
        &std::fs::read_to_string(path).unwrap(),
        path.parent().unwrap(),
    )
    .unwrap()
}

fn build(
    def: &define::TaskDef,
    home: &Path,
    size: usize,
    seed: u64,
    file: &Path,
) -> Result<import::Built, String> {
    let mut progress = |_: &str| {};
    let mut fetch = Fetch {
        home: HfHome {
            root: home.to_path_buf(),
        },
        hub: None,
        progress: &mut progress,
    };
    import::build(
        def,
        &mut fetch,
        &ImportOptions {
            out: PathBuf::new(),
            data_size: size,
            seed,
            tasks_file: file,
        },
    )
}

#[test]
fn permutations_are_numpys() {
    let want: BTreeMap<String, Vec<usize>> =
        serde_json::from_slice(&std::fs::read(format!("{FIX}/rng.json")).unwrap()).unwrap();
    assert_eq!(want.len(), 26);
    for (key, perm) in want {
        let (seed, n) = key.split_once('/').unwrap();
        let got = numpy::permutation(seed.parse().unwrap(), n.parse().unwrap());
        assert_eq!(got, perm, "default_rng({seed}).permutation({n})");
    }
}

#[test]
fn splits_and_rows_are_what_datasets_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let home = hf_home(tmp.path());
    let file = tasks_file(tmp.path());
    let defs = defs(&file);
    let g = golden();
    let g = g.as_object().unwrap();
    assert_eq!(g.len(), 16);
    for (key, want) in g {
        let mut it = key.split('/');
        let (task, size, seed) = (
            it.next().unwrap(),
            it.next().unwrap().parse().unwrap(),
            it.next().unwrap().parse().unwrap(),
        );
        let def = defs.iter().find(|d| d.name == task).unwrap();
        let built = build(def, &home, size, seed, &file).unwrap_or_else(|e| panic!("{key}: {e}"));
        for (split, rows) in [
            ("train", &built.train),
            ("validation", &built.validation),
            ("test", &built.test),
        ] {
            let want_rows = want[split].as_array().unwrap();
            let got: Vec<Value> = rows
                .iter()
                .take(want_rows.len())
                .map(|r| json!({"id": r.id, "system": r.system, "prompt": r.prompt, "answer": r.answer}))
                .collect();
            assert_eq!(&got, want_rows, "{key} {split}");
            if let Some(ids) = want.get("test_ids").filter(|_| split == "test") {
                let got: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
                let ids: Vec<&str> = ids
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                assert_eq!(got, ids, "{key}: the 5,000 test rows");
            } else if split != "test" || rows.len() <= 50 {
                assert_eq!(rows.len(), want_rows.len(), "{key} {split} size");
            }
        }
    }
}

#[test]
fn the_paper_tasks_file_reads_as_pyyaml_reads_it() {
    let file = Path::new("examples/paper-tasks.yaml");
    let defs = defs(file);
    let want: Value =
        serde_json::from_slice(&std::fs::read(format!("{FIX}/paper-tasks.json")).unwrap()).unwrap();
    let want = want.as_object().unwrap();
    assert_eq!(defs.len(), want.len());
    assert_eq!(defs.len(), 84);
    for d in &defs {
        let w = &want[&d.name];
        assert_eq!(
            d.instruction,
            w["instruction"].as_str().unwrap(),
            "{}",
            d.name
        );
        assert_eq!(
            d.assistant_output,
            w["assistant_output"].as_str().unwrap(),
            "{}",
            d.name
        );
        assert_eq!(d.answer_len.name(), w["answer_len"].as_str().unwrap());
        let cols: Vec<String> = d.columns();
        match &w["user_input"] {
            Value::String(c) => assert_eq!(cols[0], *c, "{}", d.name),
            Value::Object(m) => {
                // PyYAML's dict, dumped with sorted keys: the same columns, whatever the order.
                let mut want_cols: Vec<String> = m
                    .values()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        o => o["key_name"].as_str().unwrap().to_string(),
                    })
                    .collect();
                want_cols.push(d.assistant_output.clone());
                want_cols.sort();
                want_cols.dedup();
                let mut got = cols.clone();
                got.sort();
                assert_eq!(got, want_cols, "{}", d.name);
            }
            o => panic!("{o}"),
        }
    }
    let b = defs.iter().find(|d| d.name == "banking77").unwrap();
    assert!(
        b.instruction
            .contains("\n76 wrong_exchange_rate_for_cash_withdrawal\n")
    );
    assert!(b.instruction.contains("2 apple_pay_or_google_pay \n"));
    let gsm = defs.iter().find(|d| d.name == "gsm8k").unwrap();
    assert_eq!(gsm.answer_len.max_new_tokens(), 500);
    assert_eq!(
        gsm.source,
        define::Source::Hub {
            dataset: "openai/gsm8k".into(),
            config: Some("main".into()),
            subsets: vec![]
        }
    );
}

fn cli(home: &Path) -> Command {
    let mut c = Command::cargo_bin("loracycle").unwrap();
    c.env("HF_HOME", home)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_TOKEN");
    c
}

#[test]
fn import_list_and_show_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let home = hf_home(tmp.path());
    let file = tasks_file(tmp.path());
    let out = tmp.path().join("tasks");
    let o = cli(&home)
        .args(["task", "import"])
        .arg(&file)
        .args([
            "--task",
            "quiz_easy",
            "--task",
            "riddles",
            "--data-size",
            "10",
        ])
        .args(["--offline", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert!(
        stdout.contains(
            "train 8 · validation 2 · test 9  (max_new_tokens 30, extract ####, normalize paper)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("train 8 · validation 2 · test 3  (max_new_tokens 500"),
        "{stdout}"
    );
    let quiz = out.join("quiz_easy");
    let mut names: Vec<String> = std::fs::read_dir(&quiz)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "indices.json",
            "task.toml",
            "test.jsonl",
            "train.jsonl",
            "validation.jsonl"
        ]
    );
    // The rows are what the goldens say, line by line, and the engine reads them.
    let g = golden();
    let lines: Vec<Value> = std::fs::read_to_string(quiz.join("train.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(Value::Array(lines), g["quiz_easy/10/123"]["train"]);
    let ex = loracycle::eval::read_jsonl(&quiz.join("validation.jsonl")).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(
        ex[0].system.as_deref(),
        Some("Answer the question with the letter of the right choice.\n")
    );
    let indices: Value =
        serde_json::from_slice(&std::fs::read(quiz.join("indices.json")).unwrap()).unwrap();
    let ids = |s: &str| -> Vec<Value> {
        g["quiz_easy/10/123"][s]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].clone())
            .collect()
    };
    assert_eq!(
        indices,
        json!({"train": ids("train"), "valid": ids("validation"), "test": ids("test")})
    );
    // task.toml: the judging settings the engine reads, and the record of the import.
    let s = loracycle::eval::TaskSettings::read(&quiz).unwrap();
    assert_eq!(s.max_new_tokens, Some(30));
    assert_eq!(s.extract, Some(loracycle::eval::Extract::AfterMarker));
    assert_eq!(s.normalize, Some(loracycle::eval::Normalize::Paper));
    let entry = loracycle::tasks::list(&out);
    assert_eq!(entry.len(), 2);
    let src = entry[0].source.as_ref().unwrap();
    assert_eq!(
        (
            src.dataset.as_str(),
            src.config.as_deref(),
            src.data_size,
            src.seed
        ),
        ("lab/quiz", Some("easy"), 10, 123)
    );
    assert_eq!(src.revisions, [MAIN]);
    assert_eq!(src.rows["train"], 8);

    let o = cli(&home)
        .args(["task", "list", "--dir"])
        .arg(&out)
        .output()
        .unwrap();
    let list = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[1].starts_with("quiz_easy "), "{list}");
    assert!(
        lines[1].contains("lab/quiz (easy)")
            && lines[1]
                .contains("     8      2      9  max_new_tokens 30, extract ####, normalize paper"),
        "{list}"
    );
    assert!(
        lines[2].starts_with("riddles ") && lines[2].contains("max_new_tokens 500"),
        "{list}"
    );

    let o = cli(&home)
        .args(["task", "show", "riddles", "-n", "1", "--dir"])
        .arg(&out)
        .output()
        .unwrap();
    let show = String::from_utf8(o.stdout).unwrap();
    let first = &g["riddles/10/123"]["train"][0];
    assert_eq!(
        show,
        format!(
            "riddles: {} · data_size 10 · seed 123 · 8 rows in train\n\n── example 1 of 8 ──\n[system]\n{}\n[user]\n{}\n[assistant]\n{}\n",
            std::fs::canonicalize(tmp.path().join("defs/data/riddles.json"))
                .unwrap()
                .display()
                .to_string()
                .replace("/./", "/"),
            first["system"].as_str().unwrap().trim_end(),
            first["prompt"].as_str().unwrap(),
            first["answer"].as_str().unwrap()
        )
    );
    // With the lab model: its template around the same turns.
    let o = cli(&home)
        .args([
            "task", "show", "riddles", "-n", "1", "--model", "lab", "--dir",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let show = String::from_utf8(o.stdout).unwrap();
    assert!(
        show.contains(&format!(
            "<|begin|><|user|>{}\n{}<|assistant|>{}<|end|>",
            first["system"].as_str().unwrap(),
            first["prompt"].as_str().unwrap(),
            first["answer"].as_str().unwrap()
        )),
        "{show}"
    );

    // A spec names the task by name; the run reads its rows and its task.toml.
    let spec = tmp.path().join("run.toml");
    std::fs::write(
        &spec,
        "[model]\nbase = \"tests/fixtures/tiny\"\n[pool]\nsource = \"dir:tests/fixtures/adapters\"\n\
         [task]\nname = \"riddles\"\n[method]\nkind = \"base\"\n[eval]\nbootstrap = 1\n",
    )
    .unwrap();
    let o = cli(&home)
        .env("LORACYCLE_TASKS_DIR", &out)
        .args(["run", "--json", "--runs-dir"])
        .arg(tmp.path().join("runs"))
        .arg(&spec)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rec: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rec["label"], "riddles / base");
    assert_eq!(
        rec["task"],
        json!({"name": "riddles", "train": 8, "validation": 2, "test": 3, "matching": "paper",
               "scoring": {"max_new_tokens": 500, "extract": "####", "normalize": "paper"}})
    );

    // A second import of the same task replaces the folder whole (here with other sizes).
    let o = cli(&home)
        .args(["task", "import"])
        .arg(&file)
        .args([
            "--task",
            "quiz_easy",
            "--data-size",
            "20",
            "--seed",
            "5",
            "--offline",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        std::fs::read_to_string(quiz.join("train.jsonl"))
            .unwrap()
            .lines()
            .count(),
        16
    );
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Runs an import of `yaml` (written beside the fixture JSON) and returns stderr; the import
/// must fail and leave `out` without a task folder or a temporary one.
fn refused(tmp: &Path, home: &Path, yaml: &str, task: &str) -> String {
    let file = tasks_file(tmp);
    std::fs::write(&file, yaml).unwrap();
    let out = tmp.join("out");
    let o = cli(home)
        .args(["task", "import"])
        .arg(&file)
        .args(["--task", task, "--offline", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    String::from_utf8(o.stderr).unwrap()
}

#[test]
fn bad_input_is_named_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let home = hf_home(tmp.path());
    let def = |path: &str, user: &str, out: &str| {
        format!(
            "t:\n  path: {path}\n  instruction: Say.\n  user_input: {user}\n  assistant_output: {out}\n  answer_len: short\n"
        )
    };
    let cases = [
        (
            def("[lab/topics]", "txt", "label"),
            "error: task t: user_input names column \"txt\", which the test split does not have (its columns: text, label)",
        ),
        (
            def("[lab/quiz, easy]", "{Q: question, WHO: author}", "answerKey"),
            "task t: user_input.WHO names column \"author\", which the test split does not have (its columns: question, choices, tags, answerKey)",
        ),
        (
            def("[lab/quiz, medium]", "question", "answerKey"),
            "error: task t: dataset lab/quiz (config medium) is not in the HF cache (",
        ),
        (
            def("[lab/empty]", "text", "label"),
            "error: task t: the test split (test) is empty",
        ),
        (
            def("[lab/quiz, easy]", "question", "tags"),
            "error: task t: assistant_output (column tags) in row train_0: the label is a list, not a string or an integer",
        ),
        (
            def("[lab/quiz, easy]", "choices", "answerKey"),
            "task t: user_input (column choices) in row train_0: a mapping, not text (name it in a mapping to render it)",
        ),
        (
            "t:\n  path: [lab/pairs]\n  split: {train: train_r1, valid: dev_r2}\n  user_input: premise\n  assistant_output: label\n".into(),
            "task t: split: valid: the dataset has no split \"dev_r2\" (it has dev_r1, test_r1, train_r1)",
        ),
        ("t: [1, 2\n".into(), "not a tasks file (YAML)"),
    ];
    for (yaml, want) in &cases {
        let e = refused(tmp.path(), &home, yaml, "t");
        assert!(e.contains(want), "{yaml}\n{e}");
    }
    // A file that is not parquet, where a split's file should be.
    let bad = home
        .join("hub/datasets--lab--empty/snapshots")
        .join(COMMIT)
        .join("default/test/0000.parquet");
    std::fs::write(&bad, b"PAR1 not really").unwrap();
    let e = refused(tmp.path(), &home, &cases[3].0, "t");
    assert!(
        e.contains("error: task t: ")
            && e.contains("default/test/0000.parquet: not a readable parquet file"),
        "{e}"
    );
    let e = refused(tmp.path(), &home, &cases[0].0, "nope");
    assert!(e.contains("has no task \"nope\" (it has t)"), "{e}");
    let e = refused(tmp.path(), &home, &cases[2].0, "t");
    assert!(
        e.contains("datasets--lab--quiz) and --offline forbids downloading it"),
        "{e}"
    );
}

#[test]
fn combined_subsets_are_concatenated_in_order_and_tagged() {
    let tmp = tempfile::tempdir().unwrap();
    let home = hf_home(tmp.path());
    let file = tasks_file(tmp.path());
    std::fs::write(
        &file,
        "both:\n  path: [lab/quiz]\n  combine_subsets: [easy, hard]\n  instruction: Pick.\n  \
         user_input:\n    SUBJECT: category\n    QUESTION: question\n  assistant_output: answerKey\n",
    )
    .unwrap();
    let def = &defs(&file)[0];
    let built = build(def, &home, 0, 123, &file).unwrap();
    // 40 + 40 train rows, 12 + 12 validation, 9 + 9 test: nothing is cut at data_size 0.
    assert_eq!(
        (built.train.len(), built.validation.len(), built.test.len()),
        (80, 24, 18)
    );
    let quiz = &golden()["quiz_easy/0/123"];
    for (i, r) in built.test.iter().enumerate() {
        assert_eq!(r.id, format!("test_{i}"));
        let config = if i < 9 { "easy" } else { "hard" };
        let question = quiz["test"][i % 9]["prompt"].as_str().unwrap();
        let question = question.split(" [SEP] ").next().unwrap();
        assert_eq!(
            r.prompt,
            format!("SUBJECT - {config} [SEP] \n{question}"),
            "{i}"
        );
    }
    assert_eq!(built.source.config.as_deref(), Some("easy+hard"));
    assert_eq!(built.source.revisions, [MAIN, MAIN]);
}

#[test]
fn json_and_repr_values_keep_pythons_forms() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("rows.jsonl");
    std::fs::write(
        &p,
        "{\"b\": [1, 2.5, null, true], \"a\": {\"z\": \"it's\", \"y\": 1e-7}}\n\n{\"b\": [], \"a\": {}}\n",
    )
    .unwrap();
    let rows = loracycle::tasks::source::read_json(&p).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["b"].py_str().unwrap(), "[1, 2.5, None, True]");
    assert_eq!(
        rows[0]["a"].py_str().unwrap(),
        "{'z': \"it's\", 'y': 1e-07}"
    );
    assert_eq!(rows[1]["a"], value::Value::Map(vec![]));
    std::fs::write(&p, "{\"x\": [1, 2], \"y\": [\"a\"]}").unwrap();
    assert!(
        loracycle::tasks::source::read_json(&p)
            .unwrap_err()
            .ends_with("one JSON object that is not columns of equal length; give a list of records or JSON Lines")
    );
}

/// A fake Hub serving one dataset's parquet listing and files the way huggingface.co does: the
/// listing's URLs (`/api/datasets/{id}/parquet/{config}/{split}/{n}.parquet`) redirect to the
/// conversion branch's `resolve` URLs, which answer with the commit, the ETag (the file's
/// SHA-256) and the size.
struct FakeHub {
    url: String,
    hits: Arc<Mutex<Vec<String>>>,
}

fn fake_hub(listing_other_host: bool) -> FakeHub {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let base = url.clone();
    let hits = Arc::new(Mutex::new(Vec::new()));
    let seen = hits.clone();
    let data = Path::new(FIX).join("data/lab--topics/default");
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let path = req.url().to_string();
            seen.lock().unwrap().push(path.clone());
            let h = |k: &str, v: &str| {
                tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap()
            };
            let respond = |status: u16, body: Vec<u8>, headers: Vec<tiny_http::Header>| {
                let len = body.len();
                tiny_http::Response::new(status.into(), headers, Cursor::new(body), Some(len), None)
            };
            let resp = if path == "/api/datasets/lab/topics/parquet" {
                let host = if listing_other_host {
                    "http://127.0.0.2:9".to_string()
                } else {
                    base.clone()
                };
                let l = json!({"default": {
                    "train": [format!("{host}/api/datasets/lab/topics/parquet/default/train/0.parquet")],
                    "test": [format!("{base}/api/datasets/lab/topics/parquet/default/test/0.parquet")],
                }});
                respond(
                    200,
                    serde_json::to_vec(&l).unwrap(),
                    vec![h("Content-Type", "application/json")],
                )
            } else if let Some(rest) =
                path.strip_prefix("/api/datasets/lab/topics/parquet/default/")
            {
                let split = rest.split('/').next().unwrap();
                respond(
                    302,
                    vec![],
                    vec![h(
                        "Location",
                        &format!(
                            "{base}/datasets/lab/topics/resolve/{COMMIT}/default/{split}/0000.parquet"
                        ),
                    )],
                )
            } else if let Some(rest) =
                path.strip_prefix(&format!("/datasets/lab/topics/resolve/{COMMIT}/default/"))
            {
                let split = rest.split('/').next().unwrap();
                let bytes = std::fs::read(data.join(split).join("0000.parquet")).unwrap();
                let etag = format!("{:x}", Sha256::digest(&bytes));
                let size = bytes.len().to_string();
                respond(
                    200,
                    bytes,
                    vec![
                        h("ETag", &format!("\"{etag}\"")),
                        h("X-Repo-Commit", COMMIT),
                        h("X-Linked-Size", &size),
                    ],
                )
            } else if path.starts_with("/api/datasets/") {
                respond(
                    404,
                    b"{\"error\":\"Repository not found\"}".to_vec(),
                    vec![],
                )
            } else {
                respond(404, b"no route".to_vec(), vec![])
            };
            let _ = req.respond(resp);
        }
    });
    FakeHub { url, hits }
}

/// Imports `topics` through the fake Hub at `url`; returns stderr.
fn import_online(home: &Path, file: &Path, url: &str, out: &Path) -> String {
    let o = cli(home)
        .args(["task", "import"])
        .arg(file)
        .args(["--task", "topics", "--endpoint", url, "--out"])
        .arg(out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    err
}

#[test]
fn a_dataset_missing_from_the_cache_is_fetched_from_the_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let file = tasks_file(tmp.path());
    let out = tmp.path().join("tasks");
    let hub = fake_hub(false);
    let err = import_online(&home, &file, &hub.url, &out);
    assert!(
        err.contains("downloading lab/topics default/train/0000.parquet (1 of 1 for train)"),
        "{err}"
    );
    // In the cache as huggingface_hub lays it out: the ref, the snapshot link and the blob.
    let repo = home.join("hub/datasets--lab--topics");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/refs/convert/parquet")).unwrap(),
        COMMIT
    );
    let snap = repo
        .join("snapshots")
        .join(COMMIT)
        .join("default/train/0000.parquet");
    let bytes = std::fs::read(&snap).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(format!("{FIX}/data/lab--topics/default/train/0000.parquet")).unwrap()
    );
    let target = std::fs::read_link(&snap).unwrap();
    assert_eq!(
        target,
        Path::new("../../../../blobs").join(format!("{:x}", Sha256::digest(&bytes)))
    );
    // The same rows as from a cache the Python tools filled.
    let g = golden();
    let got: Vec<Value> = std::fs::read_to_string(out.join("topics/validation.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(Value::Array(got), g["topics/100/123"]["validation"]);
    // A second import reads the cache and asks the Hub nothing.
    let before = hub.hits.lock().unwrap().len();
    let o = cli(&home)
        .args(["task", "import"])
        .arg(&file)
        .args(["--task", "topics", "--offline", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(hub.hits.lock().unwrap().len(), before);

    // Online, a cached conversion is checked against the listing: a split whose file went
    // missing (a download cut short) is fetched again, and nothing else is.
    std::fs::remove_file(
        repo.join("snapshots")
            .join(COMMIT)
            .join("default/test/0000.parquet"),
    )
    .unwrap();
    let before = hub.hits.lock().unwrap().len();
    let err = import_online(&home, &file, &hub.url, &out);
    assert!(!err.contains("default/train/0000.parquet"), "{err}");
    assert!(
        err.contains("downloading lab/topics default/test/0000.parquet (1 of 1 for test)"),
        "{err}"
    );
    let asked: Vec<String> = hub.hits.lock().unwrap()[before..].to_vec();
    assert_eq!(
        asked,
        [
            "/api/datasets/lab/topics/parquet".to_string(),
            "/api/datasets/lab/topics/parquet/default/test/0.parquet".into(),
            format!("/datasets/lab/topics/resolve/{COMMIT}/default/test/0000.parquet"),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(out.join("topics/test.jsonl"))
            .unwrap()
            .lines()
            .count(),
        5000
    );

    // A config the Hub does not list, and a dataset it does not have.
    std::fs::write(
        &file,
        "a:\n  path: [lab/topics, hard]\n  user_input: text\n  assistant_output: label\n\
         b:\n  path: [lab/nothing]\n  user_input: text\n  assistant_output: label\n",
    )
    .unwrap();
    let o = cli(&home)
        .args(["task", "import"])
        .arg(&file)
        .args(["--all", "--endpoint", &hub.url, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(
            "error: task a: dataset lab/topics has no config \"hard\" (its configs: default)"
        ),
        "{err}"
    );
    assert!(
        err.contains("error: task b: ") && err.contains("not found"),
        "{err}"
    );
    assert!(
        err.contains("2 of 2 task(s) not imported: a, b (nothing was written for them)"),
        "{err}"
    );
    assert!(!out.join("a").exists() && !out.join("b").exists());
}

#[test]
fn a_listing_pointing_elsewhere_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let file = tasks_file(tmp.path());
    let hub = fake_hub(true);
    let o = cli(&home)
        .args(["task", "import"])
        .arg(&file)
        .args(["--task", "topics", "--endpoint", &hub.url, "--out"])
        .arg(tmp.path().join("tasks"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("a listed file is on another host: http://127.0.0.2:9/api/datasets/lab/topics/parquet/default/train/0.parquet"),
        "{err}"
    );
    assert!(!home.join("hub/datasets--lab--topics/snapshots").exists());
    assert!(
        hub.hits
            .lock()
            .unwrap()
            .iter()
            .all(|p| !p.contains("resolve"))
    );
}
