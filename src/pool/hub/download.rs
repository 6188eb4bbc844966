//! Downloads into the HF cache, laid out as huggingface_hub lays it out
//! (`models--org--name/{blobs/<etag>, snapshots/<commit>/<file> → ../../blobs/<etag>,
//! refs/<revision>}`), so that Python tools and loracycle share every file.
//!
//! The commit, ETag and size are read from the answers of the endpoint's own origin (a CDN the
//! Hub redirects to has no say in them), checked as names before any path is made of them, and
//! the body is streamed into a temporary file beside the blobs: it becomes the blob only with the
//! announced size, for an LFS file (a SHA-256 ETag) the announced hash, and for a safetensors file
//! a whole one (a server without a hash can send any bytes of the right length). Anything else is
//! removed and reported; the snapshot link and the ref are written last, each atomically. The
//! temporary file is locked while it is written, so a pull can remove the ones a killed pull left.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use ureq::http::HeaderMap;

use super::names::{blob_name, sha256_of_etag, valid_commit, valid_file_name, valid_revision};
use super::{Hub, HubError, encode_query, valid_repo_id};
use crate::atomic_write::write_atomic;
use crate::pool::cache::{dataset_folder, repo_folder};

/// The largest file `fetch` takes (an adapter is megabytes to a few gigabytes).
pub const MAX_FILE: u64 = 64 << 30;
/// The largest text file `fetch_text` takes (configs, model cards).
pub const MAX_TEXT: u64 = 16 << 20;

/// What the Hub says of a file: the commit it resolved to, its ETag and its size.
#[derive(Debug, Default)]
struct Meta {
    commit: Option<String>,
    etag: Option<String>,
    size: Option<u64>,
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Meta {
    /// Takes the headers of one answer; a redirect's own length is not the file's.
    fn take(&mut self, h: &HeaderMap, redirect: bool) {
        if let Some(c) = header(h, "x-repo-commit") {
            self.commit = Some(c);
        }
        if let Some(e) = header(h, "x-linked-etag").or_else(|| header(h, "etag")) {
            self.etag = Some(e);
        }
        let linked = header(h, "x-linked-size").and_then(|s| s.parse().ok());
        let length = (!redirect)
            .then(|| {
                // `bytes 0-99/100`: the total is the file's size.
                let range = header(h, "content-range")
                    .and_then(|r| r.rsplit_once('/').and_then(|(_, t)| t.parse().ok()));
                range.or_else(|| header(h, "content-length").and_then(|s| s.parse().ok()))
            })
            .flatten();
        if let Some(s) = linked.or(length) {
            self.size = Some(s);
        }
    }
}

impl Hub {
    /// Downloads `file` of `repo` at `revision` into the HF cache (or finds it there) and returns
    /// its snapshot path.
    pub fn fetch(&self, repo: &str, revision: &str, file: &str) -> Result<PathBuf, HubError> {
        self.fetch_at_most(repo, revision, file, MAX_FILE)
    }

    /// The text of a small file (config, model card), through the cache.
    pub fn fetch_text(&self, repo: &str, revision: &str, file: &str) -> Result<String, HubError> {
        let path = self.fetch_at_most(repo, revision, file, MAX_TEXT)?;
        crate::untrusted::read_text(&path, MAX_TEXT).map_err(|e| HubError::Io {
            path,
            source: e.into_io(),
        })
    }

    fn fetch_at_most(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
        cap: u64,
    ) -> Result<PathBuf, HubError> {
        if !valid_repo_id(repo) {
            return Err(HubError::BadRepoId(repo.into()));
        }
        if !valid_revision(revision) || !valid_file_name(file) {
            return Err(HubError::BadName(format!("{revision}/{file}")));
        }
        let cached = self.home.snapshot(repo, revision).join(file);
        // A weights file kept by an older loracycle without the check below is fetched again.
        if std::fs::metadata(&cached).is_ok_and(|m| m.is_file()) && whole(&cached, file).is_ok() {
            return Ok(cached);
        }
        let url = format!(
            "{}/{repo}/resolve/{}/{}",
            self.endpoint,
            encode_query(revision),
            encode_query(file)
        );
        let folder = self.home.hub().join(repo_folder(repo));
        self.download(&folder, &url, repo, revision, file, cap)
    }

    /// Downloads one file of dataset `dataset` from `url` (which must be on the endpoint's
    /// origin: a listing cannot send the client elsewhere) into the HF cache as `file` of
    /// `revision` (`datasets--org--name/snapshots/<commit>/<file>`), or finds it there.
    pub fn fetch_dataset_file(
        &self,
        dataset: &str,
        url: &str,
        revision: &str,
        file: &str,
        cap: u64,
    ) -> Result<PathBuf, HubError> {
        if !super::names::valid_dataset_id(dataset) {
            return Err(HubError::BadRepoId(dataset.into()));
        }
        if !valid_revision(revision) || !valid_file_name(file) {
            return Err(HubError::BadName(format!("{revision}/{file}")));
        }
        if !self.http.on_endpoint(url) {
            return Err(HubError::Refused {
                url: url.into(),
                reason: format!("not on the endpoint {}", self.endpoint),
            });
        }
        if let Some(cached) = self.cached_dataset_file(dataset, revision, file) {
            return Ok(cached);
        }
        let folder = self.home.hub().join(dataset_folder(dataset));
        self.download(&folder, url, dataset, revision, file, cap)
    }

    /// `file` of dataset `dataset` at `revision`, when the HF cache holds it.
    pub fn cached_dataset_file(
        &self,
        dataset: &str,
        revision: &str,
        file: &str,
    ) -> Option<PathBuf> {
        let folder = self.home.hub().join(dataset_folder(dataset));
        let cached = crate::pool::cache::snapshot_in(&folder, revision).join(file);
        std::fs::metadata(&cached)
            .is_ok_and(|m| m.is_file())
            .then_some(cached)
    }

    /// GETs `url` into `folder` (a repo's cache folder) as `file` of `revision`.
    fn download(
        &self,
        folder: &Path,
        url: &str,
        repo: &str,
        revision: &str,
        file: &str,
        cap: u64,
    ) -> Result<PathBuf, HubError> {
        let url = url.to_string();
        let mut meta = Meta::default();
        let (at, mut resp) =
            self.http
                .get(&url, &[("Accept-Encoding", "identity")], &mut |hop| {
                    if hop.from_endpoint {
                        meta.take(hop.headers, (300..400).contains(&hop.status));
                    } else if meta.size.is_none() && !(300..400).contains(&hop.status) {
                        // Another origin's length only bounds the read; the ETag checks it.
                        meta.size =
                            header(hop.headers, "content-length").and_then(|s| s.parse().ok());
                    }
                    Ok(())
                })?;
        Self::check_status(&at, resp.status().as_u16())?;
        let refuse = |reason: String| HubError::Refused {
            url: url.clone(),
            reason,
        };
        let commit = meta
            .commit
            .ok_or_else(|| refuse("no X-Repo-Commit header".into()))?;
        if !valid_commit(&commit) {
            return Err(refuse(format!(
                "X-Repo-Commit {:?} is not a 40-digit hex commit",
                shown(&commit)
            )));
        }
        let etag = meta.etag.unwrap_or_default();
        let blob = blob_name(&etag)
            .ok_or_else(|| refuse(format!("ETag {:?} is not a plain blob name", shown(&etag))))?;
        let size = meta
            .size
            .ok_or_else(|| refuse("no size (X-Linked-Size or Content-Length)".into()))?;
        if size > cap {
            return Err(refuse(format!(
                "{file} is {size} bytes; loracycle takes at most {cap} for it"
            )));
        }
        let blobs = folder.join("blobs");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| HubError::Io { path, source }
        };
        std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
        remove_stale_partials(&blobs);
        let blob_path = blobs.join(&blob);
        let have = std::fs::symlink_metadata(&blob_path)
            .is_ok_and(|m| m.is_file() && m.len() == size)
            && whole(&blob_path, file).is_ok();
        if !have {
            let mut tmp = partial_file(&blobs, &blob).map_err(io(&blobs))?;
            let mut reader = resp.body_mut().with_config().limit(size + 1).reader();
            let mut hash = Sha256::new();
            let mut got = 0u64;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if super::http::is_timeout(&e) => {
                        return Err(self.http.stalled(&at));
                    }
                    // A connection closed early: reported as a short download below.
                    Err(_) if got < size => break,
                    Err(e) => {
                        return Err(HubError::Network {
                            url: at.clone(),
                            reason: e.to_string(),
                        });
                    }
                };
                got += n as u64;
                if got > size {
                    return Err(refuse(format!(
                        "{file}: the body is longer than the announced {size} bytes"
                    )));
                }
                hash.update(&buf[..n]);
                tmp.write_all(&buf[..n]).map_err(io(tmp.path()))?;
            }
            if got != size {
                return Err(HubError::CutShort {
                    repo: repo.into(),
                    file: file.into(),
                    expected: size,
                    got,
                });
            }
            if let Some(want) = sha256_of_etag(&blob) {
                let have = format!("{:x}", hash.finalize());
                if have != want {
                    return Err(HubError::Corrupt {
                        repo: repo.into(),
                        file: file.into(),
                        want: want.into(),
                        have,
                    });
                }
            }
            // The size and hash are what the Hub announced, but without a SHA-256 ETag nothing
            // says the bytes are the file: a weights file must at least be whole.
            if let Err(e) = whole(tmp.path(), file) {
                return Err(HubError::NotSafetensors {
                    repo: repo.into(),
                    file: file.into(),
                    reason: e.to_string(),
                });
            }
            tmp.as_file().sync_all().map_err(io(tmp.path()))?;
            tmp.persist(&blob_path).map_err(|e| HubError::Io {
                path: blob_path.clone(),
                source: e.error,
            })?;
        }
        let snapshot = folder.join("snapshots").join(&commit).join(file);
        link(&snapshot, &blob, file).map_err(io(&snapshot))?;
        if revision != commit {
            let r = folder.join("refs").join(revision);
            if let Some(dir) = r.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            write_atomic(&r, commit.as_bytes()).map_err(io(&r))?;
        }
        Ok(snapshot)
    }
}

/// Whether `path`, when `file` names a safetensors file, is a whole one: its header parses,
/// every tensor's bytes lie in the data section and the file ends where the last one does. Reads
/// the header alone (through a map), whatever the file's size. Other files pass.
fn whole(path: &Path, file: &str) -> Result<(), safetensors::SafeTensorError> {
    if !file.ends_with(".safetensors") {
        return Ok(());
    }
    let f = std::fs::File::open(path)?;
    if f.metadata()?.len() < 8 {
        return Err(safetensors::SafeTensorError::HeaderTooSmall);
    }
    // SAFETY: a read-only map of a file in the cache; only its header is read.
    let map = unsafe { memmap2::Mmap::map(&f) }?;
    safetensors::SafeTensors::read_metadata(&map).map(|_| ())
}

/// A new partial download in `blobs` (`.<blob>.<random>.incomplete`), locked for as long as it is
/// open so that another process can tell it from one a killed process left behind.
fn partial_file(blobs: &Path, blob: &str) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::MetadataExt;
    let mut tries = 0;
    loop {
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{blob}."))
            .suffix(".incomplete")
            .tempfile_in(blobs)?;
        tmp.as_file().lock()?;
        // Another pull may have taken it for stale between its creation and the lock.
        let ours = tmp.as_file().metadata()?;
        let there = std::fs::symlink_metadata(tmp.path());
        tries += 1;
        if there.is_ok_and(|m| m.ino() == ours.ino() && m.dev() == ours.dev()) || tries >= 5 {
            return Ok(tmp);
        }
    }
}

/// Removes what killed pulls left in `blobs`: partial downloads (`.<blob>.<random>.incomplete`)
/// that no process holds locked. Without this every SIGKILL left up to a whole file behind for
/// good. huggingface_hub's own `<blob>.incomplete` files (no leading dot) are its to resume.
fn remove_stale_partials(blobs: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(entries) = std::fs::read_dir(blobs) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let ours = name
            .to_str()
            .is_some_and(|n| n.starts_with('.') && n.ends_with(".incomplete"));
        if !ours || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = e.path();
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        else {
            continue;
        };
        // The lock is held by a download in progress; free, the file is a dead one's.
        if f.try_lock().is_ok() {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Points `snapshot` (…/snapshots/<commit>/<file>) at `../../blobs/<blob>` (one `..` more per
/// folder in `file`), replacing what was there in one rename.
fn link(snapshot: &Path, blob: &str, file: &str) -> std::io::Result<()> {
    let dir = snapshot.parent().expect("a snapshot path has a folder");
    std::fs::create_dir_all(dir)?;
    let mut target = PathBuf::new();
    for _ in 0..file.split('/').count() + 1 {
        target.push("..");
    }
    target.push("blobs");
    target.push(blob);
    let tmp = dir.join(format!(
        ".{}.{}.link",
        snapshot
            .file_name()
            .map_or("f".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp)?;
    std::fs::rename(&tmp, snapshot)
}

/// A header value as an error shows it: control characters escaped, at most 80 characters.
fn shown(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of one F32 tensor of `n` values.
    fn safetensors_bytes(n: usize) -> Vec<u8> {
        let header = format!(
            r#"{{"t":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#,
            4 * n
        );
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend(header.as_bytes());
        b.extend(std::iter::repeat_n(0u8, 4 * n));
        b
    }

    #[test]
    fn only_whole_safetensors_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let good = safetensors_bytes(16);
        let check = |bytes: &[u8], name: &str| {
            std::fs::write(&p, bytes).unwrap();
            whole(&p, name).map_err(|e| e.to_string())
        };
        assert_eq!(check(&good, "adapter_model.safetensors"), Ok(()));
        assert_eq!(
            check(&good[..good.len() - 4], "adapter_model.safetensors"),
            Err("incomplete metadata, file not fully covered".into())
        );
        let mut longer = good.clone();
        longer.push(0);
        assert!(check(&longer, "adapter_model.safetensors").is_err());
        assert_eq!(
            check(&vec![0u8; good.len()], "adapter_model.safetensors"),
            Err("invalid JSON in header: EOF while parsing a value at line 1 column 0".into())
        );
        assert_eq!(
            check(b"", "adapter_model.safetensors"),
            Err("header too small".into())
        );
        // Other files are not safetensors and are not checked.
        assert_eq!(check(b"", "README.md"), Ok(()));
    }

    #[test]
    fn partial_downloads_of_dead_pulls_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path();
        let dead = blobs.join(".abc.XyZ123.incomplete");
        std::fs::write(&dead, vec![7u8; 1000]).unwrap();
        let live = partial_file(blobs, "abc").unwrap();
        // Not ours: a finished blob, and huggingface_hub's own partial file.
        std::fs::write(blobs.join("abc"), b"blob").unwrap();
        std::fs::write(blobs.join("def.incomplete"), b"hf").unwrap();
        remove_stale_partials(blobs);
        assert!(!dead.exists());
        assert!(live.path().exists());
        assert!(blobs.join("abc").exists() && blobs.join("def.incomplete").exists());
        let path = live.path().to_path_buf();
        // Closed without being removed, as a SIGKILL leaves it: the next pull removes it.
        let (file, kept) = live.keep().unwrap();
        drop(file);
        assert_eq!(kept, path);
        remove_stale_partials(blobs);
        assert!(!path.exists());
    }
}
