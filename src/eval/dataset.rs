//! JSONL task data: one `{"prompt": ..., "answer": ...}` object per line; other fields are ignored.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{EvalError, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// The system turn (the paper puts each task's instruction here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub prompt: String,
    pub answer: String,
}

/// Reads a JSONL file; a malformed row is reported with its 1-based line number. Blank lines are
/// skipped.
pub fn read_jsonl(path: &Path) -> Result<Vec<Example>> {
    let text =
        crate::untrusted::read_text(path, crate::untrusted::LARGE).map_err(|e| EvalError::Io {
            path: path.to_path_buf(),
            source: e.into_io(),
        })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ex: Example = serde_json::from_str(line).map_err(|e| EvalError::Row {
            path: path.to_path_buf(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        out.push(ex);
    }
    if out.is_empty() {
        return Err(EvalError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}
