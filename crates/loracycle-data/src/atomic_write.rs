//! Replacing a file in one step: readers (another process, a crash-restarted run) see the old
//! contents or the new, never half of them. Every file the lab, the pool cache, the run store
//! and the user-named outputs (exports, tables, specs, token dumps) write goes through here; it
//! needs nothing but the filesystem, so the run data layer uses it without linking the tensor
//! code.
//!
//! Only a regular file is ever replaced. A rename swaps whatever has the name, so without the
//! check a device node (`/dev/full`), a FIFO a reader waits on, or a symbolic link the user made
//! would silently become a regular file.

use std::io::Write;
use std::path::Path;

/// Why `path` may not be replaced: it exists and is not a regular file.
fn refusal(path: &Path) -> Option<std::io::Error> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let ft = meta.file_type();
    if ft.is_file() {
        return None;
    }
    let why = if ft.is_symlink() {
        let to = std::fs::read_link(path)
            .map(|t| crate::untrusted::printable(&t.display().to_string()).into_owned())
            .unwrap_or_else(|_| "?".into());
        format!(
            "a symbolic link (to {to}); loracycle does not replace a link: name the file it \
             points to, to write there"
        )
    } else {
        format!(
            "not a regular file ({}); loracycle replaces only regular files",
            crate::untrusted::kind(ft)
        )
    };
    Some(std::io::Error::new(std::io::ErrorKind::AlreadyExists, why))
}

/// Writes `bytes` to `path` atomically: a temp file in the same folder, flushed, then renamed.
/// A `path` that exists and is not a regular file (a folder, a link, a FIFO, a device) is left
/// as it is and refused.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(e) = refusal(path) {
        return Err(e);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // Checked again just before the rename: the window is the write above, not the whole run.
    if let Some(e) = refusal(path) {
        return Err(e);
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        write_atomic(&f, b"one").unwrap();
        write_atomic(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert_eq!(
            write_atomic(&link, b"x").unwrap_err().to_string(),
            format!(
                "a symbolic link (to {}); loracycle does not replace a link: name the file it \
                 points to, to write there",
                f.display()
            )
        );
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&f).unwrap(), b"two");

        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        assert_eq!(
            write_atomic(&fifo, b"x").unwrap_err().to_string(),
            "not a regular file (a FIFO); loracycle replaces only regular files"
        );
        assert_eq!(
            write_atomic(Path::new("/dev/full"), b"x")
                .unwrap_err()
                .to_string(),
            "not a regular file (a character device); loracycle replaces only regular files"
        );
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(
            write_atomic(&sub, b"x").unwrap_err().to_string(),
            "not a regular file (a folder); loracycle replaces only regular files"
        );
        // Nothing was left behind beside them.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a.txt", "fifo", "link", "sub"]);
    }
}
