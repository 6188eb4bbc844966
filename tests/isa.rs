//! One binary for every x86-64 processor: the AVX-512 GEMM kernels are picked at run time, and
//! the same release binary runs, with the same numbers, on processors without them.
//!
//! The binary is run under QEMU's user-mode emulator with CPU models that lack AVX-512 (Haswell:
//! AVX2 + FMA; Nehalem: neither), where the processor's CPUID — which the kernels' dispatch
//! reads — says so. `.ci/run` installs `qemu-user` and sets LORACYCLE_QEMU_REQUIRED; elsewhere the
//! test skips with a note when `qemu-x86_64` is missing.
#![cfg(target_arch = "x86_64")]

use std::process::Command;

use serde_json::Value;

const EVAL: [&str; 12] = [
    "eval",
    "--model",
    "tests/fixtures/tiny",
    "--data",
    "tests/fixtures/data.jsonl",
    "--device",
    "cpu",
    "--json",
    "--template",
    "raw",
    "--adapter",
    "tests/fixtures/adapters/all-r8-rslora",
];

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_loracycle")
}

fn run(emulated_cpu: Option<&str>, args: &[&str]) -> String {
    let mut cmd = match emulated_cpu {
        Some(cpu) => {
            let mut c = Command::new("qemu-x86_64");
            c.args(["-cpu", cpu, bin()]);
            c
        }
        None => Command::new(bin()),
    };
    let out = cmd.args(args).output().expect("start the binary");
    assert!(
        out.status.success(),
        "{emulated_cpu:?} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn losses(report: &str) -> Vec<f64> {
    let v: Value = serde_json::from_str(report).unwrap();
    v["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loss"].as_f64().unwrap())
        .collect()
}

fn qemu_present() -> bool {
    Command::new("qemu-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn version_names_the_kernels_this_processor_runs() {
    let v = run(None, &["--version"]);
    let want = format!("GEMM kernels {}", loracycle::process::gemm_isa());
    assert!(v.contains(&want), "{v}");
    assert!(v.contains(&loracycle::process::cpu_model()), "{v}");
}

#[test]
fn processors_without_avx512_run_the_same_binary_with_the_same_losses() {
    if !qemu_present() {
        assert!(
            std::env::var_os("LORACYCLE_QEMU_REQUIRED").is_none(),
            "LORACYCLE_QEMU_REQUIRED is set but qemu-x86_64 does not run"
        );
        eprintln!("skipped: qemu-x86_64 (Debian's qemu-user) is not installed");
        return;
    }
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string("tests/fixtures/golden.json").unwrap())
            .unwrap();
    let reference: Vec<f64> = golden["losses"]["raw"]["all-r8-rslora"]["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let native = losses(&run(None, &EVAL));
    for (cpu, isa) in [("Haswell", "avx2+fma"), ("Nehalem", "scalar")] {
        let version = run(Some(cpu), &["--version"]);
        assert!(
            version.contains(&format!("GEMM kernels {isa}")),
            "{cpu}: {version}"
        );
        let got = losses(&run(Some(cpu), &EVAL));
        assert_eq!(got.len(), reference.len());
        for ((g, n), r) in got.iter().zip(&native).zip(&reference) {
            // Other kernels sum in another order: equal to rounding, and to the reference.
            assert!(((g - n) / n).abs() < 1e-6, "{cpu}: {g} vs native {n}");
            assert!(((g - r) / r).abs() < 1e-4, "{cpu}: {g} vs transformers {r}");
        }
    }
}
