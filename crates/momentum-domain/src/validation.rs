//! Validation of incoming events against the JSON Schemas in `schemas/`.
//!
//! The schemas are the single source of truth for the contract: they are
//! embedded in the binary at build time (so a deployed service cannot run
//! with a schema folder that disagrees with its code) and compiled once,
//! when a [`Validator`] is made at start-up. The only rules kept in Rust are
//! the ones a schema cannot state, such as "not more than 24 hours in the
//! future", which needs the current time.

use chrono::{DateTime, Datelike, Duration, FixedOffset, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

use crate::event::{Event, EventData, EventType};

/// The schema documents, by file name, as they are in `schemas/`.
pub const SCHEMA_FILES: [(&str, &str); 7] = [
    ("common.schema.json", include_str!("../../../schemas/common.schema.json")),
    ("envelope.schema.json", include_str!("../../../schemas/envelope.schema.json")),
    ("participant.joined.schema.json", include_str!("../../../schemas/participant.joined.schema.json")),
    ("meeting.held.schema.json", include_str!("../../../schemas/meeting.held.schema.json")),
    ("volunteer.hours_logged.schema.json", include_str!("../../../schemas/volunteer.hours_logged.schema.json")),
    ("collective_action.taken.schema.json", include_str!("../../../schemas/collective_action.taken.schema.json")),
    ("event.retracted.schema.json", include_str!("../../../schemas/event.retracted.schema.json")),
];

/// The base URI the schemas' `$id`s live under; it names no real host.
const SCHEMA_BASE_URI: &str = "https://momentum.invalid/schemas/";

/// How far in the future an event's `time` may be, to allow for clock skew
/// and for events entered ahead of a meeting that is about to start.
pub const FUTURE_TOLERANCE_HOURS: i64 = 24;

/// The earliest `time` an event may have. Nothing in a health movement's
/// records is older, and a bound keeps period arithmetic far from the limits
/// of the calendar types.
pub const EARLIEST_EVENT_YEAR: i32 = 1900;

/// The most validation errors reported for one event; past this the list
/// is cut, because a partner fixes the first ones first.
pub const ERRORS_PER_EVENT_MAX: usize = 20;

/// One thing wrong with an event, at a JSON Pointer into the event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Where the problem is: a JSON Pointer (RFC 6901) into the event, such as `/data/hours`; `""`
    /// is the whole event.
    pub pointer: String,
    /// What is wrong there, in words.
    pub message: String,
}

impl FieldError {
    fn new(pointer: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { pointer: pointer.into(), message: message.into() }
    }
}

/// Why the embedded schemas could not be compiled into a [`Validator`].
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A schema file is not valid JSON.
    #[error("schema {file} is not valid JSON: {message}")]
    NotJson {
        /// The schema's file name, as in `schemas/`.
        file: &'static str,
        /// The JSON parser's error.
        message: String,
    },
    /// A schema file is JSON but cannot be registered or compiled as a schema.
    #[error("schema {file} does not compile: {message}")]
    DoesNotCompile {
        /// The schema's file name, as in `schemas/`.
        file: &'static str,
        /// The schema compiler's error.
        message: String,
    },
}

/// Compiled schemas: build one at start-up and share it.
pub struct Validator {
    envelope: jsonschema::Validator,
    data: HashMap<EventType, jsonschema::Validator>,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Validator").finish_non_exhaustive()
    }
}

impl Validator {
    /// Compiles the embedded schemas. Fails only if a schema file is broken,
    /// which a unit test rules out for the committed files.
    pub fn new() -> Result<Validator, SchemaError> {
        let mut documents = HashMap::new();
        for (file, text) in SCHEMA_FILES {
            let value: Value = serde_json::from_str(text)
                .map_err(|error| SchemaError::NotJson { file, message: error.to_string() })?;
            documents.insert(file, value);
        }
        let mut registry = jsonschema::Registry::new();
        for (file, value) in &documents {
            registry = registry
                .add(format!("{SCHEMA_BASE_URI}{file}"), value.clone())
                .map_err(|error| SchemaError::DoesNotCompile { file, message: error.to_string() })?;
        }
        let registry = registry
            .prepare()
            .map_err(|error| SchemaError::DoesNotCompile { file: "common.schema.json", message: error.to_string() })?;
        let compile = |file: &'static str| {
            jsonschema::options()
                .with_registry(&registry)
                .should_validate_formats(true)
                .build(&documents[file])
                .map_err(|error| SchemaError::DoesNotCompile { file, message: error.to_string() })
        };
        let envelope = compile("envelope.schema.json")?;
        let mut data = HashMap::new();
        for kind in EventType::ALL {
            let file = SCHEMA_FILES
                .iter()
                .map(|(file, _)| *file)
                .find(|file| file.strip_suffix(".schema.json") == Some(kind.as_str()))
                .expect("every event type has a schema file");
            data.insert(kind, compile(file)?);
        }
        Ok(Validator { envelope, data })
    }

    /// Checks one event as posted and, if it is valid, returns it typed.
    ///
    /// `now` is the time the event is checked at; events more than
    /// [`FUTURE_TOLERANCE_HOURS`] after it are rejected.
    pub fn validate(&self, event: &Value, now: DateTime<Utc>) -> Result<Event, Vec<FieldError>> {
        let mut errors = schema_errors(&self.envelope, event, "");
        if !errors.is_empty() {
            return Err(errors);
        }
        let kind = EventType::parse(event["type"].as_str().unwrap_or_default())
            .expect("the envelope schema admits only known types");
        errors.extend(schema_errors(&self.data[&kind], &event["data"], "/data"));

        let time_text = event["time"].as_str().unwrap_or_default();
        match DateTime::<FixedOffset>::parse_from_rfc3339(time_text) {
            Err(_) => errors.push(FieldError::new("/time", "must be an RFC 3339 date-time with an offset")),
            Ok(time) if time.with_timezone(&Utc) > now + Duration::hours(FUTURE_TOLERANCE_HOURS) => {
                errors.push(FieldError::new(
                    "/time",
                    format!("must not be more than {FUTURE_TOLERANCE_HOURS} hours in the future"),
                ));
            }
            Ok(time) if time.year() < EARLIEST_EVENT_YEAR => {
                errors.push(FieldError::new("/time", format!("must not be before the year {EARLIEST_EVENT_YEAR}")));
            }
            Ok(_) => {}
        }
        if !errors.is_empty() {
            errors.truncate(ERRORS_PER_EVENT_MAX);
            return Err(errors);
        }
        let mut data = event["data"].clone();
        normalise_numbers(&mut data);
        let data =
            EventData::from_value(kind, data).map_err(|error| vec![FieldError::new("/data", error.to_string())])?;
        Ok(Event {
            specversion: "1.0".to_owned(),
            id: event["id"].as_str().unwrap_or_default().to_owned(),
            source: event["source"].as_str().unwrap_or_default().to_owned(),
            kind,
            subject: event["subject"].as_str().unwrap_or_default().to_owned(),
            time: DateTime::parse_from_rfc3339(time_text).expect("checked above"),
            data,
        })
    }
}

/// Writes whole numbers written as floats (`90.0`, `5e7`) as integers.
/// JSON Schema counts them as integers, so the typed read must too; ingest
/// stores events in this form so every reader sees integers where the
/// schema says integer. Only floats that are exactly representable whole
/// numbers (|n| ≤ 2^53) change, so no value changes, only its spelling.
pub fn normalise_numbers(value: &mut Value) {
    const EXACT_MAX: f64 = 9_007_199_254_740_992.0;
    match value {
        Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && float.abs() <= EXACT_MAX
            {
                *value = Value::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise_numbers),
        Value::Object(fields) => fields.values_mut().for_each(normalise_numbers),
        _ => {}
    }
}

fn schema_errors(validator: &jsonschema::Validator, instance: &Value, prefix: &str) -> Vec<FieldError> {
    validator
        .iter_errors(instance)
        .take(ERRORS_PER_EVENT_MAX)
        .map(|error| FieldError::new(format!("{prefix}{}", error.instance_path()), error.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const VALID: &str = include_str!("../../../schemas/examples/valid.json");
    const INVALID: &str = include_str!("../../../schemas/examples/invalid.json");

    fn checked_at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn every_valid_example_is_accepted_and_read_back_unchanged() {
        let validator = Validator::new().unwrap();
        let examples: Vec<Value> = serde_json::from_str(VALID).unwrap();
        assert_eq!(examples.len(), EventType::ALL.len(), "one example per event type");
        for example in examples {
            let event = validator
                .validate(&example, checked_at())
                .unwrap_or_else(|errors| panic!("example {} was rejected: {errors:?}", example["id"]));
            assert_eq!(event.id, example["id"].as_str().unwrap());
            assert_eq!(event.kind.as_str(), example["type"].as_str().unwrap());
            let stored = Event::from_json(&event.to_json()).unwrap();
            assert_eq!(stored, event, "the stored form reads back as the same event");
        }
    }

    #[test]
    fn every_documented_invalid_example_is_rejected_at_its_pointer() {
        let validator = Validator::new().unwrap();
        let examples: Vec<Value> = serde_json::from_str(INVALID).unwrap();
        assert!(examples.len() >= 10);
        for example in examples {
            let why = example["why"].as_str().unwrap();
            let errors =
                validator.validate(&example["event"], checked_at()).expect_err(&format!("accepted although {why}"));
            let pointer = example["pointer"].as_str().unwrap();
            assert!(
                errors.iter().any(|error| error.pointer == pointer),
                "{why}: expected an error at {pointer:?}, got {errors:?}"
            );
        }
    }

    #[test]
    fn an_event_a_day_ahead_is_accepted_but_not_a_second_later() {
        let validator = Validator::new().unwrap();
        let mut event: Value = serde_json::from_str::<Vec<Value>>(VALID).unwrap().remove(0);
        event["time"] = "2026-06-02T00:00:00Z".into();
        assert!(validator.validate(&event, checked_at()).is_ok());
        event["time"] = "2026-06-02T01:00:00+01:00".into();
        assert!(validator.validate(&event, checked_at()).is_ok(), "offsets are honoured");
        event["time"] = "2026-06-02T00:00:01Z".into();
        assert!(validator.validate(&event, checked_at()).is_err());
    }

    #[test]
    fn a_non_object_is_rejected_at_the_root() {
        let validator = Validator::new().unwrap();
        let errors = validator.validate(&Value::from(42), checked_at()).unwrap_err();
        assert_eq!(errors[0].pointer, "");
    }
}
