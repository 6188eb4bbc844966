//! Replacing a file in one step: readers (another process, a crash-restarted run) see the old
//! contents or the new, never half of them. Every file the lab, the pool cache and the run store
//! rewrite goes through here; it needs nothing but the filesystem, so the run data layer uses it
//! without linking the tensor code.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temp file in the same folder, flushed, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
