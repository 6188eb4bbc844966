//! Rows of parquet files with the `parquet` crate's row API: the footer gives each file's
//! columns and row-group sizes, and only the row groups holding chosen rows are decoded, with
//! only the columns a task names. A file the reader cannot make sense of (or panics on) is an
//! error naming the file.
//!
//! A parquet file is untrusted input whose footer and page headers say how much memory reading
//! it takes: a 64 KB file may claim 2^31 rows, and a 5 KB page may decompress to 128 MB used by
//! forty rows. Before anything is allocated on their word, the claims are held against the
//! file's real size and fixed limits: rows per byte of file, every page header of the column
//! chunks to be decoded (read ahead with a bounded Thrift reader), the size each page really
//! decompresses to where the codec would not stop at the header's size, and the bytes of the
//! rows kept.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
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
/// Rows a file may announce per byte it holds: a task's row carries its own text, so even
/// short rows take several bytes each (a real dataset takes tens to thousands).
pub const ROWS_PER_BYTE: u64 = 16;
/// The largest page decoded (writers make pages of about 1 MB; a single value over this is no
/// task's row).
pub const MAX_PAGE: u64 = 64 << 20;
/// The most bytes the pages of one column chunk may decode to, per byte of the chunk (text
/// compresses 2-10 times; this leaves room for repetitive data).
pub const MAX_RATIO: u64 = 256;
/// The most bytes of row values one file may hand over (the rows an import keeps).
pub const MAX_KEPT: usize = 256 << 20;
/// The largest page header read (a header with statistics is a few hundred bytes).
const MAX_HEADER: usize = 1 << 20;

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

/// The reader, a second handle on the same file (for [`check_pages`]) and the file's size.
type Opened = (SerializedFileReader<std::fs::File>, std::fs::File, u64);

fn open(path: &Path) -> Result<Opened, String> {
    let (file, len) = crate::untrusted::open(path, MAX_FILE)
        .map_err(|e| format!("{}: {}", path.display(), e.into_io()))?;
    let again = file
        .try_clone()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    SerializedFileReader::new(file)
        .map(|r| (r, again, len))
        .map_err(|e| format!("{}: not a readable parquet file: {e}", path.display()))
}

/// Reads a file's footer.
pub fn info(path: &Path) -> Result<FileInfo, String> {
    catch(path, || {
        let (r, _, len) = open(path)?;
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
            total = total.saturating_add(n);
            if total > MAX_ROWS {
                return Err(format!(
                    "{}: more than {MAX_ROWS} rows announced",
                    path.display()
                ));
            }
            if total > len.saturating_mul(ROWS_PER_BYTE) {
                return Err(format!(
                    "{}: the footer claims {} rows in a file of {len} bytes (at most \
                     {ROWS_PER_BYTE} rows a byte are believed); the file is damaged or built \
                     to exhaust memory",
                    path.display(),
                    meta.file_metadata().num_rows().max(total as i64)
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
        let (r, mut again, len) = open(path)?;
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
        let mut kept = 0usize;
        let mut start = 0usize;
        let mut next = 0usize; // position in `want`
        for (g, &n) in file.groups.iter().enumerate() {
            let end = start + n;
            if next < want.len() && want[next] < end {
                check_pages(path, &r, &mut again, len, g, columns)?;
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
                    let row: Row = row
                        .get_column_iter()
                        .map(|(k, v)| (k.clone(), from_parquet(v)))
                        .collect();
                    kept = kept.saturating_add(row.values().map(weight).sum::<usize>());
                    if kept > MAX_KEPT {
                        return Err(format!(
                            "{}: the chosen rows hold more than {} MiB of text; the file is \
                             damaged or built to exhaust memory",
                            path.display(),
                            MAX_KEPT >> 20
                        ));
                    }
                    out.insert(at, row);
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

/// Roughly the bytes a value holds.
fn weight(v: &super::value::Value) -> usize {
    use super::value::Value;
    match v {
        Value::Str(s) => s.len() + 24,
        Value::List(l) => l.iter().map(weight).sum::<usize>() + 24,
        Value::Map(m) => m.iter().map(|(k, v)| k.len() + weight(v)).sum::<usize>() + 24,
        _ => 16,
    }
}

/// A reader that counts what it hands over (the length of a page header).
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Walks the page headers of row group `g`'s column chunks that `columns` select, as the
/// reader will, and refuses any claim that would make it allocate beyond the limits: a chunk
/// outside the file, a page over [`MAX_PAGE`], pages that decode to more than [`MAX_RATIO`]
/// times their chunk, a dictionary with more entries than bytes, a flat column's page with more
/// values than its row group has rows, and a page whose codec ignores the header's size and
/// that really decompresses to more than the header says.
fn check_pages(
    path: &Path,
    r: &SerializedFileReader<std::fs::File>,
    file: &mut std::fs::File,
    file_len: u64,
    g: usize,
    columns: &[String],
) -> Result<(), String> {
    use parquet::basic::Compression;
    use parquet_format_safe::thrift::protocol::TCompactInputProtocol;
    use parquet_format_safe::{PageHeader, PageType};

    let bomb = |what: String| {
        format!(
            "{}: row group {g}: {what}; the file is damaged or built to exhaust memory",
            path.display()
        )
    };
    let group = r.metadata().row_group(g);
    let group_rows = u64::try_from(group.num_rows()).unwrap_or(0);
    for chunk in group.columns() {
        let top = chunk
            .column_path()
            .parts()
            .first()
            .cloned()
            .unwrap_or_default();
        if !columns.contains(&top) {
            continue;
        }
        let name = chunk.column_path().string();
        let start = chunk
            .dictionary_page_offset()
            .unwrap_or_else(|| chunk.data_page_offset());
        let len = chunk.compressed_size();
        let (Ok(start), Ok(len)) = (u64::try_from(start), u64::try_from(len)) else {
            return Err(bomb(format!("column {name} has a negative offset or size")));
        };
        if start.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(bomb(format!(
                "column {name} claims bytes {start}..{} of a {file_len}-byte file",
                start.saturating_add(len)
            )));
        }
        let flat = chunk.column_descr().max_rep_level() == 0;
        let stream_checked = matches!(
            chunk.compression(),
            Compression::GZIP(_) | Compression::BROTLI(_) | Compression::LZ4
        );
        let mut offset = start;
        let mut remaining = len;
        let mut decoded = 0u64;
        while remaining > 0 {
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let mut counted = Counted {
                inner: (&mut *file).take(remaining),
                read: 0,
            };
            let header = {
                let mut prot = TCompactInputProtocol::new(&mut counted, MAX_HEADER);
                <PageHeader as parquet_format_safe::thrift::protocol::ReadThrift>::read_from_in_protocol(&mut prot)
                    .map_err(|e| bomb(format!("column {name}: a page header cannot be read ({e})")))?
            };
            let header_len = counted.read;
            offset += header_len;
            remaining -= header_len;
            let (Ok(packed), Ok(unpacked)) = (
                u64::try_from(header.compressed_page_size),
                u64::try_from(header.uncompressed_page_size),
            ) else {
                return Err(bomb(format!("column {name}: a page has a negative size")));
            };
            if packed > remaining {
                return Err(bomb(format!(
                    "column {name}: a page of {packed} bytes runs past its column's end"
                )));
            }
            if unpacked > MAX_PAGE {
                return Err(bomb(format!(
                    "column {name}: a page decompresses to {unpacked} bytes (at most {} MiB are \
                     read)",
                    MAX_PAGE >> 20
                )));
            }
            decoded += unpacked;
            if decoded > (len.saturating_mul(MAX_RATIO)).max(MAX_PAGE) {
                return Err(bomb(format!(
                    "column {name}: its {len} bytes decompress to more than {decoded} bytes"
                )));
            }
            if header.type_ == PageType::DICTIONARY_PAGE {
                let entries = header
                    .dictionary_page_header
                    .as_ref()
                    .map_or(0, |d| i64::from(d.num_values));
                if entries < 0 || entries as u64 > unpacked.max(1) {
                    return Err(bomb(format!(
                        "column {name}: a dictionary claims {entries} entries in {unpacked} bytes"
                    )));
                }
            }
            let values = header
                .data_page_header
                .as_ref()
                .map(|d| i64::from(d.num_values))
                .or_else(|| {
                    header
                        .data_page_header_v2
                        .as_ref()
                        .map(|d| i64::from(d.num_values))
                });
            if let Some(v) = values
                && (v < 0 || (flat && v as u64 > group_rows))
            {
                return Err(bomb(format!(
                    "column {name}: a page claims {v} values in a row group of {group_rows} rows"
                )));
            }
            if stream_checked && packed > 0 {
                // Levels of a v2 page are stored before the compressed part, uncompressed.
                let (skip, compressed) = match &header.data_page_header_v2 {
                    Some(v2) => (
                        u64::try_from(
                            i64::from(v2.definition_levels_byte_length)
                                + i64::from(v2.repetition_levels_byte_length),
                        )
                        .unwrap_or(u64::MAX),
                        v2.is_compressed.unwrap_or(true),
                    ),
                    None => (0, true),
                };
                if compressed && skip <= packed.min(unpacked) {
                    file.seek(SeekFrom::Start(offset + skip))
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    let data = (&mut *file).take(packed - skip);
                    let real = decompressed_size(chunk.compression(), data, unpacked - skip + 1);
                    if real > unpacked - skip {
                        return Err(bomb(format!(
                            "column {name}: a page decompresses past the {unpacked} bytes its \
                             header states"
                        )));
                    }
                }
            }
            offset += packed;
            remaining -= packed;
        }
    }
    Ok(())
}

/// How many bytes `data` decompresses to with `codec`, counting no further than `cap` (nothing
/// is kept). A stream that fails to decode counts what came before the failure: the reader
/// will report the damage itself.
fn decompressed_size(codec: parquet::basic::Compression, data: impl Read, cap: u64) -> u64 {
    use parquet::basic::Compression;
    let count = |r: &mut dyn Read| {
        let mut counted = Counted {
            inner: r.take(cap),
            read: 0,
        };
        let _ = std::io::copy(&mut counted, &mut std::io::sink());
        counted.read
    };
    match codec {
        Compression::GZIP(_) => count(&mut flate2::read::MultiGzDecoder::new(data)),
        Compression::BROTLI(_) => count(&mut brotli::Decompressor::new(data, 4096)),
        // The legacy LZ4 codec is tried as Hadoop's framing (bounded by the header's size)
        // before the LZ4 frame format, which is not: count a frame's real size.
        Compression::LZ4 => count(&mut lz4_flex::frame::FrameDecoder::new(data)),
        _ => 0,
    }
}
