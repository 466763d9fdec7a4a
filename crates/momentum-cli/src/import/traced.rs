//! An event's errors (the validator's, or the server's) traced back to the
//! lines and cells the event came from, and worded for a spreadsheet user.

use std::collections::BTreeSet;

use super::events::Built;
use super::problems::Problem;

impl Built {
    /// The problems an error at `pointer` means: one at the line and
    /// column the pointer came from, and one for each other line of the
    /// event (they are not imported either).
    fn problems(&self, pointer: &str, message: &str) -> Vec<Problem> {
        let cell = self
            .cells
            .iter()
            .filter(|cell| {
                pointer == cell.pointer
                    || (pointer.starts_with(&cell.pointer) && pointer[cell.pointer.len()..].starts_with('/'))
            })
            .max_by_key(|cell| cell.pointer.len());
        let message = friendly(pointer, message);
        let first = match cell {
            Some(cell) => Problem {
                record: None,
                line: cell.line,
                column: Some(cell.column.clone()),
                value: Some(cell.raw.clone()),
                message,
            },
            None => Problem {
                record: self.locations.first().cloned(),
                line: self.lines[0],
                column: None,
                value: None,
                message: if matches!(pointer, "" | "/data") { message } else { format!("{pointer}: {message}") },
            },
        };
        let mut problems = vec![first.clone()];
        for (index, line) in self.lines.iter().enumerate() {
            if *line != first.line {
                problems.push(Problem {
                    record: self.locations.get(index).cloned(),
                    line: *line,
                    column: None,
                    value: None,
                    message: format!("not imported: its {} was rejected (see {})", self.what(), first.position()),
                });
            }
        }
        problems
    }

    fn what(&self) -> &'static str {
        match self.event["type"].as_str() {
            Some("meeting.held") => "meeting",
            Some("collective_action.taken") => "action",
            _ => "event",
        }
    }
}

/// Rewrites the validator's messages ("0 is less than or equal to the
/// minimum of 0") the way a spreadsheet user reads them ("must be greater
/// than 0"); the value is shown beside them anyway.
fn friendly(pointer: &str, message: &str) -> String {
    let after = |marker: &str| message.find(marker).map(|at| &message[at + marker.len()..]);
    if let Some(limit) = after(" is less than or equal to the minimum of ") {
        format!("must be greater than {limit}")
    } else if let Some(limit) = after(" is greater than or equal to the maximum of ") {
        format!("must be less than {limit}")
    } else if let Some(limit) = after(" is greater than the maximum of ") {
        format!("must be at most {limit}")
    } else if let Some(limit) = after(" is less than the minimum of ") {
        format!("must be at least {limit}")
    } else if pointer.contains("/principles") && message.contains(" is not one of ") {
        "must be one of the eight principles: mobilise_citizens, shift_control, collaborate_widely, share_power, \
         change_culture, grow_from_local, build_momentum, bring_people_together"
            .to_owned()
    } else if let Some(options) = after(" is not one of ") {
        format!("must be one of {options}")
    } else if let Some(limit) = after(" is longer than ") {
        format!("must be at most {limit}")
    } else if message.contains(" is shorter than ") {
        "must not be empty".to_owned()
    } else if pointer == "/subject" && message.contains(" does not match ") {
        "must be a movement id: lower-case letters, digits and hyphens".to_owned()
    } else if pointer == "/source" && message.contains(" does not match ") {
        "must be a URI without spaces".to_owned()
    } else if let Some(name) = message.strip_suffix(" is a required property") {
        format!("{} is missing: add the column or fill in the cell", name.trim_matches('"'))
    } else if message.contains("has non-unique elements") {
        "lists the same item twice".to_owned()
    } else {
        message.to_owned()
    }
}

pub(super) fn event_problems<'e>(built: &Built, errors: impl Iterator<Item = (&'e str, &'e str)>) -> Vec<Problem> {
    let mut problems: Vec<Problem> = Vec::new();
    for (pointer, message) in errors {
        for problem in built.problems(pointer, message) {
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        }
    }
    // A line with a real reason does not also need "not imported".
    let reasons: BTreeSet<u64> =
        problems.iter().filter(|problem| !problem.message.starts_with("not imported")).map(|p| p.line).collect();
    problems.retain(|problem| !(problem.message.starts_with("not imported") && reasons.contains(&problem.line)));
    problems
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::import::tests::read;

    #[test]
    fn a_rejected_meeting_lists_every_line_it_came_from() {
        let parsed = read("date,meeting,attendee,kind\n2026-03-03,walk,p-1,walk\n2026-03-03,walk,p-2,\n");
        let problems = event_problems(&parsed.events[0], std::iter::once(("/data/attendees/1", "too long")));
        let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            vec![
                "line 3: attendee: too long (got \"p-2\")",
                "line 2: not imported: its meeting was rejected (see line 3)"
            ]
        );
    }

    #[test]
    fn a_bad_principle_of_a_grouped_action_is_found_on_its_line() {
        let parsed = read(
            "date,action,participant,reach,principles\n2026-03-03,petition,p-1,10,share_power\n\
             2026-03-03,petition,p-2,,be kind\n2026-03-04,stall,p-3,,\n",
        );
        let validator = momentum_domain::Validator::new().unwrap();
        let now = DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let mut found = Vec::new();
        for built in &parsed.events {
            let errors = validator.validate(&built.event, now).unwrap_err();
            found.extend(event_problems(built, errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str()))));
        }
        let rendered: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(rendered.len(), 3, "{rendered:?}");
        assert!(rendered[0].starts_with("line 3: principles: must be one of the eight principles"), "{rendered:?}");
        assert_eq!(rendered[1], "line 2: not imported: its action was rejected (see line 3)");
        assert_eq!(rendered[2], "line 4: reach is missing: add the column or fill in the cell");
    }
}
