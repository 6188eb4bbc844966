//! Where the lab is at run time, so that an installed or copied binary finds it without the
//! source checkout it was built from.
//!
//! In order: `LORACYCLE_LAB` (a checkout's `.cargo/config.toml` sets it to `assets/lab` for
//! `cargo run` and the tests); a `lab` folder beside the executable or in `../share/loracycle/`
//! (for packagers); else the lab embedded in the binary, unpacked once into the data folder
//! (`~/.local/share/loracycle/lab/<hash>`), checked file by file against its MANIFEST. The answer is
//! cached for the life of the process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The lab files a binary carries: (path inside the lab, bytes), `MANIFEST` among them.
pub type EmbeddedFiles = &'static [(&'static str, &'static [u8])];

static EMBEDDED: OnceLock<EmbeddedFiles> = OnceLock::new();
static FOUND: OnceLock<Result<Found, LabError>> = OnceLock::new();

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LabError {
    #[error(
        "LORACYCLE_LAB is {0}, which is not a lab folder (no base/config.json); unset it to use the lab this binary carries"
    )]
    NotALab(PathBuf),
    #[error(
        "no lab found (looked in {tried}); set LORACYCLE_LAB to a lab folder, or build one with `loracycle lab build --out DIR`"
    )]
    NotFound { tried: String },
    #[error("cannot unpack the lab into {path}: {reason}")]
    Unpack { path: PathBuf, reason: String },
}

/// How the lab was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Env,
    BesideBinary,
    Embedded,
}

impl Origin {
    pub fn describe(self) -> &'static str {
        match self {
            Origin::Env => "from LORACYCLE_LAB",
            Origin::BesideBinary => "beside the binary",
            Origin::Embedded => "the lab this binary carries, unpacked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub dir: PathBuf,
    pub origin: Origin,
}

/// Hands the lab files compiled into the binary to the lookup; the binary calls it first thing.
/// Library users (tests, benchmarks) carry none and rely on `LORACYCLE_LAB`.
pub fn register_embedded(files: EmbeddedFiles) {
    let _ = EMBEDDED.set(files);
}

/// The lab folder (see the module docs for the order of the lookup).
pub fn dir() -> Result<PathBuf, LabError> {
    found().map(|f| f.dir)
}

/// The lab folder and how it was found.
pub fn found() -> Result<Found, LabError> {
    FOUND.get_or_init(locate).clone()
}

fn is_lab(dir: &Path) -> bool {
    dir.join("base").join("config.json").is_file()
}

fn locate() -> Result<Found, LabError> {
    if let Some(env) = std::env::var_os("LORACYCLE_LAB").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(env);
        return if is_lab(&dir) {
            Ok(Found {
                dir,
                origin: Origin::Env,
            })
        } else {
            Err(LabError::NotALab(dir))
        };
    }
    let mut tried = Vec::new();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        for dir in [exe_dir.join("lab"), exe_dir.join("../share/loracycle/lab")] {
            if is_lab(&dir) {
                return Ok(Found {
                    dir,
                    origin: Origin::BesideBinary,
                });
            }
            tried.push(dir.display().to_string());
        }
    }
    if let Some(files) = EMBEDDED.get().filter(|f| !f.is_empty()) {
        let root = data_root().ok_or_else(|| LabError::Unpack {
            path: PathBuf::from("~/.local/share/loracycle/lab"),
            reason: "no home folder to unpack into; set LORACYCLE_LAB instead".into(),
        })?;
        return unpack(files, &root).map(|dir| Found {
            dir,
            origin: Origin::Embedded,
        });
    }
    tried.push("the binary (it carries no lab)".into());
    Err(LabError::NotFound {
        tried: tried.join(", "),
    })
}

/// `~/.local/share/loracycle/lab` (XDG_DATA_HOME honoured), beside the default runs folder.
fn data_root() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "loracycle").map(|d| d.data_dir().join("lab"))
}

/// The first 16 hex digits of the MANIFEST's sha256: one folder per lab content.
fn content_key(files: EmbeddedFiles) -> String {
    let manifest = files
        .iter()
        .find(|(p, _)| *p == "MANIFEST")
        .map_or(&[][..], |(_, b)| *b);
    let digest = Sha256::digest(manifest);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of every file the MANIFEST lists, by path.
fn manifest_hashes(files: EmbeddedFiles) -> std::collections::HashMap<&'static str, &'static str> {
    let manifest = files
        .iter()
        .find(|(p, _)| *p == "MANIFEST")
        .map_or("", |(_, b)| std::str::from_utf8(b).unwrap_or(""));
    manifest
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (hash, _bytes, path) = (it.next()?, it.next()?, it.next()?);
            (hash.len() == 64).then_some((path, hash))
        })
        .collect()
}

/// Unpacks the embedded files into `root/<key>` unless a finished copy is there: into a temporary
/// sibling first, each file checked against the MANIFEST, then renamed into place, so a reader
/// never sees half a lab and an interrupted unpack leaves only a temporary folder behind.
pub fn unpack(files: EmbeddedFiles, root: &Path) -> Result<PathBuf, LabError> {
    let dest = root.join(content_key(files));
    if is_lab(&dest) {
        return Ok(dest);
    }
    let fail = |path: &Path, reason: String| LabError::Unpack {
        path: path.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(root).map_err(|e| fail(root, e.to_string()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(root)
        .map_err(|e| fail(root, e.to_string()))?;
    let hashes = manifest_hashes(files);
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    eprintln!(
        "unpacking the lab this binary carries into {} ({:.0} MB, once)",
        dest.display(),
        total as f64 / 1e6
    );
    for (rel, bytes) in files {
        let path =
            safe_join(tmp.path(), rel).ok_or_else(|| fail(&dest, format!("bad path {rel:?}")))?;
        if *rel != "MANIFEST" {
            let want = hashes
                .get(rel)
                .ok_or_else(|| fail(&dest, format!("{rel} is not in the MANIFEST")))?;
            let got: String = Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if got != *want {
                return Err(fail(
                    &dest,
                    format!("{rel}: sha256 {got}, MANIFEST says {want}"),
                ));
            }
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(parent, e.to_string()))?;
        }
        let mut f = std::fs::File::create(&path).map_err(|e| fail(&path, e.to_string()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| fail(&path, e.to_string()))?;
    }
    let staged = tmp.keep();
    match std::fs::rename(&staged, &dest) {
        Ok(()) => {}
        // Another process finished the same unpack first: its copy is as good as ours.
        Err(_) if is_lab(&dest) => {
            let _ = std::fs::remove_dir_all(&staged);
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(fail(&dest, e.to_string()));
        }
    }
    Ok(dest)
}

/// `root/rel` for a relative path of plain components only.
fn safe_join(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for part in rel.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains('\\') {
            return None;
        }
        out.push(part);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "# loracycle lab\nfiles (sha256, bytes, path):\n\
        b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c  4  base/config.json\n";

    #[test]
    fn unpacks_once_and_checks_every_file() {
        let files: EmbeddedFiles = Box::leak(Box::new([
            ("MANIFEST", MANIFEST.as_bytes()),
            ("base/config.json", b"foo\n".as_slice()),
        ]));
        let root = tempfile::tempdir().unwrap();
        let dir = unpack(files, root.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.join("base/config.json")).unwrap(),
            b"foo\n"
        );
        assert!(dir.starts_with(root.path()));
        // The second call finds the finished copy and writes nothing.
        let stamp = std::fs::metadata(dir.join("base/config.json"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(unpack(files, root.path()).unwrap(), dir);
        assert_eq!(
            std::fs::metadata(dir.join("base/config.json"))
                .unwrap()
                .modified()
                .unwrap(),
            stamp
        );
        // Only the finished folder is left: no temporary sibling.
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_file_that_does_not_match_its_manifest_is_refused() {
        let files: EmbeddedFiles = Box::leak(Box::new([
            ("MANIFEST", MANIFEST.as_bytes()),
            ("base/config.json", b"bar\n".as_slice()),
        ]));
        let root = tempfile::tempdir().unwrap();
        let err = unpack(files, root.path()).unwrap_err().to_string();
        assert!(
            err.contains("base/config.json: sha256 ") && err.contains(", MANIFEST says b5bb9d80"),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert!(left.is_empty(), "nothing half-written is left: {left:?}");
    }

    #[test]
    fn paths_that_leave_the_lab_are_refused() {
        let root = Path::new("/tmp/x");
        assert_eq!(safe_join(root, "a/b"), Some(root.join("a").join("b")));
        for bad in ["../a", "a/../b", "/etc/passwd", "a//b", "", "a\\b"] {
            assert_eq!(safe_join(root, bad), None, "{bad}");
        }
    }
}
