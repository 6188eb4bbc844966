//! Rows of parquet files with the `parquet` crate's row API: the footer gives each file's
//! columns and row-group sizes, and only the row groups holding chosen rows are decoded, with
//! only the columns a task names. A file the reader cannot make sense of (or panics on) is an
//! error naming the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::Type;

use super::render::Row;
use super::value::from_parquet;

/// The largest parquet file read (the paper's biggest split, OpenMathInstruct-2's train_1M, is
/// a few gigabytes in shards of well under one).
pub const MAX_FILE: u64 = 8 << 30;
/// The most rows one file may announce.
pub const MAX_ROWS: u64 = 1 << 32;

/// What a file's footer says.
#[derive(Debug, Clone)]
pub struct FileInfo {
    pub path: PathBuf,
    pub columns: Vec<String>,
    pub groups: Vec<usize>,
}

impl FileInfo {
    pub fn rows(&self) -> usize {
        self.groups.iter().sum()
    }
}

fn catch<T>(path: &Path, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{}: the parquet reader failed on this file (corrupt or unsupported)",
            path.display()
        )),
    }
}

fn open(path: &Path) -> Result<SerializedFileReader<std::fs::File>, String> {
    let (file, _) = crate::untrusted::open(path, MAX_FILE)
        .map_err(|e| format!("{}: {}", path.display(), e.into_io()))?;
    SerializedFileReader::new(file)
        .map_err(|e| format!("{}: not a readable parquet file: {e}", path.display()))
}

/// Reads a file's footer.
pub fn info(path: &Path) -> Result<FileInfo, String> {
    catch(path, || {
        let r = open(path)?;
        let meta = r.metadata();
        let columns = meta
            .file_metadata()
            .schema()
            .get_fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let mut groups = Vec::new();
        let mut total = 0u64;
        for g in meta.row_groups() {
            let n = u64::try_from(g.num_rows())
                .map_err(|_| format!("{}: a row group has a negative row count", path.display()))?;
            total += n;
            if total > MAX_ROWS {
                return Err(format!(
                    "{}: more than {MAX_ROWS} rows announced",
                    path.display()
                ));
            }
            groups.push(n as usize);
        }
        Ok(FileInfo {
            path: path.to_path_buf(),
            columns,
            groups,
        })
    })
}

/// The rows at `wanted` (indices into the file, any order) with only `columns`, keyed by index.
pub fn read(
    file: &FileInfo,
    columns: &[String],
    wanted: &[usize],
) -> Result<BTreeMap<usize, Row>, String> {
    let path = &file.path;
    catch(path, || {
        let r = open(path)?;
        let schema = r.metadata().file_metadata().schema();
        let fields: Vec<_> = schema
            .get_fields()
            .iter()
            .filter(|f| columns.iter().any(|c| c == f.name()))
            .cloned()
            .collect();
        let projection = Type::group_type_builder(schema.name())
            .with_fields(fields)
            .build()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut want: Vec<usize> = wanted.to_vec();
        want.sort_unstable();
        want.dedup();
        let mut out = BTreeMap::new();
        let mut start = 0usize;
        let mut next = 0usize; // position in `want`
        for (g, &n) in file.groups.iter().enumerate() {
            let end = start + n;
            if next < want.len() && want[next] < end {
                let group = r
                    .get_row_group(g)
                    .map_err(|e| format!("{}: row group {g}: {e}", path.display()))?;
                let rows = group
                    .get_row_iter(Some(projection.clone()))
                    .map_err(|e| format!("{}: row group {g}: {e}", path.display()))?;
                for (i, row) in rows.enumerate() {
                    let at = start + i;
                    if next >= want.len() || want[next] >= end {
                        break;
                    }
                    if at < want[next] {
                        continue;
                    }
                    let row = row.map_err(|e| format!("{}: row {at}: {e}", path.display()))?;
                    out.insert(
                        at,
                        row.get_column_iter()
                            .map(|(k, v)| (k.clone(), from_parquet(v)))
                            .collect(),
                    );
                    next += 1;
                }
            }
            start = end;
        }
        if next < want.len() {
            return Err(format!(
                "{}: row {} is past the rows the file holds",
                path.display(),
                want[next]
            ));
        }
        Ok(out)
    })
}
