//! A CSV file's bytes read into rows: a byte order mark skipped, the
//! delimiter detected, blank rows skipped, each row given the file's own
//! line number, and the rows handed to the event builder.

use super::columns::{Header, Kind, Row};
use super::events::{Builder, Built};
use super::options::Options;
use super::problems::Problem;

/// Everything read from a file.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    pub kind: Option<Kind>,
    /// Data rows read (blank rows are not counted).
    pub rows: u64,
    pub events: Vec<Built>,
    pub problems: Vec<Problem>,
    /// Header names that mean nothing to the importer.
    pub ignored_columns: Vec<String>,
}

/// The delimiter of a CSV text: whichever of `,`, `;` and tab occurs most
/// often outside quotes in its first non-blank line (`,` on a tie).
fn detect_delimiter(bytes: &[u8]) -> u8 {
    let line = bytes
        .split(|byte| *byte == b'\n')
        .find(|line| line.iter().any(|byte| !byte.is_ascii_whitespace()))
        .unwrap_or_default();
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for byte in line {
        match byte {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let delimiters = [b',', b';', b'\t'];
    let best = (0..3).max_by_key(|index| (counts[*index], std::cmp::Reverse(*index))).unwrap_or(0);
    delimiters[best]
}

/// Reads a CSV file's bytes into events and problems. Errors only for
/// problems of the whole file (no header, a header that does not fit).
pub(super) fn parse(bytes: &[u8], options: &Options) -> Result<Parsed, String> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(detect_delimiter(bytes))
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let names: Vec<String> = match reader.headers() {
        Ok(headers) => headers.iter().map(str::to_owned).collect(),
        Err(error) => return Err(format!("cannot read the header row: {error}")),
    };
    if names.iter().all(|name| name.trim().is_empty()) {
        return Err("the file has no header row".to_owned());
    }
    let header = Header::map(names)?;
    let kind = match options.kind.or_else(|| header.detect_kind()) {
        Some(kind) => kind,
        None => {
            return Err("cannot tell from the header whether the rows are hours, meetings, actions or joins; \
                        pass --kind"
                .to_owned());
        }
    };
    let ignored_columns = header.check(kind)?;
    let mut parsed = Parsed { kind: Some(kind), ignored_columns, ..Parsed::default() };
    // The csv crate's own line count misses blank CRLF lines: count lines
    // up to the record's first byte instead.
    let newlines: Vec<usize> = bytes.iter().enumerate().filter(|(_, byte)| **byte == b'\n').map(|(at, _)| at).collect();
    let line_of = |byte: u64| {
        // A record's offset may point at the line break before it.
        let mut start = byte as usize;
        while bytes.get(start).is_some_and(|byte| matches!(byte, b'\r' | b'\n')) {
            start += 1;
        }
        newlines.partition_point(|at| *at < start) as u64 + 1
    };
    let mut builder = Builder::new(kind, options, &header);
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |position| line_of(position.byte()));
                parsed.rows += 1;
                let message = match error.kind() {
                    csv::ErrorKind::Utf8 { .. } => {
                        "is not UTF-8 text: save the spreadsheet as \"CSV UTF-8\"".to_owned()
                    }
                    _ => format!("cannot be read: {error}"),
                };
                parsed.problems.push(Problem { record: None, line, column: None, value: None, message });
                continue;
            }
        };
        if record.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        parsed.rows += 1;
        let line = record.position().map_or(0, |position| line_of(position.byte()));
        let row = Row { line, record: &record, header: &header };
        if let Err(problem) = builder.add(&row) {
            parsed.problems.push(problem);
        }
    }
    let (events, held_back) = builder.finish();
    parsed.events = events;
    parsed.problems.extend(held_back);
    parsed.problems.sort_by_key(|problem| problem.line);
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::tests::read;

    #[test]
    fn a_bom_semicolons_quotes_blank_lines_and_trailing_columns_are_handled() {
        let text = "\u{feff}Date;Participant;Hours;Activity;;\r\n\
                    05/03/2026;\"v;12\";2,5;\"cooking; washing up\";;\r\n\
                    \r\n\
                    ;;;;;\r\n\
                    06/03/2026;v-13;1;admin;;\r\n";
        let parsed = read(text);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(parsed.rows, 2, "blank rows are not rows");
        assert_eq!(parsed.events.len(), 2);
        assert_eq!(parsed.events[0].event["data"]["participant"], "v;12");
        assert_eq!(parsed.events[0].event["data"]["hours"], 2.5);
        assert_eq!(parsed.events[0].event["data"]["activity"], "cooking; washing up");
        assert_eq!(parsed.events[1].lines, vec![5], "line numbers are the file's");
        assert_eq!(detect_delimiter(b"a\tb\tc\n"), b'\t');
        assert_eq!(detect_delimiter(b"\"a;b\",c\n"), b',');
    }
}
