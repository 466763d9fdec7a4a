//! A table as CSV (RFC 4180, `\n` line ends): a header row of the column
//! names, then a row per row. Nulls are empty cells, numbers are written as
//! JSON writes them, instants in UTC (`2026-03-05T09:00:00Z`), lists
//! `;`-separated.

use crate::{Cell, Table, WriteError};

/// The table as one CSV document; an error if a row did not fit it.
pub fn to_csv(table: &Table) -> Result<String, WriteError> {
    table.check()?;
    let mut body = String::new();
    let names: Vec<String> = table.columns().iter().map(|column| field(&column.name)).collect();
    body.push_str(&names.join(","));
    body.push('\n');
    for row in table.rows() {
        for (index, cell) in row.iter().enumerate() {
            if index > 0 {
                body.push(',');
            }
            write_cell(&mut body, cell);
        }
        body.push('\n');
    }
    Ok(body)
}

fn write_cell(body: &mut String, cell: &Cell) {
    match cell {
        Cell::Null => {}
        Cell::Text(text) => body.push_str(&field(text)),
        Cell::Integer(integer) => body.push_str(itoa::Buffer::new().format(*integer)),
        // As JSON writes it, so `0.0` stays a number and a share reads the
        // same in CSV as in JSON; nothing where JSON would have `null`.
        Cell::Number(number) if number.is_finite() => body.push_str(&serde_json::Value::from(*number).to_string()),
        Cell::Number(_) => {}
        Cell::Boolean(flag) => body.push_str(if *flag { "true" } else { "false" }),
        Cell::Date(date) => body.push_str(&date.format("%Y-%m-%d").to_string()),
        Cell::Timestamp(time) => body.push_str(&time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        Cell::TextList(items) => body.push_str(&field(&items.join(";"))),
    }
}

/// Quotes a text field when it holds a comma, a quote or a line break.
/// Text a spreadsheet would run as a formula (starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return) gets a leading `'`.
pub fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;
    use crate::{Column, ColumnType};

    #[test]
    fn text_a_spreadsheet_would_run_as_a_formula_is_written_as_text() {
        assert_eq!(field("leeds-walking"), "leeds-walking");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("+1"), "'+1");
        assert_eq!(field("@sum"), "'@sum");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn every_cell_type_is_written_as_documented() {
        let mut table = Table::new(vec![
            Column::new("text", ColumnType::Text, ""),
            Column::new("integer", ColumnType::Integer, ""),
            Column::new("number", ColumnType::Number, ""),
            Column::new("flag", ColumnType::Boolean, ""),
            Column::new("date", ColumnType::Date, ""),
            Column::new("time", ColumnType::Timestamp, ""),
            Column::new("list", ColumnType::TextList, ""),
        ]);
        table.push(vec![
            Cell::Text("a,b".into()),
            Cell::Integer(-3),
            Cell::Number(0.0),
            Cell::Boolean(true),
            Cell::Date(NaiveDate::from_ymd_opt(2026, 3, 5).unwrap()),
            Cell::Timestamp(Utc.with_ymd_and_hms(2026, 3, 5, 9, 0, 0).unwrap()),
            Cell::TextList(vec!["ps-a".into(), "ps-b".into()]),
        ]);
        table.push(vec![
            Cell::Null,
            Cell::Null,
            Cell::Number(f64::NAN),
            Cell::Null,
            Cell::Null,
            Cell::Null,
            Cell::Null,
        ]);
        assert_eq!(
            to_csv(&table).unwrap(),
            "text,integer,number,flag,date,time,list\n\
             \"a,b\",-3,0.0,true,2026-03-05,2026-03-05T09:00:00Z,ps-a;ps-b\n,,,,,,\n"
        );
    }
}
