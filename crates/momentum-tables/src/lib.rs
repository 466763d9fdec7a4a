//! Tables an analyst loads. A [`Table`] is typed columns and rows of
//! cells; it is written as CSV ([`csv`]) or Parquet ([`parquet`]) and
//! described as a Frictionless table schema ([`frictionless`]), so a file's
//! shape is stated once, whatever it is written as. The events export's
//! tables are [`events`]'.
//!
//! Building a table does no I/O; the Parquet writer writes to any
//! `std::io::Write` it is given.

pub mod csv;
pub mod events;
pub mod frictionless;
pub mod parquet;

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};

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
}

impl Table {
    /// An empty table of these columns.
    pub fn new(columns: Vec<Column>) -> Table {
        Table { columns, rows: Vec::new() }
    }

    /// Adds a row. A row must have a cell for every column, each fitting
    /// its column: anything else is a bug in the code that built it.
    pub fn push(&mut self, row: Vec<Cell>) {
        assert_row_fits(&self.columns, &row);
        self.rows.push(row);
    }

    /// The columns, in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The rows, in the order they were pushed.
    pub fn rows(&self) -> &[Vec<Cell>] {
        &self.rows
    }
}

/// Panics unless `row` has one cell per column, each fitting it.
pub(crate) fn assert_row_fits(columns: &[Column], row: &[Cell]) {
    assert_eq!(row.len(), columns.len(), "a row has a cell per column");
    for (cell, column) in row.iter().zip(columns) {
        assert!(cell.fits(column.kind), "{cell:?} does not fit column {} of {:?}", column.name, column.kind);
    }
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
    #[should_panic(expected = "does not fit")]
    fn a_row_with_a_cell_of_the_wrong_type_is_refused() {
        let mut table = Table::new(vec![Column::new("n", ColumnType::Integer, "a count")]);
        table.push(vec![Cell::Text("three".into())]);
    }

    #[test]
    fn a_json_figure_becomes_an_integer_when_it_is_whole() {
        assert_eq!(Cell::from_json(&serde_json::json!(5)), Cell::Integer(5));
        assert_eq!(Cell::from_json(&serde_json::json!(0.0)), Cell::Number(0.0));
        assert_eq!(Cell::from_json(&serde_json::json!(null)), Cell::Null);
    }
}
