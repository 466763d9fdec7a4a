//! A table as Apache Parquet, Snappy-compressed, written a row group at a
//! time as rows are pushed ([`ParquetWriter`]). Every column is optional; each type is
//! stored as pandas (pyarrow), DuckDB and R's arrow read it:
//!
//! | column type | Parquet |
//! |---|---|
//! | text | `BYTE_ARRAY`, `STRING` |
//! | integer | `INT64` |
//! | number | `DOUBLE` |
//! | boolean | `BOOLEAN` |
//! | date | `INT32`, `DATE` (days since 1970-01-01) |
//! | timestamp | `INT64`, `TIMESTAMP(MICROS, UTC)` |
//! | list of texts | `LIST` of required `STRING` (the three-level form) |
//!
//! The table's description is kept in the file's key-value metadata,
//! under `momentum.*` keys, beside what the caller adds.

use std::io::Write;
use std::sync::Arc;

use chrono::NaiveDate;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as PhysicalType};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{Type, TypePtr};

use crate::{Cell, Column, ColumnType, Table, WriteError, distinct_names, row_fits};

/// The media type of a Parquet file.
pub const MEDIA_TYPE: &str = "application/vnd.apache.parquet";

/// Writes a table's rows to `out` as they come, a row group at a time:
/// only one row group's cells are held, column by column.
pub struct ParquetWriter<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    columns: Vec<Column>,
    /// The cells of the row group being gathered, one list per column.
    gathered: Vec<Vec<Cell>>,
    rows_per_group: usize,
    /// Rows pushed so far, for naming one that does not fit.
    pushed: usize,
}

impl<W: Write + Send> ParquetWriter<W> {
    /// Starts a file of these columns, with `metadata` (key, value) in its
    /// footer, whose row groups hold `rows_per_group` rows (the last fewer).
    pub fn new(
        out: W,
        columns: Vec<Column>,
        metadata: Vec<(String, String)>,
        rows_per_group: usize,
    ) -> Result<Self, WriteError> {
        let columns = distinct_names(columns);
        let fields = columns.iter().map(field).collect::<Result<Vec<_>, _>>()?;
        let schema = Type::group_type_builder("schema").with_fields(fields).build()?;
        let mut key_values: Vec<KeyValue> =
            metadata.into_iter().map(|(key, value)| KeyValue::new(key, value)).collect();
        for column in &columns {
            key_values
                .push(KeyValue::new(format!("momentum.description.{}", column.name), column.description.to_string()));
        }
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("momentum {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(key_values))
            .build();
        let writer = SerializedFileWriter::new(out, Arc::new(schema), Arc::new(properties))?;
        let rows_per_group = rows_per_group.max(1);
        let gathered = columns.iter().map(|_| Vec::with_capacity(rows_per_group)).collect();
        Ok(ParquetWriter { writer, columns, gathered, rows_per_group, pushed: 0 })
    }

    /// Adds a row, writing a row group once it has `rows_per_group` rows.
    /// A row must fit the columns, as [`Table::push`] requires; one that
    /// does not is an error, and the file is then not to be used. The
    /// row's texts move into the file's buffers rather than being copied.
    pub fn push(&mut self, row: Vec<Cell>) -> Result<(), WriteError> {
        row_fits(&self.columns, &row).map_err(|detail| WriteError::RowMismatch { row: self.pushed, detail })?;
        self.pushed += 1;
        for (column, cell) in self.gathered.iter_mut().zip(row) {
            column.push(cell);
        }
        if self.gathered.first().map_or(0, Vec::len) == self.rows_per_group {
            self.write_group()?;
        }
        Ok(())
    }

    /// Writes the rows gathered as one row group (nothing when there are none).
    fn write_group(&mut self) -> Result<(), WriteError> {
        if self.gathered.first().is_none_or(Vec::is_empty) {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        for (column, cells) in self.columns.iter().zip(&mut self.gathered) {
            let mut writer = group.next_column()?.expect("a column writer for each column of the schema");
            write_column(writer.untyped(), column.kind, cells.drain(..))?;
            writer.close()?;
        }
        group.close()?;
        Ok(())
    }

    /// Writes the footer and gives the output back.
    pub fn finish(mut self) -> Result<W, WriteError> {
        self.write_group()?;
        Ok(self.writer.into_inner()?)
    }
}

/// A whole table as the bytes of one Parquet file; an error if a row did not fit it.
pub fn to_parquet(table: Table, metadata: Vec<(String, String)>) -> Result<Vec<u8>, WriteError> {
    table.check()?;
    let (columns, rows) = table.into_parts();
    let mut writer = ParquetWriter::new(Vec::new(), columns, metadata, rows.len())?;
    for row in rows {
        writer.push(row)?;
    }
    writer.finish()
}

/// The Parquet field of a column.
fn field(column: &Column) -> Result<TypePtr, ParquetError> {
    let primitive = |physical, logical| {
        Type::primitive_type_builder(&column.name, physical)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(logical)
            .build()
    };
    let built = match column.kind {
        ColumnType::Text => primitive(PhysicalType::BYTE_ARRAY, Some(LogicalType::String))?,
        ColumnType::Integer => primitive(PhysicalType::INT64, None)?,
        ColumnType::Number => primitive(PhysicalType::DOUBLE, None)?,
        ColumnType::Boolean => primitive(PhysicalType::BOOLEAN, None)?,
        ColumnType::Date => primitive(PhysicalType::INT32, Some(LogicalType::Date))?,
        ColumnType::Timestamp => primitive(PhysicalType::INT64, Some(LogicalType::timestamp(true, TimeUnit::MICROS)))?,
        ColumnType::TextList => {
            let element = Type::primitive_type_builder("element", PhysicalType::BYTE_ARRAY)
                .with_repetition(Repetition::REQUIRED)
                .with_logical_type(Some(LogicalType::String))
                .build()?;
            let list = Type::group_type_builder("list")
                .with_repetition(Repetition::REPEATED)
                .with_fields(vec![Arc::new(element)])
                .build()?;
            Type::group_type_builder(&column.name)
                .with_repetition(Repetition::OPTIONAL)
                .with_logical_type(Some(LogicalType::List))
                .with_fields(vec![Arc::new(list)])
                .build()?
        }
    };
    Ok(Arc::new(built))
}

/// The days from 1970-01-01 to `date`, as Parquet's `DATE` stores it.
fn days_since_epoch(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a real date");
    // chrono's dates span about 2^18 years either side of year 0: their
    // days from 1970 always fit in an i32.
    i32::try_from((date - epoch).num_days()).expect("a chrono date is within i32 days of 1970")
}

/// The values and definition levels of an optional primitive column: level
/// 1 for a value, 0 for a null.
fn optional_values<T>(cells: impl Iterator<Item = Cell>, value: impl Fn(Cell) -> Option<T>) -> (Vec<T>, Vec<i16>) {
    let (mut values, mut levels) = (Vec::new(), Vec::new());
    for cell in cells {
        match value(cell) {
            Some(found) => {
                values.push(found);
                levels.push(1);
            }
            None => levels.push(0),
        }
    }
    (values, levels)
}

fn write_column(
    writer: &mut ColumnWriter<'_>,
    kind: ColumnType,
    cells: impl Iterator<Item = Cell>,
) -> Result<(), ParquetError> {
    match (kind, writer) {
        (ColumnType::Text, ColumnWriter::ByteArrayColumnWriter(writer)) => {
            let (values, levels) = optional_values(cells, |cell| match cell {
                Cell::Text(text) => Some(ByteArray::from(text.into_bytes())),
                _ => None,
            });
            writer.write_batch(&values, Some(&levels), None)?;
        }
        (ColumnType::Integer, ColumnWriter::Int64ColumnWriter(writer)) => {
            let (values, levels) = optional_values(cells, |cell| match cell {
                Cell::Integer(integer) => Some(integer),
                _ => None,
            });
            writer.write_batch(&values, Some(&levels), None)?;
        }
        (ColumnType::Number, ColumnWriter::DoubleColumnWriter(writer)) => {
            let (values, levels) = optional_values(cells, |cell| match cell {
                Cell::Number(number) if number.is_finite() => Some(number),
                Cell::Integer(integer) => Some(integer as f64),
                _ => None,
            });
            writer.write_batch(&values, Some(&levels), None)?;
        }
        (ColumnType::Boolean, ColumnWriter::BoolColumnWriter(writer)) => {
            let (values, levels) = optional_values(cells, |cell| match cell {
                Cell::Boolean(flag) => Some(flag),
                _ => None,
            });
            writer.write_batch(&values, Some(&levels), None)?;
        }
        (ColumnType::Date, ColumnWriter::Int32ColumnWriter(writer)) => {
            let (values, levels) = optional_values(cells, |cell| match cell {
                Cell::Date(date) => Some(days_since_epoch(date)),
                _ => None,
            });
            writer.write_batch(&values, Some(&levels), None)?;
        }
        (ColumnType::Timestamp, ColumnWriter::Int64ColumnWriter(writer)) => {
            let (values, levels) = optional_values(cells, |cell| match cell {
                Cell::Timestamp(time) => Some(time.timestamp_micros()),
                _ => None,
            });
            writer.write_batch(&values, Some(&levels), None)?;
        }
        (ColumnType::TextList, ColumnWriter::ByteArrayColumnWriter(writer)) => {
            // Definition levels: 0 a null list, 1 an empty one, 2 an
            // element; repetition levels: 0 a row's first, 1 the next.
            let (mut values, mut definitions, mut repetitions) = (Vec::new(), Vec::new(), Vec::new());
            for cell in cells {
                match cell {
                    Cell::TextList(items) if !items.is_empty() => {
                        for (index, item) in items.into_iter().enumerate() {
                            values.push(ByteArray::from(item.into_bytes()));
                            definitions.push(2);
                            repetitions.push(i16::from(index > 0));
                        }
                    }
                    Cell::TextList(_) => {
                        definitions.push(1);
                        repetitions.push(0);
                    }
                    _ => {
                        definitions.push(0);
                        repetitions.push(0);
                    }
                }
            }
            writer.write_batch(&values, Some(&definitions), Some(&repetitions))?;
        }
        (kind, _) => unreachable!("the schema's writer for a {kind:?} column is the one field() chose"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    #[test]
    fn a_table_reads_back_from_its_parquet_file_cell_for_cell() {
        let mut table = Table::new(vec![
            Column::new("seq", ColumnType::Integer, "the sequence"),
            Column::new("hours", ColumnType::Number, "hours"),
            Column::new("date", ColumnType::Date, "a date"),
            Column::new("attendees", ColumnType::TextList, "who came"),
            Column::new("label", ColumnType::Text, "a label"),
        ]);
        let date = NaiveDate::from_ymd_opt(2026, 3, 5).unwrap();
        table.push(vec![
            Cell::Integer(7),
            Cell::Integer(2),
            Cell::Date(date),
            Cell::TextList(vec!["a".into(), "b".into()]),
            Cell::Null,
        ]);
        table.push(vec![Cell::Integer(8), Cell::Null, Cell::Null, Cell::TextList(vec![]), "x".into()]);
        table.push(vec![Cell::Null, Cell::Number(0.5), Cell::Null, Cell::Null, Cell::Null]);
        let bytes = to_parquet(table, vec![(crate::WATERMARK_KEY.into(), "42".into())]).unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let metadata = reader.metadata().file_metadata().key_value_metadata().unwrap();
        assert!(metadata.iter().any(|pair| pair.key == "momentum.watermark" && pair.value.as_deref() == Some("42")));
        let rows: Vec<String> = reader.get_row_iter(None).unwrap().map(|row| row.unwrap().to_string()).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], "{seq: 7, hours: 2.0, date: 2026-03-05, attendees: [\"a\", \"b\"], label: null}");
        assert_eq!(rows[1], "{seq: 8, hours: null, date: null, attendees: [], label: \"x\"}");
        assert_eq!(rows[2], "{seq: null, hours: 0.5, date: null, attendees: null, label: null}");
    }

    #[test]
    fn rows_pushed_one_at_a_time_fill_row_groups_of_the_size_asked_and_all_read_back() {
        let columns = vec![Column::new("seq", ColumnType::Integer, "the sequence")];
        let mut writer = ParquetWriter::new(Vec::new(), columns, Vec::new(), 2).unwrap();
        for seq in 1..=5 {
            writer.push(vec![Cell::Integer(seq)]).unwrap();
        }
        assert!(writer.push(vec![Cell::Text("six".into())]).is_err(), "a row that does not fit is refused");
        let reader = SerializedFileReader::new(bytes::Bytes::from(writer.finish().unwrap())).unwrap();
        let groups: Vec<i64> = reader.metadata().row_groups().iter().map(|group| group.num_rows()).collect();
        assert_eq!(groups, [2, 2, 1]);
        let rows: Vec<String> = reader.get_row_iter(None).unwrap().map(|row| row.unwrap().to_string()).collect();
        assert_eq!(rows, ["{seq: 1}", "{seq: 2}", "{seq: 3}", "{seq: 4}", "{seq: 5}"]);
    }
}
