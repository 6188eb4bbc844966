//! A copied binary opens the lab it carries, with the source checkout out of sight: no
//! `LORACYCLE_LAB`, started from another folder, and — where the test may make a mount namespace
//! (root, as CI runs) — the checkout folder itself covered by an empty tmpfs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

struct Installed {
    tmp: tempfile::TempDir,
    bin: PathBuf,
    hide_checkout: bool,
}

impl Installed {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let bin_dir = tmp.path().join("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        let bin = bin_dir.join("loracycle");
        std::fs::copy(env!("CARGO_BIN_EXE_loracycle"), &bin).unwrap();
        // Can this process cover the checkout in a private mount namespace?
        let hide_checkout = Command::new("unshare")
            .args(["-m", "sh", "-c", "mount -t tmpfs tmpfs \"$0\"", checkout()])
            .output()
            .is_ok_and(|o| o.status.success());
        if !hide_checkout {
            eprintln!("note: cannot make a mount namespace here; the checkout stays visible");
        }
        Self {
            tmp,
            bin,
            hide_checkout,
        }
    }

    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    fn run(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut cmd = if self.hide_checkout {
            let mut c = Command::new("unshare");
            c.args([
                "-m",
                "sh",
                "-c",
                "mount -t tmpfs tmpfs \"$0\" && exec \"$@\"",
                checkout(),
            ]);
            c.arg(&self.bin);
            c
        } else {
            Command::new(&self.bin)
        };
        cmd.args(args)
            .current_dir(self.tmp.path())
            .env_remove("LORACYCLE_LAB")
            .env_remove("XDG_DATA_HOME")
            .env_remove("LORACYCLE_RUNS_DIR")
            .env("HOME", self.home())
            .env("HF_HOME", self.tmp.path().join("hf"))
            .env("LORACYCLE_CACHE_DIR", self.tmp.path().join("cache"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

fn checkout() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_copied_binary_opens_the_lab_it_carries() {
    let inst = Installed::new();
    let data_lab = inst.home().join(".local/share/loracycle/lab");

    let out = inst.run(&["lab", "where"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = PathBuf::from(text(&out.stdout).trim());
    assert_eq!(dir.parent(), Some(data_lab.as_path()), "{}", dir.display());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "unpacking the lab this binary carries into {}",
            dir.display()
        )) && err.contains("(the lab this binary carries, unpacked)"),
        "{err}"
    );
    // The unpacked lab is the checkout's, file for file.
    for rel in [
        "MANIFEST",
        "base/model.safetensors",
        "tasks/caesar-5/test.jsonl",
    ] {
        assert_eq!(
            std::fs::read(dir.join(rel)).unwrap(),
            std::fs::read(Path::new(checkout()).join("assets/lab").join(rel)).unwrap(),
            "{rel}"
        );
    }

    // A second start reuses it.
    let out = inst.run(&["lab", "where"], &[]);
    assert!(out.status.success());
    assert_eq!(PathBuf::from(text(&out.stdout).trim()), dir);
    assert!(
        !text(&out.stderr).contains("unpacking"),
        "{}",
        text(&out.stderr)
    );

    // The pool and a run work from it.
    let out = inst.run(&["pool", "list", "--source", "lab", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pool_size = std::fs::read_dir(Path::new(checkout()).join("assets/lab/pool"))
        .unwrap()
        .count();
    assert_eq!(listed.as_array().map(Vec::len), Some(pool_size));

    let spec = inst.tmp.path().join("base.toml");
    std::fs::write(
        &spec,
        "[task]\nlab = \"which-is-smaller\"\n[method]\nkind = \"base\"\n[eval]\nbootstrap = 1\n",
    )
    .unwrap();
    let runs = inst.tmp.path().join("runs");
    let out = inst.run(
        &[
            "run",
            spec.to_str().unwrap(),
            "--json",
            "--runs-dir",
            runs.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["label"], "which-is-smaller / base");
    assert_eq!(rec["status"], "finished");
}

#[test]
fn a_lab_variable_naming_no_lab_is_refused_with_the_reason() {
    let inst = Installed::new();
    let nope = inst.tmp.path().join("nope");
    let out = inst.run(&["lab", "where"], &[("LORACYCLE_LAB", &nope)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: LORACYCLE_LAB is {}, which is not a lab folder (no base/config.json); unset it to use the lab this binary carries\n",
            nope.display()
        )
    );
}
