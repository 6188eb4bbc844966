//! The lab's `MANIFEST`: the command that built it, its wall time and a SHA-256 per file.

use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::build::{Result, io, write_file};

/// `MANIFEST`: the command, the wall time and a SHA-256 per file.
pub fn write_manifest(out: &Path, command: &str, wall_s: f64) -> Result<()> {
    let mut files = Vec::new();
    collect_files(out, out, &mut files)?;
    files.sort();
    let mut text = format!(
        "# loracycle lab\ncommand: {command}\nwall_time_s: {wall_s:.1}\nloracycle: {}\nfiles (sha256, bytes, path):\n",
        env!("CARGO_PKG_VERSION")
    );
    for rel in files {
        if rel == "MANIFEST" {
            continue;
        }
        let bytes = io(&out.join(&rel), std::fs::read(out.join(&rel)))?;
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        text.push_str(&format!("{digest}  {}  {rel}\n", bytes.len()));
    }
    write_file(&out.join("MANIFEST"), text.as_bytes())
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in io(dir, std::fs::read_dir(dir))? {
        let entry = io(dir, entry)?;
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            out.push(rel);
        }
    }
    Ok(())
}

/// Wall clock of a build, for the manifest.
pub struct Stopwatch(Instant);

impl Stopwatch {
    pub fn start() -> Self {
        Self(Instant::now())
    }
    pub fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}
