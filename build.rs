//! Lists the lab's files (from `assets/lab/MANIFEST`) for the binary to carry, so an installed or
//! copied `loracycle` opens the lab without its checkout (`src/lab/locate.rs` unpacks it). Only the
//! binary includes the list; the library and the test binaries stay small.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join("lab");
    let manifest = root.join("MANIFEST");
    println!("cargo:rerun-if-changed={}", manifest.display());
    let mut out = String::from("pub static LAB_FILES: &[(&str, &[u8])] = &[\n");
    match std::fs::read_to_string(&manifest) {
        Ok(text) => {
            let mut paths = vec!["MANIFEST".to_string()];
            let listed = text
                .lines()
                .skip_while(|l| !l.starts_with("files ("))
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(2));
            for rel in listed {
                let plain = rel
                    .split('/')
                    .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\\'));
                if !plain || !root.join(rel).is_file() {
                    println!(
                        "cargo:warning=assets/lab/MANIFEST lists {rel:?}, which is not a file of the lab; the binary ships without a lab"
                    );
                    paths.clear();
                    break;
                }
                paths.push(rel.to_string());
            }
            for rel in &paths {
                let abs = root.join(rel);
                println!("cargo:rerun-if-changed={}", abs.display());
                writeln!(
                    out,
                    "    ({rel:?}, include_bytes!({:?})),",
                    abs.display().to_string()
                )
                .expect("write to a String");
            }
        }
        Err(_) => println!(
            "cargo:warning=no assets/lab/MANIFEST: the binary ships without a lab (build one with `loracycle lab build`)"
        ),
    }
    out.push_str("];\n");
    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("lab_files.rs");
    std::fs::write(dest, out).expect("write lab_files.rs");
}
