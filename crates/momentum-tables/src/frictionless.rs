//! A table described as a Frictionless table schema
//! (<https://specs.frictionlessdata.io/table-schema/>), for the
//! `datapackage.json` of an open-data package: each column a field with
//! its name, type, format and description, as the table's CSV holds it.

use serde_json::{Value, json};

use crate::{Column, ColumnType};

/// The table schema of a CSV file of these columns.
pub fn table_schema(columns: &[Column]) -> Value {
    let fields: Vec<Value> = columns.iter().map(field).collect();
    // Empty cells are nulls in every column.
    json!({ "fields": fields, "missingValues": [""] })
}

fn field(column: &Column) -> Value {
    let (kind, format) = match column.kind {
        ColumnType::Text => ("string", None),
        ColumnType::Integer => ("integer", None),
        ColumnType::Number => ("number", None),
        ColumnType::Boolean => ("boolean", None),
        ColumnType::Date => ("date", None),
        // Fractions of a second are written only when there are some.
        ColumnType::Timestamp => ("datetime", Some("any")),
        // A list is one `;`-separated text in CSV.
        ColumnType::TextList => ("string", None),
    };
    let mut field = json!({ "name": column.name, "type": kind, "description": column.description });
    if let Some(format) = format {
        field["format"] = format.into();
    }
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_column_becomes_a_field_of_its_frictionless_type() {
        let schema = table_schema(&[
            Column::new("period", ColumnType::Date, "the period's first day"),
            Column::new("active_participants", ColumnType::Integer, "distinct participants"),
            Column::new("retention_rate", ColumnType::Number, "a share"),
            Column::new("complete", ColumnType::Boolean, "whether it was over"),
        ]);
        let types: Vec<&str> =
            schema["fields"].as_array().unwrap().iter().map(|f| f["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["date", "integer", "number", "boolean"]);
        assert_eq!(schema["fields"][0]["description"], "the period's first day");
        assert_eq!(schema["missingValues"], json!([""]));
    }
}
