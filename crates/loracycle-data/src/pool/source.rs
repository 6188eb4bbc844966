//! Where a pool comes from, as a spec or the command line names it, and the rule for names that
//! stand for one folder: plain data, so that the spec parser and the run store know them without
//! the adapter loader (and candle).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A pool source as written in a spec or on the command line: `hub`, `cache`, `lab` or
/// `dir:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolSource {
    Hub,
    Cache,
    Lab,
    Dir(PathBuf),
}

impl std::str::FromStr for PoolSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lab" => Ok(PoolSource::Lab),
            "hub" => Ok(PoolSource::Hub),
            "cache" => Ok(PoolSource::Cache),
            _ => match s.strip_prefix("dir:") {
                Some(p) if !p.is_empty() => Ok(PoolSource::Dir(PathBuf::from(p))),
                _ => Err(format!(
                    "unknown pool source {s:?} (use hub, cache, lab or dir:PATH)"
                )),
            },
        }
    }
}

impl std::fmt::Display for PoolSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolSource::Hub => f.write_str("hub"),
            PoolSource::Cache => f.write_str("cache"),
            PoolSource::Lab => f.write_str("lab"),
            PoolSource::Dir(p) => write!(f, "dir:{}", p.display()),
        }
    }
}

impl Serialize for PoolSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PoolSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A folder name is a plain name (no separators, not `.`/`..`).
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && Path::new(name).components().count() == 1
}
