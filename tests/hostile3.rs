//! Hostile input, round three: nothing the user had is deleted or replaced, and no file or
//! template can make loracycle allocate without bound. Each test here failed on the code before
//! the fix: `task import` swapped a user's folder out and removed it; a parquet footer or a
//! dictionary page asked for tens of gigabytes (the process aborted); writes replaced FIFOs,
//! devices and links with regular files; a template's `strftime_now('%')` panicked and string
//! doubling aborted; a FIFO in a run folder hung `runs list`; escapes reached the terminal.
//!
//! The memory tests run the binary under `prlimit --as` (4 GiB of address space), as a machine
//! with little memory would, and skip loudly where prlimit is missing.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use assert_cmd::Command;

const FIX: &str = "tests/fixtures/tasks";
/// 4 GiB of address space: every reader and `task import` must work inside it.
const AS_LIMIT: &str = "--as=4294967296";

fn cli(home: &Path) -> Command {
    let mut c = Command::cargo_bin("loracycle").unwrap();
    c.env("HF_HOME", home)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_TOKEN");
    c
}

/// The binary under a 4 GiB address-space limit (None where prlimit is missing).
fn limited(home: &Path) -> Option<std::process::Command> {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: prlimit is not installed; the memory limit is not applied");
        return None;
    }
    let mut c = std::process::Command::new("prlimit");
    c.arg(AS_LIMIT)
        .arg(assert_cmd::cargo::cargo_bin("loracycle"))
        .env("HF_HOME", home)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_TOKEN");
    Some(c)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The fixture tasks file with its JSON data, copied into `dir`.
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

fn import_riddles(home: &Path, file: &Path, out: &Path) -> Output {
    cli(home)
        .args(["task", "import"])
        .arg(file)
        .args([
            "--task",
            "riddles",
            "--data-size",
            "10",
            "--offline",
            "--out",
        ])
        .arg(out)
        .output()
        .unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn task_import_replaces_only_a_folder_it_made() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let file = tasks_file(tmp.path());
    let tail = "`task import` replaces only a task folder it made itself. Move it away or \
                import with another --out";

    // A folder of the user's that happens to have the task's name.
    let proj = tmp.path().join("proj");
    std::fs::create_dir_all(proj.join("riddles")).unwrap();
    std::fs::write(proj.join("riddles/notes.txt"), "mine").unwrap();
    let o = import_riddles(&home, &file, &proj);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!(
            "error: {}: holds notes.txt, which `task import` did not write; {tail}",
            proj.join("riddles").display()
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(proj.join("riddles/notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(names(&proj), ["riddles"]);

    // A folder with a task.toml the user wrote (no [source]) is not an import either.
    std::fs::remove_file(proj.join("riddles/notes.txt")).unwrap();
    std::fs::write(proj.join("riddles/task.toml"), "max_new_tokens = 4\n").unwrap();
    let o = import_riddles(&home, &file, &proj);
    assert!(
        stderr(&o).contains(&format!(
            "error: {}: has no task.toml with a [source] table written by `task import`; {tail}",
            proj.join("riddles").display()
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(names(&proj.join("riddles")), ["task.toml"]);

    // A regular file, and a link, with the task's name.
    let flat = tmp.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    std::fs::write(flat.join("riddles"), "a file").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("defs"), flat.join("linked")).unwrap();
    let o = import_riddles(&home, &file, &flat);
    assert!(
        stderr(&o).contains(&format!(
            "error: {}: exists and is not a folder; {tail}",
            flat.join("riddles").display()
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(flat.join("riddles")).unwrap(),
        "a file"
    );
    assert_eq!(names(&flat), ["linked", "riddles"]);

    // Its own import it replaces, as before.
    let fresh = tmp.path().join("fresh");
    for _ in 0..2 {
        let o = import_riddles(&home, &file, &fresh);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(names(&fresh), ["riddles"]);
    assert_eq!(
        names(&fresh.join("riddles")),
        [
            "indices.json",
            "task.toml",
            "test.jsonl",
            "train.jsonl",
            "validation.jsonl"
        ]
    );
}

/// A dataset `lab/bomb` in an HF cache at `home`, whose train split is `file`, and a tasks
/// file naming it.
fn bomb_dataset(dir: &Path, bytes: &[u8]) -> (PathBuf, PathBuf) {
    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    let home = dir.join("hf");
    let repo = home.join("hub/datasets--lab--bomb");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    let split = repo.join("snapshots").join(COMMIT).join("default");
    std::fs::create_dir_all(&split).unwrap();
    std::fs::write(split.join("train-00000-of-00001.parquet"), bytes).unwrap();
    let tasks = dir.join("tasks.yaml");
    std::fs::write(
        &tasks,
        "bomb:\n    path: [\"lab/bomb\"]\n    instruction: Say it.\n    user_input: text\n    \
         assistant_output: label\n    task_type: classification\n    answer_len: short\n",
    )
    .unwrap();
    (home, tasks)
}

/// A parquet file of `rows` rows (text, label) written by the parquet crate.
fn parquet_file(rows: &[(&str, &str)], compression: parquet::basic::Compression) -> Vec<u8> {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let schema = Arc::new(
        parquet::schema::parser::parse_message_type(
            "message schema { REQUIRED BYTE_ARRAY text (UTF8); REQUIRED BYTE_ARRAY label (UTF8); }",
        )
        .unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(compression)
            .set_dictionary_enabled(true)
            .set_dictionary_page_size_limit(usize::MAX)
            .build(),
    );
    let mut out = Vec::new();
    let mut w = SerializedFileWriter::new(&mut out, schema, props).unwrap();
    let mut group = w.next_row_group().unwrap();
    for col in 0..2 {
        let values: Vec<ByteArray> = rows
            .iter()
            .map(|r| ByteArray::from(if col == 0 { r.0 } else { r.1 }))
            .collect();
        let mut c = group.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .unwrap();
        c.close().unwrap();
    }
    group.close().unwrap();
    w.close().unwrap();
    out
}

/// `bytes` with its footer's row counts (the file's and every row group's) set to `rows`.
fn claim_rows(bytes: &[u8], rows: i64) -> Vec<u8> {
    use parquet_format_safe::FileMetaData;
    use parquet_format_safe::thrift::protocol::{TCompactInputProtocol, TCompactOutputProtocol};
    let n = bytes.len();
    let footer_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
    let footer = &bytes[n - 8 - footer_len..n - 8];
    let mut meta =
        FileMetaData::read_from_in_protocol(&mut TCompactInputProtocol::new(footer, 1 << 20))
            .unwrap();
    meta.num_rows = rows;
    for g in &mut meta.row_groups {
        g.num_rows = rows;
    }
    let mut new_footer = Vec::new();
    meta.write_to_out_protocol(&mut TCompactOutputProtocol::new(&mut new_footer))
        .unwrap();
    let mut out = bytes[..n - 8 - footer_len].to_vec();
    out.extend_from_slice(&new_footer);
    out.extend_from_slice(&(new_footer.len() as u32).to_le_bytes());
    out.extend_from_slice(b"PAR1");
    out
}

fn import_bomb(dir: &Path, bytes: &[u8]) -> Option<Output> {
    let (home, tasks) = bomb_dataset(dir, bytes);
    let mut c = limited(&home)?;
    Some(
        c.args(["task", "import"])
            .arg(&tasks)
            .args(["--task", "bomb", "--offline", "--out"])
            .arg(dir.join("out"))
            .output()
            .unwrap(),
    )
}

#[test]
fn a_parquet_footer_claiming_billions_of_rows_is_refused_without_allocating() {
    let rows: Vec<(String, String)> = (0..20)
        .map(|i| (format!("question {i}"), format!("{}", i % 4)))
        .collect();
    let rows: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let honest = parquet_file(&rows, parquet::basic::Compression::SNAPPY);
    for claim in [1i64 << 26, 1 << 31, 1_000_000_000] {
        let tmp = tempfile::tempdir().unwrap();
        let bomb = claim_rows(&honest, claim);
        let Some(o) = import_bomb(tmp.path(), &bomb) else {
            return;
        };
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "train-00000-of-00001.parquet: the footer claims {claim} rows in a file of {} \
                 bytes (at most 16 rows a byte are believed); the file is damaged or built to \
                 exhaust memory",
                bomb.len()
            )),
            "{err}"
        );
        assert!(!tmp.path().join("out/bomb").exists());
    }
}

#[test]
fn a_dictionary_page_that_decompresses_to_128_mb_is_refused() {
    let big = "x".repeat(128 << 20);
    let rows: Vec<(&str, &str)> = (0..40).map(|_| (big.as_str(), "0")).collect();
    let bytes = parquet_file(&rows, parquet::basic::Compression::ZSTD(Default::default()));
    drop(big);
    assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
    let tmp = tempfile::tempdir().unwrap();
    let Some(o) = import_bomb(tmp.path(), &bytes) else {
        return;
    };
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "row group 0: column text: a page decompresses to 134217732 bytes (at most 64 MiB \
             are read); the file is damaged or built to exhaust memory"
        ),
        "{err}"
    );
}

#[test]
fn outputs_never_replace_what_is_not_a_regular_file() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("fifo");
    mkfifo(&fifo);
    let target = tmp.path().join("real.jsonl");
    std::fs::write(&target, "keep").unwrap();
    let link = tmp.path().join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let cases: [(&Path, String); 3] = [
        (
            &fifo,
            "not a regular file (a FIFO); loracycle replaces only regular files".into(),
        ),
        (
            Path::new("/dev/full"),
            "not a regular file (a character device); loracycle replaces only regular files".into(),
        ),
        (
            &link,
            format!(
                "a symbolic link (to {}); loracycle does not replace a link: name the file it \
                 points to, to write there",
                target.display()
            ),
        ),
    ];
    for (path, why) in cases {
        let o = Command::cargo_bin("loracycle")
            .unwrap()
            .args([
                "eval",
                "--model",
                "lab",
                "--data",
                "tests/fixtures/data.jsonl",
            ])
            .args(["--device", "cpu", "--dump-tokens"])
            .arg(path)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!("error: writing {}: {why}\n", path.display())
        );
    }
    let ft = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&ft));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &std::fs::metadata("/dev/full").unwrap().file_type()
    ));
}

/// `eval` of the chat fixture with `template` as its chat template, under the memory limit.
fn eval_with_template(template: &str) -> Option<Output> {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(
            Path::new("tests/fixtures/chat/llama31").join(f),
            model.join(f),
        )
        .unwrap();
    }
    std::fs::write(model.join("chat_template.jinja"), template).unwrap();
    let mut c = limited(tmp.path())?;
    Some(
        c.args(["eval", "--model"])
            .arg(&model)
            .args([
                "--data",
                "tests/fixtures/chat/rows.jsonl",
                "--template",
                "chat",
            ])
            .args(["--device", "cpu"])
            .output()
            .unwrap(),
    )
}

#[test]
fn a_chat_template_cannot_panic_or_exhaust_memory() {
    let cases = [
        (
            "{{ strftime_now('%') }}",
            "invalid operation: strftime_now: \"%\" is not a strftime format",
        ),
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s \
             %}{% endfor %}{{ ns.s|length }}",
            "it needed more than 256 MiB of memory; a chat template needs a few kilobytes \
             beyond its messages",
        ),
        (
            "{% set s = 'x' * 100000 %}{{ range(100000)|map('string')|map('replace', '', s)\
             |join }}",
            "it needed more than 256 MiB of memory",
        ),
        (
            "{% for i in range(100000) %}{{ 'y' * 100000 }}{% endfor %}",
            "the conversation it renders is longer than 8 MiB",
        ),
    ];
    for (template, want) in cases {
        let Some(o) = eval_with_template(template) else {
            return;
        };
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{template}: {err}");
        assert!(err.contains(want), "{template}: {err}");
        assert!(err.contains("chat_template.jinja"), "{template}: {err}");
    }
    // A message the template raises is printed without its control characters.
    let Some(o) =
        eval_with_template("{{ raise_exception('no \u{1b}]0;PWNED\u{7}\u{1b}[2J way') }}")
    else {
        return;
    };
    assert!(!o.stderr.contains(&0x1b), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no ?]0;PWNED??[2J way"),
        "{}",
        stderr(&o)
    );
}

/// A runs directory with one run folder whose files are `status` and `record` (each made by
/// the closure given the path).
fn run_folder(root: &Path, id: &str, make: impl Fn(&Path)) {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    make(&dir);
}

fn mkfifo(p: &Path) {
    assert!(
        std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn a_run_folder_of_fifos_and_devices_is_listed_as_unreadable_not_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    run_folder(&runs, "20261201T000000Z-fifo-record-0001", |d| {
        mkfifo(&d.join("record.json"));
    });
    run_folder(&runs, "20261201T000000Z-fifo-status-0002", |d| {
        mkfifo(&d.join("status.json"));
    });
    run_folder(&runs, "20261201T000000Z-zero-0003", |d| {
        std::os::unix::fs::symlink("/dev/zero", d.join("record.json")).unwrap();
    });
    let o = Command::cargo_bin("loracycle")
        .unwrap()
        .args(["runs", "list", "--runs-dir"])
        .arg(&runs)
        .timeout(std::time::Duration::from_secs(30))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(&o));
    for id in ["fifo-record-0001", "fifo-status-0002", "zero-0003"] {
        assert!(out.contains(id), "{out}");
    }
    assert!(out.contains("not a regular file (a FIFO)"), "{out}");
    assert!(
        out.contains("not a regular file (a character device)"),
        "{out}"
    );
    // show, compare, export and rm answer too.
    for args in [
        vec!["runs", "show", "20261201T000000Z-fifo-record-0001"],
        vec!["runs", "compare", "20261201T000000Z-fifo-record-0001"],
        vec!["runs", "export", "20261201T000000Z-zero-0003", "--out"],
    ] {
        let mut c = Command::cargo_bin("loracycle").unwrap();
        c.args(&args);
        if args.last() == Some(&"--out") {
            c.arg(tmp.path().join("export"));
        }
        let o = c
            .arg("--runs-dir")
            .arg(&runs)
            .timeout(std::time::Duration::from_secs(30))
            .output()
            .unwrap();
        assert!(
            o.status.code().is_some(),
            "{args:?} did not end by itself: {}",
            stderr(&o)
        );
    }
    let o = Command::cargo_bin("loracycle")
        .unwrap()
        .args([
            "runs",
            "rm",
            "20261201T000000Z-fifo-status-0002",
            "--runs-dir",
        ])
        .arg(&runs)
        .timeout(std::time::Duration::from_secs(30))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!runs.join("20261201T000000Z-fifo-status-0002").exists());
}

#[test]
fn a_run_folder_that_is_a_link_is_not_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&runs).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("status.json"), "{}").unwrap();
    std::os::unix::fs::symlink(&elsewhere, runs.join("20261201T000000Z-linked-0001")).unwrap();
    let o = Command::cargo_bin("loracycle")
        .unwrap()
        .args([
            "runs",
            "rename",
            "20261201T000000Z-linked-0001",
            "mine",
            "--runs-dir",
        ])
        .arg(&runs)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: no run \"20261201T000000Z-linked-0001\" in the runs directory\n"
    );
    assert_eq!(names(&elsewhere), ["status.json"]);
}

#[test]
fn escapes_from_a_run_folder_never_reach_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let id = "20261201T000000Z-evil-0001";
    run_folder(&runs, id, |d| {
        let status = serde_json::json!({
            "id": id,
            "label": "evil\u{1b}]0;PWNED\u{7}\u{1b}[2J",
            "state": "failed",
            "pid": 1,
            "host": "",
            "submitted": "2026-12-01T00:00:00Z",
            "updated": "2026-12-01T00:00:00Z",
            "error": "boom\u{1b}[31m red\r"
        });
        std::fs::write(d.join("status.json"), status.to_string()).unwrap();
    });
    for args in [vec!["runs", "list"], vec!["runs", "show", id]] {
        let o = Command::cargo_bin("loracycle")
            .unwrap()
            .args(&args)
            .arg("--runs-dir")
            .arg(&runs)
            .output()
            .unwrap();
        let all = [o.stdout.clone(), o.stderr.clone()].concat();
        assert!(
            !all.iter().any(|&b| b == 0x1b || b == 0x07 || b == b'\r'),
            "{args:?}: {}",
            String::from_utf8_lossy(&all)
        );
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.contains("evil?]0;PWNED??[2J") || text.contains("boom?[31m red?"),
            "{args:?}: {text}"
        );
    }
}
