//! What is said of a run after it was submitted, kept beside its files in `annotations.json`:
//! a name a person gave it (`runs rename`, the Runs screen's `n`), and for a control that ran
//! apart from its run (a study's Slurm cells, which learn each other's ids only once they ran)
//! the run it is the control of, and the controls a run was answered by. A record, once written,
//! stays as written; every read of the run through the store applies its annotations.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic_write::write_atomic;
use crate::run::record::RunRecord;
use crate::run::spec::Parent;

pub const FILE: &str = "annotations.json";

/// The longest name a run may be given, in characters.
pub const MAX_NAME: usize = 120;

/// The most of the file that is read: it holds a name and a few ids.
const MAX_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Annotations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// Control role (`base`, `new-lora`, `random-init`) to the id of the run that answers it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub controls: BTreeMap<String, String>,
}

/// A name as given, trimmed; an empty one clears the name.
pub fn check_name(name: &str) -> Result<Option<String>, String> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(None);
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!(
            "a run name has at most {MAX_NAME} characters; this one has {}",
            name.chars().count()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("a run name is one line of text, without control characters".into());
    }
    Ok(Some(name.to_string()))
}

impl Annotations {
    /// The run folder's annotations; none when the file is absent, too large or unreadable
    /// (annotations only ever add to what the run's own files say).
    pub fn read(dir: &Path) -> Annotations {
        let path = dir.join(FILE);
        let Ok(text) = crate::untrusted::read_text(&path, MAX_BYTES) else {
            return Annotations::default();
        };
        let mut a: Annotations = serde_json::from_str(&text).unwrap_or_default();
        a.name = a.name.and_then(|n| check_name(&n).ok().flatten());
        a
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).expect("annotations serialise");
        write_atomic(&dir.join(FILE), json.as_bytes())
    }

    pub fn is_empty(&self) -> bool {
        *self == Annotations::default()
    }

    /// The record as the annotations have it: the given name as its label, the parent and the
    /// controls where the record has none of its own.
    pub fn apply(&self, record: &mut RunRecord) {
        if let Some(n) = &self.name {
            record.label = n.clone();
            record.spec.name = n.clone();
        }
        if record.spec.parent.is_none() {
            record.spec.parent = self.parent.clone();
        }
        for (role, id) in &self.controls {
            record
                .spec
                .controls
                .reused
                .entry(role.clone())
                .or_insert_with(|| id.clone());
        }
    }
}
