//! Columnar history: one Parquet file per (partition, run), rows sorted by
//! (unit, time, arrival).
//!
//! Columns: `unit` (dictionary string), `ts` (timestamp in the coarsest of s/ms/µs that
//! holds every value of the file exactly, so second-precision data costs no more than it
//! must), `name` (dictionary string), `kind` (u8), the id columns present in the file
//! (`user_id`, `anonymous_id`, `previous_id`, `session_id`, `conversation_id`,
//! `message_id`), then one column per property key: `p.<key>` properties, `c.<key>` context,
//! `t.<key>` traits, typed int64 / float64 / bool / dictionary string, or JSON text with
//! field metadata `sequin.kind = mixed` when a key's values have several types. The files
//! are plain Parquet: DuckDB or pandas read them directly.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::types::{Int32Type, UInt32Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray, TimestampMillisecondArray, TimestampSecondArray,
    UInt8Array, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use sequin_core::Value;

use crate::data::{DictBuilder, ID_COLUMNS, NULL_KEY, PartitionData, PropColumn, StrColumn};
use crate::error::{IoContext, StoreError};

const KIND_META: &str = "sequin.kind";

/// Which columns a reader wants. `unit`, `ts` and `name` are always read.
#[derive(Debug, Clone, Default)]
pub enum Projection {
    /// Every column.
    #[default]
    All,
    /// Only these columns (by name: `kind`, id columns, `p.…`/`c.…`/`t.…` properties).
    Columns(Vec<String>),
    /// Every column but these (a reader that needs every property but not the unique
    /// `message_id`, whose dictionary is as long as the file).
    Except(Vec<String>),
}

impl Projection {
    fn wants(&self, column: &str) -> bool {
        match self {
            Projection::All => true,
            Projection::Columns(cols) => {
                matches!(column, "unit" | "ts" | "name") || cols.iter().any(|c| c == column)
            }
            Projection::Except(cols) => {
                matches!(column, "unit" | "ts" | "name") || !cols.iter().any(|c| c == column)
            }
        }
    }
}

fn dict_field(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8)),
        nullable,
    )
}

fn dict_array(col: &StrColumn) -> Result<ArrayRef, StoreError> {
    let keys: UInt32Array = col
        .keys
        .iter()
        .map(|&k| (k != NULL_KEY).then_some(k))
        .collect();
    let values = Arc::new(StringArray::from_iter_values(col.dict.iter()));
    Ok(Arc::new(DictionaryArray::<UInt32Type>::try_new(
        keys, values,
    )?))
}

fn json_text(v: &Value) -> String {
    match v {
        Value::Json(s) => s.clone(),
        other => other.to_json().to_string(),
    }
}

/// Writes one run file (via a temporary file, synced, then renamed into place), with the
/// arrival numbers when `keep_arrival` and the data has them.
pub fn write_run(path: &Path, data: &PartitionData, keep_arrival: bool) -> Result<(), StoreError> {
    let rows = data.len();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();

    let mut unit_keys = Vec::with_capacity(rows);
    for (i, w) in data.unit_start.windows(2).enumerate() {
        unit_keys.extend(std::iter::repeat_n(i as u32, (w[1] - w[0]) as usize));
    }
    fields.push(dict_field("unit", false));
    columns.push(Arc::new(DictionaryArray::<UInt32Type>::try_new(
        UInt32Array::from(unit_keys),
        Arc::new(StringArray::from_iter_values(data.units.iter())),
    )?));

    let (unit, divisor) = if data.time.iter().all(|t| t % 1_000_000 == 0) {
        (TimeUnit::Second, 1_000_000)
    } else if data.time.iter().all(|t| t % 1000 == 0) {
        (TimeUnit::Millisecond, 1000)
    } else {
        (TimeUnit::Microsecond, 1)
    };
    let scaled: Vec<i64> = data.time.iter().map(|t| t / divisor).collect();
    let ts: ArrayRef = match unit {
        TimeUnit::Second => Arc::new(TimestampSecondArray::from(scaled).with_timezone("UTC")),
        TimeUnit::Millisecond => {
            Arc::new(TimestampMillisecondArray::from(scaled).with_timezone("UTC"))
        }
        _ => Arc::new(TimestampMicrosecondArray::from(scaled).with_timezone("UTC")),
    };
    fields.push(Field::new(
        "ts",
        DataType::Timestamp(unit, Some("UTC".into())),
        false,
    ));
    columns.push(ts);

    fields.push(dict_field("name", false));
    columns.push(Arc::new(DictionaryArray::<UInt32Type>::try_new(
        UInt32Array::from(data.name.clone()),
        Arc::new(StringArray::from_iter_values(data.names.iter())),
    )?));
    fields.push(Field::new("kind", DataType::UInt8, false));
    columns.push(Arc::new(UInt8Array::from(data.kind.clone())));
    if keep_arrival && data.seq.len() == data.len() {
        fields.push(Field::new("seq", DataType::UInt64, false));
        columns.push(Arc::new(UInt64Array::from(data.seq.clone())));
    }

    for name in ID_COLUMNS {
        if let Some(col) = data.ids.get(name).filter(|c| name == "user_id" || c.any()) {
            fields.push(dict_field(name, true));
            columns.push(dict_array(col)?);
        }
    }
    for (key, col) in &data.props {
        let (field, array): (Field, ArrayRef) = match col {
            PropColumn::Int(v) => (
                Field::new(key, DataType::Int64, true),
                Arc::new(Int64Array::from(v.clone())),
            ),
            PropColumn::Float(v) => (
                Field::new(key, DataType::Float64, true),
                Arc::new(Float64Array::from(v.clone())),
            ),
            PropColumn::Bool(v) => (
                Field::new(key, DataType::Boolean, true),
                Arc::new(BooleanArray::from(v.clone())),
            ),
            PropColumn::Str(c) => (dict_field(key, true), dict_array(c)?),
            PropColumn::Mixed(v) => {
                let texts: StringArray = v.iter().map(|x| x.as_ref().map(json_text)).collect();
                let meta = HashMap::from([(KIND_META.to_string(), "mixed".to_string())]);
                (
                    Field::new(key, DataType::Utf8, true).with_metadata(meta),
                    Arc::new(texts),
                )
            }
        };
        fields.push(field);
        columns.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;

    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_dictionary_page_size_limit(16 << 20)
        .set_max_row_group_row_count(Some(1 << 20))
        .set_column_dictionary_enabled(ColumnPath::from("ts"), false)
        .set_column_encoding(ColumnPath::from("ts"), Encoding::DELTA_BINARY_PACKED)
        .build();
    let tmp = path.with_extension("parquet.tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    let file = File::create(&tmp).at(&tmp)?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))?;
    writer.write(&batch)?;
    let file = writer.into_inner()?;
    file.sync_all().at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)?;
    Ok(())
}

/// Reads a dictionary (or plain) string array into a [`StrColumn`] appended to `out`.
/// The unit column is sorted, so units are runs of equal values: no index is needed, only a
/// comparison with the previous row's unit. (The unit column precedes the others, so the
/// rows already read are `data.time.len()`.)
fn append_units(array: &dyn Array, data: &mut PartitionData) -> Result<(), StoreError> {
    let row = data.time.len();
    let push = |s: &str, row: usize, data: &mut PartitionData| {
        if data.units.last().is_none_or(|u| u != s) {
            data.units.push(s.to_string());
            data.unit_start.push(row as u32);
        }
    };
    if let Some(d) = array.as_any().downcast_ref::<DictionaryArray<UInt32Type>>() {
        let values = d
            .values()
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| bad_type("dictionary values"))?;
        let mut prev = u32::MAX;
        for (i, k) in d.keys().values().iter().enumerate() {
            if *k != prev {
                push(values.value(*k as usize), row + i, data);
                prev = *k;
            }
        }
        return Ok(());
    }
    if let Some(s) = array.as_any().downcast_ref::<StringArray>() {
        for (i, v) in s.iter().enumerate() {
            push(v.ok_or_else(|| bad_type("unit"))?, row + i, data);
        }
        return Ok(());
    }
    Err(bad_type("unit column"))
}

fn append_strings(
    array: &dyn Array,
    out: &mut StrColumn,
    index: &mut DictBuilder,
) -> Result<(), StoreError> {
    // Room for every new entry up front: rehashing a growing table of unique ids is slow.
    if let Some(d) = array.as_any().downcast_ref::<DictionaryArray<UInt32Type>>() {
        index.reserve(d.values().len().min(d.len()), &out.dict);
    } else if let Some(s) = array.as_any().downcast_ref::<StringArray>() {
        index.reserve(s.len(), &out.dict);
    }
    let mut push_value = |s: Option<&str>, out: &mut StrColumn| match s {
        None => out.keys.push(NULL_KEY),
        Some(s) => {
            let k = index.intern(&mut out.dict, s);
            out.keys.push(k);
        }
    };
    if let Some(d) = array.as_any().downcast_ref::<DictionaryArray<UInt32Type>>() {
        let values = d
            .values()
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| bad_type("dictionary values"))?;
        if d.keys().null_count() == 0 && values.null_count() == 0 && values.len() * 4 <= d.len() {
            // No nulls and a small dictionary (event names): map every entry once, then copy
            // keys through the map. (A large dictionary may be shared by every batch of a
            // row group, so it is mapped lazily below.)
            let remap: Vec<u32> = (0..values.len())
                .map(|k| {
                    push_value(Some(values.value(k)), out);
                    out.keys.pop().expect("just pushed")
                })
                .collect();
            out.keys
                .extend(d.keys().values().iter().map(|&k| remap[k as usize]));
            return Ok(());
        }
        // Map each dictionary entry once, then each row by key.
        let mut remap: Vec<Option<u32>> = vec![None; values.len()];
        for (row, k) in d.keys().iter().enumerate() {
            let _ = row;
            match k {
                None => out.keys.push(NULL_KEY),
                Some(k) => {
                    let k = k as usize;
                    let mapped = match remap[k] {
                        Some(m) => m,
                        None => {
                            let before = out.keys.len();
                            push_value(Some(values.value(k)), out);
                            let m = out.keys.pop().expect("just pushed");
                            debug_assert_eq!(out.keys.len(), before);
                            remap[k] = Some(m);
                            m
                        }
                    };
                    out.keys.push(mapped);
                }
            }
        }
        return Ok(());
    }
    if let Some(d) = array.as_any().downcast_ref::<DictionaryArray<Int32Type>>() {
        let values = d
            .values()
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| bad_type("dictionary values"))?;
        for k in d.keys().iter() {
            push_value(k.map(|k| values.value(k as usize)), out);
        }
        return Ok(());
    }
    if let Some(s) = array.as_any().downcast_ref::<StringArray>() {
        for v in s.iter() {
            push_value(v, out);
        }
        return Ok(());
    }
    Err(bad_type("string column"))
}

fn bad_type(what: &str) -> StoreError {
    StoreError::Corrupt {
        path: "history".into(),
        reason: format!("unexpected arrow type for {what}"),
    }
}

fn parse_mixed(s: &str) -> Value {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(j) => Value::from_json(&j).unwrap_or(Value::Json(s.to_string())),
        Err(_) => Value::Str(s.to_string().into()),
    }
}

/// Reads one run file.
/// The column names of a history file (read from its footer only).
pub fn run_columns(path: &Path) -> Result<Vec<String>, StoreError> {
    let file = File::open(path).at(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    Ok(builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect())
}

/// Reads a history file.
pub fn read_run(path: &Path, projection: &Projection) -> Result<PartitionData, StoreError> {
    let file = File::open(path).at(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let arrow_schema = builder.schema().clone();
    let roots: Vec<usize> = arrow_schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| projection.wants(f.name()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let rows = builder.metadata().file_metadata().num_rows().max(0) as usize;
    let reader = builder
        .with_projection(mask)
        .with_batch_size(1 << 17)
        .build()?;

    // Sized up front: growing these by doubling costs copies and fresh zeroed pages.
    let mut data = PartitionData {
        time: Vec::with_capacity(rows),
        ..PartitionData::default()
    };
    let mut name_index = DictBuilder::default();
    let mut names = StrColumn {
        dict: Vec::new(),
        keys: Vec::with_capacity(rows),
    };
    let mut id_cols: HashMap<String, (StrColumn, DictBuilder)> = HashMap::new();
    // Mixed columns value by value; typed ones straight into their column.
    let mut prop_vals: HashMap<String, Vec<Option<Value>>> = HashMap::new();
    let mut typed: HashMap<String, PropColumn> = HashMap::new();
    let mut str_dicts: HashMap<String, DictBuilder> = HashMap::new();
    for batch in reader {
        let batch = batch?;
        let schema = batch.schema();
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            let name = field.name().as_str();
            match name {
                "unit" => append_units(array.as_ref(), &mut data)?,
                "name" => append_strings(array.as_ref(), &mut names, &mut name_index)?,
                "ts" => match field.data_type() {
                    DataType::Timestamp(TimeUnit::Second, _) => {
                        let a = array
                            .as_any()
                            .downcast_ref::<TimestampSecondArray>()
                            .ok_or_else(|| bad_type("ts"))?;
                        data.time.extend(a.values().iter().map(|v| v * 1_000_000));
                    }
                    DataType::Timestamp(TimeUnit::Millisecond, _) => {
                        let a = array
                            .as_any()
                            .downcast_ref::<TimestampMillisecondArray>()
                            .ok_or_else(|| bad_type("ts"))?;
                        data.time.extend(a.values().iter().map(|v| v * 1000));
                    }
                    DataType::Timestamp(TimeUnit::Microsecond, _) => {
                        let a = array
                            .as_any()
                            .downcast_ref::<TimestampMicrosecondArray>()
                            .ok_or_else(|| bad_type("ts"))?;
                        data.time.extend_from_slice(a.values());
                    }
                    _ => return Err(bad_type("ts")),
                },
                "kind" => {
                    let a = array
                        .as_any()
                        .downcast_ref::<UInt8Array>()
                        .ok_or_else(|| bad_type("kind"))?;
                    data.kind.extend_from_slice(a.values());
                }
                "seq" => {
                    let a = array
                        .as_any()
                        .downcast_ref::<UInt64Array>()
                        .ok_or_else(|| bad_type("seq"))?;
                    data.seq.extend_from_slice(a.values());
                }
                id if ID_COLUMNS.contains(&id) => {
                    let (col, index) = id_cols.entry(id.to_string()).or_default();
                    append_strings(array.as_ref(), col, index)?;
                }
                key => {
                    let mixed = field
                        .metadata()
                        .get(KIND_META)
                        .is_some_and(|k| k == "mixed");
                    if mixed {
                        let a = array
                            .as_any()
                            .downcast_ref::<StringArray>()
                            .ok_or_else(|| bad_type(key))?;
                        let vals = prop_vals.entry(key.to_string()).or_default();
                        vals.extend(a.iter().map(|v| v.map(parse_mixed)));
                        continue;
                    }
                    let col = typed.entry(key.to_string());
                    match field.data_type() {
                        DataType::Int64 => {
                            let a = array
                                .as_any()
                                .downcast_ref::<Int64Array>()
                                .ok_or_else(|| bad_type(key))?;
                            match col.or_insert_with(|| PropColumn::Int(Vec::with_capacity(rows))) {
                                PropColumn::Int(v) => v.extend(a.iter()),
                                _ => return Err(bad_type(key)),
                            }
                        }
                        DataType::Float64 => {
                            let a = array
                                .as_any()
                                .downcast_ref::<Float64Array>()
                                .ok_or_else(|| bad_type(key))?;
                            match col.or_insert_with(|| PropColumn::Float(Vec::with_capacity(rows)))
                            {
                                PropColumn::Float(v) => v.extend(a.iter()),
                                _ => return Err(bad_type(key)),
                            }
                        }
                        DataType::Boolean => {
                            let a = array
                                .as_any()
                                .downcast_ref::<BooleanArray>()
                                .ok_or_else(|| bad_type(key))?;
                            match col.or_insert_with(|| PropColumn::Bool(Vec::with_capacity(rows)))
                            {
                                PropColumn::Bool(v) => v.extend(a.iter()),
                                _ => return Err(bad_type(key)),
                            }
                        }
                        _ => {
                            // Strings: keep them dictionary-encoded, no per-row allocation.
                            let index = str_dicts.entry(key.to_string()).or_default();
                            match col.or_insert_with(|| PropColumn::Str(StrColumn::default())) {
                                PropColumn::Str(c) => append_strings(array.as_ref(), c, index)?,
                                _ => return Err(bad_type(key)),
                            }
                        }
                    }
                }
            }
        }
    }
    data.unit_start.push(data.time.len() as u32);
    data.name = names.keys;
    data.names = names.dict;
    if data.kind.is_empty() {
        data.kind = vec![0; data.time.len()];
    }
    data.ids = id_cols.into_iter().map(|(k, (c, _))| (k, c)).collect();
    data.props = prop_vals
        .into_iter()
        .map(|(k, v)| (k, PropColumn::from_values(v)))
        .collect();
    data.props.extend(typed);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sequin_core::Event;

    #[test]
    fn a_run_round_trips_every_column() {
        let mut events = Vec::new();
        for i in 0..50i64 {
            let mut e = Event::new(
                format!("u{}", i % 4),
                1_700_000_000_000_000 + i * 1_500,
                format!("e{}", i % 3),
            );
            e.properties.push(("n".into(), Value::Int(i)));
            e.properties.push((
                "mix".into(),
                if i % 2 == 0 {
                    Value::Int(i)
                } else {
                    Value::Str(format!("{i}").into())
                },
            ));
            e.context.push(("os.name".into(), Value::Str("iOS".into())));
            if i % 7 == 0 {
                e.traits.push(("vip".into(), Value::Bool(true)));
                e.anonymous_id = Some("a".into());
                e.properties
                    .push(("arr".into(), Value::Json("[1,2]".into())));
                e.properties.push(("f".into(), Value::Float(0.5)));
            }
            events.push(e);
        }
        let units: Vec<&str> = events
            .iter()
            .map(|e| e.user_id.as_deref().unwrap())
            .collect();
        let data = PartitionData::from_events(&events, &units);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.parquet");
        write_run(&path, &data, true).unwrap();
        let back = read_run(&path, &Projection::All).unwrap();
        assert_eq!(back.units, data.units);
        assert_eq!(back.len(), data.len());
        for r in 0..data.len() {
            let mut a = data.event(r);
            let mut b = back.event(r);
            for e in [&mut a, &mut b] {
                e.properties.sort_by(|x, y| x.0.cmp(&y.0));
            }
            assert_eq!(a, b, "row {r}");
        }
        let narrow = read_run(&path, &Projection::Columns(vec!["p.n".into()])).unwrap();
        assert_eq!(narrow.props.keys().collect::<Vec<_>>(), vec!["p.n"]);
        assert!(narrow.ids.is_empty());
    }
}
