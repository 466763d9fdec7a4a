//! A [`Problem`] with a row or a record, and the `--report` file that
//! lists them.

/// One problem with a row of a CSV file, or with a record of a JSON file.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Problem {
    /// The file's own line number; for a JSON record, its number in
    /// reading order (1 for the first record of the first file).
    pub line: u64,
    /// Where a JSON record is: its file and JSON Pointer. `None` for a CSV row.
    pub record: Option<String>,
    pub column: Option<String>,
    pub value: Option<String>,
    pub message: String,
}

impl Problem {
    /// A problem with JSON record `number`, found at `location` (file and pointer).
    pub(super) fn with_record(number: u64, location: String, message: impl Into<String>) -> Problem {
        Problem { line: number, record: Some(location), column: None, value: None, message: message.into() }
    }

    /// Where the problem is, as the report and the summary name it: `line 3`, or `record 3 (file#/pointer)`.
    pub(super) fn position(&self) -> String {
        match &self.record {
            None => format!("line {}", self.line),
            Some(location) => format!("record {} ({location})", self.line),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: ", self.position())?;
        if let Some(column) = &self.column {
            write!(formatter, "{column}: ")?;
        }
        write!(formatter, "{}", self.message)?;
        if let Some(value) = &self.value {
            write!(formatter, " (got {value:?})")?;
        }
        Ok(())
    }
}

pub(super) fn write_report(path: &std::path::Path, problems: &[Problem]) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_path(path)?;
    writer.write_record(["line", "column", "value", "problem"])?;
    for problem in problems {
        let line = match &problem.record {
            None => problem.line.to_string(),
            Some(_) => problem.position(),
        };
        writer.write_record([
            line.as_str(),
            problem.column.as_deref().unwrap_or(""),
            problem.value.as_deref().unwrap_or(""),
            problem.message.as_str(),
        ])?;
    }
    writer.flush()?;
    Ok(())
}
