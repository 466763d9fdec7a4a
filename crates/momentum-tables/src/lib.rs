//! Tables an analyst loads. A [`Table`] is typed columns and rows of
//! cells; it is written as CSV ([`csv`]) or Parquet ([`parquet`]) and
//! described as a Frictionless table schema ([`frictionless`]), so a file's
//! shape is stated once, whatever it is written as. The events export's
//! tables are [`events`]'.
//!
//! Building a table does no I/O; the Parquet writer writes to any
//! `std::io::Write` it is given. A row that does not fit its table is a bug
//! of the code that built it; it is kept out of the table, and writing the
//! table then fails (a server answers 500, and never a file with a row
//! missing).

pub mod csv;
pub mod events;
pub mod frictionless;
pub mod parquet;

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};

/// The key of a file's metadata (in Parquet's key-value metadata) that
/// holds the stream sequence its figures or events go up to.
pub const WATERMARK_KEY: &str = "momentum.watermark";

/// What a table is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// RFC 4180 CSV ([`csv`]).
    Csv,
    /// Apache Parquet ([`parquet`]).
    Parquet,
}

impl FileFormat {
    /// The file's media type, as a response's `Content-Type`.
    pub fn media_type(self) -> &'static str {
        match self {
            FileFormat::Csv => "text/csv; charset=utf-8",
            FileFormat::Parquet => parquet::MEDIA_TYPE,
        }
    }

    /// The file name's extension, without its dot.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
        }
    }
}

/// Writing a table failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A row pushed did not fit the columns: a bug of the code that built it.
    #[error("row {row} does not fit the table's columns: {detail}")]
    RowMismatch {
        /// The row's index among those pushed.
        row: usize,
        /// What did not fit.
        detail: String,
    },
    /// The Parquet writer refused, or its output did.
    #[error("cannot write the parquet file: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
}

/// The table as the bytes of a file of `format`, with `watermark` in its
/// metadata where the format has some. The table is consumed: its texts
/// move into the file's buffers.
pub fn write(table: Table, format: FileFormat, watermark: u64) -> Result<Vec<u8>, WriteError> {
    match format {
        FileFormat::Csv => Ok(csv::to_csv(&table)?.into_bytes()),
        FileFormat::Parquet => parquet::to_parquet(table, vec![(WATERMARK_KEY.to_owned(), watermark.to_string())]),
    }
}

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text.
    Text,
    /// A whole number (64-bit).
    Integer,
    /// A number (64-bit floating point); whole numbers are written as they are.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A calendar date, local to the deployment's time zone.
    Date,
    /// An instant, in UTC, to the microsecond.
    Timestamp,
    /// A list of texts: a Parquet list, `;`-separated in CSV.
    TextList,
}

/// One column: its name, type and what it means.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// The header: a name an analyst types (lowercase, `_`-separated).
    pub name: Cow<'static, str>,
    /// What its cells hold.
    pub kind: ColumnType,
    /// One or two sentences on what a cell means.
    pub description: Cow<'static, str>,
}

impl Column {
    /// A column with a fixed name and description.
    pub const fn new(name: &'static str, kind: ColumnType, description: &'static str) -> Column {
        Column { name: Cow::Borrowed(name), kind, description: Cow::Borrowed(description) }
    }

    /// A column whose name or description is made at run time.
    pub fn owned(
        name: impl Into<Cow<'static, str>>,
        kind: ColumnType,
        description: impl Into<Cow<'static, str>>,
    ) -> Column {
        Column { name: name.into(), kind, description: description.into() }
    }
}

/// One cell. [`Cell::Null`] fits every column; an integer fits a number
/// column too (a long table's `value` holds counts and shares).
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Nothing: an empty CSV cell, a Parquet null.
    Null,
    /// For [`ColumnType::Text`].
    Text(String),
    /// For [`ColumnType::Integer`] or [`ColumnType::Number`].
    Integer(i64),
    /// For [`ColumnType::Number`].
    Number(f64),
    /// For [`ColumnType::Boolean`].
    Boolean(bool),
    /// For [`ColumnType::Date`].
    Date(NaiveDate),
    /// For [`ColumnType::Timestamp`].
    Timestamp(DateTime<Utc>),
    /// For [`ColumnType::TextList`].
    TextList(Vec<String>),
}

impl Cell {
    /// Whether the cell may stand in a column of `kind`.
    pub fn fits(&self, kind: ColumnType) -> bool {
        matches!(
            (self, kind),
            (Cell::Null, _)
                | (Cell::Text(_), ColumnType::Text)
                | (Cell::Integer(_), ColumnType::Integer | ColumnType::Number)
                | (Cell::Number(_), ColumnType::Number)
                | (Cell::Boolean(_), ColumnType::Boolean)
                | (Cell::Date(_), ColumnType::Date)
                | (Cell::Timestamp(_), ColumnType::Timestamp)
                | (Cell::TextList(_), ColumnType::TextList)
        )
    }

    /// A figure of an answer's JSON: a number as an integer when it is
    /// one, text as text, anything else (`null`) as nothing.
    pub fn from_json(value: &serde_json::Value) -> Cell {
        match value {
            serde_json::Value::Number(number) => match number.as_i64() {
                Some(integer) => Cell::Integer(integer),
                None => number.as_f64().map_or(Cell::Null, Cell::Number),
            },
            serde_json::Value::String(text) => Cell::Text(text.clone()),
            serde_json::Value::Bool(flag) => Cell::Boolean(*flag),
            _ => Cell::Null,
        }
    }

    /// An optional count or share: nothing where it is `None` (suppressed).
    pub fn optional<T: Into<Cell>>(value: Option<T>) -> Cell {
        value.map_or(Cell::Null, Into::into)
    }
}

impl From<i64> for Cell {
    fn from(value: i64) -> Cell {
        Cell::Integer(value)
    }
}

impl From<u64> for Cell {
    fn from(value: u64) -> Cell {
        // Counts and sequences never reach 2^63; saturate rather than wrap.
        Cell::Integer(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Cell {
    fn from(value: u32) -> Cell {
        Cell::Integer(i64::from(value))
    }
}

impl From<f64> for Cell {
    fn from(value: f64) -> Cell {
        Cell::Number(value)
    }
}

impl From<bool> for Cell {
    fn from(value: bool) -> Cell {
        Cell::Boolean(value)
    }
}

impl From<NaiveDate> for Cell {
    fn from(value: NaiveDate) -> Cell {
        Cell::Date(value)
    }
}

impl From<&str> for Cell {
    fn from(value: &str) -> Cell {
        Cell::Text(value.to_owned())
    }
}

impl From<String> for Cell {
    fn from(value: String) -> Cell {
        Cell::Text(value)
    }
}

/// Typed columns and their rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<Cell>>,
    /// The first row pushed that did not fit, if any.
    mismatch: Option<(usize, String)>,
    pushed: usize,
}

impl Table {
    /// An empty table of these columns. A name already taken gets `_2`
    /// (`_3`, …): a movement of a comparison named `period`, say.
    pub fn new(columns: Vec<Column>) -> Table {
        Table { columns: distinct_names(columns), rows: Vec::new(), mismatch: None, pushed: 0 }
    }

    /// Adds a row: a cell for every column, each fitting its column. A row
    /// that does not fit is kept out, and [`Table::check`] says so.
    pub fn push(&mut self, row: Vec<Cell>) {
        match row_fits(&self.columns, &row) {
            Ok(()) => self.rows.push(row),
            Err(detail) => {
                self.mismatch.get_or_insert((self.pushed, detail));
            }
        }
        self.pushed += 1;
    }

    /// Whether every row pushed fitted the columns.
    pub fn check(&self) -> Result<(), WriteError> {
        match &self.mismatch {
            None => Ok(()),
            Some((row, detail)) => Err(WriteError::RowMismatch { row: *row, detail: detail.clone() }),
        }
    }

    /// The columns, in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The rows, in the order they were pushed.
    pub fn rows(&self) -> &[Vec<Cell>] {
        &self.rows
    }

    /// The columns and the rows, taken apart.
    pub(crate) fn into_parts(self) -> (Vec<Column>, Vec<Vec<Cell>>) {
        (self.columns, self.rows)
    }
}

/// The columns, each name made distinct from those before it.
pub(crate) fn distinct_names(mut columns: Vec<Column>) -> Vec<Column> {
    let mut taken = std::collections::HashSet::new();
    for column in &mut columns {
        let mut name = column.name.to_string();
        let mut suffix = 2;
        while taken.contains(&name) {
            name = format!("{}_{suffix}", column.name);
            suffix += 1;
        }
        if name != column.name {
            column.name = Cow::Owned(name.clone());
        }
        taken.insert(name);
    }
    columns
}

/// Whether `row` has one cell per column, each fitting it; what does not, if not.
pub(crate) fn row_fits(columns: &[Column], row: &[Cell]) -> Result<(), String> {
    if row.len() != columns.len() {
        return Err(format!("{} cells for {} columns", row.len(), columns.len()));
    }
    for (cell, column) in row.iter().zip(columns) {
        if !cell.fits(column.kind) {
            return Err(format!("{cell:?} in column {} of {:?}", column.name, column.kind));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_fits_every_column_and_an_integer_fits_a_number_column() {
        assert!(Cell::Null.fits(ColumnType::Date));
        assert!(Cell::Integer(3).fits(ColumnType::Number));
        assert!(!Cell::Number(0.5).fits(ColumnType::Integer));
        assert!(!Cell::Text("x".into()).fits(ColumnType::TextList));
    }

    #[test]
    fn a_row_with_a_cell_of_the_wrong_type_is_kept_out_and_the_table_is_not_written() {
        let mut table = Table::new(vec![Column::new("n", ColumnType::Integer, "a count")]);
        table.push(vec![Cell::Integer(3)]);
        table.push(vec![Cell::Text("three".into())]);
        assert_eq!(table.rows().len(), 1);
        assert!(matches!(table.check(), Err(WriteError::RowMismatch { row: 1, .. })));
        assert!(write(table.clone(), FileFormat::Csv, 0).is_err());
        assert!(write(table, FileFormat::Parquet, 0).is_err());
    }

    #[test]
    fn a_column_name_already_taken_gets_a_suffix() {
        let table = Table::new(vec![
            Column::new("period", ColumnType::Date, ""),
            Column::new("period", ColumnType::Integer, ""),
            Column::new("period", ColumnType::Integer, ""),
        ]);
        let names: Vec<&str> = table.columns().iter().map(|column| column.name.as_ref()).collect();
        assert_eq!(names, ["period", "period_2", "period_3"]);
    }

    #[test]
    fn a_json_figure_becomes_an_integer_when_it_is_whole() {
        assert_eq!(Cell::from_json(&serde_json::json!(5)), Cell::Integer(5));
        assert_eq!(Cell::from_json(&serde_json::json!(0.0)), Cell::Number(0.0));
        assert_eq!(Cell::from_json(&serde_json::json!(null)), Cell::Null);
    }
}
