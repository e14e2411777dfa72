//! Readers: each turns one file into chunks of events and row errors.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;
use sequin_core::flat::{Cell, FlatMapping, FlatOptions};
use sequin_core::{Event, MapError};

use crate::{CHUNK, Chunk, ImportError, RowError};

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One JSON object per line: Segment messages (or batches) or flat objects.
    Ndjson,
    /// Comma-separated values with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl InputFormat {
    /// Guesses the format from the file name (`.gz` is looked through).
    pub fn from_path(path: &Path) -> Option<InputFormat> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = name.rsplit('.').next()?;
        Some(match ext {
            "ndjson" | "jsonl" | "json" => InputFormat::Ndjson,
            "csv" => InputFormat::Csv,
            "parquet" | "pq" => InputFormat::Parquet,
            _ => return None,
        })
    }
}

impl std::str::FromStr for InputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ndjson" | "jsonl" | "json" => Ok(InputFormat::Ndjson),
            "csv" => Ok(InputFormat::Csv),
            "parquet" => Ok(InputFormat::Parquet),
            other => Err(format!(
                "unknown input format `{other}` (expected ndjson, csv or parquet)"
            )),
        }
    }
}

/// Counts bytes read from the file (compressed bytes for .gz), for progress.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn open_text(path: &Path, count: Arc<AtomicU64>) -> Result<Box<dyn BufRead + Send>, ImportError> {
    let file = File::open(path).map_err(|e| ImportError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let counted = Counting { inner: file, count };
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
    {
        Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(BufReader::new(counted)),
        )))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 20, counted)))
    }
}

fn row_error(file: &str, line: u64, e: MapError, raw: Option<String>) -> RowError {
    RowError {
        file: file.to_string(),
        line,
        field: e.field,
        reason: e.reason,
        raw,
    }
}

/// Reads `path`, calling `sink` per chunk until it returns false.
pub(crate) fn read(
    path: &Path,
    format: InputFormat,
    flat: &FlatOptions,
    sink: &mut dyn FnMut(Chunk) -> bool,
) -> Result<(), ImportError> {
    match format {
        InputFormat::Ndjson => read_ndjson(path, flat, sink),
        InputFormat::Csv => read_csv(path, flat, sink),
        InputFormat::Parquet => read_parquet(path, flat, sink),
    }
}

/// One NDJSON line, read.
enum Line {
    /// One Segment message, mapped straight from its text.
    Mapped(Result<Event, MapError>),
    /// Anything else, as a JSON tree.
    Tree(serde_json::Value),
}

fn read_ndjson(
    path: &Path,
    flat: &FlatOptions,
    sink: &mut dyn FnMut(Chunk) -> bool,
) -> Result<(), ImportError> {
    let count = Arc::new(AtomicU64::new(0));
    let mut input = open_text(path, count.clone())?;
    let file = path.display().to_string();
    let io_err = |e| ImportError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut mapping: Option<Result<FlatMapping, String>> = None;
    let mut line_no = 0u64;
    loop {
        let mut lines: Vec<(u64, Vec<u8>)> = Vec::with_capacity(CHUNK);
        while lines.len() < CHUNK {
            let mut buf = Vec::new();
            if input.read_until(b'\n', &mut buf).map_err(io_err)? == 0 {
                break;
            }
            line_no += 1;
            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines.push((line_no, buf));
        }
        if lines.is_empty() {
            return Ok(());
        }
        // A line holding one Segment message is mapped straight from its text; any other
        // line (flat record, batch, bad JSON) is parsed into a tree first.
        let values: Vec<Result<Line, RowError>> = lines
            .par_iter()
            .map(|(n, l)| {
                if memchr::memmem::find(l, b"\"type\"").is_some()
                    && let Ok(text) = std::str::from_utf8(l)
                    && let Some(mapped) = sequin_core::segment::map_line_text(text)
                {
                    return Ok(Line::Mapped(mapped));
                }
                serde_json::from_slice(l).map(Line::Tree).map_err(|e| {
                    row_error(
                        &file,
                        *n,
                        MapError::new("$", format!("invalid JSON: {e}")),
                        Some(String::from_utf8_lossy(l).into_owned()),
                    )
                })
            })
            .collect();
        if mapping.is_none() {
            // Resolve flat-record roles from the first flat object, deterministically.
            let first_flat = values
                .iter()
                .filter_map(|v| match v {
                    Ok(Line::Tree(tree)) => tree.as_object(),
                    _ => None,
                })
                .find(|o| !sequin_core::segment::is_segment_message(o));
            if let Some(obj) = first_flat {
                let cols: Vec<&str> = obj.keys().map(String::as_str).collect();
                mapping = Some(FlatMapping::resolve(flat, &cols));
            }
        }
        let parsed: Vec<Result<Vec<Event>, RowError>> = values
            .into_par_iter()
            .zip(lines.par_iter())
            .map(|(v, (n, l))| {
                let raw = || Some(String::from_utf8_lossy(l).into_owned());
                let v = match v? {
                    Line::Mapped(mapped) => {
                        return mapped
                            .map(|e| vec![e])
                            .map_err(|e| row_error(&file, *n, e, raw()));
                    }
                    Line::Tree(tree) => tree,
                };
                let obj = v.as_object().ok_or_else(|| {
                    row_error(
                        &file,
                        *n,
                        MapError::new("$", "a line must hold a JSON object"),
                        raw(),
                    )
                })?;
                if sequin_core::segment::is_segment_message(obj) {
                    let mut out = Vec::new();
                    sequin_core::segment::map_message_owned(v, None, &mut out)
                        .map_err(|e| row_error(&file, *n, e, raw()))?;
                    return Ok(out);
                }
                match &mapping {
                    Some(Ok(m)) => m
                        .map(obj.iter().map(|(k, v)| (k.as_str(), Cell::Json(v))))
                        .map(|e| vec![e])
                        .map_err(|e| row_error(&file, *n, e, raw())),
                    Some(Err(reason)) => Err(row_error(
                        &file,
                        *n,
                        MapError::new("$", reason.clone()),
                        raw(),
                    )),
                    None => Err(row_error(
                        &file,
                        *n,
                        MapError::new("$", "not a Segment message"),
                        raw(),
                    )),
                }
            })
            .collect();
        let mut chunk = Chunk {
            events: Vec::with_capacity(lines.len()),
            errors: Vec::new(),
            rows: lines.len() as u64,
            bytes_read: 0,
        };
        for r in parsed {
            match r {
                Ok(evs) => chunk.events.extend(evs),
                Err(e) => chunk.errors.push(e),
            }
        }
        chunk.bytes_read = count.load(Ordering::Relaxed);
        if !sink(chunk) {
            return Ok(());
        }
    }
}

fn read_csv(
    path: &Path,
    flat: &FlatOptions,
    sink: &mut dyn FnMut(Chunk) -> bool,
) -> Result<(), ImportError> {
    let count = Arc::new(AtomicU64::new(0));
    let input = open_text(path, count.clone())?;
    let file = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| ImportError::Format {
            path: path.to_path_buf(),
            reason: format!("bad CSV header: {e}"),
        })?
        .clone();
    let cols: Vec<&str> = headers.iter().collect();
    let mapping = FlatMapping::resolve(flat, &cols).map_err(|reason| ImportError::Format {
        path: path.to_path_buf(),
        reason,
    })?;
    let roles: Vec<_> = cols.iter().map(|c| mapping.roles(c)).collect();
    let mut record = csv::StringRecord::new();
    let mut chunk = Chunk {
        events: Vec::new(),
        errors: Vec::new(),
        rows: 0,
        bytes_read: 0,
    };
    loop {
        let more = match reader.read_record(&mut record) {
            Ok(more) => more,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                chunk.rows += 1;
                chunk.errors.push(row_error(
                    &file,
                    line,
                    MapError::new("$", format!("unreadable CSV row: {e}")),
                    None,
                ));
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(ImportError::Format {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    });
                }
                continue;
            }
        };
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        chunk.rows += 1;
        let raw = || Some(record.iter().collect::<Vec<_>>().join(","));
        if record.len() != cols.len() {
            let e = MapError::new(
                "$",
                format!("expected {} fields, found {}", cols.len(), record.len()),
            );
            chunk.errors.push(row_error(&file, line, e, raw()));
        } else {
            let cells = cols.iter().zip(&roles).zip(record.iter());
            match mapping.map_resolved(cells.map(|((c, &r), v)| (*c, r, Cell::Text(v)))) {
                Ok(ev) => chunk.events.push(ev),
                Err(e) => chunk.errors.push(row_error(&file, line, e, raw())),
            }
        }
        if chunk.rows as usize >= CHUNK {
            chunk.bytes_read = count.load(Ordering::Relaxed);
            let full = std::mem::replace(
                &mut chunk,
                Chunk {
                    events: Vec::new(),
                    errors: Vec::new(),
                    rows: 0,
                    bytes_read: 0,
                },
            );
            if !sink(full) {
                return Ok(());
            }
        }
    }
    chunk.bytes_read = count.load(Ordering::Relaxed);
    sink(chunk);
    Ok(())
}

/// Typed view of one Arrow column, to read cells without re-inspecting the type per row.
enum Col<'a> {
    Int(Vec<Option<i64>>),
    Float(&'a arrow_array::Float64Array),
    Float32(&'a arrow_array::Float32Array),
    Bool(&'a arrow_array::BooleanArray),
    Str(&'a arrow_array::StringArray),
    LargeStr(&'a arrow_array::LargeStringArray),
    Dict {
        keys: Vec<usize>,
        values: &'a arrow_array::StringArray,
        array: &'a dyn Array,
    },
    Micros(Vec<Option<i64>>),
    Unsupported(String),
}

fn ints<T: ArrowPrimitiveType>(a: &ArrayRef) -> Vec<Option<i64>>
where
    T::Native: TryInto<i64>,
{
    a.as_primitive::<T>()
        .iter()
        .map(|v| v.and_then(|x| x.try_into().ok()))
        .collect()
}

fn col(a: &ArrayRef) -> Col<'_> {
    match a.data_type() {
        DataType::Int8 => Col::Int(ints::<Int8Type>(a)),
        DataType::Int16 => Col::Int(ints::<Int16Type>(a)),
        DataType::Int32 => Col::Int(ints::<Int32Type>(a)),
        DataType::Int64 => Col::Int(ints::<Int64Type>(a)),
        DataType::UInt8 => Col::Int(ints::<UInt8Type>(a)),
        DataType::UInt16 => Col::Int(ints::<UInt16Type>(a)),
        DataType::UInt32 => Col::Int(ints::<UInt32Type>(a)),
        DataType::UInt64 => Col::Int(ints::<UInt64Type>(a)),
        DataType::Float64 => Col::Float(a.as_primitive::<Float64Type>()),
        DataType::Float32 => Col::Float32(a.as_primitive::<Float32Type>()),
        DataType::Boolean => Col::Bool(a.as_boolean()),
        DataType::Utf8 => Col::Str(a.as_string::<i32>()),
        DataType::LargeUtf8 => Col::LargeStr(a.as_string::<i64>()),
        DataType::Dictionary(_, v) if **v == DataType::Utf8 => {
            let d = a.as_any_dictionary();
            Col::Dict {
                keys: d.normalized_keys(),
                values: d.values().as_string::<i32>(),
                array: a.as_ref(),
            }
        }
        DataType::Timestamp(unit, _) => {
            let scale = |m: i64| -> Vec<Option<i64>> {
                let v: Vec<Option<i64>> = match unit {
                    TimeUnit::Second => a.as_primitive::<TimestampSecondType>().iter().collect(),
                    TimeUnit::Millisecond => a
                        .as_primitive::<TimestampMillisecondType>()
                        .iter()
                        .collect(),
                    TimeUnit::Microsecond => a
                        .as_primitive::<TimestampMicrosecondType>()
                        .iter()
                        .collect(),
                    TimeUnit::Nanosecond => {
                        a.as_primitive::<TimestampNanosecondType>().iter().collect()
                    }
                };
                v.into_iter()
                    .map(|x| x.map(|x| if m > 0 { x * m } else { x.div_euclid(-m) }))
                    .collect()
            };
            Col::Micros(scale(match unit {
                TimeUnit::Second => 1_000_000,
                TimeUnit::Millisecond => 1000,
                TimeUnit::Microsecond => 1,
                TimeUnit::Nanosecond => -1000,
            }))
        }
        DataType::Date32 => Col::Micros(
            a.as_primitive::<Date32Type>()
                .iter()
                .map(|d| d.map(|d| i64::from(d) * 86_400_000_000))
                .collect(),
        ),
        other => Col::Unsupported(format!("{other}")),
    }
}

impl<'a> Col<'a> {
    fn cell(&self, row: usize) -> Result<Cell<'a>, String> {
        Ok(match self {
            Col::Int(v) => v[row].map_or(Cell::Missing, Cell::Int),
            Col::Float(a) => {
                if a.is_null(row) {
                    Cell::Missing
                } else {
                    Cell::Float(a.value(row))
                }
            }
            Col::Float32(a) => {
                if a.is_null(row) {
                    Cell::Missing
                } else {
                    Cell::Float(f64::from(a.value(row)))
                }
            }
            Col::Bool(a) => {
                if a.is_null(row) {
                    Cell::Missing
                } else {
                    Cell::Bool(a.value(row))
                }
            }
            Col::Str(a) => {
                if a.is_null(row) {
                    Cell::Missing
                } else {
                    Cell::Str(a.value(row))
                }
            }
            Col::LargeStr(a) => {
                if a.is_null(row) {
                    Cell::Missing
                } else {
                    Cell::Str(a.value(row))
                }
            }
            Col::Dict {
                keys,
                values,
                array,
            } => {
                if array.is_null(row) {
                    Cell::Missing
                } else {
                    Cell::Str(values.value(keys[row]))
                }
            }
            Col::Micros(v) => v[row].map_or(Cell::Missing, Cell::Micros),
            Col::Unsupported(t) => return Err(format!("unsupported Parquet column type {t}")),
        })
    }
}

fn read_parquet(
    path: &Path,
    flat: &FlatOptions,
    sink: &mut dyn FnMut(Chunk) -> bool,
) -> Result<(), ImportError> {
    let file = File::open(path).map_err(|e| ImportError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let fmt_err = |e: String| ImportError::Format {
        path: path.to_path_buf(),
        reason: e,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| fmt_err(format!("not a Parquet file: {e}")))?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let cols: Vec<&str> = names.iter().map(String::as_str).collect();
    let mapping = FlatMapping::resolve(flat, &cols).map_err(fmt_err)?;
    let roles: Vec<_> = cols.iter().map(|c| mapping.roles(c)).collect();
    let total_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let total_rows = builder.metadata().file_metadata().num_rows().max(1) as u64;
    let reader = builder
        .with_batch_size(CHUNK)
        .build()
        .map_err(|e| fmt_err(e.to_string()))?;
    let file_name = path.display().to_string();
    let mut row_base = 0u64;
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| fmt_err(e.to_string()))?;
        let columns: Vec<Col> = batch.columns().iter().map(col).collect();
        let n = batch.num_rows();
        // Rows are independent: map them on all cores.
        let results: Vec<Result<Event, RowError>> = (0..n)
            .into_par_iter()
            .with_min_len(4096)
            .map_init(Vec::new, |cells, r| {
                // One cell buffer per task, not one allocation per row.
                cells.clear();
                for ((name, c), &role) in cols.iter().zip(&columns).zip(&roles) {
                    match c.cell(r) {
                        Ok(cell) => cells.push((*name, role, cell)),
                        Err(reason) => {
                            return Err(row_error(
                                &file_name,
                                row_base + r as u64 + 1,
                                MapError::new(*name, reason),
                                None,
                            ));
                        }
                    }
                }
                mapping
                    .map_resolved(cells.drain(..))
                    .map_err(|e| row_error(&file_name, row_base + r as u64 + 1, e, None))
            })
            .collect();
        row_base += n as u64;
        let mut chunk = Chunk {
            events: Vec::with_capacity(n),
            errors: Vec::new(),
            rows: n as u64,
            bytes_read: total_bytes * row_base / total_rows,
        };
        for r in results {
            match r {
                Ok(e) => chunk.events.push(e),
                Err(e) => chunk.errors.push(e),
            }
        }
        if !sink(chunk) {
            return Ok(());
        }
    }
    Ok(())
}
