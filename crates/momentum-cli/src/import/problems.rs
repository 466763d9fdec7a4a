//! A [`Problem`] with a row, and the `--report` file that lists them.

/// One problem with a row.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Problem {
    pub line: u64,
    pub column: Option<String>,
    pub value: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "line {}: ", self.line)?;
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
        writer.write_record([
            problem.line.to_string().as_str(),
            problem.column.as_deref().unwrap_or(""),
            problem.value.as_deref().unwrap_or(""),
            problem.message.as_str(),
        ])?;
    }
    writer.flush()?;
    Ok(())
}
