//! Reading a file that someone else may have made: an adapter's config or card, a model's config
//! or tokenizer, a task's rows, a spec. It must be a regular file (a FIFO would block and
//! `/dev/zero` never ends) no larger than the caller's cap, checked on the opened file itself so
//! nothing can be swapped in between the check and the read.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Configs, cards, specs and the like.
pub const SMALL: u64 = 16 << 20;
/// Tokenizers (Llama 3's `tokenizer.json` is 9 MB) and task files: parsed whole, at several
/// times their size in memory.
pub const LARGE: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum UntrustedError {
    #[error("{path}: not a regular file ({kind})")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{path}: {size} bytes; at most {cap} are read from a file like this")]
    TooLarge { path: PathBuf, size: u64, cap: u64 },
    #[error("{path}: not UTF-8 text")]
    NotText { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl UntrustedError {
    /// As an I/O error without the path, for callers whose errors carry the path and one.
    pub fn into_io(self) -> std::io::Error {
        match self {
            UntrustedError::Io { source, .. } => source,
            UntrustedError::NotText { .. } => {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")
            }
            UntrustedError::NotAFile { kind, .. } => {
                std::io::Error::other(format!("not a regular file ({kind})"))
            }
            UntrustedError::TooLarge { size, cap, .. } => std::io::Error::other(format!(
                "{size} bytes; at most {cap} are read from a file like this"
            )),
        }
    }
}

pub(crate) fn kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a folder"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Opens `path` for reading if it is a regular file of at most `cap` bytes; returns it with its
/// size. Opening does not block on a FIFO (`O_NONBLOCK`, which does nothing to regular files).
pub fn open(path: &Path, cap: u64) -> Result<(std::fs::File, u64), UntrustedError> {
    let io = |source| UntrustedError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(UntrustedError::NotAFile {
            path: path.to_path_buf(),
            kind: kind(meta.file_type()),
        });
    }
    if meta.len() > cap {
        return Err(UntrustedError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            cap,
        });
    }
    Ok((file, meta.len()))
}

/// The bytes of a regular file of at most `cap` bytes (a file that grows while read is cut at
/// `cap` and refused).
pub fn read(path: &Path, cap: u64) -> Result<Vec<u8>, UntrustedError> {
    let (file, size) = open(path, cap)?;
    let mut out = Vec::with_capacity(size as usize);
    file.take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|source| UntrustedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if out.len() as u64 > cap {
        return Err(UntrustedError::TooLarge {
            path: path.to_path_buf(),
            size: out.len() as u64,
            cap,
        });
    }
    Ok(out)
}

/// The UTF-8 text of a regular file of at most `cap` bytes.
pub fn read_text(path: &Path, cap: u64) -> Result<String, UntrustedError> {
    String::from_utf8(read(path, cap)?).map_err(|_| UntrustedError::NotText {
        path: path.to_path_buf(),
    })
}

/// Text from a file or a server as a terminal may show it: control characters (escape
/// sequences, carriage returns, bells) become `?`, so a name cannot move the cursor, recolour the
/// screen or hide itself.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

/// As [`printable`], for whole lines of output: newlines and tabs stay.
pub fn printable_text(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\n' && c != '\t';
    if s.chars().any(bad) {
        s.chars()
            .map(|c| if bad(c) { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_not_printed() {
        assert_eq!(printable("user/lora"), "user/lora");
        assert_eq!(printable("a\u{1b}[2J\rb\u{7}"), "a?[2J?b?");
        assert_eq!(printable_text("a\tb\n\u{1b}]0;x\u{7}"), "a\tb\n?]0;x?");
    }

    #[test]
    fn only_regular_files_under_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.json");
        std::fs::write(&f, "{}").unwrap();
        assert_eq!(read_text(&f, 2).unwrap(), "{}");
        assert_eq!(
            read_text(&f, 1).unwrap_err().to_string(),
            format!(
                "{}: 2 bytes; at most 1 are read from a file like this",
                f.display()
            )
        );
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert_eq!(
            read_text(&fifo, SMALL).unwrap_err().to_string(),
            format!("{}: not a regular file (a FIFO)", fifo.display())
        );
        assert_eq!(
            read_text(Path::new("/dev/zero"), SMALL)
                .unwrap_err()
                .to_string(),
            "/dev/zero: not a regular file (a character device)"
        );
        assert_eq!(
            read_text(dir.path(), SMALL).unwrap_err().to_string(),
            format!("{}: not a regular file (a folder)", dir.path().display())
        );
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert_eq!(
            read_text(&f, SMALL).unwrap_err().to_string(),
            format!("{}: not UTF-8 text", f.display())
        );
    }
}
