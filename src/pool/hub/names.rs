//! The names a Hub answer turns into paths, checked once before any file is touched: repo ids
//! (`models--org--name`), revisions (`refs/<rev>`), commits (`snapshots/<commit>`), ETags
//! (`blobs/<etag>`) and repo file names (`snapshots/<commit>/<file>`). The rules are
//! huggingface_hub's where it has one (`validate_repo_id`), stricter where it trusts the server.

/// Whether `id` is a plain `org/name` repo id, as huggingface_hub's `validate_repo_id` accepts
/// them: letters, digits, `-`, `_` and `.`, each part starting and ending with a letter, digit
/// or `_`, at most 96 characters a part, no `--` or `..` (the cache folder joins the parts with
/// `--`, so `a--b/c` and `a/b--c` would share one) and no `.git` ending.
pub fn valid_repo_id(id: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let part = |s: &str| {
        (1..=96).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && s.starts_with(word)
            && s.ends_with(word)
    };
    !id.contains("--")
        && !id.contains("..")
        && !id.ends_with(".git")
        && matches!(id.split_once('/'), Some((a, b)) if part(a) && part(b))
}

/// Whether `id` names a dataset: an `org/name` repo id, or one name alone as the Hub's oldest
/// datasets have (`super_glue`, `xnli`), under the same rules.
pub fn valid_dataset_id(id: &str) -> bool {
    valid_repo_id(id) || (!id.contains('/') && valid_repo_id(&format!("x/{id}")))
}

/// Whether `s` is a full commit hash: 40 lowercase hex digits.
pub fn valid_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether a revision (a branch, a tag, `refs/pr/1`, a commit) can name a file under `refs/`:
/// plain components of letters, digits, `-`, `_` and `.`, none of them `.` or `..`.
pub fn valid_revision(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
        })
}

/// The blob name an ETag header gives: `W/` and quotes removed, then letters and digits only
/// (the Hub's ETags are git SHA-1s and, for LFS files, SHA-256s), at most 128 of them.
pub fn blob_name(etag: &str) -> Option<String> {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    let e = e.trim_matches('"');
    ((1..=128).contains(&e.len()) && e.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| e.to_ascii_lowercase())
}

/// The SHA-256 an ETag names, when it is one (an LFS file's): the download is checked against it.
pub fn sha256_of_etag(blob: &str) -> Option<&str> {
    (blob.len() == 64 && blob.bytes().all(|b| b.is_ascii_hexdigit())).then_some(blob)
}

/// Whether a repo file name (`adapter_config.json`, `checkpoint/adapter_model.safetensors`) is
/// a relative path of plain components: no absolute path, no `..`, no backslash or control
/// character, at most 16 levels and 1,024 bytes.
pub fn valid_file_name(name: &str) -> bool {
    (1..=1024).contains(&name.len())
        && !name.chars().any(|c| c.is_control() || c == '\\')
        && name.split('/').count() <= 16
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_what_huggingface_hub_accepts() {
        for ok in [
            "meta-llama/Llama-3.1-8B-Instruct",
            "Qwen/Qwen3-4B-Instruct-2507",
            "user_1/lora.v2",
        ] {
            assert!(valid_repo_id(ok), "{ok}");
        }
        for bad in [
            "../x", "a/../b", "a", "a/b/c", "a/", "/b", "a/b?c", "a b/c", "a--b/c", "a/b--c",
            "a/b.git", "-a/b", "a/b-", "a/.b", "a/b..c", "ä/b",
        ] {
            assert!(!valid_repo_id(bad), "{bad}");
        }
        assert!(!valid_repo_id(&format!("a/{}", "x".repeat(97))));
    }

    #[test]
    fn commits_revisions_etags_and_file_names() {
        assert!(valid_commit(&"ab12".repeat(10)));
        for bad in [
            "",
            "../../x",
            &"g".repeat(40),
            &"A".repeat(40),
            &"a".repeat(41),
        ] {
            assert!(!valid_commit(bad), "{bad}");
        }
        for ok in ["main", "refs/pr/1", "v1.0", &"a".repeat(40)] {
            assert!(valid_revision(ok), "{ok}");
        }
        for bad in ["", "..", "../x", "a//b", "/main", "main/", "a b", "x\n"] {
            assert!(!valid_revision(bad), "{bad}");
        }
        let sha = "0123456789abcdef".repeat(4);
        assert_eq!(blob_name(&format!("\"{sha}\"")), Some(sha.clone()));
        assert_eq!(blob_name("W/\"abc123\""), Some("abc123".into()));
        assert_eq!(sha256_of_etag(&sha), Some(sha.as_str()));
        assert_eq!(sha256_of_etag("abc123"), None);
        for bad in [
            "",
            "\"\"",
            "../../tmp/x",
            "/tmp/x",
            "a.b",
            "ab\u{e9}",
            &"a".repeat(129),
        ] {
            assert_eq!(blob_name(bad), None, "{bad}");
        }
        for ok in ["adapter_config.json", "ckpt/adapter_model.safetensors"] {
            assert!(valid_file_name(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a\\b",
            "./a",
            "a\u{1b}[31m",
        ] {
            assert!(!valid_file_name(bad), "{bad}");
        }
    }
}
